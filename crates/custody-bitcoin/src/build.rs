//! Building a withdrawal PSBT (the coordinator's side): coin selection with
//! `bdk_coin_select`, change on the change branch, and every BIP174/BIP371 field a signer
//! needs (`witness_utxo`, `tap_internal_key`, `tap_key_origins`, `tap_merkle_root`,
//! `tap_scripts`), filled in by `miniscript` from the wallet descriptor.

use bdk_coin_select::metrics::LowestFee;
use bdk_coin_select::{
    Candidate, ChangePolicy, CoinSelector, DrainWeights, FeeRate as CsFeeRate, Target, TargetFee,
    TargetOutputs, TR_DUST_RELAY_MIN_VALUE,
};
use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Weight,
    Witness,
};
use thiserror::Error;

use crate::descriptor::{Branch, DerivedAddress, DescriptorError, WalletDescriptor};

/// Weight a key-path input adds to its `TxIn` once signed: witness item count (1), length (1)
/// and a 64-byte BIP340 signature (`SIGHASH_DEFAULT`).
pub const KEY_PATH_SATISFACTION_WEIGHT: Weight = Weight::from_wu(66);

/// Bounds the branch-and-bound search of coin selection.
const BNB_ROUNDS: usize = 100_000;

/// One of the wallet's coins, as the coordinator's UTXO set records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletUtxo {
    /// The coin.
    pub outpoint: OutPoint,
    /// The output being spent (amount and scriptPubKey).
    pub txout: TxOut,
    /// The branch of the address it was paid to.
    pub branch: Branch,
    /// The index of the address it was paid to.
    pub index: u32,
    /// The whole previous transaction, if the coordinator has it; it goes into
    /// `non_witness_utxo` (not needed for Taproot, but some signers ask for it).
    pub prev_tx: Option<Transaction>,
}

/// One destination of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Where to pay.
    pub address: Address,
    /// How much.
    pub amount: Amount,
}

/// Which way the inputs will be spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendPath {
    /// FROST key path, day to day. Inputs signal RBF.
    KeyPath,
    /// The recovery leaf with backup keys: every input's `nSequence` is set to the leaf's
    /// relative timelock.
    Recovery,
}

/// What to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Target fee rate.
    pub fee_rate: FeeRate,
    /// The fee rate expected when change will be spent later; coin selection minimises
    /// fees now plus then (`bdk_coin_select`'s `LowestFee` metric). `None` uses `fee_rate`.
    pub long_term_fee_rate: Option<FeeRate>,
    /// The change address index to use if change is needed (the coordinator tracks which
    /// indexes are used).
    pub change_index: u32,
    /// The transaction's `nLockTime`.
    pub lock_time: LockTime,
    /// Key path or recovery leaf.
    pub spend_path: SpendPath,
}

impl BuildOptions {
    /// Key-path spending at `fee_rate` with change at `change_index`, no lock time.
    pub fn new(fee_rate: FeeRate, change_index: u32) -> Self {
        BuildOptions {
            fee_rate,
            long_term_fee_rate: None,
            change_index,
            lock_time: LockTime::ZERO,
            spend_path: SpendPath::KeyPath,
        }
    }
}

