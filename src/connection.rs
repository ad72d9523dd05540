//! Connection sessions: a WebSocket or stream that holds its session.
//!
//! A long connection outlives the request that opened it, so on its own it
//! would let its session idle out, miss token rotations and stay open after
//! a logout. [`Session::connect`] turns the request's session into a
//! [`LiveSession`] that, while it lives:
//!
//! - registers itself under the session in the store (connection id, node,
//!   opening time) with a lease it renews on every heartbeat, so a crashed
//!   node's entries run out by themselves;
//! - refreshes the session's idle deadline on every heartbeat (the absolute
//!   deadline still applies);
//! - learns the replacement when the session's token is rotated, for the
//!   application to hand to its client: at once when the rotation happens
//!   on this node, at its next heartbeat otherwise; a connection that
//!   cannot follow (the replacement was already adopted elsewhere) ends
//!   with [`EndReason::TokenLost`] rather than keep a token that is about
//!   to stop working;
//! - resolves [`LiveSession::ended`] the moment the session is revoked,
//!   logged out or destroyed on any node sharing the store (the store's
//!   [`subscribe`](crate::SessionStore::subscribe) feed), or found expired
//!   by a heartbeat.
//!
//! A connection can also drive its session over its own messages, as
//! dce-session's socket sessions do: [`Session::connect_anonymous`] opens
//! one without a stored session, and each message works on
//! [`LiveSession::session`] and ends with [`LiveSession::commit`], which
//! saves, and returns the [`TokenUpdate`] to tell the client in a message.
//! A message that logs in (or writes the first data) binds the connection
//! to the new session; one that logs out leaves it open and anonymous. Its
//! own login or logout never ends the connection; only the session ending
//! elsewhere does.
//!
//! ```no_run
//! use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
//! use axum::response::Response;
//! use sessionkit::Session;
//!
//! async fn ws(upgrade: WebSocketUpgrade, session: Session) -> Result<Response, sessionkit::Error> {
//!     let live = session.connect().await?;
//!     Ok(upgrade.on_upgrade(move |mut socket| async move {
//!         loop {
//!             tokio::select! {
//!                 _ = live.ended() => {
//!                     let close = CloseFrame { code: 1008, reason: "session ended".into() };
//!                     let _ = socket.send(Message::Close(Some(close))).await;
//!                     break;
//!                 }
//!                 msg = socket.recv() => match msg {
//!                     Some(Ok(Message::Text(_))) => {
//!                         let Ok(session) = live.session().await else { break };
//!                         let n: u64 = session.get("messages").ok().flatten().unwrap_or(0);
//!                         let _ = session.insert("messages", n + 1);
//!                         let _ = session.save().await;
//!                     }
//!                     Some(Ok(_)) => {}
//!                     _ => break,
//!                 },
//!             }
//!         }
//!         live.close().await;
//!     }))
//! }
//! ```

use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{ms, Millis};
use crate::error::Error;
use crate::hub::{Hub, Watcher};
use crate::session::{CommitError, Session, TokenUpdate};
use crate::shared::Shared;
use crate::store::{Connect, Connection, Disconnect, EndReason, Fetch};
use crate::token::{unseal, SessionId, Token};

/// A lease lasts this many heartbeats, so one late heartbeat is harmless.
const LEASE_HEARTBEATS: u32 = 3;

/// A long connection's hold on its session. See the [module docs](self).
///
/// Dropping it stops the heartbeat and removes the connection from the
/// registry (in the background); [`close`](Self::close) does the same and
/// waits for it.
pub struct LiveSession {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    /// This connection's id, kept across the sessions it is bound to.
    connection_id: String,
    /// The session it holds, `None` while anonymous.
    bound: Option<Bound>,
    ended_tx: watch::Sender<Option<EndReason>>,
    ended: watch::Receiver<Option<EndReason>>,
    token_tx: watch::Sender<Option<Token>>,
    token: watch::Receiver<Option<Token>>,
    closed: bool,
}

/// A connection's registration under one session, and its heartbeat.
struct Bound {
    connection: Connection,
    heartbeat: JoinHandle<()>,
}

