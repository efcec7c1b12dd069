//! A stand-in CA for the daemon's integration tests: a real tonic server over
//! TLS on 127.0.0.1 (IP SAN) with an openssl root and issuing CA, serving
//! Enrollment, Revocation and Renewal. The TLS layer verifies client
//! certificates against the root when one is presented (optional, as the real
//! CA); Renew requires one and records what was presented.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use lanyard_proto::ca::enrollment_server::{Enrollment, EnrollmentServer};
use lanyard_proto::ca::renewal_server::{Renewal, RenewalServer};
use lanyard_proto::ca::revocation_server::{Revocation, RevocationServer};
use lanyard_proto::ca::{
    CardState, CardStatusRequest, CardStatusResponse, EnrollRequest, EnrollResponse, RenewRequest,
    ResetPinRequest,
};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Req, X509};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// What a certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Ca,
    Server,
    Card,
}

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn public(k: &PKey<Private>) -> PKey<Public> {
    PKey::public_key_from_der(&k.public_key_to_der().unwrap()).unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A certificate for `key`, valid from `not_before` for `lifetime` seconds
/// (Unix seconds), signed by `issuer` (or self-signed with `signer`).
#[allow(clippy::too_many_arguments)]
pub fn cert(
    cn: &str,
    key: &PKey<Public>,
    issuer: Option<&X509>,
    signer: &PKey<Private>,
    profile: Profile,
    serial: u32,
    not_before: i64,
    lifetime: i64,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some(c) => b.set_issuer_name(c.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(not_before).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(not_before + lifetime).unwrap())
        .unwrap();
    let ca = profile == Profile::Ca;
    let mut bc = BasicConstraints::new();
    bc.critical();
    if ca {
        bc.ca();
    }
    b.append_extension(bc.build().unwrap()).unwrap();
    let mut ku = KeyUsage::new();
    ku.critical();
    if ca {
        ku.key_cert_sign().crl_sign();
    } else {
        ku.digital_signature();
    }
    b.append_extension(ku.build().unwrap()).unwrap();
    match profile {
        Profile::Server => {
            let ctx = b.x509v3_context(issuer.map(|c| c.as_ref()), None);
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&ctx)
                .unwrap();
            b.append_extension(san).unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
        }
        Profile::Card => {
            b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
                .unwrap();
        }
        Profile::Ca => {}
    }
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

/// The CA's keys and certificates.
pub struct Pki {
    pub root: X509,
    root_key: PKey<Private>,
    pub issuing: X509,
    issuing_key: PKey<Private>,
    serial: AtomicU32,
}

impl Pki {
    pub fn new() -> Self {
        let now = unix_now() - 3600;
        let root_key = ec_key();
        let root = cert(
            "Test Root",
            &public(&root_key),
            None,
            &root_key,
            Profile::Ca,
            1,
            now,
            864_000,
        );
        let issuing_key = ec_key();
        let issuing = cert(
            "Test Issuing",
            &public(&issuing_key),
            Some(&root),
            &root_key,
            Profile::Ca,
            2,
            now,
            864_000,
        );
        Pki {
            root,
            root_key,
            issuing,
            issuing_key,
            serial: AtomicU32::new(100),
        }
    }

    /// A card certificate for `key` (DER) valid from `not_before` for `lifetime` seconds.
    pub fn issue_card(&self, key: &PKey<Public>, not_before: i64, lifetime: i64) -> Vec<u8> {
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        cert(
            "Dr Ada Smith",
            key,
            Some(&self.issuing),
            &self.issuing_key,
            Profile::Card,
            serial,
            not_before,
            lifetime,
        )
        .to_der()
        .unwrap()
    }

    /// A fresh one-day card certificate for the key of a DER CSR.
    fn issue_for_csr(&self, csr_der: &[u8]) -> Result<Vec<u8>, tonic::Status> {
        let csr =
            X509Req::from_der(csr_der).map_err(|_| tonic::Status::invalid_argument("bad CSR"))?;
        let key = csr
            .public_key()
            .map_err(|_| tonic::Status::invalid_argument("bad CSR key"))?;
        if !csr.verify(&key).unwrap_or(false) {
            return Err(tonic::Status::invalid_argument("CSR signature"));
        }
        Ok(self.issue_card(&key, unix_now() - 60, 86_400))
    }

    /// The chain above a card certificate: issuing, root.
    pub fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.issuing.to_der().unwrap(), self.root.to_der().unwrap()]
    }
}

