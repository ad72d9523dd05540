//! `kill -9` of the store's server in the middle of a load, through a real
//! HTTP server (axum on a loopback port) driven with reqwest: on Redis (AOF
//! fsynced on every write) and on PostgreSQL (synchronous commit).
//!
//! What must hold: while the server is down every request answers within
//! the store timeout (plus slack), 200 or 503 with the short body, never a
//! hang, a dropped connection or a panic; once the server is back on the same
//! port and data, the same app process serves again without a restart; and
//! every session keeps at least every increment it acknowledged before the
//! kill, under the token it had.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing;
use axum::Router;
use sessionkit::{PostgresStore, RedisStore, Session, SessionLayer, SessionStore};
use sqlx::postgres::PgPoolOptions;
use support::postgres::{self as pg, PgServer};
use support::redis::{random_prefix, RedisServer};

const STORE_TIMEOUT: Duration = Duration::from_millis(800);
/// Room for scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1_500);
const CLIENTS: usize = 16;
/// Each client's requests are bounded, whatever happens.
const MAX_REQUESTS: usize = 5_000;
/// How long the load runs before the kill, and with the server down.
const BEFORE_KILL: Duration = Duration::from_millis(600);
const DOWN_FOR: Duration = Duration::from_millis(2_000);
const RECOVERY: Duration = Duration::from_secs(15);

