//! A renewal or enrolment retried after its answer was lost (the CA died
//! after committing it): the same keys the card's latest issuance certified
//! get the certificates issued then, never a second serial. Any other reuse
//! of a key stays refused.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certify::CardRequests;
use crate::store::CertRecord;

/// The certificates a card's latest issuance made for exactly the requested keys.
#[derive(Debug)]
pub(crate) struct EarlierIssuance {
    /// The authentication certificate.
    pub auth: CertRecord,
    /// The document-signing certificate, when the request has one.
    pub signing: Option<CertRecord>,
}

/// The card's current certificates (unrevoked, not superseded, unexpired at
/// `now`) when they certify exactly the keys of `requests` and none of them is
/// the `presented` client certificate (a card holding the answer asking for its
/// own key again is not a lost answer).
pub(crate) fn earlier_issuance(
    certs: &[CertRecord],
    requests: &CardRequests,
    presented: Option<&str>,
    now: i64,
) -> Option<EarlierIssuance> {
    let mut current = Vec::new();
    for cert in certs {
        if cert.revoked.is_none() && cert.superseded_at.is_none() && cert.not_after > now {
            let (_, parsed) = X509Certificate::from_der(&cert.der).ok()?;
            current.push((parsed.public_key().raw.to_vec(), cert));
        }
    }
    let wanted = 1 + usize::from(requests.signing.is_some());
    if current.len() != wanted
        || current
            .iter()
            .any(|(_, c)| Some(c.serial.as_str()) == presented)
    {
        return None;
    }
    let find = |spki: &[u8]| {
        current
            .iter()
            .find(|(key, _)| key.as_slice() == spki)
            .map(|(_, c)| (*c).clone())
    };
    let auth = find(requests.auth.spki_der())?;
    let signing = match &requests.signing {
        Some(s) => Some(find(s.spki_der())?),
        None => None,
    };
    Some(EarlierIssuance { auth, signing })
}
