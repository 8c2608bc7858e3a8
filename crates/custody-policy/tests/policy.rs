//! Behaviour a signer's operator would notice: what is allowed, what is refused and why.

use custody_policy::{
    verify_decision, verify_successor, Action, AdminQuorum, Approval, Decision, DecisionError,
    DenyReason, InvalidPolicyError, Network, Outcome, PastWithdrawal, Payment, PolicyDocument,
    Rule, SignedPolicy, SuccessorError, TimeWindow, TransactionLimit, VelocityLimit, Verdict,
    VerifiedPolicy, VerifyPolicyError, WhitelistEntry, WindowUsage, Withdrawal,
};
use custody_threshold::{Identity, IdentityCard};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const T0: u64 = 1_800_000_000;
const ALICE_ADDR: &str = "bc1qexchangehotwalletaaaaaaaaaaaaaaaaaaaaa";
const BOB_ADDR: &str = "bc1qcoldstoragebbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const LATE_ADDR: &str = "bc1qnewlyaddedcccccccccccccccccccccccccccccc";
const LIMIT: u128 = 10_000_000;
const DELAY: u64 = 48 * 3600;
const DAY: u64 = 86_400;
/// Monday 2027-01-11 00:00 UTC; `T0` is the Friday of that week, 08:00 UTC.
const MONDAY: u64 = 1_799_625_600;
const BUSINESS_HOURS: TimeWindow = TimeWindow {
    days: TimeWindow::WEEKDAYS,
    start_minute: 9 * 60,
    end_minute: 17 * 60,
};

/// Unix time of `hour:minute` UTC on the day `day` days after `MONDAY`.
fn at(day: u64, hour: u64, minute: u64) -> u64 {
    MONDAY + day * DAY + hour * 3600 + minute * 60
}

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
        announced_at: T0 - DELAY,
        effective_from: T0,
        change_delay_secs: DELAY,
        admins: quorum(f),
        coordinator: f.coordinator.card(),
        approvers: cards(&f.approvers),
        limits: vec![TransactionLimit {
            asset: "BTC".into(),
            max_amount: LIMIT,
        }],

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
                min_amount: 0,
                max_amount: 1_000_000,
                window: None,
                action: Action::Allow { approvals: 1 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount: 1_000_001,
                max_amount: 5_000_000,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
            Rule {
                asset: "BTC".into(),
                min_amount: 5_000_001,
                max_amount: 6_000_000,
                window: None,
                action: Action::Deny,
            },
            // 8–9 BTC only during business hours on weekdays.
            Rule {
                asset: "BTC".into(),
                min_amount: 8_000_001,
                max_amount: 9_000_000,
                window: Some(BUSINESS_HOURS),
                action: Action::Allow { approvals: 3 },
            },
        ],
        velocity: vec![VelocityLimit {
            asset: "BTC".into(),
            window_secs: DAY,
            max_total: 3_000_000,
            max_count: 3,
        }],
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

fn withdraw(payments: &[(&str, u128)]) -> Withdrawal {
    Withdrawal {
        asset: "BTC".into(),
        payments: payments
            .iter()
            .map(|(a, s)| Payment {
                address: (*a).into(),
                amount: *s,
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
            asset: "BTC".into(),
            total: LIMIT + 1,
            limit: LIMIT
        }
    );
    assert!(reason.to_string().contains("10000001 BTC"), "{reason}");
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
    // An asset without a per-transaction limit cannot be withdrawn at all.
    let mut eth = withdraw(&[(ALICE_ADDR, 1)]);
    eth.asset = "ETH".into();
    let reason = deny_reason(p.evaluate(&eth, T0));
    assert_eq!(
        reason,
        DenyReason::NoLimitForAsset {
            asset: "ETH".into()
        }
    );
    assert!(reason.to_string().contains("ETH"), "{reason}");
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
    approved_case_under(f, policy, approvers, hold_until)
}

fn approved_case_under(
    f: &mut Fixture,
    policy: VerifiedPolicy,
    approvers: &[usize],
    hold_until: u64,
) -> Case {
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

fn check(c: &Case, now: u64) -> Result<usize, DecisionError> {
    verify_decision(&c.decision, &c.policy, &c.withdrawal, &c.tx, now)
}

#[test]
fn valid_decision_is_accepted_and_survives_encoding() {
    let mut f = fixture();
    let c = approved_case(&mut f, &[0, 2], T0 + 10);
    assert_eq!(check(&c, T0 + 10), Ok(2));
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
        check(&c, T0),
        Err(DecisionError::BadCoordinatorSignature { .. })
    ));
    // Changing a field after signing breaks the real signature too.
    let mut c = approved_case(&mut f, &[0, 1], T0 + 100);
    c.decision.hold_until = T0;
    assert!(matches!(
        check(&c, T0),
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
        check(&c, T0),
        Err(DecisionError::WrongPolicy { .. })
    ));
}

