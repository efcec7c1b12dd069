//! The card's second, document-signing certificate against the real
//! `lanyard-ca serve` (SQLite or PostgreSQL per `LANYARD_TEST_DB`): issued at
//! enrolment with the authentication certificate when the device sends a
//! signing CSR (and not otherwise), recorded with its purpose, accepted by
//! OpenSSL for S/MIME signing and refused for TLS client login, re-keyed by
//! renewal (both old certificates superseded) and by PIN reset (both old
//! certificates revoked, on the CRL).

mod lifecycle_support;

use lanyard_certs::rcgen::PublicKeyData;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse, RenewRequest, ResetPinRequest};
use lifecycle_support::*;
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};

async fn enroll_both(
    ca: &TestCa,
    code: &str,
    csr: Vec<u8>,
    signing_csr: Vec<u8>,
) -> Result<EnrollResponse, tonic::Status> {
    ca.enrollment()
        .await
        .enroll(EnrollRequest {
            code: code.to_string(),
            csr_der: csr,
            signing_csr_der: signing_csr,
        })
        .await
        .map(|r| r.into_inner())
}

/// The purpose column of the certificate with `serial`.
async fn purpose(ca: &TestCa, serial: &str) -> String {
    let store = ca.store().await;
    let p: String = sqlx::query_scalar("SELECT purpose FROM certificates WHERE serial = $1")
        .bind(serial)
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    p
}

/// Whether openssl verifies `der` for `purpose` against the CA's chain.
fn openssl_verifies(ca: &TestCa, der: &[u8], purpose: &str) -> bool {
    let leaf = write_pem(&ca.path("leaf.pem"), "CERTIFICATE", der);
    let out = openssl(&[
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        ca.dir().join("root.pem").to_str().unwrap(),
        "-untrusted",
        ca.dir().join("issuing.pem").to_str().unwrap(),
        &leaf,
    ]);
    out.status.success()
}

