//! Collecting scanned frames into one verified message.

use super::bbqr_frames::{parse_bbqr_frame, BbqrAssembly, BbqrFileType, BbqrHeader, BbqrReceive};
use super::fountain::{FountainDecoder, PartHeader, Receive};
use super::image::decode_image;
use super::ur_frames::{cbor_unwrap, parse_ur_frame, PartFrame, UrFrame, UrKind};
use super::{QrError, MAX_LINE_LEN};

/// Which framing and content a collector is receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameFormat {
    /// BC-UR frames of this kind.
    Ur(UrKind),
    /// BBQr frames of this file type.
    Bbqr(BbqrFileType),
}

/// A complete, verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decoded {
    /// The PSBT bytes from a `ur:crypto-psbt` (or `ur:psbt`), CBOR wrapping removed.
    Psbt(Vec<u8>),
    /// The envelope bytes from a `ur:coinport-envelope`, CBOR wrapping removed. Still to be
    /// verified as an envelope.
    Envelope(Vec<u8>),
    /// The file from BBQr frames.
    Bbqr {
        /// What the sender says the file is.
        file_type: BbqrFileType,
        /// The file's bytes, decompressed.
        data: Vec<u8>,
    },
}

impl Decoded {
    /// The message bytes, whatever the framing.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Decoded::Psbt(b) | Decoded::Envelope(b) => b,
            Decoded::Bbqr { data, .. } => data,
        }
    }

    /// The framing and content type the message arrived in.
    #[must_use]
    pub fn format(&self) -> FrameFormat {
        match self {
            Decoded::Psbt(_) => FrameFormat::Ur(UrKind::CryptoPsbt),
            Decoded::Envelope(_) => FrameFormat::Ur(UrKind::Envelope),
            Decoded::Bbqr { file_type, .. } => FrameFormat::Bbqr(*file_type),
        }
    }
}

/// How far a [`Collector`] is, for showing to the person holding the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The framing being collected, once a frame has been accepted.
    pub format: Option<FrameFormat>,
    /// Distinct frames accepted so far.
    pub frames_seen: usize,
    /// Fragments (UR) or parts (BBQr) the message has, once known.
    pub parts_total: Option<usize>,
    /// Fragments known (received or solved from mixed parts) or parts received.
    pub parts_done: usize,
    /// Estimated percentage, 0 to 99 while incomplete, 100 only once the message is
    /// complete and verified.
    pub percent: u8,
    /// Whether the message is complete and verified.
    pub complete: bool,
    /// Whether the frame just pushed was new (false for a repeat or a blank line).
    pub new_frame: bool,
}

/// What identifies one message, so that frames of another can be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MessageId {
    Ur { ur_type: String, header: PartHeader },
    UrSingle { ur_type: String, message: Vec<u8> },
    Bbqr(BbqrHeader),
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageId::Ur { ur_type, header } => write!(
                f,
                "ur:{ur_type} of {} bytes in {} fragments (crc32 {:08x})",
                header.message_len, header.count, header.checksum
            ),
            MessageId::UrSingle { ur_type, message } => write!(
                f,
                "single-part ur:{ur_type} of {} bytes (crc32 {:08x})",
                message.len(),
                super::fountain::crc32(message)
            ),
            MessageId::Bbqr(header) => write!(f, "{header}"),
        }
    }
}

enum State {
    Empty,
    Ur {
        ur_type: String,
        kind: UrKind,
        decoder: Box<FountainDecoder>,
    },
    Bbqr(Box<BbqrAssembly>),
    Complete {
        id: MessageId,
        decoded: Decoded,
        frames_seen: usize,
        parts_total: usize,
    },
}

