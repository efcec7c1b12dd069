//! Logout (C_Logout): ends the requesting application's login to a card;
//! other applications stay logged in.

use lanyard_proto::agent::{response, Logout, LogoutReply};

use crate::app_sessions::AppId;
use crate::error::Result;
use crate::state::Daemon;

/// Logs `app` out of the card.
pub fn apply(daemon: &Daemon, app: &AppId, m: Logout) -> Result<response::Body> {
    daemon.logout(app, &m.card_id)?;
    Ok(response::Body::Logout(LogoutReply {}))
}
