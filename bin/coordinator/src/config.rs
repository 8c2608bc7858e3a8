//! The coordinator's configuration: a TOML file whose every key has a documented default,
//! so `custody-coordinator serve` with no file starts on a local SQLite database.
//!
//! Values that protect users have floors ([`RiskConfig::validate`]): a configuration that
//! sets a hold shorter than the floor is refused at start-up, never silently raised.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Hours in seconds.
const HOUR: i64 = 3600;

/// Why a configuration is refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("configuration {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (line and key).
        message: String,
    },
    /// A value is below its safety floor.
    #[error(
        "{key} = {value} h is below the floor of {floor} h; holds may be longer, never shorter"
    )]
    BelowFloor {
        /// The configuration key.
        key: &'static str,
        /// The configured value in hours.
        value: i64,
        /// The floor in hours.
        floor: i64,
    },
    /// A value is out of its range.
    #[error("{key}: {message}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The Bitcoin network the coordinator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkName {
    /// Mainnet: development flags are refused.
    Bitcoin,
    /// testnet3.
    Testnet,
    /// testnet4.
    Testnet4,
    /// Signet.
    Signet,
    /// Regtest (the default, for development).
    Regtest,
}

impl NetworkName {
    /// The policy crate's network.
    pub fn to_policy(self) -> custody_policy::Network {
        match self {
            NetworkName::Bitcoin => custody_policy::Network::Bitcoin,
            NetworkName::Testnet => custody_policy::Network::Testnet,
            NetworkName::Testnet4 => custody_policy::Network::Testnet4,
            NetworkName::Signet => custody_policy::Network::Signet,
            NetworkName::Regtest => custody_policy::Network::Regtest,
        }
    }

    /// The `bitcoin` crate's network.
    pub fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            NetworkName::Bitcoin => bitcoin::Network::Bitcoin,
            NetworkName::Testnet => bitcoin::Network::Testnet,
            NetworkName::Testnet4 => bitcoin::Network::Testnet4,
            NetworkName::Signet => bitcoin::Network::Signet,
            NetworkName::Regtest => bitcoin::Network::Regtest,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8750` (loopback only).
    pub bind: SocketAddr,
    /// Directory for the SQLite database, the coordinator identity and development sinks.
    /// Default `./coordinator-data`.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`. Default: `sqlite://<data_dir>/coordinator.db`.
    /// A password in the URL is accepted but better kept in `database_password_file`.
    pub database_url: Option<String>,
    /// A file whose first line is the database password, appended to `database_url`.
    pub database_password_file: Option<PathBuf>,
    /// Most database connections (PostgreSQL; SQLite uses one writer). Default 16.
    pub database_max_connections: u32,
    /// The network. Default `regtest`.
    pub network: NetworkName,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Risk rules and hold durations.
    pub risk: RiskConfig,
    /// Sessions and passwords.
    pub auth: AuthConfig,
    /// Notifications.
    pub notifications: NotificationConfig,
    /// The wallet the coordinator spends from.
    pub wallet: WalletConfig,
    /// The chain backend (`kind = "file" | "esplora" | "bitcoind"`); none disables UTXO
    /// sync and broadcast.
    pub chain: Option<custody_chain::ChainConfig>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    /// Background work: coin sync and signed audit checkpoints.
    pub worker: WorkerConfig,
    /// Ethereum withdrawals (ETH and ERC-20, threshold ECDSA); none refuses them.
    pub ethereum: Option<EthereumConfig>,
    /// Encryption at rest: the vault key file.
    pub vault: VaultConfig,
    /// The base URL of the API as users reach it, for the links in emails (`https://…`,
    /// no query or fragment; a path prefix is kept). Default: `https://<bind>`
    /// (`https://localhost:<port>` when `bind` is a wildcard address).
    pub public_url: Option<String>,
    /// TLS for the API: a certificate and key, or none for a self-signed development
    /// certificate generated in `data_dir` on first run.
    pub tls: TlsConfig,
}

/// TLS for the API (`rustls`). Plain HTTP only with `serve --insecure-plain-http`, and
/// only on a loopback address.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM, leaf first). With `key_file`; both unset means a
    /// self-signed development certificate (`dev-cert.pem`, `dev-key.pem` in `data_dir`).
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM; PKCS#8, PKCS#1 or SEC1), readable by nobody but the owner
    /// and group (a world-readable key is refused).
    pub key_file: Option<PathBuf>,
}

/// Encryption at rest (KYC records, TOTP secrets, API key secrets).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// The key file (mode 0600): key-encryption keys and the blind-index key. Default
    /// `<data_dir>/vault.key`, created on first start. Keep a backup off the box: without
    /// it the sealed data cannot be read.
    pub key_file: Option<PathBuf>,
}

