//! The HTTP API: routes under `/v1/`, `/healthz`, `/metrics` and `/openapi.json`. Routes
//! and the OpenAPI document are built together by `utoipa-axum`, so the document cannot
//! drift from the code.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{self, ClientInfo, Principal, Role};
use crate::app::App;
use crate::db::{int, text, Tx};
use crate::error::{ApiError, ErrorBody};
use crate::risk::{self, EventKind, EventSource};
use crate::withdrawals::{
    self, NewApproval, NewCancel, NewRound, NewShares, NewVoid, NewWithdrawal, RoundView,
    WithdrawalView,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CoinPort Custody coordinator",
        description = "Accounts, security events, risk holds, policy, approvals, air-gapped signing rounds and gated broadcast."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The signed-in principal of a request (`Authorization: Bearer <token>`).
pub struct Auth(pub Principal, pub String);

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

impl FromRequestParts<App> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        if let Some(signed) = parts.extensions.get::<crate::apikeys::SignedBy>() {
            return Ok(Auth(signed.0.clone(), String::new()));
        }
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "sign in first: send Authorization: Bearer <token>, or sign the request with an API key",
            )
        })?;
        let client = client_info(parts, app);
        let p = accounts::authenticate(app, &token, &client).await?;
        Ok(Auth(p, token))
    }
}

/// Who is calling from where.
pub struct Client(pub ClientInfo);

/// The client address (the peer, or the first `X-Forwarded-For` entry behind a trusted
/// proxy), user agent and device id of a request.
pub fn client_info(parts: &Parts, app: &App) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_owned(), |c| c.0.ip().to_string());
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect::<String>())
    };
    let ip = if app.config.trust_forwarded_for {
        header("x-forwarded-for")
            .and_then(|v| v.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
            .unwrap_or(peer)
    } else {
        peer
    };
    let user_agent = header("user-agent").unwrap_or_default();
    let device_id = header("x-device-id")
        .unwrap_or_else(|| hex::encode(&Sha256::digest(user_agent.as_bytes())[..8]));
    ClientInfo {
        ip,
        user_agent,
        device_id,
    }
}

impl FromRequestParts<App> for Client {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(Client(client_info(parts, app)))
    }
}

fn idem_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let k = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| {
            ApiError::bad_request(
                "this request needs an Idempotency-Key header (1 to 128 characters)",
            )
        })?;
    Ok(k.to_owned())
}

type OpFuture<'t> = Pin<Box<dyn Future<Output = Result<Answer, ApiError>> + Send + 't>>;

/// A check of an [`Answer`]'s writes, run once they were sent.
pub(crate) type Confirm = Box<dyn FnOnce(&crate::db::Changed) -> Result<(), ApiError> + Send>;

/// What an idempotent operation hands back: its answer, and the writes it left for the
/// runner to send in one round trip together with the idempotency record (ADR 0025),
/// with the check to run on what they changed. An operation that wrote everything
/// itself leaves no writes.
pub(crate) struct Answer {
    /// The status to answer (and store under the key).
    pub(crate) status: StatusCode,
    /// The body to answer (and store under the key).
    pub(crate) body: serde_json::Value,
    /// Writes not sent yet.
    pub(crate) writes: crate::db::Writes,
    /// Decides, from what `writes` changed, whether the request stands; its error is the
    /// request's answer instead, and nothing of the request is kept.
    pub(crate) confirm: Option<Confirm>,
}

impl From<(StatusCode, serde_json::Value)> for Answer {
    fn from((status, body): (StatusCode, serde_json::Value)) -> Answer {
        Answer {
            status,
            body,
            writes: crate::db::Writes::new(),
            confirm: None,
        }
    }
}

/// Runs `op` in one transaction together with the idempotency record: a repeat with the
/// same key and body returns the stored answer, a repeat with another body is refused,
/// and a retryable database conflict reruns the whole transaction.
///
/// The work runs in a task of its own, so a client that goes away mid-request does not
/// cut it short: it finishes (and its answer is stored under the key) or rolls back as a
/// whole. On SQLite it is one turn in the commit group (ADR 0023): the answer is given
/// once the group's commit is durable.
async fn idempotent<F>(
    app: App,
    principal_id: String,
    key: String,
    scope: &str,
    body: &impl Serialize,
    op: F,
) -> Result<Response, ApiError>
where
    F: for<'t> Fn(&'t mut Tx<'static>) -> OpFuture<'t> + Send + Sync + 'static,
{
    let request_hash = {
        let mut h = Sha256::new();
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(body).unwrap_or_default());
        hex::encode(h.finalize())
    };
    let (status, body) =
        tokio::spawn(
            async move { run_idempotent(&app, &principal_id, &key, &request_hash, op).await },
        )
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))??;
    Ok((status, Json(body)).into_response())
}

