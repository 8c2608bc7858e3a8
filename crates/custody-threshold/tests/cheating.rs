//! Every cheating case of the DKG aborts, names the culprit and yields no key.

mod common;

use common::*;
use custody_threshold::{
    CeremonyError, CeremonyKind, CeremonyMessage, Culprit, DkgCertificate, Identity, Keygen,
    KeygenRound2, MessageKind,
};
use frost_secp256k1_tr::keys::dkg::{round1, round2};
use frost_secp256k1_tr::keys::SigningShare;

fn culprit_indexes(culprits: &[Culprit]) -> Vec<u16> {
    culprits.iter().map(|c| c.index).collect()
}

struct Setup {
    ids: Vec<Identity>,
    plan: custody_threshold::CeremonyPlan,
    rng: rand_chacha::ChaCha20Rng,
}

fn setup(n: usize, seed: u64) -> Setup {
    let mut rng = rng(seed);
    let ids = identities(n, &mut rng);
    let plan = plan(CeremonyKind::Dkg, 2, &ids, 1);
    Setup { ids, plan, rng }
}

/// Runs round 1 honestly and returns each participant's round-2 state and all round-2
/// messages.
fn through_round1(s: &mut Setup) -> (Vec<KeygenRound2>, Vec<CeremonyMessage>) {
    let mut states = Vec::new();
    let mut r1 = Vec::new();
    for id in &s.ids {
        let (st, m) = Keygen::start_dkg(&s.plan, id, &mut s.rng).expect("start");
        states.push(st);
        r1.push(m);
    }
    let mut out = Vec::new();
    let mut r2 = Vec::new();
    for (st, id) in states.into_iter().zip(&s.ids) {
        let (st2, msgs) = st.receive_round1(id, &r1, &mut s.rng).expect("round 1");
        out.push(st2);
        r2.extend(msgs);
    }
    (out, r2)
}

#[test]
fn tampered_round1_message_names_its_sender() {
    let mut s = setup(3, 10);
    let (st, _) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    let (_, m2) = Keygen::start_dkg(&s.plan, &s.ids[1], &mut s.rng).expect("start");
    let (_, m3) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    let mut bytes = m3.encode();
    let at = bytes.len() - 64 - 5; // inside the payload, before the signature
    bytes[at] ^= 0x01;
    let forged = CeremonyMessage::decode(&bytes).expect("still well-formed");
    let err = st
        .receive_round1(&s.ids[0], &[m2, forged], &mut s.rng)
        .expect_err("bad signature aborts");
    match err {
        CeremonyError::BadSignature { culprit } => assert_eq!(culprit.index, 3),
        other => panic!("expected a bad signature from #3, got {other}"),
    }
}

#[test]
fn invalid_proof_of_knowledge_names_its_sender() {
    let mut s = setup(3, 11);
    let (st, m1) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    let (_, m2) = Keygen::start_dkg(&s.plan, &s.ids[1], &mut s.rng).expect("start");
    let (_, m3) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    // Participant 3 sends its own commitments with participant 2's proof of knowledge.
    let p2 = round1::Package::deserialize(m2.payload()).expect("package");
    let p3 = round1::Package::deserialize(m3.payload()).expect("package");
    let bad = round1::Package::new(p3.commitment().clone(), *p2.proof_of_knowledge());
    let bad_msg = CeremonyMessage::seal(
        &s.plan,
        &s.ids[2],
        MessageKind::DkgRound1,
        0,
        &bad.serialize().expect("serialize"),
        &mut s.rng,
    )
    .expect("seal");
    let err = st
        .receive_round1(&s.ids[0], &[m1, m2, bad_msg], &mut s.rng)
        .expect_err("bad proof aborts");
    match err {
        CeremonyError::InvalidProof { culprits } => assert_eq!(culprit_indexes(&culprits), [3]),
        other => panic!("expected an invalid proof from #3, got {other}"),
    }
}

#[test]
fn bad_secret_share_names_its_sender() {
    let mut s = setup(3, 12);
    let (mut states, r2) = through_round1(&mut s);
    // Participant 3 sends participant 1 a share that does not match its commitments.
    let mut forged_r2: Vec<_> = r2
        .into_iter()
        .filter(|m| !(m.sender() == 3 && m.recipient() == 1))
        .collect();
    let mut scalar = [0u8; 32];
    scalar[31] = 42;
    let bad = round2::Package::new(SigningShare::deserialize(&scalar).expect("scalar"));
    forged_r2.push(
        CeremonyMessage::seal(
            &s.plan,
            &s.ids[2],
            MessageKind::DkgRound2,
            1,
            &bad.serialize().expect("serialize"),
            &mut s.rng,
        )
        .expect("seal"),
    );
    let st1 = states.remove(0);
    let err = st1
        .receive_round2(&s.ids[0], &forged_r2, &mut s.rng)
        .expect_err("bad share aborts");
    match err {
        CeremonyError::InvalidShare { culprits } => assert_eq!(culprit_indexes(&culprits), [3]),
        other => panic!("expected an invalid share from #3, got {other}"),
    }
}

