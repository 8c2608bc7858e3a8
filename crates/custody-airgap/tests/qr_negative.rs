//! Refusals: the negative vectors in `test-vectors/bc-ur/negative/`, plus mixed messages,
//! limits and corrupt images. A refused frame must leave a collector as it was.

mod qr_common;

use custody_airgap::qr::{
    decode_image, encode_bbqr, encode_ur, fuzz_bbqr_lines, fuzz_ur_lines, render_png, BbqrFileType,
    Collector, Decoded, Profile, QrError, UrKind, MAX_LINE_LEN,
};
use qr_common::{payload, vectors_dir};

struct NegativeVector {
    name: String,
    expect: String,
    frames: Vec<String>,
}

fn negative_vectors() -> Vec<NegativeVector> {
    let dir = vectors_dir().join("bc-ur/negative");
    let mut vectors = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("negative vector directory") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let (header, body) = text.split_once("\n\n").expect("header, blank line, frames");
        let expect = header
            .lines()
            .find_map(|l| l.strip_prefix("expect: "))
            .expect("expect line")
            .to_owned();
        vectors.push(NegativeVector {
            name: path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            expect,
            frames: body.lines().map(str::to_owned).collect(),
        });
    }
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    vectors
}

/// The variant name of an error, as negative vectors spell it.
fn variant(error: &QrError) -> String {
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn negative_vectors_are_refused_with_the_expected_error() {
    let vectors = negative_vectors();
    assert!(vectors.len() >= 20, "found only {} vectors", vectors.len());
    for v in vectors {
        let mut collector = Collector::new();
        let (last, before) = v.frames.split_last().expect("at least one frame");
        for frame in before {
            collector
                .push_line(frame)
                .unwrap_or_else(|e| panic!("{}: frame before the last refused: {e}", v.name));
        }
        let error = collector
            .push_line(last)
            .err()
            .unwrap_or_else(|| panic!("{}: last frame accepted", v.name));
        assert_eq!(variant(&error), v.expect, "{}: {error}", v.name);
        // Messages are lower case, without trailing punctuation.
        let message = error.to_string();
        assert!(!message.ends_with('.'), "{}: {message}", v.name);
        assert!(
            message.starts_with(|c: char| !c.is_ascii_uppercase()),
            "{}: {message}",
            v.name
        );
        // The fuzz entry points must take every vector without panicking.
        let joined = v.frames.join("\n");
        fuzz_ur_lines(joined.as_bytes());
        fuzz_bbqr_lines(joined.as_bytes());
    }
}

#[test]
fn a_frame_of_another_message_is_refused_and_changes_nothing() {
    let a = payload(3000, "message a");
    let b = payload(3000, "message b");
    let mut enc_a = encode_ur(UrKind::CryptoPsbt, &a, Profile::Normal).expect("encodes");
    let mut enc_b = encode_ur(UrKind::CryptoPsbt, &b, Profile::Normal).expect("encodes");
    let mut enc_env = encode_ur(UrKind::Envelope, &a, Profile::Normal).expect("encodes");
    let bbqr = encode_bbqr(BbqrFileType::Psbt, &a, Profile::Normal).expect("encodes");

    let mut collector = Collector::new();
    collector.push_line(&enc_a.next_part()).expect("accepted");
    let before = collector.progress();
    for intruder in [enc_b.next_part(), enc_env.next_part(), bbqr[0].clone()] {
        let error = collector.push_line(&intruder).expect_err("refused");
        assert!(error.is_mixed_message(), "{error}");
        assert!(error.to_string().contains("different message"), "{error}");
        assert_eq!(collector.progress(), before);
    }
    while !collector.is_complete() {
        collector.push_line(&enc_a.next_part()).expect("accepted");
    }
    // Once complete, frames of another message are still refused, the result kept.
    assert!(collector
        .push_line(&enc_b.next_part())
        .expect_err("refused")
        .is_mixed_message());
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(a));
}

#[test]
fn bbqr_then_ur_is_refused() {
    let data = payload(3000, "bbqr first");
    let frames = encode_bbqr(BbqrFileType::Psbt, &data, Profile::Low).expect("encodes");
    let mut collector = Collector::new();
    collector.push_line(&frames[0]).expect("accepted");
    let ur = encode_ur(UrKind::CryptoPsbt, &data, Profile::Low)
        .expect("encodes")
        .next_part();
    assert!(collector
        .push_line(&ur)
        .expect_err("refused")
        .is_mixed_message());
    for frame in &frames[1..] {
        collector.push_line(frame).expect("accepted");
    }
    assert_eq!(
        collector.finish().expect("complete"),
        Decoded::Bbqr {
            file_type: BbqrFileType::Psbt,
            data
        }
    );
}

#[test]
fn a_corrupt_complete_message_resets_the_collector() {
    let vector = negative_vectors()
        .into_iter()
        .find(|v| v.name == "ur-message_crc_mismatch")
        .expect("vector");
    let mut collector = Collector::new();
    for frame in &vector.frames[..vector.frames.len() - 1] {
        collector.push_line(frame).expect("accepted");
    }
    let error = collector
        .push_line(vector.frames.last().expect("frame"))
        .expect_err("refused");
    assert!(matches!(error, QrError::MessageChecksum { .. }), "{error}");
    assert!(!collector.is_complete());
    assert_eq!(collector.progress().frames_seen, 0, "reset");
    // A good message is then accepted from scratch.
    let psbt = payload(500, "after reset");
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Low).expect("encodes");
    while !collector.is_complete() {
        collector.push_line(&encoder.next_part()).expect("accepted");
    }
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(psbt));
}

