//! The IT desk's use cases, free of gRPC and CLI types: the Admin service
//! and the CA-host bootstrap commands (`lanyard-ca admin … --dir`) both call
//! them, so a card is issued, revoked or reset the same way either way.
//! Every state change and its audit record commit in one transaction.

pub mod approvals;
pub mod audit_log;
pub mod cards;
pub mod operators;
pub mod reset_code;

use std::net::IpAddr;

use serde_json::Value;

use crate::audit::{admin_actor, AuditAction, AuditEvent};
use crate::error::CaError;
use crate::store::Store;

/// An IT-desk operator, as their registered certificate names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorId {
    /// The certificate's common name.
    pub name: String,
    /// The certificate's serial, lower-case hex.
    pub serial: String,
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator authenticated by their certificate (the Admin service).
    Operator(OperatorId),
    /// A user on the CA host working on the CA directory (`--dir`).
    Host {
        /// The audit actor, `admin:USER`.
        actor: String,
    },
}

/// Who acts, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub actor: Actor,
    /// The client's address, for network calls.
    pub peer: Option<IpAddr>,
}

impl Caller {
    /// The user running `lanyard-ca admin … --dir` on the CA host.
    pub fn host() -> Self {
        Caller {
            actor: Actor::Host {
                actor: admin_actor(),
            },
            peer: None,
        }
    }

    /// An operator calling the Admin service from `peer`.
    pub fn operator(id: OperatorId, peer: IpAddr) -> Self {
        Caller {
            actor: Actor::Operator(id),
            peer: Some(peer),
        }
    }

    /// The audit actor: `operator:NAME/SERIAL` or `admin:USER`.
    pub fn audit_actor(&self) -> String {
        match &self.actor {
            Actor::Operator(op) => format!("operator:{}/{}", op.name, op.serial),
            Actor::Host { actor } => actor.clone(),
        }
    }

    /// The operator, if the caller is one.
    pub fn operator_id(&self) -> Option<&OperatorId> {
        match &self.actor {
            Actor::Operator(op) => Some(op),
            Actor::Host { .. } => None,
        }
    }

    /// An audit record of `action` by this caller.
    pub fn event(&self, action: AuditAction, card_id: Option<&str>, detail: Value) -> AuditEvent {
        AuditEvent {
            actor: self.audit_actor(),
            action,
            card_id: card_id.map(str::to_string),
            peer: self.peer.map(|p| p.to_string()),
            detail,
        }
    }
}

/// What an action that may need a second operator did.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It took effect.
    Done(T),
    /// It waits for another operator's approval.
    Pending(approvals::PendingApproval),
}

/// Records that `call` by `caller` was refused with `err`, when the refusal
/// is the caller's doing (unknown card, wrong state, bad argument); internal
/// failures are only logged. A failing audit write is logged, not returned.
pub async fn audit_refusal(
    store: &Store,
    caller: &Caller,
    call: &'static str,
    card_id: Option<&str>,
    err: &CaError,
) {
    let answerable = matches!(
        err,
        CaError::InvalidArgument(_)
            | CaError::BadCsr(_)
            | CaError::UnknownCard(_)
            | CaError::CardNotUsable(_)
            | CaError::UnknownApproval { .. }
            | CaError::AlreadyApproved { .. }
            | CaError::SelfApproval { .. }
    );
    if !answerable {
        tracing::error!(call, error = %err, "admin call failed");
        return;
    }
    tracing::warn!(call, actor = %caller.audit_actor(), error = %err, "admin call refused");
    let event = caller.event(
        AuditAction::AdminRefused,
        card_id,
        serde_json::json!({ "call": call, "reason": err.to_string() }),
    );
    if let Err(e) = store.record_audit(&event).await {
        tracing::error!(error = %e, "could not write audit record");
    }
}

/// Current time as Unix seconds.
pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