/// What a session opened for a connection's message needs to know of it:
/// a login or logout on that session must not end the connection.
#[derive(Clone)]
pub(crate) struct LiveLink {
    hub: Arc<Hub>,
    connection_id: String,
}

impl LiveLink {
    /// Stops routing the end of session `id` to this connection: the
    /// connection's own message is about to end it. If that end does not
    /// happen, dropping the guard puts the connection back.
    pub(crate) fn detach(&self, id: &SessionId) -> Detached {
        Detached {
            watcher: self.hub.take(id, &self.connection_id),
            hub: self.hub.clone(),
            id: id.clone(),
            connection_id: self.connection_id.clone(),
        }
    }
}

/// A connection taken off the end notices of a session that its own
/// message is ending (a login or logout over the socket). If the store call
/// fails, the session lives on and so must its connection's link to it:
/// dropping this without [`ended`](Self::ended) puts the connection back
/// and has it check its session at once, since the session may have ended
/// by other means (a revoke) while the connection was not listening.
#[must_use = "dropping it puts the connection back at once"]
pub(crate) struct Detached {
    watcher: Option<crate::hub::Watcher>,
    hub: Arc<Hub>,
    id: SessionId,
    connection_id: String,
}

impl Detached {
    /// The session's end went through: the connection stays off it.
    pub(crate) fn ended(mut self) {
        self.watcher = None;
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.recheck.notify_one();
            self.hub.add(&self.id, &self.connection_id, watcher);
        }
    }
}

impl Session {
    /// Opens a connection session: call it in the handler that upgrades to
    /// a WebSocket (or starts a stream), before upgrading.
    ///
    /// Fails with [`Error::NoSession`] if the request has no stored session;
    /// [`connect_anonymous`](Self::connect_anonymous) accepts that too.
    pub async fn connect(&self) -> Result<LiveSession, Error> {
        if self.identity().is_none() {
            return Err(Error::NoSession);
        }
        self.connect_anonymous().await
    }

    /// Opens a connection session, with or without a stored session. Without
    /// one the connection starts anonymous: it holds no session until one of
    /// its messages logs in or writes data ([`LiveSession::commit`]).
    pub async fn connect_anonymous(&self) -> Result<LiveSession, Error> {
        let shared = self.shared_arc();
        let hub = shared.hub.get_or_init(|| Hub::start(&shared)).clone();
        let identity = self.identity();
        let (ended_tx, ended) = watch::channel(None);
        let (token_tx, token) = watch::channel(identity.as_ref().and_then(|(_, t)| t.clone()));
        let mut live = LiveSession {
            shared,
            hub,
            connection_id: crate::token::random_id(),
            bound: None,
            ended_tx,
            ended,
            token_tx,
            token,
            closed: false,
        };
        if let Some((id, _)) = identity {
            live.bind(id).await?;
        }
        Ok(live)
    }
}

fn lease(shared: &Shared) -> Millis {
    ms(shared.config.heartbeat * LEASE_HEARTBEATS)
}

/// Keeps the session and the lease alive, follows rotations, and notices
/// when the session is gone.
async fn beat(
    shared: Arc<Shared>,
    connection: Connection,
    ended: watch::Sender<Option<EndReason>>,
    token: watch::Sender<Option<Token>>,
    recheck: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(shared.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: connect just refreshed
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = recheck.notified() => {}
        }
        if ended.borrow().is_some() {
            return;
        }
        let now = shared.now();
        let known = token.borrow().clone();
        let fetch = Fetch {
            id: connection.session.clone(),
            known: known.as_ref().map(Token::digest),
            lease: Some((connection.id.clone(), now.saturating_add(lease(&shared)))),
            now,
        };
        match shared.call("fetch", shared.store.fetch(&fetch)).await {
            Ok(None) => {
                ended.send_replace(Some(EndReason::Expired));
                return;
            }
            Ok(Some(fetched)) => {
                let Some(old) = &known else { continue };
                if let Some(new) = fetched.replacement.and_then(|sealed| unseal(old, &sealed)) {
                    token.send_replace(Some(new));
                } else if !fetched.known_is_current {
                    // Rotated elsewhere and the replacement already adopted
                    // (or the store was out of reach past the grace window):
                    // the known token is about to die, and this connection
                    // cannot learn its successor. Say so instead of keeping it.
                    tracing::debug!(session = %connection.session, "connection lost track of its session's token");
                    ended.send_replace(Some(EndReason::TokenLost));
                    return;
                }
            }
            // The store is unreachable: keep the connection and try again at
            // the next beat; the lease covers a few missed beats.
            Err(_) => {}
        }
    }
}

