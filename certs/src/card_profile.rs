//! The certificate profile of a Lanyard virtual card. The subject comes from
//! the card record the IT desk created, never from the request; only the
//! request's public key is used.

use rcgen::string::PrintableString;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SigningKey, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use crate::crl_url::{distribution_points, CrlUrl};
use crate::{CertSerial, CertsError, CheckedCsr};

/// How far before "now" a certificate's validity starts, for clients whose clocks run slow.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// Longest card certificate lifetime this profile accepts (about 2 years).
pub const MAX_CARD_LIFETIME_DAYS: i64 = 825;

/// Upper bound for name-like fields (X.520 ub-common-name and ub-title are 64).
const MAX_FIELD_CHARS: usize = 64;

/// OID 2.5.4.5, X.520 serialNumber: carries the holder's user id.
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
/// OID 2.5.4.12, X.520 title: carries the holder's role.
const OID_TITLE: &[u64] = &[2, 5, 4, 12];

/// Who a card belongs to, as recorded by the IT desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardHolder {
    /// The holder's name, e.g. "Dr Ada Smith" (becomes CN).
    pub holder_name: String,
    /// The holder's user id, e.g. "555123456789" (becomes serialNumber).
    pub user_id: String,
    /// The holder's role, e.g. "R8000 Clinical Practitioner" (becomes title).
    pub role: String,
    /// The card id (becomes OU).
    pub card_id: String,
    /// The issuing organisation (becomes O).
    pub organisation: String,
}

impl CardHolder {
    /// Checks that every field can go into a certificate subject, so the IT
    /// desk hears about a bad value when issuing, not at enrolment.
    pub fn check(&self) -> Result<(), CertsError> {
        check_text("holder name", &self.holder_name)?;
        check_text("role", &self.role)?;
        check_text("card id", &self.card_id)?;
        check_text("organisation", &self.organisation)?;
        check_text("user id", &self.user_id)?;
        PrintableString::try_from(self.user_id.as_str()).map_err(|_| {
            CertsError::InvalidCardField {
                field: "user id",
                reason: "only letters, digits, spaces and ' ( ) + , - . / : = ? are allowed".into(),
            }
        })?;
        Ok(())
    }

    /// The certificate subject: O, OU=card id, CN=name, serialNumber=user id, title=role.
    pub fn distinguished_name(&self) -> Result<DistinguishedName, CertsError> {
        self.check()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.organisation.as_str());
        dn.push(DnType::OrganizationalUnitName, self.card_id.as_str());
        dn.push(DnType::CommonName, self.holder_name.as_str());
        let user_id = PrintableString::try_from(self.user_id.as_str()).map_err(|_| {
            CertsError::InvalidCardField {
                field: "user id",
                reason: "not a printable string".into(),
            }
        })?;
        dn.push(
            DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
            DnValue::PrintableString(user_id),
        );
        dn.push(DnType::CustomDnType(OID_TITLE.to_vec()), self.role.as_str());
        Ok(dn)
    }
}

pub(crate) fn check_text(field: &'static str, value: &str) -> Result<(), CertsError> {
    let refuse = |reason: &str| {
        Err(CertsError::InvalidCardField {
            field,
            reason: reason.into(),
        })
    };
    if value.trim().is_empty() {
        return refuse("it is empty");
    }
    if value.trim() != value {
        return refuse("it starts or ends with white space");
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return refuse("it is longer than 64 characters");
    }
    if value.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    Ok(())
}

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// `lifetime` from `now`, starting [`CLOCK_SKEW_ALLOWANCE`] early (at
    /// most [`MAX_CARD_LIFETIME_DAYS`]; operator certificates use it too).
    pub fn card(now: OffsetDateTime, lifetime: Duration) -> Result<Self, CertsError> {
        if lifetime <= Duration::ZERO || lifetime > Duration::days(MAX_CARD_LIFETIME_DAYS) {
            return Err(CertsError::InvalidLifetime {
                max_days: MAX_CARD_LIFETIME_DAYS,
            });
        }
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Ok(Validity {
            not_before: now - CLOCK_SKEW_ALLOWANCE,
            not_after: now + lifetime,
        })
    }
}

/// Choices the CA makes for every card certificate, beyond the holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardProfileOptions {
    /// Where relying parties fetch the CRL (the CRL Distribution Points
    /// extension); `None` leaves the extension out.
    pub crl_url: Option<CrlUrl>,
}

