//! Principals (users and operators), sessions, devices and TOTP.
//!
//! Users are the exchange's customers; operators have a role: `admin` (freezes, policies,
//! accounts), `approver` (approves withdrawals with their identity key) or `operator`
//! (runs signing rounds and broadcasts), plus `service` for the exchange's back office
//! reporting events. Everyone signs in with a password; TOTP is required for every
//! sensitive action once enrolled, and an operator cannot act before enrolling it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::App;
use crate::auth;
use crate::db::{int, opt_text, text, Tx};
use crate::error::ApiError;
use crate::factors::StepUp;
use crate::risk::{self, EventKind};
use custody_auth::Action;

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A customer: withdraws their own funds.
    User,
    /// Freezes, installs policies, manages accounts.
    Admin,
    /// Approves withdrawals.
    Approver,
    /// Runs signing rounds and broadcasts.
    Operator,
    /// The exchange's back office: reports security events.
    Service,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Service => "service",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "user" => Role::User,
            "admin" => Role::Admin,
            "approver" => Role::Approver,
            "operator" => Role::Operator,
            "service" => Role::Service,
            _ => return None,
        })
    }
}

/// A signed-in principal.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Id.
    pub id: String,
    /// The account's lookup key: the keyed blind index of its email address (the
    /// address itself is sealed; [`Principal::email`] opens it).
    pub email_key: String,
    /// The sealed email address (`None` in a row an earlier version wrote and the
    /// start-up has not sealed yet: then `email_key` is the address).
    email_sealed: Option<String>,
    /// Role.
    pub role: Role,
    /// Whether TOTP is enrolled.
    pub totp_enabled: bool,
    /// Hex of the approver's identity card, for approvers.
    pub approver_card: Option<String>,
    /// The account's IP allowlist (canonical text), if any.
    pub ip_allowlist: Option<String>,
    /// Withdrawals only to active whitelisted addresses.
    pub whitelist_only: bool,
    /// How this request was authenticated.
    pub via: Via,
    /// The client address of this request (empty outside requests).
    pub client_ip: String,
}

/// How a request was authenticated.
#[derive(Clone, Debug, Default)]
pub enum Via {
    /// Not by a request (administrative commands, tests).
    #[default]
    Internal,
    /// A session from signing in.
    Session {
        /// The session's public id.
        session_id: String,
        /// The device the session was opened from.
        device_id: String,
    },
    /// A signed request with an API key.
    ApiKey {
        /// The key id.
        key_id: String,
        /// What the key may do.
        scopes: custody_auth::ScopeSet,
    },
}

/// Where a request came from.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// The peer or forwarded IP address.
    pub ip: String,
    /// The User-Agent header.
    pub user_agent: String,
    /// The device id the client presents (`X-Device-Id`), or one derived from the agent.
    pub device_id: String,
}

impl Principal {
    /// The account's email address, opened from its sealed column.
    ///
    /// # Errors
    /// 500 when the sealed value does not open (a damaged row, a lost key).
    pub fn email(&self, app: &App) -> Result<String, ApiError> {
        open_email(
            &app.vault,
            &self.id,
            &self.email_key,
            self.email_sealed.as_deref(),
        )
    }
}

/// The record id an account's email address is sealed for.
fn email_record(id: &str) -> String {
    format!("principals/{id}/email")
}

/// The record id an account's phone number is sealed for.
pub(crate) fn phone_record(id: &str) -> String {
    format!("principals/{id}/phone")
}

/// The lookup key of a normalised email address: the vault's keyed blind index, so the
/// database can find an account by address without holding any address.
pub(crate) fn email_key(vault: &crate::vault::Vault, email: &str) -> Result<String, ApiError> {
    vault
        .keys()
        .blind_index(custody_vault::FieldKind::Email, email)
        .map(|i| i.to_hex())
        .map_err(|e| ApiError::internal(format!("indexing an email address: {e}")))
}

/// Seals a normalised email address for account `id`.
fn seal_email(vault: &crate::vault::Vault, id: &str, email: &str) -> Result<String, ApiError> {
    vault.seal_text(
        custody_vault::Purpose::Secret,
        &email_record(id),
        email.as_bytes(),
    )
}

/// Opens an account's email address: its sealed column, or — a row an earlier version
/// wrote, not sealed yet — the address in the key column.
pub(crate) fn open_email(
    vault: &crate::vault::Vault,
    id: &str,
    key: &str,
    sealed: Option<&str>,
) -> Result<String, ApiError> {
    match sealed {
        Some(sealed) => {
            vault.open_string(custody_vault::Purpose::Secret, &email_record(id), sealed)
        }
        None if key.contains('@') => Ok(key.to_owned()),
        None => Err(ApiError::internal("an account has no email address")),
    }
}

/// Seals a normalised phone number for account `id`.
pub(crate) fn seal_phone(
    vault: &crate::vault::Vault,
    id: &str,
    phone: &str,
) -> Result<String, ApiError> {
    vault.seal_text(
        custody_vault::Purpose::Secret,
        &phone_record(id),
        phone.as_bytes(),
    )
}

