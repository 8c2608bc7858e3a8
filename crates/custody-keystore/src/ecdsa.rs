//! The threshold-ECDSA side of a signer device: [`EcdsaKeystore`] (the ECDSA key share
//! encrypted at rest) and [`FilePresignatureStore`], a durable
//! [`custody_ecdsa::PresignatureStore`] that makes every presignature single-use.
//!
//! # Files (in the ECDSA keystore directory)
//! - `secrets.age`: the key share and the presignature store key, encrypted to the
//!   passphrase with age's scrypt recipient exactly as [`crate::Keystore`] keeps the FROST
//!   share (mode 0600, written atomically, never replaced);
//! - `presign/BATCH-INDEX.age`: one presignature each (`Presignature::to_secret_bytes`),
//!   age-encrypted to the X25519 store key kept in `secrets.age`. Encrypting each to the
//!   store key instead of the passphrase keeps a batch of 100 from costing 100 scrypt runs;
//!   the store key itself is only ever stored under the passphrase;
//! - `presign/BATCH-INDEX.used`: the consumed mark, an empty file.
//!
//! # Single use
//! [`FilePresignatureStore::take`] decrypts the presignature, then creates its `.used`
//! mark, syncs the mark and the directory, deletes the secret file and syncs the directory
//! again, and only then returns the presignature. A crash before the mark is durable leaves
//! a presignature that was never handed out; a crash after it leaves one that is lost (its
//! secret is deleted on the next open). An id with a mark is refused for ever, also on
//! insertion.
//!
//! # Backups
//! [`EcdsaKeystore::export_backup`] holds the key share only. [`restore_ecdsa_backup`]
//! draws a new store key, so presignature files from before the backup cannot even be
//! decrypted: a restored device starts with none and must presign again.
//!
//! # Security
//! Never copy this directory (VM snapshot, disk image, file backup): a copy restores
//! presignatures whose consumed marks are missing, and signing twice with one
//! presignature reveals the key.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use custody_ecdsa::{
    DecodeError, EcdsaKeyShare, Presignature, PresignatureId, PresignatureStore,
    PresignatureStoreError,
};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::fsutil::{create_private, sync_dir, write_new_private, WriteFileError};
use crate::keystore::{
    read_bounded, seal, unseal, BackupKey, BackupRecipient, EncryptionParams, Unsealed,
};

/// The encrypted secrets file inside an ECDSA keystore directory.
pub const ECDSA_SECRETS_FILE: &str = "secrets.age";
/// The presignature directory inside an ECDSA keystore directory.
pub const PRESIGN_DIR: &str = "presign";

const MAGIC: [u8; 4] = *b"CPKE";
const VERSION: u8 = 1;
const TYPE_DEVICE: u8 = 0x01;
const TYPE_BACKUP: u8 = 0x02;
/// Largest file read: an ECDSA key share carries every party's Paillier data.
const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;
/// Largest field of a secrets record.
const MAX_FIELD: usize = 8 * 1024 * 1024;
const SECRET_EXT: &str = "age";
const USED_EXT: &str = "used";

/// Why the ECDSA keystore or its presignature store failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EcdsaKeystoreError {
    /// The passphrase (or backup key) does not decrypt the file.
    #[error("{path}: wrong passphrase, or the file was altered")]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// The file is not an ECDSA keystore record of this version, or is damaged.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A decoded secret is invalid.
    #[error("{path}: invalid {what}: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Which secret.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// age refused to encrypt.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// A file could not be written (or already exists).
    #[error(transparent)]
    Write(#[from] WriteFileError),
    /// Another process holds the keystore.
    #[error("{path} is in use by another process; close the other custody-signer first")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// An I/O error, with its path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(io::Error) -> EcdsaKeystoreError + '_ {
    move |source| EcdsaKeystoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, EcdsaKeystoreError> {
    read_bounded(path, MAX_FILE_LEN)
        .map_err(io(path))?
        .ok_or_else(|| EcdsaKeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("larger than {MAX_FILE_LEN} bytes"),
        })
}

fn encrypt_to(
    plaintext: &[u8],
    recipient: &BackupRecipient,
) -> Result<Vec<u8>, EcdsaKeystoreError> {
    seal(plaintext, recipient).map_err(|e| EcdsaKeystoreError::Encrypt(e.to_string()))
}

