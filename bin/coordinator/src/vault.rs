//! The coordinator's key file for data at rest (`custody-vault`): KYC records, TOTP
//! secrets and other secrets it keeps in the database are sealed with a data key per
//! record, wrapped by the current key-encryption key (KEK) of this file.
//!
//! The file lives at `vault.key_file` (default `<data_dir>/vault.key`, created with mode
//! 0600 on first start). Key rotation (`custody-coordinator vault rotate`) adds a KEK to
//! the file and re-wraps every row while the daemon keeps serving: a running daemon that
//! meets a blob under a KEK it does not know re-reads the file once and tries again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use custody_vault::{
    KekId, KycRecord, OpenError, ParseBlobError, Purpose, SealError, SealedBlob, VaultKeys,
};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::db::{int, text, Db, DbError};
use crate::error::ApiError;

/// The default file name of the key file in `data_dir`.
pub const VAULT_KEY_FILE: &str = "vault.key";

/// One database column of sealed blobs: what `vault status`, `vault rotate` and `vault
/// retire` walk. The blob in `blob_column` is sealed with `purpose` for the record id
/// `record_prefix + <id_column> + record_suffix` (its UTF-8 bytes). When `kek_column`
/// (BIGINT) is set it always names the KEK that wraps the blob, so rotation progress is
/// one `GROUP BY`; small tables without one are read blob by blob. NULL blobs are skipped.
#[derive(Clone, Copy, Debug)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// Its primary key (TEXT).
    pub id_column: &'static str,
    /// The sealed blob, base64 TEXT.
    pub blob_column: &'static str,
    /// The KEK id of the blob, BIGINT, if the table keeps one.
    pub kek_column: Option<&'static str>,
    /// What the blobs hold.
    pub purpose: Purpose,
    /// Text before the id in the record id.
    pub record_prefix: &'static str,
    /// Text after the id in the record id.
    pub record_suffix: &'static str,
}

impl SealedColumn {
    /// The record id a row's blob is sealed for.
    pub fn record_id(&self, id: &str) -> String {
        format!("{}{id}{}", self.record_prefix, self.record_suffix)
    }
}

/// Every sealed column in the schema: rotation, status and retirement cover each. (Links,
/// addresses and phone numbers waiting in the outbox, and the new address of a pending
/// email change, are sealed inside JSON payloads; `vault retire` checks them separately.)
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "kyc_records",
        id_column: "id",
        blob_column: "sealed",
        kek_column: Some("kek_id"),
        purpose: Purpose::KycRecord,
        record_prefix: "",
        record_suffix: "",
    },
    SealedColumn {
        table: "principals",
        id_column: "id",
        blob_column: "totp_secret",
        kek_column: None,
        purpose: Purpose::TotpSecret,
        record_prefix: "principals/",
        record_suffix: "/totp_secret",
    },
    SealedColumn {
        table: "principals",
        id_column: "id",
        blob_column: "email_sealed",
        kek_column: None,
        purpose: Purpose::Secret,
        record_prefix: "principals/",
        record_suffix: "/email",
    },
    SealedColumn {
        table: "principals",
        id_column: "id",
        blob_column: "phone_sealed",
        kek_column: None,
        purpose: Purpose::Secret,
        record_prefix: "principals/",
        record_suffix: "/phone",
    },
    SealedColumn {
        table: "principals",
        id_column: "id",
        blob_column: "anti_phishing_code",
        kek_column: None,
        purpose: Purpose::Secret,
        record_prefix: "anti_phishing_code:",
        record_suffix: "",
    },
    SealedColumn {
        table: "api_keys",
        id_column: "id",
        blob_column: "secret_sealed",
        kek_column: None,
        purpose: Purpose::Secret,
        record_prefix: "api_keys/",
        record_suffix: "/secret",
    },
    SealedColumn {
        table: "coordinator_secrets",
        id_column: "name",
        blob_column: "sealed",
        kek_column: None,
        purpose: Purpose::Secret,
        record_prefix: "coordinator_secrets/",
        record_suffix: "",
    },
];

/// Why a sealed value did not open. Never contains plaintext or key material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenSealedError {
    /// The stored text is not a sealed blob.
    #[error("the stored value is damaged: {0}")]
    Damaged(ParseBlobError),
    /// The blob did not open (another record id, altered, unknown KEK...).
    #[error("{0}")]
    Open(OpenError),
    /// The key file could not be re-read to find a newer KEK.
    #[error("{0}")]
    Reload(String),
}

