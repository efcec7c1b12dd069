//! Client material made before the timed part, so key generation does not
//! eat the cores the CA is measured on: per card, the P-256 authentication
//! and document-signing keys with their CSRs for enrolment, and a second
//! pair for the renewal (each renewal re-keys), made as the daemon makes them.

use std::sync::Arc;

use anyhow::{Context, Result};
use lanyard_daemon::enroll::build_csr;
use lanyard_daemon::keys::{KeyType, SigningKey};

/// One key with its CSR (DER).
pub struct KeyAndCsr {
    /// The key (OpenSSL, in memory, as the daemon keeps it).
    pub key: Arc<SigningKey>,
    /// Its PKCS#10 request.
    pub csr: Vec<u8>,
}

impl KeyAndCsr {
    fn new() -> Result<Self> {
        let key = SigningKey::generate(KeyType::EcP256).context("generating a P-256 key")?;
        let csr = build_csr(&key).context("building a CSR")?;
        Ok(KeyAndCsr {
            key: Arc::new(key),
            csr,
        })
    }
}

/// The two keys a device sends at once: authentication and document signing.
pub struct CardRequest {
    /// The card (authentication) key.
    pub auth: KeyAndCsr,
    /// The document-signing key.
    pub signing: KeyAndCsr,
}

impl CardRequest {
    fn new() -> Result<Self> {
        Ok(CardRequest {
            auth: KeyAndCsr::new()?,
            signing: KeyAndCsr::new()?,
        })
    }
}

/// Everything one simulated device needs: its enrolment and renewal requests.
pub struct DeviceMaterial {
    /// Sent with Enroll.
    pub enrol: CardRequest,
    /// Sent with Renew (new keys).
    pub renew: CardRequest,
}

/// Material for `n` devices.
pub fn prepare(n: usize) -> Result<Vec<DeviceMaterial>> {
    (0..n)
        .map(|_| {
            Ok(DeviceMaterial {
                enrol: CardRequest::new()?,
                renew: CardRequest::new()?,
            })
        })
        .collect()
}
