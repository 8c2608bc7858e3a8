//! The withdrawal lifecycle through the HTTP API, on SQLite and on PostgreSQL: request →
//! hold → approvals → signing round answered by real signer code → aggregate, finalize,
//! libbitcoinconsensus → gated broadcast → confirmation; and the audit log verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{new_key, Engine, Harness};
use custody_coordinator::accounts::Role;
use serde_json::json;

async fn full_lifecycle(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let mut operator = h.principal("ops@example.com", Role::Operator, None).await;
    let mut approver_a = h
        .principal(
            "alice@example.com",
            Role::Approver,
            Some(&h.approver_ids[0]),
        )
        .await;
    let mut approver_b = h
        .principal("bob@example.com", Role::Approver, Some(&h.approver_ids[1]))
        .await;
    let mut user = h.customer("carol@example.com").await;

    // The whitelisted address is not usable until its activation delay has passed.
    let code = h.totp(&user);
    let (st, v) = h
        .call("POST", "/v1/withdrawals", Some(&user.token), Some(&new_key()), Some(json!({ "asset": "BTC", "address": h.destination, "amount": 20_000_000, "totp": code })))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "address_not_yet_active");
    h.clock.advance(25 * 3600);
    h.relogin_all(&mut [&mut operator, &mut approver_a, &mut approver_b, &mut user])
        .await;

    // A password change starts a 24-hour hold.
    let code = h.totp(&user);
    let (st, v) = h
        .call("POST", "/v1/me/password", Some(&user.token), None, Some(json!({ "current": common::PASSWORD, "new": "another long passphrase", "totp": code })))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");

    let sync = h
        .call(
            "POST",
            "/v1/admin/utxos/sync",
            Some(&operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(sync.0, StatusCode::OK, "{}", sync.1);
    assert_eq!(sync.1["utxos"], json!(2));

    let key = new_key();
    let code = h.totp(&user);
    let body =
        json!({ "asset": "BTC", "address": h.destination, "amount": 20_000_000, "totp": code });
    let (st, w) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&user.token),
            Some(&key),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let id = w["id"].as_str().unwrap().to_owned();
    assert_eq!(w["state"], "pending_approval");
    assert_eq!(w["hold"]["active"], json!(true), "{w}");
    let reasons = w["hold"]["reasons"].to_string();
    assert!(reasons.contains("password changed"), "{reasons}");
    let until = w["hold"]["until"].as_i64().unwrap();
    assert!(
        until >= custody_coordinator::Clock::now(&h.clock) + 23 * 3600,
        "hold of at least 24 h from the change"
    );

    // The same idempotency key returns the same withdrawal, not a second one.
    let (st2, w2) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&user.token),
            Some(&key),
            Some(body),
        )
        .await;
    assert_eq!(st2, StatusCode::CREATED);
    assert_eq!(w2["id"], w["id"]);

    // Two distinct approvers sign the exact transaction.
    let digest = w["approval_digest"].as_str().unwrap().to_owned();
    for (i, a) in [&approver_a, &approver_b].into_iter().enumerate() {
        let code = h.totp(a);
        let sig = h.approval_signature(i, &digest);
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/withdrawals/{id}/approvals"),
                Some(&a.token),
                Some(&new_key()),
                Some(json!({ "signature": sig, "totp": code })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (_, v) = h
        .call(
            "GET",
            &format!("/v1/withdrawals/{id}"),
            Some(&user.token),
            None,
            None,
        )
        .await;
    assert_eq!(v["state"], "approved");

    h.upload_commitments(&operator, 4).await;
    // The hold still runs: no signing round.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{id}/round"),
            Some(&operator.token),
            Some(&new_key()),
            Some(json!({ "signers": [1, 3] })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "hold_active");

    h.clock.advance(24 * 3600);
    h.relogin_all(&mut [&mut operator]).await;
    let (st, round) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{id}/round"),
            Some(&operator.token),
            Some(&new_key()),
            Some(json!({ "signers": [1, 3] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{round}");
    let psbt = round["psbt"].as_str().unwrap().to_owned();

    // Signers 1 and 3 check the decision offline and answer.
    let a1 = h.sign_round(0, &psbt).expect("signer 1 accepts");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{id}/shares"),
            Some(&operator.token),
            Some(&new_key()),
            Some(json!({ "psbt": a1 })),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let a3 = h.sign_round(2, &psbt).expect("signer 3 accepts");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{id}/shares"),
            Some(&operator.token),
            Some(&new_key()),
            Some(json!({ "psbt": a3 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "signed");
    let txid = v["txid"].as_str().unwrap().to_owned();

    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{id}/broadcast"),
            Some(&operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["txid"], json!(txid));
    let on_chain = h
        .chain
        .transaction(&common::parse_txid(&txid))
        .await
        .unwrap()
        .expect("the backend has the transaction");
    assert!(on_chain
        .output
        .iter()
        .any(|o| o.value.to_sat() == 20_000_000));

    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    let (_, v) = h
        .call(
            "GET",
            &format!("/v1/withdrawals/{id}"),
            Some(&operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(v["state"], "confirmed", "{v}");

    // Velocity totals kept through every step match the withdrawals.
    let mut tx = h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    tx.rollback().await.unwrap();
    let verified = custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("audit log intact");
    assert!(verified.entries > 10);
    let kinds: Vec<String> = custody_coordinator::audit::entries(&h.app.db, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in [
        "withdrawal.requested",
        "withdrawal.approved",
        "withdrawal.round_exported",
        "withdrawal.signed",
        "withdrawal.broadcast",
        "withdrawal.confirmed",
        "event.password_change",
    ] {
        assert!(kinds.iter().any(|x| x == k), "audit log lacks {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    full_lifecycle(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    full_lifecycle(Engine::Postgres).await;
}
