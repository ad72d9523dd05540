//! The connections to Redis (one server or a cluster), how scripts are
//! called on them, and how they are kept usable.
//!
//! On one server the store keeps one multiplexed connection by default, or
//! several ([`RedisStoreBuilder::connections`](super::RedisStoreBuilder::connections))
//! that calls take in turn. One connection lets the commands of concurrent
//! requests go out in shared writes, and on loopback a write costs the
//! sender the whole trip through the kernel, so one is the cheapest; but
//! it serializes every request's encoding, writing and reply parsing behind
//! a single driver task, which an app with many cores may outgrow. A
//! cluster connection is already one connection per node.
//!
//! The `redis` crate reconnects when a connection breaks, but not when it
//! goes silent (a firewall or load balancer dropped its state, the peer
//! vanished): requests then only time out, for as long as the kernel keeps
//! the socket. So the connections the store opens send TCP keepalive probes,
//! which also keep idle connections from being dropped, and after a few
//! timeouts in a row the store opens a new connection and drops the old one.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind, Value};

use super::scripts::{function_load, Call, Mode};
use crate::store::{call_deadline, Result, StoreError};

/// Timeouts in a row after which the connection is replaced.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// TCP settings for the connections the store opens itself.
pub(super) fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_interval(Duration::from_secs(10));
    let settings = TcpSettings::default().set_keepalive(keepalive);
    // Unacknowledged data (a request to a vanished server) fails the
    // connection after this long, instead of the kernel's many minutes.
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(30));
    settings
}

/// An open connection: cheap to clone, clones share it.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => pipe.query_async(&mut c.clone()).await,
        }
    }
}

/// How to open the connections, again if need be.
#[derive(Clone)]
pub(super) enum Source {
    /// A server, its connections' settings and how many to open.
    Single(redis::Client, ConnectionManagerConfig, usize),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster::ClusterClient),
}

impl Source {
    async fn open(&self) -> RedisResult<Vec<Conn>> {
        match self {
            Source::Single(client, config, count) => {
                let mut conns = Vec::with_capacity(*count);
                for _ in 0..(*count).max(1) {
                    conns.push(Conn::Single(
                        client
                            .get_connection_manager_with_config(config.clone())
                            .await?,
                    ));
                }
                Ok(conns)
            }
            #[cfg(feature = "redis-cluster")]
            Source::Cluster(client) => {
                Ok(vec![Conn::Cluster(client.get_async_connection().await?)])
            }
        }
    }
}

/// The store's connections, how the server runs scripts, the command
/// timeout, and the count of timeouts in a row that decides when to
/// replace the connections.
pub(super) struct Link {
    source: Source,
    conns: RwLock<Vec<Conn>>,
    next: AtomicUsize,
    mode: Mode,
    timeout: Duration,
    timeouts: AtomicU32,
    reconnecting: AtomicBool,
}

/// Whether a server that answered `err` lacks the library or the script
/// (it restarted, or they were flushed) and should be given it again.
fn needs_load(mode: Mode, err: &RedisError) -> bool {
    match mode {
        Mode::Functions => {
            err.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
                && err
                    .detail()
                    .is_some_and(|d| d.starts_with("Function not found"))
        }
        Mode::Scripts => err.kind() == ErrorKind::Server(ServerErrorKind::NoScript),
    }
}

