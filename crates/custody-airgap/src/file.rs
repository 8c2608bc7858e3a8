//! The USB channel: files on a removable drive.
//!
//! Writes are atomic and durable: the bytes go to a hidden temporary file, which is synced,
//! then given its final name without ever replacing an existing file, and the directory is
//! synced. Readers skip hidden and temporary files, so a stick pulled out mid-write never
//! shows a half-written file under a real name.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use rand_core::{OsRng, RngCore};
use thiserror::Error;

use crate::envelope::{EnvelopeHeader, ReplayGuard};

/// Largest file this module reads (PSBTs and envelopes are far smaller).
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// File extension of an envelope file.
pub const ENVELOPE_EXTENSION: &str = "cpe";

const TEMP_SUFFIX: &str = ".tmp";

/// Why a file operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file with that name is already there; nothing was written.
    #[error("{path} already exists; refusing to overwrite it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// The name is not a plain file name.
    #[error("invalid file name {0:?}: use a plain name without '/' that does not start with '.'")]
    BadName(String),
    /// The file is larger than [`MAX_FILE_LEN`].
    #[error("{path} is {len} bytes, more than the {MAX_FILE_LEN}-byte limit")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_name(name: &str) -> Result<(), FileError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.ends_with(TEMP_SUFFIX)
        || name.contains(['/', '\\', '\0'])
        || name.len() > 200
    {
        return Err(FileError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Syncs a directory so a rename or new name in it survives a power cut.
fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `dir/name` atomically and durably; never replaces an existing file.
///
/// # Errors
/// [`FileError::Exists`] if the name is taken (nothing is written), [`FileError::BadName`]
/// for a name that is not a plain visible file name, or the I/O error with its path.
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, FileError> {
    check_name(name)?;
    let target = dir.join(name);
    if target.exists() {
        return Err(FileError::Exists { path: target });
    }
    let temp = dir.join(format!(".{name}.{:016x}{TEMP_SUFFIX}", OsRng.next_u64()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err(&temp))?;
        f.write_all(bytes).map_err(io_err(&temp))?;
        f.sync_all().map_err(io_err(&temp))?;
        drop(f);
        // A hard link refuses to replace an existing file, atomically. File systems without
        // hard links (FAT, exFAT: most USB sticks) fall back to a checked rename.
        match fs::hard_link(&temp, &target) {
            Ok(()) => {
                fs::remove_file(&temp).map_err(io_err(&temp))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(FileError::Exists {
                    path: target.clone(),
                })
            }
            Err(_) => {
                if target.exists() {
                    return Err(FileError::Exists {
                        path: target.clone(),
                    });
                }
                fs::rename(&temp, &target).map_err(io_err(&target))?;
            }
        }
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is hidden from readers anyway.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| target)
}

/// Lists the complete files in `dir` (hidden and temporary files skipped), sorted by name.
///
/// # Errors
/// The I/O error with its path.
pub fn list_complete(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || name.ends_with(TEMP_SUFFIX) {
            continue;
        }
        if entry.file_type().map_err(io_err(&entry.path()))?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a whole file of at most [`MAX_FILE_LEN`] bytes.
///
/// # Errors
/// [`FileError::TooLarge`] or the I/O error with its path.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > MAX_FILE_LEN {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            len: fs::metadata(path)
                .map(|m| m.len())
                .unwrap_or(buf.len() as u64),
        });
    }
    Ok(buf)
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "x".to_owned()
    } else {
        trimmed.chars().take(32).collect()
    }
}

/// The file name of an envelope: what it is without opening it.
///
/// `{session, 8 hex}-{sequence, 6 digits}-{step}-from-{sender}-to-{recipient|all}.cpe`,
/// e.g. `5f2407e8-000002-dkg-round2-from-alice-to-bob.cpe`.
pub fn envelope_file_name(
    header: &EnvelopeHeader,
    step: &str,
    sender: &str,
    recipient: Option<&str>,
) -> String {
    format!(
        "{}-{:06}-{}-from-{}-to-{}.{ENVELOPE_EXTENSION}",
        &hex::encode(header.session_id)[..8],
        header.sequence,
        slug(step),
        slug(sender),
        recipient.map_or_else(|| "all".to_owned(), slug),
    )
}

/// How a PSBT file is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsbtEncoding {
    /// Raw BIP-174 bytes (the default for files).
    Binary,
    /// Base64 text.
    Base64,
    /// Hex text.
    Hex,
}

/// How far a PSBT has come, which decides its file name (Coldcard conventions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsbtStage {
    /// Unsigned: `name.psbt`.
    Unsigned,
    /// Some signatures: `name-part.psbt`.
    PartlySigned,
    /// All signatures, not finalized: `name-signed.psbt`.
    Signed,
}