/// What identifies the key file on disk, to notice a rotation by another process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// The loaded key file, reloadable while running.
pub struct Vault {
    path: PathBuf,
    keys: RwLock<Arc<VaultKeys>>,
    stamp: Mutex<Option<FileStamp>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the key file at `path`, creating a new key set (mode 0600) when it does not
    /// exist.
    ///
    /// # Errors
    /// An unreadable, damaged or world-readable key file, or one that cannot be written.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if !path.exists() {
            VaultKeys::generate()
                .write_new(path)
                .with_context(|| format!("creating the vault key file {}", path.display()))?;
        }
        let stamp = stamp_of(path);
        let keys = VaultKeys::load(path).context("loading the vault key file")?;
        Ok(Vault {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            stamp: Mutex::new(stamp),
        })
    }

    /// Where the key file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys as last loaded.
    pub fn keys(&self) -> Arc<VaultKeys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the key file (after a rotation by another process).
    ///
    /// # Errors
    /// The file cannot be read, or holds another key set (then the old keys stay).
    pub fn reload(&self) -> Result<()> {
        let stamp = stamp_of(&self.path);
        let fresh = VaultKeys::load(&self.path).context("re-reading the vault key file")?;
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fresh.key_set_id() != keys.key_set_id() {
            anyhow::bail!(
                "the vault key file {} now holds key set {}, not {}; restart the daemon after replacing key files",
                self.path.display(),
                fresh.key_set_id(),
                keys.key_set_id()
            );
        }
        *keys = Arc::new(fresh);
        *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        Ok(())
    }

    /// The keys to seal with: the file is re-read first if it changed on disk since it was
    /// last read (one `stat`), so a daemon seals under the new KEK as soon as `vault
    /// rotate` has written it. A file that cannot be re-read leaves the loaded keys in use
    /// (logged): sealing under the previous KEK is still correct, and `vault retire`
    /// refuses to remove a KEK that any row still uses.
    pub fn sealing_keys(&self) -> Arc<VaultKeys> {
        let now = stamp_of(&self.path);
        let known = *self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.is_some() && now != known {
            if let Err(e) = self.reload() {
                tracing::warn!(error = %format!("{e:#}"), "the vault key file changed but could not be re-read; sealing with the keys loaded before");
            }
        }
        self.keys()
    }

    /// Validates and seals a KYC record for the row `record_id`; returns the base64 text
    /// and the KEK that wraps its data key.
    ///
    /// # Errors
    /// [`SealError::Kyc`] when the record breaks a size or format rule (names the field,
    /// never the value); other variants are programming errors.
    pub fn seal_kyc(
        &self,
        record_id: &str,
        record: &KycRecord,
    ) -> Result<(String, KekId), SealError> {
        let blob = self.sealing_keys().seal_kyc(record_id.as_bytes(), record)?;
        Ok((blob.to_text(), blob.kek_id()))
    }

    /// Opens a KYC record sealed by [`seal_kyc`](Self::seal_kyc) for `record_id`,
    /// re-reading the key file once if the blob names a KEK not loaded yet.
    ///
    /// # Errors
    /// [`OpenSealedError`]: a damaged blob, a blob of another record (row moved or
    /// copied), an altered blob, a KEK no longer in the file.
    pub fn open_kyc(&self, record_id: &str, text: &str) -> Result<KycRecord, OpenSealedError> {
        let blob = SealedBlob::from_text(text).map_err(OpenSealedError::Damaged)?;
        self.with_reload(|keys| keys.open_kyc(record_id.as_bytes(), &blob))
    }

    /// Re-wraps a stored blob under the current KEK (rotation); `None` when it already is.
    ///
    /// # Errors
    /// As [`open_kyc`](Self::open_kyc), without the ciphertext check (only the data key is
    /// unwrapped).
    pub fn rewrap_text(
        &self,
        purpose: Purpose,
        record_id: &str,
        text: &str,
    ) -> Result<Option<(String, KekId)>, OpenSealedError> {
        let blob = SealedBlob::from_text(text).map_err(OpenSealedError::Damaged)?;
        let keys = self.keys();
        if blob.kek_id() == keys.current_kek_id() {
            return Ok(None);
        }
        let fresh = keys
            .rewrap(purpose, record_id.as_bytes(), &blob)
            .map_err(OpenSealedError::Open)?;
        Ok(Some((fresh.to_text(), fresh.kek_id())))
    }

    fn with_reload<T>(
        &self,
        op: impl Fn(&VaultKeys) -> Result<T, OpenError>,
    ) -> Result<T, OpenSealedError> {
        match op(&self.keys()) {
            Err(OpenError::UnknownKek { .. }) => {
                self.reload()
                    .map_err(|e| OpenSealedError::Reload(format!("{e:#}")))?;
                op(&self.keys()).map_err(OpenSealedError::Open)
            }
            other => other.map_err(OpenSealedError::Open),
        }
    }

    /// Seals `plaintext` for the row `record_id`, as base64 text for a `TEXT` column.
    ///
    /// # Errors
    /// 500 when the record id or plaintext is out of range (a programming error).
    pub fn seal_text(
        &self,
        purpose: Purpose,
        record_id: &str,
        plaintext: &[u8],
    ) -> Result<String, ApiError> {
        self.sealing_keys()
            .seal(purpose, record_id.as_bytes(), plaintext)
            .map(|b| b.to_text())
            .map_err(|e| ApiError::internal(format!("sealing a secret: {e}")))
    }

    /// Opens base64 text sealed by [`seal_text`](Self::seal_text) for `record_id`. A blob
    /// under a KEK this process has not loaded yet makes it re-read the key file once.
    ///
    /// # Errors
    /// 500 saying why (never with plaintext): a damaged blob, a row moved to another
    /// record, or a KEK no longer in the file.
    pub fn open_text(
        &self,
        purpose: Purpose,
        record_id: &str,
        text: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let blob = SealedBlob::from_text(text)
            .map_err(|e| ApiError::internal(format!("a sealed value is damaged: {e}")))?;
        match self.keys().open(purpose, record_id.as_bytes(), &blob) {
            Err(OpenError::UnknownKek { .. }) => {
                self.reload().map_err(ApiError::internal)?;
                self.keys().open(purpose, record_id.as_bytes(), &blob)
            }
            other => other,
        }
        .map_err(|e| ApiError::internal(format!("opening a sealed value: {e}")))
    }
}