impl Link {
    /// Opens the connections and loads the library, within `timeout`.
    pub(super) async fn open(source: Source, timeout: Duration) -> Result<Arc<Link>> {
        let opening = async {
            let conns = source.open().await?;
            let first = conns
                .first()
                .ok_or_else(|| RedisError::from((ErrorKind::Client, "no connection opened")))?;
            let mode = match first.query::<Value>(&function_load()).await {
                Ok(_) => Mode::Functions,
                // A server without Functions (before 7.0), or one that
                // refuses them (an ACL, a renamed command): scripts work
                // there too.
                Err(err) if matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension) => {
                    tracing::debug!(error = %err, "no Redis Functions: scripts are sent with EVALSHA");
                    Mode::Scripts
                }
                Err(err) => return Err(err),
            };
            Ok((conns, mode))
        };
        let (conns, mode) = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| StoreError::timeout())?
            .map_err(StoreError::backend)?;
        Ok(Arc::new(Link {
            source,
            conns: RwLock::new(conns),
            next: AtomicUsize::new(0),
            mode,
            timeout,
            timeouts: AtomicU32::new(0),
            reconnecting: AtomicBool::new(false),
        }))
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// The connection to use now: the next in turn.
    pub(super) fn conn(&self) -> Conn {
        // A poisoned lock still holds whole connections: writers only swap
        // them.
        let conns = self
            .conns
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
        conns[i].clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        !matches!(self.source, Source::Single(..))
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a script call under the timeout. A server that lacks the
    /// library (restarted, flushed, or a cluster master added since) is
    /// given it again, then the call is retried once.
    pub(super) async fn call<T: FromRedisValue>(self: &Arc<Self>, call: &Call) -> Result<T> {
        let conn = self.conn();
        self.within(async {
            match conn.query::<T>(&call.cmd).await {
                Err(err) if needs_load(self.mode, &err) => {
                    let load = match self.mode {
                        Mode::Functions => function_load(),
                        Mode::Scripts => call.script_load(),
                    };
                    tracing::debug!("loading the sessionkit scripts into Redis again");
                    conn.query::<Value>(&load).await?;
                    conn.query::<T>(&call.cmd).await
                }
                result => result,
            }
        })
        .await
    }

    /// Runs one command under the timeout.
    pub(super) async fn query<T: FromRedisValue>(self: &Arc<Self>, cmd: &redis::Cmd) -> Result<T> {
        let conn = self.conn();
        self.within(conn.query(cmd)).await
    }

    /// Sends a pipeline (a transaction, if atomic) in one round trip under
    /// the timeout.
    pub(super) async fn query_pipe<T: FromRedisValue>(
        self: &Arc<Self>,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let conn = self.conn();
        self.within(conn.query_pipe(pipe)).await
    }

    /// Whether a save of data alone may be a plain transaction instead of
    /// the save function (see [`ops::write_data`](super::ops::write_data)).
    /// It needs `PEXPIRE .. NX` (Redis 7.0, as do Functions) and `MULTI` on
    /// one connection, which a cluster connection does not give.
    pub(super) fn writes_in_transactions(&self) -> bool {
        matches!(self.mode, Mode::Functions) && !self.is_cluster()
    }

    /// Runs one command under the timeout, or by the caller's earlier
    /// deadline (one timer either way), counting timeouts of its own in a
    /// row.
    async fn within<T>(
        self: &Arc<Self>,
        fut: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let own = tokio::time::Instant::now() + self.timeout;
        let deadline = call_deadline().map_or(own, |caller| caller.min(own));
        match tokio::time::timeout_at(deadline, fut).await {
            // The cluster client's own response timeout may fire first.
            Ok(Err(err)) if err.is_timeout() => {
                self.timed_out();
                Err(StoreError::backend(err))
            }
            Ok(result) => {
                self.timeouts.store(0, Ordering::Relaxed);
                result.map_err(StoreError::backend)
            }
            Err(_) => {
                // Only a command that outlived the store's own timeout
                // says the connection may be dead; the caller's deadline
                // may just be short, or spent by earlier commands.
                if deadline == own {
                    self.timed_out();
                }
                Err(StoreError::timeout())
            }
        }
    }

    /// After enough timeouts in a row, opens new connections in the
    /// background (one attempt at a time) and swaps them in.
    fn timed_out(self: &Arc<Self>) {
        let count = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        if count < TIMEOUTS_BEFORE_RECONNECT || self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(link.timeout, link.source.open()).await {
                Ok(Ok(conns)) => {
                    *link
                        .conns
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = conns;
                    link.timeouts.store(0, Ordering::Relaxed);
                    tracing::warn!(
                        timeouts = count,
                        "Redis connections replaced after timeouts in a row"
                    );
                }
                // Still unreachable: the next timeout tries again.
                Ok(Err(err)) => tracing::debug!(error = %err, "Redis reconnection failed"),
                Err(_) => tracing::debug!("Redis reconnection timed out"),
            }
            link.reconnecting.store(false, Ordering::Release);
        });
    }
}
