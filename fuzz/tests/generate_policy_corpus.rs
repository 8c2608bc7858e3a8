//! Regenerates the committed corpus and negative vectors of the `custody-policy` targets
//! (`policy_document`, `signed_policy`, `decision`) from fixed seeds.
//!
//! Run by hand after a format change:
//! `cargo test -p custody-fuzz --test generate_policy_corpus -- --ignored`.
//!
//! The negative vectors reach every error the three decoders can return: each header
//! error, a truncation, every length and count bound, every field with a value the
//! decoder refuses, every document invariant a decoded document can break, and trailing
//! bytes. They are made by re-encoding a real object field by field (checked against the
//! crate's encoder) and replacing one named field, or by encoding an invalid value.

use std::path::PathBuf;

use custody_policy::{
    Action, AdminQuorum, Approval, Decision, Network, Outcome, PolicyDocument, Rule, SignedPolicy,
    TimeWindow, TransactionLimit, VelocityLimit, WhitelistEntry, MAX_ADDRESS_LEN, MAX_ADMINS,
    MAX_APPROVALS, MAX_APPROVERS, MAX_ASSET_LEN, MAX_CARD_LEN, MAX_DOCUMENT_LEN, MAX_LIMITS,
    MAX_RULES, MAX_SIGNATURES, MAX_TRANSACTION_DIGEST_LEN, MAX_VELOCITY_LIMITS, MAX_WHITELIST,
    MAX_WITHDRAWAL_ID_LEN,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Objects {
    doc: PolicyDocument,
    minimal: PolicyDocument,
    signed: SignedPolicy,
    decision: Decision,
    rejected: Decision,
}

fn objects() -> Objects {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let admin = Identity::generate("ops", &mut rng).expect("name");
    let second = Identity::generate("risk", &mut rng).expect("name");
    let coordinator = Identity::generate("coordinator", &mut rng).expect("name");
    let alice = Identity::generate("alice", &mut rng).expect("name");
    let bob = Identity::generate("bob", &mut rng).expect("name");
    let doc = PolicyDocument {
        version: 3,
        network: Network::Bitcoin,
        announced_at: 1_799_827_200,
        effective_from: 1_800_000_000,
        change_delay_secs: 172_800,
        admins: AdminQuorum {
            threshold: 2,
            admins: vec![admin.card(), second.card()],
        },
        coordinator: coordinator.card(),
        approvers: vec![alice.card(), bob.card()],
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
        limits: vec![
            TransactionLimit {
                asset: "BTC".into(),
                max_amount: 100_000_000,
            },
            TransactionLimit {
                asset: "ERC20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".into(),
                max_amount: 1_000_000_000_000,
            },
        ],
        rules: vec![
            Rule {
                asset: "BTC".into(),
                min_amount: 0,
                max_amount: 10_000_000,
                window: None,
                action: Action::Allow { approvals: 1 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount: 10_000_001,
                max_amount: 100_000_000,
                window: Some(TimeWindow {
                    days: TimeWindow::FRIDAY,
                    start_minute: 22 * 60,
                    end_minute: 2 * 60,
                }),
                action: Action::Deny,
            },
            Rule {
                asset: "BTC".into(),
                min_amount: 10_000_001,
                max_amount: 100_000_000,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
        ],
        velocity: vec![VelocityLimit {
            asset: "BTC".into(),
            window_secs: 86_400,
            max_total: 200_000_000,
            max_count: 10,
        }],
    };
    let minimal = PolicyDocument {
        version: 1,
        network: Network::Regtest,
        announced_at: 0,
        effective_from: 0,
        change_delay_secs: 0,
        admins: AdminQuorum {
            threshold: 1,
            admins: vec![admin.card()],
        },
        coordinator: coordinator.card(),
        approvers: Vec::new(),
        whitelist: Vec::new(),
        limits: Vec::new(),
        rules: Vec::new(),
        velocity: Vec::new(),
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
        .push(Approval::sign(&alice, &digest, &mut rng));
    decision.sign(&coordinator, &mut rng);
    let mut rejected = decision.clone();
    rejected.outcome = Outcome::Rejected;
    rejected.approvals.clear();
    rejected.sign(&coordinator, &mut rng);
    Objects {
        doc,
        minimal,
        signed,
        decision,
        rejected,
    }
}

/// An encoding as named fields, so a vector can replace exactly one of them.
struct Fields(Vec<(String, Vec<u8>)>);

impl Fields {
    fn new(header: &[u8]) -> Self {
        Fields(vec![("header".into(), header.to_vec())])
    }

    fn push(&mut self, name: impl Into<String>, bytes: &[u8]) {
        self.0.push((name.into(), bytes.to_vec()));
    }

    /// A `u32` length field `<name> length` and the bytes `<name>`.
    fn var(&mut self, name: &str, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("short field");
        self.push(format!("{name} length"), &len.to_be_bytes());
        self.push(name, bytes);
    }

    fn count(&mut self, name: &str, n: usize) {
        let n = u16::try_from(n).expect("short list");
        self.push(name, &n.to_be_bytes());
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(_, b)| b.clone()).collect()
    }

    /// The encoding with field `name` replaced by `value`.
    fn with(&self, name: &str, value: &[u8]) -> Vec<u8> {
        assert!(
            self.0.iter().any(|(n, _)| n == name),
            "no field named {name:?}"
        );
        self.0
            .iter()
            .flat_map(|(n, b)| if n == name { value.to_vec() } else { b.clone() })
            .collect()
    }

    /// The encoding up to field `name`, which is replaced by `value`, and nothing after it
    /// (the decoder must fail at that field, before reading on).
    fn cut_at(&self, name: &str, value: &[u8]) -> Vec<u8> {
        let at = self
            .0
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no field named {name:?}"));
        let mut out: Vec<u8> = self.0[..at].iter().flat_map(|(_, b)| b.clone()).collect();
        out.extend_from_slice(value);
        out
    }
}

fn u16b(v: usize) -> Vec<u8> {
    u16::try_from(v).expect("u16").to_be_bytes().to_vec()
}

fn u32b(v: usize) -> Vec<u8> {
    u32::try_from(v).expect("u32").to_be_bytes().to_vec()
}

fn document_fields(doc: &PolicyDocument) -> Fields {
    let mut f = Fields::new(b"CPPL\x02\x01");
    f.push("version", &doc.version.to_be_bytes());
    f.push(
        "network",
        &[match doc.network {
            Network::Bitcoin => 0,
            Network::Testnet => 1,
            Network::Signet => 2,
            Network::Regtest => 3,
            _ => 4,
        }],
    );
    f.push("announced at", &doc.announced_at.to_be_bytes());
    f.push("effective from", &doc.effective_from.to_be_bytes());
    f.push("change delay", &doc.change_delay_secs.to_be_bytes());
    f.push("admin threshold", &doc.admins.threshold.to_be_bytes());
    f.count("admin count", doc.admins.admins.len());
    for (i, c) in doc.admins.admins.iter().enumerate() {
        f.var(&format!("admin card {i}"), &c.encode());
    }
    f.var("coordinator card", &doc.coordinator.encode());
    f.count("approver count", doc.approvers.len());
    for (i, c) in doc.approvers.iter().enumerate() {
        f.var(&format!("approver card {i}"), &c.encode());
    }
    f.count("whitelist count", doc.whitelist.len());
    for (i, e) in doc.whitelist.iter().enumerate() {
        f.var(&format!("address {i}"), e.address.as_bytes());
        f.push(format!("active from {i}"), &e.active_from.to_be_bytes());
    }
    f.count("limit count", doc.limits.len());
    for (i, l) in doc.limits.iter().enumerate() {
        f.var(&format!("limit asset {i}"), l.asset.as_bytes());
        f.push(format!("limit amount {i}"), &l.max_amount.to_be_bytes());
    }
    f.count("rule count", doc.rules.len());
    for (i, r) in doc.rules.iter().enumerate() {
        f.var(&format!("rule asset {i}"), r.asset.as_bytes());
        f.push(format!("rule minimum {i}"), &r.min_amount.to_be_bytes());
        f.push(format!("rule maximum {i}"), &r.max_amount.to_be_bytes());
        match r.window {
            None => f.push(format!("rule window flag {i}"), &[0]),
            Some(w) => {
                f.push(format!("rule window flag {i}"), &[1]);
                f.push(format!("rule window days {i}"), &[w.days]);
                f.push(
                    format!("rule window start {i}"),
                    &w.start_minute.to_be_bytes(),
                );
                f.push(format!("rule window end {i}"), &w.end_minute.to_be_bytes());
            }
        }
        let (action, approvals) = match r.action {
            Action::Deny => (0u8, 0u16),
            Action::Allow { approvals } => (1, approvals),
        };
        f.push(format!("rule action {i}"), &[action]);
        f.push(format!("rule approvals {i}"), &approvals.to_be_bytes());
    }
    f.count("velocity count", doc.velocity.len());
    for (i, v) in doc.velocity.iter().enumerate() {
        f.var(&format!("velocity asset {i}"), v.asset.as_bytes());
        f.push(format!("velocity window {i}"), &v.window_secs.to_be_bytes());
        f.push(format!("velocity total {i}"), &v.max_total.to_be_bytes());
        f.push(
            format!("velocity max count {i}"),
            &v.max_count.to_be_bytes(),
        );
    }
    assert_eq!(f.bytes(), doc.encode(), "field list matches the encoder");
    f
}

fn signed_fields(signed: &SignedPolicy) -> Fields {
    let mut f = Fields::new(b"CPPL\x02\x02");
    f.var("document", &signed.document().encode());
    f.count("signature count", signed.signatures().len());
    for (i, s) in signed.signatures().iter().enumerate() {
        f.push(format!("signing key {i}"), &s.signing_key);
        f.push(format!("signature {i}"), &s.signature);
    }
    assert_eq!(f.bytes(), signed.encode(), "field list matches the encoder");
    f
}

fn decision_fields(d: &Decision) -> Fields {
    let mut f = Fields::new(b"CPPL\x02\x03");
    f.push("policy hash", &d.policy_hash);
    f.var("withdrawal id", d.withdrawal_id.as_bytes());
    f.var("transaction digest", &d.transaction_digest);
    f.push(
        "outcome",
        &[match d.outcome {
            Outcome::Approved => 1,
            Outcome::Rejected => 0,
        }],
    );
    f.push("hold until", &d.hold_until.to_be_bytes());
    f.count("approval count", d.approvals.len());
    for (i, a) in d.approvals.iter().enumerate() {
        f.push(format!("approver key {i}"), &a.approver_key);
        f.push(format!("approval signature {i}"), &a.signature);
    }
    f.push("coordinator signature", &d.coordinator_signature);
    assert_eq!(f.bytes(), d.encode(), "field list matches the encoder");
    f
}

fn write(dir: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("corpus").join(dir);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// Collects the vectors so that each is checked against its decoder before any is
/// written.
#[derive(Default)]
struct Vectors(Vec<(String, String, String, String, Vec<u8>)>);

impl Vectors {
    fn add(&mut self, ty: &str, failure: &str, expect: &str, comment: &str, bytes: Vec<u8>) {
        match custody_fuzz::decode(ty, &bytes).expect("a policy decoder") {
            Ok(()) => panic!("{ty}-{failure}: the decoder accepted it"),
            Err(e) => assert!(
                e.contains(expect),
                "{ty}-{failure}: error {e:?} does not contain {expect:?}"
            ),
        }
        self.0.push((
            ty.into(),
            failure.into(),
            expect.into(),
            comment.into(),
            bytes,
        ));
    }

    /// A document vector: `doc` encoded as is (the encoder does not validate).
    fn invalid_doc(&mut self, failure: &str, expect: &str, comment: &str, doc: &PolicyDocument) {
        self.add(
            "policy_document",
            failure,
            &format!("invalid policy document: {expect}"),
            comment,
            doc.encode(),
        );
    }

    fn write(&self) {
        let dir = root().join("../test-vectors/negative");
        for ty in ["policy_document", "signed_policy", "decision"] {
            for entry in std::fs::read_dir(&dir).expect("read vector dir") {
                let path = entry.expect("dir entry").path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if name.starts_with(&format!("{ty}-")) {
                    std::fs::remove_file(&path).expect("remove old vector");
                }
            }
        }
        for (ty, failure, expect, comment, bytes) in &self.0 {
            let hex: Vec<String> = bytes.chunks(32).map(hex::encode).collect();
            std::fs::write(
                dir.join(format!("{ty}-{failure}")),
                format!(
                    "type: {ty}\nexpect: {expect}\ncomment: {comment}\n\n{}\n",
                    hex.join("\n")
                ),
            )
            .expect("write vector");
            write(ty, &format!("neg-{failure}"), bytes);
        }
    }
}

fn common_vectors(v: &mut Vectors, ty: &str, bytes: &[u8]) {
    v.add(
        ty,
        "truncated",
        "input ends inside field",
        "the last 10 bytes are missing",
        bytes[..bytes.len() - 10].to_vec(),
    );
    v.add(
        ty,
        "truncated_header",
        "input ends inside field type",
        "magic and version only",
        bytes[..5].to_vec(),
    );
    let mut magic = bytes.to_vec();
    magic[0] = b'X';
    v.add(
        ty,
        "bad_magic",
        "not a CoinPort policy encoding",
        "magic XPPL",
        magic,
    );
    let mut version = bytes.to_vec();
    version[4] = 1;
    v.add(
        ty,
        "wrong_version",
        "unsupported format version 1",
        "format version 1, no longer read",
        version,
    );
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    v.add(
        ty,
        "trailing_bytes",
        "1 trailing bytes",
        "one byte after the last field",
        trailing,
    );
}

fn document_vectors(v: &mut Vectors, o: &Objects) {
    let f = document_fields(&o.doc);
    let ty = "policy_document";
    let too_long =
        |v: &mut Vectors, failure: &str, field: &str, what: &str, max: usize, var: bool| {
            let value = if var { u32b(max + 1) } else { u16b(max + 1) };
            v.add(
                ty,
                failure,
                &format!("{what} is {} long, more than the maximum {max}", max + 1),
                &format!("{field} set to {}", max + 1),
                f.cut_at(field, &value),
            );
        };
    too_long(
        v,
        "admin_count_too_large",
        "admin count",
        "admin count",
        MAX_ADMINS,
        false,
    );
    too_long(
        v,
        "admin_card_too_long",
        "admin card 0 length",
        "admin card",
        MAX_CARD_LEN,
        true,
    );
    too_long(
        v,
        "coordinator_card_too_long",
        "coordinator card length",
        "coordinator card",
        MAX_CARD_LEN,
        true,
    );
    too_long(
        v,
        "approver_count_too_large",
        "approver count",
        "approver count",
        MAX_APPROVERS,
        false,
    );
    too_long(
        v,
        "approver_card_too_long",
        "approver card 0 length",
        "approver card",
        MAX_CARD_LEN,
        true,
    );
    too_long(
        v,
        "whitelist_count_too_large",
        "whitelist count",
        "whitelist count",
        MAX_WHITELIST,
        false,
    );
    too_long(
        v,
        "address_too_long",
        "address 0 length",
        "whitelist address",
        MAX_ADDRESS_LEN,
        true,
    );
    too_long(
        v,
        "limit_count_too_large",
        "limit count",
        "limit count",
        MAX_LIMITS,
        false,
    );
    too_long(
        v,
        "limit_asset_too_long",
        "limit asset 0 length",
        "limit asset",
        MAX_ASSET_LEN,
        true,
    );
    too_long(
        v,
        "rule_count_too_large",
        "rule count",
        "rule count",
        MAX_RULES,
        false,
    );
    too_long(
        v,
        "rule_asset_too_long",
        "rule asset 0 length",
        "rule asset",
        MAX_ASSET_LEN,
        true,
    );
    too_long(
        v,
        "velocity_count_too_large",
        "velocity count",
        "velocity limit count",
        MAX_VELOCITY_LIMITS,
        false,
    );
    too_long(
        v,
        "velocity_asset_too_long",
        "velocity asset 0 length",
        "velocity asset",
        MAX_ASSET_LEN,
        true,
    );

    v.add(
        ty,
        "unknown_network",
        "invalid network: unknown byte 9",
        "network byte 09",
        f.with("network", &[9]),
    );
    let garbage_card = |name: &str| {
        let len =
            f.0.iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.len())
                .expect("card");
        let mut card = vec![0u8; len];
        card[..4].copy_from_slice(b"XPTH");
        f.with(name, &card)
    };
    v.add(
        ty,
        "bad_admin_card",
        "invalid admin card",
        "admin card with magic XPTH",
        garbage_card("admin card 0"),
    );
    v.add(
        ty,
        "bad_coordinator_card",
        "invalid coordinator card",
        "coordinator card with magic XPTH",
        garbage_card("coordinator card"),
    );
    v.add(
        ty,
        "bad_approver_card",
        "invalid approver card",
        "approver card with magic XPTH",
        garbage_card("approver card 1"),
    );
    let not_utf8 = |name: &str| {
        let len =
            f.0.iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.len())
                .expect("field");
        f.with(name, &vec![0xff; len])
    };
    v.add(
        ty,
        "address_not_utf8",
        "invalid whitelist address: not UTF-8",
        "address bytes ff",
        not_utf8("address 0"),
    );
    v.add(
        ty,
        "limit_asset_not_utf8",
        "invalid limit asset: not UTF-8",
        "asset bytes ff",
        not_utf8("limit asset 1"),
    );
    v.add(
        ty,
        "rule_asset_not_utf8",
        "invalid rule asset: not UTF-8",
        "asset bytes ff",
        not_utf8("rule asset 2"),
    );
    v.add(
        ty,
        "velocity_asset_not_utf8",
        "invalid velocity asset: not UTF-8",
        "asset bytes ff",
        not_utf8("velocity asset 0"),
    );
    v.add(
        ty,
        "unknown_window_flag",
        "invalid rule window flag: unknown byte 2",
        "window flag 02",
        f.with("rule window flag 0", &[2]),
    );
    v.add(
        ty,
        "unknown_rule_action",
        "invalid rule action: unknown byte 2",
        "action byte 02",
        f.with("rule action 0", &[2]),
    );
    v.add(
        ty,
        "deny_rule_with_approvals",
        "invalid rule approvals: must be 0 for a deny rule",
        "rule 0 turned into deny, approvals still 1",
        f.with("rule action 0", &[0]),
    );

    // Documents that decode field by field but break an invariant.
    let base = &o.doc;
    let mut d = base.clone();
    d.admins.threshold = 3;
    v.invalid_doc(
        "threshold_above_admins",
        "admin quorum 3-of-2 is not valid",
        "threshold 3 with two admins",
        &d,
    );
    let mut d = base.clone();
    d.admins.threshold = 0;
    v.invalid_doc(
        "threshold_zero",
        "admin quorum 0-of-2 is not valid",
        "threshold 0",
        &d,
    );
    let mut d = base.clone();
    d.admins.admins[1] = d.admins.admins[0].clone();
    v.invalid_doc(
        "duplicate_admin",
        &format!("admin {} is listed twice", d.admins.admins[0].fingerprint()),
        "the first admin card twice",
        &d,
    );
    let mut d = base.clone();
    d.approvers[1] = d.approvers[0].clone();
    v.invalid_doc(
        "duplicate_approver",
        &format!("approver {} is listed twice", d.approvers[0].fingerprint()),
        "the first approver card twice",
        &d,
    );
    let mut d = base.clone();
    d.approvers[1] = d.coordinator.clone();
    v.invalid_doc(
        "coordinator_is_approver",
        &format!(
            "coordinator {} must not also be an approver",
            d.coordinator.fingerprint()
        ),
        "the coordinator card listed as an approver",
        &d,
    );
    let mut d = base.clone();
    d.announced_at = d.effective_from + 1;
    v.invalid_doc(
        "effective_before_announced",
        "policy takes effect at 1800000000, before it was announced at 1800000001",
        "announced one second after it takes effect",
        &d,
    );
    let mut d = base.clone();
    d.whitelist[0].address = "bc1q example".into();
    v.invalid_doc(
        "address_with_space",
        "whitelist address \"bc1q example\" is not 1 to 128 bytes of printable text",
        "address contains a space",
        &d,
    );
    let mut d = base.clone();
    d.whitelist[1].address = d.whitelist[0].address.clone();
    v.invalid_doc(
        "duplicate_address",
        "whitelist address bc1qexample is listed twice",
        "the same address twice",
        &d,
    );
    let mut d = base.clone();
    d.limits[0].asset = String::new();
    v.invalid_doc(
        "empty_limit_asset",
        "limit 0: asset \"\" is not 1 to 64 bytes",
        "empty asset in a limit",
        &d,
    );
    let mut d = base.clone();
    d.limits[1].asset = "BTC".into();
    v.invalid_doc(
        "duplicate_limit",
        "asset BTC has two transaction limits",
        "two limits for BTC",
        &d,
    );
    let mut d = base.clone();
    d.rules[2].asset = "B\tC".into();
    v.invalid_doc(
        "rule_asset_control_character",
        "rule 2: asset",
        "asset contains a tab",
        &d,
    );
    let mut d = base.clone();
    d.rules[0].min_amount = d.rules[0].max_amount + 1;
    v.invalid_doc(
        "rule_minimum_above_maximum",
        "rule 0: minimum amount is above maximum amount",
        "min = max + 1",
        &d,
    );
    let mut d = base.clone();
    d.rules[0].action = Action::Allow { approvals: 3 };
    v.invalid_doc(
        "rule_needs_more_approvals_than_approvers",
        "rule 0: requires more approvals than the policy lists approvers",
        "3 approvals, 2 approvers",
        &d,
    );
    for (failure, window, expect) in [
        (
            "window_without_days",
            TimeWindow {
                days: 0,
                start_minute: 60,
                end_minute: 120,
            },
            "time window days",
        ),
        (
            "window_day_bit_7",
            TimeWindow {
                days: 0x81,
                start_minute: 60,
                end_minute: 120,
            },
            "time window days",
        ),
        (
            "window_start_out_of_range",
            TimeWindow {
                days: 1,
                start_minute: 1440,
                end_minute: 120,
            },
            "time window start minute must be below 1440",
        ),
        (
            "window_end_zero",
            TimeWindow {
                days: 1,
                start_minute: 60,
                end_minute: 0,
            },
            "time window end minute must be 1 to 1440",
        ),
        (
            "window_end_out_of_range",
            TimeWindow {
                days: 1,
                start_minute: 60,
                end_minute: 1441,
            },
            "time window end minute must be 1 to 1440",
        ),
        (
            "window_empty",
            TimeWindow {
                days: 1,
                start_minute: 60,
                end_minute: 60,
            },
            "time window start and end minute are equal",
        ),
    ] {
        let mut d = base.clone();
        d.rules[1].window = Some(window);
        v.invalid_doc(
            failure,
            &format!("rule 1: {expect}"),
            &format!("rule 1 window {window:?}"),
            &d,
        );
    }
    let mut d = base.clone();
    d.velocity[0].asset = "BTC ".into();
    v.invalid_doc(
        "velocity_asset_with_space",
        "velocity limit 0: asset \"BTC \" is not 1 to 64 bytes",
        "asset with a trailing space",
        &d,
    );
    let mut d = base.clone();
    d.velocity[0].window_secs = 0;
    v.invalid_doc(
        "velocity_window_zero",
        "velocity limit 0: window must be at least 1 second",
        "window of 0 s",
        &d,
    );
    let mut d = base.clone();
    d.velocity.push(d.velocity[0].clone());
    v.invalid_doc(
        "duplicate_velocity_limit",
        "velocity limit 1: another velocity limit has the same asset and window",
        "the same limit twice",
        &d,
    );
    let mut d = base.clone();
    d.velocity[0].asset = "A".repeat(MAX_ASSET_LEN + 1);
    v.add(
        ty,
        "velocity_asset_65_bytes",
        "velocity asset is 65 long, more than the maximum 64",
        "a 65-byte asset",
        d.encode(),
    );
}

fn signed_vectors(v: &mut Vectors, o: &Objects) {
    let f = signed_fields(&o.signed);
    let ty = "signed_policy";
    v.add(
        ty,
        "document_too_long",
        &format!(
            "policy document is {} long, more than the maximum {MAX_DOCUMENT_LEN}",
            MAX_DOCUMENT_LEN + 1
        ),
        "document length 1 MiB + 1",
        f.cut_at("document length", &u32b(MAX_DOCUMENT_LEN + 1)),
    );
    let mut doc = o.doc.encode();
    doc[14] = 9; // the network byte, after the 6-byte header and the u64 version
    v.add(
        ty,
        "invalid_document",
        "invalid network: unknown byte 9",
        "the embedded document has network byte 09",
        f.with("document", &doc),
    );
    v.add(
        ty,
        "signature_count_too_large",
        &format!(
            "signature count is {} long, more than the maximum {MAX_SIGNATURES}",
            MAX_SIGNATURES + 1
        ),
        "signature count 33",
        f.cut_at("signature count", &u16b(MAX_SIGNATURES + 1)),
    );
    v.add(
        ty,
        "wrong_type",
        "expected a signed policy, found type byte 0x03",
        "a decision",
        o.decision.encode(),
    );
}

fn decision_vectors(v: &mut Vectors, o: &Objects) {
    let f = decision_fields(&o.decision);
    let ty = "decision";
    v.add(
        ty,
        "withdrawal_id_too_long",
        &format!(
            "withdrawal id is {} long, more than the maximum {MAX_WITHDRAWAL_ID_LEN}",
            MAX_WITHDRAWAL_ID_LEN + 1
        ),
        "withdrawal id length 129",
        f.cut_at("withdrawal id length", &u32b(MAX_WITHDRAWAL_ID_LEN + 1)),
    );
    v.add(
        ty,
        "withdrawal_id_not_utf8",
        "invalid withdrawal id: not UTF-8",
        "withdrawal id bytes ff",
        f.with("withdrawal id", &[0xff; 7]),
    );
    v.add(
        ty,
        "transaction_digest_too_long",
        &format!(
            "transaction digest is {} long, more than the maximum {MAX_TRANSACTION_DIGEST_LEN}",
            MAX_TRANSACTION_DIGEST_LEN + 1
        ),
        "transaction digest length 65",
        f.cut_at(
            "transaction digest length",
            &u32b(MAX_TRANSACTION_DIGEST_LEN + 1),
        ),
    );
    v.add(
        ty,
        "unknown_outcome",
        "invalid outcome: unknown byte 2",
        "outcome byte 02",
        f.with("outcome", &[2]),
    );
    v.add(
        ty,
        "approval_count_too_large",
        &format!(
            "approval count is {} long, more than the maximum {MAX_APPROVALS}",
            MAX_APPROVALS + 1
        ),
        "approval count 65",
        f.cut_at("approval count", &u16b(MAX_APPROVALS + 1)),
    );
    v.add(
        ty,
        "wrong_type",
        "expected a decision, found type byte 0x01",
        "a policy document",
        o.doc.encode(),
    );
}

#[test]
#[ignore = "regenerates the committed policy corpus and negative vectors; run by hand"]
fn regenerate_policy_corpus() {
    let o = objects();
    let doc = o.doc.encode();
    let signed = o.signed.encode();
    let decision = o.decision.encode();
    let mut v = Vectors::default();
    for (ty, bytes) in [
        ("policy_document", &doc),
        ("signed_policy", &signed),
        ("decision", &decision),
    ] {
        common_vectors(&mut v, ty, bytes);
    }
    v.add(
        "policy_document",
        "wrong_type",
        "expected a policy document, found type byte 0x02",
        "a signed policy",
        signed.clone(),
    );
    document_vectors(&mut v, &o);
    signed_vectors(&mut v, &o);
    decision_vectors(&mut v, &o);

    for ty in ["policy_document", "signed_policy", "decision"] {
        let dir = root().join("corpus").join(ty);
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).expect("clear corpus dir");
        }
    }
    write("policy_document", "valid-minimal", &o.minimal.encode());
    // Decoding checks the form only, so a signature over another document still decodes.
    let mut minimal_signed = SignedPolicy::new(o.minimal.clone()).expect("valid");
    minimal_signed.push_signature(o.signed.signatures()[0].clone());
    write("signed_policy", "valid-minimal", &minimal_signed.encode());
    write("decision", "valid-rejected", &o.rejected.encode());
    for (ty, bytes) in [
        ("policy_document", &doc),
        ("signed_policy", &signed),
        ("decision", &decision),
    ] {
        write(ty, "valid-example", bytes);
        write(ty, "truncated-half", &bytes[..bytes.len() / 2]);
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 3;
        flipped[mid] ^= 0x40;
        write(ty, "flipped-byte", &flipped);
    }
    v.write();
}
