//! The deadline of the store call in progress, for stores that bound their
//! calls themselves.
//!
//! The layer bounds every store call (`store_timeout`). Around a store that
//! sets no timer of its own it runs one; a store that does (the Redis store
//! bounds each command) would make that two timers per call, and on a busy
//! runtime each timer costs a lock of tokio's timer wheel to register and
//! another to cancel. So a store that says it honours the caller's deadline
//! ([`SessionStore::honors_call_deadline`](super::SessionStore::honors_call_deadline))
//! gets the deadline instead, through [`call_deadline`], and sets one timer
//! at the earlier of the two.

use std::future::Future;

use tokio::time::Instant;

tokio::task_local! {
    static CALL_DEADLINE: Instant;
}

/// The instant by which the store call in progress must have failed with
/// [`StoreError::timeout`](super::StoreError::timeout), if its caller set
/// one. A store that returns `true` from
/// [`SessionStore::honors_call_deadline`](super::SessionStore::honors_call_deadline)
/// reads it in each call (from the task that polls the call) and gives up
/// by then.
pub fn call_deadline() -> Option<Instant> {
    CALL_DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Runs `call` with `deadline` as its [`call_deadline`].
pub(crate) async fn with_call_deadline<F: Future>(deadline: Instant, call: F) -> F::Output {
    CALL_DEADLINE.scope(deadline, call).await
}
