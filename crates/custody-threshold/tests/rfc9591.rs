//! RFC 9591 FROST(secp256k1, SHA-256) vectors, checked against the `frost-secp256k1` crate
//! with frost-core's own vector checkers.
//!
//! The files live in `test-vectors/rfc9591/` (see the README there for where they come from).
//! Each checker re-runs key generation, both signing rounds and aggregation from the vector's
//! inputs and panics on the first value that differs from the published one. The negative
//! tests change one byte of a published output and require the checker to reject it, so a
//! checker that accepted anything would make this file fail.

use std::panic::{catch_unwind, AssertUnwindSafe};

use frost_secp256k1::Secp256K1Sha256;
use serde_json::Value;

const SIGNING: &str = include_str!("../../../test-vectors/rfc9591/frost-secp256k1-sha256.json");
const SIGNING_BIG_IDENTIFIER: &str =
    include_str!("../../../test-vectors/rfc9591/frost-secp256k1-sha256-big-identifier.json");
const DKG: &str = include_str!("../../../test-vectors/rfc9591/frost-secp256k1-sha256-dkg.json");

/// The RFC 9591 (Appendix E.5) group signature over the message "test".
const RFC9591_SIGNATURE: &str = "024c1ad4e031872661fa6ebd05dfc7fb30db08b38d79f0edbc82051ae931381bc6a46881e25c7989d3816eae32074f1ab0d49ee908a59713ed5284c6bade7cfb02";

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).expect("vector file is valid JSON")
}

fn check_sign(vectors: &Value) {
    frost_core::tests::vectors::check_sign_with_test_vectors::<Secp256K1Sha256>(vectors);
}

fn check_dkg(vectors: &Value) {
    frost_core::tests::vectors_dkg::check_dkg_keygen::<Secp256K1Sha256>(vectors);
}

/// Runs `check` and returns the panic message if it panicked, `None` if it passed.
fn panic_message(check: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(check)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "<non-string panic payload>".to_owned()),
    )
}

/// Replaces the last hex digit of `hex` with a different one.
fn flip_last_hex_digit(hex: &str) -> String {
    let mut out = hex.to_owned();
    let last = out.pop().expect("hex string is not empty");
    out.push(if last == '0' { '1' } else { '0' });
    out
}

fn mutate_str(value: &mut Value, edit: impl FnOnce(&str) -> String) {
    let old = value.as_str().expect("field is a string").to_owned();
    let new = edit(&old);
    assert_ne!(old, new, "mutation must change the value");
    *value = Value::String(new);
}

/// Asserts the checker rejected the input through one of its comparisons (an `assert!` or
/// `assert_eq!`), not by failing to parse it.
fn assert_rejected_by_comparison(what: &str, message: Option<String>) {
    let message = message.unwrap_or_else(|| panic!("checker accepted the {what}"));
    assert!(
        message.contains("assertion"),
        "checker rejected the {what} for another reason: {message}"
    );
}

#[test]
fn rfc9591_signing_vector() {
    let vectors = parse(SIGNING);
    assert_eq!(vectors["config"]["name"], "FROST(secp256k1, SHA-256)");
    assert_eq!(vectors["final_output"]["sig"], RFC9591_SIGNATURE);
    let signers = vectors["round_two_outputs"]["outputs"]
        .as_array()
        .expect("round two outputs")
        .len();
    assert_eq!(signers, 2, "the RFC vector has signers 1 and 3");
    check_sign(&vectors);
}

#[test]
fn rfc9591_signing_vector_big_identifiers() {
    let vectors = parse(SIGNING_BIG_IDENTIFIER);
    assert_eq!(vectors["config"]["name"], "FROST(secp256k1, SHA-256)");
    let signers = vectors["round_two_outputs"]["outputs"]
        .as_array()
        .expect("round two outputs")
        .len();
    assert_eq!(signers, 3);
    check_sign(&vectors);
}

#[test]
fn frost_dkg_vector() {
    let vectors = parse(DKG);
    assert_eq!(vectors["config"]["name"], "FROST(secp256k1, SHA-256)");
    assert_eq!(vectors["config"]["MAX_PARTICIPANTS"], 3);
    check_dkg(&vectors);
}

#[test]
fn checker_rejects_a_changed_signature_share() {
    let mut vectors = parse(SIGNING);
    mutate_str(
        &mut vectors["round_two_outputs"]["outputs"][0]["sig_share"],
        flip_last_hex_digit,
    );
    assert_rejected_by_comparison(
        "changed signature share",
        panic_message(|| check_sign(&vectors)),
    );
}

#[test]
fn checker_rejects_a_changed_group_signature() {
    let mut vectors = parse(SIGNING);
    mutate_str(&mut vectors["final_output"]["sig"], flip_last_hex_digit);
    assert_rejected_by_comparison(
        "changed group signature",
        panic_message(|| check_sign(&vectors)),
    );
}

#[test]
fn checker_rejects_a_changed_binding_factor() {
    let mut vectors = parse(SIGNING_BIG_IDENTIFIER);
    mutate_str(
        &mut vectors["round_one_outputs"]["outputs"][1]["binding_factor"],
        flip_last_hex_digit,
    );
    assert_rejected_by_comparison(
        "changed binding factor",
        panic_message(|| check_sign(&vectors)),
    );
}

#[test]
fn dkg_checker_rejects_a_changed_group_key() {
    let mut vectors = parse(DKG);
    // Swapping the compressed-point prefix negates the key: still a valid point, wrong value.
    mutate_str(&mut vectors["inputs"]["verifying_key"], |key| {
        let (prefix, x) = key.split_at(2);
        let flipped = if prefix == "02" { "03" } else { "02" };
        format!("{flipped}{x}")
    });
    assert_rejected_by_comparison(
        "changed DKG group key",
        panic_message(|| check_dkg(&vectors)),
    );
}
