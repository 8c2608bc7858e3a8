//! An Ethereum JSON-RPC node through `alloy-provider`.

use std::future::{Future, IntoFuture};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_types_eth::{BlockNumberOrTag, TransactionInput, TransactionRequest};
use alloy_sol_types::{sol, SolCall};
use alloy_transport::{RpcError, TransportErrorKind};
use custody_ethereum::SignedEthTransaction;

use crate::error::truncate_reason;
use crate::{EvmBackend, EvmError, Fees, NodeUrl, TxOutcome, TxReceipt};

sol! {
    /// ERC-20 `balanceOf`.
    function balanceOf(address holder) external view returns (uint256);
}

/// Phrases with which nodes refuse a transaction they already have (Geth: `already
/// known`; Nethermind: `AlreadyKnown`; Hardhat: `Known transaction`; Parity/OpenEthereum:
/// `already imported`). Matched case-insensitively.
const ALREADY_KNOWN: [&str; 4] = [
    "already known",
    "alreadyknown",
    "known transaction",
    "already imported",
];

/// An Ethereum JSON-RPC node (Geth, Erigon, Nethermind, Hardhat, a provider's URL).
///
/// Every call is bounded by the timeout given to [`JsonRpcBackend::new`]; errors name the
/// call and the node's origin, never the node's full URL. HTTPS uses rustls with the
/// *ring* provider and the platform's certificate verifier.
#[derive(Clone)]
pub struct JsonRpcBackend {
    url: NodeUrl,
    node: String,
    timeout: Duration,
    provider: RootProvider,
    chain_id: Arc<OnceLock<u64>>,
}

