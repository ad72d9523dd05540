//! What only the Redis store must show: its cost per request counted by the
//! server, keys that hold no token and all expire, Redis Cluster slots, and
//! behaviour when the server dies or hangs. Each test runs its own private
//! `redis-server` (or cluster) so that counts and faults are its own.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::Router;
use futures_util::StreamExt;
use http::StatusCode;
use sessionkit::clock::{Clock, ManualClock, Millis, SystemClock};
use sessionkit::conformance::{seal, unseal};
use sessionkit::store::redis::MAX_COMMAND_TIMEOUT;
use sessionkit::store::{
    BoundUser, Delta, Destroy, EndReason, ListSessions, Load, Lookup, NewSession, Rotated,
    Rotation, Save, SessionStore, TokenState,
};
use sessionkit::token::{SessionId, Tag, Token};
use sessionkit::Regeneration;
use sessionkit::{Device, RedisStore, SessionLayer, SessionLayerBuilder};
use support::redis::*;
use support::*;

const TIMEOUT: Duration = Duration::from_millis(400);

async fn cluster_store(urls: &[String], prefix: &str) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .cluster(urls)
        .await
        .expect("connect to the cluster")
}

async fn store(url: &str, prefix: &str) -> RedisStore {
    store_with_timeout(url, prefix, TIMEOUT).await
}

async fn store_with_timeout(url: &str, prefix: &str, timeout: Duration) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .command_timeout(timeout)
        .connect(url)
        .await
        .expect("connect to the test server")
}

fn layered(
    store: RedisStore,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> Router {
    // The shared test app: counter, login (user 5), logout, a route that
    // never touches the session (`/plain`).
    support::connections::app(configure(SessionLayer::builder(store)).build())
}

/// The commands clients sent (not those scripts ran) that touch `prefix`,
/// and the bounds of transactions, as `MONITOR` shows them, while `action`
/// runs.
async fn client_commands<F: std::future::Future>(
    url: &str,
    prefix: &str,
    action: F,
) -> Vec<String> {
    let client = ::redis::Client::open(url).unwrap();
    let mut monitor = client.get_async_monitor().await.unwrap();
    let mut lines = monitor.on_message::<String>();
    action.await;
    let marker = format!("end-{}", random_prefix());
    let mut con = connection(url).await;
    let _: String = ::redis::cmd("ECHO")
        .arg(&marker)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(2), lines.next())
        .await
        .expect("MONITOR went quiet before the marker")
    {
        if line.contains(&marker) {
            break;
        }
        // Commands run by scripts are shown as coming from `lua`; a
        // transaction's bounds name no key.
        let bound = line.ends_with("\"MULTI\"") || line.ends_with("\"EXEC\"");
        if (line.contains(prefix) || bound) && !line.contains(" lua]") {
            seen.push(line);
        }
    }
    seen
}

/// Round trips of the commands [`client_commands`] saw: a transaction
/// (`MULTI`, its commands, `EXEC`) is sent as one.
fn round_trips(sent: &[String]) -> u64 {
    let mut trips = 0;
    let mut in_multi = false;
    for line in sent {
        if line.contains("\"MULTI\"") {
            in_multi = true;
        } else if line.contains("\"EXEC\"") {
            in_multi = false;
            trips += 1;
        } else if !in_multi {
            trips += 1;
        }
    }
    trips
}

