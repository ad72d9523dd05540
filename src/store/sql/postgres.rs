//! [`PostgresStore`]: sessions in PostgreSQL, shared by every process that
//! connects to the same database.
//!
//! Per-session changes are a read and a compare-and-set write (see
//! [the module above](super)); ends of sessions are published with
//! `pg_notify` *inside* the statement that deletes them, so a notification
//! is sent exactly when the deletion commits, and every store on the
//! database hears it through `LISTEN` on its own connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::*;

/// The `NOTIFY` channel session ends are published on, unless
/// [`PostgresStore::with_channel`] names another.
pub const DEFAULT_CHANNEL: &str = "sessionkit_ended";

/// `$1` id, `$2` clear, `$3` keys to remove, `$4` keys to set (a JSON
/// object of JSON texts), `$5` new idle timeout, `$6` new label, `$7` now:
/// a save of a live session, in one statement. The delta applies in the
/// order of [`Delta::apply_to`]: clear, remove, set.
const SAVE: &str = "UPDATE sessionkit_sessions SET \
     data = (((CASE WHEN $2 THEN '{}'::jsonb ELSE data::jsonb END) - $3::text[]) || $4::jsonb)::text, \
     idle_timeout = COALESCE($5, idle_timeout), label = COALESCE($6, label), last_seen = $7, \
     expires_at = LEAST($7 + COALESCE($5, idle_timeout), \
     COALESCE(absolute_deadline, 9223372036854775807)), version = version + 1 \
     WHERE id = $1 AND expires_at > $7";

/// The embedded migrations: the schema under
/// `src/store/sql/migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/sql/migrations/postgres");

/// A [`SessionStore`] on PostgreSQL (feature `postgres`).
///
/// Every process connected to the same database shares the sessions, and
/// [`subscribe`](SessionStore::subscribe) delivers the ends of sessions made
/// by any of them (`LISTEN`/`NOTIFY`). A load is one statement (two when it
/// must write: adopting a token, sliding the idle deadline); a save, a
/// create and a destroy one; a rotation, a regeneration and a connection's
/// fetch two.
///
/// ```no_run
/// use sessionkit::{PostgresStore, SessionLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@127.0.0.1/app").await?;
/// store.migrate().await?;
/// // Opt-in: delete expired rows every minute (they are also deleted when
/// // met, and never served).
/// let _cleanup = store.spawn_cleanup(std::time::Duration::from_secs(60));
/// let layer = SessionLayer::builder(store).build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    events: broadcast::Sender<SessionEnded>,
    sql: Sql,
    /// Forwards notifications to `events`; aborted with the store.
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The statements that publish ends, with the channel spelled in.
struct Sql {
    expire: String,
    destroy: String,
    revoke_one: String,
    revoke_chunk: String,
    prune_user: String,
    purge: String,
    take_from: String,
    evict: String,
    put_with_lease: String,
}

impl Sql {
    fn new(channel: &str) -> Sql {
        let channel = format!("'{}'", channel.replace('\'', "''"));
        // `n` is referenced by the final `SELECT`, so it is evaluated (a
        // `SELECT` in `WITH` that nothing reads is not); `pg_notify` queues
        // the notification until the statement's transaction commits.
        let revoked = &EndReason::Revoked.name();
        let expired = &EndReason::Expired.name();
        let notifying = |dml: &str, reason: &str, now: &str| {
            format!(
                "WITH d AS ({dml}), n AS (SELECT pg_notify({channel}, \
                 CASE WHEN d.expires_at > {now} THEN '{reason}' ELSE '{expired}' END \
                 || ':' || d.id) FROM d) SELECT d.*, (SELECT count(*) FROM n) FROM d"
            )
        };

        Sql {
            expire: notifying(EXPIRE, expired, "$2"),
            // The reason is `$3`: destroy takes it from the caller.
            destroy: notifying(DESTROY, "' || $3 || '", "$2"),
            revoke_one: notifying(REVOKE_ONE, revoked, "$3"),
            revoke_chunk: notifying(REVOKE_CHUNK, revoked, "$3"),
            prune_user: notifying(PRUNE_USER, expired, "$2"),
            purge: notifying(PURGE, expired, "$1"),
            take_from: notifying(TAKE_FROM, &EndReason::Replaced.name(), "$2"),
            evict: notifying(
                "DELETE FROM sessionkit_sessions WHERE id IN \
                 (SELECT id FROM sessionkit_sessions WHERE user_id = $1 AND id <> $2 \
                 AND expires_at > $3 ORDER BY created_at DESC, id DESC OFFSET $4) \
                 RETURNING id, expires_at",
                revoked,
                "$3",
            ),
            put_with_lease: format!(
                "WITH s AS ({update} RETURNING id), l AS (UPDATE sessionkit_connections c \
                 SET lease_until = $22 FROM s WHERE c.session_id = s.id AND c.id = $21 \
                 RETURNING 1) SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM l)",
                update = update_sql()
            ),
        }
    }
}

