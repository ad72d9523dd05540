//! Connection-session scenarios with a real WebSocket client against a real
//! server, written once and run against each store.
//!
//! Each scenario takes two stores: the two "nodes" of a deployment. For the
//! in-memory store they are clones of one store; for Redis, two independent
//! clients of one server, so that what one node does reaches the other only
//! through the store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use sessionkit::Regeneration;
use sessionkit::{LiveSession, Session, SessionLayer, SessionLayerBuilder, SessionStore};
use tokio_tungstenite::tungstenite;

use super::{routes, user};

/// A server on a free loopback port; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Router,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The test app: counter, login, logout, regenerate, a route that never touches the
/// session, and a WebSocket that closes with 1008 when its session ends.
pub fn app(layer: SessionLayer) -> Router {
    routes::basic(user(5, "grace"))
        .route(
            "/logout-everywhere",
            routing::post(|s: Session| async move {
                s.logout_everywhere().await?;
                Ok::<_, sessionkit::Error>("out")
            }),
        )
        .route(
            "/connections",
            routing::get(|s: Session| async move {
                let user = s.user_id().unwrap_or_default();
                let list = s.manager().connections(&user).await?;
                Ok::<_, sessionkit::Error>(list.len().to_string())
            }),
        )
        .route("/ws", routing::get(ws))
        .route("/plain", routing::get(|| async { "no session here" }))
        .layer(layer)
}

async fn ws(upgrade: WebSocketUpgrade, session: Session) -> Result<Response, sessionkit::Error> {
    let live = session.connect().await?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, live)))
}

