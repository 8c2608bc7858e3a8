//! The Esplora backend against a loopback stub serving the Esplora REST API's shapes.

mod common;

use std::time::Duration;

use bitcoin::consensus::encode;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use common::{dead_url, json, text, Stub};
use custody_chain::{ChainBackend, ChainError, EsploraBackend, TxStatus};
use serde_json::json as j;

const BLOCK_HASH: &str = "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5";

fn script(tag: u8) -> ScriptBuf {
    let mut bytes = vec![0x51, 0x20];
    bytes.extend_from_slice(&[tag; 32]);
    ScriptBuf::from_bytes(bytes)
}

fn scripthash(script: &ScriptBuf) -> String {
    sha256::Hash::hash(script.as_bytes()).to_string()
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

fn backend(url: &str) -> EsploraBackend {
    EsploraBackend::new(url, Duration::from_secs(5)).expect("backend")
}

#[tokio::test]
async fn utxos_query_each_script_hash_and_parse_confirmed_and_mempool_outputs() {
    let (confirmed, mempool) = (script(1), script(2));
    let (hash_confirmed, hash_mempool) = (scripthash(&confirmed), scripthash(&mempool));
    let txid_a = Txid::from_byte_array([0xaa; 32]).to_string();
    let txid_b = Txid::from_byte_array([0xbb; 32]).to_string();
    let stub = Stub::serve(move |req| {
        if req.path == format!("/scripthash/{hash_confirmed}/utxo") {
            json(
                200,
                j!([{
                    "txid": txid_a, "vout": 1, "value": 50_000,
                    "status": {"confirmed": true, "block_height": 2_540_000,
                               "block_hash": BLOCK_HASH, "block_time": 1_700_000_000u64}
                }]),
            )
        } else if req.path == format!("/scripthash/{hash_mempool}/utxo") {
            json(
                200,
                j!([{"txid": txid_b, "vout": 0, "value": 1_200, "status": {"confirmed": false}}]),
            )
        } else {
            text(404, "not found")
        }
    })
    .await;

    let chain = backend(&format!("{}/", stub.url));
    let utxos = chain
        .utxos(&[confirmed.clone(), mempool.clone(), confirmed.clone()])
        .await
        .expect("utxos");
    assert_eq!(utxos.len(), 2);
    assert_eq!(utxos[0].outpoint.txid, Txid::from_byte_array([0xaa; 32]));
    assert_eq!(utxos[0].outpoint.vout, 1);
    assert_eq!(utxos[0].value, Amount::from_sat(50_000));
    assert_eq!(utxos[0].script_pubkey, confirmed);
    assert_eq!(utxos[0].height, Some(2_540_000));
    assert_eq!(utxos[1].height, None);
    assert_eq!(utxos[1].script_pubkey, mempool);
    assert_eq!(
        stub.paths(),
        [
            format!("GET /scripthash/{}/utxo", scripthash(&confirmed)),
            format!("GET /scripthash/{}/utxo", scripthash(&mempool)),
        ],
        "one request per distinct script, base URL without a doubled slash"
    );
}

#[tokio::test]
async fn broadcast_posts_the_hex_and_returns_the_txid() {
    let tx = signed_tx();
    let txid = tx.compute_txid();
    let stub = Stub::serve(move |req| match req.path.as_str() {
        "/tx" => text(200, txid.to_string()),
        _ => text(404, "not found"),
    })
    .await;
    assert_eq!(
        backend(&stub.url).broadcast(&tx).await.expect("broadcast"),
        txid
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].body, encode::serialize_hex(&tx).into_bytes());
}

