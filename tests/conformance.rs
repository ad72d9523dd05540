#![cfg(feature = "conformance")]
//! The store conformance suite against every store: `MemoryStore`, a Redis
//! server and a Redis Cluster. One test per check and store, each on a
//! fresh store (for Redis, a fresh key prefix on a server shared by the
//! whole test binary).

mod support;

use std::sync::OnceLock;

use sessionkit::conformance::CHECKS;
use support::redis::{random_prefix, RedisCluster, RedisServer};

mod memory {
    use sessionkit::MemoryStore;

    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || async { MemoryStore::new() }
    );
}

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::shared_or_start)
}

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

mod redis {
    use sessionkit::RedisStore;

    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || async {
            RedisStore::builder()
                .prefix(super::random_prefix())
                .connect(&super::server().url())
                .await
                .expect("connect to the test server")
        }
    );
}

mod cluster {
    use sessionkit::RedisStore;

    sessionkit::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        || async {
            RedisStore::builder()
                .prefix(super::random_prefix())
                .cluster(super::cluster().urls())
                .await
                .expect("connect to the test cluster")
        }
    );
}

#[test]
fn check_names_are_unique() {
    let mut names = CHECKS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CHECKS.len(), "a check is listed twice");
    assert!(CHECKS.contains(&"rotate_is_single_flight"));
}
