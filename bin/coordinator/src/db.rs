//! Storage: one schema for SQLite (the embedded default, WAL) and PostgreSQL, through
//! sqlx's `Any` driver and the migrations in `migrations/`.
//!
//! Portability rules the queries follow: numbered `$1…` placeholders (both drivers bind
//! them by number), `TEXT`/`BIGINT` only, `RETURNING` only on a single-row `UPDATE` (the
//! change-index claim, ADR 0021), no `FOR UPDATE` (one PostgreSQL-only exception, coin
//! selection's `SKIP LOCKED`, see ADR 0011). Concurrency control is by
//! compare-and-set updates (`… WHERE id = $1 AND version = $2`, checking the affected row
//! count), which both engines make atomic; the audit log serialises appenders on its head
//! row (see [`crate::audit`]).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row};
use thiserror::Error;

mod group;

pub(crate) use group::{Member, OPEN as GROUP_OPEN, RELEASE as GROUP_RELEASE};

/// A database transaction.
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

/// Read-only SQLite connections beside the writer.
const READERS: u32 = 2;

/// The migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which engine a URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite (single writer, WAL, `synchronous=FULL`).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A storage failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("database_url must start with sqlite:// or postgres:// (found {scheme}://…)")]
    UnknownScheme {
        /// The scheme found.
        scheme: String,
    },
    /// The database could not be reached or refused a statement.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite commit group this request's writes were part of was not committed;
    /// nothing of the request was kept.
    #[error("database error: {0}")]
    Group(String),
}

impl DbError {
    /// Whether retrying the whole transaction may succeed (serialization failure,
    /// deadlock, SQLite busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            // Nothing of the group was kept.
            DbError::Group(_) => true,
            DbError::Sqlx(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01" | "5" | "517"))
            }
            _ => false,
        }
    }
}

/// The connection pool and its engine.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// On PostgreSQL, two connections for short statements that must commit on their own
    /// while the caller holds a transaction of the main pool (claiming a block of change
    /// indexes); a separate pool, so that such a claim can never wait for a connection
    /// held by a transaction that waits for the claim.
    side: Option<AnyPool>,
    /// On SQLite (a file), read-only connections beside the single writer, for reads that
    /// need no transaction (resolving a session): WAL lets them run while the writer
    /// works, so they neither wait for a write transaction nor hold one up.
    read: Option<AnyPool>,
    /// On SQLite, the commit group that idempotent requests share (ADR 0023).
    group: Option<std::sync::Arc<group::Group>>,
    engine: Engine,
}

/// Where a request's statements run: its own transaction, or its turn in a SQLite commit
/// group (ADR 0023).
#[derive(Debug)]
pub(crate) enum Work<'g> {
    /// A transaction of its own (PostgreSQL).
    Alone(Tx<'static>),
    /// A savepoint in the group's shared transaction (SQLite).
    Member(Member<'g>),
}

impl Work<'_> {
    /// The transaction to run statements in.
    pub(crate) fn tx(&mut self) -> &mut Tx<'static> {
        match self {
            Work::Alone(tx) => tx,
            Work::Member(m) => m.tx(),
        }
    }

    /// SQL to put in front of the request's first statement (opens a member's savepoint).
    pub(crate) fn opening(&self) -> &'static str {
        match self {
            Work::Alone(_) => "",
            Work::Member(_) => GROUP_OPEN,
        }
    }

    /// The statement to send after the request's last one (releases a member's
    /// savepoint; `None` when there is nothing to close); pass `released = true` to
    /// [`Work::commit`] when it was sent.
    pub(crate) fn closing(&self) -> Option<&'static str> {
        match self {
            Work::Alone(_) => None,
            Work::Member(_) => Some(GROUP_RELEASE),
        }
    }

    /// Makes the request's writes durable: commits its transaction, or ends its turn in
    /// the group and waits for the group's commit.
    ///
    /// # Errors
    /// [`DbError`] when the commit failed; nothing of the request is kept.
    pub(crate) async fn commit(self, released: bool) -> Result<(), DbError> {
        match self {
            Work::Alone(tx) => Ok(tx.commit().await?),
            Work::Member(m) => m.end(true, released).await,
        }
    }

    /// Undoes the request's writes. A group member still waits for its group's commit,
    /// so that an answer that read the group's writes is given only once they are
    /// durable.
    ///
    /// # Errors
    /// [`DbError`] when the group was not committed.
    pub(crate) async fn abandon(self) -> Result<(), DbError> {
        match self {
            Work::Alone(tx) => Ok(tx.rollback().await?),
            Work::Member(m) => m.end(false, false).await,
        }
    }
}

