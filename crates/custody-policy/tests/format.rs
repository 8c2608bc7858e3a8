//! Builds the annotated worked example of `docs/formats/policy.md` field by field, checks
//! that it is exactly what `PolicyDocument::encode` writes, and that the page shows it
//! unchanged, so a format change is a visible diff of the page.

use custody_policy::{
    Action, AdminQuorum, Network, PolicyDocument, Rule, SignedPolicy, TimeWindow, TransactionLimit,
    VelocityLimit, WhitelistEntry,
};
use custody_threshold::{Identity, IdentityCard};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Example {
    doc: PolicyDocument,
    admin: Identity,
}

fn example() -> Example {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let admin = Identity::generate("ops", &mut rng).expect("valid name");
    let coordinator = Identity::generate("coord", &mut rng).expect("valid name");
    let approver = Identity::generate("alice", &mut rng).expect("valid name");
    let doc = PolicyDocument {
        version: 1,
        network: Network::Bitcoin,
        announced_at: 1_799_827_200,
        effective_from: 1_800_000_000,
        change_delay_secs: 172_800,
        admins: AdminQuorum {
            threshold: 1,
            admins: vec![admin.card()],
        },
        coordinator: coordinator.card(),
        approvers: vec![approver.card()],
        whitelist: vec![WhitelistEntry {
            address: "bc1qexample".into(),
            active_from: 1_800_172_800,
        }],
        limits: vec![TransactionLimit {
            asset: "BTC".into(),
            max_amount: 100_000_000,
        }],
        rules: vec![
            Rule {
                asset: "BTC".into(),
                min_amount: 0,
                max_amount: 10_000_000,
                window: None,
                action: Action::Allow { approvals: 0 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount: 10_000_001,
                max_amount: 100_000_000,
                window: Some(TimeWindow {
                    days: TimeWindow::WEEKDAYS,
                    start_minute: 9 * 60,
                    end_minute: 17 * 60,
                }),
                action: Action::Allow { approvals: 1 },
            },
        ],
        velocity: vec![VelocityLimit {
            asset: "BTC".into(),
            window_secs: 86_400,
            max_total: 200_000_000,
            max_count: 10,
        }],
    };
    Example { doc, admin }
}

/// An annotated hex listing: each field's bytes and what they are.
#[derive(Default)]
struct Listing {
    bytes: Vec<u8>,
    text: String,
}

const HEX_COLUMN: usize = 36;
const HEX_PER_LINE: usize = 32;

impl Listing {
    fn field(&mut self, indent: usize, bytes: &[u8], comment: &str) {
        self.bytes.extend_from_slice(bytes);
        let hex = hex::encode(bytes);
        let chunks: Vec<&str> = if hex.len() <= HEX_COLUMN - 2 - indent {
            vec![&hex]
        } else {
            hex.as_bytes()
                .chunks(HEX_PER_LINE)
                .map(|c| std::str::from_utf8(c).expect("hex is ASCII"))
                .collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let pad = " ".repeat(indent);
            let line = if i == 0 {
                format!("{pad}{chunk:<width$}{comment}", width = HEX_COLUMN - indent)
            } else {
                format!("{pad}{chunk}")
            };
            self.text.push_str(line.trim_end());
            self.text.push('\n');
        }
    }

    fn var(&mut self, indent: usize, bytes: &[u8], what: &str) {
        let len = u32::try_from(bytes.len()).expect("short field");
        let mut field = len.to_be_bytes().to_vec();
        field.extend_from_slice(bytes);
        self.field(indent, &field, what);
    }

    fn card(&mut self, card: &IdentityCard, what: &str) {
        let encoded = card.encode();
        let len = u32::try_from(encoded.len()).expect("short card");
        self.field(0, &len.to_be_bytes(), &format!("{what} card, {len} bytes:"));
        self.field(2, &encoded[..6], "CPTH, version 1, type 01 (identity card)");
        let name = card.name().as_bytes();
        self.var(2, name, &format!("name {:?}", card.name()));
        self.field(2, card.signing_key(), "BIP340 signing key");
        self.var(
            2,
            card.age_recipient().as_bytes(),
            &format!("age recipient {}", card.age_recipient()),
        );
    }
}

fn listing(doc: &PolicyDocument) -> Listing {
    let mut l = Listing::default();
    l.field(
        0,
        b"CPPL\x02\x01",
        "header: CPPL, version 2, type 01 (policy document)",
    );
    l.field(0, &doc.version.to_be_bytes(), "policy version 1");
    l.field(0, &[0], "network: bitcoin");
    let t = |v: u64| v.to_be_bytes();
    let a = |v: u128| v.to_be_bytes();
    l.field(0, &t(doc.announced_at), "announced at 1799827200");
    l.field(0, &t(doc.effective_from), "effective from 1800000000");
    l.field(0, &t(doc.change_delay_secs), "change delay 172800 s (48 h)");
    l.field(0, &1u16.to_be_bytes(), "admin threshold 1");
    l.field(0, &1u16.to_be_bytes(), "1 admin card");
    l.card(&doc.admins.admins[0], "admin");
    l.card(&doc.coordinator, "coordinator");
    l.field(0, &1u16.to_be_bytes(), "1 approver card");
    l.card(&doc.approvers[0], "approver");
    l.field(0, &1u16.to_be_bytes(), "1 whitelist entry");
    l.var(0, b"bc1qexample", "address \"bc1qexample\"");
    l.field(0, &t(1_800_172_800), "active from 1800172800");
    l.field(0, &1u16.to_be_bytes(), "1 transaction limit");
    l.var(0, b"BTC", "asset \"BTC\"");
    l.field(
        0,
        &a(100_000_000),
        "at most 100000000 (sat) per transaction",
    );
    l.field(0, &2u16.to_be_bytes(), "2 rules");
    l.var(0, b"BTC", "rule 0: asset \"BTC\"");
    l.field(0, &a(0), "minimum 0");
    l.field(0, &a(10_000_000), "maximum 10000000");
    l.field(0, &[0], "no time window");
    l.field(0, &[1, 0, 0], "allow with 0 approvals");
    l.var(0, b"BTC", "rule 1: asset \"BTC\"");
    l.field(0, &a(10_000_001), "minimum 10000001");
    l.field(0, &a(100_000_000), "maximum 100000000");
    l.field(0, &[1], "time window:");
    l.field(2, &[0x1f], "days Mon-Fri");
    l.field(2, &540u16.to_be_bytes(), "from minute 540 (09:00 UTC)");
    l.field(2, &1020u16.to_be_bytes(), "until minute 1020 (17:00 UTC)");
    l.field(0, &[1, 0, 1], "allow with 1 approval");
    l.field(0, &1u16.to_be_bytes(), "1 velocity limit");
    l.var(0, b"BTC", "asset \"BTC\"");
    l.field(0, &t(86_400), "window 86400 s");
    l.field(0, &a(200_000_000), "at most 200000000 in total");
    l.field(0, &10u32.to_be_bytes(), "at most 10 withdrawals");
    l
}

fn policy_page() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/formats/policy.md");
    std::fs::read_to_string(path).expect("read docs/formats/policy.md")
}

