//! Inspecting a PSBT for the signer and for the humans who approve it: what is spent, where
//! it goes, what it costs, and which outputs are provably the wallet's own.
//!
//! Nothing the PSBT *claims* is taken on trust. An input is the wallet's only if the
//! wallet's own descriptor, derived at the BIP32 path given in the input's
//! `tap_key_origins`, produces the input's `witness_utxo` script. An output is change (or
//! any of our addresses) only if the same re-derivation produces its script; an output
//! that carries our derivation metadata but a different script is refused as disguised
//! change. Amounts come from `witness_utxo`; a lie there cannot steal funds, because the
//! BIP341 sighash commits to every spent amount and scriptPubKey and the signature would
//! not verify.

use std::collections::BTreeSet;
use std::fmt;

use bitcoin::bip32::KeySource;
use bitcoin::psbt::{Input, Psbt};
use bitcoin::sighash::TapSighashType;
use bitcoin::{Address, Amount, FeeRate, OutPoint, Transaction, Weight};
use serde::Serialize;
use thiserror::Error;

use crate::build::{satisfaction_weight, SpendPath, KEY_PATH_SATISFACTION_WEIGHT};
use crate::descriptor::{Branch, DerivedAddress, DescriptorError, WalletDescriptor};

/// Limits a signer enforces before it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InspectPolicy {
    /// The largest absolute fee accepted.
    pub max_fee: Amount,
    /// The largest fee rate accepted (computed for the spend path being signed).
    pub max_fee_rate: FeeRate,
}

impl Default for InspectPolicy {
    /// 0.01 BTC and 1000 sat/vB: generous enough for a 100-input consolidation in a fee
    /// spike, far below what a fat-fingered or malicious fee would take.
    fn default() -> Self {
        InspectPolicy {
            max_fee: Amount::from_sat(1_000_000),
            max_fee_rate: FeeRate::from_sat_per_vb_u32(1000),
        }
    }
}

/// Why a PSBT was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InspectError {
    /// The PSBT's input or output maps do not match its unsigned transaction.
    #[error("the PSBT is malformed: {0}")]
    Malformed(String),
    /// The transaction spends nothing.
    #[error("the transaction has no inputs")]
    NoInputs,
    /// The transaction pays nothing.
    #[error("the transaction has no outputs")]
    NoOutputs,
    /// One coin is spent twice.
    #[error("input {input} spends {outpoint}, which an earlier input already spends")]
    DuplicateInput {
        /// The later input.
        input: usize,
        /// The coin.
        outpoint: OutPoint,
    },
    /// An input has no `witness_utxo`, so its amount and script are unknown.
    #[error("input {input} has no witness_utxo: its amount and script are unknown; the coordinator must include the spent output")]
    MissingPrevout {
        /// The input.
        input: usize,
    },
    /// `non_witness_utxo` and `witness_utxo` disagree, or the previous transaction is not
    /// the one the input spends.
    #[error("input {input} has inconsistent previous-output data: {reason}")]
    PrevoutMismatch {
        /// The input.
        input: usize,
        /// What disagrees.
        reason: &'static str,
    },
    /// An input does not spend one of this wallet's coins.
    #[error("input {input} ({outpoint}) is not this wallet's: {reason}")]
    ForeignInput {
        /// The input.
        input: usize,
        /// The coin.
        outpoint: OutPoint,
        /// Why not.
        reason: String,
    },
    /// An input's Taproot fields contradict what the wallet derives.
    #[error("input {input}: {field} in the PSBT does not match the wallet's derivation")]
    InconsistentInput {
        /// The input.
        input: usize,
        /// The field.
        field: &'static str,
    },
    /// An input asks for a sighash type other than `SIGHASH_DEFAULT`.
    #[error("input {input} asks for sighash type {found}; only SIGHASH_DEFAULT is signed")]
    NonDefaultSighash {
        /// The input.
        input: usize,
        /// The sighash type found.
        found: String,
    },
    /// An output carries this wallet's derivation metadata but pays a different script.
    #[error("output {output} claims to be this wallet's ({claim}) but pays a script the wallet does not derive; refusing disguised change")]
    DisguisedChange {
        /// The output.
        output: usize,
        /// The claim and what was wrong with it.
        claim: String,
    },
    /// Outputs exceed inputs.
    #[error("outputs ({outputs}) exceed inputs ({inputs})")]
    Overspend {
        /// Total in.
        inputs: Amount,
        /// Total out.
        outputs: Amount,
    },
    /// Amounts overflow.
    #[error("amounts add up to more than 21 million BTC")]
    AmountOverflow,
    /// The fee is above the policy's limit.
    #[error("fee {fee} is above the limit {limit}")]
    FeeTooHigh {
        /// The fee.
        fee: Amount,
        /// The limit.
        limit: Amount,
    },
    /// The fee rate is above the policy's limit.
    #[error(
        "fee {fee_sat} sat for {vsize} vB is above the fee-rate limit of {limit_sat_vb} sat/vB"
    )]
    FeeRateTooHigh {
        /// The fee in satoshis.
        fee_sat: u64,
        /// The transaction's virtual size.
        vsize: u64,
        /// The limit.
        limit_sat_vb: u64,
    },
    /// The wallet cannot derive an address.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
}

