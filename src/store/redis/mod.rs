//! [`RedisStore`]: sessions in Redis or Redis Cluster, shared by every app
//! server that points at it.
//!
//! ```no_run
//! use sessionkit::{RedisStore, SessionLayer};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let layer = SessionLayer::builder(store).build();
//! # Ok(()) }
//! ```
//!
//! # Cost
//!
//! Every store operation is one round trip, atomic on the server. The two
//! that most requests make are plain commands: a load is one `HGETALL` of
//! the session the token names, decided by the client when it changes
//! nothing (the current token of a live session whose idle deadline need
//! not slide yet), and a save of data alone is one `MULTI`/`EXEC`
//! transaction. The rest, and those two when they must change more (a token
//! in its grace window, a refresh due, a session past its deadline), are
//! Lua functions of a library the store loads into Redis (`FCALL`;
//! `EVALSHA` of a script on servers before Redis 7, which also save with
//! the function, as cluster connections do). A function call costs Redis
//! several times the commands it runs.
//!
//! Through the layer, a request that only reads its session costs one round
//! trip (the load, which also slides the idle deadline when due), a request
//! that writes costs two (load, then the delta), and a route that never
//! extracts the session costs none.
//!
//! # Keys
//!
//! With the default prefix `sessionkit:`, a session whose tag is `AbCd`
//! keeps:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sessionkit:{AbCd}:s:<id>` | hash | metadata (`m`: numbers, digests and texts packed in one field), data values under `d:<key>` |
//! | `sessionkit:{AbCd}:t:<digest>` | string | the session id a token points at (for the functions) |
//! | `sessionkit:{AbCd}:c:<id>` | hash | connection id → lease and connection |
//! | `sessionkit:{AbCd}:u:<user id>` | sorted set | a user's session ids, scored by expiry |
//!
//! Tokens appear only as SHA-256 digests. The tag in braces is the Redis
//! Cluster hash tag: a session's keys share a slot, and a logged-in session
//! takes its user's tag, so it shares the slot of its user's index. Every
//! key has a TTL (the session's expiry; the index: its longest session's),
//! renewed whenever that expiry moves, so nothing outlives its sessions.
//! Session-ended events go out on the pub/sub channel `sessionkit:events`.
//!
//! # Failures
//!
//! Each command has a timeout (default 1 s). A server that is down, or hung,
//! turns into a [`StoreError`] within it, which the layer answers with a
//! 503; routes that do not use the session are unaffected. The connection
//! is re-established in the background, so once Redis is back the next
//! requests succeed with the sessions stored before; one that goes silent
//! without breaking is replaced after three timeouts in a row.
//!
//! Scripts decide deadlines with the caller's clock: app servers sharing a
//! Redis need synchronized clocks.
//!
//! # Cluster
//!
//! With the `redis-cluster` feature, [`RedisStoreBuilder::cluster`] takes the
//! addresses of some cluster nodes. A login moves an anonymous session to
//! its user's slot; when the two slots differ, that takes three atomic steps
//! instead of one, ordered so that a failure loses nothing: read the
//! anonymous session, start the logged-in one with its data and index
//! entry, end the anonymous one.

mod conn;
mod events;
mod keys;
mod ops;
mod reply;
#[cfg(test)]
mod reply_props;

/// Decodes `bytes`, read as a RESP reply, with every reply decoder (the
/// `redis_reply` fuzz target): whatever a damaged server answers, decoding
/// returns a value or a corrupt-store error, never a panic.
#[cfg(fuzzing)]
pub(crate) fn decode_any_reply(bytes: &[u8]) {
    let Ok(value) = redis::parse_redis_value(bytes) else {
        return;
    };
    let id = crate::token::SessionId::generate(&crate::token::Tag::random());
    let _ = reply::lookup(&value);
    let _ = reply::rotated(&value);
    let _ = reply::flag(&value);
    let _ = reply::login(&value);
    let _ = reply::fetched(&id, &value);
    let _ = reply::revoked(&value);
    let _ = reply::count(&value);
    let _ = reply::session_infos(&value);
    let _ = reply::connections(&value);
    if let redis::Value::Array(parts) = &value {
        if let [seen, flat, ..] = parts.as_slice() {
            let _ = reply::record(id, seen, flat);
        }
    }
}
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{IntoConnectionInfo, Value};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::conn::{Link, Source};
use self::keys::Keys;
use self::ops::{Chunk, Op};
use super::{
    Connect, Connection, Destroy, Disconnect, EndReason, Fetch, Fetched, ListConnections,
    ListSessions, Load, Login, LoginOutcome, Lookup, NewSession, Regenerate, Result,
    RevokeSessions, Rotated, Rotation, Save, SessionEnded, SessionInfo, SessionStore, StoreError,
    SyncUser,
};
use crate::token::SessionId;