#[test]
fn worked_example_is_the_real_encoding_and_is_shown_on_the_format_page() {
    let ex = example();
    let bytes = ex.doc.encode();
    let l = listing(&ex.doc);
    assert_eq!(
        hex::encode(&l.bytes),
        hex::encode(&bytes),
        "the annotated listing no longer matches the encoder"
    );
    assert_eq!(PolicyDocument::decode(&bytes).as_ref(), Ok(&ex.doc));
    let page = policy_page();
    let block = format!("```text\n{}```", l.text);
    assert!(
        page.contains(&block),
        "docs/formats/policy.md does not show the current worked example; replace it with:\n{block}"
    );
    let hash = format!("Policy hash: `{}`.", hex::encode(ex.doc.hash()));
    assert!(
        page.contains(&hash),
        "docs/formats/policy.md does not show the current policy hash; expected: {hash}"
    );
}

#[test]
fn example_signed_policy_verifies_against_the_pinned_admin() {
    let ex = example();
    let quorum = ex.doc.admins.clone();
    let mut sp = SignedPolicy::new(ex.doc).expect("valid document");
    sp.sign(&ex.admin, &mut ChaCha20Rng::seed_from_u64(1));
    let bytes = sp.encode();
    // Header, u32 document length, document, u16 count, 32-byte key, 64-byte signature.
    assert_eq!(&bytes[..6], b"CPPL\x02\x02");
    let decoded = SignedPolicy::decode(&bytes).expect("round trip");
    assert!(decoded.verify(&quorum).is_ok());
}
