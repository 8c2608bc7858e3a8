//! Withdrawal intake: an authenticated `POST /v1/withdrawals` (session lookup, step-up
//! TOTP, security event, whitelist, policy with velocity history, risk score, coin
//! selection and PSBT, withdrawal row, hold, audit entries, outbox) committed durably,
//! 100 clients at a time — beside the raw durable insert rate of the same database,
//! through the same pool and settings, in the same run.
//!
//! `cargo bench -p custody-coordinator --bench intake` (PostgreSQL too when
//! `CUSTODY_TEST_POSTGRES_URL` is set, e.g. after `eval "$(.ci/postgres.sh)"`). Requests
//! go through the axum router in-process: HTTP parsing and TCP are not measured.
//! `BENCH_INTERLEAVED=<rounds>` alternates raw and intake rounds instead of criterion's
//! two separate measurements, for a ratio the machine's drifting speed does not skew.
//! `BENCH_PACED=<fraction>` measures latency at a load instead of at saturation: 100
//! clients sending at that fraction of the raw durable insert rate, evenly spaced.
//! The daemon's deferred writes (audit chaining, sessions' last use) run beside the
//! requests as `serve` runs them, and each intake round waits for its own.
//! `BENCH_ENGINE=sqlite` or `postgres` runs one engine only. `BENCH_HISTORY=<n>` starts
//! with a day of n confirmed withdrawals for the velocity limit to count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Engine, Harness, Session};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

const CLIENTS: usize = 100;
const COINS: usize = 30_000;

struct Setup {
    h: Harness,
    router: axum::Router,
    /// Each client with its own address, as customers are: one address's attempt limit
    /// (`auth.limits.code_per_ip`) is not what this bench measures.
    users: Vec<(Session, String)>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    /// Process CPU time spent in intake rounds, and the requests they made.
    cpu: Mutex<(Duration, usize)>,
}

/// CPU time of this whole process (every thread: the coordinator's tasks and SQLite's
/// connection thread), from `/proc/self/stat`; zero where that does not exist.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Busy CPU time of the whole machine so far (every process: the coordinator, its clients
/// and the PostgreSQL server): user, nice, system, irq and softirq time of `/proc/stat`.
fn machine_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal …; USER_HZ is 100.
    Duration::from_millis((at(0) + at(1) + at(2) + at(5) + at(6)) * 10)
}

async fn setup(engine: Engine) -> Option<Setup> {
    let h = Harness::new(engine).await?;
    // A successor policy without a tight velocity limit: the bench measures intake, not
    // refusals.
    let velocity = vec![custody_policy::VelocityLimit {
        asset: "BTC".into(),
        window_secs: 86_400,
        max_total: u128::MAX / 2,
        max_count: u32::MAX,
    }];
    let now = custody_coordinator::Clock::now(&h.clock);
    let p = common::policy_with_velocity(
        2,
        &h.admins,
        &h.app,
        &h.approver_ids[..2],
        &h.destination,
        now,
        now,
        velocity,
    );
    custody_coordinator::policy::install(&h.app, "bench", &p.encode(), false)
        .await
        .expect("successor");
    let mut users = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let s = h.customer(&format!("bench{i}@example.com")).await;
        users.push((s, format!("10.1.{}.{}", i / 200, i % 200 + 1)));
    }
    // A day of history from each client's own address, then a fresh session from it.
    for (u, ip) in &mut users {
        login_from(&h, u, ip).await;
    }
    h.clock.advance(25 * 3600);
    for (u, ip) in &mut users {
        login_from(&h, u, ip).await;
    }
    // Coins straight into the table: setup, not measured.
    h.insert_coins(COINS, 1_000_000).await;
    // `BENCH_HISTORY=<n>`: a day of the wallet's history, n confirmed withdrawals of
    // another account spread over the last 24 hours, for the velocity limit to count.
    let history: usize = std::env::var("BENCH_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if history > 0 {
        insert_history(&h, history).await;
    }
    let mut tx = h.app.db.pool().begin().await.unwrap();
    sqlx::query("CREATE TABLE bench_raw (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let router = custody_coordinator::router(h.app.clone());
    Some(Setup {
        h,
        router,
        users,
        latencies: Arc::new(Mutex::new(Vec::new())),
        cpu: Mutex::new((Duration::ZERO, 0)),
    })
}

