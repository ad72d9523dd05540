//! What the two benchmark apps share: their command line, their user and
//! how they serve.
//!
//! Both apps serve the same routes on a loopback port:
//!
//! - `POST /login?user=<id>`: logs a user in (the setup mints sessions with it)
//! - `GET /api/me`: reads the logged-in user and the counter from the session
//! - `POST /api/counter`: increments a counter in the session
//! - `GET /bare`: no session at all, outside the session layer (the baseline)
//! - `GET /bare/me`: the answer of `GET /api/me` (a user and a counter as
//!   JSON) without a session: the baseline of the read's own work

use serde::{Deserialize, Serialize};

/// The user both apps store in a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
}

impl sessionkit::SessionUser for User {
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// `?user=<id>` of the login route.
#[derive(Deserialize)]
pub struct LoginQuery {
    pub user: String,
}

/// Where an app keeps its sessions.
pub enum Store {
    Memory,
    Redis(String),
    Postgres(String),
    Sqlite(String),
}

/// An app's command line:
/// `--port <port> (--memory | --redis <url> | --postgres <url> | --sqlite <url>)`.
pub struct Args {
    pub port: u16,
    pub store: Store,
}

impl Args {
    pub fn parse() -> Result<Args, String> {
        let mut port = None;
        let mut store = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--port" => {
                    port = args
                        .next()
                        .and_then(|p| p.parse().ok())
                        .map(Some)
                        .ok_or("--port needs a port")?;
                }
                "--memory" => store = Some(Store::Memory),
                "--redis" => store = Some(Store::Redis(args.next().ok_or("--redis needs a URL")?)),
                "--postgres" => {
                    store = Some(Store::Postgres(
                        args.next().ok_or("--postgres needs a URL")?,
                    ))
                }
                "--sqlite" => {
                    store = Some(Store::Sqlite(args.next().ok_or("--sqlite needs a URL")?))
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Args {
            port: port.ok_or("--port is required")?,
            store: store.ok_or("--memory, --redis, --postgres or --sqlite <url> is required")?,
        })
    }
}

/// The SQLite pool both apps use for a file: what `sessionkit::SqliteStore::
/// connect` builds (WAL, `synchronous = NORMAL`, foreign keys, a 5 s busy
/// timeout, 4 connections, no ping before each call), so that the stores
/// differ and the pools do not.
pub async fn sqlite_pool(url: &str) -> Result<sqlx::SqlitePool, sqlx::Error> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    use std::str::FromStr;
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// The PostgreSQL pool both apps use: what `sessionkit::PostgresStore::
/// connect` builds (sqlx's default of 10 connections, no ping before each
/// call).
pub async fn postgres_pool(url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(5))
        .test_before_acquire(false)
        .connect(url)
        .await
}

/// `GET /bare/me`: what `GET /api/me` answers for a logged-in user, built
/// the same way, from no session.
pub async fn bare_me() -> axum::Json<serde_json::Value> {
    let user = Some(User {
        id: "u1".to_owned(),
        name: "user u1".to_owned(),
    });
    axum::Json(serde_json::json!({ "user": user, "counter": 0u64 }))
}

/// Serves `app` on `127.0.0.1:<port>` until the process is killed.
pub async fn serve(port: u16, app: axum::Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
