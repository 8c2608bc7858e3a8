//! Issue 5: "a crash at any point can lose a commitment but never reuse one — prove it with
//! a test that kills the process at every step … and checks no two shares ever share a
//! nonce", and "the crash test shows zero nonce reuse over at least 1,000 injected
//! crashes".
//!
//! The parent test re-runs this test binary as a child signer (the ignored `crash_child`
//! test, parameters in the `CUSTODY_CRASHSIM` environment variable). The child installs a
//! fault hook in [`FileNonceStore`] that kills the process with `SIGKILL` (no unwinding, no
//! destructors, no exit handlers; `abort` where there is no `SIGKILL`) at one injected
//! point:
//!
//! - `step:N`: the Nth journal step of the process (temporary file written, synced,
//!   renamed, directory synced; before a record, record half written, written, synced);
//! - `torn:R:K:cut|zero`: the Rth record appended by the process is torn before the kill:
//!   only its first `K mod len` bytes are kept (`cut`), or they are followed by zeros up
//!   to the record's full length (`zero`, as a file system that extended the file but lost
//!   the data leaves it).
//!
//! A *chain* is one keystore directory, with its own nonce seed, driven through a sequence
//! of child runs: each run reopens the journal (recovering from the previous crash), is
//! asked to sign under a commitment published by an earlier run (a late or replayed
//! request, with another message and co-signer commitment: signing under one nonce twice
//! would leak the key share), issues fresh commitments and signs them, until its injected
//! kill. Every signature share
//! the child computes is "released" by writing it to stdout before the child goes on, so
//! shares released just before a kill are seen. After its crashes, a chain ends with a run
//! that must finish. The first chains sweep every step of a first run, every step of a run
//! that recovers a torn record, and every torn length of each record of a first run, cut
//! and zeroed; later kills come from an RNG seeded with the chain number, so every run is
//! deterministic and a failure names its chain and runs.
//!
//! A killed process keeps what it wrote to the page cache; it cannot lose a write that an
//! `fsync` would have made durable. Lost unsynced data is modelled by the torn records
//! above and by the journal tests that damage the file directly.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use custody_keystore::journal::JOURNAL_FILE;
use custody_keystore::{FaultPoint, FileNonceStore};
use custody_threshold::{
    generate_with_dealer, issue_commitments, sign_request, CommitmentBatch, CommitmentPool,
    ConsumeError, ItemSpec, KeyShare, MemoryNonceStore, Network, NonceSeed, SignError,
    SigningRequest, TweakMode,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const CHILD_TEST: &str = "crash_child";
/// The child's parameters.
const ENV_PLAN: &str = "CUSTODY_CRASHSIM";
/// The file holding signer 1's key share and signer 2's commitments, which every chain
/// uses.
const ENV_FIXTURE: &str = "CUSTODY_CRASHSIM_FIXTURE";
/// Co-signer commitments in the fixture.
const COSIGNER_COMMITMENTS: usize = 16;

/// The test must inject at least this many crashes (issue 5).
const MIN_CRASHES: usize = 1000;
/// Chains run; the first [`SWEEP_CHAINS`] of them start with a systematic sweep.
const CHAINS: u64 = 170;
/// Crashes injected per chain before its final, crash-free run.
const CRASHES_PER_CHAIN: usize = 7;
/// Runs per chain at most (kills past the end of a run do not crash it).
const MAX_RUNS: usize = 24;
/// Chains whose first run is killed at step `chain + 1`.
const STEP_SWEEP: u64 = 20;
/// Chains whose first run tears its second record and whose second run is killed at
/// every step (which covers the recovery's rewrite of the journal).
const RECOVERY_SWEEP: u64 = 20;
/// The records a first run appends: its issue record for 3 counters and its consume
/// records for 1 and 2 counters, by length (`docs/formats/keystore.md`).
const FIRST_RUN_RECORDS: [u32; 3] = [17, 19, 27];
/// Chains whose first run tears one of its records, one chain per record, torn length
/// and tear (cut or zeroed).
const TORN_SWEEP: u64 =
    2 * (FIRST_RUN_RECORDS[0] + FIRST_RUN_RECORDS[1] + FIRST_RUN_RECORDS[2]) as u64;
const SWEEP_CHAINS: u64 = STEP_SWEEP + RECOVERY_SWEEP + TORN_SWEEP;
/// Parallel chains (the machine has two cores).
const WORKERS: usize = 2;

// ---------------------------------------------------------------- child side

/// Where the child is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    None,
    Step(u32),
    Torn { record: u32, keep: u32, zeros: bool },
}

