//! Derived enrolment (NIST SP 800-157 in spirit), free of gRPC types: a
//! one-time challenge, then a proof signed by a physical smartcard over the
//! challenge and the new card's CSRs. The physical card is checked (chain to
//! a configured anchor, validity, CRL file, allowed policy), the proof
//! verified, and a card for the same user ID and name, with the policy's
//! role, issued through the same certifier as a code enrolment.

pub mod config;
pub mod crl_file;
pub mod physical_card;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lanyard_certs::{proof_message, verify_proof_signature, CertSerial, CertsError};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::audit::{AuditAction, AuditEvent};
use crate::card_id::CardId;
use crate::certify::{CardRequests, Certifier, SerialRegistry};
use crate::enrolment::Enrolled;
use crate::error::CaError;
use crate::rate_limit::FailureLimiter;
use crate::store::{CardRecord, ChallengeUse, DerivedFrom, DerivedIssuance, Store};
use config::DerivationConfig;
use physical_card::{check_physical_card, DeriveCheck, PhysicalCard, TrustAnchor};

/// Bytes in a challenge.
pub const CHALLENGE_LEN: usize = 32;

/// Attempts at drawing an unused random card id.
const CARD_ID_ATTEMPTS: usize = 8;

/// Unused, unexpired challenges kept at once; beyond it DeriveChallenge
/// answers UNAVAILABLE (with retry-after) until some are used or expire.
const MAX_LIVE_CHALLENGES: i64 = 10_000;

impl SerialRegistry for DerivedIssuance {
    async fn serial_is_free(&mut self, serial: &CertSerial) -> Result<bool, CaError> {
        DerivedIssuance::serial_is_free(self, serial).await
    }
}

/// The derivation policy with its trust anchors loaded.
#[derive(Debug, Clone)]
pub struct DerivationPolicy {
    anchors: Vec<TrustAnchor>,
    allowed_policies: Vec<String>,
    role: String,
    crl_file: Option<PathBuf>,
    challenge_lifetime_secs: u32,
}

/// Reads every certificate of the PEM file at `path`; each must be a CA certificate.
pub fn load_anchors(path: &Path) -> Result<Vec<TrustAnchor>, CaError> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io("read", path, e))?;
    let anchors: Vec<TrustAnchor> = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| TrustAnchor(p.contents))
        .collect();
    if anchors.is_empty() {
        return Err(CaError::BadPem {
            path: path.into(),
            reason: "holds no PEM certificate of a physical-card CA".into(),
        });
    }
    for anchor in &anchors {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let reason = match X509Certificate::from_der(&anchor.0) {
            Ok((_, cert)) if cert.is_ca() => continue,
            Ok((_, cert)) => format!("{} is not a CA certificate", cert.subject()),
            Err(e) => format!("holds a certificate that cannot be read ({e})"),
        };
        return Err(CaError::BadPem {
            path: path.into(),
            reason,
        });
    }
    Ok(anchors)
}

impl DerivationPolicy {
    /// The policy of `config` with anchor files resolved in the CA directory
    /// `dir`; `None` when derivation is disabled.
    pub fn load(dir: &Path, config: &DerivationConfig) -> Result<Option<Self>, CaError> {
        if !config.enabled {
            return Ok(None);
        }
        let mut anchors = Vec::new();
        for file in &config.trust_anchors {
            anchors.extend(load_anchors(&DerivationConfig::resolve(dir, file))?);
        }
        Ok(Some(DerivationPolicy {
            anchors,
            allowed_policies: config.allowed_policies.clone(),
            role: config.role.trim().to_string(),
            crl_file: config
                .crl_file
                .as_deref()
                .map(|f| DerivationConfig::resolve(dir, f)),
            challenge_lifetime_secs: config.challenge_lifetime_secs,
        }))
    }
}

/// A derived enrolment request, as received.
#[derive(Debug, Clone, Copy)]
pub struct DerivedRequest<'a> {
    /// The challenge from [`Deriver::challenge`].
    pub challenge: &'a [u8],
    /// The new card's authentication CSR, DER.
    pub csr_der: &'a [u8],
    /// Its document-signing CSR, DER, or empty.
    pub signing_csr_der: &'a [u8],
    /// The physical card's certificate, DER.
    pub physical_certificate_der: &'a [u8],
    /// Intermediates above it, nearest first.
    pub physical_chain_der: &'a [Vec<u8>],
    /// The physical card's signature over the proof message.
    pub proof_signature: &'a [u8],
}

