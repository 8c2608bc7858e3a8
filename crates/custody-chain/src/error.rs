//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use bitcoin::{Network, Txid};

/// Why a chain backend call failed.
///
/// Messages never carry credentials: URLs with user information are refused at
/// configuration time and passwords are read from files the messages do not quote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The backend could not be reached or answered that it is overloaded or unavailable
    /// (connection refused, reset, HTTP 429 or 5xx). Worth retrying.
    #[error("{backend} backend unreachable: {reason}")]
    Unreachable {
        /// Backend name.
        backend: &'static str,
        /// What the transport reported.
        reason: String,
    },
    /// The backend did not answer in time. Worth retrying.
    #[error("{backend} backend did not answer within {after:?}")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// The node refused the transaction; sending it again will not help.
    #[error("{backend} backend rejected transaction {txid}: {reason}")]
    Rejected {
        /// Backend name.
        backend: &'static str,
        /// The refused transaction.
        txid: Txid,
        /// The node's reason, e.g. `bad-txns-inputs-missingorspent`.
        reason: String,
    },
    /// The backend answered something this crate cannot use.
    #[error("{backend} backend sent a bad response: {reason}")]
    BadResponse {
        /// Backend name.
        backend: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The backend does not have what was asked for (e.g. no fee estimate for a target).
    #[error("{backend} backend has no {what}")]
    NotFound {
        /// Backend name.
        backend: &'static str,
        /// What is missing.
        what: String,
    },
    /// The development chain file or its lock could not be read or written.
    #[error("cannot use dev chain file {path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The development chain file is not a valid chain document.
    #[error("dev chain file {path} is invalid: {reason}")]
    BadChainFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend serves another network than the configuration names.
    #[error("{backend} backend is on {found}, the configuration says {expected}")]
    WrongNetwork {
        /// Backend name.
        backend: &'static str,
        /// The configured network.
        expected: Network,
        /// The backend's network.
        found: Network,
    },
    /// The configuration cannot be used (bad URL, unreadable credentials file, refused
    /// credentials).
    #[error("chain configuration: {reason}")]
    Config {
        /// What to fix.
        reason: String,
    },
}

impl ChainError {
    /// Returns whether the same call may succeed later (the backend was unreachable or slow).
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
