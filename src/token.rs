//! Session tokens, session ids and the digests stores key them by.
//!
//! A [`Token`] is the credential a client holds. It is its session's
//! [`SessionId`] (26 characters, starting with the 4-character *routing
//! tag*) followed by a 256-bit secret from the OS CSPRNG, all URL-safe
//! base64 (69 characters). The tag is shared by every key of one session so
//! that a store partitioned by key (Redis Cluster, a sharded memory map) can
//! keep a session's keys together. The id lets a store read the session in
//! one plain lookup and check the token against it, instead of resolving
//! the token first: it is no secret (it grants nothing, and listings show
//! it), and every token of a session, through all its rotations, starts
//! with the same id.
//!
//! Stores never see a token: they get a [`TokenDigest`], the session id plus
//! a SHA-256 of the whole token, so that reading the store hands out no live
//! credential. When a token is rotated the replacement must be handed to every
//! concurrent request that still carries the old token, so the store keeps it
//! *sealed* under the old token: only a holder of the old token can open it.
//! Only the layer seals and opens (store tests find the same functions in
//! the conformance module).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of the routing tag, in characters.
pub(crate) const TAG_LEN: usize = 4;
const TAG_BYTES: usize = 3;
const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43;
/// Length of a well-formed token, in characters.
pub const TOKEN_LEN: usize = ID_LEN + SECRET_LEN;
const ID_BYTES: usize = 16;
const ID_LEN: usize = TAG_LEN + 22;
const NONCE_BYTES: usize = 16;

fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing means the machine cannot produce secrets at
    // all; no session can be issued safely, so this is not recoverable.
    OsRng
        .try_fill_bytes(&mut buf)
        .unwrap_or_else(|err| panic!("the OS random number generator failed: {err}"));
    buf
}

/// A random 128-bit id, URL-safe (for connections).
pub(crate) fn random_id() -> String {
    B64.encode(random::<ID_BYTES>())
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The routing tag shared by all keys of one session.
///
/// Anonymous sessions get a random tag; a logged-in session gets the tag of
/// its user (derived from the user id), so that a user's sessions and their
/// index live together and can be changed in one atomic step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag(String);

impl Tag {
    /// A fresh random tag.
    pub fn random() -> Self {
        Tag(B64.encode(random::<TAG_BYTES>()))
    }

    /// The tag of a user: every session of that user carries it.
    pub fn for_user(user_id: &str) -> Self {
        let hash = Sha256::new()
            .chain_update(b"sessionkit/user-tag\0")
            .chain_update(user_id.as_bytes())
            .finalize();
        Tag(B64.encode(&hash[..TAG_BYTES]))
    }

    /// The tag as text (4 URL-safe characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The stable, public id of a session (its *handle*).
///
/// It never changes while the session lives, token rotation does not touch
/// it, and it grants nothing: it is what listings show and what revocation
/// takes. It starts with the session's [`Tag`].
// Deserializing checks the form like `parse`, so an id read back from a
// store or an event is as well formed as one the crate generated.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id under `tag`.
    pub fn generate(tag: &Tag) -> Self {
        SessionId(format!("{}{}", tag.0, B64.encode(random::<ID_BYTES>())))
    }

    /// Parses an id given by a client (for example in a revoke route).
    /// Returns `None` unless it is well formed.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ID_LEN && is_b64url(s)).then(|| SessionId(s.to_owned()))
    }

    /// The routing tag this session's keys share.
    pub fn tag(&self) -> Tag {
        Tag(self.tag_str().to_owned())
    }

    /// The routing tag as text, borrowed from the id.
    pub(crate) fn tag_str(&self) -> &str {
        &self.0[..TAG_LEN]
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = &'static str;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        SessionId::parse(&s).ok_or("not a well-formed session id")
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// A session token: the credential in the cookie or header.
///
/// Its `Debug` output is redacted; use [`Token::fingerprint`] in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token of the session `id`, with 256 bits from the OS CSPRNG.
    pub fn generate(id: &SessionId) -> Self {
        Token(format!("{}{}", id.0, B64.encode(random::<SECRET_BYTES>())))
    }

    /// Parses a token presented by a client. Returns `None` for anything not
    /// well formed (length, alphabet), so garbage never reaches a store.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != TOKEN_LEN || !is_b64url(s) {
            return None;
        }
        // The secret must be canonical base64 (its padding bits zero), so a
        // token has one spelling: a twin differing in a padding bit is no
        // token rather than a second spelling of a live one.
        let mut secret = [0u8; SECRET_BYTES + 2];
        matches!(
            B64.decode_slice(&s[ID_LEN..], &mut secret),
            Ok(SECRET_BYTES)
        )
        .then(|| Token(s.to_owned()))
    }

    /// The routing tag of the token's session.
    pub fn tag(&self) -> Tag {
        Tag(self.0[..TAG_LEN].to_owned())
    }

    /// The id of the session the token names. Only a store can say whether
    /// the token is still one of that session's: the id is no credential.
    pub fn session_id(&self) -> SessionId {
        SessionId(self.0[..ID_LEN].to_owned())
    }

    /// The token as text, for a cookie or header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest stores key this token by.
    pub fn digest(&self) -> TokenDigest {
        let hash = Sha256::new()
            .chain_update(b"sessionkit/token\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        TokenDigest {
            session: self.session_id(),
            hash: B64.encode(hash),
        }
    }

    /// A short, non-reversible fingerprint for logs: the first characters of
    /// the digest. It identifies a token across log lines without exposing it.
    pub fn fingerprint(&self) -> String {
        let mut d = self.digest().hash;
        d.truncate(10);
        d
    }

    fn pad(&self, nonce: &[u8]) -> [u8; SECRET_BYTES] {
        Sha256::new()
            .chain_update(b"sessionkit/seal\0")
            .chain_update(self.0.as_bytes())
            .chain_update(nonce)
            .finalize()
            .into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.fingerprint())
    }
}