impl Crash {
    fn encode(self) -> String {
        match self {
            Crash::None => "none".into(),
            Crash::Step(n) => format!("step:{n}"),
            Crash::Torn {
                record,
                keep,
                zeros,
            } => format!(
                "torn:{record}:{keep}:{}",
                if zeros { "zero" } else { "cut" }
            ),
        }
    }

    fn decode(s: &str) -> Crash {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> u32 { parts[i].parse().expect("number") };
        match parts[0] {
            "none" => Crash::None,
            "step" => Crash::Step(num(1)),
            "torn" => Crash::Torn {
                record: num(1),
                keep: num(2),
                zeros: parts[3] == "zero",
            },
            other => panic!("unknown crash {other}"),
        }
    }
}

/// One child run.
#[derive(Clone, Debug)]
struct Plan {
    chain: u64,
    run: usize,
    crash: Crash,
    /// Counters published by earlier runs to request signatures for again.
    replays: Vec<u64>,
    /// Commitments to issue.
    issue: usize,
    dir: PathBuf,
}

impl Plan {
    fn encode(&self) -> String {
        let replays: Vec<String> = self.replays.iter().map(u64::to_string).collect();
        format!(
            "{};{};{};{};{};{}",
            self.chain,
            self.run,
            self.crash.encode(),
            replays.join(","),
            self.issue,
            self.dir.display()
        )
    }

    fn decode(s: &str) -> Plan {
        let mut parts = s.splitn(6, ';');
        let mut next = || parts.next().expect("plan field");
        Plan {
            chain: next().parse().expect("chain"),
            run: next().parse().expect("run"),
            crash: Crash::decode(next()),
            replays: next()
                .split(',')
                .filter(|r| !r.is_empty())
                .map(|r| r.parse().expect("counter"))
                .collect(),
            issue: next().parse().expect("issue count"),
            dir: PathBuf::from(next()),
        }
    }
}

fn emit(line: &str) {
    // Straight to the file descriptor (not `print!`, which the test harness captures):
    // a line written here has left the process even if it is killed right after.
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nEV {line}").expect("stdout");
    out.flush().expect("stdout");
}

/// Kills this process without unwinding, destructors or exit handlers.
fn kill_self(what: &str) -> ! {
    emit(&format!("crash {what}"));
    #[cfg(unix)]
    {
        use rustix::process::{getpid, kill_process, Signal};
        let _ = kill_process(getpid(), Signal::KILL);
    }
    std::process::abort()
}

/// Tears the record just appended to `journal` (which was `before` bytes long): keeps
/// `keep` bytes of it (modulo its length) and drops the rest, or zeroes the rest.
fn tear(journal: &Path, before: u64, keep: u32, zeros: bool) -> String {
    let len = fs::metadata(journal).expect("journal").len() - before;
    let keep = u64::from(keep) % len;
    let mut f = OpenOptions::new()
        .write(true)
        .open(journal)
        .expect("journal");
    if zeros {
        f.seek(SeekFrom::Start(before + keep)).expect("seek");
        f.write_all(&vec![0; (len - keep) as usize]).expect("zero");
    } else {
        f.set_len(before + keep).expect("truncate");
    }
    format!("torn-{} {keep}/{len}", if zeros { "zero" } else { "cut" })
}

/// Each chain's own nonce seed for signer 1.
fn seed(chain: u64) -> NonceSeed {
    let mut bytes = [1; 32];
    bytes[..8].copy_from_slice(&chain.to_be_bytes());
    NonceSeed::from_secret_bytes(&bytes)
}

/// Signer `share`'s commitment for `counter`, which is a pure function of (seed,
/// counter): a later process can rebuild any request.
fn commitment_at(share: &KeyShare, seed: &NonceSeed, counter: u64) -> CommitmentBatch {
    let mut mem = MemoryNonceStore::new();
    if counter > 0 {
        custody_threshold::NonceStore::issue(
            &mut mem,
            u32::try_from(counter).expect("small counter"),
        )
        .expect("infallible");
    }
    issue_commitments(share, seed, &mut mem, 1).expect("memory store")
}

