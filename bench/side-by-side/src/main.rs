//! The side-by-side driver: sessionkit against tower-sessions, on Redis,
//! PostgreSQL, SQLite and in memory, each app in its own process, loaded with
//! `wrk`.
//!
//! ```text
//! bench/side-by-side/run.sh [--sessions 1000] [--duration 3] [--rounds 5]
//!                           [--connections 32] [--threads 2]
//!                           [--cases redis,postgres,sqlite,memory]
//! ```
//!
//! It starts the apps of the selected cases (each peer on each store; on
//! Redis each with a private `redis-server` of its own on a free loopback
//! port, no persistence, so that command counts are its alone; on
//! PostgreSQL both on one private server, `initdb` and `postgres` on a free
//! loopback port, each app in a database of its own; on SQLite each in a
//! file of its own), logs in `--sessions` users in each (one session each)
//! and writes their cookies to a file that `rotate.lua` cycles through.
//! Then, `--rounds` times, it runs `wrk` for `--duration` seconds on the
//! read route (`GET /api/me`) and the write route (`POST /api/counter`) of
//! each app in turn, so that a busy moment of the machine falls on both
//! peers alike, and keeps each case's best round. Around each Redis run it
//! reads `INFO commandstats`, around each PostgreSQL run
//! `pg_stat_statements` and the CPU time of the app's backends. Last the
//! bare routes (no session layer: `/bare` and `/bare/me`, the read's answer
//! without a session) for the baselines, and a markdown table. Each row
//! also gives the CPU time per request of the app, of its Redis server and
//! of `wrk` (`/proc/<pid>/stat`), since on one machine they share the cores.
//!
//! Commands a script runs, or a transaction (`MULTI` .. `EXEC`), are
//! counted by Redis as well, and their time is part of the script's or the
//! `EXEC`'s. So before the runs, 200 sequential requests of each route go
//! out under `MONITOR`, which shows who sent each command (a script's show
//! as `lua`; a transaction's sit between its `MULTI` and `EXEC`): what share
//! of each command's calls the app sent itself. The runs count those calls
//! and their time, `MULTI` as no round trip of its own (it leaves with its
//! commands and `EXEC`). A command the calibration did not see counts as
//! the app's own only if it calls a script or no script ran: the paths the
//! sequential calibration misses (an idle refresh falling due a minute
//! after the logins) are script paths. A command seen as the app's own that
//! such a script also runs (the refresh's `HGETALL`) still counts as the
//! app's, so a run that meets a refresh wave over-counts by about one call
//! per refresh.
//!
//! On PostgreSQL a round trip is a top-level statement of the app's database
//! in `pg_stat_statements` (loaded with `shared_preload_libraries`; `BEGIN`
//! and `COMMIT` count, as utility statements): sqlx sends each statement as
//! one Bind/Execute/Sync exchange once it is prepared on its connection, and
//! neither pool pings before a call. The CPU is the user and system time of
//! the database's backend processes (`pg_stat_activity`, `/proc/<pid>/stat`),
//! not of the postmaster's background processes.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

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

#[derive(Clone, Copy, PartialEq, Debug)]
enum Case {
    Redis,
    Postgres,
    Sqlite,
    Memory,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Redis => "redis",
            Case::Postgres => "postgres",
            Case::Sqlite => "sqlite",
            Case::Memory => "memory",
        }
    }
}

const CASES: [Case; 4] = [Case::Redis, Case::Postgres, Case::Sqlite, Case::Memory];

struct Opts {
    cases: Vec<Case>,
    sessions: usize,
    duration: u64,
    connections: usize,
    threads: usize,
    rounds: usize,
}