/// What a store knows of a token: the id of the session it names and a
/// SHA-256 of it. The id is a claim of the client's: a store finds the
/// session by it, or by the hash, and accepts the token only if the hash is
/// one of that session's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenDigest {
    /// The session the token names (the first part of the token).
    pub session: SessionId,
    /// URL-safe base64 of the token's SHA-256 (43 characters).
    pub hash: String,
}

impl TokenDigest {
    /// The routing tag of the session the token names.
    pub fn tag(&self) -> Tag {
        self.session.tag()
    }
}

/// Seals `replacement` so that only a holder of `old` can open it.
///
/// The secret part of the replacement is XORed with a pad derived from the old
/// token and a random nonce (SHA-256 used as a keyed PRF over a 256-bit key).
/// The session id is not sealed: old and new tokens of a session share it.
pub(crate) fn seal(old: &Token, replacement: &Token) -> String {
    debug_assert_eq!(old.session_id(), replacement.session_id());
    let nonce = random::<NONCE_BYTES>();
    let pad = old.pad(&nonce);
    let mut out = Vec::with_capacity(NONCE_BYTES + SECRET_BYTES);
    out.extend_from_slice(&nonce);
    // A token we generated always decodes; a parsed one was checked for the
    // alphabet and length, so decoding cannot fail either.
    let secret = B64
        .decode(&replacement.0[ID_LEN..])
        .unwrap_or_else(|_| vec![0; SECRET_BYTES]);
    out.extend(secret.iter().zip(pad).map(|(s, p)| s ^ p));
    B64.encode(out)
}

