//! ResetPin: redeems the IT desk's one-time reset code for a new PIN, a new
//! key and certificate (see `crate::reset_pin`).

use lanyard_proto::agent::{response, ResetPin, ResetPinReply};

use crate::error::Result;
use crate::pin::Pin;
use crate::reset_pin::{reset_pin, ResetParams};
use crate::state::Daemon;

/// Resets the card's PIN.
pub async fn apply(daemon: &Daemon, m: ResetPin) -> Result<response::Body> {
    let ResetPin {
        card_id,
        ca_url,
        ca_cert_pem,
        code,
        new_pin,
    } = m;
    let params = ResetParams {
        card_id,
        ca_url,
        ca_cert_pem,
        code: zeroize::Zeroizing::new(code),
        new_pin: Pin::new(new_pin),
    };
    let card = reset_pin(daemon, params).await?;
    Ok(response::Body::ResetPin(ResetPinReply { card: Some(card) }))
}
