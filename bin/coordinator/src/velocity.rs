//! What a wallet's withdrawals of one asset used in each velocity window of a policy.
//!
//! Bitcoin amounts are kept as running totals per hour of creation
//! (`velocity_buckets`, ADR 0028): a withdrawal adds its amount to the bucket of the hour
//! it was created in when it enters a counted state and takes it out when it leaves one.
//! A window `(now - w, now]` is then the buckets that lie wholly inside it plus the
//! withdrawals of the one hour its start cuts through, read row by row, so a request
//! reads at most a day's buckets and an hour's rows however many withdrawals the window
//! holds. Buckets carry a stripe (PostgreSQL's backend process; 0 on SQLite, whose one
//! writer never contends) so that concurrent transactions add to different rows instead
//! of waiting for each other's commit.
//!
//! Ethereum assets' amounts are decimal text beyond `BIGINT`; their rows are listed and
//! summed here exactly (ADR 0024).

use custody_policy::{PastWithdrawal, VelocityLimit, VerifiedPolicy, WindowUsage};

use crate::db::{opt_int, DbError, Engine, Reads, Tx, Writes};
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

/// The width of a running-total bucket, in seconds.
pub(crate) const BUCKET_SECS: i64 = 3600;

/// Whether a withdrawal in `state` counts against velocity limits.
pub(crate) fn counted(state: &str) -> bool {
    COUNTED_STATES.contains(&state)
}

