//! Single-use links in emails and the user's anti-phishing code.
//!
//! Every alert to a user carries a "this wasn't me" link ([`LinkPurpose::FreezeAccount`],
//! issued by [`crate::notify::enqueue`] in the alert's own transaction) that freezes the
//! account at once; a device confirmation link ([`LinkPurpose::ConfirmDevice`]) confirms
//! the device named in its payload. Tokens come from `custody-auth`
//! ([`issue_link_token`]): only their hash is stored (`link_tokens`), each works once and
//! expires.
//!
//! `GET /v1/links/{token}` only shows what the link does and a button: mail scanners fetch
//! links before people click them, so a GET never changes anything. `POST` acts. Both
//! answer HTML to a browser and JSON to a client that asks for it. The pages hold no
//! personal data (no email address, no device name), are not cached and send no referrer.
//!
//! An email confirmation link ([`LinkPurpose::ConfirmEmail`]) goes to the new address of an
//! email change and applies the change (see [`crate::accounts::change_email`]).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use custody_auth::{
    issue_link_token, link_token_hash, AntiPhishingCode, LinkPurpose, LinkTokenError,
    LinkTokenRecord,
};
use custody_vault::Purpose;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::api::{Auth, Client};
use crate::app::App;
use crate::db::{int, opt_int, opt_text, text, Tx, Writes};
use crate::error::{ApiError, ErrorBody};

/// The purposes a stored link can have.
const PURPOSES: [LinkPurpose; 3] = [
    LinkPurpose::FreezeAccount,
    LinkPurpose::ConfirmDevice,
    LinkPurpose::ConfirmEmail,
];

/// Longer than any token `custody-auth` issues (`cpl_` and 43 characters).
const MAX_TOKEN_LEN: usize = 64;

/// Used or expired links are kept this long after they expire, so following one says
/// "used" or "expired" rather than "not valid".
const KEEP_EXPIRED_SECS: i64 = 30 * 86_400;

/// The reason recorded for a freeze through a link.
pub const FREEZE_REASON: &str =
    "the account holder followed the \"this wasn't me\" link in an alert";

/// Issues a link for `purpose` on `principal_id`'s account inside `tx` and returns its URL
/// (`<public_url>/v1/links/<token>`). `payload` is what the action needs besides the
/// account (for [`LinkPurpose::ConfirmDevice`]: `{"device_id": "…"}`).
///
/// # Security
/// The URL holds the token in clear: put it only where the user receives it, never in a
/// log.
///
/// # Errors
/// Storage failure.
pub async fn issue(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    purpose: LinkPurpose,
    payload: serde_json::Value,
) -> Result<Zeroizing<String>, ApiError> {
    let mut w = Writes::new();
    let url = issue_to(&mut w, app, principal_id, purpose, &payload);
    w.run(tx).await?;
    Ok(url)
}

