//! Encrypted KYC records: write (seal, replace the row, blind indexes, audit entry,
//! durable commit) and read (select, open, audit entry, durable commit) per second,
//! through `kyc::save` and `kyc::read` — the functions the API handlers call after
//! step-up 2FA — on SQLite and PostgreSQL, one client at a time; beside the raw library
//! baseline (`VaultKeys::seal_kyc` / `open_kyc` of the same record, no database) in the
//! same run.
//!
//! `cargo bench -p custody-coordinator --bench kyc` (PostgreSQL too when
//! `CUSTODY_TEST_POSTGRES_URL` is set, e.g. after `eval "$(.ci/postgres.sh)"`). Two
//! records: text only, and text with one 256 KiB document image.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Engine, Harness};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use custody_coordinator::kyc;
use custody_vault::{DocumentImage, DocumentType, KycRecord, VaultKeys};

const PRINCIPALS: usize = 200;
const IMAGE_BYTES: usize = 256 * 1024;

fn record(image: bool) -> KycRecord {
    KycRecord {
        full_name: "Zebulon Quackenbush-Oyelaran".into(),
        date_of_birth: "1987-06-05".into(),
        address: "17 Larkspur Crescent\nWhitby YO21 3XQ\nUnited Kingdom".into(),
        nationality: "GB".into(),
        document_type: DocumentType::Passport,
        document_number: "XQ-4471 9920 3".into(),
        document_images: if image {
            vec![DocumentImage {
                media_type: "image/jpeg".into(),
                bytes: (0..IMAGE_BYTES)
                    .map(|i| u8::try_from(i % 251).unwrap())
                    .collect(),
            }]
        } else {
            Vec::new()
        },
    }
}

fn principal(i: usize) -> String {
    format!("bench-{i:04}")
}

async fn setup(engine: Engine) -> Option<Harness> {
    let h = Harness::new(engine).await?;
    // Principals straight into the table and one record each: setup, not measured. Writes
    // below replace existing records (the steady state).
    for i in 0..PRINCIPALS {
        sqlx::query("INSERT INTO principals (id, email, password_hash, role, created_at) VALUES ($1, $2, 'x', 'user', 0)")
            .bind(principal(i))
            .bind(format!("{}@example.com", principal(i)))
            .execute(h.app.db.pool())
            .await
            .unwrap();
        kyc::save(&h.app, &principal(i), "bench", &record(false))
            .await
            .unwrap();
    }
    Some(h)
}

fn raw(c: &mut Criterion) {
    let keys = VaultKeys::generate();
    let id = uuid::Uuid::new_v4().to_string();
    for (label, image) in [("text", false), ("image_256k", true)] {
        let r = record(image);
        let sealed = keys.seal_kyc(id.as_bytes(), &r).unwrap();
        let mut g = c.benchmark_group(format!("kyc/raw_library/{label}"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(20);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(4));
        g.bench_function("seal_kyc", |b| {
            b.iter(|| black_box(keys.seal_kyc(id.as_bytes(), black_box(&r)).unwrap()));
        });
        g.bench_function("open_kyc", |b| {
            b.iter(|| black_box(keys.open_kyc(id.as_bytes(), black_box(&sealed)).unwrap()));
        });
        g.finish();
    }
}

fn bench_engine(c: &mut Criterion, engine: Engine, name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(h) = rt.block_on(setup(engine)) else {
        eprintln!("{name}: skipped (set CUSTODY_TEST_POSTGRES_URL)");
        return;
    };
    let next = AtomicUsize::new(0);
    for (label, image) in [("text", false), ("image_256k", true)] {
        let r = record(image);
        let mut g = c.benchmark_group(format!("kyc/{name}/{label}"));
        g.throughput(Throughput::Elements(1));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("write", |b| {
            b.to_async(&rt).iter(|| {
                let p = principal(next.fetch_add(1, Ordering::Relaxed) % PRINCIPALS);
                let (h, r) = (&h, &r);
                async move { black_box(kyc::save(&h.app, &p, "bench", r).await.unwrap()) }
            });
        });
        // Reads open this variant: every record is rewritten with it first (not measured).
        for i in 0..PRINCIPALS {
            rt.block_on(kyc::save(&h.app, &principal(i), "bench", &r))
                .unwrap();
        }
        g.bench_function("read", |b| {
            b.to_async(&rt).iter(|| {
                let p = principal(next.fetch_add(1, Ordering::Relaxed) % PRINCIPALS);
                let h = &h;
                async move { black_box(kyc::read(&h.app, "bench", &p).await.unwrap()) }
            });
        });
        g.finish();
    }
    rt.block_on(h.app.db.close());
}

fn kyc_bench(c: &mut Criterion) {
    raw(c);
    bench_engine(c, Engine::Sqlite, "sqlite");
    bench_engine(c, Engine::Postgres, "postgres");
}

criterion_group!(benches, kyc_bench);
criterion_main!(benches);
