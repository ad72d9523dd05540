//! What only the SQL stores must show: PostgreSQL's cost per call and per
//! request counted by the server itself, the session-ended feed across
//! stores, a user with 100,000 sessions, the opt-in cleanup, and SQLite
//! shared by two pools without "database is locked".
//!
//! The PostgreSQL server is the test binary's private one (or
//! `DATABASE_URL`), each test in a schema of its own.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use sessionkit::clock::Millis;
use sessionkit::conformance::seal;
use sessionkit::store::*;
use sessionkit::token::{Tag, Token};
use sessionkit::{Clock, ManualClock, PostgresStore, SessionId, SessionLayer, SqliteStore};
use sqlx::postgres::PgPoolOptions;
use support::stores::{postgres, postgres_store, sqlite_store};
use support::*;

const MINUTE: Millis = 60_000;

fn now() -> Millis {
    sessionkit::SystemClock.now()
}

fn new_session(now: Millis, user: Option<&str>) -> (NewSession, Token) {
    let tag = user.map_or_else(Tag::random, Tag::for_user);
    let token = Token::generate(&SessionId::generate(&tag));
    let new = NewSession {
        device: None,
        id: token.session_id(),
        token: token.digest(),
        now,
        idle_timeout: 30 * MINUTE,
        absolute_deadline: None,
        user: user.map(|id| BoundUser {
            id: id.to_owned(),
            json: format!("{{\"id\":\"{id}\"}}"),
        }),
        label: None,
        data: vec![("k".into(), "1".into())],
    };
    (new, token)
}

fn opts(token: &Token, now: Millis, refresh_after: Option<Millis>) -> Load {
    Load {
        token: token.digest(),
        now,
        refresh_after,
        cijs: 10_000,
    }
}

/// A store whose connections log every statement they run to the private
/// server's log, under the schema's name; `None` on a shared server, whose
/// log this process cannot read.
async fn logged_store() -> Option<(PostgresStore, String, &'static Path)> {
    let server = postgres();
    let Some(log) = server.log() else {
        eprintln!("DATABASE_URL is set: statement counts need the private server's log; skipped");
        return None;
    };
    let schema = server.schema().await;
    let options = support::postgres::options(server, &schema).options([("log_statement", "all")]);
    // One connection, so that every statement runs on the one whose
    // statement cache the warm-up filled; no ping before each call, as
    // `PostgresStore::connect` sets it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .expect("connect to the test server");
    let store = PostgresStore::with_channel(pool, &schema).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, schema, log))
}

/// The statements connections named `app` ran while `action` ran, as the
/// server logged them (`log_statement = all`).
///
/// Why this counts round trips: sqlx sends each statement as one flight
/// (Bind, Execute, Sync, for a statement already prepared on the
/// connection) and waits for its `ReadyForQuery`, and `BEGIN`/`COMMIT` are
/// statements too; the server logs each execution once, before running it,
/// so every line is in the log when the call returns. Preparing a statement
/// the first time on a connection costs one more round trip (Parse,
/// Describe), which is why the counts start after a warm-up; pings before
/// an acquire are off (`test_before_acquire(false)`).
async fn statements<F: std::future::Future>(
    log: &Path,
    app: &str,
    action: F,
) -> (F::Output, Vec<String>) {
    let from = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0) as usize;
    let out = action.await;
    let text = std::fs::read(log).expect("read the server log");
    let prefix = format!("{app}|LOG:  ");
    let lines = String::from_utf8_lossy(&text[from.min(text.len())..])
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| l.starts_with("statement: ") || l.starts_with("execute "))
        .map(str::to_owned)
        .collect();
    (out, lines)
}

/// Where statements are counted: a store on one logged connection.
struct Counted {
    store: PostgresStore,
    app: String,
    log: &'static Path,
}

impl Counted {
    /// Runs `action` and checks that it ran `expected` statements.
    async fn expect<T>(
        &self,
        what: &str,
        expected: usize,
        action: impl std::future::Future<Output = T>,
    ) -> T {
        let (out, ran) = statements(self.log, &self.app, action).await;
        assert_eq!(ran.len(), expected, "{what}: statements run: {ran:#?}");
        out
    }
}

