//! mTLS to the CA (Renewal) with the card's key kept in the daemon: a rustls
//! client whose certificate resolver presents the card's certificate and signs
//! the handshake with the in-memory key (OpenSSL), connected to tonic through
//! `lanyard_proto::tls_channel`, since tonic's own TLS identity only takes a PEM key.

use std::sync::Arc;

use lanyard_proto::tls_channel::{mtls_client_config, tls_alert, TlsConnector, TlsErrors};
use openssl::hash::MessageDigest;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use tonic::transport::{Channel, Endpoint};

use crate::ca_client::{self, error_chain, CaFailure, CALL_TIMEOUT, CONNECT_TIMEOUT};
use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};

/// The schemes an RSA card key signs a handshake with, in order of preference
/// (PSS for TLS 1.3 and 1.2; PKCS#1 v1.5 only for TLS 1.2 servers that want it).
const RSA_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];
/// The scheme a P-256 card key signs with.
const EC_SCHEMES: [SignatureScheme; 1] = [SignatureScheme::ECDSA_NISTP256_SHA256];

/// The card's key as a rustls signing key; the private key never leaves memory.
#[derive(Debug)]
pub struct CardSigningKey {
    key: Arc<SigningKey>,
    spki: Vec<u8>,
}

impl CardSigningKey {
    /// Wraps the card's in-memory key.
    pub fn new(key: Arc<SigningKey>) -> Result<Self> {
        let spki = key.public_key_der()?;
        Ok(CardSigningKey { key, spki })
    }

    fn schemes(&self) -> &'static [SignatureScheme] {
        match self.key.key_type() {
            KeyType::Rsa2048 => &RSA_SCHEMES,
            KeyType::EcP256 => &EC_SCHEMES,
        }
    }
}

