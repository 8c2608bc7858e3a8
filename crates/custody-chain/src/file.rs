//! A development chain kept in one JSON file (`docs/formats/dev-chain.md`).
//!
//! Its mempool behaves like Bitcoin Core 28's with full RBF (`mempoolfullrbf=1`): a
//! transaction that spends what mempool transactions already spend replaces them, and their
//! descendants, when it pays enough under the BIP125 rules as Core applies them
//! (<https://github.com/bitcoin/bips/blob/master/bip-0125.mediawiki>); a spend conflicting
//! with a confirmed transaction is always refused.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bitcoin::consensus::encode;
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::script::PushBytesBuf;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Txid, Witness,
};
use serde::{Deserialize, Serialize};

use crate::{fee_rate_from_sat_per_vb, ChainBackend, ChainError, TxStatus, Utxo};

const NAME: &str = "file";
const FORMAT: &str = "coinport-dev-chain";
const VERSION: u32 = 1;
const DEFAULT_FEE_RATE_SAT_VB: f64 = 2.0;
/// Marks the script_sig of synthetic funding transactions, so they are recognisable.
const FUNDING_TAG: &[u8] = b"coinport dev-chain funding";

/// A development and test chain in one JSON file.
///
/// It behaves like a tiny node with a perfect view of its own chain: `fund` creates deposits
/// out of thin air, `broadcast` checks that every input spends a known unspent output, and
/// `mine` confirms everything in the mempool. Scripts and signatures are **not** verified;
/// the coordinator verifies transactions with `custody-bitcoin` before broadcasting them.
///
/// Double spends follow Bitcoin Core 28 with full RBF (no signalling needed). Spending an
/// output that a *confirmed* transaction spent is refused (`bad-txns-inputs-missingorspent`,
/// naming the spender). Spending one that *mempool* transactions spend replaces them and
/// their mempool descendants if the new transaction
/// - does not spend an output of a transaction it would evict
///   (`bad-txns-spends-conflicting-tx`),
/// - pays a strictly higher fee rate than each transaction it conflicts with directly
///   (`insufficient fee`),
/// - evicts at most 100 transactions (`too many potential replacements`), and
/// - pays at least the evicted transactions' fees plus 1 sat/vB of its own virtual size
///   (`insufficient fee`);
///
/// otherwise it is refused with that reason, followed by the conflicting spend
/// (`txn-mempool-conflict: … (double spend)`). A replacement removes the evicted
/// transactions and their outputs, and gives back as unspent the outputs they spent that
/// nothing else spends. Fees are input values (from the chain's known transactions) minus
/// output values; sizes are [`Transaction::vsize`].
///
/// Every operation takes an advisory lock on `<file>.lock` and rewrites the file atomically
/// (temporary file, `fsync`, rename, directory `fsync`), so several handles and several
/// processes can share one chain, and of two conflicting spends exactly one ends up in the
/// mempool (the first, or the second if it replaces the first).
///
/// # Panics
/// The async methods run their blocking file work with `tokio::task::spawn_blocking`, so
/// they must be called from within a Tokio runtime (as the coordinator does); elsewhere they
/// panic.
#[derive(Clone, Debug)]
pub struct FileBackend {
    path: PathBuf,
}

