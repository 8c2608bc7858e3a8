//! The transactional outbox: a notification row is written in the same transaction as the
//! event it reports; [`deliver_pending`] hands rows to the configured channels with
//! retries. Development delivers to a JSON Lines file.

use std::io::Write;

use uuid::Uuid;

use crate::app::App;
use crate::db::{int, opt_text, text, Tx};
use crate::error::ApiError;

/// Queues a notification inside `tx`.
///
/// # Errors
/// Storage failure.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    now: i64,
    principal_id: Option<&str>,
    kind: &str,
    payload: serde_json::Value,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO outbox (id, created_at, principal_id, channel, kind, payload, next_attempt_at) \
         VALUES ($1, $2, $3, 'file', $4, $5, $6)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(now)
    .bind(principal_id)
    .bind(kind)
    .bind(payload.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Delivers due notifications; returns how many were delivered. A failed delivery is
/// retried with exponential backoff (1 min doubling, at most 1 h).
///
/// # Errors
/// Storage failure.
pub async fn deliver_pending(app: &App, limit: i64) -> Result<usize, ApiError> {
    let now = app.now();
    let rows = sqlx::query(
        "SELECT id, created_at, principal_id, kind, payload, attempts FROM outbox \
         WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(app.db.pool())
    .await?;
    let path = app.config.notification_file();
    let mut delivered = 0;
    for r in &rows {
        let id = text(r, "id")?;
        let line = serde_json::json!({
            "id": id,
            "created_at": int(r, "created_at")?,
            "principal_id": opt_text(r, "principal_id")?,
            "kind": text(r, "kind")?,
            "payload": serde_json::from_str::<serde_json::Value>(&text(r, "payload")?).unwrap_or_default(),
        });
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                writeln!(f, "{line}")?;
                f.sync_data()
            });
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
                )
                .bind(now)
                .bind(&id)
                .execute(app.db.pool())
                .await?;
                delivered += 1;
            }
            Err(e) => {
                let attempts = int(r, "attempts")? + 1;
                let backoff = (60_i64 << attempts.min(6)).min(3600);
                sqlx::query(
                    "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4",
                )
                .bind(attempts)
                .bind(now + backoff)
                .bind(e.to_string())
                .bind(&id)
                .execute(app.db.pool())
                .await?;
            }
        }
    }
    metrics::counter!("custody_notifications_delivered_total").increment(delivered as u64);
    Ok(delivered)
}
