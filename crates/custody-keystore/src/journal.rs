//! [`FileNonceStore`]: the durable nonce journal.
//!
//! One append-only file, `nonces.journal`, records the issued high-water mark and every
//! consumed counter (format in `docs/formats/keystore.md`). Every change is appended and
//! synced with `fsync` before the call that made it returns, so the journal on disk is
//! always at least as far as anything the caller has seen.
//!
//! # Crashes and torn records
//! A crash can leave at most one incomplete record at the end of the journal: each call
//! appends one record and returns only after it is synced, and after any I/O error the
//! store refuses further use, so no record is ever appended behind an unsynced one.
//!
//! A torn last record belongs to an `issue` or `consume` call that never returned, so no
//! counter it reserved was handed out and no share computed under it left the process.
//! Ignoring it would already be safe. We cannot, however, tell a torn record from
//! complete records that the disk later damaged, and ignoring a damaged `consume` record
//! would make used counters look fresh. So on open a bad tail is treated as the worst
//! case: the bytes from the first bad record to the end are assumed to have held as many
//! `issue` records as fit (each for [`MAX_ISSUE`] counters) and to have consumed every
//! counter. All counters below the resulting mark are marked consumed, and the journal is
//! replaced, atomically, by one that says exactly that. Outstanding commitments are lost;
//! none can be used twice. For the usual torn record this skips [`MAX_ISSUE`] counters.
//!
//! Bad data followed by more than one maximal record's worth of bytes cannot be a torn
//! tail and is reported as [`JournalError::Corrupt`]; nothing is skipped.
//!
//! # Security
//! The journal must never be restored from a backup, a snapshot or another device: an
//! older journal forgets consumed counters. A restored device draws a new nonce seed and
//! starts a new journal.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use custody_threshold::{ConsumeError, NonceStore};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::fsutil::{create_private, sync_dir, temp_path};

/// File name of the journal inside its directory.
pub const JOURNAL_FILE: &str = "nonces.journal";

/// Most counters one [`NonceStore::issue`] call may reserve (the threshold crate's batch
/// limit).
pub const MAX_ISSUE: u32 = custody_threshold::limits::MAX_BATCH as u32;

/// Most counters one [`NonceStore::consume`] call may mark (one per request item).
pub const MAX_CONSUME: usize = custody_threshold::limits::MAX_ITEMS;

const MAGIC: [u8; 4] = *b"CPNJ";
const VERSION: u8 = 1;
const FILE_TYPE: u8 = 0x01;
const HEADER_LEN: usize = 16;
const CHECK_LEN: usize = 8;
const TAG_ISSUE: u8 = b'I';
const TAG_CONSUME: u8 = b'C';
const TAG_BURN: u8 = b'B';
/// The shortest record: an issue (or burn) record.
const ISSUE_RECORD_LEN: usize = 1 + 8 + CHECK_LEN;
/// The longest record: a consume record with [`MAX_CONSUME`] counters.
const MAX_RECORD_LEN: usize = 1 + 2 + 8 * MAX_CONSUME + CHECK_LEN;

/// A step of a journal write at which a crash-test hook is called.
///
/// The hook lets a test kill the process at every step of every write (see
/// `tests/crash.rs`); production code installs none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPoint {
    /// A new journal's temporary file is written, not yet synced.
    TempWritten,
    /// The temporary file is synced, not yet under its final name.
    TempSynced,
    /// The file has its final name; the directory is not yet synced.
    Renamed,
    /// The directory is synced.
    DirSynced,
    /// A record is about to be appended.
    BeforeRecord,
    /// Half of a record is appended (a crash here leaves a torn record).
    RecordHalfWritten,
    /// The whole record is appended, not yet synced.
    RecordWritten,
    /// The record is synced; the call has not returned yet.
    RecordSynced,
}

/// A crash-test hook, called at every [`FaultPoint`].
pub type FaultHook = Box<dyn FnMut(FaultPoint) + Send>;