/// The Ethereum wallet: the threshold-ECDSA key and the chain it spends on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumConfig {
    /// The key-generation plan of the ECDSA key (`custody-signer eth`): its identity cards
    /// authenticate presignature plans and partial signatures.
    pub key_plan_file: PathBuf,
    /// The group key file the signers wrote after key generation.
    pub group_key_file: PathBuf,
    /// The highest max fee per gas the coordinator puts in a transaction, in gwei.
    /// Default 500; when the chain asks for more, the round waits instead of overpaying.
    #[serde(default = "default_max_fee_gwei")]
    pub max_fee_gwei: u64,
    /// The chain: `kind = "file"` (`path`, `chain_id`) or `"json-rpc"` (`url`, `chain_id`,
    /// `confirmations`, `timeout_secs`); see `crates/custody-evm`.
    pub chain: custody_evm::EvmConfig,
}

fn default_max_fee_gwei() -> u64 {
    500
}

impl EthereumConfig {
    /// The fee cap in wei per gas.
    pub fn max_fee_wei(&self) -> u128 {
        u128::from(self.max_fee_gwei) * 1_000_000_000
    }
}

/// Periodic work of the daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Seconds between coin syncs from the chain backend. Default 60.
    pub utxo_sync_secs: i64,
    /// Minutes between signed audit checkpoints written to `checkpoint_dir`. Default 60;
    /// 0 disables.
    pub checkpoint_minutes: i64,
    /// Where checkpoints go (relative paths under `data_dir`); ship this directory off the
    /// box. Default `checkpoints`.
    pub checkpoint_dir: PathBuf,
    /// Minutes after its broadcast a withdrawal still unconfirmed is reported to operations
    /// as stuck (`withdrawal.stuck`, once; the `custody_withdrawals_stuck` gauge meanwhile).
    /// Default 360; 0 disables.
    pub stuck_after_minutes: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            utxo_sync_secs: 60,
            checkpoint_minutes: 60,
            checkpoint_dir: PathBuf::from("checkpoints"),
            stuck_after_minutes: 360,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8750)),
            data_dir: PathBuf::from("coordinator-data"),
            database_url: None,
            database_password_file: None,
            database_max_connections: 16,
            network: NetworkName::Regtest,
            log_format: LogFormat::Text,
            risk: RiskConfig::default(),
            auth: AuthConfig::default(),
            notifications: NotificationConfig::default(),
            wallet: WalletConfig::default(),
            chain: None,
            trust_forwarded_for: false,
            worker: WorkerConfig::default(),
            ethereum: None,
            vault: VaultConfig::default(),
            public_url: None,
            tls: TlsConfig::default(),
        }
    }
}

/// Hold durations (floors apply) and the weights of the unusual-withdrawal rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Hold after a password change or reset. Default and floor 24 h.
    pub password_change_hold_hours: i64,
    /// Hold after a new device signs in. Default and floor 24 h.
    pub new_device_hold_hours: i64,
    /// Hold after a 2FA reset. Default and floor 48 h.
    pub two_factor_reset_hold_hours: i64,
    /// Hold after an email change. Default and floor 48 h.
    pub email_change_hold_hours: i64,
    /// Hold placed on a withdrawal whose risk score reaches `hold_score`. Default and
    /// floor 24 h.
    pub unusual_withdrawal_hold_hours: i64,
    /// The score at which a withdrawal is held. Default 50.
    pub hold_score: u32,
    /// Score for paying a destination this account never paid before. Default 30.
    pub new_destination_weight: u32,
    /// Score for an amount at or above `large_amount_sat`. Default 30.
    pub large_amount_weight: u32,
    /// What counts as a large amount, in satoshis. Default 10 000 000 (0.1 BTC).
    pub large_amount_sat: u64,
    /// What counts as a large amount of other assets, in base units as decimal strings,
    /// by policy asset id (`ETH`, `ERC20:0x…` in lower case). Default `ETH` = 10 ETH. An
    /// asset not listed is never "large" (its velocity is still watched).
    pub large_amounts: std::collections::BTreeMap<String, String>,
    /// Score for a 24-hour total above `velocity_multiplier` × the account's average daily
    /// total over the previous 30 days (or any amount above `large_amount_sat` with no
    /// history). Default 40.
    pub velocity_weight: u32,
    /// See `velocity_weight`. Default 3.0.
    pub velocity_multiplier: f64,
    /// Score for a request from an IP address first seen in the last 24 h. Default 20.
    pub new_ip_weight: u32,
    /// Score for a request within 7 days after a password, email or 2FA change. Default 30.
    pub recent_sensitive_change_weight: u32,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            password_change_hold_hours: 24,
            new_device_hold_hours: 24,
            two_factor_reset_hold_hours: 48,
            email_change_hold_hours: 48,
            unusual_withdrawal_hold_hours: 24,
            hold_score: 50,
            new_destination_weight: 30,
            large_amount_weight: 30,
            large_amount_sat: 10_000_000,
            large_amounts: [("ETH".to_owned(), "10000000000000000000".to_owned())]
                .into_iter()
                .collect(),
            velocity_weight: 40,
            velocity_multiplier: 3.0,
            new_ip_weight: 20,
            recent_sensitive_change_weight: 30,
        }
    }
}

