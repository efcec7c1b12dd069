//! ListCards: every card with what the module needs to show it as a token,
//! including whether the requesting application is logged in.

use lanyard_proto::agent::{response, CardList};

use crate::app_sessions::AppId;
use crate::state::Daemon;

/// The cards as seen by `app`.
pub fn apply(daemon: &Daemon, app: Option<&AppId>) -> response::Body {
    response::Body::Cards(CardList {
        cards: daemon.cards(app),
    })
}