/// The rcgen parameters of a card certificate (without the public key).
pub fn card_certificate_params(
    holder: &CardHolder,
    serial: &CertSerial,
    validity: Validity,
) -> Result<CertificateParams, CertsError> {
    card_certificate_params_with(holder, serial, validity, &CardProfileOptions::default())
}

/// As [`card_certificate_params`], with the CA's options.
pub fn card_certificate_params_with(
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
    // ExplicitNoCa makes rcgen write basicConstraints CA:false and the SKI.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // clientAuth only: never id-kp-cmcRA, which marks an IT-desk operator.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.crl_distribution_points = distribution_points(options.crl_url.as_ref());
    Ok(params)
}

/// Issues a card certificate for the request's public key, signed by `issuer`.
/// Returns the DER certificate.
pub fn issue_card_certificate(
    csr: &CheckedCsr,
    holder: &CardHolder,
    serial: &CertSerial,
    validity: Validity,
    issuer: &Issuer<'_, impl SigningKey>,
) -> Result<Vec<u8>, CertsError> {
    issue_card_certificate_with(
        csr,
        holder,
        serial,
        validity,
        issuer,
        &CardProfileOptions::default(),
    )
}

/// As [`issue_card_certificate`], with the CA's options (the CRL URL).
pub fn issue_card_certificate_with(
    csr: &CheckedCsr,
    holder: &CardHolder,
    serial: &CertSerial,
    validity: Validity,
    issuer: &Issuer<'_, impl SigningKey>,
    options: &CardProfileOptions,
) -> Result<Vec<u8>, CertsError> {
    let params = card_certificate_params_with(holder, serial, validity, options)?;
    sign_for_csr(params, csr, issuer)
}

