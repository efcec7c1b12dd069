//! Per-address limit on failed enrolment attempts: after `max_failures`
//! failures within `window`, the address is refused until the oldest of them
//! leaves the window. In memory; a restart forgets (codes are 80 bits anyway).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;
use crate::error::CaError;

/// Addresses tracked at most; beyond this the stalest entries are dropped.
const MAX_TRACKED: usize = 10_000;

/// Failed attempts per client address.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// A limiter with the configured limits.
    pub fn new(cfg: RateLimitConfig) -> Self {
        FailureLimiter {
            max_failures: usize::try_from(cfg.max_failures).unwrap_or(usize::MAX),
            window: Duration::from_secs(cfg.window_secs),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` if `peer` must wait `wait` before trying again.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.lock();
        let Some(q) = map.get_mut(&peer) else {
            return Ok(());
        };
        Self::expire(q, now, self.window);
        if q.len() >= self.max_failures {
            let oldest = q.front().copied().unwrap_or(now);
            return Err((oldest + self.window).saturating_duration_since(now));
        }
        Ok(())
    }

    /// Refuses `peer` while it must wait, as `RateLimited` with the wait in
    /// whole seconds (rounded up, at least 1); `what` names the attempt
    /// ("enrolment", "PIN reset").
    pub fn admit(&self, peer: IpAddr, what: &'static str) -> Result<(), CaError> {
        let Err(wait) = self.check(peer, Instant::now()) else {
            return Ok(());
        };
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::warn!(peer = %peer, retry_after_secs, "{what} refused: too many failed attempts");
        Err(CaError::RateLimited {
            what,
            retry_after_secs: retry_after_secs.max(1),
        })
    }

    /// Records one failed attempt from `peer`.
    pub fn record_failure(&self, peer: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&peer) {
            let window = self.window;
            map.retain(|_, q| {
                Self::expire(q, now, window);
                !q.is_empty()
            });
        }
        let q = map.entry(peer).or_default();
        Self::expire(q, now, self.window);
        q.push_back(now);
        while q.len() > self.max_failures {
            q.pop_front();
        }
    }

    fn expire(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            q.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        // A panic while holding the lock leaves only counters behind; keep going.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(RateLimitConfig {
            max_failures: 3,
            window_secs: 60,
        })
    }

    #[test]
    fn blocks_after_max_failures_until_window_passes() {
        let l = limiter();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check(ip, t0 + Duration::from_secs(i)).is_ok());
            l.record_failure(ip, t0 + Duration::from_secs(i));
        }
        let wait = l.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.check(ip, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn addresses_are_independent() {
        let l = limiter();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record_failure(a, t0);
        }
        assert!(l.check(a, t0).is_err());
        assert!(l.check(b, t0).is_ok());
    }

    #[test]
    fn a_blocked_address_is_refused_with_whole_seconds() {
        let l = limiter();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.admit(a, "enrolment").is_ok());
        for _ in 0..3 {
            l.record_failure(a, Instant::now());
        }
        match l.admit(a, "PIN reset") {
            Err(CaError::RateLimited {
                what,
                retry_after_secs,
            }) => {
                assert_eq!(what, "PIN reset");
                assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
    }
}
