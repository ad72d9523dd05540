//! Privilege changes on a request's session: login, logout, regeneration,
//! and the logged-in user's view of their other sessions.

use std::collections::HashMap;

use super::{Session, State};
use crate::clock::ms;
use crate::error::Error;
use crate::manager::SessionManager;
use crate::store::{
    BoundUser, Destroy, EndReason, Login, NewSession, Regenerate, SessionInfo, SessionRecord,
};
use crate::token::{SessionId, Tag, Token};
use crate::user::SessionUser;

impl Session {
    /// Logs `user` in: binds the user, records the session in the user's
    /// index and replaces the token at once (the old one stops working: no
    /// session fixation).
    ///
    /// The data carries over from an anonymous session (a cart survives
    /// login) or from a session of the same user. A session that belonged
    /// to *another* user is not carried over: the new session starts from
    /// empty data, plus what this request wrote before logging in, so that
    /// nothing of the previous user (an `mfa_ok` flag, say) leaks into the
    /// next user's session.
    ///
    /// The authenticated session gets a new [`id`](Self::id): the previous
    /// one ends here (reason [`Replaced`](crate::store::EndReason::Replaced)),
    /// and its connections are told. With a per-user limit
    /// ([`max_sessions_per_user`](crate::SessionLayerBuilder::max_sessions_per_user),
    /// 100 by default) the user's oldest sessions beyond it are revoked.
    pub async fn login<U: SessionUser>(&self, user: &U) -> Result<(), Error> {
        let bound = BoundUser {
            id: user.id(),
            json: serde_json::to_string(user)?,
        };
        self.load().await?;
        let _one_at_a_time = self.inner.saving.lock().await;
        let shared = self.shared();
        let now = shared.now();
        let id = SessionId::generate(&Tag::for_user(&bound.id));
        let token = Token::generate(&id);
        let (from, changes, label) = {
            let mut st = self.state();
            let from = st.record.as_ref().map(|r| r.id.clone());
            let label = st.record.as_ref().and_then(|r| r.label.clone());
            (from, std::mem::take(&mut st.changes), label)
        };
        // Put back if the login fails: the session it would end lives on.
        let detached = from.as_ref().and_then(|from| self.detach_connection(from));
        let delta = changes.delta();
        let session = NewSession {
            id,
            token: token.digest(),
            now,
            idle_timeout: changes
                .idle_timeout
                .unwrap_or(ms(shared.config.idle_timeout)),
            absolute_deadline: self.absolute_deadline(now),
            user: Some(bound),
            label: delta.label.clone().or(label),
            device: self.device(),
            data: Vec::new(),
        };
        let login = Login {
            from,
            delta,
            session,
            max_sessions: shared.config.max_sessions_per_user,
        };
        let outcome = match shared.call("login", shared.store.login(&login)).await {
            Ok(outcome) => outcome,
            Err(err) => {
                self.state().changes.restore(changes);
                return Err(err);
            }
        };
        if !outcome.evicted.is_empty() {
            tracing::info!(
                evicted = outcome.evicted.len(),
                "oldest sessions revoked: per-user limit"
            );
        }
        if let Some(detached) = detached {
            detached.ended();
        }
        crate::metrics::login(login.from.is_some(), outcome.evicted.len());
        let new = login.session;
        let mut st = self.state();
        // Changes a clone made while the login was in flight apply to the
        // new session.
        let later = std::mem::take(&mut st.changes);
        let mut data = outcome.data;
        later.delta().apply_to(&mut data);
        *st = State {
            origin: st.origin.take(),
            data,
            record: Some(SessionRecord {
                id: new.id,
                created_at: now,
                last_seen: now,
                idle_timeout: new.idle_timeout,
                absolute_deadline: new.absolute_deadline,
                ttg: now,
                rotated_at: None,
                renew_token: false,
                user: new.user,
                label: new.label,
                data: HashMap::new(),
            }),
            token: Some(token),
            send_token: true,
            deadline_moved: true,
            changes: later,
            ended: false,
        };
        Ok(())
    }

