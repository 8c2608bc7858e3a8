//! Second factors and the step-up check every sensitive action runs.
//!
//! Factors: an authenticator app (TOTP, RFC 6238), security keys and passkeys (WebAuthn,
//! user verification required), one-time codes by email and by SMS, and recovery codes.
//! Which combinations authorise what is `custody_auth::authorise` (ADR 0017): SMS is a
//! restricted authenticator and never authorises a withdrawal or a security change alone.
//!
//! WebAuthn, email and SMS answers need a challenge first
//! (`POST /v1/me/second-factor/challenges`, or `POST /v1/sessions/challenges` before
//! sign-in); the answer names the challenge, which is used up by the attempt.
//!
//! Every code attempt is rate-limited per account and per IP (in memory), and every
//! failure counts towards the account lockout (stored). A failure is recorded after the
//! request's own transaction has rolled back (see [`AuthFailure`] and
//! [`record_failures`]), so the count survives the refusal.

use std::net::IpAddr;

use anyhow::Context as _;
use axum::http::StatusCode;
use custody_auth::{
    authorise, Action, Factor, HashKey, LockoutState, OtpChannel, OtpPolicy, OtpRecord,
    RecoveryCodeSet, StoredCredential, WebAuthnUser,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::Principal;
use crate::app::App;
use crate::db::{int, opt_text, text, Db, Reads, Tx};
use crate::error::ApiError;
use crate::risk::{self, EventKind};
use crate::vault::Vault;

const HASH_KEY_NAME: &str = "auth.hash_key";

/// Loads the key that email/SMS codes and recovery codes are hashed with, creating it on
/// first start. It is sealed by the vault key file and shared by every coordinator
/// process on the database.
///
/// # Errors
/// Storage failure or a sealed value that does not open.
pub async fn load_or_create_hash_key(db: &Db, vault: &Vault, now: i64) -> anyhow::Result<HashKey> {
    let record = format!("coordinator_secrets/{HASH_KEY_NAME}");
    let read = || {
        sqlx::query("SELECT sealed FROM coordinator_secrets WHERE name = $1")
            .bind(HASH_KEY_NAME)
            .fetch_optional(db.pool())
    };
    let stored = match read().await.context("reading the code-hash key")? {
        Some(row) => row,
        None => {
            let fresh = HashKey::generate();
            let sealed = vault
                .seal_text(
                    custody_vault::Purpose::Secret,
                    &record,
                    fresh.expose_secret(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Whoever inserts first wins; everyone uses the stored one.
            sqlx::query(
                "INSERT INTO coordinator_secrets (name, sealed, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
            )
            .bind(HASH_KEY_NAME)
            .bind(&sealed)
            .bind(now)
            .execute(db.pool())
            .await
            .context("storing the code-hash key")?;
            read()
                .await
                .context("reading the code-hash key")?
                .context("the code-hash key was not stored")?
        }
    };
    let stored: String = stored.try_get("sealed")?;
    let bytes = vault
        .open_text(custody_vault::Purpose::Secret, &record, &stored)
        .map_err(|e| {
            anyhow::anyhow!("the code-hash key does not open with this vault key file: {e}")
        })?;
    let key: [u8; custody_auth::HASH_KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored code-hash key has the wrong length"))?;
    Ok(HashKey::from_bytes(key))
}

/// The vault record id of a principal's TOTP secret.
fn totp_record(principal_id: &str) -> String {
    format!("principals/{principal_id}/totp_secret")
}

/// Seals a TOTP secret (hex) for storage in `principals.totp_secret`.
///
/// # Errors
/// 500 on a sealing failure.
pub fn seal_totp(app: &App, principal_id: &str, secret_hex: &str) -> Result<String, ApiError> {
    app.vault.seal_text(
        custody_vault::Purpose::TotpSecret,
        &totp_record(principal_id),
        secret_hex.as_bytes(),
    )
}

/// Opens a stored TOTP secret back to hex.
///
/// # Errors
/// 500 when it does not open (moved row, damaged value, missing KEK).
pub fn open_totp(
    app: &App,
    principal_id: &str,
    stored: &str,
) -> Result<Zeroizing<String>, ApiError> {
    let bytes = app.vault.open_text(
        custody_vault::Purpose::TotpSecret,
        &totp_record(principal_id),
        stored,
    )?;
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| ApiError::internal("a sealed TOTP secret is not text"))
}

/// Seals TOTP secrets stored in plain text by earlier versions. Runs at start-up.
///
/// # Errors
/// Storage failure.
pub async fn seal_legacy_totp_secrets(db: &Db, vault: &Vault) -> anyhow::Result<usize> {
    // Only plain hex secrets (40 characters; a sealed one is far longer) are read.
    let rows = sqlx::query("SELECT id, totp_secret FROM principals WHERE length(totp_secret) = 40")
        .fetch_all(db.pool())
        .await?;
    let mut sealed = 0;
    for r in rows {
        let id: String = r.try_get("id")?;
        let stored = Zeroizing::new(r.try_get::<String, _>("totp_secret")?);
        let legacy = stored.len() == 40 && stored.bytes().all(|b| b.is_ascii_hexdigit());
        if !legacy {
            continue;
        }
        let text = vault
            .seal_text(
                custody_vault::Purpose::TotpSecret,
                &totp_record(&id),
                stored.as_bytes(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sqlx::query("UPDATE principals SET totp_secret = $1 WHERE id = $2 AND totp_secret = $3")
            .bind(&text)
            .bind(&id)
            .bind(stored.as_str())
            .execute(db.pool())
            .await?;
        sealed += 1;
    }
    Ok(sealed)
}

/// A WebAuthn answer to a challenge.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct WebAuthnAnswer {
    /// The challenge it answers.
    pub challenge_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// An email or SMS code answering a challenge.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct CodeAnswer {
    /// The challenge the code was sent for.
    pub challenge_id: String,
    /// The code.
    pub code: String,
}

/// Second-factor proof sent with a sensitive request (flattened into its body). Send what
/// the action needs: a security key / passkey or an authenticator-app code alone, or both
/// an email and an SMS code; for security changes a recovery code also does. SMS alone
/// never does.
#[derive(Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct StepUp {
    /// A current authenticator-app code.
    pub totp: Option<String>,
    /// A security key or passkey answer.
    pub webauthn: Option<WebAuthnAnswer>,
    /// An email code.
    pub email_code: Option<CodeAnswer>,
    /// An SMS code.
    pub sms_code: Option<CodeAnswer>,
    /// An unused recovery code.
    pub recovery_code: Option<String>,
}

impl std::fmt::Debug for StepUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUp")
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .field("webauthn", &self.webauthn.as_ref().map(|a| &a.challenge_id))
            .field(
                "email_code",
                &self.email_code.as_ref().map(|a| &a.challenge_id),
            )
            .field("sms_code", &self.sms_code.as_ref().map(|a| &a.challenge_id))
            .field(
                "recovery_code",
                &self.recovery_code.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl StepUp {
    /// Only a TOTP code (the form older clients send).
    pub fn totp(code: Option<&str>) -> Self {
        StepUp {
            totp: code.map(str::to_owned),
            ..StepUp::default()
        }
    }

    /// Whether nothing was presented.
    pub fn is_empty(&self) -> bool {
        self.totp.is_none()
            && self.webauthn.is_none()
            && self.email_code.is_none()
            && self.sms_code.is_none()
            && self.recovery_code.is_none()
    }
}

/// A failed factor, recorded (lockout count, event) after the request's transaction is
/// gone. Carried by the [`ApiError`] and handled by the [`record_failures`] middleware.
#[derive(Clone, Debug)]
pub struct AuthFailure {
    /// The account.
    pub principal_id: String,
    /// The client address.
    pub ip: String,
    /// What failed (`password`, `totp`, `webauthn`, …).
    pub what: &'static str,
    /// The challenge the wrong answer named: the attempt is charged to it after the
    /// rollback too (a WebAuthn challenge is used up, a code's attempt counter moves).
    pub challenge_id: Option<String>,
}

fn bad_factor(principal: &Principal, ip: &str, what: &'static str, message: String) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "bad_2fa", message);
    e.auth_failure = Some(Box::new(AuthFailure {
        principal_id: principal.id.clone(),
        ip: ip.to_owned(),
        what,
        challenge_id: None,
    }));
    e
}

/// [`bad_factor`] for a wrong answer to a known challenge.
fn bad_answer(
    principal: &Principal,
    ip: &str,
    what: &'static str,
    challenge_id: &str,
    message: String,
) -> ApiError {
    let mut e = bad_factor(principal, ip, what, message);
    if let Some(f) = e.auth_failure.as_mut() {
        f.challenge_id = Some(challenge_id.to_owned());
    }
    e
}

/// Charges a wrong answer to its challenge: an email/SMS code counts the attempt (the
/// code stops working after its `max_attempts`), anything else is used up.
async fn charge_challenge(tx: &mut Tx<'_>, principal_id: &str, id: &str) -> Result<(), ApiError> {
    let row =
        sqlx::query("SELECT kind, state FROM auth_challenges WHERE id = $1 AND principal_id = $2")
            .bind(id)
            .bind(principal_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(row) = row else {
        return Ok(());
    };
    if text(&row, "kind")?.ends_with("_otp") {
        let mut record: OtpRecord =
            serde_json::from_str(&text(&row, "state")?).map_err(ApiError::internal)?;
        record.attempts = record.attempts.saturating_add(1);
        sqlx::query("UPDATE auth_challenges SET state = $1 WHERE id = $2")
            .bind(serde_json::to_string(&record).map_err(ApiError::internal)?)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    delete_challenge(tx, id).await
}

/// What an account has enrolled.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Enrolled {
    /// An authenticator app.
    pub totp: bool,
    /// Security keys and passkeys.
    pub webauthn_credentials: usize,
    /// A verified phone for SMS codes.
    pub sms: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: usize,
}

impl Enrolled {
    /// Whether anything beyond email is enrolled (the account has real 2FA).
    pub fn any_second_factor(&self) -> bool {
        self.totp || self.webauthn_credentials > 0 || self.sms
    }
}

/// Reads what `principal_id` has enrolled.
///
/// # Errors
/// Storage failure.
pub async fn enrolled(tx: &mut Tx<'_>, principal_id: &str) -> Result<Enrolled, ApiError> {
    Ok(security_state(tx, principal_id).await?.enrolled)
}

/// What a step-up reads about an account: its factors, its lockout and its TOTP secret.
pub(crate) struct SecurityState {
    enrolled: Enrolled,
    lockout: LockoutState,
    /// The sealed TOTP secret and the last step used, when an app is enrolled.
    totp: Option<(String, i64)>,
}

/// Reads [`SecurityState`] in one statement (every withdrawal and security change steps
/// up, and a round trip to the database is most of what a statement costs).
async fn security_state(tx: &mut Tx<'_>, principal_id: &str) -> Result<SecurityState, ApiError> {
    let mut reads = Reads::new();
    let i = security_state_read(&mut reads, principal_id);
    security_state_from(&reads.run(tx).await?.take(i))
}

/// [`SecurityState`]'s statement, added to a batch of reads.
pub(crate) fn security_state_read(reads: &mut Reads, principal_id: &str) -> usize {
    let i = reads.push(
        "SELECT p.totp_enabled, p.phone_verified, p.totp_secret, p.totp_last_step, \
         (SELECT COUNT(*) FROM webauthn_credentials w WHERE w.principal_id = p.id) AS n, \
         (SELECT codes FROM recovery_codes r WHERE r.principal_id = p.id) AS codes, \
         (SELECT state FROM lockouts l WHERE l.principal_id = p.id) AS lockout \
         FROM principals p WHERE p.id = $1",
    );
    reads.bind(principal_id.to_owned());
    i
}

/// [`SecurityState`] from its rows.
///
/// # Errors
/// 404 when the account does not exist; a column that does not decode.
pub(crate) fn security_state_from(rows: &[crate::db::BatchRow]) -> Result<SecurityState, ApiError> {
    let p = rows.first().ok_or_else(|| ApiError::not_found("account"))?;
    let recovery_codes_left = match opt_text(p, "codes")? {
        Some(codes) => serde_json::from_str::<RecoveryCodeSet>(&codes)
            .map_err(ApiError::internal)?
            .remaining(),
        None => 0,
    };
    let lockout = match opt_text(p, "lockout")? {
        Some(state) => serde_json::from_str(&state).map_err(ApiError::internal)?,
        None => LockoutState::default(),
    };
    let totp_enabled = int(p, "totp_enabled")? != 0;
    let totp = match (totp_enabled, opt_text(p, "totp_secret")?) {
        (true, Some(sealed)) => Some((sealed, int(p, "totp_last_step")?)),
        _ => None,
    };
    Ok(SecurityState {
        enrolled: Enrolled {
            totp: totp_enabled,
            webauthn_credentials: usize::try_from(int(p, "n")?).unwrap_or(0),
            sms: int(p, "phone_verified")? != 0,
            recovery_codes_left,
        },
        lockout,
        totp,
    })
}

// ---------------------------------------------------------------------------------------
// Lockout and attempt limits

/// The account's lockout state.
async fn lockout_state(tx: &mut Tx<'_>, principal_id: &str) -> Result<LockoutState, ApiError> {
    let row = sqlx::query("SELECT state FROM lockouts WHERE principal_id = $1")
        .bind(principal_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => serde_json::from_str(&text(&r, "state")?).map_err(ApiError::internal)?,
        None => LockoutState::default(),
    })
}

async fn store_lockout(
    tx: &mut Tx<'_>,
    principal_id: &str,
    state: &LockoutState,
    now: i64,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO lockouts (principal_id, state, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (principal_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(principal_id)
    .bind(serde_json::to_string(state).map_err(ApiError::internal)?)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Refuses with 429 `locked_out` while the account is locked.
///
/// # Errors
/// The lockout, or storage failure.
pub async fn ensure_not_locked(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
) -> Result<(), ApiError> {
    check_not_locked(&lockout_state(tx, principal_id).await?, app.now())
}

/// [`ensure_not_locked`] on a state already read.
fn check_not_locked(state: &LockoutState, now: i64) -> Result<(), ApiError> {
    state.check(now).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked_out",
            format!(
                "too many failed sign-in or code attempts; this account is locked until {}",
                crate::clock::rfc3339(e.locked_until)
            ),
        )
    })
}

/// Takes one attempt from the per-account and per-IP limiters.
///
/// # Errors
/// 429 `rate_limited` saying which limit and when to retry.
pub fn take_attempt(
    app: &App,
    kind: custody_auth::AttemptKind,
    principal_id: &str,
    ip: &str,
) -> Result<(), ApiError> {
    let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    app.limiter.check(kind, principal_id, ip).map_err(|e| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many attempts {}; retry in {} s",
                match e.scope {
                    custody_auth::LimitScope::Ip => "from this address",
                    _ => "for this account",
                },
                e.retry_after_secs
            ),
        )
    })
}

/// Records a failed password or factor in its own transaction: counts it towards the
/// lockout, records a `login_failed` or `two_factor_failed` event, and when the account
/// locks, an `account_locked` event whose alert tells the owner.
///
/// # Errors
/// Storage failure.
pub async fn record_failure(app: &App, failure: &AuthFailure) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    if let Some(id) = &failure.challenge_id {
        charge_challenge(&mut tx, &failure.principal_id, id).await?;
    }
    let mut state = lockout_state(&mut tx, &failure.principal_id).await?;
    let locked = state.record_failure(&app.config.auth.limits.lockout(), now);
    store_lockout(&mut tx, &failure.principal_id, &state, now).await?;
    let kind = if failure.what == "password" {
        EventKind::LoginFailed
    } else {
        EventKind::TwoFactorFailed
    };
    risk::record_now(
        &mut tx,
        app,
        &failure.principal_id,
        kind,
        Some(&failure.ip),
        serde_json::json!({ "reason": failure.what }),
    )
    .await?;
    if let Some(lock) = locked {
        risk::record_now(
            &mut tx,
            app,
            &failure.principal_id,
            EventKind::AccountLocked,
            Some(&failure.ip),
            serde_json::json!({
                "failures": lock.failures, "locked_until": lock.locked_until,
                "consecutive_lockouts": lock.consecutive_lockouts,
            }),
        )
        .await?;
        tracing::warn!(principal = %failure.principal_id, until = lock.locked_until, "account locked after failed attempts");
        metrics::counter!("custody_account_lockouts_total").increment(1);
    }
    tx.commit().await?;
    Ok(())
}