#[test]
fn equivocation_in_round1_is_caught_by_certificates() {
    let mut s = setup(3, 13);
    let (st1, m1) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    let (st2, m2) = Keygen::start_dkg(&s.plan, &s.ids[1], &mut s.rng).expect("start");
    // The cheater runs two independent instances and shows each victim a different one.
    let (cheat_a, m3a) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    let (cheat_b, m3b) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    assert_ne!(m3a, m3b);

    let (st1, r2_1) = st1
        .receive_round1(&s.ids[0], &[m2.clone(), m3a], &mut s.rng)
        .expect("victim 1 sees a consistent round 1");
    let (st2, r2_2) = st2
        .receive_round1(&s.ids[1], &[m1.clone(), m3b], &mut s.rng)
        .expect("victim 2 sees a consistent round 1");
    let (cheat_a, r2_a) = cheat_a
        .receive_round1(&s.ids[2], &[m1.clone(), m2.clone()], &mut s.rng)
        .expect("cheater instance a");
    let (_cheat_b, r2_b) = cheat_b
        .receive_round1(&s.ids[2], &[m1, m2], &mut s.rng)
        .expect("cheater instance b");

    // Each victim gets the cheater's share that matches what it saw, so round 2 passes.
    let (st1, c1) = st1
        .receive_round2(&s.ids[0], &[r2_2.clone(), r2_a].concat(), &mut s.rng)
        .expect("shares verify for victim 1");
    let (st2, c2) = st2
        .receive_round2(&s.ids[1], &[r2_1.clone(), r2_b].concat(), &mut s.rng)
        .expect("shares verify for victim 2");
    let (_cheat_a, ca) = cheat_a
        .receive_round2(&s.ids[2], &[r2_1, r2_2].concat(), &mut s.rng)
        .expect("cheater instance a");

    for (state, id, certs) in [
        (st1, &s.ids[0], vec![c2.clone(), ca.clone()]),
        (st2, &s.ids[1], vec![c1.clone(), ca.clone()]),
    ] {
        let err = state
            .finish(id, &certs)
            .expect_err("certificates expose the equivocation");
        match err {
            CeremonyError::Equivocation { culprits } => {
                assert_eq!(culprit_indexes(&culprits), [3])
            }
            other => panic!("expected equivocation by #3, got {other}"),
        }
    }
}

#[test]
fn two_different_signed_round1_messages_are_equivocation() {
    let mut s = setup(3, 14);
    let (st1, _) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    let (_, m2) = Keygen::start_dkg(&s.plan, &s.ids[1], &mut s.rng).expect("start");
    let (_, m3a) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    let (_, m3b) = Keygen::start_dkg(&s.plan, &s.ids[2], &mut s.rng).expect("start");
    let err = st1
        .receive_round1(&s.ids[0], &[m2.clone(), m3a.clone(), m3b], &mut s.rng)
        .expect_err("both versions seen");
    match err {
        CeremonyError::Equivocation { culprits } => assert_eq!(culprit_indexes(&culprits), [3]),
        other => panic!("expected equivocation by #3, got {other}"),
    }
    // The same message delivered twice is only a resend.
    let (st1, _) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    st1.receive_round1(&s.ids[0], &[m2.clone(), m3a.clone(), m3a, m2], &mut s.rng)
        .expect("duplicates are harmless");
}

#[test]
fn certificate_over_another_transcript_names_its_author() {
    let mut s = setup(3, 15);
    let (states, r2) = through_round1(&mut s);
    let mut certify = Vec::new();
    let mut certs = Vec::new();
    for (st, id) in states.into_iter().zip(&s.ids) {
        let (c, m) = st.receive_round2(id, &r2, &mut s.rng).expect("round 2");
        certify.push(c);
        certs.push(m);
    }
    // Participant 2 certifies a different transcript.
    let mut cert = DkgCertificate::decode(certs[1].payload()).expect("certificate");
    cert.transcript_hash[0] ^= 0xff;
    let forged = CeremonyMessage::seal(
        &s.plan,
        &s.ids[1],
        MessageKind::DkgCertificate,
        0,
        &cert.encode(),
        &mut s.rng,
    )
    .expect("seal");
    let c1 = certify.remove(0);
    let err = c1
        .finish(&s.ids[0], &[forged, certs[2].clone()])
        .expect_err("mismatch aborts");
    match err {
        CeremonyError::CertificateMismatch { culprits } => {
            assert_eq!(culprit_indexes(&culprits), [2]);
            assert_eq!(culprits[0].name, "bob");
        }
        other => panic!("expected a certificate mismatch by #2, got {other}"),
    }
    // A missing certificate also yields no key.
    let c2 = certify.remove(0);
    let err = c2
        .finish(&s.ids[1], &[certs[0].clone()])
        .expect_err("missing");
    assert_eq!(err, CeremonyError::Missing { missing: vec![3] });
}

