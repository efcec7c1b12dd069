//! Renewal with re-key, free of gRPC types: the client certificate (already
//! verified against the root by TLS) must be a recorded, unrevoked,
//! unexpired certificate of the card asked for, the card active and not
//! suspended, and the requests' keys new. The new certificates
//! (authentication, and document signing when requested) are recorded and
//! the card's older ones marked superseded in one transaction. A retry
//! after a lost answer gets the certificates already issued (lost_answer).

use std::sync::Arc;

use lanyard_certs::card_identity;
use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::audit::{AuditAction, AuditEvent};
use crate::card_id::CardId;
use crate::certify::{CardRequests, Certifier, Presigned};
use crate::enrolment::Enrolled;
use crate::error::CaError;
use crate::lost_answer::earlier_issuance;
use crate::peer::Peer;
use crate::store::{CardLifecycle, LifecycleTx, Store};

/// Renews card certificates.
#[derive(Debug)]
pub struct Renewer {
    store: Store,
    certifier: Arc<Certifier>,
}

/// The serial of a certificate of `card_id` that certifies one of the keys
/// of `requests`, if any: a key is certified once, so renewal really re-keys.
pub(crate) async fn certified_key(
    tx: &mut LifecycleTx,
    card_id: &CardId,
    requests: &CardRequests,
) -> Result<Option<String>, CaError> {
    for cert in tx.card_certificates(card_id).await? {
        let same = X509Certificate::from_der(&cert.der)
            .map(|(_, c)| requests.spkis().any(|spki| c.public_key().raw == spki))
            .unwrap_or(false);
        if same {
            return Ok(Some(cert.serial));
        }
    }
    Ok(None)
}

impl Renewer {
    /// A renewer over `store`, issuing through `certifier`.
    pub fn new(store: Store, certifier: Arc<Certifier>) -> Self {
        Renewer { store, certifier }
    }

