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
        "/v1/me/anti-phishing-code",
        "/v1/links/{token}",
        "/v1/sessions/challenges",
        "/v1/me/second-factors",
        "/v1/me/second-factor/challenges",
        "/v1/me/webauthn/registrations",
        "/v1/me/webauthn/registrations/{id}",
        "/v1/me/webauthn/credentials",
        "/v1/me/webauthn/credentials/{id}/remove",
        "/v1/me/recovery-codes",
        "/v1/me/phone",
        "/v1/me/phone/verify",
        "/v1/me/api-keys",
        "/v1/me/api-keys/{id}/revoke",
        "/v1/me/devices",
        "/v1/me/devices/{id}/revoke",
        "/v1/me/sessions",
        "/v1/me/sessions/{id}/revoke",
        "/v1/me/sessions/revoke-others",
        "/v1/me/ip-allowlist",
        "/v1/me/whitelist/remove",
        "/v1/me/whitelist-mode",
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

/// Runs `custody-coordinator` with a configuration that keeps its SQLite data in `dir`.
fn cli_with_data_in(dir: &std::path::Path) -> impl Fn(&[&str]) -> assert_cmd::assert::Assert {
    let config_path = dir.join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!("data_dir = {:?}\n", dir.join("data").display().to_string()),
    )
    .unwrap();
    move |args: &[&str]| {
        assert_cmd::Command::cargo_bin("custody-coordinator")
            .unwrap()
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "warn")
            .assert()
    }
}