async fn run_idempotent<F>(
    app: &App,
    principal_id: &str,
    key: &str,
    request_hash: &str,
    op: F,
) -> Result<(StatusCode, serde_json::Value), ApiError>
where
    F: for<'t> Fn(&'t mut Tx<'static>) -> OpFuture<'t>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut work = app.db.begin_request().await?;
        let stored = sqlx::query(&format!(
            "{}SELECT request_hash, status, response FROM idempotency_keys \
             WHERE principal_id = $1 AND idem_key = $2",
            work.opening()
        ))
        .bind(principal_id)
        .bind(key)
        .fetch_all(&mut **work.tx())
        .await;
        let stored = match stored {
            Ok(rows) => rows.into_iter().next(),
            Err(e) => {
                work.abandon().await?;
                return Err(e.into());
            }
        };
        if let Some(row) = stored {
            work.abandon().await?;
            if text(&row, "request_hash")? != request_hash {
                return Err(ApiError::refused(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; use a new key",
                ));
            }
            let status = StatusCode::from_u16(u16::try_from(int(&row, "status")?).unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body: serde_json::Value =
                serde_json::from_str(&text(&row, "response")?).unwrap_or_default();
            return Ok((status, body));
        }
        let answer = match op(work.tx()).await {
            Ok(ok) => ok,
            Err(e) => {
                work.abandon().await?;
                if e.is_retryable() && attempt < 5 {
                    continue;
                }
                return Err(e);
            }
        };
        let Answer {
            status,
            body,
            mut writes,
            confirm,
        } = answer;
        // The idempotency record, and a member's savepoint release, ride with the
        // operation's own remaining writes.
        writes
            .push(
                "INSERT INTO idempotency_keys (principal_id, idem_key, request_hash, status, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(principal_id.to_owned())
            .bind(key.to_owned())
            .bind(request_hash.to_owned())
            .bind(i64::from(status.as_u16()))
            .bind(body.to_string())
            .bind(app.now());
        if let Some(release) = work.closing() {
            writes.push(release);
        }
        let changed = match writes.run(work.tx()).await {
            Ok(changed) => changed,
            Err(e) => {
                // Most often a concurrent request with the same key stored its answer
                // first: the next attempt finds it.
                work.abandon().await?;
                if attempt < 5 {
                    continue;
                }
                return Err(e.into());
            }
        };
        if let Some(confirm) = confirm {
            if let Err(e) = confirm(&changed) {
                work.abandon().await?;
                if e.is_retryable() && attempt < 5 {
                    continue;
                }
                return Err(e);
            }
        }
        let committed = work.commit(true).await.map_err(ApiError::from);
        match committed {
            Ok(()) => return Ok((status, body)),
            // A concurrent request with the same key won: answer with its stored result.
            Err(_) if attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Builds the router with every route and the OpenAPI document.
pub fn router(app: App) -> Router {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(crate::links::set_anti_phishing_code))
        .routes(routes!(crate::links::show_link, crate::links::follow_link))
        .routes(routes!(begin_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(change_password))
        .routes(routes!(change_email))
        .routes(routes!(list_whitelist, add_whitelist))
        .routes(routes!(my_holds))
        .routes(routes!(crate::kyc::put_my_kyc, crate::kyc::my_kyc_status))
        .routes(routes!(crate::kyc::read_my_kyc))
        .routes(routes!(create_withdrawal, list_withdrawals))
        .routes(routes!(get_withdrawal))
        .routes(routes!(approve_withdrawal))
        .routes(routes!(cancel_withdrawal))
        .routes(routes!(void_withdrawal))
        .routes(routes!(accelerate_withdrawal))
        .routes(routes!(export_round))
        .routes(routes!(import_shares))
        .routes(routes!(broadcast_withdrawal))
        .routes(routes!(ingest_event))
        .routes(routes!(add_commitments))
        .routes(routes!(add_presignatures))
        .routes(routes!(create_principal))
        .routes(routes!(reset_two_factor))
        .routes(routes!(reset_password))
        .routes(routes!(freeze))
        .routes(routes!(unfreeze))
        .routes(routes!(install_policy, list_policies))
        .routes(routes!(crate::kyc::search_kyc))
        .routes(routes!(crate::kyc::admin_read_kyc))
        .routes(routes!(sync_utxos))
        .routes(routes!(audit_entries))
        .routes(routes!(metrics_text));
    let (router, openapi) = crate::api_security::routes(router).split_for_parts();
    let doc = openapi.clone();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            replay_idempotent,
        ))
        // Signatures are checked before anything may answer from the idempotency store.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::apikeys::authenticate_signed,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::factors::record_failures,
        ))
        .layer(axum::middleware::from_fn(track_metrics))
        .with_state(app)
}

