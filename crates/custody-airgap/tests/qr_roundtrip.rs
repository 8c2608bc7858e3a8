//! Encode → render → scan → collect, for every profile and framing: every rendered frame is
//! read back by `rqrr` (our reader) and by `zbarimg` (what `zbarcam` users run), and
//! messages reassemble from shuffled, incomplete sets of fountain parts.

mod qr_common;

use std::path::PathBuf;

use custody_airgap::qr::{
    decode_image, encode_bbqr, encode_ur, qr_version_of, render_gif, render_png, render_svg,
    render_terminal, BbqrFileType, Collector, Decoded, FrameFormat, Profile, UrKind,
};
use qr_common::{payload, shuffle, signing_request_psbt, zbarimg};

/// Frames a sender would show for each profile: UR first passes plus a few fountain parts,
/// and BBQr.
fn sample_frames(profile: Profile) -> Vec<String> {
    let mut frames = Vec::new();
    for (kind, bytes) in [
        (UrKind::CryptoPsbt, signing_request_psbt()),
        (UrKind::CryptoPsbt, payload(3000, "three-k")),
        (UrKind::Envelope, payload(1500, "envelope")),
    ] {
        let mut encoder = encode_ur(kind, &bytes, profile).expect("encodes");
        let n = encoder.fragment_count();
        frames.extend(encoder.next_parts(n + 3));
    }
    frames
        .extend(encode_bbqr(BbqrFileType::Psbt, &payload(3000, "bbqr"), profile).expect("encodes"));
    frames
}

#[test]
fn every_rendered_frame_reads_back_with_rqrr_and_zbarimg() {
    let dir = tempfile::tempdir().expect("temp dir");
    for profile in Profile::ALL {
        let frames = sample_frames(profile);
        let mut files: Vec<PathBuf> = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            assert!(qr_version_of(frame).expect("fits") <= profile.qr_version());
            let png = render_png(frame, 3).expect("renders");
            assert_eq!(
                decode_image(&png).expect("rqrr reads the frame"),
                vec![frame.clone()],
                "{profile} frame {i}"
            );
            let path = dir.path().join(format!("{profile}-{i:04}.png"));
            std::fs::write(&path, &png).expect("write png");
            files.push(path);
        }
        assert_eq!(zbarimg(&files), frames, "zbarimg at {profile}");
    }
}

#[test]
fn densest_possible_frames_scan() {
    // A full-size frame of each profile, at the QR version the profile promises.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    let mut frames = Vec::new();
    for profile in Profile::ALL {
        let kind = UrKind::Envelope;
        let mut encoder = encode_ur(kind, &payload(20_000, "dense"), profile).expect("encodes");
        let frame = encoder.next_part();
        assert_eq!(qr_version_of(&frame).expect("fits"), profile.qr_version());
        let png = render_png(&frame, 2).expect("renders");
        assert_eq!(decode_image(&png).expect("rqrr"), vec![frame.clone()]);
        let path = dir.path().join(format!("{profile}.png"));
        std::fs::write(&path, png).expect("write");
        files.push(path);
        frames.push(frame);
    }
    assert_eq!(zbarimg(&files), frames);
}

/// Feeds the first pass with 20% dropped, shuffled, then later fountain parts until complete;
/// returns the decoded message and how many frames were fed.
fn reassemble_lossy(kind: UrKind, bytes: &[u8], profile: Profile, seed: u64) -> (Decoded, usize) {
    let mut encoder = encode_ur(kind, bytes, profile).expect("encodes");
    let n = encoder.fragment_count();
    let mut first_pass = encoder.next_parts(n);
    shuffle(&mut first_pass, seed);
    let kept = n - n / 5;
    first_pass.truncate(kept);
    let mut collector = Collector::new();
    let mut fed = 0;
    let mut last_percent = 0;
    for frame in &first_pass {
        let progress = collector.push_line(frame).expect("accepted");
        fed += 1;
        assert!(progress.new_frame);
        assert!(progress.percent >= last_percent && progress.percent < 100 || progress.complete);
        last_percent = progress.percent;
        assert_eq!(progress.parts_total, Some(n));
        assert_eq!(progress.frames_seen, fed);
    }
    while !collector.is_complete() {
        let progress = collector.push_line(&encoder.next_part()).expect("accepted");
        fed += 1;
        assert!(
            fed < 3 * n + 20,
            "no completion after {fed} frames for {n} fragments"
        );
        assert!(progress.complete || progress.percent < 100);
    }
    assert_eq!(collector.progress().percent, 100);
    (collector.finish().expect("complete"), fed)
}

