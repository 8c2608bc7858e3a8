//! The binary framing of this crate's encodings (see `docs/formats/policy.md`).
//!
//! Same shape as `custody-threshold`'s codec (ADR 0004): magic `CPPL`, a format version
//! byte, a type byte, then fixed-order fields; integers big-endian; variable-length fields
//! carry a `u32` length with a per-field maximum checked before anything is allocated; no
//! trailing bytes.

use thiserror::Error;

/// The magic bytes that start every encoding of this crate.
pub const MAGIC: [u8; 4] = *b"CPPL";

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 2;

/// Type bytes, one per encoded type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum TypeTag {
    /// [`crate::PolicyDocument`].
    PolicyDocument = 0x01,
    /// [`crate::SignedPolicy`].
    SignedPolicy = 0x02,
    /// [`crate::Decision`].
    Decision = 0x03,
}

impl TypeTag {
    /// The human name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            TypeTag::PolicyDocument => "policy document",
            TypeTag::SignedPolicy => "signed policy",
            TypeTag::Decision => "decision",
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input does not start with `CPPL`.
    #[error("not a CoinPort policy encoding (bad magic)")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The type byte names another type.
    #[error("expected a {}, found type byte {found:#04x}", expected.name())]
    WrongType {
        /// The type the caller asked for.
        expected: TypeTag,
        /// The type byte found.
        found: u8,
    },
    /// The input ended inside a field.
    #[error("input ends inside field {what}")]
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// A length or count exceeds its maximum.
    #[error("{what} is {found} long, more than the maximum {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The maximum allowed.
        max: usize,
        /// The length found.
        found: usize,
    },
    /// A field has a value that is not allowed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes remain after the last field.
    #[error("{count} trailing bytes after the last field")]
    TrailingBytes {
        /// How many bytes remain.
        count: usize,
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

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn fixed(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Writes a `u32` length and the bytes. Callers keep `v` under the field maximum,
    /// which is far below `u32::MAX`.
    pub(crate) fn var(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v);
    }

    /// Writes a `u16` count. Callers keep counts under the field maximum.
    pub(crate) fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a buffer.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], tag: TypeTag) -> Result<Self, DecodeError> {
        let mut r = Reader { data };
        let magic = r.take(4, "magic").map_err(|_| DecodeError::BadMagic)?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let found = r.u8("type")?;
        if found != tag as u8 {
            return Err(DecodeError::WrongType {
                expected: tag,
                found,
            });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
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

    pub(crate) fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn var(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = u32::from_be_bytes(self.array(what)?) as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                what,
                max,
                found: len,
            });
        }
        self.take(len, what)
    }

    pub(crate) fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.var(what, max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::invalid(what, "not UTF-8"))
    }

    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(DecodeError::TooLong {
                what,
                max,
                found: n,
            });
        }
        Ok(n)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.data.len(),
            })
        }
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
