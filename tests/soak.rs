//! Soak: the demo's binary under a bounded mixed load (anonymous writes,
//! logins, reads, due rotations, revocations, WebSockets opening and
//! closing, logouts), with the app's RSS, and on Redis the server's memory
//! and key count, sampled at a fixed interval. Once warm they must stay
//! flat: the run fails if they grow past a threshold after the warm-up.
//!
//! `cargo test --test soak` runs the short version (40 s, what CI runs);
//! `scripts/soak.sh` the long one (`--duration 10m` by default):
//!
//! ```text
//! cargo test --all-features --test soak -- [--duration 10m] [--every 10s] [--redis]
//! ```
//!
//! `--redis` runs the demo on a private `redis-server` instead of the
//! memory store. The demo binary must be built first
//! (`cargo build --all-features --example demo`; the scripts do it).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::cookie::CookieStore;
use serde_json::{json, Value};
use support::redis::RedisServer;
use tokio_tungstenite::tungstenite;

/// Browsers that log in, pause (so their token comes due), open a socket,
/// manage their sessions and log out.
const BROWSERS: usize = 8;
/// Clients that hammer anonymous writes and log out at once.
const HAMMERS: usize = 4;
/// Users the browsers log in as: each user's index stays small.
const USERS: usize = 20;
/// Growth allowed after the warm-up: a fraction, plus a constant.
const RSS_GROWTH: f64 = 0.20;
const RSS_SLACK_KB: u64 = 6 * 1024;
const KEYS_GROWTH: f64 = 0.5;
const KEYS_SLACK: u64 = 100;

struct Options {
    duration: Duration,
    every: Duration,
    redis: bool,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn options() -> Options {
    let mut options = Options {
        duration: Duration::from_secs(40),
        every: Duration::from_secs(10),
        redis: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>, name: &str| {
            let v = args.next().unwrap_or_default();
            parse_duration(&v).unwrap_or_else(|| panic!("{name} {v:?}: expected 45s, 10m or 1h"))
        };
        match arg.as_str() {
            "--duration" => options.duration = value(&mut args, "--duration"),
            "--every" => options.every = value(&mut args, "--every"),
            "--redis" => options.redis = true,
            // What cargo's harness would take (filters, --nocapture): not ours.
            _ => {}
        }
    }
    assert!(
        options.every >= Duration::from_secs(1),
        "--every is at least 1s"
    );
    assert!(
        options.duration >= options.every * 3,
        "--duration is at least three samples"
    );
    options
}

fn demo_binary() -> std::path::PathBuf {
    // Tests run from target/<profile>/deps; examples are built next to it.
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("demo"))
        .filter(|bin| bin.exists())
        .expect("the demo binary: build it with `cargo build --all-features --example demo`")
}

/// The demo process; killed when dropped.
struct Demo {
    child: std::process::Child,
    base: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_demo(redis: Option<&str>) -> Demo {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut cmd = std::process::Command::new(demo_binary());
    cmd.env("PORT", port.to_string())
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        // Tokens come due after 2 s: the pausing browsers rotate.
        .env("SESSION_SFR_SECS", "2")
        .env("SESSION_OJS_SECS", "1")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(url) = redis {
        cmd.env("REDIS_URL", url);
    }
    let demo = Demo {
        child: cmd.spawn().expect("start the demo"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the demo did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    demo
}

/// Resident set size of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    logins: AtomicU64,
    rotations: AtomicU64,
    revokes: AtomicU64,
    sockets: AtomicU64,
    /// 5xx answers and failed requests.
    errors: AtomicU64,
}

struct Browser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: String,
    counters: Arc<Counters>,
}

impl Browser {
    fn new(base: &str, counters: &Arc<Counters>) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            jar,
            base: base.to_owned(),
            counters: counters.clone(),
        }
    }

    fn cookie(&self) -> Option<String> {
        let url = self.base.parse().ok()?;
        Some(self.jar.cookies(&url)?.to_str().ok()?.to_owned())
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let before = self.cookie();
        let method = method.parse().expect("a method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                if status >= 500 {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                let value = res.json().await.unwrap_or(Value::Null);
                if before.is_some() && self.cookie().is_some() && self.cookie() != before {
                    self.counters.rotations.fetch_add(1, Ordering::Relaxed);
                }
                (status, value)
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                (0, Value::Null)
            }
        }
    }

    /// Opens the session's socket, exchanges one message, closes it.
    async fn socket(&self) {
        let Some(cookie) = self.cookie() else { return };
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let Ok(mut req) = tungstenite::client::IntoClientRequest::into_client_request(url) else {
            return;
        };
        if let Ok(value) = cookie.parse() {
            req.headers_mut().insert("cookie", value);
        }
        let connect = tokio_tungstenite::connect_async(req);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(5), connect).await
        else {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.sockets.fetch_add(1, Ordering::Relaxed);
        let _ = ws.send(tungstenite::Message::Text("state".into())).await;
        for _ in 0..2 {
            if tokio::time::timeout(Duration::from_secs(2), ws.next())
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = ws.close(None).await;
    }
}

