//! [`Session`]: one request's view of its session.
//!
//! The layer puts a `Session` in every request's extensions, but nothing is
//! loaded until a handler extracts it. Reads and writes then work on memory;
//! what changed is written as a delta once the handler has answered, before
//! the response leaves. Privilege changes (`login`, `logout`, `regenerate`)
//! go to the store at once, so the handler learns of a failure and the old
//! token is dead before the handler returns.
//!
//! - this file: the state and the data API;
//! - [`load`]: the load and a due rotation;
//! - [`commit`]: saving, and what the response says about the token;
//! - [`auth`]: login, logout, regeneration and the user's sessions;
//! - `extract`: the axum extractor.

mod auth;
mod commit;
#[cfg(feature = "axum")]
mod extract;
mod load;

pub(crate) use commit::CookieFacts;
pub use commit::{CommitError, TokenUpdate};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::access::Access;
use crate::clock::{ms, Millis};
use crate::connection::LiveLink;
use crate::error::Error;
use crate::shared::Shared;
use crate::store::{Delta, SessionRecord};
use crate::token::{SessionId, Token};
use crate::transport::Via;

/// A request's session.
///
/// Extract it in a handler (it needs [`SessionLayer`](crate::SessionLayer) on
/// the route; without it, extraction fails with
/// [`Error::MissingLayer`](crate::Error::MissingLayer), a 500). Extraction
/// loads the session in one store round trip; if the store fails it is
/// rejected with [`Error::Store`](crate::Error::Store), a 503.
///
/// Values are stored as JSON under string keys. Reads and writes are
/// synchronous; changes are saved as a delta (only the keys that changed)
/// after the handler, so two concurrent requests that change different keys
/// both keep their change.
///
/// ```
/// use sessionkit::Session;
///
/// async fn counter(session: Session) -> Result<String, sessionkit::Error> {
///     let n: u64 = session.get("counter")?.unwrap_or(0);
///     session.insert("counter", n + 1)?;
///     Ok(format!("{}", n + 1))
/// }
/// ```
///
/// `Session` is cheap to clone; clones are the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// The token the client presented, if it was well formed.
    presented: Option<Token>,
    /// The HTTP transport it came in on (`None` outside HTTP, or without a
    /// token).
    via: Option<Via>,
    /// Set before the load, by the route or the caller.
    access: Mutex<Access>,
    /// The long connection this session serves a message of, if any.
    live: Option<LiveLink>,
    loaded: OnceCell<()>,
    state: Mutex<State>,
    /// Held across each store write of this session, so two clones never
    /// save (or create the session) at once.
    saving: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The stored session, `None` until one exists. Only its metadata is
    /// read from here: its data is in `data` (moved there by a load, left
    /// empty by a create or a login).
    record: Option<SessionRecord>,
    /// Data as the handler sees it: the record's, with `changes` applied.
    data: HashMap<String, String>,
    /// The token the client holds, or should hold from this response on;
    /// `None` when it holds one this request never saw (a replacement
    /// another request handed out and the client already uses).
    token: Option<Token>,
    /// Whether the response must carry `token`.
    send_token: bool,
    /// The idle deadline slid in this request (a persistent cookie follows).
    deadline_moved: bool,
    /// Changes not saved yet.
    changes: Changes,
    /// The session was ended in this request.
    ended: bool,
    /// Where the request came from, for a session it creates or logs in.
    origin: Option<crate::device::Origin>,
}

