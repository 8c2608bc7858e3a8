//! BC-UR frames: encoding with the `ur` crate, and strict parsing of scanned text.

use super::fountain::PartHeader;
use super::{Profile, QrError, MAX_LINE_LEN, MAX_MESSAGE_LEN, MAX_UR_PARTS};

/// What a UR carries; each kind has its own UR type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrKind {
    /// A PSBT ([BIP-174]/[BIP-371]) as `ur:crypto-psbt`: a CBOR byte string wrapping the PSBT
    /// bytes ([BCR-2020-006]). On input `ur:psbt`, the newer name of the same type, is
    /// accepted too.
    ///
    /// [BIP-174]: https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki
    /// [BIP-371]: https://github.com/bitcoin/bips/blob/master/bip-0371.mediawiki
    /// [BCR-2020-006]: https://github.com/BlockchainCommons/Research/blob/master/papers/bcr-2020-006-urtypes.md
    CryptoPsbt,
    /// A CoinPort air-gap envelope (`docs/formats/envelope.md`) as `ur:coinport-envelope`: a
    /// CBOR byte string wrapping the envelope bytes.
    Envelope,
}

impl UrKind {
    /// The UR type emitted for this kind (lower case, as registered; frames carry it upper
    /// case).
    #[must_use]
    pub const fn ur_type(self) -> &'static str {
        match self {
            UrKind::CryptoPsbt => "crypto-psbt",
            UrKind::Envelope => "coinport-envelope",
        }
    }

    /// The kind a UR type (lower case) stands for, if this crate carries it.
    pub(crate) fn from_ur_type(ur_type: &str) -> Option<Self> {
        match ur_type {
            "crypto-psbt" | "psbt" => Some(UrKind::CryptoPsbt),
            "coinport-envelope" => Some(UrKind::Envelope),
            _ => None,
        }
    }
}

impl std::fmt::Display for UrKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ur_type())
    }
}

