//! Certificate revocation lists: a DER X.509 v2 CRL (RFC 5280 §5) signed by
//! the issuing CA, with the CRL number the caller takes from its database
//! sequence, the authority key identifier of the issuing certificate, and one
//! entry per revoked certificate with its RFC 5280 reason code.

use std::fmt;

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber,
    SigningKey,
};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use crate::{CertSerial, CertsError};

/// Why a certificate was revoked: the CRLReason codes of RFC 5280 §5.3.1
/// (7 is not used by the RFC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RevocationReason {
    /// No reason given.
    Unspecified = 0,
    /// The certificate's key (the card's key) is or may be known to someone else.
    KeyCompromise = 1,
    /// The CA's key is or may be compromised.
    CaCompromise = 2,
    /// The holder's name or affiliation changed.
    AffiliationChanged = 3,
    /// A new certificate replaced this one (re-key, PIN reset).
    Superseded = 4,
    /// The certificate is no longer needed (e.g. the holder left).
    CessationOfOperation = 5,
    /// Suspended: the certificate is on hold and may be resumed.
    CertificateHold = 6,
    /// Only in delta CRLs: the certificate is off hold.
    RemoveFromCrl = 8,
    /// The holder's privileges were withdrawn.
    PrivilegeWithdrawn = 9,
    /// An attribute authority was compromised.
    AaCompromise = 10,
}

impl RevocationReason {
    /// Every reason, in code order.
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The names [`RevocationReason::name`] gives, in code order.
    pub const NAMES: [&'static str; 10] = [
        "unspecified",
        "key-compromise",
        "ca-compromise",
        "affiliation-changed",
        "superseded",
        "cessation-of-operation",
        "certificate-hold",
        "remove-from-crl",
        "privilege-withdrawn",
        "aa-compromise",
    ];

    /// The RFC 5280 code (0 to 10, never 7).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason with RFC 5280 code `code`.
    pub fn from_code(code: u32) -> Result<Self, CertsError> {
        Self::ALL
            .into_iter()
            .find(|r| u32::from(r.code()) == code)
            .ok_or(CertsError::UnknownRevocationReason {
                given: code.to_string(),
            })
    }

    /// The name used on the command line and in JSON, e.g. "key-compromise".
    pub fn name(self) -> &'static str {
        let index = Self::ALL.iter().position(|r| *r == self).unwrap_or(0);
        Self::NAMES[index]
    }

    /// Parses a name ("key-compromise", also RFC 5280's "keyCompromise" or
    /// "key_compromise", any case) or a code ("1").
    pub fn parse(text: &str) -> Result<Self, CertsError> {
        let text = text.trim();
        if let Ok(code) = text.parse::<u32>() {
            return Self::from_code(code);
        }
        let wanted: String = text
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        Self::ALL
            .into_iter()
            .find(|r| r.name().replace('-', "") == wanted)
            .ok_or(CertsError::UnknownRevocationReason {
                given: text.chars().take(64).collect(),
            })
    }

    /// rcgen's value for this reason.
    pub fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::RemoveFromCrl => R::RemoveFromCrl,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => R::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = CertsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevocationReason::parse(s)
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The revoked certificate's serial number.
    pub serial: CertSerial,
    /// When the CA processed the revocation.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// What a CRL says: its number, its period and the revoked certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlContents {
    /// The CRL number, from the CA database's sequence (strictly increasing).
    pub number: u64,
    /// When this CRL was issued.
    pub this_update: OffsetDateTime,
    /// When the next CRL will be issued at the latest.
    pub next_update: OffsetDateTime,
    /// Every certificate revoked (or on hold) and not yet expired.
    pub revoked: Vec<RevokedCert>,
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The subject key identifier of the issuing certificate, which the CRL's
/// authority key identifier must repeat so relying parties find the key.
fn subject_key_id(issuer_der: &[u8]) -> Result<Vec<u8>, CertsError> {
    let cert = crate::chain::parse_certificate(issuer_der)?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| {
            CertsError::CertificateMalformed(
                "the issuing certificate has no subject key identifier".into(),
            )
        })
}

