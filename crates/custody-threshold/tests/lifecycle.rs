//! End-to-end lifecycles: DKG → derive → sign → verify by libsecp256k1, dealer keys,
//! refresh and repair.

mod common;

use common::*;
use custody_threshold::{
    aggregate, drill, generate_with_dealer, sign_request, AggregateError, CeremonyKind, ItemSpec,
    Network, SigningRequest, TweakMode,
};

fn three_items() -> Vec<ItemSpec> {
    vec![
        ItemSpec {
            message: msg(1).to_vec(),
            path: vec![],
            tweak: TweakMode::Untweaked,
        },
        ItemSpec {
            message: msg(2).to_vec(),
            path: vec![0, 5],
            tweak: TweakMode::KeyPath,
        },
        ItemSpec {
            message: msg(3).to_vec(),
            path: vec![1, 2],
            tweak: TweakMode::ScriptRoot([7u8; 32]),
        },
    ]
}

fn check_lifecycle(t: u16, n: usize, signers: &[u16], seed: u64) {
    let (_ids, outputs) = dkg(t, n, seed);
    assert_eq!(outputs.len(), n);
    let group = outputs[0].share.group().clone();
    for o in &outputs {
        assert_eq!(
            o.share.group(),
            &group,
            "every participant holds the same group key"
        );
        assert_eq!(o.transcript_hash, outputs[0].transcript_hash);
    }
    assert_eq!(group.threshold(), t);
    assert_eq!(usize::from(group.participants()), n);

    // Watch-only derivation agrees with the bitcoin crate's BIP32 code.
    for path in [vec![0u32, 0], vec![0, 5], vec![1, 2], vec![7, 1_000_000]] {
        let ours = group.derive(&path).expect("derive");
        let theirs = independent_output_key(&group, &path, &TweakMode::Untweaked);
        assert_eq!(ours.xpub().public_key.x_only_public_key().0, theirs);
    }

    let mut r = rng(seed + 1000);
    let mut devs = devices(outputs.into_iter().map(|o| o.share).collect(), &mut r);
    let items = three_items();
    let sigs = sign_with(&group, &mut devs, signers, items.clone(), 9);
    assert_eq!(sigs.len(), items.len());
    for (item, sig) in items.iter().zip(&sigs) {
        let key = independent_output_key(&group, &item.path, &item.tweak);
        let m: [u8; 32] = item.message.clone().try_into().expect("32 bytes");
        assert!(
            libsecp_verify(&key, &m, sig),
            "libsecp256k1 accepts the signature"
        );
        assert_eq!(
            group
                .output_key(&item.path, &item.tweak)
                .expect("output key"),
            key.serialize()
        );
        // And a different message does not verify.
        assert!(!libsecp_verify(&key, &msg(99), sig));
    }
}

#[test]
fn dkg_2_of_3_derive_sign_verify_by_libsecp256k1() {
    check_lifecycle(2, 3, &[1, 3], 1);
}

#[test]
fn dkg_3_of_5_derive_sign_verify_by_libsecp256k1() {
    check_lifecycle(3, 5, &[2, 4, 5], 2);
}

#[test]
fn more_signers_than_threshold_also_sign() {
    check_lifecycle(2, 3, &[1, 2, 3], 3);
}

#[test]
fn dealer_keys_sign_and_verify() {
    let mut r = rng(4);
    let (group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut r).expect("dealer");
    assert_eq!(shares.len(), 3);
    let mut devs = devices(shares, &mut r);
    let items = three_items();
    let sigs = sign_with(&group, &mut devs, &[2, 3], items.clone(), 1);
    for (item, sig) in items.iter().zip(&sigs) {
        let key = independent_output_key(&group, &item.path, &item.tweak);
        let m: [u8; 32] = item.message.clone().try_into().expect("32 bytes");
        assert!(libsecp_verify(&key, &m, sig));
    }
}

/// Signing derives each item's key with k256 alone (no libsecp256k1 cross-check at signing
/// time), so every path shape is signed here and checked against output keys that only the
/// `bitcoin` crate's BIP32 and BIP341 code computed: one step, the largest non-hardened
/// index, the deepest path a request allows, and the same path and prefix in several items.
#[test]
fn signing_derives_the_keys_the_bitcoin_crate_derives() {
    let mut r = rng(12);
    let (group, shares) = generate_with_dealer(Network::Regtest, 3, 5, &mut r).expect("dealer");
    let mut devs = devices(shares, &mut r);
    let deepest: Vec<u32> = (0..16).map(|i| i * 0x0800_0001 % 0x8000_0000).collect();
    let paths: Vec<Vec<u32>> = vec![
        vec![],
        vec![0],
        vec![7],
        vec![0x7fff_ffff],
        vec![0, 0],
        vec![0, 1],
        vec![0, 1],
        vec![1, 0x7fff_ffff, 0, 3],
        deepest,
    ];
    let modes = [
        TweakMode::Untweaked,
        TweakMode::KeyPath,
        TweakMode::ScriptRoot([0x3c; 32]),
    ];
    let items: Vec<ItemSpec> = paths
        .iter()
        .enumerate()
        .map(|(k, path)| ItemSpec {
            message: msg(40 + k as u8).to_vec(),
            path: path.clone(),
            tweak: modes[k % modes.len()],
        })
        .collect();
    let sigs = sign_with(&group, &mut devs, &[1, 3, 5], items.clone(), 12);
    for (item, sig) in items.iter().zip(&sigs) {
        let key = independent_output_key(&group, &item.path, &item.tweak);
        let m: [u8; 32] = item.message.clone().try_into().expect("32 bytes");
        assert!(
            libsecp_verify(&key, &m, sig),
            "path {:?}: libsecp256k1 accepts the signature",
            item.path
        );
        let untweaked = independent_output_key(&group, &item.path, &TweakMode::Untweaked);
        assert_eq!(
            group
                .derive(&item.path)
                .expect("derive")
                .xpub()
                .public_key
                .x_only_public_key()
                .0,
            untweaked,
            "path {:?}: watch-only derivation agrees",
            item.path
        );
    }
}

