//! Bitcoin chain backends for the CoinPort Custody coordinator.
//!
//! The coordinator tracks the wallet's unspent outputs and broadcasts finished transactions
//! through a [`ChainBackend`] chosen in its configuration ([`ChainConfig`]):
//!
//! - [`FileBackend`]: a development and test chain kept in one JSON file
//!   (`docs/formats/dev-chain.md`). It has no network; deposits are made with
//!   [`FileBackend::fund`] and blocks with [`FileBackend::mine`].
//! - [`EsploraBackend`]: an Esplora REST server (Blockstream's electrs, mempool.space),
//!   through BDK's `esplora-client`.
//! - [`BitcoindBackend`]: Bitcoin Core's JSON-RPC interface with a watch-only descriptor
//!   wallet holding the custody descriptor.
//!
//! This crate does network and file I/O by design; it is linked by the coordinator only.
//! The air-gapped signer must never depend on it.
//!
//! # Example
//!
//! ```
//! use bitcoin::{Amount, ScriptBuf};
//! use custody_chain::{connect, ChainConfig, FileBackend, TxStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("chain.json");
//! // The coordinator reads this from its TOML configuration.
//! let config: ChainConfig = toml::from_str(&format!(
//!     "kind = \"file\"\npath = {:?}\nnetwork = \"regtest\"\n",
//!     path
//! ))?;
//! let chain = connect(&config)?;
//! assert_eq!(chain.name(), "file");
//!
//! // A test deposits to a wallet script and mines a block.
//! let dev = FileBackend::open(&path)?;
//! let script = ScriptBuf::from_hex(
//!     "512050929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0",
//! )?;
//! let outpoint = dev.fund(&script, Amount::from_sat(100_000)).await?;
//! dev.mine(1).await?;
//!
//! let utxos = chain.utxos(&[script]).await?;
//! assert_eq!(utxos[0].outpoint, outpoint);
//! assert!(matches!(
//!     chain.tx_status(&outpoint.txid).await?,
//!     TxStatus::Confirmed { confirmations: 1, .. }
//! ));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bitcoind;
mod config;
mod error;
mod esplora;
mod file;
mod http;

use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};

pub use bitcoind::BitcoindBackend;
pub use config::{connect, BitcoindAuth, BitcoindConfig, ChainConfig, EsploraConfig, FileConfig};
pub use error::ChainError;
pub use esplora::EsploraBackend;
pub use file::FileBackend;

/// An unspent transaction output paying one of the wallet's scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utxo {
    /// The output's transaction id and index.
    pub outpoint: OutPoint,
    /// The output's value.
    pub value: Amount,
    /// The script the output pays.
    pub script_pubkey: ScriptBuf,
    /// Height of the block that confirmed the output, `None` while it is in the mempool.
    pub height: Option<u32>,
}

impl Utxo {
    /// Returns the number of confirmations at tip height `tip` (0 while unconfirmed).
    pub fn confirmations(&self, tip: u32) -> u32 {
        match self.height {
            Some(height) if tip >= height => tip - height + 1,
            _ => 0,
        }
    }
}

/// Confirmation status of a transaction as a backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// The backend knows nothing of the transaction (never seen, evicted or conflicted out).
    Unknown,
    /// The transaction waits in the mempool.
    InMempool,
    /// The transaction is in the best chain.
    Confirmed {
        /// Height of the block that contains it.
        height: u32,
        /// Blocks on top of and including that block (1 when it is the tip).
        confirmations: u32,
    },
}

/// A source of chain data and a way to broadcast, chosen by the coordinator's configuration.
///
/// Implementations are cheap to share as `Arc<dyn ChainBackend>`; every call is bounded by
/// the backend's configured timeout.
#[async_trait::async_trait]
pub trait ChainBackend: Send + Sync {
    /// Returns the unspent outputs paying any of `scripts`, confirmed or in the mempool.
    ///
    /// # Errors
    /// [`ChainError::Unreachable`] and [`ChainError::Timeout`] are worth retrying; other
    /// errors are not.
    async fn utxos(&self, scripts: &[ScriptBuf]) -> Result<Vec<Utxo>, ChainError>;

    /// Submits a fully signed transaction and returns its txid.
    ///
    /// Idempotent: broadcasting a transaction the backend already has in its mempool or
    /// chain returns `Ok(txid)`.
    ///
    /// # Errors
    /// [`ChainError::Rejected`] with the node's reason when the transaction is invalid,
    /// conflicts with another spend or misses inputs; retrying it will not help.
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError>;

    /// Returns the confirmation status of `txid`.
    ///
    /// # Errors
    /// Transport and response errors; an unknown transaction is `Ok(TxStatus::Unknown)`.
    async fn tx_status(&self, txid: &Txid) -> Result<TxStatus, ChainError>;

    /// Returns the height of the best chain's tip.
    ///
    /// # Errors
    /// Transport and response errors.
    async fn tip_height(&self) -> Result<u32, ChainError>;

    /// Returns a fee-rate estimate for confirmation within `target_blocks` blocks.
    ///
    /// # Errors
    /// [`ChainError::NotFound`] when the backend has no estimate for that target.
    async fn fee_rate(&self, target_blocks: u16) -> Result<FeeRate, ChainError>;

    /// Returns a short name for logs: `"file"`, `"esplora"` or `"bitcoind"`.
    fn name(&self) -> &'static str;
}

/// Converts a sat/vB estimate to a [`FeeRate`], rounding up to the next sat/kwu so the
/// rate never drops below what was estimated.
pub(crate) fn fee_rate_from_sat_per_vb(
    backend: &'static str,
    sat_per_vb: f64,
) -> Result<FeeRate, ChainError> {
    if !(0.0..=1_000_000.0).contains(&sat_per_vb) {
        return Err(ChainError::BadResponse {
            backend,
            reason: format!("fee rate {sat_per_vb} sat/vB is out of range"),
        });
    }
    // 1 vB = 4 wu, so sat/vB × 250 = sat/kwu; the range check above keeps the cast exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let sat_per_kwu = (sat_per_vb * 250.0).ceil() as u64;
    Ok(FeeRate::from_sat_per_kwu(sat_per_kwu))
}