/// One browser's life: anonymous writes, a login, reads, a pause that makes
/// its token due, a socket, session management, a logout.
async fn browser_life(base: &str, counters: &Arc<Counters>, life: u64, worker: usize) {
    let b = Browser::new(base, counters);
    for _ in 0..3 {
        b.call("POST", "/api/counter", None).await;
    }
    let user = format!("soak{}", (life as usize * BROWSERS + worker) % USERS);
    b.call("POST", "/login", Some(json!({ "user": user })))
        .await;
    counters.logins.fetch_add(1, Ordering::Relaxed);
    b.call("GET", "/api/me", None).await;
    b.call("POST", "/api/counter", None).await;
    // Past SFR: the next request rotates the token.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    b.call("GET", "/api/me", None).await;
    b.call("POST", "/api/counter", None).await;
    b.socket().await;
    let (_, list) = b.call("GET", "/api/sessions", None).await;
    let list = list
        .as_array()
        .cloned()
        .or_else(|| list["sessions"].as_array().cloned())
        .unwrap_or_default();
    let other = list
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str());
    match (life % 3, other) {
        (0, Some(id)) => {
            b.call("DELETE", &format!("/api/sessions/{id}"), None).await;
            counters.revokes.fetch_add(1, Ordering::Relaxed);
        }
        (1, _) => {
            b.call("POST", "/api/logout-others", None).await;
            counters.revokes.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    if life % 5 == 4 {
        b.call("POST", "/api/logout-everywhere", None).await;
    } else {
        b.call("POST", "/logout", None).await;
    }
}

/// Anonymous writes as fast as the app answers, each client logging out at
/// once (a session per life, gone at its end).
async fn hammer_life(base: &str, counters: &Arc<Counters>) {
    let b = Browser::new(base, counters);
    for _ in 0..5 {
        b.call("POST", "/api/counter", None).await;
    }
    b.call("GET", "/api/me", None).await;
    b.call("POST", "/logout", None).await;
}

struct Sample {
    at: Duration,
    rss_kb: u64,
    requests: u64,
    store_memory: Option<u64>,
    keys: Option<u64>,
}

async fn redis_info(url: &str) -> (u64, u64) {
    let info: String = support::redis::query(url, redis::cmd("INFO").arg("memory")).await;
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (used, support::redis::dbsize(url).await)
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let failures = runtime.block_on(soak(&options));
    if failures.is_empty() {
        println!("soak: 1 passed, 0 failed");
    } else {
        for failure in &failures {
            eprintln!("soak: {failure}");
        }
        println!("soak: 0 passed, 1 failed");
        std::process::exit(1);
    }
}

async fn soak(options: &Options) -> Vec<String> {
    let redis = options.redis.then(RedisServer::start);
    let url = redis.as_ref().map(RedisServer::url);
    let demo = start_demo(url.as_deref()).await;
    let pid = demo.child.id();
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..BROWSERS + HAMMERS {
        let (base, counters, stop) = (demo.base.clone(), counters.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut life = 0u64;
            // Bounded by the duration (the stop flag) and by this count.
            while !stop.load(Ordering::Relaxed) && life < 1_000_000 {
                if worker < BROWSERS {
                    browser_life(&base, &counters, life, worker).await;
                } else {
                    hammer_life(&base, &counters).await;
                }
                life += 1;
            }
        }));
    }

    println!(
        "soak: {:?} on the {} store, a sample every {:?}",
        options.duration,
        if options.redis { "Redis" } else { "memory" },
        options.every
    );
    println!(
        "{:>7} {:>9} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>11} {:>7}",
        "time",
        "RSS KiB",
        "requests",
        "logins",
        "rotations",
        "revokes",
        "sockets",
        "errors",
        "store mem",
        "keys"
    );
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + options.every, options.every);
    while started.elapsed() + Duration::from_millis(500) < options.duration {
        tick.tick().await;
        let (store_memory, keys) = match &url {
            Some(url) => {
                let (m, k) = redis_info(url).await;
                (Some(m), Some(k))
            }
            None => (None, None),
        };
        let sample = Sample {
            at: started.elapsed(),
            rss_kb: rss_kb(pid),
            requests: counters.requests.load(Ordering::Relaxed),
            store_memory,
            keys,
        };
        let dash = || "-".to_owned();
        println!(
            "{:>6}s {:>9} {:>9} {:>7} {:>9} {:>7} {:>7} {:>7} {:>11} {:>7}",
            sample.at.as_secs(),
            sample.rss_kb,
            sample.requests,
            counters.logins.load(Ordering::Relaxed),
            counters.rotations.load(Ordering::Relaxed),
            counters.revokes.load(Ordering::Relaxed),
            counters.sockets.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
            sample.store_memory.map_or_else(dash, |m| m.to_string()),
            sample.keys.map_or_else(dash, |k| k.to_string()),
        );
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        // A browser's life is a few seconds; the request timeouts bound it.
        let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    }
    check(&samples, options, &counters)
}

