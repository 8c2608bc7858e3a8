//! The development chain file: deposits, spends, double-spend refusal, mining, persistence
//! and two handles racing on one file.

use std::path::PathBuf;

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Txid, Witness,
};
use custody_chain::{ChainBackend, ChainError, FileBackend, TxStatus};

fn script(tag: u8) -> ScriptBuf {
    let mut bytes = vec![0x51, 0x20];
    bytes.extend_from_slice(&[tag; 32]);
    ScriptBuf::from_bytes(bytes)
}

/// A spend with a placeholder 64-byte key-path signature; the dev chain checks inputs, not
/// scripts.
fn spend(inputs: &[OutPoint], outputs: &[(ScriptBuf, u64)]) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .iter()
            .map(|&previous_output| TxIn {
                previous_output,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[[7u8; 64]]),
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(script_pubkey, sat)| TxOut {
                value: Amount::from_sat(*sat),
                script_pubkey: script_pubkey.clone(),
            })
            .collect(),
    }
}

fn chain() -> (tempfile::TempDir, PathBuf, FileBackend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.json");
    let backend = FileBackend::create(&path, Network::Regtest).expect("create chain");
    (dir, path, backend)
}

fn rejection(result: Result<Txid, ChainError>) -> String {
    match result {
        Err(ChainError::Rejected {
            reason, backend, ..
        }) => {
            assert_eq!(backend, "file");
            reason
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn fund_shows_a_mempool_deposit_with_its_funding_transaction() {
    let (_dir, _path, chain) = chain();
    let wallet = script(1);
    let outpoint = chain
        .fund(&wallet, Amount::from_sat(150_000))
        .await
        .expect("fund");

    let utxos = chain
        .utxos(&[wallet.clone(), script(9)])
        .await
        .expect("utxos");
    assert_eq!(utxos.len(), 1);
    assert_eq!(utxos[0].outpoint, outpoint);
    assert_eq!(utxos[0].value, Amount::from_sat(150_000));
    assert_eq!(utxos[0].script_pubkey, wallet);
    assert_eq!(utxos[0].height, None);
    assert!(chain.utxos(&[script(9)]).await.expect("utxos").is_empty());
    assert_eq!(
        chain.tx_status(&outpoint.txid).await.expect("status"),
        TxStatus::InMempool
    );

    let funding = chain
        .transaction(&outpoint.txid)
        .await
        .expect("read")
        .expect("funding transaction is stored");
    assert_eq!(funding.compute_txid(), outpoint.txid);
    assert_eq!(funding.output[0].value, Amount::from_sat(150_000));
    assert_eq!(funding.output[0].script_pubkey, wallet);

    let second = chain
        .fund(&wallet, Amount::from_sat(150_000))
        .await
        .expect("fund again");
    assert_ne!(second.txid, outpoint.txid, "each deposit has its own txid");
}

#[tokio::test]
async fn mine_confirms_the_mempool_and_counts_confirmations() {
    let (_dir, _path, chain) = chain();
    let wallet = script(1);
    assert_eq!(chain.tip_height().await.expect("tip"), 0);
    let outpoint = chain
        .fund(&wallet, Amount::from_sat(1_000))
        .await
        .expect("fund");

    assert_eq!(chain.mine(1).await.expect("mine"), 1);
    assert_eq!(
        chain.tx_status(&outpoint.txid).await.expect("status"),
        TxStatus::Confirmed {
            height: 1,
            confirmations: 1
        }
    );
    assert_eq!(chain.mine(2).await.expect("mine"), 3);
    assert_eq!(chain.tip_height().await.expect("tip"), 3);
    assert_eq!(
        chain.tx_status(&outpoint.txid).await.expect("status"),
        TxStatus::Confirmed {
            height: 1,
            confirmations: 3
        }
    );
    let utxo = &chain.utxos(&[wallet]).await.expect("utxos")[0];
    assert_eq!(utxo.height, Some(1));
    assert_eq!(utxo.confirmations(3), 3);
    assert_eq!(
        chain.tx_status(&Txid::all_zeros()).await.expect("status"),
        TxStatus::Unknown
    );
}

#[tokio::test]
async fn broadcast_spends_inputs_adds_outputs_and_is_idempotent() {
    let (_dir, _path, chain) = chain();
    let (wallet, change, payee) = (script(1), script(2), script(3));
    let funded = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund");
    chain.mine(1).await.expect("mine");

    let tx = spend(
        &[funded],
        &[(payee.clone(), 60_000), (change.clone(), 39_000)],
    );
    let txid = chain.broadcast(&tx).await.expect("broadcast");
    assert_eq!(txid, tx.compute_txid());
    assert!(chain
        .utxos(std::slice::from_ref(&wallet))
        .await
        .expect("utxos")
        .is_empty());
    let change_utxos = chain
        .utxos(std::slice::from_ref(&change))
        .await
        .expect("utxos");
    assert_eq!(change_utxos.len(), 1);
    assert_eq!(change_utxos[0].outpoint, OutPoint { txid, vout: 1 });
    assert_eq!(change_utxos[0].value, Amount::from_sat(39_000));
    assert_eq!(change_utxos[0].height, None);
    assert_eq!(
        chain.tx_status(&txid).await.expect("status"),
        TxStatus::InMempool
    );

    // The same transaction again, in the mempool and after confirmation: still Ok.
    assert_eq!(chain.broadcast(&tx).await.expect("rebroadcast"), txid);
    chain.mine(1).await.expect("mine");
    assert_eq!(chain.broadcast(&tx).await.expect("rebroadcast"), txid);
    assert_eq!(
        chain
            .utxos(std::slice::from_ref(&change))
            .await
            .expect("utxos")
            .len(),
        1
    );
    assert_eq!(
        chain.tx_status(&txid).await.expect("status"),
        TxStatus::Confirmed {
            height: 2,
            confirmations: 1
        }
    );
    assert_eq!(
        chain.transaction(&txid).await.expect("read"),
        Some(tx),
        "broadcast transactions are stored whole"
    );
}

#[tokio::test]
async fn a_conflicting_spend_is_refused_and_changes_nothing() {
    let (_dir, path, chain) = chain();
    let (wallet, payee, thief) = (script(1), script(3), script(4));
    let funded = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund");
    let first = spend(&[funded], &[(payee.clone(), 99_000)]);
    let first_txid = chain.broadcast(&first).await.expect("broadcast");
    let before = std::fs::read(&path).expect("read file");

    let conflict = spend(&[funded], &[(thief.clone(), 99_500)]);
    let error = chain.broadcast(&conflict).await.expect_err("double spend");
    assert!(!error.is_retryable());
    let reason = rejection(Err(error));
    assert!(reason.contains("txn-mempool-conflict"), "{reason}");
    assert!(reason.contains("double spend"), "{reason}");
    assert!(reason.contains(&first_txid.to_string()), "{reason}");
    assert_eq!(std::fs::read(&path).expect("read file"), before);
    assert!(chain
        .utxos(std::slice::from_ref(&thief))
        .await
        .expect("utxos")
        .is_empty());

    // Once the first spend is confirmed the node reports the input as spent.
    chain.mine(1).await.expect("mine");
    let reason = rejection(chain.broadcast(&conflict).await);
    assert!(
        reason.contains("bad-txns-inputs-missingorspent"),
        "{reason}"
    );
    assert!(reason.contains("confirmed at height 1"), "{reason}");
    assert_eq!(
        chain
            .tx_status(&conflict.compute_txid())
            .await
            .expect("status"),
        TxStatus::Unknown
    );
}

#[tokio::test]
async fn invalid_spends_are_refused_with_the_reason() {
    let (_dir, _path, chain) = chain();
    let wallet = script(1);
    let funded = chain
        .fund(&wallet, Amount::from_sat(10_000))
        .await
        .expect("fund");

    let unknown = OutPoint {
        txid: Txid::all_zeros(),
        vout: 3,
    };
    let reason = rejection(chain.broadcast(&spend(&[unknown], &[(script(3), 1)])).await);
    assert!(reason.contains("unknown output"), "{reason}");

    let reason = rejection(
        chain
            .broadcast(&spend(&[funded], &[(script(3), 10_001)]))
            .await,
    );
    assert!(reason.contains("exceed inputs"), "{reason}");

    let reason = rejection(
        chain
            .broadcast(&spend(&[funded, funded], &[(script(3), 1)]))
            .await,
    );
    assert!(reason.contains("bad-txns-inputs-duplicate"), "{reason}");

    let mut unsigned = spend(&[funded], &[(script(3), 9_000)]);
    unsigned.input[0].witness = Witness::new();
    let reason = rejection(chain.broadcast(&unsigned).await);
    assert!(reason.contains("unsigned"), "{reason}");

    assert_eq!(chain.utxos(&[wallet]).await.expect("utxos").len(), 1);
}

#[tokio::test]
async fn two_handles_racing_conflicting_spends_accept_exactly_one() {
    let (_dir, path, chain) = chain();
    let wallet = script(1);
    for round in 0..16u8 {
        let funded = chain
            .fund(&wallet, Amount::from_sat(50_000))
            .await
            .expect("fund");
        let a = FileBackend::open(&path).expect("first handle");
        let b = FileBackend::open(&path).expect("second handle");
        let to_a = spend(&[funded], &[(script(100 + round), 49_000)]);
        let to_b = spend(&[funded], &[(script(200 - round), 48_000)]);

        let task_a = tokio::spawn(async move { a.broadcast(&to_a).await });
        let task_b = tokio::spawn(async move { b.broadcast(&to_b).await });
        let (result_a, result_b) = (task_a.await.expect("task a"), task_b.await.expect("task b"));
        let accepted = [&result_a, &result_b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {result_a:?} / {result_b:?}");
        let loser = if result_a.is_ok() { result_b } else { result_a };
        assert!(rejection(loser).contains("double spend"));

        let paid_a = chain.utxos(&[script(100 + round)]).await.expect("utxos");
        let paid_b = chain.utxos(&[script(200 - round)]).await.expect("utxos");
        assert_eq!(paid_a.len() + paid_b.len(), 1, "round {round}");
    }
}

#[tokio::test]
async fn state_survives_reopening_and_leaves_no_temporary_files() {
    let (dir, path, chain) = chain();
    let wallet = script(1);
    let outpoint = chain
        .fund(&wallet, Amount::from_sat(7_000))
        .await
        .expect("fund");
    chain.mine(5).await.expect("mine");
    chain
        .set_fee_rate(FeeRate::from_sat_per_vb_u32(12))
        .await
        .expect("fee rate");
    drop(chain);

    let reopened = FileBackend::open(&path).expect("reopen");
    assert_eq!(reopened.tip_height().await.expect("tip"), 5);
    assert_eq!(reopened.network().await.expect("network"), Network::Regtest);
    assert_eq!(
        reopened.utxos(&[wallet]).await.expect("utxos")[0].outpoint,
        outpoint
    );
    assert_eq!(
        reopened.fee_rate(6).await.expect("fee"),
        FeeRate::from_sat_per_vb_u32(12)
    );

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["chain.json", "chain.json.lock"]);
}

#[tokio::test]
async fn default_fee_rate_is_two_sat_per_vbyte() {
    let (_dir, _path, chain) = chain();
    assert_eq!(
        chain.fee_rate(1).await.expect("fee"),
        FeeRate::from_sat_per_vb_u32(2)
    );
    assert_eq!(chain.name(), "file");
}

#[test]
fn create_refuses_an_existing_file_and_open_checks_network_and_contents() {
    let (_dir, path, _chain) = chain();
    assert!(matches!(
        FileBackend::create(&path, Network::Regtest),
        Err(ChainError::Storage { .. })
    ));
    assert!(FileBackend::open_or_create(&path, Network::Regtest).is_ok());
    assert!(matches!(
        FileBackend::open_or_create(&path, Network::Signet),
        Err(ChainError::WrongNetwork {
            expected: Network::Signet,
            found: Network::Regtest,
            ..
        })
    ));

    std::fs::write(&path, b"{\"format\": \"something-else\"}").expect("overwrite");
    assert!(matches!(
        FileBackend::open(&path),
        Err(ChainError::BadChainFile { .. })
    ));

    let missing = path.with_file_name("missing.json");
    assert!(matches!(
        FileBackend::open(&missing),
        Err(ChainError::Storage { .. })
    ));
    assert!(FileBackend::open_or_create(&missing, Network::Signet).is_ok());
}

#[test]
fn a_tampered_transaction_is_detected_on_open() {
    let (_dir, path, _chain) = chain();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let backend = FileBackend::open(&path).expect("open");
    let outpoint = runtime
        .block_on(backend.fund(&script(1), Amount::from_sat(5)))
        .expect("fund");
    let text = std::fs::read_to_string(&path).expect("read");
    let wrong = Txid::from_byte_array([9; 32]).to_string();
    std::fs::write(&path, text.replace(&outpoint.txid.to_string(), &wrong)).expect("write");
    match FileBackend::open(&path) {
        Err(ChainError::BadChainFile { reason, .. }) => {
            assert!(reason.contains("does not hash to its txid"), "{reason}")
        }
        other => panic!("expected a bad chain file, got {other:?}"),
    }
}