    /// Logs out: ends the session, logged in or not (its data, its entry in
    /// the user's index and its connections go with it), and expires the
    /// cookie. Data written afterwards in the same request starts a new
    /// anonymous session.
    #[doc(alias = "destroy")]
    pub async fn logout(&self) -> Result<(), Error> {
        self.load().await?;
        let _one_at_a_time = self.inner.saving.lock().await;
        if let Some(id) = self.id() {
            let detached = self.detach_connection(&id);
            let shared = self.shared();
            let ended = shared
                .call(
                    "destroy",
                    shared.store.destroy(&Destroy {
                        id,
                        reason: EndReason::LoggedOut,
                        now: shared.now(),
                    }),
                )
                .await?;
            if let Some(detached) = detached {
                detached.ended();
            }
            crate::metrics::sessions_ended(crate::metrics::Ended::Logout, usize::from(ended));
        }
        self.forget(true);
        Ok(())
    }

    /// Drops everything this request knew of its session, after it ended.
    /// `here`: this request ended it, so the response tells the client to
    /// forget its token. A session found ended by someone else is dropped
    /// silently instead: a concurrent login may just have given the client a
    /// new token, which an expiring cookie arriving later would delete.
    pub(super) fn forget(&self, here: bool) {
        let mut st = self.state();
        *st = State {
            ended: here,
            origin: st.origin.take(),
            ..State::default()
        };
    }

    /// Replaces the token at once, with no grace window for the old one.
    /// Call it on any privilege change other than login. A session that is
    /// not stored yet needs none: its first token will be new.
    pub async fn regenerate(&self) -> Result<(), Error> {
        self.load().await?;
        let _one_at_a_time = self.inner.saving.lock().await;
        let (id, changes) = {
            let mut st = self.state();
            match &st.record {
                Some(r) => (r.id.clone(), std::mem::take(&mut st.changes)),
                None => return Ok(()),
            }
        };
        let shared = self.shared();
        let now = shared.now();
        let token = Token::generate(&id);
        let done = shared
            .call(
                "regenerate",
                shared.store.regenerate(&Regenerate {
                    id: id.clone(),
                    token: token.digest(),
                    delta: changes.delta(),
                    now,
                }),
            )
            .await;
        match done {
            Ok(true) => {}
            Ok(false) => {
                self.forget(false);
                return Ok(());
            }
            Err(err) => {
                self.state().changes.restore(changes);
                return Err(err);
            }
        }
        if let Some(hub) = shared.hub.get() {
            hub.rotated(&id, &token);
        }
        let mut st = self.state();
        if let Some(record) = &mut st.record {
            record.ttg = now;
            record.last_seen = now;
            record.renew_token = false;
        }
        st.token = Some(token);
        st.send_token = true;
        st.deadline_moved = true;
        Ok(())
    }

    /// The session manager of this session's layer.
    pub fn manager(&self) -> SessionManager {
        SessionManager::from_shared(self.inner.shared.clone())
    }

    /// Every live session of the logged-in user, this one included (empty
    /// when nobody is logged in).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        self.load().await?;
        match self.user_id() {
            Some(user) => self.manager().list(&user).await,
            None => Ok(Vec::new()),
        }
    }

    /// The user's other live sessions: the "active devices" list.
    pub async fn other_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        let mut list = self.sessions().await?;
        let me = self.id();
        list.retain(|s| Some(&s.id) != me.as_ref());
        Ok(list)
    }

    /// Revokes one of the logged-in user's sessions by id. Ids of other
    /// users' sessions are refused (`Ok(false)`). Revoking this session
    /// logs it out.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, Error> {
        self.load().await?;
        let Some(user) = self.user_id() else {
            return Ok(false);
        };
        let revoked = self.manager().revoke(&user, id).await?;
        if revoked && self.id().as_ref() == Some(id) {
            self.forget(true);
        }
        Ok(revoked)
    }

    /// Logs the user out of every session, this one included. Returns how
    /// many were revoked.
    pub async fn logout_everywhere(&self) -> Result<usize, Error> {
        self.load().await?;
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
        self.load().await?;
        match (self.user_id(), self.id()) {
            (Some(user), Some(me)) => self.manager().revoke_all_except(&user, &me).await,
            _ => Ok(0),
        }
    }
}