fn delta(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
    name: &str,
) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_read_costs_one_command_a_write_two_an_untouched_route_none() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = random_prefix();
    let app = layered(store(&url, &prefix).await, |b| b);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    // Count from the second request on: the first ones mint the session.
    send(&app, get("/read", Some(&token))).await;
    send(&app, post("/count", Some(&token))).await;

    // A read that changes nothing on the server is a plain HGETALL; a
    // write adds the delta as one transaction (MULTI .. EXEC, one round
    // trip); neither calls a function.
    for (request, hgetall, exec) in [
        (get("/read", Some(&token)), 1, 0),
        (post("/count", Some(&token)), 1, 1),
        (get("/plain", Some(&token)), 0, 0),
    ] {
        let uri = request.uri().to_string();
        let before = command_stats(&url).await;
        let sent = client_commands(&url, &prefix, async {
            let res = send(&app, request).await;
            assert_eq!(res.status, StatusCode::OK, "{uri}");
        })
        .await;
        let after = command_stats(&url).await;
        assert_eq!(delta(&before, &after, "hgetall"), hgetall, "{uri}: HGETALL");
        assert_eq!(delta(&before, &after, "exec"), exec, "{uri}: EXEC");
        for other in ["fcall", "evalsha", "eval", "script|load", "function|load"] {
            assert_eq!(delta(&before, &after, other), 0, "{uri}: no {other}");
        }
        assert_eq!(
            round_trips(&sent),
            hgetall + exec,
            "{uri}: round trips (commands sent, a transaction as one): {sent:#?}"
        );
    }
}

#[tokio::test]
async fn a_store_with_several_connections_takes_them_in_turn() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = random_prefix();
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connections(3)
        .connect(&url)
        .await
        .unwrap();
    let app = layered(store, |b| b);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    for n in 2..=4 {
        let res = send(&app, post("/count", Some(&token))).await;
        assert_eq!(res.body, n.to_string());
    }
    for _ in 0..3 {
        assert_eq!(send(&app, get("/read", Some(&token))).await.body, "4");
    }
    // Three reads in a row, one per connection: each connection's last
    // command is the read's HGETALL.
    let list: String = query(&url, ::redis::cmd("CLIENT").arg("LIST")).await;
    let last: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("cmd=")))
        .collect();
    assert_eq!(
        last.iter().filter(|c| **c == "hgetall").count(),
        3,
        "{list}"
    );
}

#[tokio::test]
async fn a_read_that_must_change_the_session_falls_back_to_the_script() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = random_prefix();
    let clock = ManualClock::new();
    let app = layered(store(&url, &prefix).await, |b| {
        b.clock(clock.clone())
            .idle_timeout(Duration::from_secs(600))
            .refresh_interval(Duration::from_secs(30))
    });
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    let read_costs = |app: &Router, token: String| {
        let url = url.clone();
        let app = app.clone();
        async move {
            let before = command_stats(&url).await;
            let res = send(&app, get("/read", Some(&token))).await;
            assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "1"));
            let after = command_stats(&url).await;
            (
                delta(&before, &after, "hgetall"),
                delta(&before, &after, "fcall"),
            )
        }
    };
    assert_eq!(
        read_costs(&app, token.clone()).await,
        (1, 0),
        "a fresh session"
    );
    // Once the idle deadline is due to slide, the script slides it (its
    // own HGETALL counts in the server's statistics too) ...
    clock.advance(Duration::from_secs(31));
    assert_eq!(
        read_costs(&app, token.clone()).await,
        (2, 1),
        "a refresh due"
    );
    // ... and the next read is plain again.
    assert_eq!(
        read_costs(&app, token.clone()).await,
        (1, 0),
        "just refreshed"
    );
}

/// A new anonymous session in `store` (idle timeout 1 h, no data): its
/// id, its token and the time it was created at.
async fn anonymous_session(store: &RedisStore) -> (SessionId, Token, Millis) {
    let now = SystemClock.now();
    let id = SessionId::generate(&Tag::random());
    let token = Token::generate(&id);
    store
        .create(&NewSession {
            device: None,
            id: id.clone(),
            token: token.digest(),
            now,
            idle_timeout: 3_600_000,
            absolute_deadline: None,
            user: None,
            label: None,
            data: Vec::new(),
        })
        .await
        .unwrap();
    (id, token, now)
}

/// The key of the one session hash under `prefix`.
async fn session_hash(url: &str, prefix: &str) -> String {
    let keys: Vec<String> = query(url, ::redis::cmd("KEYS").arg(format!("{prefix}*:s:*"))).await;
    let [key] =
        <[String; 1]>::try_from(keys).unwrap_or_else(|keys| panic!("one session hash: {keys:?}"));
    key
}

