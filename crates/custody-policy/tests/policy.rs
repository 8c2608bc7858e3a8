//! Behaviour a signer's operator would notice: what is allowed, what is refused and why.

use custody_policy::{
    verify_decision, verify_successor, Action, AdminQuorum, Approval, Decision, DecisionError,
    DenyReason, Network, Outcome, Payment, PolicyDocument, Rule, SignedPolicy, SuccessorError,
    Verdict, VerifiedPolicy, VerifyPolicyError, WhitelistEntry, Withdrawal,
};
use custody_threshold::{Identity, IdentityCard};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const T0: u64 = 1_800_000_000;
const ALICE_ADDR: &str = "bc1qexchangehotwalletaaaaaaaaaaaaaaaaaaaaa";
const BOB_ADDR: &str = "bc1qcoldstoragebbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const LATE_ADDR: &str = "bc1qnewlyaddedcccccccccccccccccccccccccccccc";
const LIMIT: u64 = 10_000_000;

struct Fixture {
    rng: ChaCha20Rng,
    admins: Vec<Identity>,
    coordinator: Identity,
    approvers: Vec<Identity>,
}

fn ids(rng: &mut ChaCha20Rng, prefix: &str, n: usize) -> Vec<Identity> {
    (0..n)
        .map(|i| Identity::generate(&format!("{prefix}-{i}"), rng).expect("valid name"))
        .collect()
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let admins = ids(&mut rng, "admin", 3);
    let coordinator = Identity::generate("coordinator", &mut rng).expect("valid name");
    let approvers = ids(&mut rng, "approver", 3);
    Fixture {
        rng,
        admins,
        coordinator,
        approvers,
    }
}

fn cards(ids: &[Identity]) -> Vec<IdentityCard> {
    ids.iter().map(Identity::card).collect()
}

fn quorum(f: &Fixture) -> AdminQuorum {
    AdminQuorum {
        threshold: 2,
        admins: cards(&f.admins),
    }
}

fn document(f: &Fixture, version: u64) -> PolicyDocument {
    PolicyDocument {
        version,
        network: Network::Bitcoin,
        effective_from: T0,
        per_transaction_limit_sat: LIMIT,
        admins: quorum(f),
        whitelist: vec![
            WhitelistEntry {
                address: ALICE_ADDR.into(),
                active_from: T0,
            },
            WhitelistEntry {
                address: BOB_ADDR.into(),
                active_from: T0,
            },
            WhitelistEntry {
                address: LATE_ADDR.into(),
                active_from: T0 + 48 * 3600,
            },
        ],
        rules: vec![
            Rule {
                asset: "BTC".into(),
                min_amount_sat: 0,
                max_amount_sat: 1_000_000,
                action: Action::Allow { approvals: 1 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount_sat: 1_000_001,
                max_amount_sat: 5_000_000,
                action: Action::Allow { approvals: 2 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount_sat: 5_000_001,
                max_amount_sat: 6_000_000,
                action: Action::Deny,
            },
        ],
    }
}

fn signed_by(f: &mut Fixture, doc: PolicyDocument, signers: &[usize]) -> SignedPolicy {
    let mut sp = SignedPolicy::new(doc).expect("valid document");
    for &i in signers {
        sp.sign(&f.admins[i], &mut f.rng);
    }
    sp
}

fn verified(f: &mut Fixture) -> VerifiedPolicy {
    let doc = document(f, 1);
    signed_by(f, doc, &[0, 2])
        .verify(&quorum(f))
        .expect("signed by 2 of 3 admins")
}

fn withdraw(payments: &[(&str, u64)]) -> Withdrawal {
    Withdrawal {
        asset: "BTC".into(),
        payments: payments
            .iter()
            .map(|(a, s)| Payment {
                address: (*a).into(),
                amount_sat: *s,
            })
            .collect(),
    }
}

fn deny_reason(v: Verdict) -> DenyReason {
    match v {
        Verdict::Deny { reason } => reason,
        Verdict::Allow { .. } => panic!("expected a denial, got {v:?}"),
    }
}

#[test]
fn whitelisted_withdrawal_under_limit_is_allowed_with_tiered_approvals() {
    let mut f = fixture();
    let p = verified(&mut f);
    assert_eq!(
        p.evaluate(&withdraw(&[(ALICE_ADDR, 500_000)]), T0 + 1),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 0
        }
    );
    assert_eq!(
        p.evaluate(&withdraw(&[(ALICE_ADDR, 500_000), (BOB_ADDR, 600_000)]), T0),
        Verdict::Allow {
            required_approvals: 2,
            rule_index: 1
        }
    );
}

#[test]
fn over_limit_is_denied_naming_the_amount() {
    let mut f = fixture();
    let p = verified(&mut f);
    let reason = deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, LIMIT + 1)]), T0));
    assert_eq!(
        reason,
        DenyReason::OverTransactionLimit {
            total_sat: LIMIT + 1,
            limit_sat: LIMIT
        }
    );
    assert!(reason.to_string().contains("10000001 sat"), "{reason}");
}

