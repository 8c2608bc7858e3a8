//! The coordinator's signed decision for one withdrawal, and its check by a signer.

use custody_threshold::{Identity, SigningDomain};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::evaluate::{DenyReason, Verdict, Withdrawal};
use crate::signed::VerifiedPolicy;

/// Longest withdrawal id, in bytes.
pub const MAX_WITHDRAWAL_ID_LEN: usize = 128;
/// Longest transaction digest, in bytes.
pub const MAX_TRANSACTION_DIGEST_LEN: usize = 64;
/// Most approvals a decision may carry.
pub const MAX_APPROVALS: usize = 64;

/// The BIP340 tag of the withdrawal digest approvers sign.
pub const WITHDRAWAL_DIGEST_TAG: &str = "CoinPort/policy/withdrawal";
/// The BIP340 tag of the digest the coordinator signs.
pub const DECISION_DIGEST_TAG: &str = "CoinPort/policy/decision";

/// What the coordinator decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The withdrawal may be signed (once its hold has passed).
    Approved,
    /// The withdrawal must not be signed.
    Rejected,
}

/// One human approver's signature over the withdrawal digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The approver's x-only BIP340 identity key.
    pub approver_key: [u8; 32],
    /// `sign_in_domain(SigningDomain::Policy, withdrawal_digest(…))`.
    pub signature: [u8; 64],
}

impl Approval {
    /// Signs the withdrawal digest as `approver`.
    pub fn sign<R: RngCore + CryptoRng>(
        approver: &Identity,
        withdrawal_digest: &[u8; 32],
        rng: &mut R,
    ) -> Self {
        Approval {
            approver_key: *approver.card().signing_key(),
            signature: approver.sign_in_domain(SigningDomain::Policy, withdrawal_digest, rng),
        }
    }
}

fn len_prefixed(v: &[u8]) -> [u8; 4] {
    u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes()
}

/// The digest approvers sign: `tagged_hash("CoinPort/policy/withdrawal", policy_hash ‖
/// u32(len id) ‖ id ‖ u32(len tx) ‖ tx)`. It binds the approval to the policy, the
/// withdrawal and the exact transaction.
pub fn withdrawal_digest(
    policy_hash: &[u8; 32],
    withdrawal_id: &str,
    transaction_digest: &[u8],
) -> [u8; 32] {
    tagged_hash(
        WITHDRAWAL_DIGEST_TAG,
        &[
            policy_hash,
            &len_prefixed(withdrawal_id.as_bytes()),
            withdrawal_id.as_bytes(),
            &len_prefixed(transaction_digest),
            transaction_digest,
        ],
    )
}

/// The coordinator's signed decision for one withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The hash of the policy the decision was made under.
    pub policy_hash: [u8; 32],
    /// The coordinator's withdrawal id.
    pub withdrawal_id: String,
    /// The digest of the PSBT or transaction to be signed (e.g. the unsigned txid).
    pub transaction_digest: Vec<u8>,
    /// What was decided.
    pub outcome: Outcome,
    /// Unix time (seconds) before which the withdrawal must not be signed.
    pub hold_until: u64,
    /// The human approvals collected.
    pub approvals: Vec<Approval>,
    /// The coordinator's signature over [`Decision::signing_digest`].
    pub coordinator_signature: [u8; 64],
}

