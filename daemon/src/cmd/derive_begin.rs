//! DeriveBegin: from `lanyard enroll --derive-from`. The daemon makes the new
//! card's keys and CSRs and gets the CA's challenge; the reply says what the
//! physical card must sign (see `crate::derive`).

use lanyard_proto::agent::{response, DeriveBegin, DeriveBeginReply};

use crate::derive::begin;
use crate::error::Result;
use crate::keys::KeyType;
use crate::state::Daemon;

/// Starts a derived enrolment.
pub async fn apply(daemon: &Daemon, m: DeriveBegin) -> Result<response::Body> {
    let DeriveBegin {
        ca_url,
        ca_cert_pem,
        key_type,
    } = m;
    let begun = begin(daemon, ca_url, ca_cert_pem, KeyType::from_proto(key_type)?).await?;
    Ok(response::Body::DeriveBegin(DeriveBeginReply {
        pending_id: begun.pending_id,
        proof_digest: begun.proof_digest.to_vec(),
        proof_message: begun.proof_message,
        expires_in_secs: begun.expires_in_secs,
    }))
}