#[tokio::test]
async fn enrolment_issues_a_signing_certificate_only_when_asked() {
    if !lanyard_test_support::require_tool("openssl") {
        return;
    }
    let ca = TestCa::start(&[]);

    // Without a signing CSR (an older daemon): one certificate, as before.
    let (plain_id, plain_code) = ca.issue_card().await;
    let resp = enroll_both(&ca, &plain_code, csr_for(&p256()), Vec::new())
        .await
        .unwrap();
    assert!(resp.signing_certificate_der.is_empty());
    let count = format!("SELECT COUNT(*) FROM certificates WHERE card_id = '{plain_id}'");
    assert_eq!(ca.count(&count).await, 1);
    assert_eq!(
        purpose(&ca, &serial_of(&resp.certificate_der)).await,
        "authentication"
    );

    // The same key for both: refused, and the code stays usable.
    let (card_id, code) = ca.issue_card().await;
    let key = p256();
    let err = enroll_both(&ca, &code, csr_for(&key), csr_for(&key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("second key"), "{err:?}");
    // A malformed signing CSR: refused too.
    let err = enroll_both(&ca, &code, csr_for(&key), b"not a CSR".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let signing_key = p256();
    let resp = enroll_both(&ca, &code, csr_for(&key), csr_for(&signing_key))
        .await
        .unwrap();
    assert_eq!(resp.card_id, card_id);
    let signing = &resp.signing_certificate_der;
    assert!(!signing.is_empty());
    lanyard_certs::verify_issued_by(signing, &resp.chain_der[0]).unwrap();
    let (_, auth_cert) = X509Certificate::from_der(&resp.certificate_der).unwrap();
    let (_, sign_cert) = X509Certificate::from_der(signing).unwrap();
    assert_eq!(
        sign_cert.public_key().raw,
        signing_key.subject_public_key_info().as_slice()
    );
    assert_eq!(
        auth_cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    assert_eq!(sign_cert.subject().as_raw(), auth_cert.subject().as_raw());
    assert_ne!(sign_cert.raw_serial(), auth_cert.raw_serial());
    assert_eq!(
        sign_cert.validity().not_after,
        auth_cert.validity().not_after
    );
    let ku = sign_cert.key_usage().unwrap().unwrap().value;
    assert!(ku.non_repudiation() && ku.digital_signature());
    let eku = sign_cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.email_protection && !eku.client_auth);

    // OpenSSL: the signing certificate signs S/MIME (CMS) but never logs in.
    assert!(openssl_verifies(&ca, signing, "smimesign"));
    assert!(!openssl_verifies(&ca, signing, "sslclient"));
    assert!(openssl_verifies(&ca, &resp.certificate_der, "sslclient"));

    // Recorded with its purpose, in the same transaction as the other.
    let count = format!("SELECT COUNT(*) FROM certificates WHERE card_id = '{card_id}'");
    assert_eq!(ca.count(&count).await, 2);
    assert_eq!(purpose(&ca, &serial_of(signing)).await, "signing");
    assert_eq!(
        purpose(&ca, &serial_of(&resp.certificate_der)).await,
        "authentication"
    );
    // The IT desk's view names each certificate's purpose.
    let store = ca.store().await;
    let id = lanyard_ca::card_id::CardId::parse(&card_id).unwrap();
    let detail = store.card_detail(&id, 0).await.unwrap().unwrap();
    store.close().await;
    let mut purposes: Vec<&str> = detail
        .certificates
        .iter()
        .map(|c| c.purpose.as_str())
        .collect();
    purposes.sort_unstable();
    assert_eq!(purposes, ["authentication", "signing"]);
    let audit = ca.audit_actions(&card_id).await;
    let enrolled = audit.iter().find(|(a, _)| a == "enrolled").unwrap();
    assert!(enrolled.1.contains(&serial_of(signing)), "{enrolled:?}");
}

#[tokio::test]
async fn renewal_and_reset_rekey_both_certificates() {
    if !lanyard_test_support::require_tool("openssl") {
        return;
    }
    let ca = TestCa::start(&[]);
    let (card_id, code) = ca.issue_card().await;
    let key = p256();
    let signing_key = p256();
    let resp = enroll_both(&ca, &code, csr_for(&key), csr_for(&signing_key))
        .await
        .unwrap();
    let old_auth = serial_of(&resp.certificate_der);
    let old_signing = serial_of(&resp.signing_certificate_der);

    // The signing certificate cannot authenticate a renewal (the TLS layer
    // or the Renewal service refuses it).
    let as_signing = Card {
        card_id: card_id.clone(),
        key: signing_key,
        cert_der: resp.signing_certificate_der.clone(),
    };
    if let Ok(mut client) = ca.renewal_as_checked(&as_signing).await {
        let err = client
            .renew(RenewRequest {
                card_id: card_id.clone(),
                csr_der: csr_for(&p256()),
                signing_csr_der: csr_for(&p256()),
            })
            .await
            .unwrap_err();
        assert_ne!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let count = format!("SELECT COUNT(*) FROM certificates WHERE card_id = '{card_id}'");
    assert_eq!(
        ca.count(&count).await,
        2,
        "nothing issued to the signing certificate"
    );

    // Renewal with the authentication certificate re-keys both.
    let card = Card {
        card_id: card_id.clone(),
        key,
        cert_der: resp.certificate_der.clone(),
    };
    let renewed_signing_key = p256();
    // Re-certifying the old signing key is refused: a renewal re-keys.
    let err = ca
        .renewal_as(&card)
        .await
        .renew(RenewRequest {
            card_id: card_id.clone(),
            csr_der: csr_for(&p256()),
            signing_csr_der: csr_for(&as_signing.key),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let renewed = ca
        .renewal_as(&card)
        .await
        .renew(RenewRequest {
            card_id: card_id.clone(),
            csr_der: csr_for(&p256()),
            signing_csr_der: csr_for(&renewed_signing_key),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!renewed.signing_certificate_der.is_empty());
    let new_signing = serial_of(&renewed.signing_certificate_der);
    assert_eq!(purpose(&ca, &new_signing).await, "signing");
    let superseded = format!(
        "SELECT COUNT(*) FROM certificates WHERE card_id = '{card_id}' AND superseded_at IS NOT NULL"
    );
    assert_eq!(ca.count(&superseded).await, 2);
    for old in [&old_auth, &old_signing] {
        let sql = format!(
            "SELECT COUNT(*) FROM certificates WHERE serial = '{old}' AND superseded_at IS NOT NULL"
        );
        assert_eq!(ca.count(&sql).await, 1, "{old} superseded");
    }

    // PIN reset re-keys both and revokes both renewed certificates.
    let reset_code = ca.release_reset_code(&card_id, 3).await;
    let reset = ca
        .enrollment()
        .await
        .reset_pin(ResetPinRequest {
            card_id: card_id.clone(),
            code: reset_code,
            csr_der: csr_for(&p256()),
            signing_csr_der: csr_for(&p256()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!reset.signing_certificate_der.is_empty());
    let revoked = [serial_of(&renewed.certificate_der), new_signing.clone()];
    ca.crl_until("both renewed certificates revoked", |entries| {
        revoked
            .iter()
            .all(|s| entries.iter().any(|e| &e.serial == s && e.reason == 4))
    })
    .await;
    let live = format!(
        "SELECT COUNT(*) FROM certificates WHERE card_id = '{card_id}' \
         AND revoked_at IS NULL AND superseded_at IS NULL"
    );
    assert_eq!(ca.count(&live).await, 2);
}

/// Renews `card` (as its own certificate) for the keys of `csr` and `signing_csr`.
async fn renew_both(
    ca: &TestCa,
    card: &Card,
    csr: Vec<u8>,
    signing_csr: Vec<u8>,
) -> Result<lanyard_proto::ca::EnrollResponse, tonic::Status> {
    ca.renewal_as(card)
        .await
        .renew(RenewRequest {
            card_id: card.card_id.clone(),
            csr_der: csr,
            signing_csr_der: signing_csr,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_renewal_retried_after_a_lost_answer_gets_the_same_certificates() {
    let ca = TestCa::start(&[]);
    let (card_id, code) = ca.issue_card().await;
    let key = p256();
    let resp = enroll_both(&ca, &code, csr_for(&key), csr_for(&p256()))
        .await
        .unwrap();
    let card = Card {
        card_id: card_id.clone(),
        key,
        cert_der: resp.certificate_der.clone(),
    };
    let (new_key, new_signing_key) = (p256(), p256());
    // The CA committed this renewal but its answer never reached the card.
    let lost = renew_both(&ca, &card, csr_for(&new_key), csr_for(&new_signing_key))
        .await
        .unwrap();
    let all = format!("SELECT COUNT(*) FROM certificates WHERE card_id = '{card_id}'");
    assert_eq!(ca.count(&all).await, 4);

    // The card retries with what it still holds and the same requests: the
    // same certificates, no new serial, audited as a repeat.
    let retry = renew_both(&ca, &card, csr_for(&new_key), csr_for(&new_signing_key))
        .await
        .unwrap();
    assert_eq!(retry.certificate_der, lost.certificate_der);
    assert_eq!(retry.signing_certificate_der, lost.signing_certificate_der);
    assert_eq!(retry.chain_der.len(), 2);
    assert_eq!(ca.count(&all).await, 4);
    let audit = ca.audit_actions(&card_id).await;
    let repeated: Vec<_> = audit
        .iter()
        .filter(|(a, _)| a == "renewal_repeated")
        .collect();
    assert_eq!(repeated.len(), 1, "{audit:?}");
    assert!(
        repeated[0].1.contains(&serial_of(&lost.certificate_der))
            && repeated[0]
                .1
                .contains(&serial_of(&lost.signing_certificate_der)),
        "{repeated:?}"
    );

    // Any other reuse stays refused and changes nothing: the new key with
    // another signing key, the new key alone, the old key.
    for (csr, signing_csr) in [
        (csr_for(&new_key), csr_for(&p256())),
        (csr_for(&new_key), Vec::new()),
        (csr_for(&card.key), csr_for(&p256())),
    ] {
        let err = renew_both(&ca, &card, csr, signing_csr).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("new key pair"), "{err:?}");
    }
    // The renewed certificate asking for its own keys again is not a lost answer.
    let renewed = Card {
        card_id: card_id.clone(),
        key: new_key,
        cert_der: lost.certificate_der.clone(),
    };
    let err = renew_both(
        &ca,
        &renewed,
        csr_for(&renewed.key),
        csr_for(&new_signing_key),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Once a later renewal superseded them, the lost answer's keys are refused too.
    renew_both(&ca, &renewed, csr_for(&p256()), csr_for(&p256()))
        .await
        .unwrap();
    let err = renew_both(&ca, &card, csr_for(&renewed.key), csr_for(&new_signing_key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(ca.count(&all).await, 6);
    let audit = ca.audit_actions(&card_id).await;
    assert_eq!(
        audit
            .iter()
            .filter(|(a, _)| a == "renewal_repeated")
            .count(),
        1
    );
}