/// Clears the failure count after a complete sign-in or step-up.
async fn record_success(
    tx: &mut Tx<'_>,
    principal_id: &str,
    mut state: LockoutState,
    now: i64,
) -> Result<(), ApiError> {
    if state.failures.is_empty() {
        return Ok(());
    }
    state.record_success();
    store_lockout(tx, principal_id, &state, now).await
}

/// Middleware: after a response that carries an [`AuthFailure`], records it.
pub async fn record_failures(
    axum::extract::State(app): axum::extract::State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(req).await;
    if let Some(failure) = response.extensions().get::<AuthFailure>() {
        if let Err(e) = record_failure(&app, failure).await {
            tracing::error!(error = %e, "recording a failed attempt");
        }
    }
    response
}

// ---------------------------------------------------------------------------------------
// Challenges

/// Which challenge to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeMethod {
    /// A security key or passkey.
    Webauthn,
    /// A code by email.
    Email,
    /// A code by SMS to the verified phone.
    Sms,
}

/// A started challenge.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// Name it in the answer.
    pub challenge_id: String,
    /// The method.
    pub method: ChallengeMethod,
    /// Until when it can be answered.
    pub expires_at: i64,
    /// For WebAuthn: the options for `navigator.credentials.get()`.
    #[schema(value_type = Option<Object>)]
    pub webauthn_options: Option<serde_json::Value>,
}

