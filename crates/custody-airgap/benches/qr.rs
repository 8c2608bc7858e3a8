//! QR transport benchmarks: frames per profile, per-frame encode/render/scan cost, and
//! reassembly from a lossy fountain stream.
//!
//! `cargo bench -p custody-airgap --bench qr -- --warm-up-time 1 --measurement-time 2`
//! prints the frame table first, then criterion's timings. Results: `docs/benchmarks.md`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

#[path = "../tests/qr_common/mod.rs"]
mod qr_common;

use criterion::{black_box, BatchSize, Criterion};
use custody_airgap::qr::{
    decode_image, encode_bbqr, encode_ur, qr_version_of, render_png, BbqrFileType, Collector,
    Profile, UrKind,
};
use qr_common::{payload, shuffle, signing_request_psbt};

const SIZES: [usize; 3] = [200, 3_000, 30_000];

fn frame_table() {
    println!("QR frames per message (UR crypto-psbt first pass; BBQr, incompressible data)");
    println!(
        "| profile | fragment | payload | UR frames | UR version | chars/frame | BBQr frames | BBQr version |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for profile in Profile::ALL {
        for len in SIZES {
            let bytes = payload(len, "table");
            let mut encoder = encode_ur(UrKind::CryptoPsbt, &bytes, profile).unwrap();
            let frames = encoder.next_parts(encoder.fragment_count());
            let ur_version = frames
                .iter()
                .map(|f| qr_version_of(f).unwrap())
                .max()
                .unwrap();
            let chars = frames.iter().map(String::len).max().unwrap();
            let bbqr = encode_bbqr(BbqrFileType::Psbt, &bytes, profile).unwrap();
            let bbqr_version = bbqr
                .iter()
                .map(|f| qr_version_of(f).unwrap())
                .max()
                .unwrap();
            println!(
                "| {profile} (v{}) | {} B | {len} B | {} | {ur_version} | {chars} | {} | {bbqr_version} |",
                profile.qr_version(),
                profile.max_fragment_len(UrKind::CryptoPsbt),
                frames.len(),
                bbqr.len(),
            );
        }
    }
    let psbt = signing_request_psbt();
    for profile in Profile::ALL {
        let encoder = encode_ur(UrKind::CryptoPsbt, &psbt, profile).unwrap();
        println!(
            "signing request ({} B PSBT) at {profile}: {} UR frames",
            psbt.len(),
            encoder.fragment_count()
        );
    }
    println!();
}

/// One full-size frame of each profile.
fn full_frame(profile: Profile) -> String {
    encode_ur(UrKind::CryptoPsbt, &payload(30_000, "frame"), profile)
        .unwrap()
        .next_part()
}

fn per_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("qr_frame");
    for profile in Profile::ALL {
        let name = format!("{profile}_v{}", profile.qr_version());
        let bytes = payload(30_000, "frame");
        let mut encoder = encode_ur(UrKind::CryptoPsbt, &bytes, profile).unwrap();
        group.bench_function(format!("ur_next_part/{name}"), |b| {
            b.iter(|| black_box(encoder.next_part()));
        });
        let frame = full_frame(profile);
        group.bench_function(format!("render_png_scale4/{name}"), |b| {
            b.iter(|| black_box(render_png(black_box(&frame), 4).unwrap()));
        });
        let png = render_png(&frame, 4).unwrap();
        group.bench_function(format!("decode_png_rqrr/{name}"), |b| {
            b.iter(|| black_box(decode_image(black_box(&png)).unwrap()));
        });
        group.bench_function(format!("collector_push_line/{name}"), |b| {
            b.iter_batched(
                Collector::new,
                |mut collector| black_box(collector.push_line(&frame).unwrap()),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Frames as a camera that misses 20% of the first pass sees them: the rest shuffled, then
/// fountain parts in order.
fn lossy_stream(len: usize, profile: Profile) -> Vec<String> {
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &payload(len, "lossy"), profile).unwrap();
    let n = encoder.fragment_count();
    let mut frames = encoder.next_parts(n);
    shuffle(&mut frames, 2026);
    frames.truncate(n - n / 5);
    frames.extend(encoder.next_parts(3 * n + 20));
    frames
}

fn reassembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("qr_reassemble_20pct_missed");
    for (len, profile) in [
        (3_000, Profile::Normal),
        (30_000, Profile::Normal),
        (30_000, Profile::Low),
    ] {
        let frames = lossy_stream(len, profile);
        let mut used = 0;
        let mut probe = Collector::new();
        for frame in &frames {
            probe.push_line(frame).unwrap();
            used += 1;
            if probe.is_complete() {
                break;
            }
        }
        println!("reassembly {len} B at {profile}: complete after {used} frames");
        group.bench_function(format!("{len}B_{profile}"), |b| {
            b.iter(|| {
                let mut collector = Collector::new();
                for frame in &frames {
                    collector.push_line(frame).unwrap();
                    if collector.is_complete() {
                        break;
                    }
                }
                black_box(collector.finish().unwrap())
            });
        });
    }
    group.finish();
}

fn main() {
    frame_table();
    let mut c = Criterion::default().configure_from_args();
    per_frame(&mut c);
    reassembly(&mut c);
    c.final_summary();
}
