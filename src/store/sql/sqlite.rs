//! [`SqliteStore`]: sessions in an SQLite database, for one process (or
//! several sharing a file, without a shared session-ended feed).
//!
//! Per-session changes are a read and a compare-and-set write (see
//! [the module above](super)), each statement its own transaction, which
//! SQLite serializes with its write lock (waiting up to the busy timeout
//! rather than failing). Changes of several rows run in a transaction
//! opened with `BEGIN IMMEDIATE`, which takes the write lock up front: a
//! transaction that read first and wrote later could be refused the lock
//! ("database is locked") instead of waiting for it. Ends of sessions are
//! published in the process, after the change commits.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::broadcast;

use super::*;

/// The embedded migrations: the schema under
/// `src/store/sql/migrations/sqlite`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/sql/migrations/sqlite");

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `$1` user, `$2` the new session, `$3` now, `$4` how many others to keep:
/// the user's oldest live sessions beyond the limit.
const EVICT: &str = "DELETE FROM sessionkit_sessions WHERE id IN \
     (SELECT id FROM sessionkit_sessions WHERE user_id = $1 AND id <> $2 AND expires_at > $3 \
     ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET $4) RETURNING id, expires_at";

/// A [`SessionStore`] on SQLite (feature `sqlite`): a file, or memory.
///
/// A file database is opened in WAL mode, so loads never wait for writes.
/// [`subscribe`](SessionStore::subscribe) delivers the ends of sessions made
/// through this store and its clones.
///
/// ```no_run
/// use sessionkit::{SessionLayer, SqliteStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::connect("sqlite://sessions.db").await?;
/// store.migrate().await?;
/// let _cleanup = store.spawn_cleanup(std::time::Duration::from_secs(60));
/// let layer = SessionLayer::builder(store).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    events: broadcast::Sender<SessionEnded>,
    /// Writers of this store take turns per routing tag (a session's tag,
    /// shared by its tokens): SQLite has one writer at a time anyway, and
    /// compare-and-set writers racing on one row inside one process only
    /// lose to each other. With dozens of requests on one session, the last
    /// could lose every attempt. Other processes on the file still race,
    /// and the compare-and-set keeps that correct.
    writers: Vec<tokio::sync::Mutex<()>>,
}

/// How many turn-taking locks a store has: sessions of different tags
/// mostly take different ones.
const WRITERS: usize = 32;

impl Inner {
    fn writer(&self, tag: &crate::token::Tag) -> &tokio::sync::Mutex<()> {
        let h = tag
            .as_str()
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.writers[h % WRITERS]
    }
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://path/to/file.db`, created if
    /// missing, or `sqlite::memory:`). Run [`migrate`](Self::migrate) once
    /// to create the tables.
    ///
    /// A file is opened in WAL mode with `synchronous = NORMAL` and a busy
    /// timeout. An in-memory database lives in its one connection, so the
    /// pool holds exactly one (every call takes turns on it).
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(sqlx_error)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                // The database goes with its last connection: keep it.
                .idle_timeout(None)
                .max_lifetime(None)
                .min_connections(1)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                // A ping before every call would cost a trip to the
                // connection's worker thread for nothing.
                .test_before_acquire(false)
                .connect_with(
                    options
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal),
                )
                .await
        }
        .map_err(sqlx_error)?;
        Ok(Self::new(pool))
    }

    /// A store on an existing pool. Give it `foreign_keys` on (sqlx's
    /// default), a busy timeout, and for a file WAL mode; for an in-memory
    /// database, one connection.
    pub fn new(pool: SqlitePool) -> SqliteStore {
        let (events, _) = broadcast::channel(1024);
        SqliteStore {
            inner: Arc::new(Inner {
                pool,
                events,
                writers: (0..WRITERS).map(|_| tokio::sync::Mutex::new(())).collect(),
            }),
        }
    }

    /// Creates or updates the schema (the tables `sessionkit_sessions` and
    /// `sessionkit_connections`, and sqlx's `_sqlx_migrations`). Safe to
    /// run on every start.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.inner.pool)
            .await
            .map_err(StoreError::backend)
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Deletes every session that is dead at `now` (publishing their ends)
    /// and the leases that ran out, in chunks. Returns how many sessions it
    /// deleted.
    pub async fn purge_expired(&self, now: Millis) -> Result<usize> {
        self.purge_chunks(PURGE, now, |rows| {
            self.publish(ends(rows, now, EndReason::Expired)?.0);
            Ok(())
        })
        .await
    }

    fn publish(&self, events: Vec<SessionEnded>) {
        for event in events {
            // No receiver means no connection is waiting: nothing to tell.
            let _ = self.inner.events.send(event);
        }
    }

    /// Runs a `DELETE` of sessions binding `first` and `now` (`$1`, `$2`),
    /// publishes the ends, and returns the ids that were live.
    async fn delete(
        &self,
        sql: &str,
        first: &str,
        now: Millis,
        reason: EndReason,
    ) -> Result<Vec<SessionId>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(first)
            .bind(db_time(now)?)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        let (events, live) = ends(&rows, now, reason)?;
        self.publish(events);
        Ok(live)
    }

    /// Runs a revoking `DELETE` binding `first` and `second` (`$1`, `$2`),
    /// publishes the ends: how many rows it deleted and the ids that were
    /// live.
    async fn revoked(
        &self,
        sql: &str,
        first: &str,
        second: &str,
        now: Millis,
    ) -> Result<(usize, Vec<SessionId>)> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(first)
            .bind(second)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        let (events, live) = ends(&rows, now, EndReason::Revoked)?;
        self.publish(events);
        Ok((rows.len(), live))
    }

    async fn write_lock(&self) -> Result<Transaction<'static, Sqlite>> {
        self.inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)
    }
}