impl RiskConfig {
    /// The public floors, in hours: Binance, Coinbase and OKX practice (DESIGN.md).
    pub const FLOORS: [(&'static str, i64); 5] = [
        ("risk.password_change_hold_hours", 24),
        ("risk.new_device_hold_hours", 24),
        ("risk.two_factor_reset_hold_hours", 48),
        ("risk.email_change_hold_hours", 48),
        ("risk.unusual_withdrawal_hold_hours", 24),
    ];

    fn values(&self) -> [i64; 5] {
        [
            self.password_change_hold_hours,
            self.new_device_hold_hours,
            self.two_factor_reset_hold_hours,
            self.email_change_hold_hours,
            self.unusual_withdrawal_hold_hours,
        ]
    }

    /// Refuses hold durations below the floors and nonsensical weights.
    ///
    /// # Errors
    /// [`ConfigError::BelowFloor`] naming the key, or [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        for ((key, floor), value) in Self::FLOORS.iter().zip(self.values()) {
            if value < *floor {
                return Err(ConfigError::BelowFloor {
                    key,
                    value,
                    floor: *floor,
                });
            }
        }
        if self.hold_score == 0 {
            return Err(ConfigError::Invalid {
                key: "risk.hold_score",
                message: "must be at least 1 (0 would hold every withdrawal)".into(),
            });
        }
        if !(self.velocity_multiplier.is_finite() && self.velocity_multiplier >= 1.0) {
            return Err(ConfigError::Invalid {
                key: "risk.velocity_multiplier",
                message: "must be a finite number >= 1.0".into(),
            });
        }
        for (asset, amount) in &self.large_amounts {
            if amount.parse::<u128>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "risk.large_amounts",
                    message: format!("{asset} = {amount:?} is not a whole number of base units"),
                });
            }
        }
        Ok(())
    }

    /// The large-amount threshold of `asset` in base units, if it has one.
    pub fn large_amount(&self, asset: &str) -> Option<u128> {
        if asset == "BTC" {
            return Some(u128::from(self.large_amount_sat));
        }
        self.large_amounts.get(asset)?.parse().ok()
    }

    /// Seconds of hold after a password change or reset.
    pub fn password_change_hold(&self) -> i64 {
        self.password_change_hold_hours * HOUR
    }
    /// Seconds of hold after a new device.
    pub fn new_device_hold(&self) -> i64 {
        self.new_device_hold_hours * HOUR
    }
    /// Seconds of hold after a 2FA reset.
    pub fn two_factor_reset_hold(&self) -> i64 {
        self.two_factor_reset_hold_hours * HOUR
    }
    /// Seconds of hold after an email change.
    pub fn email_change_hold(&self) -> i64 {
        self.email_change_hold_hours * HOUR
    }
    /// Seconds of hold on an unusual withdrawal.
    pub fn unusual_withdrawal_hold(&self) -> i64 {
        self.unusual_withdrawal_hold_hours * HOUR
    }
}

/// Sessions, passwords and whitelist timing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Session lifetime in minutes. Default 60.
    pub session_minutes: i64,
    /// argon2id memory in KiB. Default and floor 19456 (OWASP).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default and floor 2.
    pub argon2_iterations: u32,
    /// Delay before a new withdrawal address becomes usable, in hours. Default and floor 24.
    pub whitelist_activation_hours: i64,
    /// Path of a file holding the ingestion token the exchange's account system presents
    /// (`Authorization: Bearer …`) to `POST /v1/events`. Unset disables ingestion.
    pub ingest_token_file: Option<PathBuf>,
    /// Hold after the whitelist-only mode is turned off. Default and floor 24 h.
    pub whitelist_off_hold_hours: i64,
    /// WebAuthn (security keys and passkeys).
    pub webauthn: WebAuthnSettings,
    /// Attempt limits and lockout.
    pub limits: LimitSettings,
    /// Where SMS codes go: a provider webhook or (development) a file.
    pub sms: SmsSettings,
    /// How many recovery codes a set has. Default 10.
    pub recovery_codes: usize,
    /// Signed API requests: how far a request's timestamp may be from the server's time, in
    /// seconds. Default 120, at most 300.
    pub api_replay_window_secs: i64,
}