/// Opens an account's phone number: its sealed column, or the legacy clear one.
pub(crate) fn open_phone(
    vault: &crate::vault::Vault,
    id: &str,
    sealed: Option<&str>,
    legacy: Option<&str>,
) -> Result<Option<String>, ApiError> {
    match (sealed, legacy) {
        (Some(sealed), _) => vault
            .open_string(custody_vault::Purpose::Secret, &phone_record(id), sealed)
            .map(Some),
        (None, legacy) => Ok(legacy.map(str::to_owned)),
    }
}

/// Seals the contact details of accounts an earlier version stored in clear (ADR 0034):
/// the email address moves to `email_sealed` and `email` becomes its lookup key; a phone
/// number moves to `phone_sealed`. Pending email-change links and undelivered outbox
/// rows that name an address or a number get them sealed too. Idempotent; returns how
/// many accounts it sealed.
///
/// # Errors
/// Storage failure, or an address that cannot be indexed.
pub async fn seal_legacy_contact_details(
    db: &crate::db::Db,
    vault: &crate::vault::Vault,
) -> anyhow::Result<usize> {
    let rows = sqlx::query(
        "SELECT id, email, phone, phone_sealed FROM principals WHERE email_sealed IS NULL",
    )
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Links and outbox rows first: the accounts are the marker, so a start that stops
    // midway does all of it again.
    crate::links::seal_legacy_email_changes(db, vault).await?;
    crate::notify::seal_legacy_recipients(db, vault).await?;
    let mut sealed = 0;
    for r in &rows {
        let id = text(r, "id")?;
        let stored = text(r, "email")?;
        let email = stored.trim().to_lowercase();
        let phone = opt_text(r, "phone")?;
        let already = opt_text(r, "phone_sealed")?;
        // A number this version sealed (set through a session the account still had) is
        // the newer one; a number in clear beside it is dropped.
        let phone_sealed = match (&already, &phone) {
            (Some(sealed), _) => Some(sealed.clone()),
            (None, Some(p)) => Some(seal_phone(vault, &id, p).map_err(|e| anyhow::anyhow!("{e}"))?),
            (None, None) => None,
        };
        // Compare-and-set on the address and both number columns read above.
        let done = sqlx::query(
            "UPDATE principals SET email = $1, email_sealed = $2, phone_sealed = $3, phone = NULL \
             WHERE id = $4 AND email_sealed IS NULL AND email = $5 \
             AND COALESCE(phone, '') = $6 AND COALESCE(phone_sealed, '') = $7",
        )
        .bind(email_key(vault, &email).map_err(|e| anyhow::anyhow!("{e}"))?)
        .bind(seal_email(vault, &id, &email).map_err(|e| anyhow::anyhow!("{e}"))?)
        .bind(phone_sealed)
        .bind(&id)
        .bind(&stored)
        .bind(phone.clone().unwrap_or_default())
        .bind(already.unwrap_or_default())
        .execute(db.pool())
        .await?;
        sealed += usize::try_from(done.rows_affected()).unwrap_or(0);
    }
    Ok(sealed)
}

fn normalise_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(char::is_whitespace);
    if ok {
        Ok(e)
    } else {
        Err(ApiError::bad_request("email is not a valid address"))
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 12 || password.len() > 1024 {
        return Err(ApiError::bad_request(
            "password must be 12 to 1024 characters long",
        ));
    }
    Ok(())
}

fn principal_from_row(row: &sqlx::any::AnyRow) -> Result<Principal, ApiError> {
    let role = text(row, "role")?;
    Ok(Principal {
        id: text(row, "id")?,
        email_key: text(row, "email")?,
        email_sealed: opt_text(row, "email_sealed")?,
        role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role in database"))?,
        totp_enabled: int(row, "totp_enabled")? != 0,
        approver_card: opt_text(row, "approver_card")?,
        ip_allowlist: opt_text(row, "ip_allowlist")?,
        whitelist_only: int(row, "whitelist_only")? != 0,
        via: Via::Internal,
        client_ip: String::new(),
    })
}

const PRINCIPAL_COLUMNS: &str =
    "id, email, email_sealed, role, totp_enabled, approver_card, ip_allowlist, whitelist_only";
/// [`PRINCIPAL_COLUMNS`] of `principals p` in a join.
const PRINCIPAL_COLUMNS_P: &str = "p.id, p.email, p.email_sealed, p.role, p.totp_enabled, \
     p.approver_card, p.ip_allowlist, p.whitelist_only";

/// Refuses a client address outside the account's IP allowlist (403 `ip_not_allowed`).
///
/// # Errors
/// The refusal.
pub fn check_ip_allowlist(principal: &Principal, ip: &str) -> Result<(), ApiError> {
    let Some(list) = &principal.ip_allowlist else {
        return Ok(());
    };
    let list = custody_auth::IpAllowlist::parse(list).map_err(ApiError::internal)?;
    let allowed = ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|addr| list.contains(addr));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "ip_not_allowed",
            format!("this account does not allow requests from {ip} (its IP allowlist)"),
        ))
    }
}

