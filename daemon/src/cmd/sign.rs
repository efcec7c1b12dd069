//! Sign (C_Sign): the hot path. One round trip, signed with the key kept
//! ready while the application is logged in; the document-signing key
//! (KEY_ROLE_SIGNING) also needs the PIN of the context-specific login,
//! checked for each signature.

use lanyard_proto::agent::{response, KeyRole, Sign, Signature};

use crate::app_sessions::AppId;
use crate::error::{Error, Result};
use crate::keys::Mechanism;
use crate::pin::Pin;
use crate::state::Daemon;

/// Signs `m.data` with the card's key `m.key`.
pub async fn apply(daemon: &Daemon, app: &AppId, m: Sign) -> Result<response::Body> {
    let mech = Mechanism::from_proto(m.algorithm, m.hash, m.mgf_hash, m.salt_len)?;
    let role = KeyRole::try_from(m.key)
        .map_err(|_| Error::BadRequest(format!("unknown key role {}", m.key)))?;
    let context_pin = Pin::new(m.context_pin);
    // The first signature after a start waits for the card's check-in.
    daemon.start_check_in().wait(&m.card_id).await;
    let signature = match role {
        KeyRole::Authentication => daemon.sign(app, &m.card_id, mech, &m.data)?,
        KeyRole::Signing => {
            daemon
                .sign_document(app, &m.card_id, mech, &m.data, context_pin)
                .await?
        }
    };
    tracing::debug!(card = %m.card_id, ?mech, ?role, "signed");
    Ok(response::Body::Signature(Signature { signature }))
}
