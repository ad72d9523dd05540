//! [`ResponseFuture`]: the handler's response, then the session's commit.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

use crate::session::Session;
use crate::transport;

pin_project! {
    /// Response future of [`SessionService`](super::SessionService).
    ///
    /// Polls the inner service; if the handler used the session, it then
    /// saves the session and sets the token headers. A store failure at that
    /// point replaces the response with the store error's 503, because the
    /// handler's response would claim a change that was not saved; the 503
    /// still carries a token the client must hold (one a login issued).
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        session: Option<Session>,
        commit: Option<BoxFuture<'static, Response<B>>>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn new(inner: F, session: Session) -> Self {
        ResponseFuture {
            inner,
            session: Some(session),
            commit: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str> + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(commit) = this.commit {
            return commit.as_mut().poll(cx).map(Ok);
        }
        let response = ready!(this.inner.poll(cx))?;
        let Some(session) = this.session.take() else {
            return Poll::Ready(Ok(response));
        };
        if !session.was_loaded() {
            return Poll::Ready(Ok(response));
        }
        if let Some(update) = session.commit_now() {
            let mut response = response;
            transport::respond(response.headers_mut(), &session, update);
            return Poll::Ready(Ok(response));
        }
        let mut commit: BoxFuture<'static, Response<B>> = Box::pin(async move {
            let (mut response, update) = match session.commit().await {
                Ok(update) => (response, update),
                // The error replaces the response, but still carries the
                // token: after a login or a regeneration it is the only one
                // that works.
                Err(err) => (err.error.response(), err.update),
            };
            transport::respond(response.headers_mut(), &session, update);
            response
        });
        let poll = commit.as_mut().poll(cx).map(Ok);
        *this.commit = Some(commit);
        poll
    }
}
