//! The signer's own policy re-check: the admin pin, installing policies, and every reason
//! to refuse a request whatever the coordinator says.

mod common;

use std::path::Path;

use bitcoin::psbt::Psbt;
use common::policy::{Authority, Terms};
use common::request::{external_address, request, void_request};
use common::{after_dkg, record, Signer};
use predicates::prelude::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn write_request(dir: &Path, name: &str, psbt: &Psbt) -> String {
    let p = dir.join(format!("{name}.psbt"));
    std::fs::write(&p, psbt.serialize()).expect("write");
    s(&p)
}

fn terms(limit_sat: u64) -> Terms {
    Terms {
        whitelist: vec![external_address(7).to_string()],
        limit_sat,
        approvals: 2,
    }
}

/// `sign --yes` is refused with `reason`, and no answer is written.
fn refused(signer: &Signer, request: &str, reason: &str) {
    signer
        .cmd(&["sign", "--yes", "--request", request])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("refused: ").and(predicate::str::contains(reason)));
    let answer = request.replace(".psbt", &format!("-{}-part.psbt", signer.name));
    assert!(!Path::new(&answer).exists(), "nothing signed for {request}");
}

#[test]
fn the_signer_refuses_anything_its_own_policy_check_refuses() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob"]);
    let alice = &signers[0];
    let usb = dir.path().join("sign");
    std::fs::create_dir(&usb).expect("usb");
    let authority = Authority::new();
    let base = request(&signers, &[0, 1], &usb, 60_000_000);

    // No policy installed: refused, saying how to install one.
    let v1 = authority.sign(authority.document(1, &terms(100_000_000)), &[0, 1]);
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v1, &base, &[0, 1], 0));
    let good = write_request(&usb, "good", &psbt);
    refused(alice, &good, "no withdrawal policy is installed");
    alice
        .cmd(&["sign", "--yes", "--request", &good])
        .assert()
        .stderr(
            predicate::str::contains("policy pin-admins")
                .and(predicate::str::contains("policy install")),
        );

    // Install: a policy signed by one admin of two is refused; the pin is set once.
    let cards = authority.admin_cards(dir.path());
    let (c0, c1) = (s(&cards[0]), s(&cards[1]));
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v1", &v1)),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no admin quorum is pinned"));
    alice
        .cmd(&[
            "policy",
            "pin-admins",
            "--threshold",
            "2",
            "--card",
            &c0,
            "--card",
            &c1,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("compare these fingerprints aloud"));
    alice
        .cmd(&["policy", "pin-admins", "--threshold", "1", "--card", &c0])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already pinned"));
    alice
        .cmd(&[
            "policy",
            "pin-admins",
            "--threshold",
            "1",
            "--card",
            &c0,
            "--replace",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("confirmed on a terminal"));
    let one_admin = authority.sign(authority.document(1, &terms(100_000_000)), &[0]);
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "weak", &one_admin)),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "not signed by the pinned admin quorum",
        ));
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v1", &v1)),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("installed policy version 1"));

    // Too few approvals.
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v1, &base, &[0], 0));
    refused(
        alice,
        &write_request(&usb, "one-approval", &psbt),
        "needs 2 distinct approvals, found 1",
    );

    // A decision whose coordinator signature was tampered with.
    let mut d = authority.decision(&v1, &base, &[0, 1], 0);
    d.coordinator_signature[10] ^= 1;
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &d);
    refused(
        alice,
        &write_request(&usb, "tampered", &psbt),
        "not signed by coordinator",
    );

    // An approval forged by the coordinator for an approver does not count either.
    let mut d = authority.decision(&v1, &base, &[0], 0);
    d.approvals.push(custody_policy::Approval {
        approver_key: *authority.approvers[1].card().signing_key(),
        signature: [7; 64],
    });
    d.sign(&authority.coordinator, &mut rand_core::OsRng);
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &d);
    refused(alice, &write_request(&usb, "forged", &psbt), "1 invalid");

    // The hold has not passed.
    let mut psbt = base.clone();
    Authority::attach(
        &mut psbt,
        &authority.decision(&v1, &base, &[0, 1], u64::MAX / 2),
    );
    refused(
        alice,
        &write_request(&usb, "held", &psbt),
        "is on hold until",
    );

    // A decision made under another policy.
    let other = authority.sign(authority.document(7, &terms(100_000_000)), &[0, 1]);
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&other, &base, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "wrong-policy", &psbt),
        "decision was made under policy",
    );

    // A decision for another transaction.
    let mut other_tx = base.clone();
    other_tx.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_consensus(1);
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v1, &other_tx, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "wrong-tx", &psbt),
        "decision is for transaction",
    );

    // No decision at all.
    refused(
        alice,
        &write_request(&usb, "bare", &base),
        "carries no coordinator decision",
    );

    // Successor v2 lowers the limit below the payment: over limit.
    let v2 = authority.sign(authority.document(2, &terms(50_000_000)), &[0, 1]);
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v2", &v2)),
        ])
        .assert()
        .success();
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &base, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "over-limit", &psbt),
        "exceeds the per-transaction limit",
    );
    // The decision made under v1 is now for a policy no longer enforced.
    refused(alice, &good, "decision was made under policy");

    // Successor v3 whitelists only another address.
    let v3 = authority.sign(
        authority.document(
            3,
            &Terms {
                whitelist: vec![external_address(8).to_string()],
                limit_sat: 100_000_000,
                approvals: 2,
            },
        ),
        &[0, 1],
    );
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v3", &v3)),
        ])
        .assert()
        .success();
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v3, &base, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "not-whitelisted", &psbt),
        "is not on the whitelist",
    );

    // An older version is not a successor.
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v2-again", &v2)),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "not a valid successor of installed version 3",
        ));

    // v4 allows it: inspect shows the decision, sign signs.
    let v4 = authority.sign(authority.document(4, &terms(100_000_000)), &[0, 1]);
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v4", &v4)),
        ])
        .assert()
        .success();
    let shown = record(&alice.json(&["policy", "show"]), "policy").clone();
    let versions: Vec<(u64, bool)> = shown["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| (p["version"].as_u64().expect("v"), p["in_force"] == true))
        .collect();
    assert_eq!(
        versions,
        vec![(1, false), (2, false), (3, false), (4, true)]
    );
    let mut psbt = base.clone();
    Authority::attach(&mut psbt, &authority.decision(&v4, &base, &[0, 1], 0));
    let ok = write_request(&usb, "ok", &psbt);
    alice
        .cmd(&["inspect", "--request", &ok])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "policy decision: withdrawal w-1 allowed under policy version 4",
        ));
    alice
        .cmd(&["sign", "--yes", "--request", &ok])
        .assert()
        .success()
        .stdout(predicate::str::contains("signed 1 inputs of"));
    assert!(usb.join("ok-alice-part.psbt").is_file());

    // A policy file changed on disk no longer verifies: nothing is signed.
    let installed = signers[0]
        .home
        .join("policies")
        .join(format!("{:020}.policy", 4));
    let mut bytes = std::fs::read(&installed).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&installed, bytes).expect("write");
    alice
        .cmd(&["inspect", "--request", &ok])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no longer verifies"));
}