#[test]
fn decision_for_another_transaction_is_refused() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1], T0);
    c.tx = vec![0xcd; 32];
    assert!(matches!(
        check(&c, T0),
        Err(DecisionError::WrongTransaction { .. })
    ));
}

#[test]
fn duplicated_approver_counts_once() {
    let mut f = fixture();
    let c = approved_case(&mut f, &[1, 1], T0);
    assert_eq!(
        check(&c, T0),
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
        check(&c, T0),
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
        check(&c, T0 + 3600),
        Err(DecisionError::HoldActive {
            hold_until: T0 + 24 * 3600,
            now: T0 + 3600
        })
    );
    assert_eq!(check(&c, T0 + 24 * 3600), Ok(2));
}

#[test]
fn coordinator_approval_cannot_override_the_signers_policy() {
    let mut f = fixture();
    let mut c = approved_case(&mut f, &[0, 1, 2], T0);
    // The coordinator swaps the destination; the signer's own inspection sees it.
    c.withdrawal = withdraw(&[("bc1qattackerdddddddddddddddddddddddddddddddd", 2_000_000)]);
    assert!(matches!(
        check(&c, T0),
        Err(DecisionError::PolicyDenied {
            reason: DenyReason::UnknownDestination { .. }
        })
    ));
    let mut c = approved_case(&mut f, &[0, 1], T0);
    c.decision.outcome = Outcome::Rejected;
    c.decision.sign(&f.coordinator, &mut f.rng);
    assert!(matches!(check(&c, T0), Err(DecisionError::Rejected { .. })));
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

fn verify_doc(f: &mut Fixture, doc: PolicyDocument) -> VerifiedPolicy {
    signed_by(f, doc, &[0, 1])
        .verify(&quorum(f))
        .expect("signed by 2 of 3 admins")
}

fn invalid(doc: PolicyDocument) -> InvalidPolicyError {
    SignedPolicy::new(doc).expect_err("document must be refused")
}

#[test]
fn fixture_times_are_the_weekdays_the_tests_assume() {
    let mut f = fixture();
    let p = verified(&mut f);
    // T0 is Friday 08:00: business hours have not started yet.
    assert_eq!(T0, at(4, 8, 0));
    let w = withdraw(&[(ALICE_ADDR, 8_500_000)]);
    assert!(matches!(
        deny_reason(p.evaluate(&w, T0)),
        DenyReason::OutsideTimeWindow { rule_index: 3, .. }
    ));
    assert!(matches!(
        p.evaluate(&w, at(4, 9, 0)),
        Verdict::Allow { rule_index: 3, .. }
    ));
}

#[test]
fn rules_apply_per_asset_with_long_token_ids() {
    let mut f = fixture();
    let usdc = "ERC20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
    let mut doc = document(&f, 1);
    doc.limits.push(TransactionLimit {
        asset: usdc.into(),
        max_amount: 50_000_000_000,
    });
    doc.rules.push(Rule {
        asset: usdc.into(),
        min_amount: 0,
        max_amount: 50_000_000_000,
        window: None,
        action: Action::Allow { approvals: 3 },
    });
    let p = verify_doc(&mut f, doc);
    let mut w = withdraw(&[(ALICE_ADDR, 20_000_000_000)]);
    w.asset = usdc.into();
    // The BTC rules do not apply to the token even though the amount is in a BTC tier.
    assert_eq!(
        p.evaluate(&w, T0),
        Verdict::Allow {
            required_approvals: 3,
            rule_index: 4
        }
    );
    // The token's own limit applies, not BTC's.
    w.payments[0].amount = 50_000_000_001;
    assert!(matches!(
        deny_reason(p.evaluate(&w, T0)),
        DenyReason::OverTransactionLimit { ref asset, limit: 50_000_000_000, .. } if asset == usdc
    ));

    // Asset ids up to 64 bytes are accepted, longer ones refused.
    let mut doc = document(&f, 1);
    doc.limits[0].asset = "A".repeat(64);
    assert!(SignedPolicy::new(doc).is_ok());
    let mut doc = document(&f, 1);
    doc.rules[1].asset = "A".repeat(65);
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::BadAsset {
            what: "rule",
            index: 1,
            ..
        }
    ));
    let mut doc = document(&f, 1);
    doc.limits[0].asset = "B TC".into();
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::BadAsset { what: "limit", .. }
    ));
}