/// Who an output belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "owner", rename_all = "lowercase")]
pub enum Ownership {
    /// Not provably ours: money leaving the wallet.
    External,
    /// Our receive address at `index`, proved by re-derivation.
    Receive {
        /// The address index (`address_index` in JSON).
        #[serde(rename = "address_index")]
        index: u32,
    },
    /// Our change address at `index`, proved by re-derivation.
    Change {
        /// The address index (`address_index` in JSON).
        #[serde(rename = "address_index")]
        index: u32,
    },
}

impl Ownership {
    /// Whether the output is provably ours.
    pub fn is_ours(&self) -> bool {
        !matches!(self, Ownership::External)
    }
}

/// One input as shown to a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputSummary {
    /// Position in the transaction.
    pub index: usize,
    /// The coin spent (`txid:vout`).
    pub outpoint: String,
    /// Its amount in satoshis.
    pub amount_sat: u64,
    /// The wallet address it was paid to.
    pub address: String,
    /// Receive or change.
    pub branch: Branch,
    /// The address index.
    pub address_index: u32,
    /// `nSequence`.
    pub sequence: u32,
}

/// One output as shown to a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputSummary {
    /// Position in the transaction.
    pub index: usize,
    /// Amount in satoshis.
    pub amount_sat: u64,
    /// The address, if the script has one.
    pub address: Option<String>,
    /// The scriptPubKey in hex.
    pub script_hex: String,
    /// Whether (and how) it is provably ours.
    #[serde(flatten)]
    pub ownership: Ownership,
}

/// What a PSBT does, checked against the wallet. Render it with `Display` (text) or
/// [`Inspection::to_json`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The wallet's network.
    pub network: String,
    /// The transaction id (signatures do not change it).
    pub txid: String,
    /// The spend path the weight and fee rate were computed for.
    pub spend_path: &'static str,
    /// Transaction version.
    pub version: i32,
    /// `nLockTime`.
    pub lock_time: u32,
    /// The inputs, all the wallet's.
    pub inputs: Vec<InputSummary>,
    /// The outputs.
    pub outputs: Vec<OutputSummary>,
    /// Sum of inputs.
    pub total_in_sat: u64,
    /// Sum of outputs.
    pub total_out_sat: u64,
    /// Sum of outputs that are not provably ours: what leaves the wallet.
    pub sent_sat: u64,
    /// Sum of outputs provably ours (change and self-payments).
    pub to_self_sat: u64,
    /// The fee.
    pub fee_sat: u64,
    /// Weight of the signed transaction (exact for key-path spends, an upper bound for
    /// recovery spends).
    pub weight_wu: u64,
    /// Virtual size (weight / 4, rounded up).
    pub vsize: u64,
    /// Fee rate in sat/vB, two decimals.
    pub fee_rate_sat_vb: f64,
}

impl Inspection {
    /// The inspection as JSON (field names as in the struct; amounts in satoshis).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data always serializes")
    }
}

