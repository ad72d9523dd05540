//! Sessions driven over a WebSocket's own messages, on every store, with a
//! real WebSocket client: a socket that opens anonymous, logs in and out
//! over its messages and is told each new token in a message, and that only
//! closes when its session ends elsewhere.

mod support;

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::{routing, Router};
use futures_util::{SinkExt, StreamExt};
use sessionkit::{
    LiveSession, MemoryStore, Session, SessionLayer, SessionManager, SessionStore, TokenUpdate,
};
use support::stores::{on_every_store, Backend, TestStore};
use support::user;
use tokio_tungstenite::tungstenite;

on_every_store! {
    an_anonymous_socket_logs_in_and_its_token_works_over_http,
    a_socket_that_logs_out_stays_open_and_anonymous,
    a_socket_logged_in_over_its_messages_closes_when_revoked_elsewhere,
    a_login_over_a_socket_bound_to_a_session_does_not_close_it,
    a_first_write_over_an_anonymous_socket_creates_its_session,
    a_regeneration_over_a_socket_is_told_once,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    addr: std::net::SocketAddr,
    manager: SessionManager,
    _store: Option<TestStore>,
}

async fn ws(upgrade: WebSocketUpgrade, session: Session) -> Result<Response, sessionkit::Error> {
    let live = session.connect_anonymous().await?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, live)))
}

/// Commands: `login <id>`, `logout`, `regenerate`, `set <key> <value>`,
/// `get <key>`, `whoami`. Each answer is `token:<new>` / `token:-` when the
/// token changed, then the result.
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
                Some(Ok(Message::Text(text))) => {
                    let (result, update) = match live.session().await {
                        Ok(session) => {
                            let result = run(&session, &text).await;
                            match live.commit(&session).await {
                                Ok(update) => (result, update),
                                Err(err) => (Err(err.error), err.update),
                            }
                        }
                        Err(err) => (Err(err), TokenUpdate::Keep),
                    };
                    let token = match update {
                        TokenUpdate::Replace(t) => Some(format!("token:{}", t.as_str())),
                        TokenUpdate::Drop => Some("token:-".to_owned()),
                        _ => None,
                    };
                    let reply = result.unwrap_or_else(|e| format!("error: {e}"));
                    for msg in token.into_iter().chain([reply]) {
                        if socket.send(Message::Text(msg.into())).await.is_err() { return; }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    live.close().await;
}

async fn run(session: &Session, text: &str) -> Result<String, sessionkit::Error> {
    let mut words = text.splitn(3, ' ');
    Ok(match (words.next(), words.next(), words.next()) {
        (Some("login"), Some(id), _) => {
            session
                .login(&user(id.parse().unwrap_or(0), "socket"))
                .await?;
            "ok".into()
        }
        (Some("logout"), ..) => {
            session.logout().await?;
            "ok".into()
        }
        (Some("regenerate"), ..) => {
            session.regenerate().await?;
            "ok".into()
        }
        (Some("set"), Some(key), Some(value)) => {
            session.insert(key, value)?;
            "ok".into()
        }
        (Some("get"), Some(key), _) => session
            .get::<String>(key)?
            .unwrap_or_else(|| "(nil)".into()),
        (Some("whoami"), ..) => session.user_id().unwrap_or_else(|| "(anonymous)".into()),
        _ => "unknown".into(),
    })
}

async fn server(backend: Backend) -> Server {
    let clock = sessionkit::ManualClock::new();
    let store = TestStore::new(backend, &clock).await;
    let mut server = serve_store(store.store.clone()).await;
    server._store = Some(store);
    server
}

async fn serve_store(store: impl SessionStore) -> Server {
    let layer = SessionLayer::builder(store)
        .secure(false)
        // Far longer than a test: a socket that closes in time was told by
        // the store's feed.
        .connection_heartbeat(Duration::from_secs(3600))
        .build();
    let manager = layer.manager();
    let app = Router::new()
        .route("/ws", routing::get(ws))
        .route(
            "/whoami",
            routing::get(|s: Session| async move {
                Ok::<_, sessionkit::Error>(s.user_id().unwrap_or_else(|| "(anonymous)".into()))
            }),
        )
        .route(
            "/write",
            routing::post(|s: Session| async move {
                s.insert("cart", "3 items")?;
                Ok::<_, sessionkit::Error>("ok")
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        addr,
        manager,
        _store: None,
    }
}

impl Server {
    async fn socket(&self, token: Option<&str>) -> Socket {
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws",
            self.addr
        ))
        .unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("cookie", format!("sessionkit={t}").parse().unwrap());
        }
        let (socket, res) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(res.status(), 101);
        socket
    }

    /// `method path` over HTTP with `token`: the body and the new token.
    async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (String, Option<String>) {
        let mut req = reqwest::Client::new().request(
            method.parse().unwrap(),
            format!("http://{}{path}", self.addr),
        );
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

async fn next(socket: &mut Socket) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                panic!("the socket closed: {frame:?}")
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn say(socket: &mut Socket, text: &str) {
    socket.send(tungstenite::Message::text(text)).await.unwrap();
}

/// Sends `text`; returns the token message it caused (if any) and the result.
async fn ask(socket: &mut Socket, text: &str) -> (Option<String>, String) {
    say(socket, text).await;
    let first = next(socket).await;
    match first.strip_prefix("token:") {
        Some(token) => (Some(token.to_owned()), next(socket).await),
        None => (None, first),
    }
}

async fn closed(socket: &mut Socket) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Close(Some(f))))) => {
                return (u16::from(f.code), f.reason.to_string())
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame within 3 s, got {other:?}"),
        }
    }
}

