//! The axum extractor for [`Session`].

use super::Session;
use crate::error::Error;

/// Extracting a `Session` needs [`SessionLayer`](crate::SessionLayer) on the
/// route and loads the session (one store round trip).
///
/// Rejections: [`Error::MissingLayer`] (500) without the layer,
/// [`Error::Store`] (503, body `session store unavailable`) when the store
/// fails or times out.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            tracing::error!("Session extracted on a route without SessionLayer");
            return Err(Error::MissingLayer);
        };
        session.load().await?;
        Ok(session)
    }
}