#[test]
fn amount_tiers_are_inclusive_at_both_ends() {
    let mut f = fixture();
    let p = verified(&mut f);
    let rule_for = |amount| match p.evaluate(&withdraw(&[(ALICE_ADDR, amount)]), T0) {
        Verdict::Allow { rule_index, .. } => Ok(rule_index),
        Verdict::Deny { reason } => Err(reason),
    };
    assert_eq!(rule_for(1), Ok(0));
    assert_eq!(rule_for(1_000_000), Ok(0));
    assert_eq!(rule_for(1_000_001), Ok(1));
    assert_eq!(rule_for(5_000_000), Ok(1));
    assert!(matches!(
        rule_for(5_000_001),
        Err(DenyReason::DeniedByRule { rule_index: 2, .. })
    ));
    assert!(matches!(
        rule_for(6_000_001),
        Err(DenyReason::NoMatchingRule {
            total: 6_000_001,
            ..
        })
    ));
}

#[test]
fn limits_replace_the_single_limit_and_duplicates_are_refused() {
    let f = fixture();
    let mut doc = document(&f, 1);
    doc.limits.push(TransactionLimit {
        asset: "BTC".into(),
        max_amount: 1,
    });
    assert_eq!(
        invalid(doc),
        InvalidPolicyError::DuplicateLimit {
            asset: "BTC".into()
        }
    );
}

#[test]
fn time_window_within_a_day() {
    let w = BUSINESS_HOURS;
    assert!(!w.contains(at(0, 8, 59)));
    assert!(w.contains(at(0, 9, 0)));
    assert!(w.contains(at(0, 16, 59) + 59));
    assert!(!w.contains(at(0, 17, 0)));
    assert!(w.contains(at(4, 12, 0)), "Friday");
    assert!(!w.contains(at(5, 12, 0)), "Saturday");
    assert!(!w.contains(at(6, 12, 0)), "Sunday");
    assert!(w.contains(at(7, 12, 0)), "next Monday");
    assert_eq!(w.to_string(), "Mon,Tue,Wed,Thu,Fri 09:00-17:00 UTC");

    let all_monday = TimeWindow {
        days: TimeWindow::MONDAY,
        start_minute: 0,
        end_minute: 1440,
    };
    assert!(all_monday.contains(at(0, 0, 0)));
    assert!(all_monday.contains(at(0, 23, 59)));
    assert!(!all_monday.contains(at(1, 0, 0)));
    assert!(!all_monday.contains(at(0, 0, 0) - 1));
}

#[test]
fn time_window_wrapping_midnight_belongs_to_the_day_it_opens() {
    // Friday 22:00 until Saturday 02:00.
    let w = TimeWindow {
        days: TimeWindow::FRIDAY,
        start_minute: 22 * 60,
        end_minute: 2 * 60,
    };
    assert!(!w.contains(at(4, 21, 59)));
    assert!(w.contains(at(4, 22, 0)));
    assert!(w.contains(at(4, 23, 59)));
    assert!(w.contains(at(5, 0, 0)), "Saturday just after midnight");
    assert!(w.contains(at(5, 1, 59)));
    assert!(!w.contains(at(5, 2, 0)));
    assert!(
        !w.contains(at(4, 1, 0)),
        "Friday early morning belongs to Thursday"
    );
    assert!(!w.contains(at(5, 22, 0)), "Saturday evening");
    assert_eq!(w.to_string(), "Fri 22:00-02:00 UTC");

    // Every night, as a rule: small amounts at night need more approvals.
    let mut f = fixture();
    let mut doc = document(&f, 1);
    doc.rules.insert(
        0,
        Rule {
            asset: "BTC".into(),
            min_amount: 0,
            max_amount: 1_000_000,
            window: Some(TimeWindow {
                days: TimeWindow::EVERY_DAY,
                start_minute: 22 * 60,
                end_minute: 6 * 60,
            }),
            action: Action::Allow { approvals: 3 },
        },
    );
    let p = verify_doc(&mut f, doc);
    let small = withdraw(&[(ALICE_ADDR, 1000)]);
    let approvals = |now| match p.evaluate(&small, now) {
        Verdict::Allow {
            required_approvals, ..
        } => required_approvals,
        Verdict::Deny { reason } => panic!("denied: {reason}"),
    };
    assert_eq!(approvals(at(6, 23, 0)), 3, "Sunday night");
    assert_eq!(approvals(at(7, 5, 59)), 3, "Monday before 06:00");
    assert_eq!(approvals(at(7, 6, 0)), 1, "Monday 06:00, the day rule");
}

