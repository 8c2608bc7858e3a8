//! What a wallet's withdrawals of one asset used in each velocity window of a policy.
//!
//! Usage is kept as running totals per asset and hour of creation (`velocity_buckets`,
//! ADR 0028): a withdrawal adds its amount to the bucket of the hour it was created in
//! when it enters a counted state and takes it out when it leaves one. A window
//! `(now - w, now]` is then the buckets that lie wholly inside it plus the withdrawals of
//! the one hour its start cuts through, read row by row, so a request reads at most a
//! window's hours of buckets and an hour's rows however many withdrawals the window holds.
//!
//! Amounts are kept as five base-10⁹ limbs (`t0` least significant … `t4`), each summed
//! as a `BIGINT`: a `u128` amount (Ethereum's wei, beyond `BIGINT`) is summed exactly by
//! either database without decimal arithmetic, and a limb's sum stays below 2⁶³ for any
//! number of withdrawals below 9·10⁹. Buckets carry a stripe (PostgreSQL's backend
//! process; 0 on SQLite, whose one writer never contends; −1 for migration 0019's
//! corrections) so that concurrent transactions add to different rows instead of waiting
//! for each other's commit. A window sums every stripe of its hours.

use custody_policy::{VelocityLimit, VerifiedPolicy, WindowUsage};

use sqlx::Row;

use crate::db::{opt_int, DbError, Engine, ReadRows, Reads, Tx, Writes};
use crate::error::ApiError;

/// The states whose withdrawals count against velocity limits.
pub(crate) const COUNTED_STATES: [&str; 6] = [
    "approved",
    "signing",
    "signed",
    "broadcasting",
    "broadcast",
    "confirmed",
];

/// [`COUNTED_STATES`] as an SQL list.
pub(crate) const COUNTED: &str =
    "('approved', 'signing', 'signed', 'broadcasting', 'broadcast', 'confirmed')";

/// The condition that leaves internal transfers (voids and accelerations, which pay no one
/// outside the wallet) out of every velocity total: the policy neither checks nor counts
/// them (`custody_policy::Withdrawal::is_internal`). The velocity index is partial on it.
pub(crate) const NOT_INTERNAL: &str = "voids IS NULL AND accelerates IS NULL";

/// The width of a running-total bucket, in seconds.
pub(crate) const BUCKET_SECS: i64 = 3600;

/// Limbs per amount: 5 × 9 decimal digits hold any `u128` (39 digits).
const LIMBS: usize = 5;
/// A limb's base.
const LIMB_BASE: u128 = 1_000_000_000;

/// Whether a withdrawal in `state` counts against velocity limits.
pub(crate) fn counted(state: &str) -> bool {
    COUNTED_STATES.contains(&state)
}

/// The start of the bucket holding `created_at`.
fn bucket_of(created_at: i64) -> i64 {
    created_at - created_at.rem_euclid(BUCKET_SECS)
}

/// The first bucket wholly after `since` (a window counts what was created after its
/// start, so the bucket `since` falls in is cut even when `since` is its first second).
fn first_whole_bucket(since: i64) -> i64 {
    bucket_of(since).saturating_add(BUCKET_SECS)
}

/// `amount` in base-10⁹ limbs, least significant first.
fn limbs(amount: u128) -> [i64; LIMBS] {
    let mut out = [0i64; LIMBS];
    let mut rest = amount;
    for limb in &mut out {
        // Below 10⁹ (and the last below 341): always fits.
        *limb = i64::try_from(rest % LIMB_BASE).unwrap_or(i64::MAX);
        rest /= LIMB_BASE;
    }
    out
}

/// The amount whose limbs summed to `sums`; saturates at `u128::MAX` (a window that
/// large is over any limit).
fn from_limbs(sums: &[u128; LIMBS]) -> u128 {
    let mut total = 0u128;
    let mut scale = 1u128;
    for s in sums {
        total = total.saturating_add(s.saturating_mul(scale));
        scale = scale.saturating_mul(LIMB_BASE);
    }
    total
}

/// SQL for limb `k` of the decimal text `decimal` (an expression), as a `BIGINT`: the
/// text is left-padded with zeros and cut nine digits at a time from the right, with
/// functions both databases have.
fn limb_sql(decimal: &str, k: usize) -> String {
    const ZEROS: &str = "000000000000000000000000000000000000000000000";
    let padded = format!("('{ZEROS}' || {decimal})");
    format!(
        "CAST(substr({padded}, length({padded}) - {}, 9) AS BIGINT)",
        9 * k + 8
    )
}

/// The decimal text of a stored withdrawal's amount (satoshis or base units).
const STORED_DECIMAL: &str = "COALESCE(amount_text, CAST(amount AS TEXT))";

