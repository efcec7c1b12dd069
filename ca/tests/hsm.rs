//! The issuing CA's key in a real SoftHSM2 token: `lanyard-ca init --key
//! pkcs11:…` keeps it there, what it signs (certificates, CRLs) passes
//! `openssl verify`, and a wrong PIN, an unknown token or a bad URI fail with
//! one clear line and create nothing. Also token keys (RSA, P-256) as the
//! client key of a real rustls handshake, as an IT-desk operator's would be.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use lanyard_ca::issuer::{CaSigningKey, IssuingCa};
use lanyard_ca::pkcs11_key::{KeyOrigin, Pkcs11Error, Pkcs11Key};
use lanyard_ca::pkcs11_uri::Pkcs11Uri;
use lanyard_certs::rcgen::{self, CertificateParams, Issuer, KeyPair};
use lanyard_certs::{
    check_csr, generate_ca_key, issuing_ca_params, root_ca_params, CardHolder, CertSerial,
    CrlContents, RevocationReason, RevokedCert, Validity,
};
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::EnrollRequest;
use lanyard_test_support::{in_ci, require_tool};
use time::OffsetDateTime;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

const BIN: &str = env!("CARGO_BIN_EXE_lanyard-ca");
/// Debian's softhsm2 package puts the module here.
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SO_PIN: &str = "5678";
const PIN: &str = "1234";

/// Whether SoftHSM2 and openssl are here; under CI=true a missing one fails.
fn hsm_available() -> bool {
    if !require_tool("softhsm2-util") || !require_tool("openssl") {
        return false;
    }
    if !Path::new(MODULE).is_file() {
        assert!(
            !in_ci(),
            "{MODULE} is missing and CI=true: run scripts/install-deps.sh (as root)"
        );
        eprintln!("\n*** SKIP: {MODULE} is missing; run scripts/install-deps.sh (as root) ***\n");
        return false;
    }
    true
}

/// A SoftHSM2 configuration with its own token directory.
struct SoftHsm {
    dir: PathBuf,
    conf: PathBuf,
}

impl SoftHsm {
    fn new(dir: &Path) -> SoftHsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        SoftHsm {
            dir: dir.to_path_buf(),
            conf,
        }
    }

    fn init_token(&self, label: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util --init-token: {out:?}");
    }

    fn pin_file(&self, name: &str, pin: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("{pin}\n")).unwrap();
        path
    }

    fn uri(token: &str, object: &str, pin_file: &Path) -> String {
        format!(
            "pkcs11:token={token};object={object}?module-path={MODULE}&pin-source=file:{}",
            pin_file.display()
        )
    }

    fn lanyard_ca(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .env("SOFTHSM2_CONF", &self.conf)
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap()
    }

    fn pkcs11_tool(&self, token: &str, args: &[&str]) {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                MODULE,
                "--token-label",
                token,
                "--login",
                "--pin",
                PIN,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "pkcs11-tool {args:?}: {out:?}");
    }
}

fn spki_of(pem_path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(pem_path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).unwrap();
    let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
    cert.public_key().raw.to_vec()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}

fn der_to_pem(der: &[u8], dir: &Path, name: &str) -> PathBuf {
    let der_path = dir.join(format!("{name}.der"));
    let pem_path = dir.join(format!("{name}.pem"));
    std::fs::write(&der_path, der).unwrap();
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-out",
        pem_path.to_str().unwrap(),
    ]);
    pem_path
}

/// `serve` on 127.0.0.1:0; killed on drop.
struct Serve(Child);