/// The verdict: no errors, every kind of request happened, and nothing grew
/// past the thresholds after the warm-up (a third of the run, at least 20 s).
fn check(samples: &[Sample], options: &Options, counters: &Counters) -> Vec<String> {
    let mut failures = Vec::new();
    let errors = counters.errors.load(Ordering::Relaxed);
    if errors > 0 {
        failures.push(format!("{errors} requests failed or answered 5xx"));
    }
    for (what, n) in [
        ("logins", &counters.logins),
        ("rotations", &counters.rotations),
        ("revocations", &counters.revokes),
        ("sockets", &counters.sockets),
    ] {
        if n.load(Ordering::Relaxed) == 0 {
            failures.push(format!("no {what} happened"));
        }
    }
    let warm_up = (options.duration / 3).max(Duration::from_secs(20));
    let Some(warm) = samples
        .iter()
        .position(|s| s.at + Duration::from_millis(500) >= warm_up)
    else {
        failures.push("no sample after the warm-up".into());
        return failures;
    };
    let (warm, later) = (&samples[warm], &samples[warm + 1..]);
    if later.is_empty() {
        failures.push("no sample after the warm-up one".into());
    }
    let rss_limit = (warm.rss_kb as f64 * (1.0 + RSS_GROWTH)) as u64 + RSS_SLACK_KB;
    for s in later {
        if s.rss_kb > rss_limit {
            failures.push(format!(
                "RSS grew from {} KiB at {}s to {} KiB at {}s (limit {rss_limit} KiB)",
                warm.rss_kb,
                warm.at.as_secs(),
                s.rss_kb,
                s.at.as_secs()
            ));
        }
        if let (Some(w), Some(k)) = (warm.keys, s.keys) {
            let limit = (w as f64 * (1.0 + KEYS_GROWTH)) as u64 + KEYS_SLACK;
            if k > limit {
                failures.push(format!("Redis keys grew from {w} to {k} (limit {limit})"));
            }
        }
        if let (Some(w), Some(m)) = (warm.store_memory, s.store_memory) {
            let limit = (w as f64 * (1.0 + RSS_GROWTH)) as u64 + RSS_SLACK_KB * 1024;
            if m > limit {
                failures.push(format!(
                    "Redis memory grew from {w} to {m} bytes (limit {limit})"
                ));
            }
        }
    }
    failures
}