/// `SELECT asset, bucket, n, t0…t4` of every hour of counted withdrawals, summed from
/// the rows (what the totals should be).
fn sums_from_rows_sql() -> String {
    let limbs: Vec<String> = (0..LIMBS)
        .map(|k| {
            format!(
                "CAST(SUM({}) AS BIGINT) AS t{k}",
                limb_sql(STORED_DECIMAL, k)
            )
        })
        .collect();
    format!(
        "SELECT asset, created_at - created_at % {BUCKET_SECS} AS bucket, COUNT(*) AS n, {} \
         FROM withdrawals WHERE state IN {COUNTED} AND {NOT_INTERNAL} \
         GROUP BY asset, created_at - created_at % {BUCKET_SECS}",
        limbs.join(", ")
    )
}

const COLUMNS: &str = "asset, bucket, stripe, n, t0, t1, t2, t3, t4";

/// The columns a total adds up: the count and the limbs.
fn summed() -> impl Iterator<Item = String> {
    std::iter::once("n".to_owned()).chain((0..LIMBS).map(|k| format!("t{k}")))
}

/// `ON CONFLICT` clause adding the new row's count and limbs to the stored ones.
fn on_conflict_add() -> String {
    let adds: Vec<String> = summed()
        .map(|c| format!("{c} = velocity_buckets.{c} + excluded.{c}"))
        .collect();
    format!(
        "ON CONFLICT (asset, bucket, stripe) DO UPDATE SET {}",
        adds.join(", ")
    )
}

fn add_sql(engine: Engine) -> String {
    let stripe = match engine {
        Engine::Postgres => "pg_backend_pid()",
        Engine::Sqlite => "0",
    };
    format!(
        "INSERT INTO velocity_buckets ({COLUMNS}) VALUES ($1, $2, {stripe}, $3, $4, $5, $6, $7, $8) {}",
        on_conflict_add()
    )
}

/// How long [`compact`] waits for a row lock before it gives up until its next run: it
/// must never hold up an approval.
const COMPACT_LOCK_TIMEOUT: &str = "200ms";

