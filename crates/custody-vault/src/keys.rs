//! The key file: a key set id, the blind-index root key and one or more key-encryption
//! keys (KEKs). Layout: `docs/formats/vault.md`.

use std::fmt;
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::fsutil::{write_private, WriteFailure};

/// Magic of a key file: `"CPVK"`.
pub const KEY_FILE_MAGIC: [u8; 4] = *b"CPVK";
/// Key file format version this crate writes and reads.
pub const KEY_FILE_VERSION: u8 = 1;
const KEY_FILE_TYPE: u8 = 1;
const CHECK_DOMAIN: &[u8] = b"CoinPort/vault/key-file";
/// Most KEKs one key file holds (current plus retired ones awaiting removal).
pub const MAX_KEKS: usize = 64;
const HEADER_LEN: usize = 4 + 1 + 1 + 16 + 32 + 1;
const ENTRY_LEN: usize = 4 + 32;
const CHECK_LEN: usize = 8;
const MAX_FILE_LEN: usize = HEADER_LEN + MAX_KEKS * ENTRY_LEN + CHECK_LEN;

/// The random id of a key file, fixed at generation and kept through rotations. Every
/// sealed blob names it, so a blob opened with another key file fails with a clear error.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeySetId(pub [u8; 16]);

impl fmt::Display for KeySetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The id of one KEK inside a key file. Ids start at 1 and each rotation takes the next
/// one; the highest id is the current KEK. Ids are never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KekId(pub u32);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 32-byte secret key, zeroized on drop, redacted in `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretKey([u8; 32]);

impl SecretKey {
    pub(crate) fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = SecretKey([0; 32]);
        rng.fill_bytes(&mut k.0);
        k
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    pub(crate) fn set(&mut self, bytes: &[u8; 32]) {
        self.0.copy_from_slice(bytes);
    }

    pub(crate) fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why key file bytes were refused. Never contains key material.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseKeyFileError {
    /// The bytes do not start with `CPVK`.
    #[error("not a vault key file (bad magic)")]
    BadMagic,
    /// A format version or file type this build does not know.
    #[error("unsupported key file version {version} / type {file_type}")]
    Unsupported {
        /// The version byte found.
        version: u8,
        /// The file type byte found.
        file_type: u8,
    },
    /// The length does not match the KEK count.
    #[error("key file length {found} does not match its {keks} keks (expected {expected})")]
    Length {
        /// KEKs the header announces.
        keks: usize,
        /// Expected total length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// The check value does not match: the file is damaged.
    #[error("key file check value mismatch: the file is damaged")]
    Corrupt,
    /// The KEK list is empty, too long, unsorted, has duplicate ids or id 0.
    #[error("invalid kek list: {reason}")]
    InvalidKeks {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a key file could not be loaded or written. Never contains key material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid key file.
    #[error("{path}: {source}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ParseKeyFileError,
    },
    /// The file is readable or writable by group or others.
    #[error("{path}: mode {mode:o} lets other users read the key file; chmod 600 it")]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// `write_new` found a file already there; nothing was written.
    #[error("{path} already exists; refusing to overwrite it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// `replace_file` found a different key set on disk; nothing was written.
    #[error("{path} holds key set {found}, not {expected}; refusing to replace it")]
    DifferentKeySet {
        /// The path.
        path: PathBuf,
        /// The key set being written.
        expected: KeySetId,
        /// The key set on disk.
        found: KeySetId,
    },
}

/// Why a rotation step was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateError {
    /// The key file already holds [`MAX_KEKS`] KEKs; remove retired ones first.
    #[error("the key file already holds {max} keks; remove retired ones first")]
    TooManyKeks {
        /// The limit.
        max: usize,
    },
    /// KEK ids are exhausted (the current id is `u32::MAX`).
    #[error("kek ids are exhausted")]
    IdsExhausted,
    /// No KEK with this id.
    #[error("kek {kek_id} is not in the key file")]
    UnknownKek {
        /// The id asked for.
        kek_id: KekId,
    },
    /// The current KEK cannot be removed; rotate first.
    #[error("kek {kek_id} is the current kek and cannot be removed; rotate first")]
    RemoveCurrent {
        /// The current KEK.
        kek_id: KekId,
    },
}

/// A loaded key file: every secret the vault uses.
///
/// Zeroized on drop, no `Clone`, `Debug` shows only ids.
///
/// # Security
/// Anyone holding the key file and a database copy can read every sealed record. Keep it
/// on a different volume from the database and out of database backups.
pub struct VaultKeys {
    pub(crate) set_id: KeySetId,
    pub(crate) index_root: SecretKey,
    /// Sorted by id; the last one is current. Never empty.
    pub(crate) keks: Vec<(KekId, SecretKey)>,
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKeys")
            .field("key_set", &self.set_id.to_string())
            .field("current_kek", &self.current_kek_id().0)
            .field("keks", &self.kek_ids())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl VaultKeys {
    /// Generates a new key set (random key set id, index root key and KEK 1) from the
    /// operating system's random number generator.
    pub fn generate() -> Self {
        Self::generate_with_rng(&mut OsRng)
    }

    /// Generates a new key set from `rng` (tests and pinned examples use a seeded RNG).
    pub fn generate_with_rng<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut set_id = [0; 16];
        rng.fill_bytes(&mut set_id);
        let index_root = SecretKey::random(rng);
        let kek = SecretKey::random(rng);
        VaultKeys {
            set_id: KeySetId(set_id),
            index_root,
            keks: vec![(KekId(1), kek)],
        }
    }

