//! What a session records of the device that started it: its user agent
//! and its address, shown in the user's session listing so that a user can
//! tell "my phone" from "someone else".
//!
//! The layer captures a [`Device`] from each request; stores keep it as
//! opaque, bounded data and never look inside. The client address is the
//! peer address of the connection, unless the application named its
//! reverse proxies with
//! [`SessionLayerBuilder::trusted_proxies`](crate::SessionLayerBuilder::trusted_proxies):
//! then, for a request that came from one of them, it is the rightmost hop
//! of `Forwarded` (or, without it, `X-Forwarded-For`) that is not a trusted
//! proxy. Hops left of that one were written by the client and prove
//! nothing; a request from anywhere else has its forwarding headers
//! ignored, so a client cannot choose the address it is listed with.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// The longest user agent a session keeps, in bytes; longer ones are cut
/// on a character boundary.
pub const MAX_USER_AGENT: usize = 256;

/// The device a session was started from (by its first write, or by a
/// login). Never holds a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Device {
    /// The `User-Agent` header, at most [`MAX_USER_AGENT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's address (see the [module docs](self) for which one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

impl Device {
    /// A device with this user agent (cut to [`MAX_USER_AGENT`] bytes) and
    /// address.
    pub fn new(user_agent: Option<&str>, address: Option<IpAddr>) -> Device {
        Device {
            user_agent: user_agent.map(|ua| truncate(ua, MAX_USER_AGENT).to_owned()),
            address,
        }
    }

    /// A short readable name of the user agent, such as "Chrome on Linux"
    /// (see [`describe_user_agent`]); `None` without one.
    pub fn name(&self) -> Option<String> {
        self.user_agent.as_deref().map(describe_user_agent)
    }
}

/// How stores keep a device: as JSON text, which they do not look into.
pub(crate) fn stored(device: Option<&Device>) -> Option<String> {
    // A struct of a string and an address always serializes.
    device.and_then(|d| serde_json::to_string(d).ok())
}

/// A device back from its stored text.
pub(crate) fn from_stored(text: &str) -> Result<Device, crate::store::StoreError> {
    serde_json::from_str(text)
        .map_err(|e| crate::store::StoreError::corrupt(format!("unreadable device: {e}")))
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Browsers, in the order they are looked for: several announce the ones
/// they derive from (Edge says Chrome and Safari, Chrome says Safari), so
/// the most specific comes first.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    // Safari's own version follows `Version/`; `Safari/` is WebKit's.
    ("Version/", "Safari"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
];

/// Systems, most specific first (Android says Linux, iOS says Mac OS X).
const SYSTEMS: &[(&str, &str)] = &[
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
];

/// A short readable name for a user agent, with the browser's major
/// version: "Chrome 131 on Linux", "Safari 18 on iOS", "Firefox 133",
/// "Windows"; "Unknown device" when nothing is recognised. A small table of
/// the common browsers and systems, not a full parser.
pub fn describe_user_agent(user_agent: &str) -> String {
    let browser = BROWSERS.iter().find_map(|(marker, name)| {
        let at = user_agent.find(marker)? + marker.len();
        let major: String = user_agent[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(4)
            .collect();
        Some(if major.is_empty() {
            (*name).to_owned()
        } else {
            format!("{name} {major}")
        })
    });
    let system = SYSTEMS
        .iter()
        .find(|(marker, _)| user_agent.contains(marker))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(name), None) => name,
        (None, Some(name)) => name.to_owned(),
        (None, None) => "Unknown device".to_owned(),
    }
}

/// Where a request came from, as the layer notes it for every request:
/// cheap (the user agent is a shared header value, and forwarding headers
/// are read only for a request from a trusted proxy), and made into a
/// [`Device`] only for a session the request starts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    user_agent: Option<http::HeaderValue>,
    address: Option<IpAddr>,
}

impl Origin {
    /// The origin of `req`, with these trusted proxies.
    pub(crate) fn of<B>(req: &http::Request<B>, trusted: &[IpAddr]) -> Origin {
        let headers = req.headers();
        Origin {
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            address: client_address(headers, peer(req), trusted),
        }
    }

