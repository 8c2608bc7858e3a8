//! Threshold signing of a PSBT in one air-gap trip per signer.
//!
//! 1. The coordinator ([`request_signatures`]) recomputes each input's BIP341 sighash,
//!    derivation path and Taproot tweak, builds a `custody_threshold::SigningRequest` from
//!    its commitment pool and puts it in the PSBT's proprietary request field.
//! 2. Each signer ([`sign_psbt`]) inspects the PSBT ([`crate::inspect_psbt`]), recomputes
//!    every (sighash, path, tweak) itself from the PSBT and its own group key, refuses if any
//!    request item differs, and only then calls `custody_threshold::sign_request`; its
//!    shares go into a proprietary field keyed by its participant index.
//! 3. The coordinator collects the responses ([`crate::fields::absorb_response`]),
//!    aggregates them into `tap_key_sig` ([`aggregate_psbt`]), finalizes and verifies the
//!    transaction with libbitcoinconsensus ([`finalize_psbt`], [`extract_verified`]).
//!
//! The coordinator never supplies a message hash the signer trusts: the request's messages
//! are only compared with what the signer computed.

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{schnorr, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot;
use bitcoin::Transaction;
use custody_threshold::{
    aggregate, sign_request, AggregateError, CommitmentPool, GroupKey, ItemSpec, KeyShare,
    NonceSeed, NonceStore, ParticipantIndex, RequestError, SignError, SigningRequest,
};
use miniscript::psbt::PsbtExt;
use thiserror::Error;

use crate::build::SpendPath;
use crate::consensus::{verify_transaction, ConsensusError};
use crate::descriptor::WalletDescriptor;
use crate::fields::{self, FieldError};
use crate::inspect::{check, Checked, InspectError, InspectPolicy, Inspection};

/// Why the wallet and the threshold key do not belong together.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the wallet descriptor's key is not this threshold group's key (xpub and empty origin path expected)")]
pub struct WrongWalletError;

fn check_wallet(wallet: &WalletDescriptor, group: &GroupKey) -> Result<(), WrongWalletError> {
    if *wallet.xpub() == group.xpub() && wallet.origin().1.is_master() {
        Ok(())
    } else {
        Err(WrongWalletError)
    }
}

/// Computes the BIP341 key-path sighash (`SIGHASH_DEFAULT`) of input `index` of `tx` that
/// spends `spent_outputs` (all of them, in input order).
///
/// # Errors
/// An [`InspectError::Malformed`] when the index or the number of spent outputs is wrong.
pub fn key_spend_sighash(
    tx: &Transaction,
    spent_outputs: &[bitcoin::TxOut],
    index: usize,
    sighash_type: TapSighashType,
) -> Result<[u8; 32], InspectError> {
    let mut cache = SighashCache::new(tx);
    key_spend_sighash_cached(&mut cache, spent_outputs, index, sighash_type)
}

fn key_spend_sighash_cached(
    cache: &mut SighashCache<&Transaction>,
    spent_outputs: &[bitcoin::TxOut],
    index: usize,
    sighash_type: TapSighashType,
) -> Result<[u8; 32], InspectError> {
    let hash = cache
        .taproot_key_spend_signature_hash(index, &Prevouts::All(spent_outputs), sighash_type)
        .map_err(|e| InspectError::Malformed(format!("input {index}: {e}")))?;
    Ok(bitcoin::hashes::Hash::to_byte_array(hash))
}

/// What each input's threshold signature must be: its sighash, path and tweak, computed
/// from the checked PSBT and the wallet alone.
fn items_from(checked: &Checked, psbt: &Psbt) -> Result<Vec<ItemSpec>, InspectError> {
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    checked
        .inputs
        .iter()
        .enumerate()
        .map(|(k, owned)| {
            Ok(ItemSpec {
                message: key_spend_sighash_cached(
                    &mut cache,
                    &checked.spent,
                    k,
                    TapSighashType::Default,
                )?
                .to_vec(),
                path: owned.derived.relative_path().to_vec(),
                tweak: owned.derived.tweak_mode(),
            })
        })
        .collect()
}

/// Inspects `psbt` and returns the (sighash, path, tweak) every input must be signed with.
///
/// # Errors
/// An [`InspectError`] if the PSBT is refused.
pub fn signing_items(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
) -> Result<Vec<ItemSpec>, InspectError> {
    let checked = check(wallet, psbt, policy, SpendPath::KeyPath)?;
    items_from(&checked, psbt)
}

/// Why the coordinator could not attach a signing request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestPsbtError {
    /// The wallet is not the group's.
    #[error(transparent)]
    WrongWallet(#[from] WrongWalletError),
    /// The PSBT fails inspection.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The threshold layer could not build the request.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Builds the threshold signing request for every input of `psbt` (the coordinator's side),
/// taking commitments of `signers` from `pool`, and stores it in the PSBT's request field.
///
/// # Errors
/// A [`RequestPsbtError`]; the pool is untouched on error.
pub fn request_signatures(
    wallet: &WalletDescriptor,
    group: &GroupKey,
    psbt: &mut Psbt,
    signers: &[ParticipantIndex],
    pool: &mut CommitmentPool,
    session_id: [u8; 16],
    policy: &InspectPolicy,
) -> Result<SigningRequest, RequestPsbtError> {
    check_wallet(wallet, group)?;
    let items = signing_items(wallet, psbt, policy)?;
    let request = SigningRequest::build(session_id, group, signers, items, pool)?;
    fields::set_signing_request(psbt, &request);
    Ok(request)
}

/// Which part of a request item differs from what the signer computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemField {
    /// The message is not the input's BIP341 sighash.
    Sighash,
    /// The derivation path is not the input's.
    Path,
    /// The Taproot tweak is not the wallet's for that address.
    Tweak,
}

impl std::fmt::Display for ItemField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ItemField::Sighash => "sighash",
            ItemField::Path => "derivation path",
            ItemField::Tweak => "Taproot tweak",
        })
    }
}

