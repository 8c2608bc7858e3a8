//! Security events, the rules that turn them into withdrawal holds, the unusual-withdrawal
//! score, and the emergency freeze.
//!
//! Account holds (DESIGN.md, floors in [`crate::config::RiskConfig`]):
//!
//! | event | hold |
//! |---|---|
//! | password change or reset | 24 h |
//! | new device | 24 h |
//! | 2FA reset | 48 h |
//! | email change | 48 h |
//!
//! A hold starts when the coordinator learns of the event (an event reported late by the
//! back office still gets its full hold from the moment it is reported), every event adds
//! its own hold row, and the effective hold is the latest end among them: a later event
//! extends it, nothing shortens it, and there is no API to delete a hold.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::App;
use crate::clock::rfc3339;
use crate::db::{int, opt_int, opt_text, text, Reads, Tx, Writes};
use crate::error::ApiError;

/// Kinds of security events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A withdrawal was requested.
    WithdrawalAttempt,
    /// The password was changed by its owner.
    PasswordChange,
    /// The password was reset without the old one.
    PasswordReset,
    /// Two-factor authentication was reset.
    TwoFactorReset,
    /// Two-factor authentication was enabled.
    TwoFactorEnabled,
    /// The email address was changed.
    EmailChange,
    /// A device not seen before signed in.
    NewDevice,
    /// An IP address not seen before signed in.
    NewIp,
    /// The withdrawal-address whitelist changed.
    WhitelistChange,
    /// An API key was created.
    ApiKeyCreated,
    /// A successful sign-in.
    Login,
    /// A failed sign-in (password).
    LoginFailed,
    /// A wrong, replayed or expired second factor.
    TwoFactorFailed,
    /// Repeated failures locked the account for a while.
    AccountLocked,
    /// A second factor was removed or replaced (security key, phone number).
    TwoFactorRemoved,
    /// New recovery codes were generated.
    RecoveryCodesGenerated,
    /// A recovery code was used.
    RecoveryCodeUsed,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// The account's IP allowlist changed.
    IpAllowlistChange,
    /// The whitelist-only mode was turned off.
    WhitelistModeOff,
    /// A device was confirmed from the emailed link.
    DeviceConfirmed,
    /// A device or session was revoked.
    DeviceRevoked,
    /// The account was frozen from a "this wasn't me" link.
    AccountFrozen,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::WithdrawalAttempt => "withdrawal_attempt",
            EventKind::PasswordChange => "password_change",
            EventKind::PasswordReset => "password_reset",
            EventKind::TwoFactorReset => "two_factor_reset",
            EventKind::TwoFactorEnabled => "two_factor_enabled",
            EventKind::EmailChange => "email_change",
            EventKind::NewDevice => "new_device",
            EventKind::NewIp => "new_ip",
            EventKind::WhitelistChange => "whitelist_change",
            EventKind::ApiKeyCreated => "api_key_created",
            EventKind::Login => "login",
            EventKind::LoginFailed => "login_failed",
            EventKind::TwoFactorFailed => "two_factor_failed",
            EventKind::AccountLocked => "account_locked",
            EventKind::TwoFactorRemoved => "two_factor_removed",
            EventKind::RecoveryCodesGenerated => "recovery_codes_generated",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::ApiKeyRevoked => "api_key_revoked",
            EventKind::IpAllowlistChange => "ip_allowlist_change",
            EventKind::WhitelistModeOff => "whitelist_mode_off",
            EventKind::DeviceConfirmed => "device_confirmed",
            EventKind::DeviceRevoked => "device_revoked",
            EventKind::AccountFrozen => "account_frozen",
        }
    }

    /// Events that count as a sensitive account change for the risk score.
    pub fn is_sensitive_change(self) -> bool {
        matches!(
            self,
            EventKind::PasswordChange
                | EventKind::PasswordReset
                | EventKind::TwoFactorReset
                | EventKind::EmailChange
                | EventKind::TwoFactorRemoved
                | EventKind::WhitelistModeOff
        )
    }

    /// Whether the owner gets an alert for this one event. Single failures do not alert
    /// (a burst does, as `account_locked`).
    pub fn alerts(self) -> bool {
        !matches!(self, EventKind::LoginFailed | EventKind::TwoFactorFailed)
    }

    fn hold(self, app: &App) -> Option<(i64, &'static str)> {
        let r = &app.config.risk;
        Some(match self {
            EventKind::PasswordChange => (r.password_change_hold(), "password changed"),
            EventKind::PasswordReset => (r.password_change_hold(), "password reset"),
            EventKind::NewDevice => (r.new_device_hold(), "new device signed in"),
            EventKind::TwoFactorReset => {
                (r.two_factor_reset_hold(), "two-factor authentication reset")
            }
            EventKind::EmailChange => (r.email_change_hold(), "email address changed"),
            EventKind::TwoFactorRemoved => (
                r.two_factor_reset_hold(),
                "a second factor was removed or replaced",
            ),
            EventKind::WhitelistModeOff => (
                app.config.auth.whitelist_off_hold(),
                "whitelist-only withdrawals turned off",
            ),
            _ => return None,
        })
    }
}