/// Whether `asset`'s usage is kept in running totals (and its amounts in the integer
/// column).
pub(crate) fn totalled(asset: &str) -> bool {
    crate::risk::sums_in_database(asset)
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

const ADD: &str = "INSERT INTO velocity_buckets (asset, bucket, stripe, n, total) \
     VALUES ($1, $2, {stripe}, $3, $4) ON CONFLICT (asset, bucket, stripe) DO UPDATE \
     SET n = velocity_buckets.n + excluded.n, total = velocity_buckets.total + excluded.total";

fn add_sql(engine: Engine) -> String {
    ADD.replace(
        "{stripe}",
        match engine {
            Engine::Postgres => "pg_backend_pid()",
            Engine::Sqlite => "0",
        },
    )
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

/// Adds `sign` times a withdrawal (`created_at`, `amount`) to the running totals, as a
/// statement of `writes`. Assets without running totals are left alone.
pub(crate) fn count_to(
    writes: &mut Writes,
    engine: Engine,
    asset: &str,
    created_at: i64,
    amount: i64,
    sign: i64,
) {
    if !totalled(asset) {
        return;
    }
    writes
        .push(&add_sql(engine))
        .bind(asset.to_owned())
        .bind(bucket_of(created_at))
        .bind(sign)
        .bind(amount.saturating_mul(sign));
}

/// [`count_to`] in a statement of its own.
///
/// # Errors
/// [`DbError::Sqlx`].
pub(crate) async fn count(
    tx: &mut Tx<'_>,
    asset: &str,
    created_at: i64,
    amount: i64,
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
    sqlx::query(&format!(
        "INSERT INTO velocity_buckets (asset, bucket, stripe, n, total) \
         SELECT asset, created_at - created_at % {BUCKET_SECS}, 0, COUNT(*), \
         CAST(SUM(amount) AS BIGINT) FROM withdrawals \
         WHERE asset = 'BTC' AND state IN {COUNTED} \
         GROUP BY asset, created_at - created_at % {BUCKET_SECS}"
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
                "kept": { "count": m.kept.0, "total": m.kept.1 },
                "actual": { "count": m.actual.0, "total": m.actual.1 },
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
    pub kept: (i64, i64),
    /// Count and total of the withdrawals.
    pub actual: (i64, i64),
}

/// Compares every running total with the withdrawals it stands for; empty when they
/// agree.
///
/// # Errors
/// [`DbError::Sqlx`].
pub async fn check(tx: &mut Tx<'_>) -> Result<Vec<Mismatch>, DbError> {
    use std::collections::BTreeMap;
    // (asset, hour) → ((count, total) kept, (count, total) of the rows)
    type Sums = ((i64, i64), (i64, i64));
    let mut hours: BTreeMap<(String, i64), Sums> = BTreeMap::new();
    let kept = sqlx::query(
        "SELECT asset, bucket, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(total) AS BIGINT) AS total \
         FROM velocity_buckets GROUP BY asset, bucket",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in &kept {
        let key = (crate::db::text(r, "asset")?, crate::db::int(r, "bucket")?);
        hours.entry(key).or_default().0 = (
            opt_int(r, "n")?.unwrap_or(0),
            opt_int(r, "total")?.unwrap_or(0),
        );
    }
    let actual = sqlx::query(&format!(
        "SELECT asset, created_at - created_at % {BUCKET_SECS} AS bucket, COUNT(*) AS n, \
         CAST(SUM(amount) AS BIGINT) AS total FROM withdrawals \
         WHERE asset = 'BTC' AND state IN {COUNTED} \
         GROUP BY asset, created_at - created_at % {BUCKET_SECS}"
    ))
    .fetch_all(&mut **tx)
    .await?;
    for r in &actual {
        let key = (crate::db::text(r, "asset")?, crate::db::int(r, "bucket")?);
        hours.entry(key).or_default().1 = (
            opt_int(r, "n")?.unwrap_or(0),
            opt_int(r, "total")?.unwrap_or(0),
        );
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

/// The withdrawal a usage read leaves out (the one checked again before it is signed),
/// as loaded in the same transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Except<'a> {
    pub(crate) id: &'a str,
    pub(crate) state: &'a str,
    pub(crate) created_at: i64,
    pub(crate) amount: i64,
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

/// A velocity read added to a batch: its position and what [`usage_from`] needs.
#[derive(Debug)]
pub(crate) struct UsageRead {
    pub(crate) index: usize,
    windows: Vec<u64>,
    asset: String,
    now: i64,
    totalled: bool,
    except: Option<(i64, i64)>,
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
    let totalled = totalled(asset);
    let except_sql = |p: usize| {
        if except.is_some() {
            format!(" AND id <> ${p}")
        } else {
            String::new()
        }
    };
    let index = if totalled {
        // $1 asset, $2 the longest window's first whole bucket, $3 now; window i's start
        // is $(4 + 2i) and its first whole bucket $(5 + 2i); `except` comes last.
        let n = windows.len();
        let mut columns = Vec::with_capacity(2 * n);
        let mut edges = Vec::with_capacity(n);
        for i in 0..n {
            let (start, whole) = (4 + 2 * i, 5 + 2 * i);
            columns.push(format!(
                "CAST(SUM(CASE WHEN bucket >= ${whole} THEN n END) AS BIGINT) AS bn{i}, \
                 CAST(SUM(CASE WHEN bucket >= ${whole} THEN total END) AS BIGINT) AS bt{i}"
            ));
            edges.push(format!(
                "(SELECT COUNT(*) AS en{i}, CAST(SUM(amount) AS BIGINT) AS et{i} \
                 FROM withdrawals WHERE asset = $1 AND state IN {COUNTED} \
                 AND created_at > ${start} AND created_at < ${whole}{}) e{i}",
                except_sql(4 + 2 * n)
            ));
        }
        let index = reads.push(&format!(
            "SELECT * FROM (SELECT {} FROM velocity_buckets WHERE asset = $1 AND bucket >= $2 \
             AND bucket <= $3) b, {}",
            columns.join(", "),
            edges.join(", ")
        ));
        reads
            .bind(asset.to_owned())
            .bind(first_whole_bucket(since(longest)))
            .bind(now);
        for w in &windows {
            reads.bind(since(*w)).bind(first_whole_bucket(since(*w)));
        }
        index
    } else {
        // $1 asset, $2 the longest window's start, $3 now; `except` comes last.
        let index = reads.push(&format!(
            "SELECT amount, amount_text, created_at FROM withdrawals WHERE asset = $1 \
             AND created_at > $2 AND created_at <= $3 AND state IN {COUNTED}{}",
            except_sql(4)
        ));
        reads.bind(asset.to_owned()).bind(since(longest)).bind(now);
        index
    };
    if let Some(e) = except {
        reads.bind(e.id.to_owned());
    }
    Some(UsageRead {
        index,
        windows,
        asset: asset.to_owned(),
        now,
        totalled,
        except: except
            .filter(|e| counted(e.state))
            .map(|e| (e.created_at, e.amount)),
    })
}

fn column(row: &crate::db::BatchRow, name: &str) -> Result<u128, ApiError> {
    let v = opt_int(row, name)?.unwrap_or(0);
    u128::try_from(v).map_err(|_| {
        ApiError::internal(format!(
            "the velocity read's {name} is negative: the running totals are inconsistent"
        ))
    })
}

/// [`Usage`] from the rows of a [`usage_read`].
pub(crate) fn usage_from(
    read: &UsageRead,
    rows: &[crate::db::BatchRow],
) -> Result<Usage, ApiError> {
    let mut windows = Vec::with_capacity(read.windows.len());
    if read.totalled {
        let row = rows
            .first()
            .ok_or_else(|| ApiError::internal("the velocity read returned no row"))?;
        for (i, w) in read.windows.iter().enumerate() {
            let mut count = column(row, &format!("bn{i}"))? + column(row, &format!("en{i}"))?;
            let mut total = column(row, &format!("bt{i}"))? + column(row, &format!("et{i}"))?;
            // The withdrawal left out is in the buckets when it counts and its hour lies
            // wholly inside the window; the rows of the cut hour leave it out by id.
            let start = read
                .now
                .saturating_sub(i64::try_from(*w).unwrap_or(i64::MAX));
            if let Some((created_at, amount)) = read.except {
                if bucket_of(created_at) >= first_whole_bucket(start)
                    && bucket_of(created_at) <= read.now
                {
                    let amount = u128::try_from(amount)
                        .map_err(|_| ApiError::internal("negative withdrawal amount"))?;
                    count = count.checked_sub(1).ok_or_else(|| {
                        ApiError::internal("the running totals miss the withdrawal checked")
                    })?;
                    total = total.checked_sub(amount).ok_or_else(|| {
                        ApiError::internal("the running totals miss the withdrawal checked")
                    })?;
                }
            }
            let count = u64::try_from(count)
                .map_err(|_| ApiError::internal("velocity count beyond u64"))?;
            windows.push((*w, WindowUsage { total, count }));
        }
    } else {
        let mut past = Vec::with_capacity(rows.len());
        for r in rows {
            past.push(PastWithdrawal {
                time: crate::withdrawals::now_u64(crate::db::int(r, "created_at")?),
                asset: read.asset.clone(),
                amount: crate::risk::stored_amount(r)?,
            });
        }
        let now = crate::withdrawals::now_u64(read.now);
        for w in &read.windows {
            let limit = VelocityLimit {
                asset: read.asset.clone(),
                window_secs: *w,
                max_total: 0,
                max_count: 0,
            };
            windows.push((*w, WindowUsage::of(&past, &limit, now)));
        }
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
    usage_from(&read, &reads.run(tx).await?.take(read.index))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{
        check, count, counted, usage_from, usage_read, Except, PastWithdrawal, VelocityLimit,
        WindowUsage,
    };
    use crate::db::{Db, Reads};

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
        amount: i64,
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
             state TEXT NOT NULL)",
            "CREATE TEMPORARY TABLE velocity_buckets (asset TEXT NOT NULL, bucket BIGINT NOT NULL, \
             stripe BIGINT NOT NULL, n BIGINT NOT NULL, total BIGINT NOT NULL, \
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
                    count(&mut tx, asset, created_at, amount, 1).await.unwrap();
                }
                if matches!(state, "failed" | "cancelled") {
                    count(&mut tx, asset, created_at, amount, -1).await.unwrap();
                }
                stored.push(Stored {
                    id,
                    state,
                    created_at,
                    amount,
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
                        amount: s.amount,
                    }),
                )
                .unwrap();
                let mut rows = reads.run(&mut tx).await.unwrap();
                let usage = usage_from(&read, &rows.take(read.index)).unwrap();
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
        sqlx::query("UPDATE velocity_buckets SET total = total + 1 WHERE bucket = (SELECT MAX(bucket) FROM velocity_buckets)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let found = check(&mut tx).await.unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kept.1, found[0].actual.1 + 1);
        tx.rollback().await.unwrap();
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
