//! The `Admin` gRPC service: every call first authenticates the caller's
//! operator certificate, then converts the request into a use case of
//! [`crate::admin`] and its result back; refusals are audited and mapped to
//! precise statuses. The proto conversions here are shared with the CLI's
//! CA-host mode, so both print the same.

use std::sync::Arc;

use lanyard_proto::ca as pb;
use lanyard_proto::ca::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::admin::approvals::{self, Approved, PendingApproval};
use crate::admin::audit_log::{self, AuditPage, AuditQuery};
use crate::admin::cards::{self, IssuedCard, NewCard};
use crate::admin::operators::{self, IssuedOperator, NewOperator};
use crate::admin::reset_code::{self, ReleasedCode};
use crate::admin::{audit_refusal, Caller, Outcome};
use crate::card_id::CardId;
use crate::config::CaConfig;
use crate::error::CaError;
use crate::issuer::IssuingCa;
use crate::peer::Peer;
use crate::store::{AuditRecord, CardDetail, CardLifecycle, CardSummary, StateFilter, Store};

/// `lanyard.ca.v1.Admin` over the CA's store, configuration and issuing CA.
#[derive(Debug, Clone)]
pub struct AdminService {
    store: Store,
    config: Arc<CaConfig>,
    issuer: Arc<IssuingCa>,
}

impl AdminService {
    /// The service for one CA process.
    pub fn new(store: Store, config: CaConfig, issuer: Arc<IssuingCa>) -> Self {
        AdminService {
            store,
            config: Arc::new(config),
            issuer,
        }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(operators::authenticate(&self.store, &Peer::of(request)).await?)
    }

