//! A development EVM chain kept in one JSON file (`docs/formats/dev-evm-chain.md`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, Bytes, B256, U256};
use custody_ethereum::{Call, SignedEthTransaction};
use serde::{Deserialize, Serialize};

use crate::{EvmBackend, EvmError, Fees, TxOutcome, TxReceipt, TRANSFER_GAS};

const NAME: &str = "file";
const FORMAT: &str = "coinport-dev-evm-chain";
const VERSION: u32 = 1;
const GWEI: u128 = 1_000_000_000;

/// Gas an ERC-20 `transfer` uses on the development chain (a fixed figure near what a
/// common token contract uses on Ethereum; [`EvmBackend::estimate_gas`] answers it).
pub const DEV_TOKEN_TRANSFER_GAS: u64 = 52_000;

/// A development and test EVM chain in one JSON file.
///
/// It behaves like a small node that executes only what custody withdrawals do:
/// [`FileEvmBackend::fund`] and [`FileEvmBackend::fund_erc20`] credit balances at once
/// (no transaction, no block), [`EvmBackend::send_raw`] checks a signed transaction the
/// way a node's pool does — signature, chain id, nonce, fee cap against the base fee,
/// balance for `value + gas_limit × max_fee` — and queues it, and
/// [`FileEvmBackend::mine`] executes the queue in order in the next block. It executes
/// plain ether transfers and ERC-20 `transfer(address,uint256)` calls to tokens the file
/// knows (a transfer above the sender's token balance is mined as reverted, as on a real
/// chain); every other call, contract creation and transaction type is refused.
///
/// The base fee never changes by itself ([`FileEvmBackend::set_fees`] changes it);
/// the fee paid per gas is `base_fee + min(tip, max_fee − base_fee)`, and
/// there is no block producer to receive the tip.
///
/// Every operation takes an advisory lock on `<file>.lock` and rewrites the file
/// atomically (temporary file, `fsync`, rename, directory `fsync`), so several handles and
/// processes can share one chain.
///
/// # Panics
/// The async methods run their file work with `tokio::task::spawn_blocking`, so they must
/// be called from within a Tokio runtime; elsewhere they panic.
#[derive(Clone, Debug)]
pub struct FileEvmBackend {
    path: PathBuf,
}