/// [`issue`] into a batch of writes the caller runs in its transaction.
pub(crate) fn issue_to(
    w: &mut Writes,
    app: &App,
    principal_id: &str,
    purpose: LinkPurpose,
    payload: &serde_json::Value,
) -> Zeroizing<String> {
    let now = app.now();
    let (token, record) = issue_link_token(purpose, principal_id, purpose.default_ttl_secs(), now);
    w.push(
        "INSERT INTO link_tokens (token_hash, principal_id, purpose, subject, payload, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hex::encode(record.token_hash))
    .bind(principal_id.to_owned())
    .bind(purpose.as_str())
    .bind(record.subject.clone())
    .bind(payload.to_string())
    .bind(record.issued_at)
    .bind(record.expires_at);
    Zeroizing::new(format!(
        "{}/v1/links/{}",
        app.config.public_url(),
        token.expose_secret()
    ))
}

/// How often the worker sweeps links that expired long ago.
pub(crate) const SWEEP_EVERY_SECS: i64 = 3_600;

/// Deletes links that expired more than 30 days ago (the worker, hourly), so the table
/// does not grow with every alert. Returns how many went.
///
/// # Errors
/// Storage failure.
pub async fn sweep_expired(app: &App) -> Result<u64, ApiError> {
    let done = sqlx::query("DELETE FROM link_tokens WHERE expires_at < $1")
        .bind(app.now() - KEEP_EXPIRED_SECS)
        .execute(app.db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// A stored link.
struct Found {
    record: LinkTokenRecord,
    principal_id: String,
    payload: serde_json::Value,
}

/// Looks `token` up under each purpose's hash. `None` for a token no row has.
async fn find(tx: &mut Tx<'_>, token: &str) -> Result<Option<Found>, ApiError> {
    if !token.starts_with("cpl_") || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let [a, b, c] = PURPOSES.map(|p| hex::encode(link_token_hash(p, token)));
    let row = sqlx::query(
        "SELECT token_hash, principal_id, purpose, subject, payload, created_at, expires_at, used_at \
         FROM link_tokens WHERE token_hash IN ($1, $2, $3)",
    )
    .bind(a)
    .bind(b)
    .bind(c)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored = text(&row, "purpose")?;
    let purpose = PURPOSES
        .into_iter()
        .find(|p| p.as_str() == stored)
        .ok_or_else(|| ApiError::internal(format!("a link has an unknown purpose {stored:?}")))?;
    let token_hash: [u8; 32] = hex::decode(text(&row, "token_hash")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::internal("a link's stored hash is not 32 bytes of hex"))?;
    Ok(Some(Found {
        record: LinkTokenRecord {
            token_hash,
            purpose,
            subject: text(&row, "subject")?,
            issued_at: int(&row, "created_at")?,
            expires_at: int(&row, "expires_at")?,
            used_at: opt_int(&row, "used_at")?,
        },
        principal_id: text(&row, "principal_id")?,
        payload: serde_json::from_str(&text(&row, "payload")?).unwrap_or_default(),
    }))
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "link_not_found",
        "this link is not valid; copy the whole link from the email, or ask support",
    )
}

fn refused(e: &LinkTokenError, purpose: LinkPurpose) -> ApiError {
    let then = match purpose {
        LinkPurpose::FreezeAccount => {
            "; if you still want your account frozen, follow the link in a newer alert or contact support"
        }
        _ => "; ask for a new link",
    };
    match e {
        LinkTokenError::Used => ApiError::new(
            StatusCode::GONE,
            "link_used",
            format!("this link was already used{then}"),
        ),
        LinkTokenError::Expired { expired_at } => ApiError::new(
            StatusCode::GONE,
            "link_expired",
            format!(
                "this link expired at {}{then}",
                crate::clock::rfc3339(*expired_at)
            ),
        ),
        _ => not_found(),
    }
}

/// What a link does, for the page and the JSON answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkInfo {
    /// `freeze_account`, `confirm_device` or `confirm_email`.
    pub purpose: String,
    /// What following it (POST) does, as a sentence.
    pub action: String,
    /// When it stops working (unix seconds).
    pub expires_at: i64,
}

/// What following a link did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkOutcome {
    /// The link's purpose.
    pub purpose: String,
    /// What was done and what to do next, as a sentence.
    pub result: String,
}

struct Texts {
    title: &'static str,
    action: &'static str,
    button: &'static str,
    done: &'static str,
}

fn texts(purpose: LinkPurpose) -> Texts {
    match purpose {
        LinkPurpose::FreezeAccount => Texts {
            title: "Freeze your CoinPort account",
            action: "If you did not do what the alert described, freeze your account now: nothing is signed or sent from it until an administrator has checked with you and unfreezes it.",
            button: "Freeze my account",
            done: "Your account is frozen: nothing is signed or sent from it. Contact support to have it unfrozen; an administrator checks with you first. Change your password and review your devices.",
        },
        LinkPurpose::ConfirmDevice => Texts {
            title: "Confirm a new device",
            action: "A new device signed in to your account. If it was you, confirm it so it may request withdrawals. If it was not you, do not confirm it: use the \"this wasn't me\" link in the alert instead.",
            button: "Confirm this device",
            done: "The device is confirmed.",
        },
        LinkPurpose::ConfirmEmail => Texts {
            title: "Confirm your new email address",
            action: "Your CoinPort account asked to use this address for its email. If it was you, confirm it: the account's email changes, both addresses are told, and withdrawals are held for at least 48 hours. If it was not you, do nothing.",
            button: "Use this address",
            done: "The account's email address is now this one. Withdrawals are held for at least 48 hours, as after every email change.",
        },
        _ => Texts {
            title: "This link is not valid",
            action: "This link is not valid.",
            button: "Continue",
            done: "Nothing was done.",
        },
    }
}

