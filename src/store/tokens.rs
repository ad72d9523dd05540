//! The rules of a session's tokens, with no I/O: which token is current,
//! which one is in its grace window, when a replacement is sent again and
//! when a fresh one is minted instead.
//!
//! Every Rust store keeps a [`TokenSlots`] per session and lets it decide
//! what a load, a rotation, a regeneration or a connection's fetch means;
//! the store only persists the slots and maps the token digests they name
//! to the session. The Redis scripts are a port of this module, held to it
//! by the conformance suite.
//!
//! # The rules
//!
//! A session has one **current** token and at most one **previous** token.
//!
//! - Presenting the current token resolves the session and marks the token
//!   *adopted*: the client evidently holds it. A replacement the client
//!   never presented keeps working however long the client pauses; only the
//!   session's idle and absolute deadlines end it.
//! - A rotation makes the presented current token the previous one, valid
//!   for a grace window (OJS), and installs the candidate as the unadopted
//!   current token. The replacement is kept *sealed* under the previous
//!   token, so that concurrent requests still carrying the previous token
//!   get the same replacement (single flight).
//! - Presenting the previous token inside its grace window resolves the
//!   session, and:
//!   - if the replacement is unadopted and was last handed out less than
//!     CIJS ago, the sealed replacement is handed out again (and lives CIJS
//!     from now);
//!   - if the replacement is unadopted and was last handed out CIJS ago or
//!     more, the client evidently lost it: the caller mints a fresh one with
//!     a rotation, and the lost one never works again;
//!   - if the replacement was adopted, there is nothing to hand out: the
//!     client holds it already.
//! - Past its grace window the previous token is *stale*: it no longer
//!   resolves, and presenting it suggests a copied token.
//! - The sealed replacement is deleted as soon as it is adopted or the grace
//!   window ends, so that a copy of the store plus an old token never yields
//!   a live token.
//! - A regeneration (login, privilege change) replaces every token at once,
//!   with no grace window.

use serde::{Deserialize, Serialize};

use super::{Rotated, Rotation, TokenState};
use crate::clock::Millis;

/// A session's tokens, as a store keeps them. Token digests only
/// ([`TokenDigest::hash`](crate::token::TokenDigest)): never a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSlots {
    /// The digest of the current token.
    pub current: String,
    /// Whether a client presented the current token since it was installed.
    pub adopted: bool,
    /// While the current token is unadopted: until when it is handed out
    /// again to requests carrying the previous token (CIJS).
    pub resend_until: Millis,
    /// The token the current one replaced, while it is remembered.
    pub previous: Option<PreviousToken>,
}

/// The token a rotation replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousToken {
    /// Its digest.
    pub hash: String,
    /// The end of its grace window (OJS).
    pub grace_until: Millis,
    /// The current token sealed under this one, until it is adopted or the
    /// grace window ends.
    pub sealed: Option<String>,
}

/// What a presented token means, decided by [`TokenSlots::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The token resolves the session, in this state.
    Live(TokenState),
    /// The previous token, past its grace window.
    Stale,
    /// Not a token of this session.
    Unknown,
}

/// What a rotation did, decided by [`TokenSlots::rotate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationStep {
    /// The outcome to report.
    pub outcome: Rotated,
    /// Digests that no longer point at the session: the store forgets them.
    pub dead: Vec<String>,
}

impl TokenSlots {
    /// The slots of a new session whose first token is `hash`.
    pub fn new(hash: impl Into<String>) -> Self {
        TokenSlots {
            current: hash.into(),
            adopted: true,
            resend_until: 0,
            previous: None,
        }
    }

