//! A small app showing everything sessionkit does, on one page.
//!
//! ```text
//! cargo run --example demo                       # in-memory store, 127.0.0.1:3000
//! PORT=3001 cargo run --example demo             # another port
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example demo
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run --example demo
//! DATABASE_URL=sqlite://demo-sessions.db cargo run --example demo
//! SESSION_SFR_SECS=30 SESSION_OJS_SECS=10 SESSION_CIJS_SECS=5 cargo run --example demo
//! ```
//!
//! Two demo processes on different ports sharing one Redis (or one
//! PostgreSQL database) share sessions: log in on one, revoke from the
//! other, and the first one's socket closes.
//!
//! The page (`demo.html`) is static: it never touches the session, so it
//! loads even while the store is down, and its script reads everything from
//! the JSON routes below. Routes: `GET /`, `POST /login` (JSON field
//! `user`), `POST /logout`, `GET /api/me`, `POST /api/counter`,
//! `GET /api/sessions`, `DELETE /api/sessions/{id}`,
//! `POST /api/logout-everywhere`, `POST /api/logout-others`,
//! `GET /api/connections`, `GET /ws`, `GET /metrics` (Prometheus text
//! format).
//!
//! `GET /ws` opens with or without a session ([`Session::connect_anonymous`]):
//! the page opens it once logged in, and a client that holds its token
//! itself (a native app, `websocat`) may connect first and drive its session
//! over the socket with JSON commands: `{"op":"login","user":NAME}` (named
//! as for `POST /login`), `{"op":"logout"}` and `{"op":"counter"}` (+1).
//! Each runs on [`LiveSession::session`] and ends with
//! [`LiveSession::commit`]; a token change is sent first, as
//! `{"type":"token","token":T}` (use it as the `sessionkit` cookie or the
//! `x-session-id` header over HTTP) or `{"type":"token","token":null}`
//! after a logout, then the answer, `{"type":"state",...}` or
//! `{"type":"error","message":...}`. Any other message is answered with the
//! state. The socket's own login or logout never closes it; the session
//! ending elsewhere (revoked, logged out, expired) closes it with 1008 and
//! the reason.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sessionkit::clock::{Clock, SystemClock};
use sessionkit::store::{EndReason, SessionInfo};
use sessionkit::{
    LiveSession, Regeneration, Session, SessionId, SessionLayer, SessionStore, SessionUser,
    TokenUpdate,
};

/// The demo's user: the name typed at login is the id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoUser {
    pub name: String,
}

impl SessionUser for DemoUser {
    fn id(&self) -> String {
        self.name.clone()
    }
}

/// The longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// The name typed at login, trimmed; an error message for the page if it is
/// empty, too long or holds control characters (which would garble logs
/// and the session list).
pub fn user_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Type a user name.".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "A user name has at most {MAX_NAME_CHARS} characters."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("A user name may not contain control characters.".into());
    }
    Ok(name.to_owned())
}

/// What the demo reads from the environment, checked before it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `PORT`, 3000 by default.
    pub port: u16,
    /// From `SESSION_SFR_SECS` (SFR), `SESSION_OJS_SECS` (OJS) and
    /// `SESSION_CIJS_SECS` (CIJS); off without `SESSION_SFR_SECS`.
    pub regeneration: Option<Regeneration>,
}