/// `n` confirmed BTC withdrawals of another account, evenly over the day before now.
async fn insert_history(h: &Harness, n: usize) {
    let principal = h.customer("history@example.com").await.id;
    let now = custody_coordinator::Clock::now(&h.clock);
    let step = 86_000 / i64::try_from(n).unwrap();
    let mut tx = h.app.db.pool().begin().await.unwrap();
    for i in 0..n {
        let at = now - 86_000 + step * i64::try_from(i).unwrap();
        sqlx::query(
            "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, \
             created_at, updated_at, hold_until, risk_score, risk_reasons, policy_hash, \
             required_approvals) VALUES ($1, $2, 'BTC', $3, 10000, 'confirmed', 5, $4, $4, 0, 0, \
             '[]', '', 2)",
        )
        .bind(format!("history-{i}"))
        .bind(&principal)
        .bind(&h.destination)
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    // Written around the coordinator, so its velocity totals are recomputed.
    custody_coordinator::velocity::rebuild(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn login_from(h: &Harness, s: &mut Session, ip: &str) {
    let code = h.totp(s);
    let (st, v) = common::call_router(
        h.router(),
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(json!({ "email": s.email, "password": common::PASSWORD, "totp": code })),
        ip,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.token = v["token"].as_str().unwrap().to_owned();
}

async fn intake_round(s: &Setup) -> Duration {
    paced_round(s, Duration::ZERO).await
}

/// A round of one request per client; client `i` sends at `i × spacing` (all at once when
/// zero). Latency counts from the scheduled send, so a late start counts against it.
async fn paced_round(s: &Setup, spacing: Duration) -> Duration {
    s.h.clock.advance(30);
    let now = custody_coordinator::Clock::now(&s.h.clock);
    let cpu = process_cpu();
    // The clients' codes first, so that the schedule starts when the requests can.
    let bodies: Vec<serde_json::Value> = s
        .users
        .iter()
        .map(|(u, _)| {
            let code = totp_rs::TOTP::from_url(u.totp_uri.as_deref().unwrap())
                .unwrap()
                .generate(u64::try_from(now).unwrap());
            json!({ "asset": "BTC", "address": s.h.destination, "amount": 100_000, "totp": code })
        })
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for (i, ((u, ip), body)) in s.users.iter().zip(bodies).enumerate() {
        let at = tokio::time::Instant::from_std(start) + spacing * u32::try_from(i).unwrap();
        let router = s.router.clone();
        let token = u.token.clone();
        let lat = s.latencies.clone();
        let ip = ip.clone();
        tasks.push(tokio::spawn(async move {
            if !spacing.is_zero() {
                tokio::time::sleep_until(at).await;
            }
            let t = at.into_std();
            let (st, v) = common::call_router(
                router,
                "POST",
                "/v1/withdrawals",
                Some(&token),
                Some(&common::new_key()),
                Some(body),
                &ip,
            )
            .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            lat.lock().unwrap().push(t.elapsed());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // What the daemon writes after the requests (their audit entries chained, sessions'
    // last use) is part of their cost: finished inside the round's time and CPU.
    custody_coordinator::record_deferred(&s.h.app).await;
    let elapsed = start.elapsed();
    let mut c = s.cpu.lock().unwrap();
    c.0 += process_cpu().saturating_sub(cpu);
    c.1 += CLIENTS;
    elapsed
}

async fn raw_round(s: &Setup, counter: &std::sync::atomic::AtomicU64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let pool = s.h.app.db.pool().clone();
        let id = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("INSERT INTO bench_raw (id, payload) VALUES ($1, $2)")
                .bind(id.to_string())
                .bind("x".repeat(200))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Stops a background task when the bench of an engine ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bench_engine(c: &mut Criterion, engine: Engine, name: &str) {
    if std::env::var("BENCH_ENGINE").is_ok_and(|only| only != name) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(s) = rt.block_on(setup(engine)) else {
        eprintln!("{name}: skipped (set CUSTODY_TEST_POSTGRES_URL)");
        return;
    };
    // The daemon's deferred writes run beside the requests, as `serve` runs them.
    let app = s.h.app.clone();
    let _deferred = AbortOnDrop(rt.spawn(async move {
        loop {
            custody_coordinator::record_deferred(&app).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }));
    let counter = std::sync::atomic::AtomicU64::new(0);
    if let Some(fraction) = std::env::var("BENCH_PACED")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        paced(&rt, &s, &counter, name, fraction);
        return;
    }
    if let Some(rounds) = std::env::var("BENCH_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        interleaved(&rt, &s, &counter, name, rounds);
        return;
    }
    warm_up(&rt, &s, &counter);
    let mut g = c.benchmark_group(format!("intake/{name}"));
    g.throughput(Throughput::Elements(CLIENTS as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("raw_durable_insert_x100_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let s = &s;
            let counter = &counter;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += raw_round(s, counter).await;
                }
                total
            }
        });
    });
    s.latencies.lock().unwrap().clear();
    g.bench_function("withdrawal_intake_x100_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let s = &s;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += intake_round(s).await;
                }
                total
            }
        });
    });
    g.finish();
    report(&s, name);
}

/// One round each, not measured: warms caches and connections, and gives the tables rows
/// for `ANALYZE` to see, as autovacuum would have on a running coordinator (a run is
/// shorter than its one-minute nap, and plans made for empty tables scan every row). On
/// PostgreSQL also `VACUUM`, which autovacuum runs after inserts too: it marks the
/// history's pages all-visible, so index-only scans need not visit the table. On SQLite
/// the setup's bulk writes (accounts, 30 000 coins, the history) are then checkpointed out
/// of the write-ahead log, as a running daemon would have long before: otherwise the first
/// measured rounds share the disk with copying them.
fn warm_up(rt: &tokio::runtime::Runtime, s: &Setup, counter: &std::sync::atomic::AtomicU64) {
    rt.block_on(raw_round(s, counter));
    rt.block_on(intake_round(s));
    rt.block_on(async {
        let statement = match s.h.app.db.engine() {
            // The coordinator's own tables: the system catalogs are the server owner's
            // (vacuuming them as the coordinator's role only warns, once per catalog).
            custody_coordinator::db::Engine::Postgres => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
                )
                .fetch_all(s.h.app.db.pool())
                .await
                .unwrap();
                format!("VACUUM ANALYZE {}", tables.join(", "))
            }
            custody_coordinator::db::Engine::Sqlite => "ANALYZE".to_owned(),
        };
        sqlx::query(&statement)
            .execute(s.h.app.db.pool())
            .await
            .unwrap();
        if s.h.app.db.engine() == custody_coordinator::db::Engine::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(s.h.app.db.pool())
                .await
                .unwrap();
        }
    });
}

