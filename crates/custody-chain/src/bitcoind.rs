//! The Bitcoin Core JSON-RPC backend.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bitcoin::consensus::encode;
use bitcoin::hex::FromHex;
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use jsonrpc::bitreq_http_async::{BitreqHttpTransport, Error as TransportError};
use jsonrpc::client_async::Client;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::error::truncate_reason;
use crate::esplora::says_already_known;
use crate::http::{check_base_url, status_is_transient};
use crate::{fee_rate_from_sat_per_vb, BitcoindAuth, ChainBackend, ChainError, TxStatus, Utxo};

const NAME: &str = "bitcoind";

/// `RPC_VERIFY_ALREADY_IN_CHAIN`: the transaction is already confirmed.
const RPC_VERIFY_ALREADY_IN_CHAIN: i32 = -27;
/// `RPC_INVALID_ADDRESS_OR_KEY`, also "no such transaction".
const RPC_INVALID_ADDRESS_OR_KEY: i32 = -5;
/// `RPC_IN_WARMUP`: the node is starting.
const RPC_IN_WARMUP: i32 = -28;
/// `RPC_WALLET_NOT_FOUND` and `RPC_WALLET_NOT_SPECIFIED`.
const RPC_WALLET_NOT_FOUND: i32 = -18;
const RPC_WALLET_NOT_SPECIFIED: i32 = -19;
/// `RPC_VERIFY_ERROR`, `RPC_VERIFY_REJECTED`, `RPC_DESERIALIZATION_ERROR`: a refused tx.
const RPC_TX_REFUSED: [i32; 3] = [-25, -26, -22];

/// A backend talking to Bitcoin Core's JSON-RPC interface.
///
/// UTXOs and transaction status come from a **watch-only descriptor wallet** loaded in the
/// node (`listunspent`, `gettransaction` on `/wallet/<name>`); the operator imports the
/// custody descriptor into it once (see ADR 0010). Broadcasts use `sendrawtransaction`,
/// fee estimates `estimatesmartfee`.
///
/// Credentials come from the node's cookie file (re-read when the node restarts and the
/// cookie changes) or from a user name plus a password file; never from argv or the
/// environment, and never in error messages.
pub struct BitcoindBackend {
    url: String,
    wallet: String,
    auth: BitcoindAuth,
    timeout: Duration,
    client: RwLock<Arc<Client>>,
}

impl fmt::Debug for BitcoindBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitcoindBackend")
            .field("url", &self.url)
            .field("wallet", &self.wallet)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why one RPC call failed: the node's own error, or a transport-level [`ChainError`].
enum RpcFailure {
    Node {
        code: i32,
        message: String,
    },
    /// HTTP 401 or 403: the node refused the credentials.
    AuthRefused(i32),
    Chain(ChainError),
}

impl RpcFailure {
    fn into_chain(self) -> ChainError {
        match self {
            Self::Chain(e) => e,
            Self::AuthRefused(status) => ChainError::Config {
                reason: format!(
                    "bitcoind refused the RPC credentials (HTTP {status}); check the cookie \
                     or password file"
                ),
            },
            Self::Node { code, message } => map_node_error(code, &message),
        }
    }
}

impl From<ChainError> for RpcFailure {
    fn from(e: ChainError) -> Self {
        Self::Chain(e)
    }
}

fn map_node_error(code: i32, message: &str) -> ChainError {
    match code {
        RPC_IN_WARMUP => ChainError::Unreachable {
            backend: NAME,
            reason: format!("node is starting: {}", truncate_reason(message)),
        },
        RPC_WALLET_NOT_FOUND | RPC_WALLET_NOT_SPECIFIED => ChainError::Config {
            reason: format!(
                "bitcoind wallet is not loaded ({}); load the watch-only custody wallet",
                truncate_reason(message)
            ),
        },
        _ => ChainError::BadResponse {
            backend: NAME,
            reason: format!("RPC error {code}: {}", truncate_reason(message)),
        },
    }
}

