//! [`Session`]: one request's view of its session.
//!
//! The layer puts a `Session` in every request's extensions, but nothing is
//! loaded until a handler extracts it. Reads and writes then work on memory;
//! what changed is written as a delta once the handler has answered, before
//! the response leaves. Privilege changes (`login`, `logout`, `regenerate`,
//! `destroy`) go to the store at once, so the handler learns of a failure
//! and the old token is dead before the handler returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::clock::{ms, to_system_time, Millis};
use crate::config::{StaleTokenPolicy, DEFAULT_CIJS, DEFAULT_OJS};
use crate::error::Error;
use crate::manager::SessionManager;
use crate::shared::Shared;
use crate::store::{
    BoundUser, Delta, EndReason, LoadOptions, Login, Lookup, NewSession, Rotated, Rotation,
    SessionInfo, SessionRecord, TokenState,
};
use crate::token::{seal, unseal, SessionId, Tag, Token};
use crate::transport::{self, Via};
use crate::user::SessionUser;

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
    presented: Option<(Token, Via)>,
    loaded: OnceCell<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The stored session, `None` until one exists.
    record: Option<SessionRecord>,
    /// Data as the handler sees it: the record's, with `changes` applied.
    data: HashMap<String, String>,
    /// The token the client holds, or should hold from this response on.
    token: Option<Token>,
    /// Whether the response must carry `token`.
    send_token: bool,
    changes: Changes,
    /// The session was ended in this request.
    ended: bool,
}

#[derive(Clone, Default)]
struct Changes {
    clear: bool,
    keys: BTreeMap<String, Option<String>>,
    idle_timeout: Option<Millis>,
    label: Option<String>,
}

