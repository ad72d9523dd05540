//! Where a token travels: the session cookie or the session header.
//!
//! Reading is strict. A value that is not exactly one well-formed token is
//! treated as no token at all, without a store call: a cookie sent twice, a
//! header repeated, the wrong length or alphabet. Other cookies in the same
//! header do not matter, whatever bytes they hold.

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use std::time::Duration;

use crate::clock::{ms, Millis};
use crate::config::{Config, CookieConfig};
use crate::session::{CookieFacts, Session, TokenUpdate};
use crate::token::Token;

/// Puts a committed session's [`TokenUpdate`] on the response: the token
/// the client must hold from now on, on the transport the request used (or
/// the announce ones), or the removal of the cookie.
pub(crate) fn respond(headers: &mut HeaderMap, session: &Session, update: TokenUpdate) {
    let config = &session.shared().config;
    let via = session.via();
    let facts = session.cookie_facts();
    let max_age = facts
        .as_ref()
        .and_then(|f| cookie_max_age(config, f, config.clock.now()));
    match update {
        TokenUpdate::Replace(token) => write(headers, config, &token, via, max_age),
        // A persistent cookie follows the session: when the deadline slid,
        // the same token goes out again with the new Max-Age.
        TokenUpdate::Keep => {
            if let Some(CookieFacts {
                token: Some(token),
                deadline_moved: true,
                ..
            }) = &facts
            {
                if max_age.is_some() && via == Some(Via::Cookie) {
                    write(headers, config, token, via, max_age);
                }
            }
        }
        TokenUpdate::Drop => expire(headers, config, via),
    }
}

/// The cookie's Max-Age for a session: `None` for a browser-session cookie,
/// unless the layer sets a Max-Age or the session has an idle timeout of its
/// own; then what is left until the session's deadline.
fn cookie_max_age(config: &Config, facts: &CookieFacts, now: Millis) -> Option<Duration> {
    let cookie = config.cookie.as_ref()?;
    let own_timeout = facts.idle_timeout != ms(config.idle_timeout);
    if cookie.max_age.is_none() && !own_timeout {
        return None;
    }
    let left = Duration::from_millis(facts.deadline.saturating_sub(now));
    Some(cookie.max_age.map_or(left, |cap| cap.min(left)))
}

/// The transport a token came in on, and so goes back out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Header,
}

/// Reads the request's token: the cookie first, then the header.
pub(crate) fn read(headers: &HeaderMap, config: &Config) -> Option<(Token, Via)> {
    if let Some(cookie) = &config.cookie {
        if let Some(token) = read_cookie(headers, &cookie.name) {
            return Some((token, Via::Cookie));
        }
    }
    let name = config.header.as_ref()?;
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    Token::parse(value.to_str().ok()?.trim()).map(|t| (t, Via::Header))
}

fn read_cookie(headers: &HeaderMap, name: &str) -> Option<Token> {
    let mut found = None;
    // HTTP/2 may split cookies over several `Cookie` headers.
    for header in headers.get_all(COOKIE) {
        // Read as bytes: a sibling cookie with a non-ASCII value (`theme=café`,
        // set by any script on the site) must not hide the session cookie.
        // Only the session cookie's own value has to be a well-formed token,
        // which bytes that are not UTF-8 can never be.
        let text = String::from_utf8_lossy(header.as_bytes());
        for cookie in Cookie::split_parse(text.as_ref()).flatten() {
            if cookie.name() == name {
                if found.is_some() {
                    // Two values: one was planted (cookie tossing). Trust neither.
                    return None;
                }
                found = Some(cookie.value().to_owned());
            }
        }
    }
    Token::parse(&found?)
}

fn cookie_for<'a>(c: &'a CookieConfig, value: &'a str, max_age: Option<Duration>) -> Cookie<'a> {
    let mut builder = Cookie::build((c.name.as_str(), value))
        .http_only(c.http_only)
        .secure(c.secure)
        .same_site(c.same_site)
        .path(c.path.as_str());
    if let Some(domain) = &c.domain {
        builder = builder.domain(domain.as_str());
    }
    if let Some(max_age) = max_age {
        if let Ok(max_age) = cookie::time::Duration::try_from(max_age) {
            builder = builder.max_age(max_age);
        }
    }
    builder.build()
}

/// Writes the token the client should hold from now on.
fn write(
    headers: &mut HeaderMap,
    config: &Config,
    token: &Token,
    via: Option<Via>,
    max_age: Option<Duration>,
) {
    let (cookie, header) = match via {
        Some(Via::Cookie) => (true, false),
        Some(Via::Header) => (false, true),
        None => (config.announce_cookie, config.announce_header),
    };
    if let (true, Some(c)) = (cookie, &config.cookie) {
        append_cookie(headers, &cookie_for(c, token.as_str(), max_age));
    }
    if let (true, Some(name)) = (header, &config.header) {
        if let Ok(value) = HeaderValue::from_str(token.as_str()) {
            headers.insert(name.clone(), value);
        }
    }
    no_store(headers);
}

/// Tells the client to forget its token. The removal cookie carries the
/// same attributes as the cookie it removes, or browsers would keep it.
fn expire(headers: &mut HeaderMap, config: &Config, via: Option<Via>) {
    if via == Some(Via::Header) {
        return;
    }
    if let Some(c) = &config.cookie {
        let mut cookie = cookie_for(c, "", None);
        cookie.make_removal();
        append_cookie(headers, &cookie);
        no_store(headers);
    }
}

fn append_cookie(headers: &mut HeaderMap, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(SET_COOKIE, value);
    }
}

