//! Writing a session's changes: the delta save, the first save of a new
//! session, and what the client must then do with its token.

use std::collections::HashMap;

use super::{Changes, Session};
use crate::clock::{ms, Millis};
use crate::error::Error;
use crate::store::{Delta, NewSession, Save, SessionRecord};
use crate::token::{SessionId, Tag, Token};

/// What the client must do with its token once a session is committed.
///
/// The layer turns it into `Set-Cookie` (or the session header); outside
/// HTTP ([`SessionManager::open`](crate::SessionManager::open)) the
/// application tells its client in its own protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenUpdate {
    /// Nothing changed: the client keeps the token it holds (or holds none).
    Keep,
    /// The client must hold this token from now on, and drop the one it
    /// presented: a new session was stored, a user logged in, or the token
    /// was rotated.
    Replace(Token),
    /// The session ended here (a logout): the client must forget its token.
    Drop,
}

/// A [`Session::commit`] that could not save the session's changes.
///
/// The token update still matters: after a login or a regeneration the
/// token in it is already the only one that works, so a client must get it
/// even on the error's response. `?` turns it into the plain [`Error`].
#[derive(Debug)]
pub struct CommitError {
    /// Why the changes were not saved (they are kept for a later attempt).
    pub error: Error,
    /// What the client must do with its token all the same.
    pub update: TokenUpdate,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for CommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<CommitError> for Error {
    fn from(err: CommitError) -> Self {
        err.error
    }
}

impl Session {
    /// Saves what changed and says what the client must do with its token.
    ///
    /// The layer calls it after the handler. Outside HTTP, call it once the
    /// work on a session opened with
    /// [`SessionManager::open`](crate::SessionManager::open) is done, and
    /// pass the update on to the client. Each update is reported once: a
    /// second commit with nothing new returns [`TokenUpdate::Keep`].
    pub async fn commit(&self) -> Result<TokenUpdate, CommitError> {
        let saved = self.save().await;
        let update = self.take_update();
        match saved {
            Ok(()) => Ok(update),
            Err(error) => Err(CommitError { error, update }),
        }
    }

    /// [`commit`](Self::commit) without a store call, when there is
    /// nothing to save and no save of a clone in flight (whose outcome, a
    /// created session say, the update must include); `None` otherwise.
    ///
    /// Most requests only read: this spares them the commit's future.
    pub(crate) fn commit_now(&self) -> Option<TokenUpdate> {
        let _no_save_in_flight = self.inner.saving.try_lock().ok()?;
        if !self.state().changes.is_empty() {
            return None;
        }
        Some(self.take_update())
    }

    fn take_update(&self) -> TokenUpdate {
        let mut st = self.state();
        let update = match &st.token {
            Some(token) if st.send_token => TokenUpdate::Replace(token.clone()),
            _ if st.ended => TokenUpdate::Drop,
            _ => TokenUpdate::Keep,
        };
        st.send_token = false;
        st.ended = false;
        update
    }

    /// What the cookie needs beyond the token update: the token the client
    /// holds, whether the idle deadline slid, the session's own idle timeout
    /// and its deadline.
    pub(crate) fn cookie_facts(&self) -> Option<CookieFacts> {
        let st = self.state();
        let record = st.record.as_ref()?;
        Some(CookieFacts {
            token: st.token.clone(),
            deadline_moved: st.deadline_moved,
            idle_timeout: record.idle_timeout,
            deadline: record.deadline(),
        })
    }

