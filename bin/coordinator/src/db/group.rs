//! Group commit on SQLite: requests that arrive while the writer is busy share one
//! durable commit (see ADR 0023).
//!
//! SQLite has one writer, and `synchronous = FULL` makes every commit wait for the disk.
//! Instead of one commit per request, each request runs inside a savepoint of a
//! transaction the group shares; when it is done it releases its savepoint (or rolls back
//! to it, which undoes exactly that request) and waits. A committer task commits the
//! group as soon as it can take the writer after the members queued before it, and tells
//! every member the outcome; no member answers before its writes are on disk. A failed
//! commit fails every member of that group, and nothing of it is kept.
//!
//! Members are serial (they hold the group's lock from their first statement to their
//! savepoint's end), so a member sees the writes of the members before it in the same
//! group, exactly as it would after their commits; it answers only when they are durable
//! too. A member that ends without closing its savepoint (a panic) takes the whole open
//! transaction with it: the group is rolled back and its members are told so.

use std::sync::{Arc, Weak};

use sqlx::AnyPool;
use tokio::sync::{oneshot, Mutex, MutexGuard, Notify};

use super::{DbError, Tx};

/// Opens a member's savepoint; sent in front of its first statement.
pub(crate) const OPEN: &str = "SAVEPOINT request;\n";
/// Releases a member's savepoint; sent after its last statement.
pub(crate) const RELEASE: &str = "RELEASE request";

/// What a member is told when its group ends.
type Outcome = Result<(), Arc<str>>;

/// The shared transaction and who waits for its commit.
#[derive(Default)]
struct State {
    tx: Option<Tx<'static>>,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

impl State {
    /// Tells every waiter `outcome`.
    fn tell(&mut self, outcome: &Outcome) {
        for w in self.waiters.drain(..) {
            // A waiter that gave up no longer listens; nothing to tell it.
            let _ = w.send(outcome.clone());
        }
    }
}

/// The commit group of one SQLite writer.
pub(crate) struct Group {
    pool: AnyPool,
    state: Mutex<State>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Lets the committer see that the group is gone and end.
        self.wake.notify_one();
    }
}

impl Group {
    /// A group over `pool`'s writer, with its committer task running on the current
    /// Tokio runtime.
    pub(crate) fn start(pool: AnyPool) -> Arc<Group> {
        let wake = Arc::new(Notify::new());
        let group = Arc::new(Group {
            pool,
            state: Mutex::new(State::default()),
            wake: wake.clone(),
        });
        tokio::spawn(committer(Arc::downgrade(&group), wake));
        group
    }

    /// Joins the current group (beginning one if none is open); the caller has the writer
    /// until it calls [`Member::end`].
    ///
    /// # Errors
    /// [`DbError::Sqlx`] when no transaction can be begun.
    pub(crate) async fn join(&self) -> Result<Member<'_>, DbError> {
        let mut state = self.state.lock().await;
        if state.tx.is_none() && !state.waiters.is_empty() {
            // The transaction went away with a member that never ended (a panic, which
            // dropped it and so rolled it back): those waiting for it must not be told it
            // committed.
            state.tell(&Err(Arc::from(
                "the shared transaction was rolled back: a request in it stopped midway",
            )));
        }
        let tx = match state.tx.take() {
            Some(tx) => tx,
            None => self.pool.begin().await?,
        };
        Ok(Member {
            group: self,
            state,
            tx: Some(tx),
        })
    }
}

/// A request's turn with the writer: its statements run in `tx` inside a savepoint it
/// opens with its first statement ([`OPEN`]).
pub(crate) struct Member<'g> {
    group: &'g Group,
    state: MutexGuard<'g, State>,
    /// Taken out of the state for the member's turn; dropped (rolling back the whole
    /// group) if the member never ends.
    tx: Option<Tx<'static>>,
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").finish_non_exhaustive()
    }
}