#[test]
fn messages_from_another_ceremony_are_refused() {
    let mut s = setup(3, 16);
    let other_plan = plan(CeremonyKind::Dkg, 2, &s.ids, 99);
    let (st1, _) = Keygen::start_dkg(&s.plan, &s.ids[0], &mut s.rng).expect("start");
    let (_, m2) = Keygen::start_dkg(&s.plan, &s.ids[1], &mut s.rng).expect("start");
    let (_, replayed) = Keygen::start_dkg(&other_plan, &s.ids[2], &mut s.rng).expect("start");
    let err = st1
        .receive_round1(&s.ids[0], &[m2, replayed], &mut s.rng)
        .expect_err("replay refused");
    assert_eq!(err, CeremonyError::WrongCeremony { sender: 3 });
}

#[test]
fn an_outsider_cannot_join_and_a_plan_without_us_is_refused() {
    let mut s = setup(3, 17);
    let outsider = Identity::generate("mallory", &mut s.rng).expect("identity");
    let err = Keygen::start_dkg(&s.plan, &outsider, &mut s.rng).expect_err("not in plan");
    assert_eq!(err, CeremonyError::NotInPlan);
    assert!(err.to_string().contains("not a participant"));
}

#[test]
fn round2_message_relabelled_with_another_sender_is_refused() {
    let mut s = setup(3, 18);
    let (mut states, r2) = through_round1(&mut s);
    // Participant 3's ciphertext for participant 1, relabelled as coming from participant 2.
    let original = r2
        .iter()
        .find(|m| m.sender() == 3 && m.recipient() == 1)
        .expect("message 3→1");
    let mut bytes = original.encode();
    // sender field: magic(4) version(1) type(1) kind(1) ceremony(16) → offset 23.
    bytes[23..25].copy_from_slice(&2u16.to_be_bytes());
    let relabelled = CeremonyMessage::decode(&bytes).expect("well-formed");
    let mut msgs: Vec<_> = r2
        .iter()
        .filter(|m| !(m.sender() == 2 && m.recipient() == 1))
        .cloned()
        .collect();
    msgs.push(relabelled);
    let err = states
        .remove(0)
        .receive_round2(&s.ids[0], &msgs, &mut s.rng)
        .expect_err("refused");
    assert!(
        matches!(err, CeremonyError::BadSignature { ref culprit } if culprit.index == 2),
        "got {err}"
    );
}

#[test]
fn bad_refresh_share_names_its_sender() {
    let (ids, outputs) = dkg(2, 3, 19);
    let group = outputs[0].share.group().clone();
    let refresh_plan = plan(
        CeremonyKind::Refresh {
            group_key: group.public_key(),
        },
        2,
        &ids,
        5,
    );
    let mut r = rng(20);
    let mut states = Vec::new();
    let mut r1 = Vec::new();
    for (id, out) in ids.iter().zip(outputs) {
        let (st, m) = Keygen::start_refresh(&refresh_plan, id, out.share, &mut r).expect("start");
        states.push(st);
        r1.push(m);
    }
    let mut r2 = Vec::new();
    let mut states2 = Vec::new();
    for (st, id) in states.into_iter().zip(&ids) {
        let (st2, msgs) = st.receive_round1(id, &r1, &mut r).expect("round 1");
        states2.push(st2);
        r2.extend(msgs);
    }
    let mut forged: Vec<_> = r2
        .into_iter()
        .filter(|m| !(m.sender() == 2 && m.recipient() == 1))
        .collect();
    let mut scalar = [0u8; 32];
    scalar[31] = 7;
    let bad = round2::Package::new(SigningShare::deserialize(&scalar).expect("scalar"));
    forged.push(
        CeremonyMessage::seal(
            &refresh_plan,
            &ids[1],
            MessageKind::RefreshRound2,
            1,
            &bad.serialize().expect("serialize"),
            &mut r,
        )
        .expect("seal"),
    );
    let err = states2
        .remove(0)
        .receive_round2(&ids[0], &forged, &mut r)
        .expect_err("bad refresh share aborts");
    match err {
        CeremonyError::InvalidShare { culprits } => assert_eq!(culprit_indexes(&culprits), [2]),
        other => panic!("expected an invalid share from #2, got {other}"),
    }
}