#[test]
fn refresh_keeps_group_key_and_old_shares_no_longer_combine() {
    let (ids, outputs) = dkg(2, 3, 5);
    let group = outputs[0].share.group().clone();
    let old_bytes: Vec<_> = outputs.iter().map(|o| o.share.to_secret_bytes()).collect();
    let plan = plan(
        CeremonyKind::Refresh {
            group_key: group.public_key(),
        },
        2,
        &ids,
        2,
    );
    let mut r = rng(6);
    let refreshed = drill::run_keygen(
        &plan,
        &ids,
        Some(outputs.into_iter().map(|o| o.share).collect()),
        &mut r,
    )
    .expect("refresh succeeds");
    let new_group = refreshed[0].share.group().clone();
    assert_eq!(new_group.public_key(), group.public_key(), "same group key");
    assert_eq!(new_group.xpub(), group.xpub(), "same xpub, same addresses");
    for (o, old) in refreshed.iter().zip(&old_bytes) {
        assert_ne!(&*o.share.to_secret_bytes(), &**old, "every share changed");
    }

    // New shares sign.
    let mut devs = devices(refreshed.into_iter().map(|o| o.share).collect(), &mut r);
    let items = three_items();
    let sigs = sign_with(&new_group, &mut devs, &[1, 2], items.clone(), 3);
    let key = independent_output_key(&new_group, &items[1].path, &items[1].tweak);
    assert!(libsecp_verify(&key, &msg(2), &sigs[1]));

    // An old share (signer 1) with a new share (signer 2) does not combine; the old one is
    // named.
    let old_share = custody_threshold::KeyShare::from_secret_bytes(&old_bytes[0]).expect("old");
    let mut mixed = devices(vec![old_share], &mut r);
    mixed.push(devs.remove(1));
    let mut pool = pool(&group, &mut mixed, 1);
    let request =
        SigningRequest::build([4; 16], &group, &[1, 2], vec![items[1].clone()], &mut pool)
            .expect("build");
    let responses: Vec<_> = mixed
        .iter_mut()
        .map(|d| sign_request(&d.share, &d.seed, &mut d.store, &request).expect("sign"))
        .collect();
    // The aggregator knows the refreshed verifying shares.
    let err = aggregate(&new_group, &request, &responses).expect_err("old and new do not mix");
    assert_eq!(err, AggregateError::InvalidShares(vec![1]));
}

#[test]
fn repair_recovers_the_lost_share_exactly() {
    let (ids, outputs) = dkg(3, 5, 7);
    let group = outputs[0].share.group().clone();
    let lost_bytes = outputs[1].share.to_secret_bytes();
    let plan = plan(
        CeremonyKind::Repair {
            group_key: group.public_key(),
            lost: 2,
            helpers: vec![1, 3, 4],
        },
        3,
        &ids,
        3,
    );
    let helpers = [
        (&ids[0], &outputs[0].share),
        (&ids[2], &outputs[2].share),
        (&ids[3], &outputs[3].share),
    ];
    let mut r = rng(8);
    let repaired = drill::run_repair(&plan, &helpers, &ids[1], &group, &mut r).expect("repair");
    assert_eq!(
        &*repaired.to_secret_bytes(),
        &*lost_bytes,
        "the same share comes back"
    );

    // The repaired share signs with two others.
    let mut shares: Vec<_> = outputs.into_iter().map(|o| o.share).collect();
    shares[1] = repaired;
    let mut devs = devices(shares, &mut r);
    let items = three_items();
    let sigs = sign_with(&group, &mut devs, &[2, 4, 5], items.clone(), 5);
    let key = independent_output_key(&group, &items[0].path, &items[0].tweak);
    assert!(libsecp_verify(&key, &msg(1), &sigs[0]));
}

#[test]
fn repair_with_too_few_helpers_is_refused_by_the_plan() {
    let mut r = rng(9);
    let ids = identities(5, &mut r);
    let cards = ids.iter().map(|i| i.card()).collect();
    let err = custody_threshold::CeremonyPlan::new(
        [0; 16],
        CeremonyKind::Repair {
            group_key: [2; 33],
            lost: 2,
            helpers: vec![1, 3],
        },
        Network::Regtest,
        "repair",
        3,
        cards,
    )
    .expect_err("two helpers cannot repair a 3-of-5 share");
    assert!(err.to_string().contains("fewer helpers than the threshold"));
}