impl LiveSession {
    /// The session's id, `None` while the connection is anonymous.
    pub fn id(&self) -> Option<&SessionId> {
        self.bound.as_ref().map(|b| &b.connection.session)
    }

    /// This connection's entry in the registry, `None` while anonymous.
    pub fn connection(&self) -> Option<&Connection> {
        self.bound.as_ref().map(|b| &b.connection)
    }

    /// The token the client should hold now: the one it connected with, or
    /// its replacement once the session's token was rotated. `None` while
    /// anonymous, or if the connection was opened from a request holding an
    /// older token than the session's.
    pub fn token(&self) -> Option<Token> {
        self.token.borrow().clone()
    }

    /// Resolves with the new token each time the session's token is rotated
    /// elsewhere (by a request, on any node). A change made by this
    /// connection's own message comes back from [`commit`](Self::commit)
    /// instead, not here as well.
    pub async fn token_changed(&mut self) -> Option<Token> {
        self.token.changed().await.ok()?;
        self.token.borrow_and_update().clone()
    }

    /// Resolves when the session ends: revoked, logged out or destroyed on
    /// any node sharing the store, or expired. Close the socket then (1008,
    /// policy violation, is the usual code). An anonymous connection's
    /// future waits until the connection is bound and its session ends.
    ///
    /// The future does not borrow `self`, so it can sit in a `select!` next
    /// to [`token_changed`](Self::token_changed). Make a new one for each
    /// turn of the loop: a message's own login or logout resets it.
    pub fn ended(&self) -> impl std::future::Future<Output = EndReason> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            let reason = match ended.wait_for(Option::is_some).await {
                Ok(reason) => reason.unwrap_or(EndReason::Expired),
                // The heartbeat stopped without a reason: treat as ended.
                Err(_) => EndReason::Expired,
            };
            reason
        }
    }

    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// The session as it is in the store now, for one message: read it,
    /// change it, log in or out, and finish with [`commit`](Self::commit)
    /// (only the changed keys are written, as for a request). An anonymous
    /// connection gets an empty session, stored when first written to.
    /// Fails with [`Error::NoSession`] once the session has ended.
    pub async fn session(&self) -> Result<Session, Error> {
        let link = LiveLink {
            hub: self.hub.clone(),
            connection_id: self.connection_id.clone(),
        };
        let Some(bound) = &self.bound else {
            let session = Session::for_connection(self.shared.clone(), None, None, link);
            session.load().await?;
            return Ok(session);
        };
        if self.is_ended() {
            return Err(Error::NoSession);
        }
        let now = self.shared.now();
        let known = self.token();
        let fetch = Fetch {
            id: bound.connection.session.clone(),
            known: known.as_ref().map(Token::digest),
            lease: Some((
                self.connection_id.clone(),
                now.saturating_add(lease(&self.shared)),
            )),
            now,
        };
        let fetched = self
            .shared
            .call("fetch", self.shared.store.fetch(&fetch))
            .await?
            .ok_or(Error::NoSession)?;
        Ok(Session::for_connection(
            self.shared.clone(),
            Some(fetched.record),
            known,
            link,
        ))
    }

    /// Commits a session from [`session`](Self::session) and follows what
    /// it did: returns the [`TokenUpdate`] for the client (send it in a
    /// message), and moves this connection to the session a login or a
    /// first write created, or back to anonymous after a logout.
    pub async fn commit(&mut self, session: &Session) -> Result<TokenUpdate, CommitError> {
        let committed = session.commit().await;
        let update = match &committed {
            Ok(update) => update.clone(),
            Err(err) => err.update.clone(),
        };
        let rebound = self.follow(session, &update).await;
        match (committed, rebound) {
            (Err(err), _) => Err(err),
            (Ok(update), Err(error)) => Err(CommitError { error, update }),
            (Ok(update), Ok(())) => Ok(update),
        }
    }

    async fn follow(&mut self, session: &Session, update: &TokenUpdate) -> Result<(), Error> {
        match update {
            TokenUpdate::Replace(token) => {
                self.token_tx.send_replace(Some(token.clone()));
                // Told through the update: not again through token_changed.
                self.token.borrow_and_update();
            }
            TokenUpdate::Drop => {
                self.token_tx.send_replace(None);
                self.token.borrow_and_update();
            }
            _ => {}
        }
        let current = session.id();
        if current.as_ref() == self.id() {
            return Ok(());
        }
        match (current, update) {
            // A login or a first write: this connection's own doing, so the
            // end of the previous session is not this connection's end.
            (Some(id), _) => {
                self.unbind();
                self.ended_tx.send_replace(None);
                self.bind(id).await
            }
            // A logout here: the connection stays open, anonymous.
            (None, TokenUpdate::Drop) => {
                self.unbind();
                self.ended_tx.send_replace(None);
                Ok(())
            }
            // Ended elsewhere meanwhile: that end reaches the connection
            // through `ended()`, as for any other.
            (None, _) => Ok(()),
        }
    }

    /// Registers this connection under session `id` and starts its
    /// heartbeat.
    async fn bind(&mut self, id: SessionId) -> Result<(), Error> {
        let shared = &self.shared;
        let now = shared.now();
        let connection = Connection {
            id: self.connection_id.clone(),
            node: shared.config.node_id.clone(),
            session: id.clone(),
            opened_at: now,
        };
        let recheck = Arc::new(Notify::new());
        // Watch before registering, so an end between the two is not missed.
        self.hub.add(
            &id,
            &connection.id,
            Watcher {
                ended: self.ended_tx.clone(),
                token: self.token_tx.clone(),
                recheck: recheck.clone(),
            },
        );
        let registered = shared
            .call(
                "connect",
                shared.store.connect(&Connect {
                    connection: connection.clone(),
                    lease_until: now.saturating_add(lease(shared)),
                    now,
                }),
            )
            .await;
        match registered {
            Ok(true) => {}
            Ok(false) => {
                self.hub.remove(&id, &connection.id);
                return Err(Error::NoSession);
            }
            Err(err) => {
                self.hub.remove(&id, &connection.id);
                return Err(err);
            }
        }
        let heartbeat = tokio::spawn(beat(
            shared.clone(),
            connection.clone(),
            self.ended_tx.clone(),
            self.token_tx.clone(),
            recheck,
        ));
        crate::metrics::connections(1);
        tracing::debug!(session = %id, connection = %connection.id, "connection bound to its session");
        self.bound = Some(Bound {
            connection,
            heartbeat,
        });
        Ok(())
    }

    /// Stops the heartbeat and the routing of events, and removes the
    /// registry entry in the background.
    fn unbind(&mut self) {
        let Some(bound) = self.bound.take() else {
            return;
        };
        crate::metrics::connections(-1);
        bound.heartbeat.abort();
        self.hub
            .remove(&bound.connection.session, &bound.connection.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { disconnect(&shared, &bound.connection).await });
        }
    }

    /// Stops the heartbeat and removes the connection from the registry.
    pub async fn close(mut self) {
        self.closed = true;
        if let Some(bound) = self.bound.take() {
            crate::metrics::connections(-1);
            bound.heartbeat.abort();
            self.hub
                .remove(&bound.connection.session, &bound.connection.id);
            disconnect(&self.shared, &bound.connection).await;
        }
    }
}

async fn disconnect(shared: &Shared, connection: &Connection) {
    let removed = shared
        .call(
            "disconnect",
            shared.store.disconnect(&Disconnect {
                id: connection.session.clone(),
                connection_id: connection.id.clone(),
                now: shared.now(),
            }),
        )
        .await;
    if removed.is_err() {
        tracing::debug!(connection = %connection.id, "connection left to expire from the registry");
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        if !self.closed {
            // Unregisters in the background; without a runtime the lease
            // ends it.
            self.unbind();
        }
    }
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("session", &self.id())
            .field("connection", &self.connection_id)
            .finish_non_exhaustive()
    }
}
