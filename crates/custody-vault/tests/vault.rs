//! Behaviour of the vault as its users see it: sealing, opening, rotation, blind
//! indexes, the key file and the error messages.

use custody_vault::{
    fuzzing, BlindIndexError, DocumentImage, DocumentType, FieldKind, KekId, KeyFileError,
    KycError, KycRecord, OpenError, ParseBlobError, ParseKeyFileError, Purpose, RotateError,
    SealError, SealedBlob, VaultKeys, BLOB_HEADER_LEN, MAX_IMAGE_BYTES,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const NAME: &str = "Zoë Quintessa Marlowe";
const DOC_NUMBER: &str = "X7Q4-PL93KD";

fn record(image: Option<Vec<u8>>) -> KycRecord {
    KycRecord {
        full_name: NAME.to_owned(),
        date_of_birth: "1987-03-14".to_owned(),
        address: "12 Rue des Lilas\n75011 Paris".to_owned(),
        nationality: "FR".to_owned(),
        document_type: DocumentType::Passport,
        document_number: DOC_NUMBER.to_owned(),
        document_images: image
            .into_iter()
            .map(|bytes| DocumentImage {
                media_type: "image/jpeg".to_owned(),
                bytes,
            })
            .collect(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_personal_data(text: &str) {
    for secret in [NAME, DOC_NUMBER, "Rue des Lilas", "1987-03-14", "Marlowe"] {
        assert!(!text.contains(secret), "personal data in {text:?}");
    }
}

#[test]
fn kyc_record_round_trips_through_bytes_and_text() {
    let keys = VaultKeys::generate();
    let image: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let original = record(Some(image));
    let blob = keys.seal_kyc(b"user-1", &original).expect("seals");
    assert_eq!(blob.purpose(), Purpose::KycRecord);
    assert_eq!(blob.kek_id(), KekId(1));

    let from_bytes = SealedBlob::from_bytes(&blob.to_bytes()).expect("decodes");
    assert!(keys.open_kyc(b"user-1", &from_bytes).expect("opens") == original);
    let from_text = SealedBlob::from_text(&blob.to_text()).expect("decodes");
    assert!(keys.open_kyc(b"user-1", &from_text).expect("opens") == original);
}

#[test]
fn ciphertext_does_not_contain_the_plaintext() {
    let keys = VaultKeys::generate();
    let image = b"JFIF-distinctive-image-marker-0123456789".repeat(20);
    let blob = keys
        .seal_kyc(b"user-1", &record(Some(image.clone())))
        .expect("seals");
    let bytes = blob.to_bytes();
    for needle in [
        NAME.as_bytes(),
        DOC_NUMBER.as_bytes(),
        b"Rue des Lilas",
        &image[..40],
    ] {
        assert!(!contains(&bytes, needle));
    }
    // The search itself works: the plaintext serialisation does contain them.
    let plain = keys
        .open(Purpose::KycRecord, b"user-1", &blob)
        .expect("opens");
    assert!(contains(&plain, NAME.as_bytes()) && contains(&plain, DOC_NUMBER.as_bytes()));
    assert_no_personal_data(&blob.to_text());
}

#[test]
fn a_blob_moved_to_another_record_does_not_open() {
    let keys = VaultKeys::generate();
    let blob = keys.seal_kyc(b"user-1", &record(None)).expect("seals");
    let err = keys
        .open_kyc(b"user-2", &blob)
        .expect_err("moved row must fail");
    assert_eq!(err, OpenError::WrongRecord);
    assert!(err.to_string().contains("another record id"));
    assert_no_personal_data(&err.to_string());
    assert_eq!(
        keys.rewrap(Purpose::KycRecord, b"user-2", &blob),
        Err(OpenError::WrongRecord)
    );
}

#[test]
fn a_blob_with_a_forged_record_check_still_does_not_open_elsewhere() {
    // Someone copies a row and patches the unkeyed record check for the target id: the
    // AEADs still bind the record id.
    let keys = VaultKeys::generate();
    let blob = keys.seal(Purpose::Secret, b"a", b"payload").expect("seals");
    let other = keys.seal(Purpose::Secret, b"b", b"payload").expect("seals");
    let mut bytes = blob.to_bytes();
    let check_at = 4 + 1 + 1 + 16 + 4;
    bytes[check_at..check_at + 8].copy_from_slice(&other.to_bytes()[check_at..check_at + 8]);
    let forged = SealedBlob::from_bytes(&bytes).expect("still well formed");
    assert_eq!(
        keys.open(Purpose::Secret, b"b", &forged),
        Err(OpenError::Unwrap { kek_id: KekId(1) })
    );
}

#[test]
fn tampering_with_any_byte_is_detected() {
    let keys = VaultKeys::generate();
    let blob = keys.seal_kyc(b"user-1", &record(None)).expect("seals");
    let bytes = blob.to_bytes();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            let opened = SealedBlob::from_bytes(&t)
                .map_err(OpenError::from)
                .and_then(|b| keys.open_kyc(b"user-1", &b));
            let err = opened.expect_err("a tampered blob must not open");
            assert_no_personal_data(&err.to_string());
            assert_no_personal_data(&format!("{err:?}"));
        }
    }
    // Truncation and extension too.
    assert!(SealedBlob::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(SealedBlob::from_bytes(&longer).is_err());
}

#[test]
fn a_blob_of_one_purpose_does_not_open_as_another() {
    let keys = VaultKeys::generate();
    let blob = keys
        .seal(Purpose::TotpSecret, b"user-1", b"JBSWY3DPEHPK3PXP")
        .expect("seals");
    assert_eq!(
        keys.open_kyc(b"user-1", &blob),
        Err(OpenError::WrongPurpose {
            expected: Purpose::KycRecord,
            found: Purpose::TotpSecret
        })
    );
    // Patching the purpose byte is caught by the AEADs.
    let mut bytes = blob.to_bytes();
    bytes[5] = Purpose::Secret.to_byte();
    let patched = SealedBlob::from_bytes(&bytes).expect("well formed");
    assert!(keys.open(Purpose::Secret, b"user-1", &patched).is_err());
}

#[test]
fn rotation_keeps_old_blobs_readable_and_rewrap_moves_them() {
    let mut keys = VaultKeys::generate();
    let old = keys.seal_kyc(b"user-1", &record(None)).expect("seals");
    let secret = keys
        .seal(Purpose::TotpSecret, b"user-1/totp", b"totp secret")
        .expect("seals");

    assert_eq!(keys.add_kek().expect("rotates"), KekId(2));
    assert_eq!(keys.current_kek_id(), KekId(2));
    assert!(keys.open_kyc(b"user-1", &old).expect("old blob opens") == record(None));
    let new = keys.seal_kyc(b"user-2", &record(None)).expect("seals");
    assert_eq!(new.kek_id(), KekId(2));

    let rewrapped = keys
        .rewrap(Purpose::KycRecord, b"user-1", &old)
        .expect("rewraps");
    let secret2 = keys
        .rewrap(Purpose::TotpSecret, b"user-1/totp", &secret)
        .expect("rewraps");
    assert_eq!(rewrapped.kek_id(), KekId(2));
    // The ciphertext (and its nonce) is untouched; only the wrapped key changed.
    let (a, b) = (old.to_bytes(), rewrapped.to_bytes());
    assert_eq!(a.len(), b.len());
    let data_nonce_at = BLOB_HEADER_LEN - 4 - 24;
    assert_eq!(a[data_nonce_at..], b[data_nonce_at..]);
    assert_ne!(a[..data_nonce_at], b[..data_nonce_at]);

    keys.remove_kek(KekId(1)).expect("removes the retired kek");
    assert_eq!(keys.kek_ids(), vec![KekId(2)]);
    assert!(keys.open_kyc(b"user-1", &rewrapped).expect("opens") == record(None));
    assert_eq!(
        &keys
            .open(Purpose::TotpSecret, b"user-1/totp", &secret2)
            .expect("opens")[..],
        b"totp secret"
    );
    assert_eq!(
        keys.open_kyc(b"user-1", &old),
        Err(OpenError::UnknownKek { kek_id: KekId(1) })
    );
    assert_eq!(
        keys.remove_kek(KekId(2)),
        Err(RotateError::RemoveCurrent { kek_id: KekId(2) })
    );
    assert_eq!(
        keys.remove_kek(KekId(1)),
        Err(RotateError::UnknownKek { kek_id: KekId(1) })
    );
    // Ids are never reused.
    assert_eq!(keys.add_kek().expect("rotates"), KekId(3));
}

#[test]
fn rotation_through_the_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    let keys = VaultKeys::generate();
    keys.write_new(&path).expect("writes");
    let blob = keys
        .seal(Purpose::CoordinatorIdentity, b"coordinator", &[9; 32])
        .expect("seals");

    // The rotation command: load, add a KEK, replace the file.
    let mut rotated = VaultKeys::load(&path).expect("loads");
    rotated.add_kek().expect("rotates");
    rotated.replace_file(&path).expect("replaces");
    let loaded = VaultKeys::load(&path).expect("loads");
    assert_eq!(loaded.kek_ids(), vec![KekId(1), KekId(2)]);
    assert_eq!(loaded.key_set_id(), keys.key_set_id());
    let rewrapped = loaded
        .rewrap(Purpose::CoordinatorIdentity, b"coordinator", &blob)
        .expect("rewraps");

    let mut pruned = loaded;
    pruned.remove_kek(KekId(1)).expect("removes");
    pruned.replace_file(&path).expect("replaces");
    let loaded = VaultKeys::load(&path).expect("loads");
    assert_eq!(
        &loaded
            .open(Purpose::CoordinatorIdentity, b"coordinator", &rewrapped)
            .expect("opens")[..],
        &[9; 32]
    );
    // Nothing but the key file is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vault.keys")]);
}

#[cfg(unix)]
#[test]
fn key_file_is_private_and_never_overwritten_by_write_new() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    let keys = VaultKeys::generate();
    keys.write_new(&path).expect("writes");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let before = std::fs::read(&path).expect("reads");
    let other = VaultKeys::generate();
    assert!(matches!(
        other.write_new(&path),
        Err(KeyFileError::Exists { .. })
    ));
    assert!(matches!(
        other.replace_file(&path),
        Err(KeyFileError::DifferentKeySet { .. })
    ));
    assert_eq!(std::fs::read(&path).expect("reads"), before);

    keys.replace_file(&path).expect("replaces");
    assert_eq!(mode(&path), 0o600);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = VaultKeys::load(&path).expect_err("world-readable key file is refused");
    assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
    assert!(err.to_string().contains("chmod 600"));
}

#[test]
fn a_wrong_or_damaged_key_file_fails_cleanly() {
    let keys = VaultKeys::generate();
    let other = VaultKeys::generate();
    let blob = keys.seal_kyc(b"user-1", &record(None)).expect("seals");
    let err = other
        .open_kyc(b"user-1", &blob)
        .expect_err("other key file");
    assert!(matches!(err, OpenError::WrongKeySet { .. }));
    assert!(err.to_string().contains(&keys.key_set_id().to_string()));

    let bytes = keys.to_bytes();
    assert_eq!(
        VaultKeys::from_bytes(b"not a key file").expect_err("bad magic"),
        ParseKeyFileError::BadMagic
    );
    assert!(matches!(
        VaultKeys::from_bytes(&bytes[..bytes.len() - 1]),
        Err(ParseKeyFileError::Length { .. })
    ));
    // A damaged KEK byte is caught by the check value, not silently used.
    let mut damaged = bytes.to_vec();
    damaged[60] ^= 1;
    assert_eq!(
        VaultKeys::from_bytes(&damaged).expect_err("damaged"),
        ParseKeyFileError::Corrupt
    );
    let reloaded = VaultKeys::from_bytes(&bytes).expect("decodes");
    assert!(reloaded.open_kyc(b"user-1", &blob).expect("opens") == record(None));

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.keys");
    assert!(matches!(
        VaultKeys::load(&missing),
        Err(KeyFileError::Io { .. })
    ));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let keys = VaultKeys::generate();
    let key_hex = hex_lower(&keys.to_bytes()[22..]);
    let debug = format!("{keys:?}");
    assert!(debug.contains("<redacted>"));
    for chunk in key_hex.as_bytes().chunks(16) {
        assert!(!debug.contains(std::str::from_utf8(chunk).expect("hex")));
    }
    let rec = record(Some(vec![1, 2, 3]));
    assert_no_personal_data(&format!("{rec:?}"));
    let blob = keys.seal_kyc(b"user-1", &rec).expect("seals");
    assert_no_personal_data(&format!("{blob:?}"));
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn kyc_rules_are_enforced_without_echoing_data() {
    let keys = VaultKeys::generate();
    let mut long = record(None);
    long.full_name = NAME.repeat(100);
    let err = keys.seal_kyc(b"u", &long).expect_err("too long");
    assert!(matches!(
        err,
        SealError::Kyc(KycError::TooLong {
            field: "full_name",
            ..
        })
    ));
    assert_no_personal_data(&err.to_string());

    let big = record(Some(vec![0; MAX_IMAGE_BYTES + 1]));
    assert!(matches!(
        keys.seal_kyc(b"u", &big),
        Err(SealError::Kyc(KycError::ImageTooLarge { index: 0, .. }))
    ));
    let mut bad_date = record(None);
    bad_date.date_of_birth = "14/03/1987".to_owned();
    let err = keys.seal_kyc(b"u", &bad_date).expect_err("bad date");
    assert_eq!(err, SealError::Kyc(KycError::DateOfBirth));
    assert!(!err.to_string().contains("14/03/1987"));
    let mut many = record(None);
    for _ in 0..5 {
        many.document_images.push(DocumentImage {
            media_type: "image/png".to_owned(),
            bytes: vec![1],
        });
    }
    assert!(matches!(
        keys.seal_kyc(b"u", &many),
        Err(SealError::Kyc(KycError::TooManyImages { count: 5 }))
    ));
    assert_eq!(
        keys.seal(Purpose::Secret, b"", b"x"),
        Err(SealError::RecordId { len: 0 })
    );
    assert_eq!(
        keys.seal(Purpose::Secret, &[b'a'; 256], b"x"),
        Err(SealError::RecordId { len: 256 })
    );
}

#[test]
fn blind_index_matches_equivalent_values_only() {
    let keys = VaultKeys::generate();
    let idx = |k, v: &str| keys.blind_index(k, v).expect("indexes");

    let email = idx(FieldKind::Email, "alice@example.com");
    assert_eq!(email, idx(FieldKind::Email, "  Alice@Example.COM\n"));
    assert_ne!(email, idx(FieldKind::Email, "alice@example.org"));
    assert_eq!(email.to_hex().len(), 32);
    assert!(email.to_hex().bytes().all(|c| c.is_ascii_hexdigit()));

    let doc = idx(FieldKind::DocumentNumber, "X7Q4PL93KD");
    assert_eq!(doc, idx(FieldKind::DocumentNumber, "x7q4-pl93 kd"));
    assert_eq!(doc, idx(FieldKind::DocumentNumber, DOC_NUMBER));
    assert_ne!(doc, idx(FieldKind::DocumentNumber, "X7Q4PL93KE"));

    // Precomposed é versus e + combining acute, case and spacing.
    let name = idx(FieldKind::Name, "José  Álvarez");
    assert_eq!(name, idx(FieldKind::Name, " JOSE\u{301} A\u{301}lvarez "));
    assert_ne!(name, idx(FieldKind::Name, "Jose Alvarez"));

    // Same text, different kinds: unrelated indexes.
    assert_ne!(
        idx(FieldKind::Exact, "alice@example.com"),
        idx(FieldKind::Email, "alice@example.com")
    );
    assert_ne!(
        idx(FieldKind::Exact, "Alice"),
        idx(FieldKind::Exact, "alice")
    );

    // Another key file gives another index; rotation keeps it.
    let other = VaultKeys::generate();
    assert_ne!(
        email,
        other
            .blind_index(FieldKind::Email, "alice@example.com")
            .expect("indexes")
    );
    let mut rotated = VaultKeys::from_bytes(&keys.to_bytes()).expect("copies");
    rotated.add_kek().expect("rotates");
    assert_eq!(
        email,
        rotated
            .blind_index(FieldKind::Email, "alice@example.com")
            .expect("indexes")
    );

    assert_eq!(
        keys.blind_index(FieldKind::DocumentNumber, " - - "),
        Err(BlindIndexError::Empty {
            kind: FieldKind::DocumentNumber
        })
    );
    let err = keys
        .blind_index(FieldKind::Name, &NAME.repeat(400))
        .expect_err("too long");
    assert_no_personal_data(&err.to_string());
    assert_no_personal_data(&email.to_hex());
}

#[test]
fn random_inputs_round_trip_and_stay_bound_to_their_record() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7661_756c74);
    let mut keys = VaultKeys::generate_with_rng(&mut rng);
    let purposes = [
        Purpose::KycRecord,
        Purpose::TotpSecret,
        Purpose::CoordinatorIdentity,
        Purpose::Secret,
    ];
    let mut sealed = Vec::new();
    for round in 0..64 {
        if round == 32 {
            keys.add_kek_with_rng(&mut rng).expect("rotates");
        }
        let mut plain = vec![0u8; (rng.next_u32() % 3000) as usize];
        rng.fill_bytes(&mut plain);
        let mut id = vec![0u8; 1 + (rng.next_u32() % 255) as usize];
        rng.fill_bytes(&mut id);
        let purpose = purposes[(rng.next_u32() % 4) as usize];
        let blob = keys
            .seal_with_rng(&mut rng, purpose, &id, &plain)
            .expect("seals");
        assert_eq!(blob.to_bytes().len(), BLOB_HEADER_LEN + plain.len() + 16);
        let decoded = SealedBlob::from_bytes(&blob.to_bytes()).expect("decodes");
        assert_eq!(decoded, blob);
        assert_eq!(
            &keys.open(purpose, &id, &decoded).expect("opens")[..],
            &plain[..]
        );
        let mut other_id = id.clone();
        other_id[0] ^= 1;
        assert!(keys.open(purpose, &other_id, &decoded).is_err());
        sealed.push((purpose, id, plain, blob));
    }
    for (purpose, id, plain, blob) in &sealed {
        let moved = keys.rewrap(*purpose, id, blob).expect("rewraps");
        assert_eq!(moved.kek_id(), KekId(2));
        assert_eq!(
            &keys.open(*purpose, id, &moved).expect("opens")[..],
            &plain[..]
        );
    }
}