shared_statements!(SqliteStore, sqlx::Sqlite);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl Rows for SqliteStore {
    async fn by_token(&self, hash: &str) -> Result<Option<Row>> {
        self.row_by_token(hash).await
    }

    async fn by_id(&self, id: &SessionId) -> Result<Option<Row>> {
        self.row_by_id(id).await
    }

    async fn put(&self, row: &Row, lease: Option<(&str, i64)>) -> Result<bool> {
        let Some((connection, until)) = lease else {
            return Self::update_row(&self.inner.pool, row).await;
        };
        let mut tx = self.write_lock().await?;
        if !Self::update_row(&mut *tx, row).await? {
            return Ok(false);
        }
        sqlx::query(RENEW_LEASE)
            .bind(&row.id)
            .bind(connection)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        tx.commit().await.map_err(sqlx_error)?;
        Ok(true)
    }

    async fn expire(&self, id: &SessionId, now: Millis) -> Result<()> {
        self.delete(EXPIRE, id.as_str(), now, EndReason::Expired)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        load(self, req).await
    }

    async fn create(&self, new: &NewSession) -> Result<()> {
        self.create_row(new).await
    }

    async fn save(&self, req: &Save) -> Result<bool> {
        let (id, delta, now) = (&req.id, &req.delta, req.now);
        let _turn = self.inner.writer(&id.tag()).lock().await;
        save(self, id, delta, now).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Rotated> {
        let _turn = self.inner.writer(&rotation.id.tag()).lock().await;
        rotate(self, rotation).await
    }

    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        let (id, new, delta, now) = (&req.id, &req.token, &req.delta, req.now);
        let _turn = self.inner.writer(&id.tag()).lock().await;
        regenerate(self, id, new, delta, now).await
    }

    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        let user = login_user(login)?;
        let now = login.session.now;
        // One writer at a time: two logins of one user cannot both count
        // the same sessions.
        let mut tx = self.write_lock().await?;
        let taken = match &login.from {
            Some(from) => {
                let row: Option<(String, i64, Option<String>, String)> = sqlx::query_as(TAKE_FROM)
                    .bind(from.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                row
            }
            None => None,
        };
        let (mut data, mut events) = carried_data(taken, &user.id, now)?;
        let rows = Self::insert_login(&mut tx, login, &user.id, &mut data, EVICT).await?;
        let (ended, evicted) = ends(&rows, now, EndReason::Revoked)?;
        events.extend(ended);
        tx.commit().await.map_err(sqlx_error)?;
        self.publish(events);
        Ok(LoginOutcome { data, evicted })
    }

    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        let (id, reason, now) = (&req.id, req.reason, req.now);
        let rows: Vec<(String, i64)> = sqlx::query_as(DESTROY)
            .bind(id.as_str())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        let (events, live) = ends(&rows, now, reason)?;
        self.publish(events);
        Ok(!live.is_empty())
    }

    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        self.delete(PRUNE_USER, user_id, now, EndReason::Expired)
            .await?;
        self.live_sessions(user_id, now).await
    }

    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        revoke_in_chunks(
            &req.scope,
            |one| self.revoked(REVOKE_ONE, one.as_str(), user_id, now),
            |keep| self.revoked(REVOKE_CHUNK, user_id, keep, now),
        )
        .await
    }

    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        self.sync_user_chunks(req).await
    }

    async fn connect(&self, req: &Connect) -> Result<bool> {
        let tx = self.write_lock().await?;
        self.connect_in(tx, req).await
    }

    async fn fetch(&self, f: &Fetch) -> Result<Option<Fetched>> {
        fetch(self, f).await
    }

    async fn disconnect(&self, req: &Disconnect) -> Result<()> {
        self.disconnect_one(req).await
    }

    async fn list_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
        self.live_connections(req).await
    }

    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.events.subscribe()
    }
}