impl Settings {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `var` (a variable's value by name). Each error
    /// names the variable and the rule it breaks.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let port = match var("PORT") {
            None => 3000,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("PORT={v:?}: expected a port number from 0 to 65535"))?,
        };
        let secs = |name: &str| -> Result<Option<u64>, String> {
            let Some(v) = var(name) else { return Ok(None) };
            match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => Ok(Some(s)),
                _ => Err(format!(
                    "{name}={v:?}: expected a whole number of seconds, at least 1 (such as 30)"
                )),
            }
        };
        let (sfr, ojs, cijs) = (
            secs("SESSION_SFR_SECS")?,
            secs("SESSION_OJS_SECS")?,
            secs("SESSION_CIJS_SECS")?,
        );
        let Some(sfr) = sfr else {
            if let Some(name) = [(ojs, "SESSION_OJS_SECS"), (cijs, "SESSION_CIJS_SECS")]
                .iter()
                .find_map(|(v, name)| v.map(|_| name))
            {
                return Err(format!(
                    "{name} is set but SESSION_SFR_SECS is not: the grace windows apply only when \
                     tokens are regenerated (set SESSION_SFR_SECS too, or neither)"
                ));
            }
            return Ok(Settings {
                port,
                regeneration: None,
            });
        };
        let mut policy = Regeneration::every(Duration::from_secs(sfr));
        if let Some(ojs) = ojs {
            if ojs >= sfr {
                return Err(format!(
                    "SESSION_OJS_SECS={ojs} must be shorter than SESSION_SFR_SECS={sfr}: a replaced \
                     token may not keep working past its replacement's own turn"
                ));
            }
            policy = policy.grace(Duration::from_secs(ojs));
        }
        if let Some(cijs) = cijs {
            let grace = policy.grace_window();
            if Duration::from_secs(cijs) > grace / 2 {
                return Err(format!(
                    "SESSION_CIJS_SECS={cijs} must be at most half of the grace window \
                     (SESSION_OJS_SECS, {} s here), so that a lost replacement is noticed \
                     while the old token still works",
                    grace.as_secs_f64()
                ));
            }
            policy = policy.resend_for(Duration::from_secs(cijs));
        }
        // Whatever else the layer refuses, in its own words.
        layer(sessionkit::MemoryStore::new(), Some(policy)).map_err(|e| e.to_string())?;
        Ok(Settings {
            port,
            regeneration: Some(policy),
        })
    }
}

/// The demo's session layer.
fn layer(
    store: impl SessionStore,
    regeneration: Option<Regeneration>,
) -> Result<SessionLayer, sessionkit::ConfigError> {
    let mut builder = SessionLayer::builder(store)
        // The demo serves plain HTTP on loopback; a real deployment keeps
        // the default `Secure` cookie (named `__Host-sessionkit`).
        .secure(false)
        .connection_heartbeat(Duration::from_secs(5));
    if let Some(policy) = regeneration {
        builder = builder.regeneration(policy);
    }
    builder.try_build()
}

/// What the handlers share: the regeneration policy, to show the page when
/// the next replacement is due.
#[derive(Clone)]
struct Demo {
    regeneration: Option<Regeneration>,
}

/// The demo app on `store`.
pub fn app(
    store: impl SessionStore,
    regeneration: Option<Regeneration>,
) -> Result<Router, sessionkit::ConfigError> {
    Ok(Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/counter", post(increment))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", delete(revoke))
        .route("/api/logout-everywhere", post(logout_everywhere))
        .route("/api/logout-others", post(logout_others))
        .route("/api/connections", get(connections))
        .route("/ws", get(ws))
        .layer(layer(store, regeneration)?)
        .with_state(Demo { regeneration }))
}

/// Serves `app` on `listener`, with each request's peer address (shown in
/// the session list).
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// The static page: no session is touched, so it loads without the store.
async fn page() -> Html<&'static str> {
    Html(include_str!("demo.html"))
}

/// Everything the page shows about the current session. Times are
/// milliseconds since the epoch; `now_ms` lets the page tick with the
/// server's clock.
fn state_json(
    session: &Session,
    regeneration: Option<&Regeneration>,
) -> Result<Value, sessionkit::Error> {
    let user: Option<DemoUser> = session.user()?;
    let counter: u64 = session.get("counter")?.unwrap_or(0);
    let now = SystemClock.now();
    let ttg = session.ttg();
    Ok(json!({
        "user": user.map(|u| u.name),
        "session": session.id(),
        "counter": counter,
        "now_ms": now,
        "ttg_ms": ttg,
        "token_age_secs": ttg.map(|t| now.saturating_sub(t) / 1000),
        "rotated_at_ms": session.rotated_at(),
        "regeneration": regeneration.map(|p| json!({
            "every_ms": p.interval().as_millis() as u64,
            "grace_ms": p.grace_window().as_millis() as u64,
            "resend_ms": p.resend_window().as_millis() as u64,
        })),
    }))
}

async fn me(State(demo): State<Demo>, session: Session) -> Result<Json<Value>, sessionkit::Error> {
    Ok(Json(state_json(&session, demo.regeneration.as_ref())?))
}

#[derive(Deserialize)]
struct CounterQuery {
    /// Whom the page believes is logged in.
    expect_user: Option<String>,
}