/// Why a PSBT could not be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No payments were given.
    #[error("a withdrawal needs at least one payment")]
    NoPayments,
    /// A payment address is for another network.
    #[error("payment {payment} pays {address}, which is not a {network} address")]
    WrongNetwork {
        /// The payment's position.
        payment: usize,
        /// The address.
        address: String,
        /// The wallet's network.
        network: bitcoin::Network,
    },
    /// A payment is below the dust limit of its script.
    #[error("payment {payment} of {amount} is below the dust limit {dust} of its address")]
    Dust {
        /// The payment's position.
        payment: usize,
        /// The amount.
        amount: Amount,
        /// The smallest amount relayed for that script.
        dust: Amount,
    },
    /// A coin's scriptPubKey is not the wallet's address at the coin's branch and index.
    #[error("coin {outpoint} is not paid to this wallet's {branch} address {index}")]
    ForeignUtxo {
        /// The coin.
        outpoint: OutPoint,
        /// The branch claimed.
        branch: Branch,
        /// The index claimed.
        index: u32,
    },
    /// A coin's previous transaction does not hold the coin.
    #[error("the previous transaction given for {outpoint} does not contain that output")]
    PrevTxMismatch {
        /// The coin.
        outpoint: OutPoint,
    },
    /// The same coin was given twice.
    #[error("coin {0} is listed twice")]
    DuplicateUtxo(OutPoint),
    /// The coins do not cover the payments and fee.
    #[error("the selected coins are {missing} short of the payments plus fee")]
    InsufficientFunds {
        /// The shortfall.
        missing: Amount,
    },
    /// A replacement was asked for without coins to spend.
    #[error("a replacement spends at least one coin")]
    NothingToReplace,
    /// A child-pays-for-parent transaction was asked for without coins to spend.
    #[error("a child spends at least one coin: the parent's change output")]
    NoParentOutput,
    /// The fee rate asked of a child-pays-for-parent transaction is not above the rate its
    /// unconfirmed ancestors already pay, so the child cannot speed them up.
    #[error(
        "the unconfirmed transactions already pay {} sat/vB; a child only speeds them up at \
         a higher rate, asked {} sat/vB",
        sat_per_vb(*.ancestors),
        sat_per_vb(*.asked)
    )]
    PackageAlreadyFaster {
        /// The ancestors' own rate (their total fee over their total weight, rounded up).
        ancestors: FeeRate,
        /// The rate asked for the package.
        asked: FeeRate,
    },
    /// The wallet has no recovery leaf but [`SpendPath::Recovery`] was asked for.
    #[error("the wallet has no recovery leaf")]
    NoRecoveryLeaf,
    /// The coin selection's result failed our own check (a bug in coin selection).
    #[error("coin selection produced an invalid transaction: {0}")]
    SelectionCheck(&'static str),
    /// Deriving an address failed.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// `miniscript` could not fill the Taproot fields.
    #[error("could not fill the Taproot fields of {what}: {reason}")]
    Update {
        /// Which input or output.
        what: String,
        /// `miniscript`'s message.
        reason: String,
    },
}

/// A fee rate in sat/vB for people: to the nearest hundredth, without decimals when whole.
fn sat_per_vb(rate: FeeRate) -> String {
    // sat/vB = sat/kwu / 250, so hundredths of a sat/vB are sat/kwu × 2 / 5.
    let hundredths = (u128::from(rate.to_sat_per_kwu()) * 4 + 5) / 10;
    match hundredths % 100 {
        0 => format!("{}", hundredths / 100),
        frac => format!("{}.{frac:02}", hundredths / 100),
    }
}

fn cs_fee_rate(rate: FeeRate) -> CsFeeRate {
    // bdk_coin_select works in sat/wu as f32; sat/kwu up to 2^24 is exact.
    CsFeeRate::from_sat_per_wu(rate.to_sat_per_kwu() as f32 / 1000.0)
}

/// Weight of a signed input of `derived` spent along `path` (outpoint, sequence, empty
/// scriptSig and the witness).
pub(crate) fn satisfaction_weight(
    derived: &DerivedAddress,
    path: SpendPath,
) -> Result<Weight, BuildError> {
    match path {
        SpendPath::KeyPath => Ok(KEY_PATH_SATISFACTION_WEIGHT),
        SpendPath::Recovery => {
            // The largest satisfaction over all spend paths is the recovery leaf's.
            derived
                .descriptor()
                .max_weight_to_satisfy()
                .map_err(|e| BuildError::Update {
                    what: format!("{} address {}", derived.branch, derived.index),
                    reason: e.to_string(),
                })
        }
    }
}