impl Db {
    /// Connects to `url` (creating a SQLite file if needed) and applies the connection
    /// settings; does not migrate.
    ///
    /// # Errors
    /// [`DbError`] if the URL is unknown or the database unreachable. The error never
    /// repeats the URL, which may hold a password.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let scheme = url.split("://").next().unwrap_or_default();
        let engine = match scheme {
            "sqlite" => Engine::Sqlite,
            "postgres" | "postgresql" => Engine::Postgres,
            other => {
                return Err(DbError::UnknownScheme {
                    scheme: other.chars().take(16).collect(),
                })
            }
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let options = match engine {
            // One connection: SQLite has one writer, and a single connection makes every
            // transaction serial without SQLITE_BUSY upgrades.
            // No ping before each use: an embedded file cannot have gone away, and the ping
            // is a round trip to the connection's thread on every request.
            Engine::Sqlite => options
                .max_connections(1)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                }),
            Engine::Postgres => options.max_connections(max_connections),
        };
        let pool = options.connect(url).await?;
        let side = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(
                AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(30))
                    .max_connections(2)
                    .connect_lazy(url)?,
            ),
        };
        let read = match engine {
            Engine::Sqlite if !url.contains(":memory:") && !url.contains("mode=memory") => Some(
                AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(30))
                    .max_connections(READERS)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_lazy(url)?,
            ),
            _ => None,
        };
        let group = match engine {
            Engine::Sqlite => Some(group::Group::start(pool.clone())),
            Engine::Postgres => None,
        };
        Ok(Db {
            pool,
            side,
            read,
            group,
            engine,
        })
    }

    /// The pool for short statements that commit on their own while the caller holds a
    /// transaction (PostgreSQL); `None` on SQLite, where the caller's transaction must be
    /// used instead.
    pub fn side_pool(&self) -> Option<&AnyPool> {
        self.side.as_ref()
    }

    /// The pool for a single read outside any transaction: SQLite's read-only connections,
    /// or the main pool on PostgreSQL. What it returns is committed data; a read that
    /// decides a write belongs in the writer's transaction instead.
    pub fn read_pool(&self) -> &AnyPool {
        self.read.as_ref().unwrap_or(&self.pool)
    }

    /// Applies every pending migration.
    ///
    /// # Errors
    /// [`DbError::Migrate`].
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Starts a transaction.
    ///
    /// # Errors
    /// [`DbError::Sqlx`].
    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        Ok(self.pool.begin().await?)
    }

    /// Starts a request's work: its turn in the commit group on SQLite, its own
    /// transaction on PostgreSQL (ADR 0023).
    ///
    /// # Errors
    /// [`DbError::Sqlx`].
    pub(crate) async fn begin_request(&self) -> Result<Work<'_>, DbError> {
        match &self.group {
            Some(group) => Ok(Work::Member(group.join().await?)),
            None => Ok(Work::Alone(self.begin().await?)),
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        if let Some(side) = &self.side {
            side.close().await;
        }
        if let Some(read) = &self.read {
            read.close().await;
        }
        self.pool.close().await;
    }
}

