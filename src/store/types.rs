//! The values that cross the [`SessionStore`](super::SessionStore) seam.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::clock::Millis;
use crate::device::Device;
use crate::token::{SessionId, Tag, TokenDigest};

/// A user bound to a session: its id and the serialized user object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundUser {
    /// The user's id, as [`SessionUser::id`](crate::SessionUser::id) gave it.
    pub id: String,
    /// The user object as JSON.
    pub json: String,
}

/// A session as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The stable handle.
    pub id: SessionId,
    /// When the session started.
    pub created_at: Millis,
    /// The last refresh of the idle deadline.
    pub last_seen: Millis,
    /// The idle timeout in force for this session.
    pub idle_timeout: Millis,
    /// The absolute deadline, if one is configured.
    pub absolute_deadline: Option<Millis>,
    /// When the current token was generated (TTG).
    pub ttg: Millis,
    /// When the session's token was last replaced automatically.
    pub rotated_at: Option<Millis>,
    /// The session's user changed ([`SessionStore::sync_user`](super::SessionStore::sync_user)):
    /// its token is replaced on its next use, like any privilege change.
    pub renew_token: bool,
    /// The bound user.
    pub user: Option<BoundUser>,
    /// An application-chosen label (a device name, a user agent).
    pub label: Option<String>,
    /// The data, each value as JSON.
    pub data: HashMap<String, String>,
}

impl SessionRecord {
    /// When the session idles out if it is not used again.
    pub fn idle_deadline(&self) -> Millis {
        self.last_seen.saturating_add(self.idle_timeout)
    }

    /// The earlier of the idle and absolute deadlines: the session is live
    /// until then.
    pub fn deadline(&self) -> Millis {
        self.absolute_deadline
            .map_or(self.idle_deadline(), |abs| abs.min(self.idle_deadline()))
    }

    /// Whether a use at `now` slides the idle deadline: once the last
    /// refresh is `refresh_after` old, or a tenth of the session's own idle
    /// timeout if that is shorter, so that a session with a short timeout
    /// of its own never idles out while it is used more often than that.
    pub fn refresh_due(&self, now: Millis, refresh_after: Millis) -> bool {
        now.saturating_sub(self.last_seen) >= refresh_after.min(self.idle_timeout / 10)
    }
}

/// How the presented token relates to its session (see
/// [`tokens`](super::tokens) for the rules).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenState {
    /// The session's current token.
    Current,
    /// A replaced token inside its grace window, whose replacement the
    /// client has not presented yet: the replacement, sealed under the
    /// presented token, to hand out again.
    Replaced {
        /// The sealed replacement.
        sealed: String,
    },
    /// A replaced token inside its grace window, whose replacement the
    /// client already presented: nothing to hand out.
    Superseded,
    /// A replaced token inside its grace window, whose replacement was not
    /// presented within CIJS of being handed out: the client lost it, and
    /// the caller mints a fresh one with [`SessionStore::rotate`](super::SessionStore::rotate).
    Lapsed,
}

/// The outcome of [`SessionStore::load`](super::SessionStore::load).
// `Found` is the common case; boxing it would add an allocation per request
// to save stack space in the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// No live session has this token.
    Missing,
    /// The token was replaced and its grace window is over: it is dead, and a
    /// client presenting it probably holds a copy.
    Stale(SessionId),
    /// A live session.
    Found {
        /// The session, already refreshed.
        record: SessionRecord,
        /// How the token relates to it.
        token: TokenState,
    },
}

/// Parameters of [`SessionStore::load`](super::SessionStore::load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    /// The digest of the token presented.
    pub token: TokenDigest,
    /// The current time.
    pub now: Millis,
    /// Slide the idle deadline if the last refresh is this old (see
    /// [`SessionRecord::refresh_due`]); `None` for a silent read, which
    /// leaves the deadline where it is.
    pub refresh_after: Option<Millis>,
    /// How long a replacement that is handed out again keeps being handed
    /// out to requests carrying the old token (CIJS).
    pub cijs: Millis,
}

/// A session to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// Its handle.
    pub id: SessionId,
    /// Its first token.
    pub token: TokenDigest,
    /// The current time: creation, last seen and TTG.
    pub now: Millis,
    /// Its idle timeout.
    pub idle_timeout: Millis,
    /// Its absolute deadline.
    pub absolute_deadline: Option<Millis>,
    /// The user, for a session started by a login.
    pub user: Option<BoundUser>,
    /// Its label.
    pub label: Option<String>,
    /// The device it was started from, kept as it is (bounded by
    /// [`Device::new`]) and listed in [`SessionInfo::device`].
    pub device: Option<Device>,
    /// Its data (JSON values).
    pub data: Vec<(String, String)>,
}

