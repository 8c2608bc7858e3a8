//! Regenerates the committed corpus and negative vectors of the `custody-policy` targets
//! (`policy_document`, `signed_policy`, `decision`) from fixed seeds.
//!
//! Run by hand after a format change:
//! `cargo test -p custody-fuzz --test generate_policy_corpus -- --ignored`.

use std::path::PathBuf;

use custody_policy::{
    Action, AdminQuorum, Approval, Decision, Network, Outcome, PolicyDocument, Rule, SignedPolicy,
    WhitelistEntry,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn objects() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let admin = Identity::generate("ops", &mut rng).expect("name");
    let second = Identity::generate("risk", &mut rng).expect("name");
    let coordinator = Identity::generate("coordinator", &mut rng).expect("name");
    let doc = PolicyDocument {
        version: 3,
        network: Network::Bitcoin,
        effective_from: 1_800_000_000,
        per_transaction_limit_sat: 100_000_000,
        admins: AdminQuorum {
            threshold: 2,
            admins: vec![admin.card(), second.card()],
        },
        whitelist: vec![
            WhitelistEntry {
                address: "bc1qexample".into(),
                active_from: 1_800_172_800,
            },
            WhitelistEntry {
                address: "bc1pcold".into(),
                active_from: 1_800_000_000,
            },
        ],
        rules: vec![
            Rule {
                asset: "BTC".into(),
                min_amount_sat: 0,
                max_amount_sat: 10_000_000,
                action: Action::Allow { approvals: 1 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount_sat: 10_000_001,
                max_amount_sat: 100_000_000,
                action: Action::Allow { approvals: 2 },
            },
        ],
    };
    let mut signed = SignedPolicy::new(doc.clone()).expect("valid");
    signed.sign(&admin, &mut rng);
    signed.sign(&second, &mut rng);
    let mut decision = Decision {
        policy_hash: doc.hash(),
        withdrawal_id: "wd-0001".into(),
        transaction_digest: vec![0xab; 32],
        outcome: Outcome::Approved,
        hold_until: 1_800_086_400,
        approvals: Vec::new(),
        coordinator_signature: [0; 64],
    };
    let digest = decision.withdrawal_digest();
    decision
        .approvals
        .push(Approval::sign(&admin, &digest, &mut rng));
    decision.sign(&coordinator, &mut rng);
    (doc.encode(), signed.encode(), decision.encode())
}

fn write(dir: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("corpus").join(dir);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn negative(ty: &str, failure: &str, expect: &str, bytes: &[u8]) {
    let path = root()
        .join("../test-vectors/negative")
        .join(format!("{ty}-{failure}"));
    let hex: Vec<String> = bytes.chunks(32).map(hex::encode).collect();
    std::fs::write(
        path,
        format!("type: {ty}\nexpect: {expect}\n\n{}\n", hex.join("\n")),
    )
    .expect("write vector");
}

#[test]
#[ignore = "regenerates the committed policy corpus and negative vectors; run by hand"]
fn regenerate_policy_corpus() {
    let (doc, signed, decision) = objects();
    for (ty, bytes) in [
        ("policy_document", &doc),
        ("signed_policy", &signed),
        ("decision", &decision),
    ] {
        write(ty, "valid-example", bytes);
        write(ty, "truncated-half", &bytes[..bytes.len() / 2]);
        write(ty, "truncated-header", &bytes[..7]);
        let mut trailing = bytes.clone();
        trailing.push(0);
        write(ty, "trailing-byte", &trailing);
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 3;
        flipped[mid] ^= 0x40;
        write(ty, "flipped-byte", &flipped);

        negative(
            ty,
            "truncated",
            "input ends inside field",
            &bytes[..bytes.len() - 10],
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        negative(ty, "bad_magic", "not a CoinPort policy encoding", &magic);
        let mut version = bytes.clone();
        version[4] = 2;
        negative(ty, "wrong_version", "version 2", &version);
        negative(ty, "trailing_bytes", "trailing bytes", &trailing);
    }
    // Each decoder refuses the others' encodings.
    negative(
        "policy_document",
        "wrong_type",
        "expected a policy document, found type byte 0x02",
        &signed,
    );
    negative(
        "decision",
        "wrong_type",
        "expected a decision, found type byte 0x01",
        &doc,
    );
}
