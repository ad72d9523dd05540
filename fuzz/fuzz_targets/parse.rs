//! Parsing arbitrary text as a token or a session id never panics, and what
//! parses prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit::token::Token;
use sessionkit::SessionId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(token) = Token::parse(&text) {
        assert_eq!(token.as_str(), text);
        let _ = token.digest();
    }
    if let Some(id) = SessionId::parse(&text) {
        assert_eq!(id.as_str(), text);
    }
});
