//! Envelope encryption at rest for CoinPort Custody: KYC records and the coordinator's
//! own secrets (TOTP secrets, its identity key).
//!
//! - [`VaultKeys`]: the key file — a key set id, one or more key-encryption keys (KEKs,
//!   the highest id is current, older ones are retired but still open blobs) and the
//!   blind-index root key; loaded and written with mode 0600, atomically;
//! - [`VaultKeys::seal`] / [`VaultKeys::open`]: a fresh 32-byte data key per record
//!   seals the record with XChaCha20-Poly1305 (random 24-byte nonce, the record id,
//!   purpose and format version as associated data); the current KEK wraps the data key
//!   (XChaCha20-Poly1305, the record id and KEK id as associated data); the result is a
//!   self-describing [`SealedBlob`] (bytes or base64 text);
//! - [`VaultKeys::rewrap`]: key rotation without downtime — re-wraps the data key under
//!   the current KEK and leaves the ciphertext as it is;
//! - [`VaultKeys::blind_index`]: keyed HMAC-SHA256 lookups over normalised values
//!   ([`FieldKind`]), never plaintext;
//! - [`KycRecord`] with [`VaultKeys::seal_kyc`] / [`VaultKeys::open_kyc`].
//!
//! The only I/O is reading and writing the key file; nothing is printed. Secrets are
//! zeroized on drop and redacted in `Debug`; no error message carries plaintext or key
//! material. Formats: `docs/formats/vault.md`; decisions: `docs/adr/0014-data-at-rest.md`.
//!
//! # Security
//! Rotation (a new KEK plus [`VaultKeys::rewrap`]) protects against a KEK that leaks
//! *later*; it does not re-encrypt data, so anyone who already holds an old KEK and an
//! old database copy can read the records of that copy. After a suspected compromise,
//! open and seal every record again instead.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blob;
mod envelope;
mod fsutil;
pub mod fuzzing;
mod index;
mod keys;
mod kyc;

pub use blob::{
    ParseBlobError, Purpose, SealedBlob, BLOB_HEADER_LEN, BLOB_MAGIC, BLOB_VERSION, MAX_PLAINTEXT,
};
pub use envelope::{OpenError, SealError, MAX_RECORD_ID_LEN};
pub use index::{BlindIndex, BlindIndexError, FieldKind, BLIND_INDEX_LEN, MAX_INDEX_INPUT};
pub use keys::{
    KekId, KeyFileError, KeySetId, ParseKeyFileError, RotateError, VaultKeys, KEY_FILE_MAGIC,
    KEY_FILE_VERSION, MAX_KEKS,
};
pub use kyc::{
    DocumentImage, DocumentType, KycError, KycRecord, MAX_IMAGES, MAX_IMAGE_BYTES,
    MAX_MEDIA_TYPE_LEN, MAX_TEXT_LEN,
};