#[test]
fn limits_and_garbage() {
    let mut collector = Collector::new();
    let long = format!("UR:CRYPTO-PSBT/{}", "AE".repeat(MAX_LINE_LEN));
    assert!(matches!(
        collector.push_line(&long),
        Err(QrError::LineTooLong { .. })
    ));
    assert!(matches!(
        collector.push_line("https://example.com/"),
        Err(QrError::UnrecognizedFrame { .. })
    ));
    assert!(matches!(
        collector.push_line("ur:crypto-psbt/1-2/₿₿₿₿"),
        Err(QrError::InvalidBytewords { .. })
    ));
    assert!(matches!(
        collector.push_line("ur:crypto-psbt/+1-2/aeadaolazmjendeoti"),
        Err(QrError::MalformedUr { .. })
    ));
    assert!(matches!(
        collector.push_line("ur:crypto-psbt/1-2/3/aeadaolazmjendeoti"),
        Err(QrError::MalformedUr { .. })
    ));
    assert!(matches!(
        collector.push_line("B$2P01+0AAAA"),
        Err(QrError::InvalidBbqr { .. })
    ));
    assert_eq!(collector.progress().frames_seen, 0);
    let error = collector.finish().expect_err("incomplete");
    assert!(
        matches!(error, QrError::Incomplete { percent: 0, .. }),
        "{error}"
    );

    // Encoders refuse empty payloads.
    assert!(matches!(
        encode_ur(UrKind::Envelope, &[], Profile::Normal),
        Err(QrError::EmptyPayload)
    ));
    assert!(matches!(
        encode_bbqr(BbqrFileType::Psbt, &[], Profile::Normal),
        Err(QrError::EmptyPayload)
    ));
    // More than 10 000 fragments at Low (about 1 MB) is refused up front.
    assert!(matches!(
        encode_ur(UrKind::CryptoPsbt, &vec![0; 1_000_000], Profile::Low),
        Err(QrError::TooManyParts { .. })
    ));
}

/// A frame of a fake 2-fragment message whose part mixes both fragments: alone it never
/// solves anything.
fn useless_frame(seq: u32) -> Option<String> {
    let mut cbor = minicbor::Encoder::new(Vec::new());
    cbor.array(5)
        .and_then(|e| e.u32(seq))
        .and_then(|e| e.u32(2))
        .and_then(|e| e.u32(4))
        .and_then(|e| e.u32(0xdead_beef))
        .and_then(|e| e.bytes(&[seq.to_le_bytes()[0], 1]))
        .expect("CBOR into a Vec");
    let cbor = cbor.into_writer();
    let part: ur::fountain::Part = minicbor::decode(&cbor).expect("part");
    (part.indexes().len() == 2).then(|| {
        let body = ur::bytewords::encode(&cbor, ur::bytewords::Style::Minimal);
        format!("ur:crypto-psbt/{seq}-2/{body}")
    })
}

#[test]
fn endless_useless_frames_hit_the_frame_limit() {
    let mut collector = Collector::new();
    let mut accepted = 0;
    let mut seq = 3;
    let error = loop {
        let Some(frame) = useless_frame(seq) else {
            seq += 1;
            continue;
        };
        seq += 1;
        match collector.push_line(&frame) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 200, "no limit after {accepted} frames");
    };
    assert!(
        matches!(error, QrError::FrameLimit { frames: 120 }),
        "{error}"
    );
    assert_eq!(accepted, 120);
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len())
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = crc.digest();
    digest.update(kind);
    digest.update(data);
    chunk.extend_from_slice(&digest.finalize().to_be_bytes());
    chunk
}

#[test]
fn images_that_cannot_be_read() {
    assert!(matches!(
        decode_image(b"not an image"),
        Err(QrError::UnsupportedImage)
    ));
    let png = render_png("UR:CRYPTO-PSBT/X", 2).expect("renders");
    assert!(matches!(
        decode_image(&png[..png.len() / 2]),
        Err(QrError::ImageDecode { .. })
    ));

    // A PNG header claiming 100000 × 100000 pixels is refused before decoding.
    let mut huge = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    huge.extend(png_chunk(b"IHDR", &ihdr));
    huge.extend(png_chunk(b"IEND", &[]));
    let error = decode_image(&huge).expect_err("refused");
    assert!(
        matches!(
            error,
            QrError::ImageSize { .. } | QrError::ImageDecode { .. }
        ),
        "{error}"
    );

    // A GIF whose logical screen is 65535 × 65535 pixels.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x3b]);
    let error = decode_image(&gif).expect_err("refused");
    assert!(
        matches!(
            error,
            QrError::ImageSize { .. } | QrError::ImageDecode { .. }
        ),
        "{error}"
    );

    // A blank image has no code.
    let mut blank = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut blank, 64, 64);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(&[255; 64 * 64]).expect("data");
    }
    assert!(matches!(decode_image(&blank), Err(QrError::NoQrCode)));

    let mut collector = Collector::new();
    assert!(collector.push_image(&blank).is_err());
    assert_eq!(collector.progress().frames_seen, 0);
}

#[test]
fn fuzz_entry_points_survive_noise_and_accept_real_input() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    for len in [0, 1, 7, 64, 500, 4096] {
        for _ in 0..20 {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            fuzz_ur_lines(&data);
            fuzz_bbqr_lines(&data);
        }
    }
    // Real frames exercise the round-trip assertion.
    let mut encoder =
        encode_ur(UrKind::Envelope, &payload(2000, "fuzz"), Profile::Low).expect("encodes");
    let frames = encoder.next_parts(encoder.fragment_count()).join("\n");
    fuzz_ur_lines(frames.as_bytes());
    let bbqr = encode_bbqr(BbqrFileType::Json, b"{\"withdrawal\": 1}", Profile::Low)
        .expect("encodes")
        .join("\n");
    fuzz_bbqr_lines(bbqr.as_bytes());
}