/// Routes whose handlers keep their idempotency record in the same transaction as the
/// change (the withdrawal lifecycle); the middleware leaves them alone.
const TRANSACTIONAL_IDEMPOTENCY: [&str; 7] = [
    "/v1/withdrawals",
    "/v1/withdrawals/{id}/approvals",
    "/v1/withdrawals/{id}/cancel",
    "/v1/withdrawals/{id}/void",
    "/v1/withdrawals/{id}/accelerate",
    "/v1/withdrawals/{id}/round",
    "/v1/withdrawals/{id}/shares",
];

/// Routes whose answers carry a secret shown once (a session token, a TOTP secret, an API
/// key secret, recovery codes) or personal data (KYC records, which also have bodies far
/// above the replay buffer): they are never stored for replay, so the idempotency table
/// holds no credentials and no personal data.
const CARRIES_SECRETS: [&str; 9] = [
    "/v1/sessions",
    "/v1/me/totp",
    "/v1/me/api-keys",
    "/v1/me/recovery-codes",
    "/v1/sessions/challenges",
    "/v1/me/kyc",
    "/v1/me/kyc/read",
    "/v1/admin/kyc/search",
    "/v1/admin/kyc/{principal_id}/read",
];

/// Any other mutating request may carry an `Idempotency-Key`: the first answer (success or
/// refusal, not a server error) is stored under the caller's credentials and the key, and
/// a repeat with the same body gets it back without running again; another body with the
/// same key is refused.
async fn replay_idempotent(
    State(app): State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty() && k.len() <= 128);
    let (Some(key), Some(path)) = (key, path) else {
        return next.run(req).await;
    };
    if req.method() == axum::http::Method::GET
        || TRANSACTIONAL_IDEMPOTENCY.contains(&path.as_str())
        || CARRIES_SECRETS.contains(&path.as_str())
    {
        return next.run(req).await;
    }
    let scope = {
        let mut h = Sha256::new();
        for name in [
            axum::http::header::AUTHORIZATION.as_str(),
            custody_auth::HEADER_KEY,
        ] {
            h.update(
                req.headers()
                    .get(name)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default(),
            );
            h.update([0]);
        }
        format!("credential:{}", hex::encode(h.finalize()))
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return ApiError::bad_request("request body too large").into_response();
    };
    let request_hash = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str().as_bytes());
        h.update(parts.uri.path().as_bytes());
        h.update([0]);
        h.update(&bytes);
        hex::encode(h.finalize())
    };
    let stored = sqlx::query("SELECT request_hash, status, response FROM idempotency_keys WHERE principal_id = $1 AND idem_key = $2")
        .bind(&scope)
        .bind(&key)
        .fetch_optional(app.db.pool())
        .await;
    match stored {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Some(row)) => {
            if text(&row, "request_hash").unwrap_or_default() != request_hash {
                return ApiError::refused(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; use a new key",
                )
                .into_response();
            }
            let status = StatusCode::from_u16(
                u16::try_from(int(&row, "status").unwrap_or(500)).unwrap_or(500),
            )
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = text(&row, "response").unwrap_or_default();
            return (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        Ok(None) => {}
    }
    let res = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        ))
        .await;
    if res.status().is_server_error() {
        return res;
    }
    let (rparts, rbody) = res.into_parts();
    let Ok(out) = axum::body::to_bytes(rbody, 4 << 20).await else {
        return ApiError::internal("response too large to record").into_response();
    };
    let _ = sqlx::query(
        "INSERT INTO idempotency_keys (principal_id, idem_key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&scope)
    .bind(&key)
    .bind(&request_hash)
    .bind(i64::from(rparts.status.as_u16()))
    .bind(String::from_utf8_lossy(&out).into_owned())
    .bind(app.now())
    .execute(app.db.pool())
    .await;
    Response::from_parts(rparts, axum::body::Body::from(out))
}

async fn track_metrics(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("custody_http_request_seconds", "method" => method.clone(), "path" => path.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("custody_http_requests_total", "method" => method, "path" => path, "status" => status)
        .increment(1);
    res
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "healthy"), (status = 503, description = "database unreachable")))]
async fn healthz(State(app): State<App>) -> Response {
    match sqlx::query("SELECT 1 AS one")
        .fetch_one(app.db.pool())
        .await
    {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "database unreachable" })),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(app): State<App>) -> Response {
    match &app.metrics {
        Some(h) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

/// Registration.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Registration {
    /// Email address.
    pub email: String,
    /// Password, 12 characters or more.
    pub password: String,
}

/// Created principal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// Its id.
    pub id: String,
}

