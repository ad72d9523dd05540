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
use crate::session::Session;
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
    connection: Connection,
    ended: watch::Receiver<Option<EndReason>>,
    token: watch::Receiver<Option<Token>>,
    heartbeat: JoinHandle<()>,
    closed: bool,
}

impl Session {
    /// Opens a connection session: call it in the handler that upgrades to
    /// a WebSocket (or starts a stream), before upgrading.
    ///
    /// Fails with [`Error::NoSession`] if the request has no stored session.
    pub async fn connect(&self) -> Result<LiveSession, Error> {
        let shared = self.shared_arc();
        let (id, token) = self.identity().ok_or(Error::NoSession)?;
        let hub = shared.hub.get_or_init(|| Hub::start(&shared)).clone();
        let now = shared.now();
        let connection = Connection {
            id: crate::token::random_id(),
            node: shared.config.node_id.clone(),
            session: id.clone(),
            opened_at: now,
        };
        let (ended_tx, ended) = watch::channel(None);
        let (token_tx, token) = watch::channel(token);
        let recheck = Arc::new(Notify::new());
        // Watch before registering, so an end between the two is not missed.
        hub.add(
            &id,
            &connection.id,
            Watcher {
                ended: ended_tx.clone(),
                token: token_tx.clone(),
                recheck: recheck.clone(),
            },
        );
        let lease = now.saturating_add(lease(&shared));
        let registered = shared
            .call(
                "connect",
                shared.store.connect(&Connect {
                    connection: connection.clone(),
                    lease_until: lease,
                    now,
                }),
            )
            .await;
        match registered {
            Ok(true) => {}
            Ok(false) => {
                hub.remove(&id, &connection.id);
                return Err(Error::NoSession);
            }
            Err(err) => {
                hub.remove(&id, &connection.id);
                return Err(err);
            }
        }
        let heartbeat = tokio::spawn(beat(
            shared.clone(),
            connection.clone(),
            ended_tx,
            token_tx,
            recheck,
        ));
        crate::metrics::connections(1);
        tracing::debug!(session = %id, connection = %connection.id, "connection session opened");
        Ok(LiveSession {
            shared,
            hub,
            connection,
            ended,
            token,
            heartbeat,
            closed: false,
        })
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
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.connection.session
    }

    /// This connection's entry in the registry.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The token the client should hold now: the one it connected with, or
    /// its replacement once the session's token was rotated. `None` if the
    /// connection was opened from a session the request created.
    pub fn token(&self) -> Option<Token> {
        self.token.borrow().clone()
    }

    /// Resolves with the new token each time the session's token is rotated.
    pub async fn token_changed(&mut self) -> Option<Token> {
        self.token.changed().await.ok()?;
        self.token.borrow_and_update().clone()
    }

    /// Resolves when the session ends: revoked, logged out or destroyed on
    /// any node sharing the store, or expired. Close the socket then (1008,
    /// policy violation, is the usual code).
    ///
    /// The future does not borrow `self`, so it can sit in a `select!` next
    /// to [`token_changed`](Self::token_changed).
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
    /// change it, and [`save`](Session::save) it (only the changed keys are
    /// written, as for a request). Fails with [`Error::NoSession`] once the
    /// session has ended.
    pub async fn session(&self) -> Result<Session, Error> {
        let now = self.shared.now();
        let known = self.token();
        let fetch = Fetch {
            id: self.connection.session.clone(),
            known: known.as_ref().map(Token::digest),
            lease: Some((
                self.connection.id.clone(),
                now.saturating_add(lease(&self.shared)),
            )),
            now,
        };
        let fetched = self
            .shared
            .call("fetch", self.shared.store.fetch(&fetch))
            .await?
            .ok_or(Error::NoSession)?;
        Ok(Session::detached(
            self.shared.clone(),
            fetched.record,
            known,
        ))
    }

    /// Stops the heartbeat and removes the connection from the registry.
    pub async fn close(mut self) {
        self.shutdown();
        let s = &self.shared;
        let removed = s
            .call(
                "disconnect",
                s.store.disconnect(&Disconnect {
                    id: self.connection.session.clone(),
                    connection_id: self.connection.id.clone(),
                    now: s.now(),
                }),
            )
            .await;
        if removed.is_err() {
            tracing::debug!(connection = %self.connection.id, "connection left to expire from the registry");
        }
    }

    fn shutdown(&mut self) {
        if !self.closed {
            self.closed = true;
            crate::metrics::connections(-1);
            self.heartbeat.abort();
            self.hub
                .remove(&self.connection.session, &self.connection.id);
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.shutdown();
        // Unregister in the background; without a runtime the lease ends it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let connection = self.connection.clone();
            runtime.spawn(async move {
                let _ = shared
                    .call(
                        "disconnect",
                        shared.store.disconnect(&Disconnect {
                            id: connection.session.clone(),
                            connection_id: connection.id.clone(),
                            now: shared.now(),
                        }),
                    )
                    .await;
            });
        }
    }
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("session", &self.connection.session)
            .field("connection", &self.connection.id)
            .finish_non_exhaustive()
    }
}