/// Bytes of the CBOR head of a byte string of this length.
fn cbor_header_len(len: u64) -> u64 {
    match len {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Wraps bytes in a definite-length CBOR byte string (major type 2).
fn cbor_wrap(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = minicbor::Encoder::new(Vec::with_capacity(bytes.len() + 9));
    encoder
        .bytes(bytes)
        .expect("writing CBOR into a Vec cannot fail");
    encoder.into_writer()
}

/// Unwraps a message that must be exactly one definite-length CBOR byte string.
pub(crate) fn cbor_unwrap(message: &[u8]) -> Result<Vec<u8>, QrError> {
    let mut decoder = minicbor::Decoder::new(message);
    let bytes = decoder.bytes().map_err(|e| QrError::NotCborByteString {
        reason: e.to_string(),
    })?;
    if decoder.position() != message.len() {
        return Err(QrError::NotCborByteString {
            reason: format!(
                "{} bytes after the byte string",
                message.len() - decoder.position()
            ),
        });
    }
    Ok(bytes.to_vec())
}

/// Splits `bytes` into UR frames for one density profile.
///
/// The bytes are wrapped in a CBOR byte string and fountain-encoded by the `ur` crate with
/// [`Profile::max_fragment_len`]; every frame the returned encoder yields fits in a QR code
/// of [`Profile::qr_version`] at error correction L.
///
/// # Errors
///
/// [`QrError::EmptyPayload`] for no bytes; [`QrError::MessageTooLarge`] or
/// [`QrError::TooManyParts`] when the message exceeds [`MAX_MESSAGE_LEN`] or needs more than
/// [`MAX_UR_PARTS`] frames at this profile.
///
/// # Examples
///
/// ```
/// use custody_airgap::qr::{encode_ur, Profile, UrKind};
///
/// let mut encoder = encode_ur(UrKind::CryptoPsbt, &[0x70; 700], Profile::Normal)?;
/// assert_eq!(encoder.fragment_count(), 2);
/// assert!(encoder.next_part().starts_with("UR:CRYPTO-PSBT/1-2/"));
/// # Ok::<(), custody_airgap::qr::QrError>(())
/// ```
pub fn encode_ur(kind: UrKind, bytes: &[u8], profile: Profile) -> Result<UrEncoder, QrError> {
    UrEncoder::with_max_fragment_len(kind, bytes, profile.max_fragment_len(kind))
}

/// An endless source of UR frames for one message: first every fragment in order, then
/// fountain parts mixing several fragments, so a receiver that missed some frames completes
/// from whichever later frames it catches.
///
/// Frames are upper case, so QR alphanumeric mode applies. A message that fits in one
/// fragment is sent as a single-part UR (`UR:<TYPE>/<BYTEWORDS>`), repeated, as the reference
/// encoder does.
pub struct UrEncoder {
    kind: UrKind,
    inner: ::ur::Encoder<'static>,
    single_part: Option<String>,
    emitted: usize,
}

impl std::fmt::Debug for UrEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrEncoder")
            .field("kind", &self.kind)
            .field("fragment_count", &self.fragment_count())
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl UrEncoder {
    /// Like [`encode_ur`] with an explicit maximum fragment length instead of a profile (for
    /// other screens, and for checking the BC-UR test vectors).
    ///
    /// # Errors
    ///
    /// As [`encode_ur`], plus [`QrError::InvalidFragmentLen`] for a zero fragment length.
    pub fn with_max_fragment_len(
        kind: UrKind,
        bytes: &[u8],
        max_fragment_len: usize,
    ) -> Result<Self, QrError> {
        if bytes.is_empty() {
            return Err(QrError::EmptyPayload);
        }
        if max_fragment_len == 0 {
            return Err(QrError::InvalidFragmentLen);
        }
        // Check the wrapped size before copying anything.
        let wrapped_len = bytes.len() as u64 + cbor_header_len(bytes.len() as u64);
        if wrapped_len > MAX_MESSAGE_LEN as u64 {
            return Err(QrError::MessageTooLarge {
                size: wrapped_len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let cbor = cbor_wrap(bytes);
        let count = cbor.len().div_ceil(max_fragment_len);
        if count > MAX_UR_PARTS {
            return Err(QrError::TooManyParts {
                count: count as u64,
                max: MAX_UR_PARTS,
            });
        }
        let inner = ::ur::Encoder::new(&cbor, max_fragment_len, kind.ur_type()).map_err(|e| {
            QrError::UrEncode {
                reason: e.to_string(),
            }
        })?;
        let single_part =
            if inner.fragment_count() == 1 {
                let text = ::ur::ur::try_encode(&cbor, &::ur::Type::Custom(kind.ur_type()))
                    .map_err(|e| QrError::UrEncode {
                        reason: e.to_string(),
                    })?;
                Some(text.to_ascii_uppercase())
            } else {
                None
            };
        Ok(Self {
            kind,
            inner,
            single_part,
            emitted: 0,
        })
    }

    /// The next frame, upper case.
    pub fn next_part(&mut self) -> String {
        self.emitted += 1;
        if let Some(single) = &self.single_part {
            return single.clone();
        }
        self.inner
            .next_part()
            .expect("encoding a fountain part into a Vec cannot fail")
            .to_ascii_uppercase()
    }

    /// The next `n` frames.
    pub fn next_parts(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.next_part()).collect()
    }

    /// Number of fragments the message was split into: the fewest frames a receiver needs.
    #[must_use]
    pub fn fragment_count(&self) -> usize {
        self.inner.fragment_count()
    }

    /// Whether the message fits in one single-part UR.
    #[must_use]
    pub fn is_single_part(&self) -> bool {
        self.single_part.is_some()
    }

    /// Frames emitted so far.
    #[must_use]
    pub fn emitted(&self) -> usize {
        self.emitted
    }

    /// What this encoder carries.
    #[must_use]
    pub fn kind(&self) -> UrKind {
        self.kind
    }
}

/// One multi-part UR frame, parsed and checked.
#[derive(Debug, Clone)]
pub(crate) struct PartFrame {
    pub(crate) ur_type: String,
    pub(crate) kind: UrKind,
    pub(crate) seq: u32,
    pub(crate) header: PartHeader,
    pub(crate) data: Vec<u8>,
    /// The CBOR part, kept to let the `ur` crate compute the mixed fragments.
    cbor: Vec<u8>,
}

impl PartFrame {
    /// The fragments mixed into this part, chosen by the `ur` crate's Xoshiro256** sampler
    /// from the sequence number and checksum.
    pub(crate) fn fragment_indexes(&self) -> Result<Vec<usize>, QrError> {
        let part: ::ur::fountain::Part =
            minicbor::decode(&self.cbor).map_err(|e| QrError::MalformedUr {
                reason: format!("fountain part: {e}"),
            })?;
        Ok(part.indexes())
    }
}

/// A parsed UR frame.
#[derive(Debug, Clone)]
pub(crate) enum UrFrame {
    /// `ur:<type>/<bytewords>`: the whole message.
    Single {
        ur_type: String,
        kind: UrKind,
        message: Vec<u8>,
    },
    /// `ur:<type>/<seq>-<count>/<bytewords>`: one fountain part.
    Part(PartFrame),
}

fn malformed(reason: impl Into<String>) -> QrError {
    QrError::MalformedUr {
        reason: reason.into(),
    }
}

fn parse_decimal_u32(text: &str) -> Result<u32, QrError> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!(
            "sequence field {text:?} is not a number"
        )));
    }
    text.parse::<u32>()
        .map_err(|_| malformed(format!("sequence field {text:?} is out of range")))
}

