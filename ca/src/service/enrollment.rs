//! The `Enrollment` gRPC service: takes the peer address and request fields,
//! calls [`Enroller`] (Enroll) or [`PinResetter`] (ResetPin), converts the
//! result to `EnrollResponse`.

use std::sync::Arc;

use lanyard_proto::ca::enrollment_server::Enrollment;
use lanyard_proto::ca::{
    DeriveChallengeRequest, DeriveChallengeResponse, EnrollDerivedRequest, EnrollRequest,
    EnrollResponse, ResetPinRequest,
};
use tonic::{Request, Response, Status};

use crate::enrolment::{Enrolled, Enroller};
use crate::peer::Peer;
use crate::pin_reset::PinResetter;

/// `lanyard.ca.v1.Enrollment` over an [`Enroller`] and a [`PinResetter`].
#[derive(Debug, Clone)]
pub struct EnrollmentService {
    enroller: Arc<Enroller>,
    resetter: Arc<PinResetter>,
}

impl EnrollmentService {
    /// The service for `enroller` and `resetter`.
    pub fn new(enroller: Arc<Enroller>, resetter: Arc<PinResetter>) -> Self {
        EnrollmentService { enroller, resetter }
    }
}

impl From<Enrolled> for EnrollResponse {
    fn from(e: Enrolled) -> Self {
        EnrollResponse {
            card_id: e.card.card_id,
            certificate_der: e.certificate_der,
            chain_der: e.chain_der,
            holder_name: e.card.holder_name,
            user_id: e.card.user_id,
            role: e.card.role,
            signing_certificate_der: e.signing_certificate_der.unwrap_or_default(),
        }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        let code = zeroize::Zeroizing::new(req.code);
        let enrolled = self
            .enroller
            .enroll(peer, &code, &req.csr_der, &req.signing_csr_der)
            .await?;
        Ok(Response::new(enrolled.into()))
    }

    async fn reset_pin(
        &self,
        request: Request<ResetPinRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = Peer::of(&request);
        let req = request.into_inner();
        let code = zeroize::Zeroizing::new(req.code);
        let reset = self
            .resetter
            .reset(
                peer.ip,
                &req.card_id,
                &code,
                &req.csr_der,
                &req.signing_csr_der,
            )
            .await?;
        Ok(Response::new(reset.into()))
    }

    async fn derive_challenge(
        &self,
        _request: Request<DeriveChallengeRequest>,
    ) -> Result<Response<DeriveChallengeResponse>, Status> {
        // Being built (issue 7): derived enrolment.
        Err(Status::unimplemented(
            "derived enrolment is not enabled on this CA",
        ))
    }

    async fn enroll_derived(
        &self,
        _request: Request<EnrollDerivedRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::unimplemented(
            "derived enrolment is not enabled on this CA",
        ))
    }
}
