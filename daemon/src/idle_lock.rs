//! The idle timer of `lanyard unlock`: ends each unlock once its card has not
//! been used for its idle timeout, so the keys leave memory without waiting
//! for the next request to notice.

use std::sync::Arc;

use crate::state::Daemon;

/// Runs until the runtime stops: sleeps until the next unlock could end, or
/// until a card is unlocked, and ends the unlocks that are idle by then.
pub async fn run(daemon: Arc<Daemon>) {
    loop {
        match daemon.expire_idle_unlocks() {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = daemon.signals().idle_lock.notified() => {}
                }
            }
            None => daemon.signals().idle_lock.notified().await,
        }
    }
}