fn otp_context(principal_id: &str, channel: OtpChannel) -> String {
    format!("coinport-custody/{principal_id}/{}", channel_name(channel))
}

fn channel_name(channel: OtpChannel) -> &'static str {
    match channel {
        OtpChannel::Sms => "sms",
        _ => "email",
    }
}

fn webauthn_user_id(principal_id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(principal_id).map_err(|_| ApiError::internal("principal id is not a UUID"))
}

async fn credentials(
    tx: &mut Tx<'_>,
    principal_id: &str,
) -> Result<Vec<StoredCredential>, ApiError> {
    let rows = sqlx::query(
        "SELECT credential FROM webauthn_credentials WHERE principal_id = $1 ORDER BY created_at",
    )
    .bind(principal_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| serde_json::from_str(&text(r, "credential")?).map_err(ApiError::internal))
        .collect()
}

async fn store_challenge(
    tx: &mut Tx<'_>,
    principal_id: &str,
    kind: &str,
    state: &impl Serialize,
    now: i64,
    expires_at: i64,
) -> Result<String, ApiError> {
    // Expired challenges of this account go first, so the table does not grow.
    sqlx::query("DELETE FROM auth_challenges WHERE principal_id = $1 AND expires_at <= $2")
        .bind(principal_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let open = sqlx::query("SELECT COUNT(*) AS n FROM auth_challenges WHERE principal_id = $1")
        .bind(principal_id)
        .fetch_one(&mut **tx)
        .await?;
    if int(&open, "n")? >= 20 {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many open challenges; answer or let the earlier ones expire",
        ));
    }
    let id = Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO auth_challenges (id, principal_id, kind, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(principal_id)
    .bind(kind)
    .bind(serde_json::to_string(state).map_err(ApiError::internal)?)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Queues a code for delivery by email (and the development file sink) or SMS — never
/// to the webhook, which is for alerts. The payload is cleared once delivered.
async fn send_code(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    channel: OtpChannel,
    code: &str,
    to_phone: Option<&str>,
    expires_at: i64,
) -> Result<(), ApiError> {
    let now = app.now();
    let (kind, channels): (&str, Vec<&str>) = match channel {
        OtpChannel::Sms => ("otp.sms", vec!["sms"]),
        _ => {
            let mut c = Vec::new();
            if app.config.notifications.smtp.is_some() {
                c.push("email");
            }
            if app.config.notification_file().is_some() {
                c.push("file");
            }
            ("otp.email", c)
        }
    };
    if channels.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_channel",
            "email codes need notifications.smtp (or the development file sink) configured",
        ));
    }
    let mut payload = serde_json::json!({
        "code": code, crate::notify::TO_PHONE_KEY: to_phone, "expires_at": expires_at, "at": now,
    });
    crate::notify::seal_phone_in(app, principal_id, &mut payload)?;
    let payload = payload.to_string();
    for ch in channels {
        sqlx::query(
            "INSERT INTO outbox (id, created_at, principal_id, channel, kind, payload, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(now)
        .bind(principal_id)
        .bind(ch)
        .bind(kind)
        .bind(&payload)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Starts a challenge for `principal` (signed in, or identified by password before
/// sign-in).
///
/// # Errors
/// 409 `not_enrolled` when the method is not set up, 429 when rate-limited.
pub async fn start_challenge(
    app: &App,
    principal: &Principal,
    method: ChallengeMethod,
    ip: &str,
) -> Result<Challenge, ApiError> {
    let now = app.now();
    take_attempt(app, custody_auth::AttemptKind::Code, &principal.id, ip)?;
    let mut tx = app.db.begin().await?;
    ensure_not_locked(&mut tx, app, &principal.id).await?;
    let challenge = match method {
        ChallengeMethod::Webauthn => {
            let creds = credentials(&mut tx, &principal.id).await?;
            if creds.is_empty() {
                return Err(ApiError::conflict(
                    "not_enrolled",
                    "no security key or passkey is registered for this account",
                ));
            }
            let (options, ceremony) = app
                .webauthn
                .start_authentication(webauthn_user_id(&principal.id)?, &creds, now)
                .map_err(ApiError::internal)?;
            let expires_at = ceremony.expires_at();
            let id = store_challenge(
                &mut tx,
                &principal.id,
                "webauthn_auth",
                &ceremony,
                now,
                expires_at,
            )
            .await?;
            Challenge {
                challenge_id: id,
                method,
                expires_at,
                webauthn_options: Some(serde_json::to_value(&options).map_err(ApiError::internal)?),
            }
        }
        ChallengeMethod::Email | ChallengeMethod::Sms => {
            let channel = if method == ChallengeMethod::Sms {
                OtpChannel::Sms
            } else {
                OtpChannel::Email
            };
            let phone = if channel == OtpChannel::Sms {
                let row = sqlx::query(
                    "SELECT phone, phone_sealed, phone_verified FROM principals WHERE id = $1",
                )
                .bind(&principal.id)
                .fetch_one(&mut *tx)
                .await?;
                let phone = crate::accounts::open_phone(
                    &app.vault,
                    &principal.id,
                    opt_text(&row, "phone_sealed")?.as_deref(),
                    opt_text(&row, "phone")?.as_deref(),
                )?;
                match phone {
                    Some(p) if int(&row, "phone_verified")? != 0 => Some(p),
                    _ => {
                        return Err(ApiError::conflict(
                            "not_enrolled",
                            "no verified phone number on this account (POST /v1/me/phone)",
                        ))
                    }
                }
            } else {
                None
            };
            let (code, record) = custody_auth::issue_otp(
                &app.hash_key,
                channel,
                &OtpPolicy::default_for(channel),
                &otp_context(&principal.id, channel),
                now,
            );
            let expires_at = record.expires_at;
            let kind = format!("{}_otp", channel_name(channel));
            let id =
                store_challenge(&mut tx, &principal.id, &kind, &record, now, expires_at).await?;
            send_code(
                &mut tx,
                app,
                &principal.id,
                channel,
                code.expose_secret(),
                phone.as_deref(),
                expires_at,
            )
            .await?;
            Challenge {
                challenge_id: id,
                method,
                expires_at,
                webauthn_options: None,
            }
        }
    };
    tx.commit().await?;
    if method != ChallengeMethod::Webauthn {
        // A code was queued (email or SMS): out now, not at the next tick.
        app.outbox_wake.notify_one();
    }
    Ok(challenge)
}

/// Loads an unexpired challenge of `kind` for `principal_id` (its state JSON).
async fn take_challenge(
    tx: &mut Tx<'_>,
    principal_id: &str,
    id: &str,
    kind: &str,
    now: i64,
) -> Result<Option<String>, ApiError> {
    let row = sqlx::query(
        "SELECT state, expires_at FROM auth_challenges WHERE id = $1 AND principal_id = $2 AND kind = $3",
    )
    .bind(id)
    .bind(principal_id)
    .bind(kind)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if int(&row, "expires_at")? <= now {
        return Ok(None);
    }
    Ok(Some(text(&row, "state")?))
}

async fn delete_challenge(tx: &mut Tx<'_>, id: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM auth_challenges WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Verification

async fn verify_totp(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    code: &str,
    ip: &str,
    enrolled: Option<&(String, i64)>,
    writes: Option<&mut crate::db::Writes>,
) -> Result<Option<Deferred>, ApiError> {
    let Some((stored, last)) = enrolled else {
        return Err(ApiError::conflict(
            "not_enrolled",
            "no authenticator app is enrolled on this account",
        ));
    };
    let secret = open_totp(app, &principal.id, stored)?;
    let used = || {
        bad_factor(
            principal,
            ip,
            "totp",
            "the 2FA code is wrong or was already used".into(),
        )
    };
    let Some(step) =
        crate::auth::totp_check(&secret, code, app.now(), *last).map_err(ApiError::internal)?
    else {
        return Err(used());
    };
    // Compare-and-set: of two requests racing with the same code (PostgreSQL runs them at
    // once), only one moves the last step forward; the other is a reused code.
    const CAS: &str =
        "UPDATE principals SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1";
    if let Some(w) = writes {
        w.push(CAS).bind(step).bind(principal.id.clone());
        return Ok(Some(Deferred {
            statement: w.count_rows(),
            error: used(),
        }));
    }
    let done = sqlx::query(CAS)
        .bind(step)
        .bind(&principal.id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 1 {
        Ok(None)
    } else {
        Err(used())
    }
}

async fn verify_webauthn(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    answer: &WebAuthnAnswer,
    ip: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let Some(state) = take_challenge(
        tx,
        &principal.id,
        &answer.challenge_id,
        "webauthn_auth",
        now,
    )
    .await?
    else {
        return Err(bad_factor(
            principal,
            ip,
            "webauthn",
            "the security-key challenge is unknown, used or expired; start a new one".into(),
        ));
    };
    delete_challenge(tx, &answer.challenge_id).await?;
    let ceremony: custody_auth::AuthenticationCeremony =
        serde_json::from_str(&state).map_err(ApiError::internal)?;
    let response: custody_auth::webauthn::PublicKeyCredential =
        serde_json::from_value(answer.credential.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "webauthn.credential is not a PublicKeyCredential: {e}"
            ))
        })?;
    let mut creds = credentials(tx, &principal.id).await?;
    let outcome = app
        .webauthn
        .finish_authentication(ceremony, &response, &mut creds, now)
        .map_err(|e| {
            bad_answer(
                principal,
                ip,
                "webauthn",
                &answer.challenge_id,
                format!("the security key answer was refused: {e}"),
            )
        })?;
    if let Some(c) = creds
        .iter()
        .find(|c| *c.credential_id() == outcome.credential_id)
    {
        sqlx::query(
            "UPDATE webauthn_credentials SET credential = $1, last_used_at = $2 WHERE credential_id = $3",
        )
        .bind(serde_json::to_string(c).map_err(ApiError::internal)?)
        .bind(now)
        .bind(c.credential_id_text())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn verify_code(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    answer: &CodeAnswer,
    channel: OtpChannel,
    ip: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let what = if channel == OtpChannel::Sms {
        "sms_otp"
    } else {
        "email_otp"
    };
    let Some(state) = take_challenge(tx, &principal.id, &answer.challenge_id, what, now).await?
    else {
        return Err(bad_factor(
            principal,
            ip,
            what,
            "the code's challenge is unknown, used or expired; ask for a new code".into(),
        ));
    };
    let mut record: OtpRecord = serde_json::from_str(&state).map_err(ApiError::internal)?;
    let result = record.verify(
        &app.hash_key,
        &otp_context(&principal.id, channel),
        &answer.code,
        now,
    );
    match result {
        Ok(()) => {
            delete_challenge(tx, &answer.challenge_id).await?;
            Ok(())
        }
        Err(e) => Err(bad_answer(
            principal,
            ip,
            what,
            &answer.challenge_id,
            format!("the code was refused: {e}"),
        )),
    }
}

async fn verify_recovery(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    code: &str,
    ip: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let row = sqlx::query("SELECT codes FROM recovery_codes WHERE principal_id = $1")
        .bind(&principal.id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Err(ApiError::conflict(
            "not_enrolled",
            "this account has no recovery codes",
        ));
    };
    let mut set: RecoveryCodeSet =
        serde_json::from_str(&text(&row, "codes")?).map_err(ApiError::internal)?;
    let left = set
        .redeem(&app.hash_key, &principal.id, code, now)
        .map_err(|e| {
            bad_factor(
                principal,
                ip,
                "recovery_code",
                format!("the recovery code was refused: {e}"),
            )
        })?;
    sqlx::query("UPDATE recovery_codes SET codes = $1 WHERE principal_id = $2")
        .bind(serde_json::to_string(&set).map_err(ApiError::internal)?)
        .bind(&principal.id)
        .execute(&mut **tx)
        .await?;
    risk::record_now(
        tx,
        app,
        &principal.id,
        EventKind::RecoveryCodeUsed,
        Some(ip),
        serde_json::json!({ "left": left }),
    )
    .await?;
    Ok(())
}

/// Checks every factor in `proof` and whether together they authorise `action`. Each
/// factor presented must be right (a wrong one fails the request and counts towards the
/// lockout); used codes and challenges are consumed in `tx`.
///
/// # Errors
/// 403 `totp_required` when the account has no second factor enrolled; 401 `bad_2fa` for
/// a wrong, replayed or expired factor or none presented; 403 `insufficient_factors`
/// when the factors do not authorise the action (e.g. SMS alone for a withdrawal);
/// 429 when locked or rate-limited.
pub async fn step_up(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    proof: &StepUp,
    action: Action,
    ip: &str,
) -> Result<Vec<Factor>, ApiError> {
    let state = security_state(tx, &principal.id).await?;
    let (factors, _) = step_up_with(tx, app, principal, proof, action, ip, state, None).await?;
    Ok(factors)
}

/// The last step of a second-factor check, sent with the request's other writes: the
/// TOTP compare-and-set. Unless it changed the account's row the code was used already
/// (by a request that committed first), and the request fails with the error kept here.
#[derive(Debug)]
pub(crate) struct Deferred {
    statement: crate::db::Counted,
    error: ApiError,
}

impl Deferred {
    /// The check's outcome, from what the batch changed.
    ///
    /// # Errors
    /// 401 `bad_2fa`: the code was used already.
    pub(crate) fn confirm(self, changed: &crate::db::Changed) -> Result<(), ApiError> {
        if changed.rows(self.statement) == 1 {
            Ok(())
        } else {
            Err(self.error)
        }
    }
}

/// [`step_up`] with the account's [`SecurityState`] already read (see
/// [`security_state_read`]). With `writes`, a TOTP code's compare-and-set is added to that
/// batch instead of sent on its own, and the returned [`Deferred`] must be confirmed
/// after the batch ran.
///
/// # Errors
/// As [`step_up`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn step_up_with(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    proof: &StepUp,
    action: Action,
    ip: &str,
    state: SecurityState,
    writes: Option<&mut crate::db::Writes>,
) -> Result<(Vec<Factor>, Option<Deferred>), ApiError> {
    let has = &state.enrolled;
    if !has.any_second_factor() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "totp_required",
            "this action needs two-factor authentication; enrol an authenticator app (POST /v1/me/totp) or a security key (POST /v1/me/webauthn/registrations) first",
        ));
    }
    if proof.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_2fa",
            "this action needs a second factor: `totp`, `webauthn`, `email_code` + `sms_code`, or for security changes a `recovery_code`",
        ));
    }
    check_not_locked(&state.lockout, app.now())?;
    take_attempt(app, custody_auth::AttemptKind::Code, &principal.id, ip)?;
    let mut factors = Vec::new();
    let mut deferred = None;
    if let Some(code) = &proof.totp {
        deferred = verify_totp(tx, app, principal, code, ip, state.totp.as_ref(), writes).await?;
        factors.push(Factor::Totp);
    }
    if let Some(answer) = &proof.webauthn {
        verify_webauthn(tx, app, principal, answer, ip).await?;
        factors.push(Factor::WebAuthn);
    }
    if let Some(answer) = &proof.email_code {
        verify_code(tx, app, principal, answer, OtpChannel::Email, ip).await?;
        factors.push(Factor::EmailOtp);
    }
    if let Some(answer) = &proof.sms_code {
        verify_code(tx, app, principal, answer, OtpChannel::Sms, ip).await?;
        factors.push(Factor::SmsOtp);
    }
    if let Some(code) = &proof.recovery_code {
        verify_recovery(tx, app, principal, code, ip).await?;
        factors.push(Factor::RecoveryCode);
    }
    authorise(action, &factors)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "insufficient_factors", e.to_string()))?;
    record_success(tx, &principal.id, state.lockout, app.now()).await?;
    Ok((factors, deferred))
}

