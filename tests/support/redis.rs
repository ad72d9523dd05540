//! Real, private Redis servers for the integration tests.
//!
//! [`RedisServer::start`] spawns its own `redis-server` on a free loopback
//! port, with a fresh temporary directory and no persistence, and kills it
//! when dropped; it can be hung (`stop`), resumed (`cont`), killed and
//! restarted on the same port, for fault tests. [`RedisCluster::start`]
//! does the same for a 3-master Redis Cluster without replicas.
//!
//! With `REDIS_URL` set, [`RedisServer::shared_or_start`] uses that server
//! instead (faults cannot be injected into it); with `REDIS_CLUSTER_URLS`
//! (comma-separated) set, [`RedisCluster::start`] uses that cluster.
//!
//! The servers never outlive the test process: `Drop` kills them, and each
//! one has a tiny `sh` watchdog that kills it if the test process dies
//! without running `Drop` (abort, SIGKILL), because the watchdog's stdin is a
//! pipe whose only writer is the test process.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::TryRngCore;

/// How often a starting server is polled.
const POLL: Duration = Duration::from_millis(20);
/// How long a server has to answer PING after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new cluster has to reach `cluster_state:ok` on every node.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `redis-cli --cluster create` may run.
const CLUSTER_CREATE_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at starting a server on a fresh free port.
const START_ATTEMPTS: usize = 5;

const NOT_PRIVATE: &str =
    "fault tests need a private server: use RedisServer::start(), not a shared REDIS_URL";

fn missing_binary(name: &str) -> String {
    format!("`{name}` was not found on PATH: run scripts/test.sh, which installs redis-server and redis-cli")
}

/// A fresh key prefix, `t<16 hex digits>:`, so that tests sharing a server
/// do not see each other's keys.
pub fn random_prefix() -> String {
    format!("t{:016x}:", random_u64())
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    OsRng.try_next_u64().unwrap_or(0) ^ n.rotate_left(48)
}

/// A free loopback port: bind port 0, read the port, drop the listener.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A Redis server for a test: a private child process, or a shared one
/// from `REDIS_URL`.
pub struct RedisServer {
    url: String,
    private: Option<Private>,
}

/// A server that this process runs.
struct Private {
    port: u16,
    /// The cluster bus port, for a cluster node (`--cluster-port`).
    bus_port: Option<u16>,
    /// AOF on, fsynced on every write (see `start_persistent`).
    persistent: bool,
    dir: PathBuf,
    /// `None` after `kill()`.
    running: Option<Running>,
}

struct Running {
    child: Child,
    /// `sh -c 'read x; kill -9 PID'`: its stdin reaches EOF when this
    /// process dies, and it then kills the server.
    watchdog: Option<(Child, ChildStdin)>,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap, the watchdog first (so that it never signals a
    /// reaped, possibly reused, pid), then the server.
    fn kill(mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Starts a private `redis-server` on a free loopback port and waits
    /// until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_private(false, false)
    }

    /// Like [`start`](Self::start), with the append-only file on and
    /// fsynced on every write (`appendonly yes`, `appendfsync always`): a
    /// write the server acknowledged survives `kill` and `restart`.
    pub fn start_persistent() -> RedisServer {
        Self::start_private(false, true)
    }

    /// The server at `REDIS_URL` when that is set, else a private one.
    pub fn shared_or_start() -> RedisServer {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Self::shared(url.trim()),
            _ => Self::start(),
        }
    }

    /// A handle on a server that some one else runs: only its URL is known,
    /// and `stop`, `cont`, `kill`, `restart` and `pid` panic.
    pub fn shared(url: &str) -> RedisServer {
        RedisServer {
            url: url.to_string(),
            private: None,
        }
    }

