//! The CA for real: `lanyard-ca init`, `serve` on 127.0.0.1:0 and `admin
//! issue-card` as processes, and `Enroll` over TLS with a tonic client that
//! trusts only root.pem; on the database `LANYARD_TEST_DB` names (SQLite by
//! default, a fresh PostgreSQL database with `postgres`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanyard_ca::store::{DbLocation, Store};
use lanyard_certs::rcgen::{self, CertificateParams, DistinguishedName, DnType, KeyPair};
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use lanyard_test_support::{TestBackend, TestDb};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};

const BIN: &str = env!("CARGO_BIN_EXE_lanyard-ca");

/// A CA directory with `serve` running; the server is stopped with SIGTERM on drop.
struct TestCa {
    tmp: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    db: TestDb,
}

fn lanyard_ca(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run lanyard-ca")
}

impl TestCa {
    fn start() -> TestCa {
        Self::start_with_env(&[])
    }

    fn start_with_env(env: &[(&str, &str)]) -> TestCa {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let db = TestDb::from_env();
        let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--json"];
        let db_args = db.init_args();
        args.extend(db_args.iter().map(String::as_str));
        let out = lanyard_ca(&args);
        assert!(out.status.success(), "init failed: {out:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["root_pem"], dir.join("root.pem").to_str().unwrap());
        if let Some(pg) = db.postgres() {
            let printed = format!("{out:?}");
            assert!(
                !printed.contains(pg.password()),
                "init printed the password"
            );
            let shown = json["database"].as_str().unwrap();
            assert!(
                shown.contains(":****@") && shown.ends_with(pg.name()),
                "{shown}"
            );
        }

        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700);
        for key in ["root.key", "issuing.key", "server.key"] {
            assert_eq!(mode(key), 0o600, "{key}");
        }
        match db.backend() {
            TestBackend::Sqlite => assert_eq!(mode("ca.db"), 0o600),
            // ca.toml holds the database password; there is no ca.db.
            TestBackend::Postgres => {
                assert_eq!(mode("ca.toml"), 0o600);
                assert!(!dir.join("ca.db").exists());
            }
        }

        // serve must not need the root key: move it "offline".
        std::fs::rename(dir.join("root.key"), tmp.path().join("offline-root.key")).unwrap();

        let stderr = std::fs::File::create(tmp.path().join("serve.stderr")).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .envs(env.iter().copied())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "no listening line; stderr:\n{}",
                    std::fs::read_to_string(tmp.path().join("serve.stderr")).unwrap_or_default()
                )
            });
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        TestCa {
            tmp,
            child: Some(child),
            url,
            db,
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    /// The CA's database (ca.db or PostgreSQL), opened as a second process would.
    async fn store(&self) -> Store {
        let location =
            DbLocation::from_setting(self.db.url().as_deref(), &self.dir().join("ca.db"));
        Store::open(&location.unwrap()).await.unwrap()
    }

    fn issue_card(&self, extra: &[&str]) -> serde_json::Value {
        let dir = self.dir();
        let mut args = vec![
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
        ];
        args.extend_from_slice(extra);
        let out = lanyard_ca(&args);
        assert!(out.status.success(), "issue-card failed: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn client(&self) -> EnrollmentClient<Channel> {
        let root = std::fs::read(self.dir().join("root.pem")).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root))
            .domain_name("localhost");
        let channel = Channel::from_shared(self.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        EnrollmentClient::new(channel)
    }

    fn serve_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("serve.stderr")).unwrap_or_default()
    }

    /// SIGTERM, then wait: serve must stop by itself and exit 0.
    async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        panic!("serve did not stop on SIGTERM");
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn p256_csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Mallory Requested");
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().der().to_vec()
}

async fn enroll(
    client: &mut EnrollmentClient<Channel>,
    code: &str,
    csr: Vec<u8>,
) -> Result<EnrollResponse, tonic::Status> {
    client
        .enroll(EnrollRequest {
            signing_csr_der: Vec::new(),
            code: code.to_string(),
            csr_der: csr,
        })
        .await
        .map(|r| r.into_inner())
}

fn pem_der(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    x509_parser::pem::parse_x509_pem(&bytes).unwrap().1.contents
}

