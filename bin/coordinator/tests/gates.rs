//! Every way around the gates that a user, an insider or a race might try, refused; and a
//! crash at each step resumed. Each runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{new_key, Engine, Harness, B64};
use custody_coordinator::accounts::Role;
use serde_json::json;

async fn hold_placed_after_signing_blocks_broadcast(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    assert_eq!(h.state(&f).await, "signed");
    // The exchange's account system reports a 2FA reset for the customer.
    let (st, v) = h
        .call("POST", "/v1/events", Some(common::INGEST_TOKEN), None, Some(json!({ "email": "carol@example.com", "kind": "two_factor_reset", "occurred_at": 0 })))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "hold_active");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("two-factor authentication reset"),
        "{v}"
    );
    assert_eq!(h.state(&f).await, "signed");
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 0);
    // 47 hours later it is still held (48-hour floor); after 48 it goes.
    h.clock.advance(47 * 3600);
    let mut op = f.operator.clone();
    h.relogin(&mut op).await;
    let f = common::Flow { operator: op, ..f };
    assert_eq!(h.broadcast(&f).await.0, StatusCode::CONFLICT);
    h.clock.advance(3600);
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
on_both!(hold_placed_after_signing_blocks_broadcast);

async fn approvals_cannot_be_forged_or_doubled(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.requested(10_000_000).await;
    // The customer cannot approve their own withdrawal.
    let code = h.totp(&f.user);
    let sig = h.approval_signature(0, &f.digest);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/approvals", f.id),
            Some(&f.user.token),
            Some(&new_key()),
            Some(json!({ "signature": sig, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // One approver, twice: counted once.
    assert_eq!(h.approve(&f, 0).await.0, StatusCode::OK);
    let (st, v) = h.approve(&f, 0).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "already_approved");
    // A second account carrying the same identity card is the same approver.
    let twin = h
        .principal(
            "alice2@example.com",
            Role::Approver,
            Some(&h.approver_ids[0]),
        )
        .await;
    let code = h.totp(&twin);
    let sig = h.approval_signature(0, &f.digest);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/approvals", f.id),
            Some(&twin.token),
            Some(&new_key()),
            Some(json!({ "signature": sig, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // An approver the policy does not list does not count.
    let outsider = h
        .principal(
            "mallory@example.com",
            Role::Approver,
            Some(&h.approver_ids[2]),
        )
        .await;
    let code = h.totp(&outsider);
    let sig = h.approval_signature(2, &f.digest);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/approvals", f.id),
            Some(&outsider.token),
            Some(&new_key()),
            Some(json!({ "signature": sig, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // A signature over another digest is refused.
    let code = h.totp(&f.approvers[1]);
    let wrong = h.approval_signature(1, &"00".repeat(32));
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/approvals", f.id),
            Some(&f.approvers[1].token),
            Some(&new_key()),
            Some(json!({ "signature": wrong, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(h.state(&f).await, "pending_approval");
    // No round without the quorum.
    h.clock.advance(25 * 3600);
    let mut op = f.operator.clone();
    h.relogin(&mut op).await;
    let f = common::Flow { operator: op, ..f };
    let (st, v) = h.round(&f).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_approved");
}
on_both!(approvals_cannot_be_forged_or_doubled);

/// A further withdrawal by the flow's customer; its id and approval digest on success.
async fn another(h: &Harness, f: &common::Flow, amount: u64) -> (StatusCode, serde_json::Value) {
    let code = h.totp(&f.user);
    h.call(
        "POST",
        "/v1/withdrawals",
        Some(&f.user.token),
        Some(&new_key()),
        Some(json!({ "asset": "BTC", "address": h.destination, "amount": amount, "totp": code })),
    )
    .await
}

async fn velocity_limits_count_approved_withdrawals_at_request_and_again_at_signing(
    engine: Engine,
) {
    // No unusual-withdrawal holds: this is about the policy's velocity limit alone (the
    // harness policy allows 1.5 BTC a day).
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let a = h.requested(60_000_000).await;
    h.fund_coins(6, 100_000_000).await;
    // Requests that are not approved yet do not count: two more of 0.6 BTC are accepted.
    let mut flows = vec![a];
    for _ in 0..2 {
        let (st, w) = another(&h, &flows[0], 60_000_000).await;
        assert_eq!(st, StatusCode::CREATED, "{w}");
        let f = common::Flow {
            operator: flows[0].operator.clone(),
            approvers: flows[0].approvers.clone(),
            user: flows[0].user.clone(),
            id: w["id"].as_str().unwrap().to_owned(),
            digest: w["approval_digest"].as_str().unwrap().to_owned(),
        };
        flows.push(f);
    }
    for f in &flows {
        for i in 0..2 {
            let (st, v) = h.approve(f, i).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        assert_eq!(h.state(f).await, "approved");
    }
    // Approved ones do: 1.8 BTC of the day's 1.5 are committed, so a fourth is refused and
    // the answer says what was used.
    let (st, v) = another(&h, &flows[0], 10_000).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "policy_denied");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("150000000 BTC per 86400 s"), "{message}");
    assert!(message.contains("180000000 BTC already sent"), "{message}");
    // Checked again before signing, without the withdrawal itself: the other two (1.2
    // BTC) and this one (0.6) are over the limit, so no round is exported.
    let (st, v) = h.round(&flows[0]).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "policy_denied");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("120000000 BTC already sent"), "{message}");
    // A day later the window is empty again and the round goes ahead.
    h.clock.advance(86_400);
    let mut op = flows[0].operator.clone();
    h.relogin(&mut op).await;
    let f = common::Flow {
        operator: op,
        approvers: flows[0].approvers.clone(),
        user: flows[0].user.clone(),
        id: flows[0].id.clone(),
        digest: flows[0].digest.clone(),
    };
    let (st, v) = h.round(&f).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The running totals the limit was read from still match the withdrawals.
    let mut tx = h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
}
on_both!(velocity_limits_count_approved_withdrawals_at_request_and_again_at_signing);

async fn a_spike_against_the_accounts_own_history_is_held(engine: Engine) {
    // Only the velocity-spike rule scores, and it alone holds.
    let Some(mut h) = Harness::with_config(engine, |c| {
        c.risk.hold_score = 40;
        c.risk.velocity_weight = 40;
        c.risk.velocity_multiplier = 3.0;
        c.risk.new_destination_weight = 0;
        c.risk.large_amount_weight = 0;
        c.risk.new_ip_weight = 0;
        c.risk.recent_sensitive_change_weight = 0;
    })
    .await
    else {
        return;
    };
    let mut f = h.requested(3_000_000).await;
    h.fund_coins(6, 100_000_000).await;
    // A refused withdrawal is not history: if it counted, the average below would be
    // 34 times higher and nothing would be a spike.
    let (st, v) = another(&h, &f, 100_000_001).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    h.clock.advance(2 * 86_400);
    h.relogin(&mut f.user).await;
    // 3 000 000 sat in the 30 days before the last one: a daily average of 100 000 sat;
    // a day's total up to three times that is ordinary.
    let (st, b) = another(&h, &f, 10_000).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["risk"]["score"], 0, "{b}");
    assert_eq!(b["hold"]["active"], false, "{b}");
    let (st, c) = another(&h, &f, 400_000).await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["risk"]["score"], 40, "{c}");
    let reasons = c["risk"]["reasons"].to_string();
    assert!(
        reasons.contains(
            "24-hour total 410000 sat of BTC is above 3× the account's daily average of the last 30 days (100000 sat)"
        ),
        "{reasons}"
    );
    assert_eq!(c["hold"]["active"], true, "{c}");
    let now = custody_coordinator::Clock::now(&h.clock);
    assert!(c["hold"]["until"].as_i64().unwrap() > now, "{c}");
}
on_both!(a_spike_against_the_accounts_own_history_is_held);

async fn a_totp_code_sent_by_racing_withdrawals_is_accepted_once(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.requested(10_000).await;
    // Enough coins for each racer's candidates (PostgreSQL locks up to 8 while it looks).
    h.fund_coins(100, 100_000_000).await;
    let code = h.totp(&f.user);
    // Four withdrawals with the same code at once (PostgreSQL runs them concurrently: the
    // code's compare-and-set in each write batch decides).
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (app, token) = (h.app.clone(), f.user.token.clone());
        let body =
            json!({ "asset": "BTC", "address": h.destination, "amount": 20_000, "totp": code });
        tasks.push(tokio::spawn(async move {
            common::call(
                &app,
                "POST",
                "/v1/withdrawals",
                Some(&token),
                Some(&new_key()),
                Some(body),
                "10.0.0.1",
            )
            .await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        if st == StatusCode::CREATED {
            accepted += 1;
        } else {
            assert_eq!(v["error"]["code"], "bad_2fa", "{v}");
        }
    }
    assert_eq!(accepted, 1, "one code, one withdrawal");
    // Nothing of the refused ones was kept: the first withdrawal and the accepted one,
    // and only their coins reserved.
    let (st, list) = h
        .call("GET", "/v1/withdrawals", Some(&f.user.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let n = list
        .as_array()
        .or_else(|| list["withdrawals"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(n, 2, "{list}");
    let reserved: i64 = {
        use sqlx::Row;
        sqlx::query(
            "SELECT COUNT(DISTINCT reserved_by) AS n FROM utxos WHERE reserved_by IS NOT NULL",
        )
        .fetch_one(h.app.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
    };
    assert_eq!(reserved, 2);
}
on_both!(a_totp_code_sent_by_racing_withdrawals_is_accepted_once);

async fn changing_the_destination_after_approval_is_refused(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let mut f = h.requested(10_000_000).await;
    for i in 0..2 {
        assert_eq!(h.approve(&f, i).await.0, StatusCode::OK);
    }
    // An insider with database access swaps the stored transaction for one paying
    // another (also whitelisted) address.
    let wallet = h.app.wallet.clone().unwrap();
    let utxos: Vec<custody_bitcoin::WalletUtxo> = h
        .funded
        .iter()
        .enumerate()
        .map(|(i, op)| custody_bitcoin::WalletUtxo {
            outpoint: *op,
            txout: bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(50_000_000),
                script_pubkey: wallet
                    .descriptor
                    .derive(custody_bitcoin::Branch::Receive, u32::try_from(i).unwrap())
                    .unwrap()
                    .script_pubkey(),
            },
            branch: custody_bitcoin::Branch::Receive,
            index: u32::try_from(i).unwrap(),
            prev_tx: None,
        })
        .collect();
    let other: bitcoin::Address = common::regtest_address(8)
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .assume_checked();
    let evil = custody_bitcoin::build_psbt(
        &wallet.descriptor,
        &utxos,
        &[custody_bitcoin::Payment {
            address: other,
            amount: bitcoin::Amount::from_sat(10_000_000),
        }],
        &custody_bitcoin::BuildOptions::new(bitcoin::FeeRate::from_sat_per_vb(2).unwrap(), 5),
    )
    .unwrap();
    sqlx::query("UPDATE withdrawals SET psbt = $1, address = $2 WHERE id = $3")
        .bind(B64.encode(evil.serialize()))
        .bind(common::regtest_address(8))
        .bind(&f.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    h.clock.advance(25 * 3600);
    h.relogin(&mut f.operator).await;
    let (st, v) = h.round(&f).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "transaction_changed");
    // Swapping the txid too leaves the approvals over the old transaction: still refused.
    sqlx::query("UPDATE withdrawals SET txid = $1 WHERE id = $2")
        .bind(evil.unsigned_tx.compute_txid().to_string())
        .bind(&f.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let (st, v) = h.round(&f).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "decision_invalid", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approvals"),
        "{v}"
    );
}
on_both!(changing_the_destination_after_approval_is_refused);

async fn racing_broadcasts_send_once(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    let (a, b) = tokio::join!(h.broadcast(&f), h.broadcast(&f));
    let statuses = [a.0, b.0];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(h.audit_count("withdrawal.broadcasting").await, 1);
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 1);
}
on_both!(racing_broadcasts_send_once);

async fn freeze_stops_rounds_and_broadcasts(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&f.operator.token),
            None,
            Some(json!({ "reason": "incident 42" })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::LOCKED, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("incident 42"));
    // Operators may freeze but not unfreeze.
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/unfreeze",
            Some(&f.operator.token),
            None,
            Some(json!({ "reason": "x" })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let admin = h.principal("root@example.com", Role::Admin, None).await;
    let code = h.totp(&admin);
    let (st, v) = h
        .call(
            "POST",
            "/v1/admin/unfreeze",
            Some(&admin.token),
            None,
            Some(json!({ "reason": "resolved", "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(h.broadcast(&f).await.0, StatusCode::OK);
    assert!(h.audit_count("freeze.on").await == 1 && h.audit_count("freeze.off").await == 1);
}
on_both!(freeze_stops_rounds_and_broadcasts);

async fn an_account_freeze_stops_only_that_account(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    let other = h.customer("ivan@example.com").await;
    let admin = h.principal("root@example.com", Role::Admin, None).await;
    let freeze = |id: &str, reason: &str| json!({ "principal_id": id, "reason": reason });
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&f.operator.token),
            None,
            Some(freeze(&other.id, "phishing report")),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&f.operator.token),
            None,
            Some(freeze(&f.user.id, "this wasn't me")),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::LOCKED, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this account is frozen"),
        "{v}"
    );
    assert_eq!(h.state(&f).await, "signed");
    // Lifting the requester's freeze is enough, though the other account stays frozen.
    let mut body = freeze(&f.user.id, "confirmed by phone");
    body["totp"] = json!(h.totp(&admin));
    let (st, v) = h
        .call(
            "POST",
            "/v1/admin/unfreeze",
            Some(&admin.token),
            None,
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
on_both!(an_account_freeze_stops_only_that_account);

/// A chain backend that is down.
struct Down;

#[async_trait::async_trait]
impl custody_chain::ChainBackend for Down {
    async fn utxos(
        &self,
        _: &[bitcoin::ScriptBuf],
    ) -> Result<Vec<custody_chain::Utxo>, custody_chain::ChainError> {
        Err(down())
    }
    async fn broadcast(
        &self,
        _: &bitcoin::Transaction,
    ) -> Result<bitcoin::Txid, custody_chain::ChainError> {
        Err(down())
    }
    async fn tx_status(
        &self,
        _: &bitcoin::Txid,
    ) -> Result<custody_chain::TxStatus, custody_chain::ChainError> {
        Err(down())
    }
    async fn tip_height(&self) -> Result<u32, custody_chain::ChainError> {
        Err(down())
    }
    async fn fee_rate(&self, _: u16) -> Result<bitcoin::FeeRate, custody_chain::ChainError> {
        Err(down())
    }
    fn name(&self) -> &'static str {
        "down"
    }
}

fn down() -> custody_chain::ChainError {
    custody_chain::ChainError::Unreachable {
        backend: "down",
        reason: "test backend is down".into(),
    }
}

async fn restart_at_every_step_resumes(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let restart = |h: &mut Harness| {
        let config = h.config.clone();
        let clock = h.clock.clone();
        async move {
            custody_coordinator::build_app(config, Arc::new(clock))
                .await
                .expect("restart")
        }
    };
    let mut f = h.requested(10_000_000).await;
    h.app = restart(&mut h).await;
    assert_eq!(h.state(&f).await, "pending_approval");
    assert_eq!(h.approve(&f, 0).await.0, StatusCode::OK);
    h.app = restart(&mut h).await;
    assert_eq!(h.approve(&f, 1).await.0, StatusCode::OK);
    h.app = restart(&mut h).await;
    assert_eq!(h.state(&f).await, "approved");
    h.clock.advance(25 * 3600);
    h.relogin(&mut f.operator).await;
    let (st, round) = h.round(&f).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    h.app = restart(&mut h).await;
    // Asking again after a restart gives the same round, not new commitments.
    let (_, again) = h.round(&f).await;
    assert_eq!(again["psbt"], round["psbt"]);
    let psbt = round["psbt"].as_str().unwrap().to_owned();
    let a1 = h.sign_round(0, &psbt).unwrap();
    assert!(h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/shares", f.id),
            Some(&f.operator.token),
            Some(&new_key()),
            Some(json!({ "psbt": a1 }))
        )
        .await
        .0
        .is_success());
    h.app = restart(&mut h).await;
    let a2 = h.sign_round(1, &psbt).unwrap();
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/shares", f.id),
            Some(&f.operator.token),
            Some(&new_key()),
            Some(json!({ "psbt": a2 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The node is down when the broadcast starts: the withdrawal stays `broadcasting`.
    h.app.chain = Some(Arc::new(Down));
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(h.state(&f).await, "broadcasting");
    // A second broadcast call cannot start another.
    assert_eq!(h.broadcast(&f).await.0, StatusCode::CONFLICT);
    // Restart with the node back: the worker finishes the broadcast, once.
    h.app = restart(&mut h).await;
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "broadcast");
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 1);
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact across restarts");
}
on_both!(restart_at_every_step_resumes);

async fn audit_verify_catches_edits(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let _f = h.requested(10_000_000).await;
    let v = custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("intact");
    assert!(v.entries > 5);
    sqlx::query("UPDATE audit_log SET data = '{\"amount\":1}' WHERE seq = 3")
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let e = custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect_err("edited");
    assert!(e.to_string().contains("entry 3 was altered"), "{e}");
}
on_both!(audit_verify_catches_edits);

async fn audit_verify_catches_removed_and_truncated(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let _f = h.requested(10_000_000).await;
    let last = custody_coordinator::audit::verify(&h.app.db)
        .await
        .unwrap()
        .entries;
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(last)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let e = custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect_err("truncated");
    assert!(e.to_string().contains("entries were removed"), "{e}");
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let e = custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect_err("gap");
    assert!(e.to_string().contains("removed or reordered"), "{e}");
}
on_both!(audit_verify_catches_removed_and_truncated);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_on_one_postgres_race_the_same_withdrawal() {
    let Some(mut h) = Harness::new(Engine::Postgres).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    let second = custody_coordinator::build_app(h.config.clone(), Arc::new(h.clock.clone()))
        .await
        .unwrap();
    let path = format!("/v1/withdrawals/{}/broadcast", f.id);
    for _ in 0..1 {
        let (a, b) = tokio::join!(
            common::call(
                &h.app,
                "POST",
                &path,
                Some(&f.operator.token),
                None,
                None,
                "10.0.0.1"
            ),
            common::call(
                &second,
                "POST",
                &path,
                Some(&f.operator.token),
                None,
                None,
                "10.0.0.1"
            ),
        );
        assert_eq!(
            [a.0, b.0].iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{a:?} {b:?}"
        );
    }
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 1);
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("one chain despite two writers");
}

/// Entries commit with their change (a rolled-back transaction leaves none), and chainers
/// racing each other (several tasks; on PostgreSQL several connections) chain every
/// committed entry exactly once, in the order each transaction wrote them.
async fn audit_entries_commit_with_their_change_and_chain_once(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let db = h.app.db.clone();
    let before = custody_coordinator::audit::verify(&db)
        .await
        .unwrap()
        .entries;
    let mut tx = db.begin().await.unwrap();
    custody_coordinator::audit::append(&mut tx, 1, "test.rolled_back", "test", "x", &json!({}))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // 40 writers of 5 entries each, racing 3 chainers.
    let mut tasks = Vec::new();
    for w in 0..40 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            for i in 0..5 {
                custody_coordinator::audit::append(
                    &mut tx,
                    1,
                    "test.entry",
                    "test",
                    &format!("writer-{w}"),
                    &json!({ "i": i }),
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }));
    }
    for _ in 0..3 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                custody_coordinator::audit::chain_pending(&db)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = custody_coordinator::audit::verify(&db).await.unwrap();
    assert_eq!(
        v.entries,
        before + 200,
        "every committed entry chained once"
    );
    let all = custody_coordinator::audit::entries(&db, before, 1000)
        .await
        .unwrap();
    assert!(all.iter().all(|e| e.kind != "test.rolled_back"));
    for w in 0..40 {
        let order: Vec<String> = all
            .iter()
            .filter(|e| e.subject == format!("writer-{w}"))
            .map(|e| e.data.clone())
            .collect();
        let expected: Vec<String> = (0..5).map(|i| json!({ "i": i }).to_string()).collect();
        assert_eq!(order, expected, "writer {w}'s entries in the order written");
    }
    // A backlog chained in one pass (groups of every size the chainer writes at once):
    // every entry once, in order, the chain intact.
    let mut tx = db.begin().await.unwrap();
    for i in 0..157 {
        custody_coordinator::audit::append(
            &mut tx,
            2,
            "test.backlog",
            "test",
            "b",
            &json!({ "i": i }),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        custody_coordinator::audit::chain_pending(&db)
            .await
            .unwrap(),
        157
    );
    let v = custody_coordinator::audit::verify(&db).await.unwrap();
    assert_eq!(v.entries, before + 357);
    let backlog: Vec<String> = custody_coordinator::audit::entries(&db, before + 200, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect();
    let expected: Vec<String> = (0..157).map(|i| json!({ "i": i }).to_string()).collect();
    assert_eq!(backlog, expected);
}
on_both!(audit_entries_commit_with_their_change_and_chain_once);

/// Racing withdrawals, half of which fail after they wrote (their TOTP step and change
/// index are taken before coin selection finds too little): on SQLite they share commits
/// (ADR 0023), so this is what a failing request in a group must leave behind — nothing of
/// itself, everything of the others. The same on PostgreSQL, one transaction each.
async fn racing_withdrawals_keep_exactly_the_accepted_ones(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    // 300 coins of 0.001 BTC (0.3 BTC in all): enough that on PostgreSQL the failing
    // requests, which lock up to 64 candidates each while they look, leave coins for the
    // others. Only they race: the harness's two coins leave the set (nothing syncs again).
    h.fund_coins(300, 100_000).await;
    for o in &h.funded {
        sqlx::query("DELETE FROM utxos WHERE outpoint = $1")
            .bind(o.to_string())
            .execute(h.app.db.pool())
            .await
            .unwrap();
    }
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(h.customer(&format!("racer{i}@example.com")).await);
    }
    h.clock.advance(25 * 3600);
    for u in &mut users {
        h.relogin(u).await;
    }
    let change_index = || async {
        sqlx::query_scalar::<_, i64>("SELECT next_change_index FROM wallet_state WHERE id = 1")
            .fetch_one(h.app.db.pool())
            .await
            .unwrap()
    };
    let change_before = change_index().await;
    h.clock.advance(30);
    let now = custody_coordinator::Clock::now(&h.clock);
    let codes: Vec<String> = users
        .iter()
        .map(|u| {
            totp_rs::TOTP::from_url(u.totp_uri.as_deref().unwrap())
                .unwrap()
                .generate(u64::try_from(now).unwrap())
        })
        .collect();
    let router = h.router();
    let send = |i: usize, amount: u64| {
        let body =
            json!({ "asset": "BTC", "address": h.destination, "amount": amount, "totp": codes[i] });
        let (router, token) = (router.clone(), users[i].token.clone());
        async move {
            let (key, ip) = (new_key(), format!("10.9.0.{}", i + 1));
            let answer = common::call_router(
                router.clone(),
                "POST",
                "/v1/withdrawals",
                Some(&token),
                Some(&key),
                Some(body.clone()),
                &ip,
            )
            .await;
            // The same key again: the stored answer, not a second withdrawal.
            let again = common::call_router(
                router,
                "POST",
                "/v1/withdrawals",
                Some(&token),
                Some(&key),
                Some(body),
                &ip,
            )
            .await;
            (answer, again)
        }
    };
    // Even racers ask for 0.003 BTC; odd ones for 0.5 BTC, more than all the coins.
    let mut tasks = Vec::new();
    for i in 0..users.len() {
        let amount = if i % 2 == 0 { 300_000 } else { 50_000_000 };
        tasks.push(tokio::spawn(send(i, amount)));
    }
    let mut accepted = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let ((st, v), (st2, v2)) = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(st, StatusCode::CREATED, "{v}");
            assert_eq!(st2, StatusCode::CREATED, "{v2}");
            assert_eq!(
                v["id"], v2["id"],
                "a repeat answers with the stored withdrawal"
            );
            accepted.push(v["id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(st, StatusCode::CONFLICT, "{v}");
            assert_eq!(v["error"]["code"], "cannot_build", "{v}");
        }
    }
    for (i, u) in users.iter().enumerate() {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM withdrawals WHERE principal_id = $1")
            .bind(&u.id)
            .fetch_one(h.app.db.pool())
            .await
            .unwrap();
        assert_eq!(n, i64::from(i % 2 == 0), "racer {i}");
    }
    // Coins are reserved by the accepted withdrawals only.
    let mut holders: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT reserved_by FROM utxos WHERE reserved_by IS NOT NULL")
            .fetch_all(h.app.db.pool())
            .await
            .unwrap();
    holders.sort();
    accepted.sort();
    assert_eq!(holders, accepted);
    assert_eq!(h.audit_count("withdrawal.requested").await, 4);
    if engine == Engine::Sqlite {
        // One change index per accepted withdrawal: the failed ones' claims were undone.
        // (PostgreSQL claims blocks of indexes outside the request.)
        assert_eq!(change_index().await, change_before + 4);
    }
    // A failed request's TOTP step was undone with it: the same code still works once.
    let ((st, v), _) = send(1, 300_000).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ((st, v), _) = send(3, 300_000).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ((st, v), _) = send(3, 300_000).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a code is used once: {v}");
}
on_both!(racing_withdrawals_keep_exactly_the_accepted_ones);

/// Withdrawals stored before the velocity running totals existed (migration 0013) are in
/// them after the upgrade, so a limit counts them as before.
async fn running_totals_start_from_the_withdrawals_already_stored(engine: Engine) {
    // The migrations before the totals, as an older release applied them.
    let Some((_dir, db)) = older_database(engine, "0013").await else {
        return;
    };
    // Counted and not, two hours apart, and Ethereum ones of wei beyond BIGINT.
    let rows = [
        ("a", "BTC", 1_000, None, "approved", 1_800_000_000),
        ("b", "BTC", 2_000, None, "confirmed", 1_800_000_100),
        ("c", "BTC", 4_000, None, "pending_approval", 1_800_000_200),
        ("d", "BTC", 8_000, None, "rejected", 1_800_000_300),
        ("e", "BTC", 16_000, None, "signing", 1_800_007_300),
        (
            "f",
            "ETH",
            0,
            Some("123456789012345678901234567890123456789"),
            "approved",
            1_800_000_000,
        ),
        (
            "g",
            "ETH",
            0,
            Some("1000000000000000000"),
            "broadcast",
            1_800_000_001,
        ),
        ("h", "ETH", 0, Some("5"), "failed", 1_800_000_002),
    ];
    for (id, asset, amount, text, state, at) in rows {
        sqlx::query(
            "INSERT INTO withdrawals (id, principal_id, asset, address, amount, amount_text, state, \
             version, created_at, updated_at, hold_until, risk_score, risk_reasons, policy_hash, \
             required_approvals) VALUES ($1, 'p', $2, 'x', $3, $4, $5, 1, $6, $6, 0, 0, '[]', '', 0)",
        )
        .bind(id)
        .bind(asset)
        .bind(amount)
        .bind(text)
        .bind(state)
        .bind(at)
        .execute(db.pool())
        .await
        .unwrap();
    }
    db.migrate().await.unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    let kept = sqlx::query(
        "SELECT asset, bucket, n, t0, t1, t2, t3, t4 FROM velocity_buckets ORDER BY asset, bucket",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let kept: Vec<(String, i64, i64, u128)> = kept
        .iter()
        .map(|r| {
            use sqlx::Row as _;
            let mut total = 0u128;
            for k in (0..5).rev() {
                let limb: i64 = r.get(format!("t{k}").as_str());
                total = total * 1_000_000_000 + u128::try_from(limb).unwrap();
            }
            (r.get("asset"), r.get("bucket"), r.get("n"), total)
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            ("BTC".to_owned(), 1_800_000_000, 2, 3_000),
            ("BTC".to_owned(), 1_800_007_200, 1, 16_000),
            (
                "ETH".to_owned(),
                1_800_000_000,
                2,
                123_456_789_012_345_678_901_234_567_890_123_456_789 + 1_000_000_000_000_000_000
            ),
        ]
    );
}
on_both!(running_totals_start_from_the_withdrawals_already_stored);

/// A chain backend that cannot take the transaction: the request answers 502 with the
/// reason, the withdrawal stays `broadcasting` with the reason recorded (it was released
/// by every gate, so it is not sent back), and the worker sends it once the backend is
/// back — once.
async fn a_broadcast_the_backend_refuses_stays_broadcasting_and_is_sent_again(engine: Engine) {
    let Some(mut h) = Harness::new(engine).await else {
        return;
    };
    let f = h.signed(10_000_000).await;
    // The backend is down: its file is unreadable.
    let path = h.chain.path().to_owned();
    let saved = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"not a chain").unwrap();
    let (st, v) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "broadcast_failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("stays broadcasting"), "{message}");
    let w = h.view(&f).await;
    assert_eq!(w["state"], "broadcasting", "{w}");
    assert!(w["failure"].as_str().is_some_and(|r| !r.is_empty()), "{w}");
    // Still down: the worker tries and leaves it as it is.
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "broadcasting");
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 0);
    // Back: the next tick sends it, clears the reason and records it once.
    std::fs::write(&path, saved).unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    let w = h.view(&f).await;
    assert_eq!(w["state"], "broadcast", "{w}");
    assert!(w["failure"].is_null(), "{w}");
    let txid = common::parse_txid(w["txid"].as_str().unwrap());
    assert!(h.chain.transaction(&txid).await.unwrap().is_some());
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.audit_count("withdrawal.broadcast").await, 1);
}
on_both!(a_broadcast_the_backend_refuses_stays_broadcasting_and_is_sent_again);

/// The worker compares the recent velocity totals with their withdrawals every hour:
/// quiet while they agree; a total that drifted (a limit reading a wrong sum) is audited
/// and sent to the operators' channels until it is rebuilt.
async fn the_worker_reports_velocity_totals_that_drifted(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let f = h.requested(10_000_000).await;
    for i in 0..2 {
        let (st, v) = h.approve(&f, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let drift_alerts = |h: &Harness| {
        let db = h.app.db.clone();
        async move {
            let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'velocity.drift'")
                .fetch_one(db.pool())
                .await
                .unwrap();
            sqlx::Row::get::<i64, _>(&r, "n")
        }
    };
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(drift_alerts(&h).await, 0, "totals that agree raise nothing");
    assert_eq!(h.audit_count("velocity.drift_found").await, 0);
    // A total written around the coordinator.
    sqlx::query("UPDATE velocity_buckets SET n = n + 1, t0 = t0 + 5")
        .execute(h.app.db.pool())
        .await
        .unwrap();
    // Not checked again before the hour is up.
    h.clock.advance(60);
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(drift_alerts(&h).await, 0);
    h.clock.advance(3600);
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(drift_alerts(&h).await, 1);
    assert_eq!(h.audit_count("velocity.drift_found").await, 1);
    let found = custody_coordinator::velocity::self_check(&h.app)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kept.0, found[0].actual.0 + 1);
    assert_eq!(found[0].kept.1, found[0].actual.1 + 5);
    // Rebuilt: quiet again.
    custody_coordinator::velocity::rebuild_audited(&h.app.db, "test", 0)
        .await
        .unwrap();
    assert!(custody_coordinator::velocity::self_check(&h.app)
        .await
        .unwrap()
        .is_empty());
}
on_both!(the_worker_reports_velocity_totals_that_drifted);

/// Rows of `velocity_buckets`: (bucket, stripe).
async fn bucket_rows(h: &Harness) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT bucket, stripe FROM velocity_buckets ORDER BY bucket, stripe")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
}

/// Every total still equals its withdrawals.
async fn totals_agree(h: &Harness) {
    let mut tx = h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
}

/// On PostgreSQL each backend adds to its own row of an hour; the hourly worker folds the
/// rows of hours before the previous one into one (stripe 0) without changing a total,
/// waits at most briefly for a row an approval holds (and tries again next hour), and
/// folds in what a late approval added to an old hour later. SQLite has one row already.
async fn the_worker_folds_old_velocity_rows_and_gives_way_to_approvals(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let f = h.requested(10_000_000).await;
    let (st, w) = another(&h, &f, 20_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let late = common::Flow {
        operator: f.operator.clone(),
        approvers: f.approvers.clone(),
        user: f.user.clone(),
        id: w["id"].as_str().unwrap().to_owned(),
        digest: w["approval_digest"].as_str().unwrap().to_owned(),
    };
    for i in 0..2 {
        let (st, v) = h.approve(&f, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = h.approve(&late, 0).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let fresh = bucket_rows(&h).await;
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    let now = custody_coordinator::Clock::now(&h.clock);
    if engine == Engine::Sqlite {
        assert_eq!(fresh[0].1, 0);
        assert_eq!(
            custody_coordinator::velocity::compact(&h.app.db, now + 3 * 3600)
                .await
                .unwrap(),
            0
        );
        return;
    }
    assert_ne!(fresh[0].1, 0, "a backend's own row");
    // The current and previous hours keep their rows.
    assert_eq!(
        custody_coordinator::velocity::compact(&h.app.db, now + 3600)
            .await
            .unwrap(),
        0
    );
    assert_eq!(bucket_rows(&h).await, fresh);
    h.clock.advance(3 * 3600);
    // An approval's transaction holds the row: the fold gives way, changing nothing.
    let mut holder = h.app.db.pool().begin().await.unwrap();
    sqlx::query("SELECT n FROM velocity_buckets FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    let now = custody_coordinator::Clock::now(&h.clock);
    let gave_way = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        custody_coordinator::velocity::compact(&h.app.db, now),
    )
    .await
    .expect("does not wait for the approval")
    .unwrap();
    assert_eq!(gave_way, 0);
    holder.rollback().await.unwrap();
    assert_eq!(bucket_rows(&h).await, fresh);
    // The worker's hourly run folds it.
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(bucket_rows(&h).await, vec![(fresh[0].0, 0)]);
    totals_agree(&h).await;
    // A withdrawal of that hour approved now adds a backend's row to it again ...
    let (st, v) = h.approve(&late, 1).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rows = bucket_rows(&h).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    totals_agree(&h).await;
    // ... which the next hourly run folds in.
    h.clock.advance(3600);
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(bucket_rows(&h).await, vec![(fresh[0].0, 0)]);
    totals_agree(&h).await;
}
on_both!(the_worker_folds_old_velocity_rows_and_gives_way_to_approvals);

async fn cancel(
    h: &Harness,
    who: &common::Session,
    id: &str,
    body: serde_json::Value,
    key: &str,
) -> (StatusCode, serde_json::Value) {
    h.call(
        "POST",
        &format!("/v1/withdrawals/{id}/cancel"),
        Some(&who.token),
        Some(key),
        Some(body),
    )
    .await
}

/// An operator's cancellation, refused with 409 `code`.
async fn cancel_refused(h: &Harness, who: &common::Session, id: &str, code: &str) {
    let (st, v) = cancel(h, who, id, json!({ "reason": "late" }), &common::new_key()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

async fn reserved_coins(h: &Harness, id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE reserved_by = $1")
        .bind(id.to_owned())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap()
}

async fn outbox_for(h: &Harness, kind: &str, principal: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE kind = $1 AND principal_id = $2")
        .bind(kind.to_owned())
        .bind(principal.to_owned())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap()
}

/// A withdrawal is cancelled before its signing round — by its customer, or by an operator
/// with a reason — in one step: its coins go back to the wallet, it stops counting towards
/// the velocity limit, the customer is told, the log records it, and no gate lets it on
/// afterwards. Nobody else cancels it, and once its round is out it is not called back.
async fn a_withdrawal_is_cancelled_before_its_round_and_not_after(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    h.fund_coins(6, 100_000_000).await;
    let mut signed = h.signed(5_000_000).await;
    // Its signing took a day: everyone signs in again.
    h.relogin(&mut signed.operator).await;
    h.relogin(&mut signed.user).await;
    for a in &mut signed.approvers {
        h.relogin(a).await;
    }
    let flow = |w: &serde_json::Value| common::Flow {
        operator: signed.operator.clone(),
        approvers: signed.approvers.clone(),
        user: signed.user.clone(),
        id: w["id"].as_str().unwrap().to_owned(),
        digest: w["approval_digest"].as_str().unwrap().to_owned(),
    };
    let (st, w) = another(&h, &signed, 10_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let f = flow(&w);
    assert!(reserved_coins(&h, &f.id).await > 0);
    // Not someone else's to cancel.
    let other = h.customer("mallory@example.com").await;
    let (st, v) = cancel(&h, &other, &f.id, json!({}), &common::new_key()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = cancel(
        &h,
        &f.approvers[0],
        &f.id,
        json!({ "reason": "x" }),
        &common::new_key(),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = cancel(&h, &f.operator, &f.id, json!({}), &common::new_key()).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "an operator gives a reason: {v}"
    );
    let (st, v) = cancel(
        &h,
        &f.user,
        &f.id,
        json!({ "reason": "x".repeat(501) }),
        &common::new_key(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = cancel(
        &h,
        &f.user,
        &f.id,
        json!({ "reason": "two\nlines" }),
        &common::new_key(),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a reason goes into an email: {v}"
    );
    let (st, v) = cancel(
        &h,
        &f.user,
        &f.id,
        json!({ "reason": 5 }),
        &common::new_key(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not the expected JSON"),
        "{v}"
    );
    assert_eq!(
        h.state(&f).await,
        "pending_approval",
        "refusals changed nothing"
    );
    // Approved: it counts towards the velocity limit until cancelled.
    for i in 0..2 {
        let (st, v) = h.approve(&f, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let key = common::new_key();
    let (st, v) = cancel(
        &h,
        &f.user,
        &f.id,
        json!({ "reason": "wrong amount" }),
        &key,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["failure"], "cancelled by the customer: wrong amount");
    assert_eq!(
        reserved_coins(&h, &f.id).await,
        0,
        "coins back in the wallet"
    );
    totals_agree(&h).await;
    let counted: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM velocity_buckets")
            .fetch_one(h.app.db.pool())
            .await
            .unwrap();
    assert_eq!(counted, 1, "only the signed one still counts");
    assert_eq!(h.audit_count("withdrawal.cancelled").await, 1);
    assert_eq!(outbox_for(&h, "withdrawal.cancelled", &f.user.id).await, 1);
    // The same request again is answered the same; a new one is refused.
    let (st, again) = cancel(
        &h,
        &f.user,
        &f.id,
        json!({ "reason": "wrong amount" }),
        &key,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(again["state"], "cancelled");
    // (A customer's cancellation needs no body at all.)
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/cancel", f.id),
            Some(&f.user.token),
            Some(&common::new_key()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "already_cancelled");
    assert_eq!(h.audit_count("withdrawal.cancelled").await, 1);
    // No gate lets a cancelled withdrawal on.
    h.clock.advance(25 * 3600);
    let mut op = f.operator.clone();
    h.relogin(&mut op).await;
    let g = common::Flow {
        operator: op.clone(),
        ..f.clone()
    };
    let (st, v) = h.round(&g).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = h.broadcast(&g).await;
    assert!(st.is_client_error(), "{v}");
    // Once its signing round is out it is not cancelled: the signers can still complete
    // it, so its coins stay reserved, and their answers are still taken.
    let mut approvers = signed.approvers.clone();
    for a in &mut approvers {
        h.relogin(a).await;
    }
    let mut user = signed.user.clone();
    h.relogin(&mut user).await;
    let base = common::Flow {
        operator: op.clone(),
        approvers,
        user,
        ..signed.clone()
    };
    let (st, w) = another(&h, &base, 7_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let k = common::Flow {
        id: w["id"].as_str().unwrap().to_owned(),
        digest: w["approval_digest"].as_str().unwrap().to_owned(),
        ..base.clone()
    };
    for i in 0..2 {
        let (st, v) = h.approve(&k, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    h.clock.advance(25 * 3600);
    let mut op = k.operator.clone();
    h.relogin(&mut op).await;
    let k = common::Flow { operator: op, ..k };
    let (st, round) = h.round(&k).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    let coins = reserved_coins(&h, &k.id).await;
    assert!(coins > 0);
    let answer = h
        .sign_round(0, round["psbt"].as_str().unwrap())
        .expect("signer accepts");
    cancel_refused(&h, &k.operator, &k.id, "round_exported").await;
    assert_eq!(
        reserved_coins(&h, &k.id).await,
        coins,
        "coins stay reserved"
    );
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/shares", k.id),
            Some(&k.operator.token),
            Some(&common::new_key()),
            Some(json!({ "psbt": answer })),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "the round goes on: {v}");
    // Signed, or sent: not called back either.
    cancel_refused(&h, &k.operator, &signed.id, "round_exported").await;
    let s = common::Flow {
        operator: k.operator.clone(),
        ..signed.clone()
    };
    // (These coins were put straight into the table, so the chain refuses the spend and
    // the withdrawal stays `broadcasting`, retried: on its way all the same.)
    let (st, v) = h.broadcast(&s).await;
    assert!(st == StatusCode::OK || st == StatusCode::BAD_GATEWAY, "{v}");
    let sent = h.state(&s).await;
    assert!(sent == "broadcasting" || sent == "broadcast", "{sent}");
    cancel_refused(&h, &k.operator, &signed.id, "too_late").await;
    assert_eq!(h.state(&s).await, sent);
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_withdrawal_is_cancelled_before_its_round_and_not_after);

async fn void(
    h: &Harness,
    who: &common::Session,
    id: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    h.call(
        "POST",
        &format!("/v1/withdrawals/{id}/void"),
        Some(&who.token),
        Some(&common::new_key()),
        Some(body),
    )
    .await
}

/// Approves, signs (signers 1 and 2, real signer code) and broadcasts a void; returns it.
async fn void_through(h: &mut Harness, f: &common::Flow, v: &serde_json::Value) -> common::Flow {
    let fv = common::Flow {
        id: v["id"].as_str().unwrap().to_owned(),
        digest: v["approval_digest"].as_str().unwrap().to_owned(),
        ..f.clone()
    };
    for i in 0..2 {
        let (st, a) = h.approve(&fv, i).await;
        assert_eq!(st, StatusCode::OK, "{a}");
    }
    let op = fv.operator.clone();
    h.upload_commitments(&op, 2).await;
    let (st, round) = h.round(&fv).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    let psbt = round["psbt"].as_str().unwrap().to_owned();
    for signer in [0, 1] {
        let answer = h
            .sign_round(signer, &psbt)
            .expect("the signers accept a transfer back to the wallet");
        let (st, a) = h
            .call(
                "POST",
                &format!("/v1/withdrawals/{}/shares", fv.id),
                Some(&fv.operator.token),
                Some(&common::new_key()),
                Some(json!({ "psbt": answer })),
            )
            .await;
        assert!(st.is_success(), "{a}");
    }
    fv
}

/// A withdrawal whose signing round is out cannot be cancelled (its answers may exist);
/// it is voided instead: an operator or admin starts a void, a new withdrawal spending
/// the same coins back to the wallet, approved, signed and broadcast like any other. The
/// original is never broadcast meanwhile; when the void confirms the original is
/// cancelled, its customer told, the log records both; the coins come back as change.
async fn a_signed_withdrawal_is_voided_by_spending_its_coins_back_to_the_wallet(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(5_000_000).await;
    // Its signing took a day: everyone signs in again.
    sign_in_again(&h, &mut f).await;
    assert_eq!(h.state(&f).await, "signed");
    let coins = reserved_coins(&h, &f.id).await;
    assert!(coins > 0);
    // Who may, and with what.
    let (st, v) = void(&h, &f.user, &f.id, json!({ "reason": "mine" })).await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{v}"
    );
    let (st, v) = void(&h, &f.approvers[0], &f.id, json!({ "reason": "x" })).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = void(&h, &f.operator, &f.id, json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a reason is required: {v}");
    let (st, v) = void(&h, &f.operator, &f.id, json!({ "reason": "a\nb" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A withdrawal whose round is not out is cancelled, not voided.
    let (st, other) = another(&h, &f, 1_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{other}");
    let (st, v) = void(
        &h,
        &f.operator,
        other["id"].as_str().unwrap(),
        json!({ "reason": "x" }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_exported");

    let (st, v) = void(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "ticket 4411: customer's device compromised" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["voids"], json!(f.id));
    assert_eq!(v["state"], "pending_approval");
    assert_eq!(v["amount"], 0);
    assert_eq!(v["required_approvals"], 2, "the policy's rule for amount 0");
    let void_id = v["id"].as_str().unwrap().to_owned();
    let original = h.view(&f).await;
    assert_eq!(original["state"], "signed");
    assert_eq!(original["voided_by"], json!(void_id));
    assert_eq!(h.audit_count("withdrawal.void_requested").await, 1);
    // One at a time, never of a void, and the original is not broadcast meanwhile.
    let (st, e) = void(&h, &f.operator, &f.id, json!({ "reason": "again" })).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "void_exists");
    let (st, e) = void(&h, &f.operator, &void_id, json!({ "reason": "x" })).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "is_a_void");
    let (st, e) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "being_voided");
    // The void spends exactly the original's coins, to the wallet's own change.
    let tx_of = |id: String| {
        let pool = h.app.db.pool().clone();
        async move {
            let b64: String = sqlx::query_scalar("SELECT psbt FROM withdrawals WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            use base64::Engine as _;
            bitcoin::psbt::Psbt::deserialize(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
            .unsigned_tx
        }
    };
    let (w_tx, v_tx) = (tx_of(f.id.clone()).await, tx_of(void_id.clone()).await);
    let outpoints = |t: &bitcoin::Transaction| {
        t.input
            .iter()
            .map(|i| i.previous_output)
            .collect::<Vec<_>>()
    };
    assert_eq!(outpoints(&v_tx), outpoints(&w_tx));
    assert_eq!(v_tx.output.len(), 1);
    assert_eq!(
        bitcoin::Address::from_script(&v_tx.output[0].script_pubkey, bitcoin::Network::Regtest)
            .unwrap()
            .to_string(),
        v["address"].as_str().unwrap()
    );

    let fv = void_through(&mut h, &f, &v).await;
    let (st, b) = h.broadcast(&fv).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        h.state(&f).await,
        "signed",
        "cancelled only once the void confirms"
    );
    // A void sent is not accelerated: its original may still be mined first.
    let (st, e) = accelerate(
        &h,
        &f.operator,
        &fv.id,
        json!({ "reason": "x", "fee_rate_sat_vb": 50 }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "is_a_void");
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fv).await, "confirmed");
    let original = h.view(&f).await;
    assert_eq!(original["state"], "cancelled", "{original}");
    assert!(
        original["failure"]
            .as_str()
            .unwrap()
            .starts_with(&format!("voided: replaced by {void_id}")),
        "{original}"
    );
    assert_eq!(h.audit_count("withdrawal.voided").await, 1);
    assert_eq!(outbox_for(&h, "withdrawal.cancelled", &f.user.id).await, 1);
    for kind in [
        "withdrawal.approved",
        "withdrawal.broadcast",
        "withdrawal.cancelled",
    ] {
        assert_eq!(
            outbox_for(&h, kind, &f.operator.id).await,
            0,
            "a void has no customer to tell: {kind}"
        );
    }
    // The coins are spent by the void, and its change is the wallet's.
    let spent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE spent_by = $1")
        .bind(void_id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, coins);
    let (st, s) = h
        .call(
            "POST",
            "/v1/admin/utxos/sync",
            Some(&f.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    let back: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM utxos WHERE outpoint = $1 AND spent_by IS NULL AND reserved_by IS NULL",
    )
    .bind(format!("{}:0", v_tx.compute_txid()))
    .fetch_one(h.app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        back, 1,
        "the coins are back in the wallet as one change coin"
    );
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_signed_withdrawal_is_voided_by_spending_its_coins_back_to_the_wallet);

/// If the original confirms before its void (someone holding every answer broadcast it),
/// the coordinator records it as confirmed, and the void fails: never both.
async fn an_original_that_confirms_first_fails_its_void(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(5_000_000).await;
    // Its signing took a day: everyone signs in again.
    sign_in_again(&h, &mut f).await;
    let coins = reserved_coins(&h, &f.id).await;
    let (st, v) = void(&h, &f.operator, &f.id, json!({ "reason": "ticket 4412" })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let fv = void_through(&mut h, &f, &v).await;
    assert_eq!(h.state(&fv).await, "signed");
    // The void's change, as a sync would have learnt it from a mempool.
    let phantom = format!("{}:0", v["txid"].as_str().unwrap());
    sqlx::query(
        "INSERT INTO utxos (outpoint, amount, script, branch, address_index) \
         SELECT $1, amount, script, branch, address_index FROM utxos WHERE reserved_by = $2 LIMIT 1",
    )
    .bind(phantom.clone())
    .bind(f.id.clone())
    .execute(h.app.db.pool())
    .await
    .unwrap();
    // The original goes out behind the coordinator's back.
    let raw: String = sqlx::query_scalar("SELECT final_tx FROM withdrawals WHERE id = $1")
        .bind(f.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let signed: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(&raw).unwrap();
    custody_chain::ChainBackend::broadcast(&h.chain, &signed)
        .await
        .unwrap();
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "confirmed");
    let failed = h.view(&fv).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["failure"].as_str().unwrap().contains("mined first"),
        "{failed}"
    );
    assert_eq!(h.audit_count("withdrawal.void_failed").await, 1);
    assert_eq!(outbox_for(&h, "withdrawal.broadcast", &f.user.id).await, 1);
    let alerts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'withdrawal.void_failed' AND principal_id IS NULL",
    )
    .fetch_one(h.app.db.pool())
    .await
    .unwrap();
    assert!(alerts >= 1, "operations are alerted");
    let gone: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE outpoint = $1")
        .bind(phantom)
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(gone, 0, "the void's change never exists: forgotten");
    // The void can no longer go out.
    let (st, b) = h.broadcast(&fv).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let spent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE spent_by = $1")
        .bind(f.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, coins, "every coin spent by the original");
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(an_original_that_confirms_first_fails_its_void);

/// Two staff members void the same withdrawal at the same moment, or one voids it while
/// another broadcasts it: exactly one of them gets through.
async fn racing_voids_and_broadcasts_let_one_through(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(5_000_000).await;
    h.relogin(&mut f.operator).await;
    let admin = h
        .principal(
            "root@example.com",
            custody_coordinator::accounts::Role::Admin,
            None,
        )
        .await;
    let (a, b) = tokio::join!(
        void(&h, &f.operator, &f.id, json!({ "reason": "ticket 1" })),
        void(&h, &admin, &f.id, json!({ "reason": "ticket 2" })),
    );
    let created = [&a, &b]
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{a:?} {b:?}");
    for (st, v) in [&a, &b] {
        assert!(
            *st == StatusCode::CREATED
                || *st == StatusCode::CONFLICT
                || *st == StatusCode::SERVICE_UNAVAILABLE,
            "{v}"
        );
    }
    let voids: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM withdrawals WHERE voids = $1")
        .bind(f.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(voids, 1);
    // A void against a broadcast of another signed withdrawal.
    let mut user = f.user.clone();
    h.relogin(&mut user).await;
    let mut g = common::Flow { user, ..f.clone() };
    for s in &mut g.approvers {
        h.relogin(s).await;
    }
    let (st, w) = another(&h, &g, 2_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let g = common::Flow {
        id: w["id"].as_str().unwrap().to_owned(),
        digest: w["approval_digest"].as_str().unwrap().to_owned(),
        ..g
    };
    for i in 0..2 {
        let (st, v) = h.approve(&g, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    h.clock.advance(25 * 3600);
    let mut g = g;
    h.relogin(&mut g.operator).await;
    let admin = {
        let mut a = admin;
        h.relogin(&mut a).await;
        a
    };
    let op = g.operator.clone();
    h.upload_commitments(&op, 2).await;
    let (st, round) = h.round(&g).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    for signer in [0, 1] {
        let answer = h
            .sign_round(signer, round["psbt"].as_str().unwrap())
            .unwrap();
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/withdrawals/{}/shares", g.id),
                Some(&g.operator.token),
                Some(&common::new_key()),
                Some(json!({ "psbt": answer })),
            )
            .await;
        assert!(st.is_success(), "{v}");
    }
    let (sent, voided) = tokio::join!(
        h.broadcast(&g),
        void(&h, &admin, &g.id, json!({ "reason": "ticket 3" })),
    );
    let voids: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM withdrawals WHERE voids = $1")
        .bind(g.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let state = h.state(&g).await;
    if voided.0 == StatusCode::CREATED {
        assert_eq!(voids, 1);
        assert_eq!(
            state, "signed",
            "not broadcast once a void exists: {sent:?}"
        );
        assert!(sent.0.is_client_error(), "{sent:?}");
    } else {
        assert_eq!(voids, 0, "{voided:?}");
        assert!(
            state == "broadcasting" || state == "broadcast",
            "{state} {sent:?}"
        );
    }
    totals_agree(&h).await;
}
on_both!(racing_voids_and_broadcasts_let_one_through);

/// A void signed here but sent by someone else is found on chain: recorded as broadcast
/// and confirmed, and its original cancelled, as if the coordinator had sent it.
async fn a_void_sent_outside_the_coordinator_is_recorded(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(5_000_000).await;
    sign_in_again(&h, &mut f).await;
    let coins = reserved_coins(&h, &f.id).await;
    let (st, v) = void(&h, &f.operator, &f.id, json!({ "reason": "ticket 4413" })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let fv = void_through(&mut h, &f, &v).await;
    let raw: String = sqlx::query_scalar("SELECT final_tx FROM withdrawals WHERE id = $1")
        .bind(fv.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let signed: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(&raw).unwrap();
    custody_chain::ChainBackend::broadcast(&h.chain, &signed)
        .await
        .unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fv).await, "signed", "not mined yet");
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fv).await, "confirmed");
    assert_eq!(h.state(&f).await, "cancelled");
    assert_eq!(h.audit_count("withdrawal.voided").await, 1);
    let spent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE spent_by = $1")
        .bind(fv.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, coins);
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_void_sent_outside_the_coordinator_is_recorded);

async fn accelerate(
    h: &Harness,
    who: &common::Session,
    id: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    h.call(
        "POST",
        &format!("/v1/withdrawals/{id}/accelerate"),
        Some(&who.token),
        Some(&common::new_key()),
        Some(body),
    )
    .await
}

/// The PSBT a withdrawal stores, as the signers will see it.
async fn inspected(h: &Harness, id: &str) -> (bitcoin::Transaction, custody_bitcoin::Inspection) {
    let b64: String = sqlx::query_scalar("SELECT psbt FROM withdrawals WHERE id = $1")
        .bind(id.to_owned())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let psbt = bitcoin::psbt::Psbt::deserialize(&B64.decode(b64).unwrap()).unwrap();
    let shown =
        custody_bitcoin::inspect_psbt(&h.wallet, &psbt, &custody_bitcoin::InspectPolicy::default())
            .unwrap();
    (psbt.unsigned_tx, shown)
}

/// A withdrawal sent at too low a fee is sped up by a child: a withdrawal of its own that
/// spends the stuck transaction's change back to the wallet with the fee that brings the
/// pair to the asked rate, approved, signed and broadcast like any other. The customer's
/// withdrawal keeps its transaction; both confirm together.
async fn a_stuck_withdrawal_is_accelerated_by_a_child_that_pays_for_both(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    // A day later it still sits in the mempool: everyone signs in again.
    let f = sent_and_signed_in_again(&mut h, 5_000_000).await;
    let (parent_tx, parent) = inspected(&h, &f.id).await;
    // What it pays, rounded down: asking that is asking for nothing faster.
    let paying = parent.fee_sat / parent.vsize;
    // Who may, and with what.
    let body = json!({ "reason": "stuck since yesterday's fee spike", "fee_rate_sat_vb": 40 });
    let (st, v) = accelerate(&h, &f.user, &f.id, body.clone()).await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{v}"
    );
    let (st, v) = accelerate(&h, &f.approvers[0], &f.id, body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = accelerate(&h, &f.operator, &f.id, json!({ "fee_rate_sat_vb": 40 })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a reason is required: {v}");
    let (st, v) = accelerate(&h, &f.operator, &f.id, json!({ "reason": "stuck" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a rate is required: {v}");
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 2000 }),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "above what a signer accepts: {v}"
    );
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": paying }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_faster", "{v}");
    // Only a withdrawal that was sent and is unconfirmed.
    let (st, other) = another(&h, &f, 1_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{other}");
    let (st, v) = accelerate(&h, &f.operator, other["id"].as_str().unwrap(), body.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "not_broadcast");

    let (st, v) = accelerate(&h, &f.operator, &f.id, body.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["accelerates"], json!(f.id));
    assert_eq!(v["state"], "pending_approval");
    assert_eq!(v["amount"], 0);
    assert_eq!(v["required_approvals"], 2, "the policy's rule for amount 0");
    let child_id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(h.view(&f).await["accelerated_by"], json!(child_id));
    assert_eq!(h.audit_count("withdrawal.acceleration_requested").await, 1);
    let (st, e) = accelerate(&h, &f.operator, &f.id, body.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "acceleration_exists");
    // The child spends the parent's change, to the wallet's own change, and the pair pays
    // the asked rate.
    let (child_tx, child) = inspected(&h, &child_id).await;
    let change_vout = parent
        .outputs
        .iter()
        .find(|o| matches!(o.ownership, custody_bitcoin::Ownership::Change { .. }))
        .unwrap()
        .index;
    assert_eq!(
        child_tx.input[0].previous_output,
        bitcoin::OutPoint::new(
            parent_tx.compute_txid(),
            u32::try_from(change_vout).unwrap()
        )
    );
    assert_eq!(child.outputs.len(), 1);
    assert!(child.outputs[0].ownership.is_ours());
    assert_eq!(child.sent_sat, 0, "nothing leaves the wallet");
    let package_rate =
        (parent.fee_sat + child.fee_sat) as f64 / (parent.vsize + child.vsize) as f64;
    assert!(
        (40.0..41.0).contains(&package_rate),
        "the pair pays the asked 40 sat/vB: {package_rate}"
    );
    assert_eq!(reserved_coins(&h, &child_id).await, 1);

    let fc = void_through(&mut h, &f, &v).await;
    // Measured on the signed transactions, not on the estimate the child was built from.
    let signed_vsize = |id: String| {
        let pool = h.app.db.pool().clone();
        async move {
            let raw: String = sqlx::query_scalar("SELECT final_tx FROM withdrawals WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            bitcoin::consensus::encode::deserialize_hex::<bitcoin::Transaction>(&raw)
                .unwrap()
                .vsize() as u64
        }
    };
    let real = (parent.fee_sat + child.fee_sat) as f64
        / (signed_vsize(f.id.clone()).await + signed_vsize(fc.id.clone()).await) as f64;
    assert!(real >= 40.0, "the signed pair pays 40 sat/vB: {real}");
    let (st, b) = h.broadcast(&fc).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Still not enough: the child is accelerated in turn, and its own child pays for all
    // three.
    let (st, g) = accelerate(
        &h,
        &f.operator,
        &fc.id,
        json!({ "reason": "still stuck", "fee_rate_sat_vb": 80 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let grandchild = g["id"].as_str().unwrap().to_owned();
    let (g_tx, g_shown) = inspected(&h, &grandchild).await;
    assert_eq!(g_tx.input[0].previous_output.txid, child_tx.compute_txid());
    let three = (parent.fee_sat + child.fee_sat + g_shown.fee_sat) as f64
        / (parent.vsize + child.vsize + g_shown.vsize) as f64;
    assert!(
        (80.0..81.0).contains(&three),
        "the grandchild pays for its parent and grandparent too: {three}"
    );
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fc).await, "confirmed");
    let g_view = h
        .call(
            "GET",
            &format!("/v1/withdrawals/{grandchild}"),
            Some(&f.operator.token),
            None,
            None,
        )
        .await
        .1;
    assert_eq!(
        g_view["state"], "cancelled",
        "not needed once the child confirmed: {g_view}"
    );
    assert_eq!(reserved_coins(&h, &grandchild).await, 0);
    let parent_view = h.view(&f).await;
    assert_eq!(parent_view["state"], "confirmed");
    assert_eq!(
        parent_view["txid"],
        json!(parent_tx.compute_txid().to_string()),
        "the customer's withdrawal keeps its transaction"
    );
    for kind in ["withdrawal.approved", "withdrawal.broadcast"] {
        assert_eq!(
            outbox_for(&h, kind, &f.operator.id).await,
            0,
            "a child has no customer to tell: {kind}"
        );
    }
    let spent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE spent_by = $1")
        .bind(child_id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(spent, 1, "the change output, spent by the child");
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_stuck_withdrawal_is_accelerated_by_a_child_that_pays_for_both);

/// A withdrawal that confirms on its own before its child's round is out does not need
/// the child: it is cancelled and its coins are free again. A child whose round is out
/// is left alone (its answers may be anywhere; it is still a transfer to the wallet).
async fn an_acceleration_not_needed_any_more_is_cancelled(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(5_000_000).await;
    let (st, b) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    h.relogin(&mut f.operator).await;
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 30 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let child = common::Flow {
        id: v["id"].as_str().unwrap().to_owned(),
        digest: v["approval_digest"].as_str().unwrap().to_owned(),
        ..f.clone()
    };
    assert_eq!(reserved_coins(&h, &child.id).await, 1);
    // Cancelled before its round: the change output it took is forgotten while the parent
    // is unconfirmed (the next coin sync brings it back if it is there).
    let (st, c) = h
        .call(
            "POST",
            &format!("/v1/withdrawals/{}/cancel", child.id),
            Some(&f.operator.token),
            Some(&common::new_key()),
            Some(json!({ "reason": "fees fell" })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let txid = h.view(&f).await["txid"].as_str().unwrap().to_owned();
    let change_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM utxos WHERE outpoint LIKE $1")
        .bind(format!("{txid}:%"))
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(change_rows, 0, "{c}");
    // Another one, which the confirmation makes unnecessary.
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck again", "fee_rate_sat_vb": 30 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let child = common::Flow {
        id: v["id"].as_str().unwrap().to_owned(),
        digest: v["approval_digest"].as_str().unwrap().to_owned(),
        ..f.clone()
    };
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "confirmed");
    let c = h.view(&child).await;
    assert_eq!(c["state"], "cancelled", "{c}");
    assert!(
        c["failure"]
            .as_str()
            .unwrap()
            .contains("confirmed without it"),
        "{c}"
    );
    assert_eq!(reserved_coins(&h, &child.id).await, 0, "its coins are free");
    // A confirmed withdrawal is not accelerated.
    let (st, e) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 30 }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "not_broadcast");
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(an_acceleration_not_needed_any_more_is_cancelled);

/// A child whose stuck parent's change is too small for the fee adds the wallet's largest
/// free coin, takes it for itself, and is signed and mined with its parent like any other.
async fn a_child_adds_a_coin_when_the_change_cannot_pay(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    // Almost all of one 0.5 BTC coin: about 10 000 sat of change.
    let f = sent_and_signed_in_again(&mut h, 49_990_000).await;
    let (parent_tx, parent) = inspected(&h, &f.id).await;
    let change = parent
        .outputs
        .iter()
        .find(|o| matches!(o.ownership, custody_bitcoin::Ownership::Change { .. }))
        .expect("the withdrawal has change");
    assert!(change.amount_sat < 20_000, "{parent}");
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 200 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let child_id = v["id"].as_str().unwrap().to_owned();
    let (child_tx, child) = inspected(&h, &child_id).await;
    assert_eq!(child_tx.input.len(), 2, "{child}");
    assert_eq!(
        child_tx.input[0].previous_output.txid,
        parent_tx.compute_txid()
    );
    let other = h
        .funded
        .iter()
        .find(|o| parent_tx.input.iter().all(|i| i.previous_output != **o))
        .unwrap();
    assert_eq!(child_tx.input[1].previous_output, *other);
    assert_eq!(reserved_coins(&h, &child_id).await, 2);
    assert!(child.fee_sat > change.amount_sat, "{child}");
    let package_rate =
        (parent.fee_sat + child.fee_sat) as f64 / (parent.vsize + child.vsize) as f64;
    assert!((200.0..201.0).contains(&package_rate), "{package_rate}");
    // Another withdrawal cannot have the coin the child took.
    let (st, w) = another(&h, &f, 40_000_000).await;
    assert_eq!(st, StatusCode::CONFLICT, "{w}");
    assert_eq!(w["error"]["code"], "cannot_build", "{w}");
    assert!(
        w["error"]["message"].as_str().unwrap().contains("short"),
        "no free coin is left: {w}"
    );

    let fc = void_through(&mut h, &f, &v).await;
    let (st, b) = h.broadcast(&fc).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fc).await, "confirmed");
    assert_eq!(h.state(&f).await, "confirmed");
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_child_adds_a_coin_when_the_change_cannot_pay);

/// A withdrawal sent and still unconfirmed after `worker.stuck_after_minutes` is reported
/// to operations once (no customer is told), with its transaction, for someone to
/// accelerate it.
async fn a_withdrawal_unconfirmed_for_hours_is_reported_once(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let f = h.signed(5_000_000).await;
    let (st, b) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let stuck = |h: &Harness| {
        let pool = h.app.db.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT payload FROM outbox WHERE kind = 'withdrawal.stuck' AND principal_id IS NULL",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    h.clock.advance(5 * 3600);
    custody_coordinator::tick(&h.app).await.unwrap();
    assert!(stuck(&h).await.is_empty(), "not yet: six hours by default");
    h.clock.advance(3600 + 60);
    custody_coordinator::tick(&h.app).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    let reported = stuck(&h).await;
    assert_eq!(reported.len(), 1, "once: {reported:?}");
    let payload: serde_json::Value = serde_json::from_str(&reported[0]).unwrap();
    assert_eq!(payload["withdrawal"], json!(f.id));
    assert_eq!(payload["txid"], h.view(&f).await["txid"]);
    assert!(
        payload["unconfirmed_minutes"].as_i64().unwrap() >= 360,
        "{payload}"
    );
    assert_eq!(outbox_for(&h, "withdrawal.stuck", &f.user.id).await, 0);
    // Confirmed: nothing more.
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "confirmed");
    h.clock.advance(24 * 3600);
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(stuck(&h).await.len(), 1);
}
on_both!(a_withdrawal_unconfirmed_for_hours_is_reported_once);

/// A child is sent with the transactions it pays for: a node that dropped the stuck one
/// gets it again first. A child signed before its parent confirmed on its own may still be
/// sent afterwards (it moves coins within the wallet and frees them). A child never takes
/// as an extra coin the unconfirmed change of another withdrawal sent.
async fn a_child_is_sent_with_its_parent_and_may_follow_it_late(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let mut f = h.signed(49_990_000).await;
    // The node as it was before the stuck withdrawal reached it.
    let path = h.chain.path().to_owned();
    let before = std::fs::read(&path).unwrap();
    let (st, b) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    sign_in_again(&h, &mut f).await;
    let parent_txid = common::parse_txid(h.view(&f).await["txid"].as_str().unwrap());
    // Another withdrawal, sent, with a large unconfirmed change output the wallet learns.
    let (st, w2) = another(&h, &f, 1_000_000).await;
    assert_eq!(st, StatusCode::CREATED, "{w2}");
    let f2 = void_through(&mut h, &f, &w2).await;
    let (st, b) = h.broadcast(&f2).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, s) = h
        .call(
            "POST",
            "/v1/admin/utxos/sync",
            Some(&f.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    // The stuck one's change is too small for a high rate, and the only other coin is that
    // unconfirmed change: not taken.
    let (st, e) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 200 }),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "insufficient_funds", "{e}");
    // A rate the change can pay.
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 20 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (child_tx, _) = inspected(&h, v["id"].as_str().unwrap()).await;
    assert_eq!(child_tx.input.len(), 1, "the change alone");
    let fc = void_through(&mut h, &f, &v).await;
    // The node lost the stuck transaction (and the other one): broadcasting the child
    // sends its parent again first.
    std::fs::write(&path, &before).unwrap();
    assert!(h.chain.transaction(&parent_txid).await.unwrap().is_none());
    let (st, b) = h.broadcast(&fc).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(h.chain.transaction(&parent_txid).await.unwrap().is_some());
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "confirmed");
    assert_eq!(h.state(&fc).await, "confirmed");

    // The other withdrawal's transaction is gone with the node's memory; a child of it,
    // signed, then its parent confirmed on its own (sent again here, mined).
    let (st, v2) = accelerate(
        &h,
        &f.operator,
        &f2.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 20 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v2}");
    let fc2 = void_through(&mut h, &f, &v2).await;
    let raw: String = sqlx::query_scalar("SELECT final_tx FROM withdrawals WHERE id = $1")
        .bind(f2.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let tx2: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(&raw).unwrap();
    use custody_chain::ChainBackend as _;
    h.chain.broadcast(&tx2).await.unwrap();
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f2).await, "confirmed");
    assert_eq!(
        h.state(&fc2).await,
        "signed",
        "its round was out: left alone"
    );
    let (st, b) = h.broadcast(&fc2).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "a transfer within the wallet, still valid: {b}"
    );
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&fc2).await, "confirmed");
    totals_agree(&h).await;
    custody_coordinator::audit::verify(&h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_child_is_sent_with_its_parent_and_may_follow_it_late);

/// A withdrawal of `amount` signed and broadcast; a day later (its signing took one) with
/// everyone signed in again.
async fn sent_and_signed_in_again(h: &mut Harness, amount: u64) -> common::Flow {
    let mut f = h.signed(amount).await;
    let (st, b) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    sign_in_again(h, &mut f).await;
    f
}

/// The operator, the customer and the approvers of `f` sign in again (sessions last a
/// day; tests jump days).
async fn sign_in_again(h: &Harness, f: &mut common::Flow) {
    h.relogin(&mut f.operator).await;
    h.relogin(&mut f.user).await;
    for a in &mut f.approvers {
        h.relogin(a).await;
    }
}

async fn sync_coins(h: &Harness, token: &str) -> serde_json::Value {
    let (st, s) = h
        .call("POST", "/v1/admin/utxos/sync", Some(token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    s
}

/// A coin from outside is spent only with `wallet.min_confirmations` confirmations (its
/// sender can replace a payment still in the mempool); the change of the wallet's own
/// transaction in flight is spendable at once.
async fn coins_from_outside_wait_for_their_confirmations(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| {
        c.risk.hold_score = u32::MAX;
        c.wallet.min_confirmations = 2;
    })
    .await
    else {
        return;
    };
    // A large deposit one block after the harness's two coins.
    let script = h
        .wallet
        .derive(custody_bitcoin::Branch::Receive, 5)
        .expect("derive")
        .script_pubkey();
    let deposit = h
        .chain
        .fund(&script, bitcoin::Amount::from_sat(200_000_000))
        .await
        .unwrap();
    h.chain.mine(1).await.unwrap();
    // 0.1 BTC: coin selection takes the largest coins first, so the deposit if it could.
    let f = h.signed(10_000_000).await;
    let (st, b) = h.broadcast(&f).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let inputs: Vec<String> = sqlx::query_scalar("SELECT outpoint FROM utxos WHERE spent_by = $1")
        .bind(f.id.clone())
        .fetch_all(h.app.db.pool())
        .await
        .unwrap();
    assert!(!inputs.is_empty());
    for i in &inputs {
        assert!(
            h.funded.iter().any(|o| o.to_string() == *i),
            "only coins with two confirmations are spent: {i}"
        );
    }
    let free = |h: &Harness, outpoint: String| {
        let pool = h.app.db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM utxos WHERE outpoint = $1 AND reserved_by IS NULL AND spent_by IS NULL",
            )
            .bind(outpoint)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let s = sync_coins(&h, &f.operator.token).await;
    assert_eq!(s["waiting"], 1, "{s}");
    assert_eq!(free(&h, deposit.to_string()).await, 0);
    // The withdrawal's change, in the mempool, is the wallet's own and spendable.
    let txid = h.view(&f).await["txid"].as_str().unwrap().to_owned();
    let change: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM utxos WHERE outpoint LIKE $1 AND reserved_by IS NULL AND spent_by IS NULL",
    )
    .bind(format!("{txid}:%"))
    .fetch_one(h.app.db.pool())
    .await
    .unwrap();
    assert_eq!(change, 1, "own change in flight is spendable");
    // A free row for a coin that is not (an older coordinator's, or a reorganisation)
    // leaves the set at the next sync.
    sqlx::query(
        "INSERT INTO utxos (outpoint, amount, script, branch, address_index) VALUES ($1, 200000000, $2, 0, 5)",
    )
    .bind(deposit.to_string())
    .bind(script.to_hex_string())
    .execute(h.app.db.pool())
    .await
    .unwrap();
    let s = sync_coins(&h, &f.operator.token).await;
    assert_eq!(s["waiting"], 1, "{s}");
    assert_eq!(s["removed"], 1, "{s}");
    assert_eq!(free(&h, deposit.to_string()).await, 0);
    // One more block: the deposit has its two confirmations, and the withdrawal one — it
    // is confirmed, and its change stays spendable.
    h.chain.mine(1).await.unwrap();
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(h.state(&f).await, "confirmed");
    let s = sync_coins(&h, &f.operator.token).await;
    assert_eq!(s["waiting"], 0, "{s}");
    assert_eq!(s["removed"], 0, "{s}");
    assert_eq!(free(&h, deposit.to_string()).await, 1);
    let change: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM utxos WHERE outpoint LIKE $1 AND reserved_by IS NULL AND spent_by IS NULL",
    )
    .bind(format!("{txid}:%"))
    .fetch_one(h.app.db.pool())
    .await
    .unwrap();
    assert_eq!(change, 1, "own change with one confirmation is spendable");
    // Coins the chain does not have (spent elsewhere, or a database restored from an
    // older backup): a free one leaves the set, one a withdrawal holds stays with it.
    let receive0 = h
        .wallet
        .derive(custody_bitcoin::Branch::Receive, 0)
        .unwrap()
        .script_pubkey()
        .to_hex_string();
    for (outpoint, holder) in [
        (format!("{:064x}:0", 1), None),
        (format!("{:064x}:1", 1), Some(f.id.clone())),
    ] {
        sqlx::query(
            "INSERT INTO utxos (outpoint, amount, script, branch, address_index, reserved_by) \
             VALUES ($1, 70000000, $2, 0, 0, $3)",
        )
        .bind(outpoint)
        .bind(receive0.clone())
        .bind(holder)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    }
    let s = sync_coins(&h, &f.operator.token).await;
    assert_eq!(s["removed"], 1, "{s}");
    let left: Vec<String> =
        sqlx::query_scalar("SELECT outpoint FROM utxos WHERE outpoint LIKE '0000%'")
            .fetch_all(h.app.db.pool())
            .await
            .unwrap();
    assert_eq!(left, vec![format!("{:064x}:1", 1)]);
    let s = sync_coins(&h, &f.operator.token).await;
    assert_eq!(s["removed"], 0, "{s}");
}
on_both!(coins_from_outside_wait_for_their_confirmations);

/// Internal transfers (here an acceleration; voids alike) pay no one outside the wallet:
/// the policy's velocity limits neither check nor count them, so they never use up the
/// day's withdrawals of customers.
async fn internal_transfers_do_not_count_against_velocity_limits(engine: Engine) {
    let Some(mut h) = Harness::with_config(engine, |c| c.risk.hold_score = u32::MAX).await else {
        return;
    };
    let f = sent_and_signed_in_again(&mut h, 5_000_000).await;
    h.fund_coins(6, 10_000_000).await;
    let (st, v) = accelerate(
        &h,
        &f.operator,
        &f.id,
        json!({ "reason": "stuck", "fee_rate_sat_vb": 40 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let flow = |w: &serde_json::Value| common::Flow {
        operator: f.operator.clone(),
        approvers: f.approvers.clone(),
        user: f.user.clone(),
        id: w["id"].as_str().unwrap().to_owned(),
        digest: w["approval_digest"].as_str().unwrap().to_owned(),
    };
    let child = flow(&v);
    for i in 0..2 {
        let (st, a) = h.approve(&child, i).await;
        assert_eq!(st, StatusCode::OK, "{a}");
    }
    assert_eq!(h.state(&child).await, "approved");
    // The harness policy allows five BTC withdrawals a day (the customer's first one was
    // created more than a day ago): five more are approved beside the child.
    for n in 0..5 {
        let (st, w) = another(&h, &f, 10_000).await;
        assert_eq!(st, StatusCode::CREATED, "withdrawal {n}: {w}");
        let next = flow(&w);
        for i in 0..2 {
            let (st, a) = h.approve(&next, i).await;
            assert_eq!(st, StatusCode::OK, "{a}");
        }
    }
    let (st, v) = another(&h, &f, 10_000).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("5 BTC withdrawals per 86400 s exceeded: 5 already"),
        "{message}"
    );
    totals_agree(&h).await;
}
on_both!(internal_transfers_do_not_count_against_velocity_limits);

/// A database with the migrations before `first` applied, as an older release left it,
/// and one account `p`; `None` when the engine is unavailable outside CI.
async fn older_database(
    engine: Engine,
    first: &str,
) -> Option<(tempfile::TempDir, custody_coordinator::Db)> {
    let dir = tempfile::tempdir().unwrap();
    let url = common::database_url(engine, dir.path()).await?;
    let db = custody_coordinator::Db::connect(&url, 2).await.unwrap();
    migrate_before(&db, dir.path(), first).await;
    sqlx::query(
        "INSERT INTO principals (id, email, password_hash, role, created_at) \
         VALUES ('p', 'p@example.com', 'x', 'user', 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    Some((dir, db))
}

/// Applies the migrations whose file names sort before `first`, as an older release did.
async fn migrate_before(db: &custody_coordinator::Db, dir: &std::path::Path, first: &str) {
    let older = dir.join("older");
    std::fs::create_dir(&older).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for e in std::fs::read_dir(&all).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.as_str() < first {
            std::fs::copy(e.path(), older.join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(db.pool())
        .await
        .unwrap();
}

/// Voids and accelerations an earlier version counted in the running totals are taken
/// out by the upgrade (migration 0019): the totals match the rows again and count the
/// customer's withdrawal alone.
async fn internal_transfers_counted_by_an_earlier_version_leave_the_totals(engine: Engine) {
    let Some((_dir, db)) = older_database(engine, "0019").await else {
        return;
    };
    let at = 1_800_000_000i64;
    let rows = [
        ("a", 1_000, "approved", None, None),
        ("v", 0, "approved", Some("a"), None),
        ("c", 0, "confirmed", None, Some("a")),
        ("w", 0, "pending_approval", Some("a"), None),
    ];
    for (i, (id, amount, state, voids, accelerates)) in rows.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, \
             created_at, updated_at, hold_until, risk_score, risk_reasons, policy_hash, \
             required_approvals, voids, accelerates) \
             VALUES ($1, 'p', 'BTC', 'x', $2, $3, 1, $4, $4, 0, 0, '[]', '', 0, $5, $6)",
        )
        .bind(id)
        .bind(amount)
        .bind(state)
        .bind(at + i64::try_from(i).unwrap())
        .bind(voids)
        .bind(accelerates)
        .execute(db.pool())
        .await
        .unwrap();
    }
    // What the earlier version kept: the three counted rows, 1 000 sat in all.
    let bucket = at - at % 3600;
    sqlx::query(
        "INSERT INTO velocity_buckets (asset, bucket, stripe, n, t0, t1, t2, t3, t4) \
         VALUES ('BTC', $1, 0, 3, 1000, 0, 0, 0, 0)",
    )
    .bind(bucket)
    .execute(db.pool())
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    let (n, t0): (i64, i64) = sqlx::query_as(
        "SELECT CAST(SUM(n) AS BIGINT), CAST(SUM(t0) AS BIGINT) FROM velocity_buckets \
         WHERE asset = 'BTC' AND bucket = $1",
    )
    .bind(bucket)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((n, t0), (1, 1000));
}
on_both!(internal_transfers_counted_by_an_earlier_version_leave_the_totals);
