//! [`SessionLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;
use tower_layer::Layer;

use super::service::SessionService;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, Pending, StaleTokenPolicy};
use crate::manager::SessionManager;
use crate::regeneration::Regeneration;
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
/// ASVS): a `HttpOnly; Secure; SameSite=Lax; Path=/` cookie named
/// `__Host-sessionkit`, the `x-session-id` header for clients that send it
/// (new tokens are announced in the cookie only), a 30-minute idle timeout,
/// a 24-hour absolute timeout, at most 100 sessions per user, no automatic
/// regeneration.
#[derive(Clone)]
#[must_use]
pub struct SessionLayerBuilder {
    store: Arc<dyn SessionStore>,
    config: Config,
    pending: Pending,
}

impl SessionLayerBuilder {
    /// The session cookie's name. Default: `__Host-sessionkit` while the
    /// cookie is `Secure` with `Path=/` and no `Domain` (a sibling subdomain
    /// cannot set such a cookie), `__Secure-sessionkit` for other `Secure`
    /// cookies, `sessionkit` otherwise. Names starting with `__Host-` or
    /// `__Secure-` get the attributes those prefixes require checked.
    ///
    /// A request carrying two cookies of this name is treated as carrying
    /// none, since one of them was planted (cookie tossing); see README.
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
    /// token is announced. Default: the cookie only (or the header, when the
    /// cookie transport is off), so that page scripts, which can read
    /// response headers, never see a token the HttpOnly cookie carries. A
    /// request that carried a token always hears back on the transport it
    /// used. Announcing on a transport that is off is refused by
    /// [`try_build`](Self::try_build).
    pub fn announce(mut self, cookie: bool, header: bool) -> Self {
        self.pending.announce = Some((cookie, header));
        self
    }

    /// How long a session lives without being used (default 30 minutes).
    /// Every use slides it, reads included.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a session may live at all, however busy: the user signs in
    /// again after it (default 24 hours, OWASP ASVS 5.0 V7.3.2). `None`
    /// lifts it, for "remember me" sessions that live as long as they are
    /// used.
    pub fn absolute_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.absolute_timeout = timeout.into();
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

    /// Makes the cookie persistent, with a `Max-Age` of at most this
    /// (default: none, a browser-session cookie). The cookie follows the
    /// session: whenever the idle deadline slides (throttled by
    /// [`refresh_interval`](Self::refresh_interval)), the same token is sent
    /// again with a `Max-Age` matching the session's deadline, capped here.
    ///
    /// A session whose own idle timeout was set with
    /// [`Session::set_idle_timeout`](crate::Session::set_idle_timeout) ("remember
    /// me") gets a persistent cookie that follows it the same way, with or
    /// without this setting.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        if let Some(c) = &mut self.config.cookie {
            c.max_age = Some(max_age);
        }
        self
    }

    /// Turns on automatic token regeneration (default off). See
    /// [`Regeneration`] for the timeline (TTG/SFR/OJS/CIJS).
    #[doc(alias = "sfr")]
    #[doc(alias = "ojs")]
    #[doc(alias = "cijs")]
    pub fn regeneration(mut self, policy: Regeneration) -> Self {
        self.config.regeneration = Some(policy);
        self
    }

    /// What to do when a token is used after its grace window ended
    /// (default: treat it as unknown; a warning is logged either way).
    pub fn on_stale_token(mut self, policy: StaleTokenPolicy) -> Self {
        self.config.on_stale_token = policy;
        self
    }

    /// Keeps at most `n` live sessions per user: a login beyond it revokes
    /// the user's oldest sessions (by login time). Default 100; `None`
    /// lifts the limit (every operation on a user's sessions still works in
    /// bounded chunks, however many there are).
    pub fn max_sessions_per_user(mut self, n: impl Into<Option<usize>>) -> Self {
        self.config.max_sessions_per_user = n.into();
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

    /// The reverse proxies in front of the application, by address. A
    /// request whose peer is one of them is listed with the rightmost hop of
    /// its `Forwarded` (else `X-Forwarded-For`) header that is not one of
    /// them; without this setting (the default) forwarding headers are
    /// ignored and the peer address is the client's, so that a client cannot
    /// choose the address its session is listed with. See
    /// [`Device`](crate::Device).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = std::net::IpAddr>) -> Self {
        self.config.trusted_proxies = proxies.into_iter().collect();
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
    /// for the error instead): a grace window not shorter than the
    /// regeneration interval, a `__Host-` cookie with a `Domain`, both
    /// transports off, announcing on a transport that is off.
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
