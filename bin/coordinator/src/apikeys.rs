//! API keys and HMAC-signed requests (ADR 0016).
//!
//! A key has scopes (`read`, `withdraw`, `admin`), an optional IP allowlist, an expiry and
//! can be revoked. Its secret is shown once and stored sealed by the vault key file (the
//! server needs it to check signatures). A request signed with a key carries the four
//! `X-Custody-*` headers; [`authenticate_signed`] checks them before any handler runs and
//! leaves the key's principal in the request for the `Auth` extractor.
//!
//! What a key may reach: `GET` needs `read`; `POST /v1/withdrawals` and
//! `POST /v1/withdrawals/{id}/cancel` need `withdraw`, and a key without a narrow IP
//! allowlist never withdraws; everything else needs `admin`.
//! Security settings (password, email, second factors, whitelist, IP allowlist, devices,
//! sessions) are never changed with a key: they need a signed-in person with step-up
//! 2FA. Withdrawals with a key go only to active whitelisted addresses.

use std::net::IpAddr;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custody_auth::{
    ApiKeyId, ApiKeyRecord, ApiKeySecret, NewApiKey, NonceStore, NonceStoreError, ReplayWindow,
    RequestSignature, RequestToSign, Scope, ScopeSet, VerifyContext, VerifyRequestError,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::accounts::{self, Principal, Via};
use crate::app::App;
use crate::db::{opt_text, text};
use crate::error::ApiError;
use crate::factors::StepUp;
use crate::risk::{self, EventKind};

/// Largest body a signed request may have.
const MAX_SIGNED_BODY: usize = 1 << 20;

fn secret_record(key_id: &str) -> String {
    format!("api_keys/{key_id}/secret")
}

/// A key request.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewKey {
    /// A name to recognise it by.
    pub name: String,
    /// What it may do: `read`, `withdraw`, `admin`.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Client networks allowed (CIDR or addresses, comma or space separated). Required
    /// for `withdraw`.
    pub ip_allowlist: Option<String>,
    /// Lifetime in days (1 to 366). Default 90.
    pub expires_in_days: Option<i64>,
    /// Second-factor proof (when created by a signed-in person).
    #[serde(flatten)]
    pub factors: StepUp,
}

/// A key as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key id (`cpk_…`), sent as `X-Custody-Key`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its IP allowlist.
    pub ip_allowlist: Option<String>,
    /// When it was made.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// When it was last used, and from where.
    pub last_used_at: Option<i64>,
    /// The address of the last use.
    pub last_ip: Option<String>,
}

/// A new key with its secret, shown once.
#[derive(Serialize, ToSchema)]
pub struct KeyCreated {
    /// The key.
    pub key: KeyView,
    /// The secret (`cpks_…`): sign requests with it. Shown once; store it like a password.
    pub secret: String,
}

impl std::fmt::Debug for KeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCreated")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn view(record: &ApiKeyRecord, last_used_at: Option<i64>, last_ip: Option<String>) -> KeyView {
    KeyView {
        id: record.key_id.to_string(),
        name: record.label.clone(),
        scopes: record
            .scopes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        ip_allowlist: record.ip_allowlist.as_ref().map(ToString::to_string),
        created_at: record.created_at,
        expires_at: record.expires_at.unwrap_or(i64::MAX),
        revoked_at: record.revoked_at,
        last_used_at,
        last_ip,
    }
}

