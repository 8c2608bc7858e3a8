//! Regenerates the committed corpus and negative vectors of the threshold-ECDSA targets
//! (`ecdsa_plan`, `ecdsa_message`, `ecdsa_message_body`, `ecdsa_partial_signature`,
//! `ecdsa_group_key`) from fixed seeds.
//!
//! Run by hand after a format change:
//! `cargo test -p custody-fuzz --test generate_ecdsa_corpus -- --ignored`.

use std::path::PathBuf;

use custody_ecdsa::{
    EcdsaCeremonyKind, EcdsaMessage, EcdsaPlan, GroupPublicKey, PartialSignature, Step, BROADCAST,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The generator point G and 2G, compressed: valid group keys for the seeds.
const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const G2: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hex_lines(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn key(hex: &str) -> [u8; 33] {
    hex::decode(hex).expect("hex").try_into().expect("33 bytes")
}

/// A partial signature laid out field by field as `docs/formats/ecdsa-messages.md` says
/// (the identity signature is not checked by the decoder, only by `combine`).
fn partial(index: u16, signer: u16, r: [u8; 32], sigma: [u8; 32]) -> Vec<u8> {
    let mut out = b"CPEC\x01\x03".to_vec();
    out.extend_from_slice(&[0x5a; 16]);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&key(G));
    out.extend_from_slice(&signer.to_be_bytes());
    out.extend_from_slice(&[0x11; 32]);
    out.extend_from_slice(&r);
    out.extend_from_slice(&sigma);
    out.extend_from_slice(&[0x22; 64]);
    out
}

/// A message body: item count, then (lane, length, bytes) per item.
fn body(items: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = (items.len() as u16).to_be_bytes().to_vec();
    for (lane, bytes) in items {
        out.extend_from_slice(&lane.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

struct Seeds {
    plans: Vec<Vec<u8>>,
    messages: Vec<Vec<u8>>,
    bodies: Vec<Vec<u8>>,
    partials: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
}

fn seeds() -> Seeds {
    let mut rng = ChaCha20Rng::seed_from_u64(0xec_d5a);
    let ids: Vec<Identity> = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .map(|n| Identity::generate(n, &mut rng).expect("identity"))
        .collect();
    let cards = |n: usize| ids[..n].iter().map(Identity::card).collect::<Vec<_>>();
    let key_plan = EcdsaPlan::new(
        [1; 16],
        EcdsaCeremonyKind::Key,
        "cold wallet ETH",
        2,
        cards(3),
    )
    .expect("plan");
    let big_plan =
        EcdsaPlan::new([2; 16], EcdsaCeremonyKind::Key, "ETH 3-of-5", 3, cards(5)).expect("plan");
    let presign_plan = EcdsaPlan::new(
        [3; 16],
        EcdsaCeremonyKind::Presign {
            group_key: key(G),
            signers: vec![1, 3],
            count: 20,
        },
        "cold wallet ETH presignatures",
        2,
        cards(3),
    )
    .expect("plan");
    let plans = [&key_plan, &big_plan, &presign_plan]
        .iter()
        .map(|p| p.encode())
        .collect();

    let mut messages = Vec::new();
    let sample_body = body(&[(0, b"\xa1\x61\x78\x01"), (1, b"\x80")]);
    for (plan, id, step, recipient, seq) in [
        (&key_plan, &ids[0], Step::AuxInfo, BROADCAST, 0u16),
        (&key_plan, &ids[1], Step::Keygen, 3, 1),
        (&presign_plan, &ids[2], Step::Presign, BROADCAST, 2),
        (&big_plan, &ids[4], Step::Keygen, 1, 0),
    ] {
        let m = EcdsaMessage::seal(plan, id, step, recipient, seq, &sample_body, &mut rng)
            .expect("seal");
        messages.push(m.encode());
    }

    let bodies = vec![
        sample_body.clone(),
        body(&[]),
        body(&[(0, b"\x01"), (1, b"\x02"), (2, b"\x03")]),
        body(&[(2, &[0xff; 40])]),
        body(&[(0, b"")]),
    ];

    let mut r = [0u8; 32];
    r[31] = 7;
    let mut sigma = [0u8; 32];
    sigma[0] = 0x7f;
    let partials = vec![
        partial(0, 1, r, sigma),
        partial(5, 2, sigma, r),
        partial(99, 3, r, r),
        partial(1, 65535, [0; 32], sigma),
        partial(42, 2, [0x33; 32], [0x44; 32]),
    ];

    let keys = [G, G2]
        .iter()
        .map(|k| {
            GroupPublicKey::from_compressed(key(k))
                .expect("valid point")
                .encode()
        })
        .collect();

    Seeds {
        plans,
        messages,
        bodies,
        partials,
        keys,
    }
}

fn write_corpus(target: &str, seeds: &[Vec<u8>]) {
    let dir = root().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("valid-{i}")), seed).expect("write seed");
    }
}

fn write_negative(target: &str, name: &str, bytes: Vec<u8>, comment: &str, err: String) {
    let text = format!(
        "type: {target}\nexpect: {err}\ncomment: {comment}\n\n{}\n",
        hex_lines(&bytes)
    );
    std::fs::write(
        root().join(format!("../test-vectors/negative/{target}-{name}")),
        text,
    )
    .expect("write vector");
    std::fs::write(
        root()
            .join("corpus")
            .join(target)
            .join(format!("neg-{name}")),
        &bytes,
    )
    .expect("write corpus copy");
}

fn truncations(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut bad_magic = good.to_vec();
    bad_magic[0] = b'X';
    let mut bad_version = good.to_vec();
    bad_version[4] = 2;
    vec![
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "the last byte is missing",
        ),
        (
            "truncated_header",
            good[..5].to_vec(),
            "magic and version only",
        ),
        (
            "trailing_bytes",
            [good, &[0]].concat(),
            "one byte after the end",
        ),
        ("bad_magic", bad_magic, "first magic byte replaced by X"),
        ("wrong_version", bad_version, "format version 2"),
    ]
}