/// The WebAuthn relying party.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebAuthnSettings {
    /// The relying party id: the site's registrable domain. Default `localhost`.
    pub rp_id: String,
    /// The name authenticators show. Default `CoinPort Custody`.
    pub rp_name: String,
    /// The web origins allowed to answer ceremonies. Default `https://localhost:8750`.
    pub origins: Vec<String>,
    /// How long a ceremony may take, in seconds. Default 300.
    pub timeout_secs: i64,
}

impl Default for WebAuthnSettings {
    fn default() -> Self {
        WebAuthnSettings {
            rp_id: "localhost".into(),
            rp_name: "CoinPort Custody".into(),
            origins: vec!["https://localhost:8750".into()],
            timeout_secs: 300,
        }
    }
}

impl WebAuthnSettings {
    /// Refuses the development relying party on mainnet: a security key registered for
    /// `localhost` (or a loopback address) works nowhere else, so users' keys would have to
    /// be registered again once the setting is corrected.
    fn check_for_mainnet(&self) -> Result<(), ConfigError> {
        let local_origin = self.origins.iter().find(|o| {
            url::Url::parse(o)
                .ok()
                .and_then(|u| u.host_str().map(is_loopback_host))
                .unwrap_or(false)
        });
        if is_loopback_host(&self.rp_id) || local_origin.is_some() {
            return Err(ConfigError::Invalid {
                key: "auth.webauthn",
                message: "on mainnet set rp_id to the exchange's domain and origins to the web pages that ask for security keys (the defaults, localhost, are for development: keys registered for them work nowhere else)".into(),
            });
        }
        Ok(())
    }
}

/// Attempt limits (per account and per IP, in memory) and the lockout (per account,
/// stored).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Password sign-ins per account: burst. Default 10.
    pub login_burst_per_account: u32,
    /// Password sign-ins per account: one more every this many seconds. Default 60.
    pub login_period_per_account_secs: u32,
    /// Password sign-ins per IP: burst. Default 30.
    pub login_burst_per_ip: u32,
    /// Password sign-ins per IP: one more every this many seconds. Default 10.
    pub login_period_per_ip_secs: u32,
    /// Code attempts (2FA, recovery) per account: burst. Default 5.
    pub code_burst_per_account: u32,
    /// Code attempts per account: one more every this many seconds. Default 60.
    pub code_period_per_account_secs: u32,
    /// Code attempts per IP: burst. Default 20.
    pub code_burst_per_ip: u32,
    /// Code attempts per IP: one more every this many seconds. Default 10.
    pub code_period_per_ip_secs: u32,
    /// Failures (password or code) that lock an account. Default 5.
    pub lockout_failures: u32,
    /// The window those failures must fall in, in seconds. Default 900.
    pub lockout_window_secs: i64,
    /// The first lock, in seconds; each consecutive lock doubles it. Default 900.
    pub lockout_secs: i64,
    /// The longest lock, in seconds. Default 86400.
    pub lockout_max_secs: i64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let l = custody_auth::AttemptLimits::default();
        let p = custody_auth::LockoutPolicy::default();
        LimitSettings {
            login_burst_per_account: l.login_per_account.burst,
            login_period_per_account_secs: l.login_per_account.period_secs,
            login_burst_per_ip: l.login_per_ip.burst,
            login_period_per_ip_secs: l.login_per_ip.period_secs,
            code_burst_per_account: l.code_per_account.burst,
            code_period_per_account_secs: l.code_per_account.period_secs,
            code_burst_per_ip: l.code_per_ip.burst,
            code_period_per_ip_secs: l.code_per_ip.period_secs,
            lockout_failures: p.max_failures,
            lockout_window_secs: p.window_secs,
            lockout_secs: p.lock_secs,
            lockout_max_secs: p.max_lock_secs,
        }
    }
}

impl LimitSettings {
    /// The limiter settings.
    pub fn attempt_limits(&self) -> custody_auth::AttemptLimits {
        let rate = |burst, period_secs| custody_auth::AttemptRate { burst, period_secs };
        custody_auth::AttemptLimits {
            login_per_account: rate(
                self.login_burst_per_account,
                self.login_period_per_account_secs,
            ),
            login_per_ip: rate(self.login_burst_per_ip, self.login_period_per_ip_secs),
            code_per_account: rate(
                self.code_burst_per_account,
                self.code_period_per_account_secs,
            ),
            code_per_ip: rate(self.code_burst_per_ip, self.code_period_per_ip_secs),
        }
    }

