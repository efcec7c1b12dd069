//! Cards as the IT desk handles them: issue (a new card id and one-time
//! enrolment code), re-issue (a new code for the same id), list, show,
//! revoke with an RFC 5280 reason, suspend and resume.

use lanyard_certs::RevocationReason;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{now_unix, Caller};
use crate::audit::AuditAction;
use crate::card_id::CardId;
use crate::config::{CaConfig, MAX_CODE_VALIDITY_HOURS};
use crate::enrolment_code::EnrolmentCode;
use crate::error::CaError;
use crate::store::admin::{self as q, CardDetail, CardSummary, StateFilter};
use crate::store::{CardLifecycle, CardRecord, Store};

/// Attempts at drawing an unused random card id.
const CARD_ID_ATTEMPTS: usize = 8;

/// A card to issue.
#[derive(Debug, Clone)]
pub struct NewCard {
    /// The holder's name, e.g. "Dr Ada Smith".
    pub holder_name: String,
    /// The holder's user id.
    pub user_id: String,
    /// The holder's role.
    pub role: String,
    /// Hours the enrolment code stays valid (default from the configuration).
    pub valid_hours: Option<u32>,
}

/// A card with its fresh enrolment code (the only time the code exists in clear).
#[derive(Debug)]
pub struct IssuedCard {
    /// The card.
    pub card: CardRecord,
    /// The one-time enrolment code.
    pub code: EnrolmentCode,
    /// When the code expires.
    pub code_expires_at: OffsetDateTime,
}

fn code_expiry(config: &CaConfig, valid_hours: Option<u32>) -> Result<OffsetDateTime, CaError> {
    let hours = valid_hours.unwrap_or(config.enrolment_code_validity_hours);
    if !(1..=MAX_CODE_VALIDITY_HOURS).contains(&hours) {
        return Err(CaError::InvalidArgument(format!(
            "an enrolment code is valid for 1 to {MAX_CODE_VALIDITY_HOURS} hours, not {hours}"
        )));
    }
    let now = OffsetDateTime::now_utc();
    Ok((now + Duration::hours(i64::from(hours)))
        .replace_nanosecond(0)
        .unwrap_or(now))
}

/// Issues a card with a new random id and a one-time enrolment code.
pub async fn issue(
    store: &Store,
    config: &CaConfig,
    caller: &Caller,
    new: &NewCard,
) -> Result<IssuedCard, CaError> {
    let expires_at = code_expiry(config, new.valid_hours)?;
    let code = EnrolmentCode::generate()?;
    for _ in 0..CARD_ID_ATTEMPTS {
        let card = CardRecord {
            card_id: CardId::generate()?.to_string(),
            holder_name: new.holder_name.trim().to_string(),
            user_id: new.user_id.trim().to_string(),
            role: new.role.trim().to_string(),
        };
        // Refuse now what could not go into a certificate at enrolment.
        card.holder(&config.organisation)
            .check()
            .map_err(|e| CaError::InvalidArgument(e.to_string()))?;
        let event = caller.event(
            AuditAction::CardIssued,
            Some(&card.card_id),
            json!({
                "holder_name": card.holder_name,
                "user_id": card.user_id,
                "role": card.role,
                "code_expires_at": expires_at.unix_timestamp(),
            }),
        );
        if store
            .insert_card(&card, &code.hash(), expires_at, &event)
            .await?
        {
            tracing::info!(card_id = %card.card_id, actor = %event.actor, "card issued");
            return Ok(IssuedCard {
                card,
                code,
                code_expires_at: expires_at,
            });
        }
    }
    Err(CaError::NoUniqueId)
}