    /// The key set id.
    pub fn key_set_id(&self) -> KeySetId {
        self.set_id
    }

    /// The current KEK's id: new blobs and [`rewrap`](Self::rewrap) use it.
    pub fn current_kek_id(&self) -> KekId {
        self.current().0
    }

    /// Every KEK id in the file, ascending; the last is current.
    pub fn kek_ids(&self) -> Vec<KekId> {
        self.keks.iter().map(|(id, _)| *id).collect()
    }

    pub(crate) fn current(&self) -> &(KekId, SecretKey) {
        self.keks
            .last()
            .expect("a key set always holds at least one kek")
    }

    pub(crate) fn kek(&self, id: KekId) -> Option<&SecretKey> {
        self.keks.iter().find(|(i, _)| *i == id).map(|(_, k)| k)
    }

    /// Adds a new random KEK and makes it current (the first step of a rotation). The
    /// previous KEKs stay, retired: blobs wrapped under them still open.
    ///
    /// # Errors
    /// [`RotateError::TooManyKeks`] or [`RotateError::IdsExhausted`].
    pub fn add_kek(&mut self) -> Result<KekId, RotateError> {
        self.add_kek_with_rng(&mut OsRng)
    }

    /// [`add_kek`](Self::add_kek) with the KEK drawn from `rng`.
    ///
    /// # Errors
    /// As [`add_kek`](Self::add_kek).
    pub fn add_kek_with_rng<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
    ) -> Result<KekId, RotateError> {
        if self.keks.len() >= MAX_KEKS {
            return Err(RotateError::TooManyKeks { max: MAX_KEKS });
        }
        let next = self
            .current_kek_id()
            .0
            .checked_add(1)
            .ok_or(RotateError::IdsExhausted)?;
        self.keks.push((KekId(next), SecretKey::random(rng)));
        Ok(KekId(next))
    }

    /// Removes a retired KEK (the last step of a rotation, after every blob under it was
    /// re-wrapped). Blobs still wrapped under it can no longer be opened.
    ///
    /// # Errors
    /// [`RotateError::RemoveCurrent`] for the current KEK, [`RotateError::UnknownKek`].
    pub fn remove_kek(&mut self, kek_id: KekId) -> Result<(), RotateError> {
        if kek_id == self.current_kek_id() {
            return Err(RotateError::RemoveCurrent { kek_id });
        }
        let pos = self
            .keks
            .iter()
            .position(|(id, _)| *id == kek_id)
            .ok_or(RotateError::UnknownKek { kek_id })?;
        self.keks.remove(pos);
        Ok(())
    }

