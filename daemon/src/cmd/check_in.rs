//! CheckIn: asks the CA about every card now (the daemon also does so
//! periodically) and answers with every card and its lifecycle.

use lanyard_proto::agent::{response, CheckInReply};

use crate::app_sessions::AppId;
use crate::check_in::check_in_all;
use crate::state::Daemon;

/// Checks in now and returns all cards.
pub async fn apply(daemon: &Daemon, app: Option<&AppId>) -> response::Body {
    check_in_all(daemon).await;
    response::Body::CheckIn(CheckInReply {
        cards: daemon.all_cards(app),
    })
}
