//! Signature checks between certificates, used by the CA's self-check after
//! init and by tests; path building and trust decisions belong to the callers.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::CertsError;

/// Verifies that `issuer_der`'s key signed `cert_der` and that the names chain.
pub fn verify_issued_by(cert_der: &[u8], issuer_der: &[u8]) -> Result<(), CertsError> {
    let cert = parse_certificate(cert_der)?;
    let issuer = parse_certificate(issuer_der)?;
    if cert.issuer() != issuer.subject() {
        return Err(CertsError::BadCertificateSignature);
    }
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|_| CertsError::BadCertificateSignature)
}

/// Parses one DER certificate with nothing after it.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertsError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertsError::CertificateMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertsError::CertificateMalformed(
            "unexpected bytes after the certificate".into(),
        ));
    }
    Ok(cert)
}