/// Opens a customer account.
#[utoipa::path(post, path = "/v1/users", request_body = Registration, responses((status = 201, body = Created), (status = 409, body = ErrorBody)))]
async fn register(
    State(app): State<App>,
    Json(r): Json<Registration>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let id = accounts::create(&app, &r.email, &r.password, Role::User, None, "self").await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// Sign-in.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Login {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Signs in and returns a session token.
#[utoipa::path(post, path = "/v1/sessions", request_body = Login, responses((status = 201, body = accounts::SessionCreated), (status = 401, body = ErrorBody)))]
async fn login(
    State(app): State<App>,
    Client(c): Client,
    Json(l): Json<Login>,
) -> Result<(StatusCode, Json<accounts::SessionCreated>), ApiError> {
    let s = accounts::login(&app, &l.email, &l.password, &l.factors, &c).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Ends the current session.
#[utoipa::path(delete, path = "/v1/sessions/current", responses((status = 204)))]
async fn logout(State(app): State<App>, Auth(_p, token): Auth) -> Result<StatusCode, ApiError> {
    accounts::logout(&app, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in principal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Whether TOTP is active.
    pub totp_enabled: bool,
    /// Whether an anti-phishing code is set (the code itself is shown only in emails:
    /// see docs/user-security.md).
    pub anti_phishing_code_set: bool,
}

/// Who am I.
#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = Me)))]
async fn me(State(app): State<App>, Auth(p, _t): Auth) -> Result<Json<Me>, ApiError> {
    let anti_phishing_code_set = crate::links::has_anti_phishing_code(&app, &p.id).await?;
    Ok(Json(Me {
        email: p.email(&app)?,
        id: p.id,
        role: p.role,
        totp_enabled: p.totp_enabled,
        anti_phishing_code_set,
    }))
}

/// Starts TOTP enrolment.
#[utoipa::path(post, path = "/v1/me/totp", responses((status = 200, body = accounts::TotpEnrolment)))]
async fn begin_totp(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<accounts::TotpEnrolment>, ApiError> {
    Ok(Json(accounts::begin_totp(&app, &p).await?))
}

/// A TOTP code.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Code {
    /// Six digits from the app being enrolled.
    pub code: String,
    /// When the account already has a second factor (a security key, a verified phone):
    /// proof with it, since adding an authenticator app is a security change.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Confirms TOTP enrolment.
#[utoipa::path(post, path = "/v1/me/totp/confirm", request_body = Code, responses((status = 204)))]
async fn confirm_totp(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(c): Json<Code>,
) -> Result<StatusCode, ApiError> {
    accounts::confirm_totp(&app, &p, &c.code, &c.factors).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Password change.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PasswordChange {
    /// Current password.
    pub current: String,
    /// New password.
    pub new: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Changes the password (starts a 24-hour withdrawal hold).
#[utoipa::path(post, path = "/v1/me/password", request_body = PasswordChange, responses((status = 204)))]
async fn change_password(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    accounts::change_password(&app, &p, &r.current, &r.new, &r.factors, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Email change.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct EmailChange {
    /// New email.
    pub email: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Asks to change the email: a confirmation link goes to the new address, and the change
/// (with its 48-hour withdrawal hold) happens when it is followed.
#[utoipa::path(post, path = "/v1/me/email", request_body = EmailChange,
    responses((status = 202, body = accounts::EmailChangePending, description = "confirmation link sent to the new address"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "the address belongs to another account")))]
async fn change_email(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<EmailChange>,
) -> Result<(StatusCode, Json<accounts::EmailChangePending>), ApiError> {
    let pending = accounts::change_email(&app, &p, &r.email, &r.factors, &c).await?;
    Ok((StatusCode::ACCEPTED, Json(pending)))
}

/// The withdrawal-address whitelist.
#[utoipa::path(get, path = "/v1/me/whitelist", responses((status = 200, body = Vec<accounts::WhitelistedAddress>)))]
async fn list_whitelist(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<accounts::WhitelistedAddress>>, ApiError> {
    Ok(Json(accounts::whitelist(&app, &p).await?))
}

/// A whitelist addition.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewAddress {
    /// The address.
    pub address: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Adds a withdrawal address; usable after the activation delay.
#[utoipa::path(post, path = "/v1/me/whitelist", request_body = NewAddress, responses((status = 201, body = accounts::WhitelistedAddress)))]
async fn add_whitelist(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<NewAddress>,
) -> Result<(StatusCode, Json<accounts::WhitelistedAddress>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(accounts::whitelist_add(&app, &p, &r.address, &r.factors, &c).await?),
    ))
}

/// Every hold placed on the account, past and present.
#[utoipa::path(get, path = "/v1/me/holds", responses((status = 200, body = Vec<risk::HoldRecord>)))]
async fn my_holds(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<risk::HoldRecord>>, ApiError> {
    let mut tx = app.db.begin().await?;
    let h = risk::all_holds(&mut tx, &p.id).await?;
    tx.commit().await?;
    Ok(Json(h))
}

/// Requests a withdrawal. Needs `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/withdrawals", request_body = NewWithdrawal,
    params(("Idempotency-Key" = String, Header, description = "unique per intended withdrawal")),
    responses((status = 201, body = WithdrawalView), (status = 422, body = ErrorBody, description = "refused by whitelist or policy; recorded as rejected"), (status = 423, body = ErrorBody)))]
async fn create_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    headers: HeaderMap,
    Json(r): Json<NewWithdrawal>,
) -> Result<Response, ApiError> {
    let key = idem_key(&headers)?;
    let fingerprint =
        serde_json::json!({ "asset": r.asset, "address": r.address, "amount": r.amount });
    idempotent(
        app.clone(),
        p.id.clone(),
        key,
        "withdrawal",
        &fingerprint,
        move |tx| {
            let (app, p, r, c) = (
                app.clone(),
                p.clone(),
                NewWithdrawal {
                    asset: r.asset.clone(),
                    address: r.address.clone(),
                    amount: r.amount,
                    factors: r.factors.clone(),
                },
                c.clone(),
            );
            Box::pin(async move { withdrawals::request(tx, &app, &p, &r, &c).await })
        },
    )
    .await
}

/// Listing filter.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<String>,
}

/// Lists withdrawals: a customer's own, or all for staff.
#[utoipa::path(get, path = "/v1/withdrawals", params(ListQuery), responses((status = 200, body = Vec<WithdrawalView>)))]
async fn list_withdrawals(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    let rows = if p.role == Role::User {
        sqlx::query("SELECT id, state FROM withdrawals WHERE principal_id = $1 ORDER BY created_at DESC LIMIT 500")
            .bind(&p.id)
            .fetch_all(app.db.pool())
            .await?
    } else {
        sqlx::query("SELECT id, state FROM withdrawals ORDER BY created_at DESC LIMIT 500")
            .fetch_all(app.db.pool())
            .await?
    };
    let mut out = Vec::new();
    for r in &rows {
        if q.state
            .as_deref()
            .is_some_and(|s| s != text(r, "state").unwrap_or_default())
        {
            continue;
        }
        out.push(withdrawals::get(&app, &p, &text(r, "id")?).await?);
    }
    Ok(Json(out))
}

/// A withdrawal with its hold (reasons, since, until) and approvals.
#[utoipa::path(get, path = "/v1/withdrawals/{id}", params(("id" = String, Path)), responses((status = 200, body = WithdrawalView), (status = 404, body = ErrorBody)))]
async fn get_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    Ok(Json(withdrawals::get(&app, &p, &id).await?))
}

/// Approves a withdrawal with the approver's identity-key signature and 2FA.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/approvals", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = NewApproval, responses((status = 200, body = WithdrawalView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(r): Json<NewApproval>,
) -> Result<Response, ApiError> {
    let key = idem_key(&headers)?;
    let fp = serde_json::json!({ "id": id, "signature": r.signature });
    idempotent(app.clone(), p.id.clone(), key, "approval", &fp, move |tx| {
        let (app, p, id, r) = (
            app.clone(),
            p.clone(),
            id.clone(),
            NewApproval {
                signature: r.signature.clone(),
                factors: r.factors.clone(),
            },
        );
        Box::pin(async move {
            withdrawals::approve(tx, &app, &p, &id, &r)
                .await
                .map(Answer::from)
        })
    })
    .await
}

/// Cancels a withdrawal before its signing round is exported: its customer, or an
/// operator or admin with a reason. Reserved coins go back to the wallet; the customer is
/// notified.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/cancel", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = NewCancel, responses((status = 200, body = WithdrawalView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "its signing round is out, it is finished or already cancelled")))]
async fn cancel_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: a customer's cancellation needs no reason.
    let r: NewCancel = if body.iter().all(u8::is_ascii_whitespace) {
        NewCancel::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_json(&e))?
    };
    let key = idem_key(&headers)?;
    let fp = serde_json::json!({ "id": id, "reason": r.reason });
    idempotent(app.clone(), p.id.clone(), key, "cancel", &fp, move |tx| {
        let (app, p, id, r) = (app.clone(), p.clone(), id.clone(), r.clone());
        Box::pin(async move {
            withdrawals::cancel(tx, &app, &p, &id, &r)
                .await
                .map(Answer::from)
        })
    })
    .await
}