fn decrypt_with(
    path: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
) -> Result<Zeroizing<Vec<u8>>, EcdsaKeystoreError> {
    unseal(ciphertext, key).map_err(|u| match u {
        Unsealed::WrongKey => EcdsaKeystoreError::WrongPassphrase {
            path: path.to_owned(),
        },
        Unsealed::Unreadable(e) => EcdsaKeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("not a readable age file: {e}"),
        },
    })
}

/// `CPKE`, version, type, then `u32`-length-prefixed fields.
fn encode_record(kind: u8, fields: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len = 6 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn decode_record<'a>(
    path: &Path,
    kind: u8,
    count: usize,
    bytes: &'a [u8],
) -> Result<Vec<&'a [u8]>, EcdsaKeystoreError> {
    let bad = |reason: &str| EcdsaKeystoreError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 6 || bytes[..4] != MAGIC {
        return Err(bad("not a CoinPort ECDSA keystore record"));
    }
    if bytes[4] != VERSION {
        return Err(bad("unsupported ECDSA keystore record version"));
    }
    if bytes[5] != kind {
        return Err(bad(if kind == TYPE_BACKUP {
            "not an ECDSA share backup"
        } else {
            "not an ECDSA device keystore"
        }));
    }
    let mut rest = &bytes[6..];
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let len = rest
            .get(..4)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| bad("truncated record"))?;
        if len > MAX_FIELD || rest.len() < 4 + len {
            return Err(bad("truncated or oversized field"));
        }
        let (f, r) = rest[4..].split_at(len);
        fields.push(f);
        rest = r;
    }
    if !rest.is_empty() {
        return Err(bad("unexpected bytes after the last field"));
    }
    Ok(fields)
}

fn decode_share(path: &Path, bytes: &[u8]) -> Result<EcdsaKeyShare, EcdsaKeystoreError> {
    EcdsaKeyShare::from_secret_bytes(bytes).map_err(|source| EcdsaKeystoreError::Decode {
        path: path.to_owned(),
        what: "ECDSA key share",
        source,
    })
}

#[cfg(unix)]
fn lock_dir(dir: &Path) -> Result<Option<File>, EcdsaKeystoreError> {
    use rustix::fs::{flock, FlockOperation};
    let handle = File::open(dir).map_err(io(dir))?;
    match flock(&handle, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(handle)),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(EcdsaKeystoreError::Locked {
            path: dir.to_owned(),
        }),
        Err(e) => Err(io(dir)(e.into())),
    }
}

#[cfg(not(unix))]
fn lock_dir(_dir: &Path) -> Result<Option<File>, EcdsaKeystoreError> {
    Ok(None)
}

/// A step of [`FilePresignatureStore::take`] at which a crash-test hook is called.
///
/// The hook lets a test kill the process at every step (see `tests/presign_crash.rs`);
/// production code installs none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresignFaultPoint {
    /// The presignature is decrypted; no mark exists yet.
    Decrypted,
    /// The mark file is created, not yet synced.
    MarkCreated,
    /// The mark file is synced; the directory is not.
    MarkSynced,
    /// The directory is synced: the mark is durable.
    MarkDurable,
    /// The secret file is deleted; the directory is not yet synced.
    SecretRemoved,
    /// Everything is durable; `take` has not returned yet.
    Done,
}

/// A crash-test hook, called at every [`PresignFaultPoint`].
pub type PresignFaultHook = Box<dyn FnMut(PresignFaultPoint) + Send>;

/// A durable [`PresignatureStore`] on files: see the module documentation.
pub struct FilePresignatureStore {
    dir: PathBuf,
    key: age::x25519::Identity,
    hook: Option<PresignFaultHook>,
}

impl fmt::Debug for FilePresignatureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePresignatureStore")
            .field("dir", &self.dir)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn stem(id: &PresignatureId) -> String {
    format!("{}-{:03}", hex::encode(id.batch), id.index)
}

fn parse_stem(s: &str) -> Option<PresignatureId> {
    let (batch, index) = s.split_once('-')?;
    let batch: [u8; 16] = hex::decode(batch).ok()?.try_into().ok()?;
    if index.len() != 3 {
        return None;
    }
    Some(PresignatureId {
        batch,
        index: index.parse().ok()?,
    })
}