const DEFAULT_PREFIX: &str = "sessionkit:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_CONNECTIONS: usize = 1;
/// The most connections to one server a [`RedisStoreBuilder`] accepts.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest command timeout a [`RedisStoreBuilder`] accepts: longer
/// would only hide a dead server.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How many user-index entries one call of a chunked operation handles.
const CHUNK: usize = 20;

/// A [`SessionStore`] on Redis (feature `redis`) or Redis Cluster (feature
/// `redis-cluster`). See the [module docs](self) for the key layout and the
/// failure behaviour.
///
/// Clones share its connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    keys: Keys,
    channel: String,
    events: broadcast::Sender<SessionEnded>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Configures a [`RedisStore`]: key prefix and command timeout, then the
/// server to connect to.
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    timeout: Duration,
    connections: usize,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.into(),
            timeout: DEFAULT_TIMEOUT,
            connections: DEFAULT_CONNECTIONS,
        }
    }
}

impl RedisStoreBuilder {
    /// What every key starts with (default `sessionkit:`). Use one prefix
    /// per application sharing a Redis. It may not contain `{` or `}`,
    /// which would change the cluster hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one command may take before it fails (default 1 s; at most
    /// [`MAX_COMMAND_TIMEOUT`], and not zero: `connect` refuses others).
    ///
    /// Under the layer a command also gives up when the store call's
    /// `store_timeout` runs out, whichever comes first. Keep this one the
    /// shorter: only a command that outlives it counts towards replacing a
    /// connection that went silent (a command cut short by the caller's
    /// deadline may only have had little of it left); otherwise such a
    /// connection goes only when the kernel gives up on it (30 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many multiplexed connections to open to a single server (default
    /// 1, at most [`MAX_CONNECTIONS`]); calls take them in turn. On one
    /// connection the commands of concurrent requests share the socket's
    /// writes, which costs the app less CPU per request than spreading them
    /// (BENCHMARKS.md has the figures); each connection is driven by one
    /// task, so raise this when an app with many cores finds that task the
    /// bottleneck. A cluster connection keeps one per node whatever this
    /// says.
    pub fn connections(mut self, count: usize) -> Self {
        self.connections = count;
        self
    }

    /// Connects to the Redis server at `url` (`redis://host:port/db`),
    /// with TCP keepalive on its connections.
    pub async fn connect(self, url: &str) -> Result<RedisStore> {
        self.client(open_client(url)?).await
    }

    /// Connects with an existing client (for TLS, authentication or other
    /// settings made on it; its TCP settings are left as they are).
    pub async fn client(self, client: redis::Client) -> Result<RedisStore> {
        self.check()?;
        // No response timeout of the client's own: every call already runs
        // under the command timeout (`Link::within`), and a second timer per
        // request only cost time.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_max_delay(Duration::from_secs(1));
        let source = Source::Single(client.clone(), config, self.connections);
        let link = Link::open(source, self.timeout).await?;
        self.finish(link, vec![client]).await
    }