/// Answers every message with the session's counter (incrementing `msgs`
/// through a delta write), reports token rotations, closes with 1008 when the
/// session ends.
async fn serve(mut socket: WebSocket, mut live: LiveSession) {
    loop {
        tokio::select! {
            reason = live.ended() => {
                let frame = CloseFrame { code: 1008, reason: format!("{reason:?}").into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            Some(token) = live.token_changed() => {
                let msg = format!("token:{}", token.as_str());
                if socket.send(Message::Text(msg.into())).await.is_err() { break; }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(_))) => {
                    let reply = match live.session().await {
                        Ok(session) => {
                            let msgs: u64 = session.get("msgs").ok().flatten().unwrap_or(0);
                            let _ = session.insert("msgs", msgs + 1);
                            match session.save().await {
                                Ok(()) => {
                                    let n: u64 = session.get("n").ok().flatten().unwrap_or(0);
                                    format!("n:{n} msgs:{}", msgs + 1)
                                }
                                Err(_) => "error".to_owned(),
                            }
                        }
                        Err(_) => "gone".to_owned(),
                    };
                    if socket.send(Message::Text(reply.into())).await.is_err() { break; }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    live.close().await;
}

pub async fn serve_on(
    store: impl SessionStore,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> Server {
    serve_layer(configure(SessionLayer::builder(store)).build()).await
}

/// [`app`] on `layer`, served on a free loopback port.
pub async fn serve_layer(layer: SessionLayer) -> Server {
    let app = app(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    Server { addr, app, task }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open_ws(server: &Server, token: &str) -> Socket {
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws",
        server.addr
    ))
    .unwrap();
    req.headers_mut()
        .insert("cookie", format!("sessionkit={token}").parse().unwrap());
    let (socket, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    socket
}

/// Sends a text and returns the next text reply (within 2 s).
pub async fn ask(socket: &mut Socket, text: &str) -> String {
    socket.send(tungstenite::Message::text(text)).await.unwrap();
    next_text(socket).await
}

pub async fn next_text(socket: &mut Socket) -> String {
    let deadline = Duration::from_secs(2);
    loop {
        match tokio::time::timeout(deadline, socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Waits (at most `within`) for the server to close the socket, returning
/// the close code.
pub async fn closed_with(socket: &mut Socket, within: Duration) -> Option<u16> {
    close_frame(socket, within).await.map(|(code, _)| code)
}

/// Waits (at most `within`) for the server to close the socket, returning
/// the close code and reason.
pub async fn close_frame(socket: &mut Socket, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return None,
            Err(_) => panic!("the socket was not closed within {within:?}"),
        }
    }
}

pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Self {
        Http {
            client: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        server: &Server,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (String, Option<String>) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), server.url(path));
        if let Some(t) = token {
            req = req.header("cookie", format!("sessionkit={t}"));
        }
        let res = req.send().await.unwrap();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
            .find(|c| c.name() == "sessionkit")
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty());
        (res.text().await.unwrap(), cookie)
    }
}

fn fast(b: SessionLayerBuilder) -> SessionLayerBuilder {
    b.secure(false)
        .connection_heartbeat(Duration::from_millis(100))
}

/// A heartbeat far longer than the test: a socket that closes in time was
/// told by the store's session-ended feed, not found out by polling.
fn feed_only(b: SessionLayerBuilder) -> SessionLayerBuilder {
    b.secure(false)
        .connection_heartbeat(Duration::from_secs(60))
}

/// Logging out from another node closes the socket with 1008 within a second.
pub async fn logout_elsewhere_closes_the_socket(
    node_a: impl SessionStore,
    node_b: impl SessionStore,
) {
    let a = serve_on(node_a, feed_only).await;
    let b = serve_on(node_b, feed_only).await;
    let http = Http::new();
    let token = http.call(&a, "POST", "/login", None).await.1.unwrap();
    http.call(&a, "POST", "/count", Some(&token)).await;
    let mut socket = open_ws(&a, &token).await;
    assert_eq!(ask(&mut socket, "hi").await, "n:1 msgs:1");
    assert_eq!(
        http.call(&b, "GET", "/connections", Some(&token)).await.0,
        "1"
    );

    let started = Instant::now();
    assert_eq!(
        http.call(&b, "POST", "/logout", Some(&token)).await.0,
        "out"
    );
    let code = closed_with(&mut socket, Duration::from_secs(1)).await;
    assert_eq!(code, Some(1008));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Revoking all of a user's sessions from another node closes the sockets of
/// every one of them.
pub async fn revoke_everywhere_closes_every_socket(
    node_a: impl SessionStore,
    node_b: impl SessionStore,
) {
    let a = serve_on(node_a, feed_only).await;
    let b = serve_on(node_b, feed_only).await;
    let http = Http::new();
    let phone = http.call(&a, "POST", "/login", None).await.1.unwrap();
    let laptop = http.call(&a, "POST", "/login", None).await.1.unwrap();
    let mut s1 = open_ws(&a, &phone).await;
    let mut s2 = open_ws(&a, &laptop).await;
    assert_eq!(ask(&mut s1, "hi").await, "n:0 msgs:1");
    assert_eq!(ask(&mut s2, "hi").await, "n:0 msgs:1");
    let desktop = http.call(&b, "POST", "/login", None).await.1.unwrap();
    assert_eq!(
        http.call(&b, "GET", "/connections", Some(&desktop)).await.0,
        "2"
    );
    http.call(&b, "POST", "/logout-everywhere", Some(&desktop))
        .await;
    assert_eq!(
        closed_with(&mut s1, Duration::from_secs(1)).await,
        Some(1008)
    );
    assert_eq!(
        closed_with(&mut s2, Duration::from_secs(1)).await,
        Some(1008)
    );
}

/// An open, active socket keeps its session alive past the idle timeout,
/// and the registry is empty once the sockets close.
pub async fn an_open_socket_keeps_the_session_alive(store: impl SessionStore + Clone) {
    let server = serve_on(store, |b| {
        fast(b)
            .idle_timeout(Duration::from_millis(800))
            .refresh_interval(Duration::from_millis(50))
    })
    .await;
    let http = Http::new();
    let token = http.call(&server, "POST", "/login", None).await.1.unwrap();
    http.call(&server, "POST", "/count", Some(&token)).await;
    let mut socket = open_ws(&server, &token).await;
    // Three idle timeouts long, with no HTTP request at all.
    for i in 1..=6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(ask(&mut socket, "ping").await, format!("n:1 msgs:{i}"));
    }
    assert_eq!(
        http.call(&server, "GET", "/read", Some(&token)).await.0,
        "1"
    );
    assert_eq!(
        http.call(&server, "GET", "/connections", Some(&token))
            .await
            .0,
        "1"
    );
    socket.close(None).await.unwrap();
    // The server side closes its LiveSession as soon as the socket ends.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = http
            .call(&server, "GET", "/connections", Some(&token))
            .await
            .0;
        if n == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "connection still registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With the socket gone, the session idles out again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        http.call(&server, "GET", "/read", Some(&token)).await.0,
        "0"
    );
}

/// A rotation by an HTTP request reaches the open connection, which keeps
/// working and learns the new token.
pub async fn rotation_while_connected(store: impl SessionStore + Clone) {
    let server = serve_on(store, |b| {
        fast(b).regeneration(
            Regeneration::every(Duration::from_millis(600)).grace(Duration::from_millis(300)),
        )
    })
    .await;
    let http = Http::new();
    let t1 = http.call(&server, "POST", "/login", None).await.1.unwrap();
    let mut socket = open_ws(&server, &t1).await;
    assert_eq!(ask(&mut socket, "hi").await, "n:0 msgs:1");
    tokio::time::sleep(Duration::from_millis(650)).await;
    let (_, t2) = http.call(&server, "POST", "/count", Some(&t1)).await;
    let t2 = t2.expect("rotated");
    assert_eq!(next_text(&mut socket).await, format!("token:{t2}"));
    assert_eq!(ask(&mut socket, "again").await, "n:1 msgs:2");
    // Past the old token's grace, the connection still works.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(http.call(&server, "GET", "/read", Some(&t1)).await.0, "0");
    assert_eq!(ask(&mut socket, "still").await, "n:1 msgs:3");
}

/// A rotation made by a request on another node reaches the open
/// connection through the store, at its next heartbeat.
pub async fn rotation_on_another_node_reaches_the_connection(
    node_a: impl SessionStore,
    node_b: impl SessionStore,
) {
    let policy =
        || Regeneration::every(Duration::from_millis(300)).grace(Duration::from_millis(250));
    let a = serve_on(node_a, |b| fast(b).regeneration(policy())).await;
    let b = serve_on(node_b, |b| fast(b).regeneration(policy())).await;
    let http = Http::new();
    let t1 = http.call(&a, "POST", "/login", None).await.1.unwrap();
    let mut socket = open_ws(&a, &t1).await;
    assert_eq!(ask(&mut socket, "hi").await, "n:0 msgs:1");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let t2 = http.call(&b, "POST", "/count", Some(&t1)).await.1;
    let t2 = t2.expect("rotated on node B");
    let told = tokio::time::timeout(Duration::from_secs(1), next_text(&mut socket)).await;
    assert_eq!(told.ok(), Some(format!("token:{t2}")));
    assert_eq!(ask(&mut socket, "again").await, "n:1 msgs:2");
}

/// A connection that only looks after the old token's grace window ended
/// (a heartbeat longer than OJS, or a store down that long) cannot learn
/// the replacement: it closes, saying why, instead of holding a dead token.
pub async fn a_connection_that_cannot_follow_a_rotation_closes(
    node_a: impl SessionStore,
    node_b: impl SessionStore,
) {
    let policy = || {
        Regeneration::every(Duration::from_millis(300))
            .grace(Duration::from_millis(200))
            .resend_for(Duration::from_millis(100))
    };
    let slow = |b: SessionLayerBuilder| {
        b.secure(false)
            .connection_heartbeat(Duration::from_millis(1200))
            .regeneration(policy())
    };
    let a = serve_on(node_a, slow).await;
    let b = serve_on(node_b, slow).await;
    let http = Http::new();
    let t1 = http.call(&a, "POST", "/login", None).await.1.unwrap();
    let mut socket = open_ws(&a, &t1).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let t2 = http.call(&b, "POST", "/count", Some(&t1)).await.1;
    assert!(t2.is_some(), "rotated on node B");
    let closed = close_frame(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(closed, Some((1008, "TokenLost".to_owned())));
}

/// A connection cannot be opened without a session, and the absolute
/// timeout still ends a session held by a socket.
pub async fn absolute_timeout_still_applies(store: impl SessionStore + Clone) {
    let server = serve_on(store, |b| {
        fast(b).absolute_timeout(Duration::from_millis(900))
    })
    .await;
    let http = Http::new();
    let req = format!("ws://{}/ws", server.addr);
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        other => panic!("expected a 401, got {other}"),
    }
    let token = http.call(&server, "POST", "/login", None).await.1.unwrap();
    let mut socket = open_ws(&server, &token).await;
    assert_eq!(
        closed_with(&mut socket, Duration::from_secs(2)).await,
        Some(1008)
    );
}

/// A graceful shutdown releases every connection of the server: each socket
/// closes with the `Shutdown` reason, the registry empties, the sessions
/// live on, and a socket opened afterwards closes at once.
pub async fn shutdown_releases_every_connection(store: impl SessionStore) {
    let layer = feed_only(SessionLayer::builder(store)).build();
    let manager = layer.manager();
    let server = serve_layer(layer).await;
    let http = Http::new();
    let phone = http.call(&server, "POST", "/login", None).await.1.unwrap();
    let laptop = http.call(&server, "POST", "/login", None).await.1.unwrap();
    let mut s1 = open_ws(&server, &phone).await;
    let mut s2 = open_ws(&server, &laptop).await;
    assert_eq!(ask(&mut s1, "hi").await, "n:0 msgs:1");
    assert_eq!(ask(&mut s2, "hi").await, "n:0 msgs:1");
    assert_eq!(manager.connections("5").await.unwrap().len(), 2);
    let released = manager.shutdown_connections(Duration::from_secs(3)).await;
    assert_eq!(released, 2);
    for socket in [&mut s1, &mut s2] {
        assert_eq!(
            close_frame(socket, Duration::from_secs(1)).await,
            Some((1008, "Shutdown".to_owned()))
        );
    }
    assert!(
        manager.connections("5").await.unwrap().is_empty(),
        "shutdown_connections returns once the registry is empty"
    );
    assert_eq!(
        http.call(&server, "GET", "/read", Some(&phone)).await.0,
        "0",
        "the session outlives the connection"
    );
    let mut late = open_ws(&server, &phone).await;
    assert_eq!(
        close_frame(&mut late, Duration::from_secs(1)).await,
        Some((1008, "Shutdown".to_owned()))
    );
}
