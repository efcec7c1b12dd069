//! Releasing a one-time PIN reset code for an enrolled card (after the IT
//! desk has checked the holder's identity): bound to the card, with its own
//! try limit and expiry, stored only as a hash; a new code ends the old one.
//! Under dual control the code only comes into existence on approval.

use serde_json::json;
use time::OffsetDateTime;

use super::approvals::{self, DualAction};
use super::{cards, now_unix, Caller, Outcome};
use crate::audit::AuditAction;
use crate::card_id::CardId;
use crate::config::CaConfig;
use crate::enrolment_code::EnrolmentCode;
use crate::error::CaError;
use crate::store::admin::{self as q, NewResetCode};
use crate::store::{CardLifecycle, Store};

/// A released reset code (the only time it exists in clear).
#[derive(Debug)]
pub struct ReleasedCode {
    /// The card it resets.
    pub card_id: CardId,
    /// The one-time code.
    pub code: EnrolmentCode,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// Wrong codes allowed before the card's keys must be destroyed.
    pub tries: u32,
}

/// Releases a reset code for the card, or asks for a second operator's
/// approval when `reset-pin` is under dual control.
pub async fn release(
    store: &Store,
    config: &CaConfig,
    caller: &Caller,
    card_id: &CardId,
) -> Result<Outcome<ReleasedCode>, CaError> {
    if let Some(op) = approvals::requester(config, caller, DualAction::ResetPin) {
        // Refuse at once what could never be approved.
        let mut conn = store.pool().acquire().await?;
        let card = cards::existing(&mut conn, card_id).await?;
        drop(conn);
        check_resettable(card_id, &card.lifecycle)?;
        let pending = approvals::request(
            store,
            caller,
            op,
            DualAction::ResetPin,
            card_id.as_str(),
            json!({ "card_id": card_id.as_str() }),
        )
        .await?;
        return Ok(Outcome::Pending(pending));
    }
    let mut tx = store.begin_write().await?;
    let released = release_in(&mut tx, config, caller, card_id, None).await?;
    tx.commit().await?;
    Ok(Outcome::Done(released))
}

/// Releases the code inside the caller's write transaction (directly, or
/// when an approval is granted), with its audit record.
pub(crate) async fn release_in(
    conn: &mut sqlx::AnyConnection,
    config: &CaConfig,
    caller: &Caller,
    card_id: &CardId,
    approval_id: Option<&str>,
) -> Result<ReleasedCode, CaError> {
    let card = cards::existing(conn, card_id).await?;
    check_resettable(card_id, &card.lifecycle)?;
    let now = now_unix();
    let expires_at = now + i64::from(config.reset_code_validity_hours) * 3600;
    let code = EnrolmentCode::generate()?;
    let actor = caller.audit_actor();
    q::insert_reset_code(
        conn,
        &NewResetCode {
            card_id,
            code_hash: &code.hash(),
            created_by: &actor,
            expires_at,
            tries: i64::from(config.reset_code_tries),
        },
        now,
    )
    .await?;
    let event = caller.event(
        AuditAction::ResetCodeReleased,
        Some(card_id.as_str()),
        json!({
            "expires_at": expires_at,
            "tries": config.reset_code_tries,
            "approval_id": approval_id,
        }),
    );
    crate::audit::append(conn, &event, OffsetDateTime::now_utc()).await?;
    tracing::info!(card_id = %card_id, actor = %actor, "PIN reset code released");
    Ok(ReleasedCode {
        card_id: card_id.clone(),
        code,
        expires_at,
        tries: config.reset_code_tries,
    })
}

/// A PIN can only be reset on an enrolled card that is in use.
fn check_resettable(card_id: &CardId, lifecycle: &CardLifecycle) -> Result<(), CaError> {
    let reason = match lifecycle {
        CardLifecycle::Active => return Ok(()),
        CardLifecycle::Issued => {
            "has not been enrolled, so it has no PIN to reset; its enrolment code still works \
             (or `lanyard-ca admin reissue-card` makes a new one)"
        }
        CardLifecycle::Suspended { .. } => {
            "is suspended; resume it (`lanyard-ca admin resume`) before releasing a reset code"
        }
        CardLifecycle::Revoked { .. } => {
            "is revoked; a PIN reset cannot bring it back — `lanyard-ca admin reissue-card` \
             gives it a new enrolment code"
        }
    };
    Err(CaError::CardNotUsable(format!("card {card_id} {reason}")))
}