    /// Whether this process runs the server (so faults can be injected).
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// `redis://127.0.0.1:PORT`, or the shared URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        match &self.private {
            Some(p) => p.port,
            None => port_of_url(&self.url),
        }
    }

    /// The server's process id; panics when it is shared or killed.
    pub fn pid(&self) -> u32 {
        self.running().pid()
    }

    /// SIGSTOP: the server hangs, connections stay open but nothing answers.
    pub fn stop(&self) {
        signal(self.running().pid(), "STOP");
    }

    /// SIGCONT: a stopped server answers again.
    pub fn cont(&self) {
        signal(self.running().pid(), "CONT");
    }

    /// SIGKILL and reap: the server is down, its port is free, and its data
    /// is gone (there is no persistence). `restart` brings it back.
    pub fn kill(&mut self) {
        let private = self.private.as_mut().expect(NOT_PRIVATE);
        if let Some(running) = private.running.take() {
            running.kill();
        }
    }

    /// Starts the server again on the same port (killing it first if it is
    /// still running) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let private = self.private.as_mut().expect(NOT_PRIVATE);
        // The port was just freed by this process, but something else may
        // grab it in between: a few attempts, then give up with the log.
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match private.spawn_and_wait() {
                Ok(running) => {
                    private.running = Some(running);
                    return;
                }
                Err(e) => {
                    last_error = e;
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!(
            "redis-server could not be restarted on port {}: {last_error}",
            private.port
        );
    }

    fn running(&self) -> &Running {
        let private = self.private.as_ref().expect(NOT_PRIVATE);
        private
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("the redis-server on port {} is down (killed)", private.port))
    }

    /// Starts a private server, a cluster node when `cluster`, retrying on
    /// fresh ports when it fails to start (usually a port taken meanwhile).
    fn start_private(cluster: bool, persistent: bool) -> RedisServer {
        let dir = fresh_temp_dir();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut private = Private {
                port: free_port(),
                bus_port: cluster.then(free_port),
                persistent,
                dir: dir.clone(),
                running: None,
            };
            match private.spawn_and_wait() {
                Ok(running) => {
                    private.running = Some(running);
                    return RedisServer {
                        url: format!("redis://127.0.0.1:{}", private.port),
                        private: Some(private),
                    };
                }
                Err(e) => {
                    // A node that failed may have written a nodes.conf for
                    // its port: the next attempt starts from scratch.
                    let _ = fs::remove_file(dir.join("nodes.conf"));
                    last_error = e;
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_error}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut private) = self.private.take() {
            if let Some(running) = private.running.take() {
                running.kill();
            }
            let _ = fs::remove_dir_all(&private.dir);
        }
    }
}

impl Private {
    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn stdio_path(&self) -> PathBuf {
        self.dir.join("stdio.log")
    }

    /// Spawns `redis-server` and waits until it answers PING as itself.
    /// On failure the process is gone and the error has the log tail.
    fn spawn_and_wait(&self) -> Result<Running, String> {
        let mut running = self.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = running.pid();
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                let error = format!(
                    "redis-server on port {} exited with {status}\n{}",
                    self.port,
                    self.log_tail()
                );
                running.kill();
                return Err(error);
            }
            if ping(self.port) {
                // Something answers: make sure it is this process and not
                // another server that took the port first.
                match server_pid(self.port) {
                    Some(p) if p == pid => return Ok(running),
                    Some(_) => {
                        running.kill();
                        return Err(format!(
                            "port {} is taken by another redis-server\n{}",
                            self.port,
                            self.log_tail()
                        ));
                    }
                    None => {}
                }
            }
            if Instant::now() >= deadline {
                let error = format!(
                    "redis-server on port {} did not answer PING within {:?}\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.log_tail()
                );
                running.kill();
                return Err(error);
            }
            thread::sleep(POLL);
        }
    }

    fn spawn(&self) -> Running {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            if self.persistent { "yes" } else { "no" }.into(),
            "--appendfsync".into(),
            "always".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            self.log_path().display().to_string(),
            "--loglevel".into(),
            "notice".into(),
        ];
        if let Some(bus_port) = self.bus_port {
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &self.dir.join("nodes.conf").display().to_string(),
                    // The default bus port, port + 10000, is above 65535 for
                    // most ephemeral ports.
                    "--cluster-port",
                    &bus_port.to_string(),
                    "--cluster-node-timeout",
                    "2000",
                ]
                .map(String::from),
            );
        }
        // Whatever redis-server prints before it opens its log file (bad
        // arguments) lands here.
        let stdio = File::options()
            .create(true)
            .append(true)
            .open(self.stdio_path())
            .expect("create the redis-server stdio log");
        let child = Command::new("redis-server")
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().expect("clone a file handle"))
            .stderr(stdio)
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => panic!("{}", missing_binary("redis-server")),
                _ => panic!("spawn redis-server: {e}"),
            });
        let watchdog = spawn_watchdog(child.id());
        Running { child, watchdog }
    }

    /// The last lines of the server's log and of its stdout/stderr.
    fn log_tail(&self) -> String {
        format!(
            "--- {} (tail) ---\n{}--- {} (tail) ---\n{}",
            self.log_path().display(),
            tail(&self.log_path(), 30),
            self.stdio_path().display(),
            tail(&self.stdio_path(), 10),
        )
    }
}

