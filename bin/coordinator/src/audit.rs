//! The hash-chained audit log.
//!
//! Every security event, decision and state transition appends one entry in the same
//! database transaction as the change it records ([`append`]): the entry commits with the
//! change or not at all. It is written to `audit_pending` first, without a sequence number
//! or hash, so that concurrent transactions do not queue on one row while they commit;
//! [`chain_pending`] — run by the daemon every quarter second, by every worker tick, and
//! before anything reads, verifies or exports the log — moves pending entries into
//! `audit_log` in batches, in the order they were written, giving each its sequence number
//! and hash. Entry `n` stores
//! `hash_n = SHA-256(tag ‖ tag ‖ hash_{n-1} ‖ u64(n) ‖ i64(at) ‖ lp(kind) ‖ lp(actor) ‖
//! lp(subject) ‖ lp(data))` (BIP340-style tagged hash, tag `CoinPort/coordinator/audit`,
//! `lp` = u32 big-endian length prefix), so editing, removing or reordering any entry
//! breaks every later hash. The `audit_head` row holds the last sequence number and hash:
//! the chainer updates it first, which serialises chainers across processes (a row lock on
//! PostgreSQL, the write lock on SQLite), and it lets [`verify`] notice entries cut off the
//! end. An entry is protected by the chain from the moment it is chained, normally well
//! under a second after its commit; `docs/threat-model.md` discusses that window.
//!
//! Checkpoints ([`Checkpoint`]) are the head signed by the coordinator's identity key, to be
//! kept off the box; verifying the log against an old checkpoint shows that history up to
//! it was not rewritten.

use std::io::Write;

use custody_threshold::{Identity, IdentityCard, SigningDomain};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use thiserror::Error;

use crate::db::{int, text, Db, DbError, Tx, Writes};

/// The hash tag of audit entries.
pub const AUDIT_TAG: &str = "CoinPort/coordinator/audit";
/// The hash tag of checkpoints.
pub const CHECKPOINT_TAG: &str = "CoinPort/coordinator/audit-checkpoint";
/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// One entry as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub seq: i64,
    /// Unix time of the change.
    pub at: i64,
    /// What happened, e.g. `withdrawal.requested`.
    pub kind: String,
    /// Who did it: a principal id, `system`, `ingest` or `cli`.
    pub actor: String,
    /// What it happened to: a withdrawal or principal id.
    pub subject: String,
    /// Details, as a JSON document (never secrets or personal data).
    pub data: String,
    /// Hex of the previous entry's hash.
    pub prev_hash: String,
    /// Hex of this entry's hash.
    pub hash: String,
}

fn tagged(tag: &str) -> Sha256 {
    let t = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(t);
    h.update(t);
    h
}

fn lp(h: &mut Sha256, s: &str) {
    h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(s.as_bytes());
}

/// Computes an entry's hash from its predecessor's and its content.
pub fn entry_hash(
    prev: &[u8; 32],
    seq: i64,
    at: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &str,
) -> [u8; 32] {
    let mut h = tagged(AUDIT_TAG);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    lp(&mut h, kind);
    lp(&mut h, actor);
    lp(&mut h, subject);
    lp(&mut h, data);
    h.finalize().into()
}

/// Appends an entry inside `tx`; it commits with the caller's change and is chained by
/// the next [`chain_pending`].
///
/// # Errors
/// [`DbError`]; the caller's transaction then rolls back with the change it records.
pub async fn append(
    tx: &mut Tx<'_>,
    at: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &serde_json::Value,
) -> Result<(), DbError> {
    let mut w = Writes::new();
    append_to(&mut w, at, kind, actor, subject, data);
    w.run(tx).await.map(drop)
}

