//! [`SessionManager`]: acting on a user's sessions outside a request.

use std::sync::Arc;

use crate::access::Access;
use crate::config::Config;
use crate::error::Error;
use crate::session::Session;
use crate::shared::Shared;
use crate::store::{
    BoundUser, Connection, ListConnections, ListSessions, Revoke, RevokeSessions, SessionInfo,
    SessionStore, SyncUser,
};
use crate::token::{SessionId, Token};
use crate::user::SessionUser;

/// Lists and revokes a user's sessions, and updates the user object they
/// hold, from anywhere: an admin route, a background job, a password-change
/// handler.
///
/// Get one from the layer ([`SessionLayer::manager`](crate::SessionLayer::manager)),
/// from a request's session ([`Session::manager`](crate::Session::manager)),
/// or build one on a store with [`SessionManager::new`]. A revoked session is
/// dead on its next request on every server sharing the store, and its open
/// connections are told at once.
///
/// ```
/// # async fn demo() -> Result<(), sessionkit::Error> {
/// use sessionkit::{MemoryStore, SessionManager};
///
/// let manager = SessionManager::new(MemoryStore::new());
/// for session in manager.list("42").await? {
///     println!("{} last seen at {}", session.id, session.last_seen);
/// }
/// manager.revoke_all("42").await?; // "log out everywhere"
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

impl SessionManager {
    /// A manager on `store` with the default configuration (system clock,
    /// default store timeout).
    pub fn new(store: impl SessionStore) -> Self {
        SessionManager {
            shared: Arc::new(Shared::new(Arc::new(store), Config::default())),
        }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        SessionManager { shared }
    }

