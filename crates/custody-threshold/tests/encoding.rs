//! Every air-gap type round-trips through its encoding; secrets never print.

mod common;

use common::*;
use custody_threshold::{
    issue_commitments, sign_request, CeremonyMessage, CeremonyPlan, CommitmentBatch,
    DkgCertificate, GroupKey, Identity, IdentityCard, KeyShare, NonceSeed, SignatureShares,
    SigningRequest,
};

#[test]
fn every_type_round_trips() {
    let (ids, outputs) = dkg(2, 3, 30);
    let card = ids[0].card();
    assert_eq!(IdentityCard::decode(&card.encode()).expect("card"), card);

    let p = plan(custody_threshold::CeremonyKind::Dkg, 2, &ids, 1);
    assert_eq!(CeremonyPlan::decode(&p.encode()).expect("plan"), p);

    let mut r = rng(31);
    let (_, m) = custody_threshold::Keygen::start_dkg(&p, &ids[1], &mut r).expect("start");
    assert_eq!(CeremonyMessage::decode(&m.encode()).expect("message"), m);

    let cert = DkgCertificate {
        transcript_hash: outputs[0].transcript_hash,
        round1_digests: vec![[1; 32], [2; 32], [3; 32]],
    };
    assert_eq!(DkgCertificate::decode(&cert.encode()).expect("cert"), cert);

    let group = outputs[0].share.group().clone();
    assert_eq!(GroupKey::decode(&group.encode()).expect("group"), group);

    let shares: Vec<KeyShare> = outputs.into_iter().map(|o| o.share).collect();
    let restored = KeyShare::from_secret_bytes(&shares[0].to_secret_bytes()).expect("share");
    assert_eq!(&*restored.to_secret_bytes(), &*shares[0].to_secret_bytes());

    let identity = Identity::from_secret_bytes(&ids[0].to_secret_bytes()).expect("identity");
    assert_eq!(identity.card(), ids[0].card());

    let mut devs = devices(shares, &mut r);
    let d = &mut devs[0];
    let batch = issue_commitments(&d.share, &d.seed, &mut d.store, 5).expect("issue");
    assert_eq!(
        CommitmentBatch::decode(&batch.encode()).expect("batch"),
        batch
    );

    let mut pool = pool(&group, &mut devs, 1);
    let request = SigningRequest::build(
        [1; 16],
        &group,
        &[1, 2],
        vec![custody_threshold::ItemSpec {
            message: msg(1).to_vec(),
            path: vec![0, 3],
            tweak: custody_threshold::TweakMode::ScriptRoot([9; 32]),
        }],
        &mut pool,
    )
    .expect("build");
    assert_eq!(
        SigningRequest::decode(&request.encode()).expect("request"),
        request
    );
    let d = &mut devs[0];
    let response = sign_request(&d.share, &d.seed, &mut d.store, &request).expect("sign");
    assert_eq!(
        SignatureShares::decode(&response.encode()).expect("shares"),
        response
    );
}

#[test]
fn a_share_that_does_not_match_its_group_is_refused() {
    let (_, outputs) = dkg(2, 3, 32);
    let mut bytes = outputs[0].share.to_secret_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = KeyShare::from_secret_bytes(&bytes).expect_err("inconsistent share");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let (ids, outputs) = dkg(2, 3, 33);
    let share = &outputs[0].share;
    let secret_hex = hex::encode(&share.to_secret_bytes()[share.to_secret_bytes().len() - 32..]);
    let printed = format!(
        "{share:?} {:?} {:?}",
        ids[0],
        NonceSeed::from_secret_bytes(&[7; 32])
    );
    assert!(printed.contains("<redacted>"));
    assert!(!printed.contains(&secret_hex), "the share never prints");
    assert!(
        !printed.contains(&hex::encode([7u8; 32])),
        "the seed never prints"
    );
    assert!(
        !printed.contains("AGE-SECRET-KEY"),
        "the age identity never prints"
    );
}

#[test]
fn fingerprints_are_short_stable_and_distinct() {
    let mut r = rng(34);
    let a = Identity::generate("alice", &mut r).expect("id");
    let b = Identity::generate("alice", &mut r).expect("id");
    let fa = a.card().fingerprint();
    assert_eq!(fa.len(), 24);
    assert_eq!(fa.matches('-').count(), 4);
    assert!(fa.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert_eq!(fa, a.card().fingerprint());
    assert_ne!(fa, b.card().fingerprint(), "same name, different keys");
}

#[test]
fn bad_names_and_plans_are_refused_with_reasons() {
    let mut r = rng(35);
    assert!(Identity::generate("", &mut r).is_err());
    assert!(Identity::generate("tab\there", &mut r).is_err());
    let ids = identities(3, &mut r);
    let mut cards: Vec<_> = ids.iter().map(Identity::card).collect();
    let err = CeremonyPlan::new(
        [0; 16],
        custody_threshold::CeremonyKind::Dkg,
        custody_threshold::Network::Bitcoin,
        "x",
        4,
        cards.clone(),
    )
    .expect_err("4 of 3");
    assert!(err.to_string().contains("threshold 4 of 3"), "{err}");
    cards.push(cards[0].clone());
    let err = CeremonyPlan::new(
        [0; 16],
        custody_threshold::CeremonyKind::Dkg,
        custody_threshold::Network::Bitcoin,
        "x",
        2,
        cards,
    )
    .expect_err("duplicate");
    assert!(err.to_string().contains("participants 1 and 4"), "{err}");
}
