//! The camera channel: animated QR codes between the coordinator and the air-gapped signers.
//!
//! Two framings are supported, both made of upper-case text so that QR alphanumeric mode
//! applies (5.5 bits per character instead of 8):
//!
//! - **BC-UR** ([BCR-2020-005]) with fountain codes, via the [`ur`] crate. PSBTs travel as
//!   `ur:crypto-psbt` (a CBOR byte string wrapping the PSBT, [BCR-2020-006]) — the type
//!   Sparrow, Keystone, Passport, Jade and SeedSigner read and write; our signed envelopes
//!   travel as `ur:coinport-envelope` (also a CBOR byte string). See [`encode_ur`].
//! - **BBQr** (Coinkite's framing, the only one Coldcard reads), via the [`bbqr`]
//!   crate. See [`encode_bbqr`].
//!
//! A sender picks a density [`Profile`], asks for frames and renders each one with
//! [`render_terminal`], [`render_png`], [`render_svg`] or all of them at once with
//! [`render_gif`]. A receiver feeds whatever it scans — text lines from any scanner
//! (`zbarcam --raw`) or image files through [`decode_image`] — into a [`Collector`], in any
//! order, with duplicates and gaps, until [`Collector::is_complete`]; the message is only
//! returned after its CRC32 has been verified.
//!
//! Nothing here prints or touches the file system or network: renderers return bytes or
//! strings, the caller shows them.
//!
//! # Limits
//!
//! Every size a frame claims is checked against fixed limits *before* anything is allocated
//! for it: [`MAX_MESSAGE_LEN`], [`MAX_UR_PARTS`], [`MAX_LINE_LEN`] and [`MAX_IMAGE_PIXELS`].
//! The fountain decoder keeps at most [`MAX_PENDING_BYTES`] of not-yet-useful mixed parts, so
//! a collector never holds much more than three times the message size, whatever it is fed.
//!
//! The wire format, the profile table and worked examples are in `docs/formats/qr.md`.
//!
//! [BCR-2020-005]: https://github.com/BlockchainCommons/Research/blob/master/papers/bcr-2020-005-ur.md
//! [BCR-2020-006]: https://github.com/BlockchainCommons/Research/blob/master/papers/bcr-2020-006-urtypes.md

mod bbqr_frames;
mod collector;
mod error;
mod fountain;
mod fuzz;
mod image;
mod profile;
mod render;
mod ur_frames;

pub use bbqr_frames::{encode_bbqr, BbqrFileType};
pub use collector::{Collector, Decoded, FrameFormat, Progress};
pub use error::QrError;
pub use fuzz::{fuzz_bbqr_lines, fuzz_ur_lines};
pub use image::decode_image;
pub use profile::Profile;
pub use render::{qr_version_of, render_gif, render_png, render_svg, render_terminal, MAX_SCALE};
pub use ur_frames::{encode_ur, UrEncoder, UrKind};

/// Largest message (PSBT, envelope or BBQr file) a [`Collector`] accepts or an encoder
/// produces: 16 MiB.
///
/// For UR this is the length of the CBOR-wrapped payload that the fountain code carries.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

/// Largest number of fountain fragments a UR message may claim or be split into.
///
/// A real animation has tens to hundreds of frames; the limit keeps the cost of picking the
/// fragments mixed into one part (proportional to the fragment count) small.
pub const MAX_UR_PARTS: usize = 10_000;

/// Longest text line (one frame) accepted, in bytes: 64 KiB.
///
/// The largest QR code holds 4296 alphanumeric characters, so no scanned frame comes near
/// this; it bounds the work done for a single line.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Largest image, in pixels, that [`decode_image`] will decode (50 megapixels).
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;

/// Memory, in bytes, the fountain decoder may spend on mixed parts that cannot be reduced
/// yet; beyond it the oldest are dropped (more frames will replace them).
pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;
