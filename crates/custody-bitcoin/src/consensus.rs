//! Script verification of a signed transaction by libbitcoinconsensus, the script
//! interpreter of Bitcoin Core (v26, through the `bitcoinconsensus` crate).
//!
//! BIP341 signatures commit to *every* spent output (amounts and scriptPubKeys), so a
//! Taproot input can only be checked with all of them. rust-bitcoin's
//! `Transaction::verify` wrapper does not pass them, so Taproot inputs fail or go
//! unchecked there; this module calls libbitcoinconsensus directly with all spent outputs
//! and the Taproot flag.
//!
//! # What this does not check
//! Only scripts and signatures. Amounts (inputs cover outputs), whether the outputs exist
//! and are unspent, absolute and relative timelocks against the chain (`nLockTime`,
//! BIP68 sequence locks; `OP_CHECKSEQUENCEVERIFY` itself *is* checked against the
//! transaction's own `nSequence`), and standardness are left to the node.

use bitcoin::consensus::encode::serialize;
use bitcoin::{Transaction, TxOut};
use bitcoinconsensus::{Utxo, VERIFY_ALL_PRE_TAPROOT, VERIFY_TAPROOT};
use thiserror::Error;

/// The script verification flags used: every soft fork up to and including Taproot
/// (P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS, TAPROOT).
pub const VERIFY_FLAGS: u32 = VERIFY_ALL_PRE_TAPROOT | VERIFY_TAPROOT;

/// Why libbitcoinconsensus refused an input.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptFailure {
    /// The script did not verify: bad signature, unsatisfied script, timelock not met by
    /// `nSequence`/`nLockTime`, wrong spent output.
    #[error("the script or signature does not verify")]
    Script,
    /// The input index is out of range.
    #[error("the input index is out of range")]
    TxIndex,
    /// The serialized size did not match (should not happen).
    #[error("the transaction size does not match its serialization")]
    TxSizeMismatch,
    /// The transaction could not be deserialized by Bitcoin Core.
    #[error("Bitcoin Core could not deserialize the transaction")]
    TxDeserialize,
    /// A witness input needs its amount.
    #[error("the spent amount is required")]
    AmountRequired,
    /// The flags are not accepted (should not happen).
    #[error("invalid verification flags")]
    InvalidFlags,
    /// A Taproot input needs all spent outputs.
    #[error("all spent outputs are required")]
    SpentOutputsRequired,
    /// The number of spent outputs differs from the number of inputs.
    #[error("the spent outputs do not match the inputs")]
    SpentOutputsMismatch,
}

impl From<bitcoinconsensus::Error> for ScriptFailure {
    fn from(e: bitcoinconsensus::Error) -> Self {
        use bitcoinconsensus::Error as E;
        match e {
            // Bitcoin Core returns 0 ("OK") in the error slot when the script simply fails.
            E::ERR_SCRIPT => ScriptFailure::Script,
            E::ERR_TX_INDEX => ScriptFailure::TxIndex,
            E::ERR_TX_SIZE_MISMATCH => ScriptFailure::TxSizeMismatch,
            E::ERR_TX_DESERIALIZE => ScriptFailure::TxDeserialize,
            E::ERR_AMOUNT_REQUIRED => ScriptFailure::AmountRequired,
            E::ERR_INVALID_FLAGS => ScriptFailure::InvalidFlags,
            E::ERR_SPENT_OUTPUTS_REQUIRED => ScriptFailure::SpentOutputsRequired,
            E::ERR_SPENT_OUTPUTS_MISMATCH => ScriptFailure::SpentOutputsMismatch,
        }
    }
}

/// Why a transaction failed consensus script verification.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsensusError {
    /// The caller passed a different number of spent outputs than the transaction has
    /// inputs.
    #[error("the transaction has {inputs} inputs but {spent_outputs} spent outputs were given; pass the output spent by every input, in input order")]
    SpentOutputCount {
        /// Inputs in the transaction.
        inputs: usize,
        /// Spent outputs given.
        spent_outputs: usize,
    },
    /// A spent amount does not fit libbitcoinconsensus's signed 64-bit amount.
    #[error("input {input}: the spent amount is out of range")]
    AmountOutOfRange {
        /// The input.
        input: usize,
    },
    /// The transaction has no inputs.
    #[error("the transaction has no inputs")]
    NoInputs,
    /// libbitcoinconsensus refused this input.
    #[error("input {input} ({outpoint}) fails consensus verification: {reason}")]
    Input {
        /// The failing input's index.
        input: usize,
        /// The outpoint it spends.
        outpoint: bitcoin::OutPoint,
        /// What libbitcoinconsensus reported.
        reason: ScriptFailure,
    },
}

/// Verifies every input of `tx` with libbitcoinconsensus, passing all `spent_outputs` (the
/// outputs spent by the inputs, in input order) and the Taproot flag ([`VERIFY_FLAGS`]).
///
/// The coordinator calls this on every transaction before broadcasting it.
///
/// # Errors
/// [`ConsensusError::Input`] names the first input that does not verify.
pub fn verify_transaction(tx: &Transaction, spent_outputs: &[TxOut]) -> Result<(), ConsensusError> {
    if tx.input.is_empty() {
        return Err(ConsensusError::NoInputs);
    }
    (0..tx.input.len()).try_for_each(|i| verify_input(tx, spent_outputs, i))
}

/// Verifies input `index` of `tx` with libbitcoinconsensus (see [`verify_transaction`]).
///
/// # Errors
/// As [`verify_transaction`], for this input only.
pub fn verify_input(
    tx: &Transaction,
    spent_outputs: &[TxOut],
    index: usize,
) -> Result<(), ConsensusError> {
    if spent_outputs.len() != tx.input.len() {
        return Err(ConsensusError::SpentOutputCount {
            inputs: tx.input.len(),
            spent_outputs: spent_outputs.len(),
        });
    }
    let Some(txin) = tx.input.get(index) else {
        return Err(ConsensusError::Input {
            input: index,
            outpoint: bitcoin::OutPoint::null(),
            reason: ScriptFailure::TxIndex,
        });
    };
    let bytes = serialize(tx);
    // `Utxo` holds raw pointers into `spent_outputs`, which outlives the call below.
    let utxos = spent_outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            Ok(Utxo {
                script_pubkey: out.script_pubkey.as_bytes().as_ptr(),
                script_pubkey_len: u32::try_from(out.script_pubkey.len())
                    .map_err(|_| ConsensusError::AmountOutOfRange { input: i })?,
                value: i64::try_from(out.value.to_sat())
                    .map_err(|_| ConsensusError::AmountOutOfRange { input: i })?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spent = &spent_outputs[index];
    bitcoinconsensus::verify_with_flags(
        spent.script_pubkey.as_bytes(),
        spent.value.to_sat(),
        &bytes,
        Some(&utxos),
        index,
        VERIFY_FLAGS,
    )
    .map_err(|e| ConsensusError::Input {
        input: index,
        outpoint: txin.previous_output,
        reason: e.into(),
    })
}