/// Signs `params` for the public key of `csr` with `issuer`; the DER certificate.
pub(crate) fn sign_for_csr(
    params: CertificateParams,
    csr: &CheckedCsr,
    issuer: &Issuer<'_, impl SigningKey>,
) -> Result<Vec<u8>, CertsError> {
    let public_key = SubjectPublicKeyInfo::from_der(csr.spki_der())?;
    let cert = params.signed_by(&public_key, issuer)?;
    Ok(cert.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::{holder, TestCa};
    use crate::{check_csr, verify_issued_by};
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

    const RSA2048: &[u8] = include_bytes!("../testdata/rsa2048.csr.der");
    const P256: &[u8] = include_bytes!("../testdata/p256.csr.der");

    fn test_ca() -> TestCa {
        TestCa::new()
    }

    fn attr(name: &X509Name<'_>, oid: &x509_parser::oid_registry::Oid<'_>) -> String {
        name.iter_by_oid(oid)
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn issued_card_certificate_follows_the_profile() {
        let ca = test_ca();
        let csr = check_csr(RSA2048).unwrap();
        let now = OffsetDateTime::now_utc();
        let serial = CertSerial::from_random([0xab; 16]);
        let validity = Validity::card(now, Duration::days(30)).unwrap();
        let der = issue_card_certificate(&csr, &holder(), &serial, validity, &ca.issuer).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();

        // Subject from the card, nothing from the request ("Mallory Requested", "Evil").
        let subject = cert.subject();
        use x509_parser::oid_registry::*;
        assert_eq!(attr(subject, &OID_X509_COMMON_NAME), "Dr Ada Smith");
        assert_eq!(attr(subject, &OID_X509_SERIALNUMBER), "555123456789");
        assert_eq!(
            attr(subject, &OID_X509_TITLE),
            "R8000 Clinical Practitioner"
        );
        assert_eq!(attr(subject, &OID_X509_ORGANIZATIONAL_UNIT), "0A1B2C3D4E5F");
        assert_eq!(attr(subject, &OID_X509_ORGANIZATION_NAME), "Test Trust");
        assert!(!subject.to_string().contains("Mallory"));
        assert!(!subject.to_string().contains("Evil"));

        // The public key is the request's.
        assert_eq!(cert.public_key().raw, csr.spki_der());

        // Extensions.
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth);
        assert!(!eku.value.server_auth);
        let mut ski = false;
        let mut aki = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(_) => ski = true,
                ParsedExtension::AuthorityKeyIdentifier(_) => aki = true,
                _ => {}
            }
        }
        assert!(ski && aki);

        // Serial and lifetime.
        assert_eq!(cert.raw_serial(), serial.as_bytes());
        let nb = cert.validity().not_before.to_datetime();
        let na = cert.validity().not_after.to_datetime();
        assert!(nb <= now - Duration::minutes(4));
        assert!(nb >= now - Duration::minutes(6));
        let life = na - now;
        assert!(life > Duration::days(30) - Duration::minutes(1) && life <= Duration::days(30));

        // Chain: card <- issuing <- root <- root.
        verify_issued_by(&der, &ca.issuing_der).unwrap();
        verify_issued_by(&ca.issuing_der, &ca.root_der).unwrap();
        verify_issued_by(&ca.root_der, &ca.root_der).unwrap();
        assert!(matches!(
            verify_issued_by(&der, &ca.root_der),
            Err(CertsError::BadCertificateSignature)
        ));
    }

    #[test]
    fn ec_request_gets_ec_certificate_and_serials_differ() {
        let ca = test_ca();
        let csr = check_csr(P256).unwrap();
        let validity = Validity::card(OffsetDateTime::now_utc(), Duration::days(1)).unwrap();
        let a = issue_card_certificate(
            &csr,
            &holder(),
            &CertSerial::from_random([3; 16]),
            validity,
            &ca.issuer,
        )
        .unwrap();
        let b = issue_card_certificate(
            &csr,
            &holder(),
            &CertSerial::from_random([4; 16]),
            validity,
            &ca.issuer,
        )
        .unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&a).unwrap();
        let (_, cb_cert) = X509Certificate::from_der(&b).unwrap();
        assert_eq!(ca_cert.public_key().raw, csr.spki_der());
        assert_ne!(ca_cert.raw_serial(), cb_cert.raw_serial());
        verify_issued_by(&a, &ca.issuing_der).unwrap();
    }

    #[test]
    fn crl_url_goes_into_distribution_points_and_never_the_ra_role() {
        let ca = test_ca();
        let csr = check_csr(P256).unwrap();
        let validity = Validity::card(OffsetDateTime::now_utc(), Duration::days(1)).unwrap();
        let url = "http://127.0.0.1:8080/issuing.crl";
        let options = CardProfileOptions {
            crl_url: Some(CrlUrl::parse(url).unwrap()),
        };
        let with = issue_card_certificate_with(
            &csr,
            &holder(),
            &CertSerial::from_random([5; 16]),
            validity,
            &ca.issuer,
            &options,
        )
        .unwrap();
        let without = issue_card_certificate(
            &csr,
            &holder(),
            &CertSerial::from_random([6; 16]),
            validity,
            &ca.issuer,
        )
        .unwrap();
        let dp_uris = |der: &[u8]| -> Vec<String> {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            let mut uris = Vec::new();
            for ext in cert.extensions() {
                if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
                    for p in points.iter() {
                        if let Some(x509_parser::extensions::DistributionPointName::FullName(
                            names,
                        )) = &p.distribution_point
                        {
                            for n in names {
                                if let x509_parser::extensions::GeneralName::URI(u) = n {
                                    uris.push(u.to_string());
                                }
                            }
                        }
                    }
                }
            }
            uris
        };
        assert_eq!(dp_uris(&with), vec![url.to_string()]);
        assert!(dp_uris(&without).is_empty());
        verify_issued_by(&with, &ca.issuing_der).unwrap();

        for der in [&with, &without] {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth);
            assert!(eku.other.is_empty(), "{:?}", eku.other);
            assert!(!eku.any);
        }
    }

    #[test]
    fn bad_card_fields_are_refused() {
        let mut h = holder();
        h.user_id = "555_123".into();
        assert!(matches!(
            h.check(),
            Err(CertsError::InvalidCardField {
                field: "user id",
                ..
            })
        ));
        let mut h = holder();
        h.holder_name = "  ".into();
        assert!(h.check().is_err());
        let mut h = holder();
        h.role = "x".repeat(65);
        assert!(h.check().is_err());
        let mut h = holder();
        h.holder_name = "Ada\nSmith".into();
        assert!(h.check().is_err());
    }

    #[test]
    fn lifetime_bounds() {
        let now = OffsetDateTime::now_utc();
        assert!(Validity::card(now, Duration::ZERO).is_err());
        assert!(Validity::card(now, Duration::days(826)).is_err());
        assert!(Validity::card(now, Duration::days(30)).is_ok());
    }
}
