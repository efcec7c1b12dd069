//! A tonic channel over our own TLS: TCP + tokio-rustls with a caller's rustls
//! `ClientConfig` (e.g. a client certificate whose key signs outside rustls),
//! behind `Endpoint::connect_with_connector`, since tonic's TLS only takes a PEM key.
//! The stream remembers what went wrong on it, so a refused certificate can be told apart.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{InvalidDnsNameError, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// A client configuration for gRPC over mutual TLS: ring, rustls's safe
/// protocol versions, servers checked against `roots`, the client
/// certificate from `resolver`, and ALPN h2.
pub fn mtls_client_config(
    roots: RootCertStore,
    resolver: Arc<dyn ResolvesClientCert>,
) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The TLS alert a peer sent, if `e` (or one of its causes) is one.
pub fn tls_alert(e: &(dyn std::error::Error + 'static)) -> Option<AlertDescription> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .or_else(|| err.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::AlertReceived(alert)) = inner {
            return Some(*alert);
        }
        cur = err.source();
    }
    None
}

/// What the TLS streams of a channel saw go wrong. With TLS 1.3 the server
/// checks the client certificate after the client's side of the handshake is
/// done, so a refusal arrives as an alert on the first read, which hyper
/// reports only as a closed connection; this keeps it for the verdict.
#[derive(Clone, Debug, Default)]
pub struct TlsErrors(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    first: Option<String>,
    alert: Option<AlertDescription>,
}

impl TlsErrors {
    fn record(&self, e: &std::io::Error) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.first.get_or_insert_with(|| e.to_string());
        if let Some(alert) = tls_alert(e) {
            seen.alert = Some(alert);
        }
    }

    /// The text of the first I/O error on the stream, if any.
    pub fn first_error(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first
            .clone()
    }

    /// The TLS alert the server sent, if one was read.
    pub fn alert(&self) -> Option<AlertDescription> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).alert
    }
}

/// Where and how to open the TLS connection under a channel.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    errors: TlsErrors,
}

impl TlsConnector {
    /// Connects TCP to `host:port` (a name or an IP address without brackets)
    /// and checks the server's certificate for `host`; refuses a `host` that is
    /// neither a DNS name nor an IP address.
    pub fn new(
        config: Arc<ClientConfig>,
        host: &str,
        port: u16,
    ) -> Result<Self, InvalidDnsNameError> {
        let server_name = ServerName::try_from(host.to_string())?;
        Ok(TlsConnector {
            config,
            host: host.to_string(),
            port,
            server_name,
            errors: TlsErrors::default(),
        })
    }

    /// What the connection's streams see go wrong (shared, filled in as they do).
    pub fn errors(&self) -> TlsErrors {
        self.errors.clone()
    }

    /// Opens `endpoint` through this TLS. The endpoint's URI should be plain
    /// `http://` so tonic adds no TLS of its own; its authority is what the
    /// requests name, while the connection goes to this connector's host and port.
    pub async fn connect(self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        let tls = tokio_rustls::TlsConnector::from(self.config);
        let target = Arc::new((self.host, self.port, self.server_name, self.errors));
        let connector = tower::service_fn(move |_: Uri| {
            let tls = tls.clone();
            let target = target.clone();
            async move {
                let (host, port, server_name, errors) = &*target;
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                let stream = tls.connect(server_name.clone(), tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(Watched {
                    inner: stream,
                    errors: errors.clone(),
                }))
            }
        });
        endpoint.connect_with_connector(connector).await
    }
}

/// A stream that records its I/O errors in [`TlsErrors`].
struct Watched<T> {
    inner: T,
    errors: TlsErrors,
}

impl<T> Watched<T> {
    fn note<R>(&self, result: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if let Poll::Ready(Err(e)) = &result {
            self.errors.record(e);
        }
        result
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_in_the_cause_chain_is_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateUnknown),
        );
        assert_eq!(tls_alert(&io), Some(AlertDescription::CertificateUnknown));
        assert_eq!(tls_alert(&std::io::Error::other("connection reset")), None);
    }

    #[test]
    fn the_first_error_and_the_alert_are_kept() {
        let errors = TlsErrors::default();
        assert_eq!(errors.first_error(), None);
        errors.record(&std::io::Error::other("connection reset"));
        errors.record(&std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        ));
        assert_eq!(errors.first_error().as_deref(), Some("connection reset"));
        assert_eq!(errors.alert(), Some(AlertDescription::UnknownCA));
    }

    #[test]
    fn hosts_must_be_names_or_addresses() {
        let config = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        assert!(TlsConnector::new(config.clone(), "ca.example", 443).is_ok());
        assert!(TlsConnector::new(config.clone(), "::1", 443).is_ok());
        assert!(TlsConnector::new(config, "not a host", 443).is_err());
    }
}
