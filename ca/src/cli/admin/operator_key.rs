//! An operator's private key for the admin CLI: a PKCS#8 PEM file, or a key
//! in a PKCS#11 token named by an RFC 7512 `pkcs11:` URI (an HSM, SoftHSM2,
//! or the operator's own Lanyard card). It signs the operator's CSR and the
//! TLS handshake; a token key never leaves the token.

use std::path::Path;
use std::sync::Arc;

use lanyard_certs::rcgen::{self, CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::ca_dir::{write_atomic, KEY_MODE};
use crate::error::CaError;
use crate::issuer::{read_key_pem, CaSigningKey};
use crate::pkcs11_key::Pkcs11Key;
use crate::pkcs11_uri::Pkcs11Uri;

/// An operator's key, wherever it lives.
#[derive(Debug)]
pub struct OperatorKey(CaSigningKey);

impl OperatorKey {
    /// Opens `spec`: a `pkcs11:` URI, or else the path of a PKCS#8 PEM file.
    pub fn load(spec: &str) -> Result<Self, CaError> {
        if spec.starts_with("pkcs11:") {
            let uri = Pkcs11Uri::parse(spec)?;
            return Ok(OperatorKey(CaSigningKey::Pkcs11(Pkcs11Key::open(&uri)?)));
        }
        Ok(OperatorKey(CaSigningKey::File(Box::new(read_key_pem(
            Path::new(spec),
        )?))))
    }

    /// Generates a new P-256 key and writes it to `path` (PKCS#8 PEM, mode
    /// 0600); an existing file is never overwritten.
    pub fn generate_file(path: &Path) -> Result<Self, CaError> {
        if path.exists() {
            return Err(CaError::InvalidArgument(format!(
                "{} already exists; --new-key never overwrites a key (choose another file, or use --key with it)",
                path.display()
            )));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let pem = zeroize::Zeroizing::new(key.serialize_pem());
        write_atomic(path, pem.as_bytes(), KEY_MODE)?;
        Ok(OperatorKey(CaSigningKey::File(Box::new(key))))
    }

    /// The key as rcgen signs with it.
    pub fn signing_key(&self) -> &CaSigningKey {
        &self.0
    }

    /// A PKCS#10 request for this key with CN=`name`, DER.
    pub fn csr_der(&self, name: &str) -> Result<Vec<u8>, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.0)?.der().to_vec())
    }
}

/// The key as rustls signs the TLS handshake with it.
pub fn tls_signing_key(key: &OperatorKey) -> Result<Arc<dyn rustls::sign::SigningKey>, CaError> {
    match &key.0 {
        CaSigningKey::File(pair) => {
            let der = rustls::pki_types::PrivateKeyDer::Pkcs8(
                rustls::pki_types::PrivatePkcs8KeyDer::from(pair.serialize_der()),
            );
            rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
                CaError::InvalidArgument(format!("the operator key cannot sign for TLS ({e})"))
            })
        }
        CaSigningKey::Pkcs11(k) => Ok(Arc::new(k.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("op.key");
        let key = OperatorKey::generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&path).unwrap();
        let err = OperatorKey::generate_file(&path).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let again = OperatorKey::load(path.to_str().unwrap()).unwrap();
        let csr = again.csr_der("Grace Hopper").unwrap();
        let checked = lanyard_certs::check_csr(&csr).unwrap();
        assert_eq!(
            checked.spki_der(),
            rcgen::PublicKeyData::subject_public_key_info(key.signing_key())
        );
        assert!(tls_signing_key(&again).is_ok());
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("not-a-key");
        std::fs::write(&path, "hello").unwrap();
        let err = OperatorKey::load(path.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not-a-key"), "{err}");
        let err = OperatorKey::load("pkcs11:object=x;;").unwrap_err();
        assert!(matches!(err, CaError::Pkcs11Uri(_)), "{err}");
        let err = OperatorKey::load("/nonexistent/op.key").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/op.key"), "{err}");
    }
}