/// On PostgreSQL, folds the per-backend stripes of every hour before the previous one
/// into one row per asset and hour (stripe 0), so that a window reads one row per hour
/// however many connections approved in it; the totals do not change. The current and
/// previous hours keep their stripes, where concurrent approvals still add. An approval
/// of an older withdrawal may still add to its stripe of an old hour; the next run folds
/// that in too. Gives up quietly (returns 0) when a row it needs is locked for longer
/// than 200 ms. SQLite writes one stripe (and keeps migration 0019's corrections, −1,
/// beside it: reads sum them). Returns how many rows it removed.
///
/// # Errors
/// Storage failure.
pub async fn compact(db: &crate::db::Db, now: i64) -> Result<u64, DbError> {
    if db.engine() != Engine::Postgres {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL lock_timeout = '{COMPACT_LOCK_TIMEOUT}'"
    ))
    .execute(&mut *tx)
    .await?;
    let removed = match compact_in(&mut tx, now).await {
        Ok(n) => n,
        Err(DbError::Sqlx(sqlx::Error::Database(e))) if e.code().as_deref() == Some("55P03") => {
            tracing::debug!("velocity totals not compacted: a row was locked; next run");
            tx.rollback().await?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    metrics::counter!("custody_velocity_rows_compacted_total").increment(removed);
    Ok(removed)
}

/// [`compact`]'s statement, in `tx` (PostgreSQL only: a data-modifying `WITH`).
async fn compact_in(tx: &mut Tx<'_>, now: i64) -> Result<u64, DbError> {
    let sums: Vec<String> = summed()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .collect();
    let sql = format!(
        "WITH moved AS (DELETE FROM velocity_buckets WHERE stripe <> 0 AND bucket < $1 \
         RETURNING {COLUMNS}), \
         folded AS (INSERT INTO velocity_buckets ({COLUMNS}) \
         SELECT asset, bucket, 0, {} FROM moved GROUP BY asset, bucket {}) \
         SELECT COUNT(*) AS removed FROM moved",
        sums.join(", "),
        on_conflict_add()
    );
    let row = sqlx::query(&sql)
        .bind(bucket_of(now) - BUCKET_SECS)
        .fetch_one(&mut **tx)
        .await?;
    let removed: i64 = row.try_get("removed")?;
    Ok(u64::try_from(removed).unwrap_or(0))
}

/// The change a move from `from` to `to` makes to the running totals: +1 entering the
/// counted states, -1 leaving them, none otherwise.
pub(crate) fn moved(from: &str, to: &str) -> Option<i64> {
    match (counted(from), counted(to)) {
        (false, true) => Some(1),
        (true, false) => Some(-1),
        _ => None,
    }
}

/// Adds `sign` times a withdrawal of `amount` created at `created_at` to `asset`'s
/// running totals, as a statement of `writes`.
pub(crate) fn count_to(
    writes: &mut Writes,
    engine: Engine,
    asset: &str,
    created_at: i64,
    amount: u128,
    sign: i64,
) {
    writes
        .push(&add_sql(engine))
        .bind(asset.to_owned())
        .bind(bucket_of(created_at))
        .bind(sign);
    for limb in limbs(amount) {
        writes.bind(limb * sign);
    }
}

/// [`count_to`] in a statement of its own.
///
/// # Errors
/// [`DbError::Sqlx`].
pub(crate) async fn count(
    tx: &mut Tx<'_>,
    asset: &str,
    created_at: i64,
    amount: u128,
    sign: i64,
) -> Result<(), DbError> {
    let engine = if tx.backend_name() == "PostgreSQL" {
        Engine::Postgres
    } else {
        Engine::Sqlite
    };
    let mut writes = Writes::new();
    count_to(&mut writes, engine, asset, created_at, amount, sign);
    writes.run(tx).await?;
    Ok(())
}

/// Recomputes every running total from the withdrawals (what migration 0013 did when it
/// created them); for data written around the coordinator, such as imported history.
///
/// # Errors
/// [`DbError::Sqlx`].
pub async fn rebuild(tx: &mut Tx<'_>) -> Result<(), DbError> {
    sqlx::query("DELETE FROM velocity_buckets")
        .execute(&mut **tx)
        .await?;
    let sums = sums_from_rows_sql();
    sqlx::query(&format!(
        "INSERT INTO velocity_buckets ({COLUMNS}) \
         SELECT asset, bucket, 0, n, t0, t1, t2, t3, t4 FROM ({sums}) s"
    ))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// [`check`], then [`rebuild`] with an audit entry (`velocity.rebuilt`, by `actor`) that
/// lists the hours that differed, in one transaction. Returns those hours.
///
/// # Errors
/// [`DbError::Sqlx`]; nothing is changed.
pub async fn rebuild_audited(
    db: &crate::db::Db,
    actor: &str,
    now: i64,
) -> Result<Vec<Mismatch>, DbError> {
    let mut tx = db.begin().await?;
    let drift = check(&mut tx).await?;
    rebuild(&mut tx).await?;
    let hours: Vec<serde_json::Value> = drift
        .iter()
        .map(|m| {
            serde_json::json!({
                "asset": m.asset, "bucket": m.bucket,
                "kept": { "count": m.kept.0, "total": m.kept.1.to_string() },
                "actual": { "count": m.actual.0, "total": m.actual.1.to_string() },
            })
        })
        .collect();
    crate::audit::append(
        &mut tx,
        now,
        "velocity.rebuilt",
        actor,
        "velocity_buckets",
        &serde_json::json!({ "differed": hours }),
    )
    .await?;
    tx.commit().await?;
    Ok(drift)
}

/// An hour of one asset whose running total differs from its withdrawals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The asset.
    pub asset: String,
    /// The bucket's first second.
    pub bucket: i64,
    /// Count and total kept.
    pub kept: (i64, u128),
    /// Count and total of the withdrawals.
    pub actual: (i64, u128),
}

/// Count and total of a row of `n, t0…t4` (a limb sum below zero is an error).
fn count_and_total(r: &impl crate::db::Columns) -> Result<(i64, u128), DbError> {
    let mut sums = [0u128; LIMBS];
    for (k, s) in sums.iter_mut().enumerate() {
        let v = opt_int(r, &format!("t{k}"))?.unwrap_or(0);
        *s = u128::try_from(v).map_err(|_| {
            DbError::Sqlx(sqlx::Error::Decode(
                format!("velocity total limb t{k} is negative ({v})").into(),
            ))
        })?;
    }
    Ok((opt_int(r, "n")?.unwrap_or(0), from_limbs(&sums)))
}

/// Compares every running total with the withdrawals it stands for; empty when they
/// agree.
///
/// # Errors
/// [`DbError::Sqlx`].
pub async fn check(tx: &mut Tx<'_>) -> Result<Vec<Mismatch>, DbError> {
    check_since(tx, i64::MIN).await
}

/// [`check`] for the hours from the one holding `since` on, in one statement (one
/// snapshot: a withdrawal approved meanwhile is on both sides or on neither).
///
/// # Errors
/// [`DbError::Sqlx`].
pub async fn check_since(tx: &mut Tx<'_>, since: i64) -> Result<Vec<Mismatch>, DbError> {
    use std::collections::BTreeMap;
    // (asset, hour) → (count, total) kept and (count, total) of the rows.
    type Sums = ((i64, u128), (i64, u128));
    let mut hours: BTreeMap<(String, i64), Sums> = BTreeMap::new();
    let kept_limbs: Vec<String> = (0..LIMBS)
        .map(|k| format!("CAST(SUM(t{k}) AS BIGINT) AS t{k}"))
        .collect();
    let row_limbs: Vec<String> = (0..LIMBS)
        .map(|k| {
            format!(
                "CAST(SUM({}) AS BIGINT) AS t{k}",
                limb_sql(STORED_DECIMAL, k)
            )
        })
        .collect();
    let rows = sqlx::query(&format!(
        "SELECT 'kept' AS side, asset, bucket, CAST(SUM(n) AS BIGINT) AS n, {} \
         FROM velocity_buckets WHERE bucket >= $1 GROUP BY asset, bucket \
         UNION ALL \
         SELECT 'rows' AS side, asset, created_at - created_at % {BUCKET_SECS} AS bucket, \
         COUNT(*) AS n, {} FROM withdrawals WHERE state IN {COUNTED} AND {NOT_INTERNAL} \
         AND created_at >= $1 \
         GROUP BY asset, created_at - created_at % {BUCKET_SECS}",
        kept_limbs.join(", "),
        row_limbs.join(", ")
    ))
    .bind(if since == i64::MIN {
        i64::MIN
    } else {
        bucket_of(since)
    })
    .fetch_all(&mut **tx)
    .await?;
    for r in &rows {
        let key = (crate::db::text(r, "asset")?, crate::db::int(r, "bucket")?);
        let sums = count_and_total(r)?;
        let entry = hours.entry(key).or_default();
        if crate::db::text(r, "side")? == "kept" {
            entry.0 = sums;
        } else {
            entry.1 = sums;
        }
    }
    Ok(hours
        .into_iter()
        .filter(|(_, (kept, actual))| kept != actual)
        .map(|((asset, bucket), (kept, actual))| Mismatch {
            asset,
            bucket,
            kept,
            actual,
        })
        .collect())
}

/// How often the worker compares the recent running totals with their withdrawals.
pub const SELF_CHECK_EVERY_SECS: i64 = 3600;

/// How far back the worker's comparison reaches: longer than any velocity window a
/// policy is expected to use.
pub const SELF_CHECK_SPAN_SECS: i64 = 31 * 86_400;

/// The worker's hourly comparison of the last [`SELF_CHECK_SPAN_SECS`] of running totals
/// with their withdrawals, on a read connection. Totals that differ mean velocity limits
/// read wrong sums: each finding is logged as an error, counted in the
/// `custody_velocity_drift_hours` gauge, audited (`velocity.drift_found`) and sent to the
/// operators' channels (`velocity.drift`) until `velocity rebuild` puts them right.
/// Returns the hours that differ.
///
/// # Errors
/// Storage failure.
pub async fn self_check(app: &crate::App) -> Result<Vec<Mismatch>, ApiError> {
    let now = app.now();
    let mut read = app.db.read_pool().begin().await.map_err(DbError::from)?;
    let drift = check_since(&mut read, now.saturating_sub(SELF_CHECK_SPAN_SECS)).await?;
    read.rollback().await.map_err(DbError::from)?;
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("custody_velocity_drift_hours").set(drift.len() as f64);
    if drift.is_empty() {
        return Ok(drift);
    }
    let hours: Vec<serde_json::Value> = drift
        .iter()
        .map(|m| {
            tracing::error!(
                asset = %m.asset, hour = m.bucket, kept_count = m.kept.0,
                kept_total = %m.kept.1, count = m.actual.0, total = %m.actual.1,
                "velocity running total differs from its withdrawals; run `custody-coordinator velocity rebuild`"
            );
            serde_json::json!({
                "asset": m.asset, "bucket": m.bucket,
                "kept": { "count": m.kept.0, "total": m.kept.1.to_string() },
                "actual": { "count": m.actual.0, "total": m.actual.1.to_string() },
            })
        })
        .collect();
    let mut tx = app.db.begin().await?;
    crate::audit::append(
        &mut tx,
        now,
        "velocity.drift_found",
        "system",
        "velocity_buckets",
        &serde_json::json!({ "differ": hours }),
    )
    .await?;
    crate::notify::enqueue(
        &mut tx,
        app,
        None,
        "velocity.drift",
        serde_json::json!({ "hours": hours.len(), "differ": hours }),
    )
    .await?;
    tx.commit().await?;
    Ok(drift)
}

/// The withdrawal a usage read leaves out (the one checked again before it is signed),
/// as loaded in the same transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Except<'a> {
    pub(crate) id: &'a str,
    pub(crate) state: &'a str,
    pub(crate) created_at: i64,
    pub(crate) amount: u128,
}