    /// The lockout policy.
    pub fn lockout(&self) -> custody_auth::LockoutPolicy {
        custody_auth::LockoutPolicy {
            max_failures: self.lockout_failures,
            window_secs: self.lockout_window_secs,
            lock_secs: self.lockout_secs,
            max_lock_secs: self.lockout_max_secs,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            self.login_burst_per_account,
            self.login_period_per_account_secs,
            self.login_burst_per_ip,
            self.login_period_per_ip_secs,
            self.code_burst_per_account,
            self.code_period_per_account_secs,
            self.code_burst_per_ip,
            self.code_period_per_ip_secs,
            self.lockout_failures,
        ];
        if all.contains(&0) {
            return Err(ConfigError::Invalid {
                key: "auth.limits",
                message: "bursts, periods and lockout_failures must be at least 1".into(),
            });
        }
        if self.lockout_failures > 100 {
            return Err(ConfigError::Invalid {
                key: "auth.limits.lockout_failures",
                message: "more than 100 failures before a lockout is no lockout".into(),
            });
        }
        if self.lockout_window_secs < 60
            || self.lockout_secs < 60
            || self.lockout_max_secs < self.lockout_secs
        {
            return Err(ConfigError::Invalid {
                key: "auth.limits.lockout_secs",
                message: "the lockout window and lock must be at least 60 s, and lockout_max_secs at least lockout_secs".into(),
            });
        }
        Ok(())
    }
}

/// SMS delivery through a provider adapter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// The provider's webhook: the coordinator POSTs `{"to": "+…", "text": "…"}` signed like
    /// notification webhooks (`X-Custody-Signature`).
    pub webhook_url: Option<String>,
    /// A file with the webhook's HMAC secret (first line).
    pub webhook_secret_file: Option<PathBuf>,
    /// Development sink: every SMS is appended to this JSON Lines file (relative paths are
    /// under `data_dir`). Used when no webhook is set.
    pub file_sink: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_minutes: 60,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            whitelist_activation_hours: 24,
            ingest_token_file: None,
            whitelist_off_hold_hours: 24,
            webauthn: WebAuthnSettings::default(),
            limits: LimitSettings::default(),
            sms: SmsSettings {
                file_sink: Some(PathBuf::from("sms.jsonl")),
                ..SmsSettings::default()
            },
            recovery_codes: 10,
            api_replay_window_secs: 120,
        }
    }
}

impl AuthConfig {
    /// The WebAuthn relying-party configuration (origins that do not parse are reported by
    /// [`validate`](Self::validate)).
    pub fn webauthn_config(&self) -> custody_auth::WebAuthnConfig {
        custody_auth::WebAuthnConfig {
            rp_id: self.webauthn.rp_id.clone(),
            rp_name: self.webauthn.rp_name.clone(),
            origins: self
                .webauthn
                .origins
                .iter()
                .filter_map(|o| url::Url::parse(o).ok())
                .collect(),
            ceremony_timeout_secs: self.webauthn.timeout_secs,
        }
    }

    /// The hold after the whitelist-only mode is turned off, in seconds.
    pub fn whitelist_off_hold(&self) -> i64 {
        self.whitelist_off_hold_hours * 3600
    }

    /// Refuses weak password hashing, silly session lengths and short activation delays.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] or [`ConfigError::BelowFloor`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.argon2_memory_kib < 19_456 || self.argon2_iterations < 2 {
            return Err(ConfigError::Invalid {
                key: "auth.argon2_memory_kib",
                message: "argon2id needs at least 19456 KiB and 2 iterations".into(),
            });
        }
        if !(1..=24 * 60).contains(&self.session_minutes) {
            return Err(ConfigError::Invalid {
                key: "auth.session_minutes",
                message: "must be between 1 and 1440".into(),
            });
        }
        if self.whitelist_activation_hours < 24 {
            return Err(ConfigError::BelowFloor {
                key: "auth.whitelist_activation_hours",
                value: self.whitelist_activation_hours,
                floor: 24,
            });
        }
        if self.whitelist_off_hold_hours < 24 {
            return Err(ConfigError::BelowFloor {
                key: "auth.whitelist_off_hold_hours",
                value: self.whitelist_off_hold_hours,
                floor: 24,
            });
        }
        self.limits.validate()?;
        if !(1..=custody_auth::MAX_RECOVERY_CODES).contains(&self.recovery_codes) {
            return Err(ConfigError::Invalid {
                key: "auth.recovery_codes",
                message: format!("must be between 1 and {}", custody_auth::MAX_RECOVERY_CODES),
            });
        }
        if !(1..=custody_auth::MAX_REPLAY_WINDOW_SECS).contains(&self.api_replay_window_secs) {
            return Err(ConfigError::Invalid {
                key: "auth.api_replay_window_secs",
                message: format!(
                    "must be between 1 and {}",
                    custody_auth::MAX_REPLAY_WINDOW_SECS
                ),
            });
        }
        if self.sms.webhook_url.is_some() != self.sms.webhook_secret_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "auth.sms.webhook_url",
                message: "a webhook needs webhook_secret_file, and the other way round".into(),
            });
        }
        if let Some(bad) = self
            .webauthn
            .origins
            .iter()
            .find(|o| url::Url::parse(o).is_err())
        {
            return Err(ConfigError::Invalid {
                key: "auth.webauthn.origins",
                message: format!("{bad:?} is not a URL (https://host[:port])"),
            });
        }
        custody_auth::WebAuthn::new(&self.webauthn_config()).map_err(|e| ConfigError::Invalid {
            key: "auth.webauthn",
            message: e.to_string(),
        })?;
        Ok(())
    }
}

