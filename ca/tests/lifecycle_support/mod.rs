//! The CA for the lifecycle tests: `lanyard-ca init` and `serve --crl-listen`
//! as real processes on SQLite or PostgreSQL (`LANYARD_TEST_DB`), cards put
//! in its database through the store (as `admin issue-card` does), gRPC
//! clients over real TLS with or without a client certificate, and raw HTTP
//! to the CRL listener.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanyard_ca::audit::{AuditAction, AuditEvent};
use lanyard_ca::enrolment_code::EnrolmentCode;
use lanyard_ca::store::{CardRecord, DbLocation, Store};
use lanyard_certs::rcgen::{self, CertificateParams, KeyPair};
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::renewal_client::RenewalClient;
use lanyard_proto::ca::revocation_client::RevocationClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use lanyard_test_support::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub const BIN: &str = env!("CARGO_BIN_EXE_lanyard-ca");

/// Runs `lanyard-ca` to completion.
pub fn lanyard_ca(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run lanyard-ca")
}

/// A CA directory with `serve` running; stopped on drop.
pub struct TestCa {
    serve: Option<Serve>,
    pub tmp: tempfile::TempDir,
    db: TestDb,
    pub url: String,
    pub crl_url: String,
    pub crl_addr: SocketAddr,
}

/// An enrolled card: its id, key and certificate.
pub struct Card {
    pub card_id: String,
    pub key: KeyPair,
    pub cert_der: Vec<u8>,
}

impl Card {
    /// Lower-case hex serial of the card's certificate.
    pub fn serial(&self) -> String {
        serial_of(&self.cert_der)
    }
}

/// Lower-case hex serial of a DER certificate.
pub fn serial_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    hex::encode(cert.raw_serial())
}

/// Base64 PEM of `der` under `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A CSR for `key`.
pub fn csr_for(key: &KeyPair) -> Vec<u8> {
    CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .der()
        .to_vec()
}

/// A new P-256 key.
pub fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

/// One running `lanyard-ca serve` (its gRPC and CRL addresses); killed on drop.
pub struct Serve {
    child: Child,
    pub url: String,
    pub crl_url: String,
    pub crl_addr: SocketAddr,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `serve --crl-listen` on `dir` (with `--database` if given), 60 s
    /// certificates, `env`; stderr goes to `log`. Waits for both stdout lines
    /// and checks the log names the backend expected (`postgres` or not).
    pub fn spawn(
        dir: &Path,
        database: Option<&str>,
        postgres: bool,
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Serve {
        let stderr = std::fs::File::create(&log).unwrap();
        let mut serve = Command::new(BIN);
        serve.args(["serve", "--dir", dir.to_str().unwrap()]).args([
            "--listen",
            "127.0.0.1:0",
            "--crl-listen",
            "127.0.0.1:0",
        ]);
        if let Some(url) = database {
            serve.args(["--database", url]);
        }
        let mut child = serve
            .env("LANYARD_CA_CERT_LIFETIME_SECS", "60")
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
            for _ in 0..2 {
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            }
            for _ in lines {}
        });
        let mut next_line = || {
            rx.recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!(
                        "serve printed too little; stderr:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
        };
        let first = next_line();
        let second = next_line();
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let crl_url = second
            .strip_prefix("crl on ")
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"))
            .to_string();
        let crl_addr: SocketAddr = crl_url
            .strip_prefix("http://")
            .and_then(|r| r.strip_suffix("/issuing.crl"))
            .unwrap_or_else(|| panic!("bad CRL URL {crl_url:?}"))
            .parse()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let backend = if postgres {
            "database=Postgres"
        } else {
            "database=Sqlite"
        };
        assert!(
            text.contains(backend),
            "serve should use {backend}:\n{text}"
        );
        Serve {
            child,
            url,
            crl_url,
            crl_addr,
            log,
        }
    }

