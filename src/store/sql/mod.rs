//! The SQL stores: [`PostgresStore`] (feature `postgres`) and
//! [`SqliteStore`] (feature `sqlite`),
//! on [`sqlx`], and what they share: the row codec, the per-session
//! read-modify-write loop, and the statements both run alike
//! (`shared_statements!`), so that each backend's file holds only its
//! dialect and its connection and transaction specifics.
//!
//! # Schema
//!
//! One row of `sessionkit_sessions` per session holds its record, its data
//! (a JSON object of JSON values) and its [`TokenSlots`] as columns:
//! `current_hash` and `previous_hash` are the only token digests, each
//! under a unique index, so resolving a token is one indexed read and a
//! rotation never touches a second table. `expires_at` is the earlier of the
//! idle and absolute deadlines, kept in step with every write, for the
//! expiry index. Connections live in `sessionkit_connections`, removed with
//! their session by `ON DELETE CASCADE`. The migrations under
//! `src/store/sql/migrations/` are the schema.
//!
//! # Concurrency
//!
//! Every per-session change (load, save, rotate, regenerate, fetch) reads the
//! row, lets [`TokenSlots`] decide, and writes the row back with
//! `UPDATE ... WHERE id = $1 AND version = $2`: a compare-and-set on the
//! row's version, evaluated under the row lock the `UPDATE` itself takes.
//! A writer that lost the race reads again and decides again, so two
//! concurrent rotations install one replacement (single flight) and two
//! saves of different keys both land. This costs two statements and holds
//! no lock across a round trip, where `BEGIN; SELECT ... FOR UPDATE; UPDATE;
//! COMMIT` costs four and holds the row lock for all of them. Changes that
//! span several rows (login, revoking a user's sessions, connections) run in
//! one transaction, or in one statement where the dialect allows.
//!
//! Liveness is always decided with the `now` the caller passes, never with
//! the database clock. A row found dead is deleted on the way (and its end
//! published as [`EndReason::Expired`]); the rest go with
//! `purge_expired` or the opt-in task of `spawn_cleanup`.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::tokens::{PreviousToken, Resolution, TokenSlots};
use super::*;
use crate::clock::{Clock, Millis};
use crate::token::{SessionId, TokenDigest};

/// How often a per-session change reads again after losing a race. Each
/// lost race means another writer won, so this bounds only pathological
/// contention on one session.
const ATTEMPTS: usize = 64;

/// The columns of `sessionkit_sessions`, in [`Row`] order.
const COLUMNS: &str = "id, user_id, user_json, label, data, created_at, last_seen, \
    idle_timeout, absolute_deadline, expires_at, ttg, rotated_at, renew_token, \
    current_hash, adopted, resend_until, previous_hash, grace_until, sealed, version";

/// A session row as the database returns it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct Row {
    id: String,
    user_id: Option<String>,
    user_json: Option<String>,
    label: Option<String>,
    data: String,
    created_at: i64,
    last_seen: i64,
    idle_timeout: i64,
    absolute_deadline: Option<i64>,
    expires_at: i64,
    ttg: i64,
    rotated_at: Option<i64>,
    renew_token: bool,
    current_hash: String,
    adopted: bool,
    resend_until: i64,
    previous_hash: Option<String>,
    grace_until: Option<i64>,
    sealed: Option<String>,
    version: i64,
}

/// A decoded session row: what the store reasons about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    record: SessionRecord,
    slots: TokenSlots,
    /// The version read: a write succeeds only if it is still the stored one.
    version: i64,
}

/// Binds the columns of a [`Row`] to a query, `$1` to `$19` in
/// [`COLUMNS`] order (without `version`).
macro_rules! bind_row {
    ($query:expr, $row:expr) => {{
        let r = $row;
        $query
            .bind(r.id.clone())
            .bind(r.user_id.clone())
            .bind(r.user_json.clone())
            .bind(r.label.clone())
            .bind(r.data.clone())
            .bind(r.created_at)
            .bind(r.last_seen)
            .bind(r.idle_timeout)
            .bind(r.absolute_deadline)
            .bind(r.expires_at)
            .bind(r.ttg)
            .bind(r.rotated_at)
            .bind(r.renew_token)
            .bind(r.current_hash.clone())
            .bind(r.adopted)
            .bind(r.resend_until)
            .bind(r.previous_hash.clone())
            .bind(r.grace_until)
            .bind(r.sealed.clone())
    }};
}
pub(crate) use bind_row;

/// `INSERT` of a new row: `$1` to `$19` as [`bind_row!`] binds them, `$20`
/// the device (which only listings read, so it is not in [`COLUMNS`]).
fn insert_sql() -> String {
    format!(
        "INSERT INTO sessionkit_sessions ({COLUMNS}, device) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, 0, \
         $20)"
    )
}