/// Why the journal failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A journal is already there; nothing was written.
    #[error("{path} already exists; refusing to start a second nonce journal over it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// There is no journal. Creating a new one would forget consumed counters, so this
    /// is never done implicitly.
    #[error("{path} is missing; restore the signer from a share backup (which draws a new nonce seed) instead of recreating the journal")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The journal belongs to another nonce seed.
    #[error("{path} is the journal of nonce seed {found}, not of this device's seed {expected}")]
    SeedMismatch {
        /// The path.
        path: PathBuf,
        /// The current seed's id, hex.
        expected: String,
        /// The journal's seed id, hex.
        found: String,
    },
    /// The journal is damaged somewhere other than its last record.
    #[error("{path} is corrupt at byte {offset}: {reason}; do not sign with this device, restore it from a share backup")]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// Offset of the first bad byte.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// `issue` was asked for 0 or more than [`MAX_ISSUE`] counters, or `consume` for more
    /// than [`MAX_CONSUME`].
    #[error("{0} counters requested; a call takes 1 to {MAX_ISSUE} (issue) or up to {MAX_CONSUME} (consume)")]
    BadCount(usize),
    /// The counter space is exhausted.
    #[error("nonce counters are exhausted; restore the signer with a new nonce seed")]
    Exhausted,
    /// Another process (or another store in this process) has the journal open.
    #[error("{path} is in use by another signer process; close it first")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// An earlier write failed, so what is on disk is unknown.
    #[error("an earlier journal write failed; reopen the nonce store before using it again")]
    Poisoned,
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A [`NonceStore`] backed by an fsynced append-only journal file.
///
/// Only one store at a time may have a journal open: on Unix the store holds an exclusive
/// `flock(2)` on the journal's directory for its lifetime (released by the kernel if the
/// process dies), so a second signer process cannot load the same state and hand out the
/// same counters. Other platforms have no such guard.
pub struct FileNonceStore {
    dir: PathBuf,
    /// Holds the directory lock while the store lives.
    _lock: Option<File>,
    path: PathBuf,
    file: File,
    /// Counters below this are issued.
    high_water: u64,
    /// Counters below this are consumed.
    floor: u64,
    /// Consumed counters at or above `floor`.
    consumed: BTreeSet<u64>,
    poisoned: bool,
    recovered: bool,
    hook: Option<FaultHook>,
}