    /// Audits a refusal and turns the result into the gRPC answer.
    async fn answer<T>(
        &self,
        caller: &Caller,
        call: &'static str,
        card: &str,
        result: Result<T, CaError>,
    ) -> Result<Response<T>, Status> {
        match result {
            Ok(value) => Ok(Response::new(value)),
            Err(err) => {
                let card = CardId::parse(card).ok();
                audit_refusal(
                    &self.store,
                    caller,
                    call,
                    card.as_ref().map(CardId::as_str),
                    &err,
                )
                .await;
                Err(err.into())
            }
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn issue_card(
        &self,
        request: Request<pb::IssueCardRequest>,
    ) -> Result<Response<pb::IssueCardResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let new = NewCard {
            holder_name: req.holder_name,
            user_id: req.user_id,
            role: req.role,
            valid_hours: None,
        };
        let result = cards::issue(&self.store, &self.config, &caller, &new).await;
        self.answer(&caller, "issue-card", "", result.map(|c| issued_card(&c)))
            .await
    }

    async fn reissue_card(
        &self,
        request: Request<pb::ReissueCardRequest>,
    ) -> Result<Response<pb::IssueCardResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            cards::reissue(&self.store, &self.config, &caller, &card_id, None).await
        }
        .await;
        self.answer(
            &caller,
            "reissue-card",
            &req.card_id,
            result.map(|c| issued_card(&c)),
        )
        .await
    }

    async fn list_cards(
        &self,
        request: Request<pb::ListCardsRequest>,
    ) -> Result<Response<pb::ListCardsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let state = state_filter(req.state)?;
            let user = Some(req.user_id.as_str()).filter(|u| !u.trim().is_empty());
            cards::list(&self.store, &caller, state, user).await
        }
        .await;
        let result = result.map(|list| pb::ListCardsResponse {
            cards: list.iter().map(card_summary).collect(),
        });
        self.answer(&caller, "list-cards", "", result).await
    }

    async fn show_card(
        &self,
        request: Request<pb::ShowCardRequest>,
    ) -> Result<Response<pb::CardDetail>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            cards::show(&self.store, &caller, &card_id).await
        }
        .await;
        self.answer(
            &caller,
            "show-card",
            &req.card_id,
            result.map(|d| card_detail(&d)),
        )
        .await
    }

    async fn revoke_card(
        &self,
        request: Request<pb::RevokeCardRequest>,
    ) -> Result<Response<pb::CardDetail>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            let code = u32::try_from(req.reason).map_err(|_| {
                CaError::InvalidArgument(format!("{} is not a revocation reason", req.reason))
            })?;
            let reason = cards::revocation_reason(code)?;
            cards::revoke(&self.store, &caller, &card_id, reason).await
        }
        .await;
        self.answer(
            &caller,
            "revoke",
            &req.card_id,
            result.map(|d| card_detail(&d)),
        )
        .await
    }

    async fn suspend_card(
        &self,
        request: Request<pb::SuspendCardRequest>,
    ) -> Result<Response<pb::CardDetail>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            cards::suspend(&self.store, &caller, &card_id).await
        }
        .await;
        self.answer(
            &caller,
            "suspend",
            &req.card_id,
            result.map(|d| card_detail(&d)),
        )
        .await
    }

    async fn resume_card(
        &self,
        request: Request<pb::ResumeCardRequest>,
    ) -> Result<Response<pb::CardDetail>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            cards::resume(&self.store, &caller, &card_id).await
        }
        .await;
        self.answer(
            &caller,
            "resume",
            &req.card_id,
            result.map(|d| card_detail(&d)),
        )
        .await
    }

    async fn reset_pin(
        &self,
        request: Request<pb::AdminResetPinRequest>,
    ) -> Result<Response<pb::AdminResetPinResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = CardId::parse(&req.card_id)?;
            reset_code::release(&self.store, &self.config, &caller, &card_id).await
        }
        .await;
        let result = result.map(|outcome| match outcome {
            Outcome::Done(code) => released_code(&code),
            Outcome::Pending(p) => pb::AdminResetPinResponse {
                pending_approval: Some(pending(&p)),
                ..Default::default()
            },
        });
        self.answer(&caller, "reset-pin", &req.card_id, result)
            .await
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = async {
            let card_id = match req.card_id.trim() {
                "" => None,
                id => Some(CardId::parse(id)?),
            };
            let query = AuditQuery {
                card_id,
                after_seq: req.after_seq.max(0),
                limit: req.limit,
                verify: req.verify,
            };
            audit_log::read(&self.store, &caller, &query).await
        }
        .await;
        self.answer(
            &caller,
            "audit",
            &req.card_id,
            result.map(|p| audit_page(&p)),
        )
        .await
    }

    async fn add_operator(
        &self,
        request: Request<pb::AddOperatorRequest>,
    ) -> Result<Response<pb::AddOperatorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let new = NewOperator {
            name: req.name,
            csr_der: req.csr_der,
        };
        let result = operators::add(&self.store, &self.config, &self.issuer, &caller, &new).await;
        let result = result.map(|outcome| match outcome {
            Outcome::Done(op) => issued_operator(&op),
            Outcome::Pending(p) => pb::AddOperatorResponse {
                pending_approval: Some(pending(&p)),
                ..Default::default()
            },
        });
        self.answer(&caller, "add-operator", "", result).await
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let result =
            approvals::list(&self.store, &caller)
                .await
                .map(|list| pb::ListApprovalsResponse {
                    pending: list.iter().map(pending).collect(),
                });
        self.answer(&caller, "approvals", "", result).await
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = approvals::approve(
            &self.store,
            &self.config,
            &self.issuer,
            &caller,
            &req.approval_id,
        )
        .await
        .map(|approved| pb::ApproveResponse {
            result: Some(match approved {
                Approved::ResetPin(code) => {
                    pb::approve_response::Result::ResetPin(released_code(&code))
                }
                Approved::AddOperator(op) => {
                    pb::approve_response::Result::AddOperator(issued_operator(&op))
                }
            }),
        });
        self.answer(&caller, "approve", "", result).await
    }
}

/// The listing filter a proto state names (UNSPECIFIED: every state).
pub fn state_filter(state: i32) -> Result<Option<StateFilter>, CaError> {
    match pb::CardState::try_from(state) {
        Ok(pb::CardState::Unspecified) => Ok(None),
        Ok(pb::CardState::Issued) => Ok(Some(StateFilter::Issued)),
        Ok(pb::CardState::Active) => Ok(Some(StateFilter::Active)),
        Ok(pb::CardState::Suspended) => Ok(Some(StateFilter::Suspended)),
        Ok(pb::CardState::Revoked) => Ok(Some(StateFilter::Revoked)),
        Err(_) => Err(CaError::InvalidArgument(format!(
            "{state} is not a card state"
        ))),
    }
}

