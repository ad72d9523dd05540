//! A real, private PostgreSQL server for the integration tests, and a
//! fresh schema for each test.
//!
//! [`PgServer::shared_or_start`] runs `initdb` into a fresh temporary
//! directory and starts `postgres` on a free loopback port (no Unix socket
//! outside that directory, no durability: `fsync=off`), and waits until it
//! accepts connections. With `DATABASE_URL` set it uses that server instead.
//! [`PgServer::schema`] gives each test a schema of its own, so tests share
//! the server without seeing each other's rows.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the
//! directory is handed to the `postgres` user and the server binaries run
//! under its uid and gid (set by `Command::uid`/`gid` before `exec`, so the
//! child *is* the postmaster, and killing it needs no extra process).
//!
//! The server never outlives the test process: a `sh` watchdog whose stdin
//! is a pipe from this process wakes up when the process exits (however it
//! exits: statics are never dropped), asks the server for an immediate
//! shutdown (SIGQUIT, which also ends its backends), kills it if it is still
//! there a second later, and removes the directory.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::TryRngCore;

/// How long a new server has to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const START_ATTEMPTS: usize = 3;

/// A PostgreSQL server for the tests: a private child process, or the one
/// at `DATABASE_URL`.
pub struct PgServer {
    /// The superuser URL of the `postgres` database.
    url: String,
    /// The server's log, for a private server (statements are logged there
    /// with the `application_name` of their connection first).
    log: Option<PathBuf>,
    private: Option<Private>,
}

struct Private {
    /// The postmaster; `None` after `kill`.
    child: Option<Child>,
    /// Held open: its closing (this process exiting) wakes the watchdog.
    watchdog: Option<(Child, ChildStdin)>,
    /// What `restart` needs to start the same server again.
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    durable: bool,
}

impl Private {
    /// Spawns `postgres` on `self.port` and waits until it accepts
    /// connections, with a watchdog of its own.
    fn spawn(&mut self) -> Result<(), String> {
        let out = File::options()
            .append(true)
            .open(&self.log)
            .expect("open the postgres log");
        // Without durability a commit may still sit in WAL buffers (shared
        // memory) when it returns, and a kill loses it; with it, a commit
        // returns once its WAL reached the OS, which a process kill keeps
        // (fsync only matters if the machine itself goes down).
        let commit = if self.durable { "on" } else { "off" };
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                &format!("synchronous_commit={commit}"),
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=400",
                "-c",
                "logging_collector=off",
                "-c",
                "log_line_prefix=%a|",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out);
        as_owner(&mut postgres, self.owner);
        let mut child = postgres.spawn().unwrap_or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => panic!("{} not found", self.bin.join("postgres").display()),
            _ => panic!("spawn postgres: {e}"),
        });
        let watchdog = spawn_watchdog(child.id(), &self.dir);
        match wait_ready(&mut child, self.port, &self.log) {
            Ok(()) => {
                self.child = Some(child);
                self.watchdog = watchdog;
                Ok(())
            }
            Err(e) => {
                if let Some((mut w, stdin)) = watchdog {
                    let _ = w.kill();
                    let _ = w.wait();
                    drop(stdin);
                }
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// SIGKILL to the postmaster and every process it started, as a crash
    /// would: no shutdown, no checkpoint. The watchdog goes first, so that
    /// it never signals a reaped pid.
    fn kill(&mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let backends = children_of(child.id());
        let _ = child.kill();
        for pid in backends {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = child.wait();
        // The backends are the postmaster's children, reparented now: wait
        // until they are gone, so the restart finds no shared memory in use.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && fs::read_to_string(self.data.join("postmaster.pid")).is_ok()
        {
            if !any_alive(&self.data) {
                break;
            }
            thread::sleep(POLL);
        }
    }
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Whether a process still runs with its working directory under the
/// server's data directory (a backend of the killed server).
fn any_alive(data: &Path) -> bool {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
                && fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(data))
        })
}

