//! The seam between the layer and storage: the [`SessionStore`] trait.
//!
//! A store keeps session records, the tokens that point at them, the index of
//! each user's sessions and the registry of long connections. It knows
//! nothing of HTTP: the layer decides *what* should happen (this token is due
//! for rotation, this request changed these keys) and the store makes each
//! such change happen **atomically**, in one round trip where it can.
//!
//! Times are passed in with every call (see [`crate::clock`]), so every store
//! decides deadlines with the same clock and tests need no sleeps.
//!
//! These stores ship with the crate: [`MemoryStore`]; with the `redis`
//! feature, `RedisStore`; with `postgres` and `sqlite`, `PostgresStore` and
//! `SqliteStore` (module `sql`). The conformance suite (feature `conformance`) checks
//! any implementation against the behaviour the layer relies on.

mod error;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod sql;
pub mod tokens;
mod types;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "postgres")]
pub use self::sql::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sql::sqlite::SqliteStore;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use self::sql::CleanupHandle;
pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
pub use types::*;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::token::{SessionId, TokenDigest};

/// The result of a store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Storage for sessions, their tokens, user indexes and connections.
///
/// Every method that changes more than one thing must do so atomically: a
/// reader never sees half of it, and two calls never interleave inside it.
/// Methods take the current time from the caller.
///
/// A session is *live* until its idle deadline (`last_seen + idle_timeout`)
/// or its absolute deadline. A store must treat a session that is not live
/// exactly like a missing one, and must eventually free everything it held.
///
/// What a presented token means (current, in its grace window, stale) is
/// decided by the rules in [`tokens`]; a store written in Rust keeps a
/// [`tokens::TokenSlots`] per session and persists what it decides.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Resolves a token to its session, in one round trip.
    ///
    /// On success the session's idle deadline slides to `opts.now` if
    /// `opts.refresh_after` is set and the last refresh is at least that old
    /// (see [`SessionRecord::refresh_due`]); with `None` the load is silent.
    /// Presenting the current token marks it adopted. Presenting an old token
    /// inside its grace window yields [`TokenState::Replaced`] (the unadopted
    /// replacement, sealed under the old token, handed out again: it is
    /// resent until `now + opts.cijs`), [`TokenState::Superseded`] (the
    /// replacement was adopted) or [`TokenState::Lapsed`] (it was not
    /// presented within CIJS of its last hand-out: the caller mints a fresh
    /// one with [`SessionStore::rotate`]).
    async fn load(&self, token: &TokenDigest, opts: &LoadOptions) -> Result<Lookup>;

    /// Creates a session whose first token is `new.token`.
    async fn create(&self, new: &NewSession) -> Result<()>;

    /// Applies a delta to a live session. Returns `false`, changing nothing,
    /// if the session is gone: a save never brings a session back.
    async fn save(&self, id: &SessionId, delta: &Delta, now: Millis) -> Result<bool>;

    /// Replaces the token of a session with a grace window for the old one.
    ///
    /// Single flight: if `rotation.old` is the current token, `rotation.new`
    /// becomes current and the old token keeps working until
    /// `now + ojs` ([`Rotated::Installed`]). If another request already
    /// rotated it, the replacement that request installed is returned sealed
    /// ([`Rotated::Existing`]); if the client already presented it, there
    /// is nothing to hand out ([`Rotated::Superseded`]); if it was not
    /// presented within CIJS of its last hand-out, it is discarded for good
    /// and `rotation.new` is installed.
    async fn rotate(&self, rotation: &Rotation) -> Result<Rotated>;

    /// Replaces every token of a session by `new`, with no grace window, and
    /// applies `delta`. Returns `false` if the session is gone.
    async fn regenerate(
        &self,
        id: &SessionId,
        new: &TokenDigest,
        delta: &Delta,
        now: Millis,
    ) -> Result<bool>;

    /// Starts the authenticated session `login.session`, carrying over the
    /// data of `login.from` if it is live (with `login.delta` applied on
    /// top: its data, idle timeout and label) and ending `login.from`;
    /// records it in the user's index and enforces `login.max_sessions` by
    /// revoking the user's oldest sessions.
    async fn login(&self, login: &Login) -> Result<LoginOutcome>;

    /// Ends a session: its tokens, its index entry and its connections go
    /// with it, and subscribers are told. Returns `false` if it was gone
    /// (or no longer live).
    async fn destroy(&self, id: &SessionId, reason: EndReason, now: Millis) -> Result<bool>;

    /// The live sessions of a user, oldest first. Dead index entries met on
    /// the way are pruned.
    async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionInfo>>;

    /// Revokes sessions of a user. Only sessions in that user's index are
    /// touched, so a caller cannot revoke someone else's session by id.
    /// Returns the ids revoked.
    async fn revoke(&self, user_id: &str, scope: &Revoke, now: Millis) -> Result<Vec<SessionId>>;

    /// Replaces the stored user object in every live session of `user.id`,
    /// leaving all other data alone. Returns how many sessions it updated.
    async fn sync_user(&self, user: &BoundUser, now: Millis) -> Result<usize>;

    /// Registers a long connection under its session until `lease_until`.
    /// Returns `false` if the session is gone.
    async fn connect(&self, conn: &Connection, lease_until: Millis, now: Millis) -> Result<bool>;

    /// Reads a session by id for a live connection: refreshes the session's
    /// idle deadline and the connection's lease, and returns the fresh record
    /// and the state of the token `known` (if given) so the connection can
    /// follow rotations. `None` if the session is gone. A fetch never adopts
    /// a replacement: only a client presenting it does.
    async fn fetch(&self, fetch: &Fetch) -> Result<Option<Fetched>>;

    /// Removes a connection from the registry.
    async fn disconnect(&self, id: &SessionId, connection_id: &str) -> Result<()>;

    /// The live connections of a user's live sessions.
    async fn list_connections(&self, user_id: &str, now: Millis) -> Result<Vec<Connection>>;

    /// A feed of sessions that ended (destroyed, logged out, revoked, expired)
    /// anywhere this store is shared, for closing their connections.
    ///
    /// Stores shared between processes deliver events from every process.
    /// A receiver that lags must assume any session may have ended.
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded>;
}