async fn an_anonymous_socket_logs_in_and_its_token_works_over_http(backend: Backend) {
    let s = server(backend).await;
    let mut socket = s.socket(None).await;
    assert_eq!(
        ask(&mut socket, "whoami").await,
        (None, "(anonymous)".into())
    );
    let (token, ok) = ask(&mut socket, "login 7").await;
    assert_eq!(ok, "ok");
    let token = token.expect("a login over the socket must tell the new token");
    assert_eq!(s.http("GET", "/whoami", Some(&token)).await.0, "7");
    assert_eq!(ask(&mut socket, "whoami").await, (None, "7".into()));
    assert_eq!(s.manager.connections("7").await.unwrap().len(), 1);
}

async fn a_socket_that_logs_out_stays_open_and_anonymous(backend: Backend) {
    let s = server(backend).await;
    let mut socket = s.socket(None).await;
    let token = ask(&mut socket, "login 8").await.0.expect("a token");
    assert_eq!(
        ask(&mut socket, "logout").await,
        (Some("-".into()), "ok".into())
    );
    assert_eq!(
        ask(&mut socket, "whoami").await,
        (None, "(anonymous)".into())
    );
    assert_eq!(
        s.http("GET", "/whoami", Some(&token)).await.0,
        "(anonymous)"
    );
    assert!(s.manager.connections("8").await.unwrap().is_empty());
    // And it can log in again.
    let again = ask(&mut socket, "login 8").await.0.expect("a token");
    assert_ne!(again, token);
}

async fn a_socket_logged_in_over_its_messages_closes_when_revoked_elsewhere(backend: Backend) {
    let s = server(backend).await;
    let mut socket = s.socket(None).await;
    ask(&mut socket, "login 9").await.0.expect("a token");
    assert_eq!(s.manager.revoke_all("9").await.unwrap(), 1);
    assert_eq!(closed(&mut socket).await, (1008, "Revoked".into()));
}

async fn a_login_over_a_socket_bound_to_a_session_does_not_close_it(backend: Backend) {
    let s = server(backend).await;
    let (_, anonymous) = s.http("POST", "/write", None).await;
    let anonymous = anonymous.expect("a session");
    let mut socket = s.socket(Some(&anonymous)).await;
    assert_eq!(ask(&mut socket, "get cart").await, (None, "3 items".into()));
    let (token, ok) = ask(&mut socket, "login 10").await;
    assert_eq!(ok, "ok");
    let token = token.expect("a new token");
    // Still open, on the new session, with the data carried over.
    assert_eq!(ask(&mut socket, "get cart").await, (None, "3 items".into()));
    assert_eq!(ask(&mut socket, "whoami").await.1, "10");
    assert_eq!(
        s.http("GET", "/whoami", Some(&anonymous)).await.0,
        "(anonymous)"
    );
    assert_eq!(s.http("GET", "/whoami", Some(&token)).await.0, "10");
    // And it follows its new session's end.
    s.manager.revoke_all("10").await.unwrap();
    assert_eq!(closed(&mut socket).await, (1008, "Revoked".into()));
}

async fn a_first_write_over_an_anonymous_socket_creates_its_session(backend: Backend) {
    let s = server(backend).await;
    let mut socket = s.socket(None).await;
    let (token, ok) = ask(&mut socket, "set colour green").await;
    assert_eq!(ok, "ok");
    let token = token.expect("a new session's token");
    assert_eq!(ask(&mut socket, "get colour").await, (None, "green".into()));
    // The token names the stored session: a new socket with it reads it.
    let mut reopened = s.socket(Some(&token)).await;
    assert_eq!(
        ask(&mut reopened, "get colour").await,
        (None, "green".into())
    );
}

async fn a_regeneration_over_a_socket_is_told_once(backend: Backend) {
    let s = server(backend).await;
    let mut socket = s.socket(None).await;
    let first = ask(&mut socket, "login 11").await.0.expect("a token");
    let (second, ok) = ask(&mut socket, "regenerate").await;
    assert_eq!(ok, "ok");
    let second = second.expect("a regeneration must tell the new token");
    assert_ne!(second, first);
    // Nothing else was queued: the next answer is the next command's.
    assert_eq!(ask(&mut socket, "whoami").await, (None, "11".into()));
    assert_eq!(s.http("GET", "/whoami", Some(&second)).await.0, "11");
    assert_eq!(
        s.http("GET", "/whoami", Some(&first)).await.0,
        "(anonymous)"
    );
}

#[tokio::test]
async fn a_login_or_logout_over_a_socket_that_fails_leaves_it_listening_to_its_session() {
    let store = support::Counting::new(MemoryStore::new());
    let s = serve_store(store.clone()).await;
    let mut socket = s.socket(None).await;
    ask(&mut socket, "login 12").await.0.expect("a token");

    // Both would end the socket's session; both fail, so it lives on.
    store.refuse_auth(true);
    for command in ["login 13", "logout"] {
        let (token, answer) = ask(&mut socket, command).await;
        assert_eq!(token, None, "{command}: no new token");
        assert!(answer.starts_with("error"), "{command}: {answer}");
    }
    store.refuse_auth(false);
    assert_eq!(ask(&mut socket, "whoami").await, (None, "12".into()));

    // And its end still reaches the socket at once (the heartbeat is an
    // hour away).
    assert_eq!(s.manager.revoke_all("12").await.unwrap(), 1);
    assert_eq!(closed(&mut socket).await, (1008, "Revoked".into()));
}