impl FileEvmBackend {
    /// Creates a new chain file for `chain_id` at block 0, with a base fee and a tip of
    /// 1 gwei and no accounts.
    ///
    /// # Errors
    /// [`EvmError::Storage`] if the file already exists or cannot be written,
    /// [`EvmError::Config`] for chain id 0.
    pub fn create(path: impl AsRef<Path>, chain_id: u64) -> Result<Self, EvmError> {
        let backend = Self::at(path);
        let _lock = backend.lock(true)?;
        if backend.path.exists() {
            return Err(backend.io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the chain file already exists",
            )));
        }
        backend.write(&ChainDoc::new(chain_id)?)?;
        Ok(backend)
    }

    /// Opens an existing chain file and checks that it is valid.
    ///
    /// # Errors
    /// [`EvmError::Storage`] if it cannot be read, [`EvmError::BadChainFile`] if it is not
    /// a chain document of a version this crate reads.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EvmError> {
        let backend = Self::at(path);
        let _lock = backend.lock(false)?;
        backend.read()?;
        Ok(backend)
    }

    /// Opens the chain file, creating it for `chain_id` if it does not exist yet.
    ///
    /// # Errors
    /// As [`FileEvmBackend::open`], and [`EvmError::WrongChain`] if an existing file is for
    /// another chain.
    pub fn open_or_create(path: impl AsRef<Path>, chain_id: u64) -> Result<Self, EvmError> {
        let backend = Self::at(path);
        let _lock = backend.lock(true)?;
        let found = if backend.path.exists() {
            backend.read()?.chain_id
        } else {
            backend.write(&ChainDoc::new(chain_id)?)?;
            chain_id
        };
        if found != chain_id {
            return Err(EvmError::WrongChain {
                backend: NAME.into(),
                expected: chain_id,
                found,
            });
        }
        Ok(backend)
    }

    fn at(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// Returns the chain file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credits `wei` to `address` at once (like a genesis allocation: no transaction).
    ///
    /// # Errors
    /// Storage errors; [`EvmError::Unsupported`] if the balance would overflow or
    /// `address` is a token contract (contracts here hold no ether).
    pub async fn fund(&self, address: Address, wei: U256) -> Result<(), EvmError> {
        self.update(move |doc| {
            if doc.tokens.contains_key(&address) {
                return Err(EvmError::Unsupported(format!(
                    "{address} is a token contract on this chain and cannot hold ether"
                )));
            }
            let account = doc.accounts.entry(address).or_default();
            account.balance = account
                .balance
                .checked_add(wei)
                .ok_or_else(|| EvmError::Unsupported("balance overflow".into()))?;
            Ok(())
        })
        .await
    }

    /// Credits `amount` base units of the ERC-20 `token` to `holder` at once, making
    /// `token` a token contract the chain knows if it was not one yet.
    ///
    /// # Errors
    /// Storage errors; [`EvmError::Unsupported`] if the balance would overflow or `token`
    /// is an account that holds ether (contracts here cannot).
    pub async fn fund_erc20(
        &self,
        token: Address,
        holder: Address,
        amount: U256,
    ) -> Result<(), EvmError> {
        self.update(move |doc| {
            if doc.accounts.contains_key(&token) {
                return Err(EvmError::Unsupported(format!(
                    "{token} is an ordinary account on this chain and cannot be a token"
                )));
            }
            let balance = doc
                .tokens
                .entry(token)
                .or_default()
                .balances
                .entry(holder)
                .or_default();
            *balance = balance
                .checked_add(amount)
                .ok_or_else(|| EvmError::Unsupported("token balance overflow".into()))?;
            Ok(())
        })
        .await
    }

    /// Mines `blocks` blocks; every queued transaction executes, in the order it was
    /// accepted, in the first of them. Returns the new block number.
    ///
    /// # Errors
    /// Storage errors; [`EvmError::BadChainFile`] if a queued transaction no longer decodes.
    pub async fn mine(&self, blocks: u64) -> Result<u64, EvmError> {
        self.update(move |doc| {
            if blocks == 0 {
                return Ok(doc.block_number);
            }
            let first = doc.block_number.saturating_add(1);
            let mut state = State {
                accounts: std::mem::take(&mut doc.accounts),
                tokens: std::mem::take(&mut doc.tokens),
            };
            for entry in doc.transactions.iter_mut().filter(|t| t.receipt.is_none()) {
                let outcome = state.execute(entry)?;
                entry.receipt = Some(ReceiptEntry {
                    block_number: first,
                    outcome: outcome.into(),
                    gas_used: entry.gas,
                });
            }
            doc.accounts = state.accounts;
            doc.tokens = state.tokens;
            doc.block_number = doc.block_number.saturating_add(blocks);
            Ok(doc.block_number)
        })
        .await
    }

    /// Sets the base fee and the suggested tip, in wei per gas, for transactions accepted
    /// from now on.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn set_fees(
        &self,
        base_fee_per_gas: u128,
        priority_fee_per_gas: u128,
    ) -> Result<(), EvmError> {
        self.update(move |doc| {
            doc.base_fee_per_gas = base_fee_per_gas;
            doc.priority_fee_per_gas = priority_fee_per_gas;
            Ok(())
        })
        .await
    }

    async fn view<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ChainDoc) -> Result<R, EvmError> + Send + 'static,
    ) -> Result<R, EvmError> {
        self.blocking(move |this| {
            let _lock = this.lock(false)?;
            f(&this.read()?)
        })
        .await
    }

    /// Runs `f` under the exclusive lock and writes the document back only if `f`
    /// succeeds.
    async fn update<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainDoc) -> Result<R, EvmError> + Send + 'static,
    ) -> Result<R, EvmError> {
        self.blocking(move |this| {
            let _lock = this.lock(true)?;
            let mut doc = this.read()?;
            let result = f(&mut doc).map_err(|e| this.with_path(e))?;
            this.write(&doc)?;
            Ok(result)
        })
        .await
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<R, EvmError> + Send + 'static,
    ) -> Result<R, EvmError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| EvmError::Storage {
                path: self.path.clone(),
                source: io::Error::other(e.to_string()),
            })?
    }

    fn with_path(&self, error: EvmError) -> EvmError {
        match error {
            EvmError::BadChainFile { path, reason } if path.as_os_str().is_empty() => {
                EvmError::BadChainFile {
                    path: self.path.clone(),
                    reason,
                }
            }
            other => other,
        }
    }

    fn io_error(&self, source: io::Error) -> EvmError {
        EvmError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    /// Locks `<file>.lock`, not the file itself: the file is replaced by a rename on every
    /// write, and a lock on the replaced inode would protect nothing.
    fn lock(&self, exclusive: bool) -> Result<File, EvmError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock_path = self.path.with_file_name(name);
        let storage = |source| EvmError::Storage {
            path: lock_path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(storage)?;
        // Through the trait: std's inherent `File::lock` is newer than some toolchains.
        if exclusive {
            fs4::FileExt::lock(&file)
        } else {
            fs4::FileExt::lock_shared(&file)
        }
        .map_err(storage)?;
        Ok(file)
    }

    fn read(&self) -> Result<ChainDoc, EvmError> {
        let bytes = fs::read(&self.path).map_err(|e| self.io_error(e))?;
        let bad = |reason: String| EvmError::BadChainFile {
            path: self.path.clone(),
            reason,
        };
        let doc: ChainDoc = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        doc.validate().map_err(bad)?;
        Ok(doc)
    }

    fn write(&self, doc: &ChainDoc) -> Result<(), EvmError> {
        let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| EvmError::BadChainFile {
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
            sync_dir(&self.path)
        })();
        written.map_err(|e| self.io_error(e))
    }
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// What a transaction does on this chain.
enum Effect {
    Ether {
        to: Address,
        value: U256,
    },
    Token {
        token: Address,
        to: Address,
        amount: U256,
    },
}