#[test]
fn reassembles_from_a_shuffled_lossy_subset() {
    let psbt = payload(30_000, "thirty-k");
    for (profile, seed) in [(Profile::Low, 1), (Profile::Normal, 2), (Profile::High, 3)] {
        let (decoded, fed) = reassemble_lossy(UrKind::CryptoPsbt, &psbt, profile, seed);
        assert_eq!(decoded, Decoded::Psbt(psbt.clone()), "{profile}");
        let n = encode_ur(UrKind::CryptoPsbt, &psbt, profile)
            .expect("encodes")
            .fragment_count();
        assert!(fed >= n, "{profile}: {fed} frames for {n} fragments");
    }
    let envelope = payload(5000, "envelope");
    for seed in 10..20 {
        let (decoded, _) = reassemble_lossy(UrKind::Envelope, &envelope, Profile::Low, seed);
        assert_eq!(decoded, Decoded::Envelope(envelope.clone()));
    }
}

#[test]
fn reassembles_from_images_in_any_order_with_repeats() {
    let psbt = signing_request_psbt();
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Low).expect("encodes");
    let n = encoder.fragment_count();
    let mut frames = encoder.next_parts(2 * n);
    frames.retain(|f| !f.contains(&format!("/2-{n}/")) && !f.contains(&format!("/5-{n}/")));
    frames.extend(frames.clone()); // every frame twice
    shuffle(&mut frames, 42);
    let mut collector = Collector::new();
    let mut new_frames = 0;
    for frame in &frames {
        let png = render_png(frame, 2).expect("renders");
        let progress = collector.push_image(&png).expect("accepted");
        new_frames += usize::from(progress.new_frame);
        if progress.complete {
            break;
        }
    }
    assert!(new_frames <= 2 * n - 2);
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(psbt));
}

#[test]
fn animated_gif_reads_back_frame_by_frame() {
    let psbt = payload(3000, "gif");
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Normal).expect("encodes");
    let frames = encoder.next_parts(encoder.fragment_count() + 2);
    let gif = render_gif(&frames, 250, 3).expect("renders");
    assert!(gif.starts_with(b"GIF89a"));
    assert_eq!(decode_image(&gif).expect("reads"), frames);

    let mut collector = Collector::new();
    let progress = collector.push_image(&gif).expect("accepted");
    assert!(progress.complete);
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(psbt));

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("animation.gif");
    std::fs::write(&path, &gif).expect("write");
    assert_eq!(zbarimg(&[path]), frames, "zbarimg reads every GIF frame");
}

#[test]
fn bbqr_round_trips_in_any_order() {
    for profile in Profile::ALL {
        for (file_type, bytes) in [
            (BbqrFileType::Psbt, payload(5000, "bbqr-psbt")),
            (BbqrFileType::Transaction, payload(300, "bbqr-tx")),
            (
                BbqrFileType::UnicodeText,
                "withdrawal approved ".repeat(200).into_bytes(),
            ),
        ] {
            let mut frames = encode_bbqr(file_type, &bytes, profile).expect("encodes");
            for frame in &frames {
                assert!(frame.starts_with("B$"));
                assert_eq!(*frame, frame.to_ascii_uppercase());
            }
            let n = frames.len();
            frames.extend(frames.clone());
            shuffle(&mut frames, 7);
            let mut collector = Collector::new();
            for frame in &frames {
                let progress = collector.push_line(frame).expect("accepted");
                assert_eq!(progress.parts_total, Some(n));
                assert_eq!(progress.format, Some(FrameFormat::Bbqr(file_type)));
            }
            assert_eq!(
                collector.finish().expect("complete"),
                Decoded::Bbqr {
                    file_type,
                    data: bytes
                }
            );
        }
    }
}

#[test]
fn text_compresses_in_bbqr() {
    let text = "withdrawal approved ".repeat(200).into_bytes();
    let frames = encode_bbqr(BbqrFileType::UnicodeText, &text, Profile::Low).expect("encodes");
    assert_eq!(
        frames.len(),
        1,
        "4000 repetitive bytes deflate into one frame"
    );
    assert!(frames[0].starts_with("B$ZU0100"));
}

#[test]
fn scanner_text_in_either_case_with_decorations() {
    let psbt = payload(900, "case");
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Normal).expect("encodes");
    let frames = encoder.next_parts(encoder.fragment_count());
    assert!(frames.iter().all(|f| *f == f.to_ascii_uppercase()));
    let mut collector = Collector::new();
    let blank = collector
        .push_line("   \r\n")
        .expect("blank lines are ignored");
    assert!(!blank.new_frame);
    for (i, frame) in frames.iter().enumerate() {
        let line = match i % 3 {
            0 => frame.to_ascii_lowercase(),
            1 => format!("QR-Code:{frame}\r\n"),
            _ => format!("  {frame}\n"),
        };
        collector.push_line(&line).expect("accepted");
    }
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(psbt));
}

