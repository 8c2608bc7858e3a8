//! The Esplora REST backend, through BDK's `esplora-client`.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bitcoin::{FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use esplora_client::{AsyncClient, Builder, Error as EsploraError};

use crate::error::truncate_reason;
use crate::http::{bounded, check_base_url, status_is_transient};
use crate::{ChainBackend, ChainError, TxStatus, Utxo};

const NAME: &str = "esplora";

/// Node messages that mean "this transaction is already known", so a re-broadcast succeeds.
pub(crate) const ALREADY_KNOWN: [&str; 5] = [
    "txn-already-in-mempool",
    "txn-already-known",
    "already in block chain",
    "outputs already in utxo set",
    "transaction already in block chain",
];

/// Whether a node's rejection message says the transaction is already in its mempool or chain.
pub(crate) fn says_already_known(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ALREADY_KNOWN.iter().any(|known| message.contains(known))
}

/// A backend talking to an Esplora REST server (Blockstream's electrs, mempool.space).
///
/// UTXOs come from `GET /scripthash/:hash/utxo` (confirmed and mempool), broadcasts go to
/// `POST /tx`, fee estimates from `GET /fee-estimates`. Each request is bounded by the
/// configured timeout; HTTP 429 and 5xx answers are retried twice by the client first.
#[derive(Clone)]
pub struct EsploraBackend {
    client: AsyncClient,
    url: String,
    timeout: Duration,
}

impl fmt::Debug for EsploraBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsploraBackend")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl EsploraBackend {
    /// Creates a backend for the Esplora API at `base_url` (e.g.
    /// `https://blockstream.info/testnet/api`), each request bounded by `timeout`.
    ///
    /// # Errors
    /// [`ChainError::Config`] if the URL is not http(s) or carries credentials.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ChainError> {
        let url = check_base_url("esplora", base_url)?;
        let client = Builder::new(&url)
            .max_retries(2)
            .build_async()
            .map_err(|e| ChainError::Config {
                reason: format!("esplora client: {e}"),
            })?;
        Ok(Self {
            client,
            url,
            timeout,
        })
    }

    /// Returns the base URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, EsploraError>>,
    ) -> Result<T, ChainError> {
        bounded(NAME, self.timeout, async {
            request.await.map_err(map_error)
        })
        .await
    }
}

fn map_error(error: EsploraError) -> ChainError {
    match error {
        EsploraError::BitReq(e) => ChainError::Unreachable {
            backend: NAME,
            reason: e.to_string(),
        },
        EsploraError::HttpResponse { status, message } if status_is_transient(status) => {
            ChainError::Unreachable {
                backend: NAME,
                reason: format!("HTTP {status}: {}", truncate_reason(&message)),
            }
        }
        EsploraError::HttpResponse { status, message } => ChainError::BadResponse {
            backend: NAME,
            reason: format!("HTTP {status}: {}", truncate_reason(&message)),
        },
        other => ChainError::BadResponse {
            backend: NAME,
            reason: other.to_string(),
        },
    }
}

#[async_trait::async_trait]
impl ChainBackend for EsploraBackend {
    async fn utxos(&self, scripts: &[ScriptBuf]) -> Result<Vec<Utxo>, ChainError> {
        let mut seen = HashSet::new();
        let mut utxos = Vec::new();
        for script in scripts.iter().filter(|s| seen.insert(*s)) {
            let found = self.call(self.client.get_scripthash_utxos(script)).await?;
            utxos.extend(found.into_iter().map(|u| Utxo {
                outpoint: OutPoint {
                    txid: u.txid,
                    vout: u.vout,
                },
                value: u.value,
                script_pubkey: script.clone(),
                height: if u.status.confirmed {
                    u.status.block_height
                } else {
                    None
                },
            }));
        }
        Ok(utxos)
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let txid = tx.compute_txid();
        let refused = bounded(NAME, self.timeout, async {
            match self.client.broadcast(tx).await {
                Ok(_) => Ok(None),
                Err(EsploraError::HttpResponse { status, message })
                    if (400..500).contains(&status) && !status_is_transient(status) =>
                {
                    Ok(Some(message))
                }
                Err(other) => Err(map_error(other)),
            }
        })
        .await?;
        let Some(message) = refused else {
            return Ok(txid);
        };
        if says_already_known(&message) || self.tx_status(&txid).await? != TxStatus::Unknown {
            return Ok(txid);
        }
        Err(ChainError::Rejected {
            backend: NAME,
            txid,
            reason: truncate_reason(&message),
        })
    }

    async fn tx_status(&self, txid: &Txid) -> Result<TxStatus, ChainError> {
        // `/tx/:txid/status` says `confirmed: false` for unknown transactions too, so an
        // unconfirmed answer is told apart by whether the transaction can be fetched.
        let status = bounded(NAME, self.timeout, async {
            match self.client.get_tx_status(txid).await {
                Ok(status) => Ok(Some(status)),
                Err(EsploraError::HttpResponse { status: 404, .. }) => Ok(None),
                Err(other) => Err(map_error(other)),
            }
        })
        .await?;
        match status {
            Some(status) if status.confirmed => {
                let height = status.block_height.ok_or_else(|| ChainError::BadResponse {
                    backend: NAME,
                    reason: format!("confirmed transaction {txid} has no block height"),
                })?;
                let tip = self.tip_height().await?;
                Ok(TxStatus::Confirmed {
                    height,
                    confirmations: tip.saturating_sub(height).saturating_add(1),
                })
            }
            Some(_) => match self.call(self.client.get_tx(txid)).await? {
                Some(_) => Ok(TxStatus::InMempool),
                None => Ok(TxStatus::Unknown),
            },
            None => Ok(TxStatus::Unknown),
        }
    }

    async fn tip_height(&self) -> Result<u32, ChainError> {
        self.call(self.client.get_height()).await
    }

    async fn fee_rate(&self, target_blocks: u16) -> Result<FeeRate, ChainError> {
        let estimates = self.call(self.client.get_fee_estimates()).await?;
        esplora_client::convert_fee_rate(usize::from(target_blocks), estimates).ok_or_else(|| {
            ChainError::NotFound {
                backend: NAME,
                what: format!("fee estimate for {target_blocks} blocks"),
            }
        })
    }

    fn name(&self) -> &'static str {
        NAME
    }
}