#[test]
fn unknown_destination_is_denied_naming_the_address() {
    let mut f = fixture();
    let p = verified(&mut f);
    let evil = "bc1qattackerdddddddddddddddddddddddddddddddd";
    let reason = deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 1000), (evil, 1000)]), T0));
    assert!(
        matches!(reason, DenyReason::UnknownDestination { ref address, .. } if address == evil)
    );
    assert!(reason.to_string().contains(evil), "{reason}");
}

#[test]
fn destination_not_yet_active_is_denied_until_its_activation_time() {
    let mut f = fixture();
    let p = verified(&mut f);
    let w = withdraw(&[(LATE_ADDR, 1000)]);
    let reason = deny_reason(p.evaluate(&w, T0 + 3600));
    assert!(matches!(reason, DenyReason::DestinationNotYetActive { .. }));
    assert!(reason.to_string().contains(LATE_ADDR), "{reason}");
    assert!(matches!(
        p.evaluate(&w, T0 + 48 * 3600),
        Verdict::Allow { .. }
    ));
}

#[test]
fn deny_rule_and_default_deny() {
    let mut f = fixture();
    let p = verified(&mut f);
    assert!(matches!(
        deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 5_500_000)]), T0)),
        DenyReason::DeniedByRule { rule_index: 2, .. }
    ));
    // Under the limit, whitelisted, but no rule covers 6–10 BTC.
    assert!(matches!(
        deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 7_000_000)]), T0)),
        DenyReason::NoMatchingRule { .. }
    ));
    let mut eth = withdraw(&[(ALICE_ADDR, 1)]);
    eth.asset = "ETH".into();
    assert!(matches!(
        deny_reason(p.evaluate(&eth, T0)),
        DenyReason::NoMatchingRule { .. }
    ));
    assert!(matches!(
        deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 1)]), T0 - 1)),
        DenyReason::PolicyNotYetEffective { .. }
    ));
}

#[test]
fn policy_signed_by_too_few_admins_is_refused() {
    let mut f = fixture();
    let doc = document(&f, 1);
    // The same admin twice is still one admin.
    let sp = signed_by(&mut f, doc, &[1, 1]);
    assert_eq!(
        sp.verify(&quorum(&f)),
        Err(VerifyPolicyError::NotEnoughSignatures {
            required: 2,
            found: 1,
            unknown: 0,
            invalid: 0
        })
    );
}

#[test]
fn policy_signed_by_a_non_admin_is_refused() {
    let mut f = fixture();
    let doc = document(&f, 1);
    let mut sp = signed_by(&mut f, doc, &[0]);
    sp.sign(&f.coordinator, &mut f.rng);
    assert!(matches!(
        sp.verify(&quorum(&f)),
        Err(VerifyPolicyError::NotEnoughSignatures {
            found: 1,
            unknown: 1,
            ..
        })
    ));
}