#[tokio::test]
async fn a_node_rejection_is_not_retryable_and_carries_the_reason() {
    let tx = signed_tx();
    let txid = tx.compute_txid();
    let stub = Stub::serve(move |req| {
        let path = req.path.as_str();
        if path == "/tx" {
            text(
                400,
                r#"sendrawtransaction RPC error: {"code":-26,"message":"bad-txns-inputs-missingorspent"}"#,
            )
        } else if path == format!("/tx/{txid}/status") {
            json(200, j!({"confirmed": false}))
        } else {
            text(404, "Transaction not found")
        }
    })
    .await;
    let error = backend(&stub.url)
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
            assert!(
                reason.contains("bad-txns-inputs-missingorspent"),
                "{reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Before giving up, the backend checked that the node does not already have it.
    assert_eq!(
        stub.paths(),
        [
            "POST /tx".to_owned(),
            format!("GET /tx/{txid}/status"),
            format!("GET /tx/{txid}/raw"),
        ]
    );
}

#[tokio::test]
async fn rebroadcasting_a_known_transaction_is_ok() {
    let tx = signed_tx();
    let txid = tx.compute_txid();
    // Says "already in mempool" outright.
    let stub = Stub::serve(|_| {
        text(
            400,
            r#"sendrawtransaction RPC error: {"code":-26,"message":"txn-already-in-mempool"}"#,
        )
    })
    .await;
    assert_eq!(
        backend(&stub.url).broadcast(&tx).await.expect("known"),
        txid
    );

    // Says "missing inputs" because it is confirmed and its inputs are spent: the status
    // check finds it.
    let stub = Stub::serve(move |req| {
        let path = req.path.as_str();
        if path == "/tx" {
            text(
                400,
                r#"sendrawtransaction RPC error: {"code":-25,"message":"bad-txns-inputs-missingorspent"}"#,
            )
        } else if path == format!("/tx/{txid}/status") {
            json(
                200,
                j!({"confirmed": true, "block_height": 100, "block_hash": BLOCK_HASH,
                    "block_time": 1_700_000_000u64}),
            )
        } else if path == "/blocks/tip/height" {
            text(200, "100")
        } else {
            text(404, "not found")
        }
    })
    .await;
    assert_eq!(
        backend(&stub.url).broadcast(&tx).await.expect("known"),
        txid
    );
}

#[tokio::test]
async fn tx_status_tells_confirmed_mempool_and_unknown_apart() {
    let tx = signed_tx();
    let raw = encode::serialize(&tx);
    let (confirmed, pending, unknown) = (
        Txid::from_byte_array([1; 32]),
        tx.compute_txid(),
        Txid::from_byte_array([2; 32]),
    );
    let stub = Stub::serve(move |req| {
        let path = req.path.as_str();
        if path == format!("/tx/{confirmed}/status") {
            json(
                200,
                j!({"confirmed": true, "block_height": 100, "block_hash": BLOCK_HASH,
                    "block_time": 1_700_000_000u64}),
            )
        } else if path == format!("/tx/{pending}/status") || path == format!("/tx/{unknown}/status")
        {
            json(200, j!({"confirmed": false}))
        } else if path == format!("/tx/{pending}/raw") {
            Some((
                axum::http::StatusCode::OK,
                vec![("content-type", "application/octet-stream".to_owned())],
                raw.clone(),
            ))
        } else if path == "/blocks/tip/height" {
            text(200, "105")
        } else {
            text(404, "Transaction not found")
        }
    })
    .await;
    let chain = backend(&stub.url);
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
        chain.tx_status(&unknown).await.expect("status"),
        TxStatus::Unknown
    );
    assert_eq!(chain.tip_height().await.expect("tip"), 105);
}

#[tokio::test]
async fn fee_rate_uses_the_nearest_target_at_or_below_the_request() {
    let stub = Stub::serve(|req| match req.path.as_str() {
        "/fee-estimates" => json(
            200,
            j!({"1": 87.882, "2": 87.882, "3": 60.0, "6": 20.5, "144": 1.027, "1008": 1.0}),
        ),
        _ => text(404, "not found"),
    })
    .await;
    let chain = backend(&stub.url);
    // 20.5 sat/vB = 5125 sat/kwu.
    assert_eq!(
        chain.fee_rate(6).await.expect("fee"),
        FeeRate::from_sat_per_kwu(5_125)
    );
    assert_eq!(
        chain.fee_rate(10).await.expect("fee"),
        FeeRate::from_sat_per_kwu(5_125)
    );
    assert_eq!(
        chain.fee_rate(1008).await.expect("fee"),
        FeeRate::from_sat_per_vb_u32(1)
    );
    assert!(matches!(
        chain.fee_rate(0).await,
        Err(ChainError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_server_that_is_down_or_overloaded_is_a_retryable_error() {
    let down = backend(&dead_url().await);
    let error = down.tip_height().await.expect_err("nobody listens");
    assert!(matches!(error, ChainError::Unreachable { .. }), "{error:?}");
    assert!(error.is_retryable());
    let error = down
        .broadcast(&signed_tx())
        .await
        .expect_err("nobody listens");
    assert!(error.is_retryable(), "{error:?}");

    let stub = Stub::serve(|_| text(503, "Service Unavailable")).await;
    let error = backend(&stub.url).tip_height().await.expect_err("503");
    assert!(
        matches!(&error, ChainError::Unreachable { reason, .. } if reason.contains("503")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let stub = Stub::serve(|_| None).await;
    let chain = EsploraBackend::new(&stub.url, Duration::from_millis(300)).expect("backend");
    let error = chain.tip_height().await.expect_err("hangs");
    assert!(matches!(error, ChainError::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn garbage_is_a_bad_response() {
    let stub = Stub::serve(|_| text(200, "not a number")).await;
    let error = backend(&stub.url).tip_height().await.expect_err("garbage");
    assert!(matches!(error, ChainError::BadResponse { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[test]
fn urls_with_credentials_or_other_schemes_are_refused() {
    for url in [
        "https://user:secret@esplora.example/api",
        "ftp://esplora.example",
        "http://",
    ] {
        match EsploraBackend::new(url, Duration::from_secs(1)) {
            Err(ChainError::Config { reason }) => assert!(!reason.contains("secret")),
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }
}