impl PostgresStore {
    /// Connects a pool to `url` (`postgres://user:password@host/database`)
    /// and starts listening for session ends. Run
    /// [`migrate`](Self::migrate) once to create the tables.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            // No ping before every call: it would be a round trip of its
            // own, and a dead connection fails the call anyway (and is
            // dropped from the pool).
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(sqlx_error)?;
        Self::new(pool).await
    }

    /// A store on an existing pool, listening on [`DEFAULT_CHANNEL`].
    ///
    /// Give it a pool built with `test_before_acquire(false)`, as
    /// [`connect`](Self::connect) does: sqlx otherwise pings the server
    /// before every call, a round trip of its own.
    pub async fn new(pool: PgPool) -> Result<PostgresStore> {
        Self::with_channel(pool, DEFAULT_CHANNEL).await
    }

    /// A store on an existing pool, publishing and listening on the
    /// `NOTIFY` channel `channel`: stores share a feed when they share the
    /// database and the channel. The feed listens on a connection of its
    /// own, opened with the pool's options, beside the pool.
    pub async fn with_channel(pool: PgPool, channel: &str) -> Result<PostgresStore> {
        let (events, _) = broadcast::channel(1024);
        // Listening starts before the store is handed out, so every end
        // published after this returns reaches its subscribers.
        // `PgListener` keeps the connection it listens on for good: it gets
        // one of its own, with the pool's settings, outside the pool.
        let feed = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with((*pool.connect_options()).clone())
            .await
            .map_err(sqlx_error)?;
        let mut listener = PgListener::connect_with(&feed).await.map_err(sqlx_error)?;
        listener.listen(channel).await.map_err(sqlx_error)?;
        let listener = tokio::spawn(forward(listener, events.clone()));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                events,
                sql: Sql::new(channel),
                listener,
            }),
        })
    }

    /// Creates or updates the schema (the tables `sessionkit_sessions` and
    /// `sessionkit_connections`, and sqlx's `_sqlx_migrations`), in the
    /// connection's current schema. Safe to run from several processes at
    /// once and on every start.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.inner.pool)
            .await
            .map_err(StoreError::backend)
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Deletes every session that is dead at `now` (publishing their ends)
    /// and the leases that ran out, in chunks. Returns how many sessions it
    /// deleted.
    pub async fn purge_expired(&self, now: Millis) -> Result<usize> {
        // The statement published the ends (`pg_notify`).
        self.purge_chunks(&self.inner.sql.purge, now, |_| Ok(()))
            .await
    }

    async fn ended(&self, sql: &str, first: &str, now: Millis) -> Result<Vec<(String, i64)>> {
        sqlx::query_as(sql)
            .bind(first)
            .bind(db_time(now)?)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)
    }

    /// Runs a revoking `DELETE` binding `first`, `second` and `now`
    /// (`$1` to `$3`): how many rows it deleted and the ids that were live.
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
            .bind(db_time(now)?)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        Ok((rows.len(), ends(&rows, now, EndReason::Revoked)?.1))
    }
}