/// What the tests steer and observe.
#[derive(Default)]
pub struct MockState {
    /// Card states for CardStatus and Renew (absent: ACTIVE).
    pub card_states: Mutex<HashMap<String, CardState>>,
    /// Renew calls still to be answered UNAVAILABLE with `retry-after: 1`.
    pub renew_busy: AtomicU32,
    /// Leaf certificates presented by Renew clients (DER), in order.
    pub presented: Mutex<Vec<Vec<u8>>>,
    /// Successful renewals.
    pub renewals: AtomicU32,
    /// CardStatus calls.
    pub status_calls: AtomicU32,
    /// While set, CardStatus holds its answer back (a slow CA).
    pub status_held: std::sync::atomic::AtomicBool,
    /// Enrolments answered so far (numbers the card ids).
    enrolments: AtomicU32,
}

impl MockState {
    pub fn set_state(&self, card_id: &str, state: CardState) {
        self.card_states
            .lock()
            .unwrap()
            .insert(card_id.to_string(), state);
    }

    fn state(&self, card_id: &str) -> CardState {
        self.card_states
            .lock()
            .unwrap()
            .get(card_id)
            .copied()
            .unwrap_or(CardState::Active)
    }
}

#[derive(Clone)]
struct Service {
    pki: Arc<Pki>,
    state: Arc<MockState>,
}

fn answer(pki: &Pki, card_id: String, certificate_der: Vec<u8>) -> EnrollResponse {
    EnrollResponse {
        card_id,
        certificate_der,
        chain_der: pki.chain(),
        holder_name: "Dr Ada Smith".into(),
        user_id: "555123456789".into(),
        role: "R8000 Clinical Practitioner".into(),
        signing_certificate_der: Vec::new(),
    }
}

#[tonic::async_trait]
impl Enrollment for Service {
    async fn enroll(
        &self,
        request: tonic::Request<EnrollRequest>,
    ) -> Result<tonic::Response<EnrollResponse>, tonic::Status> {
        let req = request.into_inner();
        let n = self.state.enrolments.fetch_add(1, Ordering::SeqCst) + 1;
        let (card_id, cert) = match req.code.as_str() {
            "GOOD-CODE" => (
                format!("LNY-TEST-{n}"),
                self.pki.issue_for_csr(&req.csr_der)?,
            ),
            "WRONG-KEY" => {
                self.pki.issue_for_csr(&req.csr_der)?;
                let other = public(&ec_key());
                (
                    format!("LNY-TEST-{n}"),
                    self.pki.issue_card(&other, unix_now() - 60, 86_400),
                )
            }
            code if code.starts_with("REISSUE-") => (
                code.trim_start_matches("REISSUE-").to_string(),
                self.pki.issue_for_csr(&req.csr_der)?,
            ),
            _ => {
                return Err(tonic::Status::permission_denied(
                    "enrolment code not valid or already used",
                ))
            }
        };
        Ok(tonic::Response::new(answer(&self.pki, card_id, cert)))
    }

    // Derived enrolment is tested against the real CA (ca/tests/derived.rs,
    // tests/tests/system/derived_enrolment.rs); this mock has none.
    async fn derive_challenge(
        &self,
        _request: tonic::Request<lanyard_proto::ca::DeriveChallengeRequest>,
    ) -> Result<tonic::Response<lanyard_proto::ca::DeriveChallengeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "no derived enrolment in the mock CA",
        ))
    }

    async fn enroll_derived(
        &self,
        _request: tonic::Request<lanyard_proto::ca::EnrollDerivedRequest>,
    ) -> Result<tonic::Response<EnrollResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "no derived enrolment in the mock CA",
        ))
    }

    async fn reset_pin(
        &self,
        request: tonic::Request<ResetPinRequest>,
    ) -> Result<tonic::Response<EnrollResponse>, tonic::Status> {
        let req = request.into_inner();
        match req.code.as_str() {
            "RESET-OK" => {
                let cert = self.pki.issue_for_csr(&req.csr_der)?;
                Ok(tonic::Response::new(answer(&self.pki, req.card_id, cert)))
            }
            "RESET-LAST" => {
                let mut s = tonic::Status::failed_precondition(
                    "the reset code's tries are used up; the card must be re-issued",
                );
                s.metadata_mut()
                    .insert("lanyard-card-destroyed", "1".parse().unwrap());
                Err(s)
            }
            _ => Err(tonic::Status::permission_denied(
                "reset code not valid (2 tries left)",
            )),
        }
    }
}

