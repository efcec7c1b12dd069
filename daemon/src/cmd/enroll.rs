//! Enroll: from the CLI. Generates the key in the daemon, has the CA certify
//! it, and stores the new card (see `crate::enroll`).

use lanyard_proto::agent::{response, Enroll, EnrollReply};

use crate::enroll::{enroll, EnrollParams};
use crate::error::Result;
use crate::keys::KeyType;
use crate::pin::Pin;
use crate::state::Daemon;

/// Enrols a new card.
pub async fn apply(daemon: &Daemon, m: Enroll) -> Result<response::Body> {
    let Enroll {
        ca_url,
        ca_cert_pem,
        code,
        key_type,
        pin,
    } = m;
    let params = EnrollParams {
        ca_url,
        ca_cert_pem,
        code: zeroize::Zeroizing::new(code),
        key_type: KeyType::from_proto(key_type)?,
        pin: Pin::new(pin),
    };
    let card = enroll(daemon, params).await?;
    Ok(response::Body::Enroll(EnrollReply { card: Some(card) }))
}
