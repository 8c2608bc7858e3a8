//! Bitcoin for CoinPort Custody: the wallet descriptor of a FROST group key, its addresses,
//! and the life of a withdrawal PSBT from coin selection to a consensus-verified
//! transaction.
//!
//! - [`WalletDescriptor`]: `tr([fp]xpub/<0;1>/*)` with key origin and checksum, optional
//!   [`RecoveryPolicy`] leaf `and_v(v:multi_a(k,R1..Rm),older(N))`; receive and change
//!   addresses on every network; export as a descriptor string or Bitcoin Core
//!   `importdescriptors` JSON.
//! - [`build_psbt`] (coordinator): coin selection with `bdk_coin_select`, change on the
//!   change branch, all BIP174/BIP371 fields.
//! - [`build_replacement`] and [`build_child`] (coordinator): given coins back to a change
//!   address, to void an unconfirmed transaction or to speed it up (child pays for parent).
//! - [`inspect_psbt`] (signer and humans): inputs, outputs, amounts, fee, fee rate, which
//!   outputs are provably ours; refuses what is unsafe to sign.
//! - [`request_signatures`] / [`sign_psbt`] / [`aggregate_psbt`]: one air-gap trip per
//!   signer, with the threshold messages in PSBT proprietary fields ([`fields`]).
//! - [`finalize_psbt`], [`extract_verified`] and [`verify_transaction`]:
//!   libbitcoinconsensus with all spent outputs and the Taproot flag.
//! - [`recovery`]: spending the recovery leaf with backup keys after its timelock.
//! - [`fuzzing`]: entry points for the fuzz harness.
//!
//! The crate does no I/O and never prints.
//!
//! Specifications: BIP32, BIP86, BIP174, BIP340, BIP341, BIP342, BIP371, BIP380/386/389.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod build;
pub mod consensus;
pub mod descriptor;
pub mod fields;
pub mod fuzzing;
pub mod inspect;
pub mod recovery;
pub mod sign;

pub use build::{
    build_child, build_psbt, build_replacement, BuildError, BuildOptions, Payment, SpendPath,
    WalletUtxo,
};
pub use consensus::{verify_input, verify_transaction, ConsensusError, ScriptFailure};
pub use descriptor::{
    taproot_address, Branch, CoreImportOptions, CoreImportRequest, DerivedAddress, DescriptorError,
    ImportTimestamp, RecoveryPolicy, WalletDescriptor,
};
pub use fields::{absorb_response, FieldError};
pub use inspect::{
    inspect_psbt, inspect_recovery_psbt, InputSummary, InspectError, InspectPolicy, Inspection,
    OutputSummary, Ownership,
};
pub use recovery::{
    absorb_recovery_signatures, sign_recovery_psbt, BackupSecret, RecoveryError, RecoverySigned,
};
pub use sign::{
    aggregate_psbt, check_signing_request, extract_verified, finalize_psbt, key_spend_sighash,
    request_signatures, sign_psbt, signing_items, AggregatePsbtError, FinalizeError, ItemField,
    RequestPsbtError, SignPsbtError, WrongWalletError,
};
