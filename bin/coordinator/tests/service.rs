//! The service around the lifecycle: OpenAPI document, health, metrics, configuration
//! floors, credentials and idempotency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{new_key, Engine, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let (st, doc) = h.call("GET", "/openapi.json", None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/healthz",
        "/metrics",
        "/v1/users",
        "/v1/sessions",
        "/v1/me/totp",
        "/v1/me/whitelist",
        "/v1/withdrawals",
        "/v1/withdrawals/{id}",
        "/v1/withdrawals/{id}/approvals",
        "/v1/withdrawals/{id}/round",
        "/v1/withdrawals/{id}/shares",
        "/v1/withdrawals/{id}/broadcast",
        "/v1/events",
        "/v1/commitments",
        "/v1/admin/freeze",
        "/v1/admin/policies",
        "/v1/audit",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    assert!(doc["components"]["schemas"]["WithdrawalView"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let (st, v) = h.call("GET", "/healthz", None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (st, v) = h.call("GET", "/metrics", None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        v.as_str().unwrap().contains("custody_http_requests_total"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_below_the_floor_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = custody_coordinator::Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.risk.password_change_hold_hours = 12;
    let e =
        custody_coordinator::build_app(config, Arc::new(custody_coordinator::FakeClock::new(0)))
            .await
            .expect_err("below the floor");
    assert!(
        e.to_string().contains("risk.password_change_hold_hours"),
        "{e}"
    );
    assert!(
        !dir.path().join("coordinator.db").exists(),
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_code_works_once() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let s = h.customer("dave@example.com").await;
    let code = h.totp(&s);
    let body = json!({ "address": common::regtest_address(9), "totp": code });
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let body = json!({ "address": common::regtest_address(10), "totp": code });
    let (st, v) = h
        .call("POST", "/v1/me/whitelist", Some(&s.token), None, Some(body))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "bad_2fa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_all_look_the_same() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let _ = h.customer("erin@example.com").await;
    let (a, va) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": "erin@example.com", "password": "wrong password here" })),
        )
        .await;
    let (b, vb) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": "nobody@example.com", "password": "wrong password here" })),
        )
        .await;
    let (c, vc) = h.call("POST", "/v1/sessions", None, None, Some(json!({ "email": "erin@example.com", "password": common::PASSWORD, "totp": "123456" }))).await;
    assert_eq!((a, b), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(c, StatusCode::UNAUTHORIZED);
    assert_eq!(va, vb);
    assert_eq!(va, vc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_cannot_be_reused_for_another_request() {
    let Some(mut h) = Harness::new(Engine::Sqlite).await else {
        return;
    };
    let f = h.requested(10_000_000).await;
    let key = new_key();
    let code = h.totp(&f.user);
    let body =
        json!({ "asset": "BTC", "address": h.destination, "amount": 1_000_000, "totp": code });
    let (st, _) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&f.user.token),
            Some(&key),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let code = h.totp(&f.user);
    let body =
        json!({ "asset": "BTC", "address": h.destination, "amount": 2_000_000, "totp": code });
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&f.user.token),
            Some(&key),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "idempotency_key_reused");
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&f.user.token),
            None,
            Some(json!({})),
        )
        .await;
    assert!(st.is_client_error(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refusals_are_recorded_and_explained() {
    let Some(mut h) = Harness::new(Engine::Sqlite).await else {
        return;
    };
    let f = h.requested(10_000_000).await;
    // Over the 1 BTC per-transaction limit.
    let code = h.totp(&f.user);
    let body =
        json!({ "asset": "BTC", "address": h.destination, "amount": 100_000_001, "totp": code });
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&f.user.token),
            Some(&new_key()),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "policy_denied");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("limit"),
        "{v}"
    );
    assert_eq!(h.audit_count("withdrawal.rejected").await, 1);
    // Not on the customer's whitelist.
    let code = h.totp(&f.user);
    let body = json!({ "asset": "BTC", "address": common::regtest_address(8), "amount": 1000, "totp": code });
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&f.user.token),
            Some(&new_key()),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_whitelisted");
}

#[test]
fn audit_verify_on_the_command_line_exits_1_on_an_edited_row() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("custody-coordinator")
            .unwrap()
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "warn")
            .assert()
    };
    run(&["migrate"]).success();
    run(&["freeze", "--reason", "drill"]).success();
    run(&["unfreeze", "--reason", "drill over"]).success();
    run(&["audit", "verify"])
        .success()
        .stdout(predicates::str::contains("audit log intact: 2 entries"));
    let cp = dir.path().join("checkpoint.json");
    run(&["audit", "checkpoint", "--out", cp.to_str().unwrap()]).success();
    run(&["audit", "verify", "--checkpoint", cp.to_str().unwrap()]).success();
    // Edit a row behind the coordinator's back.
    let db = dir.path().join("data").join("coordinator.db");
    let conn = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3;c=sqlite3.connect({:?});c.execute(\"UPDATE audit_log SET data='{{}}' WHERE seq=1\");c.commit()", db.display().to_string()))
        .status()
        .unwrap();
    assert!(conn.success());
    run(&["audit", "verify"])
        .code(1)
        .stdout(predicates::str::contains("entry 1 was altered"));
    let out = run(&["audit", "export"])
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
}

#[test]
fn the_development_clock_is_refused_on_mainnet() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "network = \"bitcoin\"\ndata_dir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    assert_cmd::Command::cargo_bin("custody-coordinator")
        .unwrap()
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "serve",
            "--dev-clock-offset-secs",
            "90000",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("refused on mainnet"));
}