/// Starts the void of a withdrawal whose signing round is out but which must never pay: a
/// new withdrawal (answered here, 201) that conflicts with it and moves nothing out (the
/// same coins back to the wallet; on Ethereum 0 ETH to itself with the same nonce), to be
/// approved, signed and broadcast like any other. Operators and admins, signed in, with a
/// reason. Once it confirms the original is cancelled (ADR 0031).
#[utoipa::path(post, path = "/v1/withdrawals/{id}/void", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = NewVoid, responses((status = 201, body = WithdrawalView, description = "the void"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "its round is not out (cancel it instead), it was sent, it is a void, or a void is under way"), (status = 422, body = ErrorBody, description = "the policy allows no internal transfer")))]
async fn void_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let r: NewVoid = serde_json::from_slice(&body).map_err(|e| ApiError::bad_json(&e))?;
    let key = idem_key(&headers)?;
    let fp = serde_json::json!({ "id": id, "reason": r.reason });
    idempotent(app.clone(), p.id.clone(), key, "void", &fp, move |tx| {
        let (app, p, id, r) = (app.clone(), p.clone(), id.clone(), r.clone());
        Box::pin(async move {
            withdrawals::void(tx, &app, &p, &id, &r)
                .await
                .map(Answer::from)
        })
    })
    .await
}

