//! The connection to Redis (one server or a cluster), and how it is kept
//! usable.
//!
//! The `redis` crate reconnects when a connection breaks, but not when it
//! goes silent (a firewall or load balancer dropped its state, the peer
//! vanished): requests then only time out, for as long as the kernel keeps
//! the socket. So the connections the store opens send TCP keepalive probes,
//! which also keep idle connections from being dropped, and after a few
//! timeouts in a row the store opens a new connection and drops the old one.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{FromRedisValue, RedisResult, ScriptInvocation};

use crate::store::{Result, StoreError};

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
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

/// How to open a connection, again if need be.
#[derive(Clone)]
pub(super) enum Source {
    Single(redis::Client, ConnectionManagerConfig),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster::ClusterClient),
}

impl Source {
    async fn open(&self) -> RedisResult<Conn> {
        match self {
            Source::Single(client, config) => Ok(Conn::Single(
                client
                    .get_connection_manager_with_config(config.clone())
                    .await?,
            )),
            #[cfg(feature = "redis-cluster")]
            Source::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// The store's connection, its command timeout, and the count of timeouts
/// in a row that decides when to replace it.
pub(super) struct Link {
    source: Source,
    conn: RwLock<Conn>,
    timeout: Duration,
    timeouts: AtomicU32,
    reconnecting: AtomicBool,
}

impl Link {
    /// Opens the first connection, within `timeout`.
    pub(super) async fn open(source: Source, timeout: Duration) -> Result<Arc<Link>> {
        let conn = tokio::time::timeout(timeout, source.open())
            .await
            .map_err(|_| StoreError::timeout())?
            .map_err(StoreError::backend)?;
        Ok(Arc::new(Link {
            source,
            conn: RwLock::new(conn),
            timeout,
            timeouts: AtomicU32::new(0),
            reconnecting: AtomicBool::new(false),
        }))
    }

    /// The connection to use now.
    pub(super) fn conn(&self) -> Conn {
        // A poisoned lock still holds a whole connection: writers only swap it.
        self.conn
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        !matches!(self.source, Source::Single(..))
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one command under the timeout, counting timeouts in a row.
    pub(super) async fn within<T>(
        self: &Arc<Self>,
        fut: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            // The client's own response timeout may fire first.
            Ok(Err(err)) if err.is_timeout() => {
                self.timed_out();
                Err(StoreError::backend(err))
            }
            Ok(result) => {
                self.timeouts.store(0, Ordering::Relaxed);
                result.map_err(StoreError::backend)
            }
            Err(_) => {
                self.timed_out();
                Err(StoreError::timeout())
            }
        }
    }

    /// After enough timeouts in a row, opens a new connection in the
    /// background (one attempt at a time) and swaps it in.
    fn timed_out(self: &Arc<Self>) {
        let count = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        if count < TIMEOUTS_BEFORE_RECONNECT || self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(link.timeout, link.source.open()).await {
                Ok(Ok(conn)) => {
                    *link
                        .conn
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = conn;
                    link.timeouts.store(0, Ordering::Relaxed);
                    tracing::warn!(
                        timeouts = count,
                        "Redis connection replaced after timeouts in a row"
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
