//! The benchmark's sessionkit app (see the crate docs for its routes).

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sessionkit::{Session, SessionLayer, SessionStore};
use side_by_side::{Args, LoginQuery, Store, User};

async fn login(
    session: Session,
    Query(q): Query<LoginQuery>,
) -> Result<StatusCode, sessionkit::Error> {
    let user = User {
        name: format!("user {}", q.user),
        id: q.user,
    };
    session.login(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    let user: Option<User> = session.user()?;
    let counter: u64 = session.get("counter")?.unwrap_or(0);
    Ok(Json(json!({ "user": user, "counter": counter })))
}

async fn counter(session: Session) -> Result<Json<Value>, sessionkit::Error> {
    let counter: u64 = session.get("counter")?.unwrap_or(0) + 1;
    session.insert("counter", counter)?;
    Ok(Json(json!({ "counter": counter })))
}

fn app(store: impl SessionStore) -> Router {
    // Plain HTTP on loopback: no `Secure` cookie. A user per session, so no
    // per-user session limit gets in the way of minting many.
    let layer = SessionLayer::builder(store).secure(false).build();
    Router::new()
        .route("/login", post(login))
        .route("/api/me", get(me))
        .route("/api/counter", post(counter))
        .layer(layer)
        .route("/bare", get(|| async { "ok" }))
        .route("/bare/me", get(side_by_side::bare_me))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    let app = match &args.store {
        Store::Memory => app(sessionkit::MemoryStore::new()),
        Store::Redis(url) => {
            let mut builder = sessionkit::RedisStore::builder();
            // For trying other connection counts: the default otherwise.
            if let Some(n) = std::env::var("SESSIONKIT_CONNECTIONS")
                .ok()
                .and_then(|n| n.parse().ok())
            {
                builder = builder.connections(n);
            }
            app(builder.connect(url).await?)
        }
        Store::Postgres(url) => {
            let store = sessionkit::PostgresStore::connect(url).await?;
            store.migrate().await?;
            app(store)
        }
        Store::Sqlite(url) => {
            let store = sessionkit::SqliteStore::connect(url).await?;
            store.migrate().await?;
            app(store)
        }
    };
    side_by_side::serve(args.port, app).await?;
    Ok(())
}
