//! The transactional outbox: notification rows are written in the same transaction as the
//! event they report, one row per configured channel; [`deliver_pending`] hands due rows to
//! their channel and retries failures with backoff (1 minute doubling to 1 hour) until
//! `notifications.max_attempts`, after which a row is marked failed — never lost silently.
//!
//! Channels: a JSON Lines file (development), email through an SMTP relay (`lettre`), and a
//! webhook POST signed with HMAC-SHA256 (`X-Custody-Signature: sha256=<hex>` over the exact
//! body, `X-Custody-Delivery: <id>` so a receiver can drop duplicates: a crash between a
//! delivery and its bookkeeping delivers again, never less).
//!
//! Every notification to a user carries a "this wasn't me" link
//! ([`crate::links`]), issued in the notification's own transaction. The outbox keeps the
//! link sealed with the vault key file (a copy of the database holds no usable link);
//! delivery opens it into the payload's `this_wasnt_me_url`, so the webhook and the file
//! sink get it too, and into the email text. Every email starts with the user's
//! anti-phishing code (also in the `X-CoinPort-Anti-Phishing-Code` header), or says that
//! none is set.

use std::io::Write;
use std::time::Duration;

use custody_auth::{AntiPhishingCode, LinkPurpose, ANTI_PHISHING_HEADER};
use custody_vault::Purpose;
use hmac::{Hmac, Mac};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::app::App;
use crate::config::SmtpSecurity;
use crate::db::{int, opt_text, text, Tx, Writes};
use crate::error::ApiError;

/// The payload key of the "this wasn't me" link as delivered.
pub const LINK_KEY: &str = "this_wasnt_me_url";
/// The payload key of the link as the outbox keeps it: sealed with the vault.
const SEALED_LINK_KEY: &str = "this_wasnt_me_url_sealed";
/// A payload key naming the address an email goes to instead of the account's current
/// one (the old address after an email change). The outbox keeps it sealed
/// (`to_email_sealed`); delivery opens it.
pub const TO_EMAIL_KEY: &str = "to_email";
/// The payload key of the address as the outbox keeps it.
const SEALED_TO_EMAIL_KEY: &str = "to_email_sealed";
/// The payload key of an SMS code's phone number as delivered.
pub(crate) const TO_PHONE_KEY: &str = "to";
/// The payload key of the phone number as the outbox keeps it.
pub(crate) const SEALED_TO_PHONE_KEY: &str = "to_sealed";
/// The payload key of a device confirmation link as delivered.
pub const CONFIRM_KEY: &str = "confirm_url";
/// The payload key of a confirmation link as the outbox keeps it.
const SEALED_CONFIRM_KEY: &str = "confirm_url_sealed";

/// Kinds whose links prove control of the mailbox: sent by email (and the development
/// file), never to the webhook.
const EMAIL_ONLY_KINDS: [&str; 2] = ["device.confirm", "email.confirm"];

/// Kinds sent to an address that is not (yet) the account's: no "this wasn't me" link,
/// which would let whoever reads that mailbox freeze the account, and no anti-phishing
/// code, which is the owner's to recognise genuine mail by.
const UNVERIFIED_RECIPIENT_KINDS: [&str; 1] = ["email.confirm"];

/// Queues, into the caller's batch, the email asking the new address of an email change
/// to confirm it, with its single-use link. The link's payload names the address the
/// change was asked from (`old_key`, its lookup key), so a later change makes it void,
/// and the new address sealed. Returns until when the link works.
///
/// # Errors
/// The link could not be sealed.
pub(crate) fn enqueue_email_confirmation_to(
    w: &mut Writes,
    app: &App,
    principal_id: &str,
    old_key: &str,
    new_email: &str,
    ip: &str,
) -> Result<i64, ApiError> {
    let link_payload = serde_json::json!({
        "old_email_key": old_key,
        "new_email_sealed": crate::links::seal_new_email(app, principal_id, new_email)?,
    });
    enqueue_confirmation_to(
        w,
        app,
        principal_id,
        LinkPurpose::ConfirmEmail,
        &link_payload,
        "email.confirm",
        serde_json::json!({ "ip": ip, TO_EMAIL_KEY: new_email }),
    )
}