/// Decides what a call does, or why this chain cannot execute it.
fn classify(
    tokens: &BTreeMap<Address, Token>,
    to: Option<Address>,
    value: U256,
    data: &[u8],
) -> Result<(Effect, u64), String> {
    let Some(to) = to else {
        return Err("contract creation is not supported by the dev chain".into());
    };
    let is_token = tokens.contains_key(&to);
    match Call::decode(data).map_err(|e| e.to_string())? {
        Call::None if !is_token => Ok((Effect::Ether { to, value }, TRANSFER_GAS)),
        Call::None => Err(format!(
            "{to} is a token contract and does not accept ether on the dev chain"
        )),
        Call::Erc20Transfer { recipient, amount } if is_token && value.is_zero() => Ok((
            Effect::Token {
                token: to,
                to: recipient,
                amount,
            },
            DEV_TOKEN_TRANSFER_GAS,
        )),
        Call::Erc20Transfer { .. } if is_token => {
            Err("an ERC-20 transfer that also sends ether is not supported by the dev chain".into())
        }
        Call::Erc20Transfer { .. } => Err(format!(
            "{to} is not a token the dev chain knows (fund_erc20 creates one)"
        )),
        _ => Err(format!(
            "the dev chain executes only ether transfers and ERC-20 transfer calls, not \
             calldata 0x{} to {to}",
            alloy_primitives::hex::encode(data.get(..4).unwrap_or(data))
        )),
    }
}

/// Account and token balances; the file holds the state after the latest block.
struct State {
    accounts: BTreeMap<Address, Account>,
    tokens: BTreeMap<Address, Token>,
}

impl State {
    fn of(doc: &ChainDoc) -> Self {
        Self {
            accounts: doc.accounts.clone(),
            tokens: doc.tokens.clone(),
        }
    }

    /// The state with every queued transaction executed: what the pool checks against.
    fn pending(doc: &ChainDoc) -> Result<Self, EvmError> {
        let mut state = Self::of(doc);
        for entry in doc.transactions.iter().filter(|t| t.receipt.is_none()) {
            state.execute(entry)?;
        }
        Ok(state)
    }

    fn nonce(&self, address: &Address) -> u64 {
        self.accounts.get(address).map_or(0, |a| a.nonce)
    }

    fn balance(&self, address: &Address) -> U256 {
        self.accounts.get(address).map_or(U256::ZERO, |a| a.balance)
    }

    fn token_balance(&self, token: &Address, holder: &Address) -> U256 {
        self.tokens
            .get(token)
            .and_then(|t| t.balances.get(holder))
            .copied()
            .unwrap_or_default()
    }

