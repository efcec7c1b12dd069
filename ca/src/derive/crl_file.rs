//! Revocation of physical cards from the configured CRL file (DER, or PEM
//! with one or more `X509 CRL` blocks), read on every derived enrolment so a
//! replaced file counts at once. Fails closed: a certificate whose issuer
//! has no CRL in the file, or only one past its nextUpdate, is refused.

use std::path::Path;

use time::OffsetDateTime;
use x509_parser::pem::Pem;
use x509_parser::prelude::{CertificateRevocationList, FromDer, SubjectPublicKeyInfo};

use super::physical_card::{DeriveCheck, PhysicalCard};
use crate::error::CaError;

fn refuse(reason: String) -> CaError {
    CaError::DeriveRefused {
        check: DeriveCheck::Revoked,
        reason,
    }
}

/// The DER CRLs in `bytes` (a DER CRL, or PEM blocks).
fn crl_ders(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return vec![bytes.to_vec()];
    }
    Pem::iter_from_buffer(bytes)
        .filter_map(Result::ok)
        .filter(|p| p.label == "X509 CRL")
        .map(|p| p.contents)
        .collect()
}

/// Refuses `card` when the CRL file at `path` lists it or has no current
/// CRL of its issuer.
pub fn check_not_revoked(
    path: &Path,
    card: &PhysicalCard,
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let bytes = std::fs::read(path).map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read the physical-card CRL file");
        refuse("the CA cannot read its physical-card CRL file; the IT desk must fix it".into())
    })?;
    let (_, issuer_key) = SubjectPublicKeyInfo::from_der(&card.issuer_spki_der)
        .map_err(|_| refuse("the issuer's public key cannot be read".into()))?;
    let now = now.unix_timestamp();
    let mut stale = false;
    for der in crl_ders(&bytes) {
        let Ok((_, crl)) = CertificateRevocationList::from_der(&der) else {
            continue;
        };
        if crl.issuer().as_raw() != card.issuer_name_der.as_slice()
            || crl.verify_signature(&issuer_key).is_err()
        {
            continue;
        }
        if crl.next_update().is_some_and(|next| next.timestamp() < now) {
            stale = true;
            continue;
        }
        let listed = crl
            .iter_revoked_certificates()
            .any(|r| hex::encode(r.raw_serial()) == card.serial_hex);
        if listed {
            return Err(refuse(format!(
                "the physical card's certificate (serial {}) is revoked by its issuer",
                card.serial_hex
            )));
        }
        return Ok(());
    }
    Err(refuse(if stale {
        format!(
            "the CA's CRL of {} is out of date (past its next update); the IT desk must refresh the CRL file",
            card.issuer
        )
    } else {
        format!(
            "the CA's CRL file holds no CRL signed by {}, so revocation cannot be checked",
            card.issuer
        )
    }))
}