/// Starts the acceleration of a Bitcoin withdrawal sent but stuck unconfirmed: a child
/// transaction (answered here, 201) that spends its change back to the wallet with the
/// fee that brings both to the asked rate, to be approved, signed and broadcast like any
/// other withdrawal. Operators and admins, signed in, with a fee rate and a reason
/// (ADR 0032).
#[utoipa::path(post, path = "/v1/withdrawals/{id}/accelerate", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = crate::accelerate::NewAcceleration, responses((status = 201, body = WithdrawalView, description = "the child"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not a Bitcoin withdrawal sent and unconfirmed, no change output or it is taken, an acceleration under way, a rate not above what it pays, or too few coins"), (status = 422, body = ErrorBody, description = "a fee the signers refuse, or the policy allows no internal transfer")))]
async fn accelerate_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let r: crate::accelerate::NewAcceleration =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_json(&e))?;
    let key = idem_key(&headers)?;
    let fp =
        serde_json::json!({ "id": id, "reason": r.reason, "fee_rate_sat_vb": r.fee_rate_sat_vb });
    idempotent(
        app.clone(),
        p.id.clone(),
        key,
        "accelerate",
        &fp,
        move |tx| {
            let (app, p, id, r) = (app.clone(), p.clone(), id.clone(), r.clone());
            Box::pin(async move {
                crate::accelerate::accelerate(tx, &app, &p, &id, &r)
                    .await
                    .map(Answer::from)
            })
        },
    )
    .await
}

/// Exports the signing round (after every gate passes).
#[utoipa::path(post, path = "/v1/withdrawals/{id}/round", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = NewRound, responses((status = 200, body = RoundView), (status = 409, body = ErrorBody), (status = 423, body = ErrorBody)))]
async fn export_round(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(r): Json<NewRound>,
) -> Result<Response, ApiError> {
    let key = idem_key(&headers)?;
    let fp = serde_json::json!({ "id": id, "signers": r.signers });
    idempotent(app.clone(), p.id.clone(), key, "round", &fp, move |tx| {
        let (app, p, id, r) = (
            app.clone(),
            p.clone(),
            id.clone(),
            NewRound {
                signers: r.signers.clone(),
            },
        );
        Box::pin(async move {
            withdrawals::export_round(tx, &app, &p, &id, &r)
                .await
                .map(Answer::from)
        })
    })
    .await
}

/// Imports a signer's answer; aggregates and verifies when all have answered.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/shares", params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = NewShares, responses((status = 200, description = "signed and verified"), (status = 202, description = "waiting for more signers"), (status = 422, body = ErrorBody)))]
async fn import_shares(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(r): Json<NewShares>,
) -> Result<Response, ApiError> {
    let key = idem_key(&headers)?;
    let digest = |v: &Option<String>| v.as_ref().map(|s| hex::encode(Sha256::digest(s)));
    let fp = serde_json::json!({ "id": id, "psbt": digest(&r.psbt), "partial": digest(&r.partial_signature) });
    idempotent(app.clone(), p.id.clone(), key, "shares", &fp, move |tx| {
        let (app, p, id, r) = (
            app.clone(),
            p.clone(),
            id.clone(),
            NewShares {
                psbt: r.psbt.clone(),
                partial_signature: r.partial_signature.clone(),
            },
        );
        Box::pin(async move {
            withdrawals::import_shares(tx, &app, &p, &id, &r)
                .await
                .map(Answer::from)
        })
    })
    .await
}

/// Broadcasts a signed withdrawal if, at this moment, every gate passes.
#[utoipa::path(post, path = "/v1/withdrawals/{id}/broadcast", params(("id" = String, Path)), responses((status = 200, description = "broadcast"), (status = 409, body = ErrorBody), (status = 423, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn broadcast_withdrawal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(withdrawals::broadcast(&app, &p, &id).await?))
}

/// An event reported by the exchange's account system.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IngestedEvent {
    /// The account, by email.
    pub email: String,
    /// What happened.
    pub kind: EventKind,
    /// When it happened (unix seconds); holds run from when it is reported.
    pub occurred_at: i64,
    /// The client IP, if known.
    pub ip: Option<String>,
}