    /// Every digest that points at the session.
    pub fn hashes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str())
            .chain(self.previous.as_ref().map(|p| p.hash.as_str()))
    }

    /// Deletes the sealed replacement once its grace window is over. Stores
    /// call it whenever they touch a session; [`resolve`](Self::resolve),
    /// [`rotate`](Self::rotate) and [`fetch`](Self::fetch) call it first.
    pub fn forget_sealed(&mut self, now: Millis) {
        if let Some(prev) = &mut self.previous {
            if now >= prev.grace_until || self.adopted {
                prev.sealed = None;
            }
        }
    }

    /// Resolves a presented token digest (a load), updating the slots:
    /// the current token becomes adopted; a replacement handed out again
    /// lives `cijs` from `now`.
    pub fn resolve(&mut self, hash: &str, now: Millis, cijs: Millis) -> Resolution {
        if self.current == hash {
            self.adopted = true;
            self.forget_sealed(now);
            return Resolution::Live(TokenState::Current);
        }
        self.forget_sealed(now);
        let Some(prev) = &mut self.previous else {
            return Resolution::Unknown;
        };
        if prev.hash != hash {
            return Resolution::Unknown;
        }
        if now >= prev.grace_until {
            return Resolution::Stale;
        }
        if self.adopted {
            return Resolution::Live(TokenState::Superseded);
        }
        if now >= self.resend_until {
            return Resolution::Live(TokenState::Lapsed);
        }
        match &prev.sealed {
            Some(sealed) => {
                self.resend_until = now.saturating_add(cijs);
                Resolution::Live(TokenState::Replaced {
                    sealed: sealed.clone(),
                })
            }
            // Only adoption or the end of the grace window delete it, and
            // both were ruled out above; a store that lost it mints anew.
            None => Resolution::Live(TokenState::Lapsed),
        }
    }

    /// Replaces `r.old` by `r.new` with a grace window for the old token,
    /// single flight (see [`SessionStore::rotate`](super::SessionStore::rotate)).
    pub fn rotate(&mut self, r: &Rotation) -> RotationStep {
        let now = r.now;
        self.forget_sealed(now);
        let mut dead = Vec::new();
        let in_grace = self
            .previous
            .as_ref()
            .is_some_and(|p| p.hash == r.old.hash && now < p.grace_until);
        let outcome = if self.current == r.old.hash {
            // First rotation of the current token: it becomes the previous
            // one, and the one before it dies for good.
            let before = self.previous.replace(PreviousToken {
                hash: r.old.hash.clone(),
                grace_until: now.saturating_add(r.ojs),
                sealed: Some(r.sealed.clone()),
            });
            dead.extend(before.map(|p| p.hash));
            self.install(r);
            Rotated::Installed
        } else if in_grace && self.adopted {
            // Rotated by another request, and the client already holds the
            // replacement.
            Rotated::Superseded
        } else if in_grace && now >= self.resend_until {
            // The replacement was lost: it dies, and the candidate replaces
            // it under the same grace window.
            dead.push(std::mem::take(&mut self.current));
            if let Some(prev) = &mut self.previous {
                prev.sealed = Some(r.sealed.clone());
            }
            self.install(r);
            Rotated::Installed
        } else if in_grace {
            // Another request rotated first: hand out its replacement, which
            // is about to be sent again.
            match self.previous.as_ref().and_then(|p| p.sealed.clone()) {
                Some(sealed) => {
                    self.resend_until = now.saturating_add(r.cijs);
                    Rotated::Existing(sealed)
                }
                None => Rotated::Superseded,
            }
        } else {
            Rotated::Gone
        };
        RotationStep { outcome, dead }
    }

    fn install(&mut self, r: &Rotation) {
        self.current = r.new.hash.clone();
        self.adopted = false;
        self.resend_until = r.now.saturating_add(r.cijs);
    }

    /// Replaces every token by `hash`, with no grace window. Returns the
    /// digests that no longer point at the session.
    pub fn regenerate(&mut self, hash: &str) -> Vec<String> {
        let old = std::mem::replace(self, TokenSlots::new(hash));
        old.hashes().map(str::to_owned).collect()
    }

    /// For a live connection that knows the token `known`: the sealed
    /// replacement if `known` was replaced and the replacement can still be
    /// handed out, and whether `known` is still the current token.
    pub fn fetch(&mut self, known: Option<&str>, now: Millis) -> (Option<String>, bool) {
        self.forget_sealed(now);
        let Some(known) = known else {
            return (None, false);
        };
        let replacement = self
            .previous
            .as_ref()
            .filter(|p| p.hash == known && now < p.grace_until)
            .and_then(|p| p.sealed.clone());
        (replacement, self.current == known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SessionId, Tag, TokenDigest};

    const OJS: Millis = 30_000;
    const CIJS: Millis = 10_000;

    fn digest(hash: &str) -> TokenDigest {
        TokenDigest {
            session: SessionId::generate(&Tag::random()),
            hash: hash.to_owned(),
        }
    }

    fn rotation(old: &str, new: &str, now: Millis) -> Rotation {
        let tag = Tag::random();
        Rotation {
            id: SessionId::generate(&tag),
            old: digest(old),
            new: digest(new),
            sealed: format!("{new}-sealed-under-{old}"),
            now,
            ojs: OJS,
            cijs: CIJS,
        }
    }

    fn rotated(at: Millis) -> TokenSlots {
        let mut slots = TokenSlots::new("a");
        assert_eq!(
            slots.rotate(&rotation("a", "b", at)).outcome,
            Rotated::Installed
        );
        slots
    }

    #[test]
    fn an_unadopted_replacement_never_lapses_for_its_holder() {
        let mut slots = rotated(0);
        // Long after CIJS and OJS, the holder of the replacement is served.
        assert_eq!(
            slots.resolve("b", 10 * OJS, CIJS),
            Resolution::Live(TokenState::Current)
        );
        assert!(slots.adopted);
    }

    #[test]
    fn the_old_token_gets_the_replacement_again_within_cijs() {
        let mut slots = rotated(0);
        let again = slots.resolve("a", CIJS - 1, CIJS);
        assert_eq!(
            again,
            Resolution::Live(TokenState::Replaced {
                sealed: "b-sealed-under-a".into()
            })
        );
        // Handing it out again extends its CIJS.
        assert_eq!(slots.resend_until, CIJS - 1 + CIJS);
    }

    #[test]
    fn the_old_token_after_cijs_asks_for_a_fresh_replacement() {
        let mut slots = rotated(0);
        assert_eq!(
            slots.resolve("a", CIJS, CIJS),
            Resolution::Live(TokenState::Lapsed)
        );
        let step = slots.rotate(&rotation("a", "c", CIJS));
        assert_eq!(step.outcome, Rotated::Installed);
        assert_eq!(step.dead, vec!["b".to_owned()]);
        assert_eq!(slots.resolve("b", CIJS + 1, CIJS), Resolution::Unknown);
        // The grace window is not extended by the fresh replacement.
        assert_eq!(slots.previous.as_ref().map(|p| p.grace_until), Some(OJS));
    }

    #[test]
    fn adoption_deletes_the_sealed_replacement() {
        let mut slots = rotated(0);
        slots.resolve("b", 1, CIJS);
        assert_eq!(slots.previous.as_ref().and_then(|p| p.sealed.clone()), None);
        assert_eq!(
            slots.resolve("a", 2, CIJS),
            Resolution::Live(TokenState::Superseded)
        );
        assert_eq!(
            slots.rotate(&rotation("a", "c", 3)).outcome,
            Rotated::Superseded
        );
    }

    #[test]
    fn the_end_of_grace_deletes_the_sealed_replacement() {
        let mut slots = rotated(0);
        slots.forget_sealed(OJS);
        assert_eq!(slots.previous.as_ref().and_then(|p| p.sealed.clone()), None);
        assert_eq!(slots.resolve("a", OJS, CIJS), Resolution::Stale);
    }

    #[test]
    fn concurrent_rotations_share_one_replacement() {
        let mut slots = rotated(0);
        let step = slots.rotate(&rotation("a", "x", 5));
        assert_eq!(step.outcome, Rotated::Existing("b-sealed-under-a".into()));
        assert!(step.dead.is_empty());
        assert_eq!(slots.current, "b");
    }

    #[test]
    fn a_second_rotation_kills_the_token_before_the_previous() {
        let mut slots = rotated(0);
        slots.resolve("b", 1, CIJS);
        let step = slots.rotate(&rotation("b", "c", 100_000));
        assert_eq!(step.outcome, Rotated::Installed);
        assert_eq!(step.dead, vec!["a".to_owned()]);
        assert_eq!(slots.resolve("a", 100_001, CIJS), Resolution::Unknown);
    }

    #[test]
    fn rotating_an_unknown_token_is_gone() {
        let mut slots = rotated(0);
        assert_eq!(slots.rotate(&rotation("z", "c", 1)).outcome, Rotated::Gone);
        // The old token past its grace cannot rotate either.
        assert_eq!(
            slots.rotate(&rotation("a", "c", OJS)).outcome,
            Rotated::Gone
        );
    }

    #[test]
    fn regeneration_leaves_only_the_new_token() {
        let mut slots = rotated(0);
        let mut dead = slots.regenerate("n");
        dead.sort();
        assert_eq!(dead, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(slots, TokenSlots::new("n"));
    }

    #[test]
    fn a_connection_follows_a_rotation_until_adoption() {
        let mut slots = rotated(0);
        assert_eq!(
            slots.fetch(Some("a"), 1),
            (Some("b-sealed-under-a".into()), false)
        );
        assert_eq!(slots.fetch(Some("b"), 1), (None, true));
        // Fetching does not adopt: only presenting the token does.
        assert!(!slots.adopted);
        slots.resolve("b", 2, CIJS);
        assert_eq!(slots.fetch(Some("a"), 3), (None, false));
    }
}
