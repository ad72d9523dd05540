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

mod deadline;
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
pub use deadline::call_deadline;
pub(crate) use deadline::with_call_deadline;
pub use error::{StoreError, StoreErrorKind};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use types::*;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::token::SessionId;

/// The result of a store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Storage for sessions, their tokens, user indexes and connections.
///
/// Every method takes one request struct (defined in this module: [`Load`],
/// [`Save`], [`Rotation`], ...) carrying everything the call needs,
/// including the current time `now`, which the caller decides: a store never
/// reads a clock of its own to judge deadlines.
///
/// Every method that changes more than one thing must do so atomically: a
/// reader never sees half of it, and two calls never interleave inside it.
///
/// A session is *live* until its idle deadline (`last_seen + idle_timeout`)
/// or its absolute deadline. A store must treat a session that is not live
/// exactly like a missing one, and must eventually free everything it held.
///
/// What a presented token means (current, in its grace window, stale) is
/// decided by the rules in [`tokens`]; a store written in Rust keeps a
/// [`tokens::TokenSlots`] per session and persists what it decides.
///
/// The enums a store returns or matches ([`Lookup`], [`TokenState`],
/// [`Rotated`], [`Revoke`], [`EndReason`], [`StoreErrorKind`]) are
/// `#[non_exhaustive]`: a `match` on them outside this crate needs a
/// wildcard arm.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Resolves the token `load.token` to its session, in one round trip.
    ///
    /// On success the session's idle deadline slides to `load.now` if
    /// `load.refresh_after` is set and the last refresh is at least that old
    /// (see [`SessionRecord::refresh_due`]); with `None` the load is silent.
    /// Presenting the current token marks it adopted. Presenting an old token
    /// inside its grace window yields [`TokenState::Replaced`] (the unadopted
    /// replacement, sealed under the old token, handed out again: it is
    /// resent until `now + load.cijs`), [`TokenState::Superseded`] (the
    /// replacement was adopted) or [`TokenState::Lapsed`] (it was not
    /// presented within CIJS of its last hand-out: the caller mints a fresh
    /// one with [`SessionStore::rotate`]).
    async fn load(&self, load: &Load) -> Result<Lookup>;

    /// Creates a session whose first token is `new.token`.
    async fn create(&self, new: &NewSession) -> Result<()>;

    /// Applies `save.delta` to the live session `save.id`. Returns `false`,
    /// changing nothing, if the session is gone: a save never brings a
    /// session back.
    ///
    /// A save is a use, even with an empty delta: the idle deadline slides
    /// to `save.now`, at least once the last refresh is a tenth of the
    /// session's idle timeout old (a store may slide on every save).
    async fn save(&self, save: &Save) -> Result<bool>;

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

    /// Replaces every token of the session `regenerate.id` by
    /// `regenerate.token`, with no grace window, and applies
    /// `regenerate.delta`. Returns `false` if the session is gone.
    async fn regenerate(&self, regenerate: &Regenerate) -> Result<bool>;

    /// Starts the authenticated session `login.session`, carrying over the
    /// data of `login.from` if it is live (with `login.delta` applied on
    /// top: its data, idle timeout and label) and ending `login.from`;
    /// records it in the user's index and enforces `login.max_sessions` by
    /// revoking the user's oldest sessions. The current time is
    /// `login.session.now`.
    async fn login(&self, login: &Login) -> Result<LoginOutcome>;

    /// Ends the session `destroy.id`: its tokens, its index entry and its
    /// connections go with it, and subscribers are told `destroy.reason`.
    /// Returns `false` if it was gone (or no longer live).
    async fn destroy(&self, destroy: &Destroy) -> Result<bool>;

    /// The live sessions of the user `list.user_id`, oldest first. Dead
    /// index entries met on the way are pruned.
    async fn list_sessions(&self, list: &ListSessions) -> Result<Vec<SessionInfo>>;

    /// Revokes the sessions `revoke.scope` of the user `revoke.user_id`.
    /// Only sessions in that user's index are touched, so a caller cannot
    /// revoke someone else's session by id. Returns the ids revoked.
    async fn revoke(&self, revoke: &RevokeSessions) -> Result<Vec<SessionId>>;

    /// Replaces the stored user object in every live session of
    /// `sync.user.id`, leaving all other data alone. Returns how many
    /// sessions it updated.
    async fn sync_user(&self, sync: &SyncUser) -> Result<usize>;

    /// Registers the long connection `connect.connection` under its session
    /// until `connect.lease_until`. Returns `false` if the session is gone.
    async fn connect(&self, connect: &Connect) -> Result<bool>;

    /// Reads a session by id for a live connection: refreshes the session's
    /// idle deadline and the connection's lease, and returns the fresh record
    /// and the state of the token `known` (if given) so the connection can
    /// follow rotations. `None` if the session is gone. A fetch never adopts
    /// a replacement: only a client presenting it does.
    async fn fetch(&self, fetch: &Fetch) -> Result<Option<Fetched>>;

    /// Removes the connection `disconnect.connection_id` of the session
    /// `disconnect.id` from the registry.
    async fn disconnect(&self, disconnect: &Disconnect) -> Result<()>;

    /// The live connections of the live sessions of the user `list.user_id`.
    async fn list_connections(&self, list: &ListConnections) -> Result<Vec<Connection>>;

    /// A feed of sessions that ended (destroyed, logged out, revoked, expired)
    /// anywhere this store is shared, for closing their connections.
    ///
    /// Stores shared between processes deliver events from every process.
    /// A receiver that lags must assume any session may have ended.
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded>;

    /// Whether every call of this store fails with
    /// [`StoreError::timeout`] by the caller's [`call_deadline`] when one is
    /// set. The layer then sets that deadline instead of running a timer of
    /// its own around the call, which saves a store that bounds its calls
    /// anyway a second timer per call. The default, `false`, has the layer
    /// bound the call.
    ///
    /// A store that wraps another may forward its answer only if it awaits
    /// nothing of its own: whatever it awaits outside the inner store would
    /// be bounded by nobody.
    fn honors_call_deadline(&self) -> bool {
        false
    }
}

