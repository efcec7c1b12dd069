//! Issuing a card's certificates, the step enrolment, renewal and PIN reset
//! share: a permit from the issuance limit, fresh serials unused in the
//! database, the configured lifetime, and the issuing CA's signature (which
//! adds its CRL Distribution Point) on the authentication certificate and,
//! when requested, the document-signing one. Recording them is the caller's
//! transaction; signing may run ahead of it ([`Certifier::presign_card`]) so
//! signatures do not queue for the database's write lock.

use std::sync::Arc;

use lanyard_certs::{check_csr, CertSerial, CheckedCsr, KeyKind, Validity};
use time::OffsetDateTime;

use crate::config::CaConfig;
use crate::error::CaError;
use crate::issuance_limit::{IssuanceLimiter, IssuancePermit};
use crate::issuer::IssuingCa;
use crate::store::{CardRecord, CertPurpose, IssuedCert, LifecycleTx, PendingEnrolment};

/// Attempts at drawing an unused random serial before giving up.
const SERIAL_ATTEMPTS: usize = 8;

/// Where a new serial is checked against every serial ever issued (an open
/// write transaction, so the check and the insert cannot interleave).
pub trait SerialRegistry {
    /// Whether no certificate with `serial` was ever recorded.
    fn serial_is_free(
        &mut self,
        serial: &CertSerial,
    ) -> impl std::future::Future<Output = Result<bool, CaError>> + Send;
}

impl SerialRegistry for LifecycleTx {
    async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        LifecycleTx::serial_is_free(self, serial).await
    }
}

impl SerialRegistry for PendingEnrolment {
    async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        PendingEnrolment::serial_is_free(self, serial).await
    }
}

/// A registry for signing before the write transaction: every serial is
/// taken as free here and checked by [`Certifier::confirm_or_certify`] inside it.
struct CheckedLater;

impl SerialRegistry for CheckedLater {
    async fn serial_is_free(&mut self, _serial: &CertSerial) -> Result<bool, CaError> {
        Ok(true)
    }
}

/// Certificates signed for a card before the write transaction.
#[derive(Debug)]
pub struct Presigned {
    card: CardRecord,
    certs: CardCertificates,
}

/// A random serial `registry` has never seen, or `NoUniqueId` after
/// `SERIAL_ATTEMPTS` draws.
pub async fn unused_serial(registry: &mut impl SerialRegistry) -> Result<CertSerial, CaError> {
    for _ in 0..SERIAL_ATTEMPTS {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)?;
        let candidate = CertSerial::from_random(bytes);
        if registry.serial_is_free(&candidate).await? {
            return Ok(candidate);
        }
    }
    Err(CaError::NoUniqueId)
}

/// A certificate just signed, not yet recorded.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Its serial.
    pub serial: CertSerial,
    /// DER.
    pub der: Vec<u8>,
    /// Its validity (clamped to the issuing CA's).
    pub validity: Validity,
    /// The certified key's kind.
    pub key_kind: KeyKind,
    /// What it is for.
    pub purpose: CertPurpose,
}

impl NewCertificate {
    /// The form the store records.
    pub fn as_issued(&self) -> IssuedCert<'_> {
        IssuedCert {
            serial: self.serial,
            der: &self.der,
            key_kind: self.key_kind,
            validity: self.validity,
            purpose: self.purpose,
        }
    }
}

/// A card's checked certificate requests: the authentication key's, and the
/// document-signing key's when the device sent one.
#[derive(Debug)]
pub struct CardRequests {
    /// The authentication key's request.
    pub auth: CheckedCsr,
    /// The document-signing key's request, if any.
    pub signing: Option<CheckedCsr>,
}

impl CardRequests {
    /// Checks both requests; an empty `signing_csr_der` means none. The two
    /// must certify different keys.
    pub fn check(csr_der: &[u8], signing_csr_der: &[u8]) -> Result<Self, CaError> {
        let auth = check_csr(csr_der).map_err(CaError::BadCsr)?;
        let signing = if signing_csr_der.is_empty() {
            None
        } else {
            let signing = check_csr(signing_csr_der).map_err(CaError::BadCsr)?;
            if signing.spki_der() == auth.spki_der() {
                return Err(CaError::InvalidArgument(
                    "the document-signing request is for the same key as the authentication request; \
                     the card needs a second key for document signing"
                        .into(),
                ));
            }
            Some(signing)
        };
        Ok(CardRequests { auth, signing })
    }