#[test]
fn outside_every_window_is_denied_naming_the_window() {
    let mut f = fixture();
    let p = verified(&mut f);
    let reason = deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 8_500_000)]), at(5, 10, 0)));
    assert_eq!(
        reason,
        DenyReason::OutsideTimeWindow {
            rule_index: 3,
            window: BUSINESS_HOURS,
            now: at(5, 10, 0)
        }
    );
    let text = reason.to_string();
    assert!(text.contains("rule 3"), "{text}");
    assert!(
        text.contains("Mon,Tue,Wed,Thu,Fri 09:00-17:00 UTC"),
        "{text}"
    );
}

#[test]
fn malformed_time_windows_are_refused() {
    let f = fixture();
    for (days, start_minute, end_minute) in [
        (0, 0, 60),
        (0x80 | TimeWindow::MONDAY, 0, 60),
        (TimeWindow::MONDAY, 1440, 60),
        (TimeWindow::MONDAY, 60, 0),
        (TimeWindow::MONDAY, 60, 1441),
        (TimeWindow::MONDAY, 60, 60),
    ] {
        let mut doc = document(&f, 1);
        doc.rules[0].window = Some(TimeWindow {
            days,
            start_minute,
            end_minute,
        });
        assert!(
            matches!(invalid(doc), InvalidPolicyError::BadRule { index: 0, .. }),
            "window {days:#x} {start_minute}-{end_minute} was accepted"
        );
    }
}

fn past(time: u64, amount: u128) -> PastWithdrawal {
    PastWithdrawal {
        time,
        asset: "BTC".into(),
        amount,
    }
}

#[test]
fn velocity_window_is_open_at_its_start_and_closed_at_now() {
    let mut f = fixture();
    let p = verified(&mut f);
    let now = T0 + 10 * DAY;
    let w = withdraw(&[(ALICE_ADDR, 100)]);
    // Three withdrawals exactly one window ago no longer count…
    let old = vec![past(now - DAY, 100); 3];
    assert!(matches!(
        p.evaluate_with_history(&w, now, &old),
        Verdict::Allow { .. }
    ));
    // …one second later they do, and so does one at `now` itself.
    let recent = vec![
        past(now - DAY + 1, 100),
        past(now - DAY + 1, 100),
        past(now, 100),
    ];
    assert_eq!(
        deny_reason(p.evaluate_with_history(&w, now, &recent)),
        DenyReason::VelocityCountExceeded {
            asset: "BTC".into(),
            window_secs: DAY,
            max_count: 3,
            used: 3
        }
    );
    // Records after `now` and of other assets are not in the window.
    let mut other = vec![past(now + 1, 100); 3];
    other.push(PastWithdrawal {
        time: now,
        asset: "ETH".into(),
        amount: 100,
    });
    assert!(matches!(
        p.evaluate_with_history(&w, now, &other),
        Verdict::Allow { .. }
    ));
}

#[test]
fn velocity_count_limit_includes_the_new_withdrawal() {
    let mut f = fixture();
    let p = verified(&mut f);
    let w = withdraw(&[(ALICE_ADDR, 100)]);
    let two = vec![past(T0 - 60, 100); 2];
    assert!(matches!(
        p.evaluate_with_history(&w, T0, &two),
        Verdict::Allow { .. }
    ));
    let three = vec![past(T0 - 60, 100); 3];
    let reason = deny_reason(p.evaluate_with_history(&w, T0, &three));
    let text = reason.to_string();
    assert!(text.contains("3 BTC withdrawals per 86400 s"), "{text}");
    assert!(text.contains("3 already in the window"), "{text}");
}

