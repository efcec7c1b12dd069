//! The `Renewal` gRPC service (mTLS): hands the peer's client certificate
//! and the request to [`Renewer`] and answers with the new certificate.

use std::sync::Arc;

use lanyard_proto::ca::renewal_server::Renewal;
use lanyard_proto::ca::{EnrollResponse, RenewRequest};
use tonic::{Request, Response, Status};

use crate::peer::Peer;
use crate::renewal::Renewer;

/// `lanyard.ca.v1.Renewal` over a [`Renewer`].
#[derive(Debug, Clone)]
pub struct RenewalService {
    renewer: Arc<Renewer>,
}

impl RenewalService {
    /// The service for `renewer`.
    pub fn new(renewer: Arc<Renewer>) -> Self {
        RenewalService { renewer }
    }
}

#[tonic::async_trait]
impl Renewal for RenewalService {
    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = Peer::of(&request);
        let req = request.into_inner();
        let renewed = self
            .renewer
            .renew(&peer, &req.card_id, &req.csr_der, &req.signing_csr_der)
            .await?;
        Ok(Response::new(renewed.into()))
    }
}