/// [`append`] into a batch of writes the caller runs in its transaction.
pub(crate) fn append_to(
    w: &mut Writes,
    at: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &serde_json::Value,
) {
    // Version 7 ids sort by creation time (monotonic within a process), so entries written
    // in one transaction are chained in the order they were written.
    w.push(
        "INSERT INTO audit_pending (id, at, kind, actor, subject, data) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(at)
    .bind(kind.to_owned())
    .bind(actor.to_owned())
    .bind(subject.to_owned())
    .bind(data.to_string());
}

/// How many pending entries one chaining transaction takes.
const CHAIN_BATCH: i64 = 500;

/// The sizes of the groups of entries written in one round trip, largest first (8
/// values each: 512 at most, below both databases' limits on bound values).
const CHAIN_GROUPS: [usize; 4] = [64, 16, 4, 1];

/// A pending entry with its place in the chain.
struct Chained {
    pending_id: String,
    seq: i64,
    at: i64,
    kind: String,
    actor: String,
    subject: String,
    data: String,
    prev_hash: String,
    hash: String,
}

/// Chains every committed pending entry: assigns sequence numbers and hashes in batches,
/// each batch in one short transaction under the head row, and returns how many it chained.
///
/// Safe to run from several tasks and processes at once: the head row serialises them, and
/// each removes exactly the pending rows it chained.
///
/// # Errors
/// [`DbError`]; a failed batch rolls back whole and its entries stay pending.
pub async fn chain_pending(db: &Db) -> Result<u64, DbError> {
    let mut chained = 0u64;
    loop {
        let any = sqlx::query("SELECT id FROM audit_pending LIMIT 1")
            .fetch_optional(db.pool())
            .await?;
        if any.is_none() {
            return Ok(chained);
        }
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let mut seq = int(&head, "seq")?;
        let mut prev_hex = text(&head, "hash")?;
        let rows = sqlx::query(
            "SELECT id, at, kind, actor, subject, data FROM audit_pending ORDER BY id LIMIT $1",
        )
        .bind(CHAIN_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // Another chainer took them while this one waited for the head.
            tx.rollback().await?;
            return Ok(chained);
        }
        let mut chained_rows = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind = text(row, "kind")?;
            let actor = text(row, "actor")?;
            let subject = text(row, "subject")?;
            let data = text(row, "data")?;
            let at = int(row, "at")?;
            seq += 1;
            let prev = decode_hash(&prev_hex).unwrap_or(GENESIS_HASH);
            let hash = hex::encode(entry_hash(&prev, seq, at, &kind, &actor, &subject, &data));
            let prev_hash = std::mem::replace(&mut prev_hex, hash.clone());
            chained_rows.push(Chained {
                pending_id: text(row, "id")?,
                seq,
                at,
                kind,
                actor,
                subject,
                data,
                prev_hash,
                hash,
            });
        }
        // A round trip per group of entries instead of two per entry; the groups have a
        // few fixed sizes so that the statements' shapes (and prepared plans) stay few.
        let mut rest = chained_rows.as_slice();
        while !rest.is_empty() {
            let size = CHAIN_GROUPS
                .iter()
                .copied()
                .find(|g| *g <= rest.len())
                .unwrap_or(1);
            let (group, after) = rest.split_at(size);
            rest = after;
            let mut w = Writes::new();
            let values: Vec<String> = (0..size)
                .map(|i| {
                    let p = 8 * i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7,
                        p + 8
                    )
                })
                .collect();
            w.push(&format!(
                "INSERT INTO audit_log (seq, at, kind, actor, subject, data, prev_hash, hash) \
                 VALUES {}",
                values.join(", ")
            ));
            for c in group {
                w.bind(c.seq)
                    .bind(c.at)
                    .bind(c.kind.clone())
                    .bind(c.actor.clone())
                    .bind(c.subject.clone())
                    .bind(c.data.clone())
                    .bind(c.prev_hash.clone())
                    .bind(c.hash.clone());
            }
            let ids: Vec<String> = (1..=size).map(|i| format!("${i}")).collect();
            w.push(&format!(
                "DELETE FROM audit_pending WHERE id IN ({})",
                ids.join(", ")
            ));
            let deleted = w.count_rows();
            for c in group {
                w.bind(c.pending_id.clone());
            }
            let changed = w.run(&mut tx).await?;
            if changed.rows(deleted) != size as u64 {
                // The head row serialises chainers, so this is a pending entry that went
                // away under it: chain nothing of this batch.
                tx.rollback().await?;
                return Err(DbError::Sqlx(sqlx::Error::Protocol(format!(
                    "{} of {size} pending audit entries were still there to chain",
                    changed.rows(deleted)
                ))));
            }
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev_hex)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        chained += rows.len() as u64;
    }
}