/// Every call the counts cover, on a fresh session, each checked against
/// its cost unless `check` is off (the warm-up).
async fn calls(c: &Counted, check: bool) {
    let s = &c.store;
    let cost = |n: usize| if check { n } else { usize::MAX };
    let run = |what: &'static str, n: usize| (what, cost(n));
    let t = now();
    let (new, token) = new_session(t, None);
    let id = new.id.clone();
    macro_rules! count {
        ($what:expr, $n:expr, $action:expr) => {{
            let (what, n) = run($what, $n);
            if n == usize::MAX {
                $action.await
            } else {
                c.expect(what, n, $action).await
            }
        }};
    }
    count!("create", 1, s.create(&new)).unwrap();
    let delta = Delta {
        set: vec![("a".into(), "\"x\"".into())],
        remove: vec!["k".into()],
        ..Delta::default()
    };
    assert!(count!(
        "save",
        1,
        s.save(&Save {
            id: id.clone(),
            delta: delta.clone(),
            now: t + 1
        })
    )
    .unwrap());
    let read = count!(
        "a load with nothing to write",
        1,
        s.load(&opts(&token, t + 2, Some(MINUTE)))
    )
    .unwrap();
    match read {
        Lookup::Found {
            record,
            token: TokenState::Current,
        } => {
            assert_eq!(record.data.get("a").map(String::as_str), Some("\"x\""));
            assert!(!record.data.contains_key("k"), "the save removed k");
        }
        other => panic!("load after save: {other:?}"),
    }
    let slid = count!(
        "a load sliding the idle deadline",
        2,
        s.load(&opts(&token, t + 2 * MINUTE, Some(MINUTE)))
    )
    .unwrap();
    assert!(matches!(slid, Lookup::Found { .. }));
    let next = Token::generate(&token.session_id());
    let rotation = Rotation {
        id: id.clone(),
        old: token.digest(),
        new: next.digest(),
        sealed: seal(&token, &next),
        now: t + 3 * MINUTE,
        ojs: 30_000,
        cijs: 10_000,
    };
    assert_eq!(
        count!("rotate", 2, s.rotate(&rotation)).unwrap(),
        Rotated::Installed
    );
    let fetch = Fetch {
        id: id.clone(),
        known: Some(token.digest()),
        lease: Some(("c1".into(), t + 4 * MINUTE)),
        now: t + 3 * MINUTE + 1,
    };
    assert!(count!("fetch", 2, s.fetch(&fetch)).unwrap().is_some());
    let fresh = Token::generate(&token.session_id());
    let regenerated = count!(
        "regenerate",
        2,
        s.regenerate(&Regenerate {
            id: id.clone(),
            token: fresh.digest(),
            delta: Delta::default(),
            now: t + 3 * MINUTE + 2
        })
    );
    assert!(regenerated.unwrap());
    let silent = count!(
        "a silent load",
        1,
        s.load(&opts(&fresh, t + 3 * MINUTE + 3, None))
    )
    .unwrap();
    assert!(matches!(silent, Lookup::Found { .. }));
    assert!(count!(
        "destroy",
        1,
        s.destroy(&Destroy {
            id: id.clone(),
            reason: EndReason::LoggedOut,
            now: t + 3 * MINUTE + 4
        })
    )
    .unwrap());
}

#[tokio::test]
async fn on_postgres_a_read_is_one_statement_and_a_write_at_most_two() {
    let Some((store, app, log)) = logged_store().await else {
        return;
    };
    let counted = Counted { store, app, log };
    calls(&counted, false).await;
    calls(&counted, true).await;
}

#[tokio::test]
async fn on_postgres_a_read_request_costs_one_statement_and_a_writing_one_two() {
    let Some((store, app, log)) = logged_store().await else {
        return;
    };
    let web = support::connections::app(SessionLayer::builder(store).build());
    let token = send(&web, post("/count", None)).await.cookie().unwrap();
    // Statements are prepared on first use; count from then on.
    send(&web, get("/read", Some(&token))).await;
    send(&web, post("/count", Some(&token))).await;
    for (request, expected) in [
        (get("/read", Some(&token)), 1),
        (post("/count", Some(&token)), 2),
        (get("/plain", Some(&token)), 0),
    ] {
        let uri = request.uri().to_string();
        let (status, ran) = statements(log, &app, async { send(&web, request).await.status }).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(ran.len(), expected, "{uri}: statements run: {ran:#?}");
    }
}

