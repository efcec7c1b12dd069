//! Enrolment against the CA: the card key and the document-signing key
//! generated here, a PKCS#10 CSR signed by each, `Enroll` called over TLS
//! trusting only the given bundle (with bounded retries on transport errors),
//! the answer checked, then the card stored.

use lanyard_proto::agent::CardInfo;
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use openssl::hash::MessageDigest;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};
use zeroize::Zeroizing;

use crate::ca_client::{self, call_with_retries, status_message, CaFailure, Retries};
use crate::card_store::{NewCard, NewSigningKey};
use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};
use crate::pin::Pin;
use crate::state::Daemon;

/// What the CLI sends to enrol a card.
pub struct EnrollParams {
    /// `https://HOST:PORT` of the CA.
    pub ca_url: String,
    /// PEM bundle the CA's TLS certificate must chain to.
    pub ca_cert_pem: Vec<u8>,
    /// The one-time enrolment code (never logged).
    pub code: Zeroizing<String>,
    /// Key to generate.
    pub key_type: KeyType,
    /// The new card's PIN.
    pub pin: Pin,
}

/// A PKCS#10 CSR (DER) for `key`. The CA takes the subject from the issued
/// card, so the one here is a placeholder.
pub fn build_csr(key: &SigningKey) -> Result<Vec<u8>> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "lanyard enrolment")?;
    let name = name.build();
    let mut req = X509ReqBuilder::new()?;
    req.set_version(0)?;
    req.set_subject_name(&name)?;
    req.set_pubkey(key.pkey())?;
    req.sign(key.pkey(), MessageDigest::sha256())?;
    Ok(req.build().to_der()?)
}

/// Calls the CA's Enroll (retrying transport failures and a busy CA within
/// the interactive budget). A refusal is ENROLL_FAILED with the CA's message.
pub async fn call_ca(url: &str, pem: &[u8], code: &str, csrs: CardCsrs) -> Result<EnrollResponse> {
    let endpoint = ca_client::server_auth_endpoint(url, pem)?;
    let req = EnrollRequest {
        code: code.to_string(),
        csr_der: csrs.csr,
        signing_csr_der: csrs.signing_csr,
    };
    let result = call_with_retries(url, &endpoint, Retries::INTERACTIVE, |channel| {
        let req = req.clone();
        async move { EnrollmentClient::new(channel).enroll(req).await }
    })
    .await;
    result.map_err(|failure| match failure {
        CaFailure::Refused(status) => {
            tracing::warn!(ca = %url, grpc_status = ?status.code(), message = %status.message(), "CA refused the enrolment");
            Error::EnrollFailed(format!("the CA refused it: {}", status_message(&status)))
        }
        other => other.into_error(url, "enrolment"),
    })
}

/// Checks the CA's answer: the leaf carries our public key and is signed by
/// the first chain certificate. Failures are ENROLL_FAILED.
pub fn check_issued(key: &SigningKey, resp: &EnrollResponse) -> Result<()> {
    check_certificate(key, &resp.certificate_der, &resp.chain_der, "certificate")
}

/// Checks the CA's document-signing certificate as [`check_issued`] does the
/// card certificate; none (a CA that issues none) leaves the card without
/// the signing key.
pub fn check_signing_issued(
    signing_key: SigningKey,
    resp: &EnrollResponse,
) -> Result<Option<NewSigningKey>> {
    if resp.signing_certificate_der.is_empty() {
        tracing::info!(card = %resp.card_id, "the CA issued no document-signing certificate");
        return Ok(None);
    }
    check_certificate(
        &signing_key,
        &resp.signing_certificate_der,
        &resp.chain_der,
        "document-signing certificate",
    )?;
    Ok(Some(NewSigningKey {
        key: signing_key,
        certificate_der: resp.signing_certificate_der.clone(),
    }))
}

fn check_certificate(
    key: &SigningKey,
    cert_der: &[u8],
    chain_der: &[Vec<u8>],
    what: &str,
) -> Result<()> {
    let leaf = X509::from_der(cert_der)
        .map_err(|e| Error::EnrollFailed(format!("the CA returned an unreadable {what}: {e}")))?;
    let leaf_key = leaf
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| Error::EnrollFailed(format!("{what} public key: {e}")))?;
    if leaf_key != key.public_key_der()? {
        return Err(Error::EnrollFailed(format!(
            "the CA's {what} is not for the key generated here"
        )));
    }
    let issuing = chain_der
        .first()
        .ok_or_else(|| Error::EnrollFailed("the CA returned no certificate chain".into()))?;
    let issuing = X509::from_der(issuing)
        .map_err(|e| Error::EnrollFailed(format!("the CA returned an unreadable chain: {e}")))?;
    let issuing_key = issuing.public_key()?;
    if !leaf.verify(&issuing_key).unwrap_or(false) {
        return Err(Error::EnrollFailed(format!(
            "the {what} is not signed by the returned issuing CA"
        )));
    }
    Ok(())
}