impl fmt::Debug for FileNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileNonceStore")
            .field("path", &self.path)
            .field("high_water", &self.high_water)
            .field("floor", &self.floor)
            .field("consumed", &self.consumed.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn check(record: &[u8]) -> [u8; CHECK_LEN] {
    let h = Sha256::new()
        .chain_update(b"CoinPort/nonce-journal-record")
        .chain_update(record)
        .finalize();
    h[..CHECK_LEN].try_into().expect("8 of 32 bytes")
}

fn seal(mut record: Vec<u8>) -> Vec<u8> {
    let c = check(&record);
    record.extend_from_slice(&c);
    record
}

fn header(seed_id: &[u8; 8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = FILE_TYPE;
    h[8..].copy_from_slice(seed_id);
    h
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(
        bytes[at..at + 8]
            .try_into()
            .expect("length checked by caller"),
    )
}

/// A parsed record.
enum Record {
    Issue(u64),
    Consume(Vec<u64>),
    Burn(u64),
}

/// Parses the record at the start of `bytes`: `Ok(None)` for a structurally bad record
/// (short, unknown tag, bad length or check).
fn parse_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let tag = *bytes.first()?;
    let body_len = match tag {
        TAG_ISSUE | TAG_BURN => 8,
        TAG_CONSUME => {
            let n = usize::from(u16::from_be_bytes(bytes.get(1..3)?.try_into().ok()?));
            if n == 0 || n > MAX_CONSUME {
                return None;
            }
            2 + 8 * n
        }
        _ => return None,
    };
    let len = 1 + body_len + CHECK_LEN;
    let record = bytes.get(..len)?;
    if check(&record[..1 + body_len]) != record[1 + body_len..] {
        return None;
    }
    let parsed = match tag {
        TAG_ISSUE => Record::Issue(u64_at(record, 1)),
        TAG_BURN => Record::Burn(u64_at(record, 1)),
        _ => Record::Consume(
            (0..(body_len - 2) / 8)
                .map(|i| u64_at(record, 3 + 8 * i))
                .collect(),
        ),
    };
    Some((parsed, len))
}

impl FileNonceStore {
    /// Creates a new, empty journal in `dir` for the nonce seed with id `seed_id`
    /// ([`custody_threshold::NonceSeed::id`]).
    ///
    /// # Errors
    /// [`JournalError::Exists`] if `dir` already has a journal, or the I/O error.
    pub fn create(dir: &Path, seed_id: [u8; 8]) -> Result<Self, JournalError> {
        Self::create_with_fault_hook(dir, seed_id, None)
    }

    /// [`FileNonceStore::create`] with a crash-test hook.
    ///
    /// # Errors
    /// As [`FileNonceStore::create`].
    pub fn create_with_fault_hook(
        dir: &Path,
        seed_id: [u8; 8],
        mut hook: Option<FaultHook>,
    ) -> Result<Self, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        if path.exists() {
            return Err(JournalError::Exists { path });
        }
        write_whole(dir, &header(&seed_id), false, &mut hook)?;
        Self::open_with_fault_hook(dir, seed_id, hook)
    }

    /// Opens the journal in `dir` and loads it, recovering from a torn last record as the
    /// module documentation describes.
    ///
    /// # Errors
    /// [`JournalError::Missing`], [`JournalError::SeedMismatch`],
    /// [`JournalError::Corrupt`] or the I/O error.
    pub fn open(dir: &Path, seed_id: [u8; 8]) -> Result<Self, JournalError> {
        Self::open_with_fault_hook(dir, seed_id, None)
    }

    /// [`FileNonceStore::open`] with a crash-test hook.
    ///
    /// # Errors
    /// As [`FileNonceStore::open`].
    pub fn open_with_fault_hook(
        dir: &Path,
        seed_id: [u8; 8],
        mut hook: Option<FaultHook>,
    ) -> Result<Self, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let lock = lock_dir(dir)?;
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut bytes).map_err(io_err(&path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(JournalError::Missing { path })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let corrupt = |offset: usize, reason| JournalError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        // The header is written whole before the file gets its name, so it is never torn.
        if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
            return Err(corrupt(0, "not a CoinPort nonce journal"));
        }
        if bytes[4] != VERSION || bytes[5] != FILE_TYPE || bytes[6..8] != [0, 0] {
            return Err(corrupt(4, "unsupported journal version or type"));
        }
        let found: [u8; 8] = bytes[8..16].try_into().expect("16-byte header");
        if found != seed_id {
            return Err(JournalError::SeedMismatch {
                path,
                expected: hex::encode(seed_id),
                found: hex::encode(found),
            });
        }
        let (mut high_water, mut floor) = (0u64, 0u64);
        let mut consumed = BTreeSet::new();
        let mut at = HEADER_LEN;
        let mut torn = false;
        while at < bytes.len() {
            let Some((record, len)) = parse_record(&bytes[at..]) else {
                if bytes.len() - at > MAX_RECORD_LEN {
                    return Err(corrupt(at, "bad record before the end of the journal"));
                }
                torn = true;
                break;
            };
            match record {
                Record::Issue(hw) => {
                    if hw <= high_water || hw - high_water > u64::from(MAX_ISSUE) {
                        return Err(corrupt(
                            at,
                            "issue record does not advance the mark by 1 to 1000",
                        ));
                    }
                    high_water = hw;
                }
                Record::Burn(new_floor) => {
                    if new_floor < high_water {
                        return Err(corrupt(at, "burn record below the issued mark"));
                    }
                    high_water = new_floor;
                    floor = new_floor;
                    consumed.clear();
                }
                Record::Consume(counters) => {
                    for c in counters {
                        if c >= high_water || c < floor || !consumed.insert(c) {
                            return Err(corrupt(
                                at,
                                "consume record for a counter not issued or already consumed",
                            ));
                        }
                    }
                }
            }
            at += len;
        }
        if torn {
            // See the module documentation: assume the bad tail held as many issue records
            // as fit in it, each for the largest batch, and consumed everything.
            let tail_len = (bytes.len() - at) as u64;
            let max_issues = tail_len.div_ceil(ISSUE_RECORD_LEN as u64).max(1);
            let new_floor = max_issues
                .checked_mul(u64::from(MAX_ISSUE))
                .and_then(|skip| high_water.checked_add(skip))
                .ok_or(JournalError::Exhausted)?;
            let mut fresh = header(&seed_id).to_vec();
            let mut burn = vec![TAG_BURN];
            burn.extend_from_slice(&new_floor.to_be_bytes());
            fresh.extend_from_slice(&seal(burn));
            write_whole(dir, &fresh, true, &mut hook)?;
            high_water = new_floor;
            floor = new_floor;
            consumed.clear();
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(FileNonceStore {
            dir: dir.to_owned(),
            _lock: lock,
            path,
            file,
            high_water,
            floor,
            consumed,
            poisoned: false,
            recovered: torn,
            hook,
        })
    }

    /// Whether opening found a torn or damaged last record and burned every outstanding
    /// counter (see the module documentation).
    pub fn recovered_from_torn_tail(&self) -> bool {
        self.recovered
    }

    /// The first counter never issued.
    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    /// Whether `counter` was issued and is not yet consumed.
    pub fn is_available(&self, counter: u64) -> bool {
        counter < self.high_water && counter >= self.floor && !self.consumed.contains(&counter)
    }

    /// The directory holding the journal.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fault(&mut self, point: FaultPoint) {
        if let Some(hook) = self.hook.as_mut() {
            hook(point);
        }
    }

    /// Appends one record and syncs it; poisons the store on any error.
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        self.poisoned = true;
        self.fault(FaultPoint::BeforeRecord);
        let half = record.len() / 2;
        self.file
            .write_all(&record[..half])
            .map_err(io_err(&self.path))?;
        self.fault(FaultPoint::RecordHalfWritten);
        self.file
            .write_all(&record[half..])
            .map_err(io_err(&self.path))?;
        self.fault(FaultPoint::RecordWritten);
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.fault(FaultPoint::RecordSynced);
        self.poisoned = false;
        Ok(())
    }
}