/// Creates a principal. Approvers must bring their identity card (hex).
///
/// # Errors
/// Bad email or password, a taken email (409), or storage failure.
pub async fn create(
    app: &App,
    email: &str,
    password: &str,
    role: Role,
    approver_card: Option<&str>,
    actor: &str,
) -> Result<String, ApiError> {
    let email = normalise_email(email)?;
    check_password(password)?;
    if let Some(card) = approver_card {
        let bytes =
            hex::decode(card).map_err(|_| ApiError::bad_request("approver card must be hex"))?;
        custody_threshold::IdentityCard::decode(&bytes)
            .map_err(|e| ApiError::bad_request(format!("approver card is not valid: {e}")))?;
    }
    if role == Role::Approver && approver_card.is_none() {
        return Err(ApiError::bad_request(
            "an approver needs an identity card: approvals are signed with its key",
        ));
    }
    let hash = app
        .passwords
        .hash_off_thread(password)
        .await
        .map_err(ApiError::internal)?;
    let id = Uuid::new_v4().to_string();
    let now = app.now();
    let key = email_key(&app.vault, &email)?;
    let sealed = seal_email(&app.vault, &id, &email)?;
    let mut tx = app.db.begin().await?;
    email_free(&mut tx, &key).await?;
    sqlx::query(
        "INSERT INTO principals (id, email, email_sealed, password_hash, role, approver_card, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&key)
    .bind(&sealed)
    .bind(&hash)
    .bind(role.as_str())
    .bind(approver_card)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::audit::append(
        &mut tx,
        now,
        "principal.created",
        actor,
        &id,
        &serde_json::json!({ "role": role.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Looks a principal up by id.
///
/// # Errors
/// 404 or storage failure.
pub async fn get(tx: &mut Tx<'_>, id: &str) -> Result<Principal, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| ApiError::not_found("account"))?;
    principal_from_row(&row)
}

/// Looks a principal up by email.
///
/// # Errors
/// 404 or storage failure.
pub async fn by_email(tx: &mut Tx<'_>, app: &App, email: &str) -> Result<Principal, ApiError> {
    let key = email_key(&app.vault, &normalise_email(email)?)?;
    let row = sqlx::query(&format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE email = $1"
    ))
    .bind(&key)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| ApiError::not_found("account"))?;
    principal_from_row(&row)
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// The bearer token; shown once, stored only as a hash.
    pub token: String,
    /// Unix time the session ends.
    pub expires_at: i64,
    /// The principal.
    pub principal_id: String,
    /// The role.
    pub role: Role,
}

/// Checks email and password (rate limit, lockout, IP allowlist first). A wrong password
/// is recorded against the account after the answer (lockout count, event).
async fn check_password_login(
    app: &App,
    email: &str,
    password: &str,
    client: &ClientInfo,
) -> Result<Principal, ApiError> {
    let wrong = || ApiError::unauthorized("email, password or 2FA code is wrong");
    let email = normalise_email(email).map_err(|_| wrong())?;
    let key = email_key(&app.vault, &email)?;
    let mut tx = app.db.begin().await?;
    let row = sqlx::query(&format!(
        "SELECT {PRINCIPAL_COLUMNS}, password_hash FROM principals WHERE email = $1"
    ))
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        // Unknown accounts are limited by IP like known ones, and cost the same.
        crate::factors::take_attempt(app, custody_auth::AttemptKind::Login, &email, &client.ip)?;
        app.passwords
            .verify_unknown_account_off_thread(password)
            .await;
        return Err(wrong());
    };
    let principal = principal_from_row(&row)?;
    crate::factors::take_attempt(
        app,
        custody_auth::AttemptKind::Login,
        &principal.id,
        &client.ip,
    )?;
    crate::factors::ensure_not_locked(&mut tx, app, &principal.id).await?;
    check_ip_allowlist(&principal, &client.ip)?;
    let stored = text(&row, "password_hash")?;
    drop(tx);
    if !app.passwords.verify_off_thread(password, &stored).await {
        let mut e = wrong();
        e.auth_failure = Some(Box::new(crate::factors::AuthFailure {
            principal_id: principal.id.clone(),
            ip: client.ip.clone(),
            what: "password",
            challenge_id: None,
        }));
        return Err(e);
    }
    Ok(principal)
}

/// Signs in with email, password and, once the account has a second factor, one of them
/// (`totp`, `webauthn`, `email_code`, `sms_code` or `recovery_code`; the last four answer
/// a challenge from [`login_challenge`]). Records a new device or new IP address as
/// security events, which place holds (DESIGN.md).
///
/// # Errors
/// 401 with one message for every wrong credential (no account enumeration); 401
/// `second_factor_required` when the password was right but no factor was sent; 403
/// `ip_not_allowed`; 429 when locked or rate-limited.
pub async fn login(
    app: &App,
    email: &str,
    password: &str,
    proof: &StepUp,
    client: &ClientInfo,
) -> Result<SessionCreated, ApiError> {
    let now = app.now();
    let principal = check_password_login(app, email, password, client).await?;
    let mut tx = app.db.begin().await?;
    let factors = if crate::factors::enrolled(&mut tx, &principal.id)
        .await?
        .any_second_factor()
    {
        if proof.is_empty() {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "second_factor_required",
                "this account has two-factor authentication: send `totp`, or start a challenge with POST /v1/sessions/challenges and send its answer",
            ));
        }
        crate::factors::step_up(&mut tx, app, &principal, proof, Action::SignIn, &client.ip)
            .await
            .map_err(|mut e| {
                if e.code == "bad_2fa" {
                    let failure = e.auth_failure.take();
                    e = ApiError::unauthorized("email, password or 2FA code is wrong");
                    e.auth_failure = failure;
                }
                e
            })?
    } else {
        Vec::new()
    };
    note_device_and_ip(&mut tx, app, &principal.id, client, now).await?;
    let (token, hash) = auth::new_token();
    let expires_at = now + app.config.auth.session_minutes * 60;
    sqlx::query(
        "INSERT INTO sessions (token_hash, principal_id, created_at, expires_at, last_used_at, \
         ip, user_agent, device_id, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&hash)
    .bind(&principal.id)
    .bind(now)
    .bind(expires_at)
    .bind(now)
    .bind(&client.ip)
    .bind(&client.user_agent)
    .bind(&client.device_id)
    .bind(Uuid::new_v4().to_string())
    .execute(&mut *tx)
    .await?;
    let factor_names: Vec<&str> = factors.iter().map(|f| f.as_str()).collect();
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::Login,
        Some(&client.ip),
        serde_json::json!({ "device": client.device_id, "factors": factor_names }),
    )
    .await?;
    tx.commit().await?;
    Ok(SessionCreated {
        token: token.to_string(),
        expires_at,
        principal_id: principal.id,
        role: principal.role,
    })
}