#[test]
#[ignore = "writes the committed corpus and negative vectors; run by hand after a format change"]
fn regenerate_ecdsa_corpus() {
    let seeds = seeds();
    write_corpus("ecdsa_plan", &seeds.plans);
    write_corpus("ecdsa_message", &seeds.messages);
    write_corpus("ecdsa_message_body", &seeds.bodies);
    write_corpus("ecdsa_partial_signature", &seeds.partials);
    write_corpus("ecdsa_group_key", &seeds.keys);

    type Decode = fn(&[u8]) -> Option<String>;
    let targets: [(&str, &Vec<u8>, Decode); 4] = [
        ("ecdsa_plan", &seeds.plans[0], |b| {
            EcdsaPlan::decode(b).err().map(|e| e.to_string())
        }),
        ("ecdsa_message", &seeds.messages[1], |b| {
            EcdsaMessage::decode(b).err().map(|e| e.to_string())
        }),
        ("ecdsa_partial_signature", &seeds.partials[0], |b| {
            PartialSignature::decode(b).err().map(|e| e.to_string())
        }),
        ("ecdsa_group_key", &seeds.keys[0], |b| {
            GroupPublicKey::decode(b).err().map(|e| e.to_string())
        }),
    ];
    for (target, good, decode) in targets {
        let mut cases = truncations(good);
        let mut wrong_type = good.clone();
        wrong_type[5] = if wrong_type[5] == 1 { 2 } else { 1 };
        cases.push((
            "wrong_type",
            wrong_type,
            "the type byte of another encoding",
        ));
        match target {
            "ecdsa_partial_signature" => {
                let mut zero_signer = good.clone();
                zero_signer[6 + 16 + 2 + 33..][..2].copy_from_slice(&[0, 0]);
                cases.push(("signer_zero", zero_signer, "signer index 0"));
                let mut big_index = good.clone();
                big_index[6 + 16..][..2].copy_from_slice(&100u16.to_be_bytes());
                cases.push(("index_beyond_batch", big_index, "batch index 100"));
                let mut r_order = good.clone();
                r_order[6 + 16 + 2 + 33 + 2 + 32..][..32].copy_from_slice(&[0xff; 32]);
                cases.push(("r_above_order", r_order, "r = 2^256 - 1"));
                let mut bad_prefix = good.clone();
                bad_prefix[6 + 16 + 2] = 0x05;
                cases.push(("group_key_bad_prefix", bad_prefix, "point prefix 05"));
            }
            "ecdsa_group_key" => {
                let mut prefix = good.clone();
                prefix[6] = 0x04;
                cases.push(("uncompressed_prefix", prefix, "prefix 04 with 32 bytes"));
            }
            _ => {}
        }
        for (name, bytes, comment) in cases {
            let err = decode(&bytes).unwrap_or_else(|| panic!("{target}-{name} decoded"));
            write_negative(target, name, bytes, comment, err);
        }
    }
}
