//! Two CA replicas on one PostgreSQL database: `lanyard-ca init --database`,
//! then two `serve` processes on the same CA directory and database, raced
//! with concurrent enrolments. Every code is redeemed exactly once, serial
//! numbers stay unique and the audit chain stays intact. Also what `init`
//! refuses (a used database, a wrong password, not a postgres:// URL) without
//! creating anything or printing the password.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanyard_ca::store::{DbLocation, Store};
use lanyard_certs::rcgen::{self, CertificateParams, KeyPair};
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollRequest, EnrollResponse};
use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::PgDatabase;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_lanyard-ca");

/// Cards whose codes are each sent to both replicas at once.
const RACED_CARDS: usize = 16;
/// Cards enrolled at once with distinct codes, alternating replicas.
const BATCH_CARDS: usize = 16;

fn lanyard_ca(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lanyard-ca")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One `lanyard-ca serve` replica; killed on drop.
struct Replica {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl Replica {
    fn start(dir: &Path, log: PathBuf) -> Replica {
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = owned_command(BIN);
        cmd.args(["serve", "--dir", dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            // Each losing request of a race is a failed attempt from 127.0.0.1.
            .env("LANYARD_CA_RATE_LIMIT_MAX_FAILURES", "100000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = spawn_owned(cmd).expect("start lanyard-ca serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                stop_child(&mut child, Duration::from_secs(2));
                panic!(
                    "serve printed no listening line; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Replica {
            child: Some(child),
            url,
            log,
        }
    }

    async fn client(&self, root_pem: &Path) -> EnrollmentClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(root_pem).unwrap()))
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

/// A CA directory whose database is `pg`, and two replicas serving it.
struct TwoReplicas {
    tmp: tempfile::TempDir,
    a: Replica,
    b: Replica,
}

impl TwoReplicas {
    fn start(pg: &PgDatabase) -> TwoReplicas {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let url = pg.url();
        let out = lanyard_ca(&["init", "--dir", dir.to_str().unwrap(), "--database", &url]);
        assert!(out.status.success(), "init failed:\n{}", text(&out));
        assert!(
            !text(&out).contains(pg.password()),
            "init printed the password"
        );
        assert!(
            !dir.join("ca.db").exists(),
            "init made ca.db for PostgreSQL"
        );
        let a = Replica::start(&dir, tmp.path().join("a.stderr"));
        let b = Replica::start(&dir, tmp.path().join("b.stderr"));
        TwoReplicas { tmp, a, b }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("ca")
    }

    /// `admin issue-card --dir` (on the CA host, straight into PostgreSQL): the code.
    fn issue_card(&self, n: usize) -> String {
        let dir = self.dir();
        let user_id = format!("5551234{n:05}");
        let out = lanyard_ca(&[
            "admin",
            "issue-card",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            "Dr Ada Smith",
            "--user-id",
            &user_id,
            "--role",
            "R8000 Clinical Practitioner",
            "--json",
        ]);
        assert!(out.status.success(), "issue-card failed:\n{}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["code"].as_str().unwrap().to_string()
    }
}

fn p256_csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

async fn enroll(
    mut client: EnrollmentClient<Channel>,
    code: String,
) -> Result<EnrollResponse, tonic::Status> {
    client
        .enroll(EnrollRequest {
            signing_csr_der: Vec::new(),
            code,
            csr_der: p256_csr(),
        })
        .await
        .map(|r| r.into_inner())
}

fn serial_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    hex::encode(cert.raw_serial())
}

/// Certificates in the database and how many distinct serials they have, by psql.
fn certificate_counts(pg: &PgDatabase) -> (usize, usize) {
    let out = pg.psql("SELECT COUNT(*), COUNT(DISTINCT serial) FROM certificates");
    let (all, distinct) = out
        .split_once('|')
        .unwrap_or_else(|| panic!("unexpected psql output {out:?}"));
    (all.parse().unwrap(), distinct.parse().unwrap())
}

async fn assert_audit_chain_intact(pg: &PgDatabase, at_least: u64) {
    let store = Store::open(&DbLocation::Postgres(pg.url())).await.unwrap();
    let verified = store.verify_audit().await.unwrap();
    store.close().await;
    match verified {
        Ok(rows) => assert!(rows >= at_least, "{rows} audit rows, expected ≥ {at_least}"),
        Err(seq) => panic!("audit chain broken at seq {seq}"),
    }
}

#[tokio::test]
async fn two_replicas_redeem_each_code_once_with_unique_serials() {
    let Some(pg) = PgDatabase::create_or_skip() else {
        return;
    };
    let ca = TwoReplicas::start(&pg);
    let root = ca.dir().join("root.pem");
    let (client_a, client_b) = (ca.a.client(&root).await, ca.b.client(&root).await);

    // Race: every code goes to both replicas at the same moment, all codes at once.
    let codes: Vec<String> = (0..RACED_CARDS).map(|n| ca.issue_card(n)).collect();
    let mut races = Vec::new();
    for code in &codes {
        let to_a = tokio::spawn(enroll(client_a.clone(), code.clone()));
        let to_b = tokio::spawn(enroll(client_b.clone(), code.clone()));
        races.push((to_a, to_b));
    }
    let mut serials = HashSet::new();
    for (i, (to_a, to_b)) in races.into_iter().enumerate() {
        let results = [to_a.await.unwrap(), to_b.await.unwrap()];
        let won: Vec<&EnrollResponse> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "code {i}: {results:?}");
        for lost in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(lost.code(), Code::PermissionDenied, "code {i}: {lost:?}");
        }
        assert!(serials.insert(serial_of(&won[0].certificate_der)));
    }
    assert_eq!(serials.len(), RACED_CARDS);
    assert_eq!(certificate_counts(&pg), (RACED_CARDS, RACED_CARDS));
    let used = pg.psql("SELECT COUNT(*) FROM enrolment_codes WHERE used_at IS NOT NULL");
    assert_eq!(used, RACED_CARDS.to_string());

    // Batch: distinct codes, alternating replicas, all at once: every one succeeds.
    let codes: Vec<String> = (0..BATCH_CARDS)
        .map(|n| ca.issue_card(RACED_CARDS + n))
        .collect();
    let tasks: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let client = if i % 2 == 0 { &client_a } else { &client_b };
            tokio::spawn(enroll(client.clone(), code.clone()))
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let resp = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("batch enrolment {i} failed: {e:?}"));
        assert!(serials.insert(serial_of(&resp.certificate_der)));
    }
    let total = RACED_CARDS + BATCH_CARDS;
    assert_eq!(serials.len(), total);
    assert_eq!(certificate_counts(&pg), (total, total));
    let in_db: HashSet<String> = pg
        .psql("SELECT serial FROM certificates")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(in_db, serials);

    // Every card is active, as `admin list-cards --dir` reads it from PostgreSQL.
    let dir = ca.dir();
    let out = lanyard_ca(&[
        "admin",
        "list-cards",
        "--dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "list-cards failed:\n{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), total);
    assert!(list.iter().all(|c| c["state"] == "active"), "{list:?}");

    // init + (issued, enrolled) per card + a refused attempt per raced code.
    let expected = 1 + 2 * total as u64 + RACED_CARDS as u64;
    assert_audit_chain_intact(&pg, expected).await;
    let enrolled = pg.psql("SELECT COUNT(*) FROM audit WHERE action = 'enrolled'");
    assert_eq!(enrolled, total.to_string());

    // Both replicas served, and neither logged the database password.
    for replica in [&ca.a, &ca.b] {
        let log = replica.log();
        assert!(log.contains("card enrolled"), "{log}");
        assert!(!log.contains(pg.password()), "password in log:\n{log}");
    }
}

#[tokio::test]
async fn init_refuses_a_database_it_cannot_use_and_creates_nothing() {
    let Some(pg) = PgDatabase::create_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let url = pg.url();
    // The URL from the environment, out of the process list.
    let out = Command::new(BIN)
        .args(["init", "--dir", first.to_str().unwrap()])
        .env("LANYARD_CA_DATABASE", &url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed:\n{}", text(&out));
    assert!(!first.join("ca.db").exists());
    use std::os::unix::fs::PermissionsExt;
    let toml = first.join("ca.toml");
    let mode = std::fs::metadata(&toml).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "ca.toml holds the password");
    assert!(std::fs::read_to_string(&toml).unwrap().contains(&url));

    let refused = |database: &str, why: &str| {
        let dir = tmp.path().join("second");
        let out = lanyard_ca(&[
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--database",
            database,
        ]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(why), "expected {why:?} in:\n{all}");
        assert!(!all.contains(pg.password()), "password printed:\n{all}");
        assert!(!all.contains("wrong-pw-4711"), "password printed:\n{all}");
        assert!(!dir.exists(), "init left {} behind", dir.display());
    };
    // Another CA's database: a replica copies the directory instead.
    refused(&url, "already holds a CA's records");
    let wrong = url.replace(pg.password(), "wrong-pw-4711");
    refused(&wrong, "password authentication failed");
    refused(&wrong.replace("postgres://", "mysql://"), "postgres://");

    // The first CA is untouched.
    assert_audit_chain_intact(&pg, 1).await;
    assert_eq!(pg.psql("SELECT COUNT(*) FROM audit"), "1");
}

#[tokio::test]
async fn admin_on_the_host_uses_the_recorded_database_or_the_one_given() {
    let Some(pg) = PgDatabase::create_or_skip() else {
        return;
    };
    let other = PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let dir = dir.to_str().unwrap();
    let out = lanyard_ca(&["init", "--dir", dir, "--database", &pg.url()]);
    assert!(out.status.success(), "init failed:\n{}", text(&out));
    let issue = [
        "admin",
        "issue-card",
        "--dir",
        dir,
        "--name",
        "Dr Ada Smith",
        "--user-id",
        "555123456789",
        "--role",
        "R8000 Clinical Practitioner",
    ];
    let out = lanyard_ca(&issue);
    assert!(out.status.success(), "issue-card failed:\n{}", text(&out));

    let list = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["admin", "list-cards", "--dir", dir, "--json"];
        args.extend_from_slice(extra);
        let out = lanyard_ca(&args);
        assert!(out.status.success(), "list-cards failed:\n{}", text(&out));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array().unwrap().clone()
    };
    // ca.toml's database, then another one given with --database.
    assert_eq!(list(&[]).len(), 1);
    let other_url = other.url();
    assert_eq!(list(&["--database", &other_url]).len(), 0);
    assert_eq!(other.psql("SELECT COUNT(*) FROM cards"), "0");

    // --database belongs to --dir; a bad one is refused without being echoed.
    let out = lanyard_ca(&["admin", "list-cards", "--database", &other_url]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains(other.password()), "{}", text(&out));
    let bad = other_url.replace("postgres://", "mysql://");
    let out = lanyard_ca(&["admin", "list-cards", "--dir", dir, "--database", &bad]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("postgres://"), "{}", text(&out));
    assert!(!text(&out).contains(other.password()), "{}", text(&out));
}