/// The compare-and-set `UPDATE`: every mutable column from [`bind_row!`],
/// `$20` the version read.
fn update_sql() -> String {
    "UPDATE sessionkit_sessions SET user_id = $2, user_json = $3, label = $4, data = $5, \
     created_at = $6, last_seen = $7, idle_timeout = $8, absolute_deadline = $9, \
     expires_at = $10, ttg = $11, rotated_at = $12, renew_token = $13, current_hash = $14, \
     adopted = $15, resend_until = $16, previous_hash = $17, grace_until = $18, sealed = $19, \
     version = version + 1 WHERE id = $1 AND version = $20"
        .to_owned()
}

// Statements both dialects share. Every `DELETE` of sessions returns
// `id, expires_at` first, so its caller can tell the sessions it ended from
// the ones that had expired already. The chunked ones (revoking, updating
// the user, pruning, purging) handle 256 sessions per statement, so that a
// user with a huge index never makes one huge statement.

/// `$1` a token digest. Two lookups rather than an `OR`, so that each is
/// certain to go by its own index whatever the planner thinks of the
/// columns.
fn by_token_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM sessionkit_sessions WHERE current_hash = $1 UNION ALL \
         SELECT {COLUMNS} FROM sessionkit_sessions WHERE previous_hash = $1"
    )
}
const BY_ID: &str = "WHERE id = $1";
/// `$1` id, `$2` now: deletes the session if it is dead.
const EXPIRE: &str =
    "DELETE FROM sessionkit_sessions WHERE id = $1 AND expires_at <= $2 RETURNING id, expires_at";
/// `$1` id.
const DESTROY: &str = "DELETE FROM sessionkit_sessions WHERE id = $1 RETURNING id, expires_at";
/// `$1` id, `$2` user: deletes the session only if it is that user's.
const REVOKE_ONE: &str = "DELETE FROM sessionkit_sessions WHERE id = $1 AND user_id = $2 \
     RETURNING id, expires_at";
/// `$1` user, `$2` the id to keep (or `''`): the next chunk of the user's
/// sessions. Deleted rows leave the index, so the caller repeats it until
/// it deletes nothing.
const REVOKE_CHUNK: &str = "DELETE FROM sessionkit_sessions WHERE id IN \
     (SELECT id FROM sessionkit_sessions WHERE user_id = $1 AND id <> $2 ORDER BY id LIMIT 256) \
     RETURNING id, expires_at";
/// `$1` user, `$2` now: a chunk of the user's dead sessions.
const PRUNE_USER: &str = "DELETE FROM sessionkit_sessions WHERE id IN \
     (SELECT id FROM sessionkit_sessions WHERE user_id = $1 AND expires_at <= $2 LIMIT 256) \
     RETURNING id, expires_at";
/// `$1` now: a chunk of dead sessions, for the cleanup.
const PURGE: &str = "DELETE FROM sessionkit_sessions WHERE id IN \
     (SELECT id FROM sessionkit_sessions WHERE expires_at <= $1 LIMIT 256) \
     RETURNING id, expires_at";
/// `$1` now: leases that ran out (their holders crashed).
const PURGE_LEASES: &str = "DELETE FROM sessionkit_connections WHERE lease_until <= $1";
/// `$1` id: the session a login replaces, with what carries over.
const TAKE_FROM: &str = "DELETE FROM sessionkit_sessions WHERE id = $1 \
     RETURNING id, expires_at, user_id, data";
/// `$1` user, `$2` json, `$3` now, `$4` the last id done (or `''`).
const SYNC_CHUNK: &str = "UPDATE sessionkit_sessions SET user_json = $2, renew_token = TRUE, \
     version = version + 1 WHERE id IN (SELECT id FROM sessionkit_sessions \
     WHERE user_id = $1 AND expires_at > $3 AND id > $4 ORDER BY id LIMIT 256) RETURNING id";
/// `$1` user, `$2` now.
const LIST: &str = "SELECT id, created_at, last_seen, idle_timeout, absolute_deadline, label, \
     device \
     FROM sessionkit_sessions WHERE user_id = $1 AND expires_at > $2";
/// `$1` id, `$2` now: a connection's use of its session.
const TOUCH: &str = "UPDATE sessionkit_sessions SET last_seen = $2, expires_at = CASE \
     WHEN absolute_deadline IS NULL OR $2 + idle_timeout < absolute_deadline \
     THEN $2 + idle_timeout ELSE absolute_deadline END, version = version + 1 \
     WHERE id = $1 AND expires_at > $2 RETURNING id";
/// `$1` session, `$2` now, `$3` the connection being registered.
const DROP_LEASES: &str = "DELETE FROM sessionkit_connections \
     WHERE session_id = $1 AND lease_until <= $2 AND id <> $3";
/// `$1` session, `$2` id, `$3` node, `$4` opened_at, `$5` lease_until.
const REGISTER: &str = "INSERT INTO sessionkit_connections \
     (session_id, id, node, opened_at, lease_until) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (session_id, id) DO UPDATE SET node = excluded.node, \
     opened_at = excluded.opened_at, lease_until = excluded.lease_until";
/// `$1` session, `$2` connection, `$3` lease_until.
#[cfg(feature = "sqlite")]
const RENEW_LEASE: &str =
    "UPDATE sessionkit_connections SET lease_until = $3 WHERE session_id = $1 AND id = $2";
