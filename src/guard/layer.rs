//! [`RequireLoginLayer`]: a logged-in user for every route it wraps.

use http::HeaderValue;
use tower_layer::Layer;

use super::service::RequireLogin;

/// Lets through only requests whose session has a logged-in user; answers
/// the others with 401 (body `login required`) or, configured with
/// [`redirect_to`](Self::redirect_to), a 303 to the login page. A store
/// failure answers with the store error's 503. See the [module
/// docs](super) for an example.
///
/// It needs [`SessionLayer`](crate::SessionLayer) outside it (added after
/// it, in axum's `Router::layer` order); without it every request gets a
/// 500. With axum, add it with `Router::route_layer` so that unknown paths
/// still answer 404, or on a nested router.
#[derive(Clone, Debug, Default)]
pub struct RequireLoginLayer {
    redirect: Option<HeaderValue>,
}

impl RequireLoginLayer {
    /// Answers 401 to requests without a logged-in user.
    pub fn new() -> Self {
        RequireLoginLayer::default()
    }

    /// Answers requests without a logged-in user with `303 See Other` and
    /// `Location: location` instead of a 401: for pages a browser visits.
    ///
    /// # Panics
    ///
    /// If `location` is not a valid header value.
    pub fn redirect_to(mut self, location: &str) -> Self {
        self.redirect = Some(super::location(location));
        self
    }
}

impl<S> Layer<S> for RequireLoginLayer {
    type Service = RequireLogin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLogin {
            inner,
            redirect: self.redirect.clone(),
        }
    }
}
