//! The IT desk's queries: cards with their effective state and certificates,
//! the state changes (revoke, suspend, resume, re-issue, reset code release),
//! operators, dual-control approvals and audit reading. Writes take the
//! connection of a write transaction the caller opened with
//! [`Store::begin_write`], so the check and the change are atomic.

use lanyard_certs::RevocationReason;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::lifecycle::revocation_of;
use super::{CardLifecycle, CardRecord, Store};
use crate::card_id::CardId;
use crate::enrolment_code::CodeHash;
use crate::error::CaError;

/// Which cards a listing shows, by the name of their [`CardLifecycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Waiting for (re-)enrolment.
    Issued,
    /// Enrolled and usable.
    Active,
    /// On hold.
    Suspended,
    /// Revoked.
    Revoked,
}

impl StateFilter {
    /// Every filter, in lifecycle order.
    pub const ALL: [StateFilter; 4] = [
        StateFilter::Issued,
        StateFilter::Active,
        StateFilter::Suspended,
        StateFilter::Revoked,
    ];

    /// The state's name, as [`CardLifecycle::name`] gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Issued => "issued",
            StateFilter::Active => "active",
            StateFilter::Suspended => "suspended",
            StateFilter::Revoked => "revoked",
        }
    }

    /// The filter named `text` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.as_str() == t)
    }
}

/// A card with its effective state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    /// Who the card is for.
    pub card: CardRecord,
    /// Where it is in its life.
    pub lifecycle: CardLifecycle,
    /// When it was issued, Unix seconds.
    pub created_at: i64,
    /// not_after of its newest certificate, 0 if none.
    pub cert_not_after: i64,
}

/// One certificate of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Lower-case hex serial.
    pub serial: String,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// When it was issued.
    pub issued_at: i64,
    /// The kind of key it certifies.
    pub key_kind: String,
    /// When and why it was revoked.
    pub revoked: Option<(i64, RevocationReason)>,
    /// When a renewal replaced it.
    pub superseded_at: Option<i64>,
    /// "authentication" or "signing" (see [`crate::store::CertPurpose`]).
    pub purpose: String,
}

/// The outstanding reset code of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetStatus {
    /// Wrong codes still allowed.
    pub tries_left: i64,
    /// When it expires.
    pub expires_at: i64,
}

/// A card with its certificates (newest first) and any outstanding reset code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDetail {
    /// The card.
    pub summary: CardSummary,
    /// Its certificates, newest first.
    pub certificates: Vec<CertificateSummary>,
    /// The live reset code, if any.
    pub reset: Option<ResetStatus>,
}

/// A registered IT-desk operator certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// Lower-case hex serial of the certificate.
    pub serial: String,
    /// The operator's name (the certificate's CN).
    pub name: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its validity end, Unix seconds.
    pub not_after: i64,
    /// When it was registered.
    pub added_at: i64,
    /// The audit actor who added it.
    pub added_by: String,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// An action waiting for (or given) a second operator's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Its id.
    pub approval_id: String,
    /// "add-operator" or "reset-pin".
    pub action: String,
    /// The card id or the new operator's name.
    pub subject: String,
    /// JSON of what to do (never a secret).
    pub request: String,
    /// Serial of the requesting operator's certificate.
    pub requested_by: String,
    /// The requesting operator's name, when the certificate is registered.
    pub requester_name: Option<String>,
    /// When it was requested.
    pub requested_at: i64,
    /// Serial of the approving operator's certificate.
    pub decided_by: Option<String>,
    /// When it was approved.
    pub decided_at: Option<i64>,
}

/// One audit row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: i64,
    /// RFC 3339 time.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which card.
    pub card_id: Option<String>,
    /// From where.
    pub peer: Option<String>,
    /// JSON detail.
    pub detail: String,
    /// The row's chain hash.
    pub hash: String,
}

/// Selects card summaries; `WHERE`/`ORDER BY` are appended.
const CARD_SELECT: &str = "SELECT c.card_id, c.holder_name, c.user_id, c.role, c.state, \
     c.created_at, c.suspended_at, c.revoked_at, c.revocation_reason, \
     COALESCE((SELECT MAX(t.not_after) FROM certificates t WHERE t.card_id = c.card_id), 0) \
     AS cert_not_after FROM cards c";