impl NewSession {
    /// Checks that a logged-in session carries its user's tag, as the layer
    /// makes it: a user's sessions and index share one partition of a store.
    pub fn check_user_tag(&self) -> Result<(), StoreError> {
        match &self.user {
            Some(user) if self.id.tag() != Tag::for_user(&user.id) => Err(StoreError::invalid(
                "a logged-in session must carry its user's tag",
            )),
            _ => Ok(()),
        }
    }
}

/// A change to a session's data and settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Remove every key before applying `set`.
    pub clear: bool,
    /// Keys to set, with JSON values.
    pub set: Vec<(String, String)>,
    /// Keys to remove.
    pub remove: Vec<String>,
    /// A new idle timeout for this session.
    pub idle_timeout: Option<Millis>,
    /// A new label.
    pub label: Option<String>,
}

impl Delta {
    /// Whether applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.set.is_empty()
            && self.remove.is_empty()
            && self.idle_timeout.is_none()
            && self.label.is_none()
    }

    /// Applies the data part of the delta to a map.
    pub fn apply_to(&self, data: &mut HashMap<String, String>) {
        if self.clear {
            data.clear();
        }
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

/// Parameters of [`SessionStore::save`](super::SessionStore::save).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Save {
    /// The session.
    pub id: SessionId,
    /// The change to apply.
    pub delta: Delta,
    /// The current time: the session must be live at it.
    pub now: Millis,
}

/// Parameters of [`SessionStore::rotate`](super::SessionStore::rotate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The session.
    pub id: SessionId,
    /// The token presented.
    pub old: TokenDigest,
    /// The candidate replacement.
    pub new: TokenDigest,
    /// The candidate replacement sealed under the old token.
    pub sealed: String,
    /// The current time (the replacement's TTG).
    pub now: Millis,
    /// How long the old token keeps working (OJS).
    pub ojs: Millis,
    /// How long the replacement lives unadopted (CIJS).
    pub cijs: Millis,
}

/// The outcome of [`SessionStore::rotate`](super::SessionStore::rotate).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotated {
    /// The candidate is now the session's token.
    Installed,
    /// Another request rotated first: its replacement, sealed under the old
    /// token.
    Existing(String),
    /// Another request rotated first and the client already presented the
    /// replacement: nothing to hand out.
    Superseded,
    /// The session or the token is gone.
    Gone,
}

/// Parameters of [`SessionStore::regenerate`](super::SessionStore::regenerate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regenerate {
    /// The session.
    pub id: SessionId,
    /// The token that replaces every token of the session.
    pub token: TokenDigest,
    /// The change to apply along with it.
    pub delta: Delta,
    /// The current time (the new token's TTG).
    pub now: Millis,
}

/// Parameters of [`SessionStore::login`](super::SessionStore::login).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The session the request had, whose data carries over and which ends.
    pub from: Option<SessionId>,
    /// Changes the request made before logging in, applied on top.
    pub delta: Delta,
    /// The authenticated session to start (its `user` is set).
    pub session: NewSession,
    /// Keep at most this many live sessions for the user, revoking the
    /// oldest (by creation) beyond it.
    pub max_sessions: Option<usize>,
}

/// The outcome of [`SessionStore::login`](super::SessionStore::login).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginOutcome {
    /// The data the new session started with.
    pub data: HashMap<String, String>,
    /// Sessions revoked to respect the per-user limit.
    pub evicted: Vec<SessionId>,
}

/// Parameters of [`SessionStore::destroy`](super::SessionStore::destroy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destroy {
    /// The session.
    pub id: SessionId,
    /// Why it ends, as told to subscribers.
    pub reason: EndReason,
    /// The current time: a session no longer live at it counts as gone.
    pub now: Millis,
}

/// Parameters of [`SessionStore::list_sessions`](super::SessionStore::list_sessions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSessions {
    /// The user.
    pub user_id: String,
    /// The current time: only sessions live at it are listed.
    pub now: Millis,
}

/// Parameters of [`SessionStore::revoke`](super::SessionStore::revoke).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeSessions {
    /// The user whose sessions are revoked.
    pub user_id: String,
    /// Which of them.
    pub scope: Revoke,
    /// The current time: only sessions live at it are revoked.
    pub now: Millis,
}

/// Parameters of [`SessionStore::sync_user`](super::SessionStore::sync_user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncUser {
    /// The user object to store in every live session of `user.id`.
    pub user: BoundUser,
    /// The current time: only sessions live at it are updated.
    pub now: Millis,
}