/// A shared store is a store: `Arc<MemoryStore>`, or `Arc<dyn SessionStore>`
/// to choose the store at run time.
#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn load(&self, load: &Load) -> Result<Lookup> {
        (**self).load(load).await
    }
    async fn create(&self, new: &NewSession) -> Result<()> {
        (**self).create(new).await
    }
    async fn save(&self, save: &Save) -> Result<bool> {
        (**self).save(save).await
    }
    async fn rotate(&self, rotation: &Rotation) -> Result<Rotated> {
        (**self).rotate(rotation).await
    }
    async fn regenerate(&self, regenerate: &Regenerate) -> Result<bool> {
        (**self).regenerate(regenerate).await
    }
    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        (**self).login(login).await
    }
    async fn destroy(&self, destroy: &Destroy) -> Result<bool> {
        (**self).destroy(destroy).await
    }
    async fn list_sessions(&self, list: &ListSessions) -> Result<Vec<SessionInfo>> {
        (**self).list_sessions(list).await
    }
    async fn revoke(&self, revoke: &RevokeSessions) -> Result<Vec<SessionId>> {
        (**self).revoke(revoke).await
    }
    async fn sync_user(&self, sync: &SyncUser) -> Result<usize> {
        (**self).sync_user(sync).await
    }
    async fn connect(&self, connect: &Connect) -> Result<bool> {
        (**self).connect(connect).await
    }
    async fn fetch(&self, fetch: &Fetch) -> Result<Option<Fetched>> {
        (**self).fetch(fetch).await
    }
    async fn disconnect(&self, disconnect: &Disconnect) -> Result<()> {
        (**self).disconnect(disconnect).await
    }
    async fn list_connections(&self, list: &ListConnections) -> Result<Vec<Connection>> {
        (**self).list_connections(list).await
    }
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        (**self).subscribe()
    }
    fn honors_call_deadline(&self) -> bool {
        (**self).honors_call_deadline()
    }
}
