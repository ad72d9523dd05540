//! The error every store maps its failures to.

use std::error::Error as StdError;
use std::fmt;

/// A store could not do what was asked: it is down, slow or returned
/// something unreadable. The layer answers such a request with a 503.
#[derive(Debug)]
pub struct StoreError {
    kind: Kind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Backend,
    Timeout,
    Corrupt,
}

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