    /// Every public key requested (SubjectPublicKeyInfo DER).
    pub fn spkis(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.auth.spki_der()).chain(self.signing.iter().map(|s| s.spki_der()))
    }
}

/// The certificates issued to a card together, not yet recorded.
#[derive(Debug, Clone)]
pub struct CardCertificates {
    /// The authentication certificate.
    pub auth: NewCertificate,
    /// The document-signing certificate, if requested.
    pub signing: Option<NewCertificate>,
}

impl CardCertificates {
    /// Their serials.
    pub fn serials(&self) -> Vec<CertSerial> {
        std::iter::once(self.auth.serial)
            .chain(self.signing.iter().map(|s| s.serial))
            .collect()
    }

    /// The forms the store records.
    pub fn as_issued(&self) -> Vec<IssuedCert<'_>> {
        std::iter::once(self.auth.as_issued())
            .chain(self.signing.iter().map(NewCertificate::as_issued))
            .collect()
    }

    /// The signing certificate's serial in hex, for audit records ("" if none).
    pub fn signing_serial_hex(&self) -> String {
        self.signing
            .as_ref()
            .map(|s| s.serial.to_hex())
            .unwrap_or_default()
    }
}

/// Issues card certificates for one CA process.
#[derive(Debug)]
pub struct Certifier {
    issuer: Arc<IssuingCa>,
    organisation: String,
    lifetime: time::Duration,
    limiter: IssuanceLimiter,
}

impl Certifier {
    /// A certifier with the configured organisation, lifetime and issuance
    /// limit, signing with `issuer` (and its CRL URL).
    pub fn new(issuer: Arc<IssuingCa>, config: &CaConfig) -> Self {
        Certifier {
            issuer,
            organisation: config.organisation.clone(),
            lifetime: config.cert_lifetime(),
            limiter: IssuanceLimiter::new(config.max_concurrent_issuance, config.retry_after_secs),
        }
    }

    /// A permit for one issuance, or `Overloaded` at once (see [`IssuanceLimiter`]).
    pub fn permit(&self, what: &'static str) -> Result<IssuancePermit, CaError> {
        self.limiter.try_acquire(what)
    }

    /// Signs a certificate for `card` on the key of `csr`, valid from `now`
    /// for the configured lifetime, with a serial `registry` has never seen.
    pub async fn certify(
        &self,
        registry: &mut impl SerialRegistry,
        csr: &CheckedCsr,
        card: &CardRecord,
        now: OffsetDateTime,
    ) -> Result<NewCertificate, CaError> {
        let holder = card.holder(&self.organisation);
        let validity = Validity::card(now, self.lifetime)?;
        let serial = unused_serial(registry).await?;
        let (der, validity) = self.issuer.issue(csr, &holder, &serial, validity)?;
        Ok(NewCertificate {
            serial,
            der,
            validity,
            key_kind: csr.key_kind(),
            purpose: CertPurpose::Authentication,
        })
    }

    /// Signs the card's certificates for `requests`: the authentication
    /// certificate as [`Certifier::certify`], and the document-signing one
    /// (same validity, its own unused serial) when requested.
    pub async fn certify_card(
        &self,
        registry: &mut impl SerialRegistry,
        requests: &CardRequests,
        card: &CardRecord,
        now: OffsetDateTime,
    ) -> Result<CardCertificates, CaError> {
        let auth = self.certify(registry, &requests.auth, card, now).await?;
        let Some(csr) = &requests.signing else {
            return Ok(CardCertificates {
                auth,
                signing: None,
            });
        };
        let holder = card.holder(&self.organisation);
        let validity = Validity::card(now, self.lifetime)?;
        // The first serial is not recorded yet: the registry cannot see it.
        let mut serial = unused_serial(registry).await?;
        for _ in 0..SERIAL_ATTEMPTS {
            if serial != auth.serial {
                break;
            }
            serial = unused_serial(registry).await?;
        }
        if serial == auth.serial {
            return Err(CaError::NoUniqueId);
        }
        let (der, validity) = self.issuer.issue_signing(csr, &holder, &serial, validity)?;
        let signing = NewCertificate {
            serial,
            der,
            validity,
            key_kind: csr.key_kind(),
            purpose: CertPurpose::Signing,
        };
        Ok(CardCertificates {
            auth,
            signing: Some(signing),
        })
    }

