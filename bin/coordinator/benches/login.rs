//! Sign-in throughput: `POST /v1/sessions` with password + TOTP, and with password + a
//! security key (challenge call, authenticator answer, session call), 8 clients at a time —
//! beside the deliberate cost alone (argon2id verification with the same settings, 8 at a
//! time), in the same run, on SQLite and on PostgreSQL.
//!
//! `cargo bench -p custody-coordinator --bench login` (PostgreSQL too when
//! `CUSTODY_TEST_POSTGRES_URL` is set, e.g. after `eval "$(.ci/postgres.sh)"`). Requests
//! go through the axum router in-process: HTTP parsing, TLS and TCP are not measured; the
//! software authenticator's signature (client side) is.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Engine, Harness, Session, PASSWORD};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

const CLIENTS: usize = 8;
const ORIGIN: &str = "https://localhost:8750";

struct Setup {
    h: Harness,
    router: axum::Router,
    totp_users: Vec<Session>,
    key_users: Vec<(Session, Arc<tokio::sync::Mutex<SoftPasskey>>)>,
}

async fn setup(engine: Engine) -> Option<Setup> {
    // Every sign-in comes from one address: the attempt limits are not what is measured.
    let h = Harness::with_config(engine, |c| {
        c.auth.limits.login_burst_per_ip = 1_000_000;
        c.auth.limits.login_burst_per_account = 1_000_000;
        c.auth.limits.code_burst_per_ip = 1_000_000;
        c.auth.limits.code_burst_per_account = 1_000_000;
    })
    .await?;
    let mut totp_users = Vec::new();
    let mut key_users = Vec::new();
    for i in 0..CLIENTS {
        totp_users.push(h.customer(&format!("totp{i}@example.com")).await);
        let s = h.customer(&format!("key{i}@example.com")).await;
        let mut key = SoftPasskey::new(true);
        let code = h.totp(&s);
        let (st, reg) = h
            .call(
                "POST",
                "/v1/me/webauthn/registrations",
                Some(&s.token),
                None,
                Some(json!({ "totp": code })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{reg}");
        let options = serde_json::from_value(reg["options"].clone()).unwrap();
        let credential = key
            .do_registration(url::Url::parse(ORIGIN).unwrap(), options)
            .unwrap();
        let id = reg["registration_id"].as_str().unwrap();
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/me/webauthn/registrations/{id}"),
                Some(&s.token),
                None,
                Some(json!({ "name": "bench key", "credential": credential })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        key_users.push((s, Arc::new(tokio::sync::Mutex::new(key))));
    }
    let router = custody_coordinator::router(h.app.clone());
    Some(Setup {
        h,
        router,
        totp_users,
        key_users,
    })
}

async fn totp_round(s: &Setup) -> Duration {
    // A fresh TOTP step for everyone (a code is accepted once).
    s.h.clock.advance(30);
    let now = custody_coordinator::Clock::now(&s.h.clock);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for u in &s.totp_users {
        let code = totp_rs::TOTP::from_url(u.totp_uri.as_deref().unwrap())
            .unwrap()
            .generate(u64::try_from(now).unwrap());
        let router = s.router.clone();
        let body = json!({ "email": u.email, "password": PASSWORD, "totp": code });
        tasks.push(tokio::spawn(async move {
            let (st, v) = common::call_router(
                router,
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(body),
                "10.0.0.1",
            )
            .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn key_round(s: &Setup) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (u, key) in &s.key_users {
        let router = s.router.clone();
        let email = u.email.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let (st, ch) = common::call_router(
                router.clone(),
                "POST",
                "/v1/sessions/challenges",
                None,
                None,
                Some(json!({ "email": email, "password": PASSWORD, "method": "webauthn" })),
                "10.0.0.1",
            )
            .await;
            assert_eq!(st, StatusCode::CREATED, "{ch}");
            let options = serde_json::from_value(ch["webauthn_options"].clone()).unwrap();
            let credential = key
                .lock()
                .await
                .do_authentication(url::Url::parse(ORIGIN).unwrap(), options)
                .unwrap();
            let (st, v) = common::call_router(
                router,
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({ "email": email, "password": PASSWORD,
                    "webauthn": { "challenge_id": ch["challenge_id"], "credential": credential } })),
                "10.0.0.1",
            )
            .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// The deliberate cost alone: one argon2id verification per client, on the blocking pool
/// as the coordinator runs it.
async fn hash_round(s: &Setup, stored: &Arc<String>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let p = s.h.app.passwords.clone();
        let stored = stored.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            assert!(p.verify(PASSWORD, &stored));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench_engine(c: &mut Criterion, engine: Engine, name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(s) = rt.block_on(setup(engine)) else {
        eprintln!("{name}: skipped (set CUSTODY_TEST_POSTGRES_URL)");
        return;
    };
    let stored = Arc::new(s.h.app.passwords.hash(PASSWORD).unwrap());
    let mut g = c.benchmark_group(format!("login/{name}"));
    g.throughput(Throughput::Elements(CLIENTS as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("argon2id_verify_x8_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (s, stored) = (&s, &stored);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += hash_round(s, stored).await;
                }
                total
            }
        });
    });
    g.bench_function("login_totp_x8_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let s = &s;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += totp_round(s).await;
                }
                total
            }
        });
    });
    g.bench_function("login_webauthn_x8_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let s = &s;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += key_round(s).await;
                }
                total
            }
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_engine(c, Engine::Sqlite, "sqlite");
    bench_engine(c, Engine::Postgres, "postgres");
}

criterion_group!(login, benches);
criterion_main!(login);