#[test]
fn velocity_total_limit_allows_exactly_the_maximum() {
    let mut f = fixture();
    let p = verified(&mut f);
    let history = vec![past(T0 - 3600, 1_500_000), past(T0 - 60, 500_000)];
    let exact = withdraw(&[(ALICE_ADDR, 1_000_000)]);
    assert!(matches!(
        p.evaluate_with_history(&exact, T0, &history),
        Verdict::Allow { .. }
    ));
    let over = withdraw(&[(ALICE_ADDR, 1_000_001)]);
    let reason = deny_reason(p.evaluate_with_history(&over, T0, &history));
    assert_eq!(
        reason,
        DenyReason::VelocityTotalExceeded {
            asset: "BTC".into(),
            window_secs: DAY,
            max_total: 3_000_000,
            used: 2_000_000,
            requested: 1_000_001
        }
    );
    let text = reason.to_string();
    assert!(text.contains("3000000 BTC per 86400 s"), "{text}");
    assert!(text.contains("2000000 BTC already sent"), "{text}");
    // The signer's offline evaluation does not see velocity.
    assert!(matches!(p.evaluate(&over, T0), Verdict::Allow { .. }));
}

#[test]
fn usage_given_directly_decides_as_the_history_it_sums() {
    let mut f = fixture();
    let p = verified(&mut f);
    let w = withdraw(&[(ALICE_ADDR, 1_000_000)]);
    let limits = p.document().velocity.clone();
    for history in [
        vec![],
        vec![past(T0 - 3600, 1_500_000), past(T0 - 60, 500_000)],
        vec![past(T0 - 3600, 1_500_000), past(T0 - 60, 500_001)],
        vec![past(T0 - 60, 1); 3],
        vec![past(T0 - DAY, 2_500_000), past(T0 + 1, 2_500_000)],
    ] {
        let mut asked = Vec::new();
        let direct = p.evaluate_with_usage(&w, T0, |limit| {
            asked.push(limit.window_secs);
            WindowUsage::of(&history, limit, T0)
        });
        assert_eq!(direct, p.evaluate_with_history(&w, T0, &history));
        // Each limit of the asset is asked about once; none of another asset.
        let btc: Vec<u64> = limits
            .iter()
            .filter(|l| l.asset == "BTC")
            .map(|l| l.window_secs)
            .collect();
        let answered = asked.len();
        assert!(answered <= btc.len() && asked.iter().all(|w| btc.contains(w)));
        if matches!(direct, Verdict::Allow { .. }) {
            assert_eq!(answered, btc.len());
        }
    }
    // A usage the history would not give is what decides: the caller's sum is trusted.
    let full = p.evaluate_with_usage(&w, T0, |limit| WindowUsage {
        total: limit.max_total,
        count: 0,
    });
    assert!(matches!(
        deny_reason(full),
        DenyReason::VelocityTotalExceeded { .. }
    ));
    // The offline check runs first; usage is not asked for a withdrawal it refuses.
    let evil = withdraw(&[("bc1qattackerdddddddddddddddddddddddddddddddd", 100)]);
    let mut asked = false;
    let verdict = p.evaluate_with_usage(&evil, T0, |_| {
        asked = true;
        WindowUsage::default()
    });
    assert!(matches!(
        deny_reason(verdict),
        DenyReason::UnknownDestination { .. }
    ));
    assert!(!asked);
}

#[test]
fn window_usage_sums_the_asset_inside_the_window_only() {
    let limit = VelocityLimit {
        asset: "BTC".into(),
        window_secs: DAY,
        max_total: 1,
        max_count: 1,
    };
    let mut history = vec![
        past(T0 - DAY, 7),
        past(T0 - DAY + 1, 11),
        past(T0, 13),
        past(T0 + 1, 17),
        past(T0 - 5, u128::MAX),
    ];
    history.push(PastWithdrawal {
        time: T0,
        asset: "ETH".into(),
        amount: 19,
    });
    assert_eq!(
        WindowUsage::of(&history, &limit, T0),
        WindowUsage {
            total: u128::MAX,
            count: 3
        }
    );
    history.pop();
    history.pop();
    assert_eq!(
        WindowUsage::of(&history, &limit, T0),
        WindowUsage {
            total: 24,
            count: 2
        }
    );
}

#[test]
fn offline_denials_come_first_with_history() {
    let mut f = fixture();
    let p = verified(&mut f);
    let evil = withdraw(&[("bc1qattackerdddddddddddddddddddddddddddddddd", 100)]);
    assert!(matches!(
        deny_reason(p.evaluate_with_history(&evil, T0, &[])),
        DenyReason::UnknownDestination { .. }
    ));
}

#[test]
fn malformed_velocity_limits_are_refused() {
    let f = fixture();
    let mut doc = document(&f, 1);
    doc.velocity[0].window_secs = 0;
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::BadVelocityLimit { index: 0, .. }
    ));
    let mut doc = document(&f, 1);
    doc.velocity.push(doc.velocity[0].clone());
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::BadVelocityLimit { index: 1, .. }
    ));
}

