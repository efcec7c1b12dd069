//! The enrolment use case, free of gRPC types: rate limit, issuance permit,
//! code check, CSR checks, then issuance (the authentication certificate and,
//! when requested, the document-signing one) and bookkeeping in one database
//! transaction. A retry with a used code and the keys its enrolment
//! certified (the answer was lost) gets those certificates again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::audit::{AuditAction, AuditEvent};
use crate::card_id::CardId;
use crate::certify::{CardRequests, Certifier, Presigned};
use crate::enrolment_code::EnrolmentCode;
use crate::error::CaError;
use crate::lost_answer::earlier_issuance;
use crate::rate_limit::FailureLimiter;
use crate::store::{CardLifecycle, CardRecord, CodeLookup, Store};

/// A successful enrolment.
#[derive(Debug)]
pub struct Enrolled {
    /// The card it was for.
    pub card: CardRecord,
    /// The new certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The new document-signing certificate, DER, when one was requested.
    pub signing_certificate_der: Option<Vec<u8>>,
    /// Issuing CA then root, DER.
    pub chain_der: Vec<Vec<u8>>,
}

/// Everything an enrolment needs.
#[derive(Debug)]
pub struct Enroller {
    store: Store,
    certifier: Arc<Certifier>,
    limiter: Arc<FailureLimiter>,
}

/// Why a code was refused (for the log and audit, never for the client).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Malformed,
    Unknown,
    Expired,
    Used,
    CardRevoked,
    Superseded,
}

impl Refusal {
    fn as_str(&self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Used => "already used",
            Refusal::CardRevoked => "card revoked or suspended",
            Refusal::Superseded => "replaced by a newer code",
        }
    }
}

impl Enroller {
    /// An enroller over the given store and certifier; `limiter` counts
    /// failed attempts per address (shared with PIN reset).
    pub fn new(store: Store, certifier: Arc<Certifier>, limiter: Arc<FailureLimiter>) -> Self {
        Enroller {
            store,
            certifier,
            limiter,
        }
    }

    /// Redeems `typed_code` for a certificate on the key of `csr_der` and,
    /// unless `signing_csr_der` is empty, a document-signing certificate on
    /// its key.
    pub async fn enroll(
        &self,
        peer: Option<SocketAddr>,
        typed_code: &str,
        csr_der: &[u8],
        signing_csr_der: &[u8],
    ) -> Result<Enrolled, CaError> {
        let ip = peer
            .map(|p| p.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.limiter.admit(ip, "enrolment")?;
        // Held until the certificate is recorded; refused before anything is read.
        let _permit = self.certifier.permit("enrol")?;

        let Some(code) = EnrolmentCode::parse(typed_code) else {
            return Err(self.refuse(ip, Refusal::Malformed, None).await);
        };
        let now = OffsetDateTime::now_utc();
        // Requests checked and certificates signed ahead, when the code looks good.
        let (checked, presigned) = match self.presign(&code, csr_der, signing_csr_der, now).await {
            Some((requests, presigned)) => (Some(requests), presigned),
            None => (None, None),
        };
        let mut pending = match self.store.begin_enrolment(&code.hash(), now).await? {
            CodeLookup::Valid(p) => p,
            CodeLookup::Unknown => return Err(self.refuse(ip, Refusal::Unknown, None).await),
            CodeLookup::Expired { card_id } => {
                return Err(self.refuse(ip, Refusal::Expired, Some(card_id)).await)
            }
            CodeLookup::Used { card_id, retryable } => {
                if retryable {
                    if let Some(done) = self
                        .repeat(ip, &card_id, csr_der, signing_csr_der, now)
                        .await?
                    {
                        return Ok(done);
                    }
                }
                return Err(self.refuse(ip, Refusal::Used, Some(card_id)).await);
            }
            CodeLookup::CardRevoked { card_id } => {
                return Err(self.refuse(ip, Refusal::CardRevoked, Some(card_id)).await)
            }
            CodeLookup::Superseded { card_id } => {
                return Err(self.refuse(ip, Refusal::Superseded, Some(card_id)).await)
            }
        };
        let card = pending.card().clone();

        let requests = match checked
            .map_or_else(|| CardRequests::check(csr_der, signing_csr_der), Ok)
        {
            Ok(requests) => requests,
            Err(e) => {
                // Roll back first: the code stays usable with a good request.
                pending.abandon().await?;
                warn!(peer = %ip, card_id = %card.card_id, error = %e, "enrolment request refused");
                self.audit_quietly(AuditEvent {
                    actor: format!("peer:{ip}"),
                    action: AuditAction::EnrolBadRequest,
                    card_id: Some(card.card_id.clone()),
                    peer: Some(ip.to_string()),
                    detail: json!({ "reason": e.to_string() }),
                })
                .await;
                return Err(e);
            }
        };

        let certs = self
            .certifier
            .confirm_or_certify(&mut pending, presigned, &requests, &card, now)
            .await?;
        let (serial, validity) = (certs.auth.serial, certs.auth.validity);
        let key_kind = certs.auth.key_kind;

        let peer_text = ip.to_string();
        let event = AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::Enrolled,
            card_id: Some(card.card_id.clone()),
            peer: Some(peer_text.clone()),
            detail: json!({
                "serial": serial.to_hex(),
                "signing_serial": certs.signing_serial_hex(),
                "key": key_kind.to_string(),
                "not_after": validity.not_after.unix_timestamp(),
            }),
        };
        pending
            .complete(&certs.as_issued(), Some(&peer_text), &event)
            .await?;
        info!(
            peer = %ip,
            card_id = %card.card_id,
            serial = %serial,
            signing_serial = %certs.signing_serial_hex(),
            key = %key_kind,
            "card enrolled, certificates issued"
        );
        Ok(Enrolled {
            card,
            certificate_der: certs.auth.der,
            signing_certificate_der: certs.signing.map(|s| s.der),
            chain_der: self.certifier.chain_der(),
        })
    }

