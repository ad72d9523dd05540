//! The crate's error type and the response it turns into.

use std::fmt;

use crate::store::{StoreError, StoreErrorKind};

/// What can go wrong when using a session.
///
/// With the `axum` feature it implements `IntoResponse`, so a handler can
/// return `Result<_, sessionkit::Error>` and use `?`:
///
/// | variant | status | body |
/// |---|---|---|
/// | [`Error::Store`] (backend down or slow, data unreadable) | 503 Service Unavailable | `session store unavailable` |
/// | [`Error::Store`] with [`StoreErrorKind::Invalid`] (a request the store refused) | 500 Internal Server Error | `session store error` |
/// | [`Error::Serialization`] | 500 Internal Server Error | `session data error` |
/// | [`Error::MissingLayer`] | 500 Internal Server Error | `Session extractor used without SessionLayer` |
/// | [`Error::NoSession`] | 401 Unauthorized | `no session` |
/// | [`Error::NotLoaded`] | 500 Internal Server Error | `session not loaded` |
///
/// Bodies are short and never echo data, tokens or store messages; details
/// go to `tracing`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The store failed or timed out.
    Store(StoreError),
    /// A value could not be (de)serialized.
    Serialization(serde_json::Error),
    /// `Session` was extracted on a route the `SessionLayer` does not wrap.
    MissingLayer,
    /// The operation needs a stored session and there is none (or it ended):
    /// for example [`Session::connect`](crate::Session::connect) on a request
    /// without one.
    NoSession,
    /// The session's data was read or written before the session was
    /// loaded: a plain Tower service calls [`Session::load`](crate::Session::load)
    /// first (the axum extractor loads it).
    NotLoaded,
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Error::Store(e) if e.kind() == StoreErrorKind::Invalid => {
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Store(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            Error::Serialization(_) | Error::MissingLayer | Error::NotLoaded => {
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::NoSession => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The short response body.
    pub(crate) fn body(&self) -> &'static str {
        match self {
            Error::Store(e) if e.kind() == StoreErrorKind::Invalid => "session store error",
            Error::Store(_) => "session store unavailable",
            Error::Serialization(_) => "session data error",
            Error::MissingLayer => "Session extractor used without SessionLayer",
            Error::NoSession => "no session",
            Error::NotLoaded => "session not loaded",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "{e}"),
            Error::Serialization(e) => write!(f, "session value could not be (de)serialized: {e}"),
            Error::MissingLayer => f.write_str(
                "the Session extractor needs SessionLayer on the route (Router::layer(SessionLayer::builder(store).build()))",
            ),
            Error::NoSession => f.write_str("no stored session"),
            Error::NotLoaded => f.write_str(
                "the session was used before it was loaded: call Session::load first",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Serialization(e) => Some(e),
            Error::MissingLayer | Error::NoSession | Error::NotLoaded => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Serialization(e)
    }
}

impl Error {
    /// Builds the error response for any body type that can hold a string.
    pub(crate) fn response<B: From<&'static str>>(&self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(self.body()));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Error {
    fn into_response(self) -> axum_core::response::Response {
        self.response()
    }
}
