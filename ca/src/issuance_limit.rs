//! Back-pressure: at most `max_concurrent_issuance` certificates are being
//! issued (enrol, renew, PIN reset) at once. A request that finds no free
//! permit is not queued: it is answered UNAVAILABLE with a `retry-after`
//! hint at once, before it touches the database, so it changes nothing.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::warn;

use crate::error::CaError;

/// The issuance permits of one CA process.
#[derive(Debug, Clone)]
pub struct IssuanceLimiter {
    permits: Arc<Semaphore>,
    max: u32,
    retry_after_secs: u32,
}

/// One issuance in progress; dropping it frees the permit.
#[derive(Debug)]
pub struct IssuancePermit {
    _permit: OwnedSemaphorePermit,
}

impl IssuanceLimiter {
    /// `max` concurrent issuances (at least 1); `retry_after_secs` is the hint sent when full.
    pub fn new(max: u32, retry_after_secs: u32) -> Self {
        let max = max.max(1);
        IssuanceLimiter {
            permits: Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX))),
            max,
            retry_after_secs: retry_after_secs.max(1),
        }
    }

    /// A permit, or [`CaError::Overloaded`] when `max` issuances are already
    /// running. Never waits. `what` names the request for the log.
    pub fn try_acquire(&self, what: &'static str) -> Result<IssuancePermit, CaError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(IssuancePermit { _permit: permit }),
            Err(TryAcquireError::NoPermits) | Err(TryAcquireError::Closed) => {
                warn!(
                    request = what,
                    max_concurrent_issuance = self.max,
                    retry_after_secs = self.retry_after_secs,
                    "issuance refused: the CA is at its limit of concurrent issuance"
                );
                Err(CaError::Overloaded {
                    retry_after_secs: self.retry_after_secs,
                })
            }
        }
    }

    /// Permits free right now (for logs and tests).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_waiting_when_full_and_frees_on_drop() {
        let limiter = IssuanceLimiter::new(2, 7);
        let a = limiter.try_acquire("test").unwrap();
        let b = limiter.try_acquire("test").unwrap();
        assert_eq!(limiter.available(), 0);
        let err = limiter.try_acquire("test").unwrap_err();
        assert!(
            matches!(
                err,
                CaError::Overloaded {
                    retry_after_secs: 7
                }
            ),
            "{err}"
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        drop(a);
        let c = limiter.try_acquire("test").unwrap();
        assert_eq!(limiter.available(), 0);
        drop((b, c));
        assert_eq!(limiter.available(), 2);
    }

    #[test]
    fn clones_share_the_permits_and_zero_means_one() {
        let limiter = IssuanceLimiter::new(0, 0);
        let other = limiter.clone();
        let held = limiter.try_acquire("test").unwrap();
        assert!(matches!(
            other.try_acquire("test"),
            Err(CaError::Overloaded {
                retry_after_secs: 1
            })
        ));
        drop(held);
        assert!(other.try_acquire("test").is_ok());
    }

    #[tokio::test]
    async fn concurrent_tasks_never_exceed_the_limit() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let limiter = IssuanceLimiter::new(3, 1);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (limiter, running, peak, refused) = (
                limiter.clone(),
                running.clone(),
                peak.clone(),
                refused.clone(),
            );
            tasks.push(tokio::spawn(async move {
                match limiter.try_acquire("test") {
                    Ok(_permit) => {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(limiter.available(), 3);
    }
}
