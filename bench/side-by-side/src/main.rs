//! The side-by-side driver: sessionkit against tower-sessions, on Redis and
//! in memory, each app in its own process, loaded with `wrk`.
//!
//! ```text
//! bench/side-by-side/run.sh [--sessions 1000] [--duration 3] [--rounds 3]
//!                           [--connections 32] [--threads 2]
//! ```
//!
//! It starts the four apps (each peer on Redis and in memory; on Redis each
//! with a private `redis-server` of its own on a free loopback port, no
//! persistence, so that command counts are its alone), logs in `--sessions`
//! users in each (one session each) and writes their cookies to a file that
//! `rotate.lua` cycles through. Then, `--rounds` times, it runs `wrk` for
//! `--duration` seconds on the read route (`GET /api/me`) and the write
//! route (`POST /api/counter`) of each app in turn, so that a busy moment of
//! the machine falls on both peers alike, and keeps each case's best round.
//! Around each Redis run it reads `INFO commandstats`. Last the bare route
//! (no session layer) for the baseline, and a markdown table.
//!
//! Commands a script runs are counted by Redis as well, and their time is
//! part of the script's: a peer whose requests run scripts is counted by its
//! script calls (`EVALSHA`, `FCALL`, ...), one without by all its calls.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const SCRIPT_COMMANDS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];
/// Commands of the setup and the measurement itself, never of a request.
const NOT_REQUESTS: [&str; 7] = [
    "info",
    "config|resetstat",
    "ping",
    "hello",
    "client|setinfo",
    "client|setname",
    "flushall",
];

struct Opts {
    sessions: usize,
    duration: u64,
    connections: usize,
    threads: usize,
    rounds: usize,
}

fn opts() -> Result<Opts, Error> {
    let mut o = Opts {
        sessions: 1000,
        duration: 3,
        connections: 32,
        threads: 2,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<usize, Error> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{arg} needs a number").into())
        };
        match arg.as_str() {
            "--sessions" => o.sessions = value()?.max(1),
            // Bounded: every load loop of the benchmark ends.
            "--duration" => o.duration = (value()? as u64).clamp(1, 60),
            "--connections" => o.connections = value()?.clamp(1, 1024),
            "--threads" => o.threads = value()?.clamp(1, 16),
            "--rounds" => o.rounds = value()?.clamp(1, 10),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(o)
}

/// A child process killed when dropped, so that no app or server outlives
/// the benchmark, whatever fails.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `ready` every 20 ms for up to 10 s.
async fn wait_for<F, Fut>(what: &str, mut ready: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{what} did not come up within 10 s").into())
}

struct Redis {
    _process: Process,
    url: String,
    conn: redis::aio::MultiplexedConnection,
}

impl Redis {
    async fn start(dir: &Path) -> Result<Redis, Error> {
        let port = free_port()?;
        let process = Process(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting redis-server: {e}"))?,
        );
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str())?;
        wait_for("redis-server", || async {
            client.get_multiplexed_async_connection().await.is_ok()
        })
        .await?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Redis {
            _process: process,
            url,
            conn,
        })
    }

    async fn run(&mut self, args: &[&str]) -> Result<redis::Value, Error> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        Ok(cmd.query_async(&mut self.conn).await?)
    }

    /// `INFO commandstats`: command → (calls, usec).
    async fn stats(&mut self) -> Result<HashMap<String, (u64, u64)>, Error> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn)
            .await?;
        let mut out = HashMap::new();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            out.insert(name.to_owned(), (field("calls"), field("usec")));
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Sessionkit,
    TowerSessions,
}

impl Peer {
    fn binary(self) -> &'static str {
        match self {
            Peer::Sessionkit => "sessionkit-app",
            Peer::TowerSessions => "tower-sessions-app",
        }
    }
}

struct App {
    _process: Process,
    port: u16,
}

