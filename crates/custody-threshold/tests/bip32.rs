//! BIP32 test vectors 1 to 5 (`test-vectors/bip32/vectors.json`).
//!
//! * Every step of vectors 1 to 4 is re-derived from the seed with the `bitcoin` crate, and
//!   each published xprv must give the published xpub: this proves the transcription.
//! * Every non-hardened step is re-derived with our `custody_threshold::bip32::derive_public`
//!   from the parent xpub alone; the child xpub must match and the returned tweak `t` must
//!   satisfy `child = parent + t·G`. Non-hardened runs of more than one step are also derived
//!   in one call.
//! * `derive_public` must refuse hardened steps.
//! * Every key of vector 5 must be rejected. `bitcoin` 0.32's parser does not check three of
//!   BIP32's rules (see `strict_parse`), so the test adds them and says which keys needed them.

use std::str::FromStr;

use bitcoin::base58;
use bitcoin::bip32::{ChildNumber, Xpriv, Xpub};
use bitcoin::secp256k1::{Scalar, Secp256k1};
use bitcoin::NetworkKind;
use custody_threshold::bip32::{derive_public, DeriveError};
use serde_json::Value;

const VECTORS: &str = include_str!("../../../test-vectors/bip32/vectors.json");

struct Step {
    path: Vec<ChildNumber>,
    path_text: String,
    xpub: String,
    xprv: String,
}

struct Vector {
    number: u64,
    seed: Vec<u8>,
    steps: Vec<Step>,
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is a string"))
}

/// Parses "m/0H/1/2147483647H" (H marks a hardened index).
fn parse_path(text: &str) -> Vec<ChildNumber> {
    let mut parts = text.split('/');
    assert_eq!(parts.next(), Some("m"), "path starts at m: {text}");
    parts
        .map(|part| match part.strip_suffix('H') {
            Some(index) => {
                ChildNumber::from_hardened_idx(index.parse().expect("index")).expect("in range")
            }
            None => ChildNumber::from_normal_idx(part.parse().expect("index")).expect("in range"),
        })
        .collect()
}

fn all_vectors() -> Vec<Value> {
    let json: Value = serde_json::from_str(VECTORS).expect("vectors.json is JSON");
    json["vectors"].as_array().expect("vectors array").clone()
}

fn derivation_vectors() -> Vec<Vector> {
    all_vectors()
        .iter()
        .filter(|v| v.get("chains").is_some())
        .map(|v| Vector {
            number: v["vector"].as_u64().expect("vector number"),
            seed: hex::decode(str_field(v, "seed")).expect("seed hex"),
            steps: v["chains"]
                .as_array()
                .expect("chains")
                .iter()
                .map(|c| Step {
                    path: parse_path(str_field(c, "path")),
                    path_text: str_field(c, "path").to_owned(),
                    xpub: str_field(c, "xpub").to_owned(),
                    xprv: str_field(c, "xprv").to_owned(),
                })
                .collect(),
        })
        .collect()
}

/// Checks `child.public_key == parent.public_key + t·G`.
fn assert_tweak_relation(parent: &Xpub, child: &Xpub, tweak: [u8; 32], context: &str) {
    let secp = Secp256k1::verification_only();
    let scalar = Scalar::from_be_bytes(tweak)
        .unwrap_or_else(|_| panic!("{context}: tweak is not below the curve order"));
    let expected = parent
        .public_key
        .add_exp_tweak(&secp, &scalar)
        .unwrap_or_else(|e| panic!("{context}: parent + t·G failed: {e}"));
    assert_eq!(
        child.public_key, expected,
        "{context}: child != parent + t·G"
    );
}

