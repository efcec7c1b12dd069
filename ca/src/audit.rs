//! The append-only, hash-chained audit log: who did what, to which card, from
//! where and when. Each row's hash covers the previous row's hash and its own
//! content, so an edited or deleted row breaks the chain. Never holds a code or key.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::CaError;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// `init` created this CA.
    CaInitialised,
    /// An IT-desk operator issued a card and its enrolment code.
    CardIssued,
    /// A code was redeemed and a certificate issued.
    Enrolled,
    /// An enrolment code was unknown, expired or already used.
    EnrolFailed,
    /// A valid code came with a request that was refused; the code stays usable.
    EnrolBadRequest,
    /// An enrolment retried after a lost answer got the certificates already issued.
    EnrolRepeated,
    // --- IT-desk administration ---
    /// A caller without a valid operator certificate was refused by the Admin service.
    AdminAuthFailed,
    /// An operator's Admin call was refused (unknown card, wrong state, bad argument).
    AdminRefused,
    /// An operator listed cards.
    CardsListed,
    /// An operator looked at one card.
    CardShown,
    /// An operator read the audit log.
    AuditRead,
    /// An operator listed the pending approvals.
    ApprovalsListed,
    /// A card got a new enrolment code; its certificates were revoked (superseded).
    CardReissued,
    /// A card and all its certificates were revoked.
    CardRevoked,
    /// A card was suspended (its certificates on hold).
    CardSuspended,
    /// A suspended card was resumed.
    CardResumed,
    /// A one-time PIN reset code was released for a card.
    ResetCodeReleased,
    /// An operator certificate was issued and registered.
    OperatorAdded,
    /// An action waits for a second operator's approval.
    ApprovalRequested,
    /// A second operator approved an action (which is then performed).
    ApprovalGranted,
    // --- end of IT-desk administration ---
    // --- card lifecycle (renewal, PIN reset) ---
    /// A card renewed its certificate with a new key.
    Renewed,
    /// A renewal was refused: no, a foreign or an unknown client certificate.
    RenewalDenied,
    /// A renewal was refused because of the card's or certificate's state.
    RenewalRefused,
    /// A renewal retried after a lost answer got the certificates already issued.
    RenewalRepeated,
    /// A reset code was redeemed: new certificate, old ones revoked (superseded).
    PinReset,
    /// A reset code was wrong, expired, used or absent.
    PinResetFailed,
    /// The reset code's tries ran out: the card was revoked and its keys must go.
    ResetCodeExhausted,
    // --- end of card lifecycle ---
    // --- derived enrolment ---
    /// A card was issued by derivation from a physical smartcard.
    DerivedIssuance,
    /// A derived enrolment was refused (which check, and the physical certificate).
    DeriveRefused,
    // --- end of derived enrolment ---
}

impl AuditAction {
    /// The name stored in the `action` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::CaInitialised => "ca_initialised",
            AuditAction::CardIssued => "card_issued",
            AuditAction::Enrolled => "enrolled",
            AuditAction::EnrolFailed => "enrol_failed",
            AuditAction::EnrolBadRequest => "enrol_bad_request",
            AuditAction::EnrolRepeated => "enrol_repeated",
            // --- IT-desk administration ---
            AuditAction::AdminAuthFailed => "admin_auth_failed",
            AuditAction::AdminRefused => "admin_refused",
            AuditAction::CardsListed => "cards_listed",
            AuditAction::CardShown => "card_shown",
            AuditAction::AuditRead => "audit_read",
            AuditAction::ApprovalsListed => "approvals_listed",
            AuditAction::CardReissued => "card_reissued",
            AuditAction::CardRevoked => "card_revoked",
            AuditAction::CardSuspended => "card_suspended",
            AuditAction::CardResumed => "card_resumed",
            AuditAction::ResetCodeReleased => "reset_code_released",
            AuditAction::OperatorAdded => "operator_added",
            AuditAction::ApprovalRequested => "approval_requested",
            AuditAction::ApprovalGranted => "approval_granted",
            // --- end of IT-desk administration ---
            // --- card lifecycle ---
            AuditAction::Renewed => "renewed",
            AuditAction::RenewalDenied => "renewal_denied",
            AuditAction::RenewalRefused => "renewal_refused",
            AuditAction::RenewalRepeated => "renewal_repeated",
            AuditAction::PinReset => "pin_reset",
            AuditAction::PinResetFailed => "pin_reset_failed",
            AuditAction::ResetCodeExhausted => "reset_code_exhausted",
            // --- end of card lifecycle ---
            // --- derived enrolment ---
            AuditAction::DerivedIssuance => "derived_issuance",
            AuditAction::DeriveRefused => "derive_refused",
            // --- end of derived enrolment ---
        }
    }
}