fn code_of(card: &serde_json::Value) -> String {
    card["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn enrol_issues_a_verifiable_certificate_once() {
    let mut ca = TestCa::start();
    let card = ca.issue_card(&[]);
    let code = code_of(&card);
    assert_eq!(code.len(), 19, "{code}");
    assert_eq!(card["card_id"].as_str().unwrap().len(), 12);
    assert!(card["expires_at"].as_str().unwrap().ends_with('Z'));

    let mut client = ca.client().await;
    let csr = p256_csr();
    // Typed casually: lower case, spaces instead of dashes.
    let typed = code.to_lowercase().replace('-', " ");
    let resp = enroll(&mut client, &typed, csr.clone()).await.unwrap();

    assert_eq!(resp.card_id, card["card_id"].as_str().unwrap());
    assert_eq!(resp.holder_name, "Dr Ada Smith");
    assert_eq!(resp.user_id, "555123456789");
    assert_eq!(resp.role, "R8000 Clinical Practitioner");
    assert_eq!(resp.chain_der.len(), 2);
    let root = pem_der(&ca.dir().join("root.pem"));
    let issuing = pem_der(&ca.dir().join("issuing.pem"));
    assert_eq!(resp.chain_der[0], issuing);
    assert_eq!(resp.chain_der[1], root);
    lanyard_certs::verify_issued_by(&resp.certificate_der, &resp.chain_der[0]).unwrap();
    lanyard_certs::verify_issued_by(&resp.chain_der[0], &resp.chain_der[1]).unwrap();
    lanyard_certs::verify_issued_by(&resp.chain_der[1], &resp.chain_der[1]).unwrap();

    let (_, cert) = X509Certificate::from_der(&resp.certificate_der).unwrap();
    let subject = cert.subject().to_string();
    assert!(subject.contains("CN=Dr Ada Smith"), "{subject}");
    assert!(!subject.contains("Mallory"), "{subject}");
    let checked = lanyard_certs::check_csr(&csr).unwrap();
    assert_eq!(cert.public_key().raw, checked.spki_der());
    let life = cert.validity().not_after.to_datetime() - time::OffsetDateTime::now_utc();
    assert!(life > time::Duration::days(29) && life <= time::Duration::days(30));

    // OpenSSL agrees the chain verifies for TLS client authentication.
    if Command::new("openssl").arg("version").output().is_ok() {
        let leaf = ca.tmp.path().join("leaf.der");
        std::fs::write(&leaf, &resp.certificate_der).unwrap();
        let leaf_pem = ca.tmp.path().join("leaf.pem");
        let conv = Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&leaf)
            .arg("-out")
            .arg(&leaf_pem)
            .output()
            .unwrap();
        assert!(conv.status.success(), "{conv:?}");
        let v = Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(ca.dir().join("root.pem"))
            .arg("-untrusted")
            .arg(ca.dir().join("issuing.pem"))
            .arg(&leaf_pem)
            .output()
            .unwrap();
        assert!(v.status.success(), "openssl verify: {v:?}");
    }

    // The same code again: refused, and the message does not echo it.
    let err = enroll(&mut client, &code, p256_csr()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err
        .message()
        .contains("not recognised, expired or already used"));
    assert!(!err.message().contains(&code));
    // The same code with the same request (the enrolment retried after its
    // answer was lost) gets the same certificate, no new serial, audited.
    let retry = enroll(&mut client, &code, csr.clone()).await.unwrap();
    assert_eq!(retry.certificate_der, resp.certificate_der);
    assert_eq!(retry.chain_der, resp.chain_der);
    assert_eq!(retry.card_id, resp.card_id);
    // The same key with a signing key it did not certify stays refused.
    let err = client
        .enroll(EnrollRequest {
            signing_csr_der: p256_csr(),
            code: code.clone(),
            csr_der: csr.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let store = ca.store().await;
    let certs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(certs, 1);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap();
    store.close().await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(
        (
            count("enrolled"),
            count("enrol_repeated"),
            count("enrol_failed")
        ),
        (1, 1, 2),
        "{actions:?}"
    );

    // Graceful stop (serve waits for the open connection); the log never shows the code.
    let status = ca.stop().await;
    assert!(status.success(), "serve exit status {status:?}");
    drop(client);
    let log = ca.serve_log();
    assert!(!log.contains("stopping anyway"), "{log}");
    assert!(log.contains("card enrolled"), "{log}");
    let bare = code.replace('-', "");
    assert!(
        !log.contains(&code) && !log.contains(&bare),
        "code in log:\n{log}"
    );
    if let Some(pg) = ca.db.postgres() {
        assert!(log.contains("database=Postgres"), "{log}");
        assert!(!log.contains(pg.password()), "password in log:\n{log}");
    }
}

#[tokio::test]
async fn rsa_request_from_openssl_is_accepted() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed; skipping");
        return;
    }
    let ca = TestCa::start();
    let key = ca.tmp.path().join("rsa.key");
    let csr = ca.tmp.path().join("rsa.csr");
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=whoever",
        ])
        .arg("-keyout")
        .arg(&key)
        .args(["-outform", "DER", "-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let csr = std::fs::read(&csr).unwrap();
    let card = ca.issue_card(&[]);
    let mut client = ca.client().await;
    let resp = enroll(&mut client, &code_of(&card), csr).await.unwrap();
    let (_, cert) = X509Certificate::from_der(&resp.certificate_der).unwrap();
    assert!(cert.subject().to_string().contains("CN=Dr Ada Smith"));
}

#[tokio::test]
async fn wrong_codes_are_refused_then_rate_limited() {
    let ca = TestCa::start();
    let card = ca.issue_card(&[]);
    let mut client = ca.client().await;
    let wrong = [
        "7KQD-9M2X-H4TA-PZ3E",
        "not a code",
        "",
        "0000-0000-0000-0000",
        "ZZZZ-ZZZZ-ZZZZ-ZZZZ",
    ];
    for w in wrong {
        let err = enroll(&mut client, w, p256_csr()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{w}: {err:?}");
        if !w.is_empty() {
            assert!(!err.message().contains(w));
        }
    }
    // Sixth attempt, even with the right code: blocked for a while.
    let err = enroll(&mut client, &code_of(&card), p256_csr())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err
        .message()
        .contains("too many failed enrolment attempts; try again in"));
    let log = ca.serve_log();
    assert!(log.contains("enrolment code rejected"), "{log}");
    assert!(log.contains("127.0.0.1"), "{log}");
    assert!(
        !log.contains("7KQD") && !log.contains("ZZZZ"),
        "code in log:\n{log}"
    );
}

#[tokio::test]
async fn expired_code_is_refused() {
    let ca = TestCa::start();
    let card = ca.issue_card(&["--valid-hours", "1"]);
    // Age the code in the database, as if an hour had passed (a test's own
    // connection, the way an attacker or a DBA would edit it).
    let store = ca.store().await;
    sqlx::query("UPDATE enrolment_codes SET expires_at = expires_at - 3601")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let mut client = ca.client().await;
    let err = enroll(&mut client, &code_of(&card), p256_csr())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(ca.serve_log().contains("expired"));
}

#[tokio::test]
async fn bad_request_is_refused_without_using_the_code() {
    let ca = TestCa::start();
    let card = ca.issue_card(&[]);
    let code = code_of(&card);
    let mut client = ca.client().await;

    let err = enroll(&mut client, &code, b"garbage".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("PKCS#10"), "{err:?}");

    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_csr = CertificateParams::default().serialize_request(&ed).unwrap();
    let err = enroll(&mut client, &code, ed_csr.der().to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("key type"), "{err:?}");

    let mut broken = p256_csr();
    let n = broken.len();
    broken[n - 2] ^= 0x55;
    let err = enroll(&mut client, &code, broken).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // The code still works with a good request.
    enroll(&mut client, &code, p256_csr()).await.unwrap();
}

#[tokio::test]
async fn one_code_used_concurrently_succeeds_exactly_once() {
    let ca = TestCa::start();
    let card = ca.issue_card(&[]);
    let code = code_of(&card);
    let client = ca.client().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = client.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            enroll(&mut c, &code, p256_csr()).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::PermissionDenied, "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn issue_card_works_while_serving_and_init_refuses_existing() {
    let ca = TestCa::start();
    let mut codes = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let c = ca.issue_card(&[]);
        assert!(codes.insert(code_of(&c)));
        assert!(ids.insert(c["card_id"].as_str().unwrap().to_string()));
    }
    let out = lanyard_ca(&["init", "--dir", ca.dir().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a CA"), "{err}");

    let out = lanyard_ca(&[
        "serve",
        "--dir",
        "/nonexistent/lanyard",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lanyard-ca init"));

    let out = lanyard_ca(&["serve", "--listen", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));

    let out = lanyard_ca(&[
        "admin",
        "list-cards",
        "--dir",
        ca.dir().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "issued"));

    // The audit chain is intact after all of this.
    let store = ca.store().await;
    let rows = store.verify_audit().await.unwrap().unwrap();
    assert!(rows >= 6, "{rows}");
    store.close().await;
}
