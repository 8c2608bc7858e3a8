//! The outbox: alerts written with their event, delivered by email (a loopback SMTP sink
//! speaking the protocol) and by signed webhook, retried with backoff, given up loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use common::{Engine, Harness};
use custody_coordinator::config::{SmtpConfig, SmtpSecurity, WebhookConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A minimal SMTP server: accepts every message and keeps its envelope and data.
async fn smtp_sink() -> (
    u16,
    Arc<Mutex<Vec<(Vec<String>, String)>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                let (mut rcpt, mut data, mut in_data) = (Vec::new(), String::new(), false);
                let mut line = String::new();
                for _ in 0..10_000 {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            store.lock().unwrap().push((rcpt.clone(), data.clone()));
                            let _ = w.write_all(b"250 queued\r\n").await;
                        } else {
                            data.push_str(&line);
                        }
                        continue;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if cmd.starts_with("RCPT TO:") {
                        rcpt.push(line[8..].trim().to_owned());
                        b"250 ok\r\n"
                    } else if cmd.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (port, got, task)
}

type Hooks = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver that fails the first `fail_first` deliveries with HTTP 500.
async fn webhook_sink(fail_first: usize) -> (u16, Hooks, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Hooks = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0usize));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let store = store.clone();
            let calls = calls.clone();
            async move {
                let n = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n <= fail_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                store.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, got, task)
}

const SECRET: &str = "webhook shared secret";