#[tonic::async_trait]
impl Revocation for Service {
    async fn card_status(
        &self,
        request: tonic::Request<CardStatusRequest>,
    ) -> Result<tonic::Response<CardStatusResponse>, tonic::Status> {
        self.state.status_calls.fetch_add(1, Ordering::SeqCst);
        while self.state.status_held.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let req = request.into_inner();
        let state = self.state.state(&req.card_id);
        let revoked = state == CardState::Revoked;
        Ok(tonic::Response::new(CardStatusResponse {
            card_id: req.card_id,
            state: state as i32,
            reason: if revoked { 9 } else { 0 },
            revoked_at: 0,
            serial_revoked: revoked,
            serial_known: true,
        }))
    }
}

#[tonic::async_trait]
impl Renewal for Service {
    async fn renew(
        &self,
        request: tonic::Request<RenewRequest>,
    ) -> Result<tonic::Response<EnrollResponse>, tonic::Status> {
        let certs = request
            .peer_certs()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| tonic::Status::unauthenticated("a client certificate is required"))?;
        self.state
            .presented
            .lock()
            .unwrap()
            .push(certs[0].as_ref().to_vec());
        let req = request.into_inner();
        if self
            .state
            .renew_busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut s = tonic::Status::unavailable("issuance limit reached");
            s.metadata_mut().insert("retry-after", "1".parse().unwrap());
            return Err(s);
        }
        if self.state.state(&req.card_id) != CardState::Active {
            return Err(tonic::Status::failed_precondition(
                "the card is suspended or revoked",
            ));
        }
        let cert = self.pki.issue_for_csr(&req.csr_der)?;
        self.state.renewals.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(answer(&self.pki, req.card_id, cert)))
    }
}

/// A running mock CA.
pub struct MockCa {
    _rt: tokio::runtime::Runtime,
    pub url: String,
    pub root_pem: PathBuf,
    pub pki: Arc<Pki>,
    pub state: Arc<MockState>,
}

impl MockCa {
    /// Starts the CA on 127.0.0.1 (a free port); writes its root to `dir/root.pem`.
    pub fn start(dir: &Path) -> MockCa {
        let pki = Arc::new(Pki::new());
        let tls_key = ec_key();
        let tls = cert(
            "localhost",
            &public(&tls_key),
            Some(&pki.root),
            &pki.root_key,
            Profile::Server,
            3,
            unix_now() - 3600,
            864_000,
        );
        let root_pem = dir.join("root.pem");
        std::fs::write(&root_pem, pki.root.to_pem().unwrap()).unwrap();
        let identity = Identity::from_pem(
            tls.to_pem().unwrap(),
            tls_key.private_key_to_pem_pkcs8().unwrap(),
        );
        let tls_config = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(pki.root.to_pem().unwrap()))
            .client_auth_optional(true);
        let state = Arc::new(MockState::default());
        let service = Service {
            pki: pki.clone(),
            state: state.clone(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = Server::builder()
            .tls_config(tls_config)
            .unwrap()
            .add_service(EnrollmentServer::new(service.clone()))
            .add_service(RevocationServer::new(service.clone()))
            .add_service(RenewalServer::new(service))
            .serve_with_incoming(incoming);
        rt.spawn(server);
        MockCa {
            _rt: rt,
            url: format!("https://127.0.0.1:{}", addr.port()),
            root_pem,
            pki,
            state,
        }
    }

    /// The root as PEM text.
    pub fn root_pem_text(&self) -> String {
        String::from_utf8(self.pki.root.to_pem().unwrap()).unwrap()
    }
}

/// An https URL on 127.0.0.1 where nothing listens.
pub fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("https://127.0.0.1:{port}")
}
