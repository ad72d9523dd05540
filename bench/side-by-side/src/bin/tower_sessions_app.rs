//! The benchmark's tower-sessions app (see the crate docs for its routes):
//! tower-sessions 0.14 with an idle expiry (`Expiry::OnInactivity`), on its
//! `MemoryStore`, on `tower-sessions-redis-store` (fred, a pool of six
//! connections as in that crate's own example), or on
//! `tower-sessions-sqlx-store`'s `PostgresStore` and `SqliteStore` (on the
//! same sqlx pool settings as sessionkit's stores, see `side_by_side::
//! postgres_pool` and `sqlite_pool`).

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use side_by_side::{Args, LoginQuery, Store, User};
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

fn internal<E: std::fmt::Display>(err: E) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn login(
    session: Session,
    Query(q): Query<LoginQuery>,
) -> Result<StatusCode, (StatusCode, String)> {
    let user = User {
        name: format!("user {}", q.user),
        id: q.user,
    };
    session.cycle_id().await.map_err(internal)?;
    session.insert("user", user).await.map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(session: Session) -> Result<Json<Value>, (StatusCode, String)> {
    let user: Option<User> = session.get("user").await.map_err(internal)?;
    let counter: u64 = session.get("counter").await.map_err(internal)?.unwrap_or(0);
    Ok(Json(json!({ "user": user, "counter": counter })))
}

async fn counter(session: Session) -> Result<Json<Value>, (StatusCode, String)> {
    let counter: u64 = session.get("counter").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("counter", counter).await.map_err(internal)?;
    Ok(Json(json!({ "counter": counter })))
}

fn app<S: SessionStore + Clone>(store: S) -> Router {
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::hours(1)));
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
        Store::Memory => app(tower_sessions::MemoryStore::default()),
        Store::Redis(url) => {
            let pool = Pool::new(Config::from_url(url)?, None, None, None, 6)?;
            pool.init().await?;
            app(tower_sessions_redis_store::RedisStore::new(pool))
        }
        Store::Postgres(url) => {
            let store = tower_sessions_sqlx_store::PostgresStore::new(
                side_by_side::postgres_pool(url).await?,
            );
            store.migrate().await?;
            app(store)
        }
        Store::Sqlite(url) => {
            let store =
                tower_sessions_sqlx_store::SqliteStore::new(side_by_side::sqlite_pool(url).await?);
            store.migrate().await?;
            app(store)
        }
    };
    side_by_side::serve(args.port, app).await?;
    Ok(())
}