    /// The certificates the enrolment that used the code issued, when the
    /// card's current certificates are exactly for the keys of this request
    /// (the same enrolment retried after its answer was lost), audited as a
    /// repeat; `None` (refused as a used code) otherwise.
    async fn repeat(
        &self,
        ip: IpAddr,
        card_id: &str,
        csr_der: &[u8],
        signing_csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<Enrolled>, CaError> {
        let Ok(requests) = CardRequests::check(csr_der, signing_csr_der) else {
            return Ok(None);
        };
        let card_id = CardId::parse(card_id)?;
        let mut tx = self.store.begin_lifecycle().await?;
        let state = tx.card_state(&card_id).await?;
        let certs = tx.card_certificates(&card_id).await?;
        let earlier = earlier_issuance(&certs, &requests, None, now.unix_timestamp());
        let (Some(state), Some(earlier)) = (state, earlier) else {
            tx.rollback().await?;
            return Ok(None);
        };
        if !matches!(state.lifecycle, CardLifecycle::Active) {
            tx.rollback().await?;
            return Ok(None);
        }
        let signing_serial = earlier.signing.as_ref().map(|s| s.serial.clone());
        let event = AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::EnrolRepeated,
            card_id: Some(card_id.to_string()),
            peer: Some(ip.to_string()),
            detail: json!({ "serial": earlier.auth.serial, "signing_serial": signing_serial }),
        };
        tx.commit(&[event]).await?;
        info!(
            peer = %ip,
            card_id = %card_id,
            serial = %earlier.auth.serial,
            "enrolment repeated: answered with the certificates already issued"
        );
        Ok(Some(Enrolled {
            card: state.card,
            certificate_der: earlier.auth.der,
            signing_certificate_der: earlier.signing.map(|s| s.der),
            chain_der: self.certifier.chain_der(),
        }))
    }

    /// Checks the requests and signs ahead, outside the write lock, when the
    /// code looks redeemable and the requests are good; anything else leaves
    /// the decision, its refusal and its audit record to the transaction.
    async fn presign(
        &self,
        code: &EnrolmentCode,
        csr_der: &[u8],
        signing_csr_der: &[u8],
        now: OffsetDateTime,
    ) -> Option<(CardRequests, Option<Presigned>)> {
        let card = self.store.peek_enrolment(&code.hash(), now).await.ok()??;
        let requests = CardRequests::check(csr_der, signing_csr_der).ok()?;
        let presigned = self
            .certifier
            .presign_card(&requests, &card, now)
            .await
            .ok();
        Some((requests, presigned))
    }

    /// Counts a failed attempt, logs and audits it, and returns the one error clients see.
    async fn refuse(&self, ip: IpAddr, why: Refusal, card_id: Option<String>) -> CaError {
        self.limiter.record_failure(ip, Instant::now());
        warn!(
            peer = %ip,
            reason = why.as_str(),
            card_id = card_id.as_deref().unwrap_or("-"),
            "enrolment code rejected"
        );
        self.audit_quietly(AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::EnrolFailed,
            card_id,
            peer: Some(ip.to_string()),
            detail: json!({ "reason": why.as_str() }),
        })
        .await;
        CaError::CodeRejected
    }

    /// Audits a refusal; a failing audit write is logged but does not change the answer.
    async fn audit_quietly(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action = event.action.as_str(), "could not write audit record");
        }
    }
}