/// What the wallet's approved-or-later withdrawals of one asset used in each velocity
/// window of a policy, without the one being checked.
#[derive(Debug)]
pub(crate) struct Usage {
    windows: Vec<(u64, WindowUsage)>,
}

impl Usage {
    /// No window read (the policy has no limit for the asset).
    pub(crate) fn none() -> Usage {
        Usage {
            windows: Vec::new(),
        }
    }

    /// The usage of the window of `limit` (all of it when the read did not cover it,
    /// which [`usage_read`] makes impossible for the policy it was given: refused, not
    /// free).
    pub(crate) fn of(&self, limit: &VelocityLimit) -> WindowUsage {
        self.windows
            .iter()
            .find(|(w, _)| *w == limit.window_secs)
            .map_or(
                WindowUsage {
                    total: u128::MAX,
                    count: u64::MAX,
                },
                |(_, u)| *u,
            )
    }
}

/// A velocity read added to a batch: the positions of its statements and what
/// [`usage_from`] needs.
#[derive(Debug)]
pub(crate) struct UsageRead {
    /// The whole hours of every window.
    buckets: usize,
    /// Per window, the rows of the hour its start cuts through.
    edges: Vec<usize>,
    windows: Vec<u64>,
    now: i64,
    summed: bool,
    except: Option<(i64, u128)>,
}

