#![cfg(feature = "conformance")]
//! The store conformance suite against every store: `MemoryStore`, a Redis
//! server, a Redis Cluster, SQLite (a file, and memory) and PostgreSQL. One
//! test per check and store, each on a fresh store (for Redis, a fresh key
//! prefix on a server shared by the whole test binary; for PostgreSQL, a
//! fresh schema likewise; for SQLite, a fresh database).

mod support;

use std::sync::Arc;

use sessionkit::conformance::checks;
use sessionkit::{ManualClock, SessionStore};
use support::stores::{Backend, TestStore};

async fn fresh(backend: Backend) -> Arc<dyn SessionStore> {
    TestStore::new(backend, &ManualClock::new()).await.store
}

mod memory {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::Memory)
    );
}

mod redis {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::Redis)
    );
}

mod cluster {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::Cluster)
    );
}

mod sqlite {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::Sqlite)
    );
}

mod sqlite_memory {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::SqliteMemory)
    );
}

mod postgres {
    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || super::fresh(super::Backend::Postgres)
    );
}

#[test]
fn check_names_are_unique() {
    let all = checks();
    let mut names = all.clone();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "a check is listed twice");
    assert!(all.contains(&"rotate_is_single_flight"));
}