impl FileBackend {
    /// Creates a new chain file for `network` at height 0 with no outputs.
    ///
    /// # Errors
    /// [`ChainError::Storage`] if the file already exists or cannot be written.
    pub fn create(path: impl AsRef<Path>, network: Network) -> Result<Self, ChainError> {
        let backend = Self {
            path: path.as_ref().to_path_buf(),
        };
        let _lock = backend.lock(LockKind::Exclusive)?;
        if backend.path.exists() {
            return Err(backend.io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the chain file already exists",
            )));
        }
        backend.write(&ChainDoc::new(network))?;
        Ok(backend)
    }

    /// Opens an existing chain file and checks that it is valid.
    ///
    /// # Errors
    /// [`ChainError::Storage`] if it cannot be read, [`ChainError::BadChainFile`] if it is
    /// not a chain document of a version this crate reads.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ChainError> {
        let backend = Self {
            path: path.as_ref().to_path_buf(),
        };
        let _lock = backend.lock(LockKind::Shared)?;
        backend.read()?;
        Ok(backend)
    }

    /// Opens the chain file, creating it for `network` if it does not exist yet.
    ///
    /// # Errors
    /// As [`FileBackend::open`], and [`ChainError::WrongNetwork`] if an existing file is for
    /// another network.
    pub fn open_or_create(path: impl AsRef<Path>, network: Network) -> Result<Self, ChainError> {
        let backend = Self {
            path: path.as_ref().to_path_buf(),
        };
        let _lock = backend.lock(LockKind::Exclusive)?;
        let doc = if backend.path.exists() {
            backend.read()?
        } else {
            let doc = ChainDoc::new(network);
            backend.write(&doc)?;
            doc
        };
        if doc.network != network {
            return Err(ChainError::WrongNetwork {
                backend: NAME,
                expected: network,
                found: doc.network,
            });
        }
        Ok(backend)
    }

    /// Returns the chain file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the network the chain file was created for.
    ///
    /// # Errors
    /// As [`FileBackend::open`].
    pub async fn network(&self) -> Result<Network, ChainError> {
        self.view(|doc| Ok(doc.network)).await
    }

    /// Deposits `value` to `script` with a synthetic funding transaction and returns the new
    /// output. The funding transaction enters the mempool; [`FileBackend::mine`] confirms it.
    ///
    /// The funding transaction is a real, coinbase-shaped [`Transaction`] whose txid is the
    /// outpoint's txid; [`FileBackend::transaction`] returns it.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn fund(&self, script: &ScriptBuf, value: Amount) -> Result<OutPoint, ChainError> {
        let outpoints = self.fund_many(&[(script.clone(), value)]).await?;
        outpoints
            .first()
            .copied()
            .ok_or_else(|| ChainError::BadChainFile {
                path: self.path.clone(),
                reason: "funding created no output".into(),
            })
    }

    /// As [`FileBackend::fund`] for each of `outputs`, in one write of the chain file:
    /// one funding transaction per output, in order. Returns their outpoints.
    ///
    /// # Errors
    /// Storage errors; nothing is funded when one of them fails.
    pub async fn fund_many(
        &self,
        outputs: &[(ScriptBuf, Amount)],
    ) -> Result<Vec<OutPoint>, ChainError> {
        let outputs = outputs.to_vec();
        self.update(move |doc| {
            let mut outpoints = Vec::with_capacity(outputs.len());
            for (script, value) in outputs {
                let serial = doc.next_funding;
                doc.next_funding =
                    serial
                        .checked_add(1)
                        .ok_or_else(|| ChainError::BadChainFile {
                            path: PathBuf::new(),
                            reason: "funding counter overflow".into(),
                        })?;
                let tx = funding_transaction(serial, script.clone(), value);
                let txid = tx.compute_txid();
                outpoints.push(OutPoint { txid, vout: 0 });
                doc.utxos.push(UtxoEntry {
                    txid,
                    vout: 0,
                    value,
                    script_pubkey: script,
                    height: None,
                });
                doc.transactions.push(TxEntry {
                    txid,
                    kind: TxKind::Funding,
                    height: None,
                    tx,
                });
            }
            Ok(outpoints)
        })
        .await
    }

    /// Mines `blocks` blocks: everything in the mempool confirms in the first of them.
    /// Returns the new tip height.
    ///
    /// # Errors
    /// Storage errors; [`ChainError::BadChainFile`] if the height would overflow.
    pub async fn mine(&self, blocks: u32) -> Result<u32, ChainError> {
        self.update(move |doc| {
            if blocks == 0 {
                return Ok(doc.height);
            }
            let first = doc.height.checked_add(1);
            let tip = doc.height.checked_add(blocks);
            let (Some(first), Some(tip)) = (first, tip) else {
                return Err(ChainError::BadChainFile {
                    path: PathBuf::new(),
                    reason: "block height overflow".into(),
                });
            };
            for utxo in doc.utxos.iter_mut().filter(|u| u.height.is_none()) {
                utxo.height = Some(first);
            }
            for entry in doc.transactions.iter_mut().filter(|t| t.height.is_none()) {
                entry.height = Some(first);
            }
            doc.height = tip;
            Ok(tip)
        })
        .await
    }

    /// Returns a transaction the chain knows (funding or broadcast), if any.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn transaction(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError> {
        let txid = *txid;
        self.view(move |doc| Ok(doc.entry(&txid).map(|e| e.tx.clone())))
            .await
    }

    /// Sets the fee rate [`ChainBackend::fee_rate`] answers for every target.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn set_fee_rate(&self, rate: FeeRate) -> Result<(), ChainError> {
        self.update(move |doc| {
            // sat/kwu ÷ 250 = sat/vB; fee rates are far below 2^53, so the cast is exact.
            #[allow(clippy::cast_precision_loss)]
            let sat_vb = rate.to_sat_per_kwu() as f64 / 250.0;
            doc.fee_rate_sat_vb = sat_vb;
            Ok(())
        })
        .await
    }

    /// Runs `f` on the current document under a shared lock, off the async runtime.
    async fn view<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ChainDoc) -> Result<R, ChainError> + Send + 'static,
    ) -> Result<R, ChainError> {
        let this = self.clone();
        this.blocking(move |this| {
            let _lock = this.lock(LockKind::Shared)?;
            f(&this.read()?)
        })
        .await
    }

    /// Runs `f` on the document under an exclusive lock and writes the result back if `f`
    /// succeeds; a failed `f` leaves the file untouched.
    async fn update<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainDoc) -> Result<R, ChainError> + Send + 'static,
    ) -> Result<R, ChainError> {
        let this = self.clone();
        this.blocking(move |this| {
            let _lock = this.lock(LockKind::Exclusive)?;
            let mut doc = this.read()?;
            let result = f(&mut doc).map_err(|e| this.with_path(e))?;
            this.write(&doc)?;
            Ok(result)
        })
        .await
    }

    async fn blocking<R: Send + 'static>(
        self,
        f: impl FnOnce(&Self) -> Result<R, ChainError> + Send + 'static,
    ) -> Result<R, ChainError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || f(&self))
            .await
            .map_err(|e| ChainError::Storage {
                path,
                source: io::Error::other(e.to_string()),
            })?
    }

    /// Fills in the file's path in errors raised by document operations.
    fn with_path(&self, error: ChainError) -> ChainError {
        match error {
            ChainError::BadChainFile { path, reason } if path.as_os_str().is_empty() => {
                ChainError::BadChainFile {
                    path: self.path.clone(),
                    reason,
                }
            }
            other => other,
        }
    }

    fn io_error(&self, source: io::Error) -> ChainError {
        ChainError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// Takes the advisory lock; it is released when the returned file is dropped.
    ///
    /// A separate lock file is locked because the chain file itself is replaced by rename
    /// on every write, and a lock on a replaced inode protects nothing.
    fn lock(&self, kind: LockKind) -> Result<File, ChainError> {
        let lock_path = self.lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| ChainError::Storage {
                path: lock_path.clone(),
                source,
            })?;
        // Called through the trait: std's inherent `File::lock` needs Rust 1.89.
        match kind {
            LockKind::Shared => fs4::FileExt::lock_shared(&file),
            LockKind::Exclusive => fs4::FileExt::lock(&file),
        }
        .map_err(|source| ChainError::Storage {
            path: lock_path,
            source,
        })?;
        Ok(file)
    }

    fn read(&self) -> Result<ChainDoc, ChainError> {
        let bytes = fs::read(&self.path).map_err(|e| self.io_error(e))?;
        let doc: ChainDoc =
            serde_json::from_slice(&bytes).map_err(|e| ChainError::BadChainFile {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        doc.validate().map_err(|reason| ChainError::BadChainFile {
            path: self.path.clone(),
            reason,
        })?;
        Ok(doc)
    }

    /// Replaces the file atomically and durably. Callers hold the exclusive lock, so one
    /// temporary name suffices.
    fn write(&self, doc: &ChainDoc) -> Result<(), ChainError> {
        let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| ChainError::BadChainFile {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(self.path.file_name().unwrap_or_default());
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &self.path)?;
            sync_parent(&self.path)
        })();
        written.map_err(|e| self.io_error(e))
    }
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing on Windows; rename is durable there.
    Ok(())
}

