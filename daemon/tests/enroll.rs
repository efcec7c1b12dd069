//! `lanyard enroll` end to end against a stand-in CA: a real tonic server
//! over TLS on 127.0.0.1 (IP SAN), issuing with an openssl CA. Checks the
//! CLI contract (JSON, exit codes) and that a failure leaves no card file.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use lanyard_proto::ca::enrollment_server::{Enrollment, EnrollmentServer};
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Req, X509};
use tonic::transport::{Identity, Server, ServerTlsConfig};

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn cert(
    cn: &str,
    key: &PKey<openssl::pkey::Public>,
    issuer: Option<(&X509, &PKey<Private>)>,
    signer: &PKey<Private>,
    ca: bool,
    server: bool,
    serial: u32,
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
        Some((c, _)) => b.set_issuer_name(c.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    } else {
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    if server {
        let ctx = b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None);
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&ctx)
            .unwrap();
        b.append_extension(san).unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
    }
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

struct MockCa {
    root: X509,
    issuing: X509,
    issuing_key: PKey<Private>,
    serial: AtomicU32,
}

#[tonic::async_trait]
impl Enrollment for MockCa {
    async fn enroll(
        &self,
        request: tonic::Request<EnrollRequest>,
    ) -> Result<tonic::Response<EnrollResponse>, tonic::Status> {
        let req = request.into_inner();
        let csr = X509Req::from_der(&req.csr_der)
            .map_err(|_| tonic::Status::invalid_argument("bad CSR"))?;
        let csr_key = csr.public_key().unwrap();
        if !csr.verify(&csr_key).unwrap() {
            return Err(tonic::Status::invalid_argument("CSR signature"));
        }
        let key = match req.code.as_str() {
            "GOOD-CODE" => csr_key,
            "WRONG-KEY" => {
                let other = ec_key();
                PKey::public_key_from_der(&other.public_key_to_der().unwrap()).unwrap()
            }
            _ => {
                return Err(tonic::Status::permission_denied(
                    "enrolment code not valid or already used",
                ))
            }
        };
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let leaf = cert(
            "Dr Ada Smith",
            &key,
            Some((&self.issuing, &self.issuing_key)),
            &self.issuing_key,
            false,
            false,
            100 + n,
        );
        Ok(tonic::Response::new(EnrollResponse {
            card_id: format!("LNY-TEST-{n}"),
            certificate_der: leaf.to_der().unwrap(),
            chain_der: vec![self.issuing.to_der().unwrap(), self.root.to_der().unwrap()],
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
        }))
    }
}

struct CaFixture {
    _rt: tokio::runtime::Runtime,
    url: String,
    root_pem: std::path::PathBuf,
}

fn public(k: &PKey<Private>) -> PKey<openssl::pkey::Public> {
    PKey::public_key_from_der(&k.public_key_to_der().unwrap()).unwrap()
}

