//! Requiring a logged-in user: the [`LoggedIn`] extractor for one handler,
//! [`RequireLoginLayer`] for a whole router, so that handlers do not each
//! write `session.user()?.ok_or(...)`.
//!
//! ```
//! use axum::routing::get;
//! use axum::Router;
//! use serde::{Deserialize, Serialize};
//! use sessionkit::{LoggedIn, MemoryStore, RequireLoginLayer, SessionLayer};
//!
//! #[derive(Serialize, Deserialize)]
//! struct User {
//!     name: String,
//! }
//!
//! // One handler: `LoggedIn<User>` answers 401 for anonymous requests.
//! async fn me(LoggedIn(user): LoggedIn<User>) -> String {
//!     format!("logged in as {}", user.name)
//! }
//!
//! async fn settings() -> &'static str {
//!     "only logged-in users get here"
//! }
//!
//! async fn home() -> &'static str {
//!     "anyone gets here"
//! }
//!
//! // A whole router: every route of `account` needs a logged-in user, and
//! // an anonymous browser is sent to the login page instead of a 401.
//! let account = Router::new()
//!     .route("/settings", get(settings))
//!     .route_layer(RequireLoginLayer::new().redirect_to("/login"));
//!
//! let app: Router = Router::new()
//!     .route("/", get(home))
//!     .route("/me", get(me))
//!     .nest("/account", account)
//!     // The session layer goes outside: both guards read the session it
//!     // puts in the request.
//!     .layer(SessionLayer::builder(MemoryStore::new()).build());
//! ```
//!
//! "Logged in" means the request's session has a user bound by
//! [`Session::login`](crate::Session::login). Both guards load the session
//! (one store round trip, shared with any later `Session` extraction in the
//! same request). What they answer:
//!
//! | request | [`LoggedIn<U>`] | [`RequireLoginLayer`] |
//! |---|---|---|
//! | logged in | the user, as `U` | passed to the inner service |
//! | no session, or no user in it | 401, body `login required` ([`LoginRejection::NotLoggedIn`]) | 401, body `login required`; with [`redirect_to`](RequireLoginLayer::redirect_to), 303 See Other to that location |
//! | the store fails or times out | 503, body `session store unavailable` | the same |
//! | no [`SessionLayer`](crate::SessionLayer) around the route | 500 | 500 |
//! | the stored user does not deserialize as `U` | 500, body `session data error` | (not checked) |
//!
//! For one handler that redirects instead, take `Result<LoggedIn<U>,
//! LoginRejection>` and map the rejection with
//! [`LoginRejection::redirect_to`] (see [`LoggedIn`]); `Option<LoggedIn<U>>`
//! is `None` for anonymous requests.
//!
//! - `extract`: [`LoggedIn`] and [`LoginRejection`] (feature `axum`);
//! - `layer`, `service`, `future`: [`RequireLoginLayer`], [`RequireLogin`] and
//!   its [`ResponseFuture`].

#[cfg(feature = "axum")]
mod extract;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

#[cfg(feature = "axum")]
pub use extract::{LoggedIn, LoginRejection};
pub use future::ResponseFuture;
pub use layer::RequireLoginLayer;
pub use service::RequireLogin;

use http::{header, HeaderValue, Response, StatusCode};

/// The body of a refusal for want of a login.
const LOGIN_REQUIRED: &str = "login required";

/// The answer to a request without a logged-in user: 401, or a 303 to
/// `redirect` when one is given.
fn refusal<B: From<&'static str>>(redirect: Option<&HeaderValue>) -> Response<B> {
    let mut res = match redirect {
        Some(location) => {
            let mut res = Response::new(B::from(""));
            *res.status_mut() = StatusCode::SEE_OTHER;
            res.headers_mut().insert(header::LOCATION, location.clone());
            res
        }
        None => {
            let mut res = Response::new(B::from(LOGIN_REQUIRED));
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res
        }
    };
    // Whether this URL answers depends on the session cookie: no cache may
    // hand one visitor's answer to another.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A redirect location, checked once when the guard is configured.
fn location(to: &str) -> HeaderValue {
    HeaderValue::from_str(to)
        .unwrap_or_else(|_| panic!("redirect location {to:?} is not a valid header value"))
}
