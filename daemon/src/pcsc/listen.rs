//! vpcd's reversed mode (the default): lanyardd listens on loopback and
//! pcscd's vpcd driver connects. A connection while no card is present is
//! closed at once, which vpcd reads as an empty reader; the newest connection wins.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::pcsc::backoff::Backoff;
use crate::pcsc::link::{self, LinkEnd};
use crate::pcsc::presence;
use crate::state::Daemon;

/// Binds the listen address (already checked to be loopback); a busy port
/// is a start-up error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(Error::Internal(format!(
            "refusing to listen for vpcd on {addr}: loopback only"
        )));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen for vpcd on {addr}"), e))
}

/// Accepts vpcd connections for ever (the task is aborted at shutdown).
pub async fn run(listener: TcpListener, daemon: Arc<Daemon>, wanted: Option<String>) {
    let mut backoff = Backoff::default();
    let mut serving: Option<JoinHandle<()>> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "PC/SC reader: accept failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let Some(card) = presence::current(&daemon, wanted.as_deref()) else {
            tracing::trace!(%peer, "PC/SC reader: no card to show; vpcd connection closed");
            continue;
        };
        if let Some(previous) = serving.take() {
            if !previous.is_finished() {
                tracing::info!(%peer, "PC/SC reader: vpcd connected again; the previous link is closed");
            }
            previous.abort();
        }
        let _ = stream.set_nodelay(true);
        let daemon = daemon.clone();
        let wanted = wanted.clone();
        serving = Some(tokio::spawn(async move {
            let card_id = card.card_id.clone();
            let end = link::serve(stream, daemon, wanted, card).await;
            log_end(&card_id, &end);
        }));
    }
}

/// One log line for the end of a link.
pub(crate) fn log_end(card_id: &str, end: &LinkEnd) {
    match end {
        LinkEnd::PeerClosed => {
            tracing::info!(card = %card_id, "PC/SC reader: vpcd closed the link")
        }
        LinkEnd::CardChanged(Some(now)) if now.card_id == card_id => {
            tracing::info!(card = %card_id, "PC/SC reader: the card's certificate changed; card removed so that it is inserted again")
        }
        LinkEnd::CardChanged(Some(now)) => {
            tracing::info!(card = %card_id, next = %now.card_id, "PC/SC reader: another card is shown; card removed")
        }
        LinkEnd::CardChanged(None) => {
            tracing::info!(card = %card_id, "PC/SC reader: card removed (no present card: suspended, revoked or gone)")
        }
        LinkEnd::BadFrame(why) => {
            tracing::warn!(card = %card_id, error = %why, "PC/SC reader: bad vpcd frame; link reset")
        }
        LinkEnd::Failed(e) => {
            tracing::warn!(card = %card_id, error = %e, "PC/SC reader: link failed")
        }
    }
}
