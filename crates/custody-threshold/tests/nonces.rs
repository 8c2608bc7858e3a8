//! One-trip signing refuses every path to nonce reuse, and aggregation names bad signers.

mod common;

use common::*;
use custody_threshold::{
    aggregate, generate_with_dealer, issue_commitments, sign_request, AggregateError,
    CommitmentPool, ConsumeError, ItemSpec, MemoryNonceStore, Network, NonceSeed, NonceStore,
    SignError, SigningRequest, TweakMode,
};

fn item(m: u8) -> ItemSpec {
    ItemSpec {
        message: msg(m).to_vec(),
        path: vec![0, 1],
        tweak: TweakMode::KeyPath,
    }
}

fn dealer_devices(seed: u64) -> (custody_threshold::GroupKey, Vec<Device>) {
    let mut r = rng(seed);
    let (group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut r).expect("dealer");
    let devs = devices(shares, &mut r);
    (group, devs)
}

#[test]
fn a_commitment_is_never_answered_twice() {
    let (group, mut devs) = dealer_devices(20);
    let mut pool = pool(&group, &mut devs, 1);
    // A malicious coordinator keeps a copy of its pool and reuses the same commitments
    // for a second, different message.
    let mut copy = pool.clone();
    let first =
        SigningRequest::build([1; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("build");
    let second =
        SigningRequest::build([2; 16], &group, &[1, 2], vec![item(2)], &mut copy).expect("build");
    let d = &mut devs[0];
    sign_request(&d.share, &d.seed, &mut d.store, &first).expect("first use signs");
    let err = sign_request(&d.share, &d.seed, &mut d.store, &second).expect_err("reuse refused");
    assert!(
        matches!(
            err,
            SignError::Nonce(ConsumeError::AlreadyConsumed { counter: 0 })
        ),
        "got {err}"
    );
    assert!(err.to_string().contains("already used"));
    // The very same request again is refused too.
    let err = sign_request(&d.share, &d.seed, &mut d.store, &first).expect_err("replay refused");
    assert!(matches!(
        err,
        SignError::Nonce(ConsumeError::AlreadyConsumed { .. })
    ));
}

#[test]
fn one_commitment_for_two_messages_in_one_request_is_refused() {
    let (group, mut devs) = dealer_devices(21);
    let mut pool = pool(&group, &mut devs, 2);
    let request =
        SigningRequest::build([3; 16], &group, &[1, 2], vec![item(1), item(2)], &mut pool)
            .expect("build");
    // Rewrite signer 1's commitment of item 2 with its commitment of item 1, on the wire.
    let (id1, c1) = request.items()[0].commitments[&1];
    let (id2, c2) = request.items()[1].commitments[&1];
    let entry = |id: custody_threshold::CommitmentId,
                 c: &frost_secp256k1_tr::round1::SigningCommitments| {
        let mut v = id.seed_id.to_vec();
        v.extend_from_slice(&id.counter.to_be_bytes());
        v.extend_from_slice(&c.hiding().serialize().expect("point"));
        v.extend_from_slice(&c.binding().serialize().expect("point"));
        v
    };
    let (from, to) = (entry(id2, &c2), entry(id1, &c1));
    let mut wire = request.encode();
    let at = wire
        .windows(from.len())
        .position(|w| w == from.as_slice())
        .expect("entry present");
    wire[at..at + from.len()].copy_from_slice(&to);
    let forged = SigningRequest::decode(&wire).expect("well-formed");
    let d = &mut devs[0];
    let err = sign_request(&d.share, &d.seed, &mut d.store, &forged).expect_err("refused");
    assert!(
        matches!(err, SignError::DuplicateCommitment(id) if id == id1),
        "got {err}"
    );
    // Nothing was consumed: the honest request still signs.
    sign_request(&d.share, &d.seed, &mut d.store, &request).expect("honest request signs");
}

#[test]
fn commitments_issued_before_a_restore_are_refused() {
    let (group, mut devs) = dealer_devices(22);
    let mut pool = pool(&group, &mut devs, 1);
    let request =
        SigningRequest::build([4; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("build");
    // The device is restored from a backup: new seed, new store.
    let d = &mut devs[0];
    d.seed = NonceSeed::generate(&mut rng(999));
    d.store = MemoryNonceStore::new();
    let err = sign_request(&d.share, &d.seed, &mut d.store, &request).expect_err("stale");
    assert!(matches!(err, SignError::StaleCommitment(_)), "got {err}");
    assert!(err.to_string().contains("restore"));
}

#[test]
fn a_substituted_commitment_is_refused() {
    let (group, mut devs) = dealer_devices(23);
    let mut pool = pool(&group, &mut devs, 1);
    let request =
        SigningRequest::build([5; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("build");
    // Signer 1's commitment id with signer 2's commitment points.
    let (_, c1) = request.items()[0].commitments[&1];
    let (_, c2) = request.items()[0].commitments[&2];
    let mut wire = request.encode();
    let h1 = c1.hiding().serialize().expect("point");
    let h2 = c2.hiding().serialize().expect("point");
    let at = wire
        .windows(33)
        .position(|w| w == h1.as_slice())
        .expect("present");
    wire[at..at + 33].copy_from_slice(&h2);
    let forged = SigningRequest::decode(&wire).expect("well-formed");
    let d = &mut devs[0];
    let err = sign_request(&d.share, &d.seed, &mut d.store, &forged).expect_err("refused");
    assert!(matches!(err, SignError::CommitmentMismatch(_)), "got {err}");
}

/// A store whose disk is full: it cannot record consumption.
struct FullDisk(MemoryNonceStore);

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

impl NonceStore for FullDisk {
    type Error = DiskFull;
    fn issue(&mut self, count: u32) -> Result<u64, DiskFull> {
        Ok(self.0.issue(count).expect("memory"))
    }
    fn consume(&mut self, _: &[u64]) -> Result<(), ConsumeError<DiskFull>> {
        Err(ConsumeError::Store(DiskFull))
    }
}

#[test]
fn no_share_leaves_when_consumption_cannot_be_recorded() {
    let mut r = rng(24);
    let (group, mut shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut r).expect("dealer");
    let share1 = shares.remove(0);
    let seed1 = NonceSeed::generate(&mut r);
    let mut store1 = FullDisk(MemoryNonceStore::new());
    let mut pool = CommitmentPool::new(&group);
    pool.add_batch(&issue_commitments(&share1, &seed1, &mut store1, 1).expect("issue"))
        .expect("batch");
    for d in &mut devices(shares, &mut r) {
        pool.add_batch(&issue_commitments(&d.share, &d.seed, &mut d.store, 1).expect("issue"))
            .expect("batch");
    }
    let request =
        SigningRequest::build([6; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("build");
    // Signer 1's device cannot persist that the nonce is spent, so it must not sign.
    let err = sign_request(&share1, &seed1, &mut store1, &request).expect_err("refused");
    assert!(
        matches!(err, SignError::Nonce(ConsumeError::Store(_))),
        "got {err}"
    );
}

#[test]
fn the_store_refuses_counters_it_never_issued() {
    let mut store = MemoryNonceStore::new();
    let first = store.issue(3).expect("issue");
    assert_eq!(first, 0);
    assert!(matches!(
        store.consume(&[3]),
        Err(ConsumeError::NeverIssued { counter: 3 })
    ));
    store.consume(&[0, 2]).expect("fresh counters");
    assert!(matches!(
        store.consume(&[1, 2]),
        Err(ConsumeError::AlreadyConsumed { counter: 2 })
    ));
    assert_eq!(
        store.issue(1).expect("issue"),
        3,
        "counters are never issued twice"
    );
}

#[test]
fn a_bad_share_is_named_at_aggregation() {
    let (group, mut devs) = dealer_devices(26);
    let mut pool = pool(&group, &mut devs, 2);
    let request =
        SigningRequest::build([7; 16], &group, &[1, 3], vec![item(1), item(2)], &mut pool)
            .expect("build");
    let mut responses: Vec<_> = devs
        .iter_mut()
        .filter(|d| d.share.index() != 2)
        .map(|d| sign_request(&d.share, &d.seed, &mut d.store, &request).expect("sign"))
        .collect();
    responses[1].shares[1][31] ^= 1;
    let err = aggregate(&group, &request, &responses).expect_err("bad share");
    assert_eq!(err, AggregateError::InvalidShares(vec![3]));

    responses.pop();
    let err = aggregate(&group, &request, &responses).expect_err("missing");
    assert_eq!(err, AggregateError::Missing(vec![3]));
}

#[test]
fn a_response_to_another_request_is_refused() {
    let (group, mut devs) = dealer_devices(27);
    let mut pool = pool(&group, &mut devs, 2);
    let a = SigningRequest::build([8; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("a");
    let b = SigningRequest::build([9; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("b");
    let ra = {
        let d = &mut devs[0];
        sign_request(&d.share, &d.seed, &mut d.store, &a).expect("sign")
    };
    let rb = {
        let d = &mut devs[1];
        sign_request(&d.share, &d.seed, &mut d.store, &b).expect("sign")
    };
    let err = aggregate(&group, &a, &[ra, rb]).expect_err("mixed requests");
    assert_eq!(err, AggregateError::WrongRequest(2));
}

#[test]
fn a_signer_not_chosen_refuses_and_pools_run_dry_cleanly() {
    let (group, mut devs) = dealer_devices(28);
    let mut pool = pool(&group, &mut devs, 1);
    let request =
        SigningRequest::build([10; 16], &group, &[1, 2], vec![item(1)], &mut pool).expect("build");
    let d = &mut devs[2];
    let err = sign_request(&d.share, &d.seed, &mut d.store, &request).expect_err("not chosen");
    assert!(matches!(err, SignError::NotASigner(3)));
    let err = SigningRequest::build([11; 16], &group, &[1, 2], vec![item(2)], &mut pool)
        .expect_err("no commitments left");
    assert!(err.to_string().contains("ask for a new batch"), "{err}");
    assert_eq!(pool.available(3), 1, "a failed build takes nothing");
}
