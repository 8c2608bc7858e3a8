//! Issue 9: "a presignature is used at most once, with the same crash-safe
//! consumed-before-release discipline as FROST nonces". Like `tests/crash.rs` for nonces,
//! at a smaller count: the parent re-runs this test binary as a child signer (the ignored
//! `presign_crash_child` test, parameters in `CUSTODY_PRESIGN_CRASHSIM`) that takes every
//! presignature of a store in a seeded order, "releases" each one it gets by writing its id
//! to stdout (as a partial signature would leave the device), tries again the ones it got
//! before, and is killed with `SIGKILL` at its Nth `FilePresignatureStore` step (decrypted,
//! mark created, mark synced, mark durable, secret removed, done).
//!
//! A *chain* is one store driven through child runs until a run finishes without a kill.
//! The first chains sweep every step of a first run; later kills come from an RNG seeded
//! with the chain number, so every run is deterministic. The test asserts that no
//! presignature is ever released twice, that a released one is never handed out again, and
//! that after the final run none is left (each was released or lost to a crash).
//!
//! A killed process keeps what it wrote to the page cache; it cannot lose a write that an
//! `fsync` made durable. The presignatures are well-formed but not from a ceremony (the
//! store never looks inside them).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use cggmp21::generic_ec::{NonZero, Point, Scalar, SecretScalar};
use cggmp21::supported_curves::Secp256k1;
use custody_ecdsa::{Presignature, PresignatureId, PresignatureStore, PresignatureStoreError};
use custody_keystore::ecdsa::{FilePresignatureStore, PresignFaultPoint};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CHILD_TEST: &str = "presign_crash_child";
const ENV_PLAN: &str = "CUSTODY_PRESIGN_CRASHSIM";
/// Presignatures per store.
const COUNT: u16 = 6;
/// Fault points per `take`.
const STEPS_PER_TAKE: u64 = 6;
/// Chains; the first `COUNT * STEPS_PER_TAKE` start with a sweep of every step.
const CHAINS: u64 = 80;
/// The test must inject at least this many crashes.
const MIN_CRASHES: usize = 200;
const BATCH: [u8; 16] = [0x42; 16];

fn fake_presignature(index: u16, rng: &mut ChaCha20Rng) -> Presignature {
    let r = NonZero::from_point(Point::<Secp256k1>::generator() * Scalar::random(rng))
        .expect("a random multiple of the generator is not zero");
    let inner = cggmp21::Presignature {
        R: r,
        k: SecretScalar::random(rng),
        chi: SecretScalar::random(rng),
    };
    let mut cbor = Vec::new();
    ciborium::into_writer(&inner, &mut cbor).expect("cbor");
    // docs/formats/ecdsa-messages.md, type 0x41.
    let mut b = b"CPEC\x01\x41".to_vec();
    b.extend_from_slice(&BATCH);
    b.extend_from_slice(&index.to_be_bytes());
    b.extend_from_slice(
        &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .expect("hex"),
    );
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&(cbor.len() as u32).to_be_bytes());
    b.extend_from_slice(&cbor);
    Presignature::from_secret_bytes(&b).expect("a well-formed presignature")
}

fn id(index: u16) -> PresignatureId {
    PresignatureId {
        batch: BATCH,
        index,
    }
}

fn key_of(root: &Path) -> age::x25519::Identity {
    let text = std::fs::read_to_string(root.join("store.key")).expect("key");
    age::x25519::Identity::from_str(text.trim()).expect("key")
}

fn emit(line: &str) {
    // Straight to the file descriptor, flushed: a line written here has left the process
    // even if it is killed right after.
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nEV {line}").expect("stdout");
    out.flush().expect("stdout");
}

fn kill_self() -> ! {
    #[cfg(unix)]
    {
        use rustix::process::{getpid, kill_process, Signal};
        let _ = kill_process(getpid(), Signal::KILL);
    }
    std::process::abort()
}

#[test]
#[ignore = "run as a child process by crash_at_every_step_never_releases_a_presignature_twice"]
fn presign_crash_child() {
    let Ok(plan) = std::env::var(ENV_PLAN) else {
        panic!("run by crash_at_every_step_never_releases_a_presignature_twice only");
    };
    let mut parts = plan.split(':');
    let root = PathBuf::from(parts.next().expect("root"));
    let kill_at: u64 = parts.next().expect("kill").parse().expect("kill");
    let seed: u64 = parts.next().expect("seed").parse().expect("seed");
    let mut store =
        FilePresignatureStore::open(&root.join("presign"), key_of(&root)).expect("open");
    let mut step = 0u64;
    store.set_fault_hook(Some(Box::new(move |_p: PresignFaultPoint| {
        step += 1;
        if step == kill_at {
            kill_self();
        }
    })));
    let mut order: Vec<u16> = (0..COUNT).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u32() as usize) % (i + 1));
    }
    // Every id twice: the second attempt must always be refused.
    for index in order.iter().chain(order.iter()) {
        match store.take(&id(*index)) {
            Ok(p) => {
                assert_eq!(p.id(), id(*index));
                emit(&format!("released {index}"));
            }
            Err(PresignatureStoreError::AlreadyConsumed { .. }) => {
                emit(&format!("consumed {index}"))
            }
            Err(PresignatureStoreError::Unknown { .. }) => emit(&format!("unknown {index}")),
            Err(e) => panic!("store failed: {e}"),
        }
    }
    emit("finished");
}