impl PgServer {
    /// The server at `DATABASE_URL` when that is set, else a private one.
    pub fn shared_or_start() -> PgServer {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => PgServer {
                url: url.trim().to_owned(),
                log: None,
                private: None,
            },
            _ => Self::start(),
        }
    }

    /// Starts a private server; panics with the log when it cannot.
    pub fn start() -> PgServer {
        Self::start_private(false)
    }

    /// A private server whose commits survive `kill` (`synchronous_commit`
    /// on), for fault tests that kill it and `restart` it.
    pub fn start_durable() -> PgServer {
        Self::start_private(true)
    }

    fn start_private(durable: bool) -> PgServer {
        let bin = binaries().unwrap_or_else(|| {
            panic!(
                "initdb and postgres were not found on PATH, in /usr/local/bin or under \
                 /usr/lib/postgresql/*/bin: run scripts/test.sh, which installs postgresql"
            )
        });
        let dir = fresh_temp_dir();
        let owner = if is_root() {
            Some(postgres_ids())
        } else {
            None
        };
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        File::create(&log).expect("create the postgres log");
        if let Some((uid, gid)) = owner {
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown {} failed", dir.display());
        }
        let initdb_log = dir.join("initdb.log");
        let out = File::create(&initdb_log).expect("create the initdb log");
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
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out);
        as_owner(&mut initdb, owner);
        let status = initdb.status().expect("run initdb");
        assert!(
            status.success(),
            "initdb failed ({status}):\n{}",
            tail(&initdb_log, 30)
        );
        let mut private = Private {
            child: None,
            watchdog: None,
            bin,
            dir,
            data,
            log: log.clone(),
            port: 0,
            owner,
            durable,
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            private.port = free_port();
            match private.spawn() {
                Ok(()) => {
                    return PgServer {
                        url: format!("postgres://postgres@127.0.0.1:{}/postgres", private.port),
                        log: Some(log),
                        private: Some(private),
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("postgres did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// SIGKILL to the server and its backends (a crash). Panics on a shared
    /// server.
    pub fn kill(&mut self) {
        self.private
            .as_mut()
            .expect("fault tests need a private PostgreSQL, not DATABASE_URL")
            .kill();
    }

    /// Starts the server again on the same port and data directory (it
    /// recovers from its WAL) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let private = self
            .private
            .as_mut()
            .expect("fault tests need a private PostgreSQL, not DATABASE_URL");
        private.kill();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match private.spawn() {
                Ok(()) => return,
                Err(e) => {
                    last_error = e;
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "postgres could not be restarted on port {}: {last_error}",
            private.port
        );
    }

    /// The superuser URL of the server's `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's log, when this process runs the server.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Creates a fresh schema, `t<16 hex digits>`, and returns its name.
    pub async fn schema(&self) -> String {
        use sqlx::Connection;
        let name = format!("t{:016x}", random_u64());
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL at {}: {e}", self.url));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test schema");
        let _ = conn.close().await;
        name
    }
}

/// Options for a pool on the server whose connections live in `schema` and
/// carry it as their `application_name` (so that the log can tell them).
pub fn options(server: &PgServer, schema: &str) -> sqlx::postgres::PgConnectOptions {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(server.url())
        .expect("a valid DATABASE_URL")
        .options([("search_path", schema)])
        .application_name(schema)
}

/// A fresh 64-bit random number.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    OsRng.try_next_u64().unwrap_or(0) ^ n.rotate_left(48)
}

/// The directory holding both `initdb` and `postgres`: on PATH, in
/// /usr/local/bin, or the newest /usr/lib/postgresql/*/bin.
fn binaries() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/local/bin"));
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
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

fn is_root() -> bool {
    id(&["-u"]) == 0
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    (id(&["-u", "postgres"]), id(&["-g", "postgres"]))
}

/// Runs `id ARGS` and reads the number it prints.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run id {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "id {args:?} printed no number (is there a `postgres` user? \
                 scripts/test.sh installs postgresql, which creates it)"
            )
        })
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.gid(gid).uid(uid);
    }
}

/// Waits until the server says it is ready and its port accepts.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited with {status}\n{}", tail(log, 30)));
        }
        let ready = fs::read_to_string(log)
            .map(|l| l.contains("ready to accept connections"))
            .unwrap_or(false);
        if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "postgres did not accept connections on port {port} within {START_TIMEOUT:?}\n{}",
                tail(log, 30)
            ));
        }
        thread::sleep(POLL);
    }
}

/// `sh -c 'read x; ...'` with a piped stdin: when this process exits, EOF
/// wakes it to shut the server down and remove its directory.
fn spawn_watchdog(pid: u32, dir: &Path) -> Option<(Child, ChildStdin)> {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn fresh_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-pg-{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A directory removed when this process exits (by a watchdog, as above),
/// for the SQLite test databases.
pub fn process_temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-{kind}-{}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let cleaner = Command::new("sh")
        .args(["-c", "read x; rm -rf \"$0\""])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut cleaner) = cleaner {
        // Leaked on purpose: the pipe must stay open until the process ends.
        if let Some(stdin) = cleaner.stdin.take() {
            std::mem::forget(stdin);
        }
        std::mem::forget(cleaner);
    }
    dir
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n") + "\n"
}
