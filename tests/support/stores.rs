//! One scenario, every store: [`TestStore`] builds the in-memory store, a
//! store on a single Redis server or one on a Redis Cluster, one on an
//! SQLite file and one on PostgreSQL, and [`on_every_store!`] turns each
//! `async fn scenario(backend: Backend)` into one `#[tokio::test]` per
//! backend, named `memory::scenario`, `redis::scenario`, `cluster::scenario`,
//! `sqlite::scenario` and `postgres::scenario`.
//!
//! The Redis server, the cluster and the PostgreSQL server are started once
//! per test binary, on first use, and shared by its tests; each store gets a
//! fresh key prefix (Redis) or schema (PostgreSQL), so tests do not see each
//! other's data. Each SQLite store gets a fresh file in a directory of this
//! process. The harness's watchdogs kill the servers (and remove the
//! directories) when the test process exits.
//!
//! Time is logical: the layer passes its clock's time to every store call
//! and the Redis store's TTLs are relative, so advancing a `ManualClock`
//! works on Redis too. A key that is logically expired lingers in Redis until
//! its real TTL, though: checks that something was *removed* are only
//! meaningful on the memory store (after `purge_expired`).

use std::sync::{Arc, OnceLock};

use std::path::PathBuf;

use sessionkit::{ManualClock, MemoryStore, PostgresStore, RedisStore, SessionStore, SqliteStore};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;

use super::postgres::{self as pg, PgServer};
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
    /// `SqliteStore` on a fresh file.
    Sqlite,
    /// `SqliteStore` on `sqlite::memory:` (conformance only: one store).
    SqliteMemory,
    /// `PostgresStore` in a fresh schema of a private PostgreSQL server
    /// (or the one at `DATABASE_URL`).
    Postgres,
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

/// The one PostgreSQL server of this test binary.
static POSTGRES: OnceLock<PgServer> = OnceLock::new();
/// Where this test binary's SQLite files go (removed when it exits).
static SQLITE_DIR: OnceLock<PathBuf> = OnceLock::new();

pub fn postgres() -> &'static PgServer {
    POSTGRES.get_or_init(PgServer::shared_or_start)
}

/// A `PostgresStore` in `schema`, migrated, its feed on a channel of the
/// schema's name (so tests sharing the database do not hear each other).
pub async fn postgres_store(schema: &str, pool: PgPoolOptions) -> PostgresStore {
    let pool = pool
        .connect_with(pg::options(postgres(), schema))
        .await
        .expect("connect to the test PostgreSQL server");
    let store = PostgresStore::with_channel(pool, schema)
        .await
        .expect("listen on the test PostgreSQL server");
    store.migrate().await.expect("migrate the test schema");
    store
}

/// A fresh, migrated `SqliteStore` on `url`.
pub async fn sqlite_store(url: &str) -> SqliteStore {
    let store = SqliteStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    store.migrate().await.expect("migrate the test database");
    store
}

/// A fresh SQLite file URL in this process's directory.
pub fn sqlite_url() -> String {
    let dir = SQLITE_DIR.get_or_init(|| pg::process_temp_dir("sqlite"));
    format!(
        "sqlite://{}",
        dir.join(format!("{:016x}.db", pg::random_u64())).display()
    )
}