struct Child {
    share1: KeyShare,
    seed1: NonceSeed,
    /// Signer 2's commitments (encoded; decoded when used), taken in turn. Signer 2 is
    /// not under test; with each request's own message they give every request its own
    /// binding factor, so signing twice under one nonce would leak the key share.
    cosigner: Vec<Vec<u8>>,
    cosigner_next: usize,
    store: FileNonceStore,
}

impl Child {
    /// A request over signer 1's `own` commitments and the next co-signer commitments.
    fn request(&mut self, own: &[CommitmentBatch], session: [u8; 16], tag: &str) -> SigningRequest {
        let group = self.share1.group();
        let mut pool = CommitmentPool::new(group);
        let mut items = Vec::new();
        for (i, batch) in own.iter().enumerate() {
            pool.add_batch(batch).expect("same group");
            let c2 = &self.cosigner[self.cosigner_next % self.cosigner.len()];
            let c2 = CommitmentBatch::decode(c2).expect("commitment batch");
            self.cosigner_next += 1;
            pool.add_batch(&c2).expect("same group");
            items.push(ItemSpec {
                message: format!("{tag}.{i}").into_bytes(),
                path: Vec::new(),
                tweak: TweakMode::Untweaked,
            });
        }
        SigningRequest::build(session, group, &[1, 2], items, &mut pool).expect("valid request")
    }

    /// Signs as participant 1 with the journal under test and releases the shares.
    /// Returns whether it signed.
    fn sign(&mut self, req: &SigningRequest) -> bool {
        match sign_request(&self.share1, &self.seed1, &mut self.store, req) {
            Ok(out) => {
                for (item, share) in req.items().iter().zip(&out.shares) {
                    let (id, commitment) = &item.commitments[&1];
                    let commitment = commitment.serialize().expect("valid commitment");
                    let message = String::from_utf8_lossy(&item.spec.message).into_owned();
                    emit(&format!(
                        "release {} {} {} {message}",
                        id.counter,
                        hex::encode(commitment),
                        hex::encode(share)
                    ));
                }
                true
            }
            Err(SignError::Nonce(
                ConsumeError::AlreadyConsumed { counter } | ConsumeError::NeverIssued { counter },
            )) => {
                emit(&format!("refused {counter}"));
                false
            }
            Err(e) => {
                emit(&format!("error {e}"));
                false
            }
        }
    }
}

/// Writes the fixture: signer 1's share and signer 2's commitments, each
/// length-prefixed.
fn write_fixture(path: &Path) {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (_group, dealt) = generate_with_dealer(Network::Regtest, 2, 3, &mut rng).expect("dealer");
    let mut parts = vec![dealt[0].to_secret_bytes().to_vec()];
    let mut mem = MemoryNonceStore::new();
    let seed2 = NonceSeed::from_secret_bytes(&[2; 32]);
    for _ in 0..COSIGNER_COMMITMENTS {
        let batch = issue_commitments(&dealt[1], &seed2, &mut mem, 1).expect("memory store");
        parts.push(batch.encode());
    }
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&u16::try_from(part.len()).expect("short").to_be_bytes());
        bytes.extend_from_slice(&part);
    }
    fs::write(path, bytes).expect("write fixture");
}

fn read_fixture() -> (KeyShare, Vec<Vec<u8>>) {
    let path = std::env::var_os(ENV_FIXTURE).expect("fixture file");
    let bytes = fs::read(path).expect("fixture file");
    let mut parts = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        parts.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    let share1 = KeyShare::from_secret_bytes(parts[0]).expect("share 1");
    let cosigner = parts[1..].iter().map(|p| p.to_vec()).collect();
    (share1, cosigner)
}