/// Queues the email asking the owner to confirm a new device, with its confirmation
/// link and a "this wasn't me" link.
///
/// # Errors
/// Storage failure.
pub async fn enqueue_device_confirmation(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    device_id: &str,
    user_agent: &str,
    ip: &str,
) -> Result<(), ApiError> {
    let mut w = Writes::new();
    enqueue_confirmation_to(
        &mut w,
        app,
        principal_id,
        LinkPurpose::ConfirmDevice,
        &serde_json::json!({ "device_id": device_id }),
        "device.confirm",
        serde_json::json!({ "ip": ip, "device": device_id, "user_agent": user_agent }),
    )?;
    w.run(tx).await?;
    Ok(())
}

/// Issues a confirmation link for `purpose` and queues the `kind` email carrying it
/// (sealed in the outbox like every link), with `payload` and the time and the link's
/// expiry added; both writes go into `w`. Returns the link's expiry.
fn enqueue_confirmation_to(
    w: &mut Writes,
    app: &App,
    principal_id: &str,
    purpose: LinkPurpose,
    link_payload: &serde_json::Value,
    kind: &str,
    mut payload: serde_json::Value,
) -> Result<i64, ApiError> {
    let url = crate::links::issue_to(w, app, principal_id, purpose, link_payload);
    let sealed = app.vault.seal_text(
        Purpose::Secret,
        &link_record_id(principal_id),
        url.as_bytes(),
    )?;
    let now = app.now();
    let expires_at = now + purpose.default_ttl_secs();
    payload["at"] = now.into();
    payload["expires_at"] = expires_at.into();
    payload[SEALED_CONFIRM_KEY] = sealed.into();
    enqueue_to(w, app, Some(principal_id), kind, payload)?;
    Ok(expires_at)
}

fn link_record_id(principal_id: &str) -> String {
    format!("outbox_link:{principal_id}")
}

/// The record id of an address or phone number in an outbox payload.
fn contact_record_id(principal_id: &str) -> String {
    format!("outbox_contact:{principal_id}")
}