/// Opens a replacement sealed under `old`. Returns `None` if `sealed` is not
/// something [`seal`] produced.
pub(crate) fn unseal(old: &Token, sealed: &str) -> Option<Token> {
    let raw = B64.decode(sealed).ok()?;
    if raw.len() != NONCE_BYTES + SECRET_BYTES {
        return None;
    }
    let (nonce, body) = raw.split_at(NONCE_BYTES);
    let pad = old.pad(nonce);
    let secret: Vec<u8> = body.iter().zip(pad).map(|(s, p)| s ^ p).collect();
    Some(Token(format!("{}{}", &old.0[..ID_LEN], B64.encode(secret))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_and_distinct() {
        let tag = Tag::random();
        let id = SessionId::generate(&tag);
        let a = Token::generate(&id);
        let b = Token::generate(&id);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert_ne!(a, b);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.tag(), tag);
        assert_eq!(a.session_id(), id);
        assert_eq!(a.digest().session, id);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = Token::generate(&SessionId::generate(&Tag::random()));
        assert!(Token::parse("").is_none());
        assert!(Token::parse(&good.as_str()[1..]).is_none());
        assert!(Token::parse(&format!("{}A", good.as_str())).is_none());
        let mut bad = good.as_str().to_owned();
        bad.replace_range(5..6, "+");
        assert!(Token::parse(&bad).is_none());
        assert!(Token::parse(&"é".repeat(TOKEN_LEN / 2)).is_none());
        // The last character of the secret carries 2 bits of padding; only
        // the canonical spelling (zero bits) is a token, so that one token
        // has one spelling.
        let canonical = good.as_str().to_owned();
        let last = canonical.as_bytes()[TOKEN_LEN - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let mut twin = canonical[..TOKEN_LEN - 1].to_owned();
        twin.push(alphabet[pos ^ 1] as char);
        assert!(Token::parse(&twin).is_none(), "{twin}");
    }

    #[test]
    fn digest_does_not_contain_the_token() {
        let t = Token::generate(&SessionId::generate(&Tag::random()));
        let d = t.digest();
        assert!(!d.hash.contains(&t.as_str()[ID_LEN..]));
        assert_eq!(d, t.clone().digest());
    }

    #[test]
    fn seal_round_trips_only_with_the_old_token() {
        let id = SessionId::generate(&Tag::random());
        let old = Token::generate(&id);
        let new = Token::generate(&id);
        let sealed = seal(&old, &new);
        assert!(!sealed.contains(&new.as_str()[ID_LEN..]));
        assert_eq!(unseal(&old, &sealed), Some(new.clone()));
        let other = Token::generate(&id);
        assert_ne!(unseal(&other, &sealed), Some(new));
        assert_eq!(unseal(&old, "garbage"), None);
    }

    #[test]
    fn session_ids_deserialize_only_when_well_formed() {
        let id = SessionId::generate(&Tag::random());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        for bad in [
            r#""""#,
            r#""ab""#,
            r#""é""#,
            r#""../../etc/passwd/xxxxxxxxxx""#,
        ] {
            assert!(serde_json::from_str::<SessionId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_tags_are_stable() {
        assert_eq!(Tag::for_user("alice"), Tag::for_user("alice"));
        assert_eq!(Tag::for_user("alice").as_str().len(), TAG_LEN);
        let id = SessionId::generate(&Tag::for_user("alice"));
        assert_eq!(id.tag(), Tag::for_user("alice"));
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
    }

    mod properties {
        //! Opening a sealed replacement never panics, gives a well-formed
        //! token or none, and gives the replacement back only to its old token.
        use super::*;
        use proptest::prelude::*;

        fn any_token() -> impl Strategy<Value = Token> {
            ("[A-Za-z0-9_-]{26}", any::<[u8; SECRET_BYTES]>()).prop_map(|(id, secret)| {
                let text = format!("{id}{}", B64.encode(secret));
                Token::parse(&text).expect("an id and a canonical secret")
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn arbitrary_sealed_text_opens_to_a_well_formed_token_or_none(
                old in any_token(),
                sealed in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,100}"],
            ) {
                if let Some(token) = unseal(&old, &sealed) {
                    prop_assert_eq!(Token::parse(token.as_str()), Some(token.clone()));
                    prop_assert_eq!(token.session_id(), old.session_id());
                }
            }

            #[test]
            fn a_sealed_replacement_opens_only_with_its_old_token(
                old in any_token(),
                other in any_token(),
                secret in any::<[u8; SECRET_BYTES]>(),
            ) {
                // Replacements are generated, never parsed: 32 bytes under
                // the old token's session id.
                let new = Token(format!("{}{}", old.session_id(), B64.encode(secret)));
                let sealed = seal(&old, &new);
                prop_assert_eq!(unseal(&old, &sealed), Some(new.clone()));
                if other != old {
                    prop_assert_ne!(unseal(&other, &sealed), Some(new));
                }
            }
        }
    }
}
