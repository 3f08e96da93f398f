//! Bookkeeping for idle upstream connections kept for reuse (one pool per worker).
//!
//! Generic over the connection type so it stays sans-IO: the driver puts a connection back after a
//! reusable exchange and takes one before connecting. Bounded per upstream and in upstreams; idle
//! connections older than the idle timeout are dropped when met. Dropping a connection closes it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Origin;

/// Bounds of a [`Pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Idle connections kept per upstream; more are closed.
    pub max_idle_per_origin: usize,
    /// Upstreams with idle connections; a connection to a further one is closed.
    pub max_origins: usize,
    /// How long an idle connection is kept (servers close idle connections too: nginx after 75 s,
    /// Apache after 5 s; a stale one is detected by the driver before reuse).
    pub idle_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle_per_origin: 32,
            max_origins: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Idle connections per upstream, most recently used first out.
#[derive(Debug)]
pub struct Pool<C> {
    limits: PoolLimits,
    idle: Vec<(Origin, VecDeque<(C, Instant)>)>,
}

impl<C> Pool<C> {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> Self {
        Pool {
            limits,
            idle: Vec::new(),
        }
    }

    /// Takes the most recently used idle connection to `origin` that is younger than the idle
    /// timeout, dropping (closing) expired ones on the way.
    pub fn take(&mut self, origin: &Origin, now: Instant) -> Option<C> {
        let i = self.idle.iter().position(|(o, _)| o == origin)?;
        let timeout = self.limits.idle_timeout;
        let list = &mut self.idle[i].1;
        list.retain(|(_, since)| now.saturating_duration_since(*since) < timeout);
        let conn = list.pop_back().map(|(c, _)| c);
        if list.is_empty() {
            self.idle.swap_remove(i);
        }
        conn
    }

    /// Keeps `conn` as idle for `origin`; returns it back if the pool is full (the caller drops it).
    pub fn put(&mut self, origin: &Origin, conn: C, now: Instant) -> Option<C> {
        if let Some((_, list)) = self.idle.iter_mut().find(|(o, _)| o == origin) {
            if list.len() >= self.limits.max_idle_per_origin {
                // Replace the oldest: the newest connection has the longest life left.
                list.pop_front();
            }
            list.push_back((conn, now));
            return None;
        }
        if self.limits.max_idle_per_origin == 0 {
            return Some(conn);
        }
        if self.idle.len() >= self.limits.max_origins {
            let timeout = self.limits.idle_timeout;
            for (_, list) in &mut self.idle {
                list.retain(|(_, since)| now.saturating_duration_since(*since) < timeout);
            }
            self.idle.retain(|(_, list)| !list.is_empty());
            if self.idle.len() >= self.limits.max_origins {
                return Some(conn);
            }
        }
        self.idle
            .push((origin.clone(), VecDeque::from([(conn, now)])));
        None
    }

    /// Idle connections held for `origin`.
    pub fn idle_count(&self, origin: &Origin) -> usize {
        self.idle
            .iter()
            .find(|(o, _)| o == origin)
            .map_or(0, |(_, list)| list.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Scheme;

    fn origin(port: u16) -> Origin {
        Origin {
            scheme: Scheme::Http,
            host: "h".into(),
            port,
        }
    }

    fn limits(per: usize, origins: usize) -> PoolLimits {
        PoolLimits {
            max_idle_per_origin: per,
            max_origins: origins,
            idle_timeout: Duration::from_secs(10),
        }
    }

    // The core reads no clock; tests build instants from one base.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    #[test]
    fn the_most_recently_returned_connection_is_reused_first() {
        let t = base();
        let mut pool = Pool::new(limits(4, 4));
        assert_eq!(pool.put(&origin(1), "a", t), None);
        assert_eq!(pool.put(&origin(1), "b", t), None);
        assert_eq!(pool.take(&origin(2), t), None);
        assert_eq!(pool.take(&origin(1), t), Some("b"));
        assert_eq!(pool.take(&origin(1), t), Some("a"));
        assert_eq!(pool.take(&origin(1), t), None);
        assert_eq!(pool.idle_count(&origin(1)), 0);
    }

    #[test]
    fn expired_connections_are_not_reused() {
        let t = base();
        let mut pool = Pool::new(limits(4, 4));
        pool.put(&origin(1), "old", t);
        pool.put(&origin(1), "new", t + Duration::from_secs(5));
        assert_eq!(
            pool.take(&origin(1), t + Duration::from_secs(11)),
            Some("new")
        );
        pool.put(&origin(1), "x", t);
        assert_eq!(pool.take(&origin(1), t + Duration::from_secs(20)), None);
    }

    #[test]
    fn the_pool_is_bounded_per_origin_and_in_origins() {
        let t = base();
        let mut pool = Pool::new(limits(2, 2));
        pool.put(&origin(1), 1, t);
        pool.put(&origin(1), 2, t);
        pool.put(&origin(1), 3, t);
        assert_eq!(pool.idle_count(&origin(1)), 2);
        assert_eq!(pool.take(&origin(1), t), Some(3));
        assert_eq!(pool.take(&origin(1), t), Some(2));
        pool.put(&origin(1), 1, t);
        pool.put(&origin(2), 2, t);
        assert_eq!(pool.put(&origin(3), 3, t), Some(3));
        // Once the others have expired, a new upstream fits again.
        assert_eq!(pool.put(&origin(3), 3, t + Duration::from_secs(60)), None);
        assert_eq!(pool.idle_count(&origin(1)), 0);
        assert_eq!(Pool::new(limits(0, 2)).put(&origin(1), 1, t), Some(1));
    }
}
