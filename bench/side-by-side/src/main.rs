//! The side-by-side driver: sessionkit against tower-sessions on one private
//! Redis and in memory, each app in its own process, loaded with `wrk`.
//!
//! ```text
//! bench/side-by-side/run.sh [--sessions 1000] [--duration 5] [--connections 32]
//! ```
//!
//! For each peer and store it starts the app, logs in `--sessions` users
//! (one session each), writes their cookies to a file that
//! `rotate.lua` cycles through, and runs `wrk` on the read route
//! (`GET /api/me`) and the write route (`POST /api/counter`) for
//! `--duration` seconds each, after a short warm-up. Around each Redis run
//! it resets and reads `INFO commandstats`, and prints a markdown table.
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
}

fn opts() -> Result<Opts, Error> {
    let mut o = Opts {
        sessions: 1000,
        duration: 5,
        connections: 32,
        threads: 2,
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

impl Bench {
    /// Read and write rows for `peer` on Redis (`Some`) or in memory.
    async fn peer(&self, peer: Peer, redis: Option<&mut Redis>) -> Result<(Row, Row), Error> {
        let mut redis = redis;
        if let Some(r) = redis.as_deref_mut() {
            r.run(&["FLUSHALL"]).await?;
        }
        let app = App::start(
            &self.bin_dir,
            peer,
            redis.as_deref().map(|r| r.url.as_str()),
        )
        .await?;
        let cookies = self.dir.join(format!("cookies-{}.txt", peer.binary()));
        let started = Instant::now();
        app.mint(self.o.sessions, &cookies).await?;
        eprintln!(
            "  {}: {} sessions logged in in {:.1} s",
            peer.binary(),
            self.o.sessions,
            started.elapsed().as_secs_f64()
        );
        let mut rows = [Row::default(); 2];
        for (row, (method, path)) in rows
            .iter_mut()
            .zip([("GET", "/api/me"), ("POST", "/api/counter")])
        {
            let url = app.url(path);
            // Warm-up: connections, caches, scripts loaded.
            wrk(&self.o, &url, method, &cookies, 1)?;
            let before = match redis.as_deref_mut() {
                Some(r) => Some(r.stats().await?),
                None => None,
            };
            let load = wrk(&self.o, &url, method, &cookies, self.o.duration)?;
            row.rps = load.rps;
            if let (Some(r), Some(before)) = (redis.as_deref_mut(), before) {
                let (trips, usec) = redis_cost(&before, &r.stats().await?, load.requests);
                row.trips = Some(trips);
                row.usec = Some(usec);
            }
            eprintln!("  {} {method} {path}: {:.0} rps", peer.binary(), row.rps);
        }
        Ok((rows[0], rows[1]))
    }

    async fn bare(&self) -> Result<f64, Error> {
        let app = App::start(&self.bin_dir, Peer::Sessionkit, None).await?;
        let cookies = self.dir.join("cookies-bare.txt");
        std::fs::write(&cookies, "none=1\n")?;
        wrk(&self.o, &app.url("/bare"), "GET", &cookies, 1)?;
        Ok(wrk(&self.o, &app.url("/bare"), "GET", &cookies, self.o.duration)?.rps)
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
    let mut redis = Redis::start(&bench.dir).await?;
    let version = match redis.run(&["INFO", "server"]).await? {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
            .unwrap_or_default(),
        _ => String::new(),
    };
    eprintln!("Redis {version} at {}", redis.url);
    let (sk_read, sk_write) = bench.peer(Peer::Sessionkit, Some(&mut redis)).await?;
    let (ts_read, ts_write) = bench.peer(Peer::TowerSessions, Some(&mut redis)).await?;
    drop(redis);
    eprintln!("memory");
    let (skm_read, skm_write) = bench.peer(Peer::Sessionkit, None).await?;
    let (tsm_read, tsm_write) = bench.peer(Peer::TowerSessions, None).await?;
    let bare = bench.bare().await?;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut t = format!(
        "{} sessions, wrk -t{} -c{} -d{}s per case, {cores} cores, Redis {version}\n\n",
        o.sessions, o.threads, o.connections, o.duration
    );
    t += "| case | sessionkit rps | tower-sessions rps | ratio | round trips (sk / ts) | Redis µs per request (sk / ts) |\n";
    t += "|---|---:|---:|---:|---:|---:|\n";
    for (name, sk, ts) in [
        ("Redis read", sk_read, ts_read),
        ("Redis write", sk_write, ts_write),
    ] {
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
    for (name, sk, ts) in [
        ("memory read", skm_read, tsm_read),
        ("memory write", skm_write, tsm_write),
    ] {
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