/// Why a signer refused to sign a PSBT.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignPsbtError<E: std::error::Error + 'static> {
    /// The wallet is not the share's group.
    #[error(transparent)]
    WrongWallet(#[from] WrongWalletError),
    /// The PSBT fails inspection.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The request field is missing or malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The request has a different number of items than the PSBT has inputs.
    #[error("the request has {found} items but the PSBT has {expected} inputs")]
    ItemCount {
        /// Inputs in the PSBT.
        expected: usize,
        /// Items in the request.
        found: usize,
    },
    /// A request item differs from what the signer computed for that input.
    #[error("request item {input} has a {field} that differs from the one computed from the PSBT; refusing to sign")]
    RequestMismatch {
        /// The input (and item) index.
        input: usize,
        /// What differs.
        field: ItemField,
    },
    /// The threshold layer refused; nothing was signed.
    #[error(transparent)]
    Sign(#[from] SignError<E>),
}

/// Signs every input of `psbt` with `share` (the signer's side) and adds this signer's
/// shares field to `psbt`. Returns the inspection of what was signed.
///
/// The signer inspects the PSBT under `policy`, recomputes every input's sighash, path and
/// tweak from the PSBT and its own group key, and refuses if any item of the coordinator's
/// request differs. Nonces are consumed in `store` before any share is computed.
///
/// # Errors
/// A [`SignPsbtError`]; on error no share was produced and `psbt` is unchanged.
pub fn sign_psbt<S: NonceStore>(
    wallet: &WalletDescriptor,
    share: &KeyShare,
    seed: &NonceSeed,
    store: &mut S,
    psbt: &mut Psbt,
    policy: &InspectPolicy,
) -> Result<Inspection, SignPsbtError<S::Error>> {
    check_wallet(wallet, share.group())?;
    let (inspection, request) = checked_request(wallet, psbt, policy)?;
    let shares = sign_request(share, seed, store, &request)?;
    fields::set_signature_shares(psbt, &shares);
    Ok(inspection)
}

/// The signer's checks before it signs, for callers that hold the share elsewhere (a
/// keystore): inspects `psbt` under `policy`, reads the coordinator's request, recomputes
/// every input's sighash, path and tweak from the PSBT and `wallet`, and returns the
/// inspection and the request only if every item matches.
///
/// # Errors
/// A [`SignPsbtError`] other than [`SignPsbtError::Sign`] and
/// [`SignPsbtError::WrongWallet`]; nothing is signed here.
pub fn check_signing_request(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
) -> Result<(Inspection, SigningRequest), SignPsbtError<std::convert::Infallible>> {
    checked_request(wallet, psbt, policy)
}

fn checked_request<E: std::error::Error + 'static>(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
) -> Result<(Inspection, SigningRequest), SignPsbtError<E>> {
    let checked = check(wallet, psbt, policy, SpendPath::KeyPath)?;
    let request = fields::signing_request(psbt)?;
    let expected = items_from(&checked, psbt)?;
    compare_items(&request, &expected).map_err(|(input, field)| match field {
        None => SignPsbtError::ItemCount {
            expected: expected.len(),
            found: request.items().len(),
        },
        Some(field) => SignPsbtError::RequestMismatch { input, field },
    })?;
    Ok((checked.inspection, request))
}

