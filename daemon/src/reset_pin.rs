//! Forgotten PIN, without key escrow: a new key pair and CSR, the IT desk's
//! one-time reset code redeemed at `Enrollment.ResetPin` (server-authenticated
//! TLS: a locked card cannot do mTLS), then a new card key under the new PIN,
//! the new key and certificate, same card id and slot. Exhausted tries destroy the keys.

use lanyard_proto::agent::CardInfo;
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollResponse, ResetPinRequest};
use zeroize::Zeroizing;

use crate::ca_client::{self, call_with_retries, status_message, CaFailure, Retries};
use crate::card_store::{CardState, NewCard};
use crate::enroll::{check_issued, check_signing_issued, new_card_keys};
use crate::error::{Error, Result};
use crate::pin::Pin;
use crate::state::Daemon;

/// What the CLI sends to reset a PIN.
pub struct ResetParams {
    /// The card; empty for the only card.
    pub card_id: String,
    /// The CA; empty for the one on record.
    pub ca_url: String,
    /// The CA trust bundle; empty for the one on record.
    pub ca_cert_pem: Vec<u8>,
    /// The one-time reset code (never logged).
    pub code: Zeroizing<String>,
    /// The new PIN.
    pub new_pin: Pin,
}

/// Whether the CA's refusal says the reset code itself was not accepted.
fn is_code_rejection(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    )
}

/// Whether the CA told the device to destroy the card's keys.
fn says_destroyed(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition
        && status
            .metadata()
            .get(ca_client::CARD_DESTROYED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "1")
}

/// Calls Enrollment.ResetPin (interactive retries).
async fn call_ca(url: &str, pem: &[u8], req: ResetPinRequest) -> Result<EnrollResponse, CaFailure> {
    let endpoint = ca_client::server_auth_endpoint(url, pem)
        .map_err(|e| CaFailure::Transport(e.to_string()))?;
    call_with_retries(url, &endpoint, Retries::INTERACTIVE, |channel| {
        let req = req.clone();
        async move { EnrollmentClient::new(channel).reset_pin(req).await }
    })
    .await
}

/// The whole PIN reset. Nothing changes unless the CA certified the new key,
/// except that keys the CA declares destroyed are destroyed.
pub async fn reset_pin(daemon: &Daemon, params: ResetParams) -> Result<CardInfo> {
    daemon.policy().check_format(&params.new_pin)?;
    if params.code.trim().is_empty() {
        return Err(Error::BadRequest("the reset code is empty".into()));
    }
    let card_id = daemon.resolve_card_id(&params.card_id)?;
    let file = daemon.card_file(&card_id)?;
    if file.status == CardState::Revoked {
        return Err(Error::revoked(&card_id));
    }
    let url = if params.ca_url.is_empty() {
        file.ca_url.clone()
    } else {
        params.ca_url
    };
    let pem = if params.ca_cert_pem.is_empty() {
        file.ca_cert_pem.clone().into_bytes()
    } else {
        params.ca_cert_pem
    };
    if url.is_empty() || pem.is_empty() {
        return Err(Error::BadRequest(format!(
            "card {card_id} has no CA on record; give the CA's address and certificate (--ca URL --ca-cert FILE)"
        )));
    }
    ca_client::server_auth_endpoint(&url, &pem)?;
    let pem_text = String::from_utf8(pem.clone())
        .map_err(|_| Error::BadRequest("the CA certificate file is not PEM text".into()))?;
    let key_type = file
        .key_type()
        .ok_or_else(|| Error::corrupt(daemon.store().card_path(&card_id), "unknown key type"))?;
    tracing::info!(card = %card_id, ca = %url, "PIN reset started");
    let (keys, csrs) = new_card_keys(key_type).await?;
    let req = ResetPinRequest {
        card_id: card_id.clone(),
        code: params.code.to_string(),
        csr_der: csrs.csr,
        signing_csr_der: csrs.signing_csr,
    };
    let resp = match call_ca(&url, &pem, req).await {
        Ok(resp) => resp,
        Err(CaFailure::Refused(status)) if says_destroyed(&status) => {
            daemon
                .destroy_keys(&card_id, "the PIN reset code's tries are used up")
                .await?;
            return Err(Error::CardRevoked {
                card_id: card_id.clone(),
                reason: format!(
                    "the PIN reset code's tries are used up and card {card_id}'s keys were destroyed on this device"
                ),
            });
        }
        Err(CaFailure::Refused(status)) if is_code_rejection(&status) => {
            tracing::warn!(card = %card_id, grpc_status = ?status.code(), "the CA did not accept the PIN reset code");
            return Err(Error::ResetCodeRejected(format!(
                "the CA did not accept the reset code: {}; nothing changed",
                status_message(&status)
            )));
        }
        Err(other) => return Err(other.into_error(&url, "PIN reset")),
    };
    if resp.card_id != card_id {
        return Err(Error::CaRefused(format!(
            "the CA answered the PIN reset of card {card_id} for card {:?}; nothing changed",
            resp.card_id
        )));
    }
    let unusable = |e| match e {
        Error::EnrollFailed(why) => Error::CaRefused(format!(
            "the CA's new certificate is unusable: {why}; nothing changed"
        )),
        other => other,
    };
    check_issued(&keys.key, &resp).map_err(unusable)?;
    // The old signing key is revoked with the old certificates: without a
    // new one the card has none.
    let signing = check_signing_issued(keys.signing_key, &resp).map_err(unusable)?;
    let key = keys.key;
    let pick = |new: String, old: &str| if new.is_empty() { old.to_string() } else { new };
    let new = NewCard {
        card_id: card_id.clone(),
        slot: file.slot,
        holder_name: pick(resp.holder_name, &file.holder_name),
        user_id: pick(resp.user_id, &file.user_id),
        role: pick(resp.role, &file.role),
        key,
        certificate_der: resp.certificate_der,
        chain_der: resp.chain_der,
        ca_url: url,
        ca_cert_pem: pem_text,
        signing,
    };
    let info = daemon
        .reset_card(new, params.new_pin, &file.certificate)
        .await?;
    tracing::info!(card = %card_id, slot = info.slot, "PIN reset: new PIN, new key and certificate");
    daemon.signals().check_in.notify_one();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroyed_needs_the_metadata_and_failed_precondition() {
        let mut s = tonic::Status::failed_precondition("reset code tries exhausted");
        assert!(!says_destroyed(&s));
        s.metadata_mut()
            .insert(ca_client::CARD_DESTROYED, "1".parse().unwrap());
        assert!(says_destroyed(&s));
        let mut other = tonic::Status::permission_denied("wrong code");
        other
            .metadata_mut()
            .insert(ca_client::CARD_DESTROYED, "1".parse().unwrap());
        assert!(!says_destroyed(&other));
        assert!(is_code_rejection(&other));
        assert!(!is_code_rejection(&tonic::Status::failed_precondition(
            "card suspended"
        )));
    }
}
