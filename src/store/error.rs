//! The error every store maps its failures to.

use std::error::Error as StdError;
use std::fmt;

/// A store could not do what was asked. [`kind`](Self::kind) says whose
/// fault it is: the backend's (down or slow: the layer answers 503), the
/// stored data's (unreadable: 503 too, and worth an alert), or the caller's
/// (a request the store must refuse: a bug in the application or in a
/// store, answered with 500).
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What went wrong in a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend failed: connection refused, a command error, a lost
    /// connection. Retrying later may work.
    Backend,
    /// The call did not finish in time.
    Timeout,
    /// The store holds or returned data that does not make sense (a record
    /// that does not decode, a reply of the wrong shape).
    Corrupt,
    /// The caller asked for something the store must refuse (a logged-in
    /// session without its user's tag, an option out of range). Retrying
    /// never helps.
    Invalid,
}

use StoreErrorKind as Kind;

impl StoreError {
    /// The backend failed (connection refused, command error, …).
    pub fn backend(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StoreError {
            kind: Kind::Backend,
            source: Some(source.into()),
        }
    }

    /// The call did not finish in time.
    pub fn timeout() -> Self {
        StoreError {
            kind: Kind::Timeout,
            source: None,
        }
    }

    /// The store returned data that does not make sense.
    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError {
            kind: Kind::Corrupt,
            source: Some(what.into().into()),
        }
    }

    /// The caller asked for something the store must refuse.
    pub fn invalid(what: impl Into<String>) -> Self {
        StoreError {
            kind: Kind::Invalid,
            source: Some(what.into().into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Backend => f.write_str("session store failed")?,
            Kind::Timeout => f.write_str("session store timed out")?,
            Kind::Corrupt => f.write_str("session store returned unreadable data")?,
            Kind::Invalid => f.write_str("session store refused the request")?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_says_whose_fault_it_is() {
        assert_eq!(StoreError::backend("refused").kind(), Kind::Backend);
        assert_eq!(StoreError::timeout().kind(), Kind::Timeout);
        assert!(StoreError::timeout().is_timeout());
        assert_eq!(StoreError::corrupt("short row").kind(), Kind::Corrupt);
        assert_eq!(StoreError::invalid("no tag").kind(), Kind::Invalid);
        assert_eq!(
            StoreError::invalid("no tag").to_string(),
            "session store refused the request: no tag"
        );
    }
}