/// `BENCH_INTERLEAVED=<rounds>`: raw and intake rounds one after the other, `rounds`
/// times, so that the machine's speed changing during the run moves both sides of the
/// ratio alike (on this VM it moves by a third from one run to the next).
fn interleaved(
    rt: &tokio::runtime::Runtime,
    s: &Setup,
    counter: &std::sync::atomic::AtomicU64,
    name: &str,
    rounds: u32,
) {
    warm_up(rt, s, counter);
    s.latencies.lock().unwrap().clear();
    *s.cpu.lock().unwrap() = (Duration::ZERO, 0);
    let (mut raw, mut intake) = (Duration::ZERO, Duration::ZERO);
    let (mut raw_cpu, mut intake_cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let c0 = machine_cpu();
        raw += rt.block_on(raw_round(s, counter));
        let c1 = machine_cpu();
        intake += rt.block_on(intake_round(s));
        let c2 = machine_cpu();
        raw_cpu += c1.saturating_sub(c0);
        intake_cpu += c2.saturating_sub(c1);
    }
    #[allow(clippy::cast_precision_loss)]
    let per_sec = |d: Duration| (f64::from(rounds) * CLIENTS as f64) / d.as_secs_f64().max(1e-9);
    eprintln!(
        "{name}: interleaved over {rounds} rounds of {CLIENTS}: raw durable insert {:.0}/s, \
         intake {:.0} req/s, intake / raw {:.1}%",
        per_sec(raw),
        per_sec(intake),
        100.0 * raw.as_secs_f64() / intake.as_secs_f64().max(1e-9)
    );
    // The whole machine's busy CPU per request of each kind: unlike the rates, not
    // lowered by the idle moments at the end of each round (its last requests running
    // alone) and steadier from run to run.
    #[allow(clippy::cast_precision_loss)]
    let per_request = |d: Duration| d.as_secs_f64() * 1e3 / (f64::from(rounds) * CLIENTS as f64);
    eprintln!(
        "{name}: machine CPU per request (all processes, 10 ms ticks): intake {:.2} ms, \
         raw durable insert {:.2} ms, raw / intake {:.1}%",
        per_request(intake_cpu),
        per_request(raw_cpu),
        100.0 * raw_cpu.as_secs_f64() / intake_cpu.as_secs_f64().max(1e-9)
    );
    report(s, name);
}