impl Vault {
    /// Opens text sealed by [`seal_text`](Self::seal_text) for `record_id` as a string.
    ///
    /// # Errors
    /// As [`open_text`](Self::open_text), and 500 when the plaintext is not UTF-8.
    pub fn open_string(
        &self,
        purpose: Purpose,
        record_id: &str,
        text: &str,
    ) -> Result<String, ApiError> {
        let bytes = self.open_text(purpose, record_id, text)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::internal("a sealed value is not UTF-8"))
    }
}

/// How many rows of one sealed column are wrapped under one KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekCount {
    /// The table.
    pub table: &'static str,
    /// `table.column`.
    pub column: String,
    /// The KEK id.
    pub kek_id: i64,
    /// Rows under it.
    pub rows: i64,
}

/// Rows per KEK per table, over [`SEALED_COLUMNS`].
///
/// # Errors
/// Storage failure.
pub async fn status(db: &Db) -> Result<Vec<KekCount>, DbError> {
    let mut out = Vec::new();
    for c in SEALED_COLUMNS {
        let column = format!("{}.{}", c.table, c.blob_column);
        let Some(k) = c.kek_column else {
            let rows = sqlx::query(&format!(
                "SELECT {b} AS blob FROM {t} WHERE {b} IS NOT NULL",
                b = c.blob_column,
                t = c.table
            ))
            .fetch_all(db.pool())
            .await?;
            let mut counts: std::collections::BTreeMap<i64, i64> = Default::default();
            for r in &rows {
                // A damaged blob counts under KEK 0, which never exists: it shows up.
                let kek =
                    SealedBlob::from_text(&text(r, "blob")?).map_or(0, |b| i64::from(b.kek_id().0));
                *counts.entry(kek).or_default() += 1;
            }
            for (kek_id, rows) in counts {
                out.push(KekCount {
                    table: c.table,
                    column: column.clone(),
                    kek_id,
                    rows,
                });
            }
            continue;
        };
        let rows = sqlx::query(&format!(
            "SELECT {k} AS kek, COUNT(*) AS n FROM {t} GROUP BY {k} ORDER BY {k}",
            t = c.table
        ))
        .fetch_all(db.pool())
        .await?;
        for r in &rows {
            out.push(KekCount {
                table: c.table,
                column: column.clone(),
                kek_id: int(r, "kek")?,
                rows: int(r, "n")?,
            });
        }
    }
    Ok(out)
}

