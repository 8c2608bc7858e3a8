//! The fees a signer pays at most, whatever the coordinator asks.
//!
//! An Ethereum withdrawal's decision and approvals bind its intent (chain, recipient,
//! value, calldata); the coordinator picks the nonce and the fees when it asks for
//! signatures (docs/formats/ethereum.md). A signer shows the fees, and before it signs it
//! checks them against [`FeeLimits`]: the price per gas and the most the fee can come to
//! (gas limit × price), so that a coordinator that is wrong or compromised cannot spend
//! the wallet's ether on fees.

use alloy_primitives::U256;

use crate::tx::EthTransaction;
use crate::units::{format_eth, format_gwei};

/// Wei in one gwei.
const GWEI: u128 = 1_000_000_000;

/// Limits on what one transaction may pay in fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeLimits {
    /// The most wei per gas (EIP-1559 `max_fee_per_gas`, legacy `gas_price`).
    pub max_fee_per_gas: u128,
    /// The most wei the fee may come to: gas limit × fee per gas.
    pub max_fee: u128,
}

impl Default for FeeLimits {
    /// 1 000 gwei per gas (twice the coordinator's default cap) and 0.1 ether in all
    /// (a token transfer of 100 000 gas at that price).
    fn default() -> Self {
        FeeLimits {
            max_fee_per_gas: 1_000 * GWEI,
            max_fee: 100_000_000 * GWEI,
        }
    }
}

/// A transaction's fees above [`FeeLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeLimitError {
    /// The price per gas is above the limit.
    #[error("the fee per gas of {fee} gwei is above the limit of {limit} gwei")]
    FeePerGas {
        /// The transaction's price per gas, in gwei.
        fee: String,
        /// The limit, in gwei.
        limit: String,
    },
    /// Gas limit × price is above the limit.
    #[error("the fee can come to {fee} ETH (gas limit {gas} × fee per gas), above the limit of {limit} ETH")]
    Total {
        /// The most the fee can come to, in ether.
        fee: String,
        /// The transaction's gas limit.
        gas: u64,
        /// The limit, in ether.
        limit: String,
    },
}

impl FeeLimits {
    /// Checks `tx`'s fees: the price per gas first, then the most the fee can come to.
    ///
    /// # Errors
    /// [`FeeLimitError`] naming the fee and the limit it exceeds.
    pub fn check(&self, tx: &EthTransaction) -> Result<(), FeeLimitError> {
        let per_gas = tx.max_fee_per_gas();
        if per_gas > self.max_fee_per_gas {
            return Err(FeeLimitError::FeePerGas {
                fee: format_gwei(per_gas),
                limit: format_gwei(self.max_fee_per_gas),
            });
        }
        // In 256 bits: a u64 gas limit times a u128 price cannot overflow them.
        let total = U256::from(tx.gas_limit()).saturating_mul(U256::from(per_gas));
        if total > U256::from(self.max_fee) {
            return Err(FeeLimitError::Total {
                fee: format_eth(total),
                gas: tx.gas_limit(),
                limit: format_eth(U256::from(self.max_fee)),
            });
        }
        Ok(())
    }
}