#[test]
fn bip32_vectors_1_to_4_transcription_and_derivation() {
    let secp = Secp256k1::new();
    let vectors = derivation_vectors();
    assert_eq!(
        vectors.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let mut steps = 0;
    for vector in &vectors {
        let master = Xpriv::new_master(NetworkKind::Main, &vector.seed).expect("master key");
        assert!(vector.steps[0].path.is_empty(), "first step is m");
        for step in &vector.steps {
            let context = format!("vector {} {}", vector.number, step.path_text);
            let xprv = Xpriv::from_str(&step.xprv).expect("published xprv parses");
            let xpub = Xpub::from_str(&step.xpub).expect("published xpub parses");
            // The published pair is consistent ...
            assert_eq!(
                Xpub::from_priv(&secp, &xprv),
                xpub,
                "{context}: xprv -> xpub"
            );
            // ... and is what the seed derives to.
            let derived = master.derive_priv(&secp, &step.path).expect("derive_priv");
            assert_eq!(derived.to_string(), step.xprv, "{context}: xprv from seed");
            assert_eq!(
                Xpub::from_priv(&secp, &derived).to_string(),
                step.xpub,
                "{context}: xpub from seed"
            );
            assert_eq!(usize::from(xpub.depth), step.path.len(), "{context}: depth");
            steps += 1;
        }
    }
    // 6 + 6 + 2 + 3 steps.
    assert_eq!(steps, 17);
}

#[test]
fn derive_public_matches_every_non_hardened_step() {
    let mut single_steps = 0;
    let mut multi_steps = 0;
    for vector in derivation_vectors() {
        for (i, step) in vector.steps.iter().enumerate() {
            // Each published step extends the previous one by one child number.
            if i > 0 {
                let parent = &vector.steps[i - 1];
                assert_eq!(parent.path[..], step.path[..step.path.len() - 1]);
            }
            // The longest run of non-hardened steps at the end of this path ...
            let run = step.path.iter().rev().take_while(|c| c.is_normal()).count();
            if run == 0 {
                continue;
            }
            let child = Xpub::from_str(&step.xpub).expect("child xpub");
            // ... derived from every published ancestor inside the run.
            for take in 1..=run {
                let ancestor = &vector.steps[i - take];
                assert_eq!(ancestor.path.len() + take, step.path.len());
                let context = format!(
                    "vector {} {} from {}",
                    vector.number, step.path_text, ancestor.path_text
                );
                let parent = Xpub::from_str(&ancestor.xpub).expect("parent xpub");
                let suffix = &step.path[ancestor.path.len()..];
                let (derived, tweak) = derive_public(&parent, suffix)
                    .unwrap_or_else(|e| panic!("{context}: derive_public failed: {e}"));
                assert_eq!(derived.to_string(), step.xpub, "{context}: child xpub");
                assert_eq!(derived, child, "{context}: child xpub fields");
                assert_tweak_relation(&parent, &derived, tweak, &context);
                if take == 1 {
                    single_steps += 1;
                } else {
                    multi_steps += 1;
                }
            }
        }
    }
    // Vector 1: m/0H/1, .../2H/2, .../2/1000000000; vector 2: m/0, .../2147483647H/1,
    // .../2147483646H/2. Two-step run: vector 1 from m/0H/1/2H to .../2/1000000000.
    assert_eq!(single_steps, 6);
    assert_eq!(multi_steps, 1);
}

#[test]
fn derive_public_refuses_hardened_steps() {
    let vector = &derivation_vectors()[0];
    let master = Xpub::from_str(&vector.steps[0].xpub).expect("master xpub");
    let hardened = ChildNumber::from_hardened_idx(0).expect("index");
    let normal = ChildNumber::from_normal_idx(1).expect("index");
    let last_hardened = ChildNumber::from_hardened_idx(0x7fff_ffff).expect("index");
    for path in [
        vec![hardened],
        vec![normal, hardened],
        vec![normal, normal, last_hardened],
    ] {
        let result = derive_public(&master, &path);
        assert!(
            matches!(result, Err(DeriveError::Hardened { .. })),
            "path {path:?} gave {result:?}"
        );
    }
    assert!(matches!(
        derive_public(&master, &[last_hardened]),
        Err(DeriveError::Hardened { index: 0x7fff_ffff })
    ));
}

/// Which parser a vector 5 key is meant for, from its version prefix.
enum Kind {
    Public,
    Private,
    Unknown,
}

/// The BIP32 rules `bitcoin` 0.32's `from_str` does not check: a private key's key data
/// must start with 0x00, and a depth-0 key must have a zero parent fingerprint and child
/// number. Returns the rule the decoded payload breaks, if any.
fn unchecked_rule_broken(payload: &[u8], private: bool) -> Option<&'static str> {
    assert_eq!(payload.len(), 78);
    if private && payload[45] != 0 {
        return Some("private key data does not start with 0x00");
    }
    if payload[4] == 0 && payload[5..9] != [0; 4] {
        return Some("zero depth with non-zero parent fingerprint");
    }
    if payload[4] == 0 && payload[9..13] != [0; 4] {
        return Some("zero depth with non-zero index");
    }
    None
}

