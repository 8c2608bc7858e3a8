//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::B256;

/// Why an EVM backend call failed.
///
/// One enum for every call, as in `custody-chain`: the coordinator's decision is the same
/// whichever call failed — retry later ([`EvmError::is_retryable`]), give up on this
/// transaction ([`EvmError::Rejected`]), or fix the setup ([`EvmError::Config`],
/// [`EvmError::WrongChain`]).
///
/// Messages name the node by its origin only (`scheme://host:port`): user information,
/// paths and query strings of node URLs, where providers put API keys, never appear.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvmError {
    /// The node could not be reached, or answered that it is overloaded or unavailable
    /// (connection refused or reset, HTTP 429 or 5xx). Worth retrying.
    #[error("{call} to {node} failed: node unreachable: {reason}")]
    Unreachable {
        /// The JSON-RPC method, e.g. `eth_getBalance`.
        call: &'static str,
        /// The node's origin.
        node: String,
        /// What the transport reported.
        reason: String,
    },
    /// The node did not answer in time. Worth retrying.
    #[error("{call} to {node} did not answer within {after:?}")]
    Timeout {
        /// The JSON-RPC method.
        call: &'static str,
        /// The node's origin.
        node: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The node answered the call with a JSON-RPC error (other than a refused
    /// transaction), e.g. `execution reverted` from `eth_estimateGas`.
    #[error("{call} to {node} failed: {message} (JSON-RPC error {code})")]
    Node {
        /// The JSON-RPC method.
        call: &'static str,
        /// The node's origin.
        node: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The backend refused the transaction; sending it again will not help.
    #[error("{backend} refused transaction {hash}: {reason}")]
    Rejected {
        /// `file` or the node's origin.
        backend: String,
        /// The transaction hash (keccak256 of the raw transaction).
        hash: B256,
        /// Why, in the node's words where a node said it (`nonce too low`, `insufficient
        /// funds for gas * price + value`, ...).
        reason: String,
    },
    /// The bytes given to `send_raw` are not a signed transaction this crate accepts.
    #[error("not a signed EIP-1559 or EIP-155 transaction: {0}")]
    BadTransaction(#[from] custody_ethereum::DecodeTxError),
    /// The node answered something this crate cannot use.
    #[error("{call} to {node}: unusable answer: {reason}")]
    BadResponse {
        /// The JSON-RPC method.
        call: &'static str,
        /// The node's origin.
        node: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The call would revert (`eth_estimateGas` and `eth_call` answer `execution
    /// reverted`; the development chain says why, e.g. an insufficient token balance).
    #[error("{backend}: {call} would revert: {reason}")]
    Reverted {
        /// `file` or the node's origin.
        backend: String,
        /// The JSON-RPC method.
        call: &'static str,
        /// The node's message.
        reason: String,
    },
    /// The development chain cannot do what was asked (a call it does not execute, a token
    /// it does not know).
    #[error("dev chain: {0}")]
    Unsupported(String),
    /// The backend serves another chain than the configuration names.
    #[error("{backend} serves chain id {found}, the configuration says {expected}")]
    WrongChain {
        /// `file` or the node's origin.
        backend: String,
        /// The configured chain id.
        expected: u64,
        /// The backend's chain id.
        found: u64,
    },
    /// The development chain file or its lock could not be read or written.
    #[error("cannot use dev EVM chain file {path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The development chain file is not a valid chain document.
    #[error("dev EVM chain file {path} is invalid: {reason}")]
    BadChainFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration cannot be used.
    #[error("EVM configuration: {reason}")]
    Config {
        /// What to fix.
        reason: String,
    },
}

impl EvmError {
    /// Returns whether the same call may succeed later (the node was unreachable or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }
}

/// Cuts a server-supplied message to a length fit for logs, on a character boundary.
pub(crate) fn truncate_reason(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
