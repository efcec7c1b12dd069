//! `lanyard-ca serve`: loads the issuing CA (never root.key), opens the
//! database, binds the address (port 0 picks one), prints
//! `listening on https://IP:PORT` on stdout and serves until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lanyard_proto::ca::enrollment_server::EnrollmentServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::ca_dir::CaDir;
use crate::config::CaConfig;
use crate::enrolment::Enroller;
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::service::enrollment::EnrollmentService;
use crate::store::Store;
use crate::tls::server_tls_config;

/// How long open connections may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client that has not finished the TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The CA directory made by `init`.
    #[arg(long, value_name = "DIR", env = "LANYARD_CA_DIR")]
    pub dir: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:8443 or [::]:8443; port 0 picks a free port
    /// (the chosen one is printed as `listening on https://IP:PORT`).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
}

/// Runs the server until a signal asks it to stop.
pub async fn run(args: ServeArgs) -> Result<(), CaError> {
    // tonic builds its rustls config from the process-wide provider; pin ring.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = CaDir::new(&args.dir);
    dir.require_initialised()?;
    let config = CaConfig::load(&dir.config())?;
    let issuer = IssuingCa::load(&dir)?;
    let tls = server_tls_config(&dir)?.timeout(TLS_HANDSHAKE_TIMEOUT);
    let store = Store::open_configured(&dir, &config).await?;
    info!(
        organisation = %config.organisation,
        cert_lifetime_days = config.cert_lifetime_days,
        max_failures = config.rate_limit.max_failures,
        window_secs = config.rate_limit.window_secs,
        "configuration loaded"
    );
    let enroller = Arc::new(Enroller::new(store.clone(), issuer, config));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CaError::io("listen on", args.listen.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CaError::io("read the address of", args.listen.to_string(), e))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let server = Server::builder()
        .tls_config(tls)?
        .timeout(Duration::from_secs(60))
        .add_service(EnrollmentServer::new(EnrollmentService::new(enroller)));

    info!(address = %local, dir = %dir.path().display(), "CA serving enrolment");
    announce(local)?;
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let serving = server.serve_with_incoming_shutdown(incoming, async move {
        shutdown_signal().await;
        signalled.notify_one();
    });
    tokio::select! {
        result = serving => result?,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    store.close().await;
    info!("CA stopped");
    Ok(())
}

/// The one line on stdout that tests and scripts wait for.
fn announce(local: SocketAddr) -> Result<(), CaError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on https://{local}")
        .and_then(|_| out.flush())
        .map_err(|e| CaError::io("write to", "standard output", e))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received, stopping"),
                _ = int.recv() => info!("SIGINT received, stopping"),
            }
        }
        _ => {
            // Without signal handlers fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
