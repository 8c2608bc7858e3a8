//! The Bitcoin Core backend against a loopback stub answering in Core's JSON-RPC shapes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use common::{dead_url, json, Reply, Seen, Stub};
use custody_chain::{BitcoindAuth, BitcoindBackend, ChainBackend, ChainError, TxStatus};
use serde_json::{json as j, Value};

const WALLET: &str = "custody-watch";
const COOKIE: &str = "__cookie__:5f1e0c9a7b";

fn script(tag: u8) -> ScriptBuf {
    let mut bytes = vec![0x51, 0x20];
    bytes.extend_from_slice(&[tag; 32]);
    ScriptBuf::from_bytes(bytes)
}

fn signed_tx() -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([3; 32]),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[[7u8; 64]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(40_000),
            script_pubkey: script(5),
        }],
    }
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// The JSON-RPC request in `seen`: (method, params, id).
fn call(seen: &Seen) -> (String, Value, Value) {
    let body: Value = serde_json::from_slice(&seen.body).expect("JSON-RPC body");
    (
        body["method"].as_str().expect("method").to_owned(),
        body["params"].clone(),
        body["id"].clone(),
    )
}

fn ok(id: Value, result: Value) -> Option<Reply> {
    json(200, j!({"result": result, "error": null, "id": id}))
}

/// An RPC error the way Core answers JSON-RPC 1.0 style clients: HTTP 500 with a body.
fn rpc_error(id: Value, code: i32, message: &str) -> Option<Reply> {
    json(
        500,
        j!({"result": null, "error": {"code": code, "message": message}, "id": id}),
    )
}

/// An RPC error the way Core 28+ answers JSON-RPC 2.0 requests: HTTP 200.
fn rpc_error_v2(id: Value, code: i32, message: &str) -> Option<Reply> {
    json(
        200,
        j!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}),
    )
}

fn cookie_file(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join(".cookie");
    std::fs::write(&path, content).expect("write cookie");
    path
}

/// A stub node that checks the cookie and the wallet endpoint, then answers with `node`.
async fn node(node: impl Fn(&str, &Value, Value) -> Option<Reply> + Send + Sync + 'static) -> Stub {
    let expected = basic(COOKIE);
    Stub::serve(move |seen| {
        let authorized = seen
            .headers
            .get("authorization")
            .is_some_and(|value| value.to_str().ok() == Some(expected.as_str()));
        if !authorized {
            return Some((axum::http::StatusCode::UNAUTHORIZED, Vec::new(), Vec::new()));
        }
        assert_eq!(seen.path, format!("/wallet/{WALLET}"));
        let (method, params, id) = call(seen);
        node(&method, &params, id)
    })
    .await
}

fn backend(url: &str, dir: &Path) -> BitcoindBackend {
    BitcoindBackend::new(
        url,
        WALLET,
        BitcoindAuth::CookieFile {
            cookie_file: cookie_file(dir, &format!("{COOKIE}\n")),
        },
        Duration::from_secs(5),
    )
    .expect("backend")
}

fn methods(stub: &Stub) -> Vec<String> {
    stub.requests().iter().map(|s| call(s).0).collect()
}

