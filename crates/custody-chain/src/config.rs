//! Backend selection from the coordinator's configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::Network;
use serde::{Deserialize, Serialize};

use crate::{BitcoindBackend, ChainBackend, ChainError, EsploraBackend, FileBackend};

const DEFAULT_TIMEOUT_SECS: u64 = 30;

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// Which chain backend the coordinator uses, as written in its TOML configuration.
///
/// ```toml
/// [chain]
/// kind = "bitcoind"
/// url = "http://127.0.0.1:8332"
/// wallet = "custody-watch"
/// cookie_file = "/var/lib/bitcoind/.cookie"
/// timeout_secs = 30
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChainConfig {
    /// The development chain file ([`FileBackend`]).
    File(FileConfig),
    /// An Esplora REST server ([`EsploraBackend`]).
    Esplora(EsploraConfig),
    /// Bitcoin Core JSON-RPC ([`BitcoindBackend`]).
    Bitcoind(BitcoindConfig),
}

/// Settings of the development chain file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The chain file; created if missing.
    pub path: PathBuf,
    /// The network the file is for (`regtest`, `signet`, `testnet`, `testnet4`, `bitcoin`);
    /// an existing file for another network is refused.
    pub network: Network,
}

/// Settings of an Esplora server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsploraConfig {
    /// Base URL of the API, e.g. `https://blockstream.info/testnet/api`; no credentials.
    pub url: String,
    /// Bound on each request, in seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// Settings of a Bitcoin Core node.
///
/// Exactly one of `cookie_file` or `user` + `password_file` is given; a password is never
/// written into the configuration itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitcoindConfig {
    /// RPC URL, e.g. `http://127.0.0.1:8332`; no credentials.
    pub url: String,
    /// The loaded watch-only descriptor wallet holding the custody descriptor.
    pub wallet: String,
    /// The node's `.cookie` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_file: Option<PathBuf>,
    /// RPC user name (with `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file whose first line is the RPC password (with `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Bound on each call, in seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl BitcoindConfig {
    /// Returns where the credentials come from.
    ///
    /// # Errors
    /// [`ChainError::Config`] unless exactly one of `cookie_file` or `user` +
    /// `password_file` is set.
    pub fn auth(&self) -> Result<BitcoindAuth, ChainError> {
        match (&self.cookie_file, &self.user, &self.password_file) {
            (Some(cookie_file), None, None) => Ok(BitcoindAuth::CookieFile {
                cookie_file: cookie_file.clone(),
            }),
            (None, Some(user), Some(password_file)) => Ok(BitcoindAuth::PasswordFile {
                user: user.clone(),
                password_file: password_file.clone(),
            }),
            _ => Err(ChainError::Config {
                reason: "bitcoind needs either cookie_file, or user and password_file".into(),
            }),
        }
    }
}

/// Where [`BitcoindBackend`] reads its RPC credentials from. Holds paths, never secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BitcoindAuth {
    /// The node's cookie file (`user:password` on one line), re-read when the node restarts.
    CookieFile {
        /// Path of the `.cookie` file.
        cookie_file: PathBuf,
    },
    /// A user name and a file whose first line is the password.
    PasswordFile {
        /// RPC user name.
        user: String,
        /// Path of the password file.
        password_file: PathBuf,
    },
}

fn timeout(secs: u64) -> Result<Duration, ChainError> {
    if secs == 0 || secs > 3600 {
        return Err(ChainError::Config {
            reason: format!("timeout_secs must be between 1 and 3600, not {secs}"),
        });
    }
    Ok(Duration::from_secs(secs))
}

/// Builds the backend `config` names.
///
/// Nothing is sent over the network here; the file backend opens (or creates) its file.
///
/// # Errors
/// [`ChainError::Config`] for unusable settings, and the file backend's open errors.
pub fn connect(config: &ChainConfig) -> Result<Arc<dyn ChainBackend>, ChainError> {
    Ok(match config {
        ChainConfig::File(file) => Arc::new(FileBackend::open_or_create(&file.path, file.network)?),
        ChainConfig::Esplora(esplora) => Arc::new(EsploraBackend::new(
            &esplora.url,
            timeout(esplora.timeout_secs)?,
        )?),
        ChainConfig::Bitcoind(node) => Arc::new(BitcoindBackend::new(
            &node.url,
            &node.wallet,
            node.auth()?,
            timeout(node.timeout_secs)?,
        )?),
    })
}