/// Whether the client asked for JSON (`Accept`, or a JSON body on a POST).
fn wants_json(headers: &HeaderMap, post: bool) -> bool {
    let has = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
    };
    has(header::ACCEPT) || (post && has(header::CONTENT_TYPE))
}

/// An HTML page with only static text: nothing from the request or the database is
/// written into it, so there is nothing to escape.
fn page(status: StatusCode, title: &str, sentence: &str, button: Option<&str>) -> Response {
    let form = button.map_or_else(String::new, |b| {
        format!("<form method=\"post\"><button type=\"submit\">{b}</button></form>\n")
    });
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<p>{sentence}</p>\n{form}</body></html>\n"
    );
    let mut res = (status, Html(html)).into_response();
    secure_headers(&mut res);
    res
}

fn secure_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
}

fn answer_error(e: ApiError, json: bool) -> Response {
    if json {
        let mut res = e.into_response();
        secure_headers(&mut res);
        return res;
    }
    let title = match e.status {
        StatusCode::NOT_FOUND => "This link is not valid",
        StatusCode::GONE => "This link no longer works",
        _ => "Something went wrong",
    };
    let mut sentence = e.message;
    if let Some(first) = sentence.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    sentence.push('.');
    page(e.status, title, &sentence, None)
}

/// Shows what a link does, with a button that follows it. Changes nothing: mail scanners
/// fetch links before people click them.
#[utoipa::path(get, path = "/v1/links/{token}", params(("token" = String, Path, description = "the token from the email")),
    responses((status = 200, body = LinkInfo, description = "what the link does (HTML with a button, or JSON)"), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody, description = "used or expired")))]
pub async fn show_link(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers, false);
    let found = async {
        let mut tx = app.db.begin().await?;
        let found = find(&mut tx, &token).await?;
        tx.commit().await?;
        found.ok_or_else(not_found)
    }
    .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => return answer_error(e, json),
    };
    let purpose = found.record.purpose;
    // Checked on a copy: nothing is written.
    if let Err(e) = found
        .record
        .clone()
        .redeem(purpose, &token, app.now())
        .map(|_| ())
    {
        return answer_error(refused(&e, purpose), json);
    }
    let t = texts(purpose);
    if json {
        let mut res = Json(LinkInfo {
            purpose: purpose.as_str().to_owned(),
            action: t.action.to_owned(),
            expires_at: found.record.expires_at,
        })
        .into_response();
        secure_headers(&mut res);
        return res;
    }
    page(StatusCode::OK, t.title, t.action, Some(t.button))
}

/// Follows a link, once: freezes the account ("this wasn't me"), confirms the device, or
/// applies the email change.
/// Takes a form post or JSON; the body is ignored.
#[utoipa::path(post, path = "/v1/links/{token}", params(("token" = String, Path, description = "the token from the email")),
    responses((status = 200, body = LinkOutcome, description = "done (HTML or JSON)"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "an email change that no longer applies: the address changed since, or the new one was taken"), (status = 410, body = ErrorBody, description = "used or expired")))]
pub async fn follow_link(
    State(app): State<App>,
    Path(token): Path<String>,
    Client(client): Client,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers, true);
    match follow(&app, &token, &client.ip).await {
        Ok(purpose) => {
            let t = texts(purpose);
            if json {
                let mut res = Json(LinkOutcome {
                    purpose: purpose.as_str().to_owned(),
                    result: t.done.to_owned(),
                })
                .into_response();
                secure_headers(&mut res);
                res
            } else {
                page(StatusCode::OK, t.title, t.done, None)
            }
        }
        Err(e) => answer_error(e, json),
    }
}

/// Marks the link used; a link another request used first is refused.
async fn mark_used(tx: &mut Tx<'_>, found: &Found, now: i64) -> Result<(), ApiError> {
    let done = sqlx::query(
        "UPDATE link_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(hex::encode(found.record.token_hash))
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(refused(&LinkTokenError::Used, found.record.purpose))
    }
}