impl Member<'_> {
    /// The shared transaction.
    ///
    /// # Panics
    /// Never: the transaction is only taken by [`Member::end`], which consumes the member.
    #[allow(clippy::expect_used)]
    pub(crate) fn tx(&mut self) -> &mut Tx<'static> {
        self.tx
            .as_mut()
            .expect("a member has the transaction until it ends")
    }

    /// Ends the member's turn: keeps its writes (`keep`; `released` when its last
    /// statement already carried [`RELEASE`]) or undoes them, hands the writer to the next
    /// member, and waits until the group is committed.
    ///
    /// # Errors
    /// [`DbError::Group`] when the group could not be committed (nothing of it is kept),
    /// or when closing the savepoint failed (then the whole group is rolled back).
    pub(crate) async fn end(mut self, keep: bool, released: bool) -> Result<(), DbError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(DbError::Group("a request ended twice".into()));
        };
        let close = match (keep, released) {
            (true, true) => None,
            (true, false) => Some(RELEASE),
            (false, _) => Some("ROLLBACK TO request;\nRELEASE request"),
        };
        if let Some(sql) = close {
            if let Err(e) = sqlx::query(sql).execute(&mut *tx).await {
                // The savepoint cannot be closed: what the group did so far cannot be
                // told apart from this request's writes. Roll everything back.
                let outcome: Outcome = Err(Arc::from(format!(
                    "the shared transaction was rolled back: closing a request's savepoint failed: {e}"
                )));
                let _ = tx.rollback().await;
                self.state.tell(&outcome);
                return Err(DbError::Group(format!("{e}")));
            }
        }
        let (send, receive) = oneshot::channel();
        self.state.tx = Some(tx);
        self.state.waiters.push(send);
        let group = self.group;
        drop(self);
        group.wake.notify_one();
        match receive.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(DbError::Group(reason.to_string())),
            Err(_) => Err(DbError::Group(
                "the commit group ended without an answer".into(),
            )),
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Never ended (a panic): the transaction rolls back as it drops; the committer
            // tells the waiting members.
            self.group.wake.notify_one();
        }
    }
}

