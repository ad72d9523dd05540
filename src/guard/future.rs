//! [`ResponseFuture`]: the session's load, then the inner service or a refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;

/// Response future of [`RequireLogin`](super::RequireLogin).
///
/// Loads the request's session; then either calls the inner service or
/// answers for it (401, a redirect, or the store error's 503).
pub struct ResponseFuture<B, E> {
    inner: BoxFuture<'static, Result<Response<B>, E>>,
}

impl<B, E> ResponseFuture<B, E> {
    pub(super) fn new(inner: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        ResponseFuture { inner }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