/// A response that sets a token must never be cached, or a shared cache
/// could hand one user's token to another.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SessionId, Tag};

    const NAME: &str = "__Host-sessionkit";

    fn cookies(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            let value = HeaderValue::from_bytes(value).expect("a header value");
            headers.append(COOKIE, value);
        }
        headers
    }

    fn token() -> Token {
        Token::generate(&SessionId::generate(&Tag::random()))
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let t = token();
        let headers = cookies(&[format!("a=1; {NAME}={}; b=2", t.as_str()).as_bytes()]);
        assert_eq!(read_cookie(&headers, NAME), Some(t));
    }

    #[test]
    fn a_sibling_cookie_that_is_not_ascii_does_not_hide_the_session() {
        let t = token();
        let utf8 = format!("theme=café; {NAME}={}", t.as_str());
        assert_eq!(
            read_cookie(&cookies(&[utf8.as_bytes()]), NAME),
            Some(t.clone())
        );
        // Not even UTF-8 (Latin-1 "é").
        let mut latin1 = b"theme=caf\xe9; ".to_vec();
        latin1.extend_from_slice(format!("{NAME}={}", t.as_str()).as_bytes());
        assert_eq!(read_cookie(&cookies(&[&latin1]), NAME), Some(t));
    }

    #[test]
    fn a_session_cookie_that_is_not_ascii_is_no_token() {
        let value = format!("{NAME}=caf\u{e9}{}", "A".repeat(40));
        assert_eq!(read_cookie(&cookies(&[value.as_bytes()]), NAME), None);
    }

    #[test]
    fn a_session_cookie_sent_twice_is_no_token() {
        let (t, u) = (token(), token());
        let same_header = format!("{NAME}={}; {NAME}={}", t.as_str(), u.as_str());
        assert_eq!(read_cookie(&cookies(&[same_header.as_bytes()]), NAME), None);
        // Even with the same value twice: one of them was planted.
        let repeated = format!("{NAME}={}; {NAME}={}", t.as_str(), t.as_str());
        assert_eq!(read_cookie(&cookies(&[repeated.as_bytes()]), NAME), None);
        // And across the headers HTTP/2 splits cookies over.
        let a = format!("{NAME}={}", t.as_str());
        let b = format!("{NAME}={}", u.as_str());
        assert_eq!(
            read_cookie(&cookies(&[a.as_bytes(), b.as_bytes()]), NAME),
            None
        );
    }

    #[test]
    fn cookies_split_over_several_headers_are_all_read() {
        let t = token();
        let session = format!("{NAME}={}", t.as_str());
        let headers = cookies(&[b"a=1", session.as_bytes()]);
        assert_eq!(read_cookie(&headers, NAME), Some(t));
    }

    #[test]
    fn a_cookie_of_a_similar_name_is_not_the_session_cookie() {
        let t = token();
        let value = format!("sessionkit={}; {NAME}x={}", t.as_str(), t.as_str());
        assert_eq!(read_cookie(&cookies(&[value.as_bytes()]), NAME), None);
    }

    #[test]
    fn a_malformed_value_is_no_token() {
        for value in ["", "short", &"A".repeat(200), "AAAA BBBB"] {
            let header = format!("{NAME}={value}");
            if let Ok(v) = HeaderValue::from_str(&header) {
                let mut headers = HeaderMap::new();
                headers.insert(COOKIE, v);
                assert_eq!(read_cookie(&headers, NAME), None, "{value:?}");
            }
        }
    }

    mod properties {
        //! Whatever a client sends, reading the token never panics, and finds
        //! a well-formed token or none.
        use super::*;
        use crate::config::{Config, Pending};
        use proptest::prelude::*;

        fn config() -> Config {
            Config::default()
                .finish(Pending::default())
                .expect("the default configuration")
        }

        fn headers(cookies: &[Vec<u8>], session: &[Vec<u8>]) -> HeaderMap {
            let mut headers = HeaderMap::new();
            for value in cookies {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append(COOKIE, value);
                }
            }
            for value in session {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append("x-session-id", value);
                }
            }
            headers
        }

        /// Bytes biased towards what cookie parsing reacts to.
        fn cookie_bytes() -> impl Strategy<Value = Vec<u8>> {
            let pieces = prop_oneof![
                Just(b"; ".to_vec()),
                Just(b"=".to_vec()),
                Just(b"\"".to_vec()),
                Just(NAME.as_bytes().to_vec()),
                Just(b"AAAA".to_vec()),
                any::<Vec<u8>>(),
                "[A-Za-z0-9_-]{0,50}".prop_map(String::into_bytes),
            ];
            proptest::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn arbitrary_headers_give_a_well_formed_token_or_none(
                cookies in proptest::collection::vec(cookie_bytes(), 0..4),
                session in proptest::collection::vec(any::<Vec<u8>>(), 0..3),
            ) {
                if let Some((token, _)) = read(&headers(&cookies, &session), &config()) {
                    prop_assert_eq!(Token::parse(token.as_str()), Some(token.clone()));
                }
            }

            #[test]
            fn the_session_cookie_is_found_whatever_its_siblings_hold(
                before in "[a-z]{1,8}=[^;\u{0}-\u{1f}\u{7f}]{0,30}",
                after in "[a-z]{1,8}=[^;\u{0}-\u{1f}\u{7f}]{0,30}",
            ) {
                let t = token();
                let value = format!("{before}; {NAME}={}; {after}", t.as_str());
                let found = read(&headers(&[value.into_bytes()], &[]), &config());
                prop_assert_eq!(found, Some((t, Via::Cookie)));
            }
        }
    }
}
