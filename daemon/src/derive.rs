//! Derived enrolment on the daemon's side, in two steps because the proof is
//! signed by the physical card in the CLI process: `begin` makes the new
//! card's keys and CSRs (as code enrolment does) and gets a challenge from
//! the CA; `finish` sends the proof and stores the card. Pending enrolments
//! live in memory only, each until its challenge expires, and are used once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lanyard_certs::{proof_digest, proof_message};
use lanyard_proto::agent::CardInfo;
use lanyard_proto::ca::EnrollDerivedRequest;

use crate::ca_client;
use crate::enroll::{check_enrolment_input, check_room, new_card_keys, store_issued, CardKeys};
use crate::error::{Error, Result};
use crate::keys::KeyType;
use crate::pin::Pin;
use crate::state::Daemon;

/// Pending enrolments kept at once; the oldest goes when a new one needs room.
const MAX_PENDING: usize = 8;
/// Longest a pending enrolment is kept, whatever the CA says.
const MAX_PENDING_LIFETIME: Duration = Duration::from_secs(3600);

/// One derived enrolment between `begin` and `finish`.
struct Pending {
    keys: CardKeys,
    csr: Vec<u8>,
    signing_csr: Vec<u8>,
    challenge: Vec<u8>,
    ca_url: String,
    ca_cert_pem: Vec<u8>,
    created: Instant,
    expires: Instant,
}

/// The daemon's pending derived enrolments, by id.
#[derive(Default)]
pub struct PendingDerivations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl PendingDerivations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `pending` under a new random id, dropping expired ones (and the
    /// oldest when full).
    fn insert(&self, pending: Pending) -> Result<String> {
        let id = hex::encode(crate::card_crypto::random_bytes::<16>()?);
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, p| p.expires > now);
        if map.len() >= MAX_PENDING {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), pending);
        Ok(id)
    }

    /// Takes the pending enrolment `id` out (it cannot be used twice).
    fn take(&self, id: &str) -> Result<Pending> {
        let pending = self.lock().remove(id).ok_or_else(|| {
            Error::EnrollFailed(
                "no such derived enrolment in progress (finished, expired or lanyardd restarted); run lanyard enroll --derive-from again".into(),
            )
        })?;
        if pending.expires <= Instant::now() {
            return Err(Error::EnrollFailed(
                "the derived enrolment's challenge expired before the physical card signed it; run lanyard enroll --derive-from again".into(),
            ));
        }
        Ok(pending)
    }
}

/// What `begin` returns to the CLI.
pub struct Begun {
    /// Names the pending enrolment in `finish`.
    pub pending_id: String,
    /// challenge || SHA-256(csr) || SHA-256(signing csr).
    pub proof_message: Vec<u8>,
    /// SHA-256 of the proof message.
    pub proof_digest: [u8; 32],
    /// Seconds until the challenge expires.
    pub expires_in_secs: u32,
}

/// Makes the new card's keys and CSRs and gets a challenge from the CA.
pub async fn begin(
    daemon: &Daemon,
    ca_url: String,
    ca_cert_pem: Vec<u8>,
    key_type: KeyType,
) -> Result<Begun> {
    ca_client::parse_ca_url(&ca_url)?;
    ca_client::check_pem(&ca_cert_pem)?;
    check_room(daemon)?;
    tracing::info!(ca = %ca_url, key = key_type.as_str(), "derived enrolment started");
    let (keys, csrs) = new_card_keys(key_type).await?;
    let challenge = ca_client::derive_challenge(&ca_url, &ca_cert_pem).await?;
    if challenge.challenge.len() != 32 {
        return Err(Error::EnrollFailed(format!(
            "the CA sent a challenge of {} bytes instead of 32",
            challenge.challenge.len()
        )));
    }
    let message = proof_message(&challenge.challenge, &csrs.csr, &csrs.signing_csr);
    let lifetime = Duration::from_secs(challenge.expires_in_secs.into()).min(MAX_PENDING_LIFETIME);
    let now = Instant::now();
    let pending_id = daemon.derivations.insert(Pending {
        keys,
        csr: csrs.csr,
        signing_csr: csrs.signing_csr,
        challenge: challenge.challenge,
        ca_url,
        ca_cert_pem,
        created: now,
        expires: now + lifetime,
    })?;
    Ok(Begun {
        pending_id,
        proof_digest: proof_digest(&message),
        proof_message: message,
        expires_in_secs: challenge.expires_in_secs,
    })
}

/// The physical card's answer to a challenge.
pub struct Proof {
    /// The physical card's certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Intermediates above it, DER, nearest first.
    pub chain_der: Vec<Vec<u8>>,
    /// Its signature over the proof message.
    pub signature: Vec<u8>,
}

/// Sends the proof to the CA and stores the issued card under `pin`. A
/// PIN of the wrong format is refused before the pending enrolment is used.
pub async fn finish(daemon: &Daemon, pending_id: &str, proof: Proof, pin: Pin) -> Result<CardInfo> {
    daemon.policy().check_format(&pin)?;
    if proof.certificate_der.is_empty() || proof.signature.is_empty() {
        return Err(Error::BadRequest(
            "a derived enrolment needs the physical card's certificate and signature".into(),
        ));
    }
    let pending = daemon.derivations.take(pending_id)?;
    let ca_cert_pem = check_enrolment_input(daemon, &pin, &pending.ca_url, &pending.ca_cert_pem)?;
    let _guard = daemon.enroll_lock.lock().await;
    check_room(daemon)?;
    let req = EnrollDerivedRequest {
        challenge: pending.challenge,
        csr_der: pending.csr,
        signing_csr_der: pending.signing_csr,
        physical_certificate_der: proof.certificate_der,
        physical_chain_der: proof.chain_der,
        proof_signature: proof.signature,
    };
    let resp = ca_client::enroll_derived(&pending.ca_url, &pending.ca_cert_pem, req).await?;
    tracing::info!(card = %resp.card_id, "the CA issued a card by derivation");
    store_issued(daemon, pending.keys, resp, pending.ca_url, ca_cert_pem, pin).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn pending(expires_in: Duration) -> Pending {
        let now = Instant::now();
        Pending {
            keys: CardKeys {
                key: SigningKey::generate(KeyType::EcP256).unwrap(),
                signing_key: SigningKey::generate(KeyType::EcP256).unwrap(),
            },
            csr: Vec::new(),
            signing_csr: Vec::new(),
            challenge: vec![0; 32],
            ca_url: "https://127.0.0.1:1".into(),
            ca_cert_pem: Vec::new(),
            created: now,
            expires: now + expires_in,
        }
    }

    #[test]
    fn a_pending_enrolment_is_used_once_and_not_after_expiry() {
        let p = PendingDerivations::default();
        let id = p.insert(pending(Duration::from_secs(60))).unwrap();
        assert_eq!(id.len(), 32);
        assert!(p.take(&id).is_ok());
        let err = p.take(&id).err().unwrap();
        assert!(
            err.to_string().contains("no such derived enrolment"),
            "{err}"
        );
        let old = p.insert(pending(Duration::ZERO)).unwrap();
        let err = p.take(&old).err().unwrap();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn at_most_a_few_are_kept() {
        let p = PendingDerivations::default();
        let first = p.insert(pending(Duration::from_secs(60))).unwrap();
        for _ in 0..MAX_PENDING {
            p.insert(pending(Duration::from_secs(60))).unwrap();
        }
        assert_eq!(p.lock().len(), MAX_PENDING);
        assert!(p.take(&first).is_err(), "the oldest made room");
    }
}
