//! Checking the physical card of a derived enrolment: its certificate chains
//! (through the intermediates it sent) to a configured trust anchor, every
//! certificate on the path is within validity, the card's carries an
//! allowed certificate policy, and its identity is read from the subject.
//! Revocation is `crl_file.rs`; the proof signature is lanyard-certs'.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    Oid, OID_X509_COMMON_NAME, OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_GIVEN_NAME,
    OID_X509_SERIALNUMBER, OID_X509_SURNAME,
};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::error::CaError;

/// The LDAP `uid` attribute (0.9.2342.19200300.100.1.1), a user-ID fallback.
const OID_UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];

/// RFC 5280's anyPolicy: in `allowed_policies`, accept a certificate whatever
/// policies it carries, or none (e.g. cards of another Lanyard CA).
pub const ANY_POLICY: &str = "2.5.29.32.0";

/// Longest chain of intermediates accepted.
const MAX_INTERMEDIATES: usize = 4;

/// Which check refused a derived enrolment (named in the client's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeriveCheck {
    /// The certificate or chain could not be read.
    Malformed,
    /// It does not chain to a configured physical-card trust anchor.
    Untrusted,
    /// A certificate on the path is expired or not yet valid.
    Validity,
    /// The card's certificate is on the CRL, or no current CRL covers it.
    Revoked,
    /// No allowed certificate policy.
    Policy,
    /// The proof signature does not verify.
    Signature,
    /// The certificate names no usable user ID or name.
    Identity,
}

impl DeriveCheck {
    /// The check's name, as clients and the audit log see it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeriveCheck::Malformed => "malformed",
            DeriveCheck::Untrusted => "untrusted",
            DeriveCheck::Validity => "validity",
            DeriveCheck::Revoked => "revocation",
            DeriveCheck::Policy => "policy",
            DeriveCheck::Signature => "signature",
            DeriveCheck::Identity => "identity",
        }
    }
}

impl fmt::Display for DeriveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn refuse(check: DeriveCheck, reason: impl Into<String>) -> CaError {
    CaError::DeriveRefused {
        check,
        reason: reason.into(),
    }
}

/// A physical card whose certificate passed the chain, validity and policy checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalCard {
    /// The holder's name (subject CN, else givenName surname).
    pub holder_name: String,
    /// The holder's user ID (subject serialNumber, else UID).
    pub user_id: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The certificate's serial, lower-case hex.
    pub serial_hex: String,
    /// The subject's distinguished name.
    pub subject: String,
    /// The allowed policy OID it carries.
    pub policy: String,
    /// Its SubjectPublicKeyInfo, DER (checks the proof).
    pub spki_der: Vec<u8>,
    /// The issuer's SubjectPublicKeyInfo, DER (checks the CRL).
    pub issuer_spki_der: Vec<u8>,
    /// The issuer's name, DER (finds the CRL).
    pub issuer_name_der: Vec<u8>,
}

/// A configured trust anchor, DER.
#[derive(Debug, Clone)]
pub struct TrustAnchor(pub Vec<u8>);

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CaError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(refuse(
            DeriveCheck::Malformed,
            format!("the {what} has bytes after the certificate"),
        )),
        Err(e) => Err(refuse(
            DeriveCheck::Malformed,
            format!("the {what} is not a DER X.509 certificate ({e})"),
        )),
    }
}

fn within_validity(cert: &X509Certificate<'_>, what: &str, now: i64) -> Result<(), CaError> {
    let v = cert.validity();
    if now < v.not_before.timestamp() {
        return Err(refuse(
            DeriveCheck::Validity,
            format!("the {what} is not valid before {}", v.not_before),
        ));
    }
    if now > v.not_after.timestamp() {
        return Err(refuse(
            DeriveCheck::Validity,
            format!("the {what} expired on {}", v.not_after),
        ));
    }
    Ok(())
}

/// Whether `issuer` signed `cert` (names chain, signature verifies, issuer is a CA).
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer() == issuer.subject()
        && issuer.is_ca()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// The one text value of `oid` in `name`, if exactly one.
fn attr(name: &X509Name<'_>, oid: &Oid<'_>) -> Option<String> {
    let mut values = name.iter_by_oid(oid);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first
        .as_str()
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// User ID and name from the subject: serialNumber (where Lanyard's own
/// card profile puts the user ID), else UID; CN, else "givenName surname".
fn identity(subject: &X509Name<'_>) -> Result<(String, String), CaError> {
    let uid = Oid::from(OID_UID).map_err(|_| refuse(DeriveCheck::Identity, "internal OID"))?;
    let user_id = attr(subject, &OID_X509_SERIALNUMBER)
        .or_else(|| attr(subject, &uid))
        .ok_or_else(|| {
            refuse(
                DeriveCheck::Identity,
                "the physical card's certificate names no user ID (one subject serialNumber or UID)",
            )
        })?;
    let name = attr(subject, &OID_X509_COMMON_NAME)
        .or_else(|| {
            let given = attr(subject, &OID_X509_GIVEN_NAME)?;
            let surname = attr(subject, &OID_X509_SURNAME)?;
            Some(format!("{given} {surname}"))
        })
        .ok_or_else(|| {
            refuse(
                DeriveCheck::Identity,
                "the physical card's certificate names no holder (one subject CN, or givenName and surname)",
            )
        })?;
    Ok((user_id, name))
}

/// The first policy of `cert` that `allowed` lists.
fn allowed_policy(cert: &X509Certificate<'_>, allowed: &[String]) -> Result<String, CaError> {
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_CERTIFICATE_POLICIES)
        .map_err(|e| refuse(DeriveCheck::Malformed, format!("certificate policies: {e}")))?;
    let carried: Vec<String> = match ext.map(|e| e.parsed_extension()) {
        Some(ParsedExtension::CertificatePolicies(policies)) => policies
            .iter()
            .map(|p| p.policy_id.to_id_string())
            .collect(),
        _ => Vec::new(),
    };
    if allowed.iter().any(|a| a == ANY_POLICY) {
        return Ok(carried
            .first()
            .cloned()
            .unwrap_or_else(|| ANY_POLICY.to_string()));
    }
    carried
        .iter()
        .find(|p| allowed.contains(p))
        .cloned()
        .ok_or_else(|| {
            let shown = if carried.is_empty() {
                "none".to_string()
            } else {
                carried.join(", ")
            };
            refuse(
                DeriveCheck::Policy,
                format!(
                    "the physical card's certificate carries no certificate policy this CA accepts for derivation (it has: {shown})"
                ),
            )
        })
}