#[tokio::test]
async fn utxos_come_from_the_wallet_filtered_by_script_with_heights() {
    let dir = tempfile::tempdir().expect("dir");
    let (ours, change, foreign) = (script(1), script(2), script(9));
    let entries = j!([
        {"txid": Txid::from_byte_array([0xaa; 32]), "vout": 1, "address": "bcrt1p…",
         "label": "", "scriptPubKey": ours.to_hex_string(), "amount": 0.0005,
         "confirmations": 6, "spendable": false, "solvable": true, "desc": "rawtr(…)#x",
         "parent_descs": [], "safe": true},
        {"txid": Txid::from_byte_array([0xbb; 32]), "vout": 0,
         "scriptPubKey": change.to_hex_string(), "amount": 0.00001234, "confirmations": 0,
         "spendable": false, "solvable": true, "safe": true},
        {"txid": Txid::from_byte_array([0xcc; 32]), "vout": 0,
         "scriptPubKey": foreign.to_hex_string(), "amount": 1.0, "confirmations": 50,
         "spendable": false, "solvable": true, "safe": true}
    ]);
    let stub = node(move |method, params, id| match method {
        "getblockcount" => ok(id, j!(105)),
        "listunspent" => {
            assert_eq!(params, &j!([0, 9_999_999, [], true]));
            ok(id, entries.clone())
        }
        other => panic!("unexpected {other}"),
    })
    .await;
    let utxos = backend(&stub.url, dir.path())
        .utxos(&[ours.clone(), change.clone()])
        .await
        .expect("utxos");
    assert_eq!(utxos.len(), 2, "the foreign output is left out");
    assert_eq!(
        utxos[0].outpoint,
        OutPoint {
            txid: Txid::from_byte_array([0xaa; 32]),
            vout: 1
        }
    );
    assert_eq!(utxos[0].value, Amount::from_sat(50_000));
    assert_eq!(utxos[0].script_pubkey, ours);
    assert_eq!(utxos[0].height, Some(100), "6 confirmations at tip 105");
    assert_eq!(utxos[1].value, Amount::from_sat(1_234));
    assert_eq!(utxos[1].height, None);
    assert_eq!(methods(&stub), ["getblockcount", "listunspent"]);
}

#[tokio::test]
async fn broadcast_sends_the_raw_hex() {
    let dir = tempfile::tempdir().expect("dir");
    let tx = signed_tx();
    let (txid, hex) = (tx.compute_txid(), encode::serialize_hex(&tx));
    let stub = node(move |method, params, id| {
        assert_eq!(method, "sendrawtransaction");
        assert_eq!(params, &j!([hex]));
        ok(id, j!(txid))
    })
    .await;
    assert_eq!(
        backend(&stub.url, dir.path())
            .broadcast(&tx)
            .await
            .expect("broadcast"),
        txid
    );
}

#[tokio::test]
async fn a_rejected_transaction_carries_the_node_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let tx = signed_tx();
    let txid = tx.compute_txid();
    let stub = node(|method, _, id| match method {
        "sendrawtransaction" => rpc_error(id, -26, "bad-txns-inputs-missingorspent"),
        "gettransaction" => rpc_error(id, -5, "Invalid or non-wallet transaction id"),
        "getrawtransaction" => rpc_error_v2(
            id,
            -5,
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        ),
        other => panic!("unexpected {other}"),
    })
    .await;
    let error = backend(&stub.url, dir.path())
        .broadcast(&tx)
        .await
        .expect_err("rejected");
    assert!(!error.is_retryable());
    match error {
        ChainError::Rejected {
            txid: refused,
            reason,
            ..
        } => {
            assert_eq!(refused, txid);
            assert_eq!(reason, "bad-txns-inputs-missingorspent");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        methods(&stub),
        ["sendrawtransaction", "gettransaction", "getrawtransaction"]
    );
}

#[tokio::test]
async fn rebroadcasting_a_known_transaction_is_ok() {
    let dir = tempfile::tempdir().expect("dir");
    let tx = signed_tx();
    let txid = tx.compute_txid();
    for (code, message) in [
        (-27, "Transaction outputs already in utxo set"),
        (-27, "transaction already in block chain"),
        (-26, "txn-already-in-mempool"),
        (-26, "txn-already-known"),
    ] {
        let stub = node(move |_, _, id| rpc_error(id, code, message)).await;
        assert_eq!(
            backend(&stub.url, dir.path())
                .broadcast(&tx)
                .await
                .expect(message),
            txid,
            "{message}"
        );
    }
}

