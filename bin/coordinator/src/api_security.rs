//! The HTTP routes of user-level security: second factors, recovery codes, the phone for
//! SMS codes, API keys, devices and sessions, the IP allowlist and the whitelist mode.
//! Registered into the same OpenAPI document as every other route.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{Auth, Client};
use crate::app::App;
use crate::error::{ApiError, ErrorBody};
use crate::factors::{self, ChallengeMethod, CodeAnswer, StepUp};
use crate::{accounts, apikeys, devices};

/// Adds the routes of this module.
pub fn routes(router: OpenApiRouter<App>) -> OpenApiRouter<App> {
    router
        .routes(routes!(login_challenge))
        .routes(routes!(second_factors))
        .routes(routes!(challenge))
        .routes(routes!(start_registration))
        .routes(routes!(finish_registration))
        .routes(routes!(list_credentials))
        .routes(routes!(remove_credential))
        .routes(routes!(recovery_codes))
        .routes(routes!(set_phone))
        .routes(routes!(verify_phone))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_devices))
        .routes(routes!(revoke_device))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_other_sessions))
        .routes(routes!(set_ip_allowlist))
        .routes(routes!(remove_whitelisted))
        .routes(routes!(set_whitelist_mode))
}

fn only_people(p: &accounts::Principal) -> Result<(), ApiError> {
    if matches!(p.via, accounts::Via::ApiKey { .. }) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "needs_person",
            "security settings cannot be changed with an API key; sign in and confirm with 2FA",
        ));
    }
    Ok(())
}

/// A challenge before signing in.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct LoginChallenge {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// `webauthn`, `email` or `sms`.
    pub method: ChallengeMethod,
}

/// Checks email and password and starts a second-factor challenge for signing in; answer
/// it in `POST /v1/sessions`.
#[utoipa::path(post, path = "/v1/sessions/challenges", request_body = LoginChallenge,
    responses((status = 201, body = factors::Challenge), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login_challenge(
    State(app): State<App>,
    Client(c): Client,
    Json(r): Json<LoginChallenge>,
) -> Result<(StatusCode, Json<factors::Challenge>), ApiError> {
    let ch = accounts::login_challenge(&app, &r.email, &r.password, r.method, &c).await?;
    Ok((StatusCode::CREATED, Json(ch)))
}

/// What second factors the account has.
#[utoipa::path(get, path = "/v1/me/second-factors", responses((status = 200, body = factors::Enrolled)))]
async fn second_factors(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<factors::Enrolled>, ApiError> {
    let mut tx = app.db.begin().await?;
    let e = factors::enrolled(&mut tx, &p.id).await?;
    drop(tx);
    Ok(Json(e))
}

/// A challenge request.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ChallengeRequest {
    /// `webauthn`, `email` or `sms`.
    pub method: ChallengeMethod,
}

/// Starts a step-up challenge (a security-key prompt, or a code by email or SMS) to
/// answer in a sensitive request's `webauthn`, `email_code` or `sms_code`.
#[utoipa::path(post, path = "/v1/me/second-factor/challenges", request_body = ChallengeRequest,
    responses((status = 201, body = factors::Challenge), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn challenge(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<ChallengeRequest>,
) -> Result<(StatusCode, Json<factors::Challenge>), ApiError> {
    only_people(&p)?;
    let ch = factors::start_challenge(&app, &p, r.method, &p.client_ip).await?;
    Ok((StatusCode::CREATED, Json(ch)))
}

/// Starts registering a security key or passkey (step-up when the account already has a
/// second factor).
#[utoipa::path(post, path = "/v1/me/webauthn/registrations", request_body = StepUp,
    responses((status = 201, body = factors::Registration), (status = 401, body = ErrorBody)))]
async fn start_registration(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<StepUp>,
) -> Result<(StatusCode, Json<factors::Registration>), ApiError> {
    only_people(&p)?;
    let reg = factors::start_webauthn_registration(&app, &p, &r, &p.client_ip).await?;
    Ok((StatusCode::CREATED, Json(reg)))
}

/// The authenticator's answer to a registration.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct FinishRegistration {
    /// A name for the key ("YubiKey 5C", "laptop passkey").
    pub name: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Finishes registering a security key or passkey.
#[utoipa::path(post, path = "/v1/me/webauthn/registrations/{id}", params(("id" = String, Path)), request_body = FinishRegistration,
    responses((status = 201, body = factors::CredentialView), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn finish_registration(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    Json(r): Json<FinishRegistration>,
) -> Result<(StatusCode, Json<factors::CredentialView>), ApiError> {
    only_people(&p)?;
    let c =
        factors::finish_webauthn_registration(&app, &p, &id, &r.name, &r.credential, &p.client_ip)
            .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// The account's security keys and passkeys.
#[utoipa::path(get, path = "/v1/me/webauthn/credentials", responses((status = 200, body = Vec<factors::CredentialView>)))]
async fn list_credentials(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<factors::CredentialView>>, ApiError> {
    Ok(Json(factors::list_credentials(&app, &p).await?))
}

/// Removes a security key (step-up; a 48-hour hold follows).
#[utoipa::path(post, path = "/v1/me/webauthn/credentials/{id}/remove", params(("id" = String, Path)), request_body = StepUp,
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_credential(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
    Json(r): Json<StepUp>,
) -> Result<StatusCode, ApiError> {
    only_people(&p)?;
    factors::remove_credential(&app, &p, &id, &r, &p.client_ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Generates new recovery codes (step-up), shown once; earlier codes stop working.
#[utoipa::path(post, path = "/v1/me/recovery-codes", request_body = StepUp,
    responses((status = 201, body = factors::RecoveryCodesView), (status = 401, body = ErrorBody)))]
async fn recovery_codes(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<StepUp>,
) -> Result<(StatusCode, Json<factors::RecoveryCodesView>), ApiError> {
    only_people(&p)?;
    let codes = factors::new_recovery_codes(&app, &p, &r, &p.client_ip).await?;
    Ok((StatusCode::CREATED, Json(codes)))
}

/// A phone number for SMS codes.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PhoneChange {
    /// International form, `+` and 8 to 15 digits.
    pub phone: String,
    /// Second-factor proof.
    #[serde(flatten)]
    pub factors: StepUp,
}

/// Sets the phone for SMS codes (step-up) and sends a code to confirm it. SMS is a
/// restricted factor: it never authorises a withdrawal alone.
#[utoipa::path(post, path = "/v1/me/phone", request_body = PhoneChange,
    responses((status = 201, body = factors::Challenge), (status = 400, body = ErrorBody)))]
