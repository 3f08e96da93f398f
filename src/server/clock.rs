//! The one place that reads the wall clock: once per loop turn, passed to the core as `now`.

use std::time::{Duration, Instant, SystemTime};

/// The wall-clock time now (for refreshing recorded dates).
#[inline]
#[allow(clippy::disallowed_methods)]
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A monotonic instant now (for rates and grace periods).
#[inline]
#[allow(clippy::disallowed_methods)]
pub fn instant() -> Instant {
    Instant::now()
}

/// Time elapsed since `start`.
#[inline]
pub fn since(start: Instant) -> Duration {
    instant().saturating_duration_since(start)
}