/// Commits each group once the members queued before it have had their turn.
async fn committer(group: Weak<Group>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(group) = group.upgrade() else {
            return;
        };
        let mut state = group.state.lock().await;
        let outcome: Outcome = match state.tx.take() {
            Some(tx) => tx
                .commit()
                .await
                .map_err(|e| Arc::from(format!("the shared commit failed: {e}"))),
            None if state.waiters.is_empty() => continue,
            None => Err(Arc::from(
                "the shared transaction was rolled back: a request in it stopped midway",
            )),
        };
        if let Err(reason) = &outcome {
            tracing::error!(%reason, members = state.waiters.len(), "group commit failed");
        }
        state.tell(&outcome);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use crate::db::{Db, Work};

    async fn db(dir: &tempfile::TempDir) -> Db {
        let url = format!("sqlite://{}/g.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        sqlx::query("CREATE TABLE t (n BIGINT PRIMARY KEY)")
            .execute(db.pool())
            .await
            .unwrap();
        db
    }

    async fn insert(work: &mut Work<'_>, n: i64) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("{}INSERT INTO t (n) VALUES ($1)", work.opening()))
            .bind(n)
            .execute(&mut **work.tx())
            .await
            .map(drop)
    }

    async fn stored(db: &Db) -> Vec<i64> {
        sqlx::query_scalar::<_, i64>("SELECT n FROM t ORDER BY n")
            .fetch_all(db.pool())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_request_keeps_or_undoes_exactly_its_own_writes_and_answers_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(db(&dir).await);
        let mut tasks = Vec::new();
        for n in 0..60i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut work = db.begin_request().await.unwrap();
                assert!(
                    matches!(work, Work::Member(_)),
                    "SQLite requests share commits"
                );
                insert(&mut work, n).await.unwrap();
                // A second write, so that undoing covers more than one statement.
                sqlx::query("INSERT INTO t (n) VALUES ($1)")
                    .bind(n + 1000)
                    .execute(&mut **work.tx())
                    .await
                    .unwrap();
                if n % 3 == 0 {
                    work.abandon().await.unwrap();
                } else {
                    work.commit(false).await.unwrap();
                }
                // Answered: what it kept is committed, visible to a fresh connection.
                let seen: Option<i64> = sqlx::query_scalar("SELECT n FROM t WHERE n = $1")
                    .bind(n)
                    .fetch_optional(db.read_pool())
                    .await
                    .unwrap();
                assert_eq!(seen.is_some(), n % 3 != 0, "request {n}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let kept: Vec<i64> = (0..60)
            .filter(|n| n % 3 != 0)
            .chain((0..60).filter(|n| n % 3 != 0).map(|n| n + 1000))
            .collect();
        assert_eq!(stored(&db).await, kept);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_statement_undoes_only_that_request() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let mut first = db.begin_request().await.unwrap();
        insert(&mut first, 1).await.unwrap();
        let kept = tokio::spawn({
            let db = db.clone();
            async move {
                // Waits for the writer; runs in the same group as `first` when it ends
                // before the committer's turn.
                let mut second = db.begin_request().await.unwrap();
                insert(&mut second, 2).await.unwrap();
                // The primary key refuses the duplicate: this request rolls back to its
                // savepoint.
                let e = sqlx::query("INSERT INTO t (n) VALUES (1)")
                    .execute(&mut **second.tx())
                    .await;
                assert!(e.is_err());
                second.abandon().await
            }
        });
        first.commit(false).await.unwrap();
        kept.await.unwrap().unwrap();
        assert_eq!(stored(&db).await, vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_stops_midway_fails_its_whole_group_and_the_next_group_works() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        // One member ends and waits for the commit; the next one panics while it has
        // the writer.
        let mut first = db.begin_request().await.unwrap();
        insert(&mut first, 1).await.unwrap();
        let panicking = tokio::spawn({
            let db = db.clone();
            async move {
                let mut work = db.begin_request().await.unwrap();
                insert(&mut work, 2).await.unwrap();
                panic!("a request stops midway");
            }
        });
        // Let the second request queue for the writer (the lock is first come, first
        // served) before the first ends and the committer queues behind it.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (first, panicked) = tokio::join!(first.commit(false), panicking);
        assert!(panicked.is_err());
        // Told that its group was rolled back, never "kept" while lost.
        let e = first.expect_err("the group was rolled back");
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("rolled back"), "{e}");
        assert!(stored(&db).await.is_empty());
        let mut next = db.begin_request().await.unwrap();
        insert(&mut next, 3).await.unwrap();
        next.commit(false).await.unwrap();
        assert!(stored(&db).await.contains(&3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_undone_after_its_savepoint_was_released_undoes_its_whole_group() {
        // A check that fails after the batch that released the savepoint (ADR 0025): the
        // request's writes can no longer be told apart, so nothing of the group is kept.
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(db(&dir).await);
        let mut first = db.begin_request().await.unwrap();
        insert(&mut first, 1).await.unwrap();
        let waiting = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut second = db.begin_request().await.unwrap();
                insert(&mut second, 2).await.unwrap();
                let mut w = crate::db::Writes::new();
                w.push("INSERT INTO t (n) VALUES ($1)").bind(3i64);
                w.push(second.closing().unwrap());
                w.run(second.tx()).await.unwrap();
                second.abandon().await
            })
        };
        let kept = first.commit(false).await;
        let undone = waiting.await.unwrap();
        assert!(
            undone.is_err(),
            "the request is told its writes were not kept"
        );
        // The first request was either committed before the second joined (its own group)
        // or told that its group was rolled back; either way it was told the truth.
        let stored = stored(&db).await;
        assert!(!stored.contains(&2) && !stored.contains(&3), "{stored:?}");
        assert_eq!(stored.contains(&1), kept.is_ok(), "{stored:?} {kept:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_savepoint_released_with_the_last_statement_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let mut work = db.begin_request().await.unwrap();
        sqlx::query(&format!("{}SELECT 1", work.opening()))
            .execute(&mut **work.tx())
            .await
            .unwrap();
        let mut w = crate::db::Writes::new();
        w.push("INSERT INTO t (n) VALUES ($1)").bind(7i64);
        w.push(work.closing().unwrap());
        w.run(work.tx()).await.unwrap();
        work.commit(true).await.unwrap();
        assert_eq!(stored(&db).await, vec![7]);
    }
}