/// `$1` session, `$2` connection.
const DISCONNECT: &str = "DELETE FROM sessionkit_connections WHERE session_id = $1 AND id = $2";
/// `$1` user, `$2` now.
const LIST_CONNECTIONS: &str = "SELECT c.id, c.node, c.session_id, c.opened_at \
     FROM sessionkit_connections c JOIN sessionkit_sessions s ON s.id = c.session_id \
     WHERE s.user_id = $1 AND s.expires_at > $2 AND c.lease_until > $2";

/// The sessions a `DELETE` returned (`id, expires_at`): the end of each
/// (with `reason`, or [`EndReason::Expired`] for one that had expired) and
/// the ids of those that were still live.
fn ends(
    rows: &[(String, i64)],
    now: Millis,
    reason: EndReason,
) -> Result<(Vec<SessionEnded>, Vec<SessionId>)> {
    let now = db_time(now)?;
    let mut events = Vec::with_capacity(rows.len());
    let mut live = Vec::new();
    for (id, expires_at) in rows {
        let (event, was_live) = ended(id, *expires_at, now, reason)?;
        if was_live {
            live.push(event.id.clone());
        }
        events.push(event);
    }
    Ok((events, live))
}

/// What a login carries over from the session it replaces: its data if it
/// was live and anonymous or the same user's, never another user's.
fn carried_data(
    taken: Option<(String, i64, Option<String>, String)>,
    user_id: &str,
    now: Millis,
) -> Result<(HashMap<String, String>, Vec<SessionEnded>)> {
    let Some((id, expires_at, from_user, data)) = taken else {
        return Ok((HashMap::new(), Vec::new()));
    };
    let (event, live) = ended(&id, expires_at, db_time(now)?, EndReason::Replaced)?;
    let carries = live && from_user.as_deref().is_none_or(|u| u == user_id);
    let data = if carries {
        serde_json::from_str(&data)
            .map_err(|e| StoreError::corrupt(format!("session data: {e}")))?
    } else {
        HashMap::new()
    };
    Ok((data, vec![event]))
}

/// The row a login inserts: `data` (carried over) with the delta applied
/// on top (in place: the login reports it), and the delta's settings.
fn login_row(login: &Login, data: &mut HashMap<String, String>) -> Result<Row> {
    login.delta.apply_to(data);
    let mut stored = Stored::new(&login.session, data.clone());
    if let Some(idle) = login.delta.idle_timeout {
        stored.record.idle_timeout = idle;
    }
    if let Some(label) = &login.delta.label {
        stored.record.label = Some(label.clone());
    }
    stored.encode()
}

/// The user a login binds, checked like the memory store checks it.
fn login_user(login: &Login) -> Result<&BoundUser> {
    login.session.check_user_tag()?;
    login
        .session
        .user
        .as_ref()
        .ok_or_else(|| StoreError::invalid("a login needs a user"))
}

/// A time from the caller, as the database stores it.
fn db_time(ms: Millis) -> Result<i64> {
    i64::try_from(ms).map_err(|_| StoreError::invalid("a time past the year 292 million"))
}

/// A deadline as the database stores it: past what `i64` holds it is
/// "never", which it is in practice.
fn db_deadline(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn millis(value: i64, column: &str) -> Result<Millis> {
    Millis::try_from(value).map_err(|_| StoreError::corrupt(format!("negative {column}")))
}

fn session_id(s: &str) -> Result<SessionId> {
    SessionId::parse(s).ok_or_else(|| StoreError::corrupt("a malformed session id"))
}

fn sqlx_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::timeout(),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::corrupt(e.to_string()),
        e => StoreError::backend(e),
    }
}

fn contended() -> StoreError {
    StoreError::backend(format!(
        "a session changed under {ATTEMPTS} attempts in a row to change it"
    ))
}

impl Row {
    fn decode(self) -> Result<Stored> {
        let user = match (self.user_id, self.user_json) {
            (Some(id), Some(json)) => Some(BoundUser { id, json }),
            (None, None) => None,
            _ => return Err(StoreError::corrupt("a user id without a user, or back")),
        };
        let data: HashMap<String, String> = serde_json::from_str(&self.data)
            .map_err(|e| StoreError::corrupt(format!("session data: {e}")))?;
        let previous = match (self.previous_hash, self.grace_until) {
            (Some(hash), Some(grace_until)) => Some(PreviousToken {
                hash,
                grace_until: millis(grace_until, "grace_until")?,
                sealed: self.sealed,
            }),
            (None, None) => None,
            _ => {
                return Err(StoreError::corrupt(
                    "a previous token without a grace window",
                ))
            }
        };
        let record = SessionRecord {
            id: session_id(&self.id)?,
            created_at: millis(self.created_at, "created_at")?,
            last_seen: millis(self.last_seen, "last_seen")?,
            idle_timeout: millis(self.idle_timeout, "idle_timeout")?,
            absolute_deadline: self
                .absolute_deadline
                .map(|d| millis(d, "absolute_deadline"))
                .transpose()?,
            ttg: millis(self.ttg, "ttg")?,
            rotated_at: self
                .rotated_at
                .map(|d| millis(d, "rotated_at"))
                .transpose()?,
            renew_token: self.renew_token,
            user,
            label: self.label,
            data,
        };
        let slots = TokenSlots {
            current: self.current_hash,
            adopted: self.adopted,
            resend_until: millis(self.resend_until, "resend_until")?,
            previous,
        };
        Ok(Stored {
            record,
            slots,
            version: self.version,
        })
    }
}

