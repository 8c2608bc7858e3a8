//! BBQr frames ([spec](https://github.com/coinkite/BBQr/blob/master/BBQr.md)) through the
//! `bbqr` crate, with our own limits and mixed-message checks in front of its joiner.

use ::bbqr::continuous_join::{ContinuousJoinError, ContinuousJoinResult, ContinuousJoiner};
use ::bbqr::encode::Encoding;
use ::bbqr::file_type::FileType;
use ::bbqr::join::JoinError;
use ::bbqr::split::{Split, SplitOptions};

use super::{Profile, QrError, MAX_LINE_LEN, MAX_MESSAGE_LEN};

/// The BBQr file types this crate sends and accepts (the header's fourth character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BbqrFileType {
    /// `P`: a binary PSBT.
    Psbt,
    /// `T`: a binary signed transaction.
    Transaction,
    /// `J`: JSON.
    Json,
    /// `C`: CBOR.
    Cbor,
    /// `U`: UTF-8 text.
    UnicodeText,
}

impl BbqrFileType {
    fn to_bbqr(self) -> FileType {
        match self {
            BbqrFileType::Psbt => FileType::Psbt,
            BbqrFileType::Transaction => FileType::Transaction,
            BbqrFileType::Json => FileType::Json,
            BbqrFileType::Cbor => FileType::Cbor,
            BbqrFileType::UnicodeText => FileType::UnicodeText,
        }
    }

    fn from_header_char(c: u8) -> Result<Self, QrError> {
        match c {
            b'P' => Ok(BbqrFileType::Psbt),
            b'T' => Ok(BbqrFileType::Transaction),
            b'J' => Ok(BbqrFileType::Json),
            b'C' => Ok(BbqrFileType::Cbor),
            b'U' => Ok(BbqrFileType::UnicodeText),
            other => Err(QrError::UnsupportedBbqrType {
                found: char::from(other),
            }),
        }
    }

    /// The header character (`P`, `T`, `J`, `C`, `U`).
    #[must_use]
    pub fn header_char(self) -> char {
        char::from(self.to_bbqr().as_byte())
    }
}

/// Splits `bytes` into BBQr frames (Coldcard's animated-QR framing) for one density profile.
///
/// The data is zlib-compressed when that makes it smaller (encoding `Z`, else base32 `2`)
/// and split into the fewest frames whose QR version is at most [`Profile::qr_version`]
/// (error correction L, alphanumeric mode); all frames use the same version. Unlike UR,
/// BBQr has no fountain code: the receiver needs every frame, so show them in a loop.
///
/// # Errors
///
/// [`QrError::EmptyPayload`] for no bytes, [`QrError::MessageTooLarge`] beyond
/// [`MAX_MESSAGE_LEN`], [`QrError::BbqrEncode`] if the data needs more than 1295 frames.
///
/// # Examples
///
/// ```
/// use custody_airgap::qr::{encode_bbqr, BbqrFileType, Profile};
///
/// let frames = encode_bbqr(BbqrFileType::Psbt, b"psbt\xff example", Profile::Normal)?;
/// assert!(frames[0].starts_with("B$"));
/// # Ok::<(), custody_airgap::qr::QrError>(())
/// ```
pub fn encode_bbqr(
    file_type: BbqrFileType,
    bytes: &[u8],
    profile: Profile,
) -> Result<Vec<String>, QrError> {
    if bytes.is_empty() {
        return Err(QrError::EmptyPayload);
    }
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(QrError::MessageTooLarge {
            size: bytes.len() as u64,
            max: MAX_MESSAGE_LEN,
        });
    }
    let max_version =
        ::bbqr::qr::Version::try_from(usize::from(profile.qr_version())).map_err(|e| {
            QrError::BbqrEncode {
                reason: e.to_string(),
            }
        })?;
    let options = SplitOptions {
        encoding: Encoding::Zlib,
        min_split_number: 1,
        max_split_number: 1295,
        min_version: ::bbqr::qr::Version::V01,
        max_version,
    };
    let split = Split::try_from_data(bytes, file_type.to_bbqr(), options).map_err(|e| {
        QrError::BbqrEncode {
            reason: e.to_string(),
        }
    })?;
    Ok(split.parts)
}

/// The parts of a BBQr header that must agree across frames of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BbqrHeader {
    pub(crate) encoding: u8,
    pub(crate) file_type: BbqrFileType,
    pub(crate) num_parts: usize,
}

impl std::fmt::Display for BbqrHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BBQr {}/{} in {} parts",
            char::from(self.encoding),
            self.file_type.header_char(),
            self.num_parts
        )
    }
}

fn base36_pair(text: &[u8]) -> Option<usize> {
    let mut value = 0;
    for &c in text {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        value = value * 36 + usize::from(digit);
    }
    Some(value)
}

/// One BBQr frame, checked: header, index and a non-empty payload.
pub(crate) struct BbqrFrame {
    pub(crate) header: BbqrHeader,
    pub(crate) index: usize,
    /// The whole line, upper case.
    pub(crate) text: String,
}

impl BbqrFrame {
    pub(crate) fn payload_len(&self) -> usize {
        self.text.len() - 8
    }
}

