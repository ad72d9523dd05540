//! Metrics: what sessionkit counts and measures, under which names and
//! labels, recorded through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`).
//!
//! Install any `metrics` recorder (for Prometheus,
//! `metrics-exporter-prometheus`) and the series below appear; without the
//! feature every recording function here is an empty body, so the crate's
//! call sites need no `cfg` of their own. The names are public constants so
//! that dashboards and tests can refer to them.
//!
//! | name | type | labels | what it counts |
//! |---|---|---|---|
//! | `sessionkit_sessions_created_total` | counter | | sessions stored: an anonymous one on its first write, and the authenticated one a login starts |
//! | `sessionkit_sessions_ended_total` | counter | `reason` | sessions ended by this process, by `reason`: `logout` ([`Session::logout`](crate::Session::logout)), `revoke` (revocations through the user's sessions, [`SessionManager`](crate::SessionManager) or `Session::revoke` / `logout_everywhere` / `logout_others`), `limit` (revoked by a login beyond `max_sessions_per_user`), `stale_token` (destroyed because a token was reused after its grace window, with `StaleTokenPolicy::Revoke`), `replaced` (the session a login replaced by the authenticated one), `expiry` (expired sessions the memory store removes and the SQL stores' `purge_expired` deletes; Redis expires keys by itself and counts none), `evicted` (anonymous sessions the memory store evicted to stay under [`max_sessions`](crate::store::MemoryStoreBuilder::max_sessions)) |
//! | `sessionkit_logins_total` | counter | | successful [`Session::login`](crate::Session::login) calls |
//! | `sessionkit_rotations_total` | counter | `outcome` | automatic token rotations by `outcome`: `installed` (this request's replacement became the token), `joined` (a concurrent request had rotated first; this one handed out the same replacement), `lapsed` (the previous replacement was never adopted within CIJS, so a fresh one was installed; such a rotation also counts as `installed`) |
//! | `sessionkit_store_call_duration_seconds` | histogram | `operation` | the duration of each store call, timeouts included, by `operation` (`load`, `rotate`, `save`, `create`, `login`, `destroy`, `regenerate`, `revoke`, `list_sessions`, `sync_user`, `connect`, `fetch`, `disconnect`, `list_connections`) |
//! | `sessionkit_store_errors_total` | counter | `operation`, `kind` | failed store calls by `operation` and error `kind` (`backend`, `timeout`, `corrupt`, `invalid`: [`StoreErrorKind`]) |
//! | `sessionkit_connections` | gauge | | connections (WebSockets, streams) this process holds open with [`Session::connect`](crate::Session::connect) |
//!
//! Label values are the fixed words above: never a token, a session id or
//! a user id, so the number of series stays bounded.
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # {
//! // Once, after installing a recorder: gives each series its help text
//! // and unit.
//! sessionkit::metrics::describe();
//! # }
//! ```

use std::time::Instant;

use crate::store::{EndReason, Rotated, StoreError, StoreErrorKind};

/// Counter: sessions stored.
pub const SESSIONS_CREATED: &str = "sessionkit_sessions_created_total";
/// Counter: sessions ended, by `reason`.
pub const SESSIONS_ENDED: &str = "sessionkit_sessions_ended_total";
/// Counter: successful logins.
pub const LOGINS: &str = "sessionkit_logins_total";
/// Counter: automatic token rotations, by `outcome`.
pub const ROTATIONS: &str = "sessionkit_rotations_total";
/// Histogram: store call durations in seconds, by `operation`.
pub const STORE_CALL_DURATION: &str = "sessionkit_store_call_duration_seconds";
/// Counter: failed store calls, by `operation` and `kind`.
pub const STORE_ERRORS: &str = "sessionkit_store_errors_total";
/// Gauge: live connections held by this process.
pub const CONNECTIONS: &str = "sessionkit_connections";

/// Why a session ended, as the `reason` label of [`SESSIONS_ENDED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Logout,
    Revoke,
    Limit,
    StaleToken,
    Replaced,
    Expiry,
    Evicted,
}

