//! Pins the wire bytes of the worked example in `docs/formats/policy.md`, so a format change
//! is a visible diff.

use custody_policy::{
    Action, AdminQuorum, Network, PolicyDocument, Rule, SignedPolicy, WhitelistEntry,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn example() -> (PolicyDocument, Identity) {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let admin = Identity::generate("ops", &mut rng).expect("valid name");
    let doc = PolicyDocument {
        version: 1,
        network: Network::Bitcoin,
        effective_from: 1_800_000_000,
        per_transaction_limit_sat: 100_000_000,
        admins: AdminQuorum {
            threshold: 1,
            admins: vec![admin.card()],
        },
        whitelist: vec![WhitelistEntry {
            address: "bc1qexample".into(),
            active_from: 1_800_172_800,
        }],
        rules: vec![Rule {
            asset: "BTC".into(),
            min_amount_sat: 0,
            max_amount_sat: 100_000_000,
            action: Action::Allow { approvals: 2 },
        }],
    };
    (doc, admin)
}

const DOCUMENT_HEX: &str = concat!(
    // header: CPPL, version 1, type 01 (policy document)
    "4350504c0101",
    // policy version 1
    "0000000000000001",
    // network: bitcoin
    "00",
    // effective from 1800000000
    "000000006b49d200",
    // per-transaction limit 100000000 sat
    "0000000005f5e100",
    // admin threshold 1
    "0001",
    // 1 admin card
    "0001",
    // card length 111
    "0000006f",
    // card header: CPTH, version 1, type 01 (identity card)
    "435054480101",
    // name "ops"
    "000000036f7073",
    // BIP340 signing key
    "5f48fe9dfcc2a574196470e48a21e928b8d4a6416e59bee9bb6ac6c7edb1e375",
    // age recipient
    "0000003e616765317968777065363566386676756a306b616a61367a6b793379356a656561796d366c386b676a753472646374676835793475766771376a68723265",
    // 1 whitelist entry
    "0001",
    // address "bc1qexample"
    "0000000b626331716578616d706c65",
    // active from 1800172800
    "000000006b4c7500",
    // 1 rule
    "0001",
    // asset "BTC"
    "00000003425443",
    // minimum 0 sat
    "0000000000000000",
    // maximum 100000000 sat
    "0000000005f5e100",
    // allow with 2 approvals
    "010002",
);
const POLICY_HASH_HEX: &str = "f7879bc5d8ea2544d13c74198e96b1ecd9a3e712a2774d225b2bbae9a299865e";

#[test]
fn example_document_bytes_and_hash_are_pinned() {
    let (doc, _) = example();
    let bytes = doc.encode();
    assert_eq!(hex::encode(&bytes), DOCUMENT_HEX);
    assert_eq!(hex::encode(doc.hash()), POLICY_HASH_HEX);
    assert_eq!(PolicyDocument::decode(&bytes).as_ref(), Ok(&doc));
}

#[test]
fn example_signed_policy_verifies_against_the_pinned_admin() {
    let (doc, admin) = example();
    let quorum = doc.admins.clone();
    let mut sp = SignedPolicy::new(doc).expect("valid document");
    sp.sign(&admin, &mut ChaCha20Rng::seed_from_u64(1));
    let bytes = sp.encode();
    // Header, u32 document length, document, u16 count, 32-byte key, 64-byte signature.
    assert_eq!(&bytes[..6], b"CPPL\x01\x02");
    let decoded = SignedPolicy::decode(&bytes).expect("round trip");
    assert!(decoded.verify(&quorum).is_ok());
}