/// `BENCH_PACED=<fraction>`: the latency of intake at a given load rather than at
/// saturation. The raw durable insert rate is measured first (10 rounds); then 100
/// clients send at `fraction` of that rate in total, evenly spaced, for 20 rounds.
fn paced(
    rt: &tokio::runtime::Runtime,
    s: &Setup,
    counter: &std::sync::atomic::AtomicU64,
    name: &str,
    fraction: f64,
) {
    warm_up(rt, s, counter);
    let mut raw = Duration::ZERO;
    for _ in 0..10 {
        raw += rt.block_on(raw_round(s, counter));
    }
    #[allow(clippy::cast_precision_loss)]
    let raw_rate = (10 * CLIENTS) as f64 / raw.as_secs_f64().max(1e-9);
    let offered = raw_rate * fraction;
    let spacing = Duration::from_secs_f64(1.0 / offered.max(1.0));
    s.latencies.lock().unwrap().clear();
    *s.cpu.lock().unwrap() = (Duration::ZERO, 0);
    let mut total = Duration::ZERO;
    for _ in 0..20 {
        total += rt.block_on(paced_round(s, spacing));
    }
    #[allow(clippy::cast_precision_loss)]
    let achieved = (20 * CLIENTS) as f64 / total.as_secs_f64().max(1e-9);
    eprintln!(
        "{name}: paced: raw durable insert {raw_rate:.0}/s; {CLIENTS} clients offering {offered:.0} req/s \
         ({:.0}% of raw), achieved {achieved:.0} req/s",
        fraction * 100.0
    );
    report(s, name);
}

/// Prints the intake latencies and CPU time gathered so far.
fn report(s: &Setup, name: &str) {
    let mut l = s.latencies.lock().unwrap().clone();
    l.sort();
    let (cpu, requests) = *s.cpu.lock().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let cpu_per_request = cpu.as_secs_f64() * 1e3 / requests.max(1) as f64;
    eprintln!(
        "{name}: intake latency over {} requests at {CLIENTS} concurrent clients: p50 {:.1} ms, p99 {:.1} ms; \
         CPU time of this process (coordinator + SQLite, not the PostgreSQL server) {cpu_per_request:.2} ms per request",
        l.len(),
        percentile(&l, 0.50).as_secs_f64() * 1e3,
        percentile(&l, 0.99).as_secs_f64() * 1e3
    );
}

fn intake(c: &mut Criterion) {
    bench_engine(c, Engine::Sqlite, "sqlite");
    bench_engine(c, Engine::Postgres, "postgres");
}

criterion_group!(benches, intake);
criterion_main!(benches);