#[tokio::test]
async fn tx_status_reads_the_wallet_then_the_mempool() {
    let dir = tempfile::tempdir().expect("dir");
    let confirmed = Txid::from_byte_array([1; 32]);
    let pending = Txid::from_byte_array([2; 32]);
    let conflicted = Txid::from_byte_array([3; 32]);
    let foreign = Txid::from_byte_array([4; 32]);
    let stub = node(move |method, params, id| {
        let txid: Txid = serde_json::from_value(params[0].clone()).expect("txid param");
        match method {
            "gettransaction" if txid == confirmed => ok(
                id,
                j!({"amount": -0.0004, "fee": -0.00000141, "confirmations": 6,
                    "blockhash": "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5",
                    "blockheight": 100, "blockindex": 7, "blocktime": 1_700_000_000u64,
                    "txid": txid, "wtxid": txid, "walletconflicts": [], "time": 1_700_000_000u64,
                    "timereceived": 1_700_000_000u64, "bip125-replaceable": "no",
                    "details": [], "hex": "00"}),
            ),
            "gettransaction" if txid == pending => ok(
                id,
                j!({"amount": 0, "confirmations": 0, "trusted": true, "txid": txid,
                    "walletconflicts": [], "time": 1, "timereceived": 1, "details": [],
                    "hex": "00"}),
            ),
            "gettransaction" if txid == conflicted => ok(
                id,
                j!({"amount": 0, "confirmations": -2, "txid": txid, "walletconflicts": [],
                    "time": 1, "timereceived": 1, "details": [], "hex": "00"}),
            ),
            "gettransaction" => rpc_error(id, -5, "Invalid or non-wallet transaction id"),
            "getrawtransaction" => {
                assert_eq!(params[1], j!(true), "verbose");
                ok(
                    id,
                    j!({"txid": txid, "hash": txid, "version": 2, "size": 100,
                           "vsize": 100, "weight": 400, "locktime": 0, "vin": [], "vout": [],
                           "hex": "00"}),
                )
            }
            other => panic!("unexpected {other}"),
        }
    })
    .await;
    let chain = backend(&stub.url, dir.path());
    assert_eq!(
        chain.tx_status(&confirmed).await.expect("status"),
        TxStatus::Confirmed {
            height: 100,
            confirmations: 6
        }
    );
    assert_eq!(
        chain.tx_status(&pending).await.expect("status"),
        TxStatus::InMempool
    );
    assert_eq!(
        chain.tx_status(&conflicted).await.expect("status"),
        TxStatus::Unknown
    );
    assert_eq!(
        chain.tx_status(&foreign).await.expect("status"),
        TxStatus::InMempool,
        "a non-wallet transaction found in the mempool"
    );
}

#[tokio::test]
async fn fee_rate_converts_btc_per_kvb_and_reports_missing_estimates() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = node(|method, params, id| {
        assert_eq!(method, "estimatesmartfee");
        match params[0].as_u64() {
            Some(6) => ok(id, j!({"feerate": 0.00012, "blocks": 6})),
            Some(1) => ok(
                id,
                j!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}),
            ),
            other => panic!("unexpected target {other:?}"),
        }
    })
    .await;
    let chain = backend(&stub.url, dir.path());
    assert_eq!(
        chain.fee_rate(6).await.expect("fee"),
        FeeRate::from_sat_per_vb_u32(12)
    );
    match chain.fee_rate(0).await {
        Err(ChainError::NotFound { what, .. }) => {
            assert!(what.contains("Insufficient data"), "{what}")
        }
        other => panic!("expected no estimate, got {other:?}"),
    }
}