fn btc(sat: u64) -> String {
    format!("{}.{:08} BTC", sat / 100_000_000, sat % 100_000_000)
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Transaction {} on {} ({} spend)",
            self.txid, self.network, self.spend_path
        )?;
        writeln!(
            f,
            "Inputs: {} coins of this wallet, {}",
            self.inputs.len(),
            btc(self.total_in_sat)
        )?;
        for i in &self.inputs {
            writeln!(
                f,
                "  #{:<3} {:>20}  from {:<12} {}  {}",
                i.index,
                btc(i.amount_sat),
                format!("{}/{}", i.branch, i.address_index),
                i.address,
                i.outpoint
            )?;
        }
        writeln!(f, "Outputs:")?;
        for o in &self.outputs {
            let to = o
                .address
                .clone()
                .unwrap_or_else(|| format!("script {}", o.script_hex));
            let whose = match o.ownership {
                Ownership::External => "EXTERNAL".to_string(),
                Ownership::Receive { index } => format!("ours: receive/{index} (proved)"),
                Ownership::Change { index } => format!("ours: change/{index} (proved)"),
            };
            writeln!(
                f,
                "  #{:<3} {:>20}  to {}  [{}]",
                o.index,
                btc(o.amount_sat),
                to,
                whose
            )?;
        }
        writeln!(f, "Sending {} out of the wallet", btc(self.sent_sat))?;
        write!(
            f,
            "Fee {} ({} sat), {:.2} sat/vB for {} vB",
            btc(self.fee_sat),
            self.fee_sat,
            self.fee_rate_sat_vb,
            self.vsize
        )
    }
}

/// A PSBT input the wallet has proved to be its own.
#[derive(Clone, Debug)]
pub(crate) struct OwnedInput {
    pub(crate) derived: DerivedAddress,
}

/// The result of the checks, for the signing code.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub(crate) inputs: Vec<OwnedInput>,
    pub(crate) spent: Vec<bitcoin::TxOut>,
    pub(crate) inspection: Inspection,
}

/// Inspects `psbt` for a FROST key-path signature, refusing anything unsafe to sign.
///
/// # Errors
/// An [`InspectError`] naming the input or output at fault.
pub fn inspect_psbt(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
) -> Result<Inspection, InspectError> {
    Ok(check(wallet, psbt, policy, SpendPath::KeyPath)?.inspection)
}

/// Inspects `psbt` for a recovery-leaf (script path) signature; as [`inspect_psbt`], with
/// the weight and fee rate computed for the recovery leaf.
///
/// # Errors
/// As [`inspect_psbt`].
pub fn inspect_recovery_psbt(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
) -> Result<Inspection, InspectError> {
    Ok(check(wallet, psbt, policy, SpendPath::Recovery)?.inspection)
}

fn claimed_internal_key(wallet: &WalletDescriptor, input: &Input) -> Result<(Branch, u32), String> {
    let mut claims = BTreeSet::new();
    for (leaf_hashes, source) in input.tap_key_origins.values() {
        if source.0 != wallet.origin().0 {
            continue;
        }
        match wallet.parse_origin(source) {
            Some(claim) if leaf_hashes.is_empty() => {
                claims.insert(claim);
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "key origin {}/{} is not a wallet address path",
                    source.0, source.1
                ))
            }
        }
    }
    match claims.len() {
        0 => Err("no tap_key_origins entry for this wallet's key".into()),
        1 => Ok(claims.into_iter().next().expect("one claim")),
        _ => Err("several conflicting derivation paths for this wallet's key".into()),
    }
}

fn check_prevout(k: usize, psbt: &Psbt) -> Result<bitcoin::TxOut, InspectError> {
    let input = &psbt.inputs[k];
    let outpoint = psbt.unsigned_tx.input[k].previous_output;
    let witness_utxo = input
        .witness_utxo
        .clone()
        .ok_or(InspectError::MissingPrevout { input: k })?;
    if let Some(prev) = &input.non_witness_utxo {
        if prev.compute_txid() != outpoint.txid {
            return Err(InspectError::PrevoutMismatch {
                input: k,
                reason: "non_witness_utxo is not the transaction the input spends",
            });
        }
        match prev.output.get(outpoint.vout as usize) {
            Some(out) if *out == witness_utxo => {}
            Some(_) => {
                return Err(InspectError::PrevoutMismatch {
                    input: k,
                    reason: "witness_utxo differs from the output in non_witness_utxo",
                })
            }
            None => {
                return Err(InspectError::PrevoutMismatch {
                    input: k,
                    reason: "non_witness_utxo has no output at the spent index",
                })
            }
        }
    }
    Ok(witness_utxo)
}

