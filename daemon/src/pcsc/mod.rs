//! The card in a PC/SC reader: a link to pcsc-lite's virtual reader driver
//! (vpcd, from vsmartcard) that answers as a PIV card over the daemon's own
//! card. Off unless `[pcsc] vpcd_listen` / `--vpcd-listen` (or `--vpcd`) is set.

pub mod backend;
pub mod backoff;
pub mod config;
pub mod connect;
pub mod frame;
pub mod link;
pub mod listen;
pub mod presence;
pub mod pss_raw;

use std::sync::Arc;

use tokio::task::JoinHandle;

pub use config::{PcscConfig, VpcdEndpoint};
pub use link::links_up;

use crate::error::Result;
use crate::state::Daemon;

/// Starts the reader link in the background. In listen mode the port is
/// bound before this returns, so a busy or refused address stops start-up.
pub async fn start(
    daemon: Arc<Daemon>,
    endpoint: VpcdEndpoint,
    wanted: Option<String>,
) -> Result<JoinHandle<()>> {
    match endpoint {
        VpcdEndpoint::Listen(addr) => {
            let listener = listen::bind(addr).await?;
            tracing::info!(listen = %addr, card = ?wanted, "PC/SC reader: waiting for vpcd (reversed mode)");
            Ok(tokio::spawn(listen::run(listener, daemon, wanted)))
        }
        VpcdEndpoint::Connect(target) => {
            tracing::warn!(
                vpcd = %target,
                "PC/SC reader: connecting out to a listening vpcd; vpcd then listens on all \
                 interfaces and whoever connects first becomes the card: firewall that port, \
                 or prefer --vpcd-listen 127.0.0.1:PORT with vpcd's reversed mode"
            );
            Ok(tokio::spawn(connect::run(target, daemon, wanted)))
        }
    }
}

#[cfg(test)]
mod tests;