/// A pool to look inside a SQL store.
enum Sql {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Sql {
    async fn count(&self, query: &str) -> usize {
        let n: i64 = match self {
            Sql::Sqlite(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
            Sql::Postgres(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
        }
        .expect("count rows");
        usize::try_from(n).expect("a count")
    }
}

/// A store for one test, and what is needed to look inside it.
pub struct TestStore {
    pub store: Arc<dyn SessionStore>,
    pub backend: Backend,
    /// The memory backend's store, for memory-only inspection.
    memory: Option<MemoryStore>,
    /// The key prefix (Redis and Cluster), the schema (PostgreSQL) or the
    /// database URL (SQLite).
    prefix: String,
    /// The SQL stores' pool.
    sql: Option<Sql>,
}

impl TestStore {
    /// A fresh, empty store on `backend`. The memory store reads `clock`
    /// (for its background reaper); the Redis stores get the time from the
    /// layer.
    pub async fn new(backend: Backend, clock: &ManualClock) -> TestStore {
        let mut prefix = random_prefix();
        let mut sql = None;
        let (store, memory): (Arc<dyn SessionStore>, _) = match backend {
            Backend::Memory => {
                let memory = MemoryStore::with_clock(clock.clone());
                (Arc::new(memory.clone()), Some(memory))
            }
            Backend::Redis | Backend::Cluster => {
                (Arc::new(redis_client(backend, &prefix).await), None)
            }
            Backend::Sqlite | Backend::SqliteMemory => {
                prefix = match backend {
                    Backend::Sqlite => sqlite_url(),
                    _ => "sqlite::memory:".to_owned(),
                };
                let store = sqlite_store(&prefix).await;
                sql = Some(Sql::Sqlite(store.pool().clone()));
                (Arc::new(store), None)
            }
            Backend::Postgres => {
                prefix = postgres().schema().await;
                let store = postgres_store(&prefix, PgPoolOptions::new().max_connections(4)).await;
                sql = Some(Sql::Postgres(store.pool().clone()));
                (Arc::new(store), None)
            }
        };
        TestStore {
            store,
            backend,
            memory,
            prefix,
            sql,
        }
    }

    /// Another client of the same store, as a second app server would
    /// have: the same `MemoryStore` or `SqliteStore` (its feed is the
    /// process's), a new `RedisStore` connection with the same prefix, or a
    /// new `PostgresStore` pool on the same schema (so that what one does
    /// reaches the other only through the server).
    pub async fn another_client(&self) -> Arc<dyn SessionStore> {
        match self.backend {
            Backend::Memory | Backend::Sqlite | Backend::SqliteMemory => self.store.clone(),
            Backend::Redis | Backend::Cluster => {
                Arc::new(redis_client(self.backend, &self.prefix).await)
            }
            Backend::Postgres => Arc::new(
                postgres_store(&self.prefix, PgPoolOptions::new().max_connections(4)).await,
            ),
        }
    }

    /// The memory store; panics on the other backends.
    pub fn memory(&self) -> &MemoryStore {
        self.memory
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} is not the memory store", self.backend))
    }

    /// How many tokens the store holds (live, in grace, or expired but not
    /// yet removed): token entries in memory, `t:` keys on Redis, token
    /// columns set in SQL.
    pub async fn tokens(&self) -> usize {
        if let Some(sql) = &self.sql {
            return sql
                .count("SELECT COUNT(*) + COUNT(previous_hash) FROM sessionkit_sessions")
                .await;
        }
        match &self.memory {
            Some(memory) => memory.footprint().0,
            None => self.keys("t").await.len(),
        }
    }

    /// How many sessions the store holds (live or not yet removed): session
    /// entries in memory, `s:` keys on Redis, rows in SQL.
    pub async fn sessions(&self) -> usize {
        if let Some(sql) = &self.sql {
            return sql.count("SELECT COUNT(*) FROM sessionkit_sessions").await;
        }
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
            Backend::Memory | Backend::Sqlite | Backend::SqliteMemory | Backend::Postgres => {
                panic!("the {:?} store has no keys", self.backend)
            }
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
        _ => unreachable!("the {backend:?} store has no Redis client"),
    }
}

/// For each `async fn scenario(backend: Backend)` listed, one test per
/// backend: `memory::scenario`, `redis::scenario`, `cluster::scenario`,
/// `sqlite::scenario`, `postgres::scenario`.
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
        $crate::support::stores::on_every_store!(
            @backend sqlite Sqlite [$($name),*] [$($($parallel),*)?]
        );
        $crate::support::stores::on_every_store!(
            @backend postgres Postgres [$($name),*] [$($($parallel),*)?]
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