/// A row `vault rotate` could not re-wrap (it stays under its old KEK).
#[derive(Clone, Debug)]
pub struct RewrapFailure {
    /// The table.
    pub table: &'static str,
    /// The row's id (a record id, not personal data).
    pub id: String,
    /// Why, without plaintext.
    pub reason: String,
}

/// What a rotation did.
#[derive(Clone, Debug, Default)]
pub struct RotateReport {
    /// The KEK this run added, or `None` when it finished an earlier, interrupted run.
    pub added: Option<KekId>,
    /// The current KEK at the end.
    pub current: Option<KekId>,
    /// Rows re-wrapped.
    pub rewrapped: u64,
    /// Rows changed by someone else between read and write: re-read, never overwritten.
    pub reread: u64,
    /// Rows that could not be re-wrapped.
    pub failed: Vec<RewrapFailure>,
    /// Rows still not under the current KEK at the end (per table and KEK).
    pub remaining: Vec<KekCount>,
}

/// Rows per re-wrap transaction, and the most blob text one transaction carries.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Full passes over a table before giving up on rows that keep changing under it.
const MAX_PASSES: usize = 10;

/// Holds `<key file>.rotate-lock` (created exclusively) while a rotation or retirement
/// changes the key file: two concurrent runs would each add a different KEK with the
/// same id, and the second file would strand every blob the first one wrapped.
struct RotationLock(PathBuf);

impl RotationLock {
    fn take(key_file: &Path) -> Result<Self> {
        let mut name = key_file.as_os_str().to_owned();
        name.push(".rotate-lock");
        let path = PathBuf::from(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "another `vault rotate` or `vault retire` holds {}; if none is running (a crash), delete that file and run the command again",
                    path.display()
                )
            })?;
        Ok(RotationLock(path))
    }
}

