//! The online coordinator of CoinPort Custody: accounts and sessions, security events,
//! risk holds, the withdrawal policy, approvals, air-gapped signing rounds and a broadcast
//! that happens only when every gate passes at that moment.
//!
//! The daemon is `custody-coordinator serve`; this library exposes [`router`] and [`run`]
//! so tests drive it in-process with a fake clock. Storage is SQLite (embedded default)
//! or PostgreSQL through the same migrations ([`db`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accelerate;
pub mod accounts;
pub mod api;
pub mod api_security;
pub mod apikeys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod dev;
pub mod devices;
pub mod error;
pub mod eth;
pub mod factors;
pub mod kyc;
pub mod links;
pub mod notify;
pub mod policy;
pub mod risk;
pub mod signing;
pub mod vault;
pub mod velocity;
pub mod withdrawals;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use custody_threshold::Identity;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use zeroize::Zeroizing;

pub use api::router;
pub use app::{App, Wallet};
pub use clock::{Clock, FakeClock, SystemClock};
pub use config::Config;
pub use db::Db;

/// The file name of the coordinator's identity (secret, 0600) in `data_dir`.
pub const IDENTITY_FILE: &str = "coordinator.identity";
/// The file name of its public identity card in `data_dir`.
pub const CARD_FILE: &str = "coordinator.card";

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Loads the coordinator identity from `data_dir`, creating it (mode 0600) on first use.
///
/// # Errors
/// If the directory or file cannot be written or the file is damaged.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Identity> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(IDENTITY_FILE);
    if path.exists() {
        let bytes = Zeroizing::new(
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
        return Identity::from_secret_bytes(&bytes)
            .with_context(|| format!("{} is not a coordinator identity", path.display()));
    }
    let identity = Identity::generate("coordinator", &mut rand_core::OsRng)
        .context("generating the coordinator identity")?;
    let secret = identity.to_secret_bytes();
    write_private(&path, &secret)?;
    std::fs::write(data_dir.join(CARD_FILE), identity.card().encode())
        .context("writing the coordinator card")?;
    Ok(identity)
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Builds the application state: connects and migrates the database, loads the identity,
/// the wallet and the chain backend.
///
/// # Errors
/// Anything that stops the daemon from starting, as a sentence.
pub async fn build_app(config: Config, clock: Arc<dyn Clock>) -> Result<App> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let mut url = config.database_url();
    if let Some(pw) = &config.database_password_file {
        let text =
            Zeroizing::new(std::fs::read_to_string(pw).context("reading database_password_file")?);
        let mut parsed = url::Url::parse(&url).context("database_url is not a URL")?;
        parsed
            .set_password(Some(text.lines().next().unwrap_or_default()))
            .map_err(|()| {
                anyhow::anyhow!(
                    "database_url cannot carry a password (is it postgres://user@host/db?)"
                )
            })?;
        url = parsed.to_string();
    }
    let db = Db::connect(&url, config.database_max_connections)
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("migrating the database")?;
    let identity = load_or_create_identity(&config.data_dir)?;
    let vault = vault::Vault::load_or_create(&config.vault_key_file())?;
    let wallet = match &config.wallet.group_key_file {
        Some(p) => Some(Arc::new(Wallet::load(p)?)),
        None => None,
    };
    let chain = match &config.chain {
        Some(c) => Some(custody_chain::connect(c).context("connecting the chain backend")?),
        None => None,
    };
    let eth = match &config.ethereum {
        Some(c) => Some(Arc::new(eth::EthWallet::load(c).await?)),
        None => None,
    };
    let ingest_token_hash = match &config.auth.ingest_token_file {
        Some(p) => {
            let t = Zeroizing::new(
                std::fs::read_to_string(p).context("reading auth.ingest_token_file")?,
            );
            Some(auth::token_hash(
                t.lines().next().unwrap_or_default().trim(),
            ))
        }
        None => None,
    };
    let passwords =
        auth::PasswordPolicy::new(config.auth.argon2_memory_kib, config.auth.argon2_iterations);
    let webauthn = custody_auth::WebAuthn::new(&config.auth.webauthn_config())
        .context("setting up WebAuthn from auth.webauthn")?;
    let limiter = custody_auth::AttemptLimiter::new(
        config.auth.limits.attempt_limits(),
        Arc::new(clock::AuthTime(clock.clone())),
    );
    let sealed = factors::seal_legacy_totp_secrets(&db, &vault)
        .await
        .context("sealing TOTP secrets stored in plain text")?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed TOTP secrets stored in plain text by an earlier version"
        );
    }
    let sealed = accounts::seal_legacy_contact_details(&db, &vault)
        .await
        .context("sealing contact details stored in plain text")?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed the email addresses and phone numbers an earlier version stored in plain text"
        );
    }
    let hash_key = factors::load_or_create_hash_key(&db, &vault, clock.now())
        .await
        .context("loading the code-hash key")?;
    Ok(App {
        db,
        clock,
        config: Arc::new(config),
        identity: Arc::new(identity),
        passwords,
        wallet,
        chain,
        eth,
        metrics: metrics_handle(),
        ingest_token_hash,
        policies: Arc::new(policy::PolicyCache::default()),
        worker: Arc::new(app::WorkerState::default()),
        vault: Arc::new(vault),
        webauthn: Arc::new(webauthn),
        limiter: Arc::new(limiter),
        hash_key: Arc::new(hash_key),
        last_use: Arc::default(),
        outbox_wake: Arc::default(),
    })
}