    /// Writes the changes made so far now, instead of after the handler
    /// (the layer saves whatever is left then). Only the keys that changed
    /// are written. A session that ended meanwhile is not brought back: the
    /// changes are dropped and the session reads as empty afterwards.
    ///
    /// Changes made by a clone while the save is in flight are kept for the
    /// next save; saves of one session never overlap.
    pub async fn save(&self) -> Result<(), Error> {
        self.load().await?;
        let _one_at_a_time = self.inner.saving.lock().await;
        let shared = self.shared();
        let now = shared.now();
        let (id, changes) = {
            let mut st = self.state();
            if st.changes.is_empty() {
                return Ok(());
            }
            (
                st.record.as_ref().map(|r| r.id.clone()),
                std::mem::take(&mut st.changes),
            )
        };
        let Some(id) = id else {
            // Boxed: the first save of a session is rare, and its future
            // would otherwise grow every save's.
            return Box::pin(self.create(changes, now)).await;
        };
        let saved = shared
            .call(
                "save",
                shared.store.save(&Save {
                    id: id.clone(),
                    delta: changes.delta(),
                    now,
                }),
            )
            .await;
        match saved {
            Ok(true) => {
                let mut st = self.state();
                if let Some(record) = &mut st.record {
                    // A write is a use: the store slid the deadline.
                    record.last_seen = now;
                    st.deadline_moved = true;
                }
                Ok(())
            }
            Ok(false) => {
                // Ended meanwhile (logout elsewhere, revocation): a write must
                // not bring it back.
                tracing::debug!(session = %id, "session ended during the request; changes dropped");
                self.forget(false);
                Ok(())
            }
            Err(err) => {
                self.state().changes.restore(changes);
                Err(err)
            }
        }
    }

    /// Extends the session's idle deadline now, whatever the route's
    /// [`Access`](crate::Access): the explicit form of what an ordinary
    /// load does. A silent route calls it when the request shows the user
    /// is there (a click reported by a poll, say). One store call; nothing
    /// happens without a stored session.
    pub async fn touch(&self) -> Result<(), Error> {
        self.load().await?;
        let _one_at_a_time = self.inner.saving.lock().await;
        let Some(id) = self.id() else {
            return Ok(());
        };
        let shared = self.shared();
        let now = shared.now();
        let save = Save {
            id: id.clone(),
            delta: Delta::default(),
            now,
        };
        if shared.call("save", shared.store.save(&save)).await? {
            let mut st = self.state();
            if let Some(record) = &mut st.record {
                record.last_seen = now;
                st.deadline_moved = true;
            }
        } else {
            tracing::debug!(session = %id, "session ended before it was touched");
            self.forget(false);
        }
        Ok(())
    }

    /// Stores a new session holding `changes`, with a fresh token.
    async fn create(&self, changes: Changes, now: Millis) -> Result<(), Error> {
        let shared = self.shared();
        let id = SessionId::generate(&Tag::random());
        let token = Token::generate(&id);
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
            device: self.device(),
            data: delta.set,
        };
        if let Err(err) = shared.call("create", shared.store.create(&new)).await {
            self.state().changes.restore(changes);
            return Err(err);
        }
        tracing::debug!(session = %new.id, token = %token.fingerprint(), "session created");
        crate::metrics::session_created();
        let mut st = self.state();
        st.record = Some(SessionRecord {
            id: new.id,
            created_at: now,
            last_seen: now,
            idle_timeout: new.idle_timeout,
            absolute_deadline: new.absolute_deadline,
            ttg: now,
            rotated_at: None,
            renew_token: false,
            user: None,
            label: new.label,
            // The handler's view, `data`, holds the data already.
            data: HashMap::new(),
        });
        // A token that failed to load is replaced on the transport it came
        // in on; a request without one hears of it on the announce ones.
        st.token = Some(token);
        st.send_token = true;
        st.deadline_moved = true;
        st.ended = false;
        Ok(())
    }

    pub(super) fn absolute_deadline(&self, now: Millis) -> Option<Millis> {
        self.shared()
            .config
            .absolute_timeout
            .map(|a| now.saturating_add(ms(a)))
    }
}

/// See [`Session::cookie_facts`].
pub(crate) struct CookieFacts {
    pub token: Option<Token>,
    pub deadline_moved: bool,
    pub idle_timeout: Millis,
    pub deadline: Millis,
}
