//! A small app showing everything sessionkit does.
//!
//! ```text
//! cargo run --example demo                       # in-memory store, 127.0.0.1:3000
//! PORT=3001 cargo run --example demo             # another port
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example demo
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run --example demo
//! DATABASE_URL=sqlite://demo-sessions.db cargo run --example demo
//! SESSION_SFR_SECS=30 SESSION_OJS_SECS=10 SESSION_CIJS_SECS=20 cargo run --example demo
//! ```
//!
//! Two demo processes on different ports sharing one Redis (or one
//! PostgreSQL database) share sessions: log in on one, revoke from the
//! other, and the first one's socket closes.
//!
//! Routes: `GET /` (the page), `POST /login` (form or JSON field `user`),
//! `POST /logout`, `GET /api/me`, `POST /api/counter`, `GET /api/sessions`,
//! `DELETE /api/sessions/{id}`, `POST /api/logout-everywhere`,
//! `POST /api/logout-others`, `GET /api/connections`, `GET /ws`.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sessionkit::clock::{Clock, Millis, SystemClock};
use sessionkit::{
    LiveSession, Regeneration, Session, SessionId, SessionLayer, SessionStore, SessionUser,
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

/// The regeneration policy from `SESSION_SFR_SECS` (SFR), `SESSION_OJS_SECS`
/// (OJS) and `SESSION_CIJS_SECS` (CIJS), whole seconds; none without
/// `SESSION_SFR_SECS`. A value that is not a number, or a policy the layer
/// would refuse, is an error naming the variable.
pub fn regeneration_from_env() -> Result<Option<Regeneration>, String> {
    fn secs(name: &str) -> Result<Option<Duration>, String> {
        match std::env::var(name) {
            Err(_) => Ok(None),
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map(|s| Some(Duration::from_secs(s)))
                .map_err(|_| format!("{name}={v:?}: expected a whole number of seconds")),
        }
    }
    let (sfr, ojs, cijs) = (
        secs("SESSION_SFR_SECS")?,
        secs("SESSION_OJS_SECS")?,
        secs("SESSION_CIJS_SECS")?,
    );
    let Some(sfr) = sfr else {
        if ojs.is_some() || cijs.is_some() {
            return Err("SESSION_OJS_SECS and SESSION_CIJS_SECS need SESSION_SFR_SECS".into());
        }
        return Ok(None);
    };
    let mut policy = Regeneration::every(sfr);
    if let Some(ojs) = ojs {
        policy = policy.grace(ojs);
    }
    if let Some(cijs) = cijs {
        policy = policy.resend_for(cijs);
    }
    // The layer's own check, with its message.
    layer(sessionkit::MemoryStore::new(), Some(policy)).map_err(|e| e.to_string())?;
    Ok(Some(policy))
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
        .layer(layer(store, regeneration)?))
}

fn age_secs(t: Option<Millis>) -> Option<u64> {
    t.map(|t| SystemClock.now().saturating_sub(t) / 1000)
}

/// "Chrome on Linux, 127.0.0.1, last seen 2 min ago" for a listed session.
fn device_line(s: &sessionkit::store::SessionInfo, now: Millis) -> String {
    let device = s.device.as_ref();
    let name = device
        .and_then(sessionkit::Device::name)
        .or_else(|| s.label.clone())
        .unwrap_or_else(|| "Unknown device".to_owned());
    let address = device
        .and_then(|d| d.address)
        .map(|a| format!(", {a}"))
        .unwrap_or_default();
    let mins = now.saturating_sub(s.last_seen) / 60_000;
    let seen = match mins {
        0 => "just now".to_owned(),
        m if m < 120 => format!("{m} min ago"),
        m => format!("{} h ago", m / 60),
    };
    format!("{name}{address}, last seen {seen}")
}

fn state_json(session: &Session) -> Result<Value, sessionkit::Error> {
    let user: Option<DemoUser> = session.user()?;
    let counter: u64 = session.get("counter")?.unwrap_or(0);
    Ok(json!({
        "user": user.map(|u| u.name),
        "counter": counter,
        "token_age_secs": age_secs(session.ttg()),
        "rotated_at_ms": session.rotated_at(),
    }))
}

