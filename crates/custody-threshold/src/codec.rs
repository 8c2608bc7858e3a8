//! The binary framing shared by every type that crosses the air gap.
//!
//! Every encoding starts with the 4-byte magic `CPTH`, a format version byte and a type
//! byte, followed by the type's fields in a fixed order. Integers are big-endian; variable
//! length fields carry a `u32` length prefix and have a per-field maximum so a hostile
//! length can never make a reader allocate more than the input holds. The full layout of
//! each type is in `docs/formats/threshold.md`.

use thiserror::Error;

/// The magic bytes that start every encoding of this crate.
pub const MAGIC: [u8; 4] = *b"CPTH";

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// Type bytes, one per encoded type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum TypeTag {
    /// [`crate::IdentityCard`].
    IdentityCard = 0x01,
    /// [`crate::CeremonyPlan`].
    CeremonyPlan = 0x02,
    /// [`crate::CeremonyMessage`].
    CeremonyMessage = 0x03,
    /// [`crate::GroupKey`].
    GroupKey = 0x04,
    /// [`crate::CommitmentBatch`].
    CommitmentBatch = 0x05,
    /// [`crate::SigningRequest`].
    SigningRequest = 0x06,
    /// [`crate::SignatureShares`].
    SignatureShares = 0x07,
    /// [`crate::DkgCertificate`].
    DkgCertificate = 0x08,
    /// [`crate::KeyShare`] (secret; only for the keystore).
    KeyShare = 0x40,
    /// [`crate::Identity`] (secret; only for the keystore).
    Identity = 0x41,
}

impl TypeTag {
    /// The human name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            TypeTag::IdentityCard => "identity card",
            TypeTag::CeremonyPlan => "ceremony plan",
            TypeTag::CeremonyMessage => "ceremony message",
            TypeTag::GroupKey => "group key",
            TypeTag::CommitmentBatch => "commitment batch",
            TypeTag::SigningRequest => "signing request",
            TypeTag::SignatureShares => "signature shares",
            TypeTag::DkgCertificate => "DKG certificate",
            TypeTag::KeyShare => "key share",
            TypeTag::Identity => "identity",
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
    /// The input does not start with `CPTH`.
    #[error("not a CoinPort threshold encoding: magic is {found:02x?}, expected \"CPTH\"")]
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
    #[error("{what} is {count}, more than the maximum of {max}")]
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
    /// A field is well-framed but its value is invalid (a point not on the curve, a
    /// scalar out of range, an out-of-range index…).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// Builds an [`DecodeError::Invalid`].
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
    /// Starts an encoding of `tag` with magic and version.
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

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn fixed(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes a `u32` length prefix and the bytes.
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
    /// Checks magic, version and type, and positions the reader at the first field.
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

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a `u32`-length-prefixed field of at most `max` bytes.
    pub(crate) fn var(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    /// Reads a UTF-8 string field of at most `max` bytes.
    pub(crate) fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.var(what, max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
    }

    /// Reads a count and checks it against `max` before the caller allocates.
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

    /// Fails if any bytes remain.
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

/// Checks that a decoded curve point re-encodes to exactly the bytes it came from, so every
/// point has one encoding (the underlying decoder also accepts the SEC1 "compact" prefix
/// `05`).
pub(crate) fn canonical_point(
    what: &'static str,
    bytes: &[u8],
    reencoded: Option<Vec<u8>>,
) -> Result<(), DecodeError> {
    match reencoded {
        Some(r) if r == bytes => Ok(()),
        _ => Err(DecodeError::invalid(
            what,
            "not a compressed point (prefix must be 02 or 03)",
        )),
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
