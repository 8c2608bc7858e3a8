//! A stand-in for the admins and the coordinator: a signed policy, admin cards, and
//! signed decisions put into request PSBTs.

use std::path::{Path, PathBuf};

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use custody_policy::{
    Action, AdminQuorum, Approval, Decision, Network, Outcome, PolicyDocument, Rule, SignedPolicy,
    TransactionLimit, WhitelistEntry,
};
use custody_threshold::Identity;
use rand_core::OsRng;

/// Admins (2-of-2), a coordinator and two approvers.
pub struct Authority {
    pub admins: Vec<Identity>,
    pub coordinator: Identity,
    pub approvers: Vec<Identity>,
}

/// What a test policy allows.
pub struct Terms {
    pub whitelist: Vec<String>,
    pub limit_sat: u64,
    pub approvals: u16,
}

impl Authority {
    pub fn new() -> Self {
        let id = |n: &str| Identity::generate(n, &mut OsRng).expect("identity");
        Authority {
            admins: vec![id("admin-1"), id("admin-2")],
            coordinator: id("coordinator"),
            approvers: vec![id("approver-1"), id("approver-2")],
        }
    }

    pub fn quorum(&self) -> AdminQuorum {
        AdminQuorum {
            threshold: 2,
            admins: self.admins.iter().map(Identity::card).collect(),
        }
    }

    pub fn document(&self, version: u64, terms: &Terms) -> PolicyDocument {
        PolicyDocument {
            version,
            network: Network::Regtest,
            announced_at: 1_000,
            effective_from: 1_000 + version,
            change_delay_secs: 0,
            admins: self.quorum(),
            coordinator: self.coordinator.card(),
            approvers: self.approvers.iter().map(Identity::card).collect(),
            whitelist: terms
                .whitelist
                .iter()
                .map(|a| WhitelistEntry {
                    address: a.clone(),
                    active_from: 0,
                })
                .collect(),
            limits: vec![TransactionLimit {
                asset: "BTC".into(),
                max_amount: u128::from(terms.limit_sat),
            }],
            rules: vec![Rule {
                asset: "BTC".into(),
                min_amount: 0,
                max_amount: u128::from(terms.limit_sat),
                window: None,
                action: Action::Allow {
                    approvals: terms.approvals,
                },
            }],
            velocity: Vec::new(),
        }
    }

    /// The document signed by the admins at `by`.
    pub fn sign(&self, doc: PolicyDocument, by: &[usize]) -> SignedPolicy {
        let mut sp = SignedPolicy::new(doc).expect("a valid policy");
        for &i in by {
            sp.sign(&self.admins[i], &mut OsRng);
        }
        sp
    }

    /// Writes the admin cards into `dir`.
    pub fn admin_cards(&self, dir: &Path) -> Vec<PathBuf> {
        self.admins
            .iter()
            .map(|a| {
                let p = dir.join(format!("{}.card", a.name()));
                std::fs::write(&p, a.card().encode()).expect("write card");
                p
            })
            .collect()
    }

    /// Writes `policy` into `dir` as `NAME.policy`.
    pub fn write_policy(&self, dir: &Path, name: &str, policy: &SignedPolicy) -> PathBuf {
        let p = dir.join(format!("{name}.policy"));
        std::fs::write(&p, policy.encode()).expect("write policy");
        p
    }

    /// Pins the admins and installs `policy` in the home of the signer whose global
    /// arguments are `signer_args`.
    pub fn install(&self, signer_args: &[String], dir: &Path, policy: &SignedPolicy) {
        let run = |extra: &[&str]| {
            assert_cmd::Command::cargo_bin("custody-signer")
                .expect("binary")
                .args(signer_args)
                .args(extra)
                .assert()
                .success();
        };
        let cards = self.admin_cards(dir);
        let mut args: Vec<String> = vec![
            "policy".into(),
            "pin-admins".into(),
            "--threshold".into(),
            "2".into(),
        ];
        for c in &cards {
            args.push("--card".into());
            args.push(c.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args);
        let file = self.write_policy(
            dir,
            &format!("policy-v{}", policy.document().version),
            policy,
        );
        run(&["policy", "install", "--file", &file.display().to_string()]);
    }

    /// A decision for `psbt` under `policy`, approved by the approvers at `approvers`,
    /// signed by the coordinator.
    pub fn decision(
        &self,
        policy: &SignedPolicy,
        psbt: &Psbt,
        approvers: &[usize],
        hold_until: u64,
    ) -> Decision {
        let mut d = Decision {
            policy_hash: policy.document().hash(),
            withdrawal_id: "w-1".into(),
            transaction_digest: psbt.unsigned_tx.compute_txid().to_byte_array().to_vec(),
            outcome: Outcome::Approved,
            hold_until,
            approvals: Vec::new(),
            coordinator_signature: [0; 64],
        };
        let digest = d.withdrawal_digest();
        for &i in approvers {
            d.approvals
                .push(Approval::sign(&self.approvers[i], &digest, &mut OsRng));
        }
        d.sign(&self.coordinator, &mut OsRng);
        d
    }

    /// Puts a decision into `psbt`.
    pub fn attach(psbt: &mut Psbt, decision: &Decision) {
        custody_bitcoin::fields::set_decision(psbt, &decision.encode());
    }
}
