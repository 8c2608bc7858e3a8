//! EVM chain backends for the CoinPort Custody coordinator: what it needs to know about an
//! Ethereum-compatible chain to build, broadcast and follow withdrawals.
//!
//! The coordinator talks to a chain through an [`EvmBackend`] chosen in its configuration
//! ([`EvmConfig`], [`connect`]):
//!
//! - [`JsonRpcBackend`]: an Ethereum JSON-RPC node (Geth, Erigon, Nethermind, Hardhat, a
//!   provider URL) through `alloy-provider`, over HTTP or HTTPS (rustls).
//! - [`FileEvmBackend`]: a development chain in one JSON file
//!   (`docs/formats/dev-evm-chain.md`) for the quickstart and tests without a node. It
//!   funds accounts ([`FileEvmBackend::fund`], [`FileEvmBackend::fund_erc20`]), executes
//!   ETH transfers and ERC-20 `transfer` calls, and mines ([`FileEvmBackend::mine`]).
//!
//! With the `test-node` feature, the `test_node` module starts a real Hardhat node on 127.0.0.1 for
//! integration tests (`.ci/evm-node.sh` installs it).
//!
//! This crate does network and file I/O by design; it is linked by the coordinator only.
//! The air-gapped signer must never depend on it. Design: `docs/adr/0015-evm-node-backend.md`.
//!
//! # Example
//!
//! ```
//! use custody_evm::{connect, Address, EvmConfig, FileEvmBackend, U256};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("evm-chain.json");
//! let config: EvmConfig = toml::from_str(&format!(
//!     "kind = \"file\"\npath = {path:?}\nchain_id = 31337\nconfirmations = 1\n"
//! ))?;
//! let chain = connect(&config).await?;
//! assert_eq!(chain.chain_id().await?, 31337);
//!
//! // A test deposits to the group's address.
//! let dev = FileEvmBackend::open(&path)?;
//! let group: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse()?;
//! dev.fund(group, U256::from(10u64).pow(U256::from(18u64))).await?;
//! assert_eq!(chain.balance(group).await?, U256::from(1_000_000_000_000_000_000u64));
//! assert_eq!(chain.pending_nonce(group).await?, 0);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod file;
mod node_url;
mod rpc;
#[cfg(feature = "test-node")]
pub mod test_node;

pub use alloy_primitives::{Address, Bytes, B256, U256};
pub use config::{connect, EvmConfig, FileEvmConfig, JsonRpcConfig};
pub use error::EvmError;
pub use file::{FileEvmBackend, DEV_TOKEN_TRANSFER_GAS};
pub use node_url::NodeUrl;
pub use rpc::JsonRpcBackend;

/// Gas of a plain ether transfer.
pub const TRANSFER_GAS: u64 = 21_000;

/// Suggested EIP-1559 fees for a transaction to be sent now, in wei per gas.
///
/// `max_fee_per_gas = 2 × base_fee_per_gas + max_priority_fee_per_gas`: the base fee
/// can rise by at most 12.5 % per block (EIP-1559), so twice the next block's base fee
/// still covers six full blocks in a row, while the sender pays only the base fee actually
/// in force plus the tip. Both [`EvmBackend`]s answer with this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fees {
    /// The next block's base fee.
    pub base_fee_per_gas: u128,
    /// The suggested tip.
    pub max_priority_fee_per_gas: u128,
    /// The suggested fee cap, with the headroom above.
    pub max_fee_per_gas: u128,
}

impl Fees {
    /// Builds the suggestion from the next block's base fee and a tip, with the
    /// documented headroom (saturating at `u128::MAX`).
    pub fn with_headroom(base_fee_per_gas: u128, max_priority_fee_per_gas: u128) -> Self {
        Self {
            base_fee_per_gas,
            max_priority_fee_per_gas,
            max_fee_per_gas: base_fee_per_gas
                .saturating_mul(2)
                .saturating_add(max_priority_fee_per_gas),
        }
    }
}

/// Whether a mined transaction's execution succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Executed; its effects (value, token transfer) are in the chain.
    Success,
    /// Reverted: only the nonce and the gas fee were spent.
    Reverted,
}