/// Who reported an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// The coordinator itself.
    Coordinator,
    /// The exchange's account system through `POST /v1/events`.
    Ingest,
}

impl EventSource {
    fn as_str(self) -> &'static str {
        match self {
            EventSource::Coordinator => "coordinator",
            EventSource::Ingest => "ingest",
        }
    }
}

/// Records a security event, places the hold its kind calls for, appends the audit entry
/// and queues the user's notification, all in `tx`. Returns the event id.
///
/// # Errors
/// Storage failure (the caller's transaction rolls back with it).
#[allow(clippy::too_many_arguments)]
pub async fn record_event(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    kind: EventKind,
    occurred_at: i64,
    source: EventSource,
    ip: Option<&str>,
    detail: serde_json::Value,
) -> Result<String, ApiError> {
    let alert = kind.alerts();
    record(
        tx,
        app,
        principal_id,
        kind,
        occurred_at,
        source,
        ip,
        detail,
        alert,
    )
    .await
}

/// [`record_event`] for what the coordinator itself sees happen now.
///
/// # Errors
/// As [`record_event`].
pub async fn record_now(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    kind: EventKind,
    ip: Option<&str>,
    detail: serde_json::Value,
) -> Result<String, ApiError> {
    record_event(
        tx,
        app,
        principal_id,
        kind,
        app.now(),
        EventSource::Coordinator,
        ip,
        detail,
    )
    .await
}

/// As [`record_event`], with the alert only when `alert` (a caller that tells the user
/// about the same thing in its own notification passes `false`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record(
    tx: &mut Tx<'_>,
    app: &App,
    principal_id: &str,
    kind: EventKind,
    occurred_at: i64,
    source: EventSource,
    ip: Option<&str>,
    detail: serde_json::Value,
    alert: bool,
) -> Result<String, ApiError> {
    let mut w = Writes::new();
    let id = record_to(
        &mut w,
        app,
        principal_id,
        kind,
        occurred_at,
        source,
        ip,
        detail,
        alert,
    )?;
    w.run(tx).await?;
    Ok(id)
}