#[tokio::test]
async fn a_data_write_into_a_session_that_just_ended_leaves_nothing_behind() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let store = store(&url, &prefix).await;
    let (id, token, now) = anonymous_session(&store).await;
    store
        .destroy(&Destroy {
            id: id.clone(),
            reason: EndReason::LoggedOut,
            now,
        })
        .await
        .unwrap();
    // A write whose load came before the end: data alone, so a
    // transaction, which finds the session gone.
    let write = Save {
        id: id.clone(),
        delta: Delta {
            set: vec![("late".to_owned(), "1".to_owned())],
            remove: vec!["gone".to_owned()],
            ..Delta::default()
        },
        now,
    };
    assert!(
        !store.save(&write).await.unwrap(),
        "saved into an ended session"
    );
    let load = Load {
        token: token.digest(),
        now,
        refresh_after: Some(60_000),
        cijs: 10_000,
    };
    assert_eq!(store.load(&load).await.unwrap(), Lookup::Missing);
    // The hash the write made lives a millisecond.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let keys: Vec<String> = query(&url, ::redis::cmd("KEYS").arg(format!("{prefix}*"))).await;
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test]
async fn a_sessions_texts_come_back_whatever_they_hold_and_the_layout_before_is_not_read() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let store = store(&url, &prefix).await;
    let now = SystemClock.now();
    // Commas, digits and characters of several bytes: the texts share one
    // field with the comma-separated numbers.
    let user = BoundUser {
        id: "7,8 ☎".to_owned(),
        json: r#"{"id":"7,8 ☎","name":"a, b"}"#.to_owned(),
    };
    let id = SessionId::generate(&Tag::for_user(&user.id));
    let token = Token::generate(&id);
    let device = Device::new(Some("Mozilla/5.0 (X11, Linux x86_64) 1,2"), None);
    store
        .create(&NewSession {
            device: Some(device.clone()),
            id: id.clone(),
            token: token.digest(),
            now,
            idle_timeout: 3_600_000,
            absolute_deadline: None,
            user: Some(user.clone()),
            label: Some("12, phone ☎".to_owned()),
            data: vec![("k".to_owned(), "1".to_owned())],
        })
        .await
        .unwrap();
    let load = Load {
        token: token.digest(),
        now,
        refresh_after: Some(60_000),
        cijs: 10_000,
    };
    let Lookup::Found { record, .. } = store.load(&load).await.unwrap() else {
        panic!("the session just created");
    };
    assert_eq!(record.user, Some(user.clone()));
    assert_eq!(record.label.as_deref(), Some("12, phone ☎"));
    assert_eq!(record.data.get("k").map(String::as_str), Some("1"));
    let listed = store
        .list_sessions(&ListSessions {
            user_id: user.id.clone(),
            now,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label.as_deref(), Some("12, phone ☎"));
    assert_eq!(listed[0].device, Some(device));

    // The same session as the layout before wrote it: the numbers alone in
    // `m`, the texts as fields of their own. Not read: a save finds no
    // session and a load finds it missing, neither an error.
    let key = &session_hash(&url, &prefix).await;
    let m: String = query(&url, ::redis::cmd("HGET").arg(key).arg("m")).await;
    let numbers: Vec<&str> = m.split(',').take(12).collect();
    let _: () = query(
        &url,
        ::redis::cmd("HSET")
            .arg(key)
            .arg("m")
            .arg(numbers.join(","))
            .arg("uid")
            .arg(&user.id)
            .arg("user")
            .arg(&user.json),
    )
    .await;
    let write = Save {
        id: id.clone(),
        delta: Delta {
            set: vec![("k".to_owned(), "2".to_owned())],
            ..Delta::default()
        },
        now,
    };
    assert!(!store.save(&write).await.unwrap(), "saved into it");
    assert_eq!(store.load(&load).await.unwrap(), Lookup::Missing);
}