impl Drop for RotationLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Key rotation without downtime: adds a KEK to the key file (it becomes current; the old
/// ones stay and still open), then re-wraps the data key of every row of
/// [`SEALED_COLUMNS`] that is not under the current KEK, in batches, each row written with
/// compare-and-set on its old blob text, so a row the daemon changed meanwhile is re-read,
/// never overwritten. Ciphertexts are not touched.
///
/// Resumable and idempotent: when rows are still under older KEKs (an interrupted run, or
/// a daemon that sealed under the previous KEK before it noticed the new file), no KEK is
/// added and the run only finishes re-wrapping them. A new KEK is added only when every
/// row is already under the current one.
///
/// # Errors
/// The key file cannot be read, locked or replaced, or storage fails. Rows that cannot be
/// re-wrapped (damaged, under a KEK no longer in the file) are not errors: they are listed
/// in [`RotateReport::failed`].
pub async fn rotate(db: &Db, vault: &Vault, batch: usize) -> Result<RotateReport> {
    let _lock = RotationLock::take(vault.path())?;
    vault.reload()?;
    let mut report = RotateReport::default();
    let current = vault.keys().current_kek_id();
    let before = status(db).await?;
    if !before.iter().any(|c| c.kek_id != i64::from(current.0)) {
        let mut keys = VaultKeys::load(vault.path()).context("loading the vault key file")?;
        let added = keys
            .add_kek()
            .context("adding a key-encryption key to the vault key file")?;
        keys.replace_file(vault.path())
            .context("writing the vault key file with the new key-encryption key")?;
        vault.reload()?;
        tracing::info!(kek = %added, "added a key-encryption key; it is current now");
        report.added = Some(added);
    } else {
        tracing::info!(kek = %current, "rows remain under older key-encryption keys; finishing the earlier rotation without adding a key");
    }
    let current = vault.keys().current_kek_id();
    report.current = Some(current);
    for column in SEALED_COLUMNS {
        rewrap_column(db, vault, column, current, batch.max(1), &mut report).await?;
    }
    report.remaining = status(db)
        .await?
        .into_iter()
        .filter(|c| c.kek_id != i64::from(current.0))
        .collect();
    Ok(report)
}

async fn rewrap_column(
    db: &Db,
    vault: &Vault,
    c: &SealedColumn,
    current: KekId,
    batch: usize,
    report: &mut RotateReport,
) -> Result<()> {
    let cur = i64::from(current.0);
    // Without a KEK column every non-NULL blob is read and those already under the
    // current KEK are left alone (`$1 = $1` keeps the binding order of both forms).
    let page = match c.kek_column {
        Some(k) => format!(
            "SELECT {id} AS id FROM {t} WHERE {k} <> $1 AND {id} > $2 ORDER BY {id} LIMIT $3",
            id = c.id_column,
            t = c.table,
        ),
        None => format!(
            "SELECT {id} AS id FROM {t} WHERE {b} IS NOT NULL AND $1 = $1 AND {id} > $2 ORDER BY {id} LIMIT $3",
            id = c.id_column,
            t = c.table,
            b = c.blob_column,
        ),
    };
    let read = format!(
        "SELECT {b} AS blob FROM {t} WHERE {id} = $1",
        b = c.blob_column,
        t = c.table,
        id = c.id_column
    );
    let write = match c.kek_column {
        Some(k) => format!(
            "UPDATE {t} SET {b} = $1, {k} = $2 WHERE {id} = $3 AND {b} = $4",
            t = c.table,
            b = c.blob_column,
            id = c.id_column
        ),
        None => format!(
            "UPDATE {t} SET {b} = $1 WHERE $2 = $2 AND {id} = $3 AND {b} = $4",
            t = c.table,
            b = c.blob_column,
            id = c.id_column
        ),
    };
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut failed: HashSet<String> = HashSet::new();
    for _pass in 0..MAX_PASSES {
        let mut after = String::new();
        let mut progressed = false;
        let mut conflicts = false;
        loop {
            let ids: Vec<String> = sqlx::query(&page)
                .bind(cur)
                .bind(&after)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(|r| text(r, "id"))
                .collect::<Result<_, _>>()?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            // (id, old text, new text, kek); flushed when the batch holds too much text.
            let mut pending: Vec<(String, String, String, i64)> = Vec::new();
            let mut bytes = 0usize;
            for id in ids {
                if failed.contains(&id) {
                    continue;
                }
                let Some(row) = sqlx::query(&read)
                    .bind(&id)
                    .fetch_optional(db.pool())
                    .await?
                else {
                    continue;
                };
                let old = text(&row, "blob")?;
                match vault.rewrap_text(c.purpose, &c.record_id(&id), &old) {
                    Ok(Some((new, kek))) => {
                        bytes += old.len() + new.len();
                        pending.push((id, old, new, i64::from(kek.0)));
                    }
                    // Already under the current KEK, and no KEK column to bring up to date.
                    Ok(None) if c.kek_column.is_none() => {}
                    // Already under the current KEK; only the KEK column lagged behind.
                    Ok(None) => {
                        bytes += 2 * old.len();
                        pending.push((id, old.clone(), old, cur));
                    }
                    Err(e) => {
                        tracing::error!(table = c.table, record_id = %id, error = %e, "cannot re-wrap a sealed row; it stays under its old key-encryption key");
                        report.failed.push(RewrapFailure {
                            table: c.table,
                            id: id.clone(),
                            reason: e.to_string(),
                        });
                        failed.insert(id);
                    }
                }
                if bytes >= MAX_BATCH_BYTES {
                    let (done, lost) = write_batch(db, &write, &mut pending).await?;
                    report.rewrapped += done;
                    report.reread += lost;
                    progressed |= done > 0;
                    conflicts |= lost > 0;
                    bytes = 0;
                }
            }
            let (done, lost) = write_batch(db, &write, &mut pending).await?;
            report.rewrapped += done;
            report.reread += lost;
            progressed |= done > 0;
            conflicts |= lost > 0;
            tracing::info!(
                table = c.table,
                rewrapped = report.rewrapped,
                "re-wrapped a batch"
            );
        }
        // Rows that changed under us (or were sealed under an old KEK by a daemon that had
        // not yet noticed the new key file) are picked up by another pass.
        if !conflicts && !progressed {
            break;
        }
        let Some(k) = c.kek_column else {
            continue;
        };
        let left = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {t} WHERE {k} <> $1",
            t = c.table,
        ))
        .bind(cur)
        .fetch_one(db.pool())
        .await?;
        let left = usize::try_from(int(&left, "n")?).unwrap_or(usize::MAX);
        if left <= failed.len() {
            break;
        }
    }
    Ok(())
}