fn successor(f: &mut Fixture, announced_at: u64, effective_from: u64) -> SignedPolicy {
    let mut next = document(f, 2);
    next.announced_at = announced_at;
    next.effective_from = effective_from;
    signed_by(f, next, &[0, 1])
}

#[test]
fn successor_must_wait_the_current_change_delay() {
    let mut f = fixture();
    let current = verified(&mut f);
    let announced = T0 + 100;
    let ok = successor(&mut f, announced, announced + DELAY);
    let next = verify_successor(&current, &ok).expect("delay respected");
    assert!(!next.is_effective(announced + DELAY - 1));
    assert!(next.is_effective(announced + DELAY));

    let early = successor(&mut f, announced, announced + DELAY - 1);
    let err = verify_successor(&current, &early).expect_err("one second too early");
    assert_eq!(
        err,
        SuccessorError::ChangeDelayTooShort {
            announced_at: announced,
            effective_from: announced + DELAY - 1,
            change_delay_secs: DELAY,
            earliest: announced + DELAY
        }
    );
    assert!(err.to_string().contains("172800 s"), "{err}");
}

#[test]
fn successor_delay_is_the_current_policys_not_its_own() {
    let mut f = fixture();
    let current = verified(&mut f);
    // A successor that declares no delay for itself still waits the current one.
    let mut next = document(&f, 2);
    next.announced_at = T0;
    next.effective_from = T0;
    next.change_delay_secs = 0;
    let sp = signed_by(&mut f, next, &[0, 1]);
    assert!(matches!(
        verify_successor(&current, &sp),
        Err(SuccessorError::ChangeDelayTooShort { .. })
    ));
}

#[test]
fn successor_announced_before_the_current_policy_is_refused() {
    let mut f = fixture();
    let current = verified(&mut f);
    let back = successor(&mut f, T0 - DELAY - 1, T0 + DELAY);
    assert_eq!(
        verify_successor(&current, &back),
        Err(SuccessorError::AnnouncedBeforeCurrent {
            current: T0 - DELAY,
            found: T0 - DELAY - 1
        })
    );
}

#[test]
fn successor_delay_overflow_is_refused() {
    let mut f = fixture();
    let current = verified(&mut f);
    let far = successor(&mut f, u64::MAX - 10, u64::MAX);
    assert!(matches!(
        verify_successor(&current, &far),
        Err(SuccessorError::ChangeDelayTooShort {
            earliest: u64::MAX,
            ..
        })
    ));
}

#[test]
fn policy_is_effective_from_its_effective_time_and_not_before_announcement() {
    let mut f = fixture();
    let p = verified(&mut f);
    assert!(!p.is_effective(T0 - 1));
    assert!(p.is_effective(T0));
    let mut doc = document(&f, 1);
    doc.announced_at = T0 + 1;
    assert_eq!(
        invalid(doc),
        InvalidPolicyError::EffectiveBeforeAnnounced {
            announced_at: T0 + 1,
            effective_from: T0
        }
    );
}

#[test]
fn approvals_count_only_from_the_documents_approvers() {
    let mut f = fixture();
    // Approver 2 is a real approver identity but not listed in this policy.
    let mut doc = document(&f, 1);
    doc.approvers.truncate(2);
    doc.rules.truncate(3); // the business-hours rule needs three approvers
    let policy = verify_doc(&mut f, doc);
    let c = approved_case_under(&mut f, policy, &[0, 2], T0);
    assert_eq!(
        check(&c, T0),
        Err(DecisionError::NotEnoughApprovals {
            required: 2,
            found: 1,
            duplicates: 0,
            unknown: 1,
            invalid: 0
        })
    );
    let mut doc = document(&f, 1);
    doc.approvers.truncate(2);
    doc.rules.truncate(3); // the business-hours rule needs three approvers
    let policy = verify_doc(&mut f, doc);
    let c = approved_case_under(&mut f, policy, &[0, 1], T0);
    assert_eq!(check(&c, T0), Ok(2));
}