/// [`record`] into a batch of writes the caller runs in its transaction.
///
/// # Errors
/// The alert's link could not be sealed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_to(
    w: &mut Writes,
    app: &App,
    principal_id: &str,
    kind: EventKind,
    occurred_at: i64,
    source: EventSource,
    ip: Option<&str>,
    detail: serde_json::Value,
    alert: bool,
) -> Result<String, ApiError> {
    let now = app.now();
    let id = Uuid::new_v4().to_string();
    w.push(
        "INSERT INTO security_events (id, principal_id, kind, occurred_at, recorded_at, source, ip, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.clone())
    .bind(principal_id.to_owned())
    .bind(kind.as_str())
    .bind(occurred_at.min(now))
    .bind(now)
    .bind(source.as_str())
    .bind(ip.map(str::to_owned))
    .bind(detail.to_string());
    let mut audit = serde_json::json!({
        "event": id, "kind": kind.as_str(), "source": source.as_str(), "occurred_at": occurred_at,
    });
    if let Some((secs, why)) = kind.hold(app) {
        let until = now + secs;
        let reason = format!(
            "{why} at {}; withdrawals held until {}",
            rfc3339(now),
            rfc3339(until)
        );
        w.push(
            "INSERT INTO holds (id, principal_id, withdrawal_id, rule, reason, since, until, event_id) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, $7)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(principal_id.to_owned())
        .bind(kind.as_str())
        .bind(reason)
        .bind(now)
        .bind(until)
        .bind(id.clone());
        audit["hold_until"] = serde_json::json!(until);
    }
    crate::audit::append_to(
        w,
        now,
        &format!("event.{}", kind.as_str()),
        principal_id,
        principal_id,
        &audit,
    );
    if alert {
        crate::notify::enqueue_to(
            w,
            app,
            Some(principal_id),
            &format!("security.{}", kind.as_str()),
            serde_json::json!({
                "kind": kind.as_str(), "at": now, "ip": ip, "hold_until": audit.get("hold_until"),
            }),
        )?;
    }
    Ok(id)
}

/// One reason a withdrawal is held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    /// The rule that placed it (`password_change`, `unusual_withdrawal`, …).
    pub rule: String,
    /// A sentence for people.
    pub reason: String,
    /// When it started (unix seconds).
    pub since: i64,
    /// When it ends (unix seconds).
    pub until: i64,
}

/// The holds active on `principal_id` at `now` (of the account, or of `withdrawal_id`),
/// latest first, and the latest end of any hold that has started on `principal_id`
/// (of the account, or of `withdrawal_id`), expired ones included: what a withdrawal's view
/// and its gates read, in one statement.
///
/// # Errors
/// Storage failure.
pub(crate) async fn holds_for(
    tx: &mut Tx<'_>,
    principal_id: &str,
    withdrawal_id: &str,
    now: i64,
) -> Result<(Vec<Hold>, Option<i64>), ApiError> {
    let mut reads = Reads::new();
    let i = holds_read(&mut reads, principal_id, withdrawal_id, now);
    holds_from(&reads.run(tx).await?.take(i))
}

/// [`holds_for`]'s statement, added to a batch of reads.
pub(crate) fn holds_read(
    reads: &mut Reads,
    principal_id: &str,
    withdrawal_id: &str,
    now: i64,
) -> usize {
    let i = reads.push(
        "SELECT m.latest, h.rule, h.reason, h.since, h.until, h.withdrawal_id \
         FROM (SELECT MAX(until) AS latest FROM holds WHERE principal_id = $1 \
         AND (withdrawal_id IS NULL OR withdrawal_id = $2) AND since <= $3) m \
         LEFT JOIN holds h ON h.principal_id = $1 AND h.until > $3 \
         AND (h.withdrawal_id IS NULL OR h.withdrawal_id = $2) \
         ORDER BY h.until DESC",
    );
    reads
        .bind(principal_id.to_owned())
        .bind(withdrawal_id.to_owned())
        .bind(now);
    i
}

/// [`holds_for`]'s answer from its rows.
pub(crate) fn holds_from(
    rows: &[crate::db::BatchRow],
) -> Result<(Vec<Hold>, Option<i64>), ApiError> {
    let mut latest = None;
    let mut out = Vec::new();
    for r in rows {
        latest = opt_int(r, "latest")?;
        let (Some(rule), Some(reason), Some(since), Some(until)) = (
            opt_text(r, "rule")?,
            opt_text(r, "reason")?,
            opt_int(r, "since")?,
            opt_int(r, "until")?,
        ) else {
            continue;
        };
        out.push(Hold {
            rule,
            reason,
            since,
            until,
        });
    }
    Ok((out, latest))
}

/// Every hold ever placed on `principal_id` (for the API and `holds.json`).
///
/// # Errors
/// Storage failure.
pub async fn all_holds(tx: &mut Tx<'_>, principal_id: &str) -> Result<Vec<HoldRecord>, ApiError> {
    let rows = sqlx::query(
        "SELECT rule, reason, since, until, withdrawal_id FROM holds WHERE principal_id = $1 ORDER BY since",
    )
    .bind(principal_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HoldRecord {
                withdrawal_id: opt_text(r, "withdrawal_id")?,
                hold: Hold {
                    rule: text(r, "rule")?,
                    reason: text(r, "reason")?,
                    since: int(r, "since")?,
                    until: int(r, "until")?,
                },
            })
        })
        .collect()
}

/// A hold and what it applies to.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HoldRecord {
    /// The withdrawal it applies to; `None` for an account hold.
    pub withdrawal_id: Option<String>,
    /// The hold.
    #[serde(flatten)]
    pub hold: Hold,
}

/// The unusual-withdrawal score and the reasons behind it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Assessment {
    /// Sum of the weights of the rules that fired.
    pub score: u32,
    /// One sentence per rule that fired.
    pub reasons: Vec<String>,
}