    /// Opens the session a client's token names, from any transport: a
    /// WebSocket message, a line of a TCP protocol, a CLI. The same
    /// guarantees as through the layer: one store round trip to load (the
    /// idle deadline slides, a due token is rotated with its grace window),
    /// delta writes, [`login`](Session::login) / [`logout`](Session::logout)
    /// / [`regenerate`](Session::regenerate). Finish with
    /// [`Session::commit`], which saves and says what the client must do
    /// with its token.
    ///
    /// `token` is what the client sent, as text; a malformed one, an unknown
    /// one or none gives an empty session (a new one is stored when first
    /// written to, never under the client's own value). The settings are the
    /// layer's when the manager comes from
    /// [`SessionLayer::manager`](crate::SessionLayer::manager) (build a layer
    /// just for its settings outside HTTP: the cookie ones are unused).
    ///
    /// ```
    /// # async fn demo() -> Result<(), sessionkit::Error> {
    /// use sessionkit::{MemoryStore, SessionLayer, TokenUpdate};
    ///
    /// let manager = SessionLayer::builder(MemoryStore::new()).build().manager();
    /// let session = manager.open(None).await?;
    /// session.insert("greeting", "hello")?;
    /// let TokenUpdate::Replace(token) = session.commit().await? else {
    ///     unreachable!("a new session has a new token");
    /// };
    /// // Later, from whatever the client sends back:
    /// let again = manager.open(Some(token.as_str())).await?;
    /// assert_eq!(again.get::<String>("greeting")?.as_deref(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub async fn open(&self, token: Option<&str>) -> Result<Session, Error> {
        self.open_with(token, Access::new()).await
    }

    /// [`open`](Self::open) with an [`Access`] other than the default: a
    /// silent read that does not extend the idle deadline, no rotation, or a
    /// rotation now.
    pub async fn open_with(&self, token: Option<&str>, access: Access) -> Result<Session, Error> {
        let token = token.and_then(|t| Token::parse(t.trim()));
        let session = Session::with_token(self.shared.clone(), token, None, access, None);
        session.load().await?;
        Ok(session)
    }

    /// The user's live sessions, oldest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionInfo>, Error> {
        let s = &self.shared;
        s.call(
            "list_sessions",
            s.store.list_sessions(&ListSessions {
                user_id: user_id.to_owned(),
                now: s.now(),
            }),
        )
        .await
    }

    /// Revokes one session of the user. Returns `false` if it is not a live
    /// session of this user (so ids of other users' sessions do nothing).
    pub async fn revoke(&self, user_id: &str, id: &SessionId) -> Result<bool, Error> {
        Ok(!self
            .revoke_scope(user_id, Revoke::One(id.clone()))
            .await?
            .is_empty())
    }

    /// Revokes every session of the user ("log out everywhere"). Returns how
    /// many were revoked.
    pub async fn revoke_all(&self, user_id: &str) -> Result<usize, Error> {
        Ok(self.revoke_scope(user_id, Revoke::All).await?.len())
    }

    /// Revokes every session of the user but `keep`. Returns how many were
    /// revoked.
    pub async fn revoke_all_except(&self, user_id: &str, keep: &SessionId) -> Result<usize, Error> {
        Ok(self
            .revoke_scope(user_id, Revoke::AllExcept(keep.clone()))
            .await?
            .len())
    }

    async fn revoke_scope(&self, user_id: &str, scope: Revoke) -> Result<Vec<SessionId>, Error> {
        let s = &self.shared;
        let revoked = s
            .call(
                "revoke",
                s.store.revoke(&RevokeSessions {
                    user_id: user_id.to_owned(),
                    scope,
                    now: s.now(),
                }),
            )
            .await?;
        crate::metrics::sessions_ended(crate::metrics::Ended::Revoke, revoked.len());
        if !revoked.is_empty() {
            tracing::info!(count = revoked.len(), "sessions revoked");
        }
        Ok(revoked)
    }

    /// Replaces the stored user object in every live session of that user,
    /// leaving their other data alone: a role change takes effect on each
    /// device's next request. Returns how many sessions were updated.
    pub async fn sync_user<U: SessionUser>(&self, user: &U) -> Result<usize, Error> {
        let bound = BoundUser {
            id: user.id(),
            json: serde_json::to_string(user)?,
        };
        let s = &self.shared;
        s.call(
            "sync_user",
            s.store.sync_user(&SyncUser {
                user: bound,
                now: s.now(),
            }),
        )
        .await
    }

    /// The live connections (WebSockets, streams) of the user's sessions,
    /// with the node holding each, to route a push to them.
    pub async fn connections(&self, user_id: &str) -> Result<Vec<Connection>, Error> {
        let s = &self.shared;
        s.call(
            "list_connections",
            s.store.list_connections(&ListConnections {
                user_id: user_id.to_owned(),
                now: s.now(),
            }),
        )
        .await
    }
}

impl SessionManager {
    /// Releases this server's live connections for a graceful shutdown:
    /// each [`LiveSession`](crate::LiveSession) of this layer ends with
    /// [`EndReason::Shutdown`](crate::store::EndReason::Shutdown) (its
    /// session lives on: the client reconnects elsewhere), connections
    /// opened from now on end at once, and this waits, at most `within`,
    /// for the connections to close and leave the store's registry. Returns
    /// how many connections were open.
    ///
    /// Upgraded connections are not requests, so a server's graceful
    /// shutdown does not wait for them; call this from the shutdown signal:
    ///
    /// ```no_run
    /// # async fn demo(app: axum::Router, layer: sessionkit::SessionLayer) -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// let manager = layer.manager();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         manager.shutdown_connections(Duration::from_secs(5)).await;
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn shutdown_connections(&self, within: std::time::Duration) -> usize {
        let hub = self
            .shared
            .hub
            .get_or_init(|| crate::hub::Hub::start(&self.shared))
            .clone();
        let open = hub.shut_down();
        if tokio::time::timeout(within, hub.drained()).await.is_err() {
            tracing::warn!(
                open,
                "connections still open at shutdown; their leases will expire"
            );
        }
        open
    }
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager").finish_non_exhaustive()
    }
}