/// What requests leave for the daemon to write within a quarter second, written now: the
/// audit entries they committed unchained get their sequence numbers and hashes, and the
/// sessions' noted last use is stored (ADR 0026). `serve` runs it every 250 ms; failures
/// are logged and retried on the next pass.
pub async fn record_deferred(app: &App) {
    if let Err(e) = audit::chain_pending(&app.db).await {
        tracing::warn!(error = %e, "chaining audit entries failed; retrying");
    }
    if let Err(e) = app.last_use.flush(&app.db).await {
        tracing::warn!(error = %e, "recording sessions' last use failed; retrying");
    }
}

/// Notifications one delivery pass takes.
const DELIVERY_PASS: i64 = 100;

/// One pass of the background work: deliver notifications, resume interrupted
/// broadcasts, notice confirmations, and when due sync coins and write a signed audit
/// checkpoint.
///
/// # Errors
/// Storage failure.
pub async fn tick(app: &App) -> Result<(), error::ApiError> {
    use std::sync::atomic::Ordering;
    audit::chain_pending(&app.db).await?;
    // Everything due, in passes of 100, for at most a second and a half: a burst of
    // alerts is not capped at one pass per tick. A pass that delivers fewer than it took
    // (a channel down) ends the round; the rest waits for the next tick.
    let started = std::time::Instant::now();
    while notify::deliver_pending(app, DELIVERY_PASS).await?
        == usize::try_from(DELIVERY_PASS).unwrap_or(0)
        && started.elapsed() < Duration::from_millis(1500)
    {}
    withdrawals::resume(app).await?;
    if let Err(e) = withdrawals::report_stuck(app).await {
        tracing::warn!(error = %e, "stuck withdrawals not reported; next tick");
    }
    let now = app.now();
    let w = &app.config.worker;
    if app.chain.is_some()
        && app.wallet.is_some()
        && now - app.worker.last_sync.load(Ordering::SeqCst) >= w.utxo_sync_secs
    {
        app.worker.last_sync.store(now, Ordering::SeqCst);
        if let Err(e) = withdrawals::sync_utxos(app, 20).await {
            tracing::warn!(error = %e, "coin sync failed; retrying later");
        }
    }
    if now - app.worker.last_link_sweep.load(Ordering::SeqCst) >= links::SWEEP_EVERY_SECS {
        app.worker.last_link_sweep.store(now, Ordering::SeqCst);
        links::sweep_expired(app).await?;
    }
    if now - app.worker.last_velocity_check.load(Ordering::SeqCst)
        >= velocity::SELF_CHECK_EVERY_SECS
    {
        app.worker.last_velocity_check.store(now, Ordering::SeqCst);
        if let Err(e) = velocity::compact(&app.db, now).await {
            tracing::warn!(error = %e, "velocity totals not compacted; next hour");
        }
        velocity::self_check(app).await?;
    }
    if w.checkpoint_minutes > 0
        && now - app.worker.last_checkpoint.load(Ordering::SeqCst) >= w.checkpoint_minutes * 60
    {
        app.worker.last_checkpoint.store(now, Ordering::SeqCst);
        write_checkpoint(app).await?;
    }
    Ok(())
}

/// Verifies the audit chain and writes its signed head to the checkpoint directory
/// (`checkpoint-<seq>.json`); an existing file for the same entry is left alone.
///
/// # Errors
/// Storage failure; a broken chain is logged at error level and writes nothing.
pub async fn write_checkpoint(app: &App) -> Result<Option<std::path::PathBuf>, error::ApiError> {
    match audit::checkpoint(&app.db, &app.identity, app.now()).await {
        Ok(cp) => {
            let dir = app.config.checkpoint_dir();
            let path = dir.join(format!("checkpoint-{:012}.json", cp.seq));
            if path.exists() {
                return Ok(Some(path));
            }
            let body = serde_json::to_vec_pretty(&cp).map_err(error::ApiError::internal)?;
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, body))
                .map_err(error::ApiError::internal)?;
            Ok(Some(path))
        }
        Err(audit::VerifyError::Break(b)) => {
            tracing::error!(problem = %b, "audit log verification FAILED; no checkpoint written");
            metrics::counter!("custody_audit_breaks_total").increment(1);
            Ok(None)
        }
        Err(audit::VerifyError::Db(e)) => Err(e.into()),
    }
}