/// `POST /api/counter[?expect_user=NAME]`. A page that shows a logged-in
/// user says so: if the session no longer belongs to that user (revoked or
/// logged out elsewhere), nothing is counted, rather than silently starting
/// a fresh anonymous session behind the page's back.
async fn increment(
    session: Session,
    Query(query): Query<CounterQuery>,
) -> Result<Response, sessionkit::Error> {
    if let Some(expected) = query.expect_user {
        if session.user_id().as_deref() != Some(expected.as_str()) {
            let body = json!({ "error": "session ended", "user": session.user_id() });
            return Ok((StatusCode::CONFLICT, Json(body)).into_response());
        }
    }
    let counter: u64 = session.get("counter")?.unwrap_or(0) + 1;
    session.insert("counter", counter)?;
    Ok(Json(json!({ "counter": counter })).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// `POST /login` with JSON `{"user": NAME}`.
async fn login(
    session: Session,
    Json(form): Json<LoginForm>,
) -> Result<Response, sessionkit::Error> {
    let name = match user_name(&form.user) {
        Ok(name) => name,
        Err(message) => return Ok((StatusCode::BAD_REQUEST, message).into_response()),
    };
    let user = DemoUser { name };
    // The layer records the device (user agent and peer address) with the
    // login, for the sessions table.
    session.login(&user).await?;
    Ok(Json(json!({ "user": user.name })).into_response())
}

async fn logout(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    session.logout().await?;
    Ok(Json(json!({ "user": null })))
}

fn log_in_first() -> Response {
    (StatusCode::UNAUTHORIZED, "log in first").into_response()
}

/// One row of the sessions table. The page renders these fields as they
/// come, so details the store may add later drop in here.
fn session_json(s: &SessionInfo, current: Option<&SessionId>) -> Value {
    let device = s.device.as_ref();
    json!({
        "id": s.id,
        "current": Some(&s.id) == current,
        "device": device.and_then(|d| d.name()).unwrap_or_else(|| "unknown device".into()),
        "address": device
            .and_then(|d| d.address)
            .map_or_else(|| "unknown".into(), |a| a.to_string()),
        "created_at_ms": s.created_at,
        "last_seen_ms": s.last_seen,
        "idle_deadline_ms": s.idle_deadline,
        "absolute_deadline_ms": s.absolute_deadline,
    })
}

async fn sessions(session: Session) -> Result<Response, sessionkit::Error> {
    if session.user_id().is_none() {
        return Ok(log_in_first());
    }
    let me = session.id();
    let list: Vec<Value> = session
        .sessions()
        .await?
        .iter()
        .map(|s| session_json(s, me.as_ref()))
        .collect();
    Ok(Json(list).into_response())
}

async fn revoke(session: Session, Path(id): Path<String>) -> Result<Response, sessionkit::Error> {
    if session.user_id().is_none() {
        return Ok(log_in_first());
    }
    // Only ids of this user's own sessions do anything; anything else is a
    // 404, whether it exists for another user or not at all.
    let Some(id) = SessionId::parse(&id) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    Ok(if session.revoke(&id).await? {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    })
}

async fn logout_everywhere(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    let revoked = session.logout_everywhere().await?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn logout_others(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    let revoked = session.logout_others().await?;
    Ok(Json(json!({ "revoked": revoked })))
}

async fn connections(session: Session) -> Result<Response, sessionkit::Error> {
    let Some(user) = session.user_id() else {
        return Ok(log_in_first());
    };
    let list = session.manager().connections(&user).await?;
    Ok(Json(json!(list)).into_response())
}

async fn ws(
    State(demo): State<Demo>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    session: Session,
) -> Result<Response, sessionkit::Error> {
    if !from_own_page(&headers) {
        return Ok((
            StatusCode::FORBIDDEN,
            "a socket opens only from this site's pages",
        )
            .into_response());
    }
    // With or without a stored session: a client that holds its token
    // itself may connect first and log in over the socket.
    let live = session.connect_anonymous().await?;
    let hello =
        json!({ "type": "hello", "state": state_json(&session, demo.regeneration.as_ref())? });
    Ok(upgrade.on_upgrade(move |socket| serve_socket(socket, live, hello, demo)))
}

/// Whether a WebSocket handshake comes from this site's own pages. A
/// browser sends the session cookie with a handshake from any page of the
/// same site, a sibling subdomain's included, and a socket is not bound by
/// CORS: without this check such a page could talk to the socket as the
/// user. Clients that are not browsers send no `Origin`; they hold their
/// token themselves.
fn from_own_page(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().ok().and_then(|o| o.parse::<Uri>().ok());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.as_ref().and_then(Uri::authority), host) {
        (Some(origin), Some(host)) => origin.as_str().eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// How the close frame names why the session ended; the page shows it.
fn ended_because(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::Revoked => "revoked",
        EndReason::LoggedOut => "logged out",
        EndReason::Expired => "expired",
        EndReason::Replaced => "replaced by a login",
        EndReason::StaleToken => "ended: an old token was reused",
        _ => "ended",
    }
}

/// A command sent over the socket as JSON, by a client that holds its
/// token itself (a native app, a command-line client).
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Command {
    /// `{"op":"login","user":NAME}`, named as for `POST /login`.
    Login { user: String },
    /// `{"op":"logout"}`.
    Logout,
    /// `{"op":"counter"}`: +1, as `POST /api/counter`.
    Counter,
}

/// The command in `text`: `None` for anything that does not name one (the
/// page's plain messages, answered with the state as before), an error for
/// a JSON object with an `op` the demo does not know or a missing field.
fn command(text: &str) -> Option<Result<Command, String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("op")?;
    Some(serde_json::from_value(value).map_err(|e| e.to_string()))
}

/// Runs `command` on `session`; an error message for the client if the
/// command was refused or failed.
async fn run_command(session: &Session, command: Command) -> Result<(), String> {
    match command {
        Command::Login { user } => {
            let user = DemoUser {
                name: user_name(&user)?,
            };
            session.login(&user).await.map_err(|e| e.to_string())
        }
        Command::Logout => session.logout().await.map_err(|e| e.to_string()),
        Command::Counter => {
            let counter: u64 = session
                .get("counter")
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
            session
                .insert("counter", counter + 1)
                .map_err(|e| e.to_string())
        }
    }
}

/// Answers one client message: a command runs on the connection's session
/// and is committed, its token change (if any) sent first; anything else is
/// answered with the session state.
async fn answer(
    live: &mut LiveSession,
    text: &str,
    regeneration: Option<&Regeneration>,
) -> Vec<Value> {
    let error = |message: String| json!({ "type": "error", "message": message });
    let session = match live.session().await {
        Ok(session) => session,
        Err(e) => return vec![error(e.to_string())],
    };
    let Some(command) = command(text) else {
        return vec![match state_json(&session, regeneration) {
            Ok(state) => json!({ "type": "state", "state": state }),
            Err(e) => error(e.to_string()),
        }];
    };
    let result = match command {
        Ok(command) => run_command(&session, command).await,
        Err(message) => Err(message),
    };
    // Committed even after a refusal: a failed step may already have
    // changed the token, which the client must then hear about.
    let (update, saved) = match live.commit(&session).await {
        Ok(update) => (update, Ok(())),
        Err(e) => (e.update, Err(e.error.to_string())),
    };
    let mut replies = Vec::new();
    match update {
        TokenUpdate::Replace(token) => {
            replies.push(json!({ "type": "token", "token": token.as_str() }));
        }
        TokenUpdate::Drop => replies.push(json!({ "type": "token", "token": null })),
        _ => {}
    }
    replies.push(
        match result
            .and(saved)
            .and_then(|()| state_json(&session, regeneration).map_err(|e| e.to_string()))
        {
            Ok(state) => json!({ "type": "state", "state": state }),
            Err(message) => error(message),
        },
    );
    replies
}

/// Sends the hello, answers every message (running the commands above),
/// tells the page when the token was replaced, and closes with 1008
/// (policy violation) the moment the session ends anywhere else. The
/// connection's own login or logout never closes it.
async fn serve_socket(mut socket: WebSocket, mut live: LiveSession, hello: Value, demo: Demo) {
    let state = |session: Result<Session, sessionkit::Error>| {
        session
            .and_then(|s| state_json(&s, demo.regeneration.as_ref()))
            .ok()
    };
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        live.close().await;
        return;
    }
    'serve: loop {
        tokio::select! {
            // Made anew each turn: a login or logout over the socket moves
            // the connection to another session (or none).
            reason = live.ended() => {
                let frame = match reason {
                    // The session lives on, but this connection lost track
                    // of its token: the page reconnects with the one it holds.
                    EndReason::TokenLost => CloseFrame { code: 1012, reason: "reconnect".into() },
                    reason => CloseFrame {
                        code: 1008,
                        reason: format!("session {}", ended_because(&reason)).into(),
                    },
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            Some(_) = live.token_changed() => {
                // The new token itself travels in the cookie of the HTTP
                // response that caused the rotation; the page learns when.
                let note = json!({ "type": "rotated", "state": state(live.session().await) });
                if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    // Binary messages carry no command: answered with the state.
                    let text = match &message {
                        Message::Text(text) => text.as_str(),
                        _ => "",
                    };
                    for reply in answer(&mut live, text, demo.regeneration.as_ref()).await {
                        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break 'serve;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    live.close().await;
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sessionkit=debug".into()),
        )
        .init();
    // A bad setting: exit code 2, as for a bad command-line argument.
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    // Anything that keeps the demo from starting: exit code 1.
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::from(1)
        }
    }
}

/// Connects the store named by the environment and serves until stopped.
async fn run(settings: Settings) -> Result<(), String> {
    let regeneration = settings.regeneration;
    // Kept for the life of the server: dropping it stops the cleanup task.
    let mut _cleanup = None;
    let app = match (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) {
        (Ok(url), _) => {
            let (app, cleanup) = sql_app(&url, regeneration)
                .await
                .map_err(|e| format!("DATABASE_URL: cannot connect to the session store: {e}"))?;
            _cleanup = Some(cleanup);
            app
        }
        (_, Ok(url)) => redis_app(&url, regeneration)
            .await
            .map_err(|e| format!("REDIS_URL: cannot connect to the session store: {e}"))?,
        _ => {
            tracing::info!(
                "in-memory store (set REDIS_URL or DATABASE_URL to share sessions between processes)"
            );
            app(sessionkit::MemoryStore::new(), regeneration).map_err(|e| e.to_string())?
        }
    };
    let app = app
        .merge(metrics_route().map_err(|e| format!("cannot install the metrics recorder: {e}"))?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", settings.port))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    serve(listener, app).await.map_err(|e| e.to_string())
}

/// `GET /metrics`: sessionkit's metrics in the Prometheus text format. The
/// recorder is process-wide, so only the binary installs it (the tests that
/// serve `app` in their own process do not).
fn metrics_route() -> Result<Router, Box<dyn std::error::Error>> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    sessionkit::metrics::describe();
    Ok(Router::new().route(
        "/metrics",
        get(move || {
            std::future::ready((
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            ))
        }),
    ))
}

#[cfg(feature = "redis")]
async fn redis_app(
    url: &str,
    regeneration: Option<Regeneration>,
) -> Result<Router, Box<dyn std::error::Error>> {
    tracing::info!("Redis store");
    Ok(app(
        sessionkit::RedisStore::connect(url).await?,
        regeneration,
    )?)
}

/// The app on PostgreSQL (`postgres://...`) or SQLite (`sqlite:...`), its
/// schema migrated, expired rows deleted every minute.
#[cfg(all(feature = "postgres", feature = "sqlite"))]
async fn sql_app(
    url: &str,
    regeneration: Option<Regeneration>,
) -> Result<(Router, sessionkit::store::CleanupHandle), Box<dyn std::error::Error>> {
    const CLEANUP_EVERY: Duration = Duration::from_secs(60);
    if url.starts_with("sqlite:") {
        tracing::info!("SQLite store");
        let store = sessionkit::SqliteStore::connect(url).await?;
        store.migrate().await?;
        let cleanup = store.spawn_cleanup(CLEANUP_EVERY);
        Ok((app(store, regeneration)?, cleanup))
    } else {
        tracing::info!("PostgreSQL store");
        let store = sessionkit::PostgresStore::connect(url).await?;
        store.migrate().await?;
        let cleanup = store.spawn_cleanup(CLEANUP_EVERY);
        Ok((app(store, regeneration)?, cleanup))
    }
}

#[cfg(not(all(feature = "postgres", feature = "sqlite")))]
async fn sql_app(
    _: &str,
    _: Option<Regeneration>,
) -> Result<(Router, std::convert::Infallible), Box<dyn std::error::Error>> {
    Err("the demo was built without the `postgres` and `sqlite` features".into())
}

#[cfg(not(feature = "redis"))]
async fn redis_app(_: &str, _: Option<Regeneration>) -> Result<Router, Box<dyn std::error::Error>> {
    Err("the demo was built without the `redis` feature".into())
}