/// The proto state of a filter (for the CLI's requests).
pub fn proto_state(filter: StateFilter) -> pb::CardState {
    match filter {
        StateFilter::Issued => pb::CardState::Issued,
        StateFilter::Active => pb::CardState::Active,
        StateFilter::Suspended => pb::CardState::Suspended,
        StateFilter::Revoked => pb::CardState::Revoked,
    }
}

fn lifecycle_state(lifecycle: &CardLifecycle) -> pb::CardState {
    match lifecycle {
        CardLifecycle::Issued => pb::CardState::Issued,
        CardLifecycle::Active => pb::CardState::Active,
        CardLifecycle::Suspended { .. } => pb::CardState::Suspended,
        CardLifecycle::Revoked { .. } => pb::CardState::Revoked,
    }
}

fn proto_reason(reason: lanyard_certs::RevocationReason) -> i32 {
    i32::from(reason.code())
}

/// A card summary as the proto carries it.
pub fn card_summary(s: &CardSummary) -> pb::CardSummary {
    pb::CardSummary {
        card_id: s.card.card_id.clone(),
        holder_name: s.card.holder_name.clone(),
        user_id: s.card.user_id.clone(),
        role: s.card.role.clone(),
        state: lifecycle_state(&s.lifecycle).into(),
        created_at: s.created_at,
        cert_not_after: s.cert_not_after,
    }
}

/// A card with its certificates as the proto carries it.
pub fn card_detail(d: &CardDetail) -> pb::CardDetail {
    let revocation_reason = match d.summary.lifecycle {
        CardLifecycle::Revoked { reason, .. } => proto_reason(reason),
        _ => 0,
    };
    pb::CardDetail {
        card: Some(card_summary(&d.summary)),
        certificates: d
            .certificates
            .iter()
            .map(|c| pb::CertificateSummary {
                serial: c.serial.clone(),
                not_before: c.not_before,
                not_after: c.not_after,
                issued_at: c.issued_at,
                key_kind: c.key_kind.clone(),
                revoked_at: c.revoked.map(|(at, _)| at).unwrap_or(0),
                reason: c.revoked.map(|(_, r)| proto_reason(r)).unwrap_or(0),
                purpose: c.purpose.clone(),
            })
            .collect(),
        revocation_reason,
        reset_pending: d.reset.is_some(),
        reset_tries_left: d
            .reset
            .map(|r| u32::try_from(r.tries_left).unwrap_or(0))
            .unwrap_or(0),
    }
}

/// A new card's id and code as the proto carries them.
pub fn issued_card(c: &IssuedCard) -> pb::IssueCardResponse {
    pb::IssueCardResponse {
        card_id: c.card.card_id.clone(),
        code: c.code.grouped().to_string(),
        code_expires_at: c.code_expires_at.unix_timestamp(),
    }
}

/// A released reset code as the proto carries it.
pub fn released_code(c: &ReleasedCode) -> pb::AdminResetPinResponse {
    pb::AdminResetPinResponse {
        code: c.code.grouped().to_string(),
        code_expires_at: c.expires_at,
        tries: c.tries,
        pending_approval: None,
    }
}

/// A new operator certificate as the proto carries it.
pub fn issued_operator(op: &IssuedOperator) -> pb::AddOperatorResponse {
    pb::AddOperatorResponse {
        certificate_der: op.certificate_der.clone(),
        chain_der: op.chain_der.clone(),
        serial: op.serial.clone(),
        pending_approval: None,
    }
}

/// A pending approval as the proto carries it.
pub fn pending(p: &PendingApproval) -> pb::PendingApproval {
    pb::PendingApproval {
        approval_id: p.approval_id.clone(),
        action: p.action.clone(),
        requested_by: p.requested_by.clone(),
        requested_at: p.requested_at,
        subject: p.subject.clone(),
    }
}

fn audit_record(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: r.seq,
        at: r.at.clone(),
        actor: r.actor.clone(),
        action: r.action.clone(),
        card_id: r.card_id.clone().unwrap_or_default(),
        peer: r.peer.clone().unwrap_or_default(),
        detail: r.detail.clone(),
        hash: r.hash.clone(),
    }
}

fn audit_page(p: &AuditPage) -> pb::AuditResponse {
    pb::AuditResponse {
        records: p.records.iter().map(audit_record).collect(),
        verification: p.verification.map(|v| pb::AuditVerification {
            intact: v.intact,
            records: v.records,
            first_broken_seq: v.first_broken_seq,
        }),
    }
}
