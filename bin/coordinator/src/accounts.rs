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
use zeroize::Zeroizing;

use crate::app::App;
use crate::auth;
use crate::db::{int, opt_text, text, Tx};
use crate::error::ApiError;
use crate::risk::{self, EventKind, EventSource};

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
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Whether TOTP is enrolled.
    pub totp_enabled: bool,
    /// Hex of the approver's identity card, for approvers.
    pub approver_card: Option<String>,
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
        email: text(row, "email")?,
        role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role in database"))?,
        totp_enabled: int(row, "totp_enabled")? != 0,
        approver_card: opt_text(row, "approver_card")?,
    })
}

const PRINCIPAL_COLUMNS: &str = "id, email, role, totp_enabled, approver_card";

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
    let hash = app.passwords.hash(password).map_err(ApiError::internal)?;
    let id = Uuid::new_v4().to_string();
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let taken = sqlx::query("SELECT id FROM principals WHERE email = $1")
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(
            "email_taken",
            "an account with this email exists",
        ));
    }
    sqlx::query(
        "INSERT INTO principals (id, email, password_hash, role, approver_card, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&email)
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
pub async fn by_email(tx: &mut Tx<'_>, email: &str) -> Result<Principal, ApiError> {
    let email = normalise_email(email)?;
    let row = sqlx::query(&format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE email = $1"
    ))
    .bind(&email)
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

/// Signs in with email, password and (once enrolled) a TOTP code. Records a new device
/// or new IP address as security events, which place holds (DESIGN.md).
///
/// # Errors
/// 401 with one message for every wrong credential (no account enumeration).
pub async fn login(
    app: &App,
    email: &str,
    password: &str,
    totp_code: Option<&str>,
    client: &ClientInfo,
) -> Result<SessionCreated, ApiError> {
    let wrong = || ApiError::unauthorized("email, password or 2FA code is wrong");
    let now = app.now();
    let email = normalise_email(email).map_err(|_| wrong())?;
    let mut tx = app.db.begin().await?;
    let row = sqlx::query(
        "SELECT id, email, role, totp_enabled, approver_card, password_hash, totp_secret, \
         totp_last_step FROM principals WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        app.passwords.verify_unknown_account(password);
        return Err(wrong());
    };
    let principal = principal_from_row(&row)?;
    let stored = text(&row, "password_hash")?;
    if !app.passwords.verify(password, &stored) {
        risk::record_event(
            &mut tx,
            app,
            &principal.id,
            EventKind::LoginFailed,
            now,
            EventSource::Coordinator,
            Some(&client.ip),
            serde_json::json!({ "reason": "password" }),
        )
        .await?;
        tx.commit().await?;
        return Err(wrong());
    }
    if principal.totp_enabled {
        let secret = Zeroizing::new(opt_text(&row, "totp_secret")?.unwrap_or_default());
        let last = int(&row, "totp_last_step")?;
        let code = totp_code.ok_or_else(wrong)?;
        match auth::totp_check(&secret, code, now, last).map_err(ApiError::internal)? {
            Some(step) => {
                sqlx::query("UPDATE principals SET totp_last_step = $1 WHERE id = $2")
                    .bind(step)
                    .bind(&principal.id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                risk::record_event(
                    &mut tx,
                    app,
                    &principal.id,
                    EventKind::LoginFailed,
                    now,
                    EventSource::Coordinator,
                    Some(&client.ip),
                    serde_json::json!({ "reason": "2fa" }),
                )
                .await?;
                tx.commit().await?;
                return Err(wrong());
            }
        }
    }
    note_device_and_ip(&mut tx, app, &principal.id, client, now).await?;
    let (token, hash) = auth::new_token();
    let expires_at = now + app.config.auth.session_minutes * 60;
    sqlx::query(
        "INSERT INTO sessions (token_hash, principal_id, created_at, expires_at, last_used_at, \
         ip, user_agent, device_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&hash)
    .bind(&principal.id)
    .bind(now)
    .bind(expires_at)
    .bind(now)
    .bind(&client.ip)
    .bind(&client.user_agent)
    .bind(&client.device_id)
    .execute(&mut *tx)
    .await?;
    risk::record_event(
        &mut tx,
        app,
        &principal.id,
        EventKind::Login,
        now,
        EventSource::Coordinator,
        Some(&client.ip),
        serde_json::json!({ "device": client.device_id }),
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
        sqlx::query("SELECT last_seen FROM devices WHERE principal_id = $1 AND device_id = $2")
            .bind(principal_id)
            .bind(&client.device_id)
            .fetch_optional(&mut **tx)
            .await?;
    if known.is_some() {
        sqlx::query("UPDATE devices SET last_seen = $1 WHERE principal_id = $2 AND device_id = $3")
            .bind(now)
            .bind(principal_id)
            .bind(&client.device_id)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO devices (principal_id, device_id, first_seen, last_seen, user_agent) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(principal_id)
        .bind(&client.device_id)
        .bind(now)
        .bind(now)
        .bind(&client.user_agent)
        .execute(&mut **tx)
        .await?;
        // The device an account is opened from is not "new"; every later one is.
        if !first_login {
            risk::record_event(
                tx,
                app,
                principal_id,
                EventKind::NewDevice,
                now,
                EventSource::Coordinator,
                Some(&client.ip),
                serde_json::json!({ "device": client.device_id, "user_agent": client.user_agent }),
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
            risk::record_event(
                tx,
                app,
                principal_id,
                EventKind::NewIp,
                now,
                EventSource::Coordinator,
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
pub async fn authenticate(app: &App, token: &str) -> Result<Principal, ApiError> {
    let now = app.now();
    let hash = auth::token_hash(token);
    let mut tx = app.db.begin().await?;
    let row =
        sqlx::query("SELECT principal_id, expires_at, revoked, last_used_at FROM sessions WHERE token_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *tx)
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
    let principal = get(&mut tx, &text(&row, "principal_id")?).await?;
    // Last use is recorded to the minute, so reading requests do not each cost a durable
    // write.
    if int(&row, "last_used_at")? + 60 <= now {
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
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

/// Requires a valid, unused TOTP code from `principal` (step-up 2FA for sensitive actions).
///
/// # Errors
/// 403 `totp_required` when not enrolled; 401 `bad_2fa` for a wrong or replayed code (a
/// `two_factor_failed` event is recorded by the caller's transaction).
pub async fn step_up(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    code: Option<&str>,
) -> Result<(), ApiError> {
    let row = sqlx::query(
        "SELECT totp_enabled, totp_secret, totp_last_step FROM principals WHERE id = $1",
    )
    .bind(&principal.id)
    .fetch_one(&mut **tx)
    .await?;
    if int(&row, "totp_enabled")? == 0 {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "totp_required",
            "this action needs two-factor authentication; enrol TOTP first (POST /v1/me/totp)",
        ));
    }
    let Some(code) = code else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "bad_2fa",
            "this action needs a current 2FA code in `totp`",
        ));
    };
    let secret = Zeroizing::new(opt_text(&row, "totp_secret")?.unwrap_or_default());
    let last = int(&row, "totp_last_step")?;
    match auth::totp_check(&secret, code, app.now(), last).map_err(ApiError::internal)? {
        Some(step) => {
            sqlx::query("UPDATE principals SET totp_last_step = $1 WHERE id = $2")
                .bind(step)
                .bind(&principal.id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
        None => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "bad_2fa",
            "the 2FA code is wrong or was already used",
        )),
    }
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
    sqlx::query("UPDATE principals SET totp_secret = $1 WHERE id = $2 AND totp_enabled = 0")
        .bind(secret.as_str())
        .bind(&principal.id)
        .execute(app.db.pool())
        .await?;
    let (uri, b32) =
        auth::totp_provisioning(&secret, &principal.email).map_err(ApiError::internal)?;
    Ok(TotpEnrolment {
        otpauth_uri: uri,
        secret_base32: b32.to_string(),
    })
}

/// Confirms enrolment with a first code.
///
/// # Errors
/// 409 without a pending enrolment, 401 for a wrong code.
pub async fn confirm_totp(app: &App, principal: &Principal, code: &str) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let row = sqlx::query("SELECT totp_secret, totp_enabled FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    let Some(secret) = opt_text(&row, "totp_secret")?.map(Zeroizing::new) else {
        return Err(ApiError::conflict(
            "no_enrolment",
            "start enrolment first (POST /v1/me/totp)",
        ));
    };
    if int(&row, "totp_enabled")? != 0 {
        return Err(ApiError::conflict("totp_active", "TOTP is already active"));
    }
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
    risk::record_event(
        &mut tx,
        app,
        &principal.id,
        EventKind::TwoFactorEnabled,
        now,
        EventSource::Coordinator,
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
    let now = app.now();
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
    risk::record_event(
        &mut tx,
        app,
        principal_id,
        EventKind::TwoFactorReset,
        now,
        EventSource::Coordinator,
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
    totp: Option<&str>,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    check_password(new)?;
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let row = sqlx::query("SELECT password_hash FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    if !app.passwords.verify(current, &text(&row, "password_hash")?) {
        return Err(ApiError::unauthorized("the current password is wrong"));
    }
    if principal.totp_enabled {
        step_up(&mut tx, app, principal, totp).await?;
    }
    let hash = app.passwords.hash(new).map_err(ApiError::internal)?;
    sqlx::query("UPDATE principals SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_event(
        &mut tx,
        app,
        &principal.id,
        EventKind::PasswordChange,
        now,
        EventSource::Coordinator,
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
    let now = app.now();
    let hash = app.passwords.hash(new).map_err(ApiError::internal)?;
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
    risk::record_event(
        &mut tx,
        app,
        principal_id,
        EventKind::PasswordReset,
        now,
        EventSource::Coordinator,
        None,
        serde_json::json!({ "by": actor }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the email (step-up 2FA); starts the 48-hour hold.
///
/// # Errors
/// Bad or taken email, wrong 2FA.
pub async fn change_email(
    app: &App,
    principal: &Principal,
    new_email: &str,
    totp: Option<&str>,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    let new_email = normalise_email(new_email)?;
    let now = app.now();
    let mut tx = app.db.begin().await?;
    step_up(&mut tx, app, principal, totp).await?;
    let taken = sqlx::query("SELECT id FROM principals WHERE email = $1")
        .bind(&new_email)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ApiError::conflict(
            "email_taken",
            "an account with this email exists",
        ));
    }
    sqlx::query("UPDATE principals SET email = $1 WHERE id = $2")
        .bind(&new_email)
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_event(
        &mut tx,
        app,
        &principal.id,
        EventKind::EmailChange,
        now,
        EventSource::Coordinator,
        Some(&client.ip),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
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
    totp: Option<&str>,
    client: &ClientInfo,
) -> Result<WhitelistedAddress, ApiError> {
    let address = crate::withdrawals::parse_address(app, address)?;
    let now = app.now();
    let active_from = now + app.config.auth.whitelist_activation_hours * 3600;
    let mut tx = app.db.begin().await?;
    step_up(&mut tx, app, principal, totp).await?;
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
    risk::record_event(
        &mut tx,
        app,
        &principal.id,
        EventKind::WhitelistChange,
        now,
        EventSource::Coordinator,
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

/// Whether `address` is on `principal`'s whitelist and active at `now`; `Err` carries
/// when it becomes active.
pub(crate) async fn whitelist_status(
    tx: &mut Tx<'_>,
    principal_id: &str,
    address: &str,
    now: i64,
) -> Result<Result<(), Option<i64>>, ApiError> {
    let row = sqlx::query(
        "SELECT active_from FROM address_whitelist WHERE principal_id = $1 AND address = $2",
    )
    .bind(principal_id)
    .bind(address)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        None => Err(None),
        Some(r) => {
            let from = r.try_get::<i64, _>("active_from")?;
            if from <= now {
                Ok(())
            } else {
                Err(Some(from))
            }
        }
    })
}
