//! The certificate profile of an IT-desk operator (a registration authority):
//! CN=name, O=organisation, OU=Registration Authority, with the id-kp-cmcRA
//! role next to clientAuth. The Admin service admits only certificates that
//! carry that role; card certificates never do.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SigningKey, SubjectPublicKeyInfo,
};
use x509_parser::prelude::X509Certificate;

use crate::card_profile::check_text;
use crate::crl_url::{distribution_points, CrlUrl};
use crate::{CertSerial, CertsError, CheckedCsr, Validity};

/// The OU of every operator certificate.
pub const OPERATOR_UNIT: &str = "Registration Authority";

/// id-kp-cmcRA (RFC 6402): the certificate's holder acts as a registration authority.
pub const OID_KP_CMC_RA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 28];

/// The dotted form of [`OID_KP_CMC_RA`], as x509-parser prints it.
const CMC_RA_DOTTED: &str = "1.3.6.1.5.5.7.3.28";

/// Who an operator certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorIdentity {
    /// The operator's name (the CN).
    pub name: String,
    /// The organisation (the O), if present.
    pub organisation: Option<String>,
    /// The certificate's serial number in lower-case hex.
    pub serial_hex: String,
}

/// The rcgen parameters of an operator certificate (without the public key).
pub fn operator_certificate_params(
    name: &str,
    organisation: &str,
    serial: &CertSerial,
    validity: Validity,
    crl_url: Option<&CrlUrl>,
) -> Result<CertificateParams, CertsError> {
    check_text("operator name", name)?;
    check_text("organisation", organisation)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organisation);
    dn.push(DnType::OrganizationalUnitName, OPERATOR_UNIT);
    dn.push(DnType::CommonName, name);

    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.serial_number = Some(serial.to_rcgen());
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::Other(OID_KP_CMC_RA.to_vec()),
    ];
    params.use_authority_key_identifier_extension = true;
    params.crl_distribution_points = distribution_points(crl_url);
    Ok(params)
}

/// Issues an operator certificate for the request's public key, signed by
/// `issuer`. Returns the DER certificate.
pub fn issue_operator_certificate(
    csr: &CheckedCsr,
    name: &str,
    organisation: &str,
    serial: &CertSerial,
    validity: Validity,
    issuer: &Issuer<'_, impl SigningKey>,
    crl_url: Option<&CrlUrl>,
) -> Result<Vec<u8>, CertsError> {
    let params = operator_certificate_params(name, organisation, serial, validity, crl_url)?;
    let public_key = SubjectPublicKeyInfo::from_der(csr.spki_der())?;
    Ok(params.signed_by(&public_key, issuer)?.der().to_vec())
}

/// Whether the certificate's extended key usage includes id-kp-cmcRA.
pub(crate) fn has_ra_role(cert: &X509Certificate<'_>) -> bool {
    match cert.extended_key_usage() {
        Ok(Some(eku)) => eku
            .value
            .other
            .iter()
            .any(|oid| oid.to_id_string() == CMC_RA_DOTTED),
        _ => false,
    }
}

/// The operator named by `cert_der`, or `None` unless it is a well-formed,
/// non-CA certificate whose extended key usage includes id-kp-cmcRA and whose
/// subject has a CN. The signature and chain are NOT checked here: callers
/// use it on a peer certificate the TLS layer has already verified.
pub fn operator_identity(cert_der: &[u8]) -> Option<OperatorIdentity> {
    let cert = crate::chain::parse_certificate(cert_der).ok()?;
    if cert.is_ca() || !has_ra_role(&cert) {
        return None;
    }
    let subject = cert.subject();
    let name =
        crate::card_identity::only_attr(subject, &x509_parser::oid_registry::OID_X509_COMMON_NAME)
            .ok()?;
    let organisation = crate::card_identity::only_attr(
        subject,
        &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
    )
    .ok();
    Some(OperatorIdentity {
        name,
        organisation,
        serial_hex: hex_lower(cert.raw_serial()),
    })
}

/// Lower-case hex of `bytes`, as serials are stored in the CA database.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::{holder, TestCa};
    use crate::{check_csr, issue_card_certificate, verify_issued_by, CardHolder};
    use time::{Duration, OffsetDateTime};
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::oid_registry::*;
    use x509_parser::prelude::FromDer;

    const P256: &[u8] = include_bytes!("../testdata/p256.csr.der");

    fn validity() -> Validity {
        Validity::card(OffsetDateTime::now_utc(), Duration::days(365)).unwrap()
    }

    #[test]
    fn operator_certificate_follows_the_profile() {
        let ca = TestCa::new();
        let csr = check_csr(P256).unwrap();
        let serial = CertSerial::from_random([0x42; 16]);
        let url = CrlUrl::parse("http://ca.example/issuing.crl").unwrap();
        let der = issue_operator_certificate(
            &csr,
            "Grace Hopper",
            "Test Trust",
            &serial,
            validity(),
            &ca.issuer,
            Some(&url),
        )
        .unwrap();
        verify_issued_by(&der, &ca.issuing_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let subject = cert.subject();
        let get = |oid: &Oid<'static>| {
            subject
                .iter_by_oid(oid)
                .map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(get(&OID_X509_COMMON_NAME), ["Grace Hopper"]);
        assert_eq!(get(&OID_X509_ORGANIZATION_NAME), ["Test Trust"]);
        assert_eq!(get(&OID_X509_ORGANIZATIONAL_UNIT), [OPERATOR_UNIT]);
        assert!(!cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth && !eku.any);
        let others: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
        assert_eq!(others, [CMC_RA_DOTTED]);
        let kinds: Vec<bool> = cert
            .extensions()
            .iter()
            .map(|e| {
                matches!(
                    e.parsed_extension(),
                    ParsedExtension::SubjectKeyIdentifier(_)
                        | ParsedExtension::AuthorityKeyIdentifier(_)
                        | ParsedExtension::CRLDistributionPoints(_)
                )
            })
            .filter(|k| *k)
            .collect();
        assert_eq!(kinds.len(), 3);
        assert_eq!(cert.public_key().raw, csr.spki_der());

        let id = operator_identity(&der).unwrap();
        assert_eq!(id.name, "Grace Hopper");
        assert_eq!(id.organisation.as_deref(), Some("Test Trust"));
        assert_eq!(id.serial_hex, serial.to_hex());
    }

    #[test]
    fn card_and_ca_certificates_are_not_operators() {
        let ca = TestCa::new();
        let csr = check_csr(P256).unwrap();
        // Even a card whose OU looks like the operators' is still a card.
        let holder = CardHolder {
            card_id: OPERATOR_UNIT.into(),
            ..holder()
        };
        let card = issue_card_certificate(
            &csr,
            &holder,
            &CertSerial::from_random([7; 16]),
            validity(),
            &ca.issuer,
        )
        .unwrap();
        assert_eq!(operator_identity(&card), None);
        assert_eq!(operator_identity(&ca.issuing_der), None);
        assert_eq!(operator_identity(&ca.root_der), None);
        assert_eq!(operator_identity(b"garbage"), None);
        assert_eq!(operator_identity(&[]), None);
    }

    #[test]
    fn bad_operator_names_are_refused() {
        let ca = TestCa::new();
        let csr = check_csr(P256).unwrap();
        for bad in ["", " Grace", "Grace\nHopper", &"x".repeat(65)] {
            let err = issue_operator_certificate(
                &csr,
                bad,
                "Test Trust",
                &CertSerial::from_random([8; 16]),
                validity(),
                &ca.issuer,
                None,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    CertsError::InvalidCardField {
                        field: "operator name",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }
}