/// Reports a security event from the exchange's own account system
/// (`Authorization: Bearer <ingest token>`).
#[utoipa::path(post, path = "/v1/events", request_body = IngestedEvent, responses((status = 202, body = Created), (status = 401, body = ErrorBody)))]
async fn ingest_event(
    State(app): State<App>,
    headers: HeaderMap,
    Json(e): Json<IngestedEvent>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let expected = app.ingest_token_hash.clone().ok_or_else(|| {
        ApiError::forbidden("event ingestion is not enabled (auth.ingest_token_file)")
    })?;
    let token = bearer(&headers)
        .ok_or_else(|| ApiError::unauthorized("send the ingestion token as a bearer token"))?;
    if !crate::auth::secrets_equal(
        crate::auth::token_hash(&token).as_bytes(),
        expected.as_bytes(),
    ) {
        return Err(ApiError::unauthorized("the ingestion token is wrong"));
    }
    let mut tx = app.db.begin().await?;
    let p = accounts::by_email(&mut tx, &app, &e.email).await?;
    let id = risk::record_event(
        &mut tx,
        &app,
        &p.id,
        e.kind,
        e.occurred_at,
        EventSource::Ingest,
        e.ip.as_deref(),
        serde_json::json!({}),
    )
    .await?;
    if e.kind == EventKind::PasswordReset || e.kind == EventKind::TwoFactorReset {
        sqlx::query("UPDATE sessions SET revoked = 1 WHERE principal_id = $1")
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Created { id })))
}

/// A signer's commitment envelope.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CommitmentUpload {
    /// The envelope file `custody-signer commitments issue` wrote, base64.
    pub envelope: String,
}

/// How many commitments were new.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CommitmentsAdded {
    /// The signer's participant index.
    pub signer: u16,
    /// Newly added commitments.
    pub added: usize,
}

/// Adds a signer's nonce commitments (the envelope's signature is checked against the DKG
/// plan's identity cards).
#[utoipa::path(post, path = "/v1/commitments", request_body = CommitmentUpload, responses((status = 200, body = CommitmentsAdded), (status = 400, body = ErrorBody)))]
async fn add_commitments(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(u): Json<CommitmentUpload>,
) -> Result<Json<CommitmentsAdded>, ApiError> {
    if p.role != Role::Operator {
        return Err(ApiError::forbidden("only operators add commitments"));
    }
    let bytes = B64
        .decode(u.envelope.trim())
        .map_err(|_| ApiError::bad_request("envelope must be base64"))?;
    let batch = crate::signing::open_commitments(&app, &bytes)?;
    let added = withdrawals::add_commitments(&app, &p.id, &batch).await?;
    Ok(Json(CommitmentsAdded {
        signer: batch.signer,
        added,
    }))
}

/// Registers an Ethereum presignature batch after the signers' presigning ceremony: the
/// plan must be for the configured ECDSA key and its participants.
#[utoipa::path(post, path = "/v1/ethereum/presignatures", request_body = crate::eth::NewPresignBatch, responses((status = 200, description = "registered (added = 0 when it was before)"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_presignatures(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<crate::eth::NewPresignBatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(crate::eth::add_presign_batch(&app, &p, &r).await?))
}

/// An admin action: the admin role and a fresh 2FA code.
async fn admin_step_up(
    app: &App,
    p: &Principal,
    proof: &crate::factors::StepUp,
) -> Result<(), ApiError> {
    require(p, Role::Admin)?;
    let mut tx = app.db.begin().await?;
    accounts::step_up(
        &mut tx,
        app,
        p,
        proof,
        custody_auth::Action::SensitiveChange,
        &p.client_ip,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn require(p: &Principal, role: Role) -> Result<(), ApiError> {
    if p.role == role {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this needs the {} role",
            role.as_str()
        )))
    }
}

/// A new principal (admin only).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewPrincipal {
    /// Email.
    pub email: String,
    /// Initial password.
    pub password: String,
    /// Role.
    pub role: Role,
    /// Approvers: hex of their identity card.
    pub approver_card: Option<String>,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Creates an operator, approver, admin, service or user account.