/// Writes whose results nobody reads (inserts of events, audit entries, notifications),
/// collected while a request runs and sent to the database in one round trip by
/// [`Writes::run`], in the order they were pushed.
///
/// Each statement is written with its own `$1…` placeholders and bound in that order; the
/// batch renumbers them. SQLite runs the statements one after another from one string;
/// PostgreSQL runs them as one statement of data-modifying `WITH` clauses, so they must
/// not depend on each other's effects: two of them must not write the same row. A round
/// trip costs more than a small insert on both engines (a thread hand-over on SQLite, a
/// backend wake-up on PostgreSQL); see ADR 0022.
///
/// A statement whose effect decides the request (a compare-and-set, a reservation) is
/// marked with [`Writes::count_rows`]; [`Writes::run`] then reports how many rows it
/// changed, and the caller fails the request (rolling the whole batch back with it) when
/// that is not what it needs (ADR 0025).
#[derive(Default)]
pub(crate) struct Writes {
    statements: Vec<String>,
    args: sqlx::any::AnyArguments<'static>,
    /// Placeholders numbered so far.
    params: usize,
    /// Values bound so far.
    bound: usize,
    /// The statements whose changed rows `run` reports, by position in `statements`.
    counted: Vec<usize>,
}

/// A statement of a [`Writes`] batch whose changed rows [`Writes::run`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counted(usize);

/// The rows each counted statement of a [`Writes`] batch changed.
#[derive(Debug)]
pub(crate) struct Changed(Vec<u64>);

impl Changed {
    /// The rows `statement` changed.
    pub(crate) fn rows(&self, statement: Counted) -> u64 {
        self.0.get(statement.0).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for Writes {
    // The bound values may be personal data; only the shape is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("statements", &self.statements.len())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Writes {
    /// An empty batch.
    pub(crate) fn new() -> Writes {
        Writes::default()
    }

    /// Adds `sql` (placeholders `$1…$k`); bind its `k` values next, in order, with
    /// [`Writes::bind`].
    pub(crate) fn push(&mut self, sql: &str) -> &mut Writes {
        let (renumbered, k) = renumber(sql, self.params);
        self.statements.push(renumbered);
        self.params += k;
        self
    }

    /// Binds the next value.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Writes
    where
        T: sqlx::Encode<'static, Any> + sqlx::Type<Any> + 'static,
    {
        use sqlx::Arguments as _;
        // An encoding failure surfaces in `run` as a count mismatch, never as a wrong value.
        if self.args.add(value).is_ok() {
            self.bound += 1;
        }
        self
    }

    /// Refuses a batch whose placeholders and bound values differ in number.
    fn check(&self) -> Result<(), DbError> {
        if self.bound != self.params {
            return Err(DbError::Sqlx(sqlx::Error::Protocol(format!(
                "a batch of {} statements has {} placeholders but {} values",
                self.statements.len(),
                self.params,
                self.bound
            ))));
        }
        Ok(())
    }

    /// Marks the statement pushed last (an `INSERT`, `UPDATE` or `DELETE`): [`Writes::run`]
    /// reports how many rows it changed.
    pub(crate) fn count_rows(&mut self) -> Counted {
        let i = self.statements.len().saturating_sub(1);
        self.counted.push(i);
        Counted(self.counted.len() - 1)
    }

    /// Sends every statement in one round trip, inside `tx`, and reports what the counted
    /// ones changed.
    ///
    /// # Errors
    /// [`DbError::Sqlx`]; a value that could not be bound is reported as a protocol error
    /// before anything is sent.
    pub(crate) async fn run(self, tx: &mut Tx<'_>) -> Result<Changed, DbError> {
        use futures_util::TryStreamExt as _;
        self.check()?;
        let counted = self.counted.len();
        match self.statements.as_slice() {
            [] => return Ok(Changed(vec![0; counted])),
            [only] => {
                let done = sqlx::query_with(only, self.args).execute(&mut **tx).await?;
                return Ok(Changed(vec![done.rows_affected(); counted]));
            }
            _ => {}
        }
        let n = self.statements.len();
        if tx.backend_name() == "PostgreSQL" {
            // Every statement a data-modifying `WITH` clause (each runs exactly once, read
            // or not); the counted ones return a row per changed row, counted by the final
            // SELECT.
            let mut sql = String::from("WITH ");
            for (i, s) in self.statements.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let returning = if self.counted.contains(&i) {
                    " RETURNING 1"
                } else {
                    ""
                };
                sql.push_str(&format!("w{i} AS ({s}{returning})"));
            }
            sql.push_str(" SELECT 1 AS done");
            for (k, i) in self.counted.iter().enumerate() {
                sql.push_str(&format!(", (SELECT COUNT(*) FROM w{i}) AS c{k}"));
            }
            let row = sqlx::query_with(&sql, self.args)
                .fetch_one(&mut **tx)
                .await?;
            let mut out = Vec::with_capacity(counted);
            for k in 0..counted {
                out.push(u64::try_from(int(&row, &format!("c{k}"))?).unwrap_or(0));
            }
            return Ok(Changed(out));
        }
        // SQLite runs the statements one after another from one string and reports the
        // end of each as a result with its changed rows (the driver behaviour `Reads`
        // relies on; sqlx marks several statements in one query deprecated, ADR 0023).
        let sql = self.statements.join(";\n");
        #[allow(deprecated)]
        let mut stream = sqlx::query_with(&sql, self.args).fetch_many(&mut **tx);
        let mut per_statement = Vec::with_capacity(n);
        while let Some(item) = stream.try_next().await? {
            if let sqlx::Either::Left(done) = item {
                per_statement.push(done.rows_affected());
            }
        }
        if per_statement.len() != n {
            return Err(DbError::Sqlx(sqlx::Error::Protocol(format!(
                "a batch of {n} writes returned {} results",
                per_statement.len()
            ))));
        }
        Ok(Changed(
            self.counted
                .iter()
                .map(|&i| per_statement.get(i).copied().unwrap_or(0))
                .collect(),
        ))
    }
}

/// Reads that do not depend on each other, sent in one round trip: on SQLite one string
/// of statements on the writer (as [`Writes`]); on PostgreSQL, which prepares one
/// statement at a time, one `SELECT` whose columns are the reads' rows as JSON (ADR
/// 0023). Each statement keeps its own `$1…` placeholders; [`Reads::push`] gives the
/// index of its rows in what [`Reads::run`] returns.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// The statements, renumbered, and their values in one list.
    joined: Writes,
}