/// A void (ADR 0031): the coins of an exported withdrawal spent back to the wallet's own
/// change address, approved under a rule whose range includes 0.
#[test]
fn an_internal_transfer_back_to_the_wallet_is_signed_under_a_rule_covering_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob"]);
    let alice = &signers[0];
    let usb = dir.path().join("sign");
    std::fs::create_dir(&usb).expect("usb");
    let authority = Authority::new();
    // Nothing is whitelisted: an internal transfer has no destination to check.
    let no_whitelist = |limit_sat| Terms {
        whitelist: Vec::new(),
        limit_sat,
        approvals: 2,
    };
    // v1's only rule starts at 1 sat: internal transfers are denied.
    let mut doc = authority.document(1, &no_whitelist(100_000_000));
    doc.rules[0].min_amount = 1;
    let v1 = authority.sign(doc, &[0, 1]);
    authority.install(&alice.args(), dir.path(), &v1);
    let void = void_request(&signers, &[0, 1], &usb, 0);
    assert_eq!(void.unsigned_tx.output.len(), 1);
    let mut psbt = void.clone();
    Authority::attach(&mut psbt, &authority.decision(&v1, &void, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "no-rule", &psbt),
        "no rule allows an internal transfer of BTC",
    );

    // v2 allows 0 to 1 BTC with two approvals: internal transfers too.
    let v2 = authority.sign(authority.document(2, &no_whitelist(100_000_000)), &[0, 1]);
    alice
        .cmd(&[
            "policy",
            "install",
            "--file",
            &s(&authority.write_policy(dir.path(), "v2", &v2)),
        ])
        .assert()
        .success();
    // The rule's approvals are needed, as for any withdrawal.
    let mut psbt = void.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &void, &[0], 0));
    refused(
        alice,
        &write_request(&usb, "one-approval", &psbt),
        "needs 2 distinct approvals, found 1",
    );
    // A decision for another transaction (the withdrawal being voided) does not do.
    let paying = request(&signers, &[0, 1], &usb, 10_000_000);
    let mut psbt = void.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &paying, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "wrong-tx", &psbt),
        "decision is for transaction",
    );
    // The signer's fee cap holds for an internal transfer too.
    let greedy = void_request(&signers, &[0, 1], &usb, 2_000_000);
    let mut psbt = greedy.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &greedy, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "greedy", &psbt),
        "is above the limit",
    );

    let mut psbt = void.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &void, &[0, 1], 0));
    let ok = write_request(&usb, "void", &psbt);
    alice
        .cmd(&["inspect", "--request", &ok])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Sending 0.00000000 BTC out of the wallet")
                .and(predicate::str::contains(
                    "Internal transfer: every output goes back to this wallet's own change addresses; nothing leaves the wallet but the fee",
                ))
                .and(predicate::str::contains(
                    "policy decision: internal transfer w-1 (nothing leaves the wallet but the fee) allowed under policy version 2",
                )),
        );
    let records = alice.json(&["inspect", "--request", &ok]);
    assert_eq!(record(&records, "inspection")["internal_transfer"], true);
    assert_eq!(
        record(&records, "policy-decision")["internal_transfer"],
        true
    );
    assert_eq!(record(&records, "policy-decision")["approvals"], 2);
    assert_eq!(record(&records, "request")["internal_transfer"], true);
    let signed = alice
        .cmd(&["--json", "sign", "--yes", "--request", &ok])
        .assert()
        .success();
    let records = common::lines(&signed.get_output().stdout);
    assert_eq!(record(&records, "signed")["internal_transfer"], true);
    assert!(usb.join("void-alice-part.psbt").is_file());

    // A payment to another wallet is still a withdrawal: v2 whitelists nothing.
    let mut psbt = paying.clone();
    Authority::attach(&mut psbt, &authority.decision(&v2, &paying, &[0, 1], 0));
    refused(
        alice,
        &write_request(&usb, "paying", &psbt),
        "is not on the whitelist",
    );
}