/// Where notifications go. Every configured channel gets its own outbox row per
/// notification, delivered and retried independently.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    /// Development sink: every notification is appended to this JSON Lines file
    /// (relative paths are under `data_dir`). Default `notifications.jsonl`; `false`-like
    /// empty string disables it.
    pub file_sink: Option<PathBuf>,
    /// Email to the account's address through an SMTP relay.
    pub smtp: Option<SmtpConfig>,
    /// A JSON POST per notification to the exchange's systems, signed with HMAC-SHA256.
    pub webhook: Option<WebhookConfig>,
    /// Attempts before a notification is given up and marked failed. Default 12 (with
    /// backoff from 1 minute doubling to 1 hour: about 8 hours).
    pub max_attempts: u32,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            file_sink: Some(PathBuf::from("notifications.jsonl")),
            smtp: None,
            webhook: None,
            max_attempts: 12,
        }
    }
}

/// How to reach the SMTP relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS on the submission port (587).
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// Plain text: only to a relay on a loopback address (a local MTA or a test sink).
    None,
}

/// SMTP relay settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name.
    pub host: String,
    /// Port. Default 587.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` or `none` (loopback only).
    #[serde(default = "default_smtp_security")]
    pub security: SmtpSecurity,
    /// The sender, e.g. `CoinPort Security <security@example.com>`.
    pub from: String,
    /// User name, if the relay needs one (with `password_file`).
    pub username: Option<String>,
    /// File whose first line is the relay password.
    pub password_file: Option<PathBuf>,
    /// Bound on one delivery, in seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Webhook settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (`https://…`; `http://` only to a loopback address).
    pub url: String,
    /// File whose first line is the HMAC key; the body's HMAC-SHA256 is sent in
    /// `X-Custody-Signature: sha256=<hex>`.
    pub secret_file: PathBuf,
    /// Bound on one delivery, in seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn default_timeout() -> u64 {
    30
}

fn check_public_url(text: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "public_url",
        message,
    };
    let u = url::Url::parse(text).map_err(|e| {
        invalid(format!(
            "{text:?} is not an absolute URL ({e}); write it as https://host[:port][/prefix]"
        ))
    })?;
    if !matches!(u.scheme(), "https" | "http") {
        return Err(invalid(format!(
            "{text:?} must start with https:// (or http://)"
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{text:?} has no host")));
    }
    if u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(invalid(format!(
            "{text:?} may not carry a query, a fragment or credentials"
        )));
    }
    Ok(())
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl NotificationConfig {
    /// Refuses plain-text channels to anything but loopback.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.smtp {
            if s.security == SmtpSecurity::None && !is_loopback_host(&s.host) {
                return Err(ConfigError::Invalid {
                    key: "notifications.smtp.security",
                    message: format!(
                        "plain-text SMTP is allowed only to a loopback relay, not {}",
                        s.host
                    ),
                });
            }
        }
        if let Some(w) = &self.webhook {
            let ok = if let Some(rest) = w.url.strip_prefix("http://") {
                let host = rest.split(['/', ':']).next().unwrap_or_default();
                is_loopback_host(host)
            } else {
                w.url.starts_with("https://")
            };
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "notifications.webhook.url",
                    message: "must be https:// (or http:// to a loopback address)".into(),
                });
            }
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::Invalid {
                key: "notifications.max_attempts",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The wallet.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// The group key file a signer wrote after the DKG (`group.key` in its home).
    pub group_key_file: Option<PathBuf>,
    /// The DKG ceremony plan: its identity cards authenticate the signers' commitment
    /// envelopes.
    pub plan_file: Option<PathBuf>,
    /// Fee rate for withdrawals, in sat/vB. Default 2.
    pub fee_rate_sat_vb: u64,
    /// Confirmations a coin paid to the wallet from outside needs before withdrawals may
    /// spend it (1–1 000). Default 1. The change of the wallet's own transactions (the
    /// withdrawals it sent) is spendable at once: only the wallet could replace them.
    pub min_confirmations: u32,
}

impl Default for WalletConfig {
    fn default() -> Self {
        WalletConfig {
            group_key_file: None,
            plan_file: None,
            fee_rate_sat_vb: 2,
            min_confirmations: 1,
        }
    }
}

