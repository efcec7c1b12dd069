//! The card commands: issue-card and list-cards (over the network or, with
//! --dir, on the CA host), reissue-card, show-card, revoke, suspend, resume
//! and reset-pin (over the network).

use lanyard_certs::RevocationReason;
use lanyard_proto::ca as pb;

use super::output::{self, IssuedView};
use super::{CardArgs, IssueCardArgs, ListCardsArgs, ReissueCardArgs, RevokeArgs};
use crate::admin::{audit_refusal, cards, Caller};
use crate::error::CaError;
use crate::service::admin::{card_summary, issued_card, proto_state};
use crate::store::StateFilter;

/// `issue-card`.
pub async fn issue(args: IssueCardArgs) -> Result<(), CaError> {
    let json = args.common.json;
    let holder = Some((args.name.trim(), args.user_id.trim(), args.role.trim()));
    if let Some(host) = args.host.open(&args.common.conn).await? {
        let new = cards::NewCard {
            holder_name: args.name.clone(),
            user_id: args.user_id.clone(),
            role: args.role.clone(),
            valid_hours: args.valid_hours,
        };
        let caller = Caller::host();
        let result = cards::issue(&host.store, &host.config, &caller, &new).await;
        if let Err(e) = &result {
            audit_refusal(&host.store, &caller, "issue-card", None, e).await;
        }
        let organisation = host.config.organisation.clone();
        host.close().await;
        let response = issued_card(&result?);
        return output::issued(
            json,
            &IssuedView {
                response: &response,
                holder,
                organisation: Some(&organisation),
                verb: "issued",
            },
        );
    }
    if args.valid_hours.is_some() {
        return Err(CaError::InvalidArgument(
            "--valid-hours works only with --dir on the CA host; over the network the CA's \
             enrolment_code_validity_hours applies"
                .into(),
        ));
    }
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .issue_card(pb::IssueCardRequest {
            holder_name: args.name.clone(),
            user_id: args.user_id.clone(),
            role: args.role.clone(),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::issued(
        json,
        &IssuedView {
            response: &response,
            holder,
            organisation: None,
            verb: "issued",
        },
    )
}

/// `reissue-card`.
pub async fn reissue(args: ReissueCardArgs) -> Result<(), CaError> {
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .reissue_card(pb::ReissueCardRequest {
            card_id: args.card.clone(),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::issued(
        args.common.json,
        &IssuedView {
            response: &response,
            holder: None,
            organisation: None,
            verb: "re-issued",
        },
    )
}

/// `list-cards`.
pub async fn list(args: ListCardsArgs) -> Result<(), CaError> {
    let state = args
        .state
        .as_deref()
        .map(|s| {
            StateFilter::parse(s).ok_or_else(|| {
                CaError::InvalidArgument(format!(
                    "--state {s:?}: expected issued, active, suspended or revoked"
                ))
            })
        })
        .transpose()?;
    let json = args.common.json;
    if let Some(host) = args.host.open(&args.common.conn).await? {
        let result =
            cards::list(&host.store, &Caller::host(), state, args.user_id.as_deref()).await;
        host.close().await;
        let list: Vec<pb::CardSummary> = result?.iter().map(card_summary).collect();
        return output::cards(json, &list);
    }
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .list_cards(pb::ListCardsRequest {
            state: state
                .map(proto_state)
                .unwrap_or(pb::CardState::Unspecified)
                .into(),
            user_id: args.user_id.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::cards(json, &response.cards)
}

/// What `show-card`, `suspend` and `resume` do to one card.
#[derive(Debug, Clone, Copy)]
pub enum CardCall {
    /// `show-card`.
    Show,
    /// `suspend`.
    Suspend,
    /// `resume`.
    Resume,
}

/// `show-card`, `suspend` or `resume`: one call, then the card as it is now.
pub async fn card_call(call: CardCall, args: CardArgs) -> Result<(), CaError> {
    let mut admin = args.common.conn.connect().await?;
    let card_id = args.card.clone();
    let client = &mut admin.client;
    let answer = match call {
        CardCall::Show => client.show_card(pb::ShowCardRequest { card_id }).await,
        CardCall::Suspend => {
            client
                .suspend_card(pb::SuspendCardRequest { card_id })
                .await
        }
        CardCall::Resume => client.resume_card(pb::ResumeCardRequest { card_id }).await,
    };
    let detail = answer.map_err(|s| admin.error(s))?.into_inner();
    output::card_detail(args.common.json, &detail)
}

/// `revoke`.
pub async fn revoke(args: RevokeArgs) -> Result<(), CaError> {
    let reason = RevocationReason::parse(&args.reason).map_err(|e| {
        CaError::InvalidArgument(format!(
            "--reason: {e}; use one of {}",
            RevocationReason::NAMES.join(", ")
        ))
    })?;
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let detail = admin
        .client
        .revoke_card(pb::RevokeCardRequest {
            card_id: args.card.clone(),
            reason: i32::from(reason.code()),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    output::card_detail(args.common.json, &detail)
}

/// `reset-pin`.
pub async fn reset_pin(args: CardArgs) -> Result<(), CaError> {
    let conn = &args.common.conn;
    let mut admin = conn.connect().await?;
    let response = admin
        .client
        .reset_pin(pb::AdminResetPinRequest {
            card_id: args.card.clone(),
        })
        .await
        .map_err(|s| admin.error(s))?
        .into_inner();
    match &response.pending_approval {
        Some(p) => output::pending(args.common.json, p),
        None => output::reset_code(
            args.common.json,
            &args.card.trim().to_ascii_uppercase(),
            &response,
        ),
    }
}