/// The receipt of a mined transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxReceipt {
    /// The transaction hash.
    pub hash: B256,
    /// The block that includes it.
    pub block_number: u64,
    /// Success or revert.
    pub outcome: TxOutcome,
    /// Gas the execution used.
    pub gas_used: u64,
    /// Wei per gas the sender paid (base fee plus the tip actually paid).
    pub effective_gas_price: u128,
    /// Blocks on top of and including the including block (1 when it is the latest).
    pub confirmations: u64,
}

/// An EVM chain as the coordinator sees it, chosen by configuration.
///
/// Implementations are cheap to share as `Arc<dyn EvmBackend>`; every call of
/// [`JsonRpcBackend`] is bounded by its configured timeout.
#[async_trait::async_trait]
pub trait EvmBackend: Send + Sync {
    /// Returns a short name for logs: `"file"` or `"json-rpc"`.
    fn name(&self) -> &'static str;

    /// Returns the chain id the backend serves (`eth_chainId`).
    ///
    /// # Errors
    /// Transport and response errors.
    async fn chain_id(&self) -> Result<u64, EvmError>;

    /// Returns the number of the latest block (`eth_blockNumber`).
    ///
    /// # Errors
    /// Transport and response errors.
    async fn block_number(&self) -> Result<u64, EvmError>;

    /// Returns the next nonce of `address` counting transactions waiting in the pool
    /// (`eth_getTransactionCount(address, "pending")`): the nonce for a new transaction.
    ///
    /// # Errors
    /// Transport and response errors.
    async fn pending_nonce(&self, address: Address) -> Result<u64, EvmError>;

    /// Returns the nonce of `address` counting only mined transactions (`"latest"`); a
    /// transaction with a lower nonce is final or replaced.
    ///
    /// # Errors
    /// Transport and response errors.
    async fn latest_nonce(&self, address: Address) -> Result<u64, EvmError>;

    /// Returns the ether balance of `address` at the latest block, in wei.
    ///
    /// # Errors
    /// Transport and response errors.
    async fn balance(&self, address: Address) -> Result<U256, EvmError>;

    /// Returns `holder`'s balance of the ERC-20 `token` at the latest block, in the
    /// token's base units (`balanceOf(holder)` through `eth_call`).
    ///
    /// # Errors
    /// [`EvmError::BadResponse`] when `token` answers nothing a token would (no contract
    /// there), [`EvmError::Unsupported`] for a token the development chain does not know.
    async fn erc20_balance(&self, token: Address, holder: Address) -> Result<U256, EvmError>;

    /// Suggests EIP-1559 fees for a transaction sent now (see [`Fees`] for the headroom).
    ///
    /// # Errors
    /// Transport and response errors.
    async fn fees(&self) -> Result<Fees, EvmError>;

    /// Estimates the gas a call from `from` to `to` with `value` and calldata `data` uses.
    ///
    /// # Errors
    /// [`EvmError::Node`] when the node says the call would revert;
    /// [`EvmError::Unsupported`] for a call the development chain does not execute.
    async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &Bytes,
    ) -> Result<u64, EvmError>;

    /// Submits a signed transaction (EIP-2718 bytes, as `SignedEthTransaction::encoded`
    /// gives them) and returns its hash.
    ///
    /// The transaction is decoded and its chain id checked against the backend's before
    /// anything is sent. Idempotent: sending a transaction the backend already has (in its
    /// pool or mined) returns `Ok(hash)`, whatever the node says about it ("already
    /// known", "nonce too low").
    ///
    /// # Errors
    /// [`EvmError::BadTransaction`] for bytes that are not a signed transaction,
    /// [`EvmError::Rejected`] with the reason when the backend refuses it (wrong chain,
    /// stale or future nonce, insufficient funds, fee below the base fee); sending it again
    /// will not help.
    async fn send_raw(&self, raw: &[u8]) -> Result<B256, EvmError>;

    /// Returns the receipt of a mined transaction, `None` while it is pending or unknown.
    ///
    /// # Errors
    /// Transport and response errors.
    async fn receipt(&self, hash: B256) -> Result<Option<TxReceipt>, EvmError>;
}