#[derive(Clone, Default)]
struct Changes {
    clear: bool,
    keys: BTreeMap<String, Option<String>>,
    idle_timeout: Option<Millis>,
    label: Option<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        !self.clear && self.keys.is_empty() && self.idle_timeout.is_none() && self.label.is_none()
    }

    fn delta(&self) -> Delta {
        let mut delta = Delta {
            clear: self.clear,
            idle_timeout: self.idle_timeout,
            label: self.label.clone(),
            ..Delta::default()
        };
        for (key, value) in &self.keys {
            match value {
                Some(v) => delta.set.push((key.clone(), v.clone())),
                None => delta.remove.push(key.clone()),
            }
        }
        delta
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, presented: Option<(Token, Via)>) -> Self {
        let (presented, via) = match presented {
            Some((token, via)) => (Some(token), Some(via)),
            None => (None, None),
        };
        Session::with_token(shared, presented, via, Access::new(), None)
    }

    /// A session to load from `presented`, the token a client sent (on
    /// `via`, for HTTP), used as `access` says, serving a message of `live`
    /// if it is a long connection's.
    pub(crate) fn with_token(
        shared: Arc<Shared>,
        presented: Option<Token>,
        via: Option<Via>,
        access: Access,
        live: Option<LiveLink>,
    ) -> Self {
        Session {
            inner: Arc::new(Inner {
                shared,
                presented,
                via,
                access: Mutex::new(access),
                live,
                loaded: OnceCell::new(),
                state: Mutex::new(State::default()),
                saving: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Records where the request came from (the layer does, per request).
    pub(crate) fn set_origin(&self, origin: crate::device::Origin) {
        self.state().origin = Some(origin);
    }

    /// The device a session this request starts records.
    fn device(&self) -> Option<crate::device::Device> {
        self.state()
            .origin
            .as_ref()
            .and_then(crate::device::Origin::device)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section below leaves the state consistent before it
        // can panic (serialization happens outside), so a poisoned lock holds
        // a usable state.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets how this session is used (see [`Access`]): whether loading it
    /// extends its idle deadline and whether a due token is rotated. It
    /// applies to the load, so it must come before the session is loaded
    /// (the [`Access`] layer does it for a route); afterwards it changes
    /// nothing.
    pub fn set_access(&self, access: Access) {
        *self
            .inner
            .access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = access;
    }

    pub(crate) fn access(&self) -> Access {
        *self
            .inner
            .access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The HTTP transport the token came in on.
    pub(crate) fn via(&self) -> Option<Via> {
        self.inner.via
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    /// The stored session's id and the token the client holds, if any.
    pub(crate) fn identity(&self) -> Option<(SessionId, Option<Token>)> {
        let st = self.state();
        let id = st.record.as_ref()?.id.clone();
        Some((id, st.token.clone()))
    }

    /// A session for one message of a long connection: already loaded
    /// (from `record`, or empty for an anonymous connection).
    pub(crate) fn for_connection(
        shared: Arc<Shared>,
        record: Option<SessionRecord>,
        token: Option<Token>,
        live: LiveLink,
    ) -> Self {
        let session = Session::with_token(shared, None, None, Access::new(), Some(live));
        if let Some(mut record) = record {
            let mut st = session.state();
            st.data = std::mem::take(&mut record.data);
            st.record = Some(record);
            st.token = token;
        }
        // A fresh cell cannot be set already.
        let _ = session.inner.loaded.set(());
        session
    }

    /// Before this session is ended by its own login or logout: a long
    /// connection working on it must not take that for its end. The guard
    /// puts the connection back unless told the end went through.
    pub(super) fn detach_connection(&self, id: &SessionId) -> Option<crate::connection::Detached> {
        self.inner.live.as_ref().map(|live| live.detach(id))
    }

    /// The session's stable id, `None` while no session is stored (a new
    /// one is stored when first written to). Safe to show: it is not a
    /// credential.
    pub fn id(&self) -> Option<SessionId> {
        self.state().record.as_ref().map(|r| r.id.clone())
    }

    /// Reads a value. `Ok(None)` if the key is absent; an error if the stored
    /// JSON does not fit `T`, or if the session was not loaded
    /// ([`Error::NotLoaded`]).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.ensure_loaded()?;
        let st = self.state();
        st.data
            .get(key)
            .map(|json| serde_json::from_str(json))
            .transpose()
            .map_err(Error::from)
    }

    /// Stores a value under `key` (as JSON). Saved after the handler.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        self.ensure_loaded()?;
        let json = serde_json::to_string(&value)?;
        let mut st = self.state();
        if st.data.get(key) == Some(&json) {
            return Ok(());
        }
        st.data.insert(key.to_owned(), json.clone());
        st.changes.keys.insert(key.to_owned(), Some(json));
        Ok(())
    }

    /// Removes `key`. Returns whether it was there.
    pub fn remove(&self, key: &str) -> Result<bool, Error> {
        self.ensure_loaded()?;
        let mut st = self.state();
        let present = st.data.remove(key).is_some();
        if present {
            st.changes.keys.insert(key.to_owned(), None);
        }
        Ok(present)
    }

    /// Removes every key. The user stays logged in.
    pub fn clear(&self) -> Result<(), Error> {
        self.ensure_loaded()?;
        let mut st = self.state();
        if st.data.is_empty() && st.record.is_none() {
            return Ok(());
        }
        st.data.clear();
        st.changes.keys.clear();
        st.changes.clear = true;
        Ok(())
    }

    /// The keys present.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        self.ensure_loaded()?;
        Ok(self.state().data.keys().cloned().collect())
    }

    /// Sets this session's idle timeout, saved with the session: a "remember
    /// me" that holds on every later request. At most
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    ///
    /// The cookie then becomes persistent and follows the session: each time
    /// the idle deadline slides, the same token is sent again with a
    /// `Max-Age` matching the session's deadline.
    pub fn set_idle_timeout(&self, timeout: Duration) -> Result<(), Error> {
        self.ensure_loaded()?;
        let mut st = self.state();
        let timeout = ms(timeout.min(crate::MAX_DURATION)).max(1);
        st.changes.idle_timeout = Some(timeout);
        if let Some(record) = &mut st.record {
            record.idle_timeout = timeout;
        }
        Ok(())
    }

    /// Sets a label shown in the user's session list, such as a device name
    /// or user agent.
    pub fn set_label(&self, label: impl Into<String>) -> Result<(), Error> {
        self.ensure_loaded()?;
        let label = label.into();
        let mut st = self.state();
        if st.record.as_ref().and_then(|r| r.label.as_ref()) == Some(&label) {
            return Ok(());
        }
        st.changes.label = Some(label.clone());
        if let Some(record) = &mut st.record {
            record.label = Some(label);
        }
        Ok(())
    }

    /// When the current token was generated (TTG), in [`Millis`]
    /// ([`to_system_time`](crate::clock::to_system_time) converts); `None`
    /// for a session not stored yet.
    pub fn ttg(&self) -> Option<Millis> {
        self.state().record.as_ref().map(|r| r.ttg)
    }

    /// When the session's token was last replaced automatically.
    pub fn rotated_at(&self) -> Option<Millis> {
        self.state().record.as_ref().and_then(|r| r.rotated_at)
    }

    /// When the session started (or its user logged in).
    pub fn created_at(&self) -> Option<Millis> {
        self.state().record.as_ref().map(|r| r.created_at)
    }

    /// When the session ends if not used again (idle or absolute deadline).
    pub fn expires_at(&self) -> Option<Millis> {
        self.state().record.as_ref().map(|r| r.deadline())
    }

    /// The logged-in user, as given to [`login`](Self::login) (or
    /// [`SessionManager::sync_user`](crate::SessionManager::sync_user) since).
    pub fn user<U: DeserializeOwned>(&self) -> Result<Option<U>, Error> {
        self.ensure_loaded()?;
        let st = self.state();
        st.record
            .as_ref()
            .and_then(|r| r.user.as_ref())
            .map(|u| serde_json::from_str(&u.json))
            .transpose()
            .map_err(Error::from)
    }

    /// The logged-in user's id.
    pub fn user_id(&self) -> Option<String> {
        self.state()
            .record
            .as_ref()
            .and_then(|r| r.user.as_ref())
            .map(|u| u.id.clone())
    }
}

impl Changes {
    /// Puts back changes whose save failed, under the ones made since.
    pub(super) fn restore(&mut self, older: Changes) {
        if self.clear {
            return;
        }
        let newer = std::mem::replace(self, older);
        self.keys.extend(newer.keys);
        if newer.idle_timeout.is_some() {
            self.idle_timeout = newer.idle_timeout;
        }
        if newer.label.is_some() {
            self.label = newer.label;
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
