//! `lanyard-ca serve`: loads the issuing CA (never root.key), opens the
//! database, binds the gRPC address (port 0 picks one) and, with
//! `--crl-listen`, the plain-HTTP CRL address; publishes a CRL if none is
//! current, prints `listening on https://IP:PORT` (then `crl on
//! http://IP:PORT/issuing.crl`) on stdout and serves until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lanyard_certs::CrlUrl;
use lanyard_proto::ca::admin_server::AdminServer;
use lanyard_proto::ca::enrollment_server::EnrollmentServer;
use lanyard_proto::ca::renewal_server::RenewalServer;
use lanyard_proto::ca::revocation_server::RevocationServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::ca_dir::CaDir;
use crate::certify::Certifier;
use crate::config::CaConfig;
use crate::crl_http::{crl_url_for, serve_crl};
use crate::crl_publisher::CrlPublisher;
use crate::derive::{DerivationPolicy, Deriver};
use crate::enrolment::Enroller;
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::pin_reset::PinResetter;
use crate::rate_limit::FailureLimiter;
use crate::renewal::Renewer;
use crate::service::admin::AdminService;
use crate::service::enrollment::EnrollmentService;
use crate::service::renewal::RenewalService;
use crate::service::revocation::RevocationService;
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
    /// Also serve the CRL over plain HTTP at http://ADDR/issuing.crl (port 0 picks one;
    /// printed as `crl on http://IP:PORT/issuing.crl`). Certificates name this URL
    /// unless ca.toml sets crl_url.
    #[arg(long, value_name = "ADDR")]
    pub crl_listen: Option<SocketAddr>,
    /// The database, overriding ca.toml's `database`: a postgres:// URL shared
    /// by CA replicas (without it: ca.toml's setting, else DIR/ca.db).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// Binds `addr`; returns the listener and the address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), CaError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CaError::io("listen on", addr.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CaError::io("read the address of", addr.to_string(), e))?;
    Ok((listener, local))
}

/// Runs the server until a signal asks it to stop.
pub async fn run(args: ServeArgs) -> Result<(), CaError> {
    // tonic builds its rustls config from the process-wide provider; pin ring.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = CaDir::new(&args.dir);
    dir.require_initialised()?;
    dir.remove_leftover_temp_files();
    let mut config = CaConfig::load(&dir.config())?;
    if let Some(url) = args.database {
        config.database = Some(url);
        config
            .check()
            .map_err(|reason| CaError::InvalidArgument(format!("--database: {reason}")))?;
    }
    let mut issuer = IssuingCa::open(&dir, &config)?;
    let tls = server_tls_config(&dir)?.timeout(TLS_HANDSHAKE_TIMEOUT);
    let store = Store::open_configured(&dir, &config).await?;

    let (listener, local) = bind(args.listen).await?;
    let crl_listener = match args.crl_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    if issuer.crl_url().is_none() {
        if let Some((_, crl_local)) = &crl_listener {
            if crl_local.ip().is_unspecified() {
                warn!(address = %crl_local, "--crl-listen is a wildcard address; set crl_url in ca.toml to the URL relying parties can reach");
            }
            let url = CrlUrl::parse(&crl_url_for(*crl_local))?;
            issuer.set_crl_url(Some(url));
        } else {
            warn!("no crl_url in ca.toml and no --crl-listen: certificates carry no CRL Distribution Point");
        }
    }
    info!(
        organisation = %config.organisation,
        cert_lifetime_secs = config.cert_lifetime().whole_seconds(),
        crl_url = issuer.crl_url().map(CrlUrl::as_str).unwrap_or("-"),
        crl_interval_secs = config.crl_interval_secs,
        max_concurrent_issuance = config.max_concurrent_issuance,
        key = %issuer.key_description(),
        database = ?store.backend(),
        "configuration loaded"
    );
    let issuer = Arc::new(issuer);
    let certifier = Arc::new(Certifier::new(issuer.clone(), &config));
    let failures = Arc::new(FailureLimiter::new(config.rate_limit));
    let enroller = Arc::new(Enroller::new(
        store.clone(),
        certifier.clone(),
        failures.clone(),
    ));
    let resetter = Arc::new(PinResetter::new(
        store.clone(),
        certifier.clone(),
        failures.clone(),
    ));
    let derivation = DerivationPolicy::load(dir.path(), &config.derivation)?;
    info!(
        enabled = derivation.is_some(),
        "derived enrolment from physical cards"
    );
    let deriver = Arc::new(Deriver::new(
        store.clone(),
        certifier.clone(),
        failures,
        config.organisation.clone(),
        derivation,
    ));
    let renewer = Arc::new(Renewer::new(store.clone(), certifier.clone()));

    let publisher = CrlPublisher::new(
        store.clone(),
        issuer.clone(),
        Duration::from_secs(config.crl_interval_secs),
    );
    // A CRL exists before anyone is told where to fetch it.
    publisher.publish_if_needed().await?;

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .tls_config(tls)?
        .timeout(Duration::from_secs(60))
        .add_service(EnrollmentServer::new(EnrollmentService::new(
            enroller, resetter, deriver,
        )))
        .add_service(RenewalServer::new(RenewalService::new(renewer)))
        .add_service(RevocationServer::new(RevocationService::new(store.clone())))
        .add_service(AdminServer::new(AdminService::new(
            store.clone(),
            config.clone(),
            issuer.clone(),
        )));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publishing = tokio::spawn(publisher.run(stop_rx.clone()));
    let crl_address = match crl_listener {
        Some((listener, crl_local)) => {
            tokio::spawn(serve_crl(listener, store.clone(), stop_rx.clone()));
            Some(crl_local)
        }
        None => None,
    };

    info!(address = %local, dir = %dir.path().display(), "CA serving");
    announce(&format!("listening on https://{local}"))?;
    if let Some(crl_local) = crl_address {
        info!(url = %crl_url_for(crl_local), "CRL served");
        announce(&format!("crl on {}", crl_url_for(crl_local)))?;
    }
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let serving = server.serve_with_incoming_shutdown(incoming, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        signalled.notify_one();
    });
    tokio::select! {
        result = serving => result?,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    let _ = publishing.await;
    store.close().await;
    info!("CA stopped");
    Ok(())
}

/// One line on stdout that tests and scripts wait for.
fn announce(line: &str) -> Result<(), CaError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
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
