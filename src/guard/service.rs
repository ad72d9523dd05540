//! [`RequireLogin`]: the service [`RequireLoginLayer`](super::RequireLoginLayer) wraps around yours.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use crate::error::Error;
use crate::session::Session;

/// Middleware that passes on only requests with a logged-in user.
#[derive(Clone, Debug)]
pub struct RequireLogin<S> {
    pub(super) inner: S,
    pub(super) redirect: Option<HeaderValue>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireLogin<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service polled ready is the one that must take the request;
        // the clone stays behind for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let redirect = self.redirect.clone();
        let session = req.extensions().get::<Session>().cloned();
        ResponseFuture::new(Box::pin(async move {
            let Some(session) = session else {
                tracing::error!("RequireLoginLayer used on a route without SessionLayer");
                return Ok(Error::MissingLayer.response());
            };
            // Loaded here, the session is not loaded again by the handler,
            // and the session layer saves it afterwards as usual.
            if let Err(err) = session.load().await {
                return Ok(err.response());
            }
            if session.user_id().is_none() {
                return Ok(super::refusal(redirect.as_ref()));
            }
            inner.call(req).await
        }))
    }
}
