//! Reads a card certificate back: the holder fields exactly where the card
//! profile writes them, so the CA's Renewal service can compare the card a
//! client authenticated with to the card it asks to renew. Operator and CA
//! certificates are refused.

use time::OffsetDateTime;
use x509_parser::oid_registry::{
    Oid, OID_X509_COMMON_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME,
    OID_X509_SERIALNUMBER, OID_X509_TITLE,
};
use x509_parser::prelude::X509Name;

use crate::operator_profile::{has_ra_role, hex_lower};
use crate::{CardHolder, CertsError};

/// What a card certificate says about its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// The holder fields, card id included (OU).
    pub holder: CardHolder,
    /// The certificate's serial number in lower-case hex.
    pub serial_hex: String,
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl CardIdentity {
    /// The card id (the subject's OU).
    pub fn card_id(&self) -> &str {
        &self.holder.card_id
    }
}

/// The one value of attribute `oid` in `name`; missing, repeated or
/// non-string values are refused with the reason.
pub(crate) fn only_attr(name: &X509Name<'_>, oid: &Oid<'_>) -> Result<String, String> {
    let mut values = name.iter_by_oid(oid);
    let first = values.next().ok_or("it is missing")?;
    if values.next().is_some() {
        return Err("it appears more than once".into());
    }
    first
        .as_str()
        .map(str::to_string)
        .map_err(|_| "it is not a text value".into())
}

/// Reads the card identity from a DER card certificate. The signature and
/// chain are NOT checked here: callers use it on a certificate the TLS layer
/// or the CA's own records have already vouched for.
pub fn card_identity(cert_der: &[u8]) -> Result<CardIdentity, CertsError> {
    let cert = crate::chain::parse_certificate(cert_der)?;
    let refuse = |reason: String| CertsError::WrongCertificateKind {
        expected: "card",
        reason,
    };
    if cert.is_ca() {
        return Err(refuse("it is a CA certificate".into()));
    }
    if has_ra_role(&cert) {
        return Err(refuse(
            "it is an IT-desk operator certificate (registration authority role)".into(),
        ));
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => {}
        _ => return Err(refuse("it is not for client authentication".into())),
    }
    let subject = cert.subject();
    let field = |label: &'static str, oid: &Oid<'_>| {
        only_attr(subject, oid).map_err(|why| refuse(format!("its {label} (subject {why})")))
    };
    let holder = CardHolder {
        holder_name: field("holder name", &OID_X509_COMMON_NAME)?,
        user_id: field("user id", &OID_X509_SERIALNUMBER)?,
        role: field("role", &OID_X509_TITLE)?,
        card_id: field("card id", &OID_X509_ORGANIZATIONAL_UNIT)?,
        organisation: field("organisation", &OID_X509_ORGANIZATION_NAME)?,
    };
    Ok(CardIdentity {
        holder,
        serial_hex: hex_lower(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::{holder, TestCa};
    use crate::{
        check_csr, issue_card_certificate, issue_operator_certificate, CertSerial, Validity,
    };
    use time::Duration;

    const RSA2048: &[u8] = include_bytes!("../testdata/rsa2048.csr.der");

    #[test]
    fn reads_back_what_the_card_profile_wrote() {
        let ca = TestCa::new();
        let csr = check_csr(RSA2048).unwrap();
        let serial = CertSerial::from_random([0x3c; 16]);
        let validity = Validity::card(OffsetDateTime::now_utc(), Duration::days(30)).unwrap();
        let der = issue_card_certificate(&csr, &holder(), &serial, validity, &ca.issuer).unwrap();
        let id = card_identity(&der).unwrap();
        assert_eq!(id.holder, holder());
        assert_eq!(id.card_id(), "0A1B2C3D4E5F");
        assert_eq!(id.serial_hex, serial.to_hex());
        assert_eq!(id.not_before, validity.not_before);
        assert_eq!(id.not_after, validity.not_after);
    }

    #[test]
    fn operator_ca_and_malformed_certificates_are_refused() {
        let ca = TestCa::new();
        let csr = check_csr(RSA2048).unwrap();
        let validity = Validity::card(OffsetDateTime::now_utc(), Duration::days(30)).unwrap();
        let operator = issue_operator_certificate(
            &csr,
            "Grace Hopper",
            "Test Trust",
            &CertSerial::from_random([9; 16]),
            validity,
            &ca.issuer,
            None,
        )
        .unwrap();
        let err = card_identity(&operator).unwrap_err();
        assert!(
            matches!(
                err,
                CertsError::WrongCertificateKind {
                    expected: "card",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("operator"), "{err}");

        let err = card_identity(&ca.issuing_der).unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");

        assert!(matches!(
            card_identity(b"not DER"),
            Err(CertsError::CertificateMalformed(_))
        ));
        let mut trailing = operator.clone();
        trailing.push(0);
        assert!(matches!(
            card_identity(&trailing),
            Err(CertsError::CertificateMalformed(_))
        ));
    }

    #[test]
    fn a_client_certificate_without_card_fields_is_refused() {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let ca = TestCa::new();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Someone");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let der = params.signed_by(&key, &ca.issuer).unwrap().der().to_vec();
        let err = card_identity(&der).unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