    /// One raw HTTP/1.1 exchange with the CRL listener: (status, head, body).
    pub async fn http(&self, request: &[u8]) -> (u16, String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(self.crl_addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
            .await
            .expect("the CRL listener answers")
            .unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&buf)));
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        (status, head, buf[split + 4..].to_vec())
    }

    /// The CRL as served over HTTP (DER).
    pub async fn fetch_crl(&self) -> Vec<u8> {
        let (status, head, body) = self
            .http(b"GET /issuing.crl HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n")
            .await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/pkix-crl"),
            "{head}"
        );
        body
    }

    /// Polls the served CRL until `wanted` holds, for up to 30 s.
    pub async fn crl_until(&self, what: &str, wanted: impl Fn(&[CrlEntry]) -> bool) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let der = self.fetch_crl().await;
            if wanted(&crl_entries(&der)) {
                return der;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CRL never showed {what}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestCa {
    /// `init`, then `serve --crl-listen` with 60 s certificates and `env`, on
    /// the database `LANYARD_TEST_DB` names.
    pub fn start(env: &[(&str, &str)]) -> TestCa {
        let tmp = tempfile::tempdir().unwrap();
        let db = TestDb::from_env();
        let dir = tmp.path().join("ca");
        let mut init = vec![
            "init".to_string(),
            "--dir".into(),
            dir.to_str().unwrap().into(),
        ];
        init.extend(db.init_args());
        let init: Vec<&str> = init.iter().map(String::as_str).collect();
        let out = lanyard_ca(&init);
        assert!(out.status.success(), "init failed: {out:?}");
        // The database comes from ca.toml, as `init --database` recorded it.
        let serve = Serve::spawn(
            &dir,
            None,
            db.url().is_some(),
            env,
            tmp.path().join("serve.stderr"),
        );
        TestCa {
            url: serve.url.clone(),
            crl_url: serve.crl_url.clone(),
            crl_addr: serve.crl_addr,
            serve: Some(serve),
            tmp,
            db,
        }
    }

    /// A second `serve` on the same CA directory and database (a replica;
    /// on PostgreSQL the database is also given with `serve --database`).
    pub fn replica(&self, name: &str) -> Serve {
        Serve::spawn(
            &self.dir(),
            self.db.url().as_deref(),
            self.db.url().is_some(),
            &[],
            self.path(&format!("{name}.stderr")),
        )
    }

    fn serve(&self) -> &Serve {
        self.serve.as_ref().expect("serve is running")
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("serve.stderr")).unwrap_or_default()
    }

    /// The CA database, as `admin --dir` or a second replica opens it next to `serve`.
    pub async fn store(&self) -> Store {
        let location = match self.db.url() {
            Some(url) => DbLocation::Postgres(url),
            None => DbLocation::Sqlite(self.dir().join("ca.db")),
        };
        Store::open(&location).await.unwrap()
    }

    /// A new card waiting for enrolment; returns (card id, enrolment code).
    pub async fn issue_card(&self) -> (String, String) {
        let store = self.store().await;
        let card_id = lanyard_ca::card_id::CardId::generate().unwrap().to_string();
        let code = EnrolmentCode::generate().unwrap();
        let card = CardRecord {
            card_id: card_id.clone(),
            holder_name: "Dr Ada Smith".into(),
            user_id: "555123456789".into(),
            role: "R8000 Clinical Practitioner".into(),
        };
        let event = AuditEvent {
            actor: "admin:test".into(),
            action: AuditAction::CardIssued,
            card_id: Some(card_id.clone()),
            peer: None,
            detail: serde_json::json!({}),
        };
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert!(store
            .insert_card(&card, &code.hash(), expires, &event)
            .await
            .unwrap());
        store.close().await;
        (card_id, code.grouped().to_string())
    }

    /// Issues and enrols a card with a new P-256 key.
    pub async fn enrolled_card(&self) -> Card {
        let (card_id, code) = self.issue_card().await;
        let key = p256();
        let resp = self.enroll(&code, csr_for(&key)).await.expect("enrolment");
        assert_eq!(resp.card_id, card_id);
        Card {
            card_id,
            key,
            cert_der: resp.certificate_der,
        }
    }

    pub async fn enroll(&self, code: &str, csr: Vec<u8>) -> Result<EnrollResponse, tonic::Status> {
        self.enrollment()
            .await
            .enroll(EnrollRequest {
                signing_csr_der: Vec::new(),
                code: code.to_string(),
                csr_der: csr,
            })
            .await
            .map(|r| r.into_inner())
    }

    fn tls(&self) -> ClientTlsConfig {
        let root = std::fs::read(self.dir().join("root.pem")).unwrap();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root))
            .domain_name("localhost")
    }

    /// A channel without a client certificate.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .tls_config(self.tls())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// As [`TestCa::renewal_as`], but a refused handshake is an error, not a panic.
    pub async fn renewal_as_checked(&self, card: &Card) -> Result<RenewalClient<Channel>, String> {
        let issuing = std::fs::read_to_string(self.dir().join("issuing.pem")).unwrap();
        let chain = format!("{}{issuing}", pem("CERTIFICATE", &card.cert_der));
        let identity = Identity::from_pem(chain, card.key.serialize_pem());
        let channel = Channel::from_shared(self.url.clone())
            .unwrap()
            .tls_config(self.tls().identity(identity))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(RenewalClient::new(channel))
    }

    pub async fn enrollment(&self) -> EnrollmentClient<Channel> {
        EnrollmentClient::new(self.channel().await)
    }

    pub async fn revocation(&self) -> RevocationClient<Channel> {
        RevocationClient::new(self.channel().await)
    }

    /// A Renewal client authenticated by the card's certificate (sent with the issuing CA).
    pub async fn renewal_as(&self, card: &Card) -> RenewalClient<Channel> {
        self.renewal_as_checked(card).await.unwrap()
    }

    /// One raw HTTP/1.1 exchange with the CRL listener: (status, head, body).
    pub async fn http(&self, request: &[u8]) -> (u16, String, Vec<u8>) {
        self.serve().http(request).await
    }

    /// The CRL as served over HTTP (DER).
    pub async fn fetch_crl(&self) -> Vec<u8> {
        self.serve().fetch_crl().await
    }

    /// Polls the served CRL until `wanted` holds, for up to 30 s.
    pub async fn crl_until(&self, what: &str, wanted: impl Fn(&[CrlEntry]) -> bool) -> Vec<u8> {
        self.serve().crl_until(what, wanted).await
    }

    /// Runs `sql` (one or more statements) on the database, the way a DBA or
    /// the Admin service changes it behind `serve`'s back.
    pub async fn sql(&self, sql: &str) {
        let store = self.store().await;
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
        store.close().await;
    }

    /// A scalar i64 from the database.
    pub async fn count(&self, sql: &str) -> i64 {
        let store = self.store().await;
        let v: i64 = sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        v
    }

    /// The audit actions recorded for `card_id` with their detail, oldest first.
    pub async fn audit_actions(&self, card_id: &str) -> Vec<(String, String)> {
        let store = self.store().await;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT action, detail FROM audit WHERE card_id = $1 ORDER BY seq")
                .bind(card_id)
                .fetch_all(store.pool())
                .await
                .unwrap();
        store.close().await;
        rows
    }

    /// Releases a reset code for `card_id` as the Admin service would.
    pub async fn release_reset_code(&self, card_id: &str, tries: i64) -> String {
        let code = EnrolmentCode::generate().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let store = self.store().await;
        sqlx::query(
            "UPDATE reset_codes SET dead_at = $1 \
             WHERE card_id = $2 AND used_at IS NULL AND dead_at IS NULL",
        )
        .bind(now)
        .bind(card_id)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO reset_codes (card_id, code_hash, created_at, created_by, expires_at, tries_left) \
             VALUES ($1, $2, $3, 'operator:test', $4, $5)",
        )
        .bind(card_id)
        .bind(code.hash().to_hex())
        .bind(now)
        .bind(now + 3600)
        .bind(tries)
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
        code.grouped().to_string()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        // Stop serve before its database is dropped.
        self.serve.take();
    }
}

/// One CRL entry: serial (lower-case hex), reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    pub serial: String,
    pub reason: u8,
}

/// The entries of a DER CRL.
pub fn crl_entries(der: &[u8]) -> Vec<CrlEntry> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| CrlEntry {
            serial: hex::encode(r.raw_serial()),
            reason: r.reason_code().map(|(_, c)| c.0).unwrap_or(0),
        })
        .collect()
}

/// Runs openssl with `args` and returns its output.
pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl")
}

/// Writes `der` as PEM to `path` and returns the path as text.
pub fn write_pem(path: &Path, label: &str, der: &[u8]) -> String {
    std::fs::write(path, pem(label, der)).unwrap();
    path.to_str().unwrap().to_string()
}