    /// Executes a transaction the pool accepted. The pool's checks (nonce, balance for the
    /// worst case) make every step below succeed; arithmetic saturates all the same.
    fn execute(&mut self, entry: &TxEntry) -> Result<TxOutcome, EvmError> {
        let signed =
            SignedEthTransaction::decode(&entry.raw).map_err(|e| EvmError::BadChainFile {
                path: PathBuf::new(),
                reason: format!("queued transaction {} does not decode: {e}", entry.hash),
            })?;
        let tx = signed.transaction();
        let (effect, _) =
            classify(&self.tokens, tx.to(), tx.value(), tx.input()).map_err(|reason| {
                EvmError::BadChainFile {
                    path: PathBuf::new(),
                    reason: format!("queued transaction {} cannot execute: {reason}", entry.hash),
                }
            })?;
        let fee = U256::from(entry.gas).saturating_mul(U256::from(entry.effective_gas_price));
        let sender = self.accounts.entry(entry.from).or_default();
        sender.nonce = sender.nonce.saturating_add(1);
        sender.balance = sender.balance.saturating_sub(fee);
        Ok(match effect {
            Effect::Ether { to, value } => {
                let sender = self.accounts.entry(entry.from).or_default();
                sender.balance = sender.balance.saturating_sub(value);
                let recipient = self.accounts.entry(to).or_default();
                recipient.balance = recipient.balance.saturating_add(value);
                TxOutcome::Success
            }
            Effect::Token { token, to, amount } => {
                let balances = &mut self.tokens.entry(token).or_default().balances;
                let held = balances.get(&entry.from).copied().unwrap_or_default();
                if held < amount {
                    TxOutcome::Reverted
                } else {
                    balances.insert(entry.from, held - amount);
                    let recipient = balances.entry(to).or_default();
                    *recipient = recipient.saturating_add(amount);
                    TxOutcome::Success
                }
            }
        })
    }
}

/// Checks a signed transaction as a node's pool would and queues it.
fn accept(doc: &mut ChainDoc, signed: &SignedEthTransaction, raw: &[u8]) -> Result<B256, EvmError> {
    let hash = signed.hash();
    if doc.transactions.iter().any(|t| t.hash == hash) {
        return Ok(hash);
    }
    let reject = |reason: String| EvmError::Rejected {
        backend: NAME.into(),
        hash,
        reason,
    };
    let from = signed
        .recover_sender()
        .map_err(|e| reject(format!("bad signature: {e}")))?;
    let tx = signed.transaction();
    if tx.chain_id() != doc.chain_id {
        return Err(reject(format!(
            "the transaction is for chain id {}, this dev chain is chain id {}",
            tx.chain_id(),
            doc.chain_id
        )));
    }
    let (_, gas) = classify(&doc.tokens, tx.to(), tx.value(), tx.input()).map_err(reject)?;
    let state = State::pending(doc)?;
    let expected = state.nonce(&from);
    if tx.nonce() < expected {
        return Err(reject(format!(
            "nonce too low: account {from} is at nonce {expected}, the transaction has {}",
            tx.nonce()
        )));
    }
    if tx.nonce() > expected {
        return Err(reject(format!(
            "nonce gap: account {from} is at nonce {expected}, the transaction has {} (the dev \
             chain does not queue future nonces)",
            tx.nonce()
        )));
    }
    let max_fee = tx.max_fee_per_gas();
    let base = doc.base_fee_per_gas;
    if max_fee < base {
        return Err(reject(format!(
            "max fee per gas {max_fee} wei is below the base fee {base} wei"
        )));
    }
    if tx.gas_limit() < gas {
        return Err(reject(format!(
            "gas limit {} is below the {gas} gas this transaction uses on the dev chain",
            tx.gas_limit()
        )));
    }
    // A legacy transaction has no tip field: its gas price is both cap and tip.
    let tip = tx.max_priority_fee_per_gas().unwrap_or(max_fee);
    let effective_gas_price = base.saturating_add(tip.min(max_fee - base));
    let worst_case = U256::from(tx.gas_limit())
        .checked_mul(U256::from(max_fee))
        .and_then(|fee| fee.checked_add(tx.value()))
        .ok_or_else(|| reject("value plus gas limit × max fee overflows".into()))?;
    let balance = state.balance(&from);
    if balance < worst_case {
        return Err(reject(format!(
            "insufficient funds: account {from} has {balance} wei, the transaction may cost \
             {worst_case} wei (value + gas limit × max fee)"
        )));
    }
    doc.transactions.push(TxEntry {
        hash,
        from,
        nonce: tx.nonce(),
        gas,
        effective_gas_price,
        receipt: None,
        raw: Bytes::copy_from_slice(raw),
    });
    Ok(hash)
}