/// Which of a user's sessions to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoke {
    /// One session.
    One(SessionId),
    /// All of them ("log out everywhere").
    All,
    /// All but this one ("log out everywhere else").
    AllExcept(SessionId),
}

/// What a listing shows of a session. Never contains a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's handle.
    pub id: SessionId,
    /// When it started.
    pub created_at: Millis,
    /// When it was last used.
    pub last_seen: Millis,
    /// When it idles out if not used.
    pub idle_deadline: Millis,
    /// Its absolute deadline.
    pub absolute_deadline: Option<Millis>,
    /// Its label.
    pub label: Option<String>,
    /// The device it was started from (by its creation or its login).
    #[serde(default)]
    pub device: Option<Device>,
}

impl From<&SessionRecord> for SessionInfo {
    /// The record's listing entry, without a device: a record does not
    /// carry one (loads never need it), so a store adds what it kept.
    fn from(r: &SessionRecord) -> Self {
        SessionInfo {
            id: r.id.clone(),
            created_at: r.created_at,
            last_seen: r.last_seen,
            idle_deadline: r.idle_deadline(),
            absolute_deadline: r.absolute_deadline,
            label: r.label.clone(),
            device: None,
        }
    }
}

/// A long connection (a WebSocket, an SSE stream) registered under a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// A unique id for the connection.
    pub id: String,
    /// The node (process) holding it.
    pub node: String,
    /// Its session.
    pub session: SessionId,
    /// When it opened.
    pub opened_at: Millis,
}

/// Parameters of [`SessionStore::connect`](super::SessionStore::connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The connection to register.
    pub connection: Connection,
    /// When its registration lapses unless a [`Fetch`] renews it.
    pub lease_until: Millis,
    /// The current time: its session must be live at it.
    pub now: Millis,
}

/// Parameters of [`SessionStore::disconnect`](super::SessionStore::disconnect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The connection's session.
    pub id: SessionId,
    /// The connection's id.
    pub connection_id: String,
    /// The current time.
    pub now: Millis,
}

/// Parameters of [`SessionStore::list_connections`](super::SessionStore::list_connections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListConnections {
    /// The user.
    pub user_id: String,
    /// The current time: only live connections of live sessions are listed.
    pub now: Millis,
}

/// Parameters of [`SessionStore::fetch`](super::SessionStore::fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The session.
    pub id: SessionId,
    /// The token the connection knows, to learn of its replacement.
    pub known: Option<TokenDigest>,
    /// The connection to keep registered, and until when.
    pub lease: Option<(String, Millis)>,
    /// The current time.
    pub now: Millis,
}

/// The outcome of [`SessionStore::fetch`](super::SessionStore::fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The session, refreshed.
    pub record: SessionRecord,
    /// If the known token was replaced and is in its grace window: the
    /// replacement, sealed under it.
    pub replacement: Option<String>,
    /// Whether the known token is still the current one.
    pub known_is_current: bool,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The user logged out, or the application destroyed it.
    LoggedOut,
    /// Revoked through the user's session management.
    Revoked,
    /// Its deadline passed.
    Expired,
    /// A login replaced it by an authenticated session.
    Replaced,
    /// A token was reused after its grace window (a likely copy).
    StaleToken,
    /// Given only to a [`LiveSession`](crate::LiveSession), never by a
    /// store: the connection could not follow a rotation of its session's
    /// token (made on another node and already adopted there), so the token
    /// it knows is about to stop working. The session itself lives on; the
    /// client reconnects with the token it holds.
    TokenLost,
    /// Given only to a [`LiveSession`](crate::LiveSession), never by a
    /// store: this server is shutting down
    /// ([`SessionManager::shutdown_connections`](crate::SessionManager::shutdown_connections)).
    /// The session lives on; the client reconnects to another server.
    Shutdown,
}

impl EndReason {
    /// The name stores write for the reason: its serde name (`logged_out`,
    /// `revoked`, ...), the same one a serialized [`SessionEnded`] carries.
    pub(crate) fn name(self) -> String {
        // A unit variant always serializes to a JSON string.
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => name,
            _ => String::new(),
        }
    }

    /// The reason a stored name stands for, if any.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_name(name: &str) -> Option<EndReason> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        EndReason::deserialize(name).ok()
    }
}

/// An event on the [`SessionStore::subscribe`](super::SessionStore::subscribe) feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The session.
    pub id: SessionId,
    /// Why.
    pub reason: EndReason,
}