/// Checks the physical card's certificate `leaf_der` with the
/// intermediates `chain_der` (nearest first) against `anchors` at `now`,
/// and reads its identity. Revocation is checked separately.
pub fn check_physical_card(
    leaf_der: &[u8],
    chain_der: &[Vec<u8>],
    anchors: &[TrustAnchor],
    allowed_policies: &[String],
    now: OffsetDateTime,
) -> Result<PhysicalCard, CaError> {
    if chain_der.len() > MAX_INTERMEDIATES {
        return Err(refuse(
            DeriveCheck::Malformed,
            format!("more than {MAX_INTERMEDIATES} intermediate certificates"),
        ));
    }
    let now = now.unix_timestamp();
    let leaf = parse(leaf_der, "physical card's certificate")?;
    if leaf.is_ca() {
        return Err(refuse(
            DeriveCheck::Untrusted,
            "the physical card's certificate is a CA certificate",
        ));
    }
    let anchors: Vec<X509Certificate<'_>> = anchors
        .iter()
        .map(|a| parse(&a.0, "configured trust anchor"))
        .collect::<Result<_, _>>()?;
    let intermediates: Vec<X509Certificate<'_>> = chain_der
        .iter()
        .map(|d| parse(d, "intermediate certificate"))
        // A client may send the anchor itself too: it adds nothing.
        .filter(|c| {
            c.as_ref()
                .map(|c| !anchors.iter().any(|a| a.as_ref() == c.as_ref()))
                .unwrap_or(true)
        })
        .collect::<Result<_, _>>()?;

    // Walk leaf → intermediates (in order) → an anchor.
    let mut current = &leaf;
    let mut issuer_of_leaf: Option<&X509Certificate<'_>> = None;
    for (i, next) in intermediates.iter().enumerate() {
        if !signed_by(current, next) {
            return Err(refuse(
                DeriveCheck::Untrusted,
                format!(
                    "intermediate certificate {} ({}) did not sign the certificate below it",
                    i + 1,
                    next.subject()
                ),
            ));
        }
        within_validity(next, "intermediate certificate", now)?;
        issuer_of_leaf.get_or_insert(next);
        current = next;
    }
    let anchor = anchors
        .iter()
        .find(|a| signed_by(current, a))
        .ok_or_else(|| {
            refuse(
                DeriveCheck::Untrusted,
                format!(
                    "the physical card's certificate (issuer {}) does not chain to a physical-card CA this CA trusts",
                    leaf.issuer()
                ),
            )
        })?;
    within_validity(anchor, "physical-card CA", now)?;
    within_validity(&leaf, "physical card's certificate", now)?;
    let policy = allowed_policy(&leaf, allowed_policies)?;
    let (user_id, holder_name) = identity(leaf.subject())?;
    let issuer = issuer_of_leaf.unwrap_or(anchor);
    Ok(PhysicalCard {
        holder_name,
        user_id,
        issuer: leaf.issuer().to_string(),
        serial_hex: hex::encode(leaf.raw_serial()),
        subject: leaf.subject().to_string(),
        policy,
        spki_der: leaf.public_key().raw.to_vec(),
        issuer_spki_der: issuer.public_key().raw.to_vec(),
        issuer_name_der: issuer.subject().as_raw().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_certs::rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    use lanyard_test_support::physical_card_ca::{CardSpec, PhysicalCardCa, PHYSICAL_POLICY};

    #[test]
    fn any_policy_accepts_a_certificate_without_policies() {
        let ca = PhysicalCardCa::new("Test Smartcard CA");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut spec = CardSpec::valid("Dr Ada Smith", "555123456789", 1);
        spec.policies.clear();
        let der = ca.issue(&key, &spec);
        let anchors = [TrustAnchor(ca.der().to_vec())];
        let now = OffsetDateTime::now_utc();
        let err =
            check_physical_card(&der, &[], &anchors, &[PHYSICAL_POLICY.into()], now).unwrap_err();
        assert!(err.to_string().contains("policy check"), "{err}");
        let card = check_physical_card(&der, &[], &anchors, &[ANY_POLICY.into()], now).unwrap();
        assert_eq!(card.policy, ANY_POLICY);
        assert_eq!(card.user_id, "555123456789");
        assert_eq!(card.holder_name, "Dr Ada Smith");
        assert_eq!(card.serial_hex, "1101");
    }
}
