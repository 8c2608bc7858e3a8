//! Threshold ECDSA for CoinPort Custody: t-of-n secp256k1 keys whose signatures Ethereum
//! accepts, built on the audited `cggmp21` crate (CGGMP21 with presignatures).
//!
//! What this crate adds to the library, because the library leaves it to the application:
//!
//! - ceremony plans ([`EcdsaPlan`]) binding participants' identity cards
//!   (`custody_threshold::IdentityCard`), threshold, key and purpose, from which every
//!   protocol run's execution id is derived ([`EcdsaPlan::execution_id`]);
//! - authenticated transport: every round message is an [`EcdsaMessage`] signed by its
//!   sender's identity key and, when point-to-point, age-encrypted to its recipient;
//! - caller-driven ceremonies with no I/O: Paillier prime pre-generation with progress
//!   ([`PaillierPrimes::generate`]), auxiliary info ([`AuxInfoSession`]), key generation
//!   ([`KeygenSession`]) and presigning in batches ([`PresignSession`]);
//! - one-trip signing: [`sign_prehash`] spends a presignature from a
//!   [`PresignatureStore`] that makes it single-use, and [`combine`] produces a low-s
//!   signature with its y parity, checked with `k256` against the group's Ethereum
//!   address ([`GroupPublicKey::address`]);
//! - versioned binary encodings (`docs/formats/ecdsa-messages.md`) with bounded decoders
//!   and [`fuzzing`] entry points.
//!
//! The crate does no I/O and never prints. Design and trade-offs:
//! `docs/adr/0013-threshold-ecdsa.md`. Specification: CGGMP21 (<https://ia.cr/2021/060>)
//! as implemented and documented by `cggmp21` 0.6.3.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ceremony;
pub mod codec;
pub mod fuzzing;
mod keys;
mod message;
mod plan;
mod presign;
mod session;
mod sign;
#[cfg(feature = "testing")]
pub mod testing;

pub use ceremony::{AuxInfoSession, KeygenSession, PresignSession};
pub use codec::DecodeError;
pub use keys::{
    checksum_address, EcdsaAuxInfo, EcdsaKeyShare, GroupPublicKey, PaillierPrimes, PrimeProgress,
};
pub use message::{EcdsaCeremonyError, EcdsaMessage, BROADCAST};
pub use plan::{EcdsaCeremonyKind, EcdsaPlan, PlanError, Step};
pub use presign::{
    MemoryPresignatureStore, Presignature, PresignatureId, PresignatureStore,
    PresignatureStoreError,
};
pub use sign::{combine, sign_prehash, CombineError, EthSignature, PartialSignature, SignError};

/// Limits every decoder enforces before allocating.
pub mod limits {
    pub use crate::codec::MAX_CBOR_LEN;
    pub use crate::message::MAX_PAYLOAD_LEN;
    pub use crate::plan::{MAX_PARTICIPANTS, MAX_PRESIGN_BATCH, MAX_PURPOSE_LEN};
}