async fn harness(smtp_port: u16, hook_port: u16) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let h = Harness::with_config(Engine::Sqlite, |c| {
        c.notifications.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            from: "CoinPort Security <security@example.com>".into(),
            username: None,
            password_file: None,
            timeout_secs: 5,
        });
        c.notifications.webhook = Some(WebhookConfig {
            url: format!("http://127.0.0.1:{hook_port}/hook"),
            secret_file,
            timeout_secs: 5,
        });
        c.notifications.max_attempts = 3;
    })
    .await
    .unwrap();
    std::mem::forget(dir);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_alerts_by_email_and_signed_webhook() {
    let (smtp_port, mails, smtp) = smtp_sink().await;
    let (hook_port, hooks, hook) = webhook_sink(0).await;
    let h = harness(smtp_port, hook_port).await;
    let s = h.customer("frank@example.com").await;
    let code = h.totp(&s);
    let (st, v) = h
        .call("POST", "/v1/me/password", Some(&s.token), None, Some(json!({ "current": common::PASSWORD, "new": "a brand new passphrase", "totp": code })))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();

    let mails = mails.lock().unwrap().clone();
    let change = mails
        .iter()
        .find(|(_, d)| d.contains("Your password was changed"))
        .expect("password alert mailed");
    assert_eq!(change.0, vec!["<frank@example.com>".to_owned()]);
    assert!(
        change.1.contains("held until"),
        "the alert says until when withdrawals are held"
    );
    assert!(
        change.1.contains("You have not set an anti-phishing code"),
        "{}",
        change.1
    );
    assert!(!change.1.contains("X-CoinPort-Anti-Phishing-Code"));
    assert!(change.1.contains("/v1/links/cpl_"), "{}", change.1);

    let hooks = hooks.lock().unwrap().clone();
    let (headers, body) = hooks
        .iter()
        .find(|(_, b)| b.contains("security.password_change"))
        .expect("webhook delivered");
    let expected =
        custody_coordinator::notify::webhook_signature(SECRET.as_bytes(), body.as_bytes());
    assert_eq!(headers["x-custody-signature"].to_str().unwrap(), expected);
    assert!(headers.contains_key("x-custody-delivery"));
    let delivered: serde_json::Value = serde_json::from_str(body).unwrap();
    let link = delivered["payload"]["this_wasnt_me_url"].as_str().unwrap();
    assert!(
        link.starts_with("https://127.0.0.1:8750/v1/links/cpl_"),
        "{link}"
    );
    assert!(delivered["payload"]
        .get("this_wasnt_me_url_sealed")
        .is_none());
    // The outbox keeps the link sealed: a copy of the database holds no usable link.
    let stored: Vec<String> = sqlx::query("SELECT payload FROM outbox")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, "payload"))
        .collect();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|p| !p.contains("cpl_")));
    let token = link.rsplit('/').next().unwrap();
    let links: Vec<String> = sqlx::query("SELECT token_hash FROM link_tokens")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, "token_hash"))
        .collect();
    assert!(links.contains(&hex::encode(custody_auth::link_token_hash(
        custody_auth::LinkPurpose::FreezeAccount,
        token
    ))));
    assert!(links.iter().all(|l| !l.contains(token)));
    smtp.abort();
    hook.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_backoff_then_marked_failed() {
    let (smtp_port, _mails, smtp) = smtp_sink().await;
    let (hook_port, hooks, hook) = webhook_sink(1).await;
    let h = harness(smtp_port, hook_port).await;
    let _s = h.customer("grace@example.com").await;
    let pending = || async {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE channel = 'webhook' AND delivered_at IS NULL",
        )
        .fetch_one(h.app.db.pool())
        .await
        .map(|r| sqlx::Row::get::<i64, _>(&r, "n"))
        .unwrap()
    };
    let before = pending().await;
    assert!(before > 0);
    custody_coordinator::notify::deliver_pending(&h.app, 1)
        .await
        .unwrap();
    // The first delivery failed: still pending, not due again before a minute.
    assert_eq!(pending().await, before);
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    assert_eq!(
        hooks.lock().unwrap().len(),
        usize::try_from(before).unwrap() - 1
    );
    h.clock.advance(61);
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    assert_eq!(pending().await, 0);
    assert_eq!(
        hooks.lock().unwrap().len(),
        usize::try_from(before).unwrap(),
        "each delivered exactly once"
    );

    // A receiver that is gone: after max_attempts the row is marked failed, not lost.
    hook.abort();
    let _ = hook.await;
    let code = h.totp(&_s);
    h.call(
        "POST",
        "/v1/me/whitelist",
        Some(&_s.token),
        None,
        Some(json!({ "address": common::regtest_address(11), "totp": code })),
    )
    .await;
    for _ in 0..4 {
        custody_coordinator::notify::deliver_pending(&h.app, 1000)
            .await
            .unwrap();
        h.clock.advance(3600);
    }
    let failed = sqlx::query(
        "SELECT COUNT(*) AS n, MAX(attempts) AS a FROM outbox WHERE failed_at IS NOT NULL",
    )
    .fetch_one(h.app.db.pool())
    .await
    .unwrap();
    assert!(sqlx::Row::get::<i64, _>(&failed, "n") >= 1);
    assert_eq!(sqlx::Row::get::<i64, _>(&failed, "a"), 3);
    smtp.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_for_a_change_that_did_not_happen() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let s = h.customer("heidi@example.com").await;
    let count = || async {
        sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(h.app.db.pool())
            .await
            .map(|r| sqlx::Row::get::<i64, _>(&r, "n"))
            .unwrap()
    };
    let before = count().await;
    let code = h.totp(&s);
    let (st, _) = h
        .call("POST", "/v1/me/password", Some(&s.token), None, Some(json!({ "current": "not my password at all", "new": "a brand new passphrase", "totp": code })))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(count().await, before, "the refused change queued nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_phishing_codes_need_step_up_and_a_valid_code() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let s = h.customer("ivan@example.com").await;
    let put = |code: serde_json::Value, totp: Option<String>| {
        h.call(
            "PUT",
            "/v1/me/anti-phishing-code",
            Some(&s.token),
            None,
            Some(json!({ "code": code, "totp": totp })),
        )
    };
    let (st, v) = put(json!("Blue Otter-42"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "bad_2fa");
    let code = h.totp(&s);
    let (st, v) = put(json!("abcd\r\nBcc: x@evil.example"), Some(code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("character 5 is not allowed"),
        "{v}"
    );
    let (_, v) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(v["anti_phishing_code_set"], false);
    let code = h.totp(&s);
    let (st, v) = put(json!("Blue Otter-42"), Some(code)).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(v["anti_phishing_code_set"], true);
    assert!(
        !v.to_string().contains("Otter"),
        "the code is not shown: {v}"
    );
    // Stored sealed, not in clear.
    let row = sqlx::query("SELECT anti_phishing_code FROM principals WHERE id = $1")
        .bind(s.id.clone())
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    let stored: String = sqlx::Row::get(&row, "anti_phishing_code");
    assert!(!stored.contains("Otter"));
    assert_eq!(h.audit_count("principal.anti_phishing_code_set").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_act_only_on_post_once_and_before_they_expire() {
    use custody_auth::LinkPurpose;
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let s = h.customer("judy@example.com").await;
    let issue = |purpose: LinkPurpose, payload: serde_json::Value| {
        let (app, id) = (h.app.clone(), s.id.clone());
        async move {
            let mut tx = app.db.begin().await.unwrap();
            let url = custody_coordinator::links::issue(&mut tx, &app, &id, purpose, payload)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            url.strip_prefix("https://127.0.0.1:8750")
                .unwrap()
                .to_owned()
        }
    };
    let device: String = sqlx::query("SELECT device_id FROM devices WHERE principal_id = $1")
        .bind(&s.id)
        .fetch_one(h.app.db.pool())
        .await
        .map(|r| sqlx::Row::get(&r, "device_id"))
        .unwrap();
    sqlx::query("UPDATE devices SET confirmed_at = NULL WHERE principal_id = $1")
        .bind(&s.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let confirmed = || async {
        sqlx::query("SELECT confirmed_at FROM devices WHERE principal_id = $1")
            .bind(&s.id)
            .fetch_one(h.app.db.pool())
            .await
            .map(|r| sqlx::Row::get::<Option<i64>, _>(&r, "confirmed_at"))
            .unwrap()
    };

    // A device confirmation: GET shows a button and changes nothing; POST confirms, once.
    let path = issue(LinkPurpose::ConfirmDevice, json!({ "device_id": device })).await;
    let (st, page) = h.call("GET", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(
        page.contains("Confirm this device") && !page.contains(&device),
        "{page}"
    );
    assert_eq!(confirmed().await, None);
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["purpose"], "confirm_device");
    assert!(confirmed().await.is_some());
    assert_eq!(h.audit_count("event.device_confirmed").await, 1);
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    let (st, page) = h.call("GET", &path, None, None, None).await;
    assert_eq!(st, StatusCode::GONE);
    assert!(page.as_str().unwrap().contains("already used"), "{page}");

    // Unknown and malformed tokens.
    for bad in [
        "/v1/links/cpl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/v1/links/nonsense",
    ] {
        let (st, v) = h.call("POST", bad, None, None, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"]["code"], "link_not_found");
    }

    // A freeze link that expired freezes nothing.
    let path = issue(LinkPurpose::FreezeAccount, json!({})).await;
    h.clock
        .advance(LinkPurpose::FreezeAccount.default_ttl_secs());
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    assert_eq!(v["error"]["code"], "link_expired");
    assert_eq!(h.audit_count("freeze.on").await, 0);

    // The worker deletes links 30 days after they expire, and only those.
    let stored = || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_tokens")
            .fetch_one(h.app.db.pool())
            .await
            .unwrap();
        n
    };
    let before = stored().await;
    assert!(before >= 3, "{before}");
    assert_eq!(
        custody_coordinator::links::sweep_expired(&h.app)
            .await
            .unwrap(),
        0
    );
    h.clock.advance(31 * 86_400);
    let fresh = issue(LinkPurpose::FreezeAccount, json!({})).await;
    assert_eq!(
        custody_coordinator::links::sweep_expired(&h.app)
            .await
            .unwrap(),
        u64::try_from(before).unwrap()
    );
    assert_eq!(stored().await, 1);
    let (st, page) = h.call("GET", &fresh, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
}

/// A burst of alerts does not hold up a one-time code someone is waiting for, and the
/// worker's tick delivers everything due, not one pass of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_go_out_ahead_of_a_backlog_and_a_tick_delivers_the_whole_backlog() {
    let h = Harness::new(Engine::Sqlite).await.unwrap();
    let undelivered = |kind: Option<&'static str>| {
        let db = h.app.db.clone();
        async move {
            let sql = match kind {
                Some(_) => {
                    "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND kind = $1"
                }
                None => {
                    "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND kind <> $1"
                }
            };
            let r = sqlx::query(sql)
                .bind(kind.unwrap_or(""))
                .fetch_one(db.pool())
                .await
                .unwrap();
            sqlx::Row::get::<i64, _>(&r, "n")
        }
    };
    let mut tx = h.app.db.begin().await.unwrap();
    for i in 0..250 {
        custody_coordinator::notify::enqueue(
            &mut tx,
            &h.app,
            None,
            "test.alert",
            json!({ "i": i }),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // The code is queued after all of them.
    h.clock.advance(1);
    let mut tx = h.app.db.begin().await.unwrap();
    custody_coordinator::notify::enqueue(
        &mut tx,
        &h.app,
        None,
        "otp.email",
        json!({ "code": "123456" }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let backlog = undelivered(None).await;
    assert!(backlog >= 251, "{backlog}");
    assert_eq!(undelivered(Some("otp.email")).await, 1);
    // One pass of 100 takes the code first.
    let n = custody_coordinator::notify::deliver_pending(&h.app, 100)
        .await
        .unwrap();
    assert_eq!(n, 100);
    assert_eq!(
        undelivered(Some("otp.email")).await,
        0,
        "the code went out in the first pass"
    );
    assert_eq!(undelivered(None).await, backlog - 100);
    // One tick delivers the rest.
    custody_coordinator::tick(&h.app).await.unwrap();
    assert_eq!(undelivered(None).await, 0, "the whole backlog in one tick");
    let lines = std::fs::read_to_string(h.app.config.notification_file().unwrap()).unwrap();
    assert!(lines.lines().count() >= 251);
}
