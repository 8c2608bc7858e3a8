//! The development chain file: deposits, spends, double-spend refusal, full-RBF replacement,
//! mining, persistence and two handles racing on one file.

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
async fn fund_many_deposits_each_output_with_its_own_transaction() {
    let (_dir, _path, chain) = chain();
    let outputs = [
        (script(1), Amount::from_sat(10_000)),
        (script(2), Amount::from_sat(20_000)),
        (script(1), Amount::from_sat(10_000)),
    ];
    let outpoints = chain.fund_many(&outputs).await.expect("fund");
    assert_eq!(outpoints.len(), 3);
    assert_ne!(
        outpoints[0], outpoints[2],
        "same script and value, distinct deposits"
    );
    assert_eq!(chain.mine(1).await.expect("mine"), 1);
    let mut utxos = chain.utxos(&[script(1), script(2)]).await.expect("utxos");
    utxos.sort_by_key(|u| outpoints.iter().position(|o| *o == u.outpoint));
    let seen: Vec<_> = utxos
        .iter()
        .map(|u| (u.outpoint, u.script_pubkey.clone(), u.value, u.height))
        .collect();
    let expected: Vec<_> = outpoints
        .iter()
        .zip(&outputs)
        .map(|(o, (s, v))| (*o, s.clone(), *v, Some(1)))
        .collect();
    assert_eq!(seen, expected);
    for o in &outpoints {
        let tx = chain
            .transaction(&o.txid)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(tx.compute_txid(), o.txid);
    }
    assert!(chain.fund_many(&[]).await.expect("nothing").is_empty());
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
        // Equal fee rates: whichever comes second cannot replace the first (full RBF needs
        // a strictly higher rate), so exactly one is accepted.
        let to_a = spend(&[funded], &[(script(100 + round), 49_000)]);
        let to_b = spend(&[funded], &[(script(200 - round), 49_000)]);

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

// Full RBF: a conflicting mempool spend is replaced when the new one pays enough (Bitcoin
// Core 28's default `mempoolfullrbf=1`, BIP125's rules as Core applies them).

/// The outpoints, values and heights paying `scripts`, sorted, to compare whole sets.
async fn coins(chain: &FileBackend, scripts: &[ScriptBuf]) -> Vec<(OutPoint, u64, Option<u32>)> {
    let mut coins: Vec<_> = chain
        .utxos(scripts)
        .await
        .expect("utxos")
        .into_iter()
        .map(|u| (u.outpoint, u.value.to_sat(), u.height))
        .collect();
    coins.sort();
    coins
}

async fn status(chain: &FileBackend, tx: &Transaction) -> TxStatus {
    chain.tx_status(&tx.compute_txid()).await.expect("status")
}

#[tokio::test]
async fn a_replacement_paying_more_evicts_the_original_and_confirms() {
    let (_dir, _path, chain) = chain();
    let (wallet, payee, bumped) = (script(1), script(3), script(5));
    let funded = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund");
    chain.mine(1).await.expect("mine");
    let original = spend(&[funded], &[(payee.clone(), 99_000)]);
    chain.broadcast(&original).await.expect("broadcast");

    // 2,000 sat at 111 vB beats 1,000 sat at 111 vB and adds more than 111 sat of relay fee.
    let replacement = spend(&[funded], &[(bumped.clone(), 98_000)]);
    let txid = chain.broadcast(&replacement).await.expect("replacement");
    assert_eq!(txid, replacement.compute_txid());

    assert_eq!(status(&chain, &original).await, TxStatus::Unknown);
    assert_eq!(
        chain
            .transaction(&original.compute_txid())
            .await
            .expect("read"),
        None
    );
    assert_eq!(status(&chain, &replacement).await, TxStatus::InMempool);
    assert_eq!(
        coins(&chain, &[wallet, payee, bumped.clone()]).await,
        [(OutPoint { txid, vout: 0 }, 98_000, None)]
    );
    // Sending the replacement again is still idempotent.
    assert_eq!(chain.broadcast(&replacement).await.expect("again"), txid);

    chain.mine(1).await.expect("mine");
    assert_eq!(
        status(&chain, &replacement).await,
        TxStatus::Confirmed {
            height: 2,
            confirmations: 1
        }
    );
    assert_eq!(
        coins(&chain, &[bumped]).await,
        [(OutPoint { txid, vout: 0 }, 98_000, Some(2))]
    );
}

#[tokio::test]
async fn a_replacement_evicts_descendants_and_gives_back_only_coins_it_leaves_unspent() {
    let (_dir, _path, chain) = chain();
    let (wallet, payee, change, onward, bumped) =
        (script(1), script(3), script(2), script(6), script(5));
    let a = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund a");
    let c = chain
        .fund(&wallet, Amount::from_sat(20_000))
        .await
        .expect("fund c");
    chain.mine(1).await.expect("mine");
    let b = chain
        .fund(&wallet, Amount::from_sat(50_000))
        .await
        .expect("fund b");

    // original spends a; the child spends original's change and the coins b and c.
    let original = spend(&[a], &[(payee.clone(), 60_000), (change.clone(), 39_000)]);
    let original_txid = chain.broadcast(&original).await.expect("original");
    let change_coin = OutPoint {
        txid: original_txid,
        vout: 1,
    };
    let child = spend(&[change_coin, b, c], &[(onward.clone(), 108_000)]);
    chain.broadcast(&child).await.expect("child");
    assert_eq!(status(&chain, &child).await, TxStatus::InMempool);

    // Evicted fees are 1,000 + 1,000; 5,000 covers them plus 111 sat of relay.
    let replacement = spend(&[a], &[(bumped.clone(), 95_000)]);
    let txid = chain.broadcast(&replacement).await.expect("replacement");

    assert_eq!(status(&chain, &original).await, TxStatus::Unknown);
    assert_eq!(status(&chain, &child).await, TxStatus::Unknown);
    assert_eq!(status(&chain, &replacement).await, TxStatus::InMempool);
    // b and c come back at their own heights; a does not, the replacement spends it.
    let mut expected = vec![
        (b, 50_000, None),
        (c, 20_000, Some(1)),
        (OutPoint { txid, vout: 0 }, 95_000, None),
    ];
    expected.sort();
    assert_eq!(
        coins(&chain, &[wallet, payee, change, onward, bumped]).await,
        expected
    );

    // The given-back coins are spendable again.
    let respend = spend(&[b, c], &[(script(7), 69_000)]);
    chain
        .broadcast(&respend)
        .await
        .expect("spend the given-back coins");
    chain.mine(1).await.expect("mine");
    assert!(matches!(
        status(&chain, &replacement).await,
        TxStatus::Confirmed { height: 2, .. }
    ));
    assert!(matches!(
        status(&chain, &respend).await,
        TxStatus::Confirmed { height: 2, .. }
    ));
}

#[tokio::test]
async fn a_replacement_must_beat_the_fee_rate_of_every_direct_conflict() {
    let (_dir, path, chain) = chain();
    let (wallet, bumped) = (script(1), script(5));
    let a = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund a");
    let b = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund b");
    let cheap = spend(&[a], &[(script(3), 99_000)]);
    let dear = spend(&[b], &[(script(4), 97_000)]);
    chain.broadcast(&cheap).await.expect("cheap");
    chain.broadcast(&dear).await.expect("dear");
    let before = std::fs::read(&path).expect("read file");

    // 4,400 sat at 169 vB (26.035 sat/vB) beats 9.009 but not 27.027 sat/vB.
    let short = spend(&[a, b], &[(bumped.clone(), 195_600)]);
    assert_eq!(short.vsize(), 169);
    let reason = rejection(chain.broadcast(&short).await);
    assert!(
        reason.contains("new feerate 26.035 sat/vB <= old feerate 27.027 sat/vB"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("already spent by {}", dear.compute_txid())),
        "{reason}"
    );
    assert_eq!(std::fs::read(&path).expect("read file"), before);

    let enough = spend(&[a, b], &[(bumped.clone(), 195_300)]);
    let txid = chain.broadcast(&enough).await.expect("replacement");
    assert_eq!(status(&chain, &cheap).await, TxStatus::Unknown);
    assert_eq!(status(&chain, &dear).await, TxStatus::Unknown);
    assert_eq!(
        coins(&chain, &[wallet, script(3), script(4), bumped]).await,
        [(OutPoint { txid, vout: 0 }, 195_300, None)]
    );
}

#[tokio::test]
async fn a_replacement_that_does_not_pay_enough_is_refused_and_changes_nothing() {
    let (_dir, path, chain) = chain();
    let (wallet, payee, change, onward, bumped) =
        (script(1), script(3), script(2), script(6), script(5));
    let scripts = [
        wallet.clone(),
        payee.clone(),
        change,
        onward.clone(),
        bumped,
    ];
    let a = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund a");
    let b = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund b");
    chain.mine(1).await.expect("mine");
    // 1,000 sat at 111 vB: 9.009 sat/vB.
    let original = spend(&[a], &[(payee.clone(), 99_000)]);
    let original_txid = chain.broadcast(&original).await.expect("original");
    assert_eq!(original.vsize(), 111);
    // 1,000 sat at 154 vB, with a child paying 5,000 sat.
    let parent = spend(&[b], &[(payee.clone(), 60_000), (script(2), 39_000)]);
    let parent_txid = chain.broadcast(&parent).await.expect("parent");
    let child = spend(
        &[OutPoint {
            txid: parent_txid,
            vout: 1,
        }],
        &[(onward, 34_000)],
    );
    chain.broadcast(&child).await.expect("child");
    let before = std::fs::read(&path).expect("read file");
    let coins_before = coins(&chain, &scripts).await;

    let assert_unchanged = |reason: &str| {
        assert_eq!(std::fs::read(&path).expect("read file"), before, "{reason}");
    };

    // The same fee rate.
    let same = spend(&[a], &[(script(5), 99_000)]);
    let reason = rejection(chain.broadcast(&same).await);
    assert!(
        reason.starts_with(&format!(
            "insufficient fee: rejecting replacement {}; new feerate 9.009 sat/vB <= old \
             feerate 9.009 sat/vB; txn-mempool-conflict: input 0 spends {a}, already spent by \
             {original_txid} in the mempool (double spend)",
            same.compute_txid()
        )),
        "{reason}"
    );
    assert_unchanged(&reason);

    // A lower fee rate.
    let lower = spend(&[a], &[(script(5), 99_500)]);
    let reason = rejection(chain.broadcast(&lower).await);
    assert!(
        reason.contains("new feerate 4.504 sat/vB <= old feerate 9.009 sat/vB"),
        "{reason}"
    );
    assert_unchanged(&reason);

    // A higher rate (9.459 sat/vB) and more fee, but 50 sat more does not pay for 111 vB.
    let thin = spend(&[a], &[(script(5), 98_950)]);
    let reason = rejection(chain.broadcast(&thin).await);
    assert!(
        reason.starts_with(&format!(
            "insufficient fee: rejecting replacement {}, not enough additional fees to relay",
            thin.compute_txid()
        )),
        "{reason}"
    );
    assert!(reason.contains(&original_txid.to_string()), "{reason}");
    assert_unchanged(&reason);

    // A higher rate than the parent (18.018 > 6.493 sat/vB), but less than the 6,000 sat the
    // parent and its child pay together.
    let under = spend(&[b], &[(script(5), 98_000)]);
    let reason = rejection(chain.broadcast(&under).await);
    assert!(
        reason.starts_with(&format!(
            "insufficient fee: rejecting replacement {}, less fees than conflicting txs",
            under.compute_txid()
        )),
        "{reason}"
    );
    assert!(reason.contains(&parent_txid.to_string()), "{reason}");
    assert_unchanged(&reason);

    // Enough to beat the parent's rate but not the evicted fees plus its own relay.
    let almost = spend(&[b], &[(script(5), 100_000 - 6_000 - 110)]);
    let reason = rejection(chain.broadcast(&almost).await);
    assert!(
        reason.contains("not enough additional fees to relay"),
        "{reason}"
    );
    assert_unchanged(&reason);

    assert_eq!(status(&chain, &original).await, TxStatus::InMempool);
    assert_eq!(status(&chain, &parent).await, TxStatus::InMempool);
    assert_eq!(status(&chain, &child).await, TxStatus::InMempool);
    assert_eq!(coins(&chain, &scripts).await, coins_before);
    for refused in [&same, &lower, &thin, &under, &almost] {
        assert_eq!(status(&chain, refused).await, TxStatus::Unknown);
    }

    // One satoshi more and the parent and child go.
    let exact = spend(&[b], &[(script(5), 100_000 - 6_000 - 111)]);
    chain.broadcast(&exact).await.expect("replacement");
    assert_eq!(status(&chain, &parent).await, TxStatus::Unknown);
    assert_eq!(status(&chain, &child).await, TxStatus::Unknown);
}

#[tokio::test]
async fn a_replacement_spending_an_output_of_what_it_replaces_is_refused() {
    let (_dir, path, chain) = chain();
    let (wallet, payee, change) = (script(1), script(3), script(2));
    let a = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund");
    let original = spend(&[a], &[(payee.clone(), 60_000), (change.clone(), 39_000)]);
    let original_txid = chain.broadcast(&original).await.expect("original");
    let before = std::fs::read(&path).expect("read file");

    let change_coin = OutPoint {
        txid: original_txid,
        vout: 1,
    };
    let replacement = spend(&[a, change_coin], &[(script(5), 90_000)]);
    let reason = rejection(chain.broadcast(&replacement).await);
    assert!(
        reason.starts_with(&format!(
            "bad-txns-spends-conflicting-tx: {} spends conflicting transaction {original_txid}",
            replacement.compute_txid()
        )),
        "{reason}"
    );
    assert_eq!(std::fs::read(&path).expect("read file"), before);
    assert_eq!(status(&chain, &original).await, TxStatus::InMempool);
}

#[tokio::test]
async fn a_spend_conflicting_with_a_confirmed_spend_is_refused_whatever_it_pays() {
    let (_dir, path, chain) = chain();
    let wallet = script(1);
    let a = chain
        .fund(&wallet, Amount::from_sat(100_000))
        .await
        .expect("fund");
    let original = spend(&[a], &[(script(3), 99_000)]);
    let original_txid = chain.broadcast(&original).await.expect("original");
    chain.mine(1).await.expect("mine");
    let before = std::fs::read(&path).expect("read file");

    let generous = spend(&[a], &[(script(5), 50_000)]);
    let reason = rejection(chain.broadcast(&generous).await);
    assert_eq!(
        reason,
        format!(
            "bad-txns-inputs-missingorspent: input 0 spends {a}, already spent by \
             {original_txid} confirmed at height 1 (double spend)"
        )
    );
    assert_eq!(std::fs::read(&path).expect("read file"), before);
}

#[tokio::test]
async fn a_replacement_may_evict_at_most_one_hundred_transactions() {
    let (_dir, path, chain) = chain();
    let wallet = script(1);
    let a = chain
        .fund(&wallet, Amount::from_sat(1_000_000))
        .await
        .expect("fund");
    // A chain of 101 mempool transactions, each paying 100 sat and spending the one before.
    let mut chain_txs = Vec::new();
    let (mut coin, mut value) = (a, 1_000_000);
    for _ in 0..101 {
        value -= 100;
        let tx = spend(&[coin], &[(wallet.clone(), value)]);
        coin = OutPoint {
            txid: chain.broadcast(&tx).await.expect("chain link"),
            vout: 0,
        };
        chain_txs.push(tx);
    }
    let before = std::fs::read(&path).expect("read file");

    // Replacing the first would evict all 101.
    let all = spend(&[a], &[(script(5), 900_000)]);
    let reason = rejection(chain.broadcast(&all).await);
    assert!(
        reason.starts_with(&format!(
            "too many potential replacements: rejecting replacement {}; too many potential \
             replacements (101 > 100)",
            all.compute_txid()
        )),
        "{reason}"
    );
    assert_eq!(std::fs::read(&path).expect("read file"), before);

    // Replacing the second evicts exactly 100: allowed.
    let first_out = OutPoint {
        txid: chain_txs[0].compute_txid(),
        vout: 0,
    };
    let hundred = spend(&[first_out], &[(script(5), 900_000)]);
    chain.broadcast(&hundred).await.expect("replacement");
    assert_eq!(status(&chain, &chain_txs[0]).await, TxStatus::InMempool);
    for evicted in &chain_txs[1..] {
        assert_eq!(status(&chain, evicted).await, TxStatus::Unknown);
    }
}