#[tokio::test]
async fn password_file_credentials_are_sent_and_never_shown() {
    let dir = tempfile::tempdir().expect("dir");
    let password_file = dir.path().join("rpc-password");
    std::fs::write(&password_file, "hunter2-correct\n").expect("write");
    let expected = basic("custody:hunter2-correct");
    let stub = Stub::serve(move |seen| {
        let (_, _, id) = call(seen);
        let header = seen.headers.get("authorization").map(|v| v.to_str().ok());
        if header == Some(Some(expected.as_str())) {
            ok(id, j!(812_345))
        } else {
            Some((axum::http::StatusCode::UNAUTHORIZED, Vec::new(), Vec::new()))
        }
    })
    .await;
    let auth = |file: &Path| BitcoindAuth::PasswordFile {
        user: "custody".into(),
        password_file: file.to_path_buf(),
    };
    let chain = BitcoindBackend::new(
        &stub.url,
        WALLET,
        auth(&password_file),
        Duration::from_secs(5),
    )
    .expect("backend");
    assert_eq!(chain.tip_height().await.expect("tip"), 812_345);
    assert!(!format!("{chain:?}").contains("hunter2"));

    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&wrong_file, "hunter2-wrong").expect("write");
    let wrong = BitcoindBackend::new(&stub.url, WALLET, auth(&wrong_file), Duration::from_secs(5))
        .expect("backend");
    let error = wrong.tip_height().await.expect_err("refused");
    assert!(matches!(error, ChainError::Config { .. }), "{error:?}");
    assert!(!error.is_retryable());
    let shown = format!("{error} {error:?} {wrong:?}");
    assert!(shown.contains("401"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn a_rotated_cookie_is_read_again() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = node(|_, _, id| ok(id, j!(7))).await;
    let cookie = cookie_file(dir.path(), "__cookie__:from-before-the-restart");
    let chain = BitcoindBackend::new(
        &stub.url,
        WALLET,
        BitcoindAuth::CookieFile {
            cookie_file: cookie.clone(),
        },
        Duration::from_secs(5),
    )
    .expect("backend");
    // The node restarted and wrote a new cookie.
    std::fs::write(&cookie, COOKIE).expect("rotate cookie");
    assert_eq!(chain.tip_height().await.expect("tip"), 7);
    assert_eq!(stub.requests().len(), 2, "one refused, one retried");
}

#[tokio::test]
async fn unreachable_starting_and_misconfigured_nodes_map_to_their_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let down = backend(&dead_url().await, dir.path());
    let error = down.tip_height().await.expect_err("nobody listens");
    assert!(matches!(error, ChainError::Unreachable { .. }), "{error:?}");
    assert!(error.is_retryable());
    let error = down
        .broadcast(&signed_tx())
        .await
        .expect_err("nobody listens");
    assert!(error.is_retryable(), "{error:?}");

    let warming = node(|_, _, id| rpc_error(id, -28, "Loading block index…")).await;
    let error = backend(&warming.url, dir.path())
        .tip_height()
        .await
        .expect_err("warmup");
    assert!(matches!(error, ChainError::Unreachable { .. }), "{error:?}");

    let no_wallet =
        node(|_, _, id| rpc_error_v2(id, -18, "Requested wallet does not exist or is not loaded"))
            .await;
    let error = backend(&no_wallet.url, dir.path())
        .utxos(&[script(1)])
        .await
        .expect_err("no wallet");
    assert!(
        matches!(&error, ChainError::Config { reason } if reason.contains("not loaded")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_node_that_never_answers_times_out() {
    let dir = tempfile::tempdir().expect("dir");
    let stub = Stub::serve(|_| None).await;
    let chain = BitcoindBackend::new(
        &stub.url,
        WALLET,
        BitcoindAuth::CookieFile {
            cookie_file: cookie_file(dir.path(), COOKIE),
        },
        Duration::from_millis(300),
    )
    .expect("backend");
    let error = chain.tip_height().await.expect_err("hangs");
    assert!(matches!(error, ChainError::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[test]
fn bad_settings_are_refused_up_front() {
    let dir = tempfile::tempdir().expect("dir");
    let cookie = BitcoindAuth::CookieFile {
        cookie_file: cookie_file(dir.path(), COOKIE),
    };
    let missing = BitcoindAuth::CookieFile {
        cookie_file: dir.path().join("no-such-cookie"),
    };
    let cases = [
        ("http://127.0.0.1:8332", "wallet/../x", cookie.clone()),
        ("http://127.0.0.1:8332", "", cookie.clone()),
        ("http://rpc:pw@127.0.0.1:8332", WALLET, cookie),
        ("http://127.0.0.1:8332", WALLET, missing),
    ];
    for (url, wallet, auth) in cases {
        match BitcoindBackend::new(url, wallet, auth, Duration::from_secs(1)) {
            Err(ChainError::Config { reason }) => assert!(!reason.contains(":pw@"), "{reason}"),
            other => panic!("{url} {wallet:?}: expected a config error, got {other:?}"),
        }
    }
    let empty = BitcoindAuth::CookieFile {
        cookie_file: cookie_file(dir.path(), "\n"),
    };
    assert!(matches!(
        BitcoindBackend::new(
            "http://127.0.0.1:8332",
            WALLET,
            empty,
            Duration::from_secs(1)
        ),
        Err(ChainError::Config { .. })
    ));
}