#[tokio::test]
async fn damaged_text_lengths_in_a_sessions_metadata_are_an_error_not_a_misread() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let store = store(&url, &prefix).await;
    let (_, token, now) = anonymous_session(&store).await;
    let key = &session_hash(&url, &prefix).await;
    let m: String = query(&url, ::redis::cmd("HGET").arg(key).arg("m")).await;
    let numbers: Vec<&str> = m.split(',').take(12).collect();
    // A refresh due, so that a script that misread the metadata would
    // write its misreading back.
    let load = Load {
        token: token.digest(),
        now: now + 1,
        refresh_after: Some(0),
        cijs: 10_000,
    };
    // Lengths that add up to the texts' bytes all the same, and lengths
    // that are no byte counts.
    for lengths in ["1,-1,1,", "+1,,,", "0x1,,,", "1e0,,,"] {
        let damaged = format!("{},{lengths},a", numbers.join(","));
        let _: () = query(&url, ::redis::cmd("HSET").arg(key).arg("m").arg(&damaged)).await;
        let read = store.load(&load).await;
        assert!(read.is_err(), "{damaged}: {read:?}");
        let m: String = query(&url, ::redis::cmd("HGET").arg(key).arg("m")).await;
        assert_eq!(m, damaged, "rewritten");
    }
}

#[tokio::test]
async fn keys_hold_no_token_and_every_key_expires() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let app = layered(store(&url, &prefix).await, |b| {
        b.regeneration(Regeneration::every(Duration::from_secs(60)))
    });
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(send(&app, post("/count", None)).await.cookie().unwrap());
    }
    let logged_in = send(&app, post("/login", Some(&tokens[0])))
        .await
        .cookie()
        .unwrap();
    tokens.push(logged_in);

    let found = keys(&url, &format!("{prefix}*")).await;
    assert!(found.len() >= 6, "sessions and tokens stored: {found:?}");
    let mut con = connection(&url).await;
    for key in &found {
        let ttl = ttl_ms(&url, key).await;
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        // Every value, read as what it is (not DUMP: it is compressed).
        let kind: String = ::redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        let read = match kind.as_str() {
            "string" => ::redis::cmd("GET").arg(key).clone(),
            "hash" => ::redis::cmd("HGETALL").arg(key).clone(),
            "zset" => ::redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).clone(),
            other => panic!("{key}: unexpected type {other}"),
        };
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![read.query_async(&mut con).await.unwrap()],
            _ => read.query_async(&mut con).await.unwrap(),
        };
        assert!(!values.is_empty(), "{key} is empty");
        for token in &tokens {
            // A token is its session's id (which names keys) and a secret:
            // no 16 characters of the secret are stored anywhere.
            let secret = &token[token.len() - 43..];
            for part in [&secret[..16], &secret[16..32], &secret[27..]] {
                assert!(!key.contains(part), "{key} contains a token's secret");
                for value in &values {
                    assert!(!value.contains(part), "{key} holds a token's secret");
                }
            }
        }
    }
}

#[tokio::test]
async fn once_sessions_expire_nothing_is_left() {
    // A private server, so that DBSIZE counts only this test's keys.
    let server = RedisServer::start();
    let url = server.url();
    let prefix = random_prefix();
    let before = dbsize(&url).await;
    let app = layered(store(&url, &prefix).await, |b| {
        b.idle_timeout(Duration::from_millis(900)).regeneration(
            Regeneration::every(Duration::from_millis(300))
                .grace(Duration::from_millis(200))
                .resend_for(Duration::from_millis(200)),
        )
    });
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(send(&app, post("/count", None)).await.cookie().unwrap());
    }
    for token in tokens.iter().take(4) {
        send(&app, post("/login", Some(token))).await;
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Rotations: old tokens in grace, replacements never presented.
    for token in tokens.iter().skip(4) {
        let res = send(&app, get("/read", Some(token))).await;
        assert!(res.cookie().is_some(), "a due token is replaced");
    }
    assert!(!keys(&url, &format!("{prefix}*")).await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = keys(&url, &format!("{prefix}*")).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys outlived their sessions: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dbsize(&url).await, before, "DBSIZE is back to what it was");
}

