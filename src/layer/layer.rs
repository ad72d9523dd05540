//! [`SessionLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;
use tower_layer::Layer;

use super::service::SessionService;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, Pending, StaleTokenPolicy};
use crate::manager::SessionManager;
use crate::shared::Shared;
use crate::store::SessionStore;

/// Adds server-side sessions to a service. See the [module docs](super).
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// Starts configuring a layer on `store`.
    pub fn builder(store: impl SessionStore) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: Arc::new(store),
            config: Config::default(),
            pending: Pending::default(),
        }
    }

    /// A [`SessionManager`] on this layer's store and configuration.
    pub fn manager(&self) -> SessionManager {
        SessionManager::from_shared(self.shared.clone())
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SessionLayer`]. Every setting has a safe default (OWASP
/// ASVS): `HttpOnly; Secure; SameSite=Lax; Path=/` cookie named `id`, the
/// `x-session-id` header, a 30-minute idle timeout, no absolute timeout, no
/// automatic regeneration.
#[derive(Clone)]
#[must_use]
pub struct SessionLayerBuilder {
    store: Arc<dyn SessionStore>,
    config: Config,
    pending: Pending,
}

impl SessionLayerBuilder {
    /// The session cookie's name (default `id`). Names starting with
    /// `__Host-` get the attributes that prefix requires checked.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.pending.cookie_name = Some(name.into());
        self
    }

    /// The session header's name (default `x-session-id`).
    pub fn header_name(mut self, name: impl Into<String>) -> Self {
        self.pending.header_name = Some(name.into());
        self
    }

    /// Whether tokens travel in the cookie (default on).
    pub fn cookie(mut self, enabled: bool) -> Self {
        match (enabled, &self.config.cookie) {
            (false, _) => self.config.cookie = None,
            (true, None) => self.config.cookie = Config::default().cookie,
            (true, Some(_)) => {}
        }
        self
    }

    /// Whether tokens travel in the header (default on).
    pub fn header(mut self, enabled: bool) -> Self {
        match (enabled, &self.config.header) {
            (false, _) => self.config.header = None,
            (true, None) => self.config.header = Config::default().header,
            (true, Some(_)) => {}
        }
        self
    }

    /// On which transports a session created by a request that carried no
    /// token is announced (default: every enabled one). A request that
    /// carried a token always hears back on the transport it used. Browser
    /// apps that also enable the header may want `(true, false)` here so
    /// that scripts never see a token.
    pub fn announce(mut self, cookie: bool, header: bool) -> Self {
        self.config.announce_cookie = cookie;
        self.config.announce_header = header;
        self
    }

    /// How long a session lives without being used (default 30 minutes).
    /// Every use slides it, reads included.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a session may live at all, however busy (default: no limit).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = Some(timeout);
        self
    }

    /// How stale the idle deadline may get before a read refreshes it
    /// (default: a tenth of the idle timeout, at most a minute), so a burst
    /// of reads does not write each time.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.pending.refresh_after = Some(interval);
        self
    }

    /// The cookie's `Secure` attribute (default on). Turn it off only for
    /// plain-HTTP development.
    pub fn secure(mut self, secure: bool) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.secure = secure;
        }
        self
    }

    /// The cookie's `HttpOnly` attribute (default on).
    pub fn http_only(mut self, http_only: bool) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.http_only = http_only;
        }
        self
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.same_site = same_site;
        }
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.path = path.into();
        }
        self
    }

    /// The cookie's `Domain` (default none: the cookie stays on this host).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.domain = Some(domain.into());
        }
        self
    }

    /// The cookie's `Max-Age` (default none: a browser-session cookie). The
    /// server-side timeouts apply whatever the cookie says.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.max_age = Some(max_age);
        }
        self
    }

    /// Turns on automatic regeneration: a token this old (SFR) is replaced
    /// on its next use, in `Set-Cookie` or the header.
    #[doc(alias = "regenerate_after")]
    #[doc(alias = "should_regenerate")]
    pub fn sfr(mut self, age: Duration) -> Self {
        self.pending.sfr = Some(age);
        self
    }

    /// How long a replaced token keeps working (OJS), so that requests in
    /// flight with it are not logged out. Default 30 s, or half of SFR if
    /// that is shorter; must be shorter than SFR.
    #[doc(alias = "grace_period")]
    #[doc(alias = "old_token_grace")]
    pub fn ojs(mut self, grace: Duration) -> Self {
        self.pending.ojs = Some(grace);
        self
    }

    /// How long a replacement lives before the client first presents it
    /// (CIJS), counted from the last response that carried it. Default 60 s.
    #[doc(alias = "unadopted_lifetime")]
    #[doc(alias = "replacement_timeout")]
    pub fn cijs(mut self, lifetime: Duration) -> Self {
        self.pending.cijs = Some(lifetime);
        self
    }

    /// What to do when a token is used after its grace window ended
    /// (default: treat it as unknown; a warning is logged either way).
    pub fn on_stale_token(mut self, policy: StaleTokenPolicy) -> Self {
        self.config.on_stale_token = policy;
        self
    }

    /// Keeps at most `n` live sessions per user: a login beyond it revokes
    /// the user's oldest sessions (by login time). Default: no limit.
    pub fn max_sessions_per_user(mut self, n: usize) -> Self {
        self.config.max_sessions_per_user = Some(n);
        self
    }

    /// How long a store call may take before the request fails with 503
    /// (default 2 s).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// This process's name in the connection registry (default: host name
    /// and process id).
    pub fn node_id(mut self, node: impl Into<String>) -> Self {
        self.config.node_id = node.into();
        self
    }

    /// How often a live connection refreshes its session and its own lease
    /// (default 10 s). A crashed node's connections drop out of the registry
    /// after three missed heartbeats.
    pub fn connection_heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// The clock deadlines are decided with (default: the system clock).
    /// Tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn try_build(self) -> Result<SessionLayer, ConfigError> {
        Ok(SessionLayer {
            shared: Arc::new(Shared::new(self.store, self.config.finish(self.pending)?)),
        })
    }

    /// Builds the layer.
    ///
    /// # Panics
    ///
    /// If the configuration makes no sense (see [`try_build`](Self::try_build)
    /// for the error instead): a zero SFR, an OJS not shorter than SFR, a
    /// `__Host-` cookie with a `Domain`, both transports off.
    pub fn build(self) -> SessionLayer {
        match self.try_build() {
            Ok(layer) => layer,
            Err(err) => panic!("{err}"),
        }
    }
}

impl std::fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