/// The rows of each statement of a [`Reads`] batch, by the index [`Reads::push`] gave.
pub(crate) struct ReadRows(Vec<Vec<BatchRow>>);

impl std::fmt::Debug for ReadRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRows")
            .field("statements", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl ReadRows {
    /// The rows of statement `i` (empty when taken before or out of range).
    pub(crate) fn take(&mut self, i: usize) -> Vec<BatchRow> {
        self.0.get_mut(i).map(std::mem::take).unwrap_or_default()
    }
}

impl Reads {
    /// An empty batch.
    pub(crate) fn new() -> Reads {
        Reads::default()
    }

    /// Adds `sql` (placeholders `$1…$k`, bound next with [`Reads::bind`]); returns the
    /// index of its rows.
    pub(crate) fn push(&mut self, sql: &str) -> usize {
        self.joined.push(sql);
        self.joined.statements.len() - 1
    }

    /// Binds the next value of the last statement pushed.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Reads
    where
        T: sqlx::Encode<'static, Any> + sqlx::Type<Any> + 'static,
    {
        self.joined.bind(value);
        self
    }

    /// Runs every statement inside `tx` and returns their rows.
    ///
    /// # Errors
    /// [`DbError::Sqlx`]; a value that could not be bound is reported before anything is
    /// sent.
    pub(crate) async fn run(self, tx: &mut Tx<'_>) -> Result<ReadRows, DbError> {
        use futures_util::TryStreamExt as _;
        self.joined.check()?;
        let n = self.joined.statements.len();
        if n <= 1 {
            // One statement: as it is (its placeholders were not renumbered).
            let mut out = Vec::with_capacity(n);
            if let Some(sql) = self.joined.statements.first() {
                let rows = sqlx::query_with(sql, self.joined.args)
                    .fetch_all(&mut **tx)
                    .await?;
                out.push(rows.into_iter().map(BatchRow::Sql).collect());
            }
            return Ok(ReadRows(out));
        }
        if tx.backend_name() == "PostgreSQL" {
            // PostgreSQL prepares one statement at a time: each read becomes a column of
            // one SELECT, its rows a JSON array (in the order the read gives them).
            let mut sql = String::from("SELECT ");
            for (i, s) in self.joined.statements.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(SELECT COALESCE(json_agg(q), '[]'::json)::text FROM ({s}) q) AS r{i}"
                ));
            }
            let row = sqlx::query_with(&sql, self.joined.args)
                .fetch_one(&mut **tx)
                .await?;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let col = format!("r{i}");
                let json = text(&row, &col)?;
                let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_str(&json).map_err(|e| sqlx::Error::ColumnDecode {
                        index: col.clone(),
                        source: Box::new(e),
                    })?;
                out.push(rows.into_iter().map(BatchRow::Json).collect());
            }
            return Ok(ReadRows(out));
        }
        // SQLite reports the end of each statement as a result between the rows. sqlx
        // marks several statements in one prepared query as deprecated; `Writes` relies
        // on the same behaviour of its SQLite driver (ADR 0022, ADR 0023).
        let sql = self.joined.statements.join(";\n");
        #[allow(deprecated)]
        let mut stream = sqlx::query_with(&sql, self.joined.args).fetch_many(&mut **tx);
        let mut out = vec![Vec::new()];
        while let Some(item) = stream.try_next().await? {
            match item {
                sqlx::Either::Left(_) => out.push(Vec::new()),
                sqlx::Either::Right(row) => {
                    if let Some(rows) = out.last_mut() {
                        rows.push(BatchRow::Sql(row));
                    }
                }
            }
        }
        out.pop();
        if out.len() != n {
            return Err(DbError::Sqlx(sqlx::Error::Protocol(format!(
                "a batch of {n} reads returned {} results",
                out.len()
            ))));
        }
        Ok(ReadRows(out))
    }
}