impl Changes {
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

/// What the response must say about the token, decided after the handler.
pub(crate) enum Outcome {
    Nothing,
    Send(Token, Option<Via>),
    Expire(Option<Via>),
}

impl Outcome {
    pub(crate) fn apply(self, headers: &mut HeaderMap, shared: &Shared) {
        match self {
            Outcome::Nothing => {}
            Outcome::Send(token, via) => transport::write(headers, &shared.config, &token, via),
            Outcome::Expire(via) => transport::expire(headers, &shared.config, via),
        }
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, presented: Option<(Token, Via)>) -> Self {
        Session {
            inner: Arc::new(Inner {
                shared,
                presented,
                loaded: OnceCell::new(),
                state: Mutex::new(State::default()),
            }),
        }
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

    fn shared(&self) -> &Shared {
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

    /// A session read outside a request (for a long connection): already
    /// loaded, saved explicitly with [`save`](Self::save).
    pub(crate) fn detached(
        shared: Arc<Shared>,
        record: SessionRecord,
        token: Option<Token>,
    ) -> Self {
        let session = Session::new(shared, None);
        {
            let mut st = session.state();
            st.data = record.data.clone();
            st.record = Some(record);
            st.token = token;
        }
        // A fresh cell cannot be set already.
        let _ = session.inner.loaded.set(());
        session
    }

    /// Loads the session from the store, once per request: later calls
    /// return at once.
    ///
    /// The axum extractor does this for you. A plain Tower service takes the
    /// `Session` the layer put in the request's extensions and calls `load`
    /// before using it; what it changes is saved after the service answers,
    /// as with the extractor.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use sessionkit::Session;
    ///
    /// async fn handle(req: Request<String>) -> Result<Response<String>, sessionkit::Error> {
    ///     let session = req
    ///         .extensions()
    ///         .get::<Session>()
    ///         .cloned()
    ///         .ok_or(sessionkit::Error::MissingLayer)?;
    ///     session.load().await?;
    ///     let n: u64 = session.get("n")?.unwrap_or(0);
    ///     session.insert("n", n + 1)?;
    ///     Ok(Response::new(format!("{}", n + 1)))
    /// }
    /// ```
    pub async fn load(&self) -> Result<(), Error> {
        self.inner
            .loaded
            .get_or_try_init(|| self.load_from_store())
            .await
            .map(|_| ())
    }

    /// Whether a handler extracted the session (and so it may need saving).
    pub(crate) fn was_loaded(&self) -> bool {
        self.inner.loaded.initialized()
    }

    async fn load_from_store(&self) -> Result<(), Error> {
        let Some((token, _)) = &self.inner.presented else {
            return Ok(());
        };
        let shared = self.shared();
        let config = &shared.config;
        let now = shared.now();
        let opts = LoadOptions {
            now,
            refresh_after: ms(config.refresh_after),
            cijs: ms(config.rotation.map_or(DEFAULT_CIJS, |r| r.cijs)),
        };
        let lookup = shared
            .call("load", shared.store.load(&token.digest(), &opts))
            .await?;
        let (mut record, state) = match lookup {
            Lookup::Missing => {
                tracing::debug!(token = %token.fingerprint(), "unknown or expired session token ignored");
                return Ok(());
            }
            Lookup::Stale(id) => {
                tracing::warn!(
                    token = %token.fingerprint(),
                    session = %id,
                    "a replaced session token was presented after its grace window; it may have been copied"
                );
                if config.on_stale_token == StaleTokenPolicy::Revoke {
                    shared
                        .call(
                            "destroy",
                            shared.store.destroy(&id, EndReason::StaleToken, now),
                        )
                        .await?;
                }
                return Ok(());
            }
            Lookup::Found { record, token } => (record, token),
        };
        let due = config
            .rotation
            .is_some_and(|r| now.saturating_sub(record.ttg) >= ms(r.sfr));
        let current = match state {
            TokenState::Current if !due => None,
            TokenState::Current | TokenState::Grace { replacement: None } => {
                match self.rotate(token, &record, now).await? {
                    Some(new) => {
                        record.ttg = now;
                        record.rotated_at = Some(now);
                        Some(new)
                    }
                    // Ended between the load and the rotation.
                    None => return Ok(()),
                }
            }
            TokenState::Grace {
                replacement: Some(sealed),
            } => Some(unseal(token, &sealed).ok_or_else(|| {
                Error::Store(crate::store::StoreError::corrupt("unreadable sealed token"))
            })?),
        };
        let mut st = self.state();
        st.data = record.data.clone();
        st.record = Some(record);
        st.send_token = current.is_some();
        st.token = Some(current.unwrap_or_else(|| token.clone()));
        Ok(())
    }

    /// Replaces `old` (single flight: every request racing here ends up
    /// with the same replacement).
    async fn rotate(
        &self,
        old: &Token,
        record: &SessionRecord,
        now: Millis,
    ) -> Result<Option<Token>, Error> {
        let shared = self.shared();
        let (ojs, cijs) = shared
            .config
            .rotation
            .map_or((DEFAULT_OJS, DEFAULT_CIJS), |r| (r.ojs, r.cijs));
        let new = Token::generate(&old.tag());
        let rotation = Rotation {
            id: record.id.clone(),
            old: old.digest(),
            new: new.digest(),
            sealed: seal(old, &new),
            now,
            ojs: ms(ojs),
            cijs: ms(cijs),
        };
        let rotated = shared
            .call("rotate", shared.store.rotate(&rotation))
            .await?;
        Ok(match rotated {
            Rotated::Installed => {
                tracing::debug!(session = %record.id, old = %old.fingerprint(), new = %new.fingerprint(), "session token rotated");
                Some(new)
            }
            Rotated::Existing(sealed) => unseal(old, &sealed),
            Rotated::Gone => None,
        })
    }

    /// Saves what changed and decides what the response says about the
    /// token. Runs after the handler, before the response leaves.
    pub(crate) async fn commit(&self) -> Result<Outcome, Error> {
        self.save().await?;
        let via = self.inner.presented.as_ref().map(|(_, via)| *via);
        let st = self.state();
        Ok(match (&st.token, st.send_token, st.ended) {
            (Some(token), true, _) => Outcome::Send(token.clone(), via),
            (_, _, true) => Outcome::Expire(via),
            _ => Outcome::Nothing,
        })
    }

    /// Writes the changes made so far now, instead of after the handler
    /// (the layer saves whatever is left then). Only the keys that changed
    /// are written. A session that ended meanwhile is not brought back: the
    /// changes are dropped and the session reads as empty afterwards.
    pub async fn save(&self) -> Result<(), Error> {
        let shared = self.shared();
        let now = shared.now();
        let (id, changes) = {
            let st = self.state();
            if st.changes.delta().is_empty() {
                return Ok(());
            }
            (st.record.as_ref().map(|r| r.id.clone()), st.changes.clone())
        };
        let delta = changes.delta();
        let Some(id) = id else {
            return self.create(changes, now).await;
        };
        let saved = shared
            .call("save", shared.store.save(&id, &delta, now))
            .await?;
        if saved {
            self.state().changes = Changes::default();
        } else {
            // Ended meanwhile (logout elsewhere, revocation): a write must
            // not bring it back.
            tracing::debug!(session = %id, "session ended during the request; changes dropped");
            self.forget(false);
        }
        Ok(())
    }

    /// Stores a new session holding `changes`, with a fresh token.
    async fn create(&self, changes: Changes, now: Millis) -> Result<(), Error> {
        let shared = self.shared();
        let id = SessionId::generate(&Tag::random());
        let token = Token::generate(&id.tag());
        let delta = changes.delta();
        let new = NewSession {
            id,
            token: token.digest(),
            now,
            idle_timeout: changes
                .idle_timeout
                .unwrap_or(ms(shared.config.idle_timeout)),
            absolute_deadline: self.absolute_deadline(now),
            user: None,
            label: delta.label,
            data: delta.set,
        };
        shared.call("create", shared.store.create(&new)).await?;
        tracing::debug!(session = %new.id, token = %token.fingerprint(), "session created");
        let mut st = self.state();
        st.record = Some(SessionRecord {
            id: new.id,
            created_at: now,
            last_seen: now,
            idle_timeout: new.idle_timeout,
            absolute_deadline: new.absolute_deadline,
            ttg: now,
            rotated_at: None,
            user: None,
            label: new.label,
            data: new.data.into_iter().collect(),
        });
        // A token that failed to load is replaced on the transport it came
        // in on; a request without one hears of it on every transport.
        st.token = Some(token);
        st.send_token = true;
        st.ended = false;
        st.changes = Changes::default();
        Ok(())
    }

    fn absolute_deadline(&self, now: Millis) -> Option<Millis> {
        self.shared()
            .config
            .absolute_timeout
            .map(|a| now.saturating_add(ms(a)))
    }

    /// The session's stable id, `None` while no session is stored (a new
    /// one is stored when first written to). Safe to show: it is not a
    /// credential.
    pub fn id(&self) -> Option<SessionId> {
        self.state().record.as_ref().map(|r| r.id.clone())
    }

    /// Reads a value. `Ok(None)` if the key is absent; an error if the stored
    /// JSON does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.state();
        st.data
            .get(key)
            .map(|json| serde_json::from_str(json))
            .transpose()
            .map_err(Error::from)
    }

    /// Stores a value under `key` (as JSON). Saved after the handler.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
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
    pub fn remove(&self, key: &str) -> bool {
        let mut st = self.state();
        let present = st.data.remove(key).is_some();
        if present {
            st.changes.keys.insert(key.to_owned(), None);
        }
        present
    }

    /// Removes every key. The user stays logged in.
    pub fn clear(&self) {
        let mut st = self.state();
        if st.data.is_empty() && st.record.is_none() {
            return;
        }
        st.data.clear();
        st.changes.keys.clear();
        st.changes.clear = true;
    }

    /// The keys present.
    pub fn keys(&self) -> Vec<String> {
        self.state().data.keys().cloned().collect()
    }

    /// Sets this session's idle timeout, saved with the session: a "remember
    /// me" that holds on every later request. At most
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    pub fn set_idle_timeout(&self, timeout: Duration) {
        let mut st = self.state();
        let timeout = ms(timeout.min(crate::MAX_DURATION)).max(1);
        st.changes.idle_timeout = Some(timeout);
        if let Some(record) = &mut st.record {
            record.idle_timeout = timeout;
        }
    }

    /// Sets a label shown in the user's session list, such as a device name
    /// or user agent.
    pub fn set_label(&self, label: impl Into<String>) {
        let label = label.into();
        let mut st = self.state();
        if st.record.as_ref().and_then(|r| r.label.as_ref()) == Some(&label) {
            return;
        }
        st.changes.label = Some(label.clone());
        if let Some(record) = &mut st.record {
            record.label = Some(label);
        }
    }

    /// When the current token was generated (TTG).
    pub fn ttg(&self) -> Option<SystemTime> {
        self.state().record.as_ref().map(|r| to_system_time(r.ttg))
    }

    /// When the session's token was last replaced automatically.
    pub fn rotated_at(&self) -> Option<SystemTime> {
        self.state()
            .record
            .as_ref()
            .and_then(|r| r.rotated_at.map(to_system_time))
    }

    /// When the session started.
    pub fn created_at(&self) -> Option<SystemTime> {
        self.state()
            .record
            .as_ref()
            .map(|r| to_system_time(r.created_at))
    }

    /// When the session ends if not used again (idle or absolute deadline).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.state()
            .record
            .as_ref()
            .map(|r| to_system_time(r.deadline()))
    }

