//! Derived enrolment against the real `lanyard-ca serve` (SQLite or
//! PostgreSQL per `LANYARD_TEST_DB`): a physical card from a configured
//! physical-card CA signs the challenge and the new card's CSRs; the CA
//! issues a card with the physical card's user ID and name and the policy's
//! role, audited as a derived issuance. Untrusted, expired, revoked (CRL
//! file), wrongly-policied cards, a proof over other CSRs (the relay case)
//! and unknown, used or expired challenges are refused with a message naming
//! the check, and no card is created. Also `init --physical-card-ca`.

mod lifecycle_support;

use lanyard_certs::proof_message;
use lanyard_certs::rcgen::{KeyPair, PublicKeyData, SigningKey};
use lanyard_proto::ca::{DeriveChallengeRequest, EnrollDerivedRequest, EnrollResponse};
use lanyard_test_support::physical_card_ca::{
    to_pem, CardSpec, PhysicalCardCa, OTHER_POLICY, PHYSICAL_POLICY,
};
use lifecycle_support::*;
use time::{Duration, OffsetDateTime};
use tonic::Code;

const ROLE: &str = "R8000 Clinical Practitioner";

/// The physical-card side of a test: its CA's files and the env that enables derivation.
struct Physical {
    dir: tempfile::TempDir,
    ca: PhysicalCardCa,
}

impl Physical {
    fn new() -> Physical {
        let dir = tempfile::tempdir().unwrap();
        let ca = PhysicalCardCa::new("Test Smartcard CA");
        std::fs::write(dir.path().join("anchor.pem"), ca.pem()).unwrap();
        let physical = Physical { dir, ca };
        physical.write_crl(&[], false);
        physical
    }

    fn write_crl(&self, serials: &[&[u8]], stale: bool) {
        let pem = to_pem("X509 CRL", &self.ca.crl(serials, stale));
        std::fs::write(self.dir.path().join("physical.crl"), pem).unwrap();
    }

    fn env(&self) -> Vec<(String, String)> {
        let path = |f: &str| self.dir.path().join(f).to_str().unwrap().to_string();
        vec![
            ("LANYARD_CA_DERIVATION_ENABLED".into(), "true".into()),
            (
                "LANYARD_CA_DERIVATION_TRUST_ANCHORS".into(),
                path("anchor.pem"),
            ),
            (
                "LANYARD_CA_DERIVATION_ALLOWED_POLICIES".into(),
                PHYSICAL_POLICY.into(),
            ),
            ("LANYARD_CA_DERIVATION_ROLE".into(), ROLE.into()),
            (
                "LANYARD_CA_DERIVATION_CRL_FILE".into(),
                path("physical.crl"),
            ),
            // Each test here makes several refused attempts from one address.
            ("LANYARD_CA_RATE_LIMIT_MAX_FAILURES".into(), "100".into()),
        ]
    }

    fn start_ca(&self) -> TestCa {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestCa::start(&env)
    }
}

/// A physical card: its key and certificate.
struct Card {
    key: KeyPair,
    cert: Vec<u8>,
}

fn card(ca: &PhysicalCardCa, spec: &CardSpec) -> Card {
    let key = p256();
    let cert = ca.issue(&key, spec);
    Card { key, cert }
}

async fn challenge(ca: &TestCa) -> Vec<u8> {
    let resp = ca
        .enrollment()
        .await
        .derive_challenge(DeriveChallengeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.challenge.len(), 32);
    assert!(resp.expires_in_secs >= 10, "{resp:?}");
    resp.challenge
}

/// A derived enrolment request for new CSRs, signed by `signer` over `signed_csr`
/// (the real CSR unless testing a relay).
fn request(
    challenge: &[u8],
    physical: &Card,
    csr: Vec<u8>,
    signing_csr: Vec<u8>,
    proof_over: Option<&[u8]>,
) -> EnrollDerivedRequest {
    let message = proof_message(challenge, proof_over.unwrap_or(&csr), &signing_csr);
    EnrollDerivedRequest {
        challenge: challenge.to_vec(),
        csr_der: csr,
        signing_csr_der: signing_csr,
        physical_certificate_der: physical.cert.clone(),
        physical_chain_der: Vec::new(),
        proof_signature: physical.key.sign(&message).unwrap(),
    }
}