/// Builds and signs a CRL with `issuer`, whose certificate is `issuer_der`.
/// Returns the DER CRL.
pub fn build_crl(
    contents: &CrlContents,
    issuer_der: &[u8],
    issuer: &Issuer<'_, impl SigningKey>,
) -> Result<Vec<u8>, CertsError> {
    let this_update = whole_seconds(contents.this_update);
    let next_update = whole_seconds(contents.next_update);
    if next_update <= this_update {
        return Err(CertsError::InvalidCrlPeriod);
    }
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(contents.number),
        issuing_distribution_point: None,
        revoked_certs: contents
            .revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: r.serial.to_rcgen(),
                revocation_time: whole_seconds(r.revoked_at),
                reason_code: Some(r.reason.to_rcgen()),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(subject_key_id(issuer_der)?),
    };
    Ok(params.signed_by(issuer)?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ca::TestCa;
    use time::Duration;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;

    #[test]
    fn reasons_have_the_rfc_codes_and_names() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(u32::from(r.code())).unwrap(), r);
            assert_eq!(RevocationReason::parse(r.name()).unwrap(), r);
            assert_eq!(r.to_rcgen() as u8, r.code());
        }
        assert_eq!(
            RevocationReason::parse("keyCompromise").unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            RevocationReason::parse("CESSATION_OF_OPERATION").unwrap(),
            RevocationReason::CessationOfOperation
        );
        assert_eq!(
            RevocationReason::parse("4").unwrap(),
            RevocationReason::Superseded
        );
        for bad in ["7", "11", "", "stolen", "-1"] {
            let err = RevocationReason::parse(bad).unwrap_err();
            assert!(
                matches!(err, CertsError::UnknownRevocationReason { .. }),
                "{bad}"
            );
            assert!(err.to_string().contains("key-compromise"), "{err}");
        }
    }

    #[test]
    fn crl_is_signed_by_the_issuer_and_lists_every_entry() {
        let ca = TestCa::new();
        let now = OffsetDateTime::now_utc();
        let a = CertSerial::from_random([0x11; 16]);
        let b = CertSerial::from_random([0x22; 16]);
        let contents = CrlContents {
            number: 42,
            this_update: now,
            next_update: now + Duration::hours(1),
            revoked: vec![
                RevokedCert {
                    serial: a,
                    revoked_at: now - Duration::minutes(3),
                    reason: RevocationReason::KeyCompromise,
                },
                RevokedCert {
                    serial: b,
                    revoked_at: now - Duration::minutes(1),
                    reason: RevocationReason::CertificateHold,
                },
            ],
        };
        let der = build_crl(&contents, &ca.issuing_der, &ca.issuer).unwrap();
        let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let (_, issuing) = X509Certificate::from_der(&ca.issuing_der).unwrap();
        let (_, root) = X509Certificate::from_der(&ca.root_der).unwrap();

        crl.verify_signature(issuing.public_key()).unwrap();
        assert!(crl.verify_signature(root.public_key()).is_err());
        assert_eq!(crl.issuer(), issuing.subject());
        assert_eq!(crl.crl_number().unwrap().to_string(), "42");
        assert_eq!(
            crl.last_update().timestamp(),
            whole_seconds(now).unix_timestamp()
        );
        assert_eq!(
            crl.next_update().unwrap().timestamp(),
            whole_seconds(now + Duration::hours(1)).unix_timestamp()
        );

        let entries: Vec<_> = crl.iter_revoked_certificates().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].raw_serial(), a.as_bytes());
        assert_eq!(entries[1].raw_serial(), b.as_bytes());
        assert_eq!(entries[0].reason_code().unwrap().1 .0, 1);
        assert_eq!(entries[1].reason_code().unwrap().1 .0, 6);
        assert_eq!(
            entries[0].revocation_date.timestamp(),
            whole_seconds(now - Duration::minutes(3)).unix_timestamp()
        );

        // The AKI repeats the issuing certificate's SKI.
        let ski = subject_key_id(&ca.issuing_der).unwrap();
        let aki = crl
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski.as_slice());
    }

    #[test]
    fn empty_crl_and_large_numbers() {
        let ca = TestCa::new();
        let now = OffsetDateTime::now_utc();
        let contents = CrlContents {
            number: u64::MAX,
            this_update: now,
            next_update: now + Duration::minutes(10),
            revoked: Vec::new(),
        };
        let der = build_crl(&contents, &ca.issuing_der, &ca.issuer).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert_eq!(crl.crl_number().unwrap().to_string(), u64::MAX.to_string());
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
    }

    #[test]
    fn bad_period_and_bad_issuer_are_refused() {
        let ca = TestCa::new();
        let now = OffsetDateTime::now_utc();
        let contents = CrlContents {
            number: 1,
            this_update: now,
            next_update: now,
            revoked: Vec::new(),
        };
        assert!(matches!(
            build_crl(&contents, &ca.issuing_der, &ca.issuer),
            Err(CertsError::InvalidCrlPeriod)
        ));
        let contents = CrlContents {
            next_update: now + Duration::hours(1),
            ..contents
        };
        assert!(matches!(
            build_crl(&contents, b"not a certificate", &ca.issuer),
            Err(CertsError::CertificateMalformed(_))
        ));
    }
}