impl FilePresignatureStore {
    /// Opens the store in `dir` (created if missing) with its store key, and deletes the
    /// secrets of presignatures marked consumed (left behind by a crash inside `take`).
    ///
    /// # Errors
    /// An I/O error with its path.
    pub fn open(dir: &Path, key: age::x25519::Identity) -> Result<Self, EcdsaKeystoreError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io(dir))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
            }
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(io(parent))?;
            }
        }
        let store = FilePresignatureStore {
            dir: dir.to_owned(),
            key,
            hook: None,
        };
        let mut removed = false;
        for (id, _) in store.list(SECRET_EXT)? {
            if store.used_path(&id).exists() {
                let p = store.secret_path(&id);
                fs::remove_file(&p).map_err(io(&p))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir).map_err(io(dir))?;
        }
        Ok(store)
    }

    /// Installs a crash-test hook (tests only).
    pub fn set_fault_hook(&mut self, hook: Option<PresignFaultHook>) {
        self.hook = hook;
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn secret_path(&self, id: &PresignatureId) -> PathBuf {
        self.dir.join(format!("{}.{SECRET_EXT}", stem(id)))
    }

    fn used_path(&self, id: &PresignatureId) -> PathBuf {
        self.dir.join(format!("{}.{USED_EXT}", stem(id)))
    }

    fn list(&self, ext: &str) -> Result<Vec<(PresignatureId, PathBuf)>, EcdsaKeystoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(s) = name.strip_suffix(&format!(".{ext}")) else {
                continue;
            };
            if let Some(id) = parse_stem(s) {
                out.push((id, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Ids of the presignatures ever consumed on this device (since its store key).
    pub fn consumed(&self) -> Vec<PresignatureId> {
        self.list(USED_EXT)
            .map(|v| v.into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default()
    }

    fn fault(&mut self, p: PresignFaultPoint) {
        if let Some(h) = self.hook.as_mut() {
            h(p);
        }
    }

    fn take_inner(
        &mut self,
        id: &PresignatureId,
    ) -> Result<Presignature, PresignatureStoreError<EcdsaKeystoreError>> {
        let store = PresignatureStoreError::Store;
        if self.used_path(id).exists() {
            return Err(PresignatureStoreError::AlreadyConsumed { id: *id });
        }
        let secret = self.secret_path(id);
        if !secret.exists() {
            return Err(PresignatureStoreError::Unknown { id: *id });
        }
        let ciphertext = read_file(&secret).map_err(store)?;
        let plain =
            decrypt_with(&secret, &ciphertext, &BackupKey::Age(self.key.clone())).map_err(store)?;
        let presig = Presignature::from_secret_bytes(&plain).map_err(|source| {
            store(EcdsaKeystoreError::Decode {
                path: secret.clone(),
                what: "presignature",
                source,
            })
        })?;
        if presig.id() != *id {
            return Err(store(EcdsaKeystoreError::Malformed {
                path: secret,
                reason: format!("holds presignature {}, not {id}", presig.id()),
            }));
        }
        self.fault(PresignFaultPoint::Decrypted);
        let used = self.used_path(id);
        let f = match create_private(&used) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(PresignatureStoreError::AlreadyConsumed { id: *id })
            }
            Err(e) => return Err(store(io(&used)(e))),
        };
        self.fault(PresignFaultPoint::MarkCreated);
        f.sync_all().map_err(|e| store(io(&used)(e)))?;
        drop(f);
        self.fault(PresignFaultPoint::MarkSynced);
        sync_dir(&self.dir).map_err(|e| store(io(&self.dir)(e)))?;
        self.fault(PresignFaultPoint::MarkDurable);
        fs::remove_file(&secret).map_err(|e| store(io(&secret)(e)))?;
        self.fault(PresignFaultPoint::SecretRemoved);
        sync_dir(&self.dir).map_err(|e| store(io(&self.dir)(e)))?;
        self.fault(PresignFaultPoint::Done);
        Ok(presig)
    }
}

impl PresignatureStore for FilePresignatureStore {
    type Error = EcdsaKeystoreError;

    fn insert(
        &mut self,
        presignatures: Vec<Presignature>,
    ) -> Result<(), PresignatureStoreError<Self::Error>> {
        let mut ids = std::collections::BTreeSet::new();
        for p in &presignatures {
            let id = p.id();
            if self.used_path(&id).exists() {
                return Err(PresignatureStoreError::AlreadyConsumed { id });
            }
            if self.secret_path(&id).exists() || !ids.insert(id) {
                return Err(PresignatureStoreError::Duplicate { id });
            }
        }
        let recipient = self.key.to_public();
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for p in &presignatures {
                let name = format!("{}.{SECRET_EXT}", stem(&p.id()));
                let ct = age::encrypt(&recipient, &p.to_secret_bytes())
                    .map_err(|e| EcdsaKeystoreError::Encrypt(e.to_string()))?;
                written.push(write_new_private(&self.dir, &name, &ct)?);
            }
            Ok(())
        })();
        if let Err(e) = result {
            // All or none: the ones already written were never handed out.
            for p in &written {
                let _ = fs::remove_file(p);
            }
            let _ = sync_dir(&self.dir);
            return Err(PresignatureStoreError::Store(e));
        }
        Ok(())
    }

    fn take(
        &mut self,
        id: &PresignatureId,
    ) -> Result<Presignature, PresignatureStoreError<Self::Error>> {
        self.take_inner(id)
    }

    fn available(&self) -> Vec<PresignatureId> {
        self.list(SECRET_EXT)
            .map(|v| {
                v.into_iter()
                    .map(|(id, _)| id)
                    .filter(|id| !self.used_path(id).exists())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An unlocked ECDSA keystore: the key share and the presignature store.
pub struct EcdsaKeystore {
    dir: PathBuf,
    share: EcdsaKeyShare,
    store: FilePresignatureStore,
    _lock: Option<File>,
}

impl fmt::Debug for EcdsaKeystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaKeystore")
            .field("dir", &self.dir)
            .field("share", &self.share)
            .finish()
    }
}

fn device_record(share: &EcdsaKeyShare, key: &age::x25519::Identity) -> Zeroizing<Vec<u8>> {
    let share_bytes = share.to_secret_bytes();
    let key_str = key.to_string();
    encode_record(
        TYPE_DEVICE,
        &[&share_bytes, key_str.expose_secret().as_bytes()],
    )
}

impl EcdsaKeystore {
    /// Creates an ECDSA keystore in the existing directory `dir` for `share`, with a new
    /// presignature store key and no presignatures.
    ///
    /// # Errors
    /// [`WriteFileError::Exists`] (through [`EcdsaKeystoreError::Write`]) if `dir` already
    /// holds one; I/O or encryption errors. Nothing is ever overwritten.
    pub fn create<R: RngCore + CryptoRng>(
        dir: &Path,
        share: EcdsaKeyShare,
        passphrase: &SecretString,
        params: EncryptionParams,
        _rng: &mut R,
    ) -> Result<Self, EcdsaKeystoreError> {
        let lock = lock_dir(dir)?;
        let presign = dir.join(PRESIGN_DIR);
        if presign.exists() {
            // Left over from an earlier key or a copied home: never adopt it.
            return Err(EcdsaKeystoreError::Write(WriteFileError::Exists {
                path: presign,
            }));
        }
        // age draws the X25519 key from the operating system's generator.
        let key = age::x25519::Identity::generate();
        let plain = device_record(&share, &key);
        let ciphertext = encrypt_to(
            &plain,
            &BackupRecipient::Passphrase(passphrase.clone(), params),
        )?;
        write_new_private(dir, ECDSA_SECRETS_FILE, &ciphertext)?;
        let store = FilePresignatureStore::open(&presign, key)?;
        Ok(EcdsaKeystore {
            dir: dir.to_owned(),
            share,
            store,
            _lock: lock,
        })
    }

    /// Unlocks the keystore in `dir` and opens its presignature store (finishing any
    /// `take` a crash interrupted). One process at a time.
    ///
    /// # Errors
    /// [`EcdsaKeystoreError::WrongPassphrase`], [`EcdsaKeystoreError::Malformed`],
    /// [`EcdsaKeystoreError::Decode`], [`EcdsaKeystoreError::Locked`], I/O errors.
    pub fn open(dir: &Path, passphrase: &SecretString) -> Result<Self, EcdsaKeystoreError> {
        let lock = lock_dir(dir)?;
        let path = dir.join(ECDSA_SECRETS_FILE);
        let ciphertext = read_file(&path)?;
        let plain = decrypt_with(
            &path,
            &ciphertext,
            &BackupKey::Passphrase(passphrase.clone()),
        )?;
        let fields = decode_record(&path, TYPE_DEVICE, 2, &plain)?;
        let share = decode_share(&path, fields[0])?;
        let key_str = Zeroizing::new(String::from_utf8_lossy(fields[1]).into_owned());
        let key = age::x25519::Identity::from_str(&key_str).map_err(|_| {
            EcdsaKeystoreError::Malformed {
                path: path.clone(),
                reason: "the presignature store key is damaged".into(),
            }
        })?;
        let store = FilePresignatureStore::open(&dir.join(PRESIGN_DIR), key)?;
        Ok(EcdsaKeystore {
            dir: dir.to_owned(),
            share,
            store,
            _lock: lock,
        })
    }

    /// The key share.
    pub fn share(&self) -> &EcdsaKeyShare {
        &self.share
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The presignature store.
    pub fn presignatures(&mut self) -> &mut FilePresignatureStore {
        &mut self.store
    }

    /// Issues this signer's partial signature over `prehash` with presignature `id`, which
    /// is durably marked consumed first (see [`custody_ecdsa::sign_prehash`]; the caller
    /// computes `prehash` itself from the transaction it shows).
    ///
    /// # Errors
    /// As [`custody_ecdsa::sign_prehash`].
    pub fn sign<R: RngCore + CryptoRng>(
        &mut self,
        identity: &custody_threshold::Identity,
        id: &PresignatureId,
        prehash: &[u8; 32],
        rng: &mut R,
    ) -> Result<custody_ecdsa::PartialSignature, custody_ecdsa::SignError<EcdsaKeystoreError>> {
        custody_ecdsa::sign_prehash(&self.share, identity, &mut self.store, id, prehash, rng)
    }

    /// The presignature store, read-only.
    pub fn presignatures_ref(&self) -> &FilePresignatureStore {
        &self.store
    }

    /// Encrypts a backup of the key share to `recipient`. Presignatures and the store key
    /// are never part of a backup.
    ///
    /// # Errors
    /// [`EcdsaKeystoreError::Encrypt`].
    pub fn export_backup(
        &self,
        recipient: &BackupRecipient,
    ) -> Result<Vec<u8>, EcdsaKeystoreError> {
        let share_bytes = self.share.to_secret_bytes();
        let plain = encode_record(TYPE_BACKUP, &[&share_bytes]);
        encrypt_to(&plain, recipient)
    }
}

/// Decrypts an ECDSA share backup and returns the share (to check it, or to restore it).
///
/// # Errors
/// [`EcdsaKeystoreError::WrongPassphrase`], [`EcdsaKeystoreError::Malformed`],
/// [`EcdsaKeystoreError::Decode`].
pub fn open_ecdsa_backup(
    label: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
) -> Result<EcdsaKeyShare, EcdsaKeystoreError> {
    let plain = decrypt_with(label, ciphertext, key)?;
    let fields = decode_record(label, TYPE_BACKUP, 1, &plain)?;
    decode_share(label, fields[0])
}

/// Restores an ECDSA share backup into a new keystore in `dir` with a new, empty
/// presignature store: a restored device has no presignatures and must presign again.
///
/// # Errors
/// As [`open_ecdsa_backup`] and [`EcdsaKeystore::create`].
pub fn restore_ecdsa_backup<R: RngCore + CryptoRng>(
    label: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
    dir: &Path,
    passphrase: &SecretString,
    params: EncryptionParams,
    rng: &mut R,
) -> Result<EcdsaKeystore, EcdsaKeystoreError> {
    let share = open_ecdsa_backup(label, ciphertext, key)?;
    EcdsaKeystore::create(dir, share, passphrase, params, rng)
}

/// Writes `bytes` to `dir/name`, encrypted to `passphrase` (age scrypt), mode 0600,
/// atomically; never replaces a file. For secrets kept beside the keystore (Paillier
/// primes before the auxiliary-info ceremony).
///
/// # Errors
/// [`EcdsaKeystoreError::Encrypt`], [`EcdsaKeystoreError::Write`].
pub fn write_encrypted(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    passphrase: &SecretString,
    params: EncryptionParams,
) -> Result<PathBuf, EcdsaKeystoreError> {
    let ct = encrypt_to(
        bytes,
        &BackupRecipient::Passphrase(passphrase.clone(), params),
    )?;
    Ok(write_new_private(dir, name, &ct)?)
}

/// Reads a file written by [`write_encrypted`].
///
/// # Errors
/// [`EcdsaKeystoreError::WrongPassphrase`], [`EcdsaKeystoreError::Malformed`], I/O errors.
pub fn read_encrypted(
    path: &Path,
    passphrase: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, EcdsaKeystoreError> {
    let ct = read_file(path)?;
    decrypt_with(path, &ct, &BackupKey::Passphrase(passphrase.clone()))
}