    /// The device to record; `None` when nothing is known.
    pub(crate) fn device(&self) -> Option<Device> {
        if self.user_agent.is_none() && self.address.is_none() {
            return None;
        }
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        Some(Device::new(user_agent.as_deref(), self.address))
    }
}

/// The peer address a request carries: axum's `ConnectInfo<SocketAddr>`,
/// or a `SocketAddr` or `IpAddr` extension put there by the server.
fn peer<B>(req: &http::Request<B>) -> Option<IpAddr> {
    let ext = req.extensions();
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    ext.get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| ext.get::<IpAddr>().copied())
}

/// The rightmost hop that is not a trusted proxy, when the request came
/// from one; else the peer itself.
fn client_address(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops = forwarded_hops(headers);
    // A hop that does not parse ends the walk: what lies left of it was
    // not written by a proxy we trust to write addresses.
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(addr) if trusted.contains(addr) => client = *addr,
            Some(addr) => return Some(*addr),
            None => return Some(client),
        }
    }
    Some(client)
}

/// The most hops read from the forwarding headers: a bound on the work a
/// request can cause.
const MAX_HOPS: usize = 32;

/// The hops of `Forwarded` (its `for=` values), or else of
/// `X-Forwarded-For`, left to right; `None` for one that is no address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
    };
    let forwarded: Vec<Option<IpAddr>> = values(http::header::FORWARDED)
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then(|| parse_hop(value))
            })
        })
        .collect();
    let hops = if forwarded.is_empty() {
        values(http::HeaderName::from_static("x-forwarded-for"))
            .map(parse_hop)
            .collect()
    } else {
        forwarded
    };
    let skip = hops.len().saturating_sub(MAX_HOPS);
    hops.into_iter().skip(skip).collect()
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `"[::1]:80"`, `::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn common_user_agents_get_short_names() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome 120 on Linux"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36", "Headless Chrome 156 on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0", "Edge 120 on Windows"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "Safari 17 on iOS"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", "Safari 18 on macOS"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.0; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox 121 on macOS"),
            ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome 120 on Android"),
            ("curl/8.5.0", "curl 8"),
            ("something else", "Unknown device"),
        ];
        for (ua, name) in cases {
            assert_eq!(describe_user_agent(ua), name, "{ua}");
        }
    }

    #[test]
    fn a_long_user_agent_is_cut_on_a_character_boundary() {
        let ua = "é".repeat(200); // 400 bytes
        let device = Device::new(Some(&ua), None);
        let kept = device.user_agent.unwrap();
        assert!(kept.len() <= MAX_USER_AGENT && kept.len() >= MAX_USER_AGENT - 1);
        assert!(ua.starts_with(&kept));
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9, 1.2.3.4")]);
        let proxy = ip("10.0.0.1");
        assert_eq!(client_address(&h, Some(proxy), &[]), Some(proxy));
        assert_eq!(
            client_address(&h, Some(proxy), &[proxy]),
            Some(ip("1.2.3.4"))
        );
        // The rightmost untrusted hop, not the leftmost the client wrote.
        let two = [proxy, ip("1.2.3.4")];
        assert_eq!(client_address(&h, Some(proxy), &two), Some(ip("9.9.9.9")));
        assert_eq!(client_address(&h, None, &[proxy]), None);
    }

    #[test]
    fn forwarded_is_preferred_and_its_forms_are_read() {
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=192.0.2.60:80",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let proxy = ip("10.0.0.1");
        assert_eq!(
            client_address(&h, Some(proxy), &[proxy]),
            Some(ip("192.0.2.60"))
        );
        let both = [proxy, ip("192.0.2.60")];
        assert_eq!(
            client_address(&h, Some(proxy), &both),
            Some(ip("2001:db8::1"))
        );
        // An unreadable hop ends the walk at the last trusted address.
        let h = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(client_address(&h, Some(proxy), &[proxy]), Some(proxy));
    }
}
