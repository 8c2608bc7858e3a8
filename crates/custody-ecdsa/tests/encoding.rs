//! Encodings: round trips, and bounded decoders that refuse bad input with clear errors.

mod common;

use common::*;
use custody_ecdsa::{
    fuzzing, DecodeError, EcdsaCeremonyKind, EcdsaMessage, EcdsaPlan, GroupPublicKey,
    PaillierPrimes, PlanError, Step, BROADCAST,
};

fn sample_message() -> (EcdsaPlan, EcdsaMessage) {
    let ids = identities(3, &mut rng(1));
    let plan = key_plan(&ids, 2, [1; 16], "cold wallet ETH");
    let msg = EcdsaMessage::seal(
        &plan,
        &ids[0],
        Step::Keygen,
        BROADCAST,
        3,
        b"body",
        &mut rng(2),
    )
    .expect("seal");
    (plan, msg)
}

#[test]
fn plans_and_messages_round_trip() {
    let (plan, msg) = sample_message();
    assert_eq!(EcdsaPlan::decode(&plan.encode()).expect("plan"), plan);
    assert_eq!(EcdsaMessage::decode(&msg.encode()).expect("message"), msg);
    assert_eq!(&msg.encode()[..6], b"CPEC\x01\x02");
    fuzzing::plan::do_test(&plan.encode());
    fuzzing::message::do_test(&msg.encode());
}

#[test]
fn execution_ids_differ_per_step_and_per_plan() {
    let ids = identities(3, &mut rng(3));
    let a = key_plan(&ids, 2, [1; 16], "cold wallet ETH");
    let b = key_plan(&ids, 2, [1; 16], "cold wallet ETH 2");
    assert_ne!(a.execution_id(Step::AuxInfo), a.execution_id(Step::Keygen));
    assert_ne!(a.execution_id(Step::Keygen), b.execution_id(Step::Keygen));
}

#[test]
fn decoders_refuse_bad_framing_with_clear_errors() {
    let (_, msg) = sample_message();
    let good = msg.encode();

    let mut bad = good.clone();
    bad[0] = b'X';
    let err = EcdsaMessage::decode(&bad).expect_err("magic");
    assert!(matches!(err, DecodeError::BadMagic { .. }));
    assert!(err.to_string().contains("CPEC"));

    let mut bad = good.clone();
    bad[4] = 2;
    assert_eq!(
        EcdsaMessage::decode(&bad).expect_err("version"),
        DecodeError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );

    assert!(matches!(
        EcdsaPlan::decode(&good).expect_err("type"),
        DecodeError::WrongType { found: 0x02, .. }
    ));

    let err = EcdsaMessage::decode(&good[..good.len() - 1]).expect_err("truncated");
    assert!(
        err.to_string().contains("truncated input: signature"),
        "{err}"
    );

    let mut bad = good.clone();
    bad.push(0);
    assert!(matches!(
        EcdsaMessage::decode(&bad).expect_err("trailing"),
        DecodeError::TrailingBytes { count: 1, .. }
    ));

    // A payload length of 4 GiB is refused before anything is allocated.
    let mut bad = good[..61].to_vec();
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = EcdsaMessage::decode(&bad).expect_err("too long");
    assert!(
        matches!(
            err,
            DecodeError::TooLong {
                what: "payload",
                ..
            }
        ),
        "{err:?}"
    );

    let mut bad = good.clone();
    bad[6] = 9;
    assert!(EcdsaMessage::decode(&bad)
        .expect_err("step")
        .to_string()
        .contains("unknown step 9"));
}

#[test]
fn plans_refuse_inconsistent_parameters() {
    let ids = identities(3, &mut rng(4));
    let cards: Vec<_> = ids.iter().map(|i| i.card()).collect();
    assert!(matches!(
        EcdsaPlan::new([0; 16], EcdsaCeremonyKind::Key, "x", 4, cards.clone()),
        Err(PlanError::BadThreshold { .. })
    ));
    let key = [
        0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87,
        0x0b, 0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16,
        0xf8, 0x17, 0x98,
    ];
    let presign = |signers: Vec<u16>, count| EcdsaCeremonyKind::Presign {
        group_key: key,
        signers,
        count,
    };
    for (signers, count) in [
        (vec![1], 1),
        (vec![2, 1], 1),
        (vec![1, 4], 1),
        (vec![1, 2], 0),
    ] {
        assert!(matches!(
            EcdsaPlan::new([0; 16], presign(signers, count), "x", 2, cards.clone()),
            Err(PlanError::BadPresign(_))
        ));
    }
    let ok = EcdsaPlan::new([0; 16], presign(vec![1, 3], 5), "x", 2, cards).expect("valid");
    assert_eq!(EcdsaPlan::decode(&ok.encode()).expect("round trip"), ok);
}

#[test]
fn the_group_address_matches_a_known_key() {
    // Private key 1: its address is well known.
    let g = GroupPublicKey::from_compressed([
        0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87,
        0x0b, 0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16,
        0xf8, 0x17, 0x98,
    ])
    .expect("generator");
    assert_eq!(
        g.checksum_address(),
        "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    );
    // The worked example in docs/formats/ecdsa-messages.md.
    assert_eq!(
        hex::encode(g.encode()),
        "4350454301040279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    );
    assert_eq!(GroupPublicKey::decode(&g.encode()).expect("round trip"), g);
    let mut bad = g.encode();
    bad[6] = 0x05;
    assert!(GroupPublicKey::decode(&bad).is_err());
}

#[test]
fn pregenerated_primes_round_trip_and_refuse_garbage() {
    let p = primes(0);
    let bytes = p.to_secret_bytes();
    let back = PaillierPrimes::from_secret_bytes(&bytes).expect("round trip");
    assert_eq!(back.to_secret_bytes(), bytes);
    let mut bad = bytes.to_vec();
    let last = bad.len() - 1;
    bad.truncate(last);
    assert!(PaillierPrimes::from_secret_bytes(&bad).is_err());
}

#[test]
fn fuzz_entry_points_survive_hostile_inputs() {
    let (plan, msg) = sample_message();
    let seeds: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"CPEC".to_vec(),
        plan.encode(),
        msg.encode(),
        vec![0xff; 300],
        [&[0, 2, 0, 0][..], &u32::MAX.to_be_bytes()].concat(),
        [&[0, 1, 0, 5][..], &[0, 0, 0, 0][..]].concat(),
    ];
    for s in &seeds {
        fuzzing::message::do_test(s);
        fuzzing::plan::do_test(s);
        fuzzing::partial_signature::do_test(s);
        fuzzing::group_key::do_test(s);
        fuzzing::message_body::do_test(s);
        for cut in 0..s.len().min(80) {
            fuzzing::message::do_test(&s[..cut]);
            fuzzing::plan::do_test(&s[..cut]);
        }
    }
}