/// Why a signer refuses a decision.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionError {
    /// The coordinator's signature does not verify.
    #[error("decision is not signed by coordinator {fingerprint}")]
    BadCoordinatorSignature {
        /// The fingerprint of the coordinator card the policy names.
        fingerprint: String,
    },
    /// The decision names another policy.
    #[error("decision was made under policy {found}, this signer enforces {expected}")]
    WrongPolicy {
        /// Hex of the verified policy's hash.
        expected: String,
        /// Hex of the hash the decision names.
        found: String,
    },
    /// The decision is for another transaction.
    #[error("decision is for transaction {found}, this signer is asked to sign {expected}")]
    WrongTransaction {
        /// Hex of the digest of the transaction being signed.
        expected: String,
        /// Hex of the digest in the decision.
        found: String,
    },
    /// The coordinator rejected the withdrawal.
    #[error("withdrawal {withdrawal_id} was rejected by the coordinator")]
    Rejected {
        /// The withdrawal id.
        withdrawal_id: String,
    },
    /// The signer's own evaluation of the policy denies the withdrawal.
    #[error("policy denies the withdrawal: {reason}")]
    PolicyDenied {
        /// Why.
        reason: DenyReason,
    },
    /// Too few distinct, known approvers signed validly.
    #[error(
        "withdrawal needs {required} distinct approvals, found {found} \
         (ignored {duplicates} duplicate, {unknown} unknown and {invalid} invalid)"
    )]
    NotEnoughApprovals {
        /// What the matching rule requires.
        required: u16,
        /// Distinct valid approvals.
        found: usize,
        /// Repeated approvals by an approver already counted.
        duplicates: usize,
        /// Approvals by keys that are not approvers of the policy.
        unknown: usize,
        /// Approvals whose signature does not verify.
        invalid: usize,
    },
    /// The hold has not passed.
    #[error("withdrawal is on hold until {hold_until}, it is now {now}")]
    HoldActive {
        /// When the hold ends.
        hold_until: u64,
        /// The time of the check.
        now: u64,
    },
}

impl Decision {
    fn write_body(&self, w: &mut Writer) {
        w.fixed(&self.policy_hash);
        w.var(self.withdrawal_id.as_bytes());
        w.var(&self.transaction_digest);
        w.u8(match self.outcome {
            Outcome::Approved => 1,
            Outcome::Rejected => 0,
        });
        w.u64(self.hold_until);
        w.count(self.approvals.len());
        for a in &self.approvals {
            w.fixed(&a.approver_key);
            w.fixed(&a.signature);
        }
    }

    /// The digest the coordinator signs: `tagged_hash("CoinPort/policy/decision",
    /// encoding without the trailing coordinator signature)`.
    pub fn signing_digest(&self) -> [u8; 32] {
        let mut w = Writer::new(TypeTag::Decision);
        self.write_body(&mut w);
        tagged_hash(DECISION_DIGEST_TAG, &[&w.finish()])
    }

    /// The digest approvers sign for this decision ([`withdrawal_digest`]).
    pub fn withdrawal_digest(&self) -> [u8; 32] {
        withdrawal_digest(
            &self.policy_hash,
            &self.withdrawal_id,
            &self.transaction_digest,
        )
    }

    /// Signs the decision as `coordinator`, replacing any previous signature.
    pub fn sign<R: RngCore + CryptoRng>(&mut self, coordinator: &Identity, rng: &mut R) {
        self.coordinator_signature =
            coordinator.sign_in_domain(SigningDomain::Policy, &self.signing_digest(), rng);
    }

    /// Encodes the decision (see `docs/formats/policy.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::Decision);
        self.write_body(&mut w);
        w.fixed(&self.coordinator_signature);
        w.finish()
    }

    /// Decodes a decision; call [`verify_decision`] before acting on it.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::Decision)?;
        let policy_hash = r.array("policy hash")?;
        let withdrawal_id = r.string("withdrawal id", MAX_WITHDRAWAL_ID_LEN)?;
        let transaction_digest = r
            .var("transaction digest", MAX_TRANSACTION_DIGEST_LEN)?
            .to_vec();
        let outcome = match r.u8("outcome")? {
            1 => Outcome::Approved,
            0 => Outcome::Rejected,
            b => return Err(DecodeError::invalid("outcome", format!("unknown byte {b}"))),
        };
        let hold_until = r.u64("hold-until time")?;
        let n = r.count("approval count", MAX_APPROVALS)?;
        let mut approvals = Vec::with_capacity(n);
        for _ in 0..n {
            approvals.push(Approval {
                approver_key: r.array("approver key")?,
                signature: r.array("approval signature")?,
            });
        }
        let coordinator_signature = r.array("coordinator signature")?;
        r.finish()?;
        Ok(Decision {
            policy_hash,
            withdrawal_id,
            transaction_digest,
            outcome,
            hold_until,
            approvals,
            coordinator_signature,
        })
    }
}

