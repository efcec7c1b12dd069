//! The admin CLI's connection to the CA: gRPC over mutual TLS, with the
//! operator certificate and a key that may stay in a PKCS#11 token. tonic's
//! TLS settings only take a PEM key, so the TLS handshake is our own (a
//! client certificate resolver over any signing key) through
//! `lanyard_proto::tls_channel`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lanyard_certs::rcgen::PublicKeyData;
use lanyard_proto::ca::admin_client::AdminClient;
use lanyard_proto::tls_channel::{mtls_client_config, TlsConnector, TlsErrors};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

use super::operator_key::{tls_signing_key, OperatorKey};
use crate::error::CaError;

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the CA is and who the operator is (flags or environment).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The CA's gRPC address, e.g. https://ca.example.nhs.uk:8443.
    #[arg(long = "ca", value_name = "URL", env = "LANYARD_ADMIN_CA")]
    pub ca: Option<String>,
    /// The CA's root certificate (root.pem from the CA host), which the server must chain to.
    #[arg(long = "ca-cert", value_name = "FILE", env = "LANYARD_ADMIN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Your operator certificate (PEM, as written by `add-operator --out`).
    #[arg(long = "cert", value_name = "FILE", env = "LANYARD_ADMIN_CERT")]
    pub cert: Option<PathBuf>,
    /// Your operator key: a PKCS#8 PEM file, or an RFC 7512 URI such as
    /// 'pkcs11:token=…;object=…?module-path=/usr/lib/…/liblanyard_pkcs11.so&pin-source=file:/…'.
    #[arg(long = "key", value_name = "FILE|URI", env = "LANYARD_ADMIN_KEY")]
    pub key: Option<String>,
}

fn missing(flag: &str, env: &str, what: &str) -> CaError {
    CaError::InvalidArgument(format!(
        "{flag} (or {env}) is needed: {what}; or work on the CA host with --dir where the command allows it"
    ))
}

/// The host and port of an `https://HOST:PORT` URL.
fn host_port(url: &str) -> Result<(String, u16), CaError> {
    let bad = |why: &str| CaError::InvalidArgument(format!("--ca {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if parsed.scheme() != "https" {
        return Err(bad("use https://HOST:PORT"));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(bad("it has no host")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad("it has no port"))?;
    Ok((host, port))
}

/// Every certificate in a PEM file, DER.
pub fn read_pem_certs(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io("read", path, e))?;
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|e| CaError::BadPem {
            path: path.into(),
            reason: format!("unreadable PEM ({e})"),
        })?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(CaError::BadPem {
            path: path.into(),
            reason: "no CERTIFICATE in it".into(),
        });
    }
    Ok(out)
}

/// Always presents the operator's certificate and key.
#[derive(Debug)]
struct OperatorIdentity(Arc<CertifiedKey>);