fn run_child(plan: &Plan) {
    let (share1, cosigner) = read_fixture();
    let seed1 = seed(plan.chain);
    let journal = plan.dir.join(JOURNAL_FILE);
    let crash = plan.crash;
    let (mut steps, mut records, mut before) = (0u32, 0u32, 0u64);
    let hook_journal = journal.clone();
    let hook = Box::new(move |point: FaultPoint| {
        steps += 1;
        match point {
            FaultPoint::BeforeRecord => {
                before = fs::metadata(&hook_journal).expect("journal").len();
            }
            FaultPoint::RecordWritten => {
                records += 1;
                if let Crash::Torn {
                    record,
                    keep,
                    zeros,
                } = crash
                {
                    if records == record {
                        let what = tear(&hook_journal, before, keep, zeros);
                        kill_self(&format!("{what} {point:?}"));
                    }
                }
            }
            _ => {}
        }
        if crash == Crash::Step(steps) {
            kill_self(&format!("step {point:?}"));
        }
    });
    // The simulation knows that a missing journal means the first start never finished,
    // so nothing was issued yet; a real device treats it as an error.
    let store = if journal.exists() {
        FileNonceStore::open_with_fault_hook(&plan.dir, seed1.id(), Some(hook))
    } else {
        FileNonceStore::create_with_fault_hook(&plan.dir, seed1.id(), Some(hook))
    };
    let store = match store {
        Ok(store) => store,
        Err(e) => {
            emit(&format!("error reopening: {e}"));
            return;
        }
    };
    emit(&format!(
        "opened {} {}",
        store.recovered_from_torn_tail(),
        store.high_water()
    ));
    let mut c = Child {
        share1,
        seed1,
        store,
        cosigner,
        cosigner_next: 3 * plan.run,
    };
    let session = |i: u8| {
        let mut s = [i; 16];
        s[..8].copy_from_slice(&plan.chain.to_be_bytes());
        s[8] = plan.run as u8;
        s
    };
    // Late or replayed requests for commitments published by earlier runs.
    for (i, &counter) in plan.replays.iter().enumerate() {
        let own = commitment_at(&c.share1, &c.seed1, counter);
        let req = c.request(&[own], session(i as u8), &format!("R{}.{i}", plan.run));
        c.sign(&req);
    }
    let batch = issue_commitments(&c.share1, &c.seed1, &mut c.store, plan.issue).expect("issue");
    let first = batch.commitments[0].0.counter;
    emit(&format!("issued {first} {}", plan.issue));
    let single = |i: usize| CommitmentBatch {
        group_key: batch.group_key,
        signer: batch.signer,
        commitments: vec![batch.commitments[i]],
    };
    // Fresh commitments sign: one request of one item, then one of the rest.
    let mut groups = vec![vec![single(0)]];
    if plan.issue > 1 {
        groups.push((1..plan.issue).map(single).collect());
    }
    for (g, own) in groups.iter().enumerate() {
        let req = c.request(own, session(100 + g as u8), &format!("F{}.{g}", plan.run));
        if !c.sign(&req) {
            emit("error fresh commitments were refused");
        }
    }
    emit("done");
}

#[test]
#[ignore = "child process of crash_at_every_step_never_reuses_a_nonce"]
fn crash_child() {
    let Ok(plan) = std::env::var(ENV_PLAN) else {
        panic!("run by crash_at_every_step_never_reuses_a_nonce only");
    };
    run_child(&Plan::decode(&plan));
}

// ---------------------------------------------------------------- parent side

/// What the parent saw of one child run.
#[derive(Debug, Default)]
struct Run {
    /// `(recovered a torn tail, high-water mark)` once the journal was open.
    opened: Option<(bool, u64)>,
    crashed_at: Option<String>,
    done: bool,
    errors: Vec<String>,
    issued: Option<(u64, u64)>,
    refused: usize,
    /// (counter, commitment hex, share hex, message)
    releases: Vec<(u64, String, String, String)>,
}