fn map_transport_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> ChainError {
    match error.downcast_ref::<TransportError>() {
        Some(TransportError::Http(http))
            if u16::try_from(http.status_code).is_ok_and(status_is_transient) =>
        {
            ChainError::Unreachable {
                backend: NAME,
                reason: format!("HTTP {}: {}", http.status_code, truncate_reason(&http.body)),
            }
        }
        Some(TransportError::Http(http)) => ChainError::BadResponse {
            backend: NAME,
            reason: format!("HTTP {}: {}", http.status_code, truncate_reason(&http.body)),
        },
        Some(TransportError::Json(e)) => ChainError::BadResponse {
            backend: NAME,
            reason: e.to_string(),
        },
        _ => ChainError::Unreachable {
            backend: NAME,
            reason: error.to_string(),
        },
    }
}

fn map_jsonrpc_error(error: jsonrpc::Error) -> RpcFailure {
    match error {
        jsonrpc::Error::Rpc(rpc) => RpcFailure::Node {
            code: rpc.code,
            message: rpc.message,
        },
        jsonrpc::Error::Transport(e) => match e.downcast_ref::<TransportError>() {
            Some(TransportError::Http(http)) if matches!(http.status_code, 401 | 403) => {
                RpcFailure::AuthRefused(http.status_code)
            }
            _ => RpcFailure::Chain(map_transport_error(e.as_ref())),
        },
        other => RpcFailure::Chain(ChainError::BadResponse {
            backend: NAME,
            reason: other.to_string(),
        }),
    }
}

fn bad(reason: String) -> ChainError {
    ChainError::BadResponse {
        backend: NAME,
        reason,
    }
}

/// Reads `user:password` for HTTP basic authentication from the configured files.
fn read_credentials(auth: &BitcoindAuth) -> Result<Zeroizing<String>, ChainError> {
    fn read(path: &Path, what: &str) -> Result<Zeroizing<String>, ChainError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| ChainError::Config {
                    reason: format!("cannot read bitcoind {what} {}: {e}", path.display()),
                })?,
            );
        let line = text.lines().next().unwrap_or_default().trim_end();
        if line.is_empty() {
            return Err(ChainError::Config {
                reason: format!("bitcoind {what} {} is empty", path.display()),
            });
        }
        Ok(Zeroizing::new(line.to_owned()))
    }
    match auth {
        BitcoindAuth::CookieFile { cookie_file } => {
            let cookie = read(cookie_file, "cookie file")?;
            if !cookie.contains(':') {
                return Err(ChainError::Config {
                    reason: format!(
                        "bitcoind cookie file {} is not of the form user:password",
                        cookie_file.display()
                    ),
                });
            }
            Ok(cookie)
        }
        BitcoindAuth::PasswordFile {
            user,
            password_file,
        } => {
            let password = read(password_file, "password file")?;
            let mut credentials =
                Zeroizing::new(String::with_capacity(user.len() + 1 + password.len()));
            credentials.push_str(user);
            credentials.push(':');
            credentials.push_str(&password);
            Ok(credentials)
        }
    }
}

impl BitcoindBackend {
    /// Creates a backend for the node at `base_url` (e.g. `http://127.0.0.1:8332`) using the
    /// loaded wallet `wallet`, each call bounded by `timeout`.
    ///
    /// # Errors
    /// [`ChainError::Config`] if the URL is not http(s) or carries credentials, the wallet
    /// name is not plain (letters, digits, `.`, `_`, `-`), or the credentials file cannot be
    /// read.
    pub fn new(
        base_url: &str,
        wallet: &str,
        auth: BitcoindAuth,
        timeout: Duration,
    ) -> Result<Self, ChainError> {
        let base = check_base_url("bitcoind", base_url)?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if wallet.is_empty() || !wallet.chars().all(plain) {
            return Err(ChainError::Config {
                reason: format!(
                    "bitcoind wallet name {wallet:?} must be letters, digits, '.', '_' or '-'"
                ),
            });
        }
        let url = format!("{base}/wallet/{wallet}");
        let client = build_client(&url, &auth, timeout)?;
        Ok(Self {
            url,
            wallet: wallet.to_owned(),
            auth,
            timeout,
            client: RwLock::new(Arc::new(client)),
        })
    }