/// The statements [`assess_withdrawal`] reads, added to a batch of reads: the account's
/// facts (paid to this address before, IP first seen, recent sensitive change) and its
/// withdrawals of this asset in the last 31 days. Returns the indexes of their rows.
pub(crate) fn assessment_reads(
    reads: &mut Reads,
    principal_id: &str,
    attempt: &Attempt<'_>,
    now: i64,
) -> (usize, usize) {
    let day = 86_400;
    // The two `sensitive_*` subqueries pick the same row (same order, ties broken by id).
    let facts = reads.push(
        "SELECT \
         (SELECT COUNT(*) FROM withdrawals WHERE principal_id = $1 AND address = $2 \
          AND state IN ('broadcast', 'confirmed')) AS paid_before, \
         (SELECT first_seen FROM known_ips WHERE principal_id = $1 AND ip = $3) AS ip_first_seen, \
         (SELECT MIN(first_seen) FROM known_ips WHERE principal_id = $1) AS account_first_seen, \
         (SELECT kind FROM security_events WHERE principal_id = $1 AND recorded_at > $4 \
          AND kind IN ('password_change', 'password_reset', 'two_factor_reset', 'email_change') \
          ORDER BY recorded_at DESC, id DESC LIMIT 1) AS sensitive_kind, \
         (SELECT occurred_at FROM security_events WHERE principal_id = $1 AND recorded_at > $4 \
          AND kind IN ('password_change', 'password_reset', 'two_factor_reset', 'email_change') \
          ORDER BY recorded_at DESC, id DESC LIMIT 1) AS sensitive_at",
    );
    reads
        .bind(principal_id.to_owned())
        .bind(attempt.address.to_owned())
        .bind(attempt.ip.to_owned())
        .bind(now - 7 * day);
    // The account's totals of this asset over the last day and the 30 before it. Bitcoin
    // amounts (satoshis, BIGINT) are summed by the database in one row; Ethereum assets'
    // are decimal text beyond BIGINT, so their rows are listed and summed in Rust
    // ([`sums_in_database`], ADR 0024).
    let recent = if sums_in_database(attempt.asset) {
        reads.push(
            "SELECT COUNT(CASE WHEN created_at <= $5 THEN 1 END) AS history_count, \
             CAST(SUM(CASE WHEN created_at <= $5 THEN amount END) AS BIGINT) AS history_total, \
             CAST(SUM(CASE WHEN created_at > $5 THEN amount END) AS BIGINT) AS last_day_total \
             FROM withdrawals WHERE principal_id = $1 AND asset = $2 AND created_at > $3 \
             AND created_at <= $4 AND state NOT IN ('rejected', 'cancelled')",
        )
    } else {
        reads.push(
            "SELECT amount, amount_text, created_at FROM withdrawals WHERE principal_id = $1 \
             AND asset = $2 AND created_at > $3 AND created_at <= $4 \
             AND state NOT IN ('rejected', 'cancelled')",
        )
    };
    reads
        .bind(principal_id.to_owned())
        .bind(attempt.asset.to_owned())
        .bind(now - 31 * day)
        .bind(now);
    if sums_in_database(attempt.asset) {
        reads.bind(now - day);
    }
    (facts, recent)
}

/// Whether the database sums `asset`'s amounts (an integer column of satoshis) rather than
/// listing its rows (Ethereum assets' decimal text, summed exactly in Rust).
pub(crate) fn sums_in_database(asset: &str) -> bool {
    asset == crate::withdrawals::ASSET_BTC
}

/// A `BIGINT` sum of satoshis that is NULL over no rows.
pub(crate) fn sum_column(row: &impl crate::db::Columns, col: &str) -> Result<u128, ApiError> {
    let v = crate::db::opt_int(row, col)?.unwrap_or(0);
    u128::try_from(v).map_err(|_| ApiError::internal(format!("negative {col} in the database")))
}

