#![cfg(feature = "conformance")]
//! The store conformance suite against `MemoryStore`: one test per check,
//! each on a fresh store.

use sessionkit::conformance::CHECKS;
use sessionkit::MemoryStore;

sessionkit::conformance_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    || async { MemoryStore::new() }
);

#[test]
fn check_names_are_unique() {
    let mut names = CHECKS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CHECKS.len(), "a check is listed twice");
    assert!(CHECKS.contains(&"rotate_is_single_flight"));
}