#[test]
fn policy_that_lists_its_own_admins_is_judged_by_the_pinned_quorum() {
    let mut f = fixture();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let rogue = ids(&mut rng, "rogue", 2);
    let mut doc = document(&f, 1);
    doc.admins = AdminQuorum {
        threshold: 2,
        admins: cards(&rogue),
    };
    let mut sp = SignedPolicy::new(doc).expect("valid document");
    for r in &rogue {
        sp.sign(r, &mut f.rng);
    }
    assert!(sp.verify(&quorum(&f)).is_err());
}

#[test]
fn successor_must_be_signed_by_the_current_quorum() {
    let mut f = fixture();
    let current = verified(&mut f);

    // New admins take over: fine when the current admins sign.
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let new_admins = ids(&mut rng, "new-admin", 2);
    let mut next = document(&f, 2);
    next.admins = AdminQuorum {
        threshold: 2,
        admins: cards(&new_admins),
    };
    let ok = signed_by(&mut f, next.clone(), &[0, 1]);
    let accepted = verify_successor(&current, &ok).expect("current quorum signed");
    assert_eq!(accepted.document().version, 2);

    // Signed only by the incoming admins: refused.
    let mut bad = SignedPolicy::new(next.clone()).expect("valid document");
    for a in &new_admins {
        bad.sign(a, &mut f.rng);
    }
    assert!(matches!(
        verify_successor(&current, &bad),
        Err(SuccessorError::Signatures(_))
    ));

    // Properly signed but not a newer version: refused (no rollback).
    let stale_doc = document(&f, 1);
    let stale = signed_by(&mut f, stale_doc, &[0, 1]);
    assert!(matches!(
        verify_successor(&current, &stale),
        Err(SuccessorError::VersionNotIncreasing {
            current: 1,
            found: 1
        })
    ));
}

#[test]
fn tampering_any_byte_of_a_signed_policy_fails_verification() {
    let mut f = fixture();
    let doc = document(&f, 1);
    let sp = signed_by(&mut f, doc, &[0, 1]);
    let bytes = sp.encode();
    let trusted = quorum(&f);
    let decoded = SignedPolicy::decode(&bytes).expect("round trip");
    assert_eq!(decoded, sp);
    assert_eq!(decoded.encode(), bytes);
    assert!(decoded.verify(&trusted).is_ok());
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let accepted = SignedPolicy::decode(&t)
            .ok()
            .and_then(|sp| sp.verify(&trusted).ok());
        assert!(accepted.is_none(), "flipping byte {i} was not detected");
    }
}

struct Case {
    policy: VerifiedPolicy,
    withdrawal: Withdrawal,
    tx: Vec<u8>,
    decision: Decision,
}

fn approved_case(f: &mut Fixture, approvers: &[usize], hold_until: u64) -> Case {
    let policy = verified(f);
    // 2 BTC: the rule requires two approvals.
    let withdrawal = withdraw(&[(BOB_ADDR, 2_000_000)]);
    let tx = vec![0xab; 32];
    let mut decision = Decision {
        policy_hash: *policy.hash(),
        withdrawal_id: "wd-0001".into(),
        transaction_digest: tx.clone(),
        outcome: Outcome::Approved,
        hold_until,
        approvals: Vec::new(),
        coordinator_signature: [0; 64],
    };
    let digest = decision.withdrawal_digest();
    for &i in approvers {
        decision
            .approvals
            .push(Approval::sign(&f.approvers[i], &digest, &mut f.rng));
    }
    decision.sign(&f.coordinator, &mut f.rng);
    Case {
        policy,
        withdrawal,
        tx,
        decision,
    }
}

fn check(f: &Fixture, c: &Case, now: u64) -> Result<usize, DecisionError> {
    verify_decision(
        &c.decision,
        &c.policy,
        &c.withdrawal,
        &c.tx,
        &f.coordinator.card(),
        &cards(&f.approvers),
        now,
    )
}

