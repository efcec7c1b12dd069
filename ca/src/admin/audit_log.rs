//! Reading the audit log for the IT desk: records after a sequence number,
//! optionally of one card, and on request a check of the whole hash chain
//! that names the first record that does not chain. The read is audited too.

use serde_json::json;

use super::Caller;
use crate::audit::AuditAction;
use crate::card_id::CardId;
use crate::error::CaError;
use crate::store::{AuditRecord, Store};

/// Records returned when the caller asks for no particular number.
pub const DEFAULT_LIMIT: u32 = 1000;
/// Most records returned at once.
pub const MAX_LIMIT: u32 = 10_000;

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this card's records.
    pub card_id: Option<CardId>,
    /// Only records with a larger sequence number.
    pub after_seq: i64,
    /// At most this many (0: [`DEFAULT_LIMIT`]; capped at [`MAX_LIMIT`]).
    pub limit: u32,
    /// Also check the whole chain.
    pub verify: bool,
}

/// The result of checking the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// Whether every record chains.
    pub intact: bool,
    /// Records that verified (all of them when intact; those before the break otherwise).
    pub records: u64,
    /// The first record that does not chain (0 when intact).
    pub first_broken_seq: i64,
}

/// Records and, if asked, the chain check.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// The records, in order.
    pub records: Vec<AuditRecord>,
    /// The chain check, when asked for.
    pub verification: Option<Verification>,
}

/// Reads records (and checks the chain if asked), then audits the read.
pub async fn read(
    store: &Store,
    caller: &Caller,
    query: &AuditQuery,
) -> Result<AuditPage, CaError> {
    let limit = match query.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let records = store
        .audit_records(query.card_id.as_ref(), query.after_seq, i64::from(limit))
        .await?;
    let verification = if query.verify {
        Some(match store.verify_audit().await? {
            Ok(records) => Verification {
                intact: true,
                records,
                first_broken_seq: 0,
            },
            Err(seq) => Verification {
                intact: false,
                records: store.audit_rows_before(seq).await?,
                first_broken_seq: seq,
            },
        })
    } else {
        None
    };
    if let Some(v) = verification.filter(|v| !v.intact) {
        tracing::error!(first_broken_seq = v.first_broken_seq, "audit chain broken");
    }
    let event = caller.event(
        AuditAction::AuditRead,
        query.card_id.as_ref().map(CardId::as_str),
        json!({
            "after_seq": query.after_seq,
            "records": records.len(),
            "verify": verification.map(|v| json!({
                "intact": v.intact,
                "first_broken_seq": v.first_broken_seq,
            })),
        }),
    );
    store.record_audit(&event).await?;
    Ok(AuditPage {
        records,
        verification,
    })
}