/// Compares the request with the expected items; `Err((input, None))` for a count mismatch.
fn compare_items(
    request: &SigningRequest,
    expected: &[ItemSpec],
) -> Result<(), (usize, Option<ItemField>)> {
    if request.items().len() != expected.len() {
        return Err((0, None));
    }
    for (k, (item, want)) in request.items().iter().zip(expected).enumerate() {
        if item.spec.message != want.message {
            return Err((k, Some(ItemField::Sighash)));
        }
        if item.spec.path != want.path {
            return Err((k, Some(ItemField::Path)));
        }
        if item.spec.tweak != want.tweak {
            return Err((k, Some(ItemField::Tweak)));
        }
    }
    Ok(())
}

/// Why aggregation into the PSBT failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AggregatePsbtError {
    /// The wallet is not the group's.
    #[error(transparent)]
    WrongWallet(#[from] WrongWalletError),
    /// The PSBT fails inspection.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// A CoinPort field is missing or malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The PSBT's request is not about this PSBT's inputs (wrong count or item).
    #[error("the signing request in the PSBT does not match its inputs (item {input})")]
    RequestMismatch {
        /// The first item that differs.
        input: usize,
    },
    /// The threshold layer could not aggregate (missing responses, bad shares: the error
    /// names the signers).
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
}

/// Aggregates the signers' shares found in `psbt` into each input's `tap_key_sig` (the
/// coordinator's side). Every aggregate is verified against its output key before it is
/// stored.
///
/// # Errors
/// An [`AggregatePsbtError`]; `AggregateError::InvalidShares` names the cheaters.
pub fn aggregate_psbt(
    wallet: &WalletDescriptor,
    group: &GroupKey,
    psbt: &mut Psbt,
    policy: &InspectPolicy,
) -> Result<(), AggregatePsbtError> {
    check_wallet(wallet, group)?;
    let checked = check(wallet, psbt, policy, SpendPath::KeyPath)?;
    let request = fields::signing_request(psbt)?;
    let expected = items_from(&checked, psbt)?;
    compare_items(&request, &expected)
        .map_err(|(input, _)| AggregatePsbtError::RequestMismatch { input })?;
    let responses = fields::signature_shares(psbt)?;
    let signatures = aggregate(group, &request, &responses)?;
    for (input, sig) in psbt.inputs.iter_mut().zip(signatures) {
        let signature = schnorr::Signature::from_slice(&sig)
            .expect("aggregate returns 64-byte signatures it has verified");
        input.tap_key_sig = Some(taproot::Signature {
            signature,
            sighash_type: TapSighashType::Default,
        });
    }
    Ok(())
}

/// Why finalizing or extracting failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinalizeError {
    /// `miniscript`'s finalizer could not satisfy an input (missing signatures, timelock
    /// not met by `nSequence`).
    #[error("cannot finalize: {0}")]
    Finalize(String),
    /// An input is not finalized.
    #[error("input {0} is not finalized")]
    NotFinalized(usize),
    /// An input has no `witness_utxo`.
    #[error("input {0} has no witness_utxo")]
    MissingPrevout(usize),
    /// libbitcoinconsensus refused the transaction.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
}

/// Finalizes every input with `miniscript`'s PSBT finalizer (key path from `tap_key_sig`,
/// or the recovery leaf from `tap_script_sigs` and `tap_scripts`), which also checks the
/// signatures and timelocks with its interpreter.
///
/// # Errors
/// [`FinalizeError::Finalize`] listing each input that could not be finalized.
pub fn finalize_psbt(psbt: &mut Psbt) -> Result<(), FinalizeError> {
    let secp = Secp256k1::verification_only();
    psbt.finalize_mut(&secp).map_err(|errors| {
        FinalizeError::Finalize(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Extracts the signed transaction from a finalized PSBT and verifies every input with
/// libbitcoinconsensus against the PSBT's `witness_utxo`s. The coordinator broadcasts
/// nothing that has not passed this.
///
/// # Errors
/// [`FinalizeError::NotFinalized`], [`FinalizeError::MissingPrevout`] or the
/// [`ConsensusError`] naming the failing input.
pub fn extract_verified(psbt: &Psbt) -> Result<Transaction, FinalizeError> {
    let mut tx = psbt.unsigned_tx.clone();
    let mut spent = Vec::with_capacity(tx.input.len());
    for (k, (txin, input)) in tx.input.iter_mut().zip(&psbt.inputs).enumerate() {
        let witness = input
            .final_script_witness
            .clone()
            .ok_or(FinalizeError::NotFinalized(k))?;
        txin.witness = witness;
        if let Some(script_sig) = &input.final_script_sig {
            txin.script_sig = script_sig.clone();
        }
        spent.push(
            input
                .witness_utxo
                .clone()
                .ok_or(FinalizeError::MissingPrevout(k))?,
        );
    }
    verify_transaction(&tx, &spent)?;
    Ok(tx)
}
