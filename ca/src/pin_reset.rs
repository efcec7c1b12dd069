//! Forgotten PIN, without key escrow: the device redeems a one-time reset
//! code the IT desk released for the card, with a CSR for a new key (and one
//! for a new document-signing key). A right code certifies the new keys and
//! revokes every older certificate of the card
//! (superseded); a wrong one costs a try, and the last try revokes the card,
//! whose keys the device must then destroy. Each outcome is one transaction.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use lanyard_certs::RevocationReason;
use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::audit::{AuditAction, AuditEvent};
use crate::card_id::CardId;
use crate::certify::{CardRequests, Certifier};
use crate::enrolment::Enrolled;
use crate::enrolment_code::EnrolmentCode;
use crate::error::CaError;
use crate::rate_limit::FailureLimiter;
use crate::renewal::certified_key;
use crate::store::{CardLifecycle, Store};

/// Why a card whose reset code ran out of tries is revoked: its keys are
/// destroyed on the device and were never exposed, so it is not
/// keyCompromise (which would cast doubt on every signature the card made);
/// the certificate is simply no longer in operation.
pub const EXHAUSTED_REASON: RevocationReason = RevocationReason::CessationOfOperation;

/// Redeems PIN reset codes.
#[derive(Debug)]
pub struct PinResetter {
    store: Store,
    certifier: Arc<Certifier>,
    limiter: Arc<FailureLimiter>,
}