/// Builds an unsigned withdrawal PSBT paying `payments` from some of `utxos`.
///
/// Coins are chosen by `bdk_coin_select` (branch and bound on the `LowestFee` metric, with a
/// largest-first fallback). Change above the dust limit (and worth its future spending cost)
/// goes to the wallet's change address `options.change_index`, appended after the payments.
/// Every input gets `witness_utxo` (BIP341 sighashes commit to all spent amounts),
/// `tap_internal_key`, `tap_key_origins` (BIP371) and, with a recovery leaf,
/// `tap_merkle_root` and `tap_scripts`; the change output gets `tap_internal_key`,
/// `tap_key_origins` and `tap_tree`, so a signer can prove it is change.
///
/// # Errors
/// A [`BuildError`] saying which payment or coin is wrong, or how much is missing.
pub fn build_psbt(
    wallet: &WalletDescriptor,
    utxos: &[WalletUtxo],
    payments: &[Payment],
    options: &BuildOptions,
) -> Result<Psbt, BuildError> {
    if payments.is_empty() {
        return Err(BuildError::NoPayments);
    }
    let recovery = match options.spend_path {
        SpendPath::KeyPath => None,
        SpendPath::Recovery => Some(wallet.recovery().ok_or(BuildError::NoRecoveryLeaf)?),
    };
    let mut outputs = Vec::with_capacity(payments.len() + 1);
    for (k, p) in payments.iter().enumerate() {
        if !p
            .address
            .as_unchecked()
            .is_valid_for_network(wallet.network())
        {
            return Err(BuildError::WrongNetwork {
                payment: k,
                address: p.address.to_string(),
                network: wallet.network(),
            });
        }
        let script_pubkey = p.address.script_pubkey();
        let dust = script_pubkey.minimal_non_dust();
        if p.amount < dust {
            return Err(BuildError::Dust {
                payment: k,
                amount: p.amount,
                dust,
            });
        }
        outputs.push(TxOut {
            value: p.amount,
            script_pubkey,
        });
    }

    let mut seen = std::collections::BTreeSet::new();
    let mut derived = Vec::with_capacity(utxos.len());
    let mut candidates = Vec::with_capacity(utxos.len());
    for u in utxos {
        if !seen.insert(u.outpoint) {
            return Err(BuildError::DuplicateUtxo(u.outpoint));
        }
        let d = wallet.derive(u.branch, u.index)?;
        if d.script_pubkey() != u.txout.script_pubkey {
            return Err(BuildError::ForeignUtxo {
                outpoint: u.outpoint,
                branch: u.branch,
                index: u.index,
            });
        }
        if let Some(prev) = &u.prev_tx {
            let holds = prev.compute_txid() == u.outpoint.txid
                && prev.output.get(u.outpoint.vout as usize) == Some(&u.txout);
            if !holds {
                return Err(BuildError::PrevTxMismatch {
                    outpoint: u.outpoint,
                });
            }
        }
        let weight = satisfaction_weight(&d, options.spend_path)?;
        candidates.push(Candidate::new(u.txout.value.to_sat(), weight.to_wu(), true));
        derived.push(d);
    }

    let rate = cs_fee_rate(options.fee_rate);
    let long_term = cs_fee_rate(options.long_term_fee_rate.unwrap_or(options.fee_rate));
    let target = Target {
        fee: TargetFee::from_feerate(rate),
        outputs: TargetOutputs::fund_outputs(
            outputs
                .iter()
                .map(|o| (o.weight().to_wu(), o.value.to_sat())),
        ),
    };
    let change = wallet.derive(Branch::Change, options.change_index)?;
    let drain_weights = DrainWeights {
        output_weight: TxOut {
            value: Amount::ZERO,
            script_pubkey: change.script_pubkey(),
        }
        .weight()
        .to_wu(),
        spend_weight: bdk_coin_select::TXIN_BASE_WEIGHT
            + satisfaction_weight(&change, SpendPath::KeyPath)?.to_wu(),
        n_outputs: 1,
    };
    let change_policy =
        ChangePolicy::min_value_and_waste(drain_weights, TR_DUST_RELAY_MIN_VALUE, rate, long_term);

    let mut selector = CoinSelector::new(&candidates);
    let metric = LowestFee {
        target,
        long_term_feerate: long_term,
        change_policy,
    };
    if selector.run_bnb(metric, BNB_ROUNDS).is_err() {
        selector = CoinSelector::new(&candidates);
        selector.sort_candidates_by_descending_value_pwu();
        selector
            .select_until_target_met(target)
            .map_err(|e| BuildError::InsufficientFunds {
                missing: Amount::from_sat(e.missing),
            })?;
    }
    let drain = selector.drain(target, change_policy);
    let selected: Vec<usize> = selector.selected_indices().iter().copied().collect();

    let sequence = match recovery {
        None => Sequence::ENABLE_RBF_NO_LOCKTIME,
        Some(r) => Sequence::from_height(r.after_blocks()),
    };
    let change_position = if drain.is_some() {
        outputs.push(TxOut {
            value: Amount::from_sat(drain.value),
            script_pubkey: change.script_pubkey(),
        });
        Some(outputs.len() - 1)
    } else {
        None
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: options.lock_time,
        input: selected
            .iter()
            .map(|&i| TxIn {
                previous_output: utxos[i].outpoint,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    };
    // bdk_coin_select calls itself experimental: check its result independently before
    // anyone is asked to sign it.
    let spent: u64 = selected
        .iter()
        .map(|&i| utxos[i].txout.value.to_sat())
        .sum();
    let paid: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let mut weight = tx.weight() + Weight::from_wu(2);
    for &i in &selected {
        weight += satisfaction_weight(&derived[i], options.spend_path)?;
    }
    let needed = options
        .fee_rate
        .fee_wu(weight)
        .ok_or(BuildError::SelectionCheck("fee overflows"))?;
    if spent < paid || Amount::from_sat(spent - paid) < needed {
        return Err(BuildError::SelectionCheck(
            "the selection does not pay the target fee rate",
        ));
    }
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(|e| BuildError::Update {
        what: "the transaction".into(),
        reason: e.to_string(),
    })?;
    for (k, &i) in selected.iter().enumerate() {
        // The coin's key data as miniscript computes it, kept per address (a wallet spends
        // the same addresses' coins again and again); the coin's own script and previous
        // transaction were checked against the address above.
        let mut input = derived[i].psbt_input().map_err(|e| BuildError::Update {
            what: format!("input {k}"),
            reason: e.to_string(),
        })?;
        input.witness_utxo = Some(utxos[i].txout.clone());
        input.non_witness_utxo = utxos[i].prev_tx.clone();
        psbt.inputs[k] = input;
    }
    if let Some(k) = change_position {
        // miniscript's own update, kept per address (deriving the keys again is most of
        // what it costs).
        psbt.outputs[k] = change.psbt_output().map_err(|e| BuildError::Update {
            what: format!("change output {k}"),
            reason: e.to_string(),
        })?;
    }
    Ok(psbt)
}

/// Builds an unsigned *replacement* of a transaction that must never confirm: it spends
/// exactly `utxos` (the coins of the transaction it replaces, in that order) to one output,
/// the wallet's change address `options.change_index`, so nothing leaves the wallet; once
/// it confirms, the replaced transaction can no longer confirm.
///
/// Its fee is the largest of `options.fee_rate` over its weight, `replaced_fee` plus the
/// minimum relay fee rate (1 sat/vB) over its weight, and the replaced transaction's fee
/// rate (`replaced_fee` over `replaced_weight`, its signed weight) over its weight plus
/// that relay fee: what BIP125 and Bitcoin Core ask of a replacement (more fee in all,
/// paying for its own relay, and a higher rate, which its size alone does not give when
/// its change output is larger than the outputs it replaces), so that it also displaces
/// the replaced transaction from any mempool that holds it.
/// Inputs signal RBF; the PSBT carries the same BIP174/BIP371 fields as [`build_psbt`]'s,
/// so a signer proves the single output is change.
///
/// # Errors
/// [`BuildError::NothingToReplace`] without coins, [`BuildError::InsufficientFunds`] when
/// the coins do not cover the fee and a change output above the dust limit, and the coin
/// errors of [`build_psbt`].
pub fn build_replacement(
    wallet: &WalletDescriptor,
    utxos: &[WalletUtxo],
    replaced_fee: Amount,
    replaced_weight: Weight,
    options: &BuildOptions,
) -> Result<Psbt, BuildError> {
    if utxos.is_empty() {
        return Err(BuildError::NothingToReplace);
    }
    spend_to_change(wallet, utxos, options, |weight| {
        let overflow = BuildError::SelectionCheck("fee overflows");
        let at_rate = options.fee_rate.fee_wu(weight).ok_or(overflow.clone())?;
        let bump = FeeRate::BROADCAST_MIN
            .fee_wu(weight)
            .ok_or(overflow.clone())?;
        // The replaced rate over this weight, rounded up.
        let at_replaced_rate = replaced_fee
            .to_sat()
            .checked_mul(weight.to_wu())
            .map(|f| f.div_ceil(replaced_weight.to_wu().max(1)))
            .and_then(|f| f.checked_add(bump.to_sat()))
            .map(Amount::from_sat)
            .ok_or(overflow.clone())?;
        Ok(at_rate
            .max(replaced_fee.checked_add(bump).ok_or(overflow)?)
            .max(at_replaced_rate))
    })
}

/// Builds an unsigned *child-pays-for-parent* transaction that speeds up the wallet's
/// unconfirmed transactions: it spends exactly `utxos` (the parent's change output first,
/// then any wallet coins added because that change alone cannot pay, in that order) to one
/// output, the wallet's change address `options.change_index`, so nothing leaves the
/// wallet.
///
/// `ancestors_fee` and `ancestors_weight` are the total fee and total signed weight of all
/// the unconfirmed transactions the child depends on. The child's fee lifts that package
/// (ancestors and child) to `options.fee_rate`, and is never below the minimum relay fee
/// rate (1 sat/vB) over the child's own weight:
/// `max(fee_rate × (ancestors_weight + child) − ancestors_fee, 1 sat/vB × child weight)`,
/// rounded up, where the child counts in whole virtual bytes as nodes rate it.
/// `options.long_term_fee_rate` is not used.
/// Inputs signal RBF (or carry the recovery leaf's timelock); the PSBT carries the same
/// BIP174/BIP371 fields as [`build_psbt`]'s, so a signer proves the single output is change.
///
/// # Errors
/// [`BuildError::NoParentOutput`] without coins, [`BuildError::PackageAlreadyFaster`] when
/// `options.fee_rate` is not above the ancestors' own rate (such a child speeds nothing
/// up), [`BuildError::InsufficientFunds`] when the coins do not cover the fee and a change
/// output above the dust limit, and the coin errors of [`build_replacement`].
pub fn build_child(
    wallet: &WalletDescriptor,
    utxos: &[WalletUtxo],
    ancestors_fee: Amount,
    ancestors_weight: Weight,
    options: &BuildOptions,
) -> Result<Psbt, BuildError> {
    if utxos.is_empty() {
        return Err(BuildError::NoParentOutput);
    }
    let asked = options.fee_rate;
    // Zero weight (no ancestors) counts as 1 wu so the rate is defined: 0 without a fee.
    let ancestors_wu = u128::from(ancestors_weight.to_wu().max(1));
    let ancestors_fee_milli = u128::from(ancestors_fee.to_sat()) * 1000;
    if ancestors_fee_milli >= u128::from(asked.to_sat_per_kwu()) * ancestors_wu {
        let ancestors = u64::try_from(ancestors_fee_milli.div_ceil(ancestors_wu))
            .map_or(FeeRate::MAX, FeeRate::from_sat_per_kwu);
        return Err(BuildError::PackageAlreadyFaster { ancestors, asked });
    }
    spend_to_change(wallet, utxos, options, |weight| {
        let overflow = BuildError::SelectionCheck("fee overflows");
        // Nodes rate a package over each transaction's virtual size, rounded up.
        let child_vbytes = Weight::from_vb(weight.to_vbytes_ceil()).ok_or(overflow.clone())?;
        let package = ancestors_weight
            .checked_add(child_vbytes)
            .ok_or(overflow.clone())?;
        let for_package = asked
            .fee_wu(package)
            .ok_or(overflow.clone())?
            .checked_sub(ancestors_fee)
            .unwrap_or(Amount::ZERO);
        let relay = FeeRate::BROADCAST_MIN.fee_wu(weight).ok_or(overflow)?;
        Ok(for_package.max(relay))
    })
}

/// Spends exactly `utxos`, in their order, to the wallet's change address
/// `options.change_index`, paying the fee `fee_for` asks for the transaction's signed
/// weight along `options.spend_path`: the common part of [`build_replacement`] and
/// [`build_child`]. `utxos` must not be empty (the callers name that error).
fn spend_to_change(
    wallet: &WalletDescriptor,
    utxos: &[WalletUtxo],
    options: &BuildOptions,
    fee_for: impl FnOnce(Weight) -> Result<Amount, BuildError>,
) -> Result<Psbt, BuildError> {
    let sequence = match options.spend_path {
        SpendPath::KeyPath => Sequence::ENABLE_RBF_NO_LOCKTIME,
        SpendPath::Recovery => Sequence::from_height(
            wallet
                .recovery()
                .ok_or(BuildError::NoRecoveryLeaf)?
                .after_blocks(),
        ),
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut derived = Vec::with_capacity(utxos.len());
    let mut spent = Amount::ZERO;
    for u in utxos {
        if !seen.insert(u.outpoint) {
            return Err(BuildError::DuplicateUtxo(u.outpoint));
        }
        let d = wallet.derive(u.branch, u.index)?;
        if d.script_pubkey() != u.txout.script_pubkey {
            return Err(BuildError::ForeignUtxo {
                outpoint: u.outpoint,
                branch: u.branch,
                index: u.index,
            });
        }
        spent = spent
            .checked_add(u.txout.value)
            .ok_or(BuildError::SelectionCheck("coin amounts overflow"))?;
        derived.push(d);
    }
    let change = wallet.derive(Branch::Change, options.change_index)?;
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: options.lock_time,
        input: utxos
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            })
            .collect(),
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: change.script_pubkey(),
        }],
    };
    let mut weight = tx.weight() + Weight::from_wu(2);
    for d in &derived {
        weight += satisfaction_weight(d, options.spend_path)?;
    }
    let fee = fee_for(weight)?;
    let dust = Amount::from_sat(TR_DUST_RELAY_MIN_VALUE);
    let needed = fee.checked_add(dust).unwrap_or(Amount::MAX);
    if spent < needed {
        return Err(BuildError::InsufficientFunds {
            missing: needed - spent,
        });
    }
    tx.output[0].value = spent - fee;
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(|e| BuildError::Update {
        what: "the transaction".into(),
        reason: e.to_string(),
    })?;
    for (k, (u, d)) in utxos.iter().zip(&derived).enumerate() {
        let mut input = d.psbt_input().map_err(|e| BuildError::Update {
            what: format!("input {k}"),
            reason: e.to_string(),
        })?;
        input.witness_utxo = Some(u.txout.clone());
        input.non_witness_utxo = u.prev_tx.clone();
        psbt.inputs[k] = input;
    }
    psbt.outputs[0] = change.psbt_output().map_err(|e| BuildError::Update {
        what: "change output 0".into(),
        reason: e.to_string(),
    })?;
    Ok(psbt)
}