fn output_ownership(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    k: usize,
) -> Result<Ownership, InspectError> {
    let output = &psbt.outputs[k];
    let txout = &psbt.unsigned_tx.output[k];
    let ours = |s: &KeySource| s.0 == wallet.origin().0;
    let has_metadata = output.tap_key_origins.values().any(|(_, s)| ours(s))
        || output.bip32_derivation.values().any(ours);
    if !has_metadata {
        return Ok(Ownership::External);
    }
    let disguised = |claim: String| InspectError::DisguisedChange { output: k, claim };
    let mut claims = BTreeSet::new();
    for (xonly, (leaf_hashes, source)) in &output.tap_key_origins {
        if ours(source) && leaf_hashes.is_empty() {
            let (branch, index) = wallet.parse_origin(source).ok_or_else(|| {
                disguised(format!(
                    "key origin {}/{} is not a wallet address path",
                    source.0, source.1
                ))
            })?;
            claims.insert((branch, index, *xonly));
        }
    }
    let mut claims = claims.into_iter();
    let (branch, index, xonly) = match (claims.next(), claims.next()) {
        (Some(c), None) => c,
        (None, _) => return Err(disguised(
            "derivation metadata with this wallet's fingerprint but no Taproot internal-key path"
                .into(),
        )),
        (Some(_), Some(_)) => return Err(disguised("several conflicting derivation paths".into())),
    };
    let derived = wallet.derive(branch, index)?;
    let claim = format!("{branch}/{index}");
    if derived.script_pubkey() != txout.script_pubkey {
        return Err(disguised(claim));
    }
    if xonly != derived.internal_key
        || output
            .tap_internal_key
            .is_some_and(|k| k != derived.internal_key)
    {
        return Err(disguised(format!("{claim}, with a wrong internal key")));
    }
    Ok(match branch {
        Branch::Receive => Ownership::Receive { index },
        Branch::Change => Ownership::Change { index },
    })
}

fn sum(mut amounts: impl Iterator<Item = Amount>) -> Result<Amount, InspectError> {
    amounts.try_fold(Amount::ZERO, |acc, a| {
        acc.checked_add(a).ok_or(InspectError::AmountOverflow)
    })
}

fn estimated_weight(
    tx: &Transaction,
    inputs: &[OwnedInput],
    path: SpendPath,
) -> Result<Weight, InspectError> {
    // Unsigned weight (no witnesses), the segwit marker and flag, and each witness.
    let mut weight = tx.weight() + Weight::from_wu(2);
    for i in inputs {
        weight += match path {
            SpendPath::KeyPath => KEY_PATH_SATISFACTION_WEIGHT,
            SpendPath::Recovery => satisfaction_weight(&i.derived, path)
                .map_err(|e| InspectError::Malformed(e.to_string()))?,
        };
    }
    Ok(weight)
}