    /// The logged-in user, as given to [`login`](Self::login) (or
    /// [`SessionManager::sync_user`] since).
    pub fn user<U: DeserializeOwned>(&self) -> Result<Option<U>, Error> {
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

    /// Logs `user` in: keeps the session's data, binds the user, records the
    /// session in the user's index and replaces the token at once (the old
    /// one stops working: no session fixation).
    ///
    /// The authenticated session gets a new [`id`](Self::id): the anonymous
    /// one ends here, and its connections are told. With
    /// `max_sessions_per_user` set, the user's oldest sessions beyond the
    /// limit are revoked.
    pub async fn login<U: SessionUser>(&self, user: &U) -> Result<(), Error> {
        let bound = BoundUser {
            id: user.id(),
            json: serde_json::to_string(user)?,
        };
        let shared = self.shared();
        let now = shared.now();
        let tag = Tag::for_user(&bound.id);
        let token = Token::generate(&tag);
        let (from, changes, label) = {
            let st = self.state();
            let record = st.record.as_ref();
            (
                record.map(|r| r.id.clone()),
                st.changes.clone(),
                record.and_then(|r| r.label.clone()),
            )
        };
        let delta = changes.delta();
        let session = NewSession {
            id: SessionId::generate(&tag),
            token: token.digest(),
            now,
            idle_timeout: changes
                .idle_timeout
                .unwrap_or(ms(shared.config.idle_timeout)),
            absolute_deadline: self.absolute_deadline(now),
            user: Some(bound),
            label: delta.label.clone().or(label),
            data: Vec::new(),
        };
        let login = Login {
            from,
            delta,
            session,
            max_sessions: shared.config.max_sessions_per_user,
        };
        let outcome = shared.call("login", shared.store.login(&login)).await?;
        if !outcome.evicted.is_empty() {
            tracing::info!(
                evicted = outcome.evicted.len(),
                "oldest sessions revoked: per-user limit"
            );
        }
        let new = login.session;
        let mut st = self.state();
        st.data = outcome.data.clone();
        st.record = Some(SessionRecord {
            id: new.id,
            created_at: now,
            last_seen: now,
            idle_timeout: new.idle_timeout,
            absolute_deadline: new.absolute_deadline,
            ttg: now,
            rotated_at: None,
            user: new.user,
            label: new.label,
            data: outcome.data,
        });
        st.token = Some(token);
        st.send_token = true;
        st.changes = Changes::default();
        st.ended = false;
        Ok(())
    }

    /// Logs out: destroys the session (and its index entry) and expires the
    /// cookie. Data written afterwards in the same request starts a new
    /// anonymous session.
    pub async fn logout(&self) -> Result<(), Error> {
        self.end(EndReason::LoggedOut).await
    }

    /// Deletes the session from the store; same effect as [`logout`](Self::logout).
    pub async fn destroy(&self) -> Result<(), Error> {
        self.end(EndReason::LoggedOut).await
    }

    async fn end(&self, reason: EndReason) -> Result<(), Error> {
        let id = self.id();
        if let Some(id) = id {
            let shared = self.shared();
            shared
                .call("destroy", shared.store.destroy(&id, reason, shared.now()))
                .await?;
        }
        self.forget(true);
        Ok(())
    }

    /// Drops everything this request knew of its session, after it ended.
    /// `here`: this request ended it, so the response tells the client to
    /// forget its token. A session found ended by someone else is dropped
    /// silently instead: a concurrent login may just have given the client a
    /// new token, which an expiring cookie arriving later would delete.
    fn forget(&self, here: bool) {
        let mut st = self.state();
        *st = State {
            ended: here,
            ..State::default()
        };
    }

    /// Replaces the token at once, with no grace window for the old one.
    /// Call it on any privilege change other than login.
    pub async fn regenerate(&self) -> Result<(), Error> {
        let (id, changes) = {
            let st = self.state();
            match &st.record {
                Some(r) => (r.id.clone(), st.changes.clone()),
                // Nothing stored yet: the token it gets will be new anyway.
                None => return Ok(()),
            }
        };
        let shared = self.shared();
        let now = shared.now();
        let token = Token::generate(&id.tag());
        let done = shared
            .call(
                "regenerate",
                shared
                    .store
                    .regenerate(&id, &token.digest(), &changes.delta(), now),
            )
            .await?;
        if !done {
            self.forget(false);
            return Ok(());
        }
        let mut st = self.state();
        if let Some(record) = &mut st.record {
            record.ttg = now;
        }
        st.token = Some(token);
        st.send_token = true;
        st.changes = Changes::default();
        Ok(())
    }

    /// The session manager of this session's layer.
    pub fn manager(&self) -> SessionManager {
        SessionManager::from_shared(self.inner.shared.clone())
    }

    /// Every live session of the logged-in user, this one included (empty
    /// when nobody is logged in).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        match self.user_id() {
            Some(user) => self.manager().list(&user).await,
            None => Ok(Vec::new()),
        }
    }