#[test]
fn repeats_are_reported_and_ignored() {
    let psbt = payload(2000, "repeat");
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Normal).expect("encodes");
    let first = encoder.next_part();
    let mut collector = Collector::new();
    let p1 = collector.push_line(&first).expect("accepted");
    assert!(p1.new_frame);
    assert_eq!(p1.frames_seen, 1);
    assert_eq!(p1.format, Some(FrameFormat::Ur(UrKind::CryptoPsbt)));
    let p2 = collector.push_line(&first).expect("accepted");
    assert!(!p2.new_frame);
    assert_eq!(p2.frames_seen, 1);
    while !collector.is_complete() {
        collector.push_line(&encoder.next_part()).expect("accepted");
    }
    // After completion the same message's frames are harmless.
    let after = collector.push_line(&first).expect("accepted");
    assert!(after.complete && !after.new_frame);
    assert_eq!(collector.finish().expect("complete"), Decoded::Psbt(psbt));
}

/// Turns terminal output back into pixels: a block character's upper or lower half lit is a
/// light module.
fn terminal_to_luma(text: &str) -> (usize, usize, Vec<u8>) {
    let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    let width = lines[0].len();
    let height = lines.len() * 2;
    let scale = 4;
    let mut pixels = vec![0u8; width * scale * height * scale];
    for (row, line) in lines.iter().enumerate() {
        assert_eq!(line.len(), width);
        for (x, c) in line.iter().enumerate() {
            let (top, bottom) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?}"),
            };
            for (half, light) in [(0, top), (1, bottom)] {
                let y = row * 2 + half;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let i = (y * scale + dy) * width * scale + x * scale + dx;
                        pixels[i] = if light { 255 } else { 0 };
                    }
                }
            }
        }
    }
    (width * scale, height * scale, pixels)
}

#[test]
fn terminal_rendering_scans_on_a_dark_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut encoder =
        encode_ur(UrKind::CryptoPsbt, &signing_request_psbt(), Profile::Normal).expect("encodes");
    let frame = encoder.next_part();
    let text = render_terminal(&frame).expect("renders");
    // Modules plus the 4-module quiet zone on each side; two module rows per line.
    let side = 17 + 4 * usize::from(qr_version_of(&frame).expect("fits")) + 8;
    assert_eq!(text.lines().count(), side.div_ceil(2));
    assert!(text.lines().all(|l| l.chars().count() == side));
    let (w, h, pixels) = terminal_to_luma(&text);
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(
            &mut png,
            u32::try_from(w).expect("fits"),
            u32::try_from(h).expect("fits"),
        );
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(&pixels).expect("data");
    }
    assert_eq!(decode_image(&png).expect("rqrr reads"), vec![frame.clone()]);
    let path = dir.path().join("terminal.png");
    std::fs::write(&path, png).expect("write");
    assert_eq!(zbarimg(&[path]), vec![frame]);
}

#[test]
fn svg_is_a_complete_document_of_the_right_size() {
    let frame = encode_ur(UrKind::CryptoPsbt, &signing_request_psbt(), Profile::Normal)
        .expect("encodes")
        .next_part();
    let svg = render_svg(&frame).expect("renders");
    // (modules + 8 quiet) × 8 units
    let side = (17 + 4 * usize::from(qr_version_of(&frame).expect("fits")) + 8) * 8;
    assert!(svg.starts_with("<?xml"));
    assert!(
        svg.contains(&format!(r#"width="{side}" height="{side}""#)),
        "{}",
        &svg[..300]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn renderers_refuse_what_does_not_fit() {
    let too_long = "A".repeat(4297);
    assert!(render_png(&too_long, 1).is_err());
    assert!(render_svg(&too_long).is_err());
    assert!(render_terminal(&too_long).is_err());
    assert!(render_png("UR:X", 0).is_err());
    assert!(render_png("UR:X", 33).is_err());
    assert!(render_gif(&[], 200, 2).is_err());
    // The largest alphanumeric code still renders (version 40).
    let max = "A".repeat(4296);
    assert_eq!(qr_version_of(&max).expect("fits"), 40);
    // Lower-case text falls back to byte mode and still renders.
    let lower = render_png("ur:crypto-psbt/lower", 2).expect("renders");
    assert_eq!(
        decode_image(&lower).expect("reads"),
        vec!["ur:crypto-psbt/lower".to_owned()]
    );
}