/// Takes the exclusive, non-blocking directory lock.
#[cfg(unix)]
fn lock_dir(dir: &Path) -> Result<Option<File>, JournalError> {
    use rustix::fs::{flock, FlockOperation};
    let handle = File::open(dir).map_err(io_err(dir))?;
    match flock(&handle, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(handle)),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::Locked {
            path: dir.to_owned(),
        }),
        Err(e) => Err(io_err(dir)(e.into())),
    }
}

#[cfg(not(unix))]
fn lock_dir(_dir: &Path) -> Result<Option<File>, JournalError> {
    Ok(None)
}

/// Writes a whole journal file through a synced temporary file and a rename, then syncs
/// the directory. `replace` allows replacing an existing journal (recovery only).
fn write_whole(
    dir: &Path,
    bytes: &[u8],
    replace: bool,
    hook: &mut Option<FaultHook>,
) -> Result<(), JournalError> {
    let mut fault = |p| {
        if let Some(h) = hook.as_mut() {
            h(p);
        }
    };
    let target = dir.join(JOURNAL_FILE);
    let temp = temp_path(dir, JOURNAL_FILE);
    let result = (|| {
        let mut f = create_private(&temp).map_err(io_err(&temp))?;
        f.write_all(bytes).map_err(io_err(&temp))?;
        fault(FaultPoint::TempWritten);
        f.sync_all().map_err(io_err(&temp))?;
        fault(FaultPoint::TempSynced);
        drop(f);
        if replace {
            fs::rename(&temp, &target).map_err(io_err(&target))?;
        } else {
            match fs::hard_link(&temp, &target) {
                Ok(()) => fs::remove_file(&temp).map_err(io_err(&temp))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(JournalError::Exists {
                        path: target.clone(),
                    })
                }
                Err(e) => return Err(io_err(&target)(e)),
            }
        }
        fault(FaultPoint::Renamed);
        sync_dir(dir).map_err(io_err(dir))?;
        fault(FaultPoint::DirSynced);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

impl NonceStore for FileNonceStore {
    type Error = JournalError;

    fn issue(&mut self, count: u32) -> Result<u64, JournalError> {
        if count == 0 || count > MAX_ISSUE {
            return Err(JournalError::BadCount(count as usize));
        }
        let first = self.high_water;
        let next = first
            .checked_add(u64::from(count))
            .ok_or(JournalError::Exhausted)?;
        let mut record = vec![TAG_ISSUE];
        record.extend_from_slice(&next.to_be_bytes());
        self.append(&seal(record))?;
        self.high_water = next;
        Ok(first)
    }

    fn consume(&mut self, counters: &[u64]) -> Result<(), ConsumeError<JournalError>> {
        if counters.len() > MAX_CONSUME {
            return Err(ConsumeError::Store(JournalError::BadCount(counters.len())));
        }
        if counters.is_empty() {
            return Ok(());
        }
        let mut seen = BTreeSet::new();
        for &counter in counters {
            if counter >= self.high_water {
                return Err(ConsumeError::NeverIssued { counter });
            }
            if !self.is_available(counter) || !seen.insert(counter) {
                return Err(ConsumeError::AlreadyConsumed { counter });
            }
        }
        let mut record = Vec::with_capacity(3 + 8 * counters.len() + CHECK_LEN);
        record.push(TAG_CONSUME);
        record.extend_from_slice(&(counters.len() as u16).to_be_bytes());
        for c in counters {
            record.extend_from_slice(&c.to_be_bytes());
        }
        self.append(&seal(record)).map_err(ConsumeError::Store)?;
        self.consumed.extend(counters.iter().copied());
        Ok(())
    }
}
