//! Deterministic DKG and signing transcripts pinned by hash, so any change to the wire
//! format or the derivations shows up as a diff in `test-vectors/threshold/`.
//!
//! Regenerate after an intended format change with
//! `COINPORT_BLESS=1 cargo test -p custody-threshold --test pinned` and review the diff.

mod common;

use common::*;
use custody_threshold::{
    drill, issue_commitments, sign_request, CeremonyKind, ItemSpec, Keygen, SigningRequest,
    TweakMode,
};
use sha2::{Digest, Sha256};

fn h(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn transcript(t: u16, n: usize, seed: u64) -> serde_json::Value {
    let mut r = rng(seed);
    let ids = identities(n, &mut r);
    let p = plan(CeremonyKind::Dkg, t, &ids, 7);
    // Round-1 messages are deterministic for a seeded rng (round 2 is age-encrypted with
    // fresh ephemeral keys and is not pinned).
    let mut rr = rng(seed + 1);
    let round1: Vec<String> = ids
        .iter()
        .map(|id| {
            let (_, m) = Keygen::start_dkg(&p, id, &mut rr).expect("start");
            h(&m.encode())
        })
        .collect();
    let out = drill::run_keygen(&p, &ids, None, &mut rng(seed + 1)).expect("dkg");
    let group = out[0].share.group().clone();
    let mut devs = devices(
        out.iter()
            .map(|o| o.share.to_secret_bytes())
            .map(|b| custody_threshold::KeyShare::from_secret_bytes(&b).expect("share"))
            .collect(),
        &mut rng(seed + 2),
    );
    let batches: Vec<_> = devs
        .iter_mut()
        .map(|d| issue_commitments(&d.share, &d.seed, &mut d.store, 2).expect("issue"))
        .collect();
    let mut pool = custody_threshold::CommitmentPool::new(&group);
    for b in &batches {
        pool.add_batch(b).expect("batch");
    }
    let signers: Vec<u16> = (1..=t).collect();
    let items = vec![
        ItemSpec {
            message: msg(1).to_vec(),
            path: vec![0, 0],
            tweak: TweakMode::KeyPath,
        },
        ItemSpec {
            message: msg(2).to_vec(),
            path: vec![1, 0],
            tweak: TweakMode::Untweaked,
        },
    ];
    let request =
        SigningRequest::build([5; 16], &group, &signers, items, &mut pool).expect("build");
    let responses: Vec<_> = devs
        .iter_mut()
        .filter(|d| signers.contains(&d.share.index()))
        .map(|d| sign_request(&d.share, &d.seed, &mut d.store, &request).expect("sign"))
        .collect();
    let sigs = custody_threshold::aggregate(&group, &request, &responses).expect("aggregate");
    serde_json::json!({
        "config": { "threshold": t, "participants": n, "seed": seed },
        "inputs": {
            "plan_sha256": h(&p.encode()),
            "identity_fingerprints": ids.iter().map(|i| i.card().fingerprint()).collect::<Vec<_>>(),
        },
        "outputs": {
            "round1_message_sha256": round1,
            "transcript_hash": hex::encode(out[0].transcript_hash),
            "group_key": hex::encode(group.public_key()),
            "xpub": group.xpub().to_string(),
            "group_key_encoding_sha256": h(&group.encode()),
            "commitment_batch_sha256": batches.iter().map(|b| h(&b.encode())).collect::<Vec<_>>(),
            "signing_request_sha256": h(&request.encode()),
            "signature_shares_sha256": responses.iter().map(|r| h(&r.encode())).collect::<Vec<_>>(),
            "signatures": sigs.iter().map(hex::encode).collect::<Vec<_>>(),
        }
    })
}

fn check(name: &str, t: u16, n: usize, seed: u64) {
    let path = format!(
        "{}/../../test-vectors/threshold/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let actual = transcript(t, n, seed);
    // Deterministic within one build: running twice gives the same transcript.
    assert_eq!(actual, transcript(t, n, seed));
    if std::env::var_os("COINPORT_BLESS").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&actual).expect("json") + "\n",
        )
        .expect("write pinned vector");
    }
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("pinned vector exists"))
            .expect("pinned vector is JSON");
    assert_eq!(
        actual, pinned,
        "wire format or derivation changed: review and re-bless"
    );
}

#[test]
fn dkg_and_signing_2_of_3_transcript_is_pinned() {
    check("transcript-2-of-3", 2, 3, 40);
}

#[test]
fn dkg_and_signing_3_of_5_transcript_is_pinned() {
    check("transcript-3-of-5", 3, 5, 41);
}