#[derive(Clone, Copy)]
enum LockKind {
    Shared,
    Exclusive,
}

fn funding_transaction(serial: u64, script_pubkey: ScriptBuf, value: Amount) -> Transaction {
    let mut tag = FUNDING_TAG.to_vec();
    tag.extend_from_slice(&serial.to_le_bytes());
    let tag = PushBytesBuf::try_from(tag).expect("34 bytes is below the push limit");
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::builder().push_slice(tag).into_script(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey,
        }],
    }
}

fn reject(txid: Txid, reason: String) -> ChainError {
    ChainError::Rejected {
        backend: NAME,
        txid,
        reason,
    }
}

/// Checks `tx` against the chain and applies it; returns its txid.
///
/// A transaction spending outputs that mempool transactions already spend replaces them if
/// it passes [`check_replacement`].
fn accept(doc: &mut ChainDoc, tx: &Transaction) -> Result<Txid, ChainError> {
    let txid = tx.compute_txid();
    if doc.entry(&txid).is_some() {
        return Ok(txid);
    }
    if tx.input.is_empty() {
        return Err(reject(txid, "bad-txns-vin-empty".into()));
    }
    if tx.output.is_empty() {
        return Err(reject(txid, "bad-txns-vout-empty".into()));
    }
    let mut spent = HashSet::new();
    let mut in_value = Amount::ZERO;
    let mut conflicts: Vec<Conflict> = Vec::new();
    for (index, input) in tx.input.iter().enumerate() {
        let prevout = input.previous_output;
        if !spent.insert(prevout) {
            return Err(reject(
                txid,
                format!("bad-txns-inputs-duplicate: input {index} spends {prevout} again"),
            ));
        }
        if input.witness.is_empty() && input.script_sig.is_empty() {
            return Err(reject(
                txid,
                format!("input {index} is unsigned (empty witness and script_sig)"),
            ));
        }
        let unknown = || {
            reject(
                txid,
                format!(
                    "bad-txns-inputs-missingorspent: input {index} spends unknown output \
                     {prevout}"
                ),
            )
        };
        let value = if let Some(utxo) = doc.utxo(&prevout) {
            utxo.value
        } else {
            match doc.spender(&prevout) {
                Some((spender, None)) => {
                    if !conflicts.iter().any(|c| c.spender == spender) {
                        conflicts.push(Conflict {
                            input: index,
                            prevout,
                            spender,
                        });
                    }
                    doc.output(&prevout).ok_or_else(unknown)?.value
                }
                Some((spender, Some(height))) => {
                    return Err(reject(
                        txid,
                        format!(
                            "bad-txns-inputs-missingorspent: input {index} spends {prevout}, \
                             already spent by {spender} confirmed at height {height} (double \
                             spend)"
                        ),
                    ));
                }
                None => return Err(unknown()),
            }
        };
        in_value = in_value
            .checked_add(value)
            .ok_or_else(|| reject(txid, "bad-txns-inputvalues-outofrange".into()))?;
    }
    let out_value = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |sum, out| sum.checked_add(out.value))
        .ok_or_else(|| reject(txid, "bad-txns-txouttotal-toolarge".into()))?;
    let Some(fee) = in_value.checked_sub(out_value) else {
        return Err(reject(
            txid,
            format!("bad-txns-in-belowout: outputs {out_value} exceed inputs {in_value}"),
        ));
    };

    if !conflicts.is_empty() {
        let evicted = check_replacement(doc, tx, fee, &conflicts)?;
        evict(doc, &evicted);
    }
    doc.utxos.retain(|u| !spent.contains(&u.outpoint()));
    for (vout, out) in (0u32..).zip(&tx.output) {
        if out.script_pubkey.is_op_return() {
            continue;
        }
        doc.utxos.push(UtxoEntry {
            txid,
            vout,
            value: out.value,
            script_pubkey: out.script_pubkey.clone(),
            height: None,
        });
    }
    doc.transactions.push(TxEntry {
        txid,
        kind: TxKind::Broadcast,
        height: None,
        tx: tx.clone(),
    });
    Ok(txid)
}

