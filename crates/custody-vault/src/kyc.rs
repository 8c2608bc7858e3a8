//! The KYC record the coordinator keeps per user, and its sealed form.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::blob::{Purpose, SealedBlob};
use crate::envelope::{OpenError, SealError};
use crate::keys::VaultKeys;

/// Longest text field, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;
/// Most document images per record.
pub const MAX_IMAGES: usize = 4;
/// Largest document image, in bytes (5 MiB).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Longest image media type (`image/jpeg`), in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 64;
/// Schema version of the serialised record; the first plaintext byte.
const KYC_SCHEMA: u8 = 1;

/// The kind of identity document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DocumentType {
    /// A passport.
    Passport,
    /// A national identity card.
    IdentityCard,
    /// A driving licence.
    DrivingLicence,
    /// A residence permit.
    ResidencePermit,
}

/// One scanned page or photo of the identity document.
#[derive(PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct DocumentImage {
    /// Its media type, such as `image/jpeg`.
    pub media_type: String,
    /// The image bytes, at most [`MAX_IMAGE_BYTES`].
    #[serde(with = "bytes_field")]
    pub bytes: Vec<u8>,
}

impl fmt::Debug for DocumentImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DocumentImage(<redacted>)")
    }
}

/// A user's KYC data. Zeroized on drop; `Debug` shows nothing personal; no `Display`.
///
/// Sealed with [`VaultKeys::seal_kyc`]: the fields are serialised with postcard (a
/// stable, documented encoding) after a schema byte, so adding a field is a new schema
/// version.
#[derive(PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct KycRecord {
    /// Full name as on the document.
    pub full_name: String,
    /// Date of birth, ISO 8601 `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Postal address, lines separated by `\n`.
    pub address: String,
    /// Nationality, ISO 3166-1 alpha-2 (`DE`).
    pub nationality: String,
    /// The document's kind.
    #[zeroize(skip)]
    pub document_type: DocumentType,
    /// The document number as printed.
    pub document_number: String,
    /// Scans of the document, at most [`MAX_IMAGES`].
    pub document_images: Vec<DocumentImage>,
}

impl fmt::Debug for KycRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KycRecord(<redacted>)")
    }
}

/// Which rule a [`KycRecord`] breaks. Names the field, never its value.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KycError {
    /// A text field is longer than [`MAX_TEXT_LEN`] (or an image media type longer than
    /// [`MAX_MEDIA_TYPE_LEN`]).
    #[error("kyc field {field} is {len} bytes, more than {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_IMAGES`] images.
    #[error("kyc record has {count} document images, more than {MAX_IMAGES}")]
    TooManyImages {
        /// How many.
        count: usize,
    },
    /// An image larger than [`MAX_IMAGE_BYTES`].
    #[error("kyc document image {index} is {len} bytes, more than {MAX_IMAGE_BYTES}")]
    ImageTooLarge {
        /// Its position.
        index: usize,
        /// Its size.
        len: usize,
    },
    /// The date of birth is not `YYYY-MM-DD`.
    #[error("kyc date of birth is not YYYY-MM-DD")]
    DateOfBirth,
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    matches!(
        (digits(0..4), digits(5..7), digits(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

impl KycRecord {
    /// Checks the size and format rules (also run by [`VaultKeys::seal_kyc`]).
    ///
    /// # Errors
    /// The first [`KycError`] found.
    pub fn validate(&self) -> Result<(), KycError> {
        for (field, value) in [
            ("full_name", &self.full_name),
            ("date_of_birth", &self.date_of_birth),
            ("address", &self.address),
            ("nationality", &self.nationality),
            ("document_number", &self.document_number),
        ] {
            if value.len() > MAX_TEXT_LEN {
                return Err(KycError::TooLong {
                    field,
                    len: value.len(),
                    max: MAX_TEXT_LEN,
                });
            }
        }
        if !valid_date(&self.date_of_birth) {
            return Err(KycError::DateOfBirth);
        }
        if self.document_images.len() > MAX_IMAGES {
            return Err(KycError::TooManyImages {
                count: self.document_images.len(),
            });
        }
        for (index, image) in self.document_images.iter().enumerate() {
            if image.media_type.len() > MAX_MEDIA_TYPE_LEN {
                return Err(KycError::TooLong {
                    field: "media_type",
                    len: image.media_type.len(),
                    max: MAX_MEDIA_TYPE_LEN,
                });
            }
            if image.bytes.len() > MAX_IMAGE_BYTES {
                return Err(KycError::ImageTooLarge {
                    index,
                    len: image.bytes.len(),
                });
            }
        }
        Ok(())
    }

    /// An upper bound of the serialised size, so the buffer never reallocates (which
    /// would leave copies of personal data in freed memory).
    fn size_bound(&self) -> usize {
        let text = self.full_name.len()
            + self.date_of_birth.len()
            + self.address.len()
            + self.nationality.len()
            + self.document_number.len();
        let images: usize = self
            .document_images
            .iter()
            .map(|i| i.media_type.len() + i.bytes.len() + 20)
            .sum();
        1 + text + 5 * 10 + 10 + images + 10
    }
}

impl VaultKeys {
    /// Validates and seals a KYC record for `record_id` ([`Purpose::KycRecord`]).
    ///
    /// # Errors
    /// [`SealError::Kyc`] if a rule is broken, otherwise as [`VaultKeys::seal`].
    pub fn seal_kyc(&self, record_id: &[u8], record: &KycRecord) -> Result<SealedBlob, SealError> {
        record.validate()?;
        let mut buf = Zeroizing::new(Vec::with_capacity(record.size_bound()));
        buf.push(KYC_SCHEMA);
        let buf = postcard::to_extend(record, std::mem::take(&mut *buf))
            .map(Zeroizing::new)
            .map_err(|_| SealError::Serialise)?;
        self.seal(Purpose::KycRecord, record_id, &buf)
    }

    /// Opens a sealed KYC record.
    ///
    /// # Errors
    /// As [`VaultKeys::open`], or [`OpenError::Decode`] if the plaintext is not a KYC
    /// record of a known schema.
    pub fn open_kyc(&self, record_id: &[u8], blob: &SealedBlob) -> Result<KycRecord, OpenError> {
        let plain = self.open(Purpose::KycRecord, record_id, blob)?;
        let decode = OpenError::Decode {
            purpose: Purpose::KycRecord,
        };
        match plain.split_first() {
            Some((&KYC_SCHEMA, rest)) => match postcard::take_from_bytes(rest) {
                Ok((record, [])) => Ok(record),
                _ => Err(decode),
            },
            _ => Err(decode),
        }
    }
}

/// Serialises `Vec<u8>` as one byte string (postcard: varint length and raw bytes)
/// rather than a sequence of separately visited `u8`s.
mod bytes_field {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}
