//! The `Revocation` gRPC service: a card's state and a certificate's
//! revocation, public like a CRL (no client certificate needed).

use lanyard_proto::ca::revocation_server::Revocation;
use lanyard_proto::ca::{CardState, CardStatusRequest, CardStatusResponse, RevocationReason};
use tonic::{Request, Response, Status};

use crate::card_status::{card_status, CardStatusReport};
use crate::store::{CardLifecycle, Store};

/// `lanyard.ca.v1.Revocation` over the CA database.
#[derive(Debug, Clone)]
pub struct RevocationService {
    store: Store,
}

impl RevocationService {
    /// The service reading `store`.
    pub fn new(store: Store) -> Self {
        RevocationService { store }
    }
}

/// The proto value of an RFC 5280 reason (the numbers are the same).
pub fn reason_to_proto(reason: lanyard_certs::RevocationReason) -> RevocationReason {
    RevocationReason::try_from(i32::from(reason.code())).unwrap_or(RevocationReason::Unspecified)
}

/// The proto value of a lifecycle state.
pub fn state_to_proto(lifecycle: &CardLifecycle) -> CardState {
    match lifecycle {
        CardLifecycle::Issued => CardState::Issued,
        CardLifecycle::Active => CardState::Active,
        CardLifecycle::Suspended { .. } => CardState::Suspended,
        CardLifecycle::Revoked { .. } => CardState::Revoked,
    }
}

impl From<CardStatusReport> for CardStatusResponse {
    fn from(r: CardStatusReport) -> Self {
        let (revoked_at, reason) = r
            .revocation()
            .map(|(at, reason)| (at, reason_to_proto(reason)))
            .unwrap_or((0, RevocationReason::Unspecified));
        CardStatusResponse {
            card_id: r.card_id.to_string(),
            state: state_to_proto(&r.lifecycle).into(),
            reason: reason.into(),
            revoked_at,
            serial_revoked: r.serial.is_some_and(|s| s.on_crl.is_some()),
            serial_known: r.serial.is_some_and(|s| s.known),
        }
    }
}

#[tonic::async_trait]
impl Revocation for RevocationService {
    async fn card_status(
        &self,
        request: Request<CardStatusRequest>,
    ) -> Result<Response<CardStatusResponse>, Status> {
        let req = request.into_inner();
        let report = card_status(&self.store, &req.card_id, &req.serial).await?;
        Ok(Response::new(report.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_maps_to_the_same_number() {
        for r in lanyard_certs::RevocationReason::ALL {
            assert_eq!(reason_to_proto(r) as i32, i32::from(r.code()));
        }
    }
}