/// The read of a window's cut hour, row by row: `$1` the asset, `$2` the window's start,
/// `$3` the first whole bucket (and `$4` a withdrawal left out, in `except_sql`).
fn cut_hour_sql(what: &str, except_sql: &str) -> String {
    format!(
        "SELECT {what} FROM withdrawals WHERE asset = $1 AND state IN {COUNTED} \
         AND {NOT_INTERNAL} AND created_at > $2 AND created_at < $3{except_sql}"
    )
}

/// Adds the read of what `asset`'s limits in `velocity` have used at `now` to a batch;
/// `None` when no limit applies to the asset (nothing to read). `except` leaves out one
/// withdrawal (the one checked again before it is signed).
pub(crate) fn usage_read(
    reads: &mut Reads,
    velocity: &[VelocityLimit],
    asset: &str,
    now: i64,
    except: Option<Except<'_>>,
) -> Option<UsageRead> {
    let mut windows: Vec<u64> = velocity
        .iter()
        .filter(|v| v.asset == asset)
        .map(|v| v.window_secs)
        .collect();
    windows.sort_unstable();
    windows.dedup();
    let longest = *windows.last()?;
    let since = |window: u64| now.saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
    // Whole hours: $1 asset, $2 the longest window's first whole bucket, $3 now; window
    // i's first whole bucket is $(4 + i).
    let mut columns = Vec::with_capacity(windows.len());
    for i in 0..windows.len() {
        let p = 4 + i;
        let mut c = vec![format!(
            "CAST(SUM(CASE WHEN bucket >= ${p} THEN n END) AS BIGINT) AS n{i}"
        )];
        for k in 0..LIMBS {
            c.push(format!(
                "CAST(SUM(CASE WHEN bucket >= ${p} THEN t{k} END) AS BIGINT) AS t{k}_{i}"
            ));
        }
        columns.push(c.join(", "));
    }
    let buckets = reads.push(&format!(
        "SELECT {} FROM velocity_buckets WHERE asset = $1 AND bucket >= $2 AND bucket <= $3",
        columns.join(", ")
    ));
    reads
        .bind(asset.to_owned())
        .bind(first_whole_bucket(since(longest)))
        .bind(now);
    for w in &windows {
        reads.bind(first_whole_bucket(since(*w)));
    }
    // The cut hour of each window: $1 asset, $2 the window's start, $3 its first whole
    // bucket, $4 the withdrawal left out. Bitcoin's satoshis are summed by the database;
    // other assets' decimal text is listed and summed here.
    let summed = crate::risk::sums_in_database(asset);
    let what = if summed {
        "COUNT(*) AS n, CAST(SUM(amount) AS BIGINT) AS total"
    } else {
        "amount, amount_text"
    };
    let except_sql = if except.is_some() {
        " AND id <> $4"
    } else {
        ""
    };
    let mut edges = Vec::with_capacity(windows.len());
    for w in &windows {
        edges.push(reads.push(&cut_hour_sql(what, except_sql)));
        reads
            .bind(asset.to_owned())
            .bind(since(*w))
            .bind(first_whole_bucket(since(*w)));
        if let Some(e) = except {
            reads.bind(e.id.to_owned());
        }
    }
    Some(UsageRead {
        buckets,
        edges,
        windows,
        now,
        summed,
        except: except
            .filter(|e| counted(e.state))
            .map(|e| (e.created_at, e.amount)),
    })
}

fn non_negative(row: &crate::db::BatchRow, name: &str) -> Result<u128, ApiError> {
    let v = opt_int(row, name)?.unwrap_or(0);
    u128::try_from(v).map_err(|_| {
        ApiError::internal(format!(
            "the velocity read's {name} is negative: the running totals are inconsistent"
        ))
    })
}

