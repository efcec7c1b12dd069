//! DeriveFinish: the physical card's certificate and signature from the CLI;
//! the daemon sends the proof to the CA and stores the issued card under
//! the new PIN (see `crate::derive`).

use lanyard_proto::agent::{response, DeriveFinish, EnrollReply};

use crate::derive::{finish, Proof};
use crate::error::Result;
use crate::pin::Pin;
use crate::state::Daemon;

/// Finishes a derived enrolment.
pub async fn apply(daemon: &Daemon, m: DeriveFinish) -> Result<response::Body> {
    let DeriveFinish {
        pending_id,
        physical_certificate_der,
        physical_chain_der,
        proof_signature,
        pin,
    } = m;
    let proof = Proof {
        certificate_der: physical_certificate_der,
        chain_der: physical_chain_der,
        signature: proof_signature,
    };
    let card = finish(daemon, &pending_id, proof, Pin::new(pin)).await?;
    Ok(response::Body::DeriveFinish(EnrollReply {
        card: Some(card),
    }))
}