    /// Returns the wallet endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn client(&self) -> Arc<Client> {
        match self.client.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Calls `method`, re-reading a rotated cookie once if the node refuses the old one.
    async fn rpc<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcFailure> {
        match self.rpc_once(method, &params).await {
            Err(RpcFailure::AuthRefused(_))
                if matches!(self.auth, BitcoindAuth::CookieFile { .. }) =>
            {
                let fresh = build_client(&self.url, &self.auth, self.timeout)?;
                match self.client.write() {
                    Ok(mut guard) => *guard = Arc::new(fresh),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
                }
                self.rpc_once(method, &params).await
            }
            other => other,
        }
    }

    async fn rpc_once<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<T, RpcFailure> {
        let raw = serde_json::value::to_raw_value(params).map_err(|e| bad(e.to_string()))?;
        let client = self.client();
        match tokio::time::timeout(self.timeout, client.call::<T>(method, Some(&raw))).await {
            Err(_) => Err(RpcFailure::Chain(ChainError::Timeout {
                backend: NAME,
                after: self.timeout,
            })),
            Ok(result) => result.map_err(map_jsonrpc_error),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, ChainError> {
        self.rpc(method, params)
            .await
            .map_err(RpcFailure::into_chain)
    }
}

fn build_client(url: &str, auth: &BitcoindAuth, timeout: Duration) -> Result<Client, ChainError> {
    let credentials = read_credentials(auth)?;
    // The transport's own timeout is a backstop; `rpc_once` enforces `timeout` first.
    let transport: BitreqHttpTransport = BitreqHttpTransport::builder()
        .url(url)
        .map_err(|e| ChainError::Config {
            reason: format!("bitcoind url: {e}"),
        })?
        .timeout(timeout.saturating_add(Duration::from_secs(5)))
        .cookie_auth(credentials.as_str())
        .build();
    Ok(Client::with_transport(transport))
}

#[derive(Deserialize)]
struct ListUnspentEntry {
    txid: Txid,
    vout: u32,
    #[serde(rename = "scriptPubKey")]
    script_pubkey: String,
    amount: f64,
    confirmations: u32,
}

#[derive(Deserialize)]
struct GetTransaction {
    confirmations: i64,
    blockheight: Option<u32>,
}

#[derive(Deserialize)]
struct GetRawTransaction {
    confirmations: Option<u32>,
}

#[derive(Deserialize)]
struct EstimateSmartFee {
    feerate: Option<f64>,
    #[serde(default)]
    errors: Vec<String>,
}

#[async_trait::async_trait]
impl ChainBackend for BitcoindBackend {
    async fn utxos(&self, scripts: &[ScriptBuf]) -> Result<Vec<Utxo>, ChainError> {
        if scripts.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: HashSet<&ScriptBuf> = scripts.iter().collect();
        let tip = self.tip_height().await?;
        // minconf 0 includes the mempool; outputs spent by mempool transactions are left out.
        let entries: Vec<ListUnspentEntry> = self
            .call("listunspent", json!([0, 9_999_999, [], true]))
            .await?;
        let mut utxos = Vec::new();
        for entry in entries {
            let script = Vec::<u8>::from_hex(&entry.script_pubkey)
                .map(ScriptBuf::from_bytes)
                .map_err(|e| bad(format!("listunspent scriptPubKey: {e}")))?;
            if !wanted.contains(&script) {
                continue;
            }
            let value = Amount::from_btc(entry.amount)
                .map_err(|e| bad(format!("listunspent amount {}: {e}", entry.amount)))?;
            let height = match entry.confirmations {
                0 => None,
                n => Some(tip.saturating_add(1).saturating_sub(n)),
            };
            utxos.push(Utxo {
                outpoint: OutPoint {
                    txid: entry.txid,
                    vout: entry.vout,
                },
                value,
                script_pubkey: script,
                height,
            });
        }
        Ok(utxos)
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let txid = tx.compute_txid();
        let hex = encode::serialize_hex(tx);
        match self.rpc::<Txid>("sendrawtransaction", json!([hex])).await {
            Ok(returned) if returned == txid => Ok(txid),
            Ok(returned) => Err(bad(format!(
                "sendrawtransaction answered txid {returned} for transaction {txid}"
            ))),
            Err(RpcFailure::Node { code, .. }) if code == RPC_VERIFY_ALREADY_IN_CHAIN => Ok(txid),
            Err(RpcFailure::Node { code, message }) if RPC_TX_REFUSED.contains(&code) => {
                if says_already_known(&message) || self.tx_status(&txid).await? != TxStatus::Unknown
                {
                    return Ok(txid);
                }
                Err(ChainError::Rejected {
                    backend: NAME,
                    txid,
                    reason: truncate_reason(&message),
                })
            }
            Err(other) => Err(other.into_chain()),
        }
    }

    async fn tx_status(&self, txid: &Txid) -> Result<TxStatus, ChainError> {
        match self
            .rpc::<GetTransaction>("gettransaction", json!([txid]))
            .await
        {
            Ok(tx) if tx.confirmations < 0 => return Ok(TxStatus::Unknown),
            Ok(tx) if tx.confirmations == 0 => return Ok(TxStatus::InMempool),
            Ok(tx) => {
                let confirmations = u32::try_from(tx.confirmations)
                    .map_err(|_| bad(format!("confirmations {}", tx.confirmations)))?;
                let height = tx.blockheight.ok_or_else(|| {
                    bad(format!("confirmed transaction {txid} has no blockheight"))
                })?;
                return Ok(TxStatus::Confirmed {
                    height,
                    confirmations,
                });
            }
            Err(RpcFailure::Node { code, .. }) if code == RPC_INVALID_ADDRESS_OR_KEY => {}
            Err(other) => return Err(other.into_chain()),
        }
        // Not a wallet transaction: the mempool (or a txindex) may still know it.
        match self
            .rpc::<GetRawTransaction>("getrawtransaction", json!([txid, true]))
            .await
        {
            Ok(GetRawTransaction {
                confirmations: None | Some(0),
            }) => Ok(TxStatus::InMempool),
            Ok(GetRawTransaction {
                confirmations: Some(confirmations),
            }) => {
                let tip = self.tip_height().await?;
                Ok(TxStatus::Confirmed {
                    height: tip.saturating_add(1).saturating_sub(confirmations),
                    confirmations,
                })
            }
            Err(RpcFailure::Node { code, .. }) if code == RPC_INVALID_ADDRESS_OR_KEY => {
                Ok(TxStatus::Unknown)
            }
            Err(other) => Err(other.into_chain()),
        }
    }

    async fn tip_height(&self) -> Result<u32, ChainError> {
        let height: u64 = self.call("getblockcount", json!([])).await?;
        u32::try_from(height).map_err(|_| bad(format!("block count {height}")))
    }

    async fn fee_rate(&self, target_blocks: u16) -> Result<FeeRate, ChainError> {
        let target = target_blocks.clamp(1, 1008);
        let estimate: EstimateSmartFee = self.call("estimatesmartfee", json!([target])).await?;
        match estimate.feerate {
            // BTC/kvB × 1e8 sat/BTC ÷ 1000 vB/kvB = sat/vB.
            Some(btc_per_kvb) => fee_rate_from_sat_per_vb(NAME, btc_per_kvb * 100_000.0),
            None => Err(ChainError::NotFound {
                backend: NAME,
                what: format!(
                    "fee estimate for {target} blocks ({})",
                    truncate_reason(&estimate.errors.join("; "))
                ),
            }),
        }
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
