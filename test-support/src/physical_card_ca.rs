//! A test "physical-card CA" for derived enrolment: an EC P-256 CA (made with
//! rcgen) that certifies smartcard keys with a subject CN and serialNumber
//! (user ID), chosen certificate policies and validity, and signs CRLs. The
//! CA tests and the whole-system tests share it.

use lanyard_certs::rcgen::{
    self, BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate policy OID the tests' physical cards carry and the CA allows.
pub const PHYSICAL_POLICY: &str = "1.2.826.0.1.999.7.1";
/// A policy the CA does not allow.
pub const OTHER_POLICY: &str = "1.2.826.0.1.999.7.2";

/// What to put in a physical card's certificate.
#[derive(Debug, Clone)]
pub struct CardSpec {
    /// Subject CN (holder name).
    pub name: String,
    /// Subject serialNumber (user ID).
    pub user_id: String,
    /// Certificate policy OIDs, dotted.
    pub policies: Vec<String>,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// The certificate serial (positive, first byte below 0x80).
    pub serial: Vec<u8>,
}

impl CardSpec {
    /// A card valid for 30 days from yesterday with [`PHYSICAL_POLICY`].
    pub fn valid(name: &str, user_id: &str, serial: u8) -> CardSpec {
        let now = OffsetDateTime::now_utc();
        CardSpec {
            name: name.into(),
            user_id: user_id.into(),
            policies: vec![PHYSICAL_POLICY.into()],
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(30),
            serial: vec![0x11, serial],
        }
    }

    /// As [`CardSpec::valid`], but it expired yesterday (valid for 30 days before).
    pub fn expired(name: &str, user_id: &str, serial: u8) -> CardSpec {
        let now = OffsetDateTime::now_utc();
        CardSpec {
            not_before: now - Duration::days(31),
            not_after: now - Duration::days(1),
            ..CardSpec::valid(name, user_id, serial)
        }
    }
}

/// The test physical-card CA.
pub struct PhysicalCardCa {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
    pem: String,
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    encode_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// DER of an OBJECT IDENTIFIER's content for a dotted OID.
fn oid_content(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut bytes = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            bytes.push(((rest & 0x7f) as u8) | 0x80);
            rest >>= 7;
        }
        bytes.reverse();
        out.extend(bytes);
    }
    out
}

/// The certificatePolicies extension value for `policies`.
fn policies_extension(policies: &[String]) -> CustomExtension {
    let infos: Vec<u8> = policies
        .iter()
        .flat_map(|p| tlv(0x30, &tlv(0x06, &oid_content(p))))
        .collect();
    CustomExtension::from_oid_content(&[2, 5, 29, 32], tlv(0x30, &infos))
}

impl PhysicalCardCa {
    /// A new CA named `name`, valid from a year ago for ten years.
    pub fn new(name: &str) -> PhysicalCardCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Smartcard Authority");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(365);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x02]));
        let cert = params.self_signed(&key).unwrap();
        PhysicalCardCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        }
    }

    /// The CA certificate, PEM (what `lanyard-ca init --physical-card-ca` takes).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Certifies the public key `subject_key` per `spec`; DER.
    pub fn issue(&self, subject_key: &impl PublicKeyData, spec: &CardSpec) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &spec.name);
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), &spec.user_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial));
        params.use_authority_key_identifier_extension = true;
        if !spec.policies.is_empty() {
            params
                .custom_extensions
                .push(policies_extension(&spec.policies));
        }
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        params
            .signed_by(subject_key, &issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    /// Certifies the public key `spki_der` (a DER SubjectPublicKeyInfo, e.g.
    /// from `openssl pkey -pubout -outform DER`) per `spec`; DER.
    pub fn issue_for_spki(&self, spki_der: &[u8], spec: &CardSpec) -> Vec<u8> {
        let key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).unwrap();
        self.issue(&key, spec)
    }

    /// A CRL revoking `serials`, current for a day (or, `stale`, past its next update); DER.
    pub fn crl(&self, serials: &[&[u8]], stale: bool) -> Vec<u8> {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (this_update, next_update) = if stale {
            (now - Duration::days(3), now - Duration::days(1))
        } else {
            (now - Duration::hours(1), now + Duration::days(1))
        };
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }
}

/// `der` as PEM under `label` (e.g. "CERTIFICATE", "X509 CRL").
pub fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_oids_encode_as_expected() {
        let pem = to_pem("X509 CRL", &[0u8; 50]);
        assert!(pem.starts_with("-----BEGIN X509 CRL-----\nAAAA"));
        assert!(pem.ends_with("\n-----END X509 CRL-----\n"));
        assert_eq!(pem.lines().nth(1).map(str::len), Some(64));
        assert_eq!(oid_content("2.5.29.32"), vec![0x55, 0x1d, 0x20]);
        assert_eq!(
            oid_content("1.2.840.113549"),
            vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]
        );
    }
}