impl Stored {
    /// The row of a new session.
    fn new(new: &NewSession, data: HashMap<String, String>) -> Stored {
        Stored {
            record: SessionRecord {
                id: new.id.clone(),
                created_at: new.now,
                last_seen: new.now,
                idle_timeout: new.idle_timeout,
                absolute_deadline: new.absolute_deadline,
                ttg: new.now,
                rotated_at: None,
                renew_token: false,
                user: new.user.clone(),
                label: new.label.clone(),
                data,
            },
            slots: TokenSlots::new(new.token.hash.clone()),
            version: 0,
        }
    }

    fn encode(&self) -> Result<Row> {
        let r = &self.record;
        let opt = |v: Option<Millis>| v.map(db_time).transpose();
        let data = serde_json::to_string(&r.data)
            .map_err(|e| StoreError::backend(format!("encode session data: {e}")))?;
        Ok(Row {
            id: r.id.as_str().to_owned(),
            user_id: r.user.as_ref().map(|u| u.id.clone()),
            user_json: r.user.as_ref().map(|u| u.json.clone()),
            label: r.label.clone(),
            data,
            created_at: db_time(r.created_at)?,
            last_seen: db_time(r.last_seen)?,
            idle_timeout: db_time(r.idle_timeout)?,
            absolute_deadline: opt(r.absolute_deadline)?,
            expires_at: db_deadline(r.deadline()),
            ttg: db_time(r.ttg)?,
            rotated_at: opt(r.rotated_at)?,
            renew_token: r.renew_token,
            current_hash: self.slots.current.clone(),
            adopted: self.slots.adopted,
            resend_until: db_time(self.slots.resend_until)?,
            previous_hash: self.slots.previous.as_ref().map(|p| p.hash.clone()),
            grace_until: opt(self.slots.previous.as_ref().map(|p| p.grace_until))?,
            sealed: self.slots.previous.as_ref().and_then(|p| p.sealed.clone()),
            version: self.version,
        })
    }

    fn is_live(&self, now: Millis) -> bool {
        now < self.record.deadline()
    }

    fn apply(&mut self, delta: &Delta) {
        delta.apply_to(&mut self.record.data);
        if let Some(idle) = delta.idle_timeout {
            self.record.idle_timeout = idle;
        }
        if let Some(label) = &delta.label {
            self.record.label = Some(label.clone());
        }
    }
}

/// What the per-session read-modify-write loop needs of a database.
#[async_trait]
pub(crate) trait Rows: Send + Sync {
    /// The row whose current or previous token is `hash`.
    async fn by_token(&self, hash: &str) -> Result<Option<Row>>;
    /// The row of session `id`.
    async fn by_id(&self, id: &SessionId) -> Result<Option<Row>>;
    /// Writes `row` back if its version is still `row.version`, and with it
    /// the lease of connection `lease.0` (if it is registered). Returns
    /// whether it was written.
    async fn put(&self, row: &Row, lease: Option<(&str, i64)>) -> Result<bool>;
    /// Deletes session `id` if it is dead at `now`, publishing its end as
    /// [`EndReason::Expired`].
    async fn expire(&self, id: &SessionId, now: Millis) -> Result<()>;
}

