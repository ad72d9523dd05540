//! Where a session's pieces live in Redis.
//!
//! Every key is `<prefix>{<tag>}:<kind>:<name>`. The braces make the tag the
//! Redis Cluster hash tag, so a session's hash, its tokens, its connections
//! and (for a logged-in session, whose tag is its user's) its user's index
//! all sit in one slot, and one script can change them together. Tokens
//! appear only as digests: reading Redis hands out no credential.

use crate::token::{SessionId, Tag, TokenDigest};

#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: String) -> Self {
        Keys { prefix }
    }

    /// The part every key of one tag starts with; scripts build the rest.
    pub(super) fn base(&self, tag: &Tag) -> String {
        format!("{}{{{}}}:", self.prefix, tag.as_str())
    }

    pub(super) fn session(&self, id: &SessionId) -> (String, String) {
        (self.base(&id.tag()), self.session_key(id))
    }

    /// The key of a session's hash alone, for the plain commands (which
    /// need no base), built in one allocation: every request makes one.
    pub(super) fn session_key(&self, id: &SessionId) -> String {
        let parts = [&self.prefix, "{", id.tag_str(), "}:s:", id.as_str()];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            key.push_str(part);
        }
        key
    }

    pub(super) fn token(&self, digest: &TokenDigest) -> (String, String) {
        let base = self.base(&digest.tag());
        let key = format!("{base}t:{}", digest.hash);
        (base, key)
    }

    pub(super) fn connections(&self, id: &SessionId) -> String {
        format!("{}c:{id}", self.base(&id.tag()))
    }

    pub(super) fn user(&self, user_id: &str) -> (String, String) {
        let base = self.base(&Tag::for_user(user_id));
        let key = format!("{base}u:{user_id}");
        (base, key)
    }

    /// The pub/sub channel session-ended events are published on.
    pub(super) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_is_its_base_then_s_and_its_id() {
        let keys = Keys::new("app:".to_owned());
        let id = SessionId::generate(&Tag::random());
        let (base, key) = keys.session(&id);
        assert_eq!(base, format!("app:{{{}}}:", id.tag().as_str()));
        assert_eq!(key, format!("{base}s:{id}"));
    }
}