/// Bitcoin Core's limit on the transactions one replacement may evict
/// (`MAX_REPLACEMENT_CANDIDATES`).
const MAX_REPLACEMENT_CANDIDATES: usize = 100;
/// What a replacement must pay for its own relay on top of the fees it evicts, in sat/vB
/// (Core's `-incrementalrelayfee` default, equal to the minimum relay fee).
const INCREMENTAL_RELAY_FEE_SAT_VB: u64 = 1;

/// An input of a new transaction that spends an output a mempool transaction already spends.
struct Conflict {
    input: usize,
    prevout: OutPoint,
    spender: Txid,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn-mempool-conflict: input {} spends {}, already spent by {} in the mempool \
             (double spend)",
            self.input, self.prevout, self.spender
        )
    }
}

/// A fee rate in sat/kvB, truncated, compared and shown as Bitcoin Core's `CFeeRate` is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CoreFeeRate(u64);

impl CoreFeeRate {
    fn new(fee: Amount, vsize: usize) -> Self {
        let vsize = u64::try_from(vsize.max(1)).unwrap_or(u64::MAX);
        Self(fee.to_sat().saturating_mul(1000) / vsize)
    }
}

impl fmt::Display for CoreFeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} sat/vB", self.0 / 1000, self.0 % 1000)
    }
}

