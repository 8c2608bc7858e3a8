//! Backend selection from the coordinator's configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{EvmBackend, EvmError, FileEvmBackend, JsonRpcBackend, NodeUrl};

const DEFAULT_TIMEOUT_SECS: u64 = 30;

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_confirmations() -> u64 {
    1
}

/// Which EVM backend the coordinator uses, as written in its TOML configuration.
///
/// ```toml
/// [ethereum]
/// kind = "json-rpc"
/// url = "http://127.0.0.1:8545"
/// chain_id = 1
/// confirmations = 12
/// timeout_secs = 30
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EvmConfig {
    /// The development chain file ([`FileEvmBackend`]).
    File(FileEvmConfig),
    /// An Ethereum JSON-RPC node ([`JsonRpcBackend`]).
    JsonRpc(JsonRpcConfig),
}

impl EvmConfig {
    /// The chain id the backend must serve.
    pub fn chain_id(&self) -> u64 {
        match self {
            Self::File(c) => c.chain_id,
            Self::JsonRpc(c) => c.chain_id,
        }
    }

    /// Confirmations a withdrawal needs before the coordinator calls it confirmed.
    pub fn confirmations(&self) -> u64 {
        match self {
            Self::File(c) => c.confirmations,
            Self::JsonRpc(c) => c.confirmations,
        }
    }
}

/// Settings of the development chain file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEvmConfig {
    /// The chain file; created if missing.
    pub path: PathBuf,
    /// The chain id; an existing file for another chain is refused.
    pub chain_id: u64,
    /// Confirmations required (default 1).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

/// Settings of a JSON-RPC node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonRpcConfig {
    /// The node's `http://` or `https://` URL. Logged and shown by its origin only, since
    /// providers put API keys in URLs.
    pub url: NodeUrl,
    /// The chain id the node must report (`eth_chainId`); [`connect`] refuses another.
    pub chain_id: u64,
    /// Confirmations required (default 1).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Bound on each call, in seconds (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

pub(crate) fn timeout(secs: u64) -> Result<Duration, EvmError> {
    if secs == 0 || secs > 3600 {
        return Err(EvmError::Config {
            reason: format!("timeout_secs must be between 1 and 3600, not {secs}"),
        });
    }
    Ok(Duration::from_secs(secs))
}

/// Builds the backend `config` names and checks that it serves the configured chain.
///
/// The JSON-RPC backend asks the node for `eth_chainId` once; the file backend opens (or
/// creates) its file.
///
/// # Errors
/// [`EvmError::Config`] for unusable settings (chain id 0, no confirmations, a bad
/// timeout), [`EvmError::WrongChain`] when the backend serves another chain, and the
/// transport or file errors of the first call.
pub async fn connect(config: &EvmConfig) -> Result<Arc<dyn EvmBackend>, EvmError> {
    if config.chain_id() == 0 {
        return Err(EvmError::Config {
            reason: "chain_id 0 is not a chain (EIP-155 needs a real chain id)".into(),
        });
    }
    if config.confirmations() == 0 {
        return Err(EvmError::Config {
            reason: "confirmations must be at least 1".into(),
        });
    }
    let backend: Arc<dyn EvmBackend> = match config {
        EvmConfig::File(file) => {
            Arc::new(FileEvmBackend::open_or_create(&file.path, file.chain_id)?)
        }
        EvmConfig::JsonRpc(node) => Arc::new(JsonRpcBackend::new(
            node.url.clone(),
            timeout(node.timeout_secs)?,
        )?),
    };
    let found = backend.chain_id().await?;
    if found != config.chain_id() {
        return Err(EvmError::WrongChain {
            backend: match config {
                EvmConfig::File(_) => "file".into(),
                EvmConfig::JsonRpc(node) => node.url.origin(),
            },
            expected: config.chain_id(),
            found,
        });
    }
    Ok(backend)
}