/// Collects frames — text lines from any scanner or images — into one verified message.
///
/// Frames may come in any order, repeated, with gaps. UR fountain parts beyond the first
/// pass fill the gaps; BBQr needs every part. The first accepted frame fixes the message:
/// a frame of another message (another UR, another type, UR after BBQr) is refused with
/// [`QrError::MixedMessages`] and changes nothing. Refused frames of any kind leave the
/// collector as it was, so a caller reading a camera can report the error and go on.
///
/// The message is returned only after its checksum has been verified (the CRC32 of the
/// reassembled UR message; for BBQr, the zlib checksum when compressed — plain BBQr has no
/// checksum of its own, so check what it carries, e.g. a PSBT's signatures).
///
/// # Examples
///
/// ```
/// use custody_airgap::qr::{encode_ur, Collector, Decoded, Profile, UrKind};
///
/// let psbt = vec![0x5a; 2000];
/// let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Normal)?;
/// let mut collector = Collector::new();
/// let mut index = 0;
/// while !collector.is_complete() {
///     let frame = encoder.next_part();
///     index += 1;
///     if index % 3 == 0 {
///         continue; // the camera missed this one
///     }
///     let progress = collector.push_line(&frame)?;
///     assert!(progress.percent <= 100);
/// }
/// assert_eq!(collector.finish()?, Decoded::Psbt(psbt));
/// # Ok::<(), custody_airgap::qr::QrError>(())
/// ```
pub struct Collector {
    state: State,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("progress", &self.progress())
            .finish()
    }
}

/// Strips what scanners add around the code's text: whitespace, and the `QR-Code:` prefix
/// `zbarimg`/`zbarcam` print without `--raw`.
fn clean_line(line: &str) -> &str {
    let line = line.trim();
    match line.get(..8) {
        Some(prefix) if prefix.eq_ignore_ascii_case("qr-code:") => line[8..].trim(),
        _ => line,
    }
}

fn line_start(line: &str) -> String {
    line.chars().take(12).collect()
}

