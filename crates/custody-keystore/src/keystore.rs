//! [`Keystore`]: a signer device's encrypted secrets and its nonce journal, and share
//! backups.
//!
//! A keystore directory holds `secrets.age` (key share, identity and nonce seed,
//! encrypted to a passphrase with age's scrypt recipient) and `nonces.journal`
//! ([`FileNonceStore`]). A backup holds the key share and identity only, never the nonce
//! seed; restoring one draws a new seed, so commitments issued before the backup are
//! refused as stale. Formats: `docs/formats/keystore.md`; rationale:
//! `docs/adr/0007-keystore-encryption.md`.

use std::io::Read;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use custody_threshold::{
    issue_commitments, sign_request, CommitmentBatch, DecodeError, Identity, IssueError, KeyShare,
    NonceSeed, SignError, SignatureShares, SigningRequest,
};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::fsutil::{write_new_private, WriteFileError};
use crate::journal::{FileNonceStore, JournalError, JOURNAL_FILE};

/// File name of the encrypted secrets inside a keystore directory.
pub const SECRETS_FILE: &str = "secrets.age";

/// Default scrypt work factor, `log2(N)`: 2^18, as age's own tools use (about a second
/// and 256 MiB per unlock).
pub const DEFAULT_SCRYPT_LOG_N: u8 = 18;

/// Highest scrypt work factor accepted when decrypting (2^22: about 4 GiB), so a
/// doctored file cannot make an unlock run for hours.
pub const MAX_SCRYPT_LOG_N: u8 = 22;

/// Largest encrypted file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

const MAGIC: [u8; 4] = *b"CPKS";
const VERSION: u8 = 1;
const TYPE_DEVICE: u8 = 0x01;
const TYPE_BACKUP: u8 = 0x02;
const MAX_FIELD: usize = 64 * 1024;

/// Why a keystore operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The passphrase (or backup key) does not decrypt the file.
    #[error("{path}: wrong passphrase, or the file was altered")]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a keystore or backup of this version, or is damaged.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A decoded secret is invalid (e.g. a share that does not match its group key).
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
    /// The scrypt work factor is outside 1 to [`MAX_SCRYPT_LOG_N`].
    #[error("scrypt work factor 2^{0} is outside 2^1 to 2^{MAX_SCRYPT_LOG_N}")]
    BadWorkFactor(u8),
    /// age refused to encrypt.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// A secrets file could not be written (or already exists).
    #[error(transparent)]
    Write(#[from] WriteFileError),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The nonce journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How a passphrase is stretched when encrypting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptionParams {
    scrypt_log_n: u8,
}

impl Default for EncryptionParams {
    fn default() -> Self {
        EncryptionParams {
            scrypt_log_n: DEFAULT_SCRYPT_LOG_N,
        }
    }
}

impl EncryptionParams {
    /// Parameters with scrypt work factor `N = 2^log_n`.
    ///
    /// # Errors
    /// [`KeystoreError::BadWorkFactor`] outside 1 to [`MAX_SCRYPT_LOG_N`].
    ///
    /// # Security
    /// Anything below [`DEFAULT_SCRYPT_LOG_N`] makes guessing the passphrase cheaper;
    /// use it for tests only.
    pub fn with_scrypt_log_n(log_n: u8) -> Result<Self, KeystoreError> {
        if log_n == 0 || log_n > MAX_SCRYPT_LOG_N {
            return Err(KeystoreError::BadWorkFactor(log_n));
        }
        Ok(EncryptionParams {
            scrypt_log_n: log_n,
        })
    }

    /// The scrypt work factor, `log2(N)`.
    pub fn scrypt_log_n(&self) -> u8 {
        self.scrypt_log_n
    }
}

/// Who can decrypt a backup.
pub enum BackupRecipient {
    /// A backup passphrase (age scrypt).
    Passphrase(SecretString, EncryptionParams),
    /// An age X25519 recipient, e.g. an offline backup key.
    Age(age::x25519::Recipient),
}