/// Everything a derived enrolment needs.
#[derive(Debug)]
pub struct Deriver {
    store: Store,
    certifier: Arc<Certifier>,
    limiter: Arc<FailureLimiter>,
    organisation: String,
    policy: Option<DerivationPolicy>,
}

fn challenge_hash(challenge: &[u8]) -> String {
    hex::encode(Sha256::digest(challenge))
}

impl Deriver {
    /// A deriver over the store and certifier shared with code enrolment;
    /// `policy` `None` answers every call "not enabled".
    pub fn new(
        store: Store,
        certifier: Arc<Certifier>,
        limiter: Arc<FailureLimiter>,
        organisation: String,
        policy: Option<DerivationPolicy>,
    ) -> Self {
        Deriver {
            store,
            certifier,
            limiter,
            organisation,
            policy,
        }
    }

    fn policy(&self) -> Result<&DerivationPolicy, CaError> {
        self.policy.as_ref().ok_or(CaError::DerivationDisabled)
    }

    /// A fresh one-time challenge and its lifetime in seconds.
    pub async fn challenge(&self, peer: Option<SocketAddr>) -> Result<(Vec<u8>, u32), CaError> {
        let policy = self.policy()?;
        let ip = peer_ip(peer);
        self.limiter.admit(ip, "derived enrolment")?;
        let mut challenge = vec![0u8; CHALLENGE_LEN];
        getrandom::getrandom(&mut challenge)?;
        let now = OffsetDateTime::now_utc();
        let lifetime = policy.challenge_lifetime_secs;
        let expires_at = now + time::Duration::seconds(i64::from(lifetime));
        let recorded = self
            .store
            .insert_derive_challenge(
                &challenge_hash(&challenge),
                now,
                expires_at,
                Some(&ip.to_string()),
                MAX_LIVE_CHALLENGES,
            )
            .await?;
        if !recorded {
            warn!(peer = %ip, "too many derivation challenges outstanding; refused");
            return Err(CaError::Overloaded {
                retry_after_secs: lifetime.min(60),
            });
        }
        info!(peer = %ip, lifetime_secs = lifetime, "derivation challenge issued");
        Ok((challenge, lifetime))
    }

    /// Checks the proof and the physical card, then issues the derived card.
    pub async fn enroll_derived(
        &self,
        peer: Option<SocketAddr>,
        req: DerivedRequest<'_>,
    ) -> Result<Enrolled, CaError> {
        let policy = self.policy()?;
        let ip = peer_ip(peer);
        self.limiter.admit(ip, "derived enrolment")?;
        // Held until the certificates are recorded; refused before anything is read.
        let _permit = self.certifier.permit("derive")?;
        let now = OffsetDateTime::now_utc();

        let used = if req.challenge.len() == CHALLENGE_LEN {
            self.store
                .consume_derive_challenge(&challenge_hash(req.challenge), now)
                .await?
        } else {
            ChallengeUse::Unknown
        };
        let why = match used {
            ChallengeUse::Consumed => None,
            ChallengeUse::Unknown => Some("unknown"),
            ChallengeUse::Used => Some("already used"),
            ChallengeUse::Expired => Some("expired"),
        };
        if let Some(why) = why {
            self.limiter.record_failure(ip, Instant::now());
            warn!(peer = %ip, reason = why, "derivation challenge rejected");
            self.audit_quietly(AuditEvent {
                actor: format!("peer:{ip}"),
                action: AuditAction::DeriveRefused,
                card_id: None,
                peer: Some(ip.to_string()),
                detail: json!({ "check": "challenge", "reason": why }),
            })
            .await;
            return Err(CaError::ChallengeRejected(why));
        }

        let requests = CardRequests::check(req.csr_der, req.signing_csr_der)?;
        let physical = match self.check_proof(policy, &req, now) {
            Ok(p) => p,
            Err(e) => return Err(self.refused(ip, &req, e).await),
        };
        let card = self.new_card_record(policy, &physical)?;
        if let Err(e) = card.holder(&self.organisation).check() {
            let e = CaError::DeriveRefused {
                check: DeriveCheck::Identity,
                reason: format!("the physical card's identity cannot go into a certificate: {e}"),
            };
            return Err(self.refused(ip, &req, e).await);
        }
        self.issue(ip, card, &requests, &physical, now).await
    }