async fn derive(ca: &TestCa, req: EnrollDerivedRequest) -> Result<EnrollResponse, tonic::Status> {
    ca.enrollment()
        .await
        .enroll_derived(req)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_valid_proof_issues_a_card_for_the_physical_identity() {
    let physical = Physical::new();
    let ca = physical.start_ca();
    let holder = card(
        &physical.ca,
        &CardSpec::valid("Dr Grace Physical", "555000111222", 1),
    );
    let c = challenge(&ca).await;
    let (key, signing_key) = (p256(), p256());
    let req = request(&c, &holder, csr_for(&key), csr_for(&signing_key), None);
    let resp = derive(&ca, req.clone()).await.unwrap();
    assert_eq!(resp.user_id, "555000111222");
    assert_eq!(resp.holder_name, "Dr Grace Physical");
    assert_eq!(resp.role, ROLE);
    assert!(!resp.signing_certificate_der.is_empty());
    lanyard_certs::verify_issued_by(&resp.certificate_der, &resp.chain_der[0]).unwrap();
    let identity = lanyard_certs::card_identity(&resp.certificate_der).unwrap();
    assert_eq!(identity.holder.user_id, "555000111222");
    assert_eq!(identity.holder.role, ROLE);
    assert_eq!(identity.card_id(), resp.card_id);
    let issued_key = {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(&resp.certificate_der).unwrap();
        cert.public_key().raw.to_vec()
    };
    assert_eq!(issued_key, key.subject_public_key_info());

    // Recorded: an active card, two certificates, where it came from, the audit.
    let id = &resp.card_id;
    assert_eq!(
        ca.count(&format!(
            "SELECT COUNT(*) FROM cards WHERE card_id = '{id}' AND state = 'active'"
        ))
        .await,
        1
    );
    assert_eq!(
        ca.count(&format!(
            "SELECT COUNT(*) FROM certificates WHERE card_id = '{id}'"
        ))
        .await,
        2
    );
    assert_eq!(
        ca.count(&format!(
            "SELECT COUNT(*) FROM derived_cards WHERE card_id = '{id}' AND physical_serial = '1101' \
             AND policy_oid = '{PHYSICAL_POLICY}'"
        ))
        .await,
        1
    );
    let store = ca.store().await;
    let (issuer, serial) = store.derived_from(id).await.unwrap().unwrap();
    assert!(issuer.contains("Test Smartcard CA"), "{issuer}");
    assert_eq!(serial, "1101");
    assert_eq!(store.derived_from("000000000000").await.unwrap(), None);
    store.close().await;
    let audit = ca.audit_actions(id).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, "derived_issuance");
    assert!(
        audit[0].1.contains("\"physical_serial\":\"1101\""),
        "{audit:?}"
    );
    assert!(
        audit[0].1.contains("Test Smartcard CA"),
        "the issuer is audited: {audit:?}"
    );

    // The same challenge again: used.
    let err = derive(&ca, req).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("already used"), "{err:?}");
    assert_eq!(ca.count("SELECT COUNT(*) FROM cards").await, 1);
    // The log names the derivation, never the challenge.
    let log = ca.serve_log();
    assert!(log.contains("card issued by derivation"), "{log}");
    assert!(!log.contains(&hex::encode(&c)), "the challenge was logged");
}

/// Expects `req` to be refused with `code` and a message containing `needle`, creating no card.
async fn refused(ca: &TestCa, req: EnrollDerivedRequest, code: Code, needle: &str) {
    let err = derive(ca, req).await.unwrap_err();
    assert_eq!(err.code(), code, "{needle}: {err:?}");
    assert!(err.message().contains(needle), "{needle}: {err:?}");
    assert_eq!(ca.count("SELECT COUNT(*) FROM cards").await, 0, "{needle}");
    assert_eq!(
        ca.count("SELECT COUNT(*) FROM certificates").await,
        0,
        "{needle}"
    );
}

