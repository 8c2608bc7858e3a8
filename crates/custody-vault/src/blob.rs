//! The sealed blob: a self-describing encoding of one encrypted record. Layout:
//! `docs/formats/vault.md`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use thiserror::Error;

use crate::keys::{KekId, KeySetId};

/// Magic of a sealed blob: `"CPVB"`.
pub const BLOB_MAGIC: [u8; 4] = *b"CPVB";
/// Blob format version this crate writes and reads.
pub const BLOB_VERSION: u8 = 1;
/// Largest plaintext a blob holds (32 MiB).
pub const MAX_PLAINTEXT: usize = 32 * 1024 * 1024;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const WRAPPED_DEK_LEN: usize = 32 + TAG_LEN;
pub(crate) const RECORD_CHECK_LEN: usize = 8;
/// Length of everything before the ciphertext.
pub const BLOB_HEADER_LEN: usize =
    4 + 1 + 1 + 16 + 4 + RECORD_CHECK_LEN + NONCE_LEN + WRAPPED_DEK_LEN + NONCE_LEN + 4;

/// What a sealed blob holds. It is authenticated (associated data of both the data and
/// the wrapped data key), so a TOTP secret cannot be opened as a KYC record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Purpose {
    /// A [`KycRecord`](crate::KycRecord).
    KycRecord,
    /// A user's TOTP secret.
    TotpSecret,
    /// The coordinator's own identity key.
    CoordinatorIdentity,
    /// Any other secret the coordinator keeps (the record id says which).
    Secret,
}

impl Purpose {
    /// The byte that encodes this purpose.
    pub fn to_byte(self) -> u8 {
        match self {
            Purpose::KycRecord => 1,
            Purpose::TotpSecret => 2,
            Purpose::CoordinatorIdentity => 3,
            Purpose::Secret => 4,
        }
    }

    /// The purpose a byte encodes, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Purpose::KycRecord,
            2 => Purpose::TotpSecret,
            3 => Purpose::CoordinatorIdentity,
            4 => Purpose::Secret,
            _ => return None,
        })
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::KycRecord => "kyc-record",
            Purpose::TotpSecret => "totp-secret",
            Purpose::CoordinatorIdentity => "coordinator-identity",
            Purpose::Secret => "secret",
        })
    }
}

/// Why bytes or text are not a sealed blob.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseBlobError {
    /// The bytes do not start with `CPVB`.
    #[error("not a sealed vault blob (bad magic)")]
    BadMagic,
    /// A format version this build does not know.
    #[error("unsupported blob version {found} (this build reads {BLOB_VERSION})")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// An unknown purpose byte.
    #[error("unknown blob purpose {found}")]
    UnknownPurpose {
        /// The purpose byte.
        found: u8,
    },
    /// Shorter than the fixed header.
    #[error("blob is {found} bytes, shorter than its {BLOB_HEADER_LEN}-byte header")]
    Truncated {
        /// Length found.
        found: usize,
    },
    /// The ciphertext length field disagrees with the blob or exceeds the limit.
    #[error("blob ciphertext length {declared} is invalid ({available} bytes follow the header)")]
    CiphertextLength {
        /// The length the header declares.
        declared: u64,
        /// Bytes after the header.
        available: usize,
    },
    /// The text form is not valid base64.
    #[error("blob text is not valid base64")]
    Base64,
}

/// One sealed record: ciphertext plus everything needed to open it except the key file
/// and the record id. Not secret; store it as bytes ([`to_bytes`](Self::to_bytes)) or
/// text ([`to_text`](Self::to_text)).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub(crate) purpose: Purpose,
    pub(crate) set_id: KeySetId,
    pub(crate) kek_id: KekId,
    pub(crate) record_check: [u8; RECORD_CHECK_LEN],
    pub(crate) wrap_nonce: [u8; NONCE_LEN],
    pub(crate) wrapped_dek: [u8; WRAPPED_DEK_LEN],
    pub(crate) data_nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte Poly1305 tag.
    pub(crate) ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBlob")
            .field("purpose", &self.purpose)
            .field("key_set", &self.set_id.to_string())
            .field("kek_id", &self.kek_id.0)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl SealedBlob {
    /// What the blob holds.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The key set (key file) it was sealed under.
    pub fn key_set_id(&self) -> KeySetId {
        self.set_id
    }

    /// The KEK its data key is wrapped under. A rotation counts blobs per KEK before it
    /// removes an old one.
    pub fn kek_id(&self) -> KekId {
        self.kek_id
    }

    /// Encodes the blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOB_HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(&BLOB_MAGIC);
        out.push(BLOB_VERSION);
        out.push(self.purpose.to_byte());
        out.extend_from_slice(&self.set_id.0);
        out.extend_from_slice(&self.kek_id.0.to_be_bytes());
        out.extend_from_slice(&self.record_check);
        out.extend_from_slice(&self.wrap_nonce);
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.data_nonce);
        let len = u32::try_from(self.ciphertext.len())
            .expect("ciphertext length bounded by MAX_PLAINTEXT");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes a blob. Only the structure is checked; authenticity is checked by
    /// [`VaultKeys::open`](crate::VaultKeys::open).
    ///
    /// # Errors
    /// [`ParseBlobError`] saying what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParseBlobError> {
        if bytes.len() < 4 || bytes[..4] != BLOB_MAGIC {
            return Err(ParseBlobError::BadMagic);
        }
        if bytes.len() < BLOB_HEADER_LEN {
            return Err(ParseBlobError::Truncated { found: bytes.len() });
        }
        if bytes[4] != BLOB_VERSION {
            return Err(ParseBlobError::UnsupportedVersion { found: bytes[4] });
        }
        let purpose = Purpose::from_byte(bytes[5])
            .ok_or(ParseBlobError::UnknownPurpose { found: bytes[5] })?;
        let mut r = Reader { bytes, pos: 6 };
        let set_id = KeySetId(r.array());
        let kek_id = KekId(u32::from_be_bytes(r.array()));
        let record_check = r.array();
        let wrap_nonce = r.array();
        let wrapped_dek = r.array();
        let data_nonce = r.array();
        let declared = u32::from_be_bytes(r.array());
        let rest = &bytes[r.pos..];
        let declared_len = usize::try_from(declared).unwrap_or(usize::MAX);
        if declared_len != rest.len()
            || !(TAG_LEN..=MAX_PLAINTEXT + TAG_LEN).contains(&declared_len)
        {
            return Err(ParseBlobError::CiphertextLength {
                declared: u64::from(declared),
                available: rest.len(),
            });
        }
        Ok(SealedBlob {
            purpose,
            set_id,
            kek_id,
            record_check,
            wrap_nonce,
            wrapped_dek,
            data_nonce,
            ciphertext: rest.to_vec(),
        })
    }

    /// The text form for TEXT columns: standard base64 (with padding) of
    /// [`to_bytes`](Self::to_bytes).
    pub fn to_text(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }

    /// Decodes the text form.
    ///
    /// # Errors
    /// [`ParseBlobError::Base64`] or as [`from_bytes`](Self::from_bytes).
    pub fn from_text(text: &str) -> Result<Self, ParseBlobError> {
        let bytes = STANDARD.decode(text).map_err(|_| ParseBlobError::Base64)?;
        Self::from_bytes(&bytes)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// Takes the next `N` bytes; the caller checked the header length first.
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.pos..self.pos + N]);
        self.pos += N;
        out
    }
}
