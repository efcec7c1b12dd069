//! The issuing CA at run time: its certificate and key (the issuing.key file,
//! or a PKCS#11 key named by ca.toml's issuing_key), never the root key, which
//! can live offline; and what it signs: card and operator certificates, CRLs.

use std::path::Path;

use lanyard_certs::rcgen::{self, Issuer, KeyPair, PublicKeyData, SigningKey};
use lanyard_certs::{
    CardHolder, CardProfileOptions, CertSerial, CertsError, CheckedCsr, CrlContents, CrlUrl,
    Validity,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::ca_dir::CaDir;
use crate::config::CaConfig;
use crate::error::CaError;
use crate::pkcs11_key::Pkcs11Key;
use crate::pkcs11_uri::Pkcs11Uri;

/// The issuing CA's private key: a PKCS#8 file or a key in a PKCS#11 token.
#[derive(Debug)]
pub enum CaSigningKey {
    /// issuing.key in the CA directory.
    File(Box<KeyPair>),
    /// A key that never leaves its HSM.
    Pkcs11(Pkcs11Key),
}

impl CaSigningKey {
    /// Where the key is, for logs: "issuing.key" or the URI without its PIN.
    pub fn describe(&self) -> String {
        match self {
            CaSigningKey::File(_) => "issuing.key".into(),
            CaSigningKey::Pkcs11(k) => k.uri_redacted(),
        }
    }
}

impl PublicKeyData for CaSigningKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaSigningKey::File(k) => k.der_bytes(),
            CaSigningKey::Pkcs11(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaSigningKey::File(k) => PublicKeyData::algorithm(k.as_ref()),
            CaSigningKey::Pkcs11(k) => PublicKeyData::algorithm(k),
        }
    }
}

impl SigningKey for CaSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaSigningKey::File(k) => k.sign(msg),
            CaSigningKey::Pkcs11(k) => k.sign(msg),
        }
    }
}

/// The issuing CA's signer plus the chain handed to clients.
pub struct IssuingCa {
    issuer: Issuer<'static, CaSigningKey>,
    issuing_der: Vec<u8>,
    root_der: Vec<u8>,
    issuing_not_after: OffsetDateTime,
    crl_url: Option<CrlUrl>,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("key", &self.issuer.key().describe())
            .field("issuing_not_after", &self.issuing_not_after)
            .field("crl_url", &self.crl_url)
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

/// Opens the issuing key the configuration names: the PKCS#11 key of
/// `issuing_key`, or else issuing.key in `dir`.
pub fn open_signing_key(dir: &CaDir, config: &CaConfig) -> Result<CaSigningKey, CaError> {
    match &config.issuing_key {
        Some(uri) => {
            let uri = Pkcs11Uri::parse(uri)?;
            Ok(CaSigningKey::Pkcs11(Pkcs11Key::open(&uri)?))
        }
        None => Ok(CaSigningKey::File(Box::new(read_key_pem(
            &dir.issuing_key(),
        )?))),
    }
}

impl IssuingCa {
    /// Loads issuing.pem and root.pem (the certificate only) and the issuing
    /// key that ca.toml names (issuing.key unless `issuing_key` is set), with
    /// ca.toml's CRL URL. A directory without ca.toml uses issuing.key.
    pub fn load(dir: &CaDir) -> Result<Self, CaError> {
        if dir.config().exists() {
            let config = CaConfig::load(&dir.config())?;
            return Self::open(dir, &config);
        }
        let key = CaSigningKey::File(Box::new(read_key_pem(&dir.issuing_key())?));
        Self::from_dir_and_key(dir, key)
    }

    /// Loads the certificates from `dir` and the key and CRL URL `config` names.
    pub fn open(dir: &CaDir, config: &CaConfig) -> Result<Self, CaError> {
        let crl_url = config
            .crl_url
            .as_deref()
            .map(CrlUrl::parse)
            .transpose()
            .map_err(|e| CaError::Config {
                path: dir.config(),
                reason: format!("crl_url: {e}"),
            })?;
        let key = open_signing_key(dir, config)?;
        let mut ca = Self::from_dir_and_key(dir, key)?;
        ca.crl_url = crl_url;
        Ok(ca)
    }

    fn from_dir_and_key(dir: &CaDir, key: CaSigningKey) -> Result<Self, CaError> {
        let issuing_der = read_cert_pem(&dir.issuing_pem())?;
        let root_der = read_cert_pem(&dir.root_pem())?;
        let what = key.describe();
        Self::from_signer(issuing_der, root_der, key).map_err(|reason| CaError::BadPem {
            path: dir.issuing_pem(),
            reason: reason.replace("the issuing key", &what),
        })
    }

    /// Builds the signer from DER certificates and the issuing key file's key.
    pub fn from_parts(
        issuing_der: Vec<u8>,
        root_der: Vec<u8>,
        key: KeyPair,
    ) -> Result<Self, String> {
        Self::from_signer(issuing_der, root_der, CaSigningKey::File(Box::new(key)))
            .map_err(|e| e.replace("the issuing key", "issuing.key"))
    }

