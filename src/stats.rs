//! Counters per worker, the periodic summary line, the per-request log line and the end report.
//!
//! Each worker writes only its own [`Counters`] (single writer: a relaxed load and store, no
//! locked instruction); the main thread reads them all for summaries and the report.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counts; padded to its own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Requests answered with a recorded response.
    pub replayed: AtomicU64,
    /// Unmatched requests sent upstream (answered by the upstream or with a 502/504).
    pub forwarded: AtomicU64,
    /// Forwarded requests that failed upstream (answered 502/504, or cut off mid-response).
    pub upstream_errors: AtomicU64,
    /// Unmatched requests whose connection was closed without a byte.
    pub killed: AtomicU64,
    /// Unmatched requests answered with a status-mode response.
    pub status_answered: AtomicU64,
    /// Requests rejected as malformed or too large (400/408/413/431), or that came back through
    /// this server (508).
    pub rejected: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Client connections whose TLS handshake failed (closed; other connections go on).
    pub tls_failed: AtomicU64,
    /// `--log-json` lines dropped: their batch found the writer thread behind (or gone).
    pub log_dropped: AtomicU64,
    /// Connections reset because their client took nothing for `--send-timeout`.
    pub send_timeouts: AtomicU64,
    /// Connections served on the worker's direct ring (plain HTTP/1 on io_uring), at least at
    /// first.
    pub ring_connections: AtomicU64,
    /// Connections the direct ring handed to monoio to be served there (a forward, a CONNECT, a
    /// TLS ClientHello, a timer that fired, the stop, a kernel that refuses multishot receives);
    /// not a close that lingers.
    pub ring_handed_over: AtomicU64,
    /// Replays answered from the worker's repeat cache (byte-identical to one answered before;
    /// counted in `replayed` too).
    pub repeats: AtomicU64,
    /// Requests of the direct ring's look-ahead whose likely flow it found and started to load
    /// ([`crate::replay::lookahead`]).
    pub looked_ahead: AtomicU64,
    /// How long answers took, from the request's last byte to the answer handed to the kernel.
    pub service: ServiceTimes,
}

/// Upper bounds of the [`ServiceTimes`] buckets: 2^10 ns (about 1 µs) times 2^i, the last about
/// 17 s; one more bucket counts what is slower.
pub const SERVICE_BUCKETS: usize = 25;

/// A histogram of answer service times with fixed power-of-two buckets, written by one worker
/// (a relaxed load and store per answer, no locked instruction) and summed at scrape time.
#[derive(Debug, Default)]
pub struct ServiceTimes {
    /// Answers per bucket; the last one is over the largest bound.
    buckets: [AtomicU64; SERVICE_BUCKETS + 1],
    /// Sum of every recorded time, nanoseconds.
    sum_nanos: AtomicU64,
}

impl ServiceTimes {
    /// Upper bound of bucket `i` (`i < SERVICE_BUCKETS`) in nanoseconds.
    pub const fn bound_nanos(i: usize) -> u64 {
        1 << (10 + i)
    }

    /// The bucket a time of `nanos` counts in: the first whose bound is at least `nanos`.
    #[inline]
    pub fn bucket(nanos: u64) -> usize {
        let scaled = nanos.saturating_sub(1) >> 10;
        ((u64::BITS - scaled.leading_zeros()) as usize).min(SERVICE_BUCKETS)
    }

    /// Counts one answer that took `nanos` (only the owning worker calls this).
    #[inline]
    pub fn record(&self, nanos: u64) {
        Counters::bump(&self.buckets[Self::bucket(nanos)]);
        let sum = &self.sum_nanos;
        sum.store(
            sum.load(Ordering::Relaxed).wrapping_add(nanos),
            Ordering::Relaxed,
        );
    }
}

/// Several workers' [`ServiceTimes`] added up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTotals {
    /// Answers per bucket (not cumulative); the last one is over the largest bound.
    pub buckets: [u64; SERVICE_BUCKETS + 1],
    /// Sum of the times, nanoseconds.
    pub sum_nanos: u64,
}

impl ServiceTotals {
    /// Adds `times` in.
    pub fn add(&mut self, times: &ServiceTimes) {
        for (total, b) in self.buckets.iter_mut().zip(&times.buckets) {
            *total += b.load(Ordering::Relaxed);
        }
        self.sum_nanos = self
            .sum_nanos
            .wrapping_add(times.sum_nanos.load(Ordering::Relaxed));
    }