#[async_trait::async_trait]
impl EvmBackend for FileEvmBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn chain_id(&self) -> Result<u64, EvmError> {
        self.view(|doc| Ok(doc.chain_id)).await
    }

    async fn block_number(&self) -> Result<u64, EvmError> {
        self.view(|doc| Ok(doc.block_number)).await
    }

    async fn pending_nonce(&self, address: Address) -> Result<u64, EvmError> {
        self.view(move |doc| Ok(State::pending(doc)?.nonce(&address)))
            .await
    }

    async fn latest_nonce(&self, address: Address) -> Result<u64, EvmError> {
        self.view(move |doc| Ok(State::of(doc).nonce(&address)))
            .await
    }

    async fn balance(&self, address: Address) -> Result<U256, EvmError> {
        self.view(move |doc| Ok(State::of(doc).balance(&address)))
            .await
    }

    async fn erc20_balance(&self, token: Address, holder: Address) -> Result<U256, EvmError> {
        self.view(move |doc| {
            if !doc.tokens.contains_key(&token) {
                return Err(EvmError::Unsupported(format!(
                    "{token} is not a token the dev chain knows (fund_erc20 creates one)"
                )));
            }
            Ok(State::of(doc).token_balance(&token, &holder))
        })
        .await
    }

    async fn fees(&self) -> Result<Fees, EvmError> {
        self.view(|doc| {
            Ok(Fees::with_headroom(
                doc.base_fee_per_gas,
                doc.priority_fee_per_gas,
            ))
        })
        .await
    }

    async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &Bytes,
    ) -> Result<u64, EvmError> {
        let data = data.clone();
        self.view(move |doc| {
            let (effect, gas) =
                classify(&doc.tokens, Some(to), value, &data).map_err(EvmError::Unsupported)?;
            let state = State::pending(doc)?;
            let revert = |reason: String| EvmError::Reverted {
                backend: NAME.into(),
                call: "eth_estimateGas",
                reason,
            };
            match effect {
                Effect::Ether { value, .. } if state.balance(&from) < value => {
                    Err(revert(format!(
                        "insufficient funds: {from} has {} wei",
                        state.balance(&from)
                    )))
                }
                Effect::Token { token, amount, .. }
                    if state.token_balance(&token, &from) < amount =>
                {
                    Err(revert(format!(
                        "ERC-20 transfer amount exceeds balance: {from} holds {} of token {token}",
                        state.token_balance(&token, &from)
                    )))
                }
                _ => Ok(gas),
            }
        })
        .await
    }

    async fn send_raw(&self, raw: &[u8]) -> Result<B256, EvmError> {
        let signed = SignedEthTransaction::decode(raw)?;
        let raw = raw.to_vec();
        self.update(move |doc| accept(doc, &signed, &raw)).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<TxReceipt>, EvmError> {
        self.view(move |doc| {
            let Some(entry) = doc.transactions.iter().find(|t| t.hash == hash) else {
                return Ok(None);
            };
            Ok(entry.receipt.as_ref().map(|r| TxReceipt {
                hash,
                block_number: r.block_number,
                outcome: r.outcome.into(),
                gas_used: r.gas_used,
                effective_gas_price: entry.effective_gas_price,
                confirmations: doc
                    .block_number
                    .saturating_sub(r.block_number)
                    .saturating_add(1),
            }))
        })
        .await
    }
}

/// The chain document; field order is the order in the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainDoc {
    format: String,
    version: u32,
    chain_id: u64,
    block_number: u64,
    #[serde(with = "decimal_u128")]
    base_fee_per_gas: u128,
    #[serde(with = "decimal_u128")]
    priority_fee_per_gas: u128,
    accounts: BTreeMap<Address, Account>,
    tokens: BTreeMap<Address, Token>,
    transactions: Vec<TxEntry>,
}