    /// Encodes the key file. The bytes are secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            HEADER_LEN + self.keks.len() * ENTRY_LEN + CHECK_LEN,
        ));
        out.extend_from_slice(&KEY_FILE_MAGIC);
        out.push(KEY_FILE_VERSION);
        out.push(KEY_FILE_TYPE);
        out.extend_from_slice(&self.set_id.0);
        out.extend_from_slice(self.index_root.expose_secret());
        out.push(u8::try_from(self.keks.len()).expect("at most MAX_KEKS keks"));
        for (id, key) in &self.keks {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(key.expose_secret());
        }
        let check = check_value(&out);
        out.extend_from_slice(&check);
        out
    }

    /// Decodes a key file.
    ///
    /// # Errors
    /// [`ParseKeyFileError`] saying what is wrong; never any key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParseKeyFileError> {
        if bytes.len() < 4 || bytes[..4] != KEY_FILE_MAGIC {
            return Err(ParseKeyFileError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(ParseKeyFileError::Length {
                keks: 0,
                expected: HEADER_LEN + CHECK_LEN,
                found: bytes.len(),
            });
        }
        if bytes[4] != KEY_FILE_VERSION || bytes[5] != KEY_FILE_TYPE {
            return Err(ParseKeyFileError::Unsupported {
                version: bytes[4],
                file_type: bytes[5],
            });
        }
        let count = usize::from(bytes[HEADER_LEN - 1]);
        let expected = HEADER_LEN + count * ENTRY_LEN + CHECK_LEN;
        if bytes.len() != expected {
            return Err(ParseKeyFileError::Length {
                keks: count,
                expected,
                found: bytes.len(),
            });
        }
        let (body, check) = bytes.split_at(expected - CHECK_LEN);
        // The check value is not secret-dependent in a useful way (it detects damage, not
        // forgery), so a plain comparison is fine.
        if check_value(body)[..] != *check {
            return Err(ParseKeyFileError::Corrupt);
        }
        if count == 0 {
            return Err(ParseKeyFileError::InvalidKeks { reason: "no kek" });
        }
        if count > MAX_KEKS {
            return Err(ParseKeyFileError::InvalidKeks {
                reason: "more keks than allowed",
            });
        }
        let mut set_id = [0; 16];
        set_id.copy_from_slice(&body[6..22]);
        let mut index_root = SecretKey([0; 32]);
        index_root.0.copy_from_slice(&body[22..54]);
        let mut keks: Vec<(KekId, SecretKey)> = Vec::with_capacity(count);
        for entry in body[HEADER_LEN..].chunks_exact(ENTRY_LEN) {
            let id = KekId(u32::from_be_bytes(
                entry[..4].try_into().expect("entry is 36 bytes"),
            ));
            if id.0 == 0 {
                return Err(ParseKeyFileError::InvalidKeks { reason: "kek id 0" });
            }
            if keks.last().is_some_and(|(prev, _)| *prev >= id) {
                return Err(ParseKeyFileError::InvalidKeks {
                    reason: "kek ids not strictly ascending",
                });
            }
            let mut key = SecretKey([0; 32]);
            key.0.copy_from_slice(&entry[4..]);
            keks.push((id, key));
        }
        Ok(VaultKeys {
            set_id: KeySetId(set_id),
            index_root,
            keks,
        })
    }

    /// Loads a key file. On Unix a file readable or writable by group or others is
    /// refused, as `ssh` does for private keys.
    ///
    /// # Errors
    /// [`KeyFileError::Io`], [`KeyFileError::Permissions`] or [`KeyFileError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // The mode is read from the open handle, so it is the mode of the file we read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        // Allocated once at the largest valid size: a growing buffer would leave copies
        // of the keys in freed memory. A longer file is refused by `from_bytes`.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN + 1));
        std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut file, MAX_FILE_LEN as u64 + 1),
            &mut bytes,
        )
        .map_err(io)?;
        Self::from_bytes(&bytes).map_err(|source| KeyFileError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes a new key file with mode 0600 (temporary file, `fsync`, link, directory
    /// `fsync`); never replaces an existing file.
    ///
    /// # Errors
    /// [`KeyFileError::Exists`] (nothing written) or [`KeyFileError::Io`].
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        write_private(path, &self.to_bytes(), false).map_err(|e| match e {
            WriteFailure::Exists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            WriteFailure::Io(path, source) => KeyFileError::Io { path, source },
        })
    }

    /// Atomically replaces the key file at `path` with this key set (after
    /// [`add_kek`](Self::add_kek) or [`remove_kek`](Self::remove_kek)): temporary file
    /// with mode 0600, `fsync`, rename, directory `fsync`. A crash leaves the old or the
    /// new file, never a mix.
    ///
    /// # Errors
    /// [`KeyFileError::DifferentKeySet`] if the file on disk is another key set (nothing
    /// is written), or the load/I/O error.
    pub fn replace_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let on_disk = Self::load(path)?;
        if on_disk.set_id != self.set_id {
            return Err(KeyFileError::DifferentKeySet {
                path: path.to_owned(),
                expected: self.set_id,
                found: on_disk.set_id,
            });
        }
        write_private(path, &self.to_bytes(), true).map_err(|e| match e {
            WriteFailure::Exists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            WriteFailure::Io(path, source) => KeyFileError::Io { path, source },
        })
    }
}

fn check_value(body: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECK_DOMAIN)
        .chain_update(body)
        .finalize();
    let mut out = [0; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}
