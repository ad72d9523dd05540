//! Helpers shared by the integration tests: requests through the real
//! layer with `tower::ServiceExt::oneshot`, and store wrappers that count
//! or fail calls.
#![allow(dead_code)]

pub mod browser;
pub mod connections;
pub mod faults;
pub mod postgres;
pub mod redis;
pub mod routes;
pub mod stores;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::Router;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sessionkit::store::*;
use sessionkit::{SessionId, SessionUser};
use tokio::sync::broadcast;
use tower::ServiceExt;

/// The session cookie's name with the default settings (`Secure`, `Path=/`).
pub const COOKIE: &str = "__Host-sessionkit";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub role: String,
}

impl SessionUser for User {
    fn id(&self) -> String {
        self.id.to_string()
    }
}

pub fn user(id: u64, name: &str) -> User {
    User {
        id,
        name: name.into(),
        role: "member".into(),
    }
}

/// A response, its headers and its body read to a string.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The value of the session cookie set by the response, if any.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookie(COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The parsed `Set-Cookie` of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<cookie::Cookie<'static>> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
            .find(|c| c.name() == name)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A well-formed token no store ever issued: `fill` repeated, ending in `A`
/// so its secret is canonical base64 (`fill` must be URL-safe base64).
#[allow(dead_code)]
pub fn made_up_token(fill: char) -> String {
    let mut token: String = std::iter::repeat_n(fill, sessionkit::token::TOKEN_LEN - 1).collect();
    token.push('A');
    token
}

pub fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    request("GET", uri, token)
}

pub fn post(uri: &str, token: Option<&str>) -> Request<Body> {
    request("POST", uri, token)
}

pub fn request(method: &str, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("cookie", format!("{COOKIE}={t}"));
    }
    b.body(Body::empty()).unwrap()
}

/// Counts the calls a store receives, by method; can be told to fail
/// logins and logouts.
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    pub loads: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
    /// While set, `login` and `destroy` fail with a backend error.
    pub refuse_auth: Arc<AtomicBool>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            inner,
            loads: Arc::default(),
            writes: Arc::default(),
            refuse_auth: Arc::default(),
        }
    }
    #[allow(dead_code)]
    pub fn refuse_auth(&self, refuse: bool) {
        self.refuse_auth.store(refuse, Ordering::SeqCst);
    }
    fn auth(&self) -> Result<()> {
        match self.refuse_auth.load(Ordering::SeqCst) {
            true => Err(StoreError::backend("refused by the test")),
            false => Ok(()),
        }
    }
    pub fn calls(&self) -> (usize, usize) {
        (
            self.loads.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Counting<S> {
    async fn load(&self, req: &Load) -> Result<Lookup> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(req).await
    }
    async fn create(&self, new: &NewSession) -> Result<()> {
        self.write();
        self.inner.create(new).await
    }
    async fn save(&self, req: &Save) -> Result<bool> {
        self.write();
        self.inner.save(req).await
    }
    async fn rotate(&self, r: &Rotation) -> Result<Rotated> {
        self.write();
        self.inner.rotate(r).await
    }
    async fn regenerate(&self, req: &Regenerate) -> Result<bool> {
        self.write();
        self.inner.regenerate(req).await
    }
    async fn login(&self, login: &Login) -> Result<LoginOutcome> {
        self.write();
        self.auth()?;
        self.inner.login(login).await
    }
    async fn destroy(&self, req: &Destroy) -> Result<bool> {
        self.write();
        self.auth()?;
        self.inner.destroy(req).await
    }
    async fn list_sessions(&self, req: &ListSessions) -> Result<Vec<SessionInfo>> {
        self.inner.list_sessions(req).await
    }
    async fn revoke(&self, req: &RevokeSessions) -> Result<Vec<SessionId>> {
        self.write();
        self.inner.revoke(req).await
    }
    async fn sync_user(&self, req: &SyncUser) -> Result<usize> {
        self.write();
        self.inner.sync_user(req).await
    }
    async fn connect(&self, req: &Connect) -> Result<bool> {
        self.inner.connect(req).await
    }
    async fn fetch(&self, f: &Fetch) -> Result<Option<Fetched>> {
        self.inner.fetch(f).await
    }
    async fn disconnect(&self, req: &Disconnect) -> Result<()> {
        self.inner.disconnect(req).await
    }
    async fn list_connections(&self, req: &ListConnections) -> Result<Vec<Connection>> {
        self.inner.list_connections(req).await
    }
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.inner.subscribe()
    }
}

/// A store that is down (every call fails) or hung (every call waits
/// forever).
#[derive(Clone, Copy)]
pub enum Broken {
    Down,
    Hung,
}

impl Broken {
    async fn fail<T>(self) -> Result<T> {
        if let Broken::Hung = self {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Err(StoreError::backend("connection refused"))
    }
}

#[async_trait]
impl SessionStore for Broken {
    async fn load(&self, _: &Load) -> Result<Lookup> {
        self.fail().await
    }
    async fn create(&self, _: &NewSession) -> Result<()> {
        self.fail().await
    }
    async fn save(&self, _: &Save) -> Result<bool> {
        self.fail().await
    }
    async fn rotate(&self, _: &Rotation) -> Result<Rotated> {
        self.fail().await
    }
    async fn regenerate(&self, _: &Regenerate) -> Result<bool> {
        self.fail().await
    }
    async fn login(&self, _: &Login) -> Result<LoginOutcome> {
        self.fail().await
    }
    async fn destroy(&self, _: &Destroy) -> Result<bool> {
        self.fail().await
    }
    async fn list_sessions(&self, _: &ListSessions) -> Result<Vec<SessionInfo>> {
        self.fail().await
    }
    async fn revoke(&self, _: &RevokeSessions) -> Result<Vec<SessionId>> {
        self.fail().await
    }
    async fn sync_user(&self, _: &SyncUser) -> Result<usize> {
        self.fail().await
    }
    async fn connect(&self, _: &Connect) -> Result<bool> {
        self.fail().await
    }
    async fn fetch(&self, _: &Fetch) -> Result<Option<Fetched>> {
        self.fail().await
    }
    async fn disconnect(&self, _: &Disconnect) -> Result<()> {
        self.fail().await
    }
    async fn list_connections(&self, _: &ListConnections) -> Result<Vec<Connection>> {
        self.fail().await
    }
    fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        broadcast::channel(1).1
    }
}
