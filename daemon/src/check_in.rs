//! Check-in: asks the CA (`Revocation.CardStatus`, server-authenticated TLS,
//! no client certificate) how each card stands, at start, periodically and
//! after renewals, and applies the answer: suspend, resume, or revoke (keys destroyed).

use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::ca::revocation_client::RevocationClient;
use lanyard_proto::ca::{CardState, CardStatusRequest, CardStatusResponse, RevocationReason};

use crate::ca_client::{self, call_with_retries, status_message, CaFailure, Retries};
use crate::state::{CheckInOutcome, CheckInTarget, Daemon};

/// RFC 5280 name of a revocation reason, for logs and status.
pub fn reason_name(reason: i32) -> String {
    use RevocationReason as R;
    match R::try_from(reason) {
        Ok(R::KeyCompromise) => "key compromise",
        Ok(R::CaCompromise) => "CA compromise",
        Ok(R::AffiliationChanged) => "affiliation changed",
        Ok(R::Superseded) => "superseded",
        Ok(R::CessationOfOperation) => "cessation of operation",
        Ok(R::CertificateHold) => "certificate hold",
        Ok(R::RemoveFromCrl) => "remove from CRL",
        Ok(R::PrivilegeWithdrawn) => "privilege withdrawn",
        Ok(R::AaCompromise) => "AA compromise",
        Ok(R::Unspecified) | Err(_) => "unspecified",
    }
    .to_string()
}

/// What the CA's answer means for the device. The card revoked → revoke;
/// the certificate held revoked for a reason other than superseded (a newer
/// certificate replaced it) or a hold → revoke; else the card's state.
pub fn decide(resp: &CardStatusResponse) -> CheckInOutcome {
    let reason = RevocationReason::try_from(resp.reason).unwrap_or(RevocationReason::Unspecified);
    let state = CardState::try_from(resp.state);
    if state == Ok(CardState::Revoked) {
        return CheckInOutcome::Revoked {
            reason: reason_name(resp.reason),
            card_wide: true,
        };
    }
    let benign = matches!(
        reason,
        RevocationReason::Superseded
            | RevocationReason::CertificateHold
            | RevocationReason::RemoveFromCrl
    );
    if resp.serial_revoked && !benign {
        return CheckInOutcome::Revoked {
            reason: reason_name(resp.reason),
            card_wide: false,
        };
    }
    match state {
        Ok(CardState::Active) => CheckInOutcome::Active,
        Ok(CardState::Suspended) => CheckInOutcome::Suspended,
        // Re-issued and waiting for re-enrolment: the card held here is not changed.
        Ok(CardState::Issued) => CheckInOutcome::Unchanged,
        _ => CheckInOutcome::Failed(format!(
            "the CA answered with an unknown card state {}",
            resp.state
        )),
    }
}

/// Asks the CA about one card (one attempt).
async fn ask(target: &CheckInTarget) -> CheckInOutcome {
    let url = target.ca_url.as_str();
    let endpoint = match ca_client::server_auth_endpoint(url, target.ca_cert_pem.as_bytes()) {
        Ok(e) => e,
        Err(e) => return CheckInOutcome::Failed(e.to_string()),
    };
    let req = CardStatusRequest {
        card_id: target.card_id.clone(),
        serial: target.serial.clone(),
    };
    let result = call_with_retries(url, &endpoint, Retries::ONCE, |channel| {
        let req = req.clone();
        async move { RevocationClient::new(channel).card_status(req).await }
    })
    .await;
    match result {
        Ok(resp) => {
            if resp.serial_revoked && resp.reason == RevocationReason::Superseded as i32 {
                tracing::warn!(card = %target.card_id, serial = %target.serial, "the CA says this certificate was superseded by one this device does not hold");
            }
            decide(&resp)
        }
        Err(CaFailure::Refused(status)) if status.code() == tonic::Code::NotFound => {
            CheckInOutcome::Failed(format!(
                "the CA at {url} does not know card {}",
                target.card_id
            ))
        }
        Err(CaFailure::Refused(status)) => CheckInOutcome::Failed(format!(
            "the CA at {url} refused the check-in: {}",
            status_message(&status)
        )),
        Err(other) => CheckInOutcome::Failed(other.into_error(url, "check-in").to_string()),
    }
}