// ---------------------------------------------------------------------------------------
// Enrolment: WebAuthn, phone, recovery codes

/// A started WebAuthn registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registration {
    /// Name it when finishing.
    pub registration_id: String,
    /// Until when it can be finished.
    pub expires_at: i64,
    /// The options for `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// Starts registering a security key or passkey. An account that already has a second
/// factor must step up first (adding a factor is a security change).
///
/// # Errors
/// Step-up failures; storage failure.
pub async fn start_webauthn_registration(
    app: &App,
    principal: &Principal,
    proof: &StepUp,
    ip: &str,
) -> Result<Registration, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    if enrolled(&mut tx, &principal.id).await?.any_second_factor() {
        step_up(&mut tx, app, principal, proof, Action::SensitiveChange, ip).await?;
    }
    let existing = credentials(&mut tx, &principal.id).await?;
    let email = principal.email(app)?;
    let (options, ceremony) = app
        .webauthn
        .start_registration(
            WebAuthnUser {
                id: webauthn_user_id(&principal.id)?,
                name: &email,
                display_name: &email,
            },
            &existing,
            now,
        )
        .map_err(ApiError::internal)?;
    let expires_at = ceremony.expires_at();
    let id = store_challenge(
        &mut tx,
        &principal.id,
        "webauthn_register",
        &ceremony,
        now,
        expires_at,
    )
    .await?;
    tx.commit().await?;
    Ok(Registration {
        registration_id: id,
        expires_at,
        options: serde_json::to_value(&options).map_err(ApiError::internal)?,
    })
}

