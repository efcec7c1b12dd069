//! The document-signing certificate profile of a Lanyard virtual card (the
//! role of a PIV card's slot 9C): the same subject as the card's
//! authentication certificate, a second key, and key usage for signatures
//! that commit the holder (nonRepudiation), never for TLS client login.

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SigningKey,
};

use crate::crl_url::distribution_points;
use crate::{CardHolder, CardProfileOptions, CertSerial, CertsError, CheckedCsr, Validity};

/// The profile's name, as the CA records and reports it.
pub const SIGNING_PROFILE: &str = "document-signing";

/// The rcgen parameters of a card's document-signing certificate (without
/// the public key). Key usage is critical digitalSignature +
/// contentCommitment; the only extended key usage is emailProtection, which
/// is what S/MIME and CMS verifiers (OpenSSL's default `smimesign` purpose)
/// accept, and which TLS servers refuse for client authentication.
pub fn signing_certificate_params(
    holder: &CardHolder,
    serial: &CertSerial,
    validity: Validity,
    options: &CardProfileOptions,
) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = holder.distinguished_name()?;
    params.serial_number = Some(serial.to_rcgen());
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    params.use_authority_key_identifier_extension = true;
    params.crl_distribution_points = distribution_points(options.crl_url.as_ref());
    Ok(params)
}

/// Issues a card's document-signing certificate for the request's public
/// key, signed by `issuer`. Returns the DER certificate.
pub fn issue_signing_certificate(
    csr: &CheckedCsr,
    holder: &CardHolder,
    serial: &CertSerial,
    validity: Validity,
    issuer: &Issuer<'_, impl SigningKey>,
    options: &CardProfileOptions,
) -> Result<Vec<u8>, CertsError> {
    let params = signing_certificate_params(holder, serial, validity, options)?;
    crate::card_profile::sign_for_csr(params, csr, issuer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::{holder, TestCa};
    use crate::{card_identity, check_csr, issue_card_certificate, verify_issued_by, CrlUrl};
    use time::{Duration, OffsetDateTime};
    use x509_parser::prelude::{FromDer, X509Certificate};

    const RSA2048: &[u8] = include_bytes!("../testdata/rsa2048.csr.der");
    const P256: &[u8] = include_bytes!("../testdata/p256.csr.der");

    fn validity() -> Validity {
        Validity::card(OffsetDateTime::now_utc(), Duration::days(30)).unwrap()
    }

    #[test]
    fn signing_certificate_commits_and_protects_email_only() {
        let ca = TestCa::new();
        for csr_der in [RSA2048, P256] {
            let csr = check_csr(csr_der).unwrap();
            let serial = CertSerial::from_random([0x9c; 16]);
            let options = CardProfileOptions {
                crl_url: Some(CrlUrl::parse("http://127.0.0.1:8080/issuing.crl").unwrap()),
            };
            let der = issue_signing_certificate(
                &csr,
                &holder(),
                &serial,
                validity(),
                &ca.issuer,
                &options,
            )
            .unwrap();
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(cert.public_key().raw, csr.spki_der());
            assert_eq!(cert.raw_serial(), serial.as_bytes());
            let ku = cert.key_usage().unwrap().unwrap();
            assert!(ku.critical);
            assert!(ku.value.digital_signature());
            assert!(ku.value.non_repudiation());
            assert!(!ku.value.key_cert_sign());
            assert!(!ku.value.key_encipherment());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.email_protection);
            assert!(!eku.client_auth);
            assert!(!eku.server_auth);
            assert!(!eku.any);
            assert!(eku.other.is_empty(), "{:?}", eku.other);
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
            verify_issued_by(&der, &ca.issuing_der).unwrap();
        }
    }

    #[test]
    fn same_subject_as_the_card_certificate_but_never_a_login_certificate() {
        let ca = TestCa::new();
        let csr = check_csr(P256).unwrap();
        let card = issue_card_certificate(
            &csr,
            &holder(),
            &CertSerial::from_random([1; 16]),
            validity(),
            &ca.issuer,
        )
        .unwrap();
        let signing = issue_signing_certificate(
            &csr,
            &holder(),
            &CertSerial::from_random([2; 16]),
            validity(),
            &ca.issuer,
            &CardProfileOptions::default(),
        )
        .unwrap();
        let (_, card_cert) = X509Certificate::from_der(&card).unwrap();
        let (_, signing_cert) = X509Certificate::from_der(&signing).unwrap();
        assert_eq!(
            card_cert.subject().as_raw(),
            signing_cert.subject().as_raw()
        );
        // The Renewal service authenticates cards by their login certificate
        // only: a signing certificate is not one.
        let err = card_identity(&signing).unwrap_err();
        assert!(err.to_string().contains("client authentication"), "{err}");
    }

    #[test]
    fn bad_holder_fields_are_refused() {
        let ca = TestCa::new();
        let csr = check_csr(RSA2048).unwrap();
        let mut h = holder();
        h.user_id = "555_123".into();
        let err = issue_signing_certificate(
            &csr,
            &h,
            &CertSerial::from_random([3; 16]),
            validity(),
            &ca.issuer,
            &CardProfileOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CertsError::InvalidCardField {
                field: "user id",
                ..
            }
        ));
    }
}