/// Checks what an enrolment (by code or derived) is given before anything
/// happens: the PIN's format, the CA URL and the PEM bundle (returned as text).
pub fn check_enrolment_input(
    daemon: &Daemon,
    pin: &Pin,
    ca_url: &str,
    ca_cert_pem: &[u8],
) -> Result<String> {
    daemon.policy().check_format(pin)?;
    ca_client::parse_ca_url(ca_url)?;
    ca_client::check_pem(ca_cert_pem)?;
    String::from_utf8(ca_cert_pem.to_vec())
        .map_err(|_| Error::BadRequest("the CA certificate file is not PEM text".into()))
}

/// With every slot taken only a re-issue of a revoked or expired card can
/// succeed; refuse before anything is spent at the CA otherwise.
pub fn check_room(daemon: &Daemon) -> Result<()> {
    if daemon.free_slot().is_none() && !daemon.has_replaceable_card() {
        return Err(Error::SlotsFull(daemon.config().slots));
    }
    Ok(())
}

/// Checks the CA's answer against `keys` and stores the card under `pin`
/// (a card id this device already has is replaced in place).
pub async fn store_issued(
    daemon: &Daemon,
    keys: CardKeys,
    resp: EnrollResponse,
    ca_url: String,
    ca_cert_pem: String,
    pin: Pin,
) -> Result<CardInfo> {
    check_issued(&keys.key, &resp)?;
    let signing = check_signing_issued(keys.signing_key, &resp)?;
    let new = NewCard {
        card_id: resp.card_id,
        slot: 0,
        holder_name: resp.holder_name,
        user_id: resp.user_id,
        role: resp.role,
        key: keys.key,
        certificate_der: resp.certificate_der,
        chain_der: resp.chain_der,
        ca_url,
        ca_cert_pem,
        signing,
    };
    let info = daemon.add_card(new, pin).await?;
    tracing::info!(card = %info.card_id, slot = info.slot, subject = %info.subject, "card enrolled");
    daemon.signals().check_in.notify_one();
    Ok(info)
}

/// The whole enrolment. On any failure nothing is written to the store.
/// An answer naming a card this device already has (a re-issue) replaces
/// that card in place, keeping its slot.
pub async fn enroll(daemon: &Daemon, params: EnrollParams) -> Result<CardInfo> {
    let ca_cert_pem =
        check_enrolment_input(daemon, &params.pin, &params.ca_url, &params.ca_cert_pem)?;
    let _guard = daemon.enroll_lock.lock().await;
    check_room(daemon)?;
    let key_type = params.key_type;
    tracing::info!(ca = %params.ca_url, key = key_type.as_str(), "enrolment started");
    let (keys, csrs) = new_card_keys(key_type).await?;
    let resp = call_ca(&params.ca_url, &params.ca_cert_pem, &params.code, csrs).await?;
    store_issued(daemon, keys, resp, params.ca_url, ca_cert_pem, params.pin).await
}

/// A card's two new keys: for authentication, and for document signing.
pub struct CardKeys {
    /// The authentication (card) key.
    pub key: SigningKey,
    /// The document-signing key.
    pub signing_key: SigningKey,
}

/// The CSRs of a card's two new keys, DER.
#[derive(Clone)]
pub struct CardCsrs {
    /// The authentication key's CSR.
    pub csr: Vec<u8>,
    /// The document-signing key's CSR.
    pub signing_csr: Vec<u8>,
}

/// Two new keys of `key_type` (authentication, document signing) with their CSRs.
pub async fn new_card_keys(key_type: KeyType) -> Result<(CardKeys, CardCsrs)> {
    let (key, csr) = new_key_and_csr(key_type).await?;
    let (signing_key, signing_csr) = new_key_and_csr(key_type).await?;
    Ok((CardKeys { key, signing_key }, CardCsrs { csr, signing_csr }))
}

/// A new key of `key_type` and a CSR signed by it (off the async threads).
pub async fn new_key_and_csr(key_type: KeyType) -> Result<(SigningKey, Vec<u8>)> {
    tokio::task::spawn_blocking(move || -> Result<_> {
        let key = SigningKey::generate(key_type)?;
        let csr = build_csr(&key)?;
        Ok((key, csr))
    })
    .await
    .map_err(|e| Error::Internal(format!("key generation task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_signed_by_the_key() {
        let key = SigningKey::generate(KeyType::EcP256).unwrap();
        let der = build_csr(&key).unwrap();
        let req = openssl::x509::X509Req::from_der(&der).unwrap();
        assert!(req.verify(&req.public_key().unwrap()).unwrap());
        assert_eq!(
            req.public_key().unwrap().public_key_to_der().unwrap(),
            key.public_key_der().unwrap()
        );
    }
}
