//! Opening arbitrary sealed replacements with arbitrary old tokens never
//! panics, and sealing then opening gives the replacement back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit::conformance::{seal, unseal};
use sessionkit::token::{SessionId, Tag, Token};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let old = Token::generate(&SessionId::generate(&Tag::random()));
    let _ = unseal(&old, &text);
    if let Some((a, b)) = text.split_once('|') {
        if let Some(old) = Token::parse(a) {
            let _ = unseal(&old, b);
            let new = Token::generate(&old.session_id());
            assert_eq!(unseal(&old, &seal(&old, &new)), Some(new));
        }
    }
});
