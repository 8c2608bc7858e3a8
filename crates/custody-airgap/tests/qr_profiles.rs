//! Density profiles: every frame fits its profile's QR version, and the frame-count targets
//! of the issue hold (a 2-of-3 signing request in 2 Normal frames, 3 KB in at most 8).

mod qr_common;

use custody_airgap::qr::{
    encode_bbqr, encode_ur, qr_version_of, BbqrFileType, Profile, UrKind, MAX_MESSAGE_LEN,
    MAX_UR_PARTS,
};
use qr_common::{payload, signing_request_psbt};
use qrcode::{EcLevel, QrCode, Version};

/// The largest frame a profile can produce for a kind: sequence number u32::MAX, the most
/// fragments and the longest message the limits allow, a full fragment.
fn worst_case_frame(kind: UrKind, profile: Profile) -> String {
    let fragment = vec![0xffu8; profile.max_fragment_len(kind)];
    let mut cbor = minicbor::Encoder::new(Vec::new());
    cbor.array(5)
        .and_then(|e| e.u32(u32::MAX))
        .and_then(|e| e.u32(u32::try_from(MAX_UR_PARTS).expect("fits")))
        .and_then(|e| e.u32(u32::try_from(MAX_MESSAGE_LEN).expect("fits")))
        .and_then(|e| e.u32(u32::MAX))
        .and_then(|e| e.bytes(&fragment))
        .expect("CBOR into a Vec");
    let body = ur::bytewords::encode(&cbor.into_writer(), ur::bytewords::Style::Minimal);
    format!("ur:{}/{}-{}/{body}", kind.ur_type(), u32::MAX, MAX_UR_PARTS).to_ascii_uppercase()
}

#[test]
fn worst_case_frames_fit_the_profile_version_and_no_more() {
    for profile in Profile::ALL {
        let version = Version::Normal(i16::from(profile.qr_version()));
        for kind in [UrKind::CryptoPsbt, UrKind::Envelope] {
            let frame = worst_case_frame(kind, profile);
            assert!(frame.len() <= profile.frame_capacity(), "{profile} {kind}");
            // As one alphanumeric segment (what the renderers emit) it fits the version...
            let mut bits = qrcode::bits::Bits::new(version);
            bits.push_alphanumeric_data(frame.as_bytes())
                .expect("alphanumeric");
            bits.push_terminator(EcLevel::L)
                .unwrap_or_else(|e| panic!("{profile} {kind}: {} chars: {e}", frame.len()));
            QrCode::with_bits(bits, EcLevel::L).expect("fits");
            assert_eq!(
                qr_version_of(&frame).expect("encodes"),
                profile.qr_version()
            );
        }
        // The stated capacity is exact: one more alphanumeric character does not fit.
        let full = "A".repeat(profile.frame_capacity());
        QrCode::with_version(full.as_bytes(), version, EcLevel::L).expect("capacity fits");
        let over = "A".repeat(profile.frame_capacity() + 1);
        assert!(QrCode::with_version(over.as_bytes(), version, EcLevel::L).is_err());
    }
}

#[test]
fn real_frames_fit_their_profile() {
    for profile in Profile::ALL {
        for (kind, len) in [
            (UrKind::CryptoPsbt, 200),
            (UrKind::CryptoPsbt, 3000),
            (UrKind::Envelope, 10_000),
        ] {
            let mut encoder = encode_ur(kind, &payload(len, "fit"), profile).expect("encodes");
            let n = encoder.fragment_count();
            for frame in encoder.next_parts(n + 5) {
                assert!(frame.len() <= profile.frame_capacity());
                assert!(qr_version_of(&frame).expect("encodes") <= profile.qr_version());
            }
        }
        for len in [200, 3000, 10_000] {
            for frame in
                encode_bbqr(BbqrFileType::Psbt, &payload(len, "fit"), profile).expect("encodes")
            {
                assert!(qr_version_of(&frame).expect("encodes") <= profile.qr_version());
            }
        }
    }
}

fn ur_frames(len: usize, profile: Profile) -> usize {
    encode_ur(UrKind::CryptoPsbt, &payload(len, "count"), profile)
        .expect("encodes")
        .fragment_count()
}

#[test]
fn frame_counts_per_profile() {
    // UR crypto-psbt: ceil((len + CBOR head) / max fragment). BBQr (incompressible data, so
    // base32): ceil(1.6 × len / payload characters per frame), where a frame carries the
    // capacity minus the 8-character header, rounded down to whole 8-character base32
    // blocks (264, 840 and 1576 characters).
    let expected_ur = [
        (Profile::Low, [3, 31, 307]),
        (Profile::Normal, [1, 8, 78]),
        (Profile::High, [1, 4, 40]),
    ];
    for (profile, counts) in expected_ur {
        let got = [200, 3000, 30_000].map(|len| ur_frames(len, profile));
        assert_eq!(got, counts, "UR frames at {profile}");
    }
    let expected_bbqr = [
        (Profile::Low, [2, 19, 182]),
        (Profile::Normal, [1, 6, 58]),
        (Profile::High, [1, 4, 31]),
    ];
    for (profile, counts) in expected_bbqr {
        let got = [200, 3000, 30_000].map(|len| {
            encode_bbqr(BbqrFileType::Psbt, &payload(len, "count"), profile)
                .expect("encodes")
                .len()
        });
        assert_eq!(got, counts, "BBQr frames at {profile}");
    }
}

#[test]
fn signing_request_fits_two_normal_frames() {
    let psbt = signing_request_psbt();
    assert_eq!(
        psbt.len(),
        697,
        "the example request's size is pinned in docs/formats/qr.md"
    );
    let encoder = encode_ur(UrKind::CryptoPsbt, &psbt, Profile::Normal).expect("encodes");
    assert_eq!(encoder.fragment_count(), 2);
    // The 700-byte bound the issue assumes, and the largest PSBT that still fits.
    assert_eq!(ur_frames(700, Profile::Normal), 2);
    assert_eq!(ur_frames(2 * 385 - 3, Profile::Normal), 2);
    assert_eq!(ur_frames(2 * 385 - 2, Profile::Normal), 3);
}

#[test]
fn three_kilobyte_psbt_needs_at_most_eight_normal_frames() {
    assert_eq!(ur_frames(3000, Profile::Normal), 8);
    assert_eq!(ur_frames(3072, Profile::Normal), 8);
    assert_eq!(ur_frames(8 * 385 - 3, Profile::Normal), 8);
}
