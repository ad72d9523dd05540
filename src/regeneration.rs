//! [`Regeneration`]: when a session's token is replaced automatically, and
//! how long the token it replaces keeps working.

use std::time::Duration;

use crate::clock::{ms, Millis};
use crate::config::{ConfigError, MAX_DURATION};

/// Automatic token regeneration: a policy value for
/// [`SessionLayerBuilder::regeneration`](crate::SessionLayerBuilder::regeneration).
///
/// A token older than [`every`](Self::every) is replaced on its next use,
/// in the response's `Set-Cookie` (or session header). The session stays
/// the same: its id, data, user and connections do not move.
///
/// ```
/// use std::time::Duration;
/// use sessionkit::{MemoryStore, Regeneration, SessionLayer};
///
/// let layer = SessionLayer::builder(MemoryStore::new())
///     .regeneration(
///         Regeneration::every(Duration::from_secs(15 * 60))
///             .grace(Duration::from_secs(120)),
///     )
///     .build();
/// ```
///
/// # The timeline, in dce-session's words
///
/// - **TTG** (time to generate): when the current token was generated,
///   kept server-side ([`Session::ttg`](crate::Session::ttg)).
/// - **SFR** ([`every`](Self::every)): a token with `now - TTG >= SFR` is
///   replaced on its next use.
/// - **OJS** ([`grace`](Self::grace), default 2 minutes, at most half of
///   SFR): the replaced token keeps resolving to the session for this long,
///   so requests already in flight with it are not logged out; each of
///   their responses carries the replacement again while the client has not
///   presented it.
/// - **CIJS** ([`resend_for`](Self::resend_for), default 30 seconds, at
///   most half of OJS): how long after it was last handed out the
///   replacement keeps being handed out to requests carrying the old token.
///   An old-token request later than that (and inside OJS) means the client
///   lost the replacement: a fresh one is minted, and the lost one never
///   works again.
///
/// Time alone never ends a session early: a client that holds the
/// replacement keeps its session, however long it pauses, for as long as
/// the idle and absolute timeouts allow. The one case that logs a user out
/// is inherent to replacing tokens: a client that never received the
/// replacement (the response carrying it was lost) and comes back after OJS
/// presents a token that no longer works. A longer grace narrows that case
/// and widens the window in which a copied old token still works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regeneration {
    every: Duration,
    grace: Option<Duration>,
    resend_for: Option<Duration>,
}

const DEFAULT_GRACE: Duration = Duration::from_secs(120);
const DEFAULT_RESEND: Duration = Duration::from_secs(30);

impl Regeneration {
    /// Replaces a token once it is this old (SFR).
    #[doc(alias = "sfr")]
    pub fn every(age: Duration) -> Self {
        Regeneration {
            every: age,
            grace: None,
            resend_for: None,
        }
    }

    /// How long a replaced token keeps working (OJS). Must be shorter than
    /// [`every`](Self::every). Default: 2 minutes, or half of `every` if
    /// that is shorter.
    #[doc(alias = "ojs")]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// How long after it was last handed out an unadopted replacement keeps
    /// being handed out to requests carrying the old token (CIJS). Default:
    /// 30 seconds, or half of the grace window if that is shorter.
    #[doc(alias = "cijs")]
    pub fn resend_for(mut self, window: Duration) -> Self {
        self.resend_for = Some(window);
        self
    }

    /// SFR: the age at which a token is replaced.
    pub fn interval(&self) -> Duration {
        self.every
    }

    /// OJS: how long a replaced token keeps working.
    pub fn grace_window(&self) -> Duration {
        self.grace
            .unwrap_or_else(|| DEFAULT_GRACE.min(self.every / 2))
    }

    /// CIJS: how long a replacement keeps being handed out again.
    pub fn resend_window(&self) -> Duration {
        self.resend_for
            .unwrap_or_else(|| DEFAULT_RESEND.min(self.grace_window() / 2))
    }

    /// Whether a token generated at `ttg` is due for replacement at `now`.
    pub fn is_due(&self, ttg: Millis, now: Millis) -> bool {
        now.saturating_sub(ttg) >= ms(self.every)
    }

    /// The grace and resend windows used when a token must be replaced
    /// without a policy (a user changed by
    /// [`SessionManager::sync_user`](crate::SessionManager::sync_user) on a
    /// layer with regeneration off).
    pub(crate) fn windows_or_default(policy: Option<&Regeneration>) -> (Millis, Millis) {
        match policy {
            Some(p) => (ms(p.grace_window()), ms(p.resend_window())),
            None => (ms(DEFAULT_GRACE), ms(DEFAULT_RESEND)),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_owned()));
        let (every, grace, resend) = (self.every, self.grace_window(), self.resend_window());
        if [every, grace, resend].iter().any(|d| *d > MAX_DURATION) {
            return err("regeneration intervals may not exceed 100 years (MAX_DURATION)");
        }
        if every.is_zero() {
            return err("the regeneration interval (SFR) must be positive");
        }
        if grace.is_zero() || grace >= every {
            return err("the grace window (OJS) must be positive and shorter than the regeneration interval (SFR), or replaced tokens would outlive their replacements' own turn");
        }
        if resend.is_zero() {
            return err("the resend window (CIJS) must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn defaults_follow_the_interval() {
        let r = Regeneration::every(10 * MIN);
        assert_eq!(r.grace_window(), 2 * MIN);
        assert_eq!(r.resend_window(), Duration::from_secs(30));
        let short = Regeneration::every(Duration::from_secs(10));
        assert_eq!(short.grace_window(), Duration::from_secs(5));
        assert_eq!(short.resend_window(), Duration::from_millis(2500));
        assert!(short.validate().is_ok());
    }

    #[test]
    fn a_grace_not_shorter_than_the_interval_is_refused() {
        assert!(Regeneration::every(MIN).grace(MIN).validate().is_err());
        assert!(Regeneration::every(MIN)
            .grace(Duration::ZERO)
            .validate()
            .is_err());
        assert!(Regeneration::every(Duration::ZERO).validate().is_err());
        assert!(Regeneration::every(MIN)
            .resend_for(Duration::ZERO)
            .validate()
            .is_err());
        assert!(Regeneration::every(Duration::MAX).validate().is_err());
    }

    #[test]
    fn a_token_is_due_once_it_is_as_old_as_the_interval() {
        let r = Regeneration::every(Duration::from_secs(1));
        assert!(!r.is_due(1_000, 1_999));
        assert!(r.is_due(1_000, 2_000));
        // A TTG in the future (clock skew between servers) is not due.
        assert!(!r.is_due(5_000, 1_000));
    }
}
