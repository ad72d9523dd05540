//! Time as the layer and the stores see it.
//!
//! Every deadline (idle, absolute, grace windows, connection leases) is
//! decided with the time the layer's [`Clock`] gives and is passed to the
//! store with each call, so tests can move time with a [`ManualClock`]
//! instead of sleeping, against any store.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the crate's one time type. Every time
/// in the public API is one (session getters, listings, connections, the
/// store seam); [`to_system_time`] converts.
pub type Millis = u64;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}

/// A clock that only moves when told to, for tests.
///
/// Clones share the same time.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock set to the current wall-clock time.
    pub fn new() -> Self {
        ManualClock(Arc::new(AtomicU64::new(SystemClock.now())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Converts a time of this crate to a `SystemTime`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(sessionkit::clock::to_system_time(1_500), UNIX_EPOCH + Duration::from_millis(1_500));
/// ```
pub fn to_system_time(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A duration in store units, saturating.
pub(crate) fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