/// Seals `value` as the contact detail `key` of an outbox payload of `principal_id`'s
/// (moves it to `sealed_key`). A payload without it is left alone.
fn seal_contact(
    vault: &crate::vault::Vault,
    principal_id: &str,
    payload: &mut serde_json::Value,
    key: &str,
    sealed_key: &str,
) -> Result<(), ApiError> {
    let Some(object) = payload.as_object_mut() else {
        return Ok(());
    };
    let Some(value) = object.remove(key) else {
        return Ok(());
    };
    match value.as_str() {
        Some(text) => {
            let sealed = vault.seal_text(
                Purpose::Secret,
                &contact_record_id(principal_id),
                text.as_bytes(),
            )?;
            object.insert(sealed_key.to_owned(), sealed.into());
        }
        // `null` (an SMS code without a number never leaves) stays as it was.
        None => {
            object.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

/// Seals the phone number of an SMS code's outbox payload.
///
/// # Errors
/// 500 when sealing fails.
pub(crate) fn seal_phone_in(
    app: &App,
    principal_id: &str,
    payload: &mut serde_json::Value,
) -> Result<(), ApiError> {
    seal_contact(
        &app.vault,
        principal_id,
        payload,
        TO_PHONE_KEY,
        SEALED_TO_PHONE_KEY,
    )
}

/// Seals the addresses and phone numbers that outbox rows of an earlier version hold in
/// clear (ADR 0034). Returns how many rows it rewrote.
///
/// # Errors
/// Storage failure.
pub(crate) async fn seal_legacy_recipients(
    db: &crate::db::Db,
    vault: &crate::vault::Vault,
) -> anyhow::Result<usize> {
    let rows = sqlx::query(
        "SELECT id, principal_id, payload FROM outbox WHERE principal_id IS NOT NULL \
         AND (payload LIKE '%\"to_email\":\"%' OR payload LIKE '%\"to\":\"%')",
    )
    .fetch_all(db.pool())
    .await?;
    let mut n = 0;
    for r in &rows {
        let (id, principal, stored) = (
            text(r, "id")?,
            text(r, "principal_id")?,
            text(r, "payload")?,
        );
        let Ok(mut payload) = serde_json::from_str::<serde_json::Value>(&stored) else {
            continue;
        };
        for (key, sealed_key) in [
            (TO_EMAIL_KEY, SEALED_TO_EMAIL_KEY),
            (TO_PHONE_KEY, SEALED_TO_PHONE_KEY),
        ] {
            seal_contact(vault, &principal, &mut payload, key, sealed_key)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let done = sqlx::query("UPDATE outbox SET payload = $1 WHERE id = $2 AND payload = $3")
            .bind(payload.to_string())
            .bind(&id)
            .bind(&stored)
            .execute(db.pool())
            .await?;
        n += usize::try_from(done.rows_affected()).unwrap_or(0);
    }
    Ok(n)
}

/// Queues a notification inside `tx`: one row per configured channel. Email rows need a
/// principal (the recipient is read at delivery time, so an email change is honoured).
/// A notification to a user gets a "this wasn't me" link, issued in `tx`.
///
/// # Errors
/// Storage failure.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: Option<&str>,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), ApiError> {
    let mut w = Writes::new();
    enqueue_to(&mut w, app, principal_id, kind, payload)?;
    w.run(tx).await?;
    Ok(())
}

/// [`enqueue`] into a batch of writes the caller runs in its transaction.
///
/// # Errors
/// The link could not be sealed.
pub(crate) fn enqueue_to(
    w: &mut Writes,
    app: &App,
    principal_id: Option<&str>,
    kind: &str,
    mut payload: serde_json::Value,
) -> Result<(), ApiError> {
    let now = app.now();
    let mut channels = Vec::new();
    if app.config.notification_file().is_some() {
        channels.push("file");
    }
    if app.config.notifications.smtp.is_some() && principal_id.is_some() {
        channels.push("email");
    }
    if app.config.notifications.webhook.is_some() && !EMAIL_ONLY_KINDS.contains(&kind) {
        channels.push("webhook");
    }
    if channels.is_empty() {
        return Ok(());
    }
    if let Some(principal) = principal_id.filter(|_| !UNVERIFIED_RECIPIENT_KINDS.contains(&kind)) {
        let url = crate::links::issue_to(
            w,
            app,
            principal,
            LinkPurpose::FreezeAccount,
            &serde_json::json!({}),
        );
        let sealed =
            app.vault
                .seal_text(Purpose::Secret, &link_record_id(principal), url.as_bytes())?;
        if !payload.is_object() {
            payload = serde_json::json!({ "detail": payload });
        }
        payload[SEALED_LINK_KEY] = serde_json::Value::String(sealed);
    }
    if let Some(principal) = principal_id {
        seal_contact(
            &app.vault,
            principal,
            &mut payload,
            TO_EMAIL_KEY,
            SEALED_TO_EMAIL_KEY,
        )?;
    }
    let payload = payload.to_string();
    for channel in channels {
        w.push(
            "INSERT INTO outbox (id, created_at, principal_id, channel, kind, payload, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(now)
        .bind(principal_id.map(str::to_owned))
        .bind(channel)
        .bind(kind.to_owned())
        .bind(payload.clone())
        .bind(now);
    }
    Ok(())
}

/// A due notification.
struct Pending {
    id: String,
    created_at: i64,
    principal_id: Option<String>,
    channel: String,
    kind: String,
    payload: serde_json::Value,
    attempts: i64,
}

impl Pending {
    fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "created_at": self.created_at,
            "principal_id": self.principal_id,
            "kind": self.kind,
            "payload": self.payload,
        })
    }
}

/// Delivers up to `limit` due notifications, one-time codes first (someone is waiting for
/// them, and a backlog of alerts must not hold them up); returns how many were delivered.
///
/// # Errors
/// Storage failure (a channel failure is recorded on its row, not returned).
pub async fn deliver_pending(app: &App, limit: i64) -> Result<usize, ApiError> {
    let now = app.now();
    let rows = sqlx::query(
        "SELECT id, created_at, principal_id, channel, kind, payload, attempts FROM outbox \
         WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
         ORDER BY CASE WHEN kind LIKE 'otp.%' THEN 0 ELSE 1 END, created_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(app.db.pool())
    .await?;
    let mut delivered = 0;
    for r in &rows {
        let mut p = Pending {
            id: text(r, "id")?,
            created_at: int(r, "created_at")?,
            principal_id: opt_text(r, "principal_id")?,
            channel: text(r, "channel")?,
            kind: text(r, "kind")?,
            payload: serde_json::from_str(&text(r, "payload")?).unwrap_or_default(),
            attempts: int(r, "attempts")?,
        };
        let result = match open_link(app, &mut p) {
            Err(e) => Err(e),
            Ok(()) => match p.channel.as_str() {
                "file" => deliver_file(app, &p),
                "email" => deliver_email(app, &p).await,
                "webhook" => deliver_webhook(app, &p).await,
                "sms" => crate::factors::deliver_sms(app, &p.payload).await,
                other => Err(format!("unknown channel {other}")),
            },
        };
        let attempts = p.attempts + 1;
        match result {
            Ok(()) => {
                // A delivered one-time code is not kept.
                let scrub = p.kind.starts_with("otp.");
                sqlx::query(
                    "UPDATE outbox SET delivered_at = $1, attempts = $2, last_error = NULL, \
                             payload = CASE WHEN $4 = 1 THEN '{}' ELSE payload END WHERE id = $3",
                )
                .bind(now)
                .bind(attempts)
                .bind(&p.id)
                .bind(i64::from(scrub))
                .execute(app.db.pool())
                .await?;
                delivered += 1;
                metrics::counter!("custody_notifications_delivered_total", "channel" => p.channel.clone()).increment(1);
            }
            Err(error) => {
                // A mail server's refusal quotes the recipient; neither the log nor the
                // row keeps an address (ADR 0034).
                let error = redact_addresses(&error);
                tracing::warn!(channel = %p.channel, notification = %p.id, attempts, %error, "notification delivery failed");
                metrics::counter!("custody_notifications_failed_attempts_total", "channel" => p.channel.clone()).increment(1);
                let give_up = attempts >= i64::from(app.config.notifications.max_attempts);
                let backoff = (60_i64 << (attempts - 1).clamp(0, 6)).min(3600);
                sqlx::query(
                    "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, failed_at = $4 WHERE id = $5",
                )
                .bind(attempts)
                .bind(now + backoff)
                .bind(error.chars().take(500).collect::<String>())
                .bind(if give_up { Some(now) } else { None })
                .bind(&p.id)
                .execute(app.db.pool())
                .await?;
            }
        }
    }
    Ok(delivered)
}

/// `text` with every word that holds an `@` (an email address, bracketed or quoted or
/// not) replaced by `<address>`.
pub(crate) fn redact_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str("<address>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')') {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Replaces the sealed links, address and phone number of a payload with their text.
fn open_link(app: &App, p: &mut Pending) -> Result<(), String> {
    for (sealed_key, key, record) in [
        (
            SEALED_LINK_KEY,
            LINK_KEY,
            link_record_id as fn(&str) -> String,
        ),
        (SEALED_CONFIRM_KEY, CONFIRM_KEY, link_record_id),
        (SEALED_TO_EMAIL_KEY, TO_EMAIL_KEY, contact_record_id),
        (SEALED_TO_PHONE_KEY, TO_PHONE_KEY, contact_record_id),
    ] {
        let Some(sealed) = p.payload.as_object_mut().and_then(|o| o.remove(sealed_key)) else {
            continue;
        };
        let principal = p
            .principal_id
            .as_deref()
            .ok_or("a link in a notification without an account")?;
        let url = app
            .vault
            .open_string(
                Purpose::Secret,
                &record(principal),
                sealed.as_str().unwrap_or_default(),
            )
            .map_err(|e| e.message)?;
        p.payload[key] = serde_json::Value::String(url);
    }
    Ok(())
}

fn deliver_file(app: &App, p: &Pending) -> Result<(), String> {
    let path = app.config.notification_file().ok_or("file sink disabled")?;
    append_line(&path, &p.body().to_string())
}

/// Appends one line to a development sink file (JSON Lines) and syncs it.
///
/// # Errors
/// The I/O error, with the path.
pub fn append_line(path: &std::path::Path, line: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            writeln!(f, "{line}")?;
            f.sync_data()
        })
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The subject and text of an alert, for people.
pub fn render(kind: &str, payload: &serde_json::Value) -> (String, String) {
    let at = payload["at"]
        .as_i64()
        .map(crate::clock::rfc3339)
        .unwrap_or_default();
    let what = match kind {
        "security.password_change" => "Your password was changed".to_owned(),
        "security.password_reset" => "Your password was reset".to_owned(),
        "security.two_factor_reset" => "Your two-factor authentication was reset".to_owned(),
        "security.two_factor_enabled" => "Two-factor authentication was turned on".to_owned(),
        "security.email_change" => "Your email address was changed".to_owned(),
        "security.email_change_requested" => {
            "A change of your account's email address was requested".to_owned()
        }
        "email.confirm" => "Confirm your new email address".to_owned(),
        "security.new_device" => "A new device signed in to your account".to_owned(),
        "security.new_ip" => "Your account was used from a new IP address".to_owned(),
        "security.login" => "New sign-in to your account".to_owned(),
        "security.login_failed" => "A sign-in to your account failed".to_owned(),
        "security.whitelist_change" => "Your withdrawal whitelist changed".to_owned(),
        "security.api_key_created" => "An API key was created".to_owned(),
        "security.withdrawal_attempt" => "A withdrawal was requested".to_owned(),
        "withdrawal.requested" => "Your withdrawal was received".to_owned(),
        "withdrawal.held" => "Your withdrawal is on hold".to_owned(),
        "withdrawal.approved" => "Your withdrawal was approved".to_owned(),
        "withdrawal.broadcast" => "Your withdrawal was sent".to_owned(),
        "security.account_frozen" => "Your account was frozen".to_owned(),
        "security.account_locked" => {
            "Your account was locked after repeated failed sign-in or code attempts".to_owned()
        }
        "security.two_factor_removed" => {
            "A second factor was removed from your account or replaced".to_owned()
        }
        "security.recovery_codes_generated" => "New recovery codes were generated".to_owned(),
        "security.recovery_code_used" => "A recovery code was used".to_owned(),
        "security.api_key_revoked" => "An API key was revoked".to_owned(),
        "security.ip_allowlist_change" => "Your IP allowlist changed".to_owned(),
        "security.whitelist_mode_off" => "Whitelist-only withdrawals were turned off".to_owned(),
        "security.device_confirmed" => "A new device was confirmed".to_owned(),
        "security.device_revoked" => "A device or session was signed out".to_owned(),
        "device.confirm" => "Confirm the new device that signed in to your account".to_owned(),
        "otp.email" => "Your verification code".to_owned(),
        "security.anti_phishing_code_changed" => "Your anti-phishing code was changed".to_owned(),
        "withdrawal.failed" => "Your withdrawal failed".to_owned(),
        "withdrawal.cancelled" => "Your withdrawal was cancelled".to_owned(),
        "withdrawal.void_failed" => {
            "A withdrawal being voided was sent from answers outside the coordinator".to_owned()
        }
        "withdrawal.stuck" => "A withdrawal sent is still unconfirmed".to_owned(),
        "policy.installed" => "A new withdrawal policy was installed".to_owned(),
        other => format!("Security notice: {other}"),
    };
    let mut body = format!(
        "{what}{}.\n",
        if at.is_empty() {
            String::new()
        } else {
            format!(" at {at}")
        }
    );
    if let Some(until) = payload["hold_until"].as_i64().filter(|u| *u > 0) {
        body.push_str(&format!(
            "Withdrawals are held until {}.\n",
            crate::clock::rfc3339(until)
        ));
    }
    if let Some(txid) = payload["txid"].as_str() {
        body.push_str(&format!("Transaction: {txid}\n"));
    }
    if kind == "otp.email" {
        let code = payload["code"].as_str().unwrap_or_default();
        let until = payload["expires_at"]
            .as_i64()
            .map(crate::clock::rfc3339)
            .unwrap_or_default();
        return (
            format!("CoinPort Custody: {what}"),
            format!(
                "Your verification code is {code}. It expires at {until}.\nNever share it: CoinPort staff never ask for it. If you did not ask for it, someone knows your password: change it and contact support.\n"
            ),
        );
    }
    if kind == "email.confirm" {
        let url = payload[CONFIRM_KEY].as_str().unwrap_or_default();
        return (
            format!("CoinPort Custody: {what}"),
            format!(
                "Someone signed in to a CoinPort account asked to use this address for its email from now on (from {}, at {at}).\nIf it was you, confirm it with this link (it asks before it acts and works until {}):\n{url}\nIf it was not you, ignore this email: nothing changes without the link.\n",
                payload["ip"].as_str().unwrap_or_default(),
                payload["expires_at"].as_i64().map(crate::clock::rfc3339).unwrap_or_default(),
            ),
        );
    }
    if kind == "security.email_change_requested" {
        body.push_str("A confirmation link was sent to the new address; the account keeps this address until it is followed.\n");
    }
    if let Some(url) = payload[CONFIRM_KEY].as_str() {
        body.push_str(&format!(
            "Device: {}\nFrom: {}\nIf this was you, confirm the device before it can withdraw (the link asks before it acts and works until {}):\n{url}\n",
            payload["user_agent"].as_str().unwrap_or_default(),
            payload["ip"].as_str().unwrap_or_default(),
            payload["expires_at"].as_i64().map(crate::clock::rfc3339).unwrap_or_default(),
        ));
    }
    if kind == "security.account_frozen" {
        body.push_str("Someone followed the \"this wasn't me\" link in one of your alerts. Nothing is signed or sent from your account until an administrator unfreezes it: contact support, who will check with you first.\n");
    }
    match payload[LINK_KEY].as_str() {
        Some(url) => body.push_str(&format!(
            "\nIf this was not you, freeze your account at once with this link (it asks before it acts; an administrator unfreezes the account after checking with you):\n{url}\n"
        )),
        None => body.push_str("\nIf this was not you, contact support at once; an administrator can freeze your account immediately.\n"),
    }
    (format!("CoinPort Custody: {what}"), body)
}

async fn deliver_email(app: &App, p: &Pending) -> Result<(), String> {
    let smtp = app
        .config
        .notifications
        .smtp
        .clone()
        .ok_or("smtp not configured")?;
    let principal = p
        .principal_id
        .clone()
        .ok_or("email notification without an account")?;
    let row = sqlx::query("SELECT email, email_sealed FROM principals WHERE id = $1")
        .bind(&principal)
        .fetch_optional(app.db.pool())
        .await
        .map_err(|e| e.to_string())?
        .ok_or("account no longer exists")?;
    let unverified = UNVERIFIED_RECIPIENT_KINDS.contains(&p.kind.as_str());
    let code = if unverified {
        None
    } else {
        crate::links::anti_phishing_code(app, &principal)
            .await
            .map_err(|e| e.message)?
    };
    let address = match p.payload[TO_EMAIL_KEY].as_str() {
        Some(old) => old.to_owned(),
        None => crate::accounts::open_email(
            &app.vault,
            &principal,
            &text(&row, "email").map_err(|e| e.to_string())?,
            opt_text(&row, "email_sealed")
                .map_err(|e| e.to_string())?
                .as_deref(),
        )
        .map_err(|e| e.message)?,
    };
    let to: Mailbox = address.parse().map_err(|e| format!("recipient: {e}"))?;
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("notifications.smtp.from: {e}"))?;
    let (subject, text) = render(&p.kind, &p.payload);
    let mut message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    let first_line = match &code {
        Some(code) => {
            message = message.header(AntiPhishingHeader(code.as_str().to_owned()));
            code.email_body_line()
        }
        None if unverified => {
            "This address is not confirmed yet, so this email does not carry the account's anti-phishing code.".to_owned()
        }
        None => format!(
            "You have not set an anti-phishing code; set one (PUT {}/v1/me/anti-phishing-code) and every genuine CoinPort email will show it here.",
            app.config.public_url()
        ),
    };
    let message = message
        .body(format!("{first_line}\n\n{text}"))
        .map_err(|e| e.to_string())?;
    let mut builder = match smtp.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| e.to_string())?,
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?
        }
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    }
    .port(smtp.port)
    .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
        let pw = Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| format!("password_file: {e}"))?,
        );
        builder = builder.credentials(Credentials::new(
            user.clone(),
            pw.lines().next().unwrap_or_default().to_owned(),
        ));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The `X-CoinPort-Anti-Phishing-Code` header. [`AntiPhishingCode`] admits only letters,
