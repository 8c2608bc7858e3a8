//! Threshold ECDSA ceremonies end to end (auxiliary info → key generation → presigning
//! in a batch → one-trip signing → combination, checked independently with `k256`), and
//! the messages and partial signatures that must be refused, each with an error naming
//! the participant at fault.
//!
//! Auxiliary-info generation is slow even with pre-generated primes (Paillier proofs over
//! 3072-bit moduli), so the 2-of-3 key is generated once per test binary ([`fixture`]).

mod common;

use std::sync::OnceLock;

use common::*;
use custody_ecdsa::{
    combine, sign_prehash, EcdsaCeremonyError, EcdsaKeyShare, EcdsaMessage, EthSignature,
    KeygenSession, PartialSignature, PresignSession, PresignatureId, PresignatureStore,
    PresignatureStoreError, SignError, Step, BROADCAST,
};
use custody_threshold::Identity;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use sha3::{Digest, Keccak256};

/// A 2-of-3 key generated once for this test binary: identity and key share secrets.
fn fixture() -> (Vec<Identity>, Vec<EcdsaKeyShare>) {
    static KEY: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    let stored = KEY.get_or_init(|| {
        let ids = identities(3, &mut rng(40));
        let shares = generate_key(&ids, 2, 40);
        ids.iter()
            .zip(&shares)
            .map(|(i, s)| (i.to_secret_bytes().to_vec(), s.to_secret_bytes().to_vec()))
            .collect()
    });
    stored
        .iter()
        .map(|(i, s)| {
            (
                Identity::from_secret_bytes(i).expect("identity"),
                EcdsaKeyShare::from_secret_bytes(s).expect("key share"),
            )
        })
        .unzip()
}

/// Starts key generation for alice and bob under `plan` and returns alice's session and
/// bob's first broadcast.
fn alice_and_bobs_first(
    ids: &[Identity],
    plan: &custody_ecdsa::EcdsaPlan,
    bob_plan: &custody_ecdsa::EcdsaPlan,
) -> (KeygenSession, EcdsaMessage) {
    let mut r = rng(7);
    let (alice, _) = KeygenSession::start(plan, &ids[0], &mut r).expect("alice starts");
    let (_, bob_out) = KeygenSession::start(bob_plan, &ids[1], &mut r).expect("bob starts");
    let msg = bob_out
        .into_iter()
        .find(|m| m.recipient() == BROADCAST)
        .expect("keygen starts with a broadcast");
    (alice, msg)
}