    /// Certifies the key of `csr_der` (and of `signing_csr_der` unless empty,
    /// as the document-signing key) for `requested_card`, authenticated by
    /// `peer`'s client certificate.
    pub async fn renew(
        &self,
        peer: &Peer,
        requested_card: &str,
        csr_der: &[u8],
        signing_csr_der: &[u8],
    ) -> Result<Enrolled, CaError> {
        let Some(leaf) = peer.leaf() else {
            self.deny(peer, None, "no client certificate").await;
            return Err(CaError::Unauthenticated(
                "renewal needs the card's current certificate as the TLS client certificate".into(),
            ));
        };
        let identity = match card_identity(leaf) {
            Ok(id) => id,
            Err(e) => {
                self.deny(peer, None, &e.to_string()).await;
                return Err(CaError::CertificateRefused(format!(
                    "the client certificate cannot renew a card: {e}"
                )));
            }
        };
        let requested = CardId::parse(requested_card)?;
        if CardId::parse(identity.card_id()).ok().as_ref() != Some(&requested) {
            let why = format!(
                "client certificate of card {:?} used to renew card {requested}",
                identity.card_id()
            );
            self.deny(peer, Some(&requested), &why).await;
            return Err(CaError::CertificateRefused(format!(
                "the client certificate belongs to card {}, not {requested}; renew with the card's own certificate",
                identity.card_id()
            )));
        }

        // Held until the new certificate is recorded; refused before anything is read.
        let _permit = self.certifier.permit("renew")?;
        let requests = CardRequests::check(csr_der, signing_csr_der).map_err(|e| {
            warn!(peer = %peer.ip, card_id = %requested, error = %e, "renewal request refused");
            e
        })?;

        let now = OffsetDateTime::now_utc();
        let presigned = self
            .presign(&identity.serial_hex, &requested, &requests, now)
            .await;
        let mut tx = self.store.begin_lifecycle().await?;
        let presented = tx.certificate(&identity.serial_hex).await?;
        let presented = match presented {
            Some(cert) if cert.card_id == requested.as_str() => cert,
            _ => {
                tx.rollback().await?;
                let why = format!(
                    "client certificate {} is not recorded for card {requested}",
                    identity.serial_hex
                );
                self.deny(peer, Some(&requested), &why).await;
                return Err(CaError::CertificateRefused(format!(
                    "the client certificate (serial {}) was not issued to card {requested} by this CA",
                    identity.serial_hex
                )));
            }
        };
        let refusal = if let Some((_, reason)) = presented.revoked {
            Some(format!(
                "certificate {} of card {requested} is revoked ({reason}); ask the IT desk to re-issue the card",
                presented.serial
            ))
        } else if presented.not_after <= now.unix_timestamp() {
            Some(format!(
                "certificate {} of card {requested} has expired; ask the IT desk to re-issue the card",
                presented.serial
            ))
        } else {
            None
        };
        let state = tx
            .card_state(&requested)
            .await?
            .ok_or_else(|| CaError::UnknownCard(requested.to_string()))?;
        let refusal = refusal.or(match state.lifecycle {
            CardLifecycle::Active => None,
            CardLifecycle::Revoked { reason, .. } => Some(format!(
                "card {requested} is revoked ({reason}); ask the IT desk to re-issue it"
            )),
            CardLifecycle::Suspended { .. } => Some(format!(
                "card {requested} is suspended; ask the IT desk to resume it"
            )),
            CardLifecycle::Issued => Some(format!(
                "card {requested} was re-issued and waits for enrolment with its new code"
            )),
        });
        if let Some(message) = refusal {
            warn!(peer = %peer.ip, card_id = %requested, reason = %message, "renewal refused");
            let event = self.event(
                peer,
                &requested,
                AuditAction::RenewalRefused,
                json!({ "serial": presented.serial, "reason": message }),
            );
            tx.commit(&[event]).await?;
            return Err(CaError::CardNotUsable(message));
        }
        if let Some(serial) = certified_key(&mut tx, &requested, &requests).await? {
            let certs = tx.card_certificates(&requested).await?;
            let at = now.unix_timestamp();
            if let Some(earlier) = earlier_issuance(&certs, &requests, Some(&presented.serial), at)
            {
                let signing_serial = earlier.signing.as_ref().map(|s| s.serial.clone());
                let event = self.event(
                    peer,
                    &requested,
                    AuditAction::RenewalRepeated,
                    json!({
                        "old_serial": presented.serial,
                        "serial": earlier.auth.serial,
                        "signing_serial": signing_serial,
                    }),
                );
                tx.commit(&[event]).await?;
                info!(
                    peer = %peer.ip,
                    card_id = %requested,
                    serial = %earlier.auth.serial,
                    "renewal repeated: answered with the certificates already issued"
                );
                return Ok(Enrolled {
                    card: state.card,
                    certificate_der: earlier.auth.der,
                    signing_certificate_der: earlier.signing.map(|s| s.der),
                    chain_der: self.certifier.chain_der(),
                });
            }
            tx.rollback().await?;
            warn!(peer = %peer.ip, card_id = %requested, "renewal refused: the key is not new");
            return Err(CaError::KeyReused { serial });
        }

        let certs = self
            .certifier
            .confirm_or_certify(&mut tx, presigned, &requests, &state.card, now)
            .await?;
        let at = now.unix_timestamp();
        for issued in certs.as_issued() {
            tx.insert_certificate(&requested, &issued, at).await?;
        }
        let superseded = tx
            .supersede_others(&requested, &certs.serials(), at)
            .await?;
        let cert = &certs.auth;
        let event = self.event(
            peer,
            &requested,
            AuditAction::Renewed,
            json!({
                "old_serial": presented.serial,
                "serial": cert.serial.to_hex(),
                "signing_serial": certs.signing_serial_hex(),
                "key": cert.key_kind.to_string(),
                "not_after": cert.validity.not_after.unix_timestamp(),
                "superseded": superseded,
            }),
        );
        tx.commit(&[event]).await?;
        lanyard_fault::hit("ca.renew.after_commit");
        info!(
            peer = %peer.ip,
            card_id = %requested,
            old_serial = %presented.serial,
            serial = %cert.serial,
            key = %cert.key_kind,
            "card renewed with a new key"
        );
        Ok(Enrolled {
            card: state.card,
            certificate_der: certs.auth.der,
            signing_certificate_der: certs.signing.map(|s| s.der),
            chain_der: self.certifier.chain_der(),
        })
    }

    /// Signs ahead, outside the write lock, when a read shows the presented
    /// certificate recorded for this card, unrevoked and unexpired, and the
    /// card active; the transaction checks everything again and decides.
    async fn presign(
        &self,
        serial_hex: &str,
        card: &CardId,
        requests: &CardRequests,
        now: OffsetDateTime,
    ) -> Option<Presigned> {
        let cert = self.store.certificate(serial_hex).await.ok()??;
        let usable = cert.card_id == card.as_str()
            && cert.revoked.is_none()
            && cert.not_after > now.unix_timestamp();
        let state = self.store.card_state(card).await.ok()??;
        if !usable || !matches!(state.lifecycle, CardLifecycle::Active) {
            return None;
        }
        self.certifier
            .presign_card(requests, &state.card, now)
            .await
            .ok()
    }

    fn event(
        &self,
        peer: &Peer,
        card: &CardId,
        action: AuditAction,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            actor: format!("card:{card}"),
            action,
            card_id: Some(card.to_string()),
            peer: Some(peer.ip.to_string()),
            detail,
        }
    }

    /// Logs and audits a failed authentication; a failing audit write is
    /// logged but does not change the answer.
    async fn deny(&self, peer: &Peer, card: Option<&CardId>, why: &str) {
        warn!(peer = %peer.ip, card_id = card.map(CardId::as_str).unwrap_or("-"), reason = why, "renewal denied");
        let event = AuditEvent {
            actor: format!("peer:{}", peer.ip),
            action: AuditAction::RenewalDenied,
            card_id: card.map(CardId::to_string),
            peer: Some(peer.ip.to_string()),
            detail: json!({ "reason": why }),
        };
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, "could not write audit record");
        }
    }
}
