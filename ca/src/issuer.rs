//! The issuing CA at run time: its key and certificate loaded from the CA
//! directory (never the root key, which can live offline), and issuance of
//! card certificates with the profile from lanyard-certs.

use std::path::Path;

use lanyard_certs::rcgen::{Issuer, KeyPair};
use lanyard_certs::{CardHolder, CertSerial, CheckedCsr, Validity};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::ca_dir::CaDir;
use crate::error::CaError;

/// The issuing CA's signer plus the chain handed to clients.
pub struct IssuingCa {
    issuer: Issuer<'static, KeyPair>,
    issuing_der: Vec<u8>,
    root_der: Vec<u8>,
    issuing_not_after: OffsetDateTime,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("issuing_not_after", &self.issuing_not_after)
            .finish_non_exhaustive()
    }
}

/// Reads the first certificate of a PEM file as DER.
pub fn read_cert_pem(path: &Path) -> Result<Vec<u8>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io("read", path, e))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| CaError::BadPem {
        path: path.into(),
        reason: format!("no PEM certificate in it ({e})"),
    })?;
    if pem.label != "CERTIFICATE" {
        return Err(CaError::BadPem {
            path: path.into(),
            reason: format!("expected a CERTIFICATE, found {}", pem.label),
        });
    }
    Ok(pem.contents)
}

/// Reads a PKCS#8 PEM private key.
pub fn read_key_pem(path: &Path) -> Result<KeyPair, CaError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CaError::io("read", path, e))?);
    KeyPair::from_pem(&text).map_err(|e| CaError::BadPem {
        path: path.into(),
        reason: format!("not a usable PKCS#8 private key ({e})"),
    })
}

impl IssuingCa {
    /// Loads issuing.key, issuing.pem and root.pem (the certificate only).
    pub fn load(dir: &CaDir) -> Result<Self, CaError> {
        let issuing_der = read_cert_pem(&dir.issuing_pem())?;
        let root_der = read_cert_pem(&dir.root_pem())?;
        let key = read_key_pem(&dir.issuing_key())?;
        Self::from_parts(issuing_der, root_der, key).map_err(|reason| CaError::BadPem {
            path: dir.issuing_pem(),
            reason,
        })
    }

    /// Builds the signer from DER certificates and the issuing key.
    pub fn from_parts(
        issuing_der: Vec<u8>,
        root_der: Vec<u8>,
        key: KeyPair,
    ) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(&issuing_der)
            .map_err(|e| format!("not a valid certificate ({e})"))?;
        if cert.public_key().raw
            != lanyard_certs::rcgen::PublicKeyData::subject_public_key_info(&key)
        {
            return Err("the certificate does not match issuing.key".into());
        }
        let issuing_not_after = cert.validity().not_after.to_datetime();
        lanyard_certs::verify_issued_by(&issuing_der, &root_der)
            .map_err(|e| format!("not issued by root.pem ({e})"))?;
        let issuer = Issuer::from_ca_cert_der(&issuing_der.as_slice().into(), key)
            .map_err(|e| format!("cannot be used to issue ({e})"))?;
        Ok(IssuingCa {
            issuer,
            issuing_der,
            root_der,
            issuing_not_after,
        })
    }

    /// The chain above a card certificate: issuing CA first, root last.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.issuing_der.clone(), self.root_der.clone()]
    }

    /// Issues a card certificate; its validity never outlasts the issuing CA.
    pub fn issue(
        &self,
        csr: &CheckedCsr,
        holder: &CardHolder,
        serial: &CertSerial,
        mut validity: Validity,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        if validity.not_after > self.issuing_not_after {
            validity.not_after = self.issuing_not_after;
        }
        let der =
            lanyard_certs::issue_card_certificate(csr, holder, serial, validity, &self.issuer)?;
        Ok((der, validity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_certs::{generate_ca_key, issuing_ca_params, root_ca_params};
    use time::Duration;

    fn serial(b: u8) -> CertSerial {
        CertSerial::from_random([b; 16])
    }

    /// (issuing DER, root DER, issuing key PEM, other root DER)
    fn hierarchy() -> (Vec<u8>, Vec<u8>, String, Vec<u8>) {
        let now = OffsetDateTime::now_utc();
        let root_key = generate_ca_key().unwrap();
        let root_params = root_ca_params("T", &serial(1), now).unwrap();
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let root = Issuer::new(root_params, &root_key);
        let key = generate_ca_key().unwrap();
        let issuing = issuing_ca_params("T", &serial(2), now)
            .unwrap()
            .signed_by(&key, &root)
            .unwrap();
        let other_key = generate_ca_key().unwrap();
        let other_root = root_ca_params("T", &serial(3), now)
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        (
            issuing.der().to_vec(),
            root_der,
            key.serialize_pem(),
            other_root.der().to_vec(),
        )
    }

    #[test]
    fn loads_a_matching_hierarchy_and_clamps_validity() {
        let (issuing, root, key, _) = hierarchy();
        let ca = IssuingCa::from_parts(
            issuing.clone(),
            root.clone(),
            KeyPair::from_pem(&key).unwrap(),
        )
        .unwrap();
        assert_eq!(ca.chain_der(), vec![issuing, root]);

        let p256 = KeyPair::generate_for(&lanyard_certs::rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = lanyard_certs::rcgen::CertificateParams::default()
            .serialize_request(&p256)
            .unwrap();
        let csr = lanyard_certs::check_csr(csr.der()).unwrap();
        let holder = CardHolder {
            holder_name: "A".into(),
            user_id: "1".into(),
            role: "R".into(),
            card_id: "0123456789AB".into(),
            organisation: "T".into(),
        };
        let now = OffsetDateTime::now_utc();
        // Ask for more than the issuing CA's own remaining life (about 5 years).
        let long = Validity {
            not_before: now,
            not_after: now + Duration::days(3000),
        };
        let (_, v) = ca.issue(&csr, &holder, &serial(4), long).unwrap();
        assert_eq!(v.not_after, ca.issuing_not_after);
    }

    #[test]
    fn refuses_a_key_that_does_not_match() {
        let (issuing, root, _, _) = hierarchy();
        let wrong = generate_ca_key().unwrap();
        let err = IssuingCa::from_parts(issuing, root, wrong).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn refuses_an_issuing_ca_from_another_root() {
        let (issuing, _, key, other_root) = hierarchy();
        let err = IssuingCa::from_parts(issuing, other_root, KeyPair::from_pem(&key).unwrap())
            .unwrap_err();
        assert!(err.contains("not issued by root.pem"), "{err}");
    }
}