pub(crate) fn check(
    wallet: &WalletDescriptor,
    psbt: &Psbt,
    policy: &InspectPolicy,
    path: SpendPath,
) -> Result<Checked, InspectError> {
    let tx = &psbt.unsigned_tx;
    if psbt.inputs.len() != tx.input.len() || psbt.outputs.len() != tx.output.len() {
        return Err(InspectError::Malformed(format!(
            "{} input maps for {} inputs, {} output maps for {} outputs",
            psbt.inputs.len(),
            tx.input.len(),
            psbt.outputs.len(),
            tx.output.len()
        )));
    }
    if tx.input.is_empty() {
        return Err(InspectError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(InspectError::NoOutputs);
    }
    let mut seen = BTreeSet::new();
    let mut owned = Vec::with_capacity(tx.input.len());
    let mut spent = Vec::with_capacity(tx.input.len());
    let mut input_summaries = Vec::with_capacity(tx.input.len());
    for (k, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let outpoint = txin.previous_output;
        if !seen.insert(outpoint) {
            return Err(InspectError::DuplicateInput { input: k, outpoint });
        }
        match input.sighash_type {
            None => {}
            Some(t) if t.taproot_hash_ty() == Ok(TapSighashType::Default) => {}
            Some(t) => {
                return Err(InspectError::NonDefaultSighash {
                    input: k,
                    found: t.to_string(),
                })
            }
        }
        let prevout = check_prevout(k, psbt)?;
        let foreign = |reason: String| InspectError::ForeignInput {
            input: k,
            outpoint,
            reason,
        };
        let (branch, index) = claimed_internal_key(wallet, input).map_err(foreign)?;
        let derived = wallet.derive(branch, index)?;
        if derived.script_pubkey() != prevout.script_pubkey {
            return Err(foreign(format!(
                "its script is not the wallet's {branch} address {index}"
            )));
        }
        let inconsistent = |field| InspectError::InconsistentInput { input: k, field };
        if input
            .tap_internal_key
            .is_some_and(|key| key != derived.internal_key)
        {
            return Err(inconsistent("tap_internal_key"));
        }
        if input.tap_key_origins.iter().any(|(key, (hashes, s))| {
            hashes.is_empty() && wallet.parse_origin(s).is_some() && *key != derived.internal_key
        }) {
            return Err(inconsistent("tap_key_origins"));
        }
        if input.tap_merkle_root.is_some() && input.tap_merkle_root != derived.merkle_root {
            return Err(inconsistent("tap_merkle_root"));
        }
        input_summaries.push(InputSummary {
            index: k,
            outpoint: outpoint.to_string(),
            amount_sat: prevout.value.to_sat(),
            address: derived.address.to_string(),
            branch,
            address_index: index,
            sequence: txin.sequence.to_consensus_u32(),
        });
        spent.push(prevout);
        owned.push(OwnedInput { derived });
    }

    let mut output_summaries = Vec::with_capacity(tx.output.len());
    let mut sent = Amount::ZERO;
    let mut to_self = Amount::ZERO;
    for (k, txout) in tx.output.iter().enumerate() {
        let ownership = output_ownership(wallet, psbt, k)?;
        let total = if ownership.is_ours() {
            &mut to_self
        } else {
            &mut sent
        };
        *total = total
            .checked_add(txout.value)
            .ok_or(InspectError::AmountOverflow)?;
        output_summaries.push(OutputSummary {
            index: k,
            amount_sat: txout.value.to_sat(),
            address: Address::from_script(&txout.script_pubkey, wallet.network())
                .ok()
                .map(|a| a.to_string()),
            script_hex: txout.script_pubkey.to_hex_string(),
            ownership,
        });
    }

    let total_in = sum(spent.iter().map(|o| o.value))?;
    let total_out = sum(tx.output.iter().map(|o| o.value))?;
    let fee = total_in
        .checked_sub(total_out)
        .ok_or(InspectError::Overspend {
            inputs: total_in,
            outputs: total_out,
        })?;
    let weight = estimated_weight(tx, &owned, path)?;
    let vsize = weight.to_vbytes_ceil();
    if fee > policy.max_fee {
        return Err(InspectError::FeeTooHigh {
            fee,
            limit: policy.max_fee,
        });
    }
    // fee / weight > max  ⇔  fee · 1000 > max_sat_per_kwu · weight
    if u128::from(fee.to_sat()) * 1000
        > u128::from(policy.max_fee_rate.to_sat_per_kwu()) * u128::from(weight.to_wu())
    {
        return Err(InspectError::FeeRateTooHigh {
            fee_sat: fee.to_sat(),
            vsize,
            limit_sat_vb: policy.max_fee_rate.to_sat_per_vb_floor(),
        });
    }
    let rate_centi = u128::from(fee.to_sat()) * 400 / u128::from(weight.to_wu().max(1));
    let inspection = Inspection {
        network: wallet.network().to_string(),
        txid: tx.compute_txid().to_string(),
        spend_path: match path {
            SpendPath::KeyPath => "key-path",
            SpendPath::Recovery => "recovery",
        },
        version: tx.version.0,
        lock_time: tx.lock_time.to_consensus_u32(),
        inputs: input_summaries,
        outputs: output_summaries,
        total_in_sat: total_in.to_sat(),
        total_out_sat: total_out.to_sat(),
        sent_sat: sent.to_sat(),
        to_self_sat: to_self.to_sat(),
        fee_sat: fee.to_sat(),
        weight_wu: weight.to_wu(),
        vsize,
        fee_rate_sat_vb: rate_centi as f64 / 100.0,
    };
    Ok(Checked {
        inputs: owned,
        spent,
        inspection,
    })
}