/// The statements both backends run alike, written once for the database
/// `$db` and the store `$store` of a backend module (which has `inner.pool`
/// and implements [`Rows`]). A macro rather than functions generic over
/// [`sqlx::Database`]: sqlx's generic bounds would have to be spelled out
/// for every column type on every function; the backends differ only in
/// those types, not in what runs.
macro_rules! shared_statements {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Runs [`purge_expired`](Self::purge_expired) every `interval` on
            /// the system clock, until the handle is dropped. Expired sessions
            /// are never served either way; this only returns their space.
            /// Call it within a Tokio runtime: the task is spawned on the
            /// current one.
            pub fn spawn_cleanup(&self, interval: std::time::Duration) -> CleanupHandle {
                self.spawn_cleanup_with_clock(interval, crate::clock::SystemClock)
            }

            /// [`spawn_cleanup`](Self::spawn_cleanup) with the time of `clock`
            /// (give it the clock the layer uses).
            pub fn spawn_cleanup_with_clock(
                &self,
                interval: std::time::Duration,
                clock: impl crate::clock::Clock,
            ) -> CleanupHandle {
                let store = self.clone();
                CleanupHandle::spawn(interval, clock, move |now| {
                    let store = store.clone();
                    async move { store.purge_expired(now).await }
                })
            }

            /// Runs the chunked `purge` until it deletes nothing, handing
            /// each chunk's rows to `purged`, then drops the leases that ran
            /// out. Returns how many sessions it deleted.
            async fn purge_chunks(
                &self,
                purge: &str,
                now: Millis,
                mut purged: impl FnMut(&[(String, i64)]) -> Result<()>,
            ) -> Result<usize> {
                let t = db_time(now)?;
                let mut count = 0;
                loop {
                    let rows: Vec<(String, i64)> = sqlx::query_as(purge)
                        .bind(t)
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(sqlx_error)?;
                    if rows.is_empty() {
                        break;
                    }
                    count += rows.len();
                    crate::metrics::sessions_ended(crate::metrics::Ended::Expiry, rows.len());
                    purged(&rows)?;
                }
                sqlx::query(PURGE_LEASES)
                    .bind(t)
                    .execute(&self.inner.pool)
                    .await
                    .map_err(sqlx_error)?;
                Ok(count)
            }

            async fn row_by_token(&self, hash: &str) -> Result<Option<Row>> {
                sqlx::query_as(&by_token_sql())
                    .bind(hash)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(sqlx_error)
            }

            async fn row_by_id(&self, id: &SessionId) -> Result<Option<Row>> {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM sessionkit_sessions {BY_ID}"
                ))
                .bind(id.as_str())
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(sqlx_error)
            }

            /// The compare-and-set write of `row`; whether it was written.
            async fn update_row<'e>(
                ex: impl sqlx::Executor<'e, Database = $db>,
                row: &Row,
            ) -> Result<bool> {
                let sql = update_sql();
                let done = bind_row!(sqlx::query(&sql), row)
                    .bind(row.version)
                    .execute(ex)
                    .await
                    .map_err(sqlx_error)?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_row<'e>(
                ex: impl sqlx::Executor<'e, Database = $db>,
                row: &Row,
                device: Option<&crate::device::Device>,
            ) -> Result<()> {
                bind_row!(sqlx::query(&insert_sql()), row)
                    .bind(crate::device::stored(device))
                    .execute(ex)
                    .await
                    .map_err(sqlx_error)?;
                Ok(())
            }

            async fn create_row(&self, new: &NewSession) -> Result<()> {
                new.check_user_tag()?;
                let row = Stored::new(new, new.data.iter().cloned().collect()).encode()?;
                Self::insert_row(&self.inner.pool, &row, new.device.as_ref()).await
            }

            /// The rest of a login of `user`, in its transaction: inserts its
            /// row (over the carried-over `data`) and runs `evict` if the
            /// login limits the user's sessions. Returns the rows evicted.
            async fn insert_login(
                tx: &mut <$db as sqlx::Database>::Connection,
                login: &Login,
                user: &str,
                data: &mut std::collections::HashMap<String, String>,
                evict: &str,
            ) -> Result<Vec<(String, i64)>> {
                let row = login_row(login, data)?;
                Self::insert_row(&mut *tx, &row, login.session.device.as_ref()).await?;
                let Some(max) = login.max_sessions else {
                    return Ok(Vec::new());
                };
                // Keep the newest `max - 1` others (the new session is one).
                let keep = i64::try_from(max.max(1) - 1).unwrap_or(i64::MAX);
                sqlx::query_as(evict)
                    .bind(user)
                    .bind(login.session.id.as_str())
                    .bind(db_time(login.session.now)?)
                    .bind(keep)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(sqlx_error)
            }

            /// The live sessions of a user, in listing order.
            async fn live_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionInfo>> {
                let rows: Vec<InfoRow> = sqlx::query_as(LIST)
                    .bind(user_id)
                    .bind(db_time(now)?)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(sqlx_error)?;
                let mut list = rows.into_iter().map(info).collect::<Result<Vec<_>>>()?;
                sort_listing(&mut list);
                Ok(list)
            }

            async fn sync_user_chunks(&self, req: &SyncUser) -> Result<usize> {
                let (user, now) = (&req.user, req.now);
                let t = db_time(now)?;
                let mut count = 0;
                let mut after = String::new();
                loop {
                    let ids: Vec<(String,)> = sqlx::query_as(SYNC_CHUNK)
                        .bind(&user.id)
                        .bind(&user.json)
                        .bind(t)
                        .bind(&after)
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(sqlx_error)?;
                    let chunk = ids.len();
                    match ids.into_iter().map(|(id,)| id).max() {
                        Some(last) => {
                            count += chunk;
                            after = last;
                        }
                        None => return Ok(count),
                    }
                }
            }

            /// [`SessionStore::connect`] in the transaction `tx` (opened
            /// as the backend opens its writes): touches the session and
            /// registers the connection, or deletes the session if dead.
            async fn connect_in(
                &self,
                mut tx: sqlx::Transaction<'_, $db>,
                req: &Connect,
            ) -> Result<bool> {
                let (conn, lease_until, now) = (&req.connection, req.lease_until, req.now);
                let t = db_time(now)?;
                let touched: Option<(String,)> = sqlx::query_as(TOUCH)
                    .bind(conn.session.as_str())
                    .bind(t)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                if touched.is_none() {
                    drop(tx);
                    self.expire(&conn.session, now).await?;
                    return Ok(false);
                }
                sqlx::query(DROP_LEASES)
                    .bind(conn.session.as_str())
                    .bind(t)
                    .bind(&conn.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                sqlx::query(REGISTER)
                    .bind(conn.session.as_str())
                    .bind(&conn.id)
                    .bind(&conn.node)
                    .bind(db_time(conn.opened_at)?)
                    .bind(db_time(lease_until)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                tx.commit().await.map_err(sqlx_error)?;
                Ok(true)
            }

            async fn disconnect_one(&self, req: &Disconnect) -> Result<()> {
                sqlx::query(DISCONNECT)
                    .bind(req.id.as_str())
                    .bind(req.connection_id.as_str())
                    .execute(&self.inner.pool)
                    .await
                    .map_err(sqlx_error)?;
                Ok(())
            }

            async fn live_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
                let rows: Vec<ConnectionRow> = sqlx::query_as(LIST_CONNECTIONS)
                    .bind(req.user_id.as_str())
                    .bind(db_time(req.now)?)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(sqlx_error)?;
                rows.into_iter().map(connection).collect()
            }
        }
    };
}
pub(crate) use shared_statements;

