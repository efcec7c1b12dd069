//! ListCards: the cards the module shows as tokens (active and expired ones;
//! suspended and revoked cards are removed), including whether the requesting
//! application is logged in.

use lanyard_proto::agent::{response, CardList};

use crate::app_sessions::AppId;
use crate::state::Daemon;

/// The cards as seen by `app`.
pub fn apply(daemon: &Daemon, app: Option<&AppId>) -> response::Body {
    response::Body::Cards(CardList {
        cards: daemon.cards(app),
    })
}