#[test]
fn decision_must_be_signed_by_the_coordinator_the_document_names() {
    let mut f = fixture();
    let other = Identity::generate("coordinator-2", &mut f.rng).expect("valid name");
    let mut doc = document(&f, 1);
    doc.coordinator = other.card();
    let policy = verify_doc(&mut f, doc);
    // Signed by the fixture's coordinator, which this policy no longer names.
    let c = approved_case_under(&mut f, policy.clone(), &[0, 1], T0);
    assert_eq!(
        check(&c, T0),
        Err(DecisionError::BadCoordinatorSignature {
            fingerprint: other.card().fingerprint()
        })
    );
    let mut c = approved_case_under(&mut f, policy, &[0, 1], T0);
    c.decision.sign(&other, &mut f.rng);
    assert_eq!(check(&c, T0), Ok(2));
}

#[test]
fn approver_list_is_validated() {
    let f = fixture();
    let mut doc = document(&f, 1);
    doc.approvers.push(f.approvers[1].card());
    assert_eq!(
        invalid(doc),
        InvalidPolicyError::DuplicateApprover {
            fingerprint: f.approvers[1].card().fingerprint()
        }
    );
    let mut doc = document(&f, 1);
    doc.approvers.push(f.coordinator.card());
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::CoordinatorIsApprover { .. }
    ));
    // A rule that needs more approvers than the policy lists could never pass.
    let mut doc = document(&f, 1);
    doc.approvers.truncate(1);
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::BadRule { index: 1, .. }
    ));
    let mut rng = ChaCha20Rng::seed_from_u64(65);
    let mut doc = document(&f, 1);
    doc.approvers = cards(&ids(&mut rng, "many", custody_policy::MAX_APPROVERS + 1));
    assert!(matches!(
        invalid(doc),
        InvalidPolicyError::TooMany {
            what: "approvers",
            ..
        }
    ));
}

#[test]
fn full_document_round_trips_canonically() {
    let mut f = fixture();
    let mut doc = document(&f, 7);
    doc.rules[0].window = Some(TimeWindow {
        days: TimeWindow::SATURDAY | TimeWindow::SUNDAY,
        start_minute: 23 * 60,
        end_minute: 30,
    });
    doc.limits.push(TransactionLimit {
        asset: "ETH".into(),
        max_amount: u128::MAX,
    });
    doc.velocity.push(VelocityLimit {
        asset: "ETH".into(),
        window_secs: 7 * DAY,
        max_total: u128::MAX,
        max_count: u32::MAX,
    });
    let bytes = doc.encode();
    assert_eq!(&bytes[..6], b"CPPL\x02\x01");
    let decoded = PolicyDocument::decode(&bytes).expect("round trip");
    assert_eq!(decoded, doc);
    assert_eq!(decoded.encode(), bytes);
    let sp = signed_by(&mut f, doc, &[0, 2]);
    let sbytes = sp.encode();
    assert_eq!(SignedPolicy::decode(&sbytes).as_ref(), Ok(&sp));
}

// Internal transfers: a withdrawal without payments moves nothing out of the wallet (the
// replacement spend that voids an exported withdrawal, ADR 0031).

fn internal(asset: &str) -> Withdrawal {
    Withdrawal {
        asset: asset.into(),
        payments: Vec::new(),
    }
}

#[test]
fn internal_transfer_is_decided_by_the_first_rule_covering_zero() {
    let mut f = fixture();
    let p = verified(&mut f);
    let void = internal("BTC");
    assert!(void.is_internal());
    assert!(!withdraw(&[(ALICE_ADDR, 0)]).is_internal());
    assert_eq!(void.total(), Some(0));
    // Rule 0 covers 0–1_000_000 sat with one approval.
    assert_eq!(
        p.evaluate(&void, T0),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 0
        }
    );
    // A rule for exactly 0 placed first sets the approvals of internal transfers alone.
    let mut doc = document(&f, 1);
    doc.rules.insert(
        0,
        Rule {
            asset: "BTC".into(),
            min_amount: 0,
            max_amount: 0,
            window: None,
            action: Action::Allow { approvals: 3 },
        },
    );
    let p = verify_doc(&mut f, doc);
    assert_eq!(
        p.evaluate(&void, T0),
        Verdict::Allow {
            required_approvals: 3,
            rule_index: 0
        }
    );
    assert_eq!(
        p.evaluate(&withdraw(&[(ALICE_ADDR, 1)]), T0),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 1
        }
    );
    // The policy must be in force, as for any withdrawal.
    assert!(matches!(
        deny_reason(p.evaluate(&void, T0 - 1)),
        DenyReason::PolicyNotYetEffective { .. }
    ));
}