/// Serves `store` behind the layer on a loopback port.
async fn serve(store: impl SessionStore) -> (String, tokio::task::JoinHandle<()>) {
    let layer = SessionLayer::builder(store)
        .secure(false)
        .store_timeout(STORE_TIMEOUT)
        .build();
    let app = Router::new()
        .route(
            "/count",
            routing::post(|s: Session| async move {
                let n: u64 = s.get("n")?.unwrap_or(0) + 1;
                s.insert("n", n)?;
                Ok::<_, sessionkit::Error>(n.to_string())
            }),
        )
        .route(
            "/read",
            routing::get(|s: Session| async move {
                let n: u64 = s.get("n")?.unwrap_or(0);
                Ok::<_, sessionkit::Error>(n.to_string())
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the app serves");
    });
    (base, task)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// The highest count acknowledged (200) before the kill.
    acked_before_kill: u64,
    ok: usize,
    unavailable: usize,
    /// The slowest answer while the server was down.
    slowest_down: Duration,
}

struct Load {
    base: String,
    http: reqwest::Client,
    killed: AtomicBool,
    stop: AtomicBool,
}

impl Load {
    async fn count(&self, token: &str) -> (reqwest::StatusCode, String, Option<String>, Duration) {
        let started = Instant::now();
        let res = self
            .http
            .post(format!("{}/count", self.base))
            .header("cookie", format!("sessionkit={token}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the app dropped a request: {e}"));
        let status = res.status();
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.text().await.expect("a body");
        (status, body, set_cookie, started.elapsed())
    }
}

/// A fresh session: its token.
async fn new_session(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .post(format!("{base}/count"))
        .send()
        .await
        .expect("the app answers");
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a new session's cookie");
    let value = cookie.split(';').next().unwrap_or_default();
    value
        .strip_prefix("sessionkit=")
        .expect("the session cookie")
        .to_owned()
}

/// Runs the load, kills the server with `kill`, brings it back with
/// `restart`, and checks what the module docs say.
async fn kill_in_the_middle_of_a_load(
    store: impl SessionStore,
    kill: impl FnOnce() + Send + 'static,
    restart: impl FnOnce() + Send + 'static,
) {
    let (base, server) = serve(store).await;
    let http = reqwest::Client::builder()
        // A hang shows as a failure, not as a stuck test.
        .timeout(STORE_TIMEOUT + SLACK + Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut tokens = Vec::new();
    for _ in 0..CLIENTS {
        tokens.push(new_session(&http, &base).await);
    }
    let load = Arc::new(Load {
        base: base.clone(),
        http,
        killed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (token, seen) in tokens.iter().cloned().zip(seen.iter().cloned()) {
        let load = load.clone();
        clients.push(tokio::spawn(async move {
            for _ in 0..MAX_REQUESTS {
                if load.stop.load(Ordering::SeqCst) {
                    break;
                }
                // Read before the request: an answer that came while the
                // flag was up may still be from before the kill.
                let killed_before = load.killed.load(Ordering::SeqCst);
                let (status, body, set_cookie, took) = load.count(&token).await;
                {
                    let mut seen = seen.lock().unwrap();
                    match status.as_u16() {
                        200 => {
                            assert!(set_cookie.is_none(), "the session was lost: a new token");
                            let n: u64 = body.parse().expect("a count");
                            seen.ok += 1;
                            if !load.killed.load(Ordering::SeqCst) {
                                seen.acked_before_kill = seen.acked_before_kill.max(n);
                            }
                        }
                        503 => {
                            assert_eq!(body, "session store unavailable");
                            seen.unavailable += 1;
                        }
                        other => panic!("answered {other}: {body}"),
                    }
                    if killed_before {
                        assert!(took < STORE_TIMEOUT + SLACK, "an answer took {took:?}");
                        seen.slowest_down = seen.slowest_down.max(took);
                    }
                }
                // A little room for the other tasks on a 2-core machine.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(BEFORE_KILL).await;
    load.killed.store(true, Ordering::SeqCst);
    // Off the runtime's threads: the load goes on meanwhile.
    tokio::task::spawn_blocking(kill).await.expect("kill");
    tokio::time::sleep(DOWN_FOR).await;
    let unavailable: usize = seen.iter().map(|s| s.lock().unwrap().unavailable).sum();
    assert!(unavailable > 0, "no request noticed the store was down");
    tokio::task::spawn_blocking(restart).await.expect("restart");

    // The same app, no restart: every client is served again.
    let ok_at_restart: Vec<usize> = seen.iter().map(|s| s.lock().unwrap().ok).collect();
    let deadline = Instant::now() + RECOVERY;
    loop {
        let recovered = seen
            .iter()
            .zip(&ok_at_restart)
            .all(|(s, before)| s.lock().unwrap().ok > *before);
        if recovered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not recover within {RECOVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client panicked");
    }

    // Every session is intact: at least what it acknowledged before the
    // kill, under the token it had.
    for (token, seen) in tokens.iter().zip(&seen) {
        let res = load
            .http
            .get(format!("{base}/read"))
            .header("cookie", format!("sessionkit={token}"))
            .send()
            .await
            .expect("the app answers");
        assert_eq!(res.status(), 200);
        let n: u64 = res.text().await.expect("a body").parse().expect("a count");
        let seen = seen.lock().unwrap();
        assert!(seen.acked_before_kill >= 1);
        assert!(
            n >= seen.acked_before_kill,
            "acknowledged {} before the kill, {n} after",
            seen.acked_before_kill
        );
    }
    let slowest = seen.iter().map(|s| s.lock().unwrap().slowest_down).max();
    let ok: usize = seen.iter().map(|s| s.lock().unwrap().ok).sum();
    let unavailable: usize = seen.iter().map(|s| s.lock().unwrap().unavailable).sum();
    eprintln!(
        "{ok} answers 200, {unavailable} answers 503; slowest while down: {slowest:?} \
         (store timeout {STORE_TIMEOUT:?})"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_mid_load_gives_quick_503s_and_the_app_recovers_with_every_acknowledged_write(
) {
    let server = Arc::new(Mutex::new(RedisServer::start_persistent()));
    let url = server.lock().unwrap().url();
    let store = RedisStore::builder()
        .prefix(random_prefix())
        .command_timeout(Duration::from_millis(500))
        .connect(&url)
        .await
        .expect("connect to the private Redis");
    let (a, b) = (server.clone(), server.clone());
    kill_in_the_middle_of_a_load(
        store,
        move || a.lock().unwrap().kill(),
        move || b.lock().unwrap().restart(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_killed_mid_load_gives_quick_503s_and_the_app_recovers_with_every_acknowledged_write(
) {
    let server = PgServer::start_durable();
    let schema = server.schema().await;
    let options = pg::options(&server, &schema);
    let server = Arc::new(Mutex::new(server));
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(STORE_TIMEOUT)
        .connect_with(options)
        .await
        .expect("connect to the private PostgreSQL");
    let store = PostgresStore::with_channel(pool, &schema)
        .await
        .expect("listen on the private PostgreSQL");
    store.migrate().await.expect("migrate");
    let (a, b) = (server.clone(), server.clone());
    kill_in_the_middle_of_a_load(
        store,
        move || a.lock().unwrap().kill(),
        move || b.lock().unwrap().restart(),
    )
    .await;
}
