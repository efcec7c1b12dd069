//! Enrolment against the CA: key generated here, PKCS#10 CSR signed by it,
//! `Enroll` called over TLS trusting only the given bundle (with bounded
//! retries on transport errors), the answer checked, then the card stored.

use std::time::Duration;

use lanyard_proto::agent::CardInfo;
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use openssl::hash::MessageDigest;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use zeroize::Zeroizing;

use crate::card_store::NewCard;
use crate::error::{Error, Result};
use crate::keys::{KeyType, SigningKey};
use crate::pin::Pin;
use crate::state::Daemon;

/// Attempts at reaching the CA before giving up.
pub const CA_ATTEMPTS: u32 = 3;
/// Delay before the first retry; doubled for each further one.
pub const CA_FIRST_BACKOFF: Duration = Duration::from_secs(2);

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

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

enum Attempt {
    /// Worth another try (transport error, UNAVAILABLE).
    Transient(String),
    /// Final answer from the CA.
    Refused(tonic::Status),
}

fn endpoint(url: &str, pem: &[u8]) -> Result<Endpoint> {
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| Error::BadRequest(format!("CA URL {url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(Error::BadRequest(format!(
            "CA URL must look like https://HOST:PORT, not {url:?}"
        )));
    }
    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::BadRequest(
            "the CA certificate file holds no PEM certificate".into(),
        ));
    }
    // tonic takes the TLS server name from the URL host; an IP address
    // becomes a rustls IpAddress name and is checked against IP SANs.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    Ok(Endpoint::from(uri)
        .tls_config(tls)
        .map_err(|e| Error::BadRequest(format!("CA TLS settings: {}", error_chain(&e))))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30)))
}

async fn attempt(
    endpoint: &Endpoint,
    req: EnrollRequest,
) -> std::result::Result<EnrollResponse, Attempt> {
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|e| Attempt::Transient(error_chain(&e)))?;
    let mut client = EnrollmentClient::new(channel);
    match client.enroll(req).await {
        Ok(resp) => Ok(resp.into_inner()),
        Err(status) if status.code() == tonic::Code::Unavailable => {
            Err(Attempt::Transient(status.message().to_string()))
        }
        Err(status) => Err(Attempt::Refused(status)),
    }
}

/// Calls the CA's Enroll with retries on transport errors and UNAVAILABLE only.
pub async fn call_ca(
    url: &str,
    pem: &[u8],
    code: &str,
    csr_der: Vec<u8>,
) -> Result<EnrollResponse> {
    let endpoint = endpoint(url, pem)?;
    let mut delay = CA_FIRST_BACKOFF;
    let mut last = String::new();
    for n in 1..=CA_ATTEMPTS {
        let req = EnrollRequest {
            code: code.to_string(),
            csr_der: csr_der.clone(),
        };
        match attempt(&endpoint, req).await {
            Ok(resp) => return Ok(resp),
            Err(Attempt::Refused(status)) => {
                tracing::warn!(ca = %url, grpc_status = ?status.code(), message = %status.message(), "CA refused the enrolment");
                return Err(Error::EnrollFailed(format!(
                    "the CA refused it: {}",
                    if status.message().is_empty() {
                        format!("{:?}", status.code())
                    } else {
                        status.message().to_string()
                    }
                )));
            }
            Err(Attempt::Transient(why)) => {
                if n < CA_ATTEMPTS {
                    tracing::warn!(
                        "CA at {url} unreachable ({why}); retrying in {} s",
                        delay.as_secs()
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                last = why;
            }
        }
    }
    Err(Error::CaUnavailable(format!(
        "CA at {url} unreachable after {CA_ATTEMPTS} attempts ({last}); check the URL and that the CA is running"
    )))
}

/// Checks the CA's answer: the leaf carries our public key and is signed by
/// the first chain certificate.
fn check_issued(key: &SigningKey, resp: &EnrollResponse) -> Result<()> {
    let leaf = X509::from_der(&resp.certificate_der).map_err(|e| {
        Error::EnrollFailed(format!("the CA returned an unreadable certificate: {e}"))
    })?;
    let leaf_key = leaf
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| Error::EnrollFailed(format!("certificate public key: {e}")))?;
    if leaf_key != key.public_key_der()? {
        return Err(Error::EnrollFailed(
            "the CA's certificate is not for the key generated here".into(),
        ));
    }
    let issuing = resp
        .chain_der
        .first()
        .ok_or_else(|| Error::EnrollFailed("the CA returned no certificate chain".into()))?;
    let issuing = X509::from_der(issuing)
        .map_err(|e| Error::EnrollFailed(format!("the CA returned an unreadable chain: {e}")))?;
    let issuing_key = issuing.public_key()?;
    if !leaf.verify(&issuing_key).unwrap_or(false) {
        return Err(Error::EnrollFailed(
            "the certificate is not signed by the returned issuing CA".into(),
        ));
    }
    Ok(())
}

/// The whole enrolment. On any failure nothing is written to the store.
pub async fn enroll(daemon: &Daemon, params: EnrollParams) -> Result<CardInfo> {
    daemon.policy().check_format(&params.pin)?;
    let _guard = daemon.enroll_lock.lock().await;
    if daemon.free_slot().is_none() {
        return Err(Error::SlotsFull(daemon.config().slots));
    }
    let key_type = params.key_type;
    tracing::info!(ca = %params.ca_url, key = key_type.as_str(), "enrolment started");
    let (key, csr) = tokio::task::spawn_blocking(move || -> Result<_> {
        let key = SigningKey::generate(key_type)?;
        let csr = build_csr(&key)?;
        Ok((key, csr))
    })
    .await
    .map_err(|e| Error::Internal(format!("key generation task: {e}")))??;
    let resp = call_ca(&params.ca_url, &params.ca_cert_pem, &params.code, csr).await?;
    check_issued(&key, &resp)?;
    let slot = daemon
        .free_slot()
        .ok_or_else(|| Error::SlotsFull(daemon.config().slots))?;
    let new = NewCard {
        card_id: resp.card_id,
        slot,
        holder_name: resp.holder_name,
        user_id: resp.user_id,
        role: resp.role,
        key,
        certificate_der: resp.certificate_der,
        chain_der: resp.chain_der,
    };
    let info = daemon.add_card(new, params.pin).await?;
    tracing::info!(card = %info.card_id, slot, subject = %info.subject, "card enrolled");
    Ok(info)
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

    #[test]
    fn bad_urls_are_refused_before_any_network() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            endpoint("http://x:1", pem),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            endpoint("not a url", pem),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            endpoint("https://x:1", b"junk"),
            Err(Error::BadRequest(_))
        ));
    }
}