/// The key that opens a backup.
pub enum BackupKey {
    /// The backup passphrase.
    Passphrase(SecretString),
    /// The age X25519 identity of the recipient.
    Age(age::x25519::Identity),
}

/// What a verified backup holds, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The compressed group public key.
    pub group_key: [u8; 33],
    /// The participant whose share it is.
    pub index: u16,
    /// The identity's display name.
    pub identity_name: String,
    /// The identity card's fingerprint.
    pub identity_fingerprint: String,
}

/// Why an age file did not open.
pub(crate) enum Unsealed {
    /// Wrong passphrase or identity.
    WrongKey,
    /// Not a readable age file; age's own words.
    Unreadable(String),
}

/// Encrypts `plaintext` to `recipient` with age (scrypt at the given work factor for a
/// passphrase). Shared by the FROST and the ECDSA keystores.
pub(crate) fn seal(
    plaintext: &[u8],
    recipient: &BackupRecipient,
) -> Result<Vec<u8>, age::EncryptError> {
    match recipient {
        BackupRecipient::Passphrase(pass, params) => {
            let mut r = age::scrypt::Recipient::new(pass.clone());
            r.set_work_factor(params.scrypt_log_n);
            age::encrypt(&r, plaintext)
        }
        BackupRecipient::Age(r) => age::encrypt(r, plaintext),
    }
}

/// Decrypts an age file with `key`, refusing a passphrase file whose work factor is above
/// [`MAX_SCRYPT_LOG_N`] (a file made to stall whoever opens it).
pub(crate) fn unseal(ciphertext: &[u8], key: &BackupKey) -> Result<Zeroizing<Vec<u8>>, Unsealed> {
    let result = match key {
        BackupKey::Passphrase(pass) => {
            let mut id = age::scrypt::Identity::new(pass.clone());
            id.set_max_work_factor(MAX_SCRYPT_LOG_N);
            age::decrypt(&id, ciphertext)
        }
        BackupKey::Age(id) => age::decrypt(id, ciphertext),
    };
    match result {
        Ok(plain) => Ok(Zeroizing::new(plain)),
        Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
            Err(Unsealed::WrongKey)
        }
        Err(e) => Err(Unsealed::Unreadable(e.to_string())),
    }
}

/// Reads `path` whole; `None` when it holds more than `max` bytes (read no further).
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

fn encrypt(plaintext: &[u8], recipient: &BackupRecipient) -> Result<Vec<u8>, KeystoreError> {
    seal(plaintext, recipient).map_err(|e| KeystoreError::Encrypt(e.to_string()))
}

fn decrypt(
    path: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    unseal(ciphertext, key).map_err(|u| match u {
        Unsealed::WrongKey => KeystoreError::WrongPassphrase {
            path: path.to_owned(),
        },
        Unsealed::Unreadable(e) => KeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("not a readable age file: {e}"),
        },
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, KeystoreError> {
    read_bounded(path, MAX_FILE_LEN)
        .map_err(|source| KeystoreError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| KeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("larger than {MAX_FILE_LEN} bytes"),
        })
}

/// Encodes the plaintext record: magic, version, type, then `u32`-length-prefixed
/// fields, then the fixed tail.
fn encode(kind: u8, fields: &[&[u8]], tail: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = 6 + fields.iter().map(|f| 4 + f.len()).sum::<usize>() + tail.len();
    // Allocated once at its final size so no copy of a secret is left behind by a
    // reallocation.
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out.extend_from_slice(tail);
    out
}

/// A decoded record: share bytes, identity bytes, tail.
type Fields<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a plaintext record into its two fields and its tail.
fn decode<'a>(path: &Path, kind: u8, bytes: &'a [u8]) -> Result<Fields<'a>, KeystoreError> {
    let bad = |reason: &str| KeystoreError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 6 || bytes[..4] != MAGIC {
        return Err(bad("not a CoinPort keystore record"));
    }
    if bytes[4] != VERSION {
        return Err(bad("unsupported keystore record version"));
    }
    if bytes[5] != kind {
        return Err(bad(if kind == TYPE_BACKUP {
            "not a share backup"
        } else {
            "not a device keystore"
        }));
    }
    let mut rest = &bytes[6..];
    let mut field = || -> Result<&'a [u8], KeystoreError> {
        let len = rest
            .get(..4)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| bad("truncated record"))?;
        if len > MAX_FIELD || rest.len() < 4 + len {
            return Err(bad("truncated or oversized field"));
        }
        let (f, r) = rest[4..].split_at(len);
        rest = r;
        Ok(f)
    };
    let share = field()?;
    let identity = field()?;
    Ok((share, identity, rest))
}