#[tokio::test]
async fn redis_down_is_a_503_within_the_timeout_and_heals_with_the_old_sessions() {
    let mut server = RedisServer::start();
    let url = server.url();
    let store = store(&url, &random_prefix()).await;
    let app = layered(store.clone(), |b| b);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();

    // Down, with its data saved to disk so the restart brings it back.
    let mut con = connection(&url).await;
    let _: ::redis::RedisResult<()> = ::redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query_async(&mut con)
        .await;
    server.kill();

    let started = Instant::now();
    let res = send(&app, post("/count", Some(&token))).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body, "session store unavailable");
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
    assert_eq!(
        send(&app, get("/plain", Some(&token))).await.status,
        StatusCode::OK
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let res = send(&app, post("/count", Some(&token))).await;
        if res.status == StatusCode::OK {
            break res.body;
        }
        assert!(Instant::now() < deadline, "the store did not heal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body, "2", "the session stored before the outage is back");

    // The session-ended feed resubscribed by itself.
    let mut feed = sessionkit::SessionStore::subscribe(&store);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let token = send(&app, post("/login", None)).await.cookie().unwrap();
        send(&app, post("/logout", Some(&token))).await;
        match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
            Ok(Ok(_)) => break,
            _ => assert!(Instant::now() < deadline, "no event after the restart"),
        }
    }
}

#[tokio::test]
async fn a_hung_redis_does_not_hang_requests() {
    let server = RedisServer::start();
    let url = server.url();
    let app = layered(store(&url, &random_prefix()).await, |b| b);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();

    server.stop();
    let started = Instant::now();
    let res = send(&app, get("/read", Some(&token))).await;
    let waited = started.elapsed();
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited >= TIMEOUT / 2 && waited < TIMEOUT * 3, "{waited:?}");
    assert_eq!(
        send(&app, get("/plain", Some(&token))).await.status,
        StatusCode::OK
    );

    server.cont();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = send(&app, post("/count", Some(&token))).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.body, "2");
            break;
        }
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cluster_keeps_a_session_in_one_slot_and_spreads_sessions() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let prefix = random_prefix();
    let store = cluster_store(&urls, &prefix).await;
    let app = layered(store, |b| b);
    let mut tokens = Vec::new();
    for _ in 0..40 {
        let token = send(&app, post("/count", None)).await.cookie().unwrap();
        assert_eq!(send(&app, post("/count", Some(&token))).await.body, "2");
        tokens.push(token);
    }
    // A login moves the session to its user's slot, data and all.
    let logged_in = send(&app, post("/login", Some(&tokens[0])))
        .await
        .cookie()
        .unwrap();
    assert_eq!(send(&app, get("/read", Some(&logged_in))).await.body, "2");
    assert_eq!(send(&app, get("/read", Some(&tokens[0]))).await.body, "0");

    let mut holders = HashSet::new();
    for master in cluster_masters(&urls).await {
        let found = keys(&master, &format!("{prefix}*")).await;
        if !found.is_empty() {
            holders.insert(master.clone());
        }
        for key in found {
            // Every key of one tag is on the node holding that tag's slot.
            let tag = key[prefix.len()..].split('}').next().unwrap().to_owned();
            let siblings = keys(&master, &format!("{prefix}{tag}}}*")).await;
            let everywhere = cluster_keys(&urls, &format!("{prefix}{tag}}}*")).await;
            assert_eq!(siblings, everywhere, "{tag}'s keys are split");
        }
    }
    assert!(holders.len() >= 2, "sessions spread over the masters");
}

#[tokio::test]
async fn a_user_index_never_piles_up_dead_entries() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let app = layered(store(&url, &prefix).await, |b| {
        b.idle_timeout(Duration::from_millis(400))
    });
    let kept = send(&app, post("/login", None)).await.cookie().unwrap();
    for _ in 0..20 {
        send(&app, post("/login", None)).await;
    }
    let index = keys(&url, &format!("{prefix}*:u:5")).await;
    assert_eq!(index.len(), 1, "{index:?}");
    let zcard = || async {
        let mut con = connection(&url).await;
        ::redis::cmd("ZCARD")
            .arg(&index[0])
            .query_async::<u64>(&mut con)
            .await
            .unwrap()
    };
    assert_eq!(zcard().await, 21);
    // The others idle out while one session stays in use (so the index key
    // itself lives on). Nobody lists them; the kept session's refreshes
    // drop them.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            send(&app, get("/read", Some(&kept))).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(zcard().await, 1);
}