#[utoipa::path(post, path = "/v1/admin/principals", request_body = NewPrincipal, responses((status = 201, body = Created)))]
async fn create_principal(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(n): Json<NewPrincipal>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    admin_step_up(&app, &p, &n.factors).await?;
    let id = accounts::create(
        &app,
        &n.email,
        &n.password,
        n.role,
        n.approver_card.as_deref(),
        &p.id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// An admin action with 2FA.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AdminAction {
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
    /// New password, for a password reset.
    pub new_password: Option<String>,
}

/// Resets a principal's 2FA (48-hour hold).
#[utoipa::path(post, path = "/v1/admin/principals/{id}/reset-2fa", params(("id" = String, Path)), request_body = AdminAction, responses((status = 204)))]
async fn reset_two_factor(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    Json(a): Json<AdminAction>,
) -> Result<StatusCode, ApiError> {
    admin_step_up(&app, &p, &a.factors).await?;
    accounts::reset_totp(&app, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resets a principal's password (24-hour hold).
#[utoipa::path(post, path = "/v1/admin/principals/{id}/reset-password", params(("id" = String, Path)), request_body = AdminAction, responses((status = 204)))]
async fn reset_password(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    Json(a): Json<AdminAction>,
) -> Result<StatusCode, ApiError> {
    admin_step_up(&app, &p, &a.factors).await?;
    let new = a
        .new_password
        .ok_or_else(|| ApiError::bad_request("new_password is required"))?;
    accounts::reset_password(&app, &p.id, &id, &new).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A freeze or unfreeze.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct FreezeRequest {
    /// One account; absent freezes everything.
    pub principal_id: Option<String>,
    /// Why (recorded in the audit log).
    pub reason: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Emergency freeze: stops every signing round and broadcast at once. Any admin or
/// operator may freeze without 2FA, so stopping never waits.
#[utoipa::path(post, path = "/v1/admin/freeze", request_body = FreezeRequest, responses((status = 204)))]
async fn freeze(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(f): Json<FreezeRequest>,
) -> Result<StatusCode, ApiError> {
    if !matches!(p.role, Role::Admin | Role::Operator) {
        return Err(ApiError::forbidden("admins and operators may freeze"));
    }
    risk::set_freeze(&app, &p.id, f.principal_id.as_deref(), true, &f.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lifts a freeze (admin with 2FA).
#[utoipa::path(post, path = "/v1/admin/unfreeze", request_body = FreezeRequest, responses((status = 204)))]
async fn unfreeze(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(f): Json<FreezeRequest>,
) -> Result<StatusCode, ApiError> {
    admin_step_up(&app, &p, &f.factors).await?;
    risk::set_freeze(&app, &p.id, f.principal_id.as_deref(), false, &f.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A signed policy.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PolicyUpload {
    /// Hex of the encoded `SignedPolicy`.
    pub signed_policy: String,
}

/// Installs a successor policy signed by the current admin quorum.
#[utoipa::path(post, path = "/v1/admin/policies", request_body = PolicyUpload, responses((status = 201, body = crate::policy::Installed), (status = 422, body = ErrorBody)))]
async fn install_policy(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(u): Json<PolicyUpload>,
) -> Result<(StatusCode, Json<crate::policy::Installed>), ApiError> {
    require(&p, Role::Admin)?;
    let bytes = hex::decode(u.signed_policy.trim())
        .map_err(|_| ApiError::bad_request("signed_policy must be hex"))?;
    Ok((
        StatusCode::CREATED,
        Json(crate::policy::install(&app, &p.id, &bytes, false).await?),
    ))
}

/// Installed policies.
#[utoipa::path(get, path = "/v1/admin/policies", responses((status = 200, body = Vec<crate::policy::Installed>)))]
async fn list_policies(
    State(app): State<App>,
    Auth(_p, _t): Auth,
) -> Result<Json<Vec<crate::policy::Installed>>, ApiError> {
    Ok(Json(crate::policy::list(&app).await?))
}

/// UTXO sync result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Synced {
    /// Unspent coins known (reserved ones included).
    pub utxos: usize,
    /// Coins paying the wallet that wait for `wallet.min_confirmations` confirmations
    /// before withdrawals may spend them.
    pub waiting: usize,
    /// Free coins the backend no longer reports unspent (spent outside the coordinator,
    /// or a database restored from an older backup), removed from the set.
    pub removed: usize,
}

/// Synchronises the wallet's coins from the chain backend.
#[utoipa::path(post, path = "/v1/admin/utxos/sync", responses((status = 200, body = Synced)))]
async fn sync_utxos(State(app): State<App>, Auth(p, _t): Auth) -> Result<Json<Synced>, ApiError> {
    if !matches!(p.role, Role::Admin | Role::Operator) {
        return Err(ApiError::forbidden("admins and operators sync coins"));
    }
    let synced = withdrawals::sync_utxos(&app, 20).await?;
    Ok(Json(Synced {
        utxos: synced.utxos,
        waiting: synced.waiting,
        removed: synced.removed,
    }))
}

/// Audit paging.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    pub after: Option<i64>,
    /// At most this many (≤ 1000).
    pub limit: Option<i64>,
}

/// Audit log entries (admin).
#[utoipa::path(get, path = "/v1/audit", params(AuditQuery), responses((status = 200, body = Vec<crate::audit::Entry>)))]
async fn audit_entries(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<crate::audit::Entry>>, ApiError> {
    require(&p, Role::Admin)?;
    Ok(Json(
        crate::audit::entries(
            &app.db,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?,
    ))
}
