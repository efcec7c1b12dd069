//! ChangePin: checks the old PIN (counted like a login) and re-wraps the
//! card key under the new PIN.

use lanyard_proto::agent::{response, ChangePin, ChangePinReply};

use crate::error::Result;
use crate::pin::Pin;
use crate::state::Daemon;

/// Changes the card's PIN.
pub async fn apply(daemon: &Daemon, m: ChangePin) -> Result<response::Body> {
    let ChangePin {
        card_id,
        old_pin,
        new_pin,
    } = m;
    daemon
        .change_pin(&card_id, Pin::new(old_pin), Pin::new(new_pin))
        .await?;
    Ok(response::Body::ChangePin(ChangePinReply {}))
}
