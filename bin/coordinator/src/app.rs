//! The shared state every request handler and worker sees.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use custody_bitcoin::WalletDescriptor;
use custody_threshold::{GroupKey, Identity};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::PasswordPolicy;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;

/// The wallet the coordinator spends from: the FROST group key and its descriptor.
#[derive(Debug)]
pub struct Wallet {
    /// The group key (public).
    pub group: GroupKey,
    /// `tr(xpub/<0;1>/*)` of the group key.
    pub descriptor: WalletDescriptor,
    /// Change indexes this process has claimed and not yet used (`next..end`), on
    /// PostgreSQL: see `withdrawals::claim_change_block`.
    pub change_block: tokio::sync::Mutex<(u32, u32)>,
    /// Change addresses below this index are derived (with their PSBT output fields)
    /// ahead of the requests that will take them; see [`Wallet::prepare_change_after`].
    change_ready: std::sync::atomic::AtomicU32,
}

/// How many change addresses [`Wallet::prepare_change_after`] keeps ready.
pub const CHANGE_AHEAD: u32 = 32;

impl Wallet {
    /// Builds the wallet of `group`.
    ///
    /// # Errors
    /// If the descriptor cannot be formed.
    pub fn new(group: GroupKey) -> Result<Self> {
        let descriptor =
            WalletDescriptor::for_group(&group, None).context("building the wallet descriptor")?;
        Ok(Wallet {
            group,
            descriptor,
            change_block: tokio::sync::Mutex::new((0, 0)),
            change_ready: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Derives the change addresses that follow `used` ahead of time, on the blocking
    /// pool: a fresh change address costs several BIP32 derivations and a Taproot tweak,
    /// which a withdrawal would otherwise pay while it holds SQLite's writer. Indexes are
    /// handed out in order (one at a time on SQLite, in blocks on PostgreSQL), so the next
    /// ones are the ones to prepare; the work starts when fewer than half of
    /// [`CHANGE_AHEAD`] are ready.
    pub fn prepare_change_after(&self, used: u32) {
        use std::sync::atomic::Ordering;
        let want = used.saturating_add(1).saturating_add(CHANGE_AHEAD);
        if self.change_ready.load(Ordering::Relaxed) > used.saturating_add(CHANGE_AHEAD / 2) {
            return;
        }
        let from = self.change_ready.fetch_max(want, Ordering::Relaxed);
        if from >= want {
            return;
        }
        let from = from.max(used.saturating_add(1));
        let descriptor = self.descriptor.clone();
        // Nothing waits for it: a request that comes first derives the address itself.
        drop(tokio::task::spawn_blocking(move || {
            for index in from..want {
                if let Ok(a) = descriptor.derive(custody_bitcoin::Branch::Change, index) {
                    let _ = a.psbt_output();
                }
            }
        }));
    }

    /// Reads a group key file written by `custody-signer` after the DKG.
    ///
    /// # Errors
    /// If the file is missing or not a group key.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading group key file {}", path.display()))?;
        let group = GroupKey::decode(&bytes)
            .with_context(|| format!("{} is not a group key file", path.display()))?;
        Wallet::new(group)
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct App {
    /// Storage.
    pub db: Db,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The coordinator's identity: signs decisions and audit checkpoints.
    pub identity: Arc<Identity>,
    /// Password hashing.
    pub passwords: PasswordPolicy,
    /// The wallet, if configured.
    pub wallet: Option<Arc<Wallet>>,
    /// The chain backend, if configured.
    pub chain: Option<Arc<dyn custody_chain::ChainBackend>>,
    /// The Ethereum wallet and chain, if configured.
    pub eth: Option<Arc<crate::eth::EthWallet>>,
    /// Prometheus rendering, if a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The hash of the ingestion token, if ingestion is enabled.
    pub ingest_token_hash: Option<String>,
    /// Verified policies by hash.
    pub policies: Arc<crate::policy::PolicyCache>,
    /// When the background work last did what.
    pub worker: Arc<WorkerState>,
    /// The key file for data at rest.
    pub vault: Arc<crate::vault::Vault>,
    /// The WebAuthn relying party.
    pub webauthn: Arc<custody_auth::WebAuthn>,
    /// Sign-in and code attempt limits per account and per IP (in memory).
    pub limiter: Arc<custody_auth::AttemptLimiter>,
    /// The key for email/SMS code and recovery-code hashes (sealed in the database).
    pub hash_key: Arc<custody_auth::HashKey>,
    /// Sessions' last use, waiting to be written (ADR 0026).
    pub last_use: Arc<crate::accounts::LastUse>,
    /// Wakes the daemon's worker when a one-time code was committed to the outbox, so
    /// that it goes out at once instead of at the next tick.
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

/// Times (unix seconds) of the last periodic jobs.
#[derive(Debug, Default)]
pub struct WorkerState {
    /// Last coin sync.
    pub last_sync: std::sync::atomic::AtomicI64,
    /// Last audit checkpoint.
    pub last_checkpoint: std::sync::atomic::AtomicI64,
    /// When expired links were last swept.
    pub last_link_sweep: std::sync::atomic::AtomicI64,
    /// When the velocity running totals were last compared with their withdrawals.
    pub last_velocity_check: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("engine", &self.db.engine())
            .field("coordinator", &self.identity.card().fingerprint())
            .finish_non_exhaustive()
    }
}

impl App {
    /// The current time.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The Ethereum wallet, or a clear error if none is configured.
    ///
    /// # Errors
    /// A conflict error saying how to configure one.
    pub fn eth(&self) -> Result<&crate::eth::EthWallet, crate::error::ApiError> {
        self.eth.as_deref().ok_or_else(|| {
            crate::error::ApiError::conflict(
                "no_ethereum",
                "Ethereum withdrawals are not configured: set [ethereum] (key_plan_file, group_key_file, chain) in the coordinator configuration",
            )
        })
    }

    /// The wallet, or a clear error if none is configured.
    ///
    /// # Errors
    /// A conflict error saying how to configure one.
    pub fn wallet(&self) -> Result<&Arc<Wallet>, crate::error::ApiError> {
        self.wallet.as_ref().ok_or_else(|| {
            crate::error::ApiError::conflict(
                "no_wallet",
                "no wallet is configured; set wallet.group_key_file to the group key from the DKG",
            )
        })
    }
}