/// A TCP proxy to a server that can make every connection it carries go
/// silent (no byte forwarded either way, sockets left open), as a firewall
/// or load balancer that drops its state does. Connections opened after
/// that are forwarded normally.
struct SilencingProxy {
    url: String,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilencingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilencingProxy {
    async fn start(upstream: u16) -> SilencingProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let current = generation.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)]
                {
                    let current = current.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if current.load(Ordering::SeqCst) != born {
                                // Silenced: hold both sockets, forward nothing.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        SilencingProxy {
            url,
            generation,
            task,
        }
    }

    fn silence_open_connections(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_silent_server_fails_a_request_at_the_layers_timeout_when_it_is_shorter_than_the_stores()
{
    let server = RedisServer::start();
    let proxy = SilencingProxy::start(server.port()).await;
    let store = store_with_timeout(&proxy.url, &random_prefix(), Duration::from_secs(10)).await;
    // The layer sets no timer of its own around the Redis store: the store
    // must give up by the layer's deadline.
    let app = layered(store, |b| b.store_timeout(Duration::from_millis(300)));
    let token = send(&app, post("/count", None)).await.cookie().unwrap();

    proxy.silence_open_connections();
    let started = Instant::now();
    let res = send(&app, post("/count", Some(&token))).await;
    let took = started.elapsed();
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_goes_silent_is_replaced_for_commands_and_events() {
    let server = RedisServer::start();
    let proxy = SilencingProxy::start(server.port()).await;
    let store = store_with_timeout(&proxy.url, &random_prefix(), Duration::from_millis(200)).await;
    let app = layered(store.clone(), |b| b);
    let mut feed = sessionkit::SessionStore::subscribe(&store);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();

    proxy.silence_open_connections();
    // Requests time out, a few in a row, then the store opens a new
    // connection and they succeed again, with the session stored before.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut failed = 0;
    loop {
        let res = send(&app, post("/count", Some(&token))).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.body, "2", "the session survived");
            break;
        }
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
        failed += 1;
        assert!(Instant::now() < deadline, "never reconnected");
    }
    assert!(failed >= 1, "the silenced connection did time out");

    // The event subscription went silent too: its ping goes unanswered and
    // it resubscribes on a new connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let token = send(&app, post("/login", None)).await.cookie().unwrap();
        send(&app, post("/logout", Some(&token))).await;
        match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
            Ok(Ok(event)) if event.reason == sessionkit::store::EndReason::LoggedOut => break,
            _ => assert!(Instant::now() < deadline, "the feed never came back"),
        }
    }
}

/// Every string the keys under `prefix` hold: values, hash fields and
/// values, set members.
async fn stored_strings(url: &str, prefix: &str) -> Vec<(String, String)> {
    let mut con = connection(url).await;
    let mut out = Vec::new();
    for key in keys(url, &format!("{prefix}*")).await {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap()],
            "hash" => ::redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap(),
            "zset" => ::redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut con)
                .await
                .unwrap(),
            other => panic!("{key}: unexpected type {other}"),
        };
        out.extend(values.into_iter().map(|v| (key.clone(), v)));
    }
    out
}

/// Whether any stored string, or any run of token characters inside one,
/// opens with `old` to `live`.
fn unseals_to(stored: &[(String, String)], old: &Token, live: &Token) -> Option<String> {
    stored.iter().find_map(|(key, value)| {
        let runs = value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        std::iter::once(value.as_str())
            .chain(runs)
            .any(|candidate| unseal(old, candidate).as_ref() == Some(live))
            .then(|| key.clone())
    })
}

