//! Renew: renews a card's certificate now with a new key pair. Needs the card
//! unlocked (an application logged in) or its PIN in the request.

use lanyard_proto::agent::{response, Renew, RenewReply};

use crate::error::Result;
use crate::pin::Pin;
use crate::renewal::renew_now;
use crate::state::Daemon;

/// Renews the card now.
pub async fn apply(daemon: &Daemon, m: Renew) -> Result<response::Body> {
    let Renew { card_id, pin } = m;
    let pin = (!pin.is_empty()).then(|| Pin::new(pin));
    let card = renew_now(daemon, &card_id, pin).await?;
    Ok(response::Body::Renew(RenewReply { card: Some(card) }))
}
