//! One scenario, every store: [`TestStore`] builds the in-memory store, a
//! store on a single Redis server or one on a Redis Cluster, and
//! [`on_every_store!`] turns each `async fn scenario(backend: Backend)` into
//! one `#[tokio::test]` per backend, named `memory::scenario`,
//! `redis::scenario` and `cluster::scenario`.
//!
//! The Redis server and the cluster are started once per test binary, on
//! first use, and shared by its tests; each store gets a fresh key prefix, so
//! tests do not see each other's keys. The harness's watchdogs kill the
//! servers when the test process exits.
//!
//! Time is logical: the layer passes its clock's time to every store call
//! and the Redis store's TTLs are relative, so advancing a `ManualClock`
//! works on Redis too. A key that is logically expired lingers in Redis until
//! its real TTL, though: checks that something was *removed* are only
//! meaningful on the memory store (after `purge_expired`).

use std::sync::{Arc, OnceLock};

use sessionkit::{ManualClock, MemoryStore, RedisStore, SessionStore};

use super::redis::{cluster_keys, keys, random_prefix, RedisCluster, RedisServer};

/// Where a scenario's sessions live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryStore` on the test's clock.
    Memory,
    /// `RedisStore` on one private `redis-server`.
    Redis,
    /// `RedisStore` on a private 3-master Redis Cluster.
    Cluster,
}

/// The one Redis server of this test binary.
static SERVER: OnceLock<RedisServer> = OnceLock::new();
/// The one Redis Cluster of this test binary.
static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

fn server() -> &'static RedisServer {
    SERVER.get_or_init(RedisServer::shared_or_start)
}

fn cluster() -> &'static RedisCluster {
    CLUSTER.get_or_init(RedisCluster::start)
}

/// A store for one test, and what is needed to look inside it.
pub struct TestStore {
    pub store: Arc<dyn SessionStore>,
    pub backend: Backend,
    /// The memory backend's store, for memory-only inspection.
    memory: Option<MemoryStore>,
    /// The key prefix (Redis and Cluster).
    prefix: String,
}

impl TestStore {
    /// A fresh, empty store on `backend`. The memory store reads `clock`
    /// (for its background reaper); the Redis stores get the time from the
    /// layer.
    pub async fn new(backend: Backend, clock: &ManualClock) -> TestStore {
        let prefix = random_prefix();
        let (store, memory): (Arc<dyn SessionStore>, _) = match backend {
            Backend::Memory => {
                let memory = MemoryStore::with_clock(clock.clone());
                (Arc::new(memory.clone()), Some(memory))
            }
            Backend::Redis | Backend::Cluster => {
                (Arc::new(redis_client(backend, &prefix).await), None)
            }
        };
        TestStore {
            store,
            backend,
            memory,
            prefix,
        }
    }

    /// Another client of the same store, as a second app server would
    /// have: the same `MemoryStore`, or a new `RedisStore` connection with
    /// the same prefix (so that what one does reaches the other only
    /// through Redis).
    pub async fn another_client(&self) -> Arc<dyn SessionStore> {
        match self.backend {
            Backend::Memory => self.store.clone(),
            Backend::Redis | Backend::Cluster => {
                Arc::new(redis_client(self.backend, &self.prefix).await)
            }
        }
    }

    /// The memory store; panics on the other backends.
    pub fn memory(&self) -> &MemoryStore {
        self.memory
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} is not the memory store", self.backend))
    }

    /// How many tokens the store holds (live, in grace, or expired but not
    /// yet removed): token entries in memory, `t:` keys on Redis.
    pub async fn tokens(&self) -> usize {
        match &self.memory {
            Some(memory) => memory.footprint().0,
            None => self.keys("t").await.len(),
        }
    }

    /// How many sessions the store holds (live or not yet removed): session
    /// entries in memory, `s:` keys on Redis.
    pub async fn sessions(&self) -> usize {
        match &self.memory {
            Some(memory) => memory.len(),
            None => self.keys("s").await.len(),
        }
    }

    /// This store's Redis keys of one kind (`s`, `t`, `c`, `u`): every key
    /// is `<prefix>{<tag>}:<kind>:<name>`.
    pub async fn keys(&self, kind: &str) -> Vec<String> {
        let pattern = format!("{}*:{kind}:*", self.prefix);
        match self.backend {
            Backend::Memory => panic!("the memory store has no keys"),
            Backend::Redis => keys(&server().url(), &pattern).await,
            Backend::Cluster => cluster_keys(&cluster().urls(), &pattern).await,
        }
    }
}

async fn redis_client(backend: Backend, prefix: &str) -> RedisStore {
    let builder = RedisStore::builder().prefix(prefix);
    match backend {
        Backend::Redis => builder
            .connect(&server().url())
            .await
            .expect("connect to the test Redis server"),
        Backend::Cluster => builder
            .cluster(cluster().urls())
            .await
            .expect("connect to the test Redis Cluster"),
        Backend::Memory => unreachable!("the memory store has no Redis client"),
    }
}

/// For each `async fn scenario(backend: Backend)` listed, one test per
/// backend: `memory::scenario`, `redis::scenario`, `cluster::scenario`.
/// Scenarios listed after `parallel:` run on a multi-threaded runtime, so
/// that the requests they spawn really run in parallel.
///
/// ```ignore
/// on_every_store! {
///     a_scenario,
///     another_scenario;
///     parallel: a_scenario_with_many_requests,
/// }
/// ```
// Not every test binary that includes `support` uses it.
#[allow(unused_macros)]
macro_rules! on_every_store {
    (
        $($name:ident),* $(,)?
        $(; parallel: $($parallel:ident),* $(,)?)?
    ) => {
        $crate::support::stores::on_every_store!(
            @backend memory Memory [$($name),*] [$($($parallel),*)?]
        );
        $crate::support::stores::on_every_store!(
            @backend redis Redis [$($name),*] [$($($parallel),*)?]
        );
        $crate::support::stores::on_every_store!(
            @backend cluster Cluster [$($name),*] [$($($parallel),*)?]
        );
    };
    (@backend $module:ident $variant:ident [$($name:ident),*] [$($parallel:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::support::stores::Backend::$variant).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $parallel() {
                    super::$parallel($crate::support::stores::Backend::$variant).await
                }
            )*
        }
    };
}

#[allow(unused_imports)]
pub(crate) use on_every_store;
