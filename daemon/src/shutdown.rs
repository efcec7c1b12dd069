//! Graceful stop: wait for SIGINT or SIGTERM, and remove the socket file when
//! the daemon stops (whatever the path out of `main`).

use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Error, Result};

/// Waits until SIGINT or SIGTERM arrives; returns the signal's name.
pub async fn wait_for_signal() -> Result<&'static str> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("cannot watch SIGTERM", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("cannot watch SIGINT", e))?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Removes the socket file when dropped.
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => tracing::info!(socket = %self.0.display(), "socket removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(socket = %self.0.display(), error = %e, "cannot remove socket")
            }
        }
    }
}
