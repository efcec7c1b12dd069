//! Dual control: an action named in `require_second_operator` is recorded as
//! a pending approval (what to do, never a secret: a reset code does not exist
//! yet, a CSR is public) and happens only when a different operator approves
//! it; the approver receives its result. Requested, approved and performed
//! are each an audit record; approving and performing commit together.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::operators::{self, IssuedOperator, NewOperator};
use super::reset_code::{self, ReleasedCode};
use super::{now_unix, Caller, OperatorId};
use crate::audit::AuditAction;
use crate::card_id::CardId;
use crate::config::CaConfig;
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::store::admin::{self as q, ApprovalRecord};
use crate::store::Store;

/// Hex characters of an approval id.
const APPROVAL_ID_CHARS: usize = 16;

/// An action that may need a second operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DualAction {
    /// Adding an operator.
    AddOperator,
    /// Releasing a PIN reset code.
    ResetPin,
}

impl DualAction {
    /// The name used in `require_second_operator` and stored in `approvals`.
    pub fn as_str(self) -> &'static str {
        match self {
            DualAction::AddOperator => "add-operator",
            DualAction::ResetPin => "reset-pin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [DualAction::AddOperator, DualAction::ResetPin]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

/// An action waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// Its id, to pass to `approve`.
    pub approval_id: String,
    /// "add-operator" or "reset-pin".
    pub action: String,
    /// Who asked: `operator:NAME/SERIAL`.
    pub requested_by: String,
    /// When, Unix seconds.
    pub requested_at: i64,
    /// The card id or the new operator's name.
    pub subject: String,
}

impl From<&ApprovalRecord> for PendingApproval {
    fn from(r: &ApprovalRecord) -> Self {
        PendingApproval {
            approval_id: r.approval_id.clone(),
            action: r.action.clone(),
            requested_by: format!(
                "operator:{}/{}",
                r.requester_name.as_deref().unwrap_or("?"),
                r.requested_by
            ),
            requested_at: r.requested_at,
            subject: r.subject.clone(),
        }
    }
}

/// What an approved action produced, for the approver.
#[derive(Debug)]
pub enum Approved {
    /// A released reset code.
    ResetPin(ReleasedCode),
    /// An issued operator certificate.
    AddOperator(IssuedOperator),
}

/// The operator whose `action` must wait for a second operator's approval,
/// if the configuration asks for one (the CA host's own commands never wait).
pub fn requester<'a>(
    config: &CaConfig,
    caller: &'a Caller,
    action: DualAction,
) -> Option<&'a OperatorId> {
    caller
        .operator_id()
        .filter(|_| config.needs_second_operator(action.as_str()))
}

/// Records `action` on `subject` as waiting for a second operator.
pub async fn request(
    store: &Store,
    caller: &Caller,
    requester: &OperatorId,
    action: DualAction,
    subject: &str,
    request: Value,
) -> Result<PendingApproval, CaError> {
    let mut bytes = [0u8; APPROVAL_ID_CHARS / 2];
    getrandom::getrandom(&mut bytes)?;
    let record = ApprovalRecord {
        approval_id: hex::encode(bytes),
        action: action.as_str().into(),
        subject: subject.into(),
        request: request.to_string(),
        requested_by: requester.serial.clone(),
        requester_name: Some(requester.name.clone()),
        requested_at: now_unix(),
        decided_by: None,
        decided_at: None,
    };
    let card_id = (action == DualAction::ResetPin).then_some(subject);
    let event = caller.event(
        AuditAction::ApprovalRequested,
        card_id,
        json!({
            "approval_id": record.approval_id,
            "action": record.action,
            "subject": record.subject,
        }),
    );
    let mut tx = store.begin_write().await?;
    q::insert_approval(&mut tx, &record).await?;
    crate::audit::append(&mut tx, &event, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    tracing::info!(approval_id = %record.approval_id, action = %record.action, actor = %event.actor, "approval requested");
    Ok(PendingApproval::from(&record))
}

/// The approvals still pending, oldest first; the listing is audited.
pub async fn list(store: &Store, caller: &Caller) -> Result<Vec<PendingApproval>, CaError> {
    let pending: Vec<PendingApproval> = store
        .pending_approvals()
        .await?
        .iter()
        .map(PendingApproval::from)
        .collect();
    let event = caller.event(
        AuditAction::ApprovalsListed,
        None,
        json!({ "pending": pending.len() }),
    );
    store.record_audit(&event).await?;
    Ok(pending)
}

/// Approves `approval_id` as `approver` and performs the action, all in one
/// transaction: the approval is marked, audited, and the action done (or
/// nothing at all, e.g. if the card was revoked in the meantime).
pub async fn approve(
    store: &Store,
    config: &CaConfig,
    issuer: &IssuingCa,
    caller: &Caller,
    approval_id: &str,
) -> Result<Approved, CaError> {
    let approval_id = approval_id.trim().to_ascii_lowercase();
    let unknown = || CaError::UnknownApproval {
        approval_id: approval_id.chars().take(40).collect(),
    };
    if approval_id.len() != APPROVAL_ID_CHARS || !approval_id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(unknown());
    }
    let Some(approver) = caller.operator_id() else {
        return Err(CaError::NotOperator {
            reason: "only an operator (over the Admin service) can approve".into(),
        });
    };
    let now = now_unix();
    let mut tx = store.begin_write().await?;
    let record = q::approval(&mut tx, &approval_id)
        .await?
        .ok_or_else(unknown)?;
    if let Some(by) = &record.decided_by {
        let name = q::operator(&mut tx, by).await?.map(|o| o.name);
        return Err(CaError::AlreadyApproved {
            approval_id,
            by: format!("operator:{}/{by}", name.as_deref().unwrap_or("?")),
        });
    }
    // The same person with another certificate is still the same person.
    if record.requested_by == approver.serial
        || record.requester_name.as_deref() == Some(approver.name.as_str())
    {
        return Err(CaError::SelfApproval { approval_id });
    }
    if !q::mark_approved(&mut tx, &approval_id, &approver.serial, now).await? {
        return Err(CaError::AlreadyApproved {
            approval_id,
            by: "another operator".into(),
        });
    }
    let pending = PendingApproval::from(&record);
    let card_id = match DualAction::parse(&record.action) {
        Some(DualAction::ResetPin) => Some(CardId::parse(&record.subject)?),
        _ => None,
    };
    let event = caller.event(
        AuditAction::ApprovalGranted,
        card_id.as_ref().map(CardId::as_str),
        json!({
            "approval_id": approval_id,
            "action": record.action,
            "subject": record.subject,
            "requested_by": pending.requested_by,
        }),
    );
    crate::audit::append(&mut tx, &event, OffsetDateTime::now_utc()).await?;
    let approved = match (DualAction::parse(&record.action), card_id) {
        (Some(DualAction::ResetPin), Some(card_id)) => Approved::ResetPin(
            reset_code::release_in(&mut tx, config, caller, &card_id, Some(&approval_id)).await?,
        ),
        (Some(DualAction::AddOperator), _) => {
            let new = new_operator(&record)?;
            Approved::AddOperator(
                operators::add_in(&mut tx, config, issuer, caller, &new, Some(&approval_id))
                    .await?,
            )
        }
        _ => {
            return Err(CaError::BadDatabase(format!(
                "approval {approval_id} has the unknown action {:?}",
                record.action
            )))
        }
    };
    tx.commit().await?;
    tracing::info!(approval_id = %approval_id, action = %record.action, actor = %event.actor, "approval granted and performed");
    Ok(approved)
}

