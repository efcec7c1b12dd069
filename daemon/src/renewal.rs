//! Renewal with re-key: new key pairs (authentication and document signing)
//! and their CSRs, `Renewal.Renew` over mTLS authenticated by the current
//! certificate and key, the answer checked, then the new keys installed (see
//! `state/transitions.rs`). Also the scheduler
//! that renews unlocked cards on time, with backoff after failures.

use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::agent::CardInfo;
use lanyard_proto::ca::renewal_client::RenewalClient;
use lanyard_proto::ca::{EnrollResponse, RenewRequest};

use crate::ca_client::{with_retries, CaFailure, Retries};
use crate::ca_tls;
use crate::card_store::NewSigningKey;
use crate::enroll::{check_issued, check_signing_issued, new_card_keys, CardCsrs};
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::lifecycle::{now_unix, rfc3339};
use crate::pin::Pin;
use crate::state::{CardKeys, Daemon, RenewalSnapshot};

/// Longest the scheduler sleeps before looking at the plan again (the wall
/// clock may jump, e.g. after a laptop resumes).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Checks the CA's answer: same card, certificate for the new key (and the
/// document-signing certificate for the new signing key, if the CA issued
/// one), signed by the returned issuing CA.
fn check_renewed(
    snapshot: &RenewalSnapshot,
    key: &SigningKey,
    signing_key: SigningKey,
    resp: &EnrollResponse,
) -> Result<Option<NewSigningKey>> {
    if resp.card_id != snapshot.card_id {
        return Err(Error::CaRefused(format!(
            "the CA answered the renewal of card {} for card {:?}; nothing changed",
            snapshot.card_id, resp.card_id
        )));
    }
    let unusable = |e| match e {
        Error::EnrollFailed(why) => {
            Error::CaRefused(format!("the CA's renewed certificate is unusable: {why}"))
        }
        other => other,
    };
    check_issued(key, resp).map_err(unusable)?;
    check_signing_issued(signing_key, resp).map_err(unusable)
}

/// Calls Renewal.Renew over mTLS, presenting the current certificate (leaf +
/// issuing CA) and signing the handshake with `current_key`.
async fn call_renew(
    snapshot: &RenewalSnapshot,
    current_key: Arc<SigningKey>,
    csrs: CardCsrs,
    retries: Retries,
) -> Result<EnrollResponse> {
    let mut chain = vec![snapshot.certificate.clone()];
    chain.extend(snapshot.chain.first().cloned());
    let config = Arc::new(ca_tls::client_config(
        snapshot.ca_cert_pem.as_bytes(),
        chain,
        current_key,
    )?);
    let url = snapshot.ca_url.as_str();
    with_retries(url, retries, || {
        let config = config.clone();
        let req = RenewRequest {
            card_id: snapshot.card_id.clone(),
            csr_der: csrs.csr.clone(),
            signing_csr_der: csrs.signing_csr.clone(),
        };
        async move {
            let (channel, alerts) = ca_tls::connect(url, config).await?;
            RenewalClient::new(channel)
                .renew(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| alerts.classify(status))
        }
    })
    .await
    .map_err(|f: CaFailure| f.into_error(url, "renewal"))
}

/// Renews `card_id` with `keys` (its current key and card key): new key,
/// CSR, the CA over mTLS, the answer checked, then installed.
pub async fn renew(
    daemon: &Daemon,
    card_id: &str,
    keys: CardKeys,
    retries: Retries,
) -> Result<CardInfo> {
    let snapshot = daemon.renewal_snapshot(card_id)?;
    let (new_keys, csrs) = new_card_keys(snapshot.key_type).await?;
    tracing::info!(card = %card_id, ca = %snapshot.ca_url, "renewing with new keys");
    let resp = call_renew(&snapshot, keys.key.clone(), csrs, retries).await?;
    let signing = check_renewed(&snapshot, &new_keys.key, new_keys.signing_key, &resp)?;
    let info = daemon
        .install_renewed(
            &snapshot,
            keys.card_key,
            new_keys.key,
            signing,
            resp.certificate_der,
            resp.chain_der,
        )
        .await?;
    tracing::info!(
        card = %card_id,
        not_after = %rfc3339(info.not_after),
        "certificate renewed with a new key; logged-in applications keep working"
    );
    // "On every renewal": learn at once whether the card is still in good standing.
    daemon.signals().check_in.notify_one();
    Ok(info)
}

/// The Renew request: renews now, with the unlocked keys or those opened
/// with `pin` (NOT_LOGGED_IN without either). A failure is recorded.
pub async fn renew_now(daemon: &Daemon, card_id: &str, pin: Option<Pin>) -> Result<CardInfo> {
    let card_id = daemon.resolve_card_id(card_id)?;
    // Refuse a card that cannot renew before asking for anything else.
    daemon.renewal_snapshot(&card_id)?;
    let keys = daemon.keys_for_renewal(&card_id, pin).await?;
    match renew(daemon, &card_id, keys, Retries::INTERACTIVE).await {
        Ok(info) => Ok(info),
        Err(e) => {
            tracing::warn!(card = %card_id, error = %e, "renewal failed");
            record_failure(daemon, &card_id, &e, false).await;
            Err(e)
        }
    }
}

/// Records a failure (in the card file and, for scheduled renewals, the
/// backoff); a refusal also asks for a check-in (the card may be revoked).
async fn record_failure(daemon: &Daemon, card_id: &str, e: &Error, scheduled: bool) {
    match daemon.renewal_failed(card_id, e, scheduled).await {
        Ok((failures, retry_at)) if scheduled => {
            tracing::warn!(
                card = %card_id,
                failures,
                retry_at = %retry_at.map(rfc3339).unwrap_or_default(),
                error = %e,
                "renewal failed; will retry"
            );
        }
        Ok(_) => {}
        Err(write) => {
            tracing::error!(card = %card_id, error = %write, "cannot record the renewal failure")
        }
    }
    if daemon.near_expiry(card_id) {
        if let Ok(info) = daemon.card(card_id, None) {
            let warning = info.lifecycle.map(|l| l.warning).unwrap_or_default();
            if !warning.is_empty() {
                tracing::warn!(card = %card_id, "{warning}");
            }
        }
    }
    if matches!(e, Error::CaRefused(_)) {
        daemon.signals().check_in.notify_one();
    }
}

/// One scheduled renewal of an unlocked card.
async fn renew_scheduled(daemon: &Daemon, card_id: &str) {
    let Some(keys) = daemon.unlocked_keys(card_id) else {
        return;
    };
    tracing::info!(card = %card_id, "renewal due");
    if let Err(e) = renew(daemon, card_id, keys, Retries::ONCE).await {
        record_failure(daemon, card_id, &e, true).await;
    }
}

/// Renews every unlocked card when it is due, until the runtime stops.
pub async fn run_scheduler(daemon: Arc<Daemon>) {
    loop {
        let now = now_unix();
        for (card_id, at) in daemon.renewal_plan(now) {
            if at <= now {
                renew_scheduled(&daemon, &card_id).await;
            }
        }
        let now = now_unix();
        let next = daemon.renewal_plan(now).into_iter().map(|(_, at)| at).min();
        let wait = next
            .map(|at| Duration::from_secs((at - now).max(0) as u64))
            .unwrap_or(MAX_SLEEP)
            .clamp(Duration::from_millis(200), MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = daemon.signals().renewal.notified() => {}
        }
    }
}