/// Parses one UR text line (either case, no surrounding whitespace).
pub(crate) fn parse_ur_frame(line: &str) -> Result<UrFrame, QrError> {
    if line.len() > MAX_LINE_LEN {
        return Err(QrError::LineTooLong {
            len: line.len(),
            max: MAX_LINE_LEN,
        });
    }
    let lower = line.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("ur:")
        .ok_or_else(|| malformed("missing `ur:` scheme"))?;
    let (ur_type, rest) = rest
        .split_once('/')
        .ok_or_else(|| malformed("missing `/` after the type"))?;
    if ur_type.is_empty()
        || !ur_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(malformed(format!("invalid type {ur_type:?}")));
    }
    let kind = UrKind::from_ur_type(ur_type).ok_or_else(|| QrError::UnsupportedUrType {
        found: ur_type.to_owned(),
    })?;

    let (indices, body) = match rest.split_once('/') {
        None => (None, rest),
        Some((indices, body)) => (Some(indices), body),
    };
    if body.contains('/') {
        return Err(malformed("too many `/` separators"));
    }
    let payload =
        ::ur::bytewords::decode(body, ::ur::bytewords::Style::Minimal).map_err(|e| match e {
            ::ur::bytewords::Error::InvalidChecksum => QrError::FrameChecksum,
            other => QrError::InvalidBytewords {
                source: Box::new(other),
            },
        })?;

    let Some(indices) = indices else {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(QrError::MessageTooLarge {
                size: payload.len() as u64,
                max: MAX_MESSAGE_LEN,
            });
        }
        return Ok(UrFrame::Single {
            ur_type: ur_type.to_owned(),
            kind,
            message: payload,
        });
    };

    let (seq_text, count_text) = indices
        .split_once('-')
        .ok_or_else(|| malformed(format!("sequence {indices:?} is not <seq>-<count>")))?;
    let path_seq = parse_decimal_u32(seq_text)?;
    let path_count = parse_decimal_u32(count_text)?;

    let (seq, count, message_len, checksum, data) = decode_part_cbor(&payload)?;
    if seq != path_seq || count != path_count {
        return Err(malformed(format!(
            "sequence {path_seq}-{path_count} in the text does not match {seq}-{count} in the part"
        )));
    }
    let header = PartHeader::check(seq, count, message_len, checksum, data.len())?;
    Ok(UrFrame::Part(PartFrame {
        ur_type: ur_type.to_owned(),
        kind,
        seq,
        header,
        data,
        cbor: payload,
    }))
}

/// Decodes `[seq, count, message_len, checksum, bytes]`, refusing anything else (indefinite
/// lengths, other types, trailing bytes).
fn decode_part_cbor(cbor: &[u8]) -> Result<(u32, u32, u32, u32, Vec<u8>), QrError> {
    let fail = |e: minicbor::decode::Error| malformed(format!("fountain part: {e}"));
    let mut d = minicbor::Decoder::new(cbor);
    if d.array().map_err(fail)? != Some(5) {
        return Err(malformed("fountain part is not a 5-element array"));
    }
    let seq = d.u32().map_err(fail)?;
    let count = d.u32().map_err(fail)?;
    let message_len = d.u32().map_err(fail)?;
    let checksum = d.u32().map_err(fail)?;
    let data = d.bytes().map_err(fail)?.to_vec();
    if d.position() != cbor.len() {
        return Err(malformed("bytes after the fountain part"));
    }
    Ok((seq, count, message_len, checksum, data))
}

/// Builds the text of a multi-part frame around a raw CBOR part (fuzzing helper): the
/// sequence in the text is taken from the part when it parses.
pub(crate) fn frame_around_cbor(cbor: &[u8]) -> String {
    let (seq, count) = match decode_part_cbor(cbor) {
        Ok((seq, count, ..)) => (seq, count),
        Err(_) => (1, 1),
    };
    let body = ::ur::bytewords::encode(cbor, ::ur::bytewords::Style::Minimal);
    format!("ur:crypto-psbt/{seq}-{count}/{body}")
}