fn decode_hash(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// Reads entries with `seq > after`, at most `limit`, in order, after chaining what is
/// pending.
///
/// # Errors
/// [`DbError`].
pub async fn entries(db: &Db, after: i64, limit: i64) -> Result<Vec<Entry>, DbError> {
    chain_pending(db).await?;
    chained_entries(db, after, limit).await
}

async fn chained_entries(db: &Db, after: i64, limit: i64) -> Result<Vec<Entry>, DbError> {
    let rows = sqlx::query(
        "SELECT seq, at, kind, actor, subject, data, prev_hash, hash FROM audit_log \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                seq: int(r, "seq")?,
                at: int(r, "at")?,
                kind: text(r, "kind")?,
                actor: text(r, "actor")?,
                subject: text(r, "subject")?,
                data: text(r, "data")?,
                prev_hash: text(r, "prev_hash")?,
                hash: text(r, "hash")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// What is wrong with the log.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditBreak {
    /// An entry's content does not match its hash (edited).
    #[error("audit entry {seq} was altered: its content does not match its hash")]
    Altered {
        /// The entry.
        seq: i64,
    },
    /// An entry does not point at its predecessor (removed or reordered before it).
    #[error("audit entry {seq} does not follow entry {expected_prev}: entries were removed or reordered")]
    Broken {
        /// The entry.
        seq: i64,
        /// The entry it should follow.
        expected_prev: i64,
    },
    /// The log ends before the head says it does (entries cut off the end).
    #[error("audit log ends at entry {last} but its head records {head}: entries were removed")]
    Truncated {
        /// The last entry present.
        last: i64,
        /// The head's sequence number.
        head: i64,
    },
    /// The head's hash does not match the last entry.
    #[error("audit head does not match entry {seq}")]
    HeadMismatch {
        /// The last entry.
        seq: i64,
    },
    /// A checkpoint's entry is missing or differs.
    #[error("checkpoint at entry {seq} does not match the log: history before it was rewritten")]
    CheckpointMismatch {
        /// The checkpoint's sequence number.
        seq: i64,
    },
    /// A checkpoint's signature does not verify.
    #[error("checkpoint at entry {seq} is not signed by coordinator {fingerprint}")]
    CheckpointSignature {
        /// The checkpoint's sequence number.
        seq: i64,
        /// The expected signer.
        fingerprint: String,
    },
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Entries checked.
    pub entries: i64,
    /// Hex of the last hash.
    pub head_hash: String,
}

/// Why verification could not complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log is damaged.
    #[error(transparent)]
    Break(#[from] AuditBreak),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Chains what is pending, then recomputes the whole chain and compares it with the head.
///
/// # Errors
/// [`VerifyError::Break`] naming the first bad entry.
pub async fn verify(db: &Db) -> Result<Verified, VerifyError> {
    const PAGE: i64 = 5000;
    chain_pending(db).await?;
    let mut prev = GENESIS_HASH;
    let mut expected_seq = 1;
    loop {
        let page = chained_entries(db, expected_seq - 1, PAGE).await?;
        // A gap makes `entries` skip ahead; the first entry's seq tells us.
        for e in &page {
            if e.seq != expected_seq || e.prev_hash != hex::encode(prev) {
                return Err(AuditBreak::Broken {
                    seq: e.seq,
                    expected_prev: expected_seq - 1,
                }
                .into());
            }
            let h = entry_hash(&prev, e.seq, e.at, &e.kind, &e.actor, &e.subject, &e.data);
            if hex::encode(h) != e.hash {
                return Err(AuditBreak::Altered { seq: e.seq }.into());
            }
            prev = h;
            expected_seq += 1;
        }
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    let last = expected_seq - 1;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(db.pool())
        .await
        .map_err(DbError::from)?;
    let head_seq = int(&head, "seq").map_err(DbError::from)?;
    if head_seq != last {
        return Err(AuditBreak::Truncated {
            last,
            head: head_seq,
        }
        .into());
    }
    if text(&head, "hash").map_err(DbError::from)? != hex::encode(prev) {
        return Err(AuditBreak::HeadMismatch { seq: last }.into());
    }
    Ok(Verified {
        entries: last,
        head_hash: hex::encode(prev),
    })
}

/// Chains what is pending, then writes every entry as JSON Lines.
///
/// # Errors
/// [`DbError`] or an I/O error (as `DbError::Sqlx(Io)`).
pub async fn export<W: Write>(db: &Db, out: &mut W) -> Result<i64, DbError> {
    chain_pending(db).await?;
    let mut after = 0;
    loop {
        let page = chained_entries(db, after, 5000).await?;
        if page.is_empty() {
            return Ok(after);
        }
        for e in &page {
            let line = serde_json::to_string(e).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            writeln!(out, "{line}").map_err(sqlx::Error::Io)?;
            after = e.seq;
        }
    }
}

/// A signed statement of the log's head, kept off the box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last entry covered.
    pub seq: i64,
    /// Hex of its hash.
    pub hash: String,
    /// When the checkpoint was made.
    pub at: i64,
    /// The coordinator's identity card (hex of its encoding).
    pub coordinator_card: String,
    /// Hex of the BIP340 signature over the checkpoint digest.
    pub signature: String,
}

fn checkpoint_digest(seq: i64, hash: &str, at: i64) -> [u8; 32] {
    let mut h = tagged(CHECKPOINT_TAG);
    h.update(seq.to_be_bytes());
    lp(&mut h, hash);
    h.update(at.to_be_bytes());
    h.finalize().into()
}

/// Verifies the chain and signs its head.
///
/// # Errors
/// [`VerifyError`] if the log is damaged; nothing is signed then.
pub async fn checkpoint(db: &Db, identity: &Identity, at: i64) -> Result<Checkpoint, VerifyError> {
    let v = verify(db).await?;
    let digest = checkpoint_digest(v.entries, &v.head_hash, at);
    let signature = identity.sign_in_domain(SigningDomain::Policy, &digest, &mut rand_core::OsRng);
    Ok(Checkpoint {
        seq: v.entries,
        hash: v.head_hash,
        at,
        coordinator_card: hex::encode(identity.card().encode()),
        signature: hex::encode(signature),
    })
}

/// Checks a checkpoint's signature against `coordinator` and that the log still holds its
/// entry unchanged (after verifying the chain).
///
/// # Errors
/// [`AuditBreak::CheckpointSignature`] or [`AuditBreak::CheckpointMismatch`].
pub async fn verify_checkpoint(
    db: &Db,
    cp: &Checkpoint,
    coordinator: &IdentityCard,
) -> Result<(), VerifyError> {
    let sig: Option<[u8; 64]> = hex::decode(&cp.signature)
        .ok()
        .and_then(|v| v.try_into().ok());
    let ok = sig.is_some_and(|s| {
        coordinator.verify_in_domain(
            SigningDomain::Policy,
            &checkpoint_digest(cp.seq, &cp.hash, cp.at),
            &s,
        )
    });
    if !ok {
        return Err(AuditBreak::CheckpointSignature {
            seq: cp.seq,
            fingerprint: coordinator.fingerprint(),
        }
        .into());
    }
    verify(db).await?;
    let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(cp.seq)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
    match row {
        Some(r) if r.try_get::<String, _>("hash").map_err(DbError::from)? == cp.hash => Ok(()),
        _ => Err(AuditBreak::CheckpointMismatch { seq: cp.seq }.into()),
    }
}
