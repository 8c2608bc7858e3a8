//! Ethereum for CoinPort Custody: the transactions a threshold-ECDSA signer signs, what it
//! shows a human before signing, how a transaction maps to the withdrawal policy, and the
//! EIP-4527 QR types that carry requests and signatures across the air gap.
//!
//! - [`EthTransaction`]: EIP-1559 (type 2) and EIP-155 legacy transactions on
//!   `alloy-consensus`; built by the coordinator ([`EthTransaction::eip1559`]) or decoded
//!   by the signer from the bytes it is asked to sign
//!   ([`EthTransaction::decode_unsigned`]). The hash to sign
//!   ([`EthTransaction::signing_hash`]) is always computed from the transaction; no API
//!   takes a hash from outside.
//! - [`SignedEthTransaction`]: a signature attached ([`EthTransaction::with_signature`],
//!   [`EthTransaction::with_signature_for_sender`]) normalised to low s, the raw
//!   EIP-2718 bytes for `eth_sendRawTransaction`, sender recovery with alloy.
//! - [`Summary`]: chain, nonce, recipient, value in ETH, fees in gwei, worst-case cost,
//!   and ERC-20 `transfer`/`approve` decoded from calldata ([`calldata`], with
//!   `alloy-sol-types`); `Display` for the terminal and [`Summary::to_json`].
//! - [`EthTransaction::policy_withdrawal`]: the policy's [`custody_policy::Withdrawal`]
//!   (`ETH`, or `ERC20:0x<token>` for token transfers); anything else needs an explicit
//!   rule and is refused here. A signer, which knows its wallet's address, uses
//!   [`EthTransaction::policy_withdrawal_from`] and [`EthTransaction::summary_from`]: a
//!   plain transfer to the wallet itself is an internal transfer (no payments; it voids
//!   another transaction with the same nonce).
//! - [`eip4527`]: `eth-sign-request` and `eth-signature` (CBOR in BC-UR).
//! - [`fuzzing`]: entry points for the fuzz harness.
//!
//! The crate does no I/O and never prints.
//!
//! Specifications: EIP-155, EIP-1559, EIP-2718, EIP-2 (low s), EIP-55, ERC-20, EIP-4527,
//! BCR-2020-005 (UR), BCR-2020-006 (crypto-keypath).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod calldata;
pub mod eip4527;
pub mod fees;
pub mod fuzzing;
pub mod summary;
pub mod tx;
pub mod units;

pub use alloy_primitives::{Address, Bytes, B256, U256};
pub use calldata::{Call, CalldataError};
pub use eip4527::{
    DataType, Eip4527Error, EthSignRequest, EthSignature, KeyPath, PathComponent, RequestError,
};
pub use fees::{FeeLimitError, FeeLimits};
pub use summary::{chain_name, erc20_asset, Action, PolicyMappingError, Summary, SummaryError};
pub use tx::{
    DecodeTxError, Eip1559Fields, EthTransaction, InvalidTxError, LegacyFields, SignatureError,
    SignedEthTransaction, TamperedError, TxType,
};