    /// Answers counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Counters {
    /// Adds one to `field` (only the owning worker calls this).
    #[inline]
    pub fn bump(field: &AtomicU64) {
        field.store(field.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Adds `n` to `field` (only the owning worker calls this, as for [`Counters::bump`]).
    #[inline]
    pub fn add(field: &AtomicU64, n: u64) {
        field.store(field.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Takes back one [`Counters::bump`] of `field` (only the owning worker calls this).
    #[inline]
    pub fn take_back(field: &AtomicU64) {
        field.store(
            field.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }
}

/// Sums of every worker's counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// See [`Counters::replayed`].
    pub replayed: u64,
    /// See [`Counters::forwarded`].
    pub forwarded: u64,
    /// See [`Counters::upstream_errors`].
    pub upstream_errors: u64,
    /// See [`Counters::killed`].
    pub killed: u64,
    /// See [`Counters::status_answered`].
    pub status_answered: u64,
    /// See [`Counters::rejected`].
    pub rejected: u64,
    /// See [`Counters::connections`].
    pub connections: u64,
    /// See [`Counters::tls_failed`].
    pub tls_failed: u64,
    /// See [`Counters::log_dropped`].
    pub log_dropped: u64,
    /// See [`Counters::send_timeouts`].
    pub send_timeouts: u64,
    /// See [`Counters::ring_connections`].
    pub ring_connections: u64,
    /// See [`Counters::ring_handed_over`].
    pub ring_handed_over: u64,
    /// See [`Counters::repeats`].
    pub repeats: u64,
    /// See [`Counters::looked_ahead`].
    pub looked_ahead: u64,
    /// Recorded flows not yet replayed.
    pub flows_left: u64,
}

impl Totals {
    /// Adds up `counters`; `flows_left` comes from the replayer.
    pub fn sum<'a>(counters: impl IntoIterator<Item = &'a Counters>, flows_left: u64) -> Totals {
        let mut t = Totals {
            flows_left,
            ..Totals::default()
        };
        for c in counters {
            t.replayed += c.replayed.load(Ordering::Relaxed);
            t.forwarded += c.forwarded.load(Ordering::Relaxed);
            t.upstream_errors += c.upstream_errors.load(Ordering::Relaxed);
            t.killed += c.killed.load(Ordering::Relaxed);
            t.status_answered += c.status_answered.load(Ordering::Relaxed);
            t.rejected += c.rejected.load(Ordering::Relaxed);
            t.connections += c.connections.load(Ordering::Relaxed);
            t.tls_failed += c.tls_failed.load(Ordering::Relaxed);
            t.log_dropped += c.log_dropped.load(Ordering::Relaxed);
            t.send_timeouts += c.send_timeouts.load(Ordering::Relaxed);
            t.ring_connections += c.ring_connections.load(Ordering::Relaxed);
            t.ring_handed_over += c.ring_handed_over.load(Ordering::Relaxed);
            t.repeats += c.repeats.load(Ordering::Relaxed);
            t.looked_ahead += c.looked_ahead.load(Ordering::Relaxed);
        }
        t
    }

    /// Requests no recorded flow answered.
    pub fn unmatched(&self) -> u64 {
        self.forwarded + self.killed + self.status_answered
    }

    /// Every request handled.
    pub fn requests(&self) -> u64 {
        self.replayed + self.unmatched() + self.rejected
    }
}

/// The one-line summary printed every 5 s while serving, idle or not:
/// `serving: 1520 req/s; 7590 replayed, 12 forwarded (1 upstream errors), 0 killed, 0 status-answered, 0 rejected; 64 open connections; 3 flows left`.
#[derive(Debug)]
pub struct Summary {
    /// Totals now.
    pub now: Totals,
    /// Requests per second since the previous summary.
    pub rate: f64,
    /// Connections open now (not the accepted count in `now`).
    pub open_connections: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.now;
        write!(
            f,
            "serving: {:.0} req/s; {} replayed, {} forwarded ({} upstream errors), {} killed, \
             {} status-answered, {} rejected; {} open connections; {} flows left",
            self.rate,
            t.replayed,
            t.forwarded,
            t.upstream_errors,
            t.killed,
            t.status_answered,
            t.rejected,
            self.open_connections,
            t.flows_left
        )
    }
}

/// The report printed at exit.
#[derive(Debug)]
pub struct Report(pub Totals);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "replayed {}, forwarded {}, killed {}, status-answered {}, unmatched {}, rejected {}, \
             upstream errors {}, flows left {}",
            t.replayed,
            t.forwarded,
            t.killed,
            t.status_answered,
            t.unmatched(),
            t.rejected,
            t.upstream_errors,
            t.flows_left
        )
    }
}