impl Serve {
    fn start(hsm: &SoftHsm, dir: &Path) -> (Serve, String) {
        let stderr = std::fs::File::create(hsm.dir.join("serve.stderr")).unwrap();
        let mut child = Command::new(BIN)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .args(["serve", "--dir", dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        let serve = Serve(child);
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "serve printed no listening line:\n{}",
                    std::fs::read_to_string(hsm.dir.join("serve.stderr")).unwrap_or_default()
                )
            });
        (serve, url)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_keeps_the_issuing_key_in_the_token_and_openssl_verifies_what_it_signs() {
    if !hsm_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    hsm.init_token("lanyard-ca");
    let uri = SoftHsm::uri("lanyard-ca", "issuing", &hsm.pin_file("pin", PIN));
    let dir = tmp.path().join("ca");

    let out = hsm.lanyard_ca(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--key",
        &uri,
        "--json",
    ]);
    assert!(out.status.success(), "init --key failed: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["issuing_key_origin"], "generated");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PIN));
    assert!(
        !dir.join("issuing.key").exists(),
        "no issuing.key with an HSM key"
    );
    assert!(dir.join("root.key").exists());
    let toml = std::fs::read_to_string(dir.join("ca.toml")).unwrap();
    assert!(toml.contains(&format!("issuing_key = \"{uri}\"")), "{toml}");

    let root = dir.join("root.pem");
    let issuing = dir.join("issuing.pem");
    let root_s = root.to_str().unwrap();
    let issuing_s = issuing.to_str().unwrap();
    openssl(&["verify", "-CAfile", root_s, issuing_s]);
    // server.pem is signed by the token's key.
    let server = dir.join("server.pem");
    openssl(&[
        "verify",
        "-CAfile",
        root_s,
        "-untrusted",
        issuing_s,
        server.to_str().unwrap(),
    ]);

    // A second CA on the same URI uses the key already in the token.
    let dir2 = tmp.path().join("ca2");
    let out = hsm.lanyard_ca(&[
        "init",
        "--dir",
        dir2.to_str().unwrap(),
        "--key",
        &uri,
        "--json",
    ]);
    assert!(out.status.success(), "second init failed: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["issuing_key_origin"], "existing");
    assert_eq!(spki_of(&issuing), spki_of(&dir2.join("issuing.pem")));
    assert_ne!(spki_of(&root), spki_of(&dir2.join("root.pem")));

    // Enrol a card through `serve`: the certificate is signed in the token.
    let (_serve, url) = Serve::start(&hsm, &dir);
    let out = hsm.lanyard_ca(&[
        "admin",
        "issue-card",
        "--dir",
        dir.to_str().unwrap(),
        "--name",
        "Dr Ada Smith",
        "--user-id",
        "555123456789",
        "--role",
        "R8000 Clinical Practitioner",
        "--json",
    ]);
    assert!(out.status.success(), "issue-card failed: {out:?}");
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = card["code"].as_str().unwrap().to_string();

    let card_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&card_key)
        .unwrap()
        .der()
        .to_vec();
    let root_pem = std::fs::read(&root).unwrap();
    let response = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(url)
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        EnrollmentClient::new(channel)
            .enroll(EnrollRequest {
                signing_csr_der: Vec::new(),
                code,
                csr_der: csr,
            })
            .await
            .unwrap()
            .into_inner()
    });
    let card_pem = der_to_pem(&response.certificate_der, tmp.path(), "card");
    let verdict = openssl(&[
        "verify",
        "-CAfile",
        root_s,
        "-untrusted",
        issuing_s,
        card_pem.to_str().unwrap(),
    ]);
    assert!(verdict.contains(": OK"), "{verdict}");
}