async fn follow(app: &App, token: &str, ip: &str) -> Result<LinkPurpose, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let found = find(&mut tx, token).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    let purpose = found.record.purpose;
    found
        .record
        .clone()
        .redeem(purpose, token, now)
        .map_err(|e| refused(&e, purpose))?;
    let principal_id = found.principal_id.as_str();
    match purpose {
        LinkPurpose::FreezeAccount => {
            // The freeze goes first and on its own: stopping never waits for bookkeeping,
            // and a second click racing this one only freezes a frozen account again.
            crate::risk::set_freeze(app, "link", Some(principal_id), true, FREEZE_REASON).await?;
            let mut tx = app.db.begin().await?;
            mark_used(&mut tx, &found, now).await?;
            crate::audit::append(
                &mut tx,
                now,
                "link.freeze_account",
                "link",
                principal_id,
                &serde_json::json!({ "ip": ip, "link_issued_at": found.record.issued_at }),
            )
            .await?;
            // The event, its audit entry and the owner's alert.
            crate::risk::record_now(
                &mut tx,
                app,
                principal_id,
                crate::risk::EventKind::AccountFrozen,
                Some(ip),
                serde_json::json!({ "by": "this_wasnt_me_link" }),
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(
                account = principal_id,
                "account frozen through a \"this wasn't me\" link"
            );
        }
        LinkPurpose::ConfirmDevice => {
            let device = found.payload["device_id"]
                .as_str()
                .ok_or_else(|| ApiError::internal("a device confirmation link has no device_id"))?
                .to_owned();
            let mut tx = app.db.begin().await?;
            mark_used(&mut tx, &found, now).await?;
            let confirmed = sqlx::query(
                "UPDATE devices SET confirmed_at = COALESCE(confirmed_at, $1) \
                 WHERE principal_id = $2 AND device_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(principal_id)
            .bind(&device)
            .execute(&mut *tx)
            .await?;
            if confirmed.rows_affected() == 0 {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "device_gone",
                    "this device was removed or revoked; sign in from it again to get a new link",
                ));
            }
            crate::risk::record_now(
                &mut tx,
                app,
                principal_id,
                crate::risk::EventKind::DeviceConfirmed,
                Some(ip),
                serde_json::json!({ "device": device, "by": "link" }),
            )
            .await?;
            tx.commit().await?;
        }
        LinkPurpose::ConfirmEmail => {
            let field = |name: &str| {
                found.payload[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::internal(format!("an email confirmation link has no {name}"))
                    })
            };
            let old_key = field("old_email_key")?;
            let new_email = Zeroizing::new(app.vault.open_string(
                Purpose::Secret,
                &email_change_record(principal_id),
                &field("new_email_sealed")?,
            )?);
            let mut tx = app.db.begin().await?;
            mark_used(&mut tx, &found, now).await?;
            crate::accounts::confirm_email_change(
                &mut tx,
                app,
                principal_id,
                &old_key,
                &new_email,
                ip,
            )
            .await?;
            tx.commit().await?;
        }
        _ => return Err(not_found()),
    }
    Ok(purpose)
}

/// The record id of the new address in an email-change link.
fn email_change_record(principal_id: &str) -> String {
    format!("email_change:{principal_id}")
}

/// Seals the new address of an email change for its confirmation link's payload.
///
/// # Errors
/// 500 when sealing fails.
pub(crate) fn seal_new_email(
    app: &App,
    principal_id: &str,
    new_email: &str,
) -> Result<String, ApiError> {
    app.vault.seal_text(
        Purpose::Secret,
        &email_change_record(principal_id),
        new_email.as_bytes(),
    )
}

/// Rewrites the email-change links of an earlier version, which named both addresses in
/// clear, to name the old one by its lookup key and seal the new one (ADR 0034).
///
/// # Errors
/// Storage failure.
pub(crate) async fn seal_legacy_email_changes(
    db: &crate::db::Db,
    vault: &crate::vault::Vault,
) -> anyhow::Result<usize> {
    let rows = sqlx::query(
        "SELECT token_hash, principal_id, payload FROM link_tokens \
         WHERE purpose = $1 AND payload LIKE '%\"new_email\":%'",
    )
    .bind(LinkPurpose::ConfirmEmail.as_str())
    .fetch_all(db.pool())
    .await?;
    let mut n = 0;
    for r in &rows {
        let (hash, principal, stored) = (
            text(r, "token_hash")?,
            text(r, "principal_id")?,
            text(r, "payload")?,
        );
        let old: serde_json::Value = serde_json::from_str(&stored).unwrap_or_default();
        let (Some(old_email), Some(new_email)) =
            (old["old_email"].as_str(), old["new_email"].as_str())
        else {
            continue;
        };
        let payload = serde_json::json!({
            "old_email_key": crate::accounts::email_key(vault, old_email)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            "new_email_sealed": vault
                .seal_text(Purpose::Secret, &email_change_record(&principal), new_email.as_bytes())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        });
        let done = sqlx::query(
            "UPDATE link_tokens SET payload = $1 WHERE token_hash = $2 AND payload = $3",
        )
        .bind(payload.to_string())
        .bind(&hash)
        .bind(&stored)
        .execute(db.pool())
        .await?;
        n += usize::try_from(done.rows_affected()).unwrap_or(0);
    }
    Ok(n)
}

