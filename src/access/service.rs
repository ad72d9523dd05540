//! [`Access`] as a Tower layer: sets the access of the request's session
//! before the handler loads it.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::Access;
use crate::session::Session;

impl<S> Layer<S> for Access {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            access: *self,
        }
    }
}

/// The service [`Access`] wraps around a route. It needs
/// [`SessionLayer`](crate::SessionLayer) outside it; without it, requests
/// pass through untouched (and the handler's `Session` extractor reports
/// the missing layer).
#[derive(Clone, Debug)]
pub struct AccessService<S> {
    inner: S,
    access: Access,
}

impl<S, B> Service<Request<B>> for AccessService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    // Nothing happens after the handler: the session layer commits.
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(session) = req.extensions().get::<Session>() {
            session.set_access(self.access);
        }
        self.inner.call(req)
    }
}
