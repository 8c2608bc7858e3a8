//! Devices and sessions, the account's IP allowlist, and the withdrawal whitelist's
//! removal and whitelist-only mode.
//!
//! A device is what a client presents as `X-Device-Id` (or, without it, a hash of its user
//! agent). The device an account is opened from is confirmed with it; every later device
//! signs in but cannot withdraw until confirmed from the link emailed to the account.
//! Revoking a device ends its sessions; if it comes back it is new again.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::accounts::{self, ClientInfo, Principal, Via};
use crate::app::App;
use crate::db::{int, opt_text, text};
use crate::error::ApiError;
use crate::factors::StepUp;
use crate::risk::{self, EventKind};
use custody_auth::Action;

/// A device as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// The device id.
    pub id: String,
    /// Its user agent at first sight.
    pub user_agent: String,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// The address it was last seen from.
    pub last_ip: Option<String>,
    /// When it was confirmed from the emailed link; until then it cannot withdraw.
    pub confirmed_at: Option<i64>,
    /// Whether this request comes from it.
    pub current: bool,
}

/// A session as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session id (not the token).
    pub id: String,
    /// The device it was opened from.
    pub device_id: String,
    /// Opened.
    pub created_at: i64,
    /// Last used (to the minute).
    pub last_used_at: i64,
    /// Ends.
    pub expires_at: i64,
    /// The address it was last used from.
    pub ip: String,
    /// The user agent.
    pub user_agent: String,
    /// Whether this request uses it.
    pub current: bool,
}

fn current_ids(principal: &Principal) -> (Option<&str>, Option<&str>) {
    match &principal.via {
        Via::Session {
            session_id,
            device_id,
        } => (Some(session_id.as_str()), Some(device_id.as_str())),
        _ => (None, None),
    }
}

/// The account's devices (revoked ones are not listed).
///
/// # Errors
/// Storage failure.
pub async fn devices(app: &App, principal: &Principal) -> Result<Vec<DeviceView>, ApiError> {
    let (_, device) = current_ids(principal);
    let rows = sqlx::query(
        "SELECT device_id, user_agent, first_seen, last_seen, last_ip, confirmed_at FROM devices \
         WHERE principal_id = $1 AND revoked_at IS NULL ORDER BY last_seen DESC",
    )
    .bind(&principal.id)
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let id = text(r, "device_id")?;
            Ok(DeviceView {
                current: device == Some(id.as_str()),
                id,
                user_agent: text(r, "user_agent")?,
                first_seen: int(r, "first_seen")?,
                last_seen: int(r, "last_seen")?,
                last_ip: opt_text(r, "last_ip")?,
                confirmed_at: r.try_get::<Option<i64>, _>("confirmed_at")?,
            })
        })
        .collect()
}

/// The account's open sessions.
///
/// # Errors
/// Storage failure.
pub async fn sessions(app: &App, principal: &Principal) -> Result<Vec<SessionView>, ApiError> {
    let (session, _) = current_ids(principal);
    // What this process noted of the sessions' use, this request's included, first.
    app.last_use.flush(&app.db).await?;
    let rows = sqlx::query(
        "SELECT id, token_hash, device_id, created_at, last_used_at, expires_at, ip, user_agent \
         FROM sessions WHERE principal_id = $1 AND revoked = 0 AND expires_at > $2 \
         ORDER BY last_used_at DESC",
    )
    .bind(&principal.id)
    .bind(app.now())
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let id = opt_text(r, "id")?
                .unwrap_or_else(|| text(r, "token_hash").unwrap_or_default()[..16].to_owned());
            Ok(SessionView {
                current: session == Some(id.as_str()),
                id,
                device_id: text(r, "device_id")?,
                created_at: int(r, "created_at")?,
                last_used_at: int(r, "last_used_at")?,
                expires_at: int(r, "expires_at")?,
                ip: text(r, "ip")?,
                user_agent: text(r, "user_agent")?,
            })
        })
        .collect()
}

/// Ends one session (`Some(id)`) or every session but the current one (`None`).
/// Returns how many ended.
///
/// # Errors
/// 404 for an unknown session id.
pub async fn revoke_sessions(
    app: &App,
    principal: &Principal,
    id: Option<&str>,
) -> Result<u64, ApiError> {
    let (current, _) = current_ids(principal);
    let mut tx = app.db.begin().await?;
    let ended = match id {
        Some(id) => {
            let r = sqlx::query(
                "UPDATE sessions SET revoked = 1 WHERE principal_id = $1 AND revoked = 0 \
                 AND (id = $2 OR (id IS NULL AND substr(token_hash, 1, 16) = $2))",
            )
            .bind(&principal.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(ApiError::not_found("session"));
            }
            r.rows_affected()
        }
        None => sqlx::query(
            "UPDATE sessions SET revoked = 1 WHERE principal_id = $1 AND revoked = 0 \
             AND (id IS NULL OR id <> $2)",
        )
        .bind(&principal.id)
        .bind(current.unwrap_or(""))
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::DeviceRevoked,
        Some(&principal.client_ip),
        serde_json::json!({ "sessions": ended, "session": id }),
    )
    .await?;
    tx.commit().await?;
    Ok(ended)
}

