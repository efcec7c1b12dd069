//! Unlock (`lanyard unlock`): checks the PIN (counted) and keeps the card
//! unlocked for protected logins until Lock or its idle timeout.

use std::time::Duration;

use lanyard_proto::agent::{response, Unlock, UnlockReply};

use crate::error::Result;
use crate::pin::Pin;
use crate::state::Daemon;

/// Unlocks the card (the only one when `card_id` is empty).
pub async fn apply(daemon: &Daemon, m: Unlock) -> Result<response::Body> {
    let Unlock {
        card_id,
        pin,
        idle_timeout_secs,
    } = m;
    let pin = Pin::new(pin);
    let card_id = daemon.resolve_card_id(&card_id)?;
    let idle = (idle_timeout_secs > 0).then(|| Duration::from_secs(idle_timeout_secs.into()));
    let idle_until = daemon.unlock(&card_id, pin, idle).await?;
    Ok(response::Body::Unlock(UnlockReply {
        card: Some(daemon.card(&card_id, None)?),
        idle_until,
    }))
}