impl rustls::sign::SigningKey for CardSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = self
            .schemes()
            .iter()
            .copied()
            .find(|s| offered.contains(s))?;
        Some(Box::new(CardSigner {
            key: self.key.clone(),
            scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.key.key_type() {
            KeyType::Rsa2048 => SignatureAlgorithm::RSA,
            KeyType::EcP256 => SignatureAlgorithm::ECDSA,
        }
    }
}

/// Signs one handshake message with the card key and a chosen scheme.
#[derive(Debug)]
struct CardSigner {
    key: Arc<SigningKey>,
    scheme: SignatureScheme,
}

impl CardSigner {
    fn sign_with_openssl(
        &self,
        message: &[u8],
    ) -> std::result::Result<Vec<u8>, openssl::error::ErrorStack> {
        use SignatureScheme as S;
        let (md, pss) = match self.scheme {
            S::RSA_PSS_SHA256 => (MessageDigest::sha256(), true),
            S::RSA_PSS_SHA384 => (MessageDigest::sha384(), true),
            S::RSA_PSS_SHA512 => (MessageDigest::sha512(), true),
            S::RSA_PKCS1_SHA384 => (MessageDigest::sha384(), false),
            S::RSA_PKCS1_SHA512 => (MessageDigest::sha512(), false),
            // RSA_PKCS1_SHA256 and ECDSA_NISTP256_SHA256 (DER signature, as TLS wants).
            _ => (MessageDigest::sha256(), false),
        };
        let mut signer = openssl::sign::Signer::new(md, self.key.pkey())?;
        if pss {
            // TLS: MGF1 with the same hash, salt as long as the digest (RFC 8446 4.2.3).
            signer.set_rsa_padding(Padding::PKCS1_PSS)?;
            signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            signer.set_rsa_mgf1_md(md)?;
        }
        signer.sign_oneshot_to_vec(message)
    }
}

impl rustls::sign::Signer for CardSigner {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rustls::Error> {
        self.sign_with_openssl(message).map_err(|e| {
            tracing::error!(scheme = ?self.scheme, error = %e, "card key failed to sign the TLS handshake");
            rustls::Error::General(format!("card key signature: {e}"))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// Always presents the card's certificate and key.
#[derive(Debug)]
struct CardCertResolver(Arc<CertifiedKey>);

impl ResolvesClientCert for CardCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let usable = self.0.key.choose_scheme(sigschemes).is_some();
        if !usable {
            tracing::warn!(offered = ?sigschemes, "the CA accepts no signature scheme of this card's key");
        }
        usable.then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The trust anchors in a PEM bundle.
pub fn root_store(pem: &[u8]) -> Result<RootCertStore> {
    let certs = openssl::x509::X509::stack_from_pem(pem)
        .map_err(|e| Error::BadRequest(format!("the CA trust bundle is not PEM: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(CertificateDer::from(cert.to_der()?))
            .map_err(|e| Error::BadRequest(format!("the CA trust bundle: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::BadRequest(
            "the CA trust bundle holds no certificate".into(),
        ));
    }
    Ok(roots)
}

/// A rustls client config for mTLS: server checked against `ca_pem`, client
/// certificate `cert_chain` (leaf first, then the issuing CA) with `key`,
/// ALPN h2.
pub fn client_config(
    ca_pem: &[u8],
    cert_chain: Vec<Vec<u8>>,
    key: Arc<SigningKey>,
) -> Result<ClientConfig> {
    let roots = root_store(ca_pem)?;
    let certified = CertifiedKey::new(
        cert_chain.into_iter().map(CertificateDer::from).collect(),
        Arc::new(CardSigningKey::new(key)?),
    );
    certified
        .keys_match()
        .map_err(|e| Error::Internal(format!("the card's certificate is not for its key: {e}")))?;
    mtls_client_config(roots, Arc::new(CardCertResolver(Arc::new(certified))))
        .map_err(|e| Error::Internal(format!("TLS versions: {e}")))
}

/// Classifies a failure below gRPC: a TLS alert from the CA is a refusal, anything else transport.
pub fn classify_transport(e: &(dyn std::error::Error + 'static)) -> CaFailure {
    match tls_alert(e) {
        Some(alert) => refused_by_alert(alert),
        None => CaFailure::Transport(error_chain(e)),
    }
}

/// What a connection to the CA saw. With TLS 1.3 the CA checks the client
/// certificate after the client's side of the handshake is done, so a
/// refusal arrives as an alert on the first read, which hyper reports as a
/// closed connection; the channel's stream keeps it for the verdict.
#[derive(Clone, Default)]
pub struct AlertSeen(TlsErrors);

impl AlertSeen {
    fn get(&self) -> Option<rustls::AlertDescription> {
        self.0.alert()
    }

    /// Classifies a failed call's status: an alert seen on the connection
    /// (or in the status's causes) is a refusal of the card's certificate.
    pub fn classify(&self, status: tonic::Status) -> CaFailure {
        match self.get().or_else(|| tls_alert(&status)) {
            Some(alert) => refused_by_alert(alert),
            None => CaFailure::from_status(status),
        }
    }
}

fn refused_by_alert(alert: rustls::AlertDescription) -> CaFailure {
    CaFailure::Refused(tonic::Status::permission_denied(format!(
        "the CA refused this card's certificate in the TLS handshake ({alert:?})"
    )))
}

/// Connects to the CA at `url` over mTLS with `config`: TCP + rustls through
/// `tls_channel` (the endpoint URI is plain `http://` so tonic adds no TLS of
/// its own; the connector does it). Also returns what
/// tells a refused certificate from a broken connection.
pub async fn connect(
    url: &str,
    config: Arc<ClientConfig>,
) -> Result<(Channel, AlertSeen), CaFailure> {
    let bad = |e: Error| CaFailure::Transport(e.to_string());
    let uri = ca_client::parse_ca_url(url).map_err(bad)?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let connector = TlsConnector::new(config, &host, port)
        .map_err(|e| CaFailure::Transport(format!("CA host {host:?}: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| CaFailure::Transport(error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let seen = AlertSeen(connector.errors());
    match connector.connect(endpoint).await {
        Ok(channel) => Ok((channel, seen)),
        Err(e) => Err(match seen.get().or_else(|| tls_alert(&e)) {
            Some(alert) => refused_by_alert(alert),
            None => classify_transport(&e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::SigningKey as _;

    fn verify(key: &SigningKey, scheme: SignatureScheme, msg: &[u8], sig: &[u8]) -> bool {
        let public =
            openssl::pkey::PKey::public_key_from_der(&key.public_key_der().unwrap()).unwrap();
        let (md, pss) = match scheme {
            SignatureScheme::RSA_PSS_SHA256 => (MessageDigest::sha256(), true),
            SignatureScheme::RSA_PSS_SHA384 => (MessageDigest::sha384(), true),
            SignatureScheme::RSA_PKCS1_SHA512 => (MessageDigest::sha512(), false),
            _ => (MessageDigest::sha256(), false),
        };
        let mut v = openssl::sign::Verifier::new(md, &public).unwrap();
        if pss {
            v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
            v.set_rsa_mgf1_md(md).unwrap();
        }
        v.verify_oneshot(sig, msg).unwrap_or(false)
    }

    #[test]
    fn rsa_prefers_pss_and_falls_back_to_pkcs1() {
        let key = Arc::new(SigningKey::generate(KeyType::Rsa2048).unwrap());
        let signing = CardSigningKey::new(key.clone()).unwrap();
        assert_eq!(signing.algorithm(), SignatureAlgorithm::RSA);
        let all = [
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
        ];
        let signer = signing.choose_scheme(&all).unwrap();
        assert_eq!(signer.scheme(), SignatureScheme::RSA_PSS_SHA256);
        for scheme in [
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
        ] {
            let signer = signing.choose_scheme(&[scheme]).unwrap();
            let sig = signer.sign(b"handshake transcript").unwrap();
            assert!(
                verify(&key, scheme, b"handshake transcript", &sig),
                "{scheme:?}"
            );
            assert!(
                !verify(&key, scheme, b"another transcript", &sig),
                "{scheme:?}"
            );
        }
        assert!(signing
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .is_none());
    }

    #[test]
    fn ec_signs_ecdsa_p256_sha256_in_der() {
        let key = Arc::new(SigningKey::generate(KeyType::EcP256).unwrap());
        let signing = CardSigningKey::new(key.clone()).unwrap();
        assert_eq!(signing.algorithm(), SignatureAlgorithm::ECDSA);
        assert!(signing
            .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256])
            .is_none());
        let signer = signing
            .choose_scheme(&[
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::ECDSA_NISTP256_SHA256,
            ])
            .unwrap();
        let sig = signer.sign(b"transcript").unwrap();
        assert_eq!(sig[0], 0x30, "DER SEQUENCE");
        assert!(verify(
            &key,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            b"transcript",
            &sig
        ));
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let key = Arc::new(SigningKey::generate(KeyType::EcP256).unwrap());
        let other = SigningKey::generate(KeyType::EcP256).unwrap();
        let cert = crate::card_store::testing::self_signed_cert(&other, "x", 1).unwrap();
        let pem = openssl::x509::X509::from_der(&cert)
            .unwrap()
            .to_pem()
            .unwrap();
        let err = client_config(&pem, vec![cert.clone()], key).unwrap_err();
        assert!(err.to_string().contains("not for its key"), "{err}");
        let own = crate::card_store::testing::self_signed_cert(&other, "x", 1).unwrap();
        let config = client_config(&pem, vec![own], Arc::new(other)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(matches!(root_store(b"junk"), Err(Error::BadRequest(_))));
    }

    #[test]
    fn an_alert_in_the_cause_chain_is_a_refusal() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateUnknown),
        );
        match classify_transport(&io) {
            CaFailure::Refused(s) => assert!(s.message().contains("CertificateUnknown")),
            other => panic!("{other:?}"),
        }
        let plain = std::io::Error::other("connection refused");
        assert!(matches!(
            classify_transport(&plain),
            CaFailure::Transport(_)
        ));
    }
}