/// The state's name as SQL, matching [`CardLifecycle::from_row`].
const EFFECTIVE_STATE: &str = "CASE WHEN c.state <> 'revoked' AND c.suspended_at IS NOT NULL \
     THEN 'suspended' ELSE c.state END";

fn card_summary(row: &AnyRow) -> Result<CardSummary, CaError> {
    let card = CardRecord::from_row(row)?;
    Ok(CardSummary {
        lifecycle: CardLifecycle::from_row(row, &card.card_id)?,
        card,
        created_at: row.try_get("created_at")?,
        cert_not_after: row.try_get("cert_not_after")?,
    })
}

fn approval_record(row: &AnyRow) -> Result<ApprovalRecord, CaError> {
    Ok(ApprovalRecord {
        approval_id: row.try_get("approval_id")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        request: row.try_get("request")?,
        requested_by: row.try_get("requested_by")?,
        requester_name: row.try_get("requester_name")?,
        requested_at: row.try_get("requested_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// Selects approvals with the requester's name.
const APPROVAL_SELECT: &str = "SELECT a.approval_id, a.action, a.subject, a.request, \
     a.requested_by, o.name AS requester_name, a.requested_at, a.decided_by, a.decided_at \
     FROM approvals a LEFT JOIN operators o ON o.serial = a.requested_by";

impl Store {
    /// Cards, newest first, optionally only those in `state` and of `user_id`.
    pub async fn card_summaries(
        &self,
        state: Option<StateFilter>,
        user_id: Option<&str>,
    ) -> Result<Vec<CardSummary>, CaError> {
        let sql = format!(
            "{CARD_SELECT} WHERE ($1 = '' OR {EFFECTIVE_STATE} = $1) \
             AND ($2 = '' OR c.user_id = $2) ORDER BY c.created_at DESC, c.card_id"
        );
        let rows = sqlx::query(&sql)
            .bind(state.map(StateFilter::as_str).unwrap_or(""))
            .bind(user_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(card_summary).collect()
    }

    /// The card with its certificates and reset code, outside a transaction.
    pub async fn card_detail(
        &self,
        card_id: &CardId,
        now: i64,
    ) -> Result<Option<CardDetail>, CaError> {
        let mut conn = self.pool.acquire().await?;
        card_detail(&mut conn, card_id, now).await
    }

    /// Pending approvals, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, CaError> {
        let sql = format!(
            "{APPROVAL_SELECT} WHERE a.decided_at IS NULL ORDER BY a.requested_at, a.approval_id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(approval_record).collect()
    }

    /// The registered operator certificate with `serial`.
    pub async fn operator(&self, serial: &str) -> Result<Option<OperatorRecord>, CaError> {
        let mut conn = self.pool.acquire().await?;
        operator(&mut conn, serial).await
    }

    /// How many audit rows come before `seq`.
    pub async fn audit_rows_before(&self, seq: i64) -> Result<u64, CaError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit WHERE seq < $1")
            .bind(seq)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Audit rows with `seq > after_seq`, of `card_id` if given, at most `limit`, in order.
    pub async fn audit_records(
        &self,
        card_id: Option<&CardId>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, CaError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, card_id, peer, detail, hash FROM audit \
             WHERE seq > $1 AND ($2 = '' OR card_id = $2) ORDER BY seq LIMIT $3",
        )
        .bind(after_seq)
        .bind(card_id.map(CardId::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    card_id: r.try_get("card_id")?,
                    peer: r.try_get("peer")?,
                    detail: r.try_get("detail")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }
}

/// The card `card_id` with its effective state.
pub async fn card_summary_in(
    conn: &mut AnyConnection,
    card_id: &CardId,
) -> Result<Option<CardSummary>, CaError> {
    let sql = format!("{CARD_SELECT} WHERE c.card_id = $1");
    let row = sqlx::query(&sql)
        .bind(card_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(card_summary).transpose()
}

/// The card with its certificates (newest first) and live reset code.
pub async fn card_detail(
    conn: &mut AnyConnection,
    card_id: &CardId,
    now: i64,
) -> Result<Option<CardDetail>, CaError> {
    let Some(summary) = card_summary_in(conn, card_id).await? else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT serial, not_before, not_after, issued_at, key_kind, revoked_at, \
         revocation_reason, superseded_at, purpose FROM certificates WHERE card_id = $1 \
         ORDER BY issued_at DESC, not_before DESC, serial",
    )
    .bind(card_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let certificates = rows
        .iter()
        .map(|r| {
            Ok(CertificateSummary {
                serial: r.try_get("serial")?,
                not_before: r.try_get("not_before")?,
                not_after: r.try_get("not_after")?,
                issued_at: r.try_get("issued_at")?,
                key_kind: r.try_get("key_kind")?,
                revoked: revocation_of(r)?,
                superseded_at: r.try_get("superseded_at")?,
                purpose: r.try_get("purpose")?,
            })
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let reset = sqlx::query(
        "SELECT tries_left, expires_at FROM reset_codes WHERE card_id = $1 \
         AND used_at IS NULL AND dead_at IS NULL AND expires_at > $2 AND tries_left > 0 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(card_id.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| -> Result<ResetStatus, CaError> {
        Ok(ResetStatus {
            tries_left: r.try_get("tries_left")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()?;
    Ok(Some(CardDetail {
        summary,
        certificates,
        reset,
    }))
}

/// Ends every unused enrolment code and live reset code of the card.
async fn kill_codes(conn: &mut AnyConnection, card_id: &CardId, now: i64) -> Result<(), CaError> {
    sqlx::query(
        "UPDATE enrolment_codes SET expires_at = $2 \
         WHERE card_id = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(card_id.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE reset_codes SET dead_at = $2 \
         WHERE card_id = $1 AND used_at IS NULL AND dead_at IS NULL",
    )
    .bind(card_id.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes the card and every unrevoked certificate of it with `reason`,
/// and ends its outstanding codes.
pub async fn revoke_card(
    conn: &mut AnyConnection,
    card_id: &CardId,
    reason: RevocationReason,
    now: i64,
) -> Result<(), CaError> {
    let reason = i64::from(reason.code());
    sqlx::query(
        "UPDATE cards SET state = 'revoked', revoked_at = $2, revocation_reason = $3, \
         suspended_at = NULL WHERE card_id = $1",
    )
    .bind(card_id.as_str())
    .bind(now)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE certificates SET revoked_at = $2, revocation_reason = $3 \
         WHERE card_id = $1 AND revoked_at IS NULL",
    )
    .bind(card_id.as_str())
    .bind(now)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    kill_codes(conn, card_id, now).await
}

/// Puts the card on hold.
pub async fn suspend_card(
    conn: &mut AnyConnection,
    card_id: &CardId,
    now: i64,
) -> Result<(), CaError> {
    sqlx::query("UPDATE cards SET suspended_at = $2 WHERE card_id = $1")
        .bind(card_id.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the card off hold.
pub async fn resume_card(conn: &mut AnyConnection, card_id: &CardId) -> Result<(), CaError> {
    sqlx::query("UPDATE cards SET suspended_at = NULL WHERE card_id = $1")
        .bind(card_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Re-issues the card: back to 'issued' with a new enrolment code, its
/// unexpired unrevoked certificates revoked as superseded, old codes ended.
pub async fn reissue_card(
    conn: &mut AnyConnection,
    card_id: &CardId,
    code_hash: &CodeHash,
    code_expires_at: i64,
    now: i64,
) -> Result<(), CaError> {
    sqlx::query(
        "UPDATE cards SET state = 'issued', suspended_at = NULL, revoked_at = NULL, \
         revocation_reason = NULL WHERE card_id = $1",
    )
    .bind(card_id.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE certificates SET revoked_at = $2, revocation_reason = $3 \
         WHERE card_id = $1 AND revoked_at IS NULL AND not_after > $2",
    )
    .bind(card_id.as_str())
    .bind(now)
    .bind(i64::from(RevocationReason::Superseded.code()))
    .execute(&mut *conn)
    .await?;
    kill_codes(conn, card_id, now).await?;
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, card_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(code_hash.to_hex())
    .bind(card_id.as_str())
    .bind(now)
    .bind(code_expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A reset code about to be stored (only its hash).
#[derive(Debug)]
pub struct NewResetCode<'a> {
    /// The card it is bound to.
    pub card_id: &'a CardId,
    /// SHA-256 of the normalised code.
    pub code_hash: &'a CodeHash,
    /// The audit actor releasing it.
    pub created_by: &'a str,
    /// When it expires.
    pub expires_at: i64,
    /// Wrong codes allowed.
    pub tries: i64,
}

/// Stores a new reset code for the card, ending any earlier live one.
pub async fn insert_reset_code(
    conn: &mut AnyConnection,
    code: &NewResetCode<'_>,
    now: i64,
) -> Result<(), CaError> {
    sqlx::query(
        "UPDATE reset_codes SET dead_at = $2 \
         WHERE card_id = $1 AND used_at IS NULL AND dead_at IS NULL",
    )
    .bind(code.card_id.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO reset_codes (card_id, code_hash, created_at, created_by, expires_at, tries_left) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(code.card_id.as_str())
    .bind(code.code_hash.to_hex())
    .bind(now)
    .bind(code.created_by)
    .bind(code.expires_at)
    .bind(code.tries)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The registered operator certificate with `serial`.
pub async fn operator(
    conn: &mut AnyConnection,
    serial: &str,
) -> Result<Option<OperatorRecord>, CaError> {
    let row = sqlx::query(
        "SELECT serial, name, der, not_after, added_at, added_by, revoked_at \
         FROM operators WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| -> Result<OperatorRecord, CaError> {
        Ok(OperatorRecord {
            serial: r.try_get("serial")?,
            name: r.try_get("name")?,
            der: r.try_get("der")?,
            not_after: r.try_get("not_after")?,
            added_at: r.try_get("added_at")?,
            added_by: r.try_get("added_by")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Whether no card or operator certificate was ever recorded with `serial`.
pub async fn serial_is_free(conn: &mut AnyConnection, serial: &str) -> Result<bool, CaError> {
    let taken = sqlx::query(
        "SELECT 1 FROM certificates WHERE serial = $1 UNION ALL SELECT 1 FROM operators WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(taken.is_none())
}

/// Registers an operator certificate.
pub async fn insert_operator(conn: &mut AnyConnection, op: &OperatorRecord) -> Result<(), CaError> {
    sqlx::query(
        "INSERT INTO operators (serial, name, der, not_after, added_at, added_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&op.serial)
    .bind(&op.name)
    .bind(op.der.as_slice())
    .bind(op.not_after)
    .bind(op.added_at)
    .bind(&op.added_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a request for approval.
pub async fn insert_approval(
    conn: &mut AnyConnection,
    approval: &ApprovalRecord,
) -> Result<(), CaError> {
    sqlx::query(
        "INSERT INTO approvals (approval_id, action, subject, request, requested_by, requested_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&approval.approval_id)
    .bind(&approval.action)
    .bind(&approval.subject)
    .bind(&approval.request)
    .bind(&approval.requested_by)
    .bind(approval.requested_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The approval `approval_id`, decided or not.
pub async fn approval(
    conn: &mut AnyConnection,
    approval_id: &str,
) -> Result<Option<ApprovalRecord>, CaError> {
    let sql = format!("{APPROVAL_SELECT} WHERE a.approval_id = $1");
    let row = sqlx::query(&sql)
        .bind(approval_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(approval_record).transpose()
}

/// Marks the approval approved by the operator certificate `by`; `false`
/// if it was already decided.
pub async fn mark_approved(
    conn: &mut AnyConnection,
    approval_id: &str,
    by: &str,
    now: i64,
) -> Result<bool, CaError> {
    let done = sqlx::query(
        "UPDATE approvals SET decided_by = $2, decided_at = $3 \
         WHERE approval_id = $1 AND decided_at IS NULL",
    )
    .bind(approval_id)
    .bind(by)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
