//! `custody-signer approve`: an approver's signature over a withdrawal's approval digest.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Signer;
use custody_threshold::{IdentityCard, SigningDomain};

const DIGEST: &str = "5f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

fn approver(root: &std::path::Path) -> Signer {
    let s = Signer::new(root, "dana");
    s.cmd(&["identity", "create", "--name", "dana"])
        .assert()
        .success();
    s
}

fn card(s: &Signer) -> IdentityCard {
    IdentityCard::decode(&std::fs::read(s.card()).unwrap()).unwrap()
}

#[test]
fn the_signature_verifies_in_the_policy_domain_only_and_the_digest_is_shown_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = approver(dir.path());
    let out = s.cmd(&["approve", "--digest", DIGEST]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let card = card(&s);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("approver: dana ({})", card.fingerprint()),
        "{text}"
    );
    assert_eq!(lines[1], format!("digest: {DIGEST}"));
    let sig_hex = lines[2]
        .strip_prefix("signature: ")
        .expect("signature line");
    let sig: [u8; 64] = hex::decode(sig_hex).unwrap().try_into().unwrap();
    let digest = hex::decode(DIGEST).unwrap();
    assert!(card.verify_in_domain(SigningDomain::Policy, &digest, &sig));
    assert!(!card.verify_in_domain(SigningDomain::AirgapEnvelope, &digest, &sig));
    let mut other = digest.clone();
    other[0] ^= 1;
    assert!(!card.verify_in_domain(SigningDomain::Policy, &other, &sig));
}

#[test]
fn json_output_carries_fingerprint_digest_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let s = approver(dir.path());
    let records = s.json(&["approve", "--digest", DIGEST]);
    assert_eq!(records[0]["type"], "approval-request");
    assert_eq!(records[1]["type"], "approval");
    assert_eq!(records[1]["data"]["digest"], DIGEST);
    assert_eq!(
        records[1]["data"]["fingerprint"],
        card(&s).fingerprint().to_string()
    );
    assert_eq!(records[1]["data"]["signature"].as_str().unwrap().len(), 128);
}

#[test]
fn a_digest_that_is_not_32_bytes_of_hex_is_an_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let s = approver(dir.path());
    for bad in ["abcd", "zz", &DIGEST[..62]] {
        let out = s.cmd(&["approve", "--digest", bad]).assert().code(2);
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains("--digest"), "{err}");
        assert!(out.get_output().stdout.is_empty());
    }
}

#[test]
fn a_wrong_passphrase_signs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = approver(dir.path());
    std::fs::write(&s.pass, "not the passphrase\n").unwrap();
    let out = s.cmd(&["approve", "--digest", DIGEST]).assert().code(2);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains("signature:"), "{stdout}");
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("wrong passphrase"), "{err}");
}