/// A registered security key or passkey.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// The credential id (base64url).
    pub id: String,
    /// The name the user gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: i64,
    /// When it last answered.
    pub last_used_at: Option<i64>,
}

/// Finishes a registration with the authenticator's answer; records a
/// `two_factor_enabled` event.
///
/// # Errors
/// 400 for a malformed answer, 401 when the authenticator's answer is refused (no user
/// verification, wrong challenge), 409 for an unknown/expired registration or a key
/// already registered.
pub async fn finish_webauthn_registration(
    app: &App,
    principal: &Principal,
    registration_id: &str,
    name: &str,
    credential: &serde_json::Value,
    ip: &str,
) -> Result<CredentialView, ApiError> {
    let now = app.now();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 64 printable characters",
        ));
    }
    let response: custody_auth::webauthn::RegisterPublicKeyCredential =
        serde_json::from_value(credential.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "credential is not a RegisterPublicKeyCredential: {e}"
            ))
        })?;
    let mut tx = app.db.begin().await?;
    let Some(state) = take_challenge(
        &mut tx,
        &principal.id,
        registration_id,
        "webauthn_register",
        now,
    )
    .await?
    else {
        return Err(ApiError::conflict(
            "no_registration",
            "the registration is unknown or expired; start a new one",
        ));
    };
    delete_challenge(&mut tx, registration_id).await?;
    let ceremony: custody_auth::RegistrationCeremony =
        serde_json::from_str(&state).map_err(ApiError::internal)?;
    let stored = match app.webauthn.finish_registration(ceremony, &response, now) {
        Ok(s) => s,
        Err(custody_auth::WebAuthnError::AlreadyRegistered) => {
            return Err(ApiError::conflict(
                "already_registered",
                "this security key is already registered",
            ))
        }
        Err(e) => {
            // The used-up registration stays deleted.
            tx.commit().await?;
            return Err(ApiError::unauthorized(format!(
                "the security key's answer was refused: {e}"
            )));
        }
    };
    let id = stored.credential_id_text();
    sqlx::query(
        "INSERT INTO webauthn_credentials (credential_id, principal_id, name, credential, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&principal.id)
    .bind(name)
    .bind(serde_json::to_string(&stored).map_err(ApiError::internal)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::TwoFactorEnabled,
        Some(ip),
        serde_json::json!({ "method": "webauthn", "name": name }),
    )
    .await?;
    tx.commit().await?;
    Ok(CredentialView {
        id,
        name: name.to_owned(),
        created_at: now,
        last_used_at: None,
    })
}