/// Why bytes are not a PSBT file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PsbtFileError {
    /// Not a PSBT in binary, base64 or hex.
    #[error(
        "not a PSBT: expected binary starting with \"psbt\\xff\", or the same in base64 or hex"
    )]
    NotPsbt,
    /// Text that claims to be base64 or hex but does not decode.
    #[error("PSBT text is not valid {0}")]
    BadText(&'static str),
    /// The file is larger than [`MAX_FILE_LEN`], or the PSBT larger than [`MAX_PSBT_LEN`].
    #[error("PSBT of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

const PSBT_MAGIC: &[u8] = b"psbt\xff";

/// Largest raw PSBT accepted: its hex form with a newline still fits in [`MAX_FILE_LEN`],
/// so every accepted PSBT can be answered in the encoding it came in.
pub const MAX_PSBT_LEN: usize = (MAX_FILE_LEN as usize - 1) / 2;

/// Detects the encoding of a PSBT file and returns the raw PSBT bytes.
///
/// Only the framing is checked here (the BIP-174 magic); parsing is the Bitcoin crate's
/// job.
///
/// # Errors
/// A [`PsbtFileError`] when the input is none of the three forms.
pub fn detect_psbt(bytes: &[u8]) -> Result<(Vec<u8>, PsbtEncoding), PsbtFileError> {
    let (raw, encoding) = detect_unbounded(bytes)?;
    if raw.len() > MAX_PSBT_LEN {
        return Err(PsbtFileError::TooLarge(raw.len()));
    }
    Ok((raw, encoding))
}

fn detect_unbounded(bytes: &[u8]) -> Result<(Vec<u8>, PsbtEncoding), PsbtFileError> {
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(PsbtFileError::TooLarge(bytes.len()));
    }
    if bytes.starts_with(PSBT_MAGIC) {
        return Ok((bytes.to_vec(), PsbtEncoding::Binary));
    }
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.len() >= 10 && text[..10].eq_ignore_ascii_case(b"70736274ff") {
        let raw = hex::decode(&text).map_err(|_| PsbtFileError::BadText("hex"))?;
        return Ok((raw, PsbtEncoding::Hex));
    }
    if text.starts_with(b"cHNidP") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| PsbtFileError::BadText("base64"))?;
        if raw.starts_with(PSBT_MAGIC) {
            return Ok((raw, PsbtEncoding::Base64));
        }
        return Err(PsbtFileError::BadText("base64"));
    }
    Err(PsbtFileError::NotPsbt)
}

/// Encodes raw PSBT bytes for a file in `encoding` (text forms end with a newline).
pub fn encode_psbt(raw: &[u8], encoding: PsbtEncoding) -> Vec<u8> {
    match encoding {
        PsbtEncoding::Binary => raw.to_vec(),
        PsbtEncoding::Base64 => {
            let mut s = base64::engine::general_purpose::STANDARD.encode(raw);
            s.push('\n');
            s.into_bytes()
        }
        PsbtEncoding::Hex => {
            let mut s = hex::encode(raw);
            s.push('\n');
            s.into_bytes()
        }
    }
}

/// The Coldcard-style file name for a PSBT at `stage`, from a base name.
pub fn psbt_file_name(base: &str, stage: PsbtStage) -> String {
    let base = slug(base);
    match stage {
        PsbtStage::Unsigned => format!("{base}.psbt"),
        PsbtStage::PartlySigned => format!("{base}-part.psbt"),
        PsbtStage::Signed => format!("{base}-signed.psbt"),
    }
}

/// The file name and contents of a final transaction: `base-final.txn`, hex, one line.
pub fn final_txn_file(base: &str, tx: &[u8]) -> (String, Vec<u8>) {
    let mut s = hex::encode(tx);
    s.push('\n');
    (format!("{}-final.txn", slug(base)), s.into_bytes())
}

/// A durable [`ReplayGuard`]: an append-only log of accepted
/// `sender session sequence` lines, synced before each acceptance is reported.
#[derive(Debug)]
pub struct FileReplayGuard {
    path: PathBuf,
    seen: HashSet<([u8; 32], [u8; 16], u64)>,
}

impl FileReplayGuard {
    /// Opens (or creates) the log at `path` and loads it.
    ///
    /// # Errors
    /// The I/O error, or [`FileError::BadName`] naming a corrupt line.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let mut seen = HashSet::new();
        if path.exists() {
            let text = read_bounded(path)?;
            let text = String::from_utf8_lossy(&text);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                seen.insert(parse_line(line).ok_or_else(|| {
                    FileError::BadName(format!("corrupt replay log line {line:?}"))
                })?);
            }
        }
        Ok(FileReplayGuard {
            path: path.to_owned(),
            seen,
        })
    }
}

fn parse_line(line: &str) -> Option<([u8; 32], [u8; 16], u64)> {
    let mut parts = line.split_whitespace();
    let sender: [u8; 32] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let session: [u8; 16] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((sender, session, seq))
}

impl ReplayGuard for FileReplayGuard {
    type Error = FileError;

    fn seen(
        &self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<bool, FileError> {
        Ok(self.seen.contains(&(*sender, *session, sequence)))
    }

    fn record(
        &mut self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<(), FileError> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        writeln!(
            f,
            "{} {} {sequence}",
            hex::encode(sender),
            hex::encode(session)
        )
        .map_err(io_err(&self.path))?;
        f.sync_all().map_err(io_err(&self.path))?;
        self.seen.insert((*sender, *session, sequence));
        Ok(())
    }
}