#[tokio::test]
async fn on_postgres_ends_reach_every_store_on_the_database() {
    let schema = postgres().schema().await;
    let a = postgres_store(&schema, PgPoolOptions::new().max_connections(2)).await;
    let b = postgres_store(&schema, PgPoolOptions::new().max_connections(2)).await;
    let mut heard_by_a = a.subscribe();
    let t = now();
    let (new, _) = new_session(t, None);
    a.create(&new).await.unwrap();
    assert!(b
        .destroy(&Destroy {
            id: new.id.clone(),
            reason: EndReason::LoggedOut,
            now: t + 1
        })
        .await
        .unwrap());
    let event = tokio::time::timeout(Duration::from_secs(2), heard_by_a.recv())
        .await
        .expect("store A heard of the end within two seconds")
        .unwrap();
    assert_eq!(
        event,
        SessionEnded {
            id: new.id,
            reason: EndReason::LoggedOut
        }
    );
}

const MANY: i64 = 100_000;

/// Inserts `MANY` sessions of `user` in one statement, ids and hashes made
/// up by the database (`n` is the row number), live until `t + 30 min`.
fn bulk_sessions_sql(series: &str) -> String {
    format!(
        "INSERT INTO sessionkit_sessions (id, user_id, user_json, label, data, created_at, \
         last_seen, idle_timeout, absolute_deadline, expires_at, ttg, rotated_at, renew_token, \
         current_hash, adopted, resend_until, previous_hash, grace_until, sealed, version) \
         SELECT $1 || {pad}, $2, '{{}}', NULL, '{{}}', $3 + n, $3, 1800000, NULL, $3 + 1800000, \
         $3, NULL, FALSE, 'bulk-' || n, TRUE, 0, NULL, NULL, NULL, 0 FROM {series}",
        pad = if series.contains("generate_series") {
            "lpad(n::text, 22, '0')"
        } else {
            "substr('0000000000000000000000' || n, -22)"
        }
    )
}