/// `sql` with each placeholder `$n` written `$(n + offset)`, and the highest `n` in it.
/// The statements this is used on are the crate's own, with no `$` inside literals.
fn renumber(sql: &str, offset: usize) -> (String, usize) {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = 0usize;
        let mut digits = false;
        while let Some(&(_, d)) = chars.peek() {
            let Some(v) = d.to_digit(10) else { break };
            n = n.saturating_mul(10).saturating_add(v as usize);
            digits = true;
            chars.next();
        }
        if digits {
            highest = highest.max(n);
            out.push_str(&(n + offset).to_string());
        }
    }
    (out, highest)
}

/// Columns read by name, from a driver's row or from a row of a [`Reads`] batch that
/// PostgreSQL returned as JSON.
pub(crate) trait Columns {
    /// A `TEXT` column, `None` when NULL.
    fn opt_text_column(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    /// A `BIGINT` column, `None` when NULL.
    fn opt_int_column(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
}

impl Columns for AnyRow {
    fn opt_text_column(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get::<Option<String>, _>(col)
    }
    fn opt_int_column(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get::<Option<i64>, _>(col)
    }
}

impl<T: Columns + ?Sized> Columns for &T {
    fn opt_text_column(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        (**self).opt_text_column(col)
    }
    fn opt_int_column(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        (**self).opt_int_column(col)
    }
}

/// A row of a [`Reads`] batch.
pub(crate) enum BatchRow {
    /// As the driver returned it.
    Sql(AnyRow),
    /// One object of the JSON array PostgreSQL built for the statement.
    Json(serde_json::Map<String, serde_json::Value>),
}

impl std::fmt::Debug for BatchRow {
    // A row may hold personal data or sealed secrets: no values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchRow::Sql(_) => f.write_str("BatchRow::Sql(..)"),
            BatchRow::Json(map) => write!(f, "BatchRow::Json({} columns)", map.len()),
        }
    }
}

