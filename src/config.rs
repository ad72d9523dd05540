//! What the layer is configured with, and the checks that keep it sensible.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;

use crate::clock::{Clock, SystemClock};
use crate::regeneration::Regeneration;

/// What to do when a token is presented after its grace window ended.
///
/// Such a token was replaced and the client that held it was given the
/// replacement, so presenting it again suggests someone else holds a copy.
/// A `tracing` warning with the token's fingerprint is emitted either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleTokenPolicy {
    /// Treat it as unknown (strict mode). The default.
    #[default]
    Ignore,
    /// Revoke the session it belonged to, logging out the legitimate holder
    /// too: the safe choice when a copied token is worse than a re-login.
    Revoke,
}

/// How long a session may live at all by default, however busy: a user
/// signs in again at least once a day (OWASP ASVS 5.0 V7.3.2).
pub(crate) const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// How many live sessions one user keeps by default; a login beyond it ends
/// the user's oldest session.
pub(crate) const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

/// The longest timeout or interval the layer accepts (100 years): deadlines
/// stay exact in every store (Redis scripts count in doubles) and can be
/// added to the current time without overflow. Longer per-session idle
/// timeouts are cut to it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

#[derive(Clone)]
pub(crate) struct Config {
    pub cookie: Option<CookieConfig>,
    pub header: Option<http::HeaderName>,
    pub announce_cookie: bool,
    pub announce_header: bool,
    pub idle_timeout: Duration,
    pub absolute_timeout: Option<Duration>,
    pub refresh_after: Duration,
    pub regeneration: Option<Regeneration>,
    pub on_stale_token: StaleTokenPolicy,
    pub max_sessions_per_user: Option<usize>,
    pub store_timeout: Duration,
    pub node_id: String,
    pub heartbeat: Duration,
    pub clock: Arc<dyn Clock>,
    /// Reverse proxies whose forwarding headers name the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    pub name: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
    pub max_age: Option<Duration>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("cookie", &self.cookie)
            .field("header", &self.header)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_timeout", &self.absolute_timeout)
            .field("regeneration", &self.regeneration)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cookie: Some(CookieConfig {
                // Resolved by `finish` (see `default_cookie_name`).
                name: String::new(),
                secure: true,
                http_only: true,
                same_site: SameSite::Lax,
                path: "/".into(),
                domain: None,
                max_age: None,
            }),
            header: Some(http::HeaderName::from_static("x-session-id")),
            announce_cookie: true,
            // Page scripts can read response headers: a token announced in
            // one would undo the cookie's HttpOnly.
            announce_header: false,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Some(DEFAULT_ABSOLUTE_TIMEOUT),
            refresh_after: Duration::from_secs(60),
            regeneration: None,
            on_stale_token: StaleTokenPolicy::Ignore,
            max_sessions_per_user: Some(DEFAULT_MAX_SESSIONS_PER_USER),
            store_timeout: Duration::from_secs(2),
            node_id: default_node_id(),
            heartbeat: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// A configuration the builder refused, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid session configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Settings the builder was given but not yet checked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    pub cookie_name: Option<String>,
    pub header_name: Option<String>,
    pub refresh_after: Option<Duration>,
    /// `(cookie, header)`; by default the cookie, or the header when the
    /// cookie transport is off.
    pub announce: Option<(bool, bool)>,
}

/// The cookie name when none is given: distinctive, so that another app's
/// `id` or `session` cookie on a parent domain does not collide with it,
/// and with the strongest prefix the attributes allow, so that a sibling
/// subdomain cannot plant one (cookie tossing).
fn default_cookie_name(c: &CookieConfig) -> String {
    let prefix = match (c.secure, c.path.as_str(), &c.domain) {
        (true, "/", None) => "__Host-",
        (true, _, _) => "__Secure-",
        _ => "",
    };
    format!("{prefix}sessionkit")
}