impl Collector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Empty,
        }
    }

    /// Feeds one scanned text line: a UR (`ur:…`, either case) or BBQr (`B$…`) frame.
    /// Surrounding whitespace and a `QR-Code:` prefix are ignored; a blank line changes
    /// nothing.
    ///
    /// Once the message is complete, further frames of the same message are ignored.
    ///
    /// # Errors
    ///
    /// Any [`QrError`] describing why the frame was refused (malformed, failed its
    /// checksum, another message, over a limit). The collector is unchanged, except for
    /// the errors that mean a complete message turned out corrupt
    /// ([`QrError::MessageChecksum`], [`QrError::InvalidPadding`],
    /// [`QrError::NotCborByteString`], [`QrError::BbqrDecode`]), after which it is empty.
    pub fn push_line(&mut self, line: &str) -> Result<Progress, QrError> {
        if line.len() > MAX_LINE_LEN {
            return Err(QrError::LineTooLong {
                len: line.len(),
                max: MAX_LINE_LEN,
            });
        }
        let line = clean_line(line);
        if line.is_empty() {
            return Ok(self.progress());
        }
        let is_ur = line.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ur:"));
        let is_bbqr = line.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("b$"));
        if is_ur {
            self.push_ur(line)
        } else if is_bbqr {
            self.push_bbqr(line)
        } else {
            Err(QrError::UnrecognizedFrame {
                start: line_start(line),
            })
        }
    }

    /// Decodes every QR code in an image (PNG, GIF — every frame — or JPEG) and feeds their
    /// text to [`Collector::push_line`] in order.
    ///
    /// # Errors
    ///
    /// The image errors of [`decode_image`](super::decode_image), or the first error
    /// [`Collector::push_line`] returns; frames before it have been applied.
    pub fn push_image(&mut self, bytes: &[u8]) -> Result<Progress, QrError> {
        let texts = decode_image(bytes)?;
        let mut new_frame = false;
        for text in &texts {
            new_frame |= self.push_line(text)?.new_frame;
        }
        let mut progress = self.progress();
        progress.new_frame = new_frame;
        Ok(progress)
    }

    /// Whether the message is complete and verified; [`Collector::finish`] will return it.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete { .. })
    }

    /// The current progress.
    #[must_use]
    pub fn progress(&self) -> Progress {
        match &self.state {
            State::Empty => Progress {
                format: None,
                frames_seen: 0,
                parts_total: None,
                parts_done: 0,
                percent: 0,
                complete: false,
                new_frame: false,
            },
            State::Ur { kind, decoder, .. } => {
                let total = decoder.header().count;
                let resolved = decoder.resolved();
                // Solved fragments understate progress when mixed parts are waiting; the
                // reference decoder estimates completion at about 1.75 frames per fragment.
                let by_resolved = resolved * 100 / total;
                let by_frames = decoder.frames() * 100 * 4 / (total * 7);
                Progress {
                    format: Some(FrameFormat::Ur(*kind)),
                    frames_seen: decoder.frames(),
                    parts_total: Some(total),
                    parts_done: resolved,
                    percent: percent(by_resolved.max(by_frames)),
                    complete: false,
                    new_frame: false,
                }
            }
            State::Bbqr(assembly) => {
                let header = assembly.header();
                let done = assembly.received_count();
                Progress {
                    format: Some(FrameFormat::Bbqr(header.file_type)),
                    frames_seen: done,
                    parts_total: Some(header.num_parts),
                    parts_done: done,
                    percent: percent(done * 100 / header.num_parts),
                    complete: false,
                    new_frame: false,
                }
            }
            State::Complete {
                decoded,
                frames_seen,
                parts_total,
                ..
            } => Progress {
                format: Some(decoded.format()),
                frames_seen: *frames_seen,
                parts_total: Some(*parts_total),
                parts_done: *parts_total,
                percent: 100,
                complete: true,
                new_frame: false,
            },
        }
    }

    /// Returns the verified message.
    ///
    /// # Errors
    ///
    /// [`QrError::Incomplete`] if the message is not complete yet.
    pub fn finish(self) -> Result<Decoded, QrError> {
        let progress = self.progress();
        match self.state {
            State::Complete { decoded, .. } => Ok(decoded),
            _ => Err(QrError::Incomplete {
                percent: progress.percent,
                frames_seen: progress.frames_seen,
            }),
        }
    }

    /// Refuses a frame of another message, or ignores a repeat after completion.
    fn check_complete(&self, found: &MessageId) -> Result<Option<Progress>, QrError> {
        if let State::Complete { id, .. } = &self.state {
            if id == found {
                return Ok(Some(self.progress()));
            }
            return Err(QrError::MixedMessages {
                expected: id.to_string(),
                found: found.to_string(),
            });
        }
        Ok(None)
    }

    fn current_id(&self) -> Option<MessageId> {
        match &self.state {
            State::Empty => None,
            State::Ur {
                ur_type, decoder, ..
            } => Some(MessageId::Ur {
                ur_type: ur_type.clone(),
                header: *decoder.header(),
            }),
            State::Bbqr(a) => Some(MessageId::Bbqr(a.header())),
            State::Complete { id, .. } => Some(id.clone()),
        }
    }

    fn mixed(&self, found: &MessageId) -> QrError {
        QrError::MixedMessages {
            expected: self
                .current_id()
                .map_or_else(|| "nothing".to_owned(), |id| id.to_string()),
            found: found.to_string(),
        }
    }

    fn push_ur(&mut self, line: &str) -> Result<Progress, QrError> {
        match parse_ur_frame(line)? {
            UrFrame::Single {
                ur_type,
                kind,
                message,
            } => {
                let id = MessageId::UrSingle {
                    ur_type,
                    message: message.clone(),
                };
                if let Some(progress) = self.check_complete(&id)? {
                    return Ok(progress);
                }
                if !matches!(self.state, State::Empty) {
                    return Err(self.mixed(&id));
                }
                let decoded = ur_decoded(kind, cbor_unwrap(&message)?);
                self.state = State::Complete {
                    id,
                    decoded,
                    frames_seen: 1,
                    parts_total: 1,
                };
                Ok(self.progress_new())
            }
            UrFrame::Part(part) => self.push_ur_part(part),
        }
    }

    fn push_ur_part(&mut self, part: PartFrame) -> Result<Progress, QrError> {
        let id = MessageId::Ur {
            ur_type: part.ur_type.clone(),
            header: part.header,
        };
        if let Some(progress) = self.check_complete(&id)? {
            return Ok(progress);
        }
        let same_message = match &self.state {
            State::Empty => true,
            State::Ur {
                ur_type, decoder, ..
            } => *ur_type == part.ur_type && *decoder.header() == part.header,
            _ => false,
        };
        if !same_message {
            return Err(self.mixed(&id));
        }
        if matches!(self.state, State::Empty) {
            self.state = State::Ur {
                ur_type: part.ur_type.clone(),
                kind: part.kind,
                decoder: Box::new(FountainDecoder::new(part.header)),
            };
        }
        let State::Ur { kind, decoder, .. } = &mut self.state else {
            return Err(self.mixed(&id));
        };
        let kind = *kind;
        let was_empty = decoder.frames() == 0;
        let received = match decoder.receive(&part) {
            Ok(r) => r,
            Err(e) => {
                if was_empty {
                    self.state = State::Empty;
                }
                return Err(e);
            }
        };
        if received == Receive::Duplicate {
            return Ok(self.progress());
        }
        if !decoder.is_complete() {
            return Ok(self.progress_new());
        }
        let frames_seen = decoder.frames();
        let parts_total = decoder.header().count;
        let message = decoder.message().and_then(|m| cbor_unwrap(&m));
        match message {
            Ok(bytes) => {
                self.state = State::Complete {
                    id,
                    decoded: ur_decoded(kind, bytes),
                    frames_seen,
                    parts_total,
                };
                Ok(self.progress_new())
            }
            Err(e) => {
                self.state = State::Empty;
                Err(e)
            }
        }
    }

    fn push_bbqr(&mut self, line: &str) -> Result<Progress, QrError> {
        let frame = parse_bbqr_frame(line)?;
        let id = MessageId::Bbqr(frame.header);
        if let Some(progress) = self.check_complete(&id)? {
            return Ok(progress);
        }
        let same_message = match &self.state {
            State::Empty => true,
            State::Bbqr(a) => a.header() == frame.header,
            _ => false,
        };
        if !same_message {
            return Err(self.mixed(&id));
        }
        if matches!(self.state, State::Empty) {
            self.state = State::Bbqr(Box::new(BbqrAssembly::new(frame.header)));
        }
        let State::Bbqr(assembly) = &mut self.state else {
            return Err(self.mixed(&id));
        };
        let was_empty = assembly.received_count() == 0;
        let file_type = frame.header.file_type;
        match assembly.receive(frame) {
            Ok(BbqrReceive::Duplicate) => Ok(self.progress()),
            Ok(BbqrReceive::InProgress) => Ok(self.progress_new()),
            Ok(BbqrReceive::Complete(data)) => {
                let parts_total = assembly.header().num_parts;
                self.state = State::Complete {
                    id,
                    decoded: Decoded::Bbqr { file_type, data },
                    frames_seen: parts_total,
                    parts_total,
                };
                Ok(self.progress_new())
            }
            Err(e) => {
                if was_empty || matches!(e, QrError::BbqrDecode { .. }) {
                    self.state = State::Empty;
                }
                Err(e)
            }
        }
    }

    fn progress_new(&self) -> Progress {
        let mut progress = self.progress();
        progress.new_frame = true;
        progress
    }
}

fn ur_decoded(kind: UrKind, bytes: Vec<u8>) -> Decoded {
    match kind {
        UrKind::CryptoPsbt => Decoded::Psbt(bytes),
        UrKind::Envelope => Decoded::Envelope(bytes),
    }
}

fn percent(value: usize) -> u8 {
    u8::try_from(value.min(99)).unwrap_or(99)
}