async fn me(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    Ok(Json(state_json(&session)?))
}

async fn increment(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    let counter: u64 = session.get("counter")?.unwrap_or(0) + 1;
    session.insert("counter", counter)?;
    Ok(Json(json!({ "counter": counter })))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// `POST /login` with a form (from the page: redirects back) or JSON.
async fn login(session: Session, headers: HeaderMap, req: Request) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form = if is_json {
        Json::<LoginForm>::from_request(req, &())
            .await
            .map(|Json(f)| f)
            .map_err(IntoResponse::into_response)
    } else {
        Form::<LoginForm>::from_request(req, &())
            .await
            .map(|Form(f)| f)
            .map_err(IntoResponse::into_response)
    };
    let form = match form {
        Ok(form) => form,
        Err(rejection) => return rejection,
    };
    let name = form.user.trim();
    if name.is_empty() || name.len() > 64 {
        return (StatusCode::UNPROCESSABLE_ENTITY, "user: 1 to 64 characters").into_response();
    }
    let user = DemoUser { name: name.into() };
    if let Err(err) = session.login(&user).await {
        return err.into_response();
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown device");
    if let Err(err) = session.set_label(agent.chars().take(80).collect::<String>()) {
        return err.into_response();
    }
    if is_json {
        Json(json!({ "user": user.name })).into_response()
    } else {
        Redirect::to("/").into_response()
    }
}

async fn logout(session: Session, headers: HeaderMap) -> Result<Response, sessionkit::Error> {
    session.logout().await?;
    Ok(back_or(&headers, Json(json!({ "user": null }))))
}

/// Form posts from the page go back to it; API clients get JSON.
fn back_or(headers: &HeaderMap, json: Json<Value>) -> Response {
    let from_page = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if from_page {
        Redirect::to("/").into_response()
    } else {
        json.into_response()
    }
}

async fn sessions(session: Session) -> Result<Response, sessionkit::Error> {
    if session.user_id().is_none() {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    }
    let me = session.id();
    let list: Vec<Value> = session
        .sessions()
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "current": Some(&s.id) == me.as_ref(),
                "label": s.label,
                "device": device_line(&s, SystemClock.now()),
                "created_at_ms": s.created_at,
                "last_seen_ms": s.last_seen,
                "idle_deadline_ms": s.idle_deadline,
                "absolute_deadline_ms": s.absolute_deadline,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn revoke(session: Session, Path(id): Path<String>) -> Result<Response, sessionkit::Error> {
    if session.user_id().is_none() {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
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

async fn logout_everywhere(
    session: Session,
    headers: HeaderMap,
) -> Result<Response, sessionkit::Error> {
    let revoked = session.logout_everywhere().await?;
    Ok(back_or(&headers, Json(json!({ "revoked": revoked }))))
}

async fn logout_others(
    session: Session,
    headers: HeaderMap,
) -> Result<Response, sessionkit::Error> {
    let revoked = session.logout_others().await?;
    Ok(back_or(&headers, Json(json!({ "revoked": revoked }))))
}

async fn connections(session: Session) -> Result<Response, sessionkit::Error> {
    let Some(user) = session.user_id() else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    let list = session.manager().connections(&user).await?;
    Ok(Json(json!(list)).into_response())
}

async fn ws(upgrade: WebSocketUpgrade, session: Session) -> Result<Response, sessionkit::Error> {
    let live = session.connect().await?;
    let hello = json!({ "type": "hello", "state": state_json(&session)? });
    Ok(upgrade.on_upgrade(move |socket| serve_socket(socket, live, hello)))
}

/// Sends the hello, echoes the session state on every message, and closes
/// with 1008 (policy violation) the moment the session ends anywhere.
async fn serve_socket(mut socket: WebSocket, mut live: LiveSession, hello: Value) {
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        live.close().await;
        return;
    }
    loop {
        tokio::select! {
            reason = live.ended() => {
                let reason = format!("session ended: {reason:?}");
                let frame = CloseFrame { code: 1008, reason: reason.into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            Some(_) = live.token_changed() => {
                // The page learns its session was rotated; the new token
                // itself travels in the next HTTP response's cookie.
                let note = json!({ "type": "rotated" });
                if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    let reply = match live.session().await {
                        Ok(session) => match state_json(&session) {
                            Ok(state) => json!({ "type": "state", "state": state }),
                            Err(_) => json!({ "type": "error" }),
                        },
                        Err(_) => json!({ "type": "error" }),
                    };
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    live.close().await;
}

async fn page(session: Session) -> Result<Html<String>, sessionkit::Error> {
    let state = state_json(&session)?;
    let user = state["user"].as_str().map(html_escape);
    let me = session.id();
    let mut rows = String::new();
    if user.is_some() {
        for s in session.sessions().await? {
            let current = Some(&s.id) == me.as_ref();
            let label = html_escape(&device_line(&s, SystemClock.now()));
            let action = if current {
                "<em>this device</em>".to_owned()
            } else {
                format!("<button onclick=\"revoke('{}')\">Revoke</button>", s.id)
            };
            rows.push_str(&format!(
                "<tr{}><td><code>{}</code></td><td>{label}</td><td>{action}</td></tr>",
                if current { " class=current" } else { "" },
                &s.id.as_str()[..10]
            ));
        }
    }
    let who = match &user {
        Some(name) => format!(
            "Logged in as <strong>{name}</strong>. \
             <form method=post action=/logout><button>Log out</button></form> \
             <form method=post action=/api/logout-others><button>Log out other devices</button></form> \
             <form method=post action=/api/logout-everywhere><button>Log out everywhere</button></form>"
        ),
        None => "Anonymous. <form method=post action=/login>\
                 <input name=user placeholder=name required maxlength=64> <button>Log in</button></form>"
            .to_owned(),
    };
    let rotated = match state["rotated_at_ms"].as_u64() {
        Some(ms) => format!("<span class=ts data-s={}></span>", ms / 1000),
        None => "never".to_owned(),
    };
    let token_age = state["token_age_secs"]
        .as_u64()
        .map_or("no session yet".to_owned(), |s| format!("{s} s"));
    Ok(Html(format!(
        include_str!("demo.html"),
        who = who,
        counter = state["counter"],
        token_age = token_age,
        rotated = rotated,
        rows = if user.is_some() {
            format!("<table><tr><th>id</th><th>device</th><th></th></tr>{rows}</table>")
        } else {
            "<p>Log in to see your sessions.</p>".to_owned()
        },
    )))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sessionkit=debug".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let regeneration = match regeneration_from_env() {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("demo: {message}");
            std::process::exit(2);
        }
    };
    // Kept for the life of the server: dropping it stops the cleanup task.
    let mut _cleanup = None;
    let app = match (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) {
        (Ok(url), _) => {
            let (app, cleanup) = sql_app(&url, regeneration).await?;
            _cleanup = Some(cleanup);
            app
        }
        (_, Ok(url)) => redis_app(&url, regeneration).await?,
        _ => {
            tracing::info!(
                "in-memory store (set REDIS_URL or DATABASE_URL to share sessions between processes)"
            );
            app(sessionkit::MemoryStore::new(), regeneration)?
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // With the peer address, which sessions record.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(feature = "redis")]
async fn redis_app(
    url: &str,
    regeneration: Option<Regeneration>,
) -> Result<Router, Box<dyn std::error::Error>> {
    tracing::info!("Redis store at {url}");
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
        tracing::info!("SQLite store at {url}");
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
    Err(
        "DATABASE_URL is set but the demo was built without the `postgres` and `sqlite` features"
            .into(),
    )
}

#[cfg(not(feature = "redis"))]
async fn redis_app(_: &str, _: Option<Regeneration>) -> Result<Router, Box<dyn std::error::Error>> {
    Err("REDIS_URL is set but the demo was built without the `redis` feature".into())
}