    /// Connects to a Redis Cluster through some of its nodes
    /// (`redis://host:port` each).
    #[cfg(feature = "redis-cluster")]
    pub async fn cluster<U: AsRef<str>>(
        self,
        nodes: impl IntoIterator<Item = U>,
    ) -> Result<RedisStore> {
        self.check()?;
        let urls: Vec<String> = nodes.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let client = redis::cluster::ClusterClient::builder(urls.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .tcp_settings(conn::tcp_settings())
            .build()
            .map_err(StoreError::backend)?;
        let link = Link::open(Source::Cluster(client), self.timeout).await?;
        // Cluster pub/sub reaches every node: any node will do to listen.
        let sources = urls
            .iter()
            .map(|url| open_client(url))
            .collect::<Result<Vec<_>>>()?;
        self.finish(link, sources).await
    }

    fn check(&self) -> Result<()> {
        if self.prefix.contains(['{', '}']) {
            return Err(StoreError::invalid(
                "the key prefix may not contain `{` or `}`: they would change the cluster hash tag",
            ));
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(StoreError::backend(
                "the number of connections must be positive and at most MAX_CONNECTIONS",
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_COMMAND_TIMEOUT {
            return Err(StoreError::invalid(
                "the command timeout must be positive and at most an hour (MAX_COMMAND_TIMEOUT)",
            ));
        }
        Ok(())
    }

    async fn finish(self, link: Arc<Link>, sources: Vec<redis::Client>) -> Result<RedisStore> {
        let keys = Keys::new(self.prefix);
        let channel = keys.channel();
        // Subscribed before the store is handed out, so no event of its own
        // is missed.
        let subscription = events::subscribe(&sources, &channel, self.timeout).await?;
        let (events, _) = broadcast::channel(1024);
        let listener = events::forward(
            subscription,
            sources,
            channel.clone(),
            self.timeout,
            events.clone(),
        );
        Ok(RedisStore {
            inner: Arc::new(Inner {
                link,
                keys,
                channel,
                events,
                listener,
            }),
        })
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url` with the default prefix and
    /// timeout. See [`RedisStore::builder`] for the others.
    pub async fn connect(url: &str) -> Result<RedisStore> {
        RedisStoreBuilder::default().connect(url).await
    }

    /// Starts configuring a store.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Builds the call of `op`, sends it under the command timeout and
    /// decodes its reply.
    async fn run<O: Op>(&self, op: &O) -> Result<O::Reply> {
        let inner = &self.inner;
        let call = ops::call(op, inner.link.mode(), &inner.keys, &inner.channel);
        let reply: Value = inner.link.call(&call).await?;
        op.decode(&reply)
    }

    /// Runs the chunked operation `op(cursor)` over a user's index until
    /// the scan is done, handing each chunk to `each`. A scan always ends,
    /// and each call does bounded work.
    async fn each_chunk<O, T>(
        &self,
        op: impl Fn(String) -> O,
        mut each: impl FnMut(T),
    ) -> Result<()>
    where
        O: Op<Reply = Chunk<T>>,
    {
        let mut cursor = "0".to_owned();
        loop {
            let chunk = self.run(&op(cursor)).await?;
            each(chunk.items);
            cursor = chunk.next;
            if cursor == "0" {
                return Ok(());
            }
        }
    }
}

/// A client for `url` whose connections send TCP keepalive probes.
fn open_client(url: &str) -> Result<redis::Client> {
    let info = url
        .into_connection_info()
        .map_err(StoreError::backend)?
        .set_tcp_settings(conn::tcp_settings());
    redis::Client::open(info).map_err(StoreError::backend)
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.inner.keys)
            .field("cluster", &self.inner.link.is_cluster())
            .field("timeout", &self.inner.link.timeout())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        // Most loads change nothing on the server: the current, adopted
        // token of a live session whose idle deadline need not slide yet.
        // Those are one plain HGETALL of the session the token names,
        // decided here, which costs Redis a small fraction of a script
        // call; the script runs only when `settled` cannot decide.
        let key = self.inner.keys.session_key(&req.token.session);
        let flat: Value = self
            .inner
            .link
            .query(redis::cmd("HGETALL").arg(key))
            .await?;
        match reply::settled(req, &flat)? {
            Some(lookup) => Ok(lookup),
            // Boxed: the function call is the rare path, and inline it
            // would grow every load's future past the allocator's cache.
            None => Box::pin(self.run(&ops::Load(req))).await,
        }
    }

    async fn create(&self, new: &NewSession) -> Result<()> {
        new.check_user_tag()?;
        self.run(&ops::Create(new)).await
    }

    async fn save(&self, req: &Save) -> Result<bool> {
        if self.inner.link.writes_in_transactions() && ops::is_data_only(&req.delta) {
            let key = self.inner.keys.session_key(&req.id);
            let meta: Value = self
                .inner
                .link
                .query_pipe(&ops::write_data(&key, &req.delta))
                .await?;
            return match reply::written(&meta, req.now)? {
                reply::Written::Gone => Ok(false),
                reply::Written::Done => Ok(true),
                // Past its deadline (the function ends it) or due to slide
                // it: what remains is a touch, which the function does.
                reply::Written::Touch => {
                    let touch = Save {
                        id: req.id.clone(),
                        delta: super::Delta::default(),
                        now: req.now,
                    };
                    Box::pin(self.run(&ops::Save(&touch))).await
                }
            };
        }
        self.run(&ops::Save(req)).await
    }

    async fn rotate(&self, r: &Rotation) -> Result<Rotated> {
        self.run(&ops::Rotate(r)).await
    }

    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        self.run(&ops::Regenerate(req)).await
    }

    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        let new = &login.session;
        if new.user.is_none() {
            return Err(StoreError::corrupt("a login needs a user"));
        }
        new.check_user_tag()?;
        // On one server a single script ends the old session and starts the
        // new one. On a cluster the old session may sit in another slot: its
        // data is read first, the new session started with it, and only then
        // the old one ended, so that a failure on the way loses nothing (at
        // worst the old, anonymous session lives on until it idles out).
        let (from, carried, ends_after) = match &login.from {
            Some(from) if self.inner.link.is_cluster() && from.tag() != new.id.tag() => {
                let read = Fetch {
                    id: from.clone(),
                    known: None,
                    lease: None,
                    now: new.now,
                };
                let record = self.fetch(&read).await?.map(|f| f.record);
                let ends_after = record.is_some().then_some(from);
                // Data carries over from an anonymous session or one of the
                // same user, never from another user's.
                let same_user = |r: &super::SessionRecord| {
                    r.user
                        .as_ref()
                        .is_none_or(|u| new.user.as_ref().is_some_and(|n| n.id == u.id))
                };
                let data = record.filter(same_user).map(|r| r.data);
                (None, data.into_iter().flatten().collect(), ends_after)
            }
            from => (from.as_ref(), Vec::new(), None),
        };
        let outcome = self
            .run(&ops::Login {
                session: new,
                // 0 is no limit; a limit keeps at least the new session.
                max_sessions: login.max_sessions.map_or(0, |max| max.max(1)),
                from: from.map(|f| (self.inner.keys.base(&f.tag()), f)),
                carried: &carried,
                delta: &login.delta,
            })
            .await?;
        if let Some(old) = ends_after {
            if let Err(err) = self
                .destroy(&Destroy {
                    id: old.clone(),
                    reason: EndReason::Replaced,
                    now: new.now,
                })
                .await
            {
                tracing::warn!(session = %old, error = %err, "the session a login replaced could not be ended; it idles out");
            }
        }
        Ok(outcome)
    }

    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        self.run(&ops::Destroy(req)).await
    }

    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        let mut list = Vec::new();
        self.each_chunk(
            |cursor| ops::List {
                user_id,
                now,
                cursor,
            },
            |chunk| list.extend(chunk),
        )
        .await?;
        // A scan may return an entry twice.
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        list.dedup_by(|a, b| a.id == b.id);
        Ok(list)
    }

    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        let op = ops::RevokeSome {
            user_id: &req.user_id,
            now: req.now,
            scope: &req.scope,
        };
        let mut revoked = Vec::new();
        // Bounded: each call removes up to CHUNK entries, so the entries
        // there were at the start take this many calls, plus a few for
        // logins racing the revocation.
        let mut calls_left: Option<usize> = None;
        loop {
            let (ids, left) = self.run(&op).await?;
            revoked.extend(ids);
            let calls = calls_left.get_or_insert(left / CHUNK + 3);
            *calls = calls.saturating_sub(1);
            if left == 0 || *calls == 0 {
                return Ok(revoked);
            }
        }
    }

    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        let (user, now) = (&req.user, req.now);
        let mut count = 0;
        self.each_chunk(|cursor| ops::SyncUser { user, now, cursor }, |n| count += n)
            .await?;
        Ok(count)
    }

    async fn connect(&self, req: &Connect) -> Result<bool> {
        self.run(&ops::Connect::new(req)?).await
    }

    async fn fetch(&self, f: &Fetch) -> Result<Option<Fetched>> {
        self.run(&ops::Fetch(f)).await
    }

    async fn disconnect(&self, req: &Disconnect) -> Result<()> {
        let (id, connection_id) = (&req.id, req.connection_id.as_str());
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.inner.keys.connections(id)).arg(connection_id);
        let _: i64 = self.inner.link.query(&cmd).await?;
        Ok(())
    }

    async fn list_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
        let (user_id, now) = (req.user_id.as_str(), req.now);
        let mut list: Vec<Connection> = Vec::new();
        self.each_chunk(
            |cursor| ops::Connections {
                user_id,
                now,
                cursor,
            },
            |chunk| list.extend(chunk),
        )
        .await?;
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list.dedup_by(|a, b| a.id == b.id);
        Ok(list)
    }

    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.events.subscribe()
    }

    /// Every command runs under one timer, at the command timeout or the
    /// caller's deadline, whichever comes first.
    fn honors_call_deadline(&self) -> bool {
        true
    }
}