#[test]
fn valid_decision_is_accepted_and_survives_encoding() {
    let mut f = fixture();
    let c = approved_case(&mut f, &[0, 2], T0 + 10);
    assert_eq!(check(&f, &c, T0 + 10), Ok(2));
    let bytes = c.decision.encode();
    assert_eq!(Decision::decode(&bytes).as_ref(), Ok(&c.decision));
}

#[test]
fn decision_with_forged_coordinator_signature_is_refused() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1], T0);
    // Signed by someone who is not the pinned coordinator.
    let impostor = Identity::generate("coordinator", &mut f.rng).expect("valid name");
    c.decision.sign(&impostor, &mut f.rng);
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::BadCoordinatorSignature { .. })
    ));
    // Changing a field after signing breaks the real signature too.
    let mut c = approved_case(&mut f, &[0, 1], T0 + 100);
    c.decision.hold_until = T0;
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::BadCoordinatorSignature { .. })
    ));
}

#[test]
fn decision_under_another_policy_is_refused() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1], T0);
    c.decision.policy_hash[0] ^= 1;
    c.decision.sign(&f.coordinator, &mut f.rng);
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::WrongPolicy { .. })
    ));
}

#[test]
fn decision_for_another_transaction_is_refused() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1], T0);
    c.tx = vec![0xcd; 32];
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::WrongTransaction { .. })
    ));
}

#[test]
fn duplicated_approver_counts_once() {
    let mut f = fixture();
    let c = approved_case(&mut f, &[1, 1], T0);
    assert_eq!(
        check(&f, &c, T0),
        Err(DecisionError::NotEnoughApprovals {
            required: 2,
            found: 1,
            duplicates: 1,
            unknown: 0,
            invalid: 0
        })
    );
}

#[test]
fn approval_by_unknown_person_does_not_count() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0], T0);
    let digest = c.decision.withdrawal_digest();
    let outsider = Identity::generate("outsider", &mut f.rng).expect("valid name");
    c.decision
        .approvals
        .push(Approval::sign(&outsider, &digest, &mut f.rng));
    c.decision.sign(&f.coordinator, &mut f.rng);
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::NotEnoughApprovals {
            found: 1,
            unknown: 1,
            ..
        })
    ));
}

#[test]
fn unexpired_hold_is_refused_until_it_passes() {
    let mut f = fixture();
    let c = approved_case(&mut f, &[0, 1], T0 + 24 * 3600);
    assert_eq!(
        check(&f, &c, T0 + 3600),
        Err(DecisionError::HoldActive {
            hold_until: T0 + 24 * 3600,
            now: T0 + 3600
        })
    );
    assert_eq!(check(&f, &c, T0 + 24 * 3600), Ok(2));
}

#[test]
fn coordinator_approval_cannot_override_the_signers_policy() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1, 2], T0);
    // The coordinator swaps the destination; the signer's own inspection sees it.
    c.withdrawal = withdraw(&[("bc1qattackerdddddddddddddddddddddddddddddddd", 2_000_000)]);
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::PolicyDenied {
            reason: DenyReason::UnknownDestination { .. }
        })
    ));
    let mut c = approved_case(&mut f, &[0, 1], T0);
    c.decision.outcome = Outcome::Rejected;
    c.decision.sign(&f.coordinator, &mut f.rng);
    assert!(matches!(
        check(&f, &c, T0),
        Err(DecisionError::Rejected { .. })
    ));
}

#[test]
fn invalid_documents_are_refused_before_signing() {
    let f = fixture();
    let mut doc = document(&f, 1);
    doc.admins.threshold = 4;
    assert!(SignedPolicy::new(doc).is_err());
    let mut doc = document(&f, 1);
    doc.whitelist.push(WhitelistEntry {
        address: ALICE_ADDR.into(),
        active_from: 0,
    });
    assert!(SignedPolicy::new(doc).is_err());
    let mut doc = document(&f, 1);
    doc.admins.admins.push(f.admins[0].card());
    assert!(SignedPolicy::new(doc).is_err());
}