    /// The user's other live sessions: the "active devices" list.
    pub async fn other_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        let me = self.id();
        let mut list = self.sessions().await?;
        list.retain(|s| Some(&s.id) != me.as_ref());
        Ok(list)
    }

    /// Revokes one of the logged-in user's sessions by id. Ids of other
    /// users' sessions are refused (`Ok(false)`). Revoking this session
    /// logs it out.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, Error> {
        let Some(user) = self.user_id() else {
            return Ok(false);
        };
        let revoked = self.manager().revoke(&user, id).await?;
        if revoked && self.id().as_ref() == Some(id) {
            self.forget(true);
        }
        Ok(revoked)
    }

    /// Logs the user out of every session, this one included.
    pub async fn logout_everywhere(&self) -> Result<usize, Error> {
        let Some(user) = self.user_id() else {
            self.logout().await?;
            return Ok(0);
        };
        let revoked = self.manager().revoke_all(&user).await?;
        self.forget(true);
        Ok(revoked)
    }

    /// Logs the user out of every session but this one.
    pub async fn logout_others(&self) -> Result<usize, Error> {
        match (self.user_id(), self.id()) {
            (Some(user), Some(me)) => self.manager().revoke_all_except(&user, &me).await,
            _ => Ok(0),
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

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            tracing::error!("Session extracted on a route without SessionLayer");
            return Err(Error::MissingLayer);
        };
        session.load().await?;
        Ok(session)
    }
}