/// The account's security keys and passkeys.
///
/// # Errors
/// Storage failure.
pub async fn list_credentials(
    app: &App,
    principal: &Principal,
) -> Result<Vec<CredentialView>, ApiError> {
    let rows = sqlx::query(
        "SELECT credential_id, name, created_at, last_used_at FROM webauthn_credentials \
         WHERE principal_id = $1 ORDER BY created_at",
    )
    .bind(&principal.id)
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CredentialView {
                id: text(r, "credential_id")?,
                name: text(r, "name")?,
                created_at: int(r, "created_at")?,
                last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?,
            })
        })
        .collect()
}

/// Removes a security key (step-up; a `two_factor_removed` event and its hold).
///
/// # Errors
/// 404, step-up failures.
pub async fn remove_credential(
    app: &App,
    principal: &Principal,
    credential_id: &str,
    proof: &StepUp,
    ip: &str,
) -> Result<(), ApiError> {
    let mut tx = app.db.begin().await?;
    step_up(&mut tx, app, principal, proof, Action::SensitiveChange, ip).await?;
    let gone = sqlx::query(
        "DELETE FROM webauthn_credentials WHERE credential_id = $1 AND principal_id = $2",
    )
    .bind(credential_id)
    .bind(&principal.id)
    .execute(&mut *tx)
    .await?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::not_found("security key"));
    }
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::TwoFactorRemoved,
        Some(ip),
        serde_json::json!({ "method": "webauthn", "credential": credential_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// New recovery codes, shown once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesView {
    /// The codes (`XXXX-XXXX-XXXX-XXXX`); each works once. Earlier codes stop working.
    pub codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodesView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecoveryCodesView({} codes, <redacted>)",
            self.codes.len()
        )
    }
}