/// Writes re-wrapped rows in one transaction, each with compare-and-set on its old text;
/// returns (written, changed meanwhile).
async fn write_batch(
    db: &Db,
    sql: &str,
    pending: &mut Vec<(String, String, String, i64)>,
) -> Result<(u64, u64), DbError> {
    if pending.is_empty() {
        return Ok((0, 0));
    }
    let mut tx = db.begin().await?;
    let (mut done, mut lost) = (0, 0);
    for (id, old, new, kek) in pending.iter() {
        let r = sqlx::query(sql)
            .bind(new)
            .bind(kek)
            .bind(id)
            .bind(old)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 1 {
            done += 1;
        } else {
            lost += 1;
        }
    }
    tx.commit().await?;
    pending.clear();
    Ok((done, lost))
}

/// Undelivered outbox rows whose payload holds a value sealed under `kek` (they are
/// re-sealed by no rotation: they are delivered within minutes or marked failed).
async fn outbox_links_under(db: &Db, kek: KekId) -> Result<usize, DbError> {
    let rows =
        sqlx::query("SELECT payload FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL")
            .fetch_all(db.pool())
            .await?;
    payloads_under(&rows, kek)
}

/// Unused, unexpired links whose payload holds a value sealed under `kek` (an email
/// change's new address; they expire within a day and are not re-sealed either).
async fn links_under(db: &Db, kek: KekId, now: i64) -> Result<usize, DbError> {
    let rows =
        sqlx::query("SELECT payload FROM link_tokens WHERE used_at IS NULL AND expires_at > $1")
            .bind(now)
            .fetch_all(db.pool())
            .await?;
    payloads_under(&rows, kek)
}

/// How many of `rows` have a `payload` JSON object with a `…_sealed` value under `kek`.
fn payloads_under(rows: &[sqlx::any::AnyRow], kek: KekId) -> Result<usize, DbError> {
    let mut n = 0;
    for r in rows {
        let payload: serde_json::Value =
            serde_json::from_str(&text(r, "payload")?).unwrap_or_default();
        let under = payload.as_object().is_some_and(|o| {
            o.iter().any(|(k, v)| {
                k.ends_with("_sealed")
                    && v.as_str()
                        .and_then(|t| SealedBlob::from_text(t).ok())
                        .is_some_and(|b| b.kek_id() == kek)
            })
        });
        n += usize::from(under);
    }
    Ok(n)
}

/// What `vault retire` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetireOutcome {
    /// The KEK was removed from the key file.
    Retired,
    /// Nothing was changed, for this reason.
    Refused(String),
}

/// Removes a retired KEK from the key file, only when no row of [`SEALED_COLUMNS`] is
/// wrapped under it (the last step of a rotation).
///
/// # Errors
/// The key file cannot be read, locked or replaced, or storage fails.
pub async fn retire(db: &Db, vault: &Vault, kek: KekId) -> Result<RetireOutcome> {
    let _lock = RotationLock::take(vault.path())?;
    vault.reload()?;
    let mut keys = VaultKeys::load(vault.path()).context("loading the vault key file")?;
    if !keys.kek_ids().contains(&kek) {
        return Ok(RetireOutcome::Refused(format!(
            "key-encryption key {kek} is not in the key file (it holds {})",
            keys.kek_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if kek == keys.current_kek_id() {
        return Ok(RetireOutcome::Refused(format!(
            "key-encryption key {kek} is the current one; run `vault rotate` first"
        )));
    }
    let still: Vec<String> = status(db)
        .await?
        .into_iter()
        .filter(|c| c.kek_id == i64::from(kek.0) && c.rows > 0)
        .map(|c| format!("{} rows of {}", c.rows, c.column))
        .collect();
    if !still.is_empty() {
        return Ok(RetireOutcome::Refused(format!(
            "key-encryption key {kek} still wraps {}; run `vault rotate` until `vault status` shows none under it",
            still.join(" and ")
        )));
    }
    let waiting = outbox_links_under(db, kek).await?;
    if waiting > 0 {
        return Ok(RetireOutcome::Refused(format!(
            "key-encryption key {kek} still wraps links, addresses or numbers of {waiting} notifications waiting in the outbox; retire it once they are delivered (or marked failed)"
        )));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let pending = links_under(db, kek, now).await?;
    if pending > 0 {
        return Ok(RetireOutcome::Refused(format!(
            "key-encryption key {kek} still wraps the new address of {pending} pending email changes; retire it once their links are used or expired (a day at most)"
        )));
    }
    keys.remove_kek(kek)
        .context("removing the key-encryption key")?;
    keys.replace_file(vault.path())
        .context("writing the vault key file without the retired key")?;
    vault.reload()?;
    Ok(RetireOutcome::Retired)
}