/// digits, `-`, `_` and single spaces, so the value cannot break the header.
#[derive(Clone)]
struct AntiPhishingHeader(String);

impl Header for AntiPhishingHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(ANTI_PHISHING_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AntiPhishingHeader(
            AntiPhishingCode::parse(s)?.as_str().to_owned(),
        ))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for a webhook body.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver_webhook(app: &App, p: &Pending) -> Result<(), String> {
    let hook = app
        .config
        .notifications
        .webhook
        .clone()
        .ok_or("webhook not configured")?;
    let secret = Zeroizing::new(
        std::fs::read_to_string(&hook.secret_file).map_err(|e| format!("secret_file: {e}"))?,
    );
    let body = p.body().to_string();
    let signature = webhook_signature(
        secret.lines().next().unwrap_or_default().as_bytes(),
        body.as_bytes(),
    );
    let request = bitreq::post(&hook.url)
        .with_header("Content-Type", "application/json")
        .with_header("X-Custody-Signature", signature)
        .with_header("X-Custody-Delivery", p.id.clone())
        .with_body(body)
        .with_timeout(Duration::from_secs(hook.timeout_secs));
    let response = request.send_async().await.map_err(|e| e.to_string())?;
    if (200..300).contains(&response.status_code) {
        Ok(())
    } else {
        Err(format!("webhook answered HTTP {}", response.status_code))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_addresses;

    #[test]
    fn delivery_errors_keep_no_address() {
        let refusal = "permanent error (550): 5.1.1 <first.holder@example.com>: Recipient address rejected: User unknown in virtual mailbox table";
        let kept = redact_addresses(refusal);
        assert!(!kept.contains("first.holder"), "{kept}");
        assert_eq!(
            kept,
            "permanent error (550): 5.1.1 <address> Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(
            redact_addresses("to a@b.c, \"x@y.z\"; done"),
            "to <address>, <address>; done"
        );
        assert_eq!(redact_addresses("connection refused"), "connection refused");
    }
}