/// [`SessionStore::revoke`] given how a backend runs its two deletes:
/// `one` deletes the one session of `RevokeSessions::scope`, `chunk` the
/// next chunk of the user's sessions but the one to keep (`''` for none),
/// each returning how many rows it deleted and the ids that were live.
async fn revoke_in_chunks<'a, F, G>(
    scope: &'a Revoke,
    one: impl FnOnce(&'a SessionId) -> F,
    chunk: impl Fn(&'a str) -> G,
) -> Result<Vec<SessionId>>
where
    F: std::future::Future<Output = Result<(usize, Vec<SessionId>)>>,
    G: std::future::Future<Output = Result<(usize, Vec<SessionId>)>>,
{
    if let Revoke::One(id) = scope {
        return Ok(one(id).await?.1);
    }
    let keep = match scope {
        Revoke::AllExcept(keep) => keep.as_str(),
        _ => "",
    };
    let mut revoked = Vec::new();
    loop {
        let (deleted, live) = chunk(keep).await?;
        if deleted == 0 {
            return Ok(revoked);
        }
        revoked.extend(live);
    }
}

/// Which row a per-session change reads.
#[derive(Clone, Copy)]
enum Key<'a> {
    Token(&'a str),
    Id(&'a SessionId),
}

/// The read-modify-write loop: reads the row, hands it (if live) to
/// `decide`, writes it back if `decide` changed it (or a lease is to be
/// refreshed), and starts over if another writer changed it first. A
/// missing row yields `gone()`; a dead one is deleted and yields `gone()`.
async fn change<R, T>(
    db: &R,
    key: Key<'_>,
    now: Millis,
    lease: Option<(&str, Millis)>,
    gone: impl Fn() -> T + Send,
    mut decide: impl FnMut(&mut Stored) -> T + Send,
) -> Result<T>
where
    R: Rows + ?Sized,
    T: Send,
{
    let lease = match lease {
        Some((id, until)) => Some((id, db_time(until)?)),
        None => None,
    };
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let row = match key {
            Key::Token(hash) => db.by_token(hash).await?,
            Key::Id(id) => db.by_id(id).await?,
        };
        let Some(row) = row else {
            return Ok(gone());
        };
        let mut stored = row.decode()?;
        if !stored.is_live(now) {
            db.expire(&stored.record.id, now).await?;
            return Ok(gone());
        }
        let before = stored.clone();
        // Every touch of a session deletes a sealed replacement whose time
        // is over, as the memory store does.
        stored.slots.forget_sealed(now);
        let value = decide(&mut stored);
        if stored == before && lease.is_none() {
            return Ok(value);
        }
        if db.put(&stored.encode()?, lease).await? {
            return Ok(value);
        }
        // Another writer changed the row since it was read: read again.
    }
    Err(contended())
}

/// A pause of random length before reading again after a lost race. Without
/// it, writers that lost together read and write again together, and with
/// dozens of requests on one session (a page opening many tabs, the stress
/// test's 64 clients) the last of them could lose [`ATTEMPTS`] races in a
/// row. Up to 100 µs after the first loss, doubling to 6.4 ms: at most about
/// 0.4 s over every attempt.
async fn backoff(attempt: usize) {
    use rand::TryRngCore;
    let ceiling = 100u64 << attempt.min(6);
    let jitter = rand::rngs::OsRng.try_next_u64().unwrap_or(0) % ceiling;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// [`SessionStore::load`], on any [`Rows`].
async fn load<R: Rows + ?Sized>(db: &R, opts: &Load) -> Result<Lookup> {
    let (token, now) = (&opts.token, opts.now);
    change(
        db,
        Key::Token(&token.hash),
        now,
        None,
        || Lookup::Missing,
        |s| match s.slots.resolve(&token.hash, now, opts.cijs) {
            Resolution::Live(state) => {
                if opts
                    .refresh_after
                    .is_some_and(|after| s.record.refresh_due(now, after))
                {
                    s.record.last_seen = now;
                }
                Lookup::Found {
                    record: s.record.clone(),
                    token: state,
                }
            }
            Resolution::Stale => Lookup::Stale(s.record.id.clone()),
            Resolution::Unknown => Lookup::Missing,
        },
    )
    .await
}

/// [`SessionStore::save`], on any [`Rows`] (PostgreSQL saves in one
/// statement of its own instead).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
async fn save<R: Rows + ?Sized>(
    db: &R,
    id: &SessionId,
    delta: &Delta,
    now: Millis,
) -> Result<bool> {
    change(
        db,
        Key::Id(id),
        now,
        None,
        || false,
        |s| {
            s.apply(delta);
            // A write is a use of the session.
            s.record.last_seen = now;
            true
        },
    )
    .await
}

/// [`SessionStore::rotate`], on any [`Rows`].
async fn rotate<R: Rows + ?Sized>(db: &R, r: &Rotation) -> Result<Rotated> {
    change(
        db,
        Key::Id(&r.id),
        r.now,
        None,
        || Rotated::Gone,
        |s| {
            let step = s.slots.rotate(r);
            if step.outcome == Rotated::Installed {
                s.record.ttg = r.now;
                s.record.rotated_at = Some(r.now);
                s.record.renew_token = false;
            }
            step.outcome
        },
    )
    .await
}

/// [`SessionStore::regenerate`], on any [`Rows`].
async fn regenerate<R: Rows + ?Sized>(
    db: &R,
    id: &SessionId,
    new: &TokenDigest,
    delta: &Delta,
    now: Millis,
) -> Result<bool> {
    change(
        db,
        Key::Id(id),
        now,
        None,
        || false,
        |s| {
            s.record.ttg = now;
            s.record.renew_token = false;
            s.apply(delta);
            s.slots.regenerate(&new.hash);
            true
        },
    )
    .await
}

/// [`SessionStore::fetch`], on any [`Rows`].
async fn fetch<R: Rows + ?Sized>(db: &R, f: &Fetch) -> Result<Option<Fetched>> {
    let lease = f.lease.as_ref().map(|(id, until)| (id.as_str(), *until));
    change(
        db,
        Key::Id(&f.id),
        f.now,
        lease,
        || None,
        |s| {
            s.record.last_seen = f.now;
            let known = f.known.as_ref().map(|k| k.hash.as_str());
            let (replacement, known_is_current) = s.slots.fetch(known, f.now);
            Some(Fetched {
                record: s.record.clone(),
                replacement,
                known_is_current,
            })
        },
    )
    .await
}

/// Reads a `reason:id` payload back; `None` for anything else.
#[cfg(feature = "postgres")]
fn parse_ended(payload: &str) -> Option<SessionEnded> {
    let (reason, id) = payload.split_once(':')?;
    Some(SessionEnded {
        id: SessionId::parse(id)?,
        reason: EndReason::from_name(reason)?,
    })
}

/// How a row that a delete returned ended: with `reason` if it was still
/// live, else it had expired.
fn ended(id: &str, expires_at: i64, now: i64, reason: EndReason) -> Result<(SessionEnded, bool)> {
    let live = expires_at > now;
    Ok((
        SessionEnded {
            id: session_id(id)?,
            reason: if live { reason } else { EndReason::Expired },
        },
        live,
    ))
}

/// Sessions of a user in the order a listing shows them.
fn sort_listing(list: &mut [SessionInfo]) {
    list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// A listing entry from its columns: id, created_at, last_seen,
/// idle_timeout, absolute_deadline, label, device.
type InfoRow = (
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn info(row: InfoRow) -> Result<SessionInfo> {
    let (id, created_at, last_seen, idle_timeout, absolute_deadline, label, device) = row;
    let last_seen = millis(last_seen, "last_seen")?;
    Ok(SessionInfo {
        id: session_id(&id)?,
        created_at: millis(created_at, "created_at")?,
        last_seen,
        idle_deadline: last_seen.saturating_add(millis(idle_timeout, "idle_timeout")?),
        absolute_deadline: absolute_deadline
            .map(|d| millis(d, "absolute_deadline"))
            .transpose()?,
        label,
        device: device
            .as_deref()
            .map(crate::device::from_stored)
            .transpose()?,
    })
}

/// A registered connection from its columns: id, node, session_id,
/// opened_at.
type ConnectionRow = (String, String, String, i64);

fn connection(row: ConnectionRow) -> Result<Connection> {
    let (id, node, session, opened_at) = row;
    Ok(Connection {
        id,
        node,
        session: session_id(&session)?,
        opened_at: millis(opened_at, "opened_at")?,
    })
}

/// A running cleanup task (see `spawn_cleanup` on the stores): it stops
/// when this handle is dropped.
#[derive(Debug)]
pub struct CleanupHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CleanupHandle {
    /// Runs `purge` every `interval`, with the time of `clock`, logging
    /// failures (the next tick tries again).
    fn spawn<F, Fut>(interval: Duration, clock: impl Clock, purge: F) -> CleanupHandle
    where
        F: Fn(Millis) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<usize>> + Send,
    {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = purge(clock.now()).await {
                    tracing::warn!(error = %e, "purging expired sessions failed");
                }
            }
        });
        CleanupHandle { task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Tag, Token};

    fn stored() -> Stored {
        let token = Token::generate(&SessionId::generate(&Tag::random()));
        let new = NewSession {
            device: None,
            id: token.session_id(),
            token: token.digest(),
            now: 1_000,
            idle_timeout: 60_000,
            absolute_deadline: Some(90_000),
            user: Some(BoundUser {
                id: "7".into(),
                json: "{}".into(),
            }),
            label: Some("phone".into()),
            data: Vec::new(),
        };
        let mut data = HashMap::new();
        data.insert("k".to_owned(), "[1,2]".to_owned());
        Stored::new(&new, data)
    }

    #[test]
    fn a_row_round_trips_through_the_codec() {
        let s = stored();
        let row = s.encode().unwrap();
        assert_eq!(row.expires_at, 61_000);
        assert_eq!(row.decode().unwrap(), s);
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let good = stored().encode().unwrap();
        let mut bad = good.clone();
        bad.data = "not json".into();
        assert!(bad.decode().is_err());
        let mut bad = good.clone();
        bad.id = "short".into();
        assert!(bad.decode().is_err());
        let mut bad = good.clone();
        bad.last_seen = -1;
        assert!(bad.decode().is_err());
        let mut bad = good;
        bad.user_json = None;
        assert!(bad.decode().is_err());
    }

    mod properties {
        //! Whatever a row holds (a damaged database, another version's
        //! writes), decoding it never panics, and what decodes encodes back
        //! to a row that decodes the same.
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[A-Za-z0-9_-]{26}",
                Just("{}".to_owned()),
                Just(r#"{"k":"[1,2]"}"#.to_owned()),
                "\\{(\"[a-z]{1,4}\":\"[a-z0-9]{0,6}\",?){0,3}\\}",
            ]
        }

        fn time() -> impl Strategy<Value = i64> {
            prop_oneof![any::<i64>(), 0..10_000_000i64, Just(i64::MAX), Just(-1)]
        }

        prop_compose! {
            fn row()(
                (id, user_id, user_json, label, data) in (
                    text(), proptest::option::of(text()), proptest::option::of(text()),
                    proptest::option::of(text()), text(),
                ),
                (created_at, last_seen, idle_timeout, absolute_deadline, expires_at, ttg) in (
                    time(), time(), time(), proptest::option::of(time()), time(), time(),
                ),
                (rotated_at, renew_token, current_hash, adopted, resend_until) in (
                    proptest::option::of(time()), any::<bool>(), text(), any::<bool>(), time(),
                ),
                (previous_hash, grace_until, sealed, version) in (
                    proptest::option::of(text()), proptest::option::of(time()),
                    proptest::option::of(text()), any::<i64>(),
                ),
            ) -> Row {
                Row {
                    id, user_id, user_json, label, data, created_at, last_seen,
                    idle_timeout, absolute_deadline, expires_at, ttg, rotated_at,
                    renew_token, current_hash, adopted, resend_until, previous_hash,
                    grace_until, sealed, version,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn any_row_decodes_or_is_corrupt_and_what_decodes_round_trips(row in row()) {
                if let Ok(stored) = row.decode() {
                    // Times a row can hold but a record cannot write back
                    // (past the database's range) are refused, not wrapped.
                    if let Ok(again) = stored.encode() {
                        prop_assert_eq!(again.decode().ok(), Some(stored));
                    }
                }
            }

            #[test]
            fn any_stored_record_round_trips(
                idle in 1..1_000_000_000i64,
                now in 0..4_000_000_000_000i64,
                data in proptest::collection::hash_map("[^\u{0}]{0,8}", any::<String>(), 0..6),
            ) {
                let mut s = stored();
                s.record.created_at = now as Millis;
                s.record.last_seen = now as Millis;
                s.record.idle_timeout = idle as Millis;
                s.record.data = data;
                let row = s.encode().expect("an encodable record");
                prop_assert_eq!(row.decode().ok(), Some(s));
            }
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn end_payloads_round_trip() {
        let id = stored().record.id;
        for reason in [EndReason::LoggedOut, EndReason::Revoked, EndReason::Expired] {
            let payload = format!("{}:{}", reason.name(), id);
            assert_eq!(
                parse_ended(&payload),
                Some(SessionEnded {
                    id: id.clone(),
                    reason
                })
            );
        }
        assert_eq!(parse_ended("revoked:nope"), None);
        assert_eq!(parse_ended("bogus"), None);
    }
}
