//! Withdrawal policy for CoinPort Custody signers.
//!
//! An admin quorum signs a versioned [`PolicyDocument`] (first-match rules with default
//! deny, a destination whitelist with activation times, a per-transaction limit). A signer
//! pins the admin cards at setup, accepts a policy only with enough of their signatures
//! ([`SignedPolicy::verify`]) and a new one only if the current quorum signed it
//! ([`verify_successor`]). Before signing a withdrawal it re-evaluates the policy offline
//! ([`VerifiedPolicy::evaluate`]) and checks the coordinator's [`Decision`] and the human
//! approvals in it ([`verify_decision`]), so a compromised coordinator cannot obtain a
//! signature on its own.
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
    Action, AdminQuorum, InvalidPolicyError, Network, PolicyDocument, Rule, WhitelistEntry,
    MAX_ADDRESS_LEN, MAX_ADMINS, MAX_ASSET_LEN, MAX_CARD_LEN, MAX_RULES, MAX_WHITELIST,
    POLICY_HASH_TAG,
};
pub use evaluate::{DenyReason, Payment, Verdict, Withdrawal};
pub use signed::{
    verify_successor, AdminSignature, SignedPolicy, SuccessorError, VerifiedPolicy,
    VerifyPolicyError, MAX_DOCUMENT_LEN, MAX_SIGNATURES,
};