/// What a signer checks before it signs a withdrawal, all offline:
///
/// 1. the decision is signed by the coordinator that `policy` names
///    ([`PolicyDocument::coordinator`](crate::PolicyDocument::coordinator));
/// 2. it names `policy` by hash and the transaction the signer is about to sign
///    (`transaction_digest`, computed by the signer itself);
/// 3. the outcome is [`Outcome::Approved`];
/// 4. the signer's own evaluation of `withdrawal` (built from its transaction inspection)
///    under `policy` allows it ([`VerifiedPolicy::evaluate`]), and requires `n` approvals;
/// 5. at least `n` distinct approvers that `policy` lists
///    ([`PolicyDocument::approvers`](crate::PolicyDocument::approvers)) signed the
///    withdrawal digest (repeats count once; other keys do not count);
/// 6. `now` is at or after the hold.
///
/// Velocity limits need the wallet's history and are the coordinator's check
/// ([`VerifiedPolicy::evaluate_with_history`]).
///
/// Returns the number of distinct valid approvals.
///
/// # Errors
/// The first failed check as a [`DecisionError`].
///
/// # Security
/// The coordinator's word is only one of these checks: a compromised coordinator that
/// signs anything still cannot pass the whitelist, limit, approval and hold checks. Since
/// the coordinator and approvers come from the admin-signed policy, the signer only pins
/// the admin quorum.
pub fn verify_decision(
    decision: &Decision,
    policy: &VerifiedPolicy,
    withdrawal: &Withdrawal,
    transaction_digest: &[u8],
    now: u64,
) -> Result<usize, DecisionError> {
    let doc = policy.document();
    let coordinator = &doc.coordinator;
    if !coordinator.verify_in_domain(
        SigningDomain::Policy,
        &decision.signing_digest(),
        &decision.coordinator_signature,
    ) {
        return Err(DecisionError::BadCoordinatorSignature {
            fingerprint: coordinator.fingerprint(),
        });
    }
    if &decision.policy_hash != policy.hash() {
        return Err(DecisionError::WrongPolicy {
            expected: hex::encode(policy.hash()),
            found: hex::encode(decision.policy_hash),
        });
    }
    if decision.transaction_digest != transaction_digest {
        return Err(DecisionError::WrongTransaction {
            expected: hex::encode(transaction_digest),
            found: hex::encode(&decision.transaction_digest),
        });
    }
    if decision.outcome != Outcome::Approved {
        return Err(DecisionError::Rejected {
            withdrawal_id: decision.withdrawal_id.clone(),
        });
    }
    let required = match policy.evaluate(withdrawal, now) {
        Verdict::Allow {
            required_approvals, ..
        } => required_approvals,
        Verdict::Deny { reason } => return Err(DecisionError::PolicyDenied { reason }),
    };
    let digest = decision.withdrawal_digest();
    let mut counted: Vec<&[u8; 32]> = Vec::new();
    let (mut duplicates, mut unknown, mut invalid) = (0, 0, 0);
    for a in &decision.approvals {
        let Some(card) = doc.approver(&a.approver_key) else {
            unknown += 1;
            continue;
        };
        if !card.verify_in_domain(SigningDomain::Policy, &digest, &a.signature) {
            invalid += 1;
            continue;
        }
        if counted.contains(&&a.approver_key) {
            duplicates += 1;
            continue;
        }
        counted.push(&a.approver_key);
    }
    if counted.len() < usize::from(required) {
        return Err(DecisionError::NotEnoughApprovals {
            required,
            found: counted.len(),
            duplicates,
            unknown,
            invalid,
        });
    }
    if now < decision.hold_until {
        return Err(DecisionError::HoldActive {
            hold_until: decision.hold_until,
            now,
        });
    }
    Ok(counted.len())
}