fn decode_share(path: &Path, bytes: &[u8]) -> Result<KeyShare, KeystoreError> {
    KeyShare::from_secret_bytes(bytes).map_err(|source| KeystoreError::Decode {
        path: path.to_owned(),
        what: "key share",
        source,
    })
}

fn decode_identity(path: &Path, bytes: &[u8]) -> Result<Identity, KeystoreError> {
    Identity::from_secret_bytes(bytes).map_err(|source| KeystoreError::Decode {
        path: path.to_owned(),
        what: "identity",
        source,
    })
}

/// An unlocked signer keystore: key share, identity, nonce seed and nonce journal.
#[derive(Debug)]
pub struct Keystore {
    dir: PathBuf,
    share: KeyShare,
    identity: Identity,
    seed: NonceSeed,
    nonces: FileNonceStore,
}

impl Keystore {
    /// Creates a keystore in the existing directory `dir` for `share` and `identity`,
    /// drawing a fresh nonce seed from `rng` and starting an empty nonce journal.
    ///
    /// # Errors
    /// [`WriteFileError::Exists`] (through [`KeystoreError::Write`]) if `dir` already holds
    /// a keystore, [`JournalError::Exists`] if it holds a journal, or an I/O or encryption
    /// error. Nothing is ever overwritten.
    pub fn create<R: RngCore + CryptoRng>(
        dir: &Path,
        share: KeyShare,
        identity: Identity,
        passphrase: &SecretString,
        params: EncryptionParams,
        rng: &mut R,
    ) -> Result<Self, KeystoreError> {
        let journal = dir.join(JOURNAL_FILE);
        if journal.exists() {
            return Err(JournalError::Exists { path: journal }.into());
        }
        let seed = NonceSeed::generate(rng);
        let share_bytes = share.to_secret_bytes();
        let identity_bytes = identity.to_secret_bytes();
        let plain = encode(
            TYPE_DEVICE,
            &[&share_bytes, &identity_bytes],
            seed.expose_secret(),
        );
        let ciphertext = encrypt(
            &plain,
            &BackupRecipient::Passphrase(passphrase.clone(), params),
        )?;
        // Secrets first: a crash before the journal exists leaves a keystore that refuses
        // to open (never one that silently starts a journal later).
        write_new_private(dir, SECRETS_FILE, &ciphertext)?;
        let nonces = FileNonceStore::create(dir, seed.id())?;
        Ok(Keystore {
            dir: dir.to_owned(),
            share,
            identity,
            seed,
            nonces,
        })
    }

