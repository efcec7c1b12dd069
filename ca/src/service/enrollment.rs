//! The `Enrollment` gRPC service: takes the peer address and request fields,
//! calls [`Enroller`] (Enroll), [`PinResetter`] (ResetPin) or [`Deriver`]
//! (DeriveChallenge, EnrollDerived), converts the result to `EnrollResponse`.

use std::sync::Arc;

use lanyard_proto::ca::enrollment_server::Enrollment;
use lanyard_proto::ca::{
    DeriveChallengeRequest, DeriveChallengeResponse, EnrollDerivedRequest, EnrollRequest,
    EnrollResponse, ResetPinRequest,
};
use tonic::{Request, Response, Status};

use crate::derive::{DerivedRequest, Deriver};
use crate::enrolment::{Enrolled, Enroller};
use crate::peer::Peer;
use crate::pin_reset::PinResetter;

/// `lanyard.ca.v1.Enrollment` over an [`Enroller`], a [`PinResetter`] and a [`Deriver`].
#[derive(Debug, Clone)]
pub struct EnrollmentService {
    enroller: Arc<Enroller>,
    resetter: Arc<PinResetter>,
    deriver: Arc<Deriver>,
}

impl EnrollmentService {
    /// The service for `enroller`, `resetter` and `deriver`.
    pub fn new(enroller: Arc<Enroller>, resetter: Arc<PinResetter>, deriver: Arc<Deriver>) -> Self {
        EnrollmentService {
            enroller,
            resetter,
            deriver,
        }
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
        request: Request<DeriveChallengeRequest>,
    ) -> Result<Response<DeriveChallengeResponse>, Status> {
        let (challenge, expires_in_secs) = self.deriver.challenge(request.remote_addr()).await?;
        Ok(Response::new(DeriveChallengeResponse {
            challenge,
            expires_in_secs,
        }))
    }

    async fn enroll_derived(
        &self,
        request: Request<EnrollDerivedRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        let derived = DerivedRequest {
            challenge: &req.challenge,
            csr_der: &req.csr_der,
            signing_csr_der: &req.signing_csr_der,
            physical_certificate_der: &req.physical_certificate_der,
            physical_chain_der: &req.physical_chain_der,
            proof_signature: &req.proof_signature,
        };
        let enrolled = self.deriver.enroll_derived(peer, derived).await?;
        Ok(Response::new(enrolled.into()))
    }
}