/// `sh -c 'read x; kill -9 PID'` with a piped stdin: killed by `Drop`, or,
/// if this process dies first, woken by EOF to kill the server.
fn spawn_watchdog(pid: u32) -> Option<(Child, ChildStdin)> {
    let mut watchdog = Command::new("sh")
        .args(["-c", "read x; kill -9 \"$0\" 2>/dev/null", &pid.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = watchdog.stdin.take()?;
    Some((watchdog, stdin))
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("run kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

fn fresh_temp_dir() -> PathBuf {
    static CLEAN: std::sync::Once = std::sync::Once::new();
    CLEAN.call_once(remove_stale_temp_dirs);
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-redis-{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Removes the directories left by test processes that died without
/// running `Drop` (their servers were killed by the watchdogs).
fn remove_stale_temp_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sessionkit-redis-"))
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].iter().map(|l| format!("{l}\n")).collect()
        }
        Err(e) => format!("(cannot read: {e})\n"),
    }
}

fn port_of_url(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port
            .parse()
            .unwrap_or_else(|_| panic!("no port in Redis URL {url}")),
        _ => 6379,
    }
}

/// One inline command over a fresh TCP connection, with short timeouts;
/// returns a simple or bulk string reply.
fn inline_command(port: u16, command: &str) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    (&stream).write_all(format!("{command}\r\n").as_bytes())?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    match line.split_at_checked(1) {
        Some(("$", len)) => {
            let len: i64 = len.parse().map_err(io::Error::other)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(String::new());
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        Some(("+" | ":", rest)) => Ok(rest.to_string()),
        _ => Err(io::Error::other(format!("reply to {command}: {line:?}"))),
    }
}

/// Sends a cluster command that must answer `OK`.
fn cluster_ok(port: u16, command: &str) {
    match inline_command(port, command) {
        Ok(reply) if reply == "OK" => {}
        other => panic!("{command} on {port}: {other:?}"),
    }
}

/// Polls `done` until it holds, for at most `limit`.
fn poll_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        thread::sleep(POLL);
    }
}

fn ping(port: u16) -> bool {
    matches!(inline_command(port, "PING").as_deref(), Ok("PONG"))
}