/// The operator request stored with an add-operator approval.
fn new_operator(record: &ApprovalRecord) -> Result<NewOperator, CaError> {
    let bad = |what: &str| {
        CaError::BadDatabase(format!(
            "approval {} holds an unreadable request ({what})",
            record.approval_id
        ))
    };
    let request: Value = serde_json::from_str(&record.request).map_err(|_| bad("not JSON"))?;
    let name = request["name"].as_str().ok_or_else(|| bad("no name"))?;
    let csr_hex = request["csr_der_hex"]
        .as_str()
        .ok_or_else(|| bad("no CSR"))?;
    let csr_der = hex::decode(csr_hex).map_err(|_| bad("CSR not hex"))?;
    Ok(NewOperator {
        name: name.to_string(),
        csr_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Actor;
    use crate::store::test_store;
    use crate::test_issuer::test_issuer;

    fn operator(name: &str, serial: &str) -> (OperatorId, Caller) {
        let id = OperatorId {
            name: name.into(),
            serial: serial.into(),
        };
        let caller = Caller {
            actor: Actor::Operator(id.clone()),
            peer: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        };
        (id, caller)
    }

    async fn register(store: &Store, name: &str, serial: &str) {
        let mut tx = store.begin_write().await.unwrap();
        q::insert_operator(
            &mut tx,
            &crate::store::OperatorRecord {
                serial: serial.into(),
                name: name.into(),
                der: vec![0x30],
                not_after: now_unix() + 3600,
                added_at: now_unix(),
                added_by: "admin:test".into(),
                revoked_at: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn requests_are_listed_and_never_self_approved() {
        let (_db, store) = test_store().await;
        register(&store, "Alice", "aa").await;
        register(&store, "Alice", "a2").await;
        register(&store, "Bea", "bb").await;
        let (alice, alice_caller) = operator("Alice", "aa");
        let pending = request(
            &store,
            &alice_caller,
            &alice,
            DualAction::ResetPin,
            "0123456789AB",
            json!({ "card_id": "0123456789AB" }),
        )
        .await
        .unwrap();
        assert_eq!(pending.requested_by, "operator:Alice/aa");
        assert_eq!(
            list(&store, &alice_caller).await.unwrap(),
            vec![pending.clone()]
        );

        // The requester, and the same person with another certificate, are refused.
        let config = CaConfig::new("Test Trust");
        let issuer = test_issuer();
        for (name, serial) in [("Alice", "aa"), ("Alice", "a2")] {
            let (_, c) = operator(name, serial);
            let err = approve(&store, &config, &issuer, &c, &pending.approval_id)
                .await
                .unwrap_err();
            assert!(matches!(err, CaError::SelfApproval { .. }), "{err}");
        }
        // Another operator: the card does not exist, so nothing happens and it stays pending.
        let (_, bea) = operator("Bea", "bb");
        let err = approve(&store, &config, &issuer, &bea, &pending.approval_id)
            .await
            .unwrap_err();
        assert!(matches!(err, CaError::UnknownCard(_)), "{err}");
        assert_eq!(list(&store, &alice_caller).await.unwrap().len(), 1);
        // Unknown and malformed ids.
        for id in ["00000000000000aa", "nope", ""] {
            let err = approve(&store, &config, &issuer, &bea, id)
                .await
                .unwrap_err();
            assert!(
                matches!(err, CaError::UnknownApproval { .. }),
                "{id}: {err}"
            );
        }
    }
}
