//! Withdrawal policy for CoinPort Custody signers.
//!
//! An admin quorum signs a versioned [`PolicyDocument`]: who else is trusted (the
//! coordinator and the human approvers), a destination whitelist with activation times,
//! per-asset per-transaction limits, first-match rules with default deny (asset, amount
//! tier, optional UTC time window, number of approvals) and velocity limits over rolling
//! windows. A signer pins only the admin cards at setup, accepts a policy only with enough
//! of their signatures ([`SignedPolicy::verify`]) and a new one only if the current quorum
//! signed it and the change delay is respected ([`verify_successor`]). Before signing a
//! withdrawal it re-evaluates the policy offline ([`VerifiedPolicy::evaluate`]) and checks
//! the coordinator's [`Decision`] and the human approvals in it ([`verify_decision`]), so a
//! compromised coordinator cannot obtain a signature on its own. The coordinator runs the
//! full check including velocity ([`VerifiedPolicy::evaluate_with_history`]).
//!
//! Amounts are `u64` in the asset's smallest unit (satoshis for `BTC`, wei for `ETH`).
//!
//! Encodings and digests are described in `docs/formats/policy.md`; the choice of
//! encoding in `docs/adr/0008-policy-documents.md`. This crate does no I/O.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
mod decision;
mod document;
mod evaluate;
mod signed;

pub use codec::DecodeError;
pub use decision::{
    verify_decision, withdrawal_digest, Approval, Decision, DecisionError, Outcome,
    DECISION_DIGEST_TAG, MAX_APPROVALS, MAX_TRANSACTION_DIGEST_LEN, MAX_WITHDRAWAL_ID_LEN,
    WITHDRAWAL_DIGEST_TAG,
};
pub use document::{
    Action, AdminQuorum, InvalidPolicyError, Network, PolicyDocument, Rule, TimeWindow,
    TransactionLimit, VelocityLimit, WhitelistEntry, MAX_ADDRESS_LEN, MAX_ADMINS, MAX_APPROVERS,
    MAX_ASSET_LEN, MAX_CARD_LEN, MAX_LIMITS, MAX_RULES, MAX_VELOCITY_LIMITS, MAX_WHITELIST,
    MINUTES_PER_DAY, POLICY_HASH_TAG,
};
pub use evaluate::{DenyReason, PastWithdrawal, Payment, Verdict, WindowUsage, Withdrawal};
pub use signed::{
    verify_successor, AdminSignature, SignedPolicy, SuccessorError, VerifiedPolicy,
    VerifyPolicyError, MAX_DOCUMENT_LEN, MAX_SIGNATURES,
};