fn opts() -> Result<Opts, Error> {
    let mut o = Opts {
        cases: CASES.to_vec(),
        sessions: 1000,
        duration: 3,
        connections: 32,
        threads: 2,
        rounds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cases" {
            let list = args.next().ok_or("--cases needs a list")?;
            o.cases = CASES
                .into_iter()
                .filter(|c| list.split(',').any(|n| n.trim() == c.name()))
                .collect();
            if let Some(bad) = list
                .split(',')
                .find(|n| !CASES.iter().any(|c| c.name() == n.trim()))
            {
                return Err(
                    format!("unknown case {bad:?} (redis, postgres, sqlite, memory)").into(),
                );
            }
            continue;
        }
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
    process: Process,
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
        Ok(Redis { process, url, conn })
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

/// A private PostgreSQL server (as the crate's tests start one, see
/// `tests/support/postgres.rs`): `initdb` into a fresh directory and
/// `postgres` on a free loopback port, no durability (`fsync=off`), with
/// `pg_stat_statements` loaded. PostgreSQL refuses to run as root: then the
/// directory goes to the `postgres` user and the binaries run under its uid
/// and gid (set before `exec`, so the child is the postmaster itself).
struct Postgres {
    process: Process,
    /// Wakes up when this process exits, however it exits, to shut the
    /// server down and remove its directory; held open until then.
    _watchdog: Option<(Child, std::process::ChildStdin)>,
    port: u16,
    /// A connection to the `postgres` database, for the statistics.
    admin: sqlx::PgConnection,
    clock_ticks: u64,
}

/// What `Postgres::stats` reads of one database.
#[derive(Clone, Copy, Default)]
struct PgStats {
    /// `pg_stat_statements` calls and their execution time (ms).
    calls: u64,
    exec_ms: f64,
    /// User and system time of the database's backends, in seconds.
    cpu: f64,
}

impl Postgres {
    async fn start(dir: &Path) -> Result<Postgres, Error> {
        use sqlx::Connection as _;
        use std::os::unix::process::CommandExt as _;

        let bin = pg_binaries().ok_or(
            "initdb and postgres were not found on PATH, in /usr/local/bin or under \
             /usr/lib/postgresql/*/bin (apt-get install postgresql)",
        )?;
        let root = dir.join("postgres");
        std::fs::create_dir_all(&root)?;
        let owner = if command_number("id", &["-u"])? == 0 {
            Some((
                command_number("id", &["-u", "postgres"])?,
                command_number("id", &["-g", "postgres"])?,
            ))
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&root)
                .status()?;
            if !status.success() {
                return Err(format!("chown {} failed", root.display()).into());
            }
        }
        let as_owner = |cmd: &mut Command| {
            if let Some((uid, gid)) = owner {
                cmd.gid(gid).uid(uid);
            }
        };
        let data = root.join("data");
        let log = root.join("postgres.log");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .current_dir(&root)
            .stdin(Stdio::null());
        as_owner(&mut initdb);
        let out = initdb.output()?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let port = free_port()?;
        let log_file = std::fs::File::create(&log)?;
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&root)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .args(["-c", "logging_collector=off"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        as_owner(&mut postgres);
        let process = Process(
            postgres
                .spawn()
                .map_err(|e| format!("starting postgres: {e}"))?,
        );
        let watchdog = pg_watchdog(process.0.id(), &root);
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        wait_for("postgres", || async {
            sqlx::PgConnection::connect(&url).await.is_ok()
        })
        .await
        .map_err(|e| format!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
        let mut admin = sqlx::PgConnection::connect(&url).await?;
        sqlx::query("CREATE EXTENSION pg_stat_statements")
            .execute(&mut admin)
            .await?;
        let clock_ticks = command_number("getconf", &["CLK_TCK"])
            .unwrap_or(100)
            .max(1) as u64;
        Ok(Postgres {
            process,
            _watchdog: watchdog,
            port,
            admin,
            clock_ticks,
        })
    }

    /// Creates the database `name` and returns its URL.
    async fn database(&mut self, name: &str) -> Result<String, Error> {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut self.admin)
            .await?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// The statements of `database` that took the most time, one line
    /// each: calls, mean µs, rows per call, the text's start.
    async fn top_statements(&mut self, database: &str) -> Result<String, Error> {
        let rows: Vec<(i64, f64, i64, String)> = sqlx::query_as(
            "SELECT s.calls, s.mean_exec_time * 1000, s.rows, \
             regexp_replace(left(s.query, 300), '\\s+', ' ', 'g') \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1 ORDER BY s.total_exec_time DESC LIMIT 6",
        )
        .bind(database)
        .fetch_all(&mut self.admin)
        .await?;
        let mut out = String::new();
        for (calls, mean_us, rows, query) in rows {
            let per_call = rows as f64 / calls.max(1) as f64;
            let query: String = query.chars().take(110).collect();
            out += &format!("  {calls:>9} calls {mean_us:>8.1} µs {per_call:>5.2} rows  {query}\n");
        }
        Ok(out)
    }

    /// Updates of the tables of `database` and how many of them were HOT
    /// (no index touched). Cumulative statistics: a backend's last second
    /// may not be flushed yet.
    async fn table_updates(&self, database: &str) -> Result<String, Error> {
        use sqlx::Connection as _;
        let url = format!("postgres://postgres@127.0.0.1:{}/{database}", self.port);
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
             WHERE n_tup_upd > 0 ORDER BY relname",
        )
        .fetch_all(&mut conn)
        .await?;
        let _ = conn.close().await;
        let mut out = String::new();
        for (table, updates, hot) in rows {
            out += &format!("  {table}: {updates} updates, {hot} HOT\n");
        }
        Ok(out)
    }

    async fn version(&mut self) -> Result<String, Error> {
        let (v,): (String,) = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut self.admin)
            .await?;
        Ok(v.split_whitespace().next().unwrap_or_default().to_owned())
    }

    async fn stats(&mut self, database: &str) -> Result<PgStats, Error> {
        let (calls, exec_ms): (i64, f64) = sqlx::query_as(
            "SELECT coalesce(sum(s.calls), 0)::int8, coalesce(sum(s.total_exec_time), 0)::float8 \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1",
        )
        .bind(database)
        .fetch_one(&mut self.admin)
        .await?;
        let pids: Vec<(i32,)> =
            sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(database)
                .fetch_all(&mut self.admin)
                .await?;
        let mut ticks = 0;
        for (pid,) in pids {
            // Fields 14 and 15 (utime, stime), counted after the `)` that
            // closes the command name.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for i in [11, 12] {
                ticks += fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(PgStats {
            calls: calls.max(0) as u64,
            exec_ms,
            cpu: ticks as f64 / self.clock_ticks as f64,
        })
    }
}

impl Drop for Postgres {
    /// An immediate shutdown (SIGQUIT, which ends the backends too) before
    /// `Process` kills whatever is left.
    fn drop(&mut self) {
        let pid = self.process.0.id().to_string();
        let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        for _ in 0..20 {
            if matches!(self.process.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `program args` and reads the number it prints.
fn command_number(program: &str, args: &[&str]) -> Result<u32, Error> {
    let out = Command::new(program).args(args).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("{program} {args:?} printed no number").into())
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        command_number("getconf", &["CLK_TCK"])
            .unwrap_or(100)
            .max(1) as f64
    })
}

/// User and system CPU seconds of process `pid` so far (`/proc/<pid>/stat`
/// fields 14 and 15), or with `children` those of its children that it
/// waited for (fields 16 and 17: for this process, the `wrk` runs).
fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let first = if children { 13 } else { 11 };
    let ticks: u64 = (first..first + 2)
        .map(|i| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU seconds so far of the processes one measurement involves: the app,
/// its Redis server if it has one, and this process's waited-for children
/// (`wrk`).
#[derive(Clone, Copy)]
struct Cpu {
    app: f64,
    server: Option<f64>,
    wrk: f64,
}

impl Cpu {
    fn now(app: &App, backend: &Backend) -> Cpu {
        Cpu {
            app: cpu_seconds(app.process.0.id(), false),
            server: match backend {
                Backend::Redis(r) => Some(cpu_seconds(r.process.0.id(), false)),
                _ => None,
            },
            wrk: cpu_seconds(std::process::id(), true),
        }
    }
}

/// The directory holding both `initdb` and `postgres`: on PATH, in
/// /usr/local/bin, or the newest /usr/lib/postgresql/*/bin.
fn pg_binaries() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/local/bin"));
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

/// `sh -c 'read x; ...'` with a piped stdin: when this process exits (even
/// killed), EOF wakes it to shut the server down and remove its directory.
fn pg_watchdog(pid: u32, dir: &Path) -> Option<(Child, std::process::ChildStdin)> {
    let script = "read x; kill -QUIT \"$0\" 2>/dev/null; \
                  for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \"$0\" 2>/dev/null || break; sleep 0.1; done; \
                  kill -9 \"$0\" 2>/dev/null; rm -rf \"$1\"";
    let mut watchdog = Command::new("sh")
        .args(["-c", script, &pid.to_string()])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = watchdog.stdin.take()?;
    Some((watchdog, stdin))
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

    /// Its database's name on the PostgreSQL server.
    fn database(self) -> &'static str {
        match self {
            Peer::Sessionkit => "sessionkit",
            Peer::TowerSessions => "tower_sessions",
        }
    }
}

struct App {
    process: Process,
    port: u16,
}

impl App {
    /// Starts `peer` with the store arguments `store` (`--memory`,
    /// `--redis <url>`, ...).
    async fn start(bin_dir: &Path, peer: Peer, store: &[&str]) -> Result<App, Error> {
        let port = free_port()?;
        let mut cmd = Command::new(bin_dir.join(peer.binary()));
        cmd.args(["--port", &port.to_string()]).args(store);
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
        Ok(App { process, port })
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
    /// Commands (Redis) or statements (PostgreSQL) per request, and the
    /// server's time per request (Redis commandstats µs, PostgreSQL
    /// statement execution µs).
    trips: Option<f64>,
    usec: Option<f64>,
    /// PostgreSQL backends' CPU µs per request.
    cpu: Option<f64>,
    /// CPU µs per request of the app's process, of its Redis server's
    /// process (user and system time, so the server's network work
    /// included) and of `wrk`.
    app_cpu: f64,
    server_cpu: Option<f64>,
    wrk_cpu: f64,
}

/// What one request of a route sends Redis, seen with `MONITOR` over a
/// few sequential requests: per command, the share of its calls the app
/// sent itself. The rest ran inside a script (`[0 lua]`) or a transaction
/// (between `MULTI` and `EXEC`), and their time is already part of the
/// script's or the `EXEC`'s in `INFO commandstats`.
#[derive(Clone, Default)]
struct Nesting {
    sent: HashMap<String, f64>,
}

/// The commands that run a script: the app's own whenever they appear.
const SCRIPT_CALLS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

impl Nesting {
    /// The share of `command`'s calls that were the app's own. A command
    /// the calibration did not see is a script call (own), or a command
    /// that a script ran if the run made script calls (a path the
    /// sequential calibration did not take, such as the idle refresh that
    /// falls due a minute after the logins), or else the app's own.
    fn sent(&self, command: &str, scripted: bool) -> f64 {
        match self.sent.get(command) {
            Some(share) => *share,
            None if SCRIPT_CALLS.contains(&command) || !scripted => 1.0,
            None => 0.0,
        }
    }
}

/// Sends `n` requests of `method path` with the first cookies of `cookies`,
/// one at a time, while `MONITOR` watches, and works out the [`Nesting`].
async fn calibrate(
    redis_url: &str,
    url: &str,
    method: &str,
    cookies: &Path,
    n: usize,
) -> Result<Nesting, Error> {
    use futures_util::StreamExt as _;
    let client = redis::Client::open(redis_url)?;
    let mut monitor = client.get_async_monitor().await?;
    let mut lines = monitor.on_message::<String>();
    let http = reqwest::Client::new();
    let jar = std::fs::read_to_string(cookies)?;
    for cookie in jar.lines().filter(|l| !l.is_empty()).cycle().take(n) {
        let req = match method {
            "POST" => http.post(url),
            _ => http.get(url),
        };
        req.header("cookie", cookie).send().await?;
    }
    let marker = format!("calibrated-{}", std::process::id());
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: String = redis::cmd("ECHO")
        .arg(&marker)
        .query_async(&mut conn)
        .await?;
    let (mut all, mut own) = (HashMap::<String, f64>::new(), HashMap::<String, f64>::new());
    let mut in_multi = std::collections::HashSet::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(5), lines.next()).await? {
        if line.contains(&marker) {
            break;
        }
        // `<time> [<db> <client>] "<COMMAND>" ...`
        let Some((client, rest)) = line.split_once(" [").and_then(|(_, r)| r.split_once("] "))
        else {
            continue;
        };
        let client = client.split_once(' ').map_or(client, |(_, c)| c).to_owned();
        let command = rest.split('"').nth(1).unwrap_or("").to_ascii_lowercase();
        if NOT_REQUESTS.contains(&command.as_str()) || command == "echo" {
            continue;
        }
        *all.entry(command.clone()).or_default() += 1.0;
        let nested = client == "lua" || (in_multi.contains(&client) && command != "exec");
        match command.as_str() {
            "multi" => {
                in_multi.insert(client);
            }
            "exec" | "discard" => {
                in_multi.remove(&client);
            }
            _ => {}
        }
        if !nested {
            *own.entry(command).or_default() += 1.0;
        }
    }
    Ok(Nesting {
        sent: all
            .into_iter()
            .map(|(c, calls)| {
                let sent = own.get(&c).copied().unwrap_or(0.0) / calls;
                (c, sent)
            })
            .collect(),
    })
}

/// Round trips and Redis µs per request from `INFO commandstats` around a
/// run: the calls the app sent itself (a transaction's `MULTI` aside: it
/// goes out with its commands and `EXEC` in one round trip), and their time.
fn redis_cost(
    before: &HashMap<String, (u64, u64)>,
    after: &HashMap<String, (u64, u64)>,
    nesting: &Nesting,
    requests: u64,
) -> (f64, f64) {
    let calls_of = |name: &str| {
        let before = before.get(name).map_or(0, |(calls, _)| *calls);
        after
            .get(name)
            .map_or(0, |(calls, _)| *calls)
            .saturating_sub(before)
    };
    let scripted = SCRIPT_CALLS.iter().any(|c| calls_of(c) > 0);
    let (mut trips, mut usec) = (0.0, 0.0);
    for (name, (calls, time)) in after {
        if NOT_REQUESTS.contains(&name.as_str()) {
            continue;
        }
        let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
        let share = nesting.sent(name, scripted);
        let calls = calls.saturating_sub(c0) as f64 * share;
        usec += time.saturating_sub(u0) as f64 * share;
        if name != "multi" {
            trips += calls;
        }
    }
    let r = requests.max(1) as f64;
    (trips / r, usec / r)
}

struct Bench {
    o: Opts,
    bin_dir: PathBuf,
    dir: PathBuf,
}

/// Where a subject keeps its sessions.
enum Backend {
    Memory,
    /// Its own private server (so that command counts are its alone).
    Redis(Redis),
    /// Its database on the shared server.
    Postgres,
    Sqlite,
}

/// One app under test, with its sessions' cookies.
struct Subject {
    peer: Peer,
    app: App,
    cookies: PathBuf,
    backend: Backend,
    /// Best read and write rows so far.
    rows: [Option<Row>; 2],
    /// Each round's rps of the read and the write, in order.
    history: [Vec<f64>; 2],
    /// On Redis, which calls of each route are the app's own.
    nesting: [Nesting; 2],
}

const ROUTES: [(&str, &str); 2] = [("GET", "/api/me"), ("POST", "/api/counter")];

impl Bench {
    async fn subject(
        &self,
        peer: Peer,
        case: Case,
        pg: Option<&mut Postgres>,
    ) -> Result<Subject, Error> {
        let mut store_args = Vec::new();
        let backend = match case {
            Case::Memory => {
                store_args.push("--memory".to_owned());
                Backend::Memory
            }
            Case::Redis => {
                let redis = Redis::start(&self.dir).await?;
                store_args.extend(["--redis".to_owned(), redis.url.clone()]);
                Backend::Redis(redis)
            }
            Case::Postgres => {
                let pg = pg.ok_or("no PostgreSQL server")?;
                store_args.extend(["--postgres".to_owned(), pg.database(peer.database()).await?]);
                Backend::Postgres
            }
            Case::Sqlite => {
                let file = self.dir.join(format!("{}.db", peer.database()));
                store_args.extend([
                    "--sqlite".to_owned(),
                    format!("sqlite://{}", file.display()),
                ]);
                Backend::Sqlite
            }
        };
        let args: Vec<&str> = store_args.iter().map(String::as_str).collect();
        let app = App::start(&self.bin_dir, peer, &args).await?;
        let store = case.name();
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
        // Warm-up: connections, caches, scripts loaded, statements prepared.
        for (method, path) in ROUTES {
            wrk(&self.o, &app.url(path), method, &cookies, 1)?;
        }
        let mut nesting = [Nesting::default(), Nesting::default()];
        if let Backend::Redis(redis) = &backend {
            for (i, (method, path)) in ROUTES.into_iter().enumerate() {
                nesting[i] = calibrate(&redis.url, &app.url(path), method, &cookies, 200).await?;
            }
        }
        Ok(Subject {
            peer,
            app,
            cookies,
            backend,
            rows: [None; 2],
            history: [Vec::new(), Vec::new()],
            nesting,
        })
    }

    /// Measures one route of `s`, keeping the best run.
    async fn measure(
        &self,
        s: &mut Subject,
        route: usize,
        pg: Option<&mut Postgres>,
    ) -> Result<(), Error> {
        let (method, path) = ROUTES[route];
        let url = s.app.url(path);
        let redis_before = match &mut s.backend {
            Backend::Redis(r) => Some(r.stats().await?),
            _ => None,
        };
        let mut pg = match (&s.backend, pg) {
            (Backend::Postgres, Some(pg)) => Some(pg),
            _ => None,
        };
        let pg_before = match pg.as_mut() {
            Some(pg) => Some(pg.stats(s.peer.database()).await?),
            None => None,
        };
        let cpu_before = Cpu::now(&s.app, &s.backend);
        let load = wrk(&self.o, &url, method, &s.cookies, self.o.duration)?;
        let cpu_after = Cpu::now(&s.app, &s.backend);
        let r = load.requests.max(1) as f64;
        let mut row = Row {
            rps: load.rps,
            app_cpu: (cpu_after.app - cpu_before.app) * 1e6 / r,
            server_cpu: cpu_after
                .server
                .zip(cpu_before.server)
                .map(|(a, b)| (a - b) * 1e6 / r),
            wrk_cpu: (cpu_after.wrk - cpu_before.wrk) * 1e6 / r,
            ..Row::default()
        };
        if let (Backend::Redis(redis), Some(before)) = (&mut s.backend, redis_before) {
            let after = redis.stats().await?;
            let (trips, usec) = redis_cost(&before, &after, &s.nesting[route], load.requests);
            row.trips = Some(trips);
            row.usec = Some(usec);
        }
        if let (Some(pg), Some(before)) = (pg, pg_before) {
            let after = pg.stats(s.peer.database()).await?;
            // The statistics queries run in the `postgres` database, so
            // they are not counted here.
            row.trips = Some(after.calls.saturating_sub(before.calls) as f64 / r);
            row.usec = Some((after.exec_ms - before.exec_ms) * 1e3 / r);
            row.cpu = Some((after.cpu - before.cpu) * 1e6 / r);
        }
        s.history[route].push(row.rps);
        if s.rows[route].is_none_or(|best| best.rps < row.rps) {
            s.rows[route] = Some(row);
        }
        Ok(())
    }

    /// The best rps of the routes without a session: `/bare` (`ok`) and
    /// `/bare/me` (the read's answer, from no session), taking turns.
    async fn bare(&self) -> Result<[f64; 2], Error> {
        let app = App::start(&self.bin_dir, Peer::Sessionkit, &["--memory"]).await?;
        let cookies = self.dir.join("cookies-bare.txt");
        std::fs::write(&cookies, "none=1\n")?;
        let paths = ["/bare", "/bare/me"];
        for path in paths {
            wrk(&self.o, &app.url(path), "GET", &cookies, 1)?;
        }
        let mut best = [0.0f64; 2];
        for _ in 0..self.o.rounds {
            for (best, path) in best.iter_mut().zip(paths) {
                let load = wrk(&self.o, &app.url(path), "GET", &cookies, self.o.duration)?;
                *best = best.max(load.rps);
            }
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
    let mut pg = match o.cases.contains(&Case::Postgres) {
        true => Some(Postgres::start(&bench.dir).await?),
        false => None,
    };
    // Per case, sessionkit then tower-sessions.
    let mut subjects: Vec<(Case, [Subject; 2])> = Vec::new();
    for &case in &o.cases {
        let sk = bench.subject(Peer::Sessionkit, case, pg.as_mut()).await?;
        let ts = bench
            .subject(Peer::TowerSessions, case, pg.as_mut())
            .await?;
        subjects.push((case, [sk, ts]));
    }
    let mut versions = Vec::new();
    for (_, [sk, _]) in subjects.iter_mut() {
        if let Backend::Redis(r) = &mut sk.backend {
            if let redis::Value::BulkString(b) = r.run(&["INFO", "server"]).await? {
                let v = String::from_utf8_lossy(&b)
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
                    .unwrap_or_default();
                versions.push(format!("Redis {v}"));
            }
        }
    }
    if let Some(pg) = pg.as_mut() {
        versions.push(format!("PostgreSQL {}", pg.version().await?));
    }
    if o.cases.contains(&Case::Sqlite) {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect("sqlite::memory:").await?;
        let (v,): (String,) = sqlx::query_as("SELECT sqlite_version()")
            .fetch_one(&mut c)
            .await?;
        versions.push(format!("SQLite {v}"));
    }
    // Rounds, each case once a round and the peers in turn, so that a
    // noisy moment of the machine hits both alike; the best of the rounds
    // counts.
    for round in 1..=o.rounds {
        eprintln!("round {round} of {}", o.rounds);
        for route in 0..ROUTES.len() {
            for (_, pair) in subjects.iter_mut() {
                for s in pair.iter_mut() {
                    bench.measure(s, route, pg.as_mut()).await?;
                }
            }
        }
    }
    if let Some(pg) = pg.as_mut() {
        for peer in [Peer::Sessionkit, Peer::TowerSessions] {
            eprintln!(
                "PostgreSQL statements of {} (setup included):\n{}{}",
                peer.binary(),
                pg.top_statements(peer.database()).await?,
                pg.table_updates(peer.database()).await?
            );
        }
    }
    let bare = match o.cases.contains(&Case::Memory) {
        true => Some(bench.bare().await?),
        false => None,
    };
    // The ratio of each round's runs (the peers ran back to back), as
    // "median (lowest – highest)": a slow drift of the machine cancels out
    // of a pair, where the best rounds of each peer may come from different
    // moments.
    let paired = |case: Case, route: usize| -> String {
        let (_, [sk, ts]) = subjects
            .iter()
            .find(|(c, _)| *c == case)
            .expect("a selected case");
        let mut ratios: Vec<f64> = sk.history[route]
            .iter()
            .zip(&ts.history[route])
            .map(|(sk, ts)| sk / ts.max(1.0))
            .collect();
        ratios.sort_by(f64::total_cmp);
        match (ratios.first(), ratios.last()) {
            (Some(low), Some(high)) => {
                format!("{:.2} ({low:.2} – {high:.2})", ratios[ratios.len() / 2])
            }
            _ => "–".into(),
        }
    };
    let rows = |case: Case, route: usize| -> (Row, Row) {
        let (_, [sk, ts]) = subjects
            .iter()
            .find(|(c, _)| *c == case)
            .expect("a selected case");
        (
            sk.rows[route].unwrap_or_default(),
            ts.rows[route].unwrap_or_default(),
        )
    };

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut t = format!(
        "{} sessions, wrk -t{} -c{} -d{}s per case, best of {} rounds, {cores} cores, {}\n",
        o.sessions,
        o.threads,
        o.connections,
        o.duration,
        o.rounds,
        versions.join(", ")
    );
    if o.cases.contains(&Case::Redis) {
        t += "\n| case | sessionkit rps | tower-sessions rps | ratio of the best | ratio per round: median (range) | round trips (sk / ts) | Redis µs per request (sk / ts) | CPU µs per request: app (sk / ts) | Redis server (sk / ts) | wrk (sk / ts) |\n";
        t += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (name, route) in [("Redis read", 0), ("Redis write", 1)] {
            let (sk, ts) = rows(Case::Redis, route);
            t += &format!(
                "| {name} | {:.0} | {:.0} | {:.2} | {} | {} / {} | {} / {} | {:.1} / {:.1} | {} / {} | {:.1} / {:.1} |\n",
                sk.rps,
                ts.rps,
                sk.rps / ts.rps,
                paired(Case::Redis, route),
                num(sk.trips, 2),
                num(ts.trips, 2),
                num(sk.usec, 2),
                num(ts.usec, 2),
                sk.app_cpu,
                ts.app_cpu,
                num(sk.server_cpu, 1),
                num(ts.server_cpu, 1),
                sk.wrk_cpu,
                ts.wrk_cpu
            );
        }
    }
    if o.cases.contains(&Case::Postgres) {
        t += "\n| case | sessionkit rps | tower-sessions rps | ratio of the best | ratio per round: median (range) | statements per request (sk / ts) | statement µs per request (sk / ts) | backend CPU µs per request (sk / ts) |\n";
        t += "|---|---:|---:|---:|---:|---:|---:|---:|\n";
        for (name, route) in [("PostgreSQL read", 0), ("PostgreSQL write", 1)] {
            let (sk, ts) = rows(Case::Postgres, route);
            t += &format!(
                "| {name} | {:.0} | {:.0} | {:.2} | {} | {} / {} | {} / {} | {} / {} |\n",
                sk.rps,
                ts.rps,
                sk.rps / ts.rps,
                paired(Case::Postgres, route),
                num(sk.trips, 2),
                num(ts.trips, 2),
                num(sk.usec, 1),
                num(ts.usec, 1),
                num(sk.cpu, 0),
                num(ts.cpu, 0)
            );
        }
    }
    if o.cases.contains(&Case::Sqlite) {
        t += "\n| case | sessionkit rps | tower-sessions rps | ratio of the best | ratio per round: median (range) |\n";
        t += "|---|---:|---:|---:|---:|\n";
        for (name, route) in [("SQLite read", 0), ("SQLite write", 1)] {
            let (sk, ts) = rows(Case::Sqlite, route);
            t += &format!(
                "| {name} | {:.0} | {:.0} | {:.2} | {} |\n",
                sk.rps,
                ts.rps,
                sk.rps / ts.rps,
                paired(Case::Sqlite, route)
            );
        }
    }
    if let Some([bare, bare_me]) = bare {
        t += "\n| case | sessionkit rps | tower-sessions rps | ratio of the best | ratio per round: median (range) | sessionkit / bare | tower-sessions / bare | sessionkit / bare JSON | tower-sessions / bare JSON | app CPU µs per request (sk / ts) |\n";
        t += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for (name, route) in [("memory read", 0), ("memory write", 1)] {
            let (sk, ts) = rows(Case::Memory, route);
            t += &format!(
                "| {name} | {:.0} | {:.0} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} |\n",
                sk.rps,
                ts.rps,
                sk.rps / ts.rps,
                paired(Case::Memory, route),
                sk.rps / bare,
                ts.rps / bare,
                sk.rps / bare_me,
                ts.rps / bare_me,
                sk.app_cpu,
                ts.app_cpu
            );
        }
        t += &format!("| bare route (no session, `ok`) | {bare:.0} | | | | | | | | |\n");
        t += &format!(
            "| bare JSON route (no session, the read's answer) | {bare_me:.0} | | | | | | | | |\n"
        );
    }
    Ok(t)
}