    /// Builds the signer from DER certificates and any issuing key.
    pub fn from_signer(
        issuing_der: Vec<u8>,
        root_der: Vec<u8>,
        key: CaSigningKey,
    ) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(&issuing_der)
            .map_err(|e| format!("not a valid certificate ({e})"))?;
        if cert.public_key().raw != key.subject_public_key_info() {
            return Err("the certificate does not match the issuing key".into());
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
            crl_url: None,
        })
    }

    /// Sets the URL put in the CRL Distribution Points of what [`IssuingCa::issue`]
    /// and [`IssuingCa::issue_operator`] sign (e.g. derived from `serve --crl-listen`).
    pub fn set_crl_url(&mut self, url: Option<CrlUrl>) {
        self.crl_url = url;
    }

    /// The CRL URL certificates get, if any.
    pub fn crl_url(&self) -> Option<&CrlUrl> {
        self.crl_url.as_ref()
    }

    /// Where the signing key is: "issuing.key" or the PKCS#11 URI without its PIN.
    pub fn key_description(&self) -> String {
        self.issuer.key().describe()
    }

    /// The issuing CA's certificate (DER).
    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// The root CA's certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// When the issuing CA's certificate expires.
    pub fn issuing_not_after(&self) -> OffsetDateTime {
        self.issuing_not_after
    }

    /// The chain above a card certificate: issuing CA first, root last.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.issuing_der.clone(), self.root_der.clone()]
    }

    /// Signs with `sign` for `validity` cut to the issuing CA's own end, and
    /// returns the certificate with the validity it got.
    fn sign_within_life(
        &self,
        mut validity: Validity,
        sign: impl FnOnce(Validity, &Issuer<'static, CaSigningKey>) -> Result<Vec<u8>, CertsError>,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        if validity.not_after > self.issuing_not_after {
            validity.not_after = self.issuing_not_after;
        }
        Ok((sign(validity, &self.issuer)?, validity))
    }

    /// Issues a card certificate with this CA's CRL URL; its validity never
    /// outlasts the issuing CA.
    pub fn issue(
        &self,
        csr: &CheckedCsr,
        holder: &CardHolder,
        serial: &CertSerial,
        validity: Validity,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        let options = CardProfileOptions {
            crl_url: self.crl_url.clone(),
        };
        self.issue_with(csr, holder, serial, validity, &options)
    }

    /// As [`IssuingCa::issue`], with the caller's profile options.
    pub fn issue_with(
        &self,
        csr: &CheckedCsr,
        holder: &CardHolder,
        serial: &CertSerial,
        validity: Validity,
        options: &CardProfileOptions,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        self.sign_within_life(validity, |validity, issuer| {
            lanyard_certs::issue_card_certificate_with(
                csr, holder, serial, validity, issuer, options,
            )
        })
    }

    /// Issues a card's document-signing certificate (profile
    /// [`lanyard_certs::SIGNING_PROFILE`]) with this CA's CRL URL; its
    /// validity never outlasts the issuing CA.
    pub fn issue_signing(
        &self,
        csr: &CheckedCsr,
        holder: &CardHolder,
        serial: &CertSerial,
        validity: Validity,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        let options = CardProfileOptions {
            crl_url: self.crl_url.clone(),
        };
        self.sign_within_life(validity, |validity, issuer| {
            lanyard_certs::issue_signing_certificate(
                csr, holder, serial, validity, issuer, &options,
            )
        })
    }

    /// Issues an IT-desk operator (registration authority) certificate with
    /// this CA's CRL URL; its validity never outlasts the issuing CA.
    pub fn issue_operator(
        &self,
        csr: &CheckedCsr,
        name: &str,
        organisation: &str,
        serial: &CertSerial,
        validity: Validity,
    ) -> Result<(Vec<u8>, Validity), CaError> {
        self.sign_within_life(validity, |validity, issuer| {
            lanyard_certs::issue_operator_certificate(
                csr,
                name,
                organisation,
                serial,
                validity,
                issuer,
                self.crl_url.as_ref(),
            )
        })
    }

    /// Signs a CRL (DER) with the issuing key.
    pub fn sign_crl(&self, contents: &CrlContents) -> Result<Vec<u8>, CaError> {
        Ok(lanyard_certs::build_crl(
            contents,
            &self.issuing_der,
            &self.issuer,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_issuer::test_hierarchy;
    use lanyard_certs::{generate_ca_key, root_ca_params};
    use time::Duration;

    fn serial(b: u8) -> CertSerial {
        CertSerial::from_random([b; 16])
    }

    /// (issuing DER, root DER, issuing key PEM, other root DER)
    fn hierarchy() -> (Vec<u8>, Vec<u8>, String, Vec<u8>) {
        let (root, issuing, key) = test_hierarchy();
        let other_key = generate_ca_key().unwrap();
        let other_root = root_ca_params("T", &serial(3), OffsetDateTime::now_utc())
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        (
            issuing.der().to_vec(),
            root.der().to_vec(),
            key.serialize_pem(),
            other_root.der().to_vec(),
        )
    }

    fn p256_csr() -> CheckedCsr {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&p256)
            .unwrap();
        lanyard_certs::check_csr(csr.der()).unwrap()
    }

    fn holder() -> CardHolder {
        CardHolder {
            holder_name: "A".into(),
            user_id: "1".into(),
            role: "R".into(),
            card_id: "0123456789AB".into(),
            organisation: "T".into(),
        }
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

        let now = OffsetDateTime::now_utc();
        // Ask for more than the issuing CA's own remaining life (about 5 years).
        let long = Validity {
            not_before: now,
            not_after: now + Duration::days(3000),
        };
        let (_, v) = ca.issue(&p256_csr(), &holder(), &serial(4), long).unwrap();
        assert_eq!(v.not_after, ca.issuing_not_after);
    }

    #[test]
    fn refuses_a_key_that_does_not_match() {
        let (issuing, root, _, _) = hierarchy();
        let wrong = generate_ca_key().unwrap();
        let err = IssuingCa::from_parts(issuing, root, wrong).unwrap_err();
        assert!(err.contains("does not match issuing.key"), "{err}");
    }

    #[test]
    fn refuses_an_issuing_ca_from_another_root() {
        let (issuing, _, key, other_root) = hierarchy();
        let err = IssuingCa::from_parts(issuing, other_root, KeyPair::from_pem(&key).unwrap())
            .unwrap_err();
        assert!(err.contains("not issued by root.pem"), "{err}");
    }

    /// A CA directory like `init` writes (file key), with `config` saved in it.
    fn ca_dir(config: &CaConfig) -> (tempfile::TempDir, CaDir) {
        use crate::ca_dir::{write_atomic, KEY_MODE, PUBLIC_MODE};
        let (root_cert, issuing, key) = test_hierarchy();
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        write_atomic(&dir.root_pem(), root_cert.pem().as_bytes(), PUBLIC_MODE).unwrap();
        write_atomic(&dir.issuing_pem(), issuing.pem().as_bytes(), PUBLIC_MODE).unwrap();
        write_atomic(&dir.issuing_key(), key.serialize_pem().as_bytes(), KEY_MODE).unwrap();
        config.save(&dir.config()).unwrap();
        (tmp, dir)
    }

    fn crl_urls(der: &[u8]) -> Vec<String> {
        use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let mut out = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
                for p in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                out.push(u.to_string());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn open_takes_the_crl_url_from_the_config_and_signs_operators_and_crls() {
        let mut config = CaConfig::new("T");
        config.crl_url = Some("http://127.0.0.1:8080/issuing.crl".into());
        let (_tmp, dir) = ca_dir(&config);
        let ca = IssuingCa::open(&dir, &config).unwrap();
        assert_eq!(ca.key_description(), "issuing.key");
        let now = OffsetDateTime::now_utc();
        let validity = Validity::card(now, Duration::days(1)).unwrap();
        let (card, _) = ca
            .issue(&p256_csr(), &holder(), &serial(4), validity)
            .unwrap();
        assert_eq!(crl_urls(&card), ["http://127.0.0.1:8080/issuing.crl"]);
        lanyard_certs::verify_issued_by(&card, ca.issuing_der()).unwrap();

        let (operator, _) = ca
            .issue_operator(&p256_csr(), "Grace Hopper", "T", &serial(5), validity)
            .unwrap();
        assert_eq!(crl_urls(&operator), ["http://127.0.0.1:8080/issuing.crl"]);
        assert_eq!(
            lanyard_certs::operator_identity(&operator).unwrap().name,
            "Grace Hopper"
        );

        let crl = ca
            .sign_crl(&CrlContents {
                number: 3,
                this_update: now,
                next_update: now + Duration::hours(1),
                revoked: Vec::new(),
            })
            .unwrap();
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&crl).unwrap();
        let (_, issuing) = X509Certificate::from_der(ca.issuing_der()).unwrap();
        parsed.verify_signature(issuing.public_key()).unwrap();

        // load() reads the same ca.toml.
        let loaded = IssuingCa::load(&dir).unwrap();
        assert_eq!(loaded.crl_url(), ca.crl_url());
    }

    #[test]
    fn a_bad_crl_url_or_hsm_uri_in_the_config_is_refused() {
        let mut config = CaConfig::new("T");
        let (_tmp, dir) = ca_dir(&config);
        config.crl_url = Some("ftp://x/crl".into());
        let err = IssuingCa::open(&dir, &config).unwrap_err();
        assert!(matches!(err, CaError::Config { .. }), "{err}");
        assert!(err.to_string().contains("crl_url"), "{err}");

        config.crl_url = None;
        config.issuing_key = Some("pkcs11:object=a b".into());
        let err = IssuingCa::open(&dir, &config).unwrap_err();
        assert!(matches!(err, CaError::Pkcs11Uri(_)), "{err}");
        config.issuing_key = Some("pkcs11:object=issuing".into());
        let err = IssuingCa::open(&dir, &config).unwrap_err();
        assert!(err.to_string().contains("module-path"), "{err}");
    }
}