/// A shared store is a store: `Arc<MemoryStore>`, or `Arc<dyn SessionStore>`
/// to choose the store at run time.
#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn load(&self, token: &TokenDigest, opts: &LoadOptions) -> Result<Lookup> {
        (**self).load(token, opts).await
    }
    async fn create(&self, new: &NewSession) -> Result<()> {
        (**self).create(new).await
    }
    async fn save(&self, id: &SessionId, delta: &Delta, now: Millis) -> Result<bool> {
        (**self).save(id, delta, now).await
    }
    async fn rotate(&self, rotation: &Rotation) -> Result<Rotated> {
        (**self).rotate(rotation).await
    }
    async fn regenerate(
        &self,
        id: &SessionId,
        new: &TokenDigest,
        delta: &Delta,
        now: Millis,
    ) -> Result<bool> {
        (**self).regenerate(id, new, delta, now).await
    }
    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        (**self).login(login).await
    }
    async fn destroy(&self, id: &SessionId, reason: EndReason, now: Millis) -> Result<bool> {
        (**self).destroy(id, reason, now).await
    }
    async fn list_sessions(&self, user_id: &str, now: Millis) -> Result<Vec<SessionInfo>> {
        (**self).list_sessions(user_id, now).await
    }
    async fn revoke(&self, user_id: &str, scope: &Revoke, now: Millis) -> Result<Vec<SessionId>> {
        (**self).revoke(user_id, scope, now).await
    }
    async fn sync_user(&self, user: &BoundUser, now: Millis) -> Result<usize> {
        (**self).sync_user(user, now).await
    }
    async fn connect(&self, conn: &Connection, lease_until: Millis, now: Millis) -> Result<bool> {
        (**self).connect(conn, lease_until, now).await
    }
    async fn fetch(&self, fetch: &Fetch) -> Result<Option<Fetched>> {
        (**self).fetch(fetch).await
    }
    async fn disconnect(&self, id: &SessionId, connection_id: &str) -> Result<()> {
        (**self).disconnect(id, connection_id).await
    }
    async fn list_connections(&self, user_id: &str, now: Millis) -> Result<Vec<Connection>> {
        (**self).list_connections(user_id, now).await
    }
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        (**self).subscribe()
    }
}
