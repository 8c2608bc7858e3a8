//! Storage: one schema for SQLite (the embedded default, WAL) and PostgreSQL, through
//! sqlx's `Any` driver and the migrations in `migrations/`.
//!
//! Portability rules the queries follow: `$1…` placeholders in order of first use,
//! `TEXT`/`BIGINT` only, no `RETURNING`, no `FOR UPDATE` (one PostgreSQL-only exception, coin
//! selection's `SKIP LOCKED`, see ADR 0011). Concurrency control is by
//! compare-and-set updates (`… WHERE id = $1 AND version = $2`, checking the affected row
//! count), which both engines make atomic; the audit log serialises appenders on its head
//! row (see [`crate::audit`]).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row};
use thiserror::Error;

/// A database transaction.
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

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
}

impl DbError {
    /// Whether retrying the whole transaction may succeed (serialization failure,
    /// deadlock, SQLite busy).
    pub fn is_retryable(&self) -> bool {
        match self {
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
    engine: Engine,
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
        Ok(Db { pool, side, engine })
    }

    /// The pool for short statements that commit on their own while the caller holds a
    /// transaction (PostgreSQL); `None` on SQLite, where the caller's transaction must be
    /// used instead.
    pub fn side_pool(&self) -> Option<&AnyPool> {
        self.side.as_ref()
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

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        if let Some(side) = &self.side {
            side.close().await;
        }
        self.pool.close().await;
    }
}

/// Reads a `TEXT` column.
pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    row.try_get::<String, _>(col)
}

/// Reads a nullable `TEXT` column.
pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(col)
}

/// Reads a `BIGINT` column.
pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(col)
}

/// Reads a nullable `BIGINT` column.
pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
}