impl ChainDoc {
    fn new(chain_id: u64) -> Result<Self, EvmError> {
        if chain_id == 0 {
            return Err(EvmError::Config {
                reason: "chain id 0 is not a chain (EIP-155 needs a real chain id)".into(),
            });
        }
        Ok(Self {
            format: FORMAT.into(),
            version: VERSION,
            chain_id,
            block_number: 0,
            base_fee_per_gas: GWEI,
            priority_fee_per_gas: GWEI,
            accounts: BTreeMap::new(),
            tokens: BTreeMap::new(),
            transactions: Vec::new(),
        })
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
        if self.chain_id == 0 {
            return Err("chain id 0".into());
        }
        if let Some(both) = self.tokens.keys().find(|t| self.accounts.contains_key(*t)) {
            return Err(format!("{both} is both an account and a token"));
        }
        let mut mined = true;
        for (i, entry) in self.transactions.iter().enumerate() {
            if self.transactions[..i].iter().any(|t| t.hash == entry.hash) {
                return Err(format!("transaction {} is listed twice", entry.hash));
            }
            match &entry.receipt {
                Some(_) if !mined => {
                    return Err(format!(
                        "transaction {} is mined after a queued one",
                        entry.hash
                    ))
                }
                Some(r) if r.block_number > self.block_number || r.block_number == 0 => {
                    return Err(format!(
                        "transaction {} is in block {}, the chain is at {}",
                        entry.hash, r.block_number, self.block_number
                    ))
                }
                Some(_) => {}
                None => mined = false,
            }
            let signed = SignedEthTransaction::decode(&entry.raw)
                .map_err(|e| format!("transaction {} does not decode: {e}", entry.hash))?;
            if signed.hash() != entry.hash {
                return Err(format!(
                    "transaction {} does not hash to its hash",
                    entry.hash
                ));
            }
            if signed.recover_sender().ok() != Some(entry.from) {
                return Err(format!(
                    "transaction {} is not signed by {}",
                    entry.hash, entry.from
                ));
            }
            if signed.transaction().nonce() != entry.nonce {
                return Err(format!("transaction {} has another nonce", entry.hash));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Account {
    nonce: u64,
    #[serde(with = "decimal_u256")]
    balance: U256,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    #[serde(with = "decimal_u256_map")]
    balances: BTreeMap<Address, U256>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxEntry {
    hash: B256,
    from: Address,
    nonce: u64,
    /// Gas the execution uses (fixed per kind of call on this chain).
    gas: u64,
    #[serde(with = "decimal_u128")]
    effective_gas_price: u128,
    /// `None` while queued.
    receipt: Option<ReceiptEntry>,
    raw: Bytes,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptEntry {
    block_number: u64,
    outcome: Outcome,
    gas_used: u64,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Success,
    Reverted,
}

impl From<TxOutcome> for Outcome {
    fn from(o: TxOutcome) -> Self {
        match o {
            TxOutcome::Success => Self::Success,
            TxOutcome::Reverted => Self::Reverted,
        }
    }
}

impl From<Outcome> for TxOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => Self::Success,
            Outcome::Reverted => Self::Reverted,
        }
    }
}

/// Amounts as decimal strings: wei do not fit JSON numbers, and hex is hard to read.
mod decimal_u256 {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub(super) fn parse<E: serde::de::Error>(text: &str) -> Result<U256, E> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom(format!("{text:?} is not a decimal amount")));
        }
        U256::from_str_radix(text, 10).map_err(E::custom)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        parse(&String::deserialize(d)?)
    }
}

mod decimal_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a decimal amount"
            )));
        }
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod decimal_u256_map {
    use std::collections::BTreeMap;

    use alloy_primitives::{Address, U256};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<Address, U256>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(map.len()))?;
        for (address, value) in map {
            out.serialize_entry(address, &value.to_string())?;
        }
        out.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Address, U256>, D::Error> {
        BTreeMap::<Address, String>::deserialize(d)?
            .into_iter()
            .map(|(address, text)| Ok((address, super::decimal_u256::parse(&text)?)))
            .collect()
    }
}