/// What a user with `MANY` sessions costs: the calls that touch one
/// session stay fast (they go by primary key or token index), and the
/// calls that walk the user's index do it in bounded chunks.
async fn a_user_with_many_sessions(db: Backend, user: &str) {
    let t = now();
    db.insert_many(user, t).await;
    let store = db.store();
    // One ordinary session of the same user, with a real token.
    let (new, token) = new_session(t, Some(user));
    store.create(&new).await.unwrap();
    let started = Instant::now();
    let listed = store
        .list_sessions(&ListSessions {
            user_id: user.to_owned(),
            now: t + 1,
        })
        .await
        .unwrap();
    let list_took = started.elapsed();
    assert_eq!(listed.len() as i64, MANY + 1);
    assert!(listed
        .windows(2)
        .all(|w| w[0].created_at <= w[1].created_at));

    let started = Instant::now();
    for i in 0..100 {
        let found = store.load(&opts(&token, t + 2 + i, None)).await.unwrap();
        assert!(matches!(found, Lookup::Found { .. }));
    }
    let loads_took = started.elapsed();
    let victim = listed[MANY as usize / 2].id.clone();
    let started = Instant::now();
    let revoked = store
        .revoke(&RevokeSessions {
            user_id: user.to_owned(),
            scope: Revoke::One(victim.clone()),
            now: t + 30,
        })
        .await
        .unwrap();
    let revoke_one_took = started.elapsed();
    assert_eq!(revoked, vec![victim]);

    let started = Instant::now();
    let synced = store
        .sync_user(&SyncUser {
            user: BoundUser {
                id: user.into(),
                json: "{\"v\":2}".into(),
            },
            now: t + 40,
        })
        .await
        .unwrap();
    let sync_took = started.elapsed();
    assert_eq!(synced as i64, MANY);

    let started = Instant::now();
    let revoked = store
        .revoke(&RevokeSessions {
            user_id: user.to_owned(),
            scope: Revoke::AllExcept(new.id.clone()),
            now: t + 50,
        })
        .await
        .unwrap();
    let revoke_all_took = started.elapsed();
    assert_eq!(revoked.len() as i64, MANY - 1);
    assert_eq!(
        store
            .list_sessions(&ListSessions {
                user_id: user.to_owned(),
                now: t + 60
            })
            .await
            .unwrap()
            .len(),
        1
    );
    eprintln!(
        "{MANY} sessions of one user: list {list_took:?}, 100 loads {loads_took:?}, \
         revoke one {revoke_one_took:?}, sync_user {sync_took:?}, revoke all {revoke_all_took:?}"
    );
    // Generous bounds (a debug build on a loaded 2-core machine): what
    // they catch is a scan of the table per call (some 15 ms each at this
    // size), not a slow machine (an indexed load is well under 1 ms).
    assert!(
        loads_took < Duration::from_millis(1500),
        "100 loads took {loads_took:?}"
    );
    assert!(
        revoke_one_took < Duration::from_millis(500),
        "revoke one took {revoke_one_took:?}"
    );
    assert!(
        list_took < Duration::from_secs(10),
        "listing took {list_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_user_with_100_000_sessions_stays_fast() {
    a_user_with_many_sessions(Backend::postgres().await, "many-pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_user_with_100_000_sessions_stays_fast() {
    a_user_with_many_sessions(Backend::sqlite().await, "many-sqlite").await;
}

/// A store on one of the SQL backends, with what a test does to its
/// database behind its back.
enum Backend {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

impl Backend {
    async fn postgres() -> Backend {
        let schema = postgres().schema().await;
        Backend::Postgres(postgres_store(&schema, PgPoolOptions::new().max_connections(2)).await)
    }

    async fn sqlite() -> Backend {
        Backend::Sqlite(sqlite_store(&sqlite_url()).await)
    }

    fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Backend::Postgres(store) => Arc::new(store.clone()),
            Backend::Sqlite(store) => Arc::new(store.clone()),
        }
    }

    fn spawn_cleanup(&self, clock: ManualClock) -> sessionkit::store::CleanupHandle {
        let interval = Duration::from_millis(50);
        match self {
            Backend::Postgres(store) => store.spawn_cleanup_with_clock(interval, clock),
            Backend::Sqlite(store) => store.spawn_cleanup_with_clock(interval, clock),
        }
    }

    async fn execute(&self, sql: &str) {
        on_pool!(self, |pool| sqlx::query(sql).execute(pool).await.map(drop)).unwrap();
    }

    async fn count_sessions(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM sessionkit_sessions";
        on_pool!(self, |pool| sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
    }

    /// Inserts `MANY` sessions of `user` at `t` and updates the planner's
    /// statistics, each in the dialect's words.
    async fn insert_many(&self, user: &str, t: Millis) {
        let (series, analyze) = match self {
            Backend::Postgres(_) => (
                format!("generate_series(1, {MANY}) AS n"),
                "ANALYZE sessionkit_sessions",
            ),
            Backend::Sqlite(_) => (
                format!(
                    "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s \
                     WHERE n < {MANY}) SELECT n FROM s)"
                ),
                "ANALYZE",
            ),
        };
        let (sql, tag) = (bulk_sessions_sql(&series), Tag::for_user(user));
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(tag.as_str())
            .bind(user)
            .bind(t as i64)
            .execute(pool)
            .await
            .map(drop))
        .expect("insert the sessions");
        self.execute(analyze).await;
    }
}

/// Runs `$body` with `$pool` the backend's pool, whichever type it is.
macro_rules! on_pool {
    ($backend:expr, |$pool:ident| $body:expr) => {
        match $backend {
            Backend::Postgres(store) => {
                let $pool = store.pool();
                $body
            }
            Backend::Sqlite(store) => {
                let $pool = store.pool();
                $body
            }
        }
    };
}
use on_pool;

fn sqlite_url() -> String {
    support::stores::sqlite_url()
}

/// The cleanup task deletes what expired (by the clock it is given) and
/// publishes the ends.
async fn cleanup_deletes_expired_sessions(db: Backend) {
    let store = db.store();
    let clock = ManualClock::new();
    let t = clock.now();
    let (new, _) = new_session(t, None);
    store.create(&new).await.unwrap();
    let mut ends = store.subscribe();
    let _cleanup = db.spawn_cleanup(clock.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(db.count_sessions().await, 1, "a live session stays");
    clock.advance(Duration::from_secs(31 * 60));
    let event = tokio::time::timeout(Duration::from_secs(3), ends.recv())
        .await
        .expect("the cleanup published the end within three seconds")
        .unwrap();
    assert_eq!(
        event,
        SessionEnded {
            id: new.id,
            reason: EndReason::Expired
        }
    );
    assert_eq!(db.count_sessions().await, 0, "the expired row is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_cleanup_task_deletes_expired_sessions() {
    cleanup_deletes_expired_sessions(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_cleanup_task_deletes_expired_sessions() {
    cleanup_deletes_expired_sessions(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_two_pools_on_one_file_write_at_once_without_database_is_locked() {
    let url = sqlite_url();
    let a = sqlite_store(&url).await;
    let b = SqliteStore::connect(&url).await.unwrap();
    let t = now();
    let user = "busy";
    // Anonymous, so that the logins' limit does not evict it.
    let (new, token) = new_session(t, None);
    a.create(&new).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (id, token) = (new.id.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (fresh, _) = new_session(t + i, Some(user));
            let login = Login {
                from: None,
                delta: Delta::default(),
                session: fresh,
                max_sessions: Some(10),
            };
            store.login(&login).await?;
            let delta = Delta {
                set: vec![(format!("k{i}"), i.to_string())],
                ..Delta::default()
            };
            store
                .save(&Save {
                    id: id.clone(),
                    delta: delta.clone(),
                    now: t + i,
                })
                .await?;
            store.load(&opts(&token, t + i, Some(1))).await?;
            Ok::<_, StoreError>(())
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .unwrap_or_else(|e| panic!("a concurrent call failed: {e}"));
    }
    // Every save landed, and the limit held across both pools.
    match a.load(&opts(&token, t + 100, None)).await.unwrap() {
        Lookup::Found { record, .. } => assert_eq!(record.data.len(), 41),
        other => panic!("{other:?}"),
    }
    assert!(
        b.list_sessions(&ListSessions {
            user_id: user.to_owned(),
            now: t + 100
        })
        .await
        .unwrap()
        .len()
            <= 10
    );
}

/// Rows that no store would write make calls fail with an error, never a
/// panic: `corrupt` runs an `UPDATE` on every row.
async fn a_corrupt_row_is_an_error_not_a_panic(db: Backend) {
    let store = db.store();
    let t = now();
    let (new, token) = new_session(t, None);
    store.create(&new).await.unwrap();
    db.execute("UPDATE sessionkit_sessions SET data = 'not json'")
        .await;
    let err = store
        .load(&opts(&token, t + 1, None))
        .await
        .expect_err("a row with unreadable data");
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert_eq!(err.kind(), sessionkit::store::StoreErrorKind::Corrupt);
    db.execute("UPDATE sessionkit_sessions SET data = '{}', last_seen = -5")
        .await;
    assert!(store
        .rotate(&Rotation {
            id: new.id.clone(),
            old: token.digest(),
            new: Token::generate(&token.session_id()).digest(),
            sealed: String::new(),
            now: t + 2,
            ojs: 1,
            cijs: 1,
        })
        .await
        .is_err());
    db.execute("UPDATE sessionkit_sessions SET last_seen = 0, id = 'not an id'")
        .await;
    assert!(store
        .list_sessions(&ListSessions {
            user_id: "nobody".to_owned(),
            now: t + 3
        })
        .await
        .unwrap()
        .is_empty());
    assert!(store.load(&opts(&token, t + 3, None)).await.is_err());
}

#[tokio::test]
async fn on_sqlite_a_corrupt_row_is_an_error_not_a_panic() {
    a_corrupt_row_is_an_error_not_a_panic(Backend::sqlite().await).await;
}

#[tokio::test]
async fn on_postgres_a_corrupt_row_is_an_error_not_a_panic() {
    a_corrupt_row_is_an_error_not_a_panic(Backend::postgres().await).await;
}