shared_statements!(PostgresStore, sqlx::Postgres);

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// Hands every notification on to the subscribers. `PgListener` reconnects
/// by itself; what was published while it was away is lost, as on Redis.
async fn forward(mut listener: PgListener, events: broadcast::Sender<SessionEnded>) {
    loop {
        match listener.recv().await {
            Ok(notification) => match parse_ended(notification.payload()) {
                // No receiver means no connection is waiting: nothing to do.
                Some(event) => drop(events.send(event)),
                None => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring an unreadable session-ended notification"
                ),
            },
            Err(e) => {
                tracing::warn!(error = %e, "listening for ended sessions failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[async_trait]
impl Rows for PostgresStore {
    async fn by_token(&self, hash: &str) -> Result<Option<Row>> {
        self.row_by_token(hash).await
    }

    async fn by_id(&self, id: &SessionId) -> Result<Option<Row>> {
        self.row_by_id(id).await
    }

    async fn put(&self, row: &Row, lease: Option<(&str, i64)>) -> Result<bool> {
        match lease {
            None => Self::update_row(&self.inner.pool, row).await,
            Some((connection, until)) => {
                let (written, _): (i64, i64) =
                    bind_row!(sqlx::query_as(&self.inner.sql.put_with_lease), row)
                        .bind(row.version)
                        .bind(connection)
                        .bind(until)
                        .fetch_one(&self.inner.pool)
                        .await
                        .map_err(sqlx_error)?;
                Ok(written == 1)
            }
        }
    }

    async fn expire(&self, id: &SessionId, now: Millis) -> Result<()> {
        self.ended(&self.inner.sql.expire, id.as_str(), now).await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        load(self, req).await
    }

    async fn create(&self, new: &NewSession) -> Result<()> {
        self.create_row(new).await
    }

    async fn save(&self, req: &Save) -> Result<bool> {
        let (id, delta, now) = (&req.id, &req.delta, req.now);
        // One statement: the delta is applied by the database, so a save
        // needs no read first. It touches no token column: a sealed
        // replacement whose time is over goes at the next load, rotation or
        // fetch, which decide it with the token rules.
        let mut set = serde_json::Map::new();
        for (key, value) in &delta.set {
            set.insert(key.clone(), serde_json::Value::String(value.clone()));
        }
        let set = serde_json::Value::Object(set).to_string();
        let idle = delta.idle_timeout.map(db_time).transpose()?;
        let done = sqlx::query(SAVE)
            .bind(id.as_str())
            .bind(delta.clear)
            .bind(&delta.remove)
            .bind(set)
            .bind(idle)
            .bind(delta.label.as_deref())
            .bind(db_time(now)?)
            .execute(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        // Gone, or dead: a dead one is deleted on the way.
        self.expire(id, now).await?;
        Ok(false)
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<Rotated> {
        rotate(self, rotation).await
    }

    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        let (id, new, delta, now) = (&req.id, &req.token, &req.delta, req.now);
        regenerate(self, id, new, delta, now).await
    }

    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        let user = login_user(login)?;
        let now = login.session.now;
        let t = db_time(now)?;
        let mut tx = self.inner.pool.begin().await.map_err(sqlx_error)?;
        if login.max_sessions.is_some() {
            // Logins of one user take turns, so that two of them cannot
            // both count the same sessions and keep one too many. The lock
            // goes with the transaction.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(&user.id)
                .execute(&mut *tx)
                .await
                .map_err(sqlx_error)?;
        }
        let taken = match &login.from {
            Some(from) => {
                let row: Option<(String, i64, Option<String>, String)> =
                    sqlx::query_as(&self.inner.sql.take_from)
                        .bind(from.as_str())
                        .bind(t)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(sqlx_error)?;
                row
            }
            None => None,
        };
        let (mut data, _) = carried_data(taken, &user.id, now)?;
        let rows =
            Self::insert_login(&mut tx, login, &user.id, &mut data, &self.inner.sql.evict).await?;
        let evicted = ends(&rows, now, EndReason::Revoked)?.1;
        tx.commit().await.map_err(sqlx_error)?;
        Ok(LoginOutcome { data, evicted })
    }

    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        let (id, reason, now) = (&req.id, req.reason, req.now);
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.inner.sql.destroy)
            .bind(id.as_str())
            .bind(db_time(now)?)
            .bind(reason.name())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(sqlx_error)?;
        Ok(!ends(&rows, now, reason)?.1.is_empty())
    }

    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        self.ended(&self.inner.sql.prune_user, user_id, now).await?;
        self.live_sessions(user_id, now).await
    }

    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        let sql = &self.inner.sql;
        revoke_in_chunks(
            &req.scope,
            |one| self.revoked(&sql.revoke_one, one.as_str(), user_id, now),
            |keep| self.revoked(&sql.revoke_chunk, user_id, keep, now),
        )
        .await
    }

    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        self.sync_user_chunks(req).await
    }

    async fn connect(&self, req: &Connect) -> Result<bool> {
        let tx = self.inner.pool.begin().await.map_err(sqlx_error)?;
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
