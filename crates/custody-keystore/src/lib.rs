//! The signer device's keystore for CoinPort Custody.
//!
//! - [`FileNonceStore`]: a durable [`custody_threshold::NonceStore`], an fsynced
//!   append-only journal of issued and consumed nonce counters, so that a crash at any
//!   point can lose commitments but never reuse one;
//! - [`Keystore`]: the key share, identity and nonce seed encrypted at rest under a
//!   passphrase (age with scrypt), written atomically with mode 0600;
//! - share backups ([`Keystore::export_backup`], [`verify_backup`], [`restore_backup`]),
//!   which never contain the nonce seed.
//!
//! This crate does file I/O by design (it implements the persistence the threshold core
//! leaves to its caller) but never prints. File formats: `docs/formats/keystore.md`.
//!
//! # Security
//! Never copy a keystore directory (VM snapshot, disk image, file backup): a copy carries
//! the nonce seed with an older journal and can reuse nonces, which reveals the key share.
//! Move a signer only through a share backup.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ecdsa;
mod fsutil;
pub mod journal;
mod keystore;

pub use ecdsa::{
    open_ecdsa_backup, restore_ecdsa_backup, EcdsaKeystore, EcdsaKeystoreError,
    FilePresignatureStore, PresignFaultHook, PresignFaultPoint,
};
pub use fsutil::{write_new_private, WriteFileError};
pub use journal::{FaultHook, FaultPoint, FileNonceStore, JournalError};
pub use keystore::{
    restore_backup, verify_backup, BackupKey, BackupRecipient, BackupSummary, EncryptionParams,
    Keystore, KeystoreError, DEFAULT_SCRYPT_LOG_N, MAX_SCRYPT_LOG_N, SECRETS_FILE,
};

/// Secret passphrases, as age takes them.
pub use age::secrecy::SecretString;