/// Applies Bitcoin Core's replacement rules (BIP125 as Core 28 enforces them with full RBF,
/// so no signalling is needed) to `tx`, which pays `fee` and spends what the mempool
/// transactions in `conflicts` spend. Returns the transactions it evicts: the direct
/// conflicts and all their mempool descendants.
///
/// The checks run in Core's order: the replacement must not spend an output of a transaction
/// it evicts, must pay a strictly higher fee rate than every direct conflict, may evict at
/// most [`MAX_REPLACEMENT_CANDIDATES`] transactions, and must pay at least the evicted fees
/// plus its own relay at [`INCREMENTAL_RELAY_FEE_SAT_VB`].
///
/// # Errors
/// [`ChainError::Rejected`] with Core's reason when a rule is broken, followed by the first
/// conflict (or the one whose fee rate was not beaten); [`ChainError::BadChainFile`] if a
/// mempool transaction's fee cannot be computed from the document.
fn check_replacement(
    doc: &ChainDoc,
    tx: &Transaction,
    fee: Amount,
    conflicts: &[Conflict],
) -> Result<Vec<Txid>, ChainError> {
    let txid = tx.compute_txid();
    let Some(first) = conflicts.first() else {
        return Ok(Vec::new());
    };
    let evicted = with_descendants(doc, conflicts.iter().map(|c| c.spender).collect());
    if let Some(parent) = tx
        .input
        .iter()
        .map(|i| i.previous_output.txid)
        .find(|parent| evicted.contains(parent))
    {
        return Err(reject(
            txid,
            format!(
                "bad-txns-spends-conflicting-tx: {txid} spends conflicting transaction \
                 {parent}; {first}"
            ),
        ));
    }

    let vsize = tx.vsize();
    let new_rate = CoreFeeRate::new(fee, vsize);
    for conflict in conflicts {
        let old = doc.mempool_entry(&conflict.spender)?;
        let old_rate = CoreFeeRate::new(doc.fee(old)?, old.tx.vsize());
        if new_rate <= old_rate {
            return Err(reject(
                txid,
                format!(
                    "insufficient fee: rejecting replacement {txid}; new feerate {new_rate} <= \
                     old feerate {old_rate}; {conflict}"
                ),
            ));
        }
    }

    if evicted.len() > MAX_REPLACEMENT_CANDIDATES {
        return Err(reject(
            txid,
            format!(
                "too many potential replacements: rejecting replacement {txid}; too many \
                 potential replacements ({} > {MAX_REPLACEMENT_CANDIDATES}); {first}",
                evicted.len()
            ),
        ));
    }

    let mut evicted_fees = Amount::ZERO;
    for spender in &evicted {
        let fee = doc.fee(doc.mempool_entry(spender)?)?;
        evicted_fees = evicted_fees
            .checked_add(fee)
            .ok_or_else(|| bad_doc(format!("fees evicted by {txid} overflow")))?;
    }
    let Some(additional) = fee.checked_sub(evicted_fees) else {
        return Err(reject(
            txid,
            format!(
                "insufficient fee: rejecting replacement {txid}, less fees than conflicting \
                 txs; {fee} < {evicted_fees}; {first}"
            ),
        ));
    };
    let vsize_u64 = u64::try_from(vsize).unwrap_or(u64::MAX);
    let relay = Amount::from_sat(vsize_u64.saturating_mul(INCREMENTAL_RELAY_FEE_SAT_VB));
    if additional < relay {
        return Err(reject(
            txid,
            format!(
                "insufficient fee: rejecting replacement {txid}, not enough additional fees to \
                 relay; {additional} < {relay}; {first}"
            ),
        ));
    }
    Ok(evicted)
}