/// Generates a new set of recovery codes (step-up); earlier codes stop working.
///
/// # Errors
/// Step-up failures; storage failure.
pub async fn new_recovery_codes(
    app: &App,
    principal: &Principal,
    proof: &StepUp,
    ip: &str,
) -> Result<RecoveryCodesView, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    step_up(&mut tx, app, principal, proof, Action::SensitiveChange, ip).await?;
    let previous = sqlx::query("SELECT codes FROM recovery_codes WHERE principal_id = $1")
        .bind(&principal.id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| -> Result<RecoveryCodeSet, ApiError> {
            serde_json::from_str(&text(&r, "codes")?).map_err(ApiError::internal)
        })
        .transpose()?;
    let (codes, set) = custody_auth::generate_recovery_codes(
        &app.hash_key,
        &principal.id,
        app.config.auth.recovery_codes,
        previous.as_ref(),
        now,
    )
    .map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO recovery_codes (principal_id, codes, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (principal_id) DO UPDATE SET codes = excluded.codes, created_at = excluded.created_at",
    )
    .bind(&principal.id)
    .bind(serde_json::to_string(&set).map_err(ApiError::internal)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::RecoveryCodesGenerated,
        Some(ip),
        serde_json::json!({ "count": set.slots.len() }),
    )
    .await?;
    tx.commit().await?;
    Ok(RecoveryCodesView {
        codes: codes.expose_secret().map(str::to_owned).collect(),
    })
}

