//! The signer's keystore and start-up costs, each beside a raw baseline doing the same
//! work without our code. Results and how to read them: `docs/benchmarks.md`, section
//! "Signer and keystore".
//!
//! - `keystore-unlock`: [`Keystore::open`] (read `secrets.age`, age scrypt decrypt, decode
//!   and check the share and identity, lock and load the nonce journal) at the default
//!   scrypt work factor and at the drill one, beside the raw `age` scrypt decryption of
//!   the same file.
//! - `nonce-journal`: reserving (`issue`) and consuming a counter, each one appended and
//!   `fdatasync`ed record, beside a raw append of a record-sized write and `sync_all`;
//!   and reopening a journal of 10 000 records.
//! - `signer-cold-start`: spawning the `custody-signer` binary for `--version` and
//!   `status`, if it is built (`CUSTODY_SIGNER_BIN`, else `target/{release,debug}`); the
//!   function's name says which build ran, or that it was skipped.
//!
//! Times are wall-clock: fsync and process start-up are not CPU time.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use custody_keystore::journal::JOURNAL_FILE;
use custody_keystore::{
    EncryptionParams, FileNonceStore, Keystore, SecretString, DEFAULT_SCRYPT_LOG_N,
    MAX_SCRYPT_LOG_N, SECRETS_FILE,
};
use custody_threshold::{generate_with_dealer, Identity, Network, NonceStore};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The work factor the ceremony drills use (`ceremonies/dkg-2-of-3.sh`).
const DRILL_SCRYPT_LOG_N: u8 = 10;
/// An issue record's length in the journal (`docs/formats/keystore.md`).
const RECORD_LEN: usize = 17;

fn passphrase() -> SecretString {
    SecretString::from("correct horse battery staple".to_owned())
}

fn unlock(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (_group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut rng).expect("dealer");
    let mut group = c.benchmark_group("keystore-unlock");
    // One unlock at 2^18 takes about a second.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for (share, log_n) in shares
        .into_iter()
        .zip([DEFAULT_SCRYPT_LOG_N, DRILL_SCRYPT_LOG_N])
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = Identity::generate("bench", &mut rng).expect("identity");
        let params = EncryptionParams::with_scrypt_log_n(log_n).expect("work factor");
        drop(
            Keystore::create(dir.path(), share, identity, &passphrase(), params, &mut rng)
                .expect("create"),
        );
        let param = format!("log_n={log_n}");
        group.bench_function(BenchmarkId::new("Keystore::open", &param), |b| {
            b.iter(|| Keystore::open(black_box(dir.path()), &passphrase()).expect("open"));
        });
        let path = dir.path().join(SECRETS_FILE);
        group.bench_function(BenchmarkId::new("raw age scrypt decrypt", &param), |b| {
            b.iter(|| {
                let ciphertext = fs::read(black_box(&path)).expect("read");
                let mut id = age::scrypt::Identity::new(passphrase());
                id.set_max_work_factor(MAX_SCRYPT_LOG_N);
                age::decrypt(&id, &ciphertext).expect("decrypt")
            });
        });
    }
    group.finish();
}

fn journal(c: &mut Criterion) {
    let mut group = c.benchmark_group("nonce-journal");
    let seed_id = [7; 8];

    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = FileNonceStore::create(dir.path(), seed_id).expect("create");
    group.bench_function("issue(1)", |b| {
        b.iter(|| store.issue(1).expect("issue"));
    });
    group.bench_function("issue(1)+consume(1)", |b| {
        b.iter(|| {
            let counter = store.issue(1).expect("issue");
            store.consume(&[counter]).expect("consume");
        });
    });
    drop(store);

    let raw = dir.path().join("raw");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw)
        .expect("raw file");
    let record = [0x49; RECORD_LEN];
    group.bench_function("raw append+sync_all", |b| {
        b.iter(|| {
            file.write_all(black_box(&record)).expect("write");
            file.sync_all().expect("sync");
        });
    });
    group.bench_function("raw append+sync_data", |b| {
        b.iter(|| {
            file.write_all(black_box(&record)).expect("write");
            file.sync_data().expect("sync");
        });
    });
    group.bench_function("raw 2x(append+sync_all)", |b| {
        b.iter(|| {
            for _ in 0..2 {
                file.write_all(black_box(&record)).expect("write");
                file.sync_all().expect("sync");
            }
        });
    });
    drop(file);

    // A journal of 5 000 issue and 5 000 consume records.
    let big = tempfile::tempdir().expect("temp dir");
    let mut store = FileNonceStore::create(big.path(), seed_id).expect("create");
    for _ in 0..5_000 {
        let counter = store.issue(1).expect("issue");
        store.consume(&[counter]).expect("consume");
    }
    drop(store);
    let len = fs::metadata(big.path().join(JOURNAL_FILE))
        .expect("journal")
        .len();
    group.bench_function(format!("open (10 000 records, {len} B)"), |b| {
        b.iter(|| FileNonceStore::open(black_box(big.path()), seed_id).expect("open"));
    });
    group.finish();
}

/// The `custody-signer` binary to measure, and which build it is.
fn signer_binary() -> Option<(PathBuf, &'static str)> {
    if let Some(path) = std::env::var_os("CUSTODY_SIGNER_BIN") {
        return Some((PathBuf::from(path), "CUSTODY_SIGNER_BIN"));
    }
    // This bench runs as target/<profile>/deps/keystore-<hash>.
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?.to_owned();
    ["release", "debug"].into_iter().find_map(|profile| {
        let path = target.join(profile).join("custody-signer");
        path.is_file().then_some((path, profile))
    })
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn custody-signer")
}

fn cold_start(c: &mut Criterion) {
    let mut group = c.benchmark_group("signer-cold-start");
    let Some((bin, build)) = signer_binary() else {
        // Named so that the report says why nothing was measured.
        group.bench_function(
            "skipped: custody-signer is not built (cargo build -p custody-signer)",
            |b| b.iter(|| ()),
        );
        group.finish();
        return;
    };
    let home_dir = tempfile::tempdir().expect("temp dir");
    let home = home_dir.path().join("home");
    let pass = home_dir.path().join("pass");
    fs::write(&pass, "bench passphrase for the signer\n").expect("passphrase file");
    let home_arg = home.to_str().expect("UTF-8 temp path");
    let created = run(
        &bin,
        &[
            "--home",
            home_arg,
            "--passphrase-file",
            pass.to_str().expect("UTF-8 temp path"),
            "--scrypt-log-n",
            "10",
            "identity",
            "create",
            "--name",
            "bench",
        ],
    );
    group.measurement_time(Duration::from_secs(3));
    group.bench_function(format!("--version ({build} build)"), |b| {
        b.iter(|| {
            let out = run(&bin, &["--version"]);
            assert!(out.status.success(), "custody-signer --version failed");
        });
    });
    if created.status.success() {
        group.bench_function(format!("status ({build} build)"), |b| {
            b.iter(|| {
                let out = run(&bin, &["--home", home_arg, "status"]);
                assert!(out.status.success(), "custody-signer status failed");
            });
        });
    } else {
        group.bench_function(
            format!("status skipped: identity create failed ({build} build)"),
            |b| b.iter(|| ()),
        );
    }
    group.finish();
}

criterion_group!(benches, unlock, journal, cold_start);
criterion_main!(benches);