/// Returns `roots` followed by every mempool transaction that spends their outputs,
/// recursively, each once.
fn with_descendants(doc: &ChainDoc, roots: Vec<Txid>) -> Vec<Txid> {
    let mut seen: HashSet<Txid> = roots.iter().copied().collect();
    let mut all = roots;
    let mut next = 0;
    while let Some(&parent) = all.get(next) {
        next += 1;
        for entry in &doc.transactions {
            let spends_parent = entry
                .tx
                .input
                .iter()
                .any(|i| i.previous_output.txid == parent);
            if entry.height.is_none() && spends_parent && seen.insert(entry.txid) {
                all.push(entry.txid);
            }
        }
    }
    all
}

/// Removes the mempool transactions `evicted` (a set closed under descendants): their outputs
/// leave the UTXO set, and the outputs they spent that no remaining transaction spends become
/// unspent again, at their creating transaction's height.
fn evict(doc: &mut ChainDoc, evicted: &[Txid]) {
    let evicted: HashSet<Txid> = evicted.iter().copied().collect();
    let freed: Vec<OutPoint> = doc
        .transactions
        .iter()
        .filter(|t| evicted.contains(&t.txid))
        .flat_map(|t| t.tx.input.iter().map(|i| i.previous_output))
        .filter(|prevout| !evicted.contains(&prevout.txid))
        .collect();
    doc.transactions.retain(|t| !evicted.contains(&t.txid));
    doc.utxos.retain(|u| !evicted.contains(&u.txid));
    for outpoint in freed {
        if doc.spender(&outpoint).is_some() || doc.utxo(&outpoint).is_some() {
            continue;
        }
        let (Some(out), Some(parent)) = (doc.output(&outpoint), doc.entry(&outpoint.txid)) else {
            continue;
        };
        let utxo = UtxoEntry {
            txid: outpoint.txid,
            vout: outpoint.vout,
            value: out.value,
            script_pubkey: out.script_pubkey.clone(),
            height: parent.height,
        };
        doc.utxos.push(utxo);
    }
}

/// A [`ChainError::BadChainFile`] whose path [`FileBackend::with_path`] fills in.
fn bad_doc(reason: String) -> ChainError {
    ChainError::BadChainFile {
        path: PathBuf::new(),
        reason,
    }
}

#[async_trait::async_trait]
impl ChainBackend for FileBackend {
    async fn utxos(&self, scripts: &[ScriptBuf]) -> Result<Vec<Utxo>, ChainError> {
        let scripts: HashSet<ScriptBuf> = scripts.iter().cloned().collect();
        self.view(move |doc| {
            Ok(doc
                .utxos
                .iter()
                .filter(|u| scripts.contains(&u.script_pubkey))
                .map(|u| Utxo {
                    outpoint: u.outpoint(),
                    value: u.value,
                    script_pubkey: u.script_pubkey.clone(),
                    height: u.height,
                })
                .collect())
        })
        .await
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let tx = tx.clone();
        self.update(move |doc| accept(doc, &tx)).await
    }

    async fn tx_status(&self, txid: &Txid) -> Result<TxStatus, ChainError> {
        let txid = *txid;
        self.view(move |doc| {
            Ok(match doc.entry(&txid).map(|e| e.height) {
                None => TxStatus::Unknown,
                Some(None) => TxStatus::InMempool,
                Some(Some(height)) => TxStatus::Confirmed {
                    height,
                    confirmations: doc.height.saturating_sub(height).saturating_add(1),
                },
            })
        })
        .await
    }

    async fn tip_height(&self) -> Result<u32, ChainError> {
        self.view(|doc| Ok(doc.height)).await
    }