fn normalise_phone(phone: &str) -> Result<String, ApiError> {
    let p: String = phone
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '(' && *c != ')')
        .collect();
    let digits = p.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(p)
    } else {
        Err(ApiError::bad_request(
            "phone must be in international form: + and 8 to 15 digits",
        ))
    }
}

/// Sets (or replaces) the phone number for SMS codes: step-up, then a code to the new
/// number; the number is usable once [`verify_phone`] confirms it. A replaced number is a
/// 2FA change (event and hold), the classic SIM-swap path.
///
/// # Errors
/// Bad number, step-up failures.
pub async fn set_phone(
    app: &App,
    principal: &Principal,
    phone: &str,
    proof: &StepUp,
    ip: &str,
) -> Result<Challenge, ApiError> {
    let phone = normalise_phone(phone)?;
    let now = app.now();
    take_attempt(app, custody_auth::AttemptKind::Code, &principal.id, ip)?;
    let mut tx = app.db.begin().await?;
    step_up(&mut tx, app, principal, proof, Action::SensitiveChange, ip).await?;
    let had = sqlx::query("SELECT phone_verified FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    let replaced = int(&had, "phone_verified")? != 0;
    sqlx::query(
        "UPDATE principals SET phone_sealed = $1, phone = NULL, phone_verified = 0 WHERE id = $2",
    )
    .bind(crate::accounts::seal_phone(
        &app.vault,
        &principal.id,
        &phone,
    )?)
    .bind(&principal.id)
    .execute(&mut *tx)
    .await?;
    if replaced {
        risk::record_now(
            &mut tx,
            app,
            &principal.id,
            EventKind::TwoFactorRemoved,
            Some(ip),
            serde_json::json!({ "method": "sms" }),
        )
        .await?;
    }
    let (code, record) = custody_auth::issue_otp(
        &app.hash_key,
        OtpChannel::Sms,
        &OtpPolicy::default_for(OtpChannel::Sms),
        &otp_context(&principal.id, OtpChannel::Sms),
        now,
    );
    let expires_at = record.expires_at;
    let id = store_challenge(
        &mut tx,
        &principal.id,
        "phone_verify",
        &record,
        now,
        expires_at,
    )
    .await?;
    send_code(
        &mut tx,
        app,
        &principal.id,
        OtpChannel::Sms,
        code.expose_secret(),
        Some(&phone),
        expires_at,
    )
    .await?;
    tx.commit().await?;
    app.outbox_wake.notify_one();
    Ok(Challenge {
        challenge_id: id,
        method: ChallengeMethod::Sms,
        expires_at,
        webauthn_options: None,
    })
}

/// Confirms the phone number with the code sent to it.
///
/// # Errors
/// 401 for a wrong or expired code.
pub async fn verify_phone(
    app: &App,
    principal: &Principal,
    answer: &CodeAnswer,
    ip: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    take_attempt(app, custody_auth::AttemptKind::Code, &principal.id, ip)?;
    let mut tx = app.db.begin().await?;
    let Some(state) = take_challenge(
        &mut tx,
        &principal.id,
        &answer.challenge_id,
        "phone_verify",
        now,
    )
    .await?
    else {
        return Err(bad_factor(
            principal,
            ip,
            "sms_otp",
            "the phone verification is unknown, used or expired; set the number again".into(),
        ));
    };
    let mut record: OtpRecord = serde_json::from_str(&state).map_err(ApiError::internal)?;
    let checked = record.verify(
        &app.hash_key,
        &otp_context(&principal.id, OtpChannel::Sms),
        &answer.code,
        now,
    );
    if let Err(e) = checked {
        sqlx::query("UPDATE auth_challenges SET state = $1 WHERE id = $2")
            .bind(serde_json::to_string(&record).map_err(ApiError::internal)?)
            .bind(&answer.challenge_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Err(bad_factor(
            principal,
            ip,
            "sms_otp",
            format!("the code was refused: {e}"),
        ));
    }
    delete_challenge(&mut tx, &answer.challenge_id).await?;
    sqlx::query("UPDATE principals SET phone_verified = 1 WHERE id = $1")
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::TwoFactorEnabled,
        Some(ip),
        serde_json::json!({ "method": "sms" }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Delivers an SMS outbox row: the provider webhook (signed like notification webhooks)
/// or the development file sink.
///
/// # Errors
/// A sentence for the outbox's `last_error` (never the code).
pub async fn deliver_sms(app: &App, payload: &serde_json::Value) -> Result<(), String> {
    let to = payload["to"].as_str().ok_or("no phone number")?;
    let code = payload["code"].as_str().ok_or("no code")?;
    let text = format!("CoinPort Custody code: {code}. Never share it; staff never ask for it.");
    let sms = &app.config.auth.sms;
    let body = serde_json::json!({ "to": to, "text": text }).to_string();
    if let (Some(url), Some(secret_file)) = (&sms.webhook_url, &sms.webhook_secret_file) {
        let secret = Zeroizing::new(
            std::fs::read_to_string(secret_file)
                .map_err(|e| format!("reading auth.sms.webhook_secret_file: {e}"))?,
        );
        let secret = secret.lines().next().unwrap_or_default().trim().to_owned();
        let signature = crate::notify::webhook_signature(secret.as_bytes(), body.as_bytes());
        let response = bitreq::post(url.as_str())
            .with_header("Content-Type", "application/json")
            .with_header("X-Custody-Signature", signature)
            .with_body(body)
            .with_timeout(std::time::Duration::from_secs(10))
            .send_async()
            .await
            .map_err(|e| format!("SMS provider: {e}"))?;
        if !(200..300).contains(&response.status_code) {
            return Err(format!("SMS provider answered {}", response.status_code));
        }
        return Ok(());
    }
    let Some(path) = &sms.file_sink else {
        return Err("no SMS provider configured (auth.sms.webhook_url)".into());
    };
    let path = if path.is_absolute() {
        path.clone()
    } else {
        app.config.data_dir.join(path)
    };
    crate::notify::append_line(&path, &body)
}