/// Creates a key. A signed-in person steps up and may grant any scope; a request signed
/// with an `admin` key may grant only scopes that key has (no escalation).
///
/// # Errors
/// 400 for a bad request (no scopes, withdraw without an allowlist, bad lifetime), 403
/// `scope_escalation`, step-up failures.
pub async fn create(
    app: &App,
    principal: &Principal,
    req: &NewKey,
) -> Result<KeyCreated, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let granter = match &principal.via {
        Via::ApiKey { scopes, .. } => *scopes,
        _ => {
            accounts::step_up(
                &mut tx,
                app,
                principal,
                &req.factors,
                custody_auth::Action::SensitiveChange,
                &principal.client_ip,
            )
            .await?;
            ScopeSet::all()
        }
    };
    let ip_allowlist = req
        .ip_allowlist
        .as_deref()
        .map(custody_auth::IpAllowlist::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("ip_allowlist: {e}")))?;
    let days = req.expires_in_days.unwrap_or(90);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request("expires_in_days must be 1 to 366"));
    }
    let (record, secret) = custody_auth::create_api_key(
        &principal.id,
        NewApiKey {
            label: req.name.trim().to_owned(),
            scopes: ScopeSet::of(&req.scopes),
            expires_at: Some(now + days * 86_400),
            ip_allowlist,
        },
        granter,
        now,
    )
    .map_err(|e| match e {
        custody_auth::CreateApiKeyError::ScopeEscalation { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "scope_escalation", e.to_string())
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    let id = record.key_id.to_string();
    let sealed = app.vault.seal_text(
        custody_vault::Purpose::Secret,
        &secret_record(&id),
        secret.to_text().as_bytes(),
    )?;
    sqlx::query(
        "INSERT INTO api_keys (id, principal_id, name, record, secret_sealed, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&principal.id)
    .bind(&record.label)
    .bind(serde_json::to_string(&record).map_err(ApiError::internal)?)
    .bind(&sealed)
    .bind(now)
    .bind(record.expires_at.unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::ApiKeyCreated,
        Some(&principal.client_ip),
        serde_json::json!({
            "key": id, "scopes": view(&record, None, None).scopes,
            "ip_allowlist": record.ip_allowlist.as_ref().map(ToString::to_string),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(KeyCreated {
        key: view(&record, None, None),
        secret: secret.to_text().to_string(),
    })
}

/// The principal's keys.
///
/// # Errors
/// Storage failure.
pub async fn list(app: &App, principal: &Principal) -> Result<Vec<KeyView>, ApiError> {
    let rows = sqlx::query(
        "SELECT record, last_used_at, last_ip FROM api_keys WHERE principal_id = $1 ORDER BY created_at",
    )
    .bind(&principal.id)
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let record: ApiKeyRecord =
                serde_json::from_str(&text(r, "record")?).map_err(ApiError::internal)?;
            Ok(view(
                &record,
                r.try_get::<Option<i64>, _>("last_used_at")?,
                opt_text(r, "last_ip")?,
            ))
        })
        .collect()
}

/// Revokes one of the principal's keys at once (no step-up: revoking only protects).
///
/// # Errors
/// 404 for another principal's or an unknown key.
pub async fn revoke(app: &App, principal: &Principal, key_id: &str) -> Result<(), ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let row = sqlx::query("SELECT record FROM api_keys WHERE id = $1 AND principal_id = $2")
        .bind(key_id)
        .bind(&principal.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let mut record: ApiKeyRecord =
        serde_json::from_str(&text(&row, "record")?).map_err(ApiError::internal)?;
    if record.revoked_at.is_some() {
        return Ok(());
    }
    record.revoke(now);
    sqlx::query("UPDATE api_keys SET record = $1, revoked_at = $2 WHERE id = $3")
        .bind(serde_json::to_string(&record).map_err(ApiError::internal)?)
        .bind(now)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    risk::record_now(
        &mut tx,
        app,
        &principal.id,
        EventKind::ApiKeyRevoked,
        Some(&principal.client_ip),
        serde_json::json!({ "key": key_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The principal a signed request authenticated as; read by the `Auth` extractor.
#[derive(Clone, Debug)]
pub struct SignedBy(pub Principal);

/// Collects the nonce `verify_request` wants remembered; the middleware stores it in the
/// database afterwards (the unique key makes a replay fail there).
#[derive(Default)]
struct NonceSlot(Mutex<Option<(String, i64)>>);

impl NonceStore for NonceSlot {
    fn remember(
        &self,
        _key: &ApiKeyId,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((nonce.to_owned(), expires_at));
        Ok(true)
    }
}

/// The scope a request needs, or why a key may not make it at all.
fn required_scope(method: &axum::http::Method, path: &str) -> Result<Scope, ApiError> {
    let settings = path == "/v1/sessions"
        || path.starts_with("/v1/sessions/")
        || (path.starts_with("/v1/me/") && !path.starts_with("/v1/me/api-keys"))
        || path.starts_with("/v1/links/");
    if settings && method != axum::http::Method::GET {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "needs_person",
            "security settings cannot be changed with an API key; sign in and confirm with 2FA",
        ));
    }
    Ok(
        if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            Scope::Read
        } else if method == axum::http::Method::POST
            && (path == "/v1/withdrawals"
                || (path.starts_with("/v1/withdrawals/") && path.ends_with("/cancel")))
        {
            Scope::Withdraw
        } else {
            Scope::Admin
        },
    )
}

fn signed_error(e: VerifyRequestError) -> ApiError {
    match e {
        VerifyRequestError::ScopeMissing { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "scope_missing", e.to_string())
        }
        VerifyRequestError::WithdrawNeedsAllowlist => {
            ApiError::new(StatusCode::FORBIDDEN, "scope_missing", e.to_string())
        }
        VerifyRequestError::IpNotAllowed { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "ip_not_allowed", e.to_string())
        }
        VerifyRequestError::NonceStore(inner) => ApiError::internal(inner),
        other => ApiError::unauthorized(other.to_string()),
    }
}

/// Middleware: a request with `X-Custody-Key` is checked as a signed request (body
/// buffered up to 1 MiB); on success its principal rides along as [`SignedBy`].
pub async fn authenticate_signed(State(app): State<App>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(custody_auth::HEADER_KEY) {
        return next.run(req).await;
    }
    match check_signed(&app, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check_signed(app: &App, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature = RequestSignature::from_headers(
        &header(custody_auth::HEADER_KEY),
        &header(custody_auth::HEADER_TIMESTAMP),
        &header(custody_auth::HEADER_NONCE),
        &header(custody_auth::HEADER_SIGNATURE),
    )
    .map_err(|e| {
        ApiError::unauthorized(format!("the request signature headers are not valid: {e}"))
    })?;
    let path = parts.uri.path().to_owned();
    let required = required_scope(&parts.method, &path)?;
    let bytes = axum::body::to_bytes(body, MAX_SIGNED_BODY)
        .await
        .map_err(|_| ApiError::bad_request("a signed request body may be at most 1 MiB"))?;
    let client = crate::api::client_info(&parts, app);
    let client_ip: IpAddr = client
        .ip
        .parse()
        .map_err(|_| ApiError::internal("client address is not an IP address"))?;
    let key_id = signature.key_id.to_string();
    let row = sqlx::query("SELECT principal_id, record, secret_sealed FROM api_keys WHERE id = $1")
        .bind(&key_id)
        .fetch_optional(app.db.pool())
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is not known"))?;
    let record: ApiKeyRecord =
        serde_json::from_str(&text(&row, "record")?).map_err(ApiError::internal)?;
    let sealed = text(&row, "secret_sealed")?;
    let secret_text = app.vault.open_text(
        custody_vault::Purpose::Secret,
        &secret_record(&key_id),
        &sealed,
    )?;
    let secret = ApiKeySecret::from_text(
        std::str::from_utf8(&secret_text)
            .map_err(|_| ApiError::internal("sealed key secret is not text"))?,
    )
    .map_err(ApiError::internal)?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let nonces = NonceSlot::default();
    let now = app.now();
    custody_auth::verify_request(
        &record,
        &secret,
        &signature,
        &VerifyContext {
            client_ip,
            required,
            window: ReplayWindow::new(app.config.auth.api_replay_window_secs),
            now,
            request: RequestToSign {
                method: parts.method.as_str(),
                path_and_query: &path_and_query,
                body: &bytes,
            },
        },
        &nonces,
    )
    .map_err(signed_error)?;
    let principal_id = text(&row, "principal_id")?;
    let mut tx = app.db.begin().await?;
    let nonce = nonces
        .0
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((nonce, expires_at)) = nonce {
        sqlx::query("DELETE FROM api_nonces WHERE key_id = $1 AND expires_at < $2")
            .bind(&key_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "INSERT INTO api_nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&key_id)
        .bind(&nonce)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Err(ApiError::unauthorized(
                "this request was already received (nonce reused)",
            ));
        }
    }
    sqlx::query("UPDATE api_keys SET last_used_at = $1, last_ip = $2 WHERE id = $3")
        .bind(now)
        .bind(&client.ip)
        .bind(&key_id)
        .execute(&mut *tx)
        .await?;
    let mut principal = accounts::get(&mut tx, &principal_id).await?;
    tx.commit().await?;
    principal.client_ip = client.ip.clone();
    accounts::check_ip_allowlist(&principal, &client.ip)?;
    principal.via = Via::ApiKey {
        key_id,
        scopes: record.scopes,
    };
    parts.extensions.insert(SignedBy(principal));
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
