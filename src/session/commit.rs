//! Writing a request's changes: the delta save, the first save of a new
//! session, and what the response must then say about the token.

use std::time::Duration;

use super::{Changes, Session};
use crate::clock::{ms, Millis};
use crate::error::Error;
use crate::store::{NewSession, Save, SessionRecord};
use crate::token::{SessionId, Tag, Token};
use crate::transport::{Outcome, Via};

impl Session {
    /// Saves what changed and decides what the response says about the
    /// token. Runs after the handler, before the response leaves.
    ///
    /// On failure the outcome still comes back: a token that is already the
    /// only one working (after a login or a regeneration) must reach the
    /// client even on the error response.
    pub(crate) async fn commit(&self) -> Result<Outcome, (Error, Outcome)> {
        let saved = self.save().await;
        let outcome = self.outcome();
        match saved {
            Ok(()) => Ok(outcome),
            Err(err) => Err((err, outcome)),
        }
    }

    fn outcome(&self) -> Outcome {
        let via = self.inner.presented.as_ref().map(|(_, via)| *via);
        let now = self.shared().now();
        let st = self.state();
        let max_age = st.record.as_ref().and_then(|r| self.cookie_max_age(r, now));
        match &st.token {
            Some(token) if st.send_token => Outcome::Send {
                token: token.clone(),
                via,
                max_age,
            },
            // A persistent cookie follows the session: when the deadline
            // slid, the same token goes out again with the new Max-Age.
            Some(token) if st.deadline_moved && max_age.is_some() && via == Some(Via::Cookie) => {
                Outcome::Send {
                    token: token.clone(),
                    via,
                    max_age,
                }
            }
            _ if st.ended => Outcome::Expire(via),
            _ => Outcome::Nothing,
        }
    }

    /// The cookie's Max-Age for this session: `None` for a browser-session
    /// cookie, unless the layer sets a Max-Age or the session has an idle
    /// timeout of its own; then what is left until the session's deadline.
    fn cookie_max_age(&self, record: &SessionRecord, now: Millis) -> Option<Duration> {
        let config = &self.shared().config;
        let cookie = config.cookie.as_ref()?;
        let own_timeout = record.idle_timeout != ms(config.idle_timeout);
        if cookie.max_age.is_none() && !own_timeout {
            return None;
        }
        let left = Duration::from_millis(record.deadline().saturating_sub(now));
        Some(cookie.max_age.map_or(left, |cap| cap.min(left)))
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
            return self.create(changes, now).await;
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
            data: new.data.into_iter().collect(),
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