async fn set_phone(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<PhoneChange>,
) -> Result<(StatusCode, Json<factors::Challenge>), ApiError> {
    only_people(&p)?;
    let ch = factors::set_phone(&app, &p, &r.phone, &r.factors, &p.client_ip).await?;
    Ok((StatusCode::CREATED, Json(ch)))
}

/// Confirms the phone with the code sent to it.
#[utoipa::path(post, path = "/v1/me/phone/verify", request_body = CodeAnswer,
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn verify_phone(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<CodeAnswer>,
) -> Result<StatusCode, ApiError> {
    only_people(&p)?;
    factors::verify_phone(&app, &p, &r, &p.client_ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's API keys.
#[utoipa::path(get, path = "/v1/me/api-keys", responses((status = 200, body = Vec<apikeys::KeyView>)))]
async fn list_keys(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<apikeys::KeyView>>, ApiError> {
    Ok(Json(apikeys::list(&app, &p).await?))
}

/// Creates an API key (step-up for a person; a signed `admin` key may create keys with at
/// most its own scopes). The secret is shown once.
#[utoipa::path(post, path = "/v1/me/api-keys", request_body = apikeys::NewKey,
    responses((status = 201, body = apikeys::KeyCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_key(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Json(r): Json<apikeys::NewKey>,
) -> Result<(StatusCode, Json<apikeys::KeyCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(apikeys::create(&app, &p, &r).await?),
    ))
}

/// Revokes an API key at once.
#[utoipa::path(post, path = "/v1/me/api-keys/{id}/revoke", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    apikeys::revoke(&app, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's devices with last use, address and user agent.
#[utoipa::path(get, path = "/v1/me/devices", responses((status = 200, body = Vec<devices::DeviceView>)))]
async fn list_devices(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<devices::DeviceView>>, ApiError> {
    Ok(Json(devices::devices(&app, &p).await?))
}

/// Revokes a device: its sessions end; it must be confirmed again if it comes back.
#[utoipa::path(post, path = "/v1/me/devices/{id}/revoke", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_device(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    only_people(&p)?;
    devices::revoke_device(&app, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's open sessions.
#[utoipa::path(get, path = "/v1/me/sessions", responses((status = 200, body = Vec<devices::SessionView>)))]
async fn list_sessions(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Vec<devices::SessionView>>, ApiError> {
    Ok(Json(devices::sessions(&app, &p).await?))
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    /// The count.
    pub ended: u64,
}

/// Ends one session.
#[utoipa::path(post, path = "/v1/me/sessions/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = Ended), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(id): Path<String>,
) -> Result<Json<Ended>, ApiError> {
    only_people(&p)?;
    let ended = devices::revoke_sessions(&app, &p, Some(&id)).await?;
    Ok(Json(Ended { ended }))
}

/// Ends every session but this one ("sign out everywhere else").
#[utoipa::path(post, path = "/v1/me/sessions/revoke-others", responses((status = 200, body = Ended)))]
async fn revoke_other_sessions(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<Ended>, ApiError> {
    only_people(&p)?;
    let ended = devices::revoke_sessions(&app, &p, None).await?;
    Ok(Json(Ended { ended }))
}

/// The allowlist as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IpAllowlistView {
    /// Canonical networks, comma separated; none allows any address.
    pub ip_allowlist: Option<String>,
}

/// Sets the account's IP allowlist (step-up); the caller's address must be inside it.
#[utoipa::path(put, path = "/v1/me/ip-allowlist", request_body = devices::IpAllowlistChange,
    responses((status = 200, body = IpAllowlistView), (status = 400, body = ErrorBody)))]
async fn set_ip_allowlist(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<devices::IpAllowlistChange>,
) -> Result<Json<IpAllowlistView>, ApiError> {
    only_people(&p)?;
    let stored = devices::set_ip_allowlist(&app, &p, &r, &c).await?;
    Ok(Json(IpAllowlistView {
        ip_allowlist: stored,
    }))
}

/// A whitelist removal.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RemoveAddress {
    /// The address.
    pub address: String,
    /// Second-factor proof.
    #[serde(flatten)]
    pub factors: StepUp,
}

/// Removes an address from the withdrawal whitelist at once (step-up).
#[utoipa::path(post, path = "/v1/me/whitelist/remove", request_body = RemoveAddress,
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_whitelisted(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<RemoveAddress>,
) -> Result<StatusCode, ApiError> {
    only_people(&p)?;
    devices::whitelist_remove(&app, &p, r.address.trim(), &r.factors, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns whitelist-only withdrawals on or off (step-up; off places a hold).
#[utoipa::path(put, path = "/v1/me/whitelist-mode", request_body = devices::WhitelistMode,
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn set_whitelist_mode(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(c): Client,
    Json(r): Json<devices::WhitelistMode>,
) -> Result<StatusCode, ApiError> {
    only_people(&p)?;
    devices::set_whitelist_mode(&app, &p, &r, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}