fn spawn(plan: &Plan, fixture: &Path) -> Result<Run, String> {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_PLAN, plan.encode())
        .env(ENV_FIXTURE, fixture)
        .output()
        .map_err(|e| format!("spawn child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut run = Run::default();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("EV ")) {
        let w: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> u64 { w[i].parse().expect("number") };
        match w[0] {
            "opened" => run.opened = Some((w[1] == "true", num(2))),
            "issued" => run.issued = Some((num(1), num(2))),
            "release" => {
                run.releases
                    .push((num(1), w[2].to_owned(), w[3].to_owned(), w[4].to_owned()))
            }
            "refused" => run.refused += 1,
            "crash" => run.crashed_at = Some(w[1..].join(" ")),
            "done" => run.done = true,
            "error" => run.errors.push(line.to_owned()),
            _ => {}
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !run.errors.is_empty() {
        return Err(format!("child reported {:?}", run.errors));
    }
    if run.done != out.status.success() || run.done == run.crashed_at.is_some() {
        return Err(format!(
            "child neither finished nor was killed at a fault point (status {:?}):\n{stdout}\n{stderr}",
            out.status
        ));
    }
    if run.opened.is_none() && run.crashed_at.is_none() {
        return Err(format!("the journal did not reopen:\n{stdout}\n{stderr}"));
    }
    Ok(run)
}

#[derive(Debug, Default)]
struct Tally {
    chains: usize,
    runs: usize,
    crashes: usize,
    torn_cut: usize,
    torn_zero: usize,
    torn_recoveries: usize,
    released: usize,
    replays_refused: usize,
    points: BTreeMap<String, usize>,
    /// Released commitment (hex) → (chain, counter), across all chains.
    commitments: BTreeMap<String, (u64, u64)>,
}

impl Tally {
    fn merge(&mut self, other: Tally) -> Result<(), String> {
        self.chains += other.chains;
        self.runs += other.runs;
        self.crashes += other.crashes;
        self.torn_cut += other.torn_cut;
        self.torn_zero += other.torn_zero;
        self.torn_recoveries += other.torn_recoveries;
        self.released += other.released;
        self.replays_refused += other.replays_refused;
        for (point, n) in other.points {
            *self.points.entry(point).or_default() += n;
        }
        for (commitment, at) in other.commitments {
            if let Some(first) = self.commitments.insert(commitment.clone(), at) {
                return Err(format!(
                    "nonce commitment {commitment} released by chain {} counter {} and chain {} counter {}",
                    first.0, first.1, at.0, at.1
                ));
            }
        }
        Ok(())
    }
}

/// The kill for run `run` of chain `chain`: the sweeps first, then random.
fn choose_crash(chain: u64, run: usize, rng: &mut ChaCha20Rng) -> Crash {
    let torn_sweep = STEP_SWEEP + RECOVERY_SWEEP;
    match (chain, run) {
        (c, 0) if c < STEP_SWEEP => return Crash::Step(c as u32 + 1),
        (c, 0) if c < torn_sweep => {
            return Crash::Torn {
                record: 2,
                keep: c as u32,
                zeros: c % 2 == 0,
            }
        }
        (c, 1) if (STEP_SWEEP..torn_sweep).contains(&c) => {
            return Crash::Step((c - STEP_SWEEP) as u32 + 1)
        }
        (c, 0) if c < SWEEP_CHAINS => {
            let i = (c - torn_sweep) as u32;
            let lengths: u32 = FIRST_RUN_RECORDS.iter().sum();
            let mut keep = i % lengths;
            let mut record = 1;
            for len in FIRST_RUN_RECORDS {
                if keep < len {
                    break;
                }
                keep -= len;
                record += 1;
            }
            return Crash::Torn {
                record,
                keep,
                zeros: i >= lengths,
            };
        }
        _ => {}
    }
    let r = rng.next_u32();
    if r.is_multiple_of(3) {
        Crash::Torn {
            record: 1 + (r >> 2) % 3,
            keep: (r >> 4) % 32,
            zeros: (r >> 9).is_multiple_of(2),
        }
    } else {
        Crash::Step(1 + (r >> 2) % 14)
    }
}

/// Runs one chain; an error names the chain and its runs so far.
fn chain(chain: u64, fixture: &Path) -> Result<Tally, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rng = ChaCha20Rng::seed_from_u64(chain);
    let mut tally = Tally {
        chains: 1,
        ..Tally::default()
    };
    let mut history: Vec<String> = Vec::new();
    // Counter → (commitment, share, message) of every release in this chain.
    let mut released: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut published: Vec<u64> = Vec::new();
    let mut last_release: Option<u64> = None;
    let fail = |history: &[String], why: String| {
        Err(format!(
            "chain {chain}, runs [{}]: {why}",
            history.join(", ")
        ))
    };
    for run in 0.. {
        let crash = if tally.crashes >= CRASHES_PER_CHAIN || run >= MAX_RUNS {
            Crash::None
        } else {
            choose_crash(chain, run, &mut rng)
        };
        // A request for the newest released counter (which must be refused) or for any
        // published counter (which may be signed only if it was never consumed).
        let pick = rng.next_u32() as usize;
        let replays = match last_release {
            Some(counter) if pick.is_multiple_of(2) => vec![counter],
            _ if !published.is_empty() => vec![published[pick / 2 % published.len()]],
            _ => Vec::new(),
        };
        let plan = Plan {
            chain,
            run,
            crash,
            replays,
            issue: 1 + (run + 2) % 3,
            dir: dir.path().to_owned(),
        };
        history.push(format!(
            "{} replay {:?} issue {}",
            crash.encode(),
            plan.replays,
            plan.issue
        ));
        tally.runs += 1;
        let r = match spawn(&plan, fixture) {
            Ok(r) => r,
            Err(e) => return fail(&history, e),
        };
        if let Some((torn, high_water)) = r.opened {
            tally.torn_recoveries += usize::from(torn);
            if let Some(&max) = published.iter().max() {
                if high_water <= max {
                    return fail(
                        &history,
                        format!("reopened at mark {high_water}, but counter {max} was published"),
                    );
                }
            }
        }
        if let Some((first, count)) = r.issued {
            published.extend(first..first + count);
        }
        tally.replays_refused += r.refused;
        for (counter, commitment, share, message) in r.releases {
            tally.released += 1;
            last_release = Some(counter);
            if let Some(earlier) = released.get(&counter) {
                return fail(
                    &history,
                    format!(
                        "nonce counter {counter} released twice: {earlier:?} and {:?}",
                        (commitment, share, message)
                    ),
                );
            }
            tally
                .commitments
                .insert(commitment.clone(), (chain, counter));
            released.insert(counter, (commitment, share, message));
        }
        if let (0, Crash::Torn { record, keep, .. }) = (run, crash) {
            // The sweep covers every torn length only if the first run's records are
            // the ones it expects.
            let len = FIRST_RUN_RECORDS[record as usize - 1];
            let expected = format!(" {}/{len} ", keep % len);
            if !r
                .crashed_at
                .as_deref()
                .is_some_and(|w| w.contains(&expected))
            {
                return fail(
                    &history,
                    format!("expected a torn record{expected}, got {:?}", r.crashed_at),
                );
            }
        }
        match &r.crashed_at {
            Some(what) => {
                tally.crashes += 1;
                tally.torn_cut += usize::from(what.starts_with("torn-cut"));
                tally.torn_zero += usize::from(what.starts_with("torn-zero"));
                let point = what.rsplit(' ').next().unwrap_or_default().to_owned();
                *tally.points.entry(point).or_default() += 1;
            }
            None if crash == Crash::None => {
                if !r.done || r.opened.is_none() {
                    return fail(&history, "the final run did not finish".into());
                }
                return Ok(tally);
            }
            None => {}
        }
    }
    unreachable!("the loop returns")
}

#[test]
fn crash_at_every_step_never_reuses_a_nonce() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fixture = temp.path().join("fixture");
    write_fixture(&fixture);

    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= CHAINS {
                    break;
                }
                let result = chain(c, &fixture);
                results.lock().expect("no panics").push(result);
            });
        }
    });
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for result in results.into_inner().expect("no panics") {
        match result.and_then(|t| tally.merge(t)) {
            Ok(()) => {}
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tally.chains, CHAINS as usize);
    assert!(
        tally.crashes >= MIN_CRASHES,
        "only {} crashes injected in {} runs",
        tally.crashes,
        tally.runs
    );
    for point in [
        "TempWritten",
        "TempSynced",
        "Renamed",
        "DirSynced",
        "BeforeRecord",
        "RecordHalfWritten",
        "RecordWritten",
        "RecordSynced",
    ] {
        assert!(
            tally.points.get(point).copied().unwrap_or(0) > 0,
            "no crash at {point}: {:?}",
            tally.points
        );
    }
    assert!(tally.torn_cut > 0 && tally.torn_zero > 0, "no torn records");
    assert!(tally.torn_recoveries > 0, "no torn record was recovered");
    assert!(tally.replays_refused > 0, "no replayed request was refused");
    assert_eq!(tally.commitments.len(), tally.released);
}