impl ResolvesClientCert for OperatorIdentity {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // Offer the certificate only if the key can sign with a scheme the server accepts.
        self.0.key.choose_scheme(schemes).map(|_| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Connection {
    /// Connects to the CA as the operator the certificate and key name.
    pub async fn connect(&self) -> Result<AdminConnection, CaError> {
        let url = self.ca.as_deref().ok_or_else(|| {
            missing(
                "--ca",
                "LANYARD_ADMIN_CA",
                "the CA's address, e.g. https://ca.example:8443",
            )
        })?;
        let (host, port) = host_port(url)?;
        let ca_cert = self
            .ca_cert
            .as_deref()
            .ok_or_else(|| missing("--ca-cert", "LANYARD_ADMIN_CA_CERT", "the CA's root.pem"))?;
        let cert = self
            .cert
            .as_deref()
            .ok_or_else(|| missing("--cert", "LANYARD_ADMIN_CERT", "your operator certificate"))?;
        let key_spec = self.key.as_deref().ok_or_else(|| {
            missing(
                "--key",
                "LANYARD_ADMIN_KEY",
                "your operator key (file or pkcs11: URI)",
            )
        })?;

        let mut roots = RootCertStore::empty();
        for der in read_pem_certs(ca_cert)? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| CaError::BadPem {
                    path: ca_cert.into(),
                    reason: format!("not a usable CA certificate ({e})"),
                })?;
        }
        let chain = read_pem_certs(cert)?;
        let key = OperatorKey::load(key_spec)?;
        check_key_matches(&chain[0], &key, cert)?;
        let certified = CertifiedKey::new(
            chain.into_iter().map(CertificateDer::from).collect(),
            tls_signing_key(&key)?,
        );
        let config = mtls_client_config(roots, Arc::new(OperatorIdentity(Arc::new(certified))))
            .map_err(|e| CaError::InvalidArgument(format!("TLS settings: {e}")))?;
        let connector = TlsConnector::new(Arc::new(config), &host, port).map_err(|_| {
            CaError::InvalidArgument(format!("--ca {url:?}: {host:?} is not a host name"))
        })?;
        let io_error = connector.errors();

        // The TLS is ours, so tonic sees plain http://.
        let endpoint = Endpoint::from_shared(format!("http://{}", authority(&host, port)))
            .map_err(|e| CaError::InvalidArgument(format!("--ca {url:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = connector
            .connect(endpoint)
            .await
            .map_err(|e| transport_error(url, &e))?;
        Ok(AdminConnection {
            client: AdminClient::new(channel),
            url: url.to_string(),
            io_error,
        })
    }
}

/// A connected Admin client and what its connection saw go wrong.
pub struct AdminConnection {
    /// The gRPC client.
    pub client: AdminClient<Channel>,
    url: String,
    /// What the TLS stream saw go wrong; its first I/O error may be the CA's
    /// alert refusing the client certificate, which TLS 1.3 delivers after the handshake.
    io_error: TlsErrors,
}

impl AdminConnection {
    /// A failed call, as the CLI reports it.
    pub fn error(&self, status: tonic::Status) -> CaError {
        call_error(&self.url, status, self.io_error.first_error().as_deref())
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Refuses a key that does not belong to the certificate, before the CA does.
fn check_key_matches(leaf: &[u8], key: &OperatorKey, cert_path: &Path) -> Result<(), CaError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| CaError::BadPem {
        path: cert_path.into(),
        reason: format!("not a valid certificate ({e})"),
    })?;
    if cert.public_key().raw != key.signing_key().subject_public_key_info() {
        return Err(CaError::InvalidArgument(format!(
            "--key is not the key of the certificate in {}",
            cert_path.display()
        )));
    }
    Ok(())
}

/// Every message in an error's chain, joined.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Whether the text is the server ending the handshake with an alert: after
/// our certificate, that is the CA refusing it (unknown CA, bad signature…).
fn certificate_refused(text: &str) -> bool {
    text.to_ascii_lowercase().contains("received fatal alert")
}

fn refused_in_handshake(detail: &str) -> CaError {
    CaError::Remote {
        code: tonic::Code::PermissionDenied,
        message: format!(
            "the CA refused the client certificate in the TLS handshake ({detail}); --cert must be an operator certificate issued by this CA"
        ),
    }
}

/// A failure to connect, as the CLI reports it.
fn transport_error(url: &str, err: &(dyn std::error::Error + 'static)) -> CaError {
    let text = chain_text(err);
    if certificate_refused(&text) {
        return refused_in_handshake(&text);
    }
    CaError::CaUnreachable {
        url: url.to_string(),
        reason: text,
    }
}

/// A failed call, as the CLI reports it; `io_error` is what the connection saw.
fn call_error(url: &str, status: tonic::Status, io_error: Option<&str>) -> CaError {
    use tonic::Code;
    if matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal
    ) {
        let mut text = chain_text(&status);
        if let Some(io) = io_error {
            text = format!("{text}: {io}");
        }
        if certificate_refused(&text) {
            return refused_in_handshake(&text);
        }
        if status.code() == Code::Unavailable {
            return CaError::CaUnreachable {
                url: url.to_string(),
                reason: text,
            };
        }
    }
    CaError::Remote {
        code: status.code(),
        message: status.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_with_a_host() {
        assert_eq!(
            host_port("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            host_port("https://ca.example").unwrap(),
            ("ca.example".into(), 443)
        );
        assert_eq!(host_port("https://[::1]:9").unwrap(), ("::1".into(), 9));
        for bad in ["http://ca.example:1", "ca.example:8443", "", "https://"] {
            let err = host_port(bad).unwrap_err();
            assert!(matches!(err, CaError::InvalidArgument(_)), "{bad}: {err}");
        }
        assert_eq!(authority("::1", 9), "[::1]:9");
    }

    #[test]
    fn refused_certificates_are_told_apart() {
        assert!(certificate_refused(
            "transport error: received fatal alert: UnknownCA"
        ));
        assert!(certificate_refused("received fatal alert: BadCertificate"));
        assert!(certificate_refused("received fatal alert: DecryptError"));
        assert!(!certificate_refused("Connection refused (os error 111)"));
        let err = call_error("https://x:1", tonic::Status::not_found("no card"), None);
        assert_eq!(err.exit_code(), 5);
        let err = call_error(
            "https://x:1",
            tonic::Status::unavailable("tcp connect error"),
            None,
        );
        assert_eq!(err.exit_code(), 3);
        let err = call_error(
            "https://x:1",
            tonic::Status::unknown("transport error"),
            Some("received fatal alert: DecryptError"),
        );
        assert_eq!(err.exit_code(), 4);
        assert!(
            err.to_string().contains("refused the client certificate"),
            "{err}"
        );
    }
}