impl Config {
    /// Reads and validates `path`; `None` gives the defaults.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key or floor.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every section.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.risk.validate()?;
        self.auth.validate()?;
        self.notifications.validate()?;
        if self.database_max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "database_max_connections",
                message: "must be at least 1".into(),
            });
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "tls",
                    message:
                        "set both cert_file and key_file, or neither for a development certificate"
                            .into(),
                });
            }
            _ => {}
        }
        if let Some(u) = &self.public_url {
            check_public_url(u)?;
        }
        if !(1..=1000).contains(&self.wallet.min_confirmations) {
            return Err(ConfigError::Invalid {
                key: "wallet.min_confirmations",
                message:
                    "must be 1 to 1000: a coin still in the mempool can be replaced by its sender"
                        .into(),
            });
        }
        if self.network == NetworkName::Bitcoin {
            self.auth.webauthn.check_for_mainnet()?;
        }
        if let Some(eth) = &self.ethereum {
            // Mainnet money only with mainnet money: the policy document names one network.
            let mainnet_chain = eth.chain.chain_id() == 1;
            let mainnet = self.network == NetworkName::Bitcoin;
            if mainnet_chain != mainnet {
                return Err(ConfigError::Invalid {
                    key: "ethereum.chain.chain_id",
                    message: format!(
                        "chain {} does not go with network {} (Ethereum mainnet, chain 1, only with network bitcoin; test chains only with test networks)",
                        eth.chain.chain_id(),
                        self.network.to_policy().as_str()
                    ),
                });
            }
            if eth.max_fee_gwei == 0 {
                return Err(ConfigError::Invalid {
                    key: "ethereum.max_fee_gwei",
                    message: "must be at least 1".into(),
                });
            }
            // A round above the signers' own cap would be refused by every signer.
            let signers = custody_ethereum::FeeLimits::default().max_fee_per_gas;
            if eth.max_fee_wei() > signers {
                return Err(ConfigError::Invalid {
                    key: "ethereum.max_fee_gwei",
                    message: format!(
                        "must be at most {}: signers refuse a higher fee per gas",
                        signers / 1_000_000_000
                    ),
                });
            }
        }
        Ok(())
    }

    /// The database URL, defaulting to SQLite in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("coordinator.db").display()
            ),
        }
    }

    /// The vault key file, resolved under `data_dir`.
    pub fn vault_key_file(&self) -> PathBuf {
        match &self.vault.key_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => self.data_dir.join(p),
            None => self.data_dir.join(crate::vault::VAULT_KEY_FILE),
        }
    }

    /// The checkpoint directory, resolved under `data_dir`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        if self.worker.checkpoint_dir.is_absolute() {
            self.worker.checkpoint_dir.clone()
        } else {
            self.data_dir.join(&self.worker.checkpoint_dir)
        }
    }

    /// The base URL links in emails start with, without a trailing `/`: `public_url`, or
    /// `https://<bind>` (`localhost` for a wildcard bind address).
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let port = self.bind.port();
                match self.bind.ip() {
                    ip if ip.is_unspecified() => format!("https://localhost:{port}"),
                    std::net::IpAddr::V4(ip) => format!("https://{ip}:{port}"),
                    std::net::IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
                }
            }
        }
    }

    /// Where the API's certificate comes from: the configured files, or a development
    /// certificate in `data_dir` for `localhost`, the loopback addresses, the bind address
    /// and the host of `public_url`.
    pub fn tls_source(&self) -> custody_auth::TlsSource {
        if let (Some(cert), Some(key)) = (&self.tls.cert_file, &self.tls.key_file) {
            return custody_auth::TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        let mut hostnames = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let mut add = |h: String| {
            if !h.is_empty() && !hostnames.contains(&h) {
                hostnames.push(h);
            }
        };
        if !self.bind.ip().is_unspecified() {
            add(self.bind.ip().to_string());
        }
        if let Some(host) = url::Url::parse(&self.public_url())
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
        {
            add(host);
        }
        custody_auth::TlsSource::SelfSigned {
            dir: self.data_dir.clone(),
            hostnames,
        }
    }

    /// The notification file sink path, resolved under `data_dir`; `None` when disabled.
    pub fn notification_file(&self) -> Option<PathBuf> {
        let p = self.notifications.file_sink.clone()?;
        if p.as_os_str().is_empty() {
            return None;
        }
        Some(if p.is_absolute() {
            p
        } else {
            self.data_dir.join(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::default();
        c.validate().expect("defaults pass");
        assert!(c.bind.ip().is_loopback());
        assert!(c.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn a_hold_below_its_floor_is_refused_with_the_key_named() {
        let text = "[risk]\ntwo_factor_reset_hold_hours = 24\n";
        let c: Config = toml::from_str(text).expect("parses");
        let e = c.validate().expect_err("below floor");
        assert!(e.to_string().contains("risk.two_factor_reset_hold_hours"));
        assert!(e.to_string().contains("48"));
    }

    #[test]
    fn longer_holds_are_accepted() {
        let text = "[risk]\nemail_change_hold_hours = 120\n";
        let c: Config = toml::from_str(text).expect("parses");
        c.validate().expect("longer is fine");
        assert_eq!(c.risk.email_change_hold(), 120 * 3600);
    }

    #[test]
    fn public_url_must_be_an_absolute_http_url() {
        let mut c = Config::default();
        assert_eq!(c.public_url(), "https://127.0.0.1:8750");
        c.bind = "0.0.0.0:443".parse().expect("addr");
        assert_eq!(c.public_url(), "https://localhost:443");
        c.public_url = Some("https://custody.example.com/api/".into());
        c.validate().expect("valid");
        assert_eq!(c.public_url(), "https://custody.example.com/api");
        for bad in [
            "custody.example.com",
            "/v1",
            "ftp://custody.example.com",
            "https://custody.example.com/?a=b",
            "https://user:pw@custody.example.com",
        ] {
            c.public_url = Some(bad.into());
            let e = c.validate().expect_err(bad);
            assert!(e.to_string().starts_with("public_url:"), "{e}");
        }
    }

    #[test]
    fn mempool_coins_from_outside_are_never_spendable() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (6, true),
            (1000, true),
            (1001, false),
        ] {
            let text = format!("[wallet]\nmin_confirmations = {n}\n");
            let c: Config = toml::from_str(&text).expect("parses");
            match c.validate() {
                Ok(()) => assert!(ok, "{n} accepted"),
                Err(e) => {
                    assert!(!ok, "{n}: {e}");
                    assert!(e.to_string().contains("wallet.min_confirmations"), "{e}");
                }
            }
        }
    }

    #[test]
    fn tls_needs_both_files_or_neither() {
        let c: Config = toml::from_str("[tls]\ncert_file = \"/etc/c.pem\"\n").expect("parses");
        let e = c.validate().expect_err("half");
        assert!(e.to_string().contains("key_file"), "{e}");
        let c = Config::default();
        match c.tls_source() {
            custody_auth::TlsSource::SelfSigned { dir, hostnames } => {
                assert_eq!(dir, c.data_dir);
                assert!(hostnames.contains(&"localhost".to_owned()));
                assert!(hostnames.contains(&"127.0.0.1".to_owned()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_ethereum_fee_cap_signers_would_refuse_is_rejected() {
        let section = |gwei: u64| {
            format!(
                "network = \"regtest\"\n[ethereum]\nkey_plan_file = \"p.bin\"\ngroup_key_file = \"g.key\"\n\
                 max_fee_gwei = {gwei}\n[ethereum.chain]\nkind = \"file\"\npath = \"chain.json\"\nchain_id = 31337\n"
            )
        };
        let ok: Config = toml::from_str(&section(1_000)).expect("parses");
        ok.validate().expect("at the signers' cap");
        let high: Config = toml::from_str(&section(1_001)).expect("parses");
        let e = high.validate().expect_err("above the signers' cap");
        assert!(e.to_string().contains("ethereum.max_fee_gwei"), "{e}");
        assert!(e.to_string().contains("at most 1000"), "{e}");
    }

    #[test]
    fn mainnet_needs_a_real_webauthn_relying_party() {
        let with = |webauthn: &str| {
            toml::from_str::<Config>(&format!("network = \"bitcoin\"\n{webauthn}"))
                .expect("parses")
                .validate()
        };
        let e = with("").expect_err("localhost defaults on mainnet");
        assert!(
            e.to_string().starts_with("auth.webauthn: on mainnet"),
            "{e}"
        );
        let e = with("[auth.webauthn]\nrp_id = \"localhost\"\norigins = [\"https://localhost\"]\n")
            .expect_err("localhost set explicitly");
        assert!(
            e.to_string().starts_with("auth.webauthn: on mainnet"),
            "{e}"
        );
        let e = with("[auth.webauthn]\nrp_id = \"exchange.example\"\n")
            .expect_err("the default origin is localhost");
        assert!(e.to_string().contains("auth.webauthn"), "{e}");
        with("[auth.webauthn]\nrp_id = \"exchange.example\"\norigins = [\"https://www.exchange.example\"]\n")
            .expect("a real relying party");
        let e = with("[auth.webauthn]\nrp_id = \"127.0.0.1\"\norigins = [\"https://www.exchange.example\"]\n")
            .expect_err("a loopback address");
        assert!(e.to_string().contains("auth.webauthn"), "{e}");
        // Test networks keep the development defaults.
        toml::from_str::<Config>("network = \"testnet\"\n")
            .expect("parses")
            .validate()
            .expect("defaults off mainnet");
    }

    #[test]
    fn unknown_keys_are_errors_not_ignored() {
        let text = "[risk]\npassword_hold_hours = 1\n";
        assert!(toml::from_str::<Config>(text).is_err());
    }
}