#[tokio::test]
async fn bad_physical_cards_and_proofs_are_refused_and_create_nothing() {
    let physical = Physical::new();
    let ca = physical.start_ca();
    let now = OffsetDateTime::now_utc();
    let new_csr = || csr_for(&p256());

    // A card from a CA that is not a configured anchor.
    let stranger = PhysicalCardCa::new("Test Smartcard CA");
    let untrusted = card(&stranger, &CardSpec::valid("Dr Mallory", "555000999999", 2));
    let c = challenge(&ca).await;
    let req = request(&c, &untrusted, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "untrusted check").await;

    // Expired.
    let mut spec = CardSpec::valid("Dr Old", "555000222333", 3);
    spec.not_before = now - Duration::days(60);
    spec.not_after = now - Duration::days(1);
    let expired = card(&physical.ca, &spec);
    let c = challenge(&ca).await;
    let req = request(&c, &expired, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "expired").await;

    // A policy the CA does not allow, and none at all.
    let mut spec = CardSpec::valid("Dr Other", "555000333444", 4);
    spec.policies = vec![OTHER_POLICY.into()];
    let other = card(&physical.ca, &spec);
    let c = challenge(&ca).await;
    let req = request(&c, &other, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "policy check").await;
    spec.policies.clear();
    let none = card(&physical.ca, &spec);
    let c = challenge(&ca).await;
    let req = request(&c, &none, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "(it has: none)").await;

    // The relay case: a proof made for another CSR, presented with ours.
    let good = card(
        &physical.ca,
        &CardSpec::valid("Dr Grace Physical", "555000111222", 5),
    );
    let c = challenge(&ca).await;
    let attackers_csr = new_csr();
    let req = request(&c, &good, new_csr(), Vec::new(), Some(&attackers_csr));
    refused(&ca, req, Code::PermissionDenied, "signature check").await;
    // A proof by another key than the certificate's.
    let c = challenge(&ca).await;
    let mut req = request(&c, &good, new_csr(), Vec::new(), None);
    req.proof_signature = p256().sign(&proof_message(&c, &req.csr_der, &[])).unwrap();
    refused(&ca, req, Code::PermissionDenied, "signature check").await;
    // Garbage instead of a certificate.
    let c = challenge(&ca).await;
    let mut req = request(&c, &good, new_csr(), Vec::new(), None);
    req.physical_certificate_der = b"not a certificate".to_vec();
    refused(&ca, req, Code::PermissionDenied, "malformed check").await;

    // Revoked on the CRL file (read at each request), then a stale CRL.
    physical.write_crl(&[&[0x11, 5]], false);
    let c = challenge(&ca).await;
    let req = request(&c, &good, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "is revoked").await;
    physical.write_crl(&[], true);
    let c = challenge(&ca).await;
    let req = request(&c, &good, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::PermissionDenied, "out of date").await;
    // A CRL of another CA only: revocation cannot be checked.
    std::fs::write(
        physical.dir.path().join("physical.crl"),
        stranger.crl(&[], false),
    )
    .unwrap();
    let c = challenge(&ca).await;
    let req = request(&c, &good, new_csr(), Vec::new(), None);
    refused(
        &ca,
        req,
        Code::PermissionDenied,
        "revocation cannot be checked",
    )
    .await;
    physical.write_crl(&[], false);

    // Unknown and expired challenges.
    let req = request(&[9u8; 32], &good, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::NotFound, "unknown").await;
    let req = request(b"short", &good, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::NotFound, "unknown").await;
    let c = challenge(&ca).await;
    ca.sql("UPDATE derive_challenges SET expires_at = 0 WHERE used_at IS NULL")
        .await;
    let req = request(&c, &good, new_csr(), Vec::new(), None);
    refused(&ca, req, Code::NotFound, "expired").await;

    // Each refusal is audited with its check; the good card still works.
    let refusals = ca
        .count("SELECT COUNT(*) FROM audit WHERE action = 'derive_refused'")
        .await;
    assert_eq!(refusals, 13);
    let c = challenge(&ca).await;
    let resp = derive(&ca, request(&c, &good, new_csr(), Vec::new(), None))
        .await
        .unwrap();
    assert_eq!(resp.user_id, "555000111222");
    assert!(resp.signing_certificate_der.is_empty());
}

#[tokio::test]
async fn derivation_is_off_unless_configured() {
    let ca = TestCa::start(&[]);
    let err = ca
        .enrollment()
        .await
        .derive_challenge(DeriveChallengeRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not enabled"), "{err:?}");
    let err = derive(
        &ca,
        EnrollDerivedRequest {
            challenge: vec![0; 32],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[test]
fn init_physical_card_ca_enables_derivation() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = PhysicalCardCa::new("Test Smartcard CA");
    let anchor = tmp.path().join("anchor.pem");
    std::fs::write(&anchor, ca.pem()).unwrap();
    let dir = tmp.path().join("ca");
    let (dir_s, anchor_s) = (dir.to_str().unwrap(), anchor.to_str().unwrap());

    // Without a role or a policy: refused, nothing made.
    let out = lanyard_ca(&["init", "--dir", dir_s, "--physical-card-ca", anchor_s]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("derivation.allowed_policies"));
    assert!(!dir.join("ca.toml").exists());
    // A leaf certificate is no trust anchor.
    let leaf = tmp.path().join("leaf.pem");
    let holder = card(
        &ca,
        &CardSpec::valid("Dr Grace Physical", "555000111222", 1),
    );
    std::fs::write(&leaf, to_pem("CERTIFICATE", &holder.cert)).unwrap();
    let out = lanyard_ca(&[
        "init",
        "--dir",
        dir_s,
        "--physical-card-ca",
        leaf.to_str().unwrap(),
        "--derivation-role",
        ROLE,
        "--derivation-policy",
        PHYSICAL_POLICY,
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CA certificate"));

    let out = lanyard_ca(&[
        "init",
        "--dir",
        dir_s,
        "--physical-card-ca",
        anchor_s,
        "--derivation-role",
        ROLE,
        "--derivation-policy",
        PHYSICAL_POLICY,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("derived enrolment"));
    let copied = std::fs::read_to_string(dir.join("physical-card-ca.pem")).unwrap();
    assert_eq!(copied, ca.pem());
    let toml = std::fs::read_to_string(dir.join("ca.toml")).unwrap();
    let cfg: lanyard_ca::config::CaConfig = toml::from_str(&toml).unwrap();
    assert!(cfg.derivation.enabled);
    assert_eq!(cfg.derivation.role, ROLE);
    assert_eq!(cfg.derivation.allowed_policies, vec![PHYSICAL_POLICY]);
    assert_eq!(
        cfg.derivation.trust_anchors,
        vec![std::path::PathBuf::from("physical-card-ca.pem")]
    );
}