/// `bitcoin`'s parser plus the rules above. Returns why the key was rejected, or `None`.
fn strict_parse(key: &str, kind: &Kind) -> Option<String> {
    let payload = match base58::decode_check(key) {
        Ok(payload) => payload,
        Err(e) => return Some(format!("base58: {e}")),
    };
    let (public, private) = (Xpub::from_str(key), Xpriv::from_str(key));
    let parsed = match kind {
        Kind::Public => public.map(|_| false).map_err(|e| e.to_string()),
        Kind::Private => private.map(|_| true).map_err(|e| e.to_string()),
        Kind::Unknown => match (public, private) {
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            (Ok(_), _) => Ok(false),
            (_, Ok(_)) => Ok(true),
        },
    };
    match parsed {
        Err(e) => Some(format!("bitcoin: {e}")),
        Ok(private) => unchecked_rule_broken(&payload, private).map(str::to_owned),
    }
}

#[test]
fn bip32_vector_5_invalid_keys_are_rejected() {
    let vectors = all_vectors();
    let invalid = vectors
        .iter()
        .find(|v| v["vector"] == 5)
        .and_then(|v| v["invalid"].as_array())
        .expect("vector 5");
    assert_eq!(invalid.len(), 16);

    let mut needed_extra_rules = Vec::new();
    for entry in invalid {
        let key = str_field(entry, "key");
        let reason = str_field(entry, "reason");
        let kind = if key.starts_with("xpub") {
            Kind::Public
        } else if key.starts_with("xprv") {
            Kind::Private
        } else {
            Kind::Unknown
        };

        // Transcription check: only the "invalid checksum" key may fail base58check.
        let decoded = base58::decode_check(key);
        if reason == "invalid checksum" {
            assert!(
                matches!(decoded, Err(base58::Error::IncorrectChecksum(_))),
                "{key}: expected a checksum error, got {decoded:?}"
            );
        } else {
            let payload = decoded.unwrap_or_else(|e| panic!("{key} ({reason}): base58: {e}"));
            assert_eq!(payload.len(), 78, "{key} ({reason})");
        }

        let rejection = strict_parse(key, &kind);
        assert!(
            rejection.is_some(),
            "{key} ({reason}) was accepted by the strict parser"
        );

        let bitcoin_rejects = match kind {
            Kind::Public => Xpub::from_str(key).is_err(),
            Kind::Private => Xpriv::from_str(key).is_err(),
            Kind::Unknown => Xpub::from_str(key).is_err() && Xpriv::from_str(key).is_err(),
        };
        if !bitcoin_rejects {
            needed_extra_rules.push(reason);
        }
    }

    // bitcoin 0.32 alone accepts 7 of the 16 (the xprv keys below with these reasons, and the
    // xpub keys with the two zero-depth reasons). If a later version rejects more, fine; it
    // must never accept a key for a reason other than the three rules it does not check.
    for reason in &needed_extra_rules {
        assert!(
            [
                "prvkey version / pubkey mismatch",
                "invalid prvkey prefix 04",
                "invalid prvkey prefix 01",
                "zero depth with non-zero parent fingerprint",
                "zero depth with non-zero index",
            ]
            .contains(reason),
            "bitcoin accepted an invalid key for an unexpected reason: {reason}"
        );
    }
}

#[test]
fn strict_parse_accepts_the_valid_vectors() {
    // Guards the extra rules against rejecting good keys.
    let mut accepted = 0;
    for vector in derivation_vectors() {
        for step in &vector.steps {
            assert_eq!(
                strict_parse(&step.xpub, &Kind::Public),
                None,
                "{}",
                step.xpub
            );
            assert_eq!(
                strict_parse(&step.xprv, &Kind::Private),
                None,
                "{}",
                step.xprv
            );
            accepted += 2;
        }
    }
    assert_eq!(accepted, 34);
}
