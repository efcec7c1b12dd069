//! Lock (`lanyard lock`): ends the unlock of one card, or of every card, and
//! the protected logins that relied on it.

use lanyard_proto::agent::{response, Lock, LockReply};

use crate::error::Result;
use crate::state::Daemon;

/// Locks the card named, or every card when none is.
pub fn apply(daemon: &Daemon, m: Lock) -> Result<response::Body> {
    let locked = daemon.lock(&m.card_id)?;
    Ok(response::Body::Lock(LockReply { locked }))
}