/// Compares two code hashes without stopping at the first difference.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl PinResetter {
    /// A resetter over `store`, issuing through `certifier`; `limiter`
    /// counts failed attempts per address (shared with enrolment).
    pub fn new(store: Store, certifier: Arc<Certifier>, limiter: Arc<FailureLimiter>) -> Self {
        PinResetter {
            store,
            certifier,
            limiter,
        }
    }

    /// Redeems `typed_code` for `card` with the new key of `csr_der` (and
    /// the new document-signing key of `signing_csr_der` unless empty).
    pub async fn reset(
        &self,
        ip: IpAddr,
        card: &str,
        typed_code: &str,
        csr_der: &[u8],
        signing_csr_der: &[u8],
    ) -> Result<Enrolled, CaError> {
        self.limiter.admit(ip, "PIN reset")?;
        let card_id = CardId::parse(card)?;
        // A bad request is the device's fault, not a guess: not counted, code kept.
        let requests = CardRequests::check(csr_der, signing_csr_der).map_err(|e| {
            warn!(peer = %ip, card_id = %card_id, error = %e, "PIN reset request refused");
            e
        })?;
        let Some(code) = EnrolmentCode::parse(typed_code) else {
            self.limiter.record_failure(ip, Instant::now());
            warn!(peer = %ip, card_id = %card_id, "PIN reset refused: malformed code");
            return Err(CaError::InvalidArgument(
                "the reset code is malformed: it has 16 letters and digits, e.g. 7KQD-9M2X-H4TA-PZ3E"
                    .into(),
            ));
        };

        let _permit = self.certifier.permit("reset-pin")?;
        let now = OffsetDateTime::now_utc();
        let at = now.unix_timestamp();
        let mut tx = self.store.begin_lifecycle().await?;
        let Some(state) = tx.card_state(&card_id).await? else {
            tx.rollback().await?;
            self.limiter.record_failure(ip, Instant::now());
            return Err(CaError::UnknownCard(card_id.to_string()));
        };
        let refused = |reason: String| AuditEvent {
            actor: format!("peer:{ip}"),
            action: AuditAction::PinResetFailed,
            card_id: Some(card_id.to_string()),
            peer: Some(ip.to_string()),
            detail: json!({ "reason": reason }),
        };
        match state.lifecycle {
            CardLifecycle::Active => {}
            CardLifecycle::Revoked { reason, .. } => {
                tx.commit(&[refused(format!("card revoked ({reason})"))])
                    .await?;
                return Err(CaError::CardDestroyed {
                    card_id: card_id.to_string(),
                    why: "",
                });
            }
            CardLifecycle::Suspended { .. } => {
                tx.commit(&[refused("card suspended".into())]).await?;
                return Err(CaError::CardNotUsable(format!(
                    "card {card_id} is suspended; ask the IT desk to resume it before resetting its PIN"
                )));
            }
            CardLifecycle::Issued => {
                tx.commit(&[refused("card not enrolled".into())]).await?;
                return Err(CaError::CardNotUsable(format!(
                    "card {card_id} is not enrolled; enrol it with the code from the IT desk (lanyard enroll)"
                )));
            }
        }

        let live = tx
            .live_reset_code(&card_id)
            .await?
            .filter(|c| c.expires_at > at);
        let Some(live) = live else {
            self.limiter.record_failure(ip, Instant::now());
            warn!(peer = %ip, card_id = %card_id, "PIN reset refused: no valid reset code");
            tx.commit(&[refused("no live reset code (none, expired or used)".into())])
                .await?;
            return Err(CaError::NoResetCode {
                card_id: card_id.to_string(),
            });
        };

        if !same_hash(&code.hash().to_hex(), &live.code_hash) {
            self.limiter.record_failure(ip, Instant::now());
            let tries_left = live.tries_left - 1;
            tx.set_reset_tries(live.id, tries_left, at).await?;
            if tries_left > 0 {
                warn!(peer = %ip, card_id = %card_id, tries_left, "PIN reset refused: wrong code");
                let mut event = refused("wrong code".into());
                event.detail = json!({ "reason": "wrong code", "tries_left": tries_left });
                tx.commit(&[event]).await?;
                return Err(CaError::ResetCodeWrong {
                    card_id: card_id.to_string(),
                    tries_left,
                });
            }
            let revoked = tx.revoke_card(&card_id, EXHAUSTED_REASON, at).await?;
            warn!(
                peer = %ip,
                card_id = %card_id,
                revoked = revoked.len(),
                "reset code exhausted: card revoked, the device must destroy its keys"
            );
            let event = AuditEvent {
                actor: format!("peer:{ip}"),
                action: AuditAction::ResetCodeExhausted,
                card_id: Some(card_id.to_string()),
                peer: Some(ip.to_string()),
                detail: json!({ "reason": EXHAUSTED_REASON.name(), "revoked": revoked }),
            };
            tx.commit(&[event]).await?;
            return Err(CaError::CardDestroyed {
                card_id: card_id.to_string(),
                why: " (too many wrong reset codes)",
            });
        }

        if let Some(serial) = certified_key(&mut tx, &card_id, &requests).await? {
            tx.rollback().await?;
            warn!(peer = %ip, card_id = %card_id, "PIN reset refused: the key is not new");
            return Err(CaError::KeyReused { serial });
        }
        let certs = self
            .certifier
            .certify_card(&mut tx, &requests, &state.card, now)
            .await?;
        for issued in certs.as_issued() {
            tx.insert_certificate(&card_id, &issued, at).await?;
        }
        let revoked = tx
            .revoke_others(&card_id, &certs.serials(), RevocationReason::Superseded, at)
            .await?;
        let cert = &certs.auth;
        tx.use_reset_code(live.id, at).await?;
        tx.activate_card(&card_id).await?;
        let event = AuditEvent {
            actor: format!("card:{card_id}"),
            action: AuditAction::PinReset,
            card_id: Some(card_id.to_string()),
            peer: Some(ip.to_string()),
            detail: json!({
                "serial": cert.serial.to_hex(),
                "signing_serial": certs.signing_serial_hex(),
                "key": cert.key_kind.to_string(),
                "not_after": cert.validity.not_after.unix_timestamp(),
                "revoked_superseded": revoked,
            }),
        };
        tx.commit(&[event]).await?;
        info!(
            peer = %ip,
            card_id = %card_id,
            serial = %cert.serial,
            revoked = revoked.len(),
            "PIN reset: new key certified, older certificates revoked"
        );
        Ok(Enrolled {
            card: state.card,
            certificate_der: certs.auth.der,
            signing_certificate_der: certs.signing.map(|s| s.der),
            chain_der: self.certifier.chain_der(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_comparison() {
        assert!(same_hash("abcd", "abcd"));
        assert!(!same_hash("abcd", "abce"));
        assert!(!same_hash("abcd", "abc"));
        assert!(same_hash("", ""));
    }
}
