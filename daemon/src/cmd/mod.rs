//! One file per agent request, like mini-redis's `cmd/`: each turns its
//! proto message into domain types, calls the daemon state, and builds the
//! reply. `dispatch` routes a request and turns errors into error replies.

mod change_pin;
mod check_in;
mod derive_begin;
mod derive_finish;
mod enroll;
mod hello;
mod list_cards;
mod lock;
mod login;
mod logout;
mod renew;
mod reset_pin;
mod sign;
mod status;
mod unlock;

use lanyard_proto::agent::{request, response, Request, Response};

use crate::app_sessions::AppId;
use crate::error::Error;
use crate::protected_login::Requester;
use crate::state::Daemon;

/// Per-connection protocol state.
#[derive(Debug, Default)]
pub struct Session {
    /// Whether the Hello exchange has happened.
    pub greeted: bool,
    /// The peer process (SO_PEERCRED), named in the daemon's PIN prompt.
    pub peer: Requester,
}

/// An error reply.
pub fn error_response(request_id: u64, e: &Error, tries_left: u32) -> Response {
    Response {
        request_id,
        error: Some(e.to_proto(tries_left)),
        body: None,
    }
}

/// Handles one request and builds its response.
pub async fn dispatch(daemon: &Daemon, session: &mut Session, req: Request) -> Response {
    let request_id = req.request_id;
    let result = route(daemon, session, req).await;
    match result {
        Ok(body) => Response {
            request_id,
            error: None,
            body: Some(body),
        },
        Err((e, card)) => {
            let tries_left = card
                .and_then(|c| daemon.card(&c, None).ok())
                .and_then(|info| info.pin)
                .map(|p| p.max_failures.saturating_sub(p.failures))
                .unwrap_or(0);
            tracing::debug!(request_id, code = ?e.code(), error = %e, "request failed");
            error_response(request_id, &e, tries_left)
        }
    }
}

type Routed = std::result::Result<response::Body, (Error, Option<String>)>;

/// The app id, for requests that act on login state.
fn required(app: Option<AppId>) -> std::result::Result<AppId, (Error, Option<String>)> {
    app.ok_or_else(|| {
        (
            Error::BadRequest("app_id must be 1 to 64 bytes".into()),
            None,
        )
    })
}

async fn route(daemon: &Daemon, session: &mut Session, req: Request) -> Routed {
    let no_card = |e: Error| (e, None);
    let Some(body) = req.body.as_ref() else {
        return Err(no_card(Error::BadRequest("request has no body".into())));
    };
    if !session.greeted && !matches!(body, request::Body::Hello(_)) {
        return Err(no_card(Error::BadRequest(
            "a connection must start with Hello".into(),
        )));
    }
    let app = AppId::new(&req.app_id);
    match req.body {
        None => Err(no_card(Error::BadRequest("request has no body".into()))),
        Some(request::Body::Hello(m)) => hello::apply(daemon, session, m).map_err(no_card),
        Some(request::Body::ListCards(_)) => Ok(list_cards::apply(daemon, app.as_ref())),
        Some(request::Body::Status(_)) => Ok(status::apply(daemon)),
        Some(request::Body::Login(m)) => {
            let card = m.card_id.clone();
            let app = required(app)?;
            login::apply(daemon, &app, session.peer, m)
                .await
                .map_err(|e| (e, Some(card)))
        }
        Some(request::Body::Logout(m)) => {
            let app = required(app)?;
            logout::apply(daemon, &app, m).map_err(no_card)
        }
        Some(request::Body::Sign(m)) => {
            let app = required(app)?;
            sign::apply(daemon, &app, m).await.map_err(no_card)
        }
        Some(request::Body::Enroll(m)) => enroll::apply(daemon, m).await.map_err(no_card),
        Some(request::Body::ChangePin(m)) => {
            let card = m.card_id.clone();
            change_pin::apply(daemon, m)
                .await
                .map_err(|e| (e, Some(card)))
        }
        Some(request::Body::Renew(m)) => {
            let card = m.card_id.clone();
            renew::apply(daemon, m).await.map_err(|e| (e, Some(card)))
        }
        Some(request::Body::ResetPin(m)) => reset_pin::apply(daemon, m).await.map_err(no_card),
        Some(request::Body::DeriveBegin(m)) => {
            derive_begin::apply(daemon, m).await.map_err(no_card)
        }
        Some(request::Body::DeriveFinish(m)) => {
            derive_finish::apply(daemon, m).await.map_err(no_card)
        }
        Some(request::Body::CheckIn(_)) => Ok(check_in::apply(daemon, app.as_ref()).await),
        Some(request::Body::Unlock(m)) => {
            let card = m.card_id.clone();
            unlock::apply(daemon, m)
                .await
                .map_err(|e| (e, Some(card).filter(|c| !c.is_empty())))
        }
        Some(request::Body::Lock(m)) => lock::apply(daemon, m).map_err(no_card),
    }
}