fn code_record_id(principal_id: &str) -> String {
    format!("anti_phishing_code:{principal_id}")
}

/// The user's anti-phishing code, if set.
///
/// # Errors
/// Storage failure, or a sealed code the vault cannot open.
pub async fn anti_phishing_code(
    app: &App,
    principal_id: &str,
) -> Result<Option<AntiPhishingCode>, ApiError> {
    let row = sqlx::query("SELECT anti_phishing_code FROM principals WHERE id = $1")
        .bind(principal_id)
        .fetch_optional(app.db.pool())
        .await?;
    let Some(sealed) = row
        .as_ref()
        .map(|r| opt_text(r, "anti_phishing_code"))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    let plain = app
        .vault
        .open_text(Purpose::Secret, &code_record_id(principal_id), &sealed)?;
    let text = std::str::from_utf8(&plain)
        .map_err(|_| ApiError::internal("a stored anti-phishing code is not UTF-8"))?;
    AntiPhishingCode::parse(text)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("a stored anti-phishing code is not valid: {e}")))
}

/// Whether the user has set an anti-phishing code (without opening it).
///
/// # Errors
/// Storage failure.
pub async fn has_anti_phishing_code(app: &App, principal_id: &str) -> Result<bool, ApiError> {
    let row = sqlx::query("SELECT anti_phishing_code FROM principals WHERE id = $1")
        .bind(principal_id)
        .fetch_optional(app.db.pool())
        .await?;
    Ok(match row {
        Some(r) => opt_text(&r, "anti_phishing_code")?.is_some(),
        None => false,
    })
}

/// A new anti-phishing code.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct AntiPhishingCodeChange {
    /// 4 to 20 characters: letters A-Z, digits, `-`, `_` and single spaces.
    pub code: String,
    /// Second-factor proof (step-up).
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

impl std::fmt::Debug for AntiPhishingCodeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AntiPhishingCodeChange { <redacted> }")
    }
}

/// Sets the anti-phishing code every email to this account carries (step-up 2FA). The
/// change is alerted, and that email already carries the new code.
#[utoipa::path(put, path = "/v1/me/anti-phishing-code", request_body = AntiPhishingCodeChange,
    responses((status = 204, description = "set"), (status = 400, body = ErrorBody, description = "the code breaks a rule"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "TOTP not enrolled")))]
pub async fn set_anti_phishing_code(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Client(client): Client,
    Json(r): Json<AntiPhishingCodeChange>,
) -> Result<StatusCode, ApiError> {
    let code =
        AntiPhishingCode::parse(&r.code).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = app.now();
    let mut tx = app.db.begin().await?;
    crate::accounts::step_up(
        &mut tx,
        &app,
        &p,
        &r.factors,
        custody_auth::Action::SensitiveChange,
        &client.ip,
    )
    .await?;
    let sealed = app.vault.seal_text(
        Purpose::Secret,
        &code_record_id(&p.id),
        code.as_str().as_bytes(),
    )?;
    sqlx::query("UPDATE principals SET anti_phishing_code = $1 WHERE id = $2")
        .bind(&sealed)
        .bind(&p.id)
        .execute(&mut *tx)
        .await?;
    crate::audit::append(
        &mut tx,
        now,
        "principal.anti_phishing_code_set",
        &p.id,
        &p.id,
        &serde_json::json!({ "ip": client.ip }),
    )
    .await?;
    crate::notify::enqueue(
        &mut tx,
        &app,
        Some(&p.id),
        "security.anti_phishing_code_changed",
        serde_json::json!({ "at": now, "ip": client.ip }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