/// Before signing in with a security key, an email code or an SMS code: checks email and
/// password and starts the challenge to answer in [`login`].
///
/// # Errors
/// As [`login`] for the password; 409 `not_enrolled` for a method the account lacks.
pub async fn login_challenge(
    app: &App,
    email: &str,
    password: &str,
    method: crate::factors::ChallengeMethod,
    client: &ClientInfo,
) -> Result<crate::factors::Challenge, ApiError> {
    let principal = check_password_login(app, email, password, client).await?;
    crate::factors::start_challenge(app, &principal, method, &client.ip).await
}

async fn note_device_and_ip(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    client: &ClientInfo,
    now: i64,
) -> Result<(), ApiError> {
    let first_login = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE principal_id = $1")
        .bind(principal_id)
        .fetch_one(&mut **tx)
        .await?;
    let first_login = int(&first_login, "n")? == 0;
    let known =
        sqlx::query("SELECT revoked_at FROM devices WHERE principal_id = $1 AND device_id = $2")
            .bind(principal_id)
            .bind(&client.device_id)
            .fetch_optional(&mut **tx)
            .await?;
    let revoked = match &known {
        Some(r) => r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        None => false,
    };
    if known.is_some() && !revoked {
        sqlx::query(
            "UPDATE devices SET last_seen = $1, last_ip = $2 WHERE principal_id = $3 AND device_id = $4",
        )
        .bind(now)
        .bind(&client.ip)
        .bind(principal_id)
        .bind(&client.device_id)
        .execute(&mut **tx)
        .await?;
    } else {
        // The device an account is opened from is confirmed with it; every later one (and
        // a revoked one coming back) is new and must be confirmed before it may withdraw.
        let confirmed_at = first_login.then_some(now);
        if revoked {
            sqlx::query(
                "UPDATE devices SET first_seen = $1, last_seen = $1, user_agent = $2, confirmed_at = NULL, \
                 revoked_at = NULL, last_ip = $3 WHERE principal_id = $4 AND device_id = $5",
            )
            .bind(now)
            .bind(&client.user_agent)
            .bind(&client.ip)
            .bind(principal_id)
            .bind(&client.device_id)
            .execute(&mut **tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO devices (principal_id, device_id, first_seen, last_seen, user_agent, confirmed_at, last_ip) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(principal_id)
            .bind(&client.device_id)
            .bind(now)
            .bind(now)
            .bind(&client.user_agent)
            .bind(confirmed_at)
            .bind(&client.ip)
            .execute(&mut **tx)
            .await?;
        }
        if !first_login {
            risk::record_now(
                tx,
                app,
                principal_id,
                EventKind::NewDevice,
                Some(&client.ip),
                serde_json::json!({ "device": client.device_id, "user_agent": client.user_agent }),
            )
            .await?;
            crate::notify::enqueue_device_confirmation(
                tx,
                app,
                principal_id,
                &client.device_id,
                &client.user_agent,
                &client.ip,
            )
            .await?;
        }
    }
    let ip_known =
        sqlx::query("SELECT first_seen FROM known_ips WHERE principal_id = $1 AND ip = $2")
            .bind(principal_id)
            .bind(&client.ip)
            .fetch_optional(&mut **tx)
            .await?;
    if ip_known.is_none() {
        sqlx::query("INSERT INTO known_ips (principal_id, ip, first_seen) VALUES ($1, $2, $3)")
            .bind(principal_id)
            .bind(&client.ip)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        if !first_login {
            risk::record_now(
                tx,
                app,
                principal_id,
                EventKind::NewIp,
                Some(&client.ip),
                serde_json::json!({}),
            )
            .await?;
        }
    }
    Ok(())
}

/// Resolves a bearer token to its principal, refreshing the session's last use.
///
/// # Errors
/// 401 when the token is unknown, expired or revoked.
pub async fn authenticate(
    app: &App,
    token: &str,
    client: &ClientInfo,
) -> Result<Principal, ApiError> {
    let now = app.now();
    let hash = auth::token_hash(token);
    // One statement, outside a transaction and (on SQLite) off the writer's connection:
    // every authenticated request pays for this, and a round trip to the database is most
    // of what a statement costs.
    let row = sqlx::query(&format!(
        "SELECT s.expires_at, s.revoked, s.last_used_at, s.id AS session_id, s.device_id, \
         {PRINCIPAL_COLUMNS_P} FROM sessions s JOIN principals p ON p.id = s.principal_id \
         WHERE s.token_hash = $1"
    ))
    .bind(&hash)
    .fetch_optional(app.db.read_pool())
    .await?;
    let Some(row) = row else {
        return Err(ApiError::unauthorized(
            "sign in first: the session token is not valid",
        ));
    };
    if int(&row, "revoked")? != 0 || int(&row, "expires_at")? <= now {
        return Err(ApiError::unauthorized(
            "the session has ended; sign in again",
        ));
    }
    let mut principal = principal_from_row(&row)?;
    check_ip_allowlist(&principal, &client.ip)?;
    // Last use is recorded to the minute, and written in the background (ADR 0026).
    if int(&row, "last_used_at")? + 60 <= now {
        app.last_use.note(&hash, now, &client.ip);
    }
    principal.via = Via::Session {
        session_id: opt_text(&row, "session_id")?.unwrap_or_else(|| hash[..16].to_owned()),
        device_id: text(&row, "device_id")?,
    };
    principal.client_ip = client.ip.clone();
    Ok(principal)
}

/// Ends the session of `token`.
///
/// # Errors
/// Storage failure.
pub async fn logout(app: &App, token: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE sessions SET revoked = 1 WHERE token_hash = $1")
        .bind(auth::token_hash(token))
        .execute(app.db.pool())
        .await?;
    Ok(())
}

/// Step-up 2FA for a sensitive action: the factors in `proof` must be right and together
/// authorise `action` (see [`crate::factors::step_up`]).
///
/// # Errors
/// 403 `totp_required` when no second factor is enrolled; 401 `bad_2fa`; 403
/// `insufficient_factors`; 429 when locked or rate-limited.
pub async fn step_up(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    proof: &StepUp,
    action: Action,
    ip: &str,
) -> Result<(), ApiError> {
    crate::factors::step_up(tx, app, principal, proof, action, ip)
        .await
        .map(|_| ())
}

impl std::fmt::Debug for SessionCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCreated")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("principal_id", &self.principal_id)
            .field("role", &self.role)
            .finish()
    }
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment { <redacted> }")
    }
}

