//! [`LoggedIn`]: the axum extractor for "a logged-in user of type `U`".

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::session::Session;

/// The logged-in user of the request's session, as `U` (the type given to
/// [`Session::login`]). Needs [`SessionLayer`](crate::SessionLayer) on the
/// route; loads the session.
///
/// An anonymous request is rejected with [`LoginRejection::NotLoggedIn`], a
/// 401 with the body `login required`; a store failure with the store
/// error's 503. Extract [`Session`] as well when the handler needs the
/// session itself: the load is not repeated.
///
/// ```
/// use sessionkit::LoggedIn;
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct User { name: String }
///
/// async fn me(LoggedIn(user): LoggedIn<User>) -> String {
///     format!("logged in as {}", user.name)
/// }
/// ```
///
/// To send an anonymous browser to the login page instead, take the
/// rejection and map it:
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use sessionkit::{LoggedIn, LoginRejection};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct User { name: String }
///
/// async fn account(user: Result<LoggedIn<User>, LoginRejection>) -> Response {
///     let LoggedIn(user) = match user {
///         Ok(user) => user,
///         // 303 to /login for anonymous requests; store errors stay 503.
///         Err(rejection) => return rejection.redirect_to("/login"),
///     };
///     format!("hello {}", user.name).into_response()
/// }
/// ```
///
/// `Option<LoggedIn<U>>` is `None` for an anonymous request (and still
/// rejects on store errors), for pages that show more to logged-in users.
#[derive(Clone, Debug)]
pub struct LoggedIn<U>(pub U);

/// Why [`LoggedIn`] rejected a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginRejection {
    /// No session, or a session without a logged-in user: 401, body
    /// `login required`.
    NotLoggedIn,
    /// The session could not be loaded (store failure: 503), the route has
    /// no `SessionLayer` (500), or the stored user is not a `U` (500).
    Session(Error),
}

impl LoginRejection {
    /// The status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            LoginRejection::NotLoggedIn => StatusCode::UNAUTHORIZED,
            LoginRejection::Session(err) => err.status(),
        }
    }

    /// A redirect to `location` (303 See Other) for a request that is not
    /// logged in; any other rejection answers as usual, so a store outage
    /// does not send users to the login page.
    ///
    /// # Panics
    ///
    /// If `location` is not a valid header value.
    pub fn redirect_to(self, location: &str) -> Response {
        match self {
            LoginRejection::NotLoggedIn => super::refusal(Some(&super::location(location))),
            other => other.into_response(),
        }
    }
}

impl std::fmt::Display for LoginRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginRejection::NotLoggedIn => f.write_str("no logged-in user"),
            LoginRejection::Session(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for LoginRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoginRejection::NotLoggedIn => None,
            LoginRejection::Session(err) => Some(err),
        }
    }
}

impl From<Error> for LoginRejection {
    fn from(err: Error) -> Self {
        LoginRejection::Session(err)
    }
}

impl IntoResponse for LoginRejection {
    fn into_response(self) -> Response {
        match self {
            LoginRejection::NotLoggedIn => super::refusal(None),
            LoginRejection::Session(err) => err.into_response(),
        }
    }
}

/// The user of a loaded session: `None` when nobody is logged in.
async fn user<U: DeserializeOwned, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Option<U>, Error> {
    let session = Session::from_request_parts(parts, state).await?;
    session.user::<U>()
}

impl<S, U> FromRequestParts<S> for LoggedIn<U>
where
    S: Send + Sync,
    U: DeserializeOwned + Send,
{
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match user(parts, state).await? {
            Some(user) => Ok(LoggedIn(user)),
            None => Err(LoginRejection::NotLoggedIn),
        }
    }
}

impl<S, U> OptionalFromRequestParts<S> for LoggedIn<U>
where
    S: Send + Sync,
    U: DeserializeOwned + Send,
{
    type Rejection = LoginRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(user(parts, state).await?.map(LoggedIn))
    }
}