#[test]
fn internal_transfer_without_a_rule_covering_zero_is_denied_saying_so() {
    let mut f = fixture();
    let mut doc = document(&f, 1);
    doc.rules[0].min_amount = 1;
    let p = verify_doc(&mut f, doc);
    let reason = deny_reason(p.evaluate(&internal("BTC"), T0));
    assert_eq!(
        reason,
        DenyReason::NoMatchingRule {
            asset: "BTC".into(),
            total: 0,
            internal_transfer: true
        }
    );
    let text = reason.to_string();
    assert!(text.contains("internal transfer of BTC"), "{text}");
    assert!(text.contains("amount range includes 0"), "{text}");
    // A payment of 0 to a whitelisted address is a withdrawal, not an internal transfer.
    let reason = deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 0)]), T0));
    assert!(matches!(
        reason,
        DenyReason::NoMatchingRule {
            total: 0,
            internal_transfer: false,
            ..
        }
    ));
    assert_eq!(reason.to_string(), "no rule allows 0 BTC (default deny)");
    // A deny rule covering 0 denies it too, naming the rule.
    let mut doc = document(&f, 1);
    doc.rules[0].action = Action::Deny;
    let p = verify_doc(&mut f, doc);
    assert!(matches!(
        deny_reason(p.evaluate(&internal("BTC"), T0)),
        DenyReason::DeniedByRule { rule_index: 0, .. }
    ));
}

#[test]
fn internal_transfer_of_an_asset_without_a_limit_is_denied() {
    let mut f = fixture();
    let p = verified(&mut f);
    assert_eq!(
        deny_reason(p.evaluate(&internal("ETH"), T0)),
        DenyReason::NoLimitForAsset {
            asset: "ETH".into()
        }
    );
}

#[test]
fn internal_transfer_needs_no_whitelisted_destination() {
    let mut f = fixture();
    let mut doc = document(&f, 1);
    doc.whitelist.clear();
    let p = verify_doc(&mut f, doc);
    assert!(matches!(
        p.evaluate(&internal("BTC"), T0),
        Verdict::Allow {
            required_approvals: 1,
            ..
        }
    ));
    // A payment still needs its destination on the whitelist, whatever its amount.
    assert!(matches!(
        deny_reason(p.evaluate(&withdraw(&[(ALICE_ADDR, 0)]), T0)),
        DenyReason::UnknownDestination { .. }
    ));
}

#[test]
fn internal_transfer_is_not_checked_against_velocity_limits() {
    let mut f = fixture();
    let p = verified(&mut f);
    let void = internal("BTC");
    // The window is full by count and by total: a payment is denied, the void is not.
    let full = vec![past(T0 - 60, 1_000_000); 3];
    assert!(matches!(
        deny_reason(p.evaluate_with_history(&withdraw(&[(ALICE_ADDR, 1)]), T0, &full)),
        DenyReason::VelocityCountExceeded { .. }
    ));
    assert_eq!(
        p.evaluate_with_history(&void, T0, &full),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 0
        }
    );
    let mut asked = false;
    let verdict = p.evaluate_with_usage(&void, T0, |limit| {
        asked = true;
        WindowUsage {
            total: limit.max_total,
            count: u64::from(limit.max_count),
        }
    });
    assert!(matches!(verdict, Verdict::Allow { .. }));
    assert!(!asked, "usage is not asked for an internal transfer");
    // The offline verdict still applies with history.
    let mut doc = document(&f, 1);
    doc.rules[0].min_amount = 1;
    let strict = verify_doc(&mut f, doc);
    assert!(matches!(
        deny_reason(strict.evaluate_with_history(&void, T0, &[])),
        DenyReason::NoMatchingRule {
            internal_transfer: true,
            ..
        }
    ));
}

#[test]
fn decision_for_an_internal_transfer_needs_the_approvals_of_its_rule() {
    let mut f = fixture();
    let policy = verified(&mut f);
    let mut c = approved_case_under(&mut f, policy, &[], T0);
    c.withdrawal = internal("BTC");
    assert!(matches!(
        check(&c, T0),
        Err(DecisionError::NotEnoughApprovals {
            required: 1,
            found: 0,
            ..
        })
    ));
    let policy = verified(&mut f);
    let mut c = approved_case_under(&mut f, policy, &[2], T0);
    c.withdrawal = internal("BTC");
    assert_eq!(check(&c, T0), Ok(1));
    // The decision binds the transaction like any other.
    c.tx = vec![0xcd; 32];
    assert!(matches!(
        check(&c, T0),
        Err(DecisionError::WrongTransaction { .. })
    ));
}