#[test]
fn bad_pin_unknown_token_and_bad_uris_fail_clearly_and_create_nothing() {
    if !hsm_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    hsm.init_token("lanyard-ca");
    let good_pin = hsm.pin_file("pin", PIN);
    let wrong_pin = hsm.pin_file("wrong-pin", "9999");
    let missing_pin = tmp.path().join("no-such-pin");
    let cases = [
        (
            SoftHsm::uri("lanyard-ca", "issuing", &wrong_pin),
            "wrong PIN for token \"lanyard-ca\"",
        ),
        (
            SoftHsm::uri("no-such-token", "issuing", &good_pin),
            "no PKCS#11 token matches",
        ),
        (
            SoftHsm::uri("lanyard-ca", "issuing", &missing_pin),
            "cannot read the PIN file",
        ),
        (
            format!("pkcs11:token=lanyard-ca;object=issuing?pin-source=file:{}", good_pin.display()),
            "no module-path",
        ),
        (
            format!(
                "pkcs11:token=lanyard-ca;object=issuing?module-path=/nonexistent/libnone.so&pin-source=file:{}",
                good_pin.display()
            ),
            "cannot load the PKCS#11 module /nonexistent/libnone.so",
        ),
        (
            format!("pkcs11:token=lanyard-ca?module-path={MODULE}&pin-source=file:{}", good_pin.display()),
            "names no key",
        ),
        (
            "pkcs11:token=lanyard ca;object=issuing".to_string(),
            "must be percent-encoded",
        ),
        ("file:/etc/key.pem".to_string(), "starts with \"pkcs11:\""),
    ];
    for (i, (uri, expected)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("ca{i}"));
        let out = hsm.lanyard_ca(&["init", "--dir", dir.to_str().unwrap(), "--key", uri]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{uri}: {out:?}");
        assert!(
            stderr.contains(expected),
            "{uri}: expected {expected:?} in:\n{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            !stderr.contains(PIN) && !stderr.contains("9999"),
            "{stderr}"
        );
        assert!(!dir.exists(), "{uri}: {} was created", dir.display());
    }
    // The token lists what it has, so a typo is easy to see.
    let out = hsm.lanyard_ca(&[
        "init",
        "--dir",
        tmp.path().join("x").to_str().unwrap(),
        "--key",
        &cases[1].0,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"lanyard-ca\" (slot-id"));

    // None of the failures left a key in the token: the next init generates one.
    let dir = tmp.path().join("ca");
    let uri = SoftHsm::uri("lanyard-ca", "issuing", &good_pin);
    let out = hsm.lanyard_ca(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--key",
        &uri,
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["issuing_key_origin"], "generated");

    // pin-value works but is called out: the PIN is in ca.toml for all to read.
    let dir_pv = tmp.path().join("ca-pv");
    let uri_pv =
        format!("pkcs11:token=lanyard-ca;object=other?module-path={MODULE}&pin-value={PIN}");
    let out = hsm.lanyard_ca(&[
        "init",
        "--dir",
        dir_pv.to_str().unwrap(),
        "--key",
        &uri_pv,
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pin-value") && stderr.contains("pin-source=file:"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("pin-value"),
        "{out:?}"
    );

    // A CA whose token then refuses the PIN does not start, and says why.
    std::fs::write(&good_pin, "0000\n").unwrap();
    let out = hsm.lanyard_ca(&[
        "serve",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong PIN"),
        "{out:?}"
    );
}

/// Removes the token directories of earlier test processes that have ended.
fn remove_stale_hsm_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("hsm-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The SoftHSM2 configuration of this test process: the module reads
/// SOFTHSM2_CONF once, when it is first loaded, so in-process tests share it.
fn process_hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_hsm_dirs(base);
        let dir = base.join(format!("hsm-{}", std::process::id()));
        let hsm = SoftHsm::new(&dir);
        hsm.init_token("keys");
        // PKCS#11 logins are per token and process: the error test gets its own.
        // (No label may be a prefix of another: pkcs11-tool --token-label matches prefixes.)
        hsm.init_token("errors");
        // Keys made by another tool (pkcs11-tool), as an operator's would be.
        hsm.pkcs11_tool(
            "keys",
            &[
                "--keypairgen",
                "--key-type",
                "rsa:2048",
                "--label",
                "op-rsa",
                "--id",
                "0a",
            ],
        );
        hsm.pkcs11_tool(
            "keys",
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "op-ec",
                "--id",
                "0b",
            ],
        );
        // As on an operator's card, a certificate next to the EC key.
        let cert = dummy_certificate();
        let path = dir.join("op-ec.der");
        std::fs::write(&path, cert).unwrap();
        hsm.pkcs11_tool(
            "keys",
            &[
                "--write-object",
                path.to_str().unwrap(),
                "--type",
                "cert",
                "--id",
                "0b",
                "--label",
                "op-ec",
            ],
        );
        // Set before the module is loaded; std serialises its own env access.
        std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
        hsm
    })
}