/// How the API is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with `rustls`: the configured certificate, or a development certificate
    /// generated in `data_dir` on first run.
    Tls,
    /// Plain HTTP (`serve --insecure-plain-http`): refused unless `bind` is a loopback
    /// address.
    InsecurePlainHttp,
}

/// Refuses plain HTTP on anything but a loopback address.
///
/// # Errors
/// A sentence naming the flag and the address.
pub fn check_plain_http(bind: std::net::SocketAddr) -> Result<()> {
    if bind.ip().is_loopback() {
        Ok(())
    } else {
        anyhow::bail!(
            "--insecure-plain-http is refused on {bind}: plain HTTP is allowed only on a loopback address (127.0.0.1 or ::1); serve HTTPS (configure [tls] or use the development certificate) or bind a loopback address"
        )
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake completed. Handshakes
/// run in their own tasks (bounded to 10 seconds), so a slow client does not hold up the
/// others.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(
        listener: tokio::net::TcpListener,
        config: Arc<custody_auth::rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor task ended (only by a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves the API on `config.bind` until SIGINT/SIGTERM, with the background worker:
/// HTTPS, or plain HTTP on loopback when asked by name ([`Transport::InsecurePlainHttp`]).
///
/// # Errors
/// Plain HTTP on a non-loopback address, a certificate that cannot be loaded or made, an
/// address that cannot be bound, or a server failure.
pub async fn run(app: App, transport: Transport) -> Result<()> {
    let tls = match transport {
        Transport::Tls => {
            let setup = custody_auth::load_tls(&app.config.tls_source())
                .context("setting up TLS (tls.cert_file and tls.key_file, or the development certificate in data_dir)")?;
            tracing::info!(
                certificate = %setup.cert_path.display(),
                fingerprint_sha256 = %setup.fingerprint(),
                generated = setup.generated,
                "TLS certificate loaded; a client of a self-signed certificate pins this fingerprint"
            );
            Some(setup.config)
        }
        Transport::InsecurePlainHttp => {
            check_plain_http(app.config.bind)?;
            tracing::warn!(address = %app.config.bind, "serving PLAIN HTTP on loopback (--insecure-plain-http): development only");
            None
        }
    };
    let listener = tokio::net::TcpListener::bind(app.config.bind)
        .await
        .with_context(|| format!("binding {}", app.config.bind))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, scheme, public_url = %app.config.public_url(), engine = ?app.db.engine(), coordinator = %app.identity.card().fingerprint(), "coordinator listening");
    let worker_app = app.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(async move {
        let wake = worker_app.outbox_wake.clone();
        let mut every = tokio::time::interval(Duration::from_secs(2));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = tick(&worker_app).await {
                        tracing::warn!(error = %e, "background work failed; retrying");
                    }
                }
                // A one-time code was queued: someone is waiting for it. Only the outbox
                // (codes first), not the whole tick: a code request must not set off
                // chain backend polls.
                _ = wake.notified() => {
                    if let Err(e) = notify::deliver_pending(&worker_app, DELIVERY_PASS).await {
                        tracing::warn!(error = %e, "delivering a one-time code failed; retrying");
                    }
                }
                _ = stop_rx.changed() => break,
            }
        }
    });
    // Audit entries commit unchained (see `audit`); this task chains them within a quarter
    // second, so the chain covers them almost as soon as they exist. It writes the
    // sessions' noted last use too (ADR 0026).
    let chain_app = app.clone();
    let (chain_stop_tx, mut chain_stop_rx) = tokio::sync::watch::channel(false);
    let chainer = tokio::spawn(async move {
        loop {
            record_deferred(&chain_app).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = chain_stop_rx.changed() => break,
            }
        }
    });
    let router = api::router(app.clone());
    let served = match tls {
        Some(config) => {
            use axum::serve::ListenerExt as _;
            // `tap_io` only to reach axum's `ConnectInfo<SocketAddr>` for this listener.
            let listener = TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
        }
        None => {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
        }
    };
    served.context("serving")?;
    let _ = stop_tx.send(true);
    let _ = chain_stop_tx.send(true);
    let _ = worker.await;
    let _ = chainer.await;
    if let Err(e) = audit::chain_pending(&app.db).await {
        tracing::warn!(error = %e, "chaining audit entries at shutdown failed; the next start chains them");
    }
    if let Err(e) = app.last_use.flush(&app.db).await {
        tracing::warn!(error = %e, "recording sessions' last use at shutdown failed");
    }
    app.db.close().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
