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

/// The wall-clock time now in Unix seconds (timestamps of saved flows, `-w`).
#[inline]
pub fn unix_seconds() -> f64 {
    now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
