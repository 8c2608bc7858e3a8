//! Entry points for the fuzz targets in `fuzz/`.
//!
//! Each takes arbitrary bytes, drives a [`Collector`] with them, and asserts the round trip
//! of anything it accepts. They return nothing and must never panic except on such an
//! assertion, which would be a bug.

use super::{encode_bbqr, Collector, Decoded, Profile, QrError, UrEncoder, UrKind};

/// Fuzz entry point for UR reassembly.
///
/// `data` is split at `\n`. A chunk that starts with `ur:` (either case) is fed to a
/// [`Collector`] as a text line; any other chunk is taken as the raw CBOR of a fountain
/// part, wrapped into a `ur:crypto-psbt` frame with a valid bytewords checksum (so the
/// fuzzer reaches the fountain decoder instead of stopping at the CRC), and fed too.
///
/// # Panics
///
/// Only if a message the collector accepted does not survive re-encoding and collecting
/// again — a bug.
pub fn fuzz_ur_lines(data: &[u8]) {
    let mut collector = Collector::new();
    for chunk in data.split(|&b| b == b'\n') {
        let line = match chunk.get(..3) {
            Some(p) if p.eq_ignore_ascii_case(b"ur:") => {
                String::from_utf8_lossy(chunk).into_owned()
            }
            _ => super::ur_frames::frame_around_cbor(chunk),
        };
        let _ = collector.push_line(&line);
    }
    if let Ok(decoded) = collector.finish() {
        assert_round_trip(&decoded);
    }
}

/// Fuzz entry point for BBQr reassembly: `data` is split at `\n` and every chunk is fed to
/// a [`Collector`] as a text line.
///
/// # Panics
///
/// Only if a message the collector accepted does not survive re-encoding and collecting
/// again — a bug.
pub fn fuzz_bbqr_lines(data: &[u8]) {
    let mut collector = Collector::new();
    for chunk in data.split(|&b| b == b'\n') {
        let _ = collector.push_line(&String::from_utf8_lossy(chunk));
    }
    if let Ok(decoded) = collector.finish() {
        assert_round_trip(&decoded);
    }
}

fn assert_round_trip(decoded: &Decoded) {
    if decoded.bytes().is_empty() {
        // Nothing to send: the encoders refuse empty payloads.
        return;
    }
    let frames = match decoded {
        Decoded::Psbt(bytes) => first_pass(UrKind::CryptoPsbt, bytes),
        Decoded::Envelope(bytes) => first_pass(UrKind::Envelope, bytes),
        Decoded::Bbqr { file_type, data } => match encode_bbqr(*file_type, data, Profile::High) {
            Ok(frames) => frames,
            // More than 1295 frames at version 23 (incompressible megabytes): BBQr cannot
            // carry it back at this density, which is a limit of the format, not a bug.
            Err(QrError::BbqrEncode { .. }) => return,
            Err(e) => panic!("accepted BBQr message does not re-encode: {e}"),
        },
    };
    let mut again = Collector::new();
    for frame in &frames {
        again
            .push_line(frame)
            .expect("re-encoded frames must be accepted");
    }
    let round_trip = again.finish().expect("re-encoded message must complete");
    assert_eq!(
        round_trip.bytes(),
        decoded.bytes(),
        "round trip changed the message"
    );
}

/// The first pass of frames with fragments large enough for any accepted message (up to
/// 16 MiB in at most 560 frames) yet lines within the collector's limit.
fn first_pass(kind: UrKind, bytes: &[u8]) -> Vec<String> {
    let mut encoder =
        UrEncoder::with_max_fragment_len(kind, bytes, 30_000).expect("accepted UR must re-encode");
    encoder.next_parts(encoder.fragment_count())
}