impl Columns for BatchRow {
    fn opt_text_column(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        match self {
            BatchRow::Sql(row) => row.opt_text_column(col),
            BatchRow::Json(map) => match map.get(col) {
                None => Err(sqlx::Error::ColumnNotFound(col.to_owned())),
                Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(json_type(col, "text")),
            },
        }
    }
    fn opt_int_column(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        match self {
            BatchRow::Sql(row) => row.opt_int_column(col),
            BatchRow::Json(map) => match map.get(col) {
                None => Err(sqlx::Error::ColumnNotFound(col.to_owned())),
                Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| json_type(col, "a 64-bit integer")),
                Some(_) => Err(json_type(col, "a number")),
            },
        }
    }
}

fn json_type(col: &str, expected: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("expected {expected} in the batch's JSON").into(),
    }
}

fn unexpected_null(col: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: "unexpected NULL".into(),
    }
}

/// Reads a `TEXT` column.
pub(crate) fn text(row: &impl Columns, col: &str) -> Result<String, sqlx::Error> {
    row.opt_text_column(col)?
        .ok_or_else(|| unexpected_null(col))
}

/// Reads a nullable `TEXT` column.
pub(crate) fn opt_text(row: &impl Columns, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.opt_text_column(col)
}

/// Reads a `BIGINT` column.
pub(crate) fn int(row: &impl Columns, col: &str) -> Result<i64, sqlx::Error> {
    row.opt_int_column(col)?.ok_or_else(|| unexpected_null(col))
}

/// Reads a nullable `BIGINT` column.
pub(crate) fn opt_int(row: &impl Columns, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.opt_int_column(col)
}