#[test]
fn velocity_check_on_the_command_line_finds_totals_that_differ_and_rebuild_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli_with_data_in(dir.path());
    run(&["migrate"]).success();
    run(&["velocity", "check"])
        .success()
        .stdout(predicates::str::contains("velocity totals match"));
    // An approved withdrawal written behind the coordinator's back (as an import would).
    let db = dir.path().join("data").join("coordinator.db");
    let sql = "INSERT INTO principals (id, email, password_hash, role, created_at) VALUES ('p', 'p@example.com', 'x', 'user', 0);\
               INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, created_at, updated_at, hold_until, risk_score, risk_reasons, policy_hash, required_approvals) \
               VALUES ('w', 'p', 'BTC', 'x', 7000, 'approved', 1, 1800000100, 1800000100, 0, 0, '[]', '', 0);";
    let edit = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3;c=sqlite3.connect({:?});c.executescript({sql:?});c.commit()",
            db.display().to_string()
        ))
        .status()
        .unwrap();
    assert!(edit.success());
    run(&["velocity", "check"]).code(1).stdout(predicates::str::contains(
        "velocity totals DIFFER for BTC in the hour from 2027-01-15T08:00:00Z: kept 0 withdrawals totalling 0, the withdrawals are 1 totalling 7000",
    ));
    run(&["velocity", "rebuild"])
        .success()
        .stdout(predicates::str::contains("1 hours had differed"));
    run(&["velocity", "check"]).success();
    // The rebuild is on the record.
    let out = run(&["audit", "export"])
        .success()
        .get_output()
        .stdout
        .clone();
    let entry: serde_json::Value =
        serde_json::from_str(String::from_utf8(out).unwrap().trim()).unwrap();
    assert_eq!(entry["kind"], "velocity.rebuilt");
    let data: serde_json::Value = serde_json::from_str(entry["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["differed"][0]["actual"]["total"], "7000", "{data}");
    assert_eq!(data["differed"][0]["kept"]["count"], 0, "{data}");
    run(&["audit", "verify"]).success();
}

#[test]
fn audit_verify_on_the_command_line_exits_1_on_an_edited_row() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli_with_data_in(dir.path());
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
            "network = \"bitcoin\"\ndata_dir = {:?}\n[auth.webauthn]\nrp_id = \"exchange.example\"\norigins = [\"https://www.exchange.example\"]\n",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_mutating_requests_replay_under_their_idempotency_key() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let op = h
        .principal(
            "ops@example.com",
            custody_coordinator::accounts::Role::Operator,
            None,
        )
        .await;
    let key = new_key();
    let body = json!({ "reason": "drill" });
    let (a, _) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&op.token),
            Some(&key),
            Some(body.clone()),
        )
        .await;
    let (b, _) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&op.token),
            Some(&key),
            Some(body),
        )
        .await;
    assert_eq!((a, b), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    assert_eq!(
        h.audit_count("freeze.on").await,
        1,
        "the repeat was answered from the record"
    );
    let (c, v) = h
        .call(
            "POST",
            "/v1/admin/freeze",
            Some(&op.token),
            Some(&key),
            Some(json!({ "reason": "other" })),
        )
        .await;
    assert_eq!(c, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_daemon_serves_on_loopback_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "bind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("custody-coordinator");
    let mut child = std::process::Command::new(bin)
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "serve",
            "--insecure-plain-http",
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut health = None;
    for _ in 0..200 {
        if let Some(r) = http_get(port, "/healthz") {
            health = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let health = health.expect("the daemon answers within 20 s");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let doc = http_get(port, "/openapi.json").unwrap();
    assert!(doc.contains("/v1/withdrawals"));
    // The first worker pass writes a signed checkpoint.
    let cp_dir = dir.path().join("data").join("checkpoints");
    for _ in 0..100 {
        if std::fs::read_dir(&cp_dir)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        std::fs::read_dir(&cp_dir).unwrap().count() > 0,
        "checkpoint written"
    );
    let pid = child.id();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the daemon did not stop within 10 s of SIGTERM")
    });
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("coordinator listening") && err.contains("coordinator stopped"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_is_never_stored_for_replay() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let (st, _) = h
        .call(
            "POST",
            "/v1/users",
            None,
            None,
            Some(json!({ "email": "kim@example.com", "password": common::PASSWORD })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let body = json!({ "email": "kim@example.com", "password": common::PASSWORD });
    let (a, va) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some("same-key"),
            Some(body.clone()),
        )
        .await;
    let (b, vb) = h
        .call("POST", "/v1/sessions", None, Some("same-key"), Some(body))
        .await;
    assert_eq!((a, b), (StatusCode::CREATED, StatusCode::CREATED));
    assert_ne!(
        va["token"], vb["token"],
        "a sign-in is not replayed from storage"
    );
    let stored = sqlx::query("SELECT response FROM idempotency_keys")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap();
    let token = va["token"].as_str().unwrap();
    assert!(stored
        .iter()
        .all(|r| !sqlx::Row::get::<String, _>(r, "response").contains(token)));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the daemon when a test fails half-way.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET over TLS from a client that trusts exactly the certificate in `cert_pem`.
async fn https_get(port: u16, cert_pem: &std::path::Path, path: &str) -> std::io::Result<String> {
    use custody_auth::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert_pem).expect("pem") {
        roots.add(c.expect("cert")).expect("trust anchor");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_https_with_a_development_certificate_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "bind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let bin = assert_cmd::cargo::cargo_bin("custody-coordinator");
    let mut daemon = Daemon(
        std::process::Command::new(bin)
            .args(["--config", config_path.to_str().unwrap(), "serve"])
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let cert = data.join(custody_auth::DEV_CERT_FILE);
    let mut health = None;
    for _ in 0..200 {
        if cert.exists() {
            if let Ok(r) = https_get(port, &cert, "/healthz").await {
                health = Some(r);
                break;
            }
        }
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let health = health.expect("the daemon answers HTTPS within 20 s");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Plain HTTP to the TLS port gets no answer a client could take for one.
    let plain = http_get(port, "/healthz").unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    // A client that trusts another certificate is refused.
    let other = dir.path().join("other");
    custody_auth::load_tls(&custody_auth::TlsSource::SelfSigned {
        dir: other.clone(),
        hostnames: vec!["127.0.0.1".into()],
    })
    .unwrap();
    assert!(
        https_get(port, &other.join(custody_auth::DEV_CERT_FILE), "/healthz")
            .await
            .is_err()
    );

    std::process::Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(status.expect("stopped within 10 s of SIGTERM").success());
    // The log names the fingerprint a client pins.
    let made = custody_auth::load_tls(&custody_auth::TlsSource::Files {
        cert: cert.clone(),
        key: data.join(custody_auth::DEV_KEY_FILE),
    })
    .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains(&made.fingerprint()), "{err}");
    assert!(err.contains("https"), "{err}");
}

#[test]
fn plain_http_is_refused_on_a_non_loopback_address() {
    use predicates::prelude::PredicateBooleanExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "bind = \"0.0.0.0:{}\"\ndata_dir = {:?}\n",
            free_port(),
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    assert_cmd::Command::cargo_bin("custody-coordinator")
        .unwrap()
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "serve",
            "--insecure-plain-http",
        ])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("--insecure-plain-http")
                .and(predicates::str::contains("0.0.0.0")),
        );
    assert!(
        !dir.path().join("data").exists(),
        "refused before anything is created"
    );
}