/// [`Usage`] from the rows of a [`usage_read`].
pub(crate) fn usage_from(read: &UsageRead, rows: &mut ReadRows) -> Result<Usage, ApiError> {
    let buckets = rows.take(read.buckets);
    let row = buckets
        .first()
        .ok_or_else(|| ApiError::internal("the velocity read returned no row"))?;
    let mut windows = Vec::with_capacity(read.windows.len());
    for (i, (w, edge)) in read.windows.iter().zip(&read.edges).enumerate() {
        let mut count = non_negative(row, &format!("n{i}"))?;
        let mut sums = [0u128; LIMBS];
        for (k, s) in sums.iter_mut().enumerate() {
            *s = non_negative(row, &format!("t{k}_{i}"))?;
        }
        let mut total = from_limbs(&sums);
        // The withdrawal left out is in the buckets when it counts and its hour lies
        // wholly inside the window; the rows of the cut hour leave it out by id.
        let start = read
            .now
            .saturating_sub(i64::try_from(*w).unwrap_or(i64::MAX));
        if let Some((created_at, amount)) = read.except {
            if bucket_of(created_at) >= first_whole_bucket(start)
                && bucket_of(created_at) <= read.now
            {
                let missing =
                    || ApiError::internal("the running totals miss the withdrawal checked");
                count = count.checked_sub(1).ok_or_else(missing)?;
                total = total.checked_sub(amount).ok_or_else(missing)?;
            }
        }
        let cut = rows.take(*edge);
        if read.summed {
            let r = cut
                .first()
                .ok_or_else(|| ApiError::internal("the velocity read returned no row"))?;
            count += non_negative(r, "n")?;
            total = total.saturating_add(non_negative(r, "total")?);
        } else {
            for r in &cut {
                count += 1;
                total = total.saturating_add(crate::risk::stored_amount(r)?);
            }
        }
        let count =
            u64::try_from(count).map_err(|_| ApiError::internal("velocity count beyond u64"))?;
        windows.push((*w, WindowUsage { total, count }));
    }
    Ok(Usage { windows })
}