/// TOTP enrolment data, shown once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// `otpauth://totp/…` for authenticator apps (as a QR code).
    pub otpauth_uri: String,
    /// The base32 secret for manual entry.
    pub secret_base32: String,
}

/// Starts (or restarts, while unconfirmed) TOTP enrolment.
///
/// # Errors
/// 409 if TOTP is already active (use a 2FA reset).
pub async fn begin_totp(app: &App, principal: &Principal) -> Result<TotpEnrolment, ApiError> {
    if principal.totp_enabled {
        return Err(ApiError::conflict(
            "totp_active",
            "TOTP is already active; a change goes through a 2FA reset",
        ));
    }
    let secret = auth::new_totp_secret();
    let sealed = crate::factors::seal_totp(app, &principal.id, &secret)?;
    sqlx::query("UPDATE principals SET totp_secret = $1 WHERE id = $2 AND totp_enabled = 0")
        .bind(&sealed)
        .bind(&principal.id)
        .execute(app.db.pool())
        .await?;
    let (uri, b32) =
        auth::totp_provisioning(&secret, &principal.email(app)?).map_err(ApiError::internal)?;
    Ok(TotpEnrolment {
        otpauth_uri: uri,
        secret_base32: b32.to_string(),
    })
}

/// Confirms enrolment with a first code.
///
/// # Errors
/// 409 without a pending enrolment, 401 for a wrong code.
pub async fn confirm_totp(
    app: &App,
    principal: &Principal,
    code: &str,
    proof: &StepUp,
) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    // Adding a factor to an account that has one is a security change: prove it with
    // what the account already has.
    if crate::factors::enrolled(&mut tx, &principal.id)
        .await?
        .any_second_factor()
    {
        step_up(
            &mut tx,
            app,
            principal,
            proof,
            Action::SensitiveChange,
            &principal.client_ip,
        )
        .await?;
    }
    let row = sqlx::query("SELECT totp_secret, totp_enabled FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    let Some(stored) = opt_text(&row, "totp_secret")? else {
        return Err(ApiError::conflict(
            "no_enrolment",
            "start enrolment first (POST /v1/me/totp)",
        ));
    };
    if int(&row, "totp_enabled")? != 0 {
        return Err(ApiError::conflict("totp_active", "TOTP is already active"));
    }
    let secret = crate::factors::open_totp(app, &principal.id, &stored)?;
    let Some(step) = auth::totp_check(&secret, code, now, 0).map_err(ApiError::internal)? else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "bad_2fa",
            "the code is wrong",
        ));
    };
    sqlx::query("UPDATE principals SET totp_enabled = 1, totp_last_step = $1 WHERE id = $2")
        .bind(step)
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::TwoFactorEnabled,
        None,
        serde_json::json!({ "method": "totp" }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An admin resets a principal's 2FA (lost phone): TOTP is removed and a 48-hour hold
/// starts.
///
/// # Errors
/// 404 or storage failure.
pub async fn reset_totp(app: &App, admin: &Principal, principal_id: &str) -> Result<(), ApiError> {
    let mut tx = app.db.begin().await?;
    get(&mut tx, principal_id).await?;
    sqlx::query("UPDATE principals SET totp_enabled = 0, totp_secret = NULL WHERE id = $1")
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sessions SET revoked = 1 WHERE principal_id = $1")
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        principal_id,
        EventKind::TwoFactorReset,
        None,
        serde_json::json!({ "by": admin.id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the password (with step-up 2FA if enrolled); other sessions end.
///
/// # Errors
/// 401 for a wrong current password or 2FA code.
pub async fn change_password(
    app: &App,
    principal: &Principal,
    current: &str,
    new: &str,
    proof: &StepUp,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    check_password(new)?;
    let mut tx = app.db.begin().await?;
    let row = sqlx::query("SELECT password_hash FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    if !app
        .passwords
        .verify_off_thread(current, &text(&row, "password_hash")?)
        .await
    {
        return Err(ApiError::unauthorized("the current password is wrong"));
    }
    if crate::factors::enrolled(&mut tx, &principal.id)
        .await?
        .any_second_factor()
    {
        step_up(
            &mut tx,
            app,
            principal,
            proof,
            Action::SensitiveChange,
            &client.ip,
        )
        .await?;
    }
    let hash = app
        .passwords
        .hash_off_thread(new)
        .await
        .map_err(ApiError::internal)?;
    sqlx::query("UPDATE principals SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::PasswordChange,
        Some(&client.ip),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Resets a password without the old one (the account-recovery path, run by an admin or
/// reported by the back office): every session ends and the 24-hour hold starts.
///
/// # Errors
/// 404 or storage failure.
pub async fn reset_password(
    app: &App,
    actor: &str,
    principal_id: &str,
    new: &str,
) -> Result<(), ApiError> {
    check_password(new)?;
    let hash = app
        .passwords
        .hash_off_thread(new)
        .await
        .map_err(ApiError::internal)?;
    let mut tx = app.db.begin().await?;
    get(&mut tx, principal_id).await?;
    sqlx::query("UPDATE principals SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sessions SET revoked = 1 WHERE principal_id = $1")
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        principal_id,
        EventKind::PasswordReset,
        None,
        serde_json::json!({ "by": actor }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An email change waiting for its confirmation link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmailChangePending {
    /// The address the confirmation link was sent to; the account keeps its current
    /// address until the link is followed.
    pub new_email: String,
    /// Until when the link works (unix seconds).
    pub confirm_by: i64,
}

/// Starts an email change (step-up 2FA): the new address gets a single-use confirmation
/// link, the current one an alert with a "this wasn't me" link. Nothing changes until
/// the link is followed (`confirm_email_change`), which starts the email-change hold (48 hours or more).
///
/// # Errors
/// Bad, unchanged or taken email; wrong 2FA.
pub async fn change_email(
    app: &App,
    principal: &Principal,
    new_email: &str,
    proof: &StepUp,
    client: &ClientInfo,
) -> Result<EmailChangePending, ApiError> {
    let new_email = normalise_email(new_email)?;
    let new_key = email_key(&app.vault, &new_email)?;
    if new_key == principal.email_key {
        return Err(ApiError::bad_request("this is already the account's email"));
    }
    let now = app.now();
    let mut tx = app.db.begin().await?;
    step_up(
        &mut tx,
        app,
        principal,
        proof,
        Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    email_free(&mut tx, &new_key).await?;
    // The link to the new address, the alert to the current one (the owner's) and the
    // audit entry, in one batch.
    let mut writes = crate::db::Writes::new();
    let confirm_by = crate::notify::enqueue_email_confirmation_to(
        &mut writes,
        app,
        &principal.id,
        &principal.email_key,
        &new_email,
        &client.ip,
    )?;
    crate::notify::enqueue_to(
        &mut writes,
        app,
        Some(&principal.id),
        "security.email_change_requested",
        serde_json::json!({ "at": now, "ip": client.ip }),
    )?;
    crate::audit::append_to(
        &mut writes,
        now,
        "principal.email_change_requested",
        &principal.id,
        &principal.id,
        &serde_json::json!({ "ip": client.ip }),
    );
    writes.run(&mut tx).await?;
    tx.commit().await?;
    Ok(EmailChangePending {
        new_email,
        confirm_by,
    })
}

/// Refuses an address another account has (`key`: its lookup key).
async fn email_free(tx: &mut Tx<'_>, key: &str) -> Result<(), ApiError> {
    let taken = sqlx::query("SELECT id FROM principals WHERE email = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(email_taken());
    }
    Ok(())
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with this email exists")
}

/// Applies an email change whose confirmation link was followed (inside the link's
/// transaction): only while the account still has the address the change was asked
/// from (`old_key`, its lookup key), and the new one is still free (the column is
/// unique). Records the change (the email-change hold and the alert to the new address)
/// and tells the old address too.
///
/// # Errors
/// 409 when the account's email changed since or the new one was taken meanwhile.
pub(crate) async fn confirm_email_change(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    old_key: &str,
    new_email: &str,
    ip: &str,
) -> Result<(), ApiError> {
    let old = sqlx::query("SELECT email, email_sealed FROM principals WHERE id = $1")
        .bind(principal_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let done = sqlx::query(
        "UPDATE principals SET email = $1, email_sealed = $2 WHERE id = $3 AND email = $4",
    )
    .bind(email_key(&app.vault, new_email)?)
    .bind(seal_email(&app.vault, principal_id, new_email)?)
    .bind(principal_id)
    .bind(old_key)
    .execute(&mut **tx)
    .await;
    let done = match done {
        Ok(done) => done,
        // Another account took it since the change was asked for.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    };
    if done.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "email_changed",
            "the account's email address changed after this link was sent; ask for the change again",
        ));
    }
    // The address the account had, read before the change, for the alert to it.
    let old_email = open_email(
        &app.vault,
        principal_id,
        &text(&old, "email")?,
        opt_text(&old, "email_sealed")?.as_deref(),
    )?;
    let now = app.now();
    risk::record_now(
        tx,
        app,
        principal_id,
        EventKind::EmailChange,
        Some(ip),
        serde_json::json!({ "by": "confirmation_link" }),
    )
    .await?;
    // The alert above reaches the new address; the old one — the owner, if this was not
    // them — is told too, with its own "this wasn't me" link.
    crate::notify::enqueue(
        tx,
        app,
        Some(principal_id),
        "security.email_change",
        serde_json::json!({ "at": now, "ip": ip, crate::notify::TO_EMAIL_KEY: old_email.as_str() }),
    )
    .await?;
    Ok(())
}

/// A whitelisted withdrawal address of a user.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhitelistedAddress {
    /// The address.
    pub address: String,
    /// When it was added.
    pub added_at: i64,
    /// From when it may receive withdrawals.
    pub active_from: i64,
}

/// Adds an address to the user's withdrawal whitelist (step-up 2FA); usable only after the
/// activation delay.
///
/// # Errors
/// Bad address for the network, wrong 2FA, already listed.
pub async fn whitelist_add(
    app: &App,
    principal: &Principal,
    address: &str,
    proof: &StepUp,
    client: &ClientInfo,
) -> Result<WhitelistedAddress, ApiError> {
    let address = crate::withdrawals::parse_address(app, address)?;
    let now = app.now();
    let active_from = now + app.config.auth.whitelist_activation_hours * 3600;
    let mut tx = app.db.begin().await?;
    step_up(
        &mut tx,
        app,
        principal,
        proof,
        Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    let exists = sqlx::query(
        "SELECT added_at FROM address_whitelist WHERE principal_id = $1 AND address = $2",
    )
    .bind(&principal.id)
    .bind(&address)
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_some() {
        return Err(ApiError::conflict(
            "already_listed",
            "this address is already on the whitelist",
        ));
    }
    sqlx::query(
        "INSERT INTO address_whitelist (principal_id, address, added_at, active_from) VALUES ($1, $2, $3, $4)",
    )
    .bind(&principal.id)
    .bind(&address)
    .bind(now)
    .bind(active_from)
    .execute(&mut *tx)
    .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::WhitelistChange,
        Some(&client.ip),
        serde_json::json!({ "added": address, "active_from": active_from }),
    )
    .await?;
    tx.commit().await?;
    Ok(WhitelistedAddress {
        address,
        added_at: now,
        active_from,
    })
}

/// The user's whitelist.
///
/// # Errors
/// Storage failure.
pub async fn whitelist(
    app: &App,
    principal: &Principal,
) -> Result<Vec<WhitelistedAddress>, ApiError> {
    let rows = sqlx::query(
        "SELECT address, added_at, active_from FROM address_whitelist WHERE principal_id = $1 ORDER BY added_at",
    )
    .bind(&principal.id)
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WhitelistedAddress {
                address: text(r, "address")?,
                added_at: int(r, "added_at")?,
                active_from: int(r, "active_from")?,
            })
        })
        .collect()
}

/// Sessions' last use, noted by requests and written in batches off their path (ADR 0026).
///
/// A session's last use and address are what its owner sees in the session list; no
/// check depends on them. Writing them from the request that noticed them cost a durable
/// commit of its own on that request's path (on SQLite a turn of the one writer with its
/// own `fsync`). Requests note them here instead; [`LastUse::flush`] writes what was noted,
/// from the background task every quarter second, before the session list is read, and at
/// shutdown. A crash loses at most the notes since the last flush.
#[derive(Default)]
pub struct LastUse {
    /// Token hash → (time, IP) of the latest use not yet written.
    noted: std::sync::Mutex<std::collections::HashMap<String, (i64, String)>>,
    /// Held by the flush in progress, so that a flush asked for meanwhile (before the
    /// session list is read) returns only once the notes taken before it are written.
    flushing: tokio::sync::Mutex<()>,
}

/// Only how many: the notes name sessions and addresses.
impl std::fmt::Debug for LastUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastUse")
            .field("pending", &self.pending())
            .finish()
    }
}

/// How many sessions one flush transaction updates.
const LAST_USE_BATCH: usize = 500;

impl LastUse {
    fn noted(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (i64, String)>> {
        self.noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a use of the session with `token_hash` at `at` from `ip`.
    pub(crate) fn note(&self, token_hash: &str, at: i64, ip: &str) {
        let mut noted = self.noted();
        let entry = noted
            .entry(token_hash.to_owned())
            .or_insert_with(|| (at, ip.to_owned()));
        if entry.0 <= at {
            *entry = (at, ip.to_owned());
        }
    }

    /// How many uses are noted and not yet written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.noted().len()
    }

    /// Writes every noted use (never moving a session's last use back) and returns how
    /// many notes it wrote. What a failed batch held is noted again, unless a later use
    /// of the same session was noted meanwhile.
    ///
    /// # Errors
    /// Storage failure.
    pub async fn flush(&self, db: &crate::db::Db) -> Result<usize, crate::db::DbError> {
        let _turn = self.flushing.lock().await;
        let noted: Vec<(String, (i64, String))> =
            std::mem::take(&mut *self.noted()).into_iter().collect();
        let mut written = 0;
        let mut chunks = noted.chunks(LAST_USE_BATCH);
        while let Some(chunk) = chunks.next() {
            let mut writes = crate::db::Writes::new();
            for (hash, (at, ip)) in chunk {
                writes
                    .push(
                        "UPDATE sessions SET last_used_at = $1, ip = $2 \
                         WHERE token_hash = $3 AND last_used_at < $1",
                    )
                    .bind(*at)
                    .bind(ip.clone())
                    .bind(hash.clone());
            }
            let done = async {
                let mut tx = db.begin().await?;
                writes.run(&mut tx).await?;
                tx.commit().await?;
                Ok::<(), crate::db::DbError>(())
            }
            .await;
            if let Err(e) = done {
                let mut again = self.noted();
                for (hash, (at, ip)) in std::iter::once(chunk).chain(chunks).flatten() {
                    again
                        .entry(hash.clone())
                        .or_insert_with(|| (*at, ip.clone()));
                }
                return Err(e);
            }
            written += chunk.len();
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::LastUse;

    #[tokio::test]
    async fn a_flush_asked_for_during_another_waits_for_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let db = crate::db::Db::connect(&url, 1).await.unwrap();
        db.migrate().await.unwrap();
        let last_use = LastUse::default();
        last_use.note("hash", 5, "192.0.2.1");
        // A flush in progress (the background task's), holding its turn.
        let in_progress = last_use.flushing.lock().await;
        let asked = last_use.flush(&db);
        tokio::pin!(asked);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut asked)
                .await
                .is_err(),
            "returned while another flush was writing"
        );
        drop(in_progress);
        assert_eq!(asked.await.unwrap(), 1);
        assert_eq!(last_use.pending(), 0);
        db.close().await;
    }
}