impl Ended {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Ended::Logout => "logout",
            Ended::Revoke => "revoke",
            Ended::Limit => "limit",
            Ended::StaleToken => "stale_token",
            Ended::Replaced => "replaced",
            Ended::Expiry => "expiry",
            Ended::Evicted => "evicted",
        }
    }
}

/// How a rotation went, as the `outcome` label of [`ROTATIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rotation {
    Installed,
    Joined,
    Lapsed,
}

impl Rotation {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Rotation::Installed => "installed",
            Rotation::Joined => "joined",
            Rotation::Lapsed => "lapsed",
        }
    }
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn kind_label(kind: StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::Backend => "backend",
        StoreErrorKind::Timeout => "timeout",
        StoreErrorKind::Corrupt => "corrupt",
        StoreErrorKind::Invalid => "invalid",
    }
}

/// Registers the help text and unit of every series with the installed
/// recorder. Optional: the series are recorded without it, only
/// undescribed.
#[cfg(feature = "metrics")]
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        SESSIONS_CREATED,
        Unit::Count,
        "Sessions stored: anonymous ones on their first write, and those logins start."
    );
    describe_counter!(
        SESSIONS_ENDED,
        Unit::Count,
        "Sessions ended by this process, by reason."
    );
    describe_counter!(LOGINS, Unit::Count, "Successful logins.");
    describe_counter!(
        ROTATIONS,
        Unit::Count,
        "Automatic token rotations, by outcome."
    );
    describe_histogram!(
        STORE_CALL_DURATION,
        Unit::Seconds,
        "Duration of session store calls, by operation."
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Failed session store calls, by operation and error kind."
    );
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Connections holding a session open on this process."
    );
}

/// A store call that started at `started` finished with `result`.
pub(crate) fn store_call<T>(
    operation: &'static str,
    started: Instant,
    result: &Result<T, StoreError>,
) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!(STORE_CALL_DURATION, "operation" => operation)
            .record(started.elapsed());
        if let Err(err) = result {
            let kind = kind_label(err.kind());
            metrics::counter!(STORE_ERRORS, "operation" => operation, "kind" => kind).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (operation, started, result);
}

/// A new anonymous session was stored.
pub(crate) fn session_created() {
    #[cfg(feature = "metrics")]
    metrics::counter!(SESSIONS_CREATED).increment(1);
}

/// `count` sessions ended for `reason`.
pub(crate) fn sessions_ended(reason: Ended, count: usize) {
    #[cfg(feature = "metrics")]
    if count > 0 {
        metrics::counter!(SESSIONS_ENDED, "reason" => reason.label()).increment(count as u64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (reason, count);
}

/// A store ended a session on its own (an expired one it came across).
pub(crate) fn store_ended(reason: EndReason) {
    if reason == EndReason::Expired {
        sessions_ended(Ended::Expiry, 1);
    }
}

/// A login succeeded: it started a session, ended the one it `replaced`
/// (if any) and revoked `evicted` sessions beyond the per-user limit.
pub(crate) fn login(replaced: bool, evicted: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(LOGINS).increment(1);
        metrics::counter!(SESSIONS_CREATED).increment(1);
    }
    sessions_ended(Ended::Replaced, usize::from(replaced));
    sessions_ended(Ended::Limit, evicted);
}

/// A rotation's outcome; `lapsed`: it replaced a replacement the client
/// never adopted.
pub(crate) fn rotated(rotated: &Rotated, lapsed: bool) {
    match rotated {
        Rotated::Installed if lapsed => {
            rotation(Rotation::Installed);
            rotation(Rotation::Lapsed);
        }
        Rotated::Installed => rotation(Rotation::Installed),
        Rotated::Existing(_) => rotation(Rotation::Joined),
        Rotated::Superseded | Rotated::Gone => {}
    }
}

fn rotation(outcome: Rotation) {
    #[cfg(feature = "metrics")]
    metrics::counter!(ROTATIONS, "outcome" => outcome.label()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A connection opened (`+1`) or closed (`-1`) on this process.
pub(crate) fn connections(delta: i8) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(CONNECTIONS).increment(f64::from(delta));
    #[cfg(not(feature = "metrics"))]
    let _ = delta;
}