#[tokio::test]
async fn a_copy_of_the_store_and_an_old_token_never_yield_a_live_token() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    let prefix = random_prefix();
    let store = store(&url, &prefix).await;
    let now = SystemClock.now();
    let tag = Tag::random();
    let id = SessionId::generate(&tag);
    let old = Token::generate(&id);
    store
        .create(&NewSession {
            device: None,
            id: id.clone(),
            token: old.digest(),
            now,
            idle_timeout: 3_600_000,
            absolute_deadline: None,
            user: None,
            label: None,
            data: Vec::new(),
        })
        .await
        .unwrap();
    let new = Token::generate(&id);
    let ojs = 30_000;
    let rotated = store
        .rotate(&Rotation {
            id: id.clone(),
            old: old.digest(),
            new: new.digest(),
            sealed: seal(&old, &new),
            now: now + 1,
            ojs,
            cijs: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(rotated, Rotated::Installed);

    // Until it is adopted, the replacement is kept sealed (so that parallel
    // requests with the old token get it), for no longer than the grace.
    let stored = stored_strings(&url, &prefix).await;
    let holder = unseals_to(&stored, &old, &new).expect("the sealed replacement is stored");
    let ttl = ttl_ms(&url, &holder).await;
    assert!(
        ttl > 0 && ttl <= i64::try_from(ojs).unwrap(),
        "{holder} outlives the grace window: {ttl} ms"
    );

    // Once the client presented it, nothing opens to it any more.
    let load = Load {
        token: new.digest(),
        now: now + 2,
        refresh_after: Some(60_000),
        cijs: 10_000,
    };
    let found = store.load(&load).await.unwrap();
    assert!(matches!(
        found,
        Lookup::Found {
            token: TokenState::Current,
            ..
        }
    ));
    let stored = stored_strings(&url, &prefix).await;
    assert_eq!(
        unseals_to(&stored, &old, &new),
        None,
        "after adoption, a dump and the old token still yield the live token"
    );
}

#[tokio::test]
async fn store_options_that_would_overflow_are_refused() {
    let server = RedisServer::shared_or_start();
    let url = server.url();
    for timeout in [
        Duration::MAX,
        Duration::ZERO,
        MAX_COMMAND_TIMEOUT + Duration::from_millis(1),
    ] {
        let built = RedisStore::builder()
            .command_timeout(timeout)
            .connect(&url)
            .await;
        assert!(built.is_err(), "command_timeout({timeout:?}) was accepted");
    }
    assert!(RedisStore::builder()
        .command_timeout(MAX_COMMAND_TIMEOUT)
        .connect(&url)
        .await
        .is_ok());
}

/// The names of the Functions libraries a server holds.
async fn libraries(url: &str) -> Vec<String> {
    let list: ::redis::Value = query(url, ::redis::cmd("FUNCTION").arg("LIST")).await;
    let ::redis::Value::Array(libs) = list else {
        panic!("FUNCTION LIST: {list:?}")
    };
    libs.iter()
        .filter_map(|lib| match lib {
            ::redis::Value::Array(fields) | ::redis::Value::Set(fields) => {
                fields.windows(2).find_map(|w| match (&w[0], &w[1]) {
                    (::redis::Value::BulkString(k), ::redis::Value::BulkString(v))
                        if k == b"library_name" =>
                    {
                        Some(String::from_utf8_lossy(v).into_owned())
                    }
                    _ => None,
                })
            }
            ::redis::Value::Map(fields) => fields.iter().find_map(|(k, v)| match (k, v) {
                (::redis::Value::BulkString(k), ::redis::Value::BulkString(v))
                    if k == b"library_name" =>
                {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            }),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_library_is_loaded_again_after_a_flush_or_a_restart() {
    let mut server = RedisServer::start();
    let url = server.url();
    let app = layered(store(&url, &random_prefix()).await, |b| b);
    let ours = libraries(&url).await;
    assert_eq!(ours.len(), 1, "one library, loaded on connect: {ours:?}");
    assert!(ours[0].starts_with("sessionkit_"), "{ours:?}");
    let token = send(&app, post("/count", None)).await.cookie().unwrap();

    // Flushed: plain reads and data writes go on without it, and the next
    // call of a function (a login) loads it again.
    let _: () = query(&url, ::redis::cmd("FUNCTION").arg("FLUSH")).await;
    assert!(libraries(&url).await.is_empty());
    let res = send(&app, post("/count", Some(&token))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
    let res = send(&app, post("/login", Some(&token))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(libraries(&url).await, ours);

    // Restarted without its data (no persistence): the library is gone with
    // it, and comes back with the first request that reconnects.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = send(&app, post("/count", None)).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.body, "1");
            break;
        }
        assert!(Instant::now() < deadline, "the store did not heal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(libraries(&url).await, ours);
}

#[tokio::test]
async fn without_functions_scripts_run_with_evalsha_and_are_loaded_again() {
    let server = RedisServer::start();
    let url = server.url();
    // A user that may not use FUNCTION stands in for a server before 7.0.
    let _: () = query(
        &url,
        ::redis::cmd("ACL")
            .arg("SETUSER")
            .arg("nofn")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .arg("-function"),
    )
    .await;
    let limited = url.replacen("redis://", "redis://nofn:pw@", 1);
    let app = layered(store(&limited, &random_prefix()).await, |b| b);
    let token = send(&app, post("/count", None)).await.cookie().unwrap();
    // Each script is loaded at its first use (an EVALSHA answered NOSCRIPT,
    // then loaded and run again): count from the second save on.
    send(&app, post("/count", Some(&token))).await;

    let before = command_stats(&url).await;
    let res = send(&app, post("/count", Some(&token))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "3"));
    let after = command_stats(&url).await;
    assert_eq!(delta(&before, &after, "evalsha"), 1, "one EVALSHA a write");
    assert_eq!(delta(&before, &after, "fcall"), 0, "no FCALL");
    assert!(libraries(&url).await.is_empty());

    let _: () = query(&url, ::redis::cmd("SCRIPT").arg("FLUSH")).await;
    let res = send(&app, post("/count", Some(&token))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "4"));
}

#[tokio::test]
async fn every_cluster_master_gets_the_library_and_gets_it_again_after_a_flush() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let store = cluster_store(&urls, &random_prefix()).await;
    let masters = cluster_masters(&urls).await;
    let ours = libraries(&masters[0]).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    for master in &masters {
        assert_eq!(libraries(master).await, ours, "{master}");
    }
    let app = layered(store, |b| b);
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(send(&app, post("/count", None)).await.cookie().unwrap());
    }
    for master in &masters {
        let _: () = query(master, ::redis::cmd("FUNCTION").arg("FLUSH")).await;
    }
    // Sessions on every master (20 spread over 3) work on.
    for token in &tokens {
        let res = send(&app, post("/count", Some(token))).await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
    }
    for master in &masters {
        assert_eq!(libraries(master).await, ours, "{master}");
    }
}

#[tokio::test]
async fn sessions_carry_on_through_a_cluster_failover_and_the_new_master_has_the_library() {
    let mut cluster = RedisCluster::start_private();
    let replica = cluster.add_replica(0);
    let urls = cluster.urls();
    let prefix = random_prefix();
    let store = cluster_store(&urls, &prefix).await;
    let app = layered(store, |b| b);
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(send(&app, post("/count", None)).await.cookie().unwrap());
    }
    let pattern = format!("{prefix}*");
    let moved = keys(&urls[0], &pattern).await.len();
    assert!(
        moved > 0,
        "some of the 20 sessions live on the master that steps down"
    );
    let ours = libraries(&urls[0]).await;

    cluster.fail_over_to(replica);
    let promoted = cluster.node(replica).url();
    assert_eq!(
        libraries(&promoted).await,
        ours,
        "the new master has the library"
    );
    // Every session, those on the new master included, reads and writes
    // on: the client follows the cluster to its new master.
    for token in &tokens {
        let res = send(&app, post("/count", Some(token))).await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
        let res = send(&app, get("/read", Some(token))).await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
    }
    // Logins (functions, each moving its session to the user's slot) and
    // the sessions they start work too.
    for token in &tokens {
        let res = send(&app, post("/login", Some(token))).await;
        assert_eq!(res.status, StatusCode::OK);
        let logged_in = res.cookie().expect("a login issues a new token");
        let res = send(&app, get("/read", Some(&logged_in))).await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "2"));
    }
}