/// Databases for unit tests that must hold on both engines.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]

    use super::Db;

    /// A SQLite database in `dir` and, when `CUSTODY_TEST_POSTGRES_URL` names a server, a
    /// connection to it (its absence fails in CI and with `CUSTODY_REQUIRE_POSTGRES`).
    pub(crate) async fn both_engines(dir: &tempfile::TempDir) -> Vec<Db> {
        let url = format!("sqlite://{}/unit.db?mode=rwc", dir.path().display());
        let mut dbs = vec![Db::connect(&url, 1).await.unwrap()];
        match std::env::var("CUSTODY_TEST_POSTGRES_URL") {
            Ok(url) => dbs.push(Db::connect(&url, 2).await.unwrap()),
            Err(_) => assert!(
                std::env::var_os("CI").is_none()
                    && std::env::var_os("CUSTODY_REQUIRE_POSTGRES").is_none(),
                "CUSTODY_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL with .ci/postgres.sh"
            ),
        }
        dbs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{int, opt_text, renumber, text, Db, Reads, Writes};

    /// Runs the batch on `db` against a temporary table of the transaction's connection.
    async fn batch_of_reads(db: &Db) {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TEMPORARY TABLE reads_t (n BIGINT PRIMARY KEY, s TEXT)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO reads_t (n, s) VALUES (1, 'one'), (2, NULL), (3, 'three')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut reads = Reads::new();
        let none = reads.push("SELECT n FROM reads_t WHERE n > $1");
        reads.bind(10i64);
        let two = reads.push("SELECT n, s FROM reads_t WHERE n >= $1 AND n <= $2 ORDER BY n DESC");
        reads.bind(2i64).bind(3i64);
        let count = reads.push("SELECT COUNT(*) AS c FROM reads_t WHERE s IS NULL OR s = $1");
        reads.bind("one".to_owned());
        let mut rows = reads.run(&mut tx).await.unwrap();
        assert!(rows.take(none).is_empty());
        let two = rows.take(two);
        assert_eq!(two.len(), 2);
        assert_eq!(int(&two[0], "n").unwrap(), 3);
        assert_eq!(text(&two[0], "s").unwrap(), "three");
        assert_eq!(int(&two[1], "n").unwrap(), 2);
        assert_eq!(opt_text(&two[1], "s").unwrap(), None);
        assert!(text(&two[1], "s").is_err(), "NULL is not text");
        assert_eq!(int(&rows.take(count)[0], "c").unwrap(), 2);
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_of_reads_gives_each_statement_its_own_rows_in_order() {
        // PostgreSQL builds one statement of JSON columns instead.
        let dir = tempfile::tempdir().unwrap();
        for db in super::testing::both_engines(&dir).await {
            batch_of_reads(&db).await;
        }
    }

    /// A batch with counted statements on `db`: each reports its own changed rows and the
    /// others still run; one counted statement alone reports its rows too.
    async fn counted_writes(db: &Db) {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TEMPORARY TABLE writes_t (n BIGINT PRIMARY KEY, s TEXT)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO writes_t (n, s) VALUES (1, 'a'), (2, 'a'), (3, 'b')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut w = Writes::new();
        w.push("INSERT INTO writes_t (n, s) VALUES ($1, $2)")
            .bind(10i64)
            .bind("new".to_owned());
        w.push("UPDATE writes_t SET s = $1 WHERE s = $2")
            .bind("c".to_owned())
            .bind("a".to_owned());
        let two = w.count_rows();
        w.push("UPDATE writes_t SET s = $1 WHERE n = $2")
            .bind("d".to_owned())
            .bind(99i64);
        let none = w.count_rows();
        w.push("DELETE FROM writes_t WHERE n = $1").bind(3i64);
        let changed = w.run(&mut tx).await.unwrap();
        assert_eq!(changed.rows(two), 2);
        assert_eq!(changed.rows(none), 0);
        let rows = sqlx::query("SELECT n, s FROM writes_t ORDER BY n")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let got: Vec<(i64, String)> = rows
            .iter()
            .map(|r| (int(r, "n").unwrap(), text(r, "s").unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![(1, "c".into()), (2, "c".into()), (10, "new".into())]
        );
        // One counted statement alone.
        let mut w = Writes::new();
        w.push("UPDATE writes_t SET s = $1 WHERE n >= $2")
            .bind("e".to_owned())
            .bind(2i64);
        let both = w.count_rows();
        assert_eq!(w.run(&mut tx).await.unwrap().rows(both), 2);
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn counted_writes_report_each_statements_rows_on_both_engines() {
        let dir = tempfile::tempdir().unwrap();
        for db in super::testing::both_engines(&dir).await {
            counted_writes(&db).await;
        }
    }

    #[tokio::test]
    async fn a_batch_with_a_missing_value_is_refused_before_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        let mut reads = Reads::new();
        reads.push("SELECT 1 AS a WHERE $1 = $2");
        reads.bind(1i64);
        reads.push("SELECT 2 AS b");
        let mut tx = db.begin().await.unwrap();
        let e = reads.run(&mut tx).await.unwrap_err();
        assert!(e.to_string().contains("2 placeholders but 1 values"), "{e}");
    }

    #[test]
    fn placeholders_are_renumbered_after_the_ones_before() {
        assert_eq!(
            renumber("INSERT INTO t (a, b) VALUES ($1, $2)", 3),
            ("INSERT INTO t (a, b) VALUES ($4, $5)".to_owned(), 2)
        );
        assert_eq!(
            renumber("UPDATE t SET a = $2 WHERE b = $1 AND c < $2 AND d = $10", 0),
            (
                "UPDATE t SET a = $2 WHERE b = $1 AND c < $2 AND d = $10".to_owned(),
                10
            )
        );
        assert_eq!(renumber("SELECT 1", 7), ("SELECT 1".to_owned(), 0));
    }
}
