//! Loading a request's session: one store round trip, then a due rotation.

use super::{Session, State};
use crate::access::RotationMode;
use crate::clock::{ms, Millis};
use crate::config::StaleTokenPolicy;
use crate::error::Error;
use crate::metrics::{self, Ended};
use crate::regeneration::Regeneration;
use crate::store::{
    Destroy, EndReason, Load, Lookup, Rotated, Rotation, SessionRecord, StoreError, TokenState,
};
use crate::token::{seal, unseal, Token};

/// What a rotation gave the request.
enum Replacement {
    /// The token the client must hold from now on.
    Token(Token),
    /// The client already holds the replacement another request installed.
    Superseded,
    /// The session ended meanwhile.
    Gone,
}

impl Session {
    /// Loads the session from the store, once per request: later calls
    /// return at once.
    ///
    /// The axum extractor does this for you. A plain Tower service takes the
    /// `Session` the layer put in the request's extensions and calls `load`
    /// before reading or writing it (reads and writes on a session that was
    /// not loaded fail with [`Error::NotLoaded`]; the operations that call
    /// the store, such as [`login`](Self::login) or [`save`](Self::save),
    /// load it themselves). What it changes is saved after the service
    /// answers, as with the extractor.
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
        // Boxed: the load is large, and inline it would make the future of
        // every handler that extracts a session too large for the
        // allocator's per-thread cache.
        self.inner
            .loaded
            .get_or_try_init(|| Box::pin(self.load_from_store()))
            .await
            .map(|_| ())
    }

    /// Whether the session was loaded (and so it may need saving).
    pub(crate) fn was_loaded(&self) -> bool {
        self.inner.loaded.initialized()
    }

    /// Fails unless the session was loaded: reading or writing one that was
    /// not would report data that is not the session's, or drop the write.
    pub(super) fn ensure_loaded(&self) -> Result<(), Error> {
        if self.was_loaded() {
            Ok(())
        } else {
            Err(Error::NotLoaded)
        }
    }

    async fn load_from_store(&self) -> Result<(), Error> {
        let Some(token) = &self.inner.presented else {
            return Ok(());
        };
        let shared = self.shared();
        let config = &shared.config;
        let now = shared.now();
        let access = self.access();
        let (_, resend) = Regeneration::windows_or_default(config.regeneration.as_ref());
        let load = Load {
            token: token.digest(),
            now,
            // A silent load leaves the idle deadline where it is.
            refresh_after: access.extends().then(|| ms(config.refresh_after)),
            cijs: resend,
        };
        let lookup = shared.call("load", shared.store.load(&load)).await?;
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
                    let destroy = Destroy {
                        id,
                        reason: EndReason::StaleToken,
                        now,
                    };
                    let destroyed =
                        Box::pin(shared.call("destroy", shared.store.destroy(&destroy))).await?;
                    metrics::sessions_ended(Ended::StaleToken, destroyed.into());
                }
                return Ok(());
            }
            Lookup::Found { record, token } => (record, token),
        };
        let due = match access.rotation() {
            // The response may never reach the client: the next ordinary
            // request rotates instead.
            RotationMode::Never => false,
            RotationMode::Now => true,
            // A user changed elsewhere is a privilege change: its sessions
            // get a new token on their next use, whatever the policy.
            RotationMode::WhenDue => {
                record.renew_token
                    || config
                        .regeneration
                        .is_some_and(|r| r.is_due(record.ttg, now))
            }
        };
        let lapsed = state == TokenState::Lapsed;
        let (client_token, send) = match state {
            TokenState::Current if !due => (Some(token.clone()), false),
            // The replacement was lost; minting another waits for a route
            // that rotates (the old token still works until its grace ends).
            TokenState::Lapsed if access.rotation() == RotationMode::Never => {
                (Some(token.clone()), false)
            }
            TokenState::Current | TokenState::Lapsed => {
                // Boxed: rotations are rare, and their future would
                // otherwise grow every load's (and every handler's).
                match Box::pin(self.rotate(token, &record, now, lapsed)).await? {
                    Replacement::Token(new) => {
                        record.ttg = now;
                        record.rotated_at = Some(now);
                        record.renew_token = false;
                        (Some(new), true)
                    }
                    Replacement::Superseded => (None, false),
                    Replacement::Gone => return Ok(()),
                }
            }
            TokenState::Replaced { sealed } => (Some(open(token, &sealed)?), true),
            // The client holds a newer token than this request carries.
            TokenState::Superseded => (None, false),
        };
        if let (true, Some(new), Some(hub)) = (send, &client_token, shared.hub.get()) {
            hub.rotated(&record.id, new);
        }
        let mut st = self.state();
        *st = State {
            // The handler's view starts as the stored data; the record
            // keeps the rest (no one reads its data afterwards).
            data: std::mem::take(&mut record.data),
            deadline_moved: record.last_seen == now,
            record: Some(record),
            token: client_token,
            send_token: send,
            // Where the request came from outlives what it loaded.
            origin: st.origin.take(),
            ..State::default()
        };
        Ok(())
    }

    /// Replaces `old` (single flight: every request racing here ends up
    /// with the same replacement).
    async fn rotate(
        &self,
        old: &Token,
        record: &SessionRecord,
        now: Millis,
        lapsed: bool,
    ) -> Result<Replacement, Error> {
        let shared = self.shared();
        let (ojs, cijs) = Regeneration::windows_or_default(shared.config.regeneration.as_ref());
        let new = Token::generate(&old.session_id());
        let rotation = Rotation {
            id: record.id.clone(),
            old: old.digest(),
            new: new.digest(),
            sealed: seal(old, &new),
            now,
            ojs,
            cijs,
        };
        let rotated = shared
            .call("rotate", shared.store.rotate(&rotation))
            .await?;
        metrics::rotated(&rotated, lapsed);
        Ok(match rotated {
            Rotated::Installed => {
                tracing::debug!(session = %record.id, old = %old.fingerprint(), new = %new.fingerprint(), "session token rotated");
                Replacement::Token(new)
            }
            Rotated::Existing(sealed) => Replacement::Token(open(old, &sealed)?),
            Rotated::Superseded => Replacement::Superseded,
            Rotated::Gone => Replacement::Gone,
        })
    }
}

/// Opens a replacement the store kept sealed under `old`.
fn open(old: &Token, sealed: &str) -> Result<Token, Error> {
    unseal(old, sealed).ok_or_else(|| Error::Store(StoreError::corrupt("unreadable sealed token")))
}
