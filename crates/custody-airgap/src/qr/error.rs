//! The error type of the QR transport.

use std::error::Error as StdError;

/// Why a QR operation (encoding, rendering, reading an image, collecting frames) failed.
///
/// Every error a [`Collector`](super::Collector) returns leaves it as it was before the
/// refused frame, except [`QrError::MessageChecksum`], [`QrError::InvalidPadding`],
/// [`QrError::NotCborByteString`] and [`QrError::BbqrDecode`]: those mean a complete message
/// was assembled and turned out to be corrupt, so the collector starts over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// There was nothing to encode.
    #[error("payload is empty; nothing to encode")]
    EmptyPayload,

    /// A message is larger than [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN), either in fact
    /// (encoding) or as claimed by a frame (decoding).
    #[error("message of {size} bytes is larger than the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size in bytes, as found or as claimed.
        size: u64,
        /// The limit.
        max: usize,
    },

    /// A message would need, or a frame claims, more fountain fragments than
    /// [`MAX_UR_PARTS`](super::MAX_UR_PARTS).
    #[error("message of {count} parts has more than the maximum of {max} parts")]
    TooManyParts {
        /// Number of parts, as computed or as claimed.
        count: u64,
        /// The limit.
        max: usize,
    },

    /// A fragment length of zero was asked for.
    #[error("maximum fragment length must be at least 1 byte")]
    InvalidFragmentLen,

    /// A text line is longer than [`MAX_LINE_LEN`](super::MAX_LINE_LEN).
    #[error("frame of {len} bytes is longer than the maximum of {max} bytes")]
    LineTooLong {
        /// Length of the line in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A line is neither a UR (`ur:…`) nor a BBQr (`B$…`) frame.
    #[error(
        "not a UR or BBQr frame (starts with {start:?}); expected text starting with `ur:` or `B$`"
    )]
    UnrecognizedFrame {
        /// The first few characters of the line.
        start: String,
    },

    /// A UR frame does not follow the `ur:<type>/[<seq>-<count>/]<bytewords>` grammar, or its
    /// CBOR part is malformed.
    #[error("malformed UR frame: {reason}")]
    MalformedUr {
        /// What is wrong.
        reason: String,
    },

    /// The bytewords of a UR frame do not decode (not a valid word, odd length, non-ASCII).
    #[error("frame body is not valid minimal bytewords: {source}")]
    InvalidBytewords {
        /// The bytewords error from the `ur` crate.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The CRC32 carried in the last four bytewords of a frame does not match its body: the
    /// frame was misread or altered.
    #[error("frame failed its bytewords CRC32 check; it was misread or altered")]
    FrameChecksum,

    /// A UR frame of a type this crate does not carry.
    #[error(
        "unsupported UR type `{found}`; expected `crypto-psbt`, `psbt` or `coinport-envelope`"
    )]
    UnsupportedUrType {
        /// The type found in the frame (lower case).
        found: String,
    },

    /// A fountain part whose own header is inconsistent (for example a fragment count that
    /// does not match the message and fragment lengths).
    #[error("inconsistent UR part: {reason}")]
    InconsistentPart {
        /// What is inconsistent.
        reason: String,
    },

    /// A frame belongs to a different message than the frames collected so far (another UR
    /// message, another type, or UR and BBQr mixed). The frame was refused; the collected
    /// frames are kept.
    #[error("frame belongs to a different message: collecting {expected}, got {found}; finish or restart the scan")]
    MixedMessages {
        /// The message being collected.
        expected: String,
        /// The message the refused frame belongs to.
        found: String,
    },

    /// All fragments arrived but the reassembled message does not match the CRC32 its frames
    /// announced. The collector starts over.
    #[error("reassembled message fails its CRC32 check (expected {expected:08x}, found {found:08x}); the collector was reset")]
    MessageChecksum {
        /// Checksum announced by the frames.
        expected: u32,
        /// Checksum of the reassembled bytes.
        found: u32,
    },

    /// The reassembled message has non-zero bytes in the padding after its announced length.
    /// The collector starts over.
    #[error("reassembled message has non-zero padding; the collector was reset")]
    InvalidPadding,

    /// A UR message is not a single definite-length CBOR byte string, as `crypto-psbt` and
    /// `coinport-envelope` require. The collector starts over.
    #[error("message is not a single CBOR byte string: {reason}")]
    NotCborByteString {
        /// What was found instead.
        reason: String,
    },

    /// The collector has seen this many distinct frames of one message without completing it.
    #[error("{frames} distinct frames received without completing the message; restart the scan")]
    FrameLimit {
        /// Distinct frames received.
        frames: usize,
    },

    /// A BBQr frame that the `bbqr` crate refuses (bad header, index, encoding or duplicate
    /// with different content).
    #[error("invalid BBQr frame: {reason}")]
    InvalidBbqr {
        /// What is wrong.
        reason: String,
    },

    /// A BBQr file type this crate does not handle.
    #[error("unsupported BBQr file type `{found}`; expected P, T, J, C or U")]
    UnsupportedBbqrType {
        /// The file type character from the header.
        found: char,
    },

    /// All BBQr parts arrived but their payload does not decode (bad base32/hex, zlib
    /// error). The collector starts over.
    #[error("complete BBQr message does not decode: {reason}; the collector was reset")]
    BbqrDecode {
        /// What failed.
        reason: String,
    },

    /// BBQr splitting failed.
    #[error("cannot split payload into BBQr frames: {reason}")]
    BbqrEncode {
        /// Why the `bbqr` crate refused.
        reason: String,
    },

    /// The UR encoder refused its input.
    #[error("cannot encode UR: {reason}")]
    UrEncode {
        /// Why the `ur` crate refused.
        reason: String,
    },

    /// [`Collector::finish`](super::Collector::finish) was called before the message was
    /// complete.
    #[error("message incomplete: {percent}% after {frames_seen} frames; keep scanning")]
    Incomplete {
        /// Estimated progress.
        percent: u8,
        /// Distinct frames seen.
        frames_seen: usize,
    },

    /// Text that does not fit in a QR code (more than 4296 alphanumeric characters or 2953
    /// bytes at error correction L).
    #[error("text of {len} bytes does not fit in a QR code: {source}")]
    QrEncode {
        /// Length of the text in bytes.
        len: usize,
        /// The error from the `qrcode` crate.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A render parameter is out of range.
    #[error("invalid render parameter: {reason}")]
    InvalidRenderParameter {
        /// Which parameter and why.
        reason: String,
    },

    /// Writing a PNG or GIF failed (should not happen when writing to memory).
    #[error("cannot write {format} image: {source}")]
    ImageEncode {
        /// `PNG` or `GIF`.
        format: &'static str,
        /// The encoder's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The bytes are not a PNG, GIF or JPEG file.
    #[error("unsupported image format; expected PNG, GIF or JPEG")]
    UnsupportedImage,

    /// An image is larger than [`MAX_IMAGE_PIXELS`](super::MAX_IMAGE_PIXELS), or has a zero
    /// dimension.
    #[error(
        "image of {width}x{height} pixels is outside the accepted size (1 to {max_pixels} pixels)"
    )]
    ImageSize {
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// The limit.
        max_pixels: u64,
    },

    /// An image file is corrupt or uses a feature the decoder does not support.
    #[error("cannot decode {format} image: {reason}")]
    ImageDecode {
        /// `PNG`, `GIF` or `JPEG`.
        format: &'static str,
        /// The decoder's message.
        reason: String,
    },

    /// An image was decoded but contains no readable QR code.
    #[error("no readable QR code found in the image")]
    NoQrCode,
}

impl QrError {
    /// Whether the frame that caused this error belongs to another message: the caller may
    /// want to tell the user to stop showing the other code.
    #[must_use]
    pub fn is_mixed_message(&self) -> bool {
        matches!(self, Self::MixedMessages { .. })
    }
}