/// One audit record before it is chained.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who: `admin:USER` for CLI operators, `peer:ADDRESS` for gRPC clients.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// Which card, when known.
    pub card_id: Option<String>,
    /// Client address, for network requests.
    pub peer: Option<String>,
    /// Further facts as a JSON object (serials, reasons); never secrets.
    pub detail: serde_json::Value,
}

/// The hashed content of a row, in a fixed field order.
#[derive(Serialize)]
struct Hashed<'a> {
    at: &'a str,
    actor: &'a str,
    action: &'a str,
    card_id: Option<&'a str>,
    peer: Option<&'a str>,
    detail: &'a str,
}

fn row_hash(prev_hash: &str, row: &Hashed<'_>) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    // Serialising a struct of strings cannot fail; an empty body would still chain.
    h.update(serde_json::to_vec(row).unwrap_or_default());
    hex::encode(h.finalize())
}

/// Appends `event` at `at`. Call inside a write transaction ([`crate::store::Store::begin_write`])
/// so that reading the last hash and inserting are atomic.
pub async fn append(
    conn: &mut AnyConnection,
    event: &AuditEvent,
    at: OffsetDateTime,
) -> Result<(), CaError> {
    let prev_hash: String = sqlx::query("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get("hash"))
        .transpose()?
        .unwrap_or_else(|| GENESIS_HASH.to_string());
    let at = at.format(&Rfc3339).unwrap_or_default();
    let detail = event.detail.to_string();
    let row = Hashed {
        at: &at,
        actor: &event.actor,
        action: event.action.as_str(),
        card_id: event.card_id.as_deref(),
        peer: event.peer.as_deref(),
        detail: &detail,
    };
    let hash = row_hash(&prev_hash, &row);
    sqlx::query(
        "INSERT INTO audit (at, actor, action, card_id, peer, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.at)
    .bind(row.actor)
    .bind(row.action)
    .bind(row.card_id)
    .bind(row.peer)
    .bind(row.detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Recomputes the whole chain; returns the number of rows, or the first broken `seq`.
pub async fn verify_chain(conn: &mut AnyConnection) -> Result<Result<u64, i64>, CaError> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, card_id, peer, detail, prev_hash, hash FROM audit ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut prev = GENESIS_HASH.to_string();
    let mut n = 0u64;
    for r in rows {
        let seq: i64 = r.try_get("seq")?;
        let stored_prev: String = r.try_get("prev_hash")?;
        let stored_hash: String = r.try_get("hash")?;
        let at: String = r.try_get("at")?;
        let actor: String = r.try_get("actor")?;
        let action: String = r.try_get("action")?;
        let card_id: Option<String> = r.try_get("card_id")?;
        let peer: Option<String> = r.try_get("peer")?;
        let detail: String = r.try_get("detail")?;
        let row = Hashed {
            at: &at,
            actor: &actor,
            action: &action,
            card_id: card_id.as_deref(),
            peer: peer.as_deref(),
            detail: &detail,
        };
        if stored_prev != prev || row_hash(&prev, &row) != stored_hash {
            return Ok(Err(seq));
        }
        prev = stored_hash;
        n += 1;
    }
    Ok(Ok(n))
}

/// `admin:$USER` (or `admin:unknown`), the actor for CLI operations.
pub fn admin_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("admin:{user}")
}
