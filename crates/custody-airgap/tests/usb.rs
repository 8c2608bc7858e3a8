//! The USB channel: atomic never-overwriting writes, names, PSBT conventions, and the
//! round trip "envelope → USB dir → read back → verified".

use custody_airgap::envelope::{Envelope, EnvelopeType, Receiver, SealParams};
use custody_airgap::file::{
    detect_psbt, encode_psbt, envelope_file_name, final_txn_file, list_complete, psbt_file_name,
    read_bounded, write_new, FileError, FileReplayGuard, PsbtEncoding, PsbtFileError, PsbtStage,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_790_000_000;

#[test]
fn envelope_round_trip_through_a_usb_directory() {
    let usb = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let coordinator = Identity::generate("coordinator", &mut rng).expect("id");
    let alice = Identity::generate("alice", &mut rng).expect("id");
    let session = [0xab; 16];
    let mut names = Vec::new();
    for seq in 1..=3u64 {
        let env = Envelope::seal(
            &coordinator,
            &SealParams {
                kind: EnvelopeType::SigningRequest,
                session_id: session,
                sequence: seq,
                created_at: NOW,
                expires_at: NOW + 600,
                recipients: &[],
            },
            format!("request {seq}").as_bytes(),
            &mut rng,
        )
        .expect("seal");
        let name = envelope_file_name(env.header(), "sign request", "coordinator", Some("alice"));
        write_new(usb.path(), &name, &env.encode()).expect("write");
        names.push(name);
    }
    assert_eq!(
        names[0],
        "abababab-000001-sign-request-from-coordinator-to-alice.cpe"
    );
    // A half-written file from a pulled stick, and a hidden file, are not listed.
    std::fs::write(usb.path().join(".partial.cpe.1234.tmp"), b"CPEN\x01").expect("write");
    std::fs::write(usb.path().join(".DS_Store"), b"junk").expect("write");

    let trusted = [coordinator.card()];
    let log = state.path().join("replay.log");
    let mut rx = Receiver::new(
        session,
        &trusted,
        Some(&alice),
        FileReplayGuard::open(&log).expect("log"),
    );
    let files = list_complete(usb.path()).expect("list");
    assert_eq!(files.len(), 3);
    for (i, f) in files.iter().enumerate() {
        let opened = rx
            .open(
                &read_bounded(f).expect("read"),
                Some(EnvelopeType::SigningRequest),
                NOW,
            )
            .expect("verified");
        assert_eq!(&*opened.payload, format!("request {}", i + 1).as_bytes());
    }
    // The replay log survives a restart of the signer.
    drop(rx);
    let mut rx = Receiver::new(
        session,
        &trusted,
        Some(&alice),
        FileReplayGuard::open(&log).expect("log"),
    );
    let err = rx
        .open(&read_bounded(&files[0]).expect("read"), None, NOW)
        .expect_err("replay after restart");
    assert!(err.to_string().contains("already received"), "{err}");
}

#[test]
fn writes_never_overwrite_and_refuse_odd_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_new(dir.path(), "a.psbt", b"first").expect("write");
    let err = write_new(dir.path(), "a.psbt", b"second").expect_err("exists");
    assert!(matches!(err, FileError::Exists { .. }));
    assert_eq!(std::fs::read(&path).expect("read"), b"first");
    for bad in ["", ".hidden", "../escape", "x.tmp", "a/b"] {
        assert!(
            matches!(write_new(dir.path(), bad, b"x"), Err(FileError::BadName(_))),
            "{bad}"
        );
    }
    // No temp file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn psbt_files_are_detected_and_answered_in_kind() {
    let raw = b"psbt\xff\x01\x00\x52\x02\x00\x00\x00".to_vec();
    for enc in [
        PsbtEncoding::Binary,
        PsbtEncoding::Base64,
        PsbtEncoding::Hex,
    ] {
        let file = encode_psbt(&raw, enc);
        let (back, found) = detect_psbt(&file).expect("detected");
        assert_eq!(found, enc);
        assert_eq!(back, raw);
        // The answer goes back in the same encoding.
        assert_eq!(encode_psbt(&back, found), file);
    }
    // Upper-case hex and wrapped base64 from other tools are accepted.
    let hex_upper = hex::encode_upper(&raw);
    assert_eq!(detect_psbt(hex_upper.as_bytes()).expect("hex").0, raw);
    let b64 = String::from_utf8(encode_psbt(&raw, PsbtEncoding::Base64)).expect("utf8");
    let wrapped = format!("{}\r\n{}\r\n", &b64[..8], &b64[8..]);
    assert_eq!(detect_psbt(wrapped.as_bytes()).expect("b64").0, raw);

    assert_eq!(
        detect_psbt(b"hello").expect_err("no"),
        PsbtFileError::NotPsbt
    );
    assert_eq!(
        detect_psbt(b"70736274ffzz").expect_err("bad hex"),
        PsbtFileError::BadText("hex")
    );
    assert_eq!(
        psbt_file_name("Withdrawal 42", PsbtStage::Unsigned),
        "withdrawal-42.psbt"
    );
    assert_eq!(psbt_file_name("w", PsbtStage::PartlySigned), "w-part.psbt");
    assert_eq!(psbt_file_name("w", PsbtStage::Signed), "w-signed.psbt");
    let (name, body) = final_txn_file("w", &[0x02, 0x00]);
    assert_eq!(name, "w-final.txn");
    assert_eq!(body, b"0200\n");
}