    /// Signs `card`'s certificates for `requests` before the write
    /// transaction, so that signatures run on every core at once instead of
    /// one after another under the database's write lock; the serials are
    /// checked in the transaction by [`Certifier::confirm_or_certify`].
    pub async fn presign_card(
        &self,
        requests: &CardRequests,
        card: &CardRecord,
        now: OffsetDateTime,
    ) -> Result<Presigned, CaError> {
        let certs = self
            .certify_card(&mut CheckedLater, requests, card, now)
            .await?;
        Ok(Presigned {
            card: card.clone(),
            certs,
        })
    }

    /// Inside the write transaction: the certificates of `presigned` when
    /// they were signed for this very `card` record and their serials are
    /// still unused, else new ones signed here as [`Certifier::certify_card`].
    pub async fn confirm_or_certify(
        &self,
        registry: &mut impl SerialRegistry,
        presigned: Option<Presigned>,
        requests: &CardRequests,
        card: &CardRecord,
        now: OffsetDateTime,
    ) -> Result<CardCertificates, CaError> {
        if let Some(p) = presigned.filter(|p| &p.card == card) {
            let mut unused = true;
            for serial in p.certs.serials() {
                unused = unused && registry.serial_is_free(&serial).await?;
            }
            if unused {
                lanyard_fault::hit("ca.issue.after_sign");
                return Ok(p.certs);
            }
        }
        let certs = self.certify_card(registry, requests, card, now).await?;
        lanyard_fault::hit("ca.issue.after_sign");
        Ok(certs)
    }

    /// The chain above a card certificate: issuing CA first, root last.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        self.issuer.chain_der()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use lanyard_certs::rcgen::{self, KeyPair};

    use super::*;
    use crate::test_issuer::test_issuer;

    /// Serials recorded so far, in memory.
    #[derive(Default)]
    struct Recorded(HashSet<CertSerial>);

    impl SerialRegistry for Recorded {
        async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
            Ok(!self.0.contains(serial))
        }
    }

    fn csr_der() -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        csr.der().to_vec()
    }

    fn card(name: &str) -> CardRecord {
        CardRecord {
            card_id: "0123456789AB".into(),
            holder_name: name.into(),
            user_id: "555123456789".into(),
            role: "R8000".into(),
        }
    }

    #[tokio::test]
    async fn presigned_certificates_are_used_only_for_the_same_card_and_unused_serials() {
        let certifier = Certifier::new(Arc::new(test_issuer()), &CaConfig::new("T"));
        let requests = CardRequests::check(&csr_der(), &csr_der()).unwrap();
        let now = OffsetDateTime::now_utc();
        let ada = card("Dr Ada Smith");

        // Same card, serials unused: exactly the certificates signed ahead.
        let pre = certifier.presign_card(&requests, &ada, now).await.unwrap();
        let ahead = pre.certs.auth.der.clone();
        let mut registry = Recorded::default();
        let got = certifier
            .confirm_or_certify(&mut registry, Some(pre), &requests, &ada, now)
            .await
            .unwrap();
        assert_eq!(got.auth.der, ahead);
        assert!(got.signing.is_some());

        // The card record changed meanwhile (e.g. renamed): signed again for the new one.
        let pre = certifier.presign_card(&requests, &ada, now).await.unwrap();
        let ahead = pre.certs.auth.der.clone();
        let renamed = card("Dr Ada Jones");
        let got = certifier
            .confirm_or_certify(&mut registry, Some(pre), &requests, &renamed, now)
            .await
            .unwrap();
        assert_ne!(got.auth.der, ahead);
        assert_eq!(
            lanyard_certs::card_identity(&got.auth.der)
                .unwrap()
                .card_id(),
            "0123456789AB"
        );

        // A serial recorded meanwhile: new serials, new signatures.
        let pre = certifier.presign_card(&requests, &ada, now).await.unwrap();
        let taken = pre.certs.signing.as_ref().unwrap().serial;
        registry.0.insert(taken);
        let got = certifier
            .confirm_or_certify(&mut registry, Some(pre), &requests, &ada, now)
            .await
            .unwrap();
        assert!(got.serials().iter().all(|s| *s != taken));

        // Nothing signed ahead: signed in the transaction.
        let got = certifier
            .confirm_or_certify(&mut registry, None, &requests, &ada, now)
            .await
            .unwrap();
        lanyard_certs::verify_issued_by(&got.auth.der, certifier.issuer.issuing_der()).unwrap();
    }
}