    async fn fee_rate(&self, _target_blocks: u16) -> Result<FeeRate, ChainError> {
        self.view(|doc| fee_rate_from_sat_per_vb(NAME, doc.fee_rate_sat_vb))
            .await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

/// The chain document; field order is the order in the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainDoc {
    format: String,
    version: u32,
    network: Network,
    height: u32,
    fee_rate_sat_vb: f64,
    next_funding: u64,
    utxos: Vec<UtxoEntry>,
    transactions: Vec<TxEntry>,
}

impl ChainDoc {
    fn new(network: Network) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            network,
            height: 0,
            fee_rate_sat_vb: DEFAULT_FEE_RATE_SAT_VB,
            next_funding: 0,
            utxos: Vec::new(),
            transactions: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.version != VERSION {
            return Err(format!(
                "format version {} is not supported (this build reads {VERSION})",
                self.version
            ));
        }
        fee_rate_from_sat_per_vb(NAME, self.fee_rate_sat_vb).map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        for entry in &self.transactions {
            if entry.tx.compute_txid() != entry.txid {
                return Err(format!(
                    "transaction {} does not hash to its txid",
                    entry.txid
                ));
            }
            if !seen.insert(entry.txid) {
                return Err(format!("transaction {} is listed twice", entry.txid));
            }
        }
        for entry in &self.transactions {
            if entry.height.is_some_and(|h| h > self.height) {
                return Err(format!("transaction {} is above the tip", entry.txid));
            }
        }
        let mut outpoints = HashSet::new();
        for utxo in &self.utxos {
            if !outpoints.insert(utxo.outpoint()) {
                return Err(format!("output {} is listed twice", utxo.outpoint()));
            }
            if utxo.height.is_some_and(|h| h > self.height) {
                return Err(format!("output {} is above the tip", utxo.outpoint()));
            }
        }
        Ok(())
    }

    fn entry(&self, txid: &Txid) -> Option<&TxEntry> {
        self.transactions.iter().find(|t| t.txid == *txid)
    }

    fn utxo(&self, outpoint: &OutPoint) -> Option<&UtxoEntry> {
        self.utxos.iter().find(|u| u.outpoint() == *outpoint)
    }

    /// The output `outpoint` names, if the document knows its transaction.
    fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        let vout = usize::try_from(outpoint.vout).ok()?;
        self.entry(&outpoint.txid)?.tx.output.get(vout)
    }

    /// The unconfirmed transaction `txid`.
    fn mempool_entry(&self, txid: &Txid) -> Result<&TxEntry, ChainError> {
        self.entry(txid)
            .filter(|e| e.height.is_none())
            .ok_or_else(|| bad_doc(format!("mempool transaction {txid} is not listed")))
    }

    /// The fee a known transaction pays: the values of the outputs it spends, looked up in
    /// the known transactions, minus what it pays out.
    fn fee(&self, entry: &TxEntry) -> Result<Amount, ChainError> {
        let txid = entry.txid;
        let mut in_value = Amount::ZERO;
        for input in &entry.tx.input {
            let prevout = input.previous_output;
            let value = self
                .output(&prevout)
                .ok_or_else(|| bad_doc(format!("transaction {txid} spends unknown {prevout}")))?
                .value;
            in_value = in_value
                .checked_add(value)
                .ok_or_else(|| bad_doc(format!("input values of {txid} overflow")))?;
        }
        entry
            .tx
            .output
            .iter()
            .try_fold(in_value, |rest, out| rest.checked_sub(out.value))
            .ok_or_else(|| bad_doc(format!("transaction {txid} pays out more than it spends")))
    }

    /// The known transaction spending `outpoint` and its confirmation height.
    fn spender(&self, outpoint: &OutPoint) -> Option<(Txid, Option<u32>)> {
        self.transactions
            .iter()
            .find(|t| t.tx.input.iter().any(|i| i.previous_output == *outpoint))
            .map(|t| (t.txid, t.height))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UtxoEntry {
    txid: Txid,
    vout: u32,
    #[serde(rename = "value_sat", with = "bitcoin::amount::serde::as_sat")]
    value: Amount,
    #[serde(with = "hex_script")]
    script_pubkey: ScriptBuf,
    height: Option<u32>,
}

impl UtxoEntry {
    fn outpoint(&self) -> OutPoint {
        OutPoint {
            txid: self.txid,
            vout: self.vout,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TxKind {
    Funding,
    Broadcast,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxEntry {
    txid: Txid,
    kind: TxKind,
    height: Option<u32>,
    #[serde(rename = "hex", with = "hex_tx")]
    tx: Transaction,
}

mod hex_script {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(script: &ScriptBuf, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&script.as_bytes().to_lower_hex_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ScriptBuf, D::Error> {
        let text = String::deserialize(d)?;
        Vec::<u8>::from_hex(&text)
            .map(ScriptBuf::from_bytes)
            .map_err(serde::de::Error::custom)
    }
}

mod hex_tx {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(tx: &Transaction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode::serialize_hex(tx))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Transaction, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = Vec::<u8>::from_hex(&text).map_err(serde::de::Error::custom)?;
        encode::deserialize(&bytes).map_err(serde::de::Error::custom)
    }
}