/// Parses a BBQr line (`B$` + encoding + file type + 2 base-36 digits of part count + 2 of
/// index + payload).
pub(crate) fn parse_bbqr_frame(line: &str) -> Result<BbqrFrame, QrError> {
    if line.len() > MAX_LINE_LEN {
        return Err(QrError::LineTooLong {
            len: line.len(),
            max: MAX_LINE_LEN,
        });
    }
    let text = line.to_ascii_uppercase();
    let b = text.as_bytes();
    let invalid = |reason: &str| QrError::InvalidBbqr {
        reason: reason.to_owned(),
    };
    if !text.is_ascii() || b.len() < 8 || &b[..2] != b"B$" {
        return Err(invalid("expected `B$` and a 6-character header"));
    }
    if Encoding::from_byte(b[2]).is_none() {
        return Err(invalid("unknown encoding (expected H, 2 or Z)"));
    }
    let file_type = BbqrFileType::from_header_char(b[3])?;
    let num_parts = base36_pair(&b[4..6]).ok_or_else(|| invalid("part count is not base 36"))?;
    let index = base36_pair(&b[6..8]).ok_or_else(|| invalid("part index is not base 36"))?;
    if num_parts == 0 {
        return Err(invalid("part count is 0"));
    }
    if index >= num_parts {
        return Err(QrError::InvalidBbqr {
            reason: format!("part index {index} but only {num_parts} parts"),
        });
    }
    if b.len() == 8 {
        return Err(invalid("frame has no payload"));
    }
    Ok(BbqrFrame {
        header: BbqrHeader {
            encoding: b[2],
            file_type,
            num_parts,
        },
        index,
        text,
    })
}

/// Most payload characters a BBQr message may have so that it cannot decode to more than
/// [`MAX_MESSAGE_LEN`] bytes (hex: 2 characters a byte; base32: 8 per 5 bytes; zlib output
/// is capped separately by the `bbqr` crate at the same limit).
fn max_payload_chars(encoding: u8) -> usize {
    if encoding == b'H' {
        2 * MAX_MESSAGE_LEN
    } else {
        MAX_MESSAGE_LEN / 5 * 8 + 8
    }
}

/// What a BBQr frame contributed.
pub(crate) enum BbqrReceive {
    Duplicate,
    InProgress,
    Complete(Vec<u8>),
}

/// Joins the frames of one BBQr message.
pub(crate) struct BbqrAssembly {
    header: BbqrHeader,
    joiner: ContinuousJoiner,
    received: Vec<bool>,
    received_count: usize,
    payload_chars: usize,
}

impl BbqrAssembly {
    pub(crate) fn new(header: BbqrHeader) -> Self {
        Self {
            header,
            joiner: ContinuousJoiner::new(),
            received: vec![false; header.num_parts],
            received_count: 0,
            payload_chars: 0,
        }
    }

    pub(crate) fn header(&self) -> BbqrHeader {
        self.header
    }

    pub(crate) fn received_count(&self) -> usize {
        self.received_count
    }

    /// Feeds a frame whose header equals this assembly's.
    ///
    /// A complete message that fails to decode is reported as [`QrError::BbqrDecode`]; the
    /// caller discards the assembly.
    pub(crate) fn receive(&mut self, frame: BbqrFrame) -> Result<BbqrReceive, QrError> {
        debug_assert_eq!(frame.header, self.header);
        let seen = self.received.get(frame.index).copied().unwrap_or(true);
        if !seen {
            let total = self.payload_chars + frame.payload_len();
            if total > max_payload_chars(self.header.encoding) {
                return Err(QrError::MessageTooLarge {
                    size: total as u64,
                    max: max_payload_chars(self.header.encoding),
                });
            }
        }
        let index = frame.index;
        let payload_len = frame.payload_len();
        let result = self.joiner.add_part(frame.text).map_err(|e| {
            let reason = e.to_string();
            if matches!(
                e,
                ContinuousJoinError::JoinError(JoinError::DuplicatePartWrongContent(_))
            ) {
                QrError::MixedMessages {
                    expected: format!("{}", self.header),
                    found: format!("a different part {index} with the same header"),
                }
            } else if self.received_count + usize::from(!seen) == self.header.num_parts {
                QrError::BbqrDecode { reason }
            } else {
                QrError::InvalidBbqr { reason }
            }
        })?;
        if seen {
            return Ok(BbqrReceive::Duplicate);
        }
        if let Some(slot) = self.received.get_mut(index) {
            *slot = true;
        }
        self.received_count += 1;
        self.payload_chars += payload_len;
        match result {
            ContinuousJoinResult::Complete(joined) => {
                if joined.data.len() > MAX_MESSAGE_LEN {
                    return Err(QrError::BbqrDecode {
                        reason: format!(
                            "decoded {} bytes, more than the maximum of {MAX_MESSAGE_LEN}",
                            joined.data.len()
                        ),
                    });
                }
                Ok(BbqrReceive::Complete(joined.data))
            }
            ContinuousJoinResult::InProgress { .. } | ContinuousJoinResult::NotStarted => {
                Ok(BbqrReceive::InProgress)
            }
        }
    }
}