/// [`usage_read`] and [`usage_from`] in a round trip of their own.
pub(crate) async fn usage(
    tx: &mut Tx<'_>,
    policy: &VerifiedPolicy,
    asset: &str,
    now: i64,
    except: Option<Except<'_>>,
) -> Result<Usage, ApiError> {
    let mut reads = Reads::new();
    let Some(read) = usage_read(&mut reads, &policy.document().velocity, asset, now, except) else {
        return Ok(Usage::none());
    };
    usage_from(&read, &mut reads.run(tx).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{
        check, count, counted, usage_from, usage_read, Except, VelocityLimit, WindowUsage,
    };
    use crate::db::{Db, Reads};
    use custody_policy::PastWithdrawal;
    use sqlx::Row;

    const DAY: u64 = 86_400;

    fn limit(asset: &str, window_secs: u64) -> VelocityLimit {
        VelocityLimit {
            asset: asset.to_owned(),
            window_secs,
            max_total: u128::MAX,
            max_count: u32::MAX,
        }
    }

    struct Stored {
        id: String,
        state: &'static str,
        created_at: i64,
        past: PastWithdrawal,
    }

    /// Rows of both assets in every state, around each window's edges and the hours'
    /// edges, kept in the running totals the way transitions keep them; what each window
    /// of each asset used, with and without one withdrawal left out, must equal the sum
    /// of the list made here.
    async fn usage_matches_the_list(db: &Db, now: i64) {
        let velocity = [
            limit("BTC", DAY),
            limit("BTC", 3600),
            limit("BTC", 7 * DAY),
            limit("BTC", 5400),
            limit("ETH", DAY),
            limit("ETH", 600),
        ];
        let states = [
            "approved",
            "pending_approval",
            "signing",
            "signed",
            "rejected",
            "broadcasting",
            "broadcast",
            "failed",
            "confirmed",
            "cancelled",
        ];
        let mut tx = db.begin().await.unwrap();
        // Temporary tables of the same names shadow the real ones for this connection.
        for sql in [
            "CREATE TEMPORARY TABLE withdrawals (id TEXT PRIMARY KEY, asset TEXT NOT NULL, \
             amount BIGINT NOT NULL, amount_text TEXT, created_at BIGINT NOT NULL, \
             state TEXT NOT NULL, voids TEXT, accelerates TEXT)",
            "CREATE TEMPORARY TABLE velocity_buckets (asset TEXT NOT NULL, bucket BIGINT NOT NULL, \
             stripe BIGINT NOT NULL, n BIGINT NOT NULL, t0 BIGINT NOT NULL, t1 BIGINT NOT NULL, \
             t2 BIGINT NOT NULL, t3 BIGINT NOT NULL, t4 BIGINT NOT NULL, \
             PRIMARY KEY (asset, bucket, stripe))",
        ] {
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
        }
        let mut offsets: Vec<i64> = vec![0, 1, 599, 600, 601, 3599, 3600, 3601, 5399, 5400, 5401];
        for d in [1, 7] {
            let w = i64::try_from(d * DAY).unwrap();
            offsets.extend([w - 3601, w - 3600, w - 3599, w - 1, w, w + 1, w + 3599]);
        }
        offsets.extend((0..200).map(|i| (i * 7919) % (8 * 86_400)));
        let mut stored = Vec::new();
        for (i, age) in offsets.iter().enumerate() {
            for asset in ["BTC", "ETH"] {
                let id = format!("{asset}-{i}");
                let state = states[i % states.len()];
                let created_at = now - age;
                // Ethereum amounts beyond BIGINT, as wei of large transfers are.
                let (amount, text, value) = if asset == "BTC" {
                    let sat = 1_000 + 7 * u64::try_from(i).unwrap();
                    (i64::try_from(sat).unwrap(), None, u128::from(sat))
                } else {
                    let wei = 10u128.pow(20) * (u128::try_from(i).unwrap() + 1) + 3;
                    (0, Some(wei.to_string()), wei)
                };
                sqlx::query(
                    "INSERT INTO withdrawals (id, asset, amount, amount_text, created_at, state) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id.clone())
                .bind(asset)
                .bind(amount)
                .bind(text)
                .bind(created_at)
                .bind(state)
                .execute(&mut *tx)
                .await
                .unwrap();
                // As transitions keep the totals: in when approved, out when it fails or
                // is cancelled after approval.
                if counted(state) || matches!(state, "failed" | "cancelled") {
                    count(&mut tx, asset, created_at, value, 1).await.unwrap();
                }
                if matches!(state, "failed" | "cancelled") {
                    count(&mut tx, asset, created_at, value, -1).await.unwrap();
                }
                stored.push(Stored {
                    id,
                    state,
                    created_at,
                    past: PastWithdrawal {
                        time: u64::try_from(created_at).unwrap(),
                        asset: asset.to_owned(),
                        amount: value,
                    },
                });
            }
        }
        assert_eq!(
            check(&mut tx).await.unwrap(),
            vec![],
            "the totals match the rows"
        );
        let age_of = |s: &Stored| now - s.created_at;
        for asset in ["BTC", "ETH"] {
            let of_asset = |s: &&Stored| s.past.asset == asset;
            // Left out: nothing; a counted one in the newest hour; a counted one in the
            // hour the day window's start cuts; a counted one in a whole hour of the
            // week window only; one that does not count.
            let mut excepts: Vec<Option<&Stored>> = vec![None];
            for pick in [
                |a: i64| a < 3600,
                |a: i64| a > 86_400 - 3600 && a < 86_400,
                |a: i64| a > 2 * 86_400 && a < 6 * 86_400,
            ] {
                excepts.push(Some(
                    stored
                        .iter()
                        .filter(of_asset)
                        .find(|s| counted(s.state) && pick(age_of(s)))
                        .unwrap(),
                ));
            }
            excepts.push(Some(
                stored
                    .iter()
                    .filter(of_asset)
                    .find(|s| !counted(s.state))
                    .unwrap(),
            ));
            for except in excepts {
                let mut reads = Reads::new();
                let read = usage_read(
                    &mut reads,
                    &velocity,
                    asset,
                    now,
                    except.map(|s| Except {
                        id: &s.id,
                        state: s.state,
                        created_at: s.created_at,
                        amount: s.past.amount,
                    }),
                )
                .unwrap();
                let mut rows = reads.run(&mut tx).await.unwrap();
                let usage = usage_from(&read, &mut rows).unwrap();
                let history: Vec<PastWithdrawal> = stored
                    .iter()
                    .filter(|s| counted(s.state) && except.is_none_or(|e| e.id != s.id))
                    .map(|s| s.past.clone())
                    .collect();
                for l in velocity.iter().filter(|l| l.asset == asset) {
                    let expected = WindowUsage::of(&history, l, u64::try_from(now).unwrap());
                    assert!(
                        expected.count > 0,
                        "the data covers {asset} {}",
                        l.window_secs
                    );
                    assert_eq!(
                        usage.of(l),
                        expected,
                        "{asset} window {} except {:?} at {now}",
                        l.window_secs,
                        except.map(|e| &e.id)
                    );
                }
                // A window the read was not asked about uses everything: refused, not free.
                assert_eq!(usage.of(&limit(asset, 42)).count, u64::MAX);
            }
        }
        // No limit for the asset: nothing to read.
        assert!(usage_read(&mut Reads::new(), &velocity, "ERC20:x", now, None).is_none());
        // A total that drifted from its rows is found.
        sqlx::query(
            "UPDATE velocity_buckets SET t0 = t0 + 1 WHERE asset = 'ETH' \
             AND bucket = (SELECT MAX(bucket) FROM velocity_buckets WHERE asset = 'ETH')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let found = check(&mut tx).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kept.1, found[0].actual.1 + 1);
        tx.rollback().await.unwrap();
    }

    #[test]
    fn limbs_hold_any_amount_and_sums_saturate() {
        for a in [
            0,
            1,
            999_999_999,
            1_000_000_000,
            21_000_000 * 100_000_000,
            10u128.pow(36) - 1,
            u128::MAX,
        ] {
            let l = super::limbs(a);
            assert!(
                l.iter().all(|x| (0..1_000_000_000).contains(x)),
                "{a}: {l:?}"
            );
            let sums = l.map(|x| u128::try_from(x).unwrap());
            assert_eq!(super::from_limbs(&sums), a);
        }
        // Two of the largest amount: beyond u128, so over any limit.
        let twice = super::limbs(u128::MAX).map(|x| 2 * u128::try_from(x).unwrap());
        assert_eq!(super::from_limbs(&twice), u128::MAX);
    }

    /// Each (asset, hour)'s count and limbs summed over its stripes.
    async fn per_hour(tx: &mut crate::db::Tx<'_>) -> Vec<(String, i64, Vec<i64>)> {
        let rows = sqlx::query(
            "SELECT asset, bucket, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(t0) AS BIGINT) AS t0, \
             CAST(SUM(t1) AS BIGINT) AS t1, CAST(SUM(t4) AS BIGINT) AS t4 FROM velocity_buckets \
             GROUP BY asset, bucket ORDER BY asset, bucket",
        )
        .fetch_all(&mut **tx)
        .await
        .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r.try_get("asset").unwrap(),
                    r.try_get("bucket").unwrap(),
                    ["n", "t0", "t1", "t4"]
                        .iter()
                        .map(|c| r.try_get(*c).unwrap())
                        .collect(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn compacting_folds_old_stripes_into_one_row_per_hour_and_keeps_the_totals() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_001_234;
        let hour = now - now % 3600;
        for db in crate::db::testing::both_engines(&dir).await {
            if db.engine() == crate::db::Engine::Sqlite {
                // One stripe already: nothing to do.
                assert_eq!(super::compact(&db, now).await.unwrap(), 0);
                continue;
            }
            let mut tx = db.begin().await.unwrap();
            sqlx::query(
                "CREATE TEMPORARY TABLE velocity_buckets (asset TEXT NOT NULL, bucket BIGINT NOT NULL, \
                 stripe BIGINT NOT NULL, n BIGINT NOT NULL, t0 BIGINT NOT NULL, t1 BIGINT NOT NULL, \
                 t2 BIGINT NOT NULL, t3 BIGINT NOT NULL, t4 BIGINT NOT NULL, \
                 PRIMARY KEY (asset, bucket, stripe))",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            // Five hours back to the current one; stripes 0 (already folded), 101, 202;
            // limbs near their base so that sums carry past it.
            let mut old_striped = 0;
            for (a, asset) in ["BTC", "ETH"].iter().enumerate() {
                for h in 0..6i64 {
                    for stripe in [0i64, 101, 202] {
                        if (h + stripe) % 4 == 3 {
                            continue;
                        }
                        let k = h * 1000 + stripe + i64::try_from(a).unwrap();
                        sqlx::query(
                            "INSERT INTO velocity_buckets VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7)",
                        )
                        .bind(asset.to_string())
                        .bind(hour - h * 3600)
                        .bind(stripe)
                        .bind(k % 7 + 1)
                        .bind(999_999_000 + k)
                        .bind(k)
                        .bind(k % 3)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                        if stripe != 0 && h >= 2 {
                            old_striped += 1;
                        }
                    }
                }
            }
            let before = per_hour(&mut tx).await;
            assert_eq!(super::compact_in(&mut tx, now).await.unwrap(), old_striped);
            assert_eq!(per_hour(&mut tx).await, before, "every hour's totals kept");
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT bucket, COUNT(*) FROM velocity_buckets WHERE asset = 'BTC' \
                 GROUP BY bucket ORDER BY bucket DESC",
            )
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            for (bucket, n) in rows {
                if bucket >= hour - 3600 {
                    assert!(n >= 2, "the current and previous hours keep their stripes");
                } else {
                    assert_eq!(n, 1, "hour {bucket} folded into one row");
                }
            }
            assert_eq!(
                super::compact_in(&mut tx, now).await.unwrap(),
                0,
                "nothing left"
            );
            tx.rollback().await.unwrap();
        }
    }

    #[tokio::test]
    async fn sqlite_answers_a_bitcoin_windows_cut_hour_from_the_index_alone() {
        // The intake reads it on every request: from the (partial, ADR 0035) velocity
        // index without touching the table.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        db.migrate().await.unwrap();
        let sql = super::cut_hour_sql("COUNT(*) AS n, CAST(SUM(amount) AS BIGINT) AS total", "");
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .bind("BTC")
            .bind(1i64)
            .bind(2i64)
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING COVERING INDEX withdrawals_asset_state_time_amount")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn velocity_usage_from_running_totals_matches_the_listed_history() {
        let dir = tempfile::tempdir().unwrap();
        for db in crate::db::testing::both_engines(&dir).await {
            // At the first second of an hour, and in the middle of one.
            for now in [1_800_000_000, 1_800_001_234] {
                usage_matches_the_list(&db, now).await;
            }
        }
    }
}