#[test]
fn a_message_from_another_execution_id_is_refused_naming_the_sender() {
    let ids = identities(3, &mut rng(8));
    let plan = key_plan(&ids, 2, [8; 16], "cold wallet ETH");
    // Same ceremony id, different parameters: bob's execution id differs.
    let bobs = key_plan(&ids, 3, [8; 16], "cold wallet ETH");
    let (mut alice, msg) = alice_and_bobs_first(&ids, &plan, &bobs);
    assert_ne!(msg.execution_id(), &plan.execution_id(Step::Keygen));
    let err = alice
        .receive(&ids[0], &[msg], &mut rng(9))
        .expect_err("wrong execution id");
    match &err {
        EcdsaCeremonyError::WrongExecutionId { culprit } => {
            assert_eq!(culprit.index, 2);
            assert_eq!(culprit.name, "bob");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("#2 (bob)"), "{err}");
}

#[test]
fn a_message_for_another_step_is_refused() {
    let ids = identities(3, &mut rng(10));
    let plan = key_plan(&ids, 2, [10; 16], "cold wallet ETH");
    let mut r = rng(11);
    let (mut alice, _) = KeygenSession::start(&plan, &ids[0], &mut r).expect("alice");
    let (_, bob_aux) =
        custody_ecdsa::AuxInfoSession::start(&plan, &ids[1], primes(1), &mut r).expect("bob");
    let err = alice
        .receive(&ids[0], &bob_aux, &mut r)
        .expect_err("aux message into keygen");
    assert!(
        matches!(err, EcdsaCeremonyError::UnexpectedStep { sender: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn a_tampered_message_is_refused_naming_the_sender() {
    let ids = identities(3, &mut rng(12));
    let plan = key_plan(&ids, 2, [12; 16], "cold wallet ETH");
    let (mut alice, msg) = alice_and_bobs_first(&ids, &plan, &plan);
    let mut bytes = msg.encode();
    let last_payload_byte = bytes.len() - 65;
    bytes[last_payload_byte] ^= 1;
    let tampered = EcdsaMessage::decode(&bytes).expect("still well-formed");
    let err = alice
        .receive(&ids[0], &[tampered], &mut rng(13))
        .expect_err("tampered");
    match &err {
        EcdsaCeremonyError::BadSignature { culprit } => assert_eq!(culprit.name, "bob"),
        other => panic!("unexpected {other:?}"),
    }
    // The untouched message is still accepted afterwards.
    alice
        .receive(&ids[0], &[msg], &mut rng(14))
        .expect("honest message accepted");
}

#[test]
fn a_forged_message_and_an_outsider_are_refused() {
    let ids = identities(4, &mut rng(15));
    let plan = key_plan(&ids[..3], 2, [15; 16], "cold wallet ETH");
    let mut r = rng(16);
    let (mut alice, _) = KeygenSession::start(&plan, &ids[0], &mut r).expect("alice");

    // Mallory (not in the plan) cannot seal a message for it at all.
    let mallory = &ids[3];
    assert_eq!(
        EcdsaMessage::seal(&plan, mallory, Step::Keygen, BROADCAST, 0, b"x", &mut r)
            .expect_err("outsider"),
        EcdsaCeremonyError::NotInPlan
    );

    // Mallory takes bob's place in a copy of the plan, signs as #2 and patches in the
    // real plan's execution id: the signature does not verify under bob's key.
    let mut cards: Vec<_> = ids[..3].iter().map(Identity::card).collect();
    cards[1] = mallory.card();
    let forged_plan = custody_ecdsa::EcdsaPlan::new(
        [15; 16],
        custody_ecdsa::EcdsaCeremonyKind::Key,
        "cold wallet ETH",
        2,
        cards,
    )
    .expect("plan");
    let forged = EcdsaMessage::seal(
        &forged_plan,
        mallory,
        Step::Keygen,
        BROADCAST,
        0,
        b"x",
        &mut r,
    )
    .expect("sealed under the copy");
    let mut bytes = forged.encode();
    // magic 4 + version 1 + type 1 + step 1 + ceremony id 16, then the execution id.
    bytes[23..55].copy_from_slice(&plan.execution_id(Step::Keygen));
    let forged = EcdsaMessage::decode(&bytes).expect("well-formed");
    let err = alice
        .receive(&ids[0], &[forged], &mut r)
        .expect_err("forged");
    assert!(
        matches!(&err, EcdsaCeremonyError::BadSignature { culprit } if culprit.index == 2),
        "{err:?}"
    );

    // A sender index outside the plan.
    let mut bytes = EcdsaMessage::seal(&plan, &ids[1], Step::Keygen, BROADCAST, 0, b"x", &mut r)
        .expect("bob")
        .encode();
    bytes[55..57].copy_from_slice(&9u16.to_be_bytes());
    let outside = EcdsaMessage::decode(&bytes).expect("well-formed");
    let err = alice
        .receive(&ids[0], &[outside], &mut r)
        .expect_err("outside");
    assert_eq!(err, EcdsaCeremonyError::UnknownParticipant { index: 9 });
}

#[test]
fn a_participant_outside_the_signer_set_cannot_join_presigning() {
    let (ids, shares) = fixture();
    let plan = presign_plan(&ids, &shares[0], &[1, 3], 1, [0x51; 16]);
    let mut r = rng(17);
    let (mut alice, _) =
        PresignSession::start(&plan, &ids[0], &shares[0], &mut r).expect("alice presigns");
    // Bob holds a share of the key but is not one of this batch's signers.
    assert_eq!(
        PresignSession::start(&plan, &ids[1], &shares[1], &mut r).expect_err("bob"),
        EcdsaCeremonyError::NotInPlan
    );
    let from_bob = EcdsaMessage::seal(&plan, &ids[1], Step::Presign, BROADCAST, 0, b"x", &mut r)
        .expect("bob is in the plan's participant list");
    let err = alice
        .receive(&ids[0], &[from_bob], &mut r)
        .expect_err("bob");
    assert!(
        matches!(&err, EcdsaCeremonyError::NotAParty { culprit } if culprit.name == "bob"),
        "{err:?}"
    );
    // A key share of another participant is refused before anything runs.
    assert!(matches!(
        PresignSession::start(&plan, &ids[2], &shares[0], &mut r).expect_err("wrong share"),
        EcdsaCeremonyError::KeyShareMismatch(_)
    ));
}

#[test]
fn tampered_or_inconsistent_partial_signatures_are_refused_naming_the_signer() {
    let (ids, shares) = fixture();
    let plan = presign_plan(&ids, &shares[0], &[2, 3], 1, [0x52; 16]);
    let mut stores = presign(&ids, &shares, &plan, &[2, 3], 18);
    let id = PresignatureId {
        batch: *plan.ceremony_id(),
        index: 0,
    };
    let mut r = rng(19);
    let hash = [7u8; 32];
    let bob = sign_prehash(&shares[1], &ids[1], &mut stores[1], &id, &hash, &mut r).expect("bob");
    let carol =
        sign_prehash(&shares[2], &ids[2], &mut stores[2], &id, &hash, &mut r).expect("carol");

    let mut bytes = carol.encode();
    let sigma_last = bytes.len() - 65;
    bytes[sigma_last] ^= 1;
    let altered = PartialSignature::decode(&bytes).expect("well-formed");
    let err = combine(&plan, &hash, &[bob.clone(), altered]).expect_err("altered");
    assert!(err.to_string().contains("#3 (carol)"), "{err}");

    let err = combine(&plan, &[8u8; 32], &[bob.clone(), carol.clone()]).expect_err("other hash");
    assert!(err.to_string().contains("#2 (bob)"), "{err}");

    let err = combine(&plan, &hash, std::slice::from_ref(&bob)).expect_err("missing");
    assert!(err.to_string().contains("[3]"), "{err}");

    combine(&plan, &hash, &[carol, bob]).expect("both honest, any order");
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let (ids, shares) = fixture();
    let shown = format!("{:?}", shares[0]);
    assert!(shown.contains("<redacted>"));
    let secret_hex = hex::encode(shares[0].to_secret_bytes().as_slice());
    assert!(!shown.contains(&secret_hex[secret_hex.len() - 64..]));
    let plan = presign_plan(&ids, &shares[0], &[1, 2], 1, [0x53; 16]);
    let mut stores = presign(&ids, &shares, &plan, &[1, 2], 20);
    let p = custody_ecdsa::PresignatureStore::take(
        &mut stores[0],
        &PresignatureId {
            batch: [0x53; 16],
            index: 0,
        },
    )
    .expect("stored");
    let shown = format!("{p:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let bytes = p.to_secret_bytes();
    let back = custody_ecdsa::Presignature::from_secret_bytes(&bytes).expect("round trip");
    assert_eq!(back.id(), p.id());
    assert_eq!(format!("{:?}", primes(0)), "PaillierPrimes(<redacted>)");
}

fn prehash(text: &str) -> [u8; 32] {
    Keccak256::digest(text.as_bytes()).into()
}

/// Checks a signature the way an Ethereum node would, with `k256` only.
fn check_like_a_node(share: &EcdsaKeyShare, hash: &[u8; 32], sig: &EthSignature) {
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(share.group_key().compressed())
        .expect("group key");
    let k_sig = k256::ecdsa::Signature::from_scalars(sig.r, sig.s).expect("scalars");
    assert!(k_sig.normalize_s().is_none(), "signature must be low-s");
    vk.verify_prehash(hash, &k_sig)
        .expect("verifies under the group key");
    let recid = k256::ecdsa::RecoveryId::new(sig.y_parity, false);
    let recovered =
        k256::ecdsa::VerifyingKey::recover_from_prehash(hash, &k_sig, recid).expect("recovers");
    assert_eq!(recovered, vk, "y parity recovers the group key");
    let encoded = recovered.to_encoded_point(false);
    let address: [u8; 20] = Keccak256::digest(&encoded.as_bytes()[1..])[12..]
        .try_into()
        .expect("20 bytes");
    assert_eq!(address, share.group_key().address());
}

fn end_to_end(ids: &[Identity], shares: &[EcdsaKeyShare], t: u16, signers: &[u16], seed: u64) {
    let group = *shares[0].group_key();
    for s in shares {
        assert_eq!(
            s.group_key(),
            &group,
            "every participant holds the same key"
        );
        assert_eq!(s.threshold(), t);
    }
    assert!(group.checksum_address().starts_with("0x"));

    let plan = presign_plan(ids, &shares[0], signers, 2, [0xB0 | seed as u8; 16]);
    let mut stores = presign(ids, shares, &plan, signers, seed + 1);
    let mut r = rng(seed + 2);

    for (index, text) in [(0u16, "withdrawal 1"), (1, "withdrawal 2")] {
        let id = PresignatureId {
            batch: *plan.ceremony_id(),
            index,
        };
        let hash = prehash(text);
        let partials: Vec<PartialSignature> = signers
            .iter()
            .map(|&s| {
                let i = usize::from(s - 1);
                sign_prehash(&shares[i], &ids[i], &mut stores[i], &id, &hash, &mut r)
                    .expect("partial signature")
            })
            .collect();
        let sig = combine(&plan, &hash, &partials).expect("combined signature");
        check_like_a_node(&shares[0], &hash, &sig);
        assert_eq!(
            sig.recover_address(&hash).expect("recovers"),
            group.address()
        );
    }
    for &s in signers {
        assert!(stores[usize::from(s - 1)].available().is_empty());
    }
}

#[test]
fn two_of_three_signs_a_prehash_ethereum_accepts() {
    let (ids, shares) = fixture();
    end_to_end(&ids, &shares, 2, &[1, 3], 1);
}

#[test]
fn three_of_five_signs_a_prehash_ethereum_accepts() {
    let ids = identities(5, &mut rng(2));
    let shares = generate_key(&ids, 3, 2);
    end_to_end(&ids, &shares, 3, &[2, 4, 5], 2);
}

#[test]
fn a_presignature_is_refused_the_second_time_and_after_restore() {
    let (ids, shares) = fixture();
    let plan = presign_plan(&ids, &shares[0], &[1, 2], 1, [0x33; 16]);
    let mut stores = presign(&ids, &shares, &plan, &[1, 2], 4);
    let id = PresignatureId {
        batch: *plan.ceremony_id(),
        index: 0,
    };
    let mut r = rng(5);
    let first = sign_prehash(
        &shares[0],
        &ids[0],
        &mut stores[0],
        &id,
        &prehash("a"),
        &mut r,
    );
    assert!(first.is_ok());
    let again = sign_prehash(
        &shares[0],
        &ids[0],
        &mut stores[0],
        &id,
        &prehash("b"),
        &mut r,
    )
    .expect_err("second use must be refused");
    assert!(
        matches!(
            again,
            SignError::Store(PresignatureStoreError::AlreadyConsumed { .. })
        ),
        "{again}"
    );
    assert!(again.to_string().contains("already used"));

    // The key share survives a backup round trip, but the restored device has no
    // presignatures: the export never carries them.
    let restored =
        EcdsaKeyShare::from_secret_bytes(&shares[1].to_secret_bytes()).expect("restores");
    assert_eq!(restored.group_key(), shares[1].group_key());
    let mut fresh_store = custody_ecdsa::MemoryPresignatureStore::new();
    let err = sign_prehash(
        &restored,
        &ids[1],
        &mut fresh_store,
        &id,
        &prehash("a"),
        &mut r,
    )
    .expect_err("a restored device has no presignatures");
    assert!(matches!(
        err,
        SignError::Store(PresignatureStoreError::Unknown { .. })
    ));
}

/// A party that falls a round behind and then receives two rounds at once (the others'
/// first and second round in one USB copy) sends one envelope per round, under
/// consecutive sequence numbers, and the others accept them: the ceremony finishes.
#[test]
fn messages_that_arrive_a_round_early_still_travel_one_round_per_envelope() {
    let ids = identities(3, &mut rng(40));
    let plan = key_plan(&ids, 2, [40; 16], "early delivery");
    let mut r = rng(41);
    let mut sessions = Vec::new();
    let mut round1 = Vec::new();
    for id in &ids {
        let (s, out) = KeygenSession::start(&plan, id, &mut r).expect("start");
        sessions.push(s);
        round1.extend(out);
    }
    // Bob and carol go one round ahead; alice sees nothing yet.
    let mut ahead = Vec::new();
    for i in 1..3 {
        ahead.extend(
            sessions[i]
                .receive(&ids[i], &round1, &mut r)
                .expect("round 2"),
        );
    }
    assert!(!ahead.is_empty(), "bob and carol sent their second round");
    let mut both_rounds = round1.clone();
    both_rounds.extend(ahead.iter().cloned());
    let from_alice = sessions[0]
        .receive(&ids[0], &both_rounds, &mut r)
        .expect("alice catches up");
    let sequences: std::collections::BTreeSet<u16> =
        from_alice.iter().map(EcdsaMessage::sequence).collect();
    assert!(
        sequences.len() >= 2,
        "two rounds went out under two sequence numbers: {sequences:?}"
    );
    let mut pending = ahead;
    pending.extend(from_alice);
    for _ in 0..12 {
        if sessions.iter().all(KeygenSession::is_finished) {
            break;
        }
        let mut next = Vec::new();
        for (i, s) in sessions.iter_mut().enumerate() {
            next.extend(s.receive(&ids[i], &pending, &mut r).expect("accepted"));
        }
        pending = next;
    }
    assert!(
        sessions.iter().all(KeygenSession::is_finished),
        "key generation finished for everyone"
    );
}