/// Checks in every card that has a CA on record, one after the other; each
/// card's start-up check-in gate opens when its answer (or failure) is applied.
pub async fn check_in_all(daemon: &Daemon) {
    for target in daemon.check_in_targets() {
        let outcome = ask(&target).await;
        tracing::debug!(card = %target.card_id, ?outcome, "check-in answer");
        let gate = daemon.start_check_in();
        if let (true, CheckInOutcome::Failed(_)) = (gate.is_pending(&target.card_id), &outcome) {
            tracing::warn!(card = %target.card_id, ca = %target.ca_url, "start-up check-in failed: the card signs offline with its last known status until a check-in succeeds");
        }
        if let Err(e) = daemon.apply_check_in(&target, outcome).await {
            tracing::error!(card = %target.card_id, error = %e, "cannot record the check-in");
        }
        gate.finished(&target.card_id);
    }
    daemon.start_check_in().finish_all();
}

/// Arms the start-up gate for every card to check in: call before serving,
/// then spawn [`run`]. The first signature of each waits for its check-in.
pub fn hold_first_signatures(daemon: &Daemon) {
    let cards = daemon.check_in_targets().into_iter().map(|t| t.card_id);
    daemon.start_check_in().arm(cards);
}

/// Checks in at start, every `check_in_interval_secs`, and when asked
/// (after a renewal or enrolment), until the runtime stops.
pub async fn run(daemon: Arc<Daemon>) {
    let interval = Duration::from_secs(daemon.config().check_in_interval_secs);
    loop {
        check_in_all(&daemon).await;
        let next = crate::lifecycle::now_unix().saturating_add(interval.as_secs() as i64);
        daemon.start_check_in().set_next_check_in(next);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = daemon.signals().check_in.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        state: CardState,
        serial_revoked: bool,
        reason: RevocationReason,
    ) -> CardStatusResponse {
        CardStatusResponse {
            card_id: "C1".into(),
            state: state as i32,
            reason: reason as i32,
            revoked_at: 0,
            serial_revoked,
            serial_known: true,
        }
    }

    #[test]
    fn the_card_state_decides() {
        use RevocationReason as R;
        assert_eq!(
            decide(&answer(CardState::Active, false, R::Unspecified)),
            CheckInOutcome::Active
        );
        assert_eq!(
            decide(&answer(CardState::Suspended, false, R::Unspecified)),
            CheckInOutcome::Suspended
        );
        assert_eq!(
            decide(&answer(CardState::Revoked, true, R::KeyCompromise)),
            CheckInOutcome::Revoked {
                reason: "key compromise".into(),
                card_wide: true
            }
        );
        assert_eq!(
            decide(&answer(CardState::Issued, false, R::Unspecified)),
            CheckInOutcome::Unchanged
        );
        assert!(matches!(
            decide(&CardStatusResponse {
                state: 42,
                ..answer(CardState::Active, false, R::Unspecified)
            }),
            CheckInOutcome::Failed(_)
        ));
    }

    #[test]
    fn a_revoked_serial_revokes_unless_superseded_or_held() {
        use RevocationReason as R;
        assert_eq!(
            decide(&answer(CardState::Active, true, R::PrivilegeWithdrawn)),
            CheckInOutcome::Revoked {
                reason: "privilege withdrawn".into(),
                card_wide: false
            }
        );
        assert_eq!(
            decide(&answer(CardState::Active, true, R::Superseded)),
            CheckInOutcome::Active
        );
        assert_eq!(
            decide(&answer(CardState::Suspended, true, R::CertificateHold)),
            CheckInOutcome::Suspended
        );
    }
}
