//! The whole camera channel for an envelope: seal → QR PNG frames → `zbarimg` (a decoder
//! we did not write) → reassembled → opened and verified by the receiver.

mod qr_common;

use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver, SealParams};
use custody_airgap::qr::{encode_ur, render_png, Collector, Decoded, Profile, UrKind};
use custody_threshold::Identity;
use qr_common::{shuffle, zbarimg};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_790_000_000;

#[test]
fn envelope_through_qr_png_frames_and_zbarimg_is_verified() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let coordinator = Identity::generate("coordinator", &mut rng).expect("id");
    let alice = Identity::generate("alice", &mut rng).expect("id");
    let session = [0x42; 16];
    // A payload the size of a multi-input signing request.
    let payload: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
    let env = Envelope::seal(
        &coordinator,
        &SealParams {
            kind: EnvelopeType::SigningRequest,
            session_id: session,
            sequence: 7,
            created_at: NOW,
            expires_at: NOW + 900,
            recipients: &[alice.card()],
        },
        &payload,
        &mut rng,
    )
    .expect("seal");
    let bytes = env.encode();

    let mut encoder = encode_ur(UrKind::Envelope, &bytes, Profile::Normal).expect("encode");
    let count = encoder.fragment_count();
    assert!(count > 1, "the envelope needs several frames");
    // One full pass plus two fountain parts, one of those lost, shown in a shuffled order.
    // (Reassembly after losing pure fragments depends on the fountain mix, which differs
    // with every encryption; `qr_roundtrip` covers lossy channels with fixed payloads.)
    let mut frames = encoder.next_parts(count + 2);
    frames.remove(count);
    shuffle(&mut frames, 3);

    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = dir.path().join(format!("frame-{i:03}.png"));
            std::fs::write(&path, render_png(f, 4).expect("render")).expect("write");
            path
        })
        .collect();
    let scanned = zbarimg(&files);
    assert_eq!(scanned.len(), frames.len(), "zbarimg reads every frame");

    let mut collector = Collector::new();
    for line in &scanned {
        collector.push_line(line).expect("frame accepted");
        if collector.is_complete() {
            break;
        }
    }
    let Decoded::Envelope(received) = collector.finish().expect("complete") else {
        panic!("expected an envelope");
    };
    assert_eq!(received, bytes, "byte-identical after the camera channel");

    let trusted = [coordinator.card()];
    let mut rx = Receiver::new(
        session,
        &trusted,
        Some(&alice),
        MemoryReplayGuard::default(),
    );
    let opened = rx
        .open(&received, Some(EnvelopeType::SigningRequest), NOW + 60)
        .expect("verified and decrypted");
    assert_eq!(&*opened.payload, &payload[..]);
}
