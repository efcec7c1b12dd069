//! Sign (C_Sign): the hot path. One round trip, signed with the key kept
//! ready while the application is logged in.

use lanyard_proto::agent::{response, Sign, Signature};

use crate::app_sessions::AppId;
use crate::error::Result;
use crate::keys::Mechanism;
use crate::state::Daemon;

/// Signs `m.data` with the card's key.
pub fn apply(daemon: &Daemon, app: &AppId, m: Sign) -> Result<response::Body> {
    let mech = Mechanism::from_proto(m.algorithm, m.hash, m.mgf_hash, m.salt_len)?;
    let signature = daemon.sign(app, &m.card_id, mech, &m.data)?;
    tracing::debug!(card = %m.card_id, ?mech, "signed");
    Ok(response::Body::Signature(Signature { signature }))
}