/// `process_id` from `INFO server`.
fn server_pid(port: u16) -> Option<u32> {
    let info = inline_command(port, "INFO server").ok()?;
    info_field(&info, "process_id")?.parse().ok()
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A Redis Cluster for a test: 3 private masters without replicas, or the
/// cluster at `REDIS_CLUSTER_URLS`.
pub struct RedisCluster {
    urls: Vec<String>,
    /// Empty for a shared cluster.
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// The cluster at `REDIS_CLUSTER_URLS` when that is set; else three
    /// `redis-server --cluster-enabled yes` on free loopback ports, joined
    /// by `redis-cli --cluster create`, once every node says
    /// `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        if let Ok(urls) = std::env::var("REDIS_CLUSTER_URLS") {
            let urls: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            if !urls.is_empty() {
                return RedisCluster {
                    urls,
                    nodes: Vec::new(),
                };
            }
        }
        Self::start_private()
    }

    /// Three private masters, whatever `REDIS_CLUSTER_URLS` says: for the
    /// tests that change the cluster's shape.
    pub fn start_private() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_private(true, false))
            .collect();
        let cluster = RedisCluster {
            urls: nodes.iter().map(RedisServer::url).collect(),
            nodes,
        };
        cluster.create();
        cluster.wait_until_ok();
        cluster
    }

    /// Starts a node, joins it to the cluster as a replica of node
    /// `master` and waits until its first sync is done; returns its index.
    /// Its URL is not among [`urls`](Self::urls): clients find it through
    /// the cluster.
    pub fn add_replica(&mut self, master: usize) -> usize {
        assert!(self.is_private(), "{NOT_PRIVATE}");
        let node = RedisServer::start_private(true, false);
        let port = node.port();
        let seed = &self.nodes[master];
        let bus = seed
            .private
            .as_ref()
            .and_then(|p| p.bus_port)
            .expect("a cluster node has a bus port");
        cluster_ok(
            port,
            &format!("CLUSTER MEET 127.0.0.1 {} {bus}", seed.port()),
        );
        let id = inline_command(seed.port(), "CLUSTER MYID").expect("CLUSTER MYID");
        // A node replicates only a master it has heard of.
        poll_until(
            CLUSTER_TIMEOUT,
            "the new node to learn of its master",
            || inline_command(port, "CLUSTER NODES").is_ok_and(|nodes| nodes.contains(&id)),
        );
        cluster_ok(port, &format!("CLUSTER REPLICATE {id}"));
        poll_until(CLUSTER_TIMEOUT, "the replica's first sync", || {
            inline_command(port, "INFO replication")
                .is_ok_and(|info| info_field(&info, "master_link_status") == Some("up"))
        });
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Promotes replica node `i` with `CLUSTER FAILOVER` (its master agrees
    /// and steps down, as in a planned switchover) and waits until every
    /// node sees a healthy cluster again.
    pub fn fail_over_to(&self, i: usize) {
        let port = self.node(i).port();
        cluster_ok(port, "CLUSTER FAILOVER");
        poll_until(CLUSTER_TIMEOUT, "the replica to take over", || {
            inline_command(port, "INFO replication")
                .is_ok_and(|info| info_field(&info, "role") == Some("master"))
        });
        self.wait_until_ok();
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Whether this process runs the nodes (so faults can be injected).
    pub fn is_private(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// The i-th node, to stop, kill or restart it; panics when shared.
    pub fn node(&self, i: usize) -> &RedisServer {
        assert!(self.is_private(), "{NOT_PRIVATE}");
        &self.nodes[i]
    }

    /// The i-th node, mutably (`kill`, `restart`); panics when shared.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        assert!(self.is_private(), "{NOT_PRIVATE}");
        &mut self.nodes[i]
    }

    fn dir(&self) -> &Path {
        &self.nodes[0].private.as_ref().expect("private node").dir
    }

    fn create(&self) {
        let log_path = self.dir().join("cluster-create.log");
        let log = File::create(&log_path).expect("create cluster-create.log");
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port()));
        }
        let mut child = command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => panic!("{}", missing_binary("redis-cli")),
                _ => panic!("spawn redis-cli: {e}"),
            });
        let deadline = Instant::now() + CLUSTER_CREATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(POLL);
        };
        if status.is_none_or(|s| !s.success()) {
            panic!(
                "redis-cli --cluster create failed ({}):\n{}\n{}",
                status.map_or_else(
                    || format!("still running after {CLUSTER_CREATE_TIMEOUT:?}"),
                    |s| s.to_string()
                ),
                tail(&log_path, 40),
                self.log_tails(),
            );
        }
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let n = self.nodes.len().to_string();
        loop {
            let ok = self.nodes.iter().all(|node| {
                inline_command(node.port(), "CLUSTER INFO").is_ok_and(|info| {
                    info_field(&info, "cluster_state") == Some("ok")
                        && info_field(&info, "cluster_known_nodes") == Some(n.as_str())
                })
            });
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let infos: String = self
                    .nodes
                    .iter()
                    .map(|node| {
                        format!(
                            "CLUSTER INFO on {}: {:?}\n",
                            node.port(),
                            inline_command(node.port(), "CLUSTER INFO")
                        )
                    })
                    .collect();
                panic!(
                    "the cluster did not reach cluster_state:ok within {CLUSTER_TIMEOUT:?}\n{infos}{}",
                    self.log_tails()
                );
            }
            thread::sleep(POLL);
        }
    }

    fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|node| node.private.as_ref())
            .map(Private::log_tail)
            .collect()
    }
}

