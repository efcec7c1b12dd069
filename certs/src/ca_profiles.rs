//! Profiles of the CA's own certificates, made once by `lanyard-ca init`: a
//! self-signed root, an issuing CA below it (path length 0) and the gRPC
//! server's TLS certificate issued by the issuing CA.

use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{CertSerial, CertsError};

/// Root CA lifetime: about 10 years.
pub const ROOT_LIFETIME: Duration = Duration::days(3653);
/// Issuing CA lifetime: about 5 years.
pub const ISSUING_LIFETIME: Duration = Duration::days(1826);
/// Server TLS certificate lifetime: about 2 years.
pub const SERVER_LIFETIME: Duration = Duration::days(730);

/// Names the server certificate always carries.
pub const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A new P-384 key for a CA (ECDSA-SHA384 signatures).
pub fn generate_ca_key() -> Result<KeyPair, CertsError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?)
}

/// A new P-256 key for the server's TLS certificate.
pub fn generate_server_key() -> Result<KeyPair, CertsError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn name(organisation: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organisation);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn check_organisation(organisation: &str) -> Result<(), CertsError> {
    let trimmed = organisation.trim();
    if trimmed.is_empty() || trimmed != organisation || organisation.chars().count() > 64 {
        return Err(CertsError::InvalidCardField {
            field: "organisation",
            reason: "it must be 1 to 64 characters without leading or trailing spaces".into(),
        });
    }
    Ok(())
}

fn base(
    organisation: &str,
    common_name: &str,
    serial: &CertSerial,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertificateParams, CertsError> {
    check_organisation(organisation)?;
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut params = CertificateParams::default();
    params.distinguished_name = name(organisation, common_name);
    params.serial_number = Some(serial.to_rcgen());
    params.not_before = now - crate::CLOCK_SKEW_ALLOWANCE;
    params.not_after = now + lifetime;
    Ok(params)
}

/// The self-signed root: CA:true, keyCertSign + cRLSign, about 10 years.
pub fn root_ca_params(
    organisation: &str,
    serial: &CertSerial,
    now: OffsetDateTime,
) -> Result<CertificateParams, CertsError> {
    let cn = format!("{organisation} Lanyard Root CA");
    let mut params = base(organisation, &cn, serial, now, ROOT_LIFETIME)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// The issuing CA: CA:true with path length 0, keyCertSign + cRLSign, about 5 years.
pub fn issuing_ca_params(
    organisation: &str,
    serial: &CertSerial,
    now: OffsetDateTime,
) -> Result<CertificateParams, CertsError> {
    let cn = format!("{organisation} Lanyard Issuing CA");
    let mut params = base(organisation, &cn, serial, now, ISSUING_LIFETIME)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The gRPC server's certificate: serverAuth, digitalSignature, names
/// [`DEFAULT_SERVER_NAMES`] plus `extra_names` (IP addresses where they parse
/// as one, else DNS names).
pub fn server_params(
    organisation: &str,
    extra_names: &[String],
    serial: &CertSerial,
    now: OffsetDateTime,
) -> Result<CertificateParams, CertsError> {
    let mut params = base(
        organisation,
        "Lanyard CA server",
        serial,
        now,
        SERVER_LIFETIME,
    )?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let names = DEFAULT_SERVER_NAMES
        .iter()
        .map(|n| n.to_string())
        .chain(extra_names.iter().cloned());
    for n in names {
        let san = san_for(&n)?;
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

/// An IP SAN if `name` parses as an address, else a DNS SAN (checked).
pub fn san_for(name: &str) -> Result<SanType, CertsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || CertsError::InvalidSan {
        name: name.to_string(),
    };
    let valid_dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        });
    if !valid_dns {
        return Err(invalid());
    }
    Ok(SanType::DnsName(
        Ia5String::try_from(name).map_err(|_| invalid())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify_issued_by;
    use rcgen::Issuer;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    #[test]
    fn ca_hierarchy_and_server_certificate() {
        let now = OffsetDateTime::now_utc();
        let root_key = generate_ca_key().unwrap();
        let root_params =
            root_ca_params("Demo Trust", &CertSerial::from_random([7; 16]), now).unwrap();
        let root_cert = root_params.self_signed(&root_key).unwrap();
        let root = Issuer::new(root_params, root_key);
        let issuing_key = generate_ca_key().unwrap();
        let issuing_cert = issuing_ca_params("Demo Trust", &CertSerial::from_random([8; 16]), now)
            .unwrap()
            .signed_by(&issuing_key, &root)
            .unwrap();
        let issuing = Issuer::from_ca_cert_der(issuing_cert.der(), issuing_key).unwrap();
        let server_key = generate_server_key().unwrap();
        let server_cert = server_params(
            "Demo Trust",
            &["ca.example.nhs.uk".into(), "10.1.2.3".into()],
            &CertSerial::from_random([9; 16]),
            now,
        )
        .unwrap()
        .signed_by(&server_key, &issuing)
        .unwrap();

        verify_issued_by(root_cert.der(), root_cert.der()).unwrap();
        verify_issued_by(issuing_cert.der(), root_cert.der()).unwrap();
        verify_issued_by(server_cert.der(), issuing_cert.der()).unwrap();

        let (_, root) = X509Certificate::from_der(root_cert.der()).unwrap();
        assert!(root.is_ca());
        let ku = root.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());

        let (_, issuing) = X509Certificate::from_der(issuing_cert.der()).unwrap();
        let bc = issuing.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));

        let (_, server) = X509Certificate::from_der(server_cert.der()).unwrap();
        assert!(!server.is_ca());
        assert!(
            server
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        let san = server.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.iter().any(|n| n.contains("localhost")));
        assert!(names.iter().any(|n| n.contains("ca.example.nhs.uk")));
        assert!(san
            .general_names
            .iter()
            .any(|g| matches!(g, GeneralName::IPAddress(ip) if *ip == [10, 1, 2, 3])));
    }

    #[test]
    fn bad_san_is_refused() {
        assert!(matches!(
            san_for("not a name"),
            Err(CertsError::InvalidSan { .. })
        ));
        assert!(san_for("-bad.example").is_err());
        assert!(matches!(san_for("::1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(san_for("ca.local"), Ok(SanType::DnsName(_))));
    }
}
