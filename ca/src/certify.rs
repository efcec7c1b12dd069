//! Issuing one card certificate, the step enrolment, renewal and PIN reset
//! share: a permit from the issuance limit, a fresh serial unused in the
//! database, the configured lifetime, and the issuing CA's signature (which
//! adds its CRL Distribution Point). Recording it is the caller's transaction.

use std::sync::Arc;

use lanyard_certs::{CertSerial, CheckedCsr, KeyKind, Validity};
use time::OffsetDateTime;

use crate::config::CaConfig;
use crate::error::CaError;
use crate::issuance_limit::{IssuanceLimiter, IssuancePermit};
use crate::issuer::IssuingCa;
use crate::store::{CardRecord, IssuedCert, LifecycleTx, PendingEnrolment};

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
}

impl NewCertificate {
    /// The form the store records.
    pub fn as_issued(&self) -> IssuedCert<'_> {
        IssuedCert {
            serial: self.serial,
            der: &self.der,
            key_kind: self.key_kind,
            validity: self.validity,
        }
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
        })
    }

    /// The chain above a card certificate: issuing CA first, root last.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        self.issuer.chain_der()
    }
}