/// Scores a withdrawal request against the account's own history (configuration:
/// [`crate::config::RiskConfig`]), from the rows of [`assessment_reads`].
///
/// # Errors
/// A column that does not decode.
pub(crate) fn assess_withdrawal(
    app: &App,
    attempt: &Attempt<'_>,
    now: i64,
    facts: &[crate::db::BatchRow],
    rows: &[crate::db::BatchRow],
) -> Result<Assessment, ApiError> {
    let Attempt {
        address,
        asset,
        amount,
        ip,
    } = *attempt;
    let r = &app.config.risk;
    let mut a = Assessment::default();
    let mut fire = |weight: u32, reason: String| {
        if weight > 0 {
            a.score = a.score.saturating_add(weight);
            a.reasons.push(reason);
        }
    };
    let unit = if asset == "BTC" { "sat" } else { "base units" };
    let day = 86_400;
    let facts = facts
        .first()
        .ok_or_else(|| ApiError::internal("the risk facts read returned no row"))?;
    let paid_before = facts;
    let new_destination = int(paid_before, "paid_before")? == 0;
    let large = r.large_amount(asset).is_some_and(|l| amount >= l);
    if new_destination && large {
        fire(
            r.new_destination_weight,
            format!(
                "first withdrawal to {address} and a large amount ({amount} {unit} of {asset})"
            ),
        );
    } else if large {
        fire(
            r.large_amount_weight,
            format!("large amount ({amount} {unit} of {asset})"),
        );
    }
    let (mut last_day_total, mut history_total, mut history_count) = (amount, 0u128, 0u64);
    if sums_in_database(asset) {
        let sums = rows
            .first()
            .ok_or_else(|| ApiError::internal("the account's totals read returned no row"))?;
        last_day_total = last_day_total.saturating_add(sum_column(sums, "last_day_total")?);
        history_total = sum_column(sums, "history_total")?;
        history_count = u64::try_from(int(sums, "history_count")?)
            .map_err(|_| ApiError::internal("negative history_count in the database"))?;
    } else {
        for row in rows {
            let value = stored_amount(row)?;
            if int(row, "created_at")? > now - day {
                last_day_total = last_day_total.saturating_add(value);
            } else {
                history_total = history_total.saturating_add(value);
                history_count += 1;
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let daily_average = history_total as f64 / 30.0;
    #[allow(clippy::cast_precision_loss)]
    let spike = if history_count == 0 {
        large
    } else {
        last_day_total as f64 > daily_average * r.velocity_multiplier
    };
    if spike {
        fire(
            r.velocity_weight,
            format!(
                "24-hour total {last_day_total} {unit} of {asset} is above {}× the account's daily average of the last 30 days ({daily_average:.0} {unit})",
                r.velocity_multiplier
            ),
        );
    }
    let new_ip = match crate::db::opt_int(facts, "ip_first_seen")? {
        None => true,
        Some(first_seen) => first_seen > now - day,
    };
    let account_ip_age = crate::db::opt_int(facts, "account_first_seen")?.map(|f| now - f);
    // The address the account was opened from is not unusual on its first day.
    if new_ip && account_ip_age.is_some_and(|age| age > day) {
        fire(
            r.new_ip_weight,
            format!("request from an IP address first seen in the last 24 hours ({ip})"),
        );
    }
    if let (Some(kind), Some(at)) = (
        opt_text(facts, "sensitive_kind")?,
        crate::db::opt_int(facts, "sensitive_at")?,
    ) {
        fire(
            r.recent_sensitive_change_weight,
            format!(
                "withdrawal within 7 days of a sensitive change ({kind} at {})",
                rfc3339(at)
            ),
        );
    }
    Ok(a)
}

/// What the risk rules look at in a withdrawal attempt.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The normalised destination.
    pub address: &'a str,
    /// The policy asset id (`BTC`, `ETH`, `ERC20:0x…`).
    pub asset: &'a str,
    /// The amount in base units.
    pub amount: u128,
    /// The client's IP address.
    pub ip: &'a str,
}

/// A withdrawal row's amount in base units: `amount_text` when set (Ethereum assets), else
/// the satoshi `amount`.
///
/// # Errors
/// A column that does not decode.
pub(crate) fn stored_amount(row: &impl crate::db::Columns) -> Result<u128, sqlx::Error> {
    match crate::db::opt_text(row, "amount_text")? {
        // A stored amount that does not parse is an error, never zero: velocity limits
        // and risk totals must not count a withdrawal as nothing.
        Some(t) => t.parse().map_err(|_| {
            sqlx::Error::Decode(format!("stored amount_text {t:?} is not a decimal amount").into())
        }),
        None => {
            let sat = int(row, "amount")?;
            u64::try_from(sat)
                .map(u128::from)
                .map_err(|_| sqlx::Error::Decode(format!("stored amount {sat} is negative").into()))
        }
    }
}

/// The scope of a freeze.
pub fn freeze_scope(principal_id: Option<&str>) -> String {
    principal_id.map_or_else(|| "global".to_owned(), |p| format!("account:{p}"))
}

/// Freezes or unfreezes (`frozen = false`) globally or one account, with an audit entry.
///
/// # Errors
/// Storage failure.
pub async fn set_freeze(
    app: &App,
    actor: &str,
    principal_id: Option<&str>,
    frozen: bool,
    reason: &str,
) -> Result<(), ApiError> {
    let now = app.now();
    let scope = freeze_scope(principal_id);
    let mut tx = app.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE freezes SET frozen = $1, reason = $2, changed_at = $3, changed_by = $4 WHERE scope = $5",
    )
    .bind(i64::from(frozen))
    .bind(reason)
    .bind(now)
    .bind(actor)
    .bind(&scope)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO freezes (scope, frozen, reason, changed_at, changed_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&scope)
        .bind(i64::from(frozen))
        .bind(reason)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    }
    crate::audit::append(
        &mut tx,
        now,
        if frozen { "freeze.on" } else { "freeze.off" },
        actor,
        &scope,
        &serde_json::json!({ "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    metrics::gauge!("custody_frozen", "scope" => if principal_id.is_some() { "account" } else { "global" })
        .set(if frozen { 1.0 } else { 0.0 });
    Ok(())
}

/// Fails with 423 if signing or broadcasting is frozen globally or for `principal_id`.
///
/// # Errors
/// [`ApiError::frozen`] naming the scope and reason.
pub async fn ensure_not_frozen(tx: &mut Tx<'_>, principal_id: &str) -> Result<(), ApiError> {
    let rows = sqlx::query(
        "SELECT scope, reason FROM freezes WHERE frozen = 1 AND (scope = 'global' OR scope = $1) \
         ORDER BY scope LIMIT 1",
    )
    .bind(freeze_scope(Some(principal_id)))
    .fetch_all(&mut **tx)
    .await?;
    match rows.first() {
        Some(r) => Err(frozen(&text(r, "scope")?, &text(r, "reason")?)),
        None => Ok(()),
    }
}

/// The refusal for a freeze of `scope`.
fn frozen(scope: &str, reason: &str) -> ApiError {
    let what = if scope == "global" {
        "all withdrawals are"
    } else {
        "this account is"
    };
    ApiError::frozen(format!(
        "{what} frozen ({reason}); nothing is signed or broadcast until an admin unfreezes"
    ))
}

/// What a new withdrawal checks first, in one read: no freeze (global or of the account),
/// then a session's device confirmed from the link emailed when it first signed in.
///
/// Its statement, added to a batch of reads; [`may_withdraw_from`] gives the verdict.
pub(crate) fn may_withdraw_read(
    reads: &mut Reads,
    principal: &crate::accounts::Principal,
) -> usize {
    // The first freeze by scope ('global' sorts before 'principal:…'), so the scope and
    // the reason come from the same row.
    let i = reads.push(
        "SELECT (SELECT scope FROM freezes WHERE frozen = 1 AND (scope = 'global' OR scope = $1) \
         ORDER BY scope LIMIT 1) AS scope, \
         (SELECT reason FROM freezes WHERE frozen = 1 AND (scope = 'global' OR scope = $1) \
         ORDER BY scope LIMIT 1) AS reason, \
         (SELECT confirmed_at FROM devices WHERE principal_id = $2 AND device_id = $3 \
         AND revoked_at IS NULL) AS confirmed_at",
    );
    reads
        .bind(freeze_scope(Some(&principal.id)))
        .bind(principal.id.clone())
        .bind(session_device(principal));
    i
}

fn session_device(principal: &crate::accounts::Principal) -> Option<String> {
    match &principal.via {
        crate::accounts::Via::Session { device_id, .. } => Some(device_id.clone()),
        _ => None,
    }
}

/// The verdict from the rows of [`may_withdraw_read`].
///
/// # Errors
/// Frozen (423), unconfirmed device (403), a column that does not decode.
pub(crate) fn may_withdraw_from(
    rows: &[crate::db::BatchRow],
    principal: &crate::accounts::Principal,
) -> Result<(), ApiError> {
    let device = session_device(principal);
    let r = rows
        .first()
        .ok_or_else(|| ApiError::internal("the freeze and device read returned no row"))?;
    if let Some(scope) = opt_text(r, "scope")? {
        return Err(frozen(&scope, &opt_text(r, "reason")?.unwrap_or_default()));
    }
    if device.is_some() && opt_int(r, "confirmed_at")?.is_none() {
        return Err(crate::devices::unconfirmed());
    }
    Ok(())
}