    /// Chain, validity, policy, identity, revocation, then the proof signature.
    fn check_proof(
        &self,
        policy: &DerivationPolicy,
        req: &DerivedRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<PhysicalCard, CaError> {
        let physical = check_physical_card(
            req.physical_certificate_der,
            req.physical_chain_der,
            &policy.anchors,
            &policy.allowed_policies,
            now,
        )?;
        if let Some(crl) = &policy.crl_file {
            crl_file::check_not_revoked(crl, &physical, now)?;
        }
        let message = proof_message(req.challenge, req.csr_der, req.signing_csr_der);
        verify_proof_signature(&physical.spki_der, &message, req.proof_signature).map_err(|e| {
            CaError::DeriveRefused {
                check: DeriveCheck::Signature,
                reason: match e {
                    CertsError::BadProofSignature => e.to_string(),
                    other => format!("the proof cannot be checked: {other}"),
                },
            }
        })?;
        Ok(physical)
    }

    /// The card record with a random id (checked for use at issuance):
    /// identity from the physical card, role from the policy.
    fn new_card_record(
        &self,
        policy: &DerivationPolicy,
        physical: &PhysicalCard,
    ) -> Result<CardRecord, CaError> {
        Ok(CardRecord {
            card_id: CardId::generate()?.to_string(),
            holder_name: physical.holder_name.clone(),
            user_id: physical.user_id.clone(),
            role: policy.role.clone(),
        })
    }

    async fn issue(
        &self,
        ip: IpAddr,
        mut card: CardRecord,
        requests: &CardRequests,
        physical: &PhysicalCard,
        now: OffsetDateTime,
    ) -> Result<Enrolled, CaError> {
        let mut tx = self.store.begin_derived_issuance().await?;
        let mut attempts = 1;
        while !tx.card_id_is_free(&card.card_id).await? {
            if attempts == CARD_ID_ATTEMPTS {
                return Err(CaError::NoUniqueId);
            }
            attempts += 1;
            card.card_id = CardId::generate()?.to_string();
        }
        let certs = self
            .certifier
            .certify_card(&mut tx, requests, &card, now)
            .await?;
        let event = AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::DerivedIssuance,
            card_id: Some(card.card_id.clone()),
            peer: Some(ip.to_string()),
            detail: json!({
                "serial": certs.auth.serial.to_hex(),
                "signing_serial": certs.signing_serial_hex(),
                "key": certs.auth.key_kind.to_string(),
                "not_after": certs.auth.validity.not_after.unix_timestamp(),
                "user_id": card.user_id,
                "holder_name": card.holder_name,
                "role": card.role,
                "physical_issuer": physical.issuer,
                "physical_serial": physical.serial_hex,
                "physical_subject": physical.subject,
                "policy": physical.policy,
            }),
        };
        let from = DerivedFrom {
            issuer: &physical.issuer,
            serial_hex: &physical.serial_hex,
            subject: &physical.subject,
            policy: &physical.policy,
        };
        tx.complete(&card, &certs.as_issued(), from, &event).await?;
        info!(
            peer = %ip,
            card_id = %card.card_id,
            serial = %certs.auth.serial,
            physical_issuer = %physical.issuer,
            physical_serial = %physical.serial_hex,
            "card issued by derivation from a physical card"
        );
        Ok(Enrolled {
            card,
            certificate_der: certs.auth.der,
            signing_certificate_der: certs.signing.map(|s| s.der),
            chain_der: self.certifier.chain_der(),
        })
    }

    /// Counts, logs and audits a refused proof; returns the error for the client.
    async fn refused(&self, ip: IpAddr, req: &DerivedRequest<'_>, e: CaError) -> CaError {
        self.limiter.record_failure(ip, Instant::now());
        let (check, reason) = match &e {
            CaError::DeriveRefused { check, reason } => (check.as_str(), reason.clone()),
            other => ("other", other.to_string()),
        };
        let (issuer, serial) = certificate_names(req.physical_certificate_der);
        warn!(peer = %ip, check, reason = %reason, physical_issuer = %issuer, physical_serial = %serial, "derived enrolment refused");
        self.audit_quietly(AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::DeriveRefused,
            card_id: None,
            peer: Some(ip.to_string()),
            detail: json!({
                "check": check,
                "reason": reason,
                "physical_issuer": issuer,
                "physical_serial": serial,
            }),
        })
        .await;
        e
    }

    /// Audits a refusal; a failing audit write is logged but does not change the answer.
    async fn audit_quietly(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action = event.action.as_str(), "could not write audit record");
        }
    }
}

fn peer_ip(peer: Option<SocketAddr>) -> IpAddr {
    peer.map(|p| p.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Issuer DN and serial of a certificate for logs ("-" when unreadable).
fn certificate_names(der: &[u8]) -> (String, String) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, c)) => (c.issuer().to_string(), hex::encode(c.raw_serial())),
        Err(_) => ("-".into(), "-".into()),
    }
}