/// What one child run did.
struct Run {
    released: Vec<u16>,
    finished: bool,
}

fn run_child(root: &Path, kill_at: u64, seed: u64) -> Run {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_PLAN, format!("{}:{kill_at}:{seed}", root.display()))
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut run = Run {
        released: Vec::new(),
        finished: false,
    };
    for line in stdout.lines().filter_map(|l| l.strip_prefix("EV ")) {
        if let Some(i) = line.strip_prefix("released ") {
            run.released.push(i.parse().expect("index"));
        } else if line == "finished" {
            run.finished = true;
        }
    }
    if run.finished {
        assert!(
            out.status.success(),
            "the child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(
            !out.status.success(),
            "a killed child cannot succeed: {stdout}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "the child panicked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    run
}

/// Secret files without a consumed mark, counted without opening the store (opening
/// would do the child's recovery for it).
fn unmarked(root: &Path) -> u64 {
    let dir = root.join("presign");
    std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".age")?.to_owned();
            (!dir.join(format!("{stem}.used")).exists()).then_some(())
        })
        .count() as u64
}

#[test]
fn crash_at_every_step_never_releases_a_presignature_twice() {
    let mut crashes = 0usize;
    for chain in 0..CHAINS {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let key = age::x25519::Identity::generate();
        {
            use age::secrecy::ExposeSecret;
            std::fs::write(root.join("store.key"), key.to_string().expose_secret()).expect("key");
        }
        let mut rng = ChaCha20Rng::seed_from_u64(chain);
        let mut store = FilePresignatureStore::open(&root.join("presign"), key).expect("store");
        store
            .insert((0..COUNT).map(|i| fake_presignature(i, &mut rng)).collect())
            .expect("insert");
        drop(store);

        let mut released: BTreeMap<u16, usize> = BTreeMap::new();
        let mut runs = 0usize;
        loop {
            runs += 1;
            assert!(runs <= 8, "chain {chain} did not finish");
            let full_run = u64::from(COUNT) * STEPS_PER_TAKE;
            // Steps the next run will go through (at most): a kill beyond them is no kill.
            let steps = unmarked(root) * STEPS_PER_TAKE;
            let kill_at = if runs == 1 && chain < full_run {
                chain + 1
            } else if runs > 6 || steps == 0 {
                0
            } else {
                1 + rng.next_u64() % steps
            };
            let run = run_child(root, kill_at, chain * 100 + runs as u64);
            for index in run.released {
                let prev = released.insert(index, runs);
                assert!(
                    prev.is_none(),
                    "chain {chain}: presignature {index} released in run {} and again in run {runs}",
                    prev.unwrap_or_default()
                );
            }
            if run.finished {
                break;
            }
            crashes += 1;
        }
        let store =
            FilePresignatureStore::open(&root.join("presign"), key_of(root)).expect("reopen");
        assert!(
            store.available().is_empty(),
            "chain {chain}: presignatures left after the final run"
        );
        // Released or lost to a crash: every one is marked consumed, none twice.
        assert_eq!(store.consumed().len(), usize::from(COUNT), "chain {chain}");
    }
    assert!(crashes >= MIN_CRASHES, "only {crashes} crashes injected");
}

#[test]
fn a_consumed_presignature_is_refused_on_insert_and_take_and_its_secret_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = age::x25519::Identity::generate();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut store =
        FilePresignatureStore::open(&dir.path().join("presign"), key.clone()).expect("store");
    store
        .insert(vec![
            fake_presignature(0, &mut rng),
            fake_presignature(1, &mut rng),
        ])
        .expect("insert");
    assert_eq!(store.available(), vec![id(0), id(1)]);
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("presign"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    store.take(&id(0)).expect("take");
    assert_eq!(
        files(),
        vec![
            format!("{}-000.used", hex::encode(BATCH)),
            format!("{}-001.age", hex::encode(BATCH)),
        ]
    );
    assert!(matches!(
        store.take(&id(0)),
        Err(PresignatureStoreError::AlreadyConsumed { .. })
    ));
    assert!(matches!(
        store.insert(vec![fake_presignature(0, &mut rng)]),
        Err(PresignatureStoreError::AlreadyConsumed { .. })
    ));
    // All or none: a batch holding a consumed id stores nothing.
    assert!(store
        .insert(vec![
            fake_presignature(5, &mut rng),
            fake_presignature(0, &mut rng)
        ])
        .is_err());
    assert_eq!(store.available(), vec![id(1)]);
    // The secrets are encrypted to the store key: another key cannot read them.
    drop(store);
    let mut other = FilePresignatureStore::open(
        &dir.path().join("presign"),
        age::x25519::Identity::generate(),
    )
    .expect("open with another key");
    assert!(matches!(
        other.take(&id(1)),
        Err(PresignatureStoreError::Store(_))
    ));
    drop(other);
    let mut store = FilePresignatureStore::open(&dir.path().join("presign"), key).expect("open");
    assert_eq!(store.take(&id(1)).expect("take").id(), id(1));
}
