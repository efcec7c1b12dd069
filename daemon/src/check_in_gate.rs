//! The start-up check-in gate: after a start, a card's first signature waits
//! until that card's first check-in has finished, so a card revoked or
//! suspended while the daemon was down never signs. Also the next check-in time.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::ca_client::{CALL_TIMEOUT, CONNECT_TIMEOUT};

/// Cards whose start-up check-in is still running, and when the next
/// periodic check-in is planned.
#[derive(Debug)]
pub struct CheckInGate {
    pending: Mutex<BTreeSet<String>>,
    /// Fast path for the signing hot path: nothing is pending.
    open: AtomicBool,
    /// Longest a signature waits (the check-in timeouts of every pending card).
    bound_ms: AtomicI64,
    changed: tokio::sync::watch::Sender<u64>,
    /// Unix second of the next periodic check-in; 0 when none is planned.
    next_check_in: AtomicI64,
}

impl Default for CheckInGate {
    fn default() -> Self {
        CheckInGate {
            pending: Mutex::new(BTreeSet::new()),
            open: AtomicBool::new(true),
            bound_ms: AtomicI64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
            next_check_in: AtomicI64::new(0),
        }
    }
}

/// How a signature got past the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// No start-up check-in was pending for the card (or it had finished).
    Clear,
    /// The signature waited for the card's start-up check-in, which finished.
    Waited,
    /// The check-in did not finish within the bound: the offline policy applies.
    TimedOut,
}

impl CheckInGate {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the first signature of each of `cards` until [`Self::finished`]
    /// for it. A signature waits at most the check-in timeouts of all of them.
    pub fn arm(&self, cards: impl IntoIterator<Item = String>) {
        let mut pending = self.pending();
        pending.extend(cards);
        let per_card = CONNECT_TIMEOUT + CALL_TIMEOUT;
        let bound = per_card * pending.len() as u32 + Duration::from_secs(5);
        self.bound_ms
            .store(bound.as_millis() as i64, Ordering::SeqCst);
        self.open.store(pending.is_empty(), Ordering::SeqCst);
    }

    /// The start-up check-in of `card_id` has finished (whatever it found).
    pub fn finished(&self, card_id: &str) {
        let mut pending = self.pending();
        if pending.remove(card_id) {
            self.open.store(pending.is_empty(), Ordering::SeqCst);
            drop(pending);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Every start-up check-in has finished.
    pub fn finish_all(&self) {
        self.pending().clear();
        self.open.store(true, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Whether `card_id`'s start-up check-in is still running.
    pub fn is_pending(&self, card_id: &str) -> bool {
        !self.open.load(Ordering::SeqCst) && self.pending().contains(card_id)
    }

    /// Waits until `card_id`'s start-up check-in has finished, at most the
    /// bound set by [`Self::arm`]; past it the offline policy applies (logged).
    pub async fn wait(&self, card_id: &str) -> Passage {
        if !self.is_pending(card_id) {
            return Passage::Clear;
        }
        let bound = Duration::from_millis(self.bound_ms.load(Ordering::SeqCst).max(0) as u64);
        tracing::info!(card = %card_id, "first signature since start: waiting for the card's check-in with its CA");
        let mut changes = self.changed.subscribe();
        let waited = tokio::time::timeout(bound, async {
            while self.is_pending(card_id) {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        match waited {
            Ok(()) => Passage::Waited,
            Err(_) => {
                tracing::warn!(
                    card = %card_id,
                    waited_secs = bound.as_secs(),
                    "the start-up check-in did not finish in time; signing under the offline \
                     policy (the card's last known status)"
                );
                Passage::TimedOut
            }
        }
    }

    /// Records when the next periodic check-in runs (Unix seconds).
    pub fn set_next_check_in(&self, at: i64) {
        self.next_check_in.store(at, Ordering::SeqCst);
    }

    /// When the next periodic check-in runs, if one is planned.
    pub fn next_check_in(&self) -> Option<i64> {
        Some(self.next_check_in.load(Ordering::SeqCst)).filter(|at| *at > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unarmed_gate_never_waits() {
        let gate = CheckInGate::default();
        assert_eq!(gate.wait("C1").await, Passage::Clear);
        assert_eq!(gate.next_check_in(), None);
        gate.set_next_check_in(1234);
        assert_eq!(gate.next_check_in(), Some(1234));
    }

    #[tokio::test]
    async fn a_signature_waits_for_its_own_card_only() {
        let gate = std::sync::Arc::new(CheckInGate::default());
        gate.arm(["C1".to_string(), "C2".to_string()]);
        assert!(gate.is_pending("C1") && gate.is_pending("C2"));
        assert_eq!(gate.wait("C3").await, Passage::Clear);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait("C2").await }
        });
        gate.finished("C1");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "C2 must still wait");
        assert_eq!(gate.wait("C1").await, Passage::Clear);
        gate.finished("C2");
        assert_eq!(waiter.await.unwrap(), Passage::Waited);
        assert_eq!(gate.wait("C2").await, Passage::Clear);
    }

    #[tokio::test]
    async fn finish_all_releases_every_card() {
        let gate = std::sync::Arc::new(CheckInGate::default());
        gate.arm(["C1".to_string()]);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait("C1").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "C1 must wait");
        gate.finish_all();
        assert_eq!(waiter.await.unwrap(), Passage::Waited);
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_in_that_never_ends_lets_the_offline_policy_apply() {
        let gate = CheckInGate::default();
        gate.arm(["C1".to_string()]);
        // Paused clock: the bound (35 s + 5 s) passes without real waiting.
        assert_eq!(gate.wait("C1").await, Passage::TimedOut);
        assert!(gate.is_pending("C1"));
    }
}
