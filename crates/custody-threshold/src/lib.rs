//! The FROST threshold core of CoinPort Custody.
//!
//! t-of-n Schnorr signatures on secp256k1 (BIP340, BIP341 Taproot) built on the Zcash
//! Foundation's `frost-secp256k1-tr`, with what a custody deployment needs on top:
//!
//! - participant [`Identity`]s whose public [`IdentityCard`]s go into a [`CeremonyPlan`];
//! - a certified distributed key generation ([`Keygen`]) whose messages are signed, whose
//!   secret shares travel encrypted, and whose result is usable only once every
//!   participant has certified the same transcript;
//! - trusted-dealer key generation for drills ([`generate_with_dealer`]);
//! - the group key as a BIP32 extended public key, with non-hardened derivation on both
//!   the watch-only side ([`GroupKey::derive`], checked against libsecp256k1) and the signer
//!   side (the same tweak added to each share);
//! - one-trip signing from pre-issued nonce commitments ([`issue_commitments`],
//!   [`SigningRequest`], [`sign_request`], [`aggregate`]) with a [`NonceStore`] that makes
//!   each nonce single-use;
//! - share refresh ([`Keygen::start_refresh`]) and repair ([`Repair`]).
//!
//! The crate does no I/O and never prints; the caller moves every message. Every type that
//! crosses the air gap has a versioned binary encoding described in
//! `docs/formats/threshold.md`.
//!
//! Specifications: RFC 9591 (FROST), BIP32, BIP340, BIP341.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bip32;
pub mod bip340;
mod ceremony;
pub mod codec;
mod dealer;
pub mod drill;
mod identity;
mod keygen;
mod keys;
mod nonce;
mod plan;
mod repair;
mod sign;

pub use ceremony::{CeremonyError, CeremonyMessage, Culprit, MessageKind, BROADCAST};
pub use codec::DecodeError;
pub use dealer::{generate_with_dealer, DealerError};
pub use identity::{Identity, IdentityCard, IdentityError, SigningDomain};
pub use keygen::{DkgCertificate, Keygen, KeygenCertify, KeygenOutput, KeygenRound1, KeygenRound2};
pub use keys::{DerivedGroupKey, GroupKey, KeyShare, KeyShareError, TweakMode};
pub use nonce::{
    issue_commitments, CommitmentBatch, CommitmentId, ConsumeError, IssueError, MemoryNonceStore,
    NonceSeed, NonceStore,
};
pub use plan::{CeremonyKind, CeremonyPlan, ParticipantIndex, PlanError};
pub use repair::{Repair, RepairHelper};
pub use sign::{
    aggregate, sign_request, AggregateError, CommitmentPool, ItemSpec, RequestError, SignError,
    SignItem, SignatureShares, SigningRequest,
};

/// Limits every decoder enforces before allocating.
pub mod limits {
    pub use crate::ceremony::MAX_PAYLOAD_LEN;
    pub use crate::identity::MAX_NAME_LEN;
    pub use crate::nonce::MAX_BATCH;
    pub use crate::plan::{MAX_PARTICIPANTS, MAX_PURPOSE_LEN};
    pub use crate::sign::{MAX_ITEMS, MAX_MESSAGE_LEN, MAX_PATH_LEN};
}

/// The network type used in plans and group keys.
pub use bitcoin::Network;
