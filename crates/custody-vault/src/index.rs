//! Keyed blind indexes: HMAC-SHA256 of a normalised value under an index key derived
//! from the key file, truncated to 16 bytes, for equality lookups without plaintext.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::keys::VaultKeys;

/// Longest value (before normalisation) that can be indexed, in bytes.
pub const MAX_INDEX_INPUT: usize = 4096;
/// Length of a blind index in bytes (hex text is twice as long).
pub const BLIND_INDEX_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"CoinPort/vault/blind-index";

/// What kind of value is indexed. Each kind has its own normalisation and its own key,
/// so equal text in two kinds gives unrelated indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum FieldKind {
    /// An e-mail address: surrounding whitespace trimmed, Unicode lower-case.
    Email,
    /// An identity document number: every whitespace character and `-` removed, Unicode
    /// upper-case.
    DocumentNumber,
    /// A person's name: Unicode lower-case, NFC, surrounding whitespace trimmed and each
    /// inner run of whitespace replaced by one space.
    Name,
    /// Any other value, indexed byte for byte (normalise it before calling).
    Exact,
}

impl FieldKind {
    fn label(self) -> &'static str {
        match self {
            FieldKind::Email => "email",
            FieldKind::DocumentNumber => "document-number",
            FieldKind::Name => "name",
            FieldKind::Exact => "exact",
        }
    }

    /// Returns the normalised form of `value` that is indexed (see each kind).
    pub fn normalise(self, value: &str) -> Zeroizing<String> {
        Zeroizing::new(match self {
            FieldKind::Email => value.trim().to_lowercase(),
            FieldKind::DocumentNumber => value
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect::<String>()
                .to_uppercase(),
            FieldKind::Name => {
                let lower = Zeroizing::new(value.to_lowercase());
                let nfc: Zeroizing<String> = Zeroizing::new(lower.nfc().collect());
                let words: Vec<&str> = nfc.split_whitespace().collect();
                words.join(" ")
            }
            FieldKind::Exact => value.to_owned(),
        })
    }
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a value could not be indexed. Never contains the value.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlindIndexError {
    /// Nothing is left after normalisation (an empty value would match every other
    /// empty value).
    #[error("{kind} value is empty after normalisation")]
    Empty {
        /// The field kind.
        kind: FieldKind,
    },
    /// The value is longer than [`MAX_INDEX_INPUT`].
    #[error("{kind} value is {len} bytes, more than {MAX_INDEX_INPUT}")]
    TooLong {
        /// The field kind.
        kind: FieldKind,
        /// Its length.
        len: usize,
    },
}

/// A blind index: 16 bytes, shown and stored as 32 lower-case hex characters.
///
/// Not plaintext, but a stable pseudonym of the value: equal values give equal indexes.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BlindIndex([u8; BLIND_INDEX_LEN]);

impl BlindIndex {
    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; BLIND_INDEX_LEN] {
        &self.0
    }

    /// Lower-case hex, for a TEXT column.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl VaultKeys {
    /// Computes the blind index of `value` as a `kind` field:
    /// `HMAC-SHA256(K_kind, normalise(value))[..16]`, where `K_kind` is
    /// `HKDF-SHA256(salt = "CoinPort/vault/blind-index", ikm = index root key,
    /// info = "v1/" ‖ kind label)`.
    ///
    /// The index root key is fixed for the life of the key file; KEK rotation does not
    /// change indexes.
    ///
    /// # Errors
    /// [`BlindIndexError::TooLong`] or [`BlindIndexError::Empty`].
    pub fn blind_index(&self, kind: FieldKind, value: &str) -> Result<BlindIndex, BlindIndexError> {
        if value.len() > MAX_INDEX_INPUT {
            return Err(BlindIndexError::TooLong {
                kind,
                len: value.len(),
            });
        }
        let normalised = kind.normalise(value);
        if normalised.is_empty() {
            return Err(BlindIndexError::Empty { kind });
        }
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.index_root.expose_secret());
        let mut key = Zeroizing::new([0u8; 32]);
        let info = format!("v1/{}", kind.label());
        hk.expand(info.as_bytes(), &mut key[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key[..])
            .expect("HMAC takes a key of any length");
        mac.update(normalised.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = [0; BLIND_INDEX_LEN];
        out.copy_from_slice(&tag[..BLIND_INDEX_LEN]);
        Ok(BlindIndex(out))
    }
}