fn start_ca(dir: &std::path::Path) -> CaFixture {
    let root_key = ec_key();
    let root = cert(
        "Test Root",
        &public(&root_key),
        None,
        &root_key,
        true,
        false,
        1,
    );
    let issuing_key = ec_key();
    let issuing = cert(
        "Test Issuing",
        &public(&issuing_key),
        Some((&root, &root_key)),
        &root_key,
        true,
        false,
        2,
    );
    let tls_key = ec_key();
    let tls = cert(
        "localhost",
        &public(&tls_key),
        Some((&root, &root_key)),
        &root_key,
        false,
        true,
        3,
    );
    let root_pem = dir.join("root.pem");
    std::fs::write(&root_pem, root.to_pem().unwrap()).unwrap();
    let identity = Identity::from_pem(
        tls.to_pem().unwrap(),
        tls_key.private_key_to_pem_pkcs8().unwrap(),
    );
    let service = MockCa {
        root,
        issuing,
        issuing_key,
        serial: AtomicU32::new(1),
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
        .tls_config(ServerTlsConfig::new().identity(identity))
        .unwrap()
        .add_service(EnrollmentServer::new(service))
        .serve_with_incoming(incoming);
    rt.spawn(server);
    CaFixture {
        _rt: rt,
        url: format!("https://127.0.0.1:{}", addr.port()),
        root_pem,
    }
}

fn card_files(env: &TestEnv) -> usize {
    std::fs::read_dir(env.store_dir().join("cards"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn enroll(env: &TestEnv, ca: &CaFixture, code: &str, key: &str, pin: &str) -> std::process::Output {
    env.lanyard(
        &[
            "enroll",
            "--ca",
            &ca.url,
            "--ca-cert",
            ca.root_pem.to_str().unwrap(),
            "--code",
            code,
            "--key",
            key,
            "--pin-stdin",
            "--json",
        ],
        &format!("{pin}\n"),
    )
}

#[test]
fn enrol_rsa_and_ec_then_sign_and_see_them_in_status() {
    let mut env = TestEnv::new();
    env.start();
    let ca = start_ca(env.tmp.path());

    let out = enroll(&env, &ca, "GOOD-CODE", "rsa-2048", PIN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["slot"], 0);
    assert_eq!(card["key_type"], "rsa-2048");
    assert_eq!(card["holder_name"], "Dr Ada Smith");
    let rsa_id = card["card_id"].as_str().unwrap().to_string();

    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["slot"], 1);
    assert_eq!(card["key_type"], "ec-p256");

    // Both slots are full now.
    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slots"));

    let out = env.lanyard(&["status", "--json"], "");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(cards[0]["card_id"], rsa_id.as_str());
    assert!(cards[0]["subject"]
        .as_str()
        .unwrap()
        .contains("Dr Ada Smith"));
    assert!(cards[0]["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(cards[0]["locked"], false);
    assert_eq!(cards[0]["max_pin_failures"], 3);

    // The enrolled card signs after a restart, and the chain is the CA's.
    env.stop();
    env.start();
    let mut c = env.client(9);
    assert_eq!(code(&c.login(&rsa_id, PIN)), 0);
    let sig = signature(&c.sign(
        &rsa_id,
        lanyard_proto::agent::SignAlgorithm::RsaPkcs1 as i32,
        &[1; 36],
    ));
    assert_eq!(sig.len(), 256);
    let log = env.log();
    assert!(!log.contains("GOOD-CODE") && !log.contains(PIN), "{log}");
}

#[test]
fn refused_codes_bad_keys_and_bad_pins_leave_no_card() {
    let mut env = TestEnv::new();
    env.start();
    let ca = start_ca(env.tmp.path());

    let out = enroll(&env, &ca, "USED-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = enroll(&env, &ca, "WRONG-KEY", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not for the key"));

    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", "12345");
    assert_eq!(out.status.code(), Some(4));
    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", "12345x");
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(card_files(&env), 0);
}

#[test]
fn an_unreachable_ca_is_retried_then_reported() {
    let mut env = TestEnv::new();
    env.start();
    let dir = env.tmp.path().to_path_buf();
    let ca = start_ca(&dir);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = CaFixture {
        _rt: tokio::runtime::Runtime::new().unwrap(),
        url: format!("https://127.0.0.1:{port}"),
        root_pem: ca.root_pem.clone(),
    };
    let out = enroll(&env, &down, "GOOD-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(env.log().contains("retrying in 2 s"), "{}", env.log());
    assert_eq!(card_files(&env), 0);
}

#[test]
fn without_a_daemon_the_cli_says_so_with_exit_3() {
    let env = TestEnv::new();
    let out = env.lanyard(&["status"], "");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lanyardd is not running (no socket at")
            && err.contains("start it with `lanyardd`"),
        "{err}"
    );
    let out = env.lanyard(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn change_pin_from_stdin() {
    let mut env = TestEnv::new();
    env.add_card("CARD-1", 0, lanyard_daemon::keys::KeyType::EcP256);
    env.start();
    let out = env.lanyard(&["change-pin", "--pin-stdin"], "000000\n24681357\n");
    assert_eq!(out.status.code(), Some(4));
    let out = env.lanyard(&["change-pin", "--pin-stdin"], &format!("{PIN}\n1234\n"));
    assert_eq!(out.status.code(), Some(4));
    let out = env.lanyard(
        &["change-pin", "--card", "CARD-1", "--pin-stdin"],
        &format!("{PIN}\n24681357\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What is on disk right after the change is the new PIN.
    env.stop();
    env.start();
    let mut c = env.client(1);
    assert_eq!(
        code(&c.login("CARD-1", PIN)),
        lanyard_proto::agent::ErrorCode::PinIncorrect as i32
    );
    assert_eq!(code(&c.login("CARD-1", "24681357")), 0);
}