    /// Unlocks the keystore in `dir` with `passphrase` and loads its nonce journal.
    ///
    /// # Errors
    /// [`KeystoreError::WrongPassphrase`], [`KeystoreError::Malformed`],
    /// [`KeystoreError::Decode`], or a journal error ([`JournalError::Missing`] if the
    /// journal is gone).
    pub fn open(dir: &Path, passphrase: &SecretString) -> Result<Self, KeystoreError> {
        let path = dir.join(SECRETS_FILE);
        let ciphertext = read_file(&path)?;
        let plain = decrypt(
            &path,
            &ciphertext,
            &BackupKey::Passphrase(passphrase.clone()),
        )?;
        let (share, identity, tail) = decode(&path, TYPE_DEVICE, &plain)?;
        if tail.len() != 32 {
            return Err(KeystoreError::Malformed {
                path,
                reason: format!("nonce seed is {} bytes, expected 32", tail.len()),
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(tail);
        let seed = NonceSeed::from_secret_bytes(&seed);
        let share = decode_share(&path, share)?;
        let identity = decode_identity(&path, identity)?;
        let nonces = FileNonceStore::open(dir, seed.id())?;
        Ok(Keystore {
            dir: dir.to_owned(),
            share,
            identity,
            seed,
            nonces,
        })
    }

    /// The key share.
    pub fn share(&self) -> &KeyShare {
        &self.share
    }

    /// The participant identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The id of the current nonce seed.
    pub fn nonce_seed_id(&self) -> [u8; 8] {
        self.seed.id()
    }

    /// The nonce journal.
    pub fn nonce_store(&self) -> &FileNonceStore {
        &self.nonces
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues `count` fresh nonce commitments, durably recorded before they are returned.
    ///
    /// # Errors
    /// As [`issue_commitments`].
    pub fn issue_commitments(
        &mut self,
        count: usize,
    ) -> Result<CommitmentBatch, IssueError<JournalError>> {
        issue_commitments(&self.share, &self.seed, &mut self.nonces, count)
    }

    /// Signs `request`, consuming its nonce counters durably first.
    ///
    /// # Errors
    /// As [`sign_request`].
    pub fn sign(
        &mut self,
        request: &SigningRequest,
    ) -> Result<SignatureShares, SignError<JournalError>> {
        sign_request(&self.share, &self.seed, &mut self.nonces, request)
    }

    /// Encrypts a backup of the key share and identity to `recipient`. The nonce seed is
    /// never part of a backup.
    ///
    /// Write the result with [`write_new_private`](crate::write_new_private), which never
    /// replaces an existing file.
    ///
    /// # Errors
    /// [`KeystoreError::Encrypt`].
    pub fn export_backup(&self, recipient: &BackupRecipient) -> Result<Vec<u8>, KeystoreError> {
        let share_bytes = self.share.to_secret_bytes();
        let identity_bytes = self.identity.to_secret_bytes();
        let plain = encode(TYPE_BACKUP, &[&share_bytes, &identity_bytes], &[]);
        encrypt(&plain, recipient)
    }
}

fn open_backup(
    path: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
) -> Result<(KeyShare, Identity), KeystoreError> {
    let plain = decrypt(path, ciphertext, key)?;
    let (share, identity, tail) = decode(path, TYPE_BACKUP, &plain)?;
    if !tail.is_empty() {
        return Err(KeystoreError::Malformed {
            path: path.to_owned(),
            reason: format!("{} unexpected bytes after the identity", tail.len()),
        });
    }
    // `from_secret_bytes` checks the share against the group's verifying share.
    Ok((decode_share(path, share)?, decode_identity(path, identity)?))
}

/// Decrypts and checks a backup without restoring it: the share must decode and match the
/// verifying share its group key lists for it, and the identity must decode.
///
/// `label` names the backup in errors (e.g. its file path).
///
/// # Errors
/// [`KeystoreError::WrongPassphrase`], [`KeystoreError::Malformed`] or
/// [`KeystoreError::Decode`].
pub fn verify_backup(
    label: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
) -> Result<BackupSummary, KeystoreError> {
    let (share, identity) = open_backup(label, ciphertext, key)?;
    let card = identity.card();
    Ok(BackupSummary {
        group_key: share.group().public_key(),
        index: share.index(),
        identity_name: card.name().to_owned(),
        identity_fingerprint: card.fingerprint(),
    })
}

/// Restores a backup into a new keystore in `dir`, under `passphrase`, with a new nonce
/// seed (so commitments issued before are refused as stale).
///
/// # Errors
/// As [`verify_backup`] and [`Keystore::create`].
pub fn restore_backup<R: RngCore + CryptoRng>(
    label: &Path,
    ciphertext: &[u8],
    key: &BackupKey,
    dir: &Path,
    passphrase: &SecretString,
    params: EncryptionParams,
    rng: &mut R,
) -> Result<Keystore, KeystoreError> {
    let (share, identity) = open_backup(label, ciphertext, key)?;
    Keystore::create(dir, share, identity, passphrase, params, rng)
}
