//! Redis work stays bounded whatever the size of a user's index: with
//! 100,000 sessions of one user, listing them and logging out everywhere
//! run in short scripts and never keep another client waiting. Alone in its
//! binary (and on its own private server), so that nothing else competes
//! for the server or the machine while it measures.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::clock::{Clock, SystemClock};
use sessionkit::store::{
    BoundUser, Delta, ListSessions, Login, NewSession, Revoke, RevokeSessions, SessionStore,
};
use sessionkit::token::{SessionId, Tag, Token};
use sessionkit::RedisStore;
use support::redis::*;

const SESSIONS: usize = 100_000;
/// How long another client's PINGs may wait (95th percentile) while the
/// store works.
const PING_BUDGET: Duration = Duration::from_millis(10);
/// How long the server may spend in one of the store's commands (a
/// script's whole run), 99th percentile.
const COMMAND_BUDGET: Duration = Duration::from_millis(5);

fn login(user: &str, now: u64) -> Login {
    let tag = Tag::for_user(user);
    let token = Token::generate(&SessionId::generate(&tag));
    Login {
        from: None,
        delta: Delta::default(),
        session: NewSession {
            device: None,
            id: token.session_id(),
            token: token.digest(),
            now,
            idle_timeout: 3_600_000,
            absolute_deadline: None,
            user: Some(BoundUser {
                id: user.to_owned(),
                json: format!(r#"{{"id":"{user}"}}"#),
            }),
            label: None,
            data: Vec::new(),
        },
        max_sessions: None,
    }
}

async fn redis(url: &str, args: &[&str]) -> ::redis::Value {
    let mut con = connection(url).await;
    let mut cmd = ::redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut con).await.expect(args[0])
}

/// How long the scripts the server ran since the last call took, from its
/// slow log (which times a command inside the server: a script's whole
/// run), slowest first.
async fn script_times(url: &str) -> Vec<Duration> {
    let entries: Vec<Vec<::redis::Value>> =
        ::redis::from_redis_value(redis(url, &["SLOWLOG", "GET", "-1"]).await)
            .expect("slow log entries");
    redis(url, &["SLOWLOG", "RESET"]).await;
    let mut times: Vec<Duration> = entries
        .iter()
        .filter_map(|entry| {
            // Each entry: id, timestamp, microseconds, arguments, client, name.
            let micros: u64 = ::redis::from_redis_value_ref(entry.get(2)?).ok()?;
            let args: Vec<String> = ::redis::from_redis_value_ref(entry.get(3)?).ok()?;
            let name = args.first()?.to_ascii_uppercase();
            (name.starts_with("EVAL") || name.starts_with("FCALL"))
                .then(|| Duration::from_micros(micros))
        })
        .collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    times
}

/// How long something took, many times over: the 99th (or 95th) percentile
/// and the slowest. Not the slowest alone: on a loaded machine a process is
/// descheduled now and then, in the middle of a command or a PING.
#[derive(Debug)]
#[allow(dead_code)] // `slowest` is there for the report.
struct Spread {
    high: Duration,
    slowest: Duration,
}

fn spread(mut times: Vec<Duration>, percentile: usize) -> Spread {
    times.sort_unstable_by(|a, b| b.cmp(a));
    let at = (times.len() * (100 - percentile) / 100).min(times.len().saturating_sub(1));
    Spread {
        high: times.get(at).copied().unwrap_or_default(),
        slowest: times.first().copied().unwrap_or_default(),
    }
}

/// Runs `action` while a client on its own thread PINGs the server in a
/// loop; returns what the action returned and how long each PING took.
async fn with_pings<T>(
    url: &str,
    action: impl std::future::Future<Output = T>,
) -> (T, Vec<Duration>) {
    let done = Arc::new(AtomicBool::new(false));
    let pinger = {
        let client = ::redis::Client::open(url).expect("a client");
        let done = done.clone();
        std::thread::spawn(move || {
            let mut con = client.get_connection().expect("a connection");
            let mut waits = Vec::new();
            // Bounded by the action, and by a count in case it never ends.
            for _ in 0..1_000_000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let start = Instant::now();
                let _: String = ::redis::cmd("PING").query(&mut con).expect("PING");
                waits.push(start.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            waits
        })
    };
    let out = action.await;
    done.store(true, Ordering::SeqCst);
    (out, pinger.join().expect("the pinging thread"))
}

/// Runs `action` and checks that neither the store's scripts nor another
/// client's PINGs took long meanwhile.
async fn bounded<T>(url: &str, what: &str, action: impl std::future::Future<Output = T>) -> T {
    script_times(url).await;
    let (out, pings) = with_pings(url, action).await;
    let scripts = script_times(url).await;
    let logged = scripts.len();
    let (scripts, pings) = (spread(scripts, 99), spread(pings, 95));
    eprintln!("{what}: {logged} scripts over 100 µs {scripts:?}, PINGs {pings:?}");
    assert!(logged > 1, "{what} ran in {logged} script");
    assert!(
        scripts.high < COMMAND_BUDGET,
        "{what}: the store's scripts ran for {scripts:?}"
    );
    assert!(
        pings.high < PING_BUDGET,
        "{what}: another client's PINGs waited {pings:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_sessions_of_one_user_never_block_another_client() {
    let server = RedisServer::start();
    let url = server.url();
    let store = RedisStore::builder()
        .prefix(random_prefix())
        .connect(&url)
        .await
        .expect("connect to the test server");
    let user = "many";
    let now = SystemClock.now();

    // Concurrent logins, pipelined over the store's connection.
    let workers = 16;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..SESSIONS / workers {
                    store.login(&login(user, now)).await.expect("login");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a login task");
    }

    // Scripts over 100 µs: the percentiles are of those, which only makes
    // them higher; PINGs stay out of the log.
    redis(&url, &["CONFIG", "SET", "slowlog-log-slower-than", "100"]).await;
    redis(&url, &["CONFIG", "SET", "slowlog-max-len", "100000"]).await;
    // The slow log sees a script that keeps the server busy.
    script_times(&url).await;
    let busy = "local t = redis.call('TIME') local start = t[1] * 1e6 + t[2] \
                repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start >= 3000 return 1";
    redis(&url, &["EVAL", busy, "0"]).await;
    let times = script_times(&url).await;
    assert!(
        times
            .first()
            .is_some_and(|t| *t >= Duration::from_millis(3)),
        "the slow log missed a 3 ms script: {times:?}"
    );

    let listed = bounded(
        &url,
        "listing",
        store.list_sessions(&ListSessions {
            user_id: user.to_owned(),
            now: now + 1,
        }),
    )
    .await;
    assert_eq!(listed.expect("list_sessions").len(), SESSIONS);
    let revoked = bounded(
        &url,
        "logging out everywhere",
        store.revoke(&RevokeSessions {
            user_id: user.to_owned(),
            scope: Revoke::All,
            now: now + 2,
        }),
    )
    .await;
    assert_eq!(revoked.expect("revoke").len(), SESSIONS);
    assert!(store
        .list_sessions(&ListSessions {
            user_id: user.to_owned(),
            now: now + 3
        })
        .await
        .expect("list_sessions")
        .is_empty());
}