/// A certificate to store in the token; only its lookup by id is tested.
fn dummy_certificate() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    CertificateParams::default()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn token_uri(token: &str, object: &str) -> Pkcs11Uri {
    let hsm = process_hsm();
    Pkcs11Uri::parse(&SoftHsm::uri(token, object, &hsm.pin_file("pin", PIN))).unwrap()
}

fn lib_uri(object: &str) -> Pkcs11Uri {
    token_uri("keys", object)
}

/// A root (file key) and an issuing CA whose key is generated in the token.
fn hsm_issuing_ca() -> (IssuingCa, KeyPair, CertificateParams) {
    let (key, origin) = Pkcs11Key::open_or_generate(&lib_uri("issuing")).unwrap();
    assert_eq!(origin, KeyOrigin::Generated);
    let now = OffsetDateTime::now_utc();
    let root_key = generate_ca_key().unwrap();
    let root_params = root_ca_params("HSM Trust", &CertSerial::from_random([1; 16]), now).unwrap();
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root = Issuer::from_params(&root_params, &root_key);
    let issuing = issuing_ca_params("HSM Trust", &CertSerial::from_random([2; 16]), now)
        .unwrap()
        .signed_by(&key, &root)
        .unwrap();
    let ca = IssuingCa::from_signer(
        issuing.der().to_vec(),
        root_cert.der().to_vec(),
        CaSigningKey::Pkcs11(key),
    )
    .unwrap();
    (ca, root_key, root_params)
}

struct Resolver(Arc<rustls::sign::CertifiedKey>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl rustls::client::ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS handshake in memory: the client authenticates with `key` (in the
/// token) and `chain`; returns the certificate the server saw.
fn handshake(
    version: &'static rustls::SupportedProtocolVersion,
    key: Pkcs11Key,
    chain: Vec<Vec<u8>>,
    root_der: &[u8],
    root_key: &KeyPair,
    root_params: &CertificateParams,
) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der.to_vec())).unwrap();
    let roots = Arc::new(roots);

    let server_key = lanyard_certs::generate_server_key().unwrap();
    let server_cert = lanyard_certs::server_params(
        "HSM Trust",
        &[],
        &CertSerial::from_random([3; 16]),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
    .signed_by(&server_key, &Issuer::from_params(root_params, root_key))
    .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(
        chain.into_iter().map(CertificateDer::from).collect(),
        Arc::new(key),
    );
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Resolver(Arc::new(certified))));

    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
            .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        if !client.is_handshaking() && !server.is_handshaking() {
            let peer = server.peer_certificates().unwrap();
            return peer[0].to_vec();
        }
    }
    panic!("the TLS handshake did not finish");
}