impl std::fmt::Debug for JsonRpcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonRpcBackend")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl JsonRpcBackend {
    /// Builds a client for the node at `url`. Nothing is sent yet.
    ///
    /// # Errors
    /// [`EvmError::Config`] when the HTTP client cannot be built (no usable TLS
    /// configuration).
    pub fn new(url: NodeUrl, timeout: Duration) -> Result<Self, EvmError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| EvmError::Config {
            reason: format!("TLS setup: {e}"),
        })?;
        let tls = rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(tls)
            .map_err(|e| EvmError::Config {
                reason: format!("TLS certificate verifier: {e}"),
            })?
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| EvmError::Config {
                reason: format!("HTTP client: {}", e.without_url()),
            })?;
        let client = alloy_rpc_client::ClientBuilder::default()
            .http_with_client(http, url.expose_secret().clone());
        Ok(Self {
            node: url.origin(),
            url,
            timeout,
            provider: RootProvider::new(client),
            chain_id: Arc::new(OnceLock::new()),
        })
    }

    /// The node's URL (shown by its origin).
    pub fn url(&self) -> &NodeUrl {
        &self.url
    }

    /// The alloy provider, for calls this trait does not cover (tests use it for
    /// `eth_sendTransaction` from a development node's unlocked accounts).
    ///
    /// # Security
    /// The provider holds the full node URL; do not log it (`Debug` may show the URL).
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// Runs one JSON-RPC call under the timeout and maps its error.
    pub(crate) async fn run<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<T, EvmError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(EvmError::Timeout {
                call,
                node: self.node.clone(),
                after: self.timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.map_error(call, e)),
        }
    }

    fn map_error(&self, call: &'static str, error: RpcError<TransportErrorKind>) -> EvmError {
        let node = self.node.clone();
        match error {
            RpcError::ErrorResp(payload) => EvmError::Node {
                call,
                node,
                code: payload.code,
                message: self.scrub(&payload.message),
            },
            RpcError::Transport(TransportErrorKind::HttpError(http))
                if http.status == 429 || http.status >= 500 =>
            {
                EvmError::Unreachable {
                    call,
                    node,
                    reason: format!("HTTP status {}", http.status),
                }
            }
            RpcError::Transport(TransportErrorKind::HttpError(http)) => EvmError::BadResponse {
                call,
                node,
                reason: format!(
                    "HTTP status {}: {}",
                    http.status,
                    self.scrub(&truncate_reason(&http.body))
                ),
            },
            RpcError::Transport(kind) => EvmError::Unreachable {
                call,
                node,
                reason: self.scrub(&error_chain(&kind)),
            },
            RpcError::NullResp => EvmError::BadResponse {
                call,
                node,
                reason: "null result where a value was expected".into(),
            },
            RpcError::DeserError { err, .. } => EvmError::BadResponse {
                call,
                node,
                reason: format!("result does not parse: {err}"),
            },
            other => EvmError::BadResponse {
                call,
                node,
                reason: self.scrub(&other.to_string()),
            },
        }
    }

    /// Removes the node URL's secret parts from a transport message (reqwest quotes the
    /// full URL in its errors).
    fn scrub(&self, text: &str) -> String {
        let url = self.url.expose_secret();
        let mut out = text.replace(url.as_str(), &self.node);
        let secrets = [
            Some(url.username()),
            url.password(),
            url.query(),
            Some(url.path()).filter(|p| p.len() > 1),
        ];
        for secret in secrets.into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(secret, "<redacted>");
            }
        }
        truncate_reason(&out)
    }

    /// Whether the node has the transaction `hash`, pending or mined.
    async fn knows(&self, hash: B256) -> Result<bool, EvmError> {
        let found: Option<serde_json::Value> = self
            .run(
                "eth_getTransactionByHash",
                self.provider
                    .raw_request("eth_getTransactionByHash".into(), (hash,)),
            )
            .await?;
        Ok(found.is_some_and(|v| !v.is_null()))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

#[async_trait::async_trait]
impl EvmBackend for JsonRpcBackend {
    fn name(&self) -> &'static str {
        "json-rpc"
    }

    async fn chain_id(&self) -> Result<u64, EvmError> {
        if let Some(id) = self.chain_id.get() {
            return Ok(*id);
        }
        let id = self
            .run("eth_chainId", self.provider.get_chain_id().into_future())
            .await?;
        Ok(*self.chain_id.get_or_init(|| id))
    }

    async fn block_number(&self) -> Result<u64, EvmError> {
        self.run(
            "eth_blockNumber",
            self.provider.get_block_number().into_future(),
        )
        .await
    }

    async fn pending_nonce(&self, address: Address) -> Result<u64, EvmError> {
        self.run(
            "eth_getTransactionCount",
            self.provider
                .get_transaction_count(address)
                .pending()
                .into_future(),
        )
        .await
    }

    async fn latest_nonce(&self, address: Address) -> Result<u64, EvmError> {
        self.run(
            "eth_getTransactionCount",
            self.provider
                .get_transaction_count(address)
                .latest()
                .into_future(),
        )
        .await
    }

    async fn balance(&self, address: Address) -> Result<U256, EvmError> {
        self.run(
            "eth_getBalance",
            self.provider.get_balance(address).latest().into_future(),
        )
        .await
    }

    async fn erc20_balance(&self, token: Address, holder: Address) -> Result<U256, EvmError> {
        let request = TransactionRequest {
            to: Some(TxKind::Call(token)),
            input: TransactionInput::new(balanceOfCall { holder }.abi_encode().into()),
            ..Default::default()
        };
        let output = self
            .run(
                "eth_call",
                self.provider
                    .call(request)
                    .block(BlockNumberOrTag::Latest.into())
                    .into_future(),
            )
            .await?;
        balanceOfCall::abi_decode_returns(&output).map_err(|e| EvmError::BadResponse {
            call: "eth_call",
            node: self.node.clone(),
            reason: if output.is_empty() {
                format!("balanceOf on {token} returned nothing: no token contract at that address")
            } else {
                format!(
                    "balanceOf on {token} returned {} bytes that do not decode: {e}",
                    output.len()
                )
            },
        })
    }

    async fn fees(&self) -> Result<Fees, EvmError> {
        let history = self
            .run(
                "eth_feeHistory",
                self.provider
                    .get_fee_history(1, BlockNumberOrTag::Latest, &[]),
            )
            .await?;
        let base = history
            .next_block_base_fee()
            .ok_or_else(|| EvmError::BadResponse {
                call: "eth_feeHistory",
                node: self.node.clone(),
                reason: "no base fee: the chain does not use EIP-1559 fees".into(),
            })?;
        let tip = self
            .run(
                "eth_maxPriorityFeePerGas",
                self.provider.get_max_priority_fee_per_gas().into_future(),
            )
            .await?;
        Ok(Fees::with_headroom(base, tip))
    }

    async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        value: U256,
        data: &Bytes,
    ) -> Result<u64, EvmError> {
        let request = TransactionRequest {
            from: Some(from),
            to: Some(TxKind::Call(to)),
            value: Some(value),
            input: TransactionInput::new(data.clone()),
            ..Default::default()
        };
        match self
            .run(
                "eth_estimateGas",
                self.provider.estimate_gas(request).into_future(),
            )
            .await
        {
            Err(EvmError::Node {
                call,
                node,
                code,
                message,
            }) if code == 3 || message.to_ascii_lowercase().contains("revert") => {
                Err(EvmError::Reverted {
                    backend: node,
                    call,
                    reason: message,
                })
            }
            other => other,
        }
    }

    async fn send_raw(&self, raw: &[u8]) -> Result<B256, EvmError> {
        let signed = SignedEthTransaction::decode(raw)?;
        let hash = signed.hash();
        let node_chain = self.chain_id().await?;
        let tx_chain = signed.transaction().chain_id();
        if tx_chain != node_chain {
            return Err(EvmError::Rejected {
                backend: self.node.clone(),
                hash,
                reason: format!(
                    "the transaction is for chain id {tx_chain}, the node serves chain id {node_chain}"
                ),
            });
        }
        let sent: Result<B256, EvmError> = self
            .run(
                "eth_sendRawTransaction",
                self.provider.raw_request(
                    "eth_sendRawTransaction".into(),
                    (Bytes::copy_from_slice(raw),),
                ),
            )
            .await;
        match sent {
            Ok(answer) if answer == hash => Ok(hash),
            Ok(answer) => Err(EvmError::BadResponse {
                call: "eth_sendRawTransaction",
                node: self.node.clone(),
                reason: format!("the node answered hash {answer} for transaction {hash}"),
            }),
            Err(EvmError::Node { message, .. }) => {
                let lower = message.to_ascii_lowercase();
                if ALREADY_KNOWN.iter().any(|p| lower.contains(p)) || self.knows(hash).await? {
                    return Ok(hash);
                }
                Err(EvmError::Rejected {
                    backend: self.node.clone(),
                    hash,
                    reason: message,
                })
            }
            Err(other) => Err(other),
        }
    }

    async fn receipt(&self, hash: B256) -> Result<Option<TxReceipt>, EvmError> {
        let Some(receipt) = self
            .run(
                "eth_getTransactionReceipt",
                self.provider.get_transaction_receipt(hash).into_future(),
            )
            .await?
        else {
            return Ok(None);
        };
        let Some(block_number) = receipt.block_number else {
            return Ok(None);
        };
        let tip = self.block_number().await?;
        Ok(Some(TxReceipt {
            hash,
            block_number,
            outcome: if receipt.status() {
                TxOutcome::Success
            } else {
                TxOutcome::Reverted
            },
            gas_used: receipt.gas_used,
            effective_gas_price: receipt.effective_gas_price,
            confirmations: tip.saturating_sub(block_number).saturating_add(1),
        }))
    }
}
