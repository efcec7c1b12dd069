//! The `--vpcd HOST:PORT` mode: lanyardd connects to a vpcd that listens
//! (vpcd's own default, on all interfaces: only for setups that firewall
//! that port). Connected while a card is present; reconnects with backoff.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::pcsc::backoff::Backoff;
use crate::pcsc::link::{self, LinkEnd};
use crate::pcsc::listen::log_end;
use crate::pcsc::presence;
use crate::state::Daemon;

/// Keeps a link to the vpcd at `target` while a card is present, for ever
/// (the task is aborted at shutdown).
pub async fn run(target: String, daemon: Arc<Daemon>, wanted: Option<String>) {
    let mut backoff = Backoff::default();
    loop {
        let card = match presence::current(&daemon, wanted.as_deref()) {
            Some(card) => card,
            None => {
                // No card: no link (vpcd sees an empty reader) until one is present.
                presence::changed(&daemon, wanted.as_deref(), &None).await;
                continue;
            }
        };
        let stream = match TcpStream::connect(&target).await {
            Ok(s) => s,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(vpcd = %target, error = %e, retry_in_ms = wait.as_millis() as u64, "PC/SC reader: cannot reach vpcd");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let card_id = card.card_id.clone();
        let end = link::serve(stream, daemon.clone(), wanted.clone(), card).await;
        log_end(&card_id, &end);
        match end {
            // The card changed: show the new state at once.
            LinkEnd::CardChanged(_) => backoff.reset(),
            // pcscd went away or restarts: wait before trying again.
            _ => tokio::time::sleep(backoff.next_delay()).await,
        }
    }
}