#[test]
fn token_keys_sign_certificates_crls_csrs_and_tls_handshakes() {
    if !hsm_available() || !require_tool("pkcs11-tool") {
        return;
    }
    let hsm = process_hsm();
    let (ca, root_key, root_params) = hsm_issuing_ca();
    let work = hsm.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let root_pem = der_to_pem(ca.root_der(), &work, "root");
    let issuing_pem = der_to_pem(ca.issuing_der(), &work, "issuing");

    // A card certificate and a CRL, both signed in the token.
    let card_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = check_csr(
        CertificateParams::default()
            .serialize_request(&card_key)
            .unwrap()
            .der(),
    )
    .unwrap();
    let holder = CardHolder {
        holder_name: "Dr Ada Smith".into(),
        user_id: "555123456789".into(),
        role: "R8000 Clinical Practitioner".into(),
        card_id: "0A1B2C3D4E5F".into(),
        organisation: "HSM Trust".into(),
    };
    let serial = CertSerial::from_random([0x44; 16]);
    let validity = Validity::card(OffsetDateTime::now_utc(), time::Duration::minutes(5)).unwrap();
    let (card_der, _) = ca.issue(&csr, &holder, &serial, validity).unwrap();
    let card_pem = der_to_pem(&card_der, &work, "card");
    let verdict = openssl(&[
        "verify",
        "-CAfile",
        root_pem.to_str().unwrap(),
        "-untrusted",
        issuing_pem.to_str().unwrap(),
        card_pem.to_str().unwrap(),
    ]);
    assert!(verdict.contains(": OK"), "{verdict}");

    let now = OffsetDateTime::now_utc();
    let crl = ca
        .sign_crl(&CrlContents {
            number: 7,
            this_update: now,
            next_update: now + time::Duration::hours(1),
            revoked: vec![RevokedCert {
                serial,
                revoked_at: now,
                reason: RevocationReason::KeyCompromise,
            }],
        })
        .unwrap();
    let crl_path = work.join("issuing.crl");
    std::fs::write(&crl_path, &crl).unwrap();
    let bundle = work.join("bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read(&issuing_pem).unwrap(),
            std::fs::read(&root_pem).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_path.to_str().unwrap(),
        "-CAfile",
        bundle.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("verify OK"), "{text}");
    assert!(text.to_lowercase().contains(&serial.to_hex()), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    // openssl refuses the card once the CRL lists it.
    let refused = Command::new("openssl")
        .args(["verify", "-crl_check", "-CRLfile"])
        .arg(&crl_path)
        .args(["-CAfile"])
        .arg(&root_pem)
        .arg("-untrusted")
        .arg(&issuing_pem)
        .arg(&card_pem)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");

    // Keys made by another tool (RSA and P-256) sign CSRs and TLS handshakes.
    for (label, has_certificate, versions) in [
        (
            "op-rsa",
            false,
            vec![&rustls::version::TLS13, &rustls::version::TLS12],
        ),
        ("op-ec", true, vec![&rustls::version::TLS13]),
    ] {
        let key = Pkcs11Key::open(&lib_uri(label)).unwrap();
        // Found by the key's id, as an operator's card keeps its certificate.
        let stored = key.certificate_der().unwrap();
        assert_eq!(stored.is_some(), has_certificate, "{label}");
        // The CSR's self-signature is made in the token and checked by the CA.
        let csr = check_csr(
            CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(csr.spki_der(), key.spki_der());
        let (operator_der, _) = ca
            .issue_operator(
                &csr,
                "Grace Hopper",
                "HSM Trust",
                &CertSerial::from_random([0x55; 16]),
                Validity::card(OffsetDateTime::now_utc(), time::Duration::days(1)).unwrap(),
            )
            .unwrap();
        for version in versions {
            let seen = handshake(
                version,
                key.clone(),
                vec![operator_der.clone(), ca.issuing_der().to_vec()],
                ca.root_der(),
                &root_key,
                &root_params,
            );
            assert_eq!(seen, operator_der, "{label} {version:?}");
            let who = lanyard_certs::operator_identity(&seen).unwrap();
            assert_eq!(who.name, "Grace Hopper");
        }
    }
}

#[test]
fn opening_a_key_reports_what_is_wrong() {
    if !hsm_available() {
        return;
    }
    let _ = process_hsm();
    let err = Pkcs11Key::open_with_pin(
        &token_uri("errors", "anything"),
        Some("0000".to_string().into()),
    )
    .unwrap_err();
    assert!(matches!(err, Pkcs11Error::WrongPin { .. }), "{err}");
    let err = Pkcs11Key::open(&token_uri("errors", "no-such-key")).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoKey { .. }), "{err}");
    assert!(err.to_string().contains("no-such-key"), "{err}");
    let mut uri = token_uri("errors", "x");
    uri.object_type = Some(lanyard_ca::pkcs11_uri::ObjectType::Cert);
    assert!(matches!(
        Pkcs11Key::open(&uri).unwrap_err(),
        Pkcs11Error::NotAPrivateKey {
            kind: "certificate"
        }
    ));
    let mut uri = token_uri("errors", "x");
    uri.token = Some("not-there".into());
    let err = Pkcs11Key::open(&uri).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NoToken { .. }), "{err}");
    assert!(err.to_string().contains("\"errors\""), "{err}");
    let mut uri = token_uri("errors", "x");
    uri.module_path = None;
    assert!(matches!(
        Pkcs11Key::open(&uri).unwrap_err(),
        Pkcs11Error::NoModulePath
    ));
}
