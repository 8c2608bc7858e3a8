//! Runs every negative vector in `test-vectors/negative/` (format: that directory's
//! `README.md`) through its decoder and checks the rejection and its message.

mod common;

use common::{files_in, negative_dir};

/// A parsed vector file.
struct Vector {
    name: String,
    ty: String,
    expect: String,
    bytes: Vec<u8>,
}

fn parse(name: &str, text: &str) -> Vector {
    let (head, body) = text
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{name}: no blank line after the headers"));
    let mut ty = None;
    let mut expect = None;
    for line in head.lines() {
        let (key, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{name}: header line {line:?} is not `key: value`"));
        match key {
            "type" => ty = Some(value.to_owned()),
            "expect" => expect = Some(value.to_owned()),
            "comment" => {}
            other => panic!("{name}: unknown header {other:?}"),
        }
    }
    let hex: String = body.split_whitespace().collect();
    Vector {
        name: name.to_owned(),
        ty: ty.unwrap_or_else(|| panic!("{name}: no `type:` header")),
        expect: expect.unwrap_or_else(|| panic!("{name}: no `expect:` header")),
        bytes: hex::decode(&hex).unwrap_or_else(|e| panic!("{name}: bad hex: {e}")),
    }
}

fn vectors() -> Vec<Vector> {
    files_in(&negative_dir())
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_owned();
            let text = std::fs::read_to_string(path).expect("read vector");
            parse(&name, &text)
        })
        .collect()
}

#[test]
fn every_negative_vector_is_rejected_with_its_message() {
    let mut ran = 0;
    let mut types = std::collections::BTreeSet::new();
    for vector in vectors() {
        let Some(result) = custody_fuzz::decode(&vector.ty, &vector.bytes) else {
            panic!("{}: unknown type {:?}", vector.name, vector.ty);
        };
        match result {
            Ok(()) => panic!("{}: the {} decoder accepted it", vector.name, vector.ty),
            Err(e) => assert!(
                e.contains(&vector.expect),
                "{}: the error {e:?} does not contain {:?}",
                vector.name,
                vector.expect
            ),
        }
        // The fuzz harness takes the same input without panicking.
        let run = custody_fuzz::TARGETS
            .iter()
            .find(|(t, _)| *t == vector.ty)
            .map(|(_, run)| run)
            .expect("every decoder has a target");
        run(&vector.bytes);
        types.insert(vector.ty);
        ran += 1;
    }
    assert!(ran >= 20, "only {ran} negative vectors ran");
    // Every target with a plain decoder (all but the QR and PSBT-parser targets) has
    // vectors.
    let decoders: std::collections::BTreeSet<String> = custody_fuzz::TARGETS
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| custody_fuzz::decode(t, &[]).is_some())
        .map(str::to_owned)
        .collect();
    assert!(decoders.contains("envelope") && decoders.contains("psbt_file"));
    assert_eq!(types, decoders, "every decoder has negative vectors");
}

#[test]
fn vector_names_say_what_fails() {
    for vector in vectors() {
        assert!(
            vector.name.starts_with(&format!("{}-", vector.ty)),
            "{}: file name does not start with its type {:?}",
            vector.name,
            vector.ty
        );
    }
}

/// Regression test for a decoder panic found while writing these vectors:
/// `KeyShare::from_secret_bytes` mapped the participant index to a FROST identifier with
/// `Identifier::try_from(index).expect(..)` before checking it, so index 0 (a well-framed
/// input) panicked instead of returning a `DecodeError`.
#[test]
fn key_share_with_participant_index_zero_is_rejected() {
    let base = vectors()
        .into_iter()
        .find(|v| v.name == "key_share-participant_not_in_group")
        .expect("vector present");
    // The index is the u16 just before the 32-byte secret share at the end.
    let mut bytes = base.bytes;
    let at = bytes.len() - 34;
    bytes[at..at + 2].copy_from_slice(&[0, 0]);
    let err = custody_threshold::KeyShare::from_secret_bytes(&bytes)
        .expect_err("participant 0 does not exist");
    assert!(err.to_string().contains("participant index"), "{err}");
}

/// Regression test for a non-canonical point encoding that every point field accepted: the
/// secp256k1 group decoding used by ZF FROST (`k256::EncodedPoint`) also accepts the SEC1
/// "compact" tag 0x05 followed by x, and decodes it as the even-y point with that x. So
/// `05 || x` and `02 || x` decoded to the same group key (or commitment) and the round trip
/// changed the bytes; for an odd-y point, `05 || x` silently decoded to its negation. The
/// decoders now require the re-encoding to equal the input.
#[test]
fn compact_point_prefix_is_rejected() {
    // Offsets of the prefix the vectors set to 0x06 (see docs/formats/threshold.md): the
    // first verifying share of a group key (header 6 + network 1 + chain code 32 +
    // threshold 2 + key 33 + count 2 + index 2) and the first binding commitment of a batch
    // (header 6 + group key 33 + signer 2 + count 2 + seed id 8 + counter 8 + hiding 33).
    for (name, decode, at) in [
        ("group_key-bad_point_prefix", "group_key", 78),
        ("commitment_batch-bad_point_prefix", "commitment_batch", 92),
    ] {
        let base = vectors()
            .into_iter()
            .find(|v| v.name == name)
            .expect("vector present");
        assert_eq!(base.bytes[at], 0x06, "{name}: the prefix is where expected");
        let mut bytes = base.bytes;
        bytes[at] = 0x05;
        let result = custody_fuzz::decode(decode, &bytes).expect("known type");
        assert!(
            result.is_err(),
            "{decode} accepts 05 || x: {}",
            hex::encode(&bytes)
        );
    }
}
