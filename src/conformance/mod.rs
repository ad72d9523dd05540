//! The store conformance suite: checks that a [`SessionStore`] behaves the
//! way the layer relies on (feature `conformance`).
//!
//! Every check is an async function taking a fresh, empty store, kept in
//! the file of the trait area it checks (`load`, `save`, `rotate`, `login`,
//! `users`, `connections`), which also lists it. It drives
//! the store through the [`SessionStore`] trait only, and panics with a
//! message saying what was expected and what happened when the store falls
//! short. [`run_all`] runs every check, each on a new store from a factory;
//! [`conformance_tests!`](crate::conformance_tests) generates one test per
//! check so that a failure names its check.
//!
//! ```no_run
//! // tests/conformance.rs in the crate of your store.
//! use sessionkit::MemoryStore;
//!
//! /// A new, empty store for each check: for a shared backend, give each one
//! /// its own key prefix.
//! async fn fresh_store() -> MemoryStore {
//!     MemoryStore::new() // your store here
//! }
//!
//! // One `#[tokio::test]` per check, named after it. The attribute is
//! // optional (`#[tokio::test]` when left out).
//! sessionkit::conformance_tests!(
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     fresh_store
//! );
//!
//! // Or every check in one test, with a report of all the failures.
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conforms() {
//!     sessionkit::conformance::run_all(fresh_store).await;
//! }
//! # fn main() {}
//! ```
//!
//! # Time
//!
//! Stores take the current time from the caller. Each check starts at the
//! wall-clock time ([`SystemClock`](crate::clock::SystemClock)) and only ever moves time *forward*,
//! logically, in steps of milliseconds to hours: nothing sleeps for a
//! deadline. A store may therefore give its records real TTLs counted from
//! the `now` it is given (that time is never earlier than the real one), but
//! must decide liveness with the `now` it is given, not with its own clock.
//! Boundaries are exact: a deadline `d` means live at `d - 1`, gone at `d`.
//!
//! # Events
//!
//! Checks that expect a [`SessionEnded`](crate::store::SessionEnded) event subscribe before acting and
//! wait up to two seconds for it, skipping unrelated events, so a store may
//! deliver events asynchronously (pub/sub).
//!
//! # Runtime
//!
//! Checks spawn Tokio tasks for their concurrent parts, so they must run
//! inside a Tokio runtime; a multi-threaded one exercises real parallelism.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::store::SessionStore;

mod connections;
mod load;
mod login;
mod rotate;
mod save;
mod support;
mod users;

pub use connections::*;
pub use load::*;
pub use login::*;
pub use rotate::*;
pub use save::*;
pub use users::*;

/// Seals `replacement` under `old` as the layer does before a rotation
/// ([`Rotation::sealed`](crate::store::Rotation::sealed)): for tests that
/// drive a store directly. A store never seals or opens tokens itself.
pub fn seal(old: &crate::token::Token, replacement: &crate::token::Token) -> String {
    crate::token::seal(old, replacement)
}

/// Opens what [`seal`] produced with the old token, as the layer does with
/// a replacement a store hands out: for tests that check what a store keeps.
pub fn unseal(old: &crate::token::Token, sealed: &str) -> Option<crate::token::Token> {
    crate::token::unseal(old, sealed)
}

/// Runs a mode over every area's checks. Each area file lists its own
/// checks in a macro of its own, so adding a check is an edit of one file.
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance {
    (@with $($mode:tt)*) => {
        $crate::__sessionkit_conformance_load! { $($mode)* }
        $crate::__sessionkit_conformance_save! { $($mode)* }
        $crate::__sessionkit_conformance_rotate! { $($mode)* }
        $crate::__sessionkit_conformance_login! { $($mode)* }
        $crate::__sessionkit_conformance_users! { $($mode)* }
        $crate::__sessionkit_conformance_connections! { $($mode)* }
    };
    (@list [names $out:ident] $($check:ident),* $(,)?) => {
        $out.extend([$(stringify!($check)),*]);
    };
    (@list [run $make:ident $failures:ident] $($check:ident),* $(,)?) => {
        $(
            if let Err(message) = outcome($check($make().await)).await {
                $failures.push((stringify!($check), message));
            }
        )*
    };
    (@list [tests # $attr:tt $make:expr] $($check:ident),* $(,)?) => {
        $(
            #[doc = concat!("Conformance check `", stringify!($check), "`.")]
            # $attr
            async fn $check() {
                let make = $make;
                $crate::conformance::$check(make().await).await;
            }
        )*
    };
}

/// Generates one test per conformance check, each named after its check
/// and run on a fresh store (feature `conformance`).
///
/// It takes an optional test attribute (default `#[tokio::test]`, so the
/// calling crate needs `tokio` with the `macros` and `rt` features) and a
/// store factory: anything callable as `make().await` that yields a new,
/// empty store, such as an `async fn` or `|| async { .. }`.
///
/// ```no_run
/// sessionkit::conformance_tests!(
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     || async { sessionkit::MemoryStore::new() }
/// );
/// # fn main() {}
/// ```
///
/// See the [`conformance`](crate::conformance) module for what is checked.
#[macro_export]
macro_rules! conformance_tests {
    (# $attr:tt $make:expr $(,)?) => {
        $crate::__sessionkit_conformance! { @with tests # $attr $make }
    };
    ($make:expr $(,)?) => {
        $crate::conformance_tests!(
            #[::tokio::test]
            $make
        );
    };
}

/// The name of every check, in the order [`run_all`] runs them. Each is a
/// function of this module taking a fresh store.
pub fn checks() -> Vec<&'static str> {
    let mut names = Vec::new();
    crate::__sessionkit_conformance! { @with names names }
    names
}

/// Runs every check, each on a fresh store from `make`, and panics at the
/// end with the list of the checks that failed (each failure's own panic
/// message is printed as it happens, too).
pub async fn run_all<S, F, Fut>(make: F)
where
    S: SessionStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    crate::__sessionkit_conformance! { @with run make failures }
    if !failures.is_empty() {
        let report: Vec<String> = failures
            .iter()
            .map(|(check, message)| format!("- {check}: {message}"))
            .collect();
        panic!(
            "{} of {} store conformance checks failed:\n{}",
            failures.len(),
            checks().len(),
            report.join("\n")
        );
    }
}

async fn outcome(check: impl Future<Output = ()>) -> Result<(), String> {
    AssertUnwindSafe(check)
        .catch_unwind()
        .await
        .map_err(panic_message)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}