impl Config {
    pub(crate) fn finish(mut self, p: Pending) -> Result<Config, ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_owned()));
        match (p.cookie_name, &mut self.cookie) {
            (Some(name), Some(c)) => {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
                {
                    return err("the cookie name must be a non-empty token (RFC 6265)");
                }
                c.name = name;
            }
            (None, Some(c)) => c.name = default_cookie_name(c),
            (_, None) => {}
        }
        if let Some(name) = p.header_name {
            match http::HeaderName::try_from(name) {
                Ok(h) => {
                    if self.header.is_some() {
                        self.header = Some(h);
                    }
                }
                Err(_) => return err("the header name is not a valid HTTP header name"),
            }
        }
        if self.cookie.is_none() && self.header.is_none() {
            return err("both the cookie and the header transport are off: no token could travel");
        }
        (self.announce_cookie, self.announce_header) = p
            .announce
            .unwrap_or((self.cookie.is_some(), self.cookie.is_none()));
        if self.announce_cookie && self.cookie.is_none() {
            return err(
                "new sessions are announced in the cookie, but the cookie transport is off",
            );
        }
        if self.announce_header && self.header.is_none() {
            return err(
                "new sessions are announced in the header, but the header transport is off",
            );
        }
        if !self.announce_cookie && !self.announce_header {
            return err("new sessions must be announced on at least one transport, or their token would never reach the client");
        }
        if let Some(c) = &self.cookie {
            if c.name.starts_with("__Host-") && (!c.secure || c.path != "/" || c.domain.is_some()) {
                return err("a `__Host-` cookie must be Secure, have Path=/ and no Domain");
            }
            if c.name.starts_with("__Secure-") && !c.secure {
                return err("a `__Secure-` cookie must be Secure");
            }
            if c.same_site == SameSite::None && !c.secure {
                return err("SameSite=None cookies must be Secure");
            }
        }
        let durations = [
            Some(self.idle_timeout),
            self.absolute_timeout,
            p.refresh_after,
            self.cookie.as_ref().and_then(|c| c.max_age),
            Some(self.store_timeout),
            Some(self.heartbeat),
        ];
        if durations.into_iter().flatten().any(|d| d > MAX_DURATION) {
            return err("timeouts and intervals may not exceed 100 years (MAX_DURATION)");
        }
        if self.idle_timeout.is_zero() {
            return err("the idle timeout must be positive");
        }
        if self.absolute_timeout.is_some_and(|a| a.is_zero()) {
            return err("the absolute timeout must be positive");
        }
        if self.store_timeout.is_zero() {
            return err("the store timeout must be positive");
        }
        if self.heartbeat.is_zero() {
            return err("the connection heartbeat must be positive");
        }
        if self.max_sessions_per_user == Some(0) {
            return err("max_sessions_per_user must be at least 1");
        }
        self.refresh_after = p
            .refresh_after
            .unwrap_or_else(|| (self.idle_timeout / 10).min(Duration::from_secs(60)));
        if self.refresh_after >= self.idle_timeout {
            return err("the refresh interval must be shorter than the idle timeout");
        }
        if let Some(policy) = &self.regeneration {
            policy.validate()?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut Config, &mut Pending)) -> Result<Config, ConfigError> {
        let (mut config, mut pending) = (Config::default(), Pending::default());
        change(&mut config, &mut pending);
        config.finish(pending)
    }

    fn refused(change: impl FnOnce(&mut Config, &mut Pending)) -> String {
        match check(change) {
            Err(err) => err.0,
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_announce_the_cookie_only() {
        let config = check(|_, _| {}).expect("the defaults");
        let cookie = config.cookie.expect("the cookie transport");
        assert_eq!(cookie.name, "__Host-sessionkit");
        assert!(cookie.secure && cookie.http_only);
        assert!(config.announce_cookie && !config.announce_header);
        assert_eq!(
            config.absolute_timeout,
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(config.max_sessions_per_user, Some(100));
    }

    #[test]
    fn the_default_name_takes_the_strongest_prefix_the_attributes_allow() {
        let name = |change: fn(&mut CookieConfig)| {
            check(|c, _| change(c.cookie.as_mut().unwrap()))
                .unwrap()
                .cookie
                .unwrap()
                .name
        };
        assert_eq!(name(|c| c.path = "/app".into()), "__Secure-sessionkit");
        assert_eq!(
            name(|c| c.domain = Some("example.com".into())),
            "__Secure-sessionkit"
        );
        assert_eq!(name(|c| c.secure = false), "sessionkit");
    }

    #[test]
    fn a_header_only_layer_announces_on_the_header() {
        let config = check(|c, _| c.cookie = None).unwrap();
        assert!(config.announce_header && !config.announce_cookie);
    }

    #[test]
    fn contradictions_are_refused_with_a_reason() {
        assert!(refused(|_, p| p.cookie_name = Some("a b".into())).contains("RFC 6265"));
        assert!(refused(|_, p| p.header_name = Some("bad header".into())).contains("header"));
        assert!(refused(|c, _| {
            c.cookie = None;
            c.header = None;
        })
        .contains("both"));
        assert!(refused(|_, p| p.announce = Some((false, false))).contains("announced"));
        assert!(refused(|c, p| {
            c.header = None;
            p.announce = Some((true, true));
        })
        .contains("announce"));
        assert!(refused(|c, p| {
            c.cookie.as_mut().unwrap().secure = false;
            p.cookie_name = Some("__Host-x".into());
        })
        .contains("__Host-"));
        assert!(refused(|c, _| c.idle_timeout = Duration::ZERO).contains("idle"));
        assert!(refused(|c, _| c.idle_timeout = Duration::MAX).contains("100 years"));
        assert!(refused(|c, _| c.max_sessions_per_user = Some(0)).contains("at least 1"));
        assert!(
            refused(|_, p| p.refresh_after = Some(Duration::from_secs(3600))).contains("refresh")
        );
    }
}