#[test]
fn blob_decoder_rejects_malformed_input_with_reasons() {
    assert_eq!(SealedBlob::from_bytes(b""), Err(ParseBlobError::BadMagic));
    assert_eq!(
        SealedBlob::from_bytes(b"CPVB\x01"),
        Err(ParseBlobError::Truncated { found: 5 })
    );
    let keys = VaultKeys::generate();
    let mut bytes = keys
        .seal(Purpose::Secret, b"r", b"x")
        .expect("seals")
        .to_bytes();
    bytes[4] = 2;
    assert_eq!(
        SealedBlob::from_bytes(&bytes),
        Err(ParseBlobError::UnsupportedVersion { found: 2 })
    );
    bytes[4] = 1;
    bytes[5] = 0x7f;
    assert_eq!(
        SealedBlob::from_bytes(&bytes),
        Err(ParseBlobError::UnknownPurpose { found: 0x7f })
    );
    assert_eq!(
        SealedBlob::from_text("not base64!"),
        Err(ParseBlobError::Base64)
    );
}

#[test]
fn fuzz_entry_point_accepts_seeds_and_mutations() {
    let seeds = fuzzing::corpus_seeds();
    assert_eq!(seeds.len(), 3);
    let keys = fuzzing::fuzz_keys();
    let blob = SealedBlob::from_bytes(&seeds[1]).expect("decodes");
    assert_eq!(
        &keys
            .open(Purpose::TotpSecret, fuzzing::FUZZ_RECORD_ID, &blob)
            .expect("opens")[..],
        b"JBSWY3DPEHPK3PXP"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for seed in &seeds {
        fuzzing::do_test(seed);
        for _ in 0..200 {
            let mut m = seed.clone();
            let i = (rng.next_u32() as usize) % m.len();
            m[i] ^= 1 << (rng.next_u32() % 8);
            fuzzing::do_test(&m);
            fuzzing::do_test(&m[..i]);
        }
    }
    fuzzing::do_test(b"");
    fuzzing::do_test(b"Q1BWQgE=");
}

#[test]
fn a_kyc_blob_that_does_not_hold_a_kyc_record_is_refused() {
    let keys = VaultKeys::generate();
    let blob = keys.seal_kyc(b"user-1", &record(None)).expect("seals");
    let mut plain = keys
        .open(Purpose::KycRecord, b"user-1", &blob)
        .expect("opens")
        .to_vec();
    let decode = Err(OpenError::Decode {
        purpose: Purpose::KycRecord,
    });
    // Unknown schema byte.
    plain[0] = 2;
    let other = keys
        .seal(Purpose::KycRecord, b"user-1", &plain)
        .expect("seals");
    assert_eq!(keys.open_kyc(b"user-1", &other), decode);
    // Trailing bytes after the record.
    plain[0] = 1;
    plain.push(0);
    let other = keys
        .seal(Purpose::KycRecord, b"user-1", &plain)
        .expect("seals");
    assert_eq!(keys.open_kyc(b"user-1", &other), decode);
    plain.pop();
    let same = keys
        .seal(Purpose::KycRecord, b"user-1", &plain)
        .expect("seals");
    assert!(keys.open_kyc(b"user-1", &same).expect("opens") == record(None));
}