/// What happened to one request, for the `-v` log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the recording with this status.
    Replayed(u16),
    /// Sent upstream and answered with the upstream's status.
    Forwarded(u16),
    /// Sent upstream and failed: answered with this status (502/504), or `None` when the client
    /// connection was cut after part of the upstream's response.
    UpstreamFailed(Option<u16>),
    /// Not forwarded: answered with this status (501 for a CONNECT, 400 for no usable
    /// destination) before any upstream was tried.
    Refused(u16),
    /// Connection closed without a byte.
    Killed,
    /// Status-mode answer.
    Status(u16),
    /// Unmatched, but it carried our own `Via` entry: answered 508, not forwarded.
    LoopDetected,
}

impl Outcome {
    /// The word of the `outcome` label of `/metrics` (and of `--log-json` lines) this outcome is
    /// counted under: `replayed`, `forwarded`, `killed`, `status` or `rejected`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Replayed(_) => "replayed",
            Outcome::Forwarded(_) | Outcome::UpstreamFailed(_) => "forwarded",
            Outcome::Killed => "killed",
            Outcome::Status(_) => "status",
            Outcome::Refused(_) | Outcome::LoopDetected => "rejected",
        }
    }

    /// The status the client was answered with (`None`: the connection was closed instead).
    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::Replayed(code)
            | Outcome::Forwarded(code)
            | Outcome::Refused(code)
            | Outcome::Status(code) => Some(code),
            Outcome::UpstreamFailed(code) => code,
            Outcome::LoopDetected => Some(508),
            Outcome::Killed => None,
        }
    }
}

/// The mitmdump-style line for one request: `PEER: METHOD URL << OUTCOME`.
pub fn request_line(
    peer: &dyn fmt::Display,
    method: &[u8],
    url: &dyn fmt::Display,
    outcome: Outcome,
) -> String {
    let method = String::from_utf8_lossy(method);
    let outcome = match outcome {
        Outcome::Replayed(code) => format!("[replay] {code}"),
        Outcome::Forwarded(code) => format!("[forward] {code}"),
        Outcome::UpstreamFailed(Some(code)) => format!("[forward] {code} upstream failed"),
        Outcome::UpstreamFailed(None) => "[forward] upstream failed mid-response".to_string(),
        Outcome::Refused(code) => format!("[refused] {code} not forwarded"),
        Outcome::Killed => "[kill] connection closed".to_string(),
        Outcome::Status(code) => format!("[extra] {code}"),
        Outcome::LoopDetected => "[loop] 508 not forwarded: it came back through us".to_string(),
    };
    format!("{peer}: {method} {url} << {outcome}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_times_fall_in_the_first_bucket_whose_bound_holds_them() {
        assert_eq!(ServiceTimes::bucket(0), 0);
        assert_eq!(ServiceTimes::bucket(1024), 0);
        assert_eq!(ServiceTimes::bucket(1025), 1);
        assert_eq!(ServiceTimes::bucket(2048), 1);
        assert_eq!(ServiceTimes::bucket(2049), 2);
        for i in 0..SERVICE_BUCKETS {
            let bound = ServiceTimes::bound_nanos(i);
            assert_eq!(ServiceTimes::bucket(bound), i);
            assert_eq!(ServiceTimes::bucket(bound + 1), i + 1);
        }
        assert_eq!(ServiceTimes::bucket(u64::MAX), SERVICE_BUCKETS);
        let (a, b) = (ServiceTimes::default(), ServiceTimes::default());
        a.record(500);
        a.record(3000);
        b.record(u64::MAX / 2);
        let mut t = ServiceTotals::default();
        t.add(&a);
        t.add(&b);
        assert_eq!(t.count(), 3);
        assert_eq!(
            (t.buckets[0], t.buckets[2], t.buckets[SERVICE_BUCKETS]),
            (1, 1, 1)
        );
        assert_eq!(t.sum_nanos, 3500 + u64::MAX / 2);
    }

    #[test]
    fn the_report_names_every_count() {
        let c = Counters::default();
        Counters::bump(&c.replayed);
        Counters::bump(&c.killed);
        Counters::bump(&c.status_answered);
        let t = Totals::sum([&c], 3);
        assert_eq!(
            Report(t).to_string(),
            "replayed 1, forwarded 0, killed 1, status-answered 1, unmatched 2, rejected 0, \
             upstream errors 0, flows left 3"
        );
    }

    #[test]
    fn the_summary_shows_open_connections_not_the_accepted_count() {
        let c = Counters::default();
        for _ in 0..3 {
            Counters::bump(&c.connections);
        }
        Counters::bump(&c.forwarded);
        Counters::bump(&c.upstream_errors);
        let now = Totals::sum([&c], 5);
        let summary = Summary {
            now,
            rate: 0.0,
            open_connections: 2,
        };
        assert_eq!(
            summary.to_string(),
            "serving: 0 req/s; 0 replayed, 1 forwarded (1 upstream errors), 0 killed, \
             0 status-answered, 0 rejected; 2 open connections; 5 flows left"
        );
    }
}