impl App {
    async fn start(bin_dir: &Path, peer: Peer, redis: Option<&str>) -> Result<App, Error> {
        let port = free_port()?;
        let mut cmd = Command::new(bin_dir.join(peer.binary()));
        cmd.args(["--port", &port.to_string()]);
        match redis {
            Some(url) => cmd.args(["--redis", url]),
            None => cmd.arg("--memory"),
        };
        let process = Process(
            cmd.spawn()
                .map_err(|e| format!("starting {}: {e}", peer.binary()))?,
        );
        let http = reqwest::Client::new();
        let bare = format!("http://127.0.0.1:{port}/bare");
        wait_for(peer.binary(), || async {
            http.get(&bare)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        Ok(App {
            _process: process,
            port,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Logs in `n` users, 32 at a time, and writes their session cookies to
    /// `file`, one a line.
    async fn mint(&self, n: usize, file: &Path) -> Result<(), Error> {
        let http = reqwest::Client::new();
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (http, next, url) = (http.clone(), next.clone(), self.url("/login"));
            workers.spawn(async move {
                let mut cookies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, Error>(cookies);
                    }
                    let res = http.post(format!("{url}?user=u{i}")).send().await?;
                    if !res.status().is_success() {
                        return Err(format!("login answered {}", res.status()).into());
                    }
                    let cookie = res
                        .headers()
                        .get("set-cookie")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(';').next())
                        .ok_or("login set no cookie")?;
                    cookies.push(cookie.to_owned());
                }
            });
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
        while let Some(done) = workers.join_next().await {
            for cookie in done?? {
                writeln!(out, "{cookie}")?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

struct Load {
    rps: f64,
    requests: u64,
}

/// Runs wrk on `url` for `secs` seconds with the cookies of `file`.
fn wrk(o: &Opts, url: &str, method: &str, file: &Path, secs: u64) -> Result<Load, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rotate.lua");
    let out = Command::new("wrk")
        .arg(format!("-t{}", o.threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "2s", "-s"])
        .arg(&script)
        .arg(url)
        .arg("--")
        .arg(file)
        .arg(method)
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (requests, micros, errors) = (field("requests"), field("duration_us"), field("errors"));
    if errors > 0 {
        return Err(format!(
            "{method} {url}: {errors} errors or non-2xx answers in {requests} requests"
        )
        .into());
    }
    Ok(Load {
        rps: requests as f64 * 1e6 / micros.max(1) as f64,
        requests,
    })
}

/// One measured case.
#[derive(Default, Clone, Copy)]
struct Row {
    rps: f64,
    /// Commands per request and Redis µs per request (Redis cases).
    trips: Option<f64>,
    usec: Option<f64>,
}

fn redis_cost(
    before: &HashMap<String, (u64, u64)>,
    after: &HashMap<String, (u64, u64)>,
    requests: u64,
) -> (f64, f64) {
    let delta = |name: &str| {
        let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
        let (c1, u1) = after.get(name).copied().unwrap_or((0, 0));
        (c1.saturating_sub(c0), u1.saturating_sub(u0))
    };
    let names: Vec<&String> = after
        .keys()
        .filter(|n| !NOT_REQUESTS.contains(&n.as_str()))
        .collect();
    let scripted = SCRIPT_COMMANDS.iter().any(|s| delta(s).0 > 0);
    let (calls, usec) = names
        .iter()
        .filter(|n| !scripted || SCRIPT_COMMANDS.contains(&n.as_str()))
        .map(|n| delta(n))
        .fold((0, 0), |(c, u), (dc, du)| (c + dc, u + du));
    let r = requests.max(1) as f64;
    (calls as f64 / r, usec as f64 / r)
}

struct Bench {
    o: Opts,
    bin_dir: PathBuf,
    dir: PathBuf,
}

/// One app under test, with its sessions' cookies and, on Redis, its own
/// private server (so that command counts are its own alone).
struct Subject {
    app: App,
    cookies: PathBuf,
    redis: Option<Redis>,
    /// Best read and write rows so far.
    rows: [Option<Row>; 2],
}

const ROUTES: [(&str, &str); 2] = [("GET", "/api/me"), ("POST", "/api/counter")];

impl Bench {
    async fn subject(&self, peer: Peer, on_redis: bool) -> Result<Subject, Error> {
        let redis = match on_redis {
            true => Some(Redis::start(&self.dir).await?),
            false => None,
        };
        let app = App::start(&self.bin_dir, peer, redis.as_ref().map(|r| r.url.as_str())).await?;
        let store = if on_redis { "redis" } else { "memory" };
        let cookies = self
            .dir
            .join(format!("cookies-{}-{store}.txt", peer.binary()));
        let started = Instant::now();
        app.mint(self.o.sessions, &cookies).await?;
        eprintln!(
            "{} on {store}: {} sessions logged in in {:.1} s",
            peer.binary(),
            self.o.sessions,
            started.elapsed().as_secs_f64()
        );
        // Warm-up: connections, caches, scripts loaded.
        for (method, path) in ROUTES {
            wrk(&self.o, &app.url(path), method, &cookies, 1)?;
        }
        Ok(Subject {
            app,
            cookies,
            redis,
            rows: [None; 2],
        })
    }

    /// Measures one route of `s`, keeping the best run.
    async fn measure(&self, s: &mut Subject, route: usize) -> Result<(), Error> {
        let (method, path) = ROUTES[route];
        let url = s.app.url(path);
        let before = match s.redis.as_mut() {
            Some(r) => Some(r.stats().await?),
            None => None,
        };
        let load = wrk(&self.o, &url, method, &s.cookies, self.o.duration)?;
        let mut row = Row {
            rps: load.rps,
            ..Row::default()
        };
        if let (Some(r), Some(before)) = (s.redis.as_mut(), before) {
            let (trips, usec) = redis_cost(&before, &r.stats().await?, load.requests);
            row.trips = Some(trips);
            row.usec = Some(usec);
        }
        if s.rows[route].is_none_or(|best| best.rps < row.rps) {
            s.rows[route] = Some(row);
        }
        Ok(())
    }

    async fn bare(&self) -> Result<f64, Error> {
        let app = App::start(&self.bin_dir, Peer::Sessionkit, None).await?;
        let cookies = self.dir.join("cookies-bare.txt");
        std::fs::write(&cookies, "none=1\n")?;
        wrk(&self.o, &app.url("/bare"), "GET", &cookies, 1)?;
        let mut best: f64 = 0.0;
        for _ in 0..self.o.rounds {
            best = best.max(wrk(&self.o, &app.url("/bare"), "GET", &cookies, self.o.duration)?.rps);
        }
        Ok(best)
    }
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |x| format!("{x:.digits$}"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let o = opts()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .ok_or("no binary directory")?
        .to_owned();
    let dir = std::env::temp_dir().join(format!("side-by-side-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let bench = Bench { o, bin_dir, dir };
    let result = run(&bench).await;
    let _ = std::fs::remove_dir_all(&bench.dir);
    let table = result?;
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    println!("{table}");
    Ok(())
}

async fn run(bench: &Bench) -> Result<String, Error> {
    let o = &bench.o;
    let mut subjects = Vec::new();
    for on_redis in [true, false] {
        for peer in [Peer::Sessionkit, Peer::TowerSessions] {
            subjects.push(bench.subject(peer, on_redis).await?);
        }
    }
    let version = match subjects[0].redis.as_mut() {
        Some(r) => match r.run(&["INFO", "server"]).await? {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b)
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
                .unwrap_or_default(),
            _ => String::new(),
        },
        None => String::new(),
    };
    // Rounds, each case once a round and the peers in turn, so that a
    // noisy moment of the machine hits both alike; the best of the rounds
    // counts.
    for round in 1..=o.rounds {
        eprintln!("round {round} of {}", o.rounds);
        for route in 0..ROUTES.len() {
            for s in subjects.iter_mut() {
                bench.measure(s, route).await?;
            }
        }
    }
    let bare = bench.bare().await?;
    let row = |i: usize, route: usize| subjects[i].rows[route].unwrap_or_default();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut t = format!(
        "{} sessions, wrk -t{} -c{} -d{}s per case, best of {} rounds, {cores} cores, Redis {version}\n\n",
        o.sessions, o.threads, o.connections, o.duration, o.rounds
    );
    t += "| case | sessionkit rps | tower-sessions rps | ratio | round trips (sk / ts) | Redis µs per request (sk / ts) |\n";
    t += "|---|---:|---:|---:|---:|---:|\n";
    for (name, route) in [("Redis read", 0), ("Redis write", 1)] {
        let (sk, ts) = (row(0, route), row(1, route));
        t += &format!(
            "| {name} | {:.0} | {:.0} | {:.2} | {} / {} | {} / {} |\n",
            sk.rps,
            ts.rps,
            sk.rps / ts.rps,
            num(sk.trips, 2),
            num(ts.trips, 2),
            num(sk.usec, 2),
            num(ts.usec, 2)
        );
    }
    t += "\n| case | sessionkit rps | tower-sessions rps | ratio | sessionkit / bare | tower-sessions / bare |\n";
    t += "|---|---:|---:|---:|---:|---:|\n";
    for (name, route) in [("memory read", 0), ("memory write", 1)] {
        let (sk, ts) = (row(2, route), row(3, route));
        t += &format!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            sk.rps,
            ts.rps,
            sk.rps / ts.rps,
            sk.rps / bare,
            ts.rps / bare
        );
    }
    t += &format!("| bare route (no session) | {bare:.0} | | | | |\n");
    Ok(t)
}
