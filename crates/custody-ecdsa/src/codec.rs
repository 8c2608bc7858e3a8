//! The binary framing of every type this crate encodes.
//!
//! Every encoding starts with the 4-byte magic `CPEC`, a format version byte and a type
//! byte, followed by the type's fields in a fixed order (the same scheme as
//! `custody-threshold`, see `docs/adr/0004-binary-encoding.md`). Integers are big-endian;
//! variable-length fields carry a `u32` length prefix and a per-field maximum that is
//! checked before anything is allocated. Layouts are in `docs/formats/ecdsa-messages.md`.

use thiserror::Error;

/// The magic bytes that start every encoding of this crate.
pub const MAGIC: [u8; 4] = *b"CPEC";

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// Type bytes, one per encoded type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum TypeTag {
    /// [`crate::EcdsaPlan`].
    Plan = 0x01,
    /// [`crate::EcdsaMessage`].
    Message = 0x02,
    /// [`crate::PartialSignature`].
    PartialSignature = 0x03,
    /// [`crate::GroupPublicKey`].
    GroupKey = 0x04,
    /// The bytes an [`crate::EcdsaMessage`] signature covers (never stored on its own).
    MessageSigned = 0x05,
    /// The bytes a [`crate::PartialSignature`] signature covers (never stored on its own).
    PartialSigned = 0x06,
    /// [`crate::EcdsaKeyShare`] (secret; only for the keystore and encrypted backups).
    KeyShare = 0x40,
    /// [`crate::Presignature`] (secret; only for the device's presignature store).
    Presignature = 0x41,
    /// [`crate::PaillierPrimes`] (secret; pre-generated primes awaiting a ceremony).
    PaillierPrimes = 0x42,
}

impl TypeTag {
    /// The human name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            TypeTag::Plan => "ECDSA ceremony plan",
            TypeTag::Message => "ECDSA ceremony message",
            TypeTag::PartialSignature => "ECDSA partial signature",
            TypeTag::GroupKey => "ECDSA group key",
            TypeTag::MessageSigned => "ECDSA message signing input",
            TypeTag::PartialSigned => "ECDSA partial signature signing input",
            TypeTag::KeyShare => "ECDSA key share",
            TypeTag::Presignature => "ECDSA presignature",
            TypeTag::PaillierPrimes => "Paillier primes",
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("truncated input: {what} needs {needed} more bytes but only {available} remain")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// The input does not start with `CPEC`.
    #[error("not a CoinPort ECDSA encoding: magic is {found:02x?}, expected \"CPEC\"")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// The format version is not one this build understands.
    #[error("unsupported format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// Version found in the input.
        found: u8,
        /// Version this build supports.
        supported: u8,
    },
    /// The type byte names a different type than the one asked for.
    #[error("wrong type: expected {expected}, found type byte 0x{found:02x}")]
    WrongType {
        /// The type the caller asked for.
        expected: &'static str,
        /// The type byte found.
        found: u8,
    },
    /// A length prefix exceeds the field's maximum.
    #[error("{what} is {len} bytes long, more than the maximum of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The declared length.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// A count exceeds the field's maximum.
    #[error("{what} count is {count}, more than the maximum of {max}")]
    TooMany {
        /// The counted field.
        what: &'static str,
        /// The declared count.
        count: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// Bytes follow the last field.
    #[error("{count} unexpected bytes after the end of the {what}")]
    TrailingBytes {
        /// The type that ended.
        what: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// A field is well-framed but its value is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    pub(crate) fn invalid(what: &'static str, reason: impl std::fmt::Display) -> Self {
        DecodeError::Invalid {
            what,
            reason: reason.to_string(),
        }
    }
}

/// Appends fields to a buffer.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(tag: TypeTag) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC);
        buf.push(FORMAT_VERSION);
        buf.push(tag as u8);
        Writer { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn fixed(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub(crate) fn var(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("encoded fields are far below 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a byte slice, never panicking on bad input.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], tag: TypeTag) -> Result<Self, DecodeError> {
        let mut r = Reader {
            data,
            pos: 0,
            what: tag.name(),
        };
        let magic: [u8; 4] = r.array("magic")?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let found = r.u8("type byte")?;
        if found != tag as u8 {
            return Err(DecodeError::WrongType {
                expected: tag.name(),
                found,
            });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available,
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn var(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    pub(crate) fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.var(what, max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
    }

    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.u16(what)? as usize;
        if n > max {
            return Err(DecodeError::TooMany {
                what,
                count: n,
                max,
            });
        }
        Ok(n)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let count = self.data.len() - self.pos;
        if count != 0 {
            return Err(DecodeError::TrailingBytes {
                what: self.what,
                count,
            });
        }
        Ok(())
    }
}

/// A tagged hash as BIP340 defines it: `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ data…)`.
pub(crate) fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let tag_hash = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(tag_hash);
    h.update(tag_hash);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Largest CBOR value handed to the CGGMP21 deserializers (an aux-info round carries
/// ring-Pedersen and Paillier-Blum proofs of ~m = 128 big integers each).
pub const MAX_CBOR_LEN: usize = 4 * 1024 * 1024;

/// Serializes a CGGMP21 value (messages, key shares, presignatures) as CBOR.
pub(crate) fn to_cbor<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Deserializes a CGGMP21 value from CBOR, refusing trailing bytes.
pub(crate) fn from_cbor<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > MAX_CBOR_LEN {
        return Err(DecodeError::TooLong {
            what,
            len: bytes.len(),
            max: MAX_CBOR_LEN,
        });
    }
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader)
        .map_err(|e: ciborium::de::Error<std::io::Error>| DecodeError::invalid(what, e))?;
    if !reader.is_empty() {
        return Err(DecodeError::invalid(
            what,
            "trailing bytes after the CBOR value",
        ));
    }
    Ok(value)
}