/// Revokes a device: its sessions end and it must be confirmed again if it returns.
///
/// # Errors
/// 404 for an unknown device.
pub async fn revoke_device(
    app: &App,
    principal: &Principal,
    device_id: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let r = sqlx::query(
        "UPDATE devices SET revoked_at = $1, confirmed_at = NULL WHERE principal_id = $2 AND device_id = $3 \
         AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&principal.id)
    .bind(device_id)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("device"));
    }
    let ended = sqlx::query(
        "UPDATE sessions SET revoked = 1 WHERE principal_id = $1 AND device_id = $2 AND revoked = 0",
    )
    .bind(&principal.id)
    .bind(device_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::DeviceRevoked,
        Some(&principal.client_ip),
        serde_json::json!({ "device": device_id, "sessions": ended }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The refusal for a session whose device is not confirmed.
pub(crate) fn unconfirmed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "device_unconfirmed",
        "this device is new: confirm it from the link emailed to the account before withdrawing",
    )
}

/// An IP allowlist change.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IpAllowlistChange {
    /// Networks (CIDR or addresses, comma or space separated); empty or absent allows any.
    pub ip_allowlist: Option<String>,
    /// Second-factor proof.
    #[serde(flatten)]
    pub factors: StepUp,
}

/// Sets the account's IP allowlist (step-up). The request's own address must be inside
/// the new list, so nobody locks themselves out by accident.
///
/// # Errors
/// 400 for a bad list or one that excludes the caller; step-up failures.
pub async fn set_ip_allowlist(
    app: &App,
    principal: &Principal,
    change: &IpAllowlistChange,
    client: &ClientInfo,
) -> Result<Option<String>, ApiError> {
    let list = match change.ip_allowlist.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            custody_auth::IpAllowlist::parse(text)
                .map_err(|e| ApiError::bad_request(format!("ip_allowlist: {e}")))?,
        ),
    };
    if let Some(list) = &list {
        let inside = client
            .ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| list.contains(ip));
        if !inside {
            return Err(ApiError::bad_request(format!(
                "the new allowlist does not include this request's address {}; add it or you would lock yourself out",
                client.ip
            )));
        }
    }
    let stored = list.as_ref().map(ToString::to_string);
    let mut tx = app.db.begin().await?;
    accounts::step_up(
        &mut tx,
        app,
        principal,
        &change.factors,
        Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    sqlx::query("UPDATE principals SET ip_allowlist = $1 WHERE id = $2")
        .bind(&stored)
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::IpAllowlistChange,
        Some(&client.ip),
        serde_json::json!({ "ip_allowlist": stored }),
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}

/// Removes an address from the withdrawal whitelist at once (step-up).
///
/// # Errors
/// 404 when not listed; step-up failures.
pub async fn whitelist_remove(
    app: &App,
    principal: &Principal,
    address: &str,
    proof: &StepUp,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    let mut tx = app.db.begin().await?;
    accounts::step_up(
        &mut tx,
        app,
        principal,
        proof,
        Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    let gone =
        sqlx::query("DELETE FROM address_whitelist WHERE principal_id = $1 AND address = $2")
            .bind(&principal.id)
            .bind(address)
            .execute(&mut *tx)
            .await?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::not_found("whitelisted address"));
    }
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::WhitelistChange,
        Some(&client.ip),
        serde_json::json!({ "removed": address }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A whitelist-only mode change.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct WhitelistMode {
    /// true: withdrawals only to active whitelisted addresses.
    pub whitelist_only: bool,
    /// Second-factor proof.
    #[serde(flatten)]
    pub factors: StepUp,
}

/// Turns the whitelist-only mode on or off (step-up). Off is a security change: a
/// `whitelist_mode_off` event holds withdrawals (`auth.whitelist_off_hold_hours`).
///
/// # Errors
/// Step-up failures.
pub async fn set_whitelist_mode(
    app: &App,
    principal: &Principal,
    mode: &WhitelistMode,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    let mut tx = app.db.begin().await?;
    accounts::step_up(
        &mut tx,
        app,
        principal,
        &mode.factors,
        Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    let row = sqlx::query("SELECT whitelist_only FROM principals WHERE id = $1")
        .bind(&principal.id)
        .fetch_one(&mut *tx)
        .await?;
    let was = int(&row, "whitelist_only")? != 0;
    if was == mode.whitelist_only {
        return Ok(());
    }
    sqlx::query("UPDATE principals SET whitelist_only = $1 WHERE id = $2")
        .bind(i64::from(mode.whitelist_only))
        .bind(&principal.id)
        .execute(&mut *tx)
        .await?;
    let kind = if mode.whitelist_only {
        EventKind::WhitelistChange
    } else {
        EventKind::WhitelistModeOff
    };
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        kind,
        Some(&client.ip),
        serde_json::json!({ "whitelist_only": mode.whitelist_only }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