/// A new enrolment code for an existing card: the card goes back to
/// 'issued', its unexpired certificates are revoked (superseded) and any
/// earlier code ends. The device keeps the card id and slot.
pub async fn reissue(
    store: &Store,
    config: &CaConfig,
    caller: &Caller,
    card_id: &CardId,
    valid_hours: Option<u32>,
) -> Result<IssuedCard, CaError> {
    let expires_at = code_expiry(config, valid_hours)?;
    let code = EnrolmentCode::generate()?;
    let now = now_unix();
    let mut tx = store.begin_write().await?;
    let before = existing(&mut tx, card_id).await?;
    q::reissue_card(
        &mut tx,
        card_id,
        &code.hash(),
        expires_at.unix_timestamp(),
        now,
    )
    .await?;
    let event = caller.event(
        AuditAction::CardReissued,
        Some(card_id.as_str()),
        json!({
            "previous_state": before.lifecycle.name(),
            "code_expires_at": expires_at.unix_timestamp(),
        }),
    );
    crate::audit::append(&mut tx, &event, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    tracing::info!(card_id = %card_id, actor = %event.actor, "card re-issued");
    Ok(IssuedCard {
        card: before.card,
        code,
        code_expires_at: expires_at,
    })
}

/// Cards, newest first, filtered by state and user id; the listing is audited.
pub async fn list(
    store: &Store,
    caller: &Caller,
    state: Option<StateFilter>,
    user_id: Option<&str>,
) -> Result<Vec<CardSummary>, CaError> {
    let user_id = user_id.map(str::trim).filter(|u| !u.is_empty());
    let cards = store.card_summaries(state, user_id).await?;
    let event = caller.event(
        AuditAction::CardsListed,
        None,
        json!({
            "state": state.map(StateFilter::as_str),
            "user_id": user_id,
            "cards": cards.len(),
        }),
    );
    store.record_audit(&event).await?;
    Ok(cards)
}

/// One card with its certificates; the look-up is audited.
pub async fn show(store: &Store, caller: &Caller, card_id: &CardId) -> Result<CardDetail, CaError> {
    let detail = store
        .card_detail(card_id, now_unix())
        .await?
        .ok_or_else(|| no_such_card(card_id))?;
    let event = caller.event(AuditAction::CardShown, Some(card_id.as_str()), json!({}));
    store.record_audit(&event).await?;
    Ok(detail)
}

/// The reason given for a revocation, refusing the two codes that are not
/// revocations here: certificateHold is suspension, removeFromCRL only
/// belongs in delta CRLs.
pub fn revocation_reason(code: u32) -> Result<RevocationReason, CaError> {
    let reason =
        RevocationReason::from_code(code).map_err(|e| CaError::InvalidArgument(e.to_string()))?;
    match reason {
        RevocationReason::CertificateHold => Err(CaError::InvalidArgument(
            "certificate-hold is not a revocation reason here: to put a card on hold use \
             `lanyard-ca admin suspend`"
                .into(),
        )),
        RevocationReason::RemoveFromCrl => Err(CaError::InvalidArgument(
            "remove-from-crl is not a revocation reason (it only appears in delta CRLs): to take \
             a suspended card off hold use `lanyard-ca admin resume`"
                .into(),
        )),
        r => Ok(r),
    }
}

/// Revokes the card and all its certificates for `reason` (final until re-issued).
pub async fn revoke(
    store: &Store,
    caller: &Caller,
    card_id: &CardId,
    reason: RevocationReason,
) -> Result<CardDetail, CaError> {
    let reason = revocation_reason(u32::from(reason.code()))?;
    change(store, caller, card_id, |before| match before {
        CardLifecycle::Revoked { reason, .. } => Err(format!(
            "is already revoked ({reason}); `lanyard-ca admin reissue-card` gives it a new enrolment code"
        )),
        _ => Ok(Change::Revoke(reason)),
    })
    .await
}

/// Puts an enrolled card on hold: its certificates go on the CRL as
/// certificateHold and the device removes the token until it is resumed.
pub async fn suspend(
    store: &Store,
    caller: &Caller,
    card_id: &CardId,
) -> Result<CardDetail, CaError> {
    change(store, caller, card_id, |before| match before {
        CardLifecycle::Active => Ok(Change::Suspend),
        CardLifecycle::Suspended { .. } => Err("is already suspended".into()),
        CardLifecycle::Issued => Err(
            "has not been enrolled; there is nothing to suspend (revoke it to stop the enrolment)"
                .into(),
        ),
        CardLifecycle::Revoked { .. } => Err("is revoked; it cannot be suspended".into()),
    })
    .await
}

/// Takes a suspended card off hold.
pub async fn resume(
    store: &Store,
    caller: &Caller,
    card_id: &CardId,
) -> Result<CardDetail, CaError> {
    change(store, caller, card_id, |before| match before {
        CardLifecycle::Suspended { .. } => Ok(Change::Resume),
        CardLifecycle::Revoked { .. } => {
            Err("is revoked, not suspended; `lanyard-ca admin reissue-card` starts it again".into())
        }
        _ => Err("is not suspended; nothing to resume".into()),
    })
    .await
}

/// A state change of one card.
enum Change {
    Revoke(RevocationReason),
    Suspend,
    Resume,
}

/// Reads the card under the write lock, lets `decide` check its state,
/// applies the change and its audit record, and returns the card as it is now.
async fn change(
    store: &Store,
    caller: &Caller,
    card_id: &CardId,
    decide: impl FnOnce(&CardLifecycle) -> Result<Change, String>,
) -> Result<CardDetail, CaError> {
    let now = now_unix();
    let mut tx = store.begin_write().await?;
    let before = existing(&mut tx, card_id).await?;
    let change = decide(&before.lifecycle)
        .map_err(|reason| CaError::CardNotUsable(format!("card {card_id} {reason}")))?;
    let (action, detail) = match change {
        Change::Revoke(reason) => {
            q::revoke_card(&mut tx, card_id, reason, now).await?;
            (
                AuditAction::CardRevoked,
                json!({ "reason": reason.name(), "reason_code": reason.code() }),
            )
        }
        Change::Suspend => {
            q::suspend_card(&mut tx, card_id, now).await?;
            (AuditAction::CardSuspended, json!({}))
        }
        Change::Resume => {
            q::resume_card(&mut tx, card_id).await?;
            (AuditAction::CardResumed, json!({}))
        }
    };
    let mut detail = detail;
    detail["previous_state"] = json!(before.lifecycle.name());
    let event = caller.event(action, Some(card_id.as_str()), detail);
    crate::audit::append(&mut tx, &event, OffsetDateTime::now_utc()).await?;
    let after = q::card_detail(&mut tx, card_id, now)
        .await?
        .ok_or_else(|| no_such_card(card_id))?;
    tx.commit().await?;
    tracing::info!(card_id = %card_id, actor = %event.actor, action = action.as_str(), "card changed");
    Ok(after)
}

/// The card, or [`CaError::UnknownCard`].
pub(crate) async fn existing(
    conn: &mut sqlx::AnyConnection,
    card_id: &CardId,
) -> Result<CardSummary, CaError> {
    q::card_summary_in(conn, card_id)
        .await?
        .ok_or_else(|| no_such_card(card_id))
}

fn no_such_card(card_id: &CardId) -> CaError {
    CaError::UnknownCard(card_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn caller() -> Caller {
        Caller {
            actor: super::super::Actor::Host {
                actor: "admin:test".into(),
            },
            peer: None,
        }
    }

    fn new_card(user_id: &str) -> NewCard {
        NewCard {
            holder_name: "Dr Ada Smith".into(),
            user_id: user_id.into(),
            role: "R8000 Clinical Practitioner".into(),
            valid_hours: None,
        }
    }

    #[test]
    fn hold_and_remove_from_crl_are_not_revocation_reasons() {
        for code in [0, 1, 2, 3, 4, 5, 9, 10] {
            assert_eq!(u32::from(revocation_reason(code).unwrap().code()), code);
        }
        for code in [6, 7, 8, 11, u32::MAX] {
            let err = revocation_reason(code).unwrap_err();
            assert!(matches!(err, CaError::InvalidArgument(_)), "{code}: {err}");
        }
        assert!(revocation_reason(6)
            .unwrap_err()
            .to_string()
            .contains("suspend"));
        assert!(revocation_reason(8)
            .unwrap_err()
            .to_string()
            .contains("resume"));
    }

    #[tokio::test]
    async fn states_change_only_where_they_may() {
        let (_db, store) = test_store().await;
        let config = CaConfig::new("Test Trust");
        let c = caller();
        let card = issue(&store, &config, &c, &new_card("555000000001"))
            .await
            .unwrap();
        let id = CardId::parse(&card.card.card_id).unwrap();

        // An issued card cannot be suspended or resumed; it can be revoked.
        let err = suspend(&store, &c, &id).await.unwrap_err();
        assert!(matches!(err, CaError::CardNotUsable(_)), "{err}");
        let err = resume(&store, &c, &id).await.unwrap_err();
        assert!(err.to_string().contains("is not suspended"), "{err}");
        let revoked = revoke(&store, &c, &id, RevocationReason::CessationOfOperation)
            .await
            .unwrap();
        assert_eq!(
            revoked.summary.lifecycle,
            CardLifecycle::Revoked {
                at: match revoked.summary.lifecycle {
                    CardLifecycle::Revoked { at, .. } => at,
                    _ => 0,
                },
                reason: RevocationReason::CessationOfOperation,
            }
        );
        let err = revoke(&store, &c, &id, RevocationReason::Superseded)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already revoked"), "{err}");
        // A revoked card's enrolment code no longer works.
        let now = OffsetDateTime::now_utc();
        assert!(!matches!(
            store.begin_enrolment(&card.code.hash(), now).await.unwrap(),
            crate::store::CodeLookup::Valid(_)
        ));

        // Re-issue: the same id, 'issued' again, a working new code.
        let again = reissue(&store, &config, &c, &id, Some(2)).await.unwrap();
        assert_eq!(again.card.card_id, card.card.card_id);
        let listed = list(&store, &c, Some(StateFilter::Issued), None)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(matches!(
            store
                .begin_enrolment(&again.code.hash(), now)
                .await
                .unwrap(),
            crate::store::CodeLookup::Valid(_)
        ));

        // Filters by user and state; an unknown card is UnknownCard.
        issue(&store, &config, &c, &new_card("555000000002"))
            .await
            .unwrap();
        assert_eq!(list(&store, &c, None, None).await.unwrap().len(), 2);
        assert_eq!(
            list(&store, &c, None, Some("555000000002"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(list(&store, &c, Some(StateFilter::Revoked), None)
            .await
            .unwrap()
            .is_empty());
        let unknown = CardId::parse("0000000000AA").unwrap();
        let err = show(&store, &c, &unknown).await.unwrap_err();
        assert!(matches!(err, CaError::UnknownCard(_)), "{err}");

        // Bad input changes nothing.
        let mut bad = new_card("555000000003");
        bad.holder_name = "Dr\nEvil".into();
        assert!(matches!(
            issue(&store, &config, &c, &bad).await.unwrap_err(),
            CaError::InvalidArgument(_)
        ));
        let mut bad = new_card("555000000003");
        bad.valid_hours = Some(0);
        assert!(issue(&store, &config, &c, &bad).await.is_err());
        assert_eq!(list(&store, &c, None, None).await.unwrap().len(), 2);
        assert_eq!(
            store.verify_audit().await.unwrap().ok().map(|n| n > 5),
            Some(true)
        );
    }
}