// ---- Assertions through the `redis` crate --------------------------------

/// A multiplexed connection to `url`.
pub async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("bad Redis URL {url}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs one command on a fresh connection to `url`, panicking on errors.
pub async fn query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let mut con = connection(url).await;
    cmd.query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("{cmd:?} on {url}: {e}"))
}

/// `INFO commandstats` as command name → `calls`: `get`, `evalsha`,
/// `config|resetstat`...
pub async fn command_stats(url: &str) -> HashMap<String, u64> {
    let info: String = query(url, redis::cmd("INFO").arg("commandstats")).await;
    parse_command_stats(&info)
}

fn parse_command_stats(info: &str) -> HashMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}

/// `DBSIZE`.
pub async fn dbsize(url: &str) -> u64 {
    query(url, &redis::cmd("DBSIZE")).await
}

/// The keys matching `pattern`, by `SCAN` (never `KEYS`), sorted.
pub async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let mut con = connection(url).await;
    let mut found = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .unwrap_or_else(|e| panic!("SCAN on {url}: {e}"));
        found.extend(batch);
        if next == 0 {
            return found.into_iter().collect();
        }
        cursor = next;
    }
}

/// `PTTL key`: milliseconds left, -1 without expiry, -2 without the key.
pub async fn ttl_ms(url: &str, key: &str) -> i64 {
    query(url, redis::cmd("PTTL").arg(key)).await
}

/// The URLs of the cluster's masters that are not marked as failing, as
/// `CLUSTER NODES` on the first of `urls` tells (so `urls` may be only some
/// seed nodes), keeping that URL's scheme and credentials.
pub async fn cluster_masters(urls: &[String]) -> Vec<String> {
    let seed = urls.first().expect("at least one cluster URL");
    let nodes: String = query(seed, redis::cmd("CLUSTER").arg("NODES")).await;
    let masters = parse_cluster_masters(&nodes);
    assert!(
        !masters.is_empty(),
        "no master in CLUSTER NODES on {seed}:\n{nodes}"
    );
    masters
        .iter()
        .map(|addr| with_host_port(seed, addr))
        .collect()
}

/// `ip:port` of each healthy master in a `CLUSTER NODES` reply, whose lines
/// are `<id> <ip:port@cport[,hostname]> <flags> <master> ...`.
fn parse_cluster_masters(nodes: &str) -> Vec<String> {
    let mut masters: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags: Vec<&str> = fields.next()?.split(',').collect();
            let healthy = flags.contains(&"master")
                && !flags
                    .iter()
                    .any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake"));
            let addr = addr.split(['@', ',']).next()?;
            healthy.then(|| addr.to_string())
        })
        .collect();
    masters.sort();
    masters
}

/// `url` with its `host:port` replaced by `addr`.
fn with_host_port(url: &str, addr: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// `DBSIZE` summed over the cluster's masters ([`cluster_masters`]).
pub async fn cluster_dbsize(urls: &[String]) -> u64 {
    let mut total = 0;
    for url in cluster_masters(urls).await {
        total += dbsize(&url).await;
    }
    total
}

/// The keys matching `pattern` on all the cluster's masters, sorted.
pub async fn cluster_keys(urls: &[String], pattern: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    for url in cluster_masters(urls).await {
        found.extend(keys(&url, pattern).await);
    }
    found.into_iter().collect()
}
