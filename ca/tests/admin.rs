//! The IT desk for real: `lanyard-ca serve` as a process, the first operator
//! bootstrapped on the CA host (`add-operator --dir`), then every admin
//! command through the CLI over mutual TLS with `--json`; refusals of
//! non-operators (audited), precise errors, dual control with two operators,
//! an audit chain that detects a record edited in the database, and an
//! operator key held in SoftHSM2.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanyard_certs::rcgen::{self, CertificateParams, DistinguishedName, DnType, KeyPair};
use lanyard_proto::ca::admin_client::AdminClient;
use lanyard_proto::ca::enrollment_client::EnrollmentClient;
use lanyard_proto::ca::{EnrollRequest, ListCardsRequest};
use lanyard_test_support::postgres::{TestBackend, TestDb};
use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{in_ci, require_tool, run, CmdOutput};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const BIN: &str = env!("CARGO_BIN_EXE_lanyard-ca");
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const ROLE: &str = "R8000 Clinical Practitioner";

/// An operator's credentials for the CLI.
#[derive(Debug, Clone)]
struct Operator {
    cert: PathBuf,
    key: String,
    serial: String,
}

/// A CA directory with `serve` running, on the database `LANYARD_TEST_DB`
/// names (its own ca.db, or a fresh PostgreSQL database).
struct TestCa {
    tmp: tempfile::TempDir,
    child: Option<Child>,
    url: String,
    env: Vec<(String, String)>,
    db: TestDb,
}

impl TestCa {
    /// `init`, then `edit` may change ca.toml, then `serve`.
    fn start(edit: impl FnOnce(&Path)) -> TestCa {
        Self::start_with_env(edit, &[])
    }

    fn start_with_env(edit: impl FnOnce(&Path), env: &[(&str, &str)]) -> TestCa {
        let tmp = tempfile::tempdir().unwrap();
        let ca = TestCa {
            tmp,
            child: None,
            url: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            db: TestDb::from_env(),
        };
        ca.cli(&["init", "--dir", ca.dir().to_str().unwrap()])
            .assert_success("init");
        let toml = ca.dir().join("ca.toml");
        if let Some(url) = ca.db.url() {
            // A top-level key, so before the first [table].
            let text = std::fs::read_to_string(&toml).unwrap();
            let text = format!("database = \"{url}\"\n{text}");
            std::fs::write(&toml, text).unwrap();
        }
        edit(&toml);
        let mut ca = ca;
        ca.serve();
        ca
    }

    fn serve(&mut self) {
        let stderr = std::fs::File::create(self.path("serve.stderr")).unwrap();
        let mut cmd = owned_command(BIN);
        cmd.args(["serve", "--dir", self.dir().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = spawn_owned(cmd).unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => self.url = url,
            Err(_) => {
                stop_child(&mut child, Duration::from_secs(2));
                panic!("serve did not start:\n{}", self.serve_log());
            }
        }
        self.child = Some(child);
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn dir(&self) -> PathBuf {
        self.path("ca")
    }

    fn serve_log(&self) -> String {
        std::fs::read_to_string(self.path("serve.stderr")).unwrap_or_default()
    }

    /// `lanyard-ca ARGS…`.
    fn cli(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .env_remove("LANYARD_CA_DIR");
        for var in [
            "LANYARD_ADMIN_CA",
            "LANYARD_ADMIN_CA_CERT",
            "LANYARD_ADMIN_CERT",
            "LANYARD_ADMIN_KEY",
        ] {
            cmd.env_remove(var);
        }
        run(cmd, None, COMMAND_TIMEOUT)
    }

    /// `lanyard-ca admin SUB ARGS… --ca … --ca-cert … --cert … --key …`.
    fn admin(&self, op: &Operator, sub: &str, args: &[&str]) -> CmdOutput {
        let root = self.dir().join("root.pem");
        let mut all = vec!["admin", sub];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--ca", &self.url, "--ca-cert", root.to_str().unwrap()]);
        all.extend_from_slice(&["--cert", op.cert.to_str().unwrap(), "--key", &op.key]);
        self.cli(&all)
    }

    /// `admin SUB … --json` that must succeed; its JSON.
    fn admin_json(&self, op: &Operator, sub: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.admin(op, sub, &all);
        out.assert_success(sub);
        json_of(&out)
    }

    /// Bootstraps an operator on the CA host with a new key file.
    fn bootstrap(&self, name: &str) -> Operator {
        let file = name.to_lowercase().replace(' ', "-");
        let key = self.path(&format!("{file}.key"));
        let cert = self.path(&format!("{file}.pem"));
        let out = self.cli(&[
            "admin",
            "add-operator",
            "--dir",
            self.dir().to_str().unwrap(),
            "--name",
            name,
            "--new-key",
            key.to_str().unwrap(),
            "--out",
            cert.to_str().unwrap(),
            "--json",
        ]);
        out.assert_success("add-operator --dir");
        let json = json_of(&out);
        assert_eq!(json["name"], name);
        assert_eq!(json["certificate"], cert.to_str().unwrap());
        Operator {
            cert,
            key: key.to_str().unwrap().to_string(),
            serial: json["serial"].as_str().unwrap().to_string(),
        }
    }

    async fn enrollment(&self) -> EnrollmentClient<Channel> {
        EnrollmentClient::new(self.channel().await)
    }

    /// A TLS channel that presents no client certificate.
    async fn channel(&self) -> Channel {
        let root = std::fs::read(self.dir().join("root.pem")).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root))
            .domain_name("localhost");
        Channel::from_shared(self.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Enrols with `code`; returns (certificate PEM path, key PEM path).
    async fn enrol(&self, code: &str, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key);
        let resp = self
            .enrollment()
            .await
            .enroll(EnrollRequest {
                signing_csr_der: Vec::new(),
                code: code.to_string(),
                csr_der: csr,
            })
            .await
            .unwrap()
            .into_inner();
        let cert_path = self.path(&format!("{name}.pem"));
        let key_path = self.path(&format!("{name}.key"));
        std::fs::write(
            &cert_path,
            format!(
                "{}{}",
                pem("CERTIFICATE", &resp.certificate_der),
                pem("CERTIFICATE", &resp.chain_der[0])
            ),
        )
        .unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Runs `sql` on a direct connection to the database, as a DBA or an
    /// attacker with database access would.
    async fn sql(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self.db.url() {
            None => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir().join("ca.db"))
                    .busy_timeout(Duration::from_secs(15));
                let pool = sqlx::SqlitePool::connect_with(opts).await?;
                let result = sqlx::raw_sql(sql).execute(&pool).await.map(|_| ());
                pool.close().await;
                result
            }
            Some(url) => {
                let pool = sqlx::PgPool::connect(&url).await?;
                let result = sqlx::raw_sql(sql).execute(&pool).await.map(|_| ());
                pool.close().await;
                result
            }
        }
    }

    /// How a trigger is dropped on this backend.
    fn drop_trigger(&self, name: &str) -> String {
        match self.db.backend() {
            TestBackend::Sqlite => format!("DROP TRIGGER {name}"),
            TestBackend::Postgres => format!("DROP TRIGGER {name} ON audit"),
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(5));
        }
    }
}

fn csr_for(key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ignored");
    params.distinguished_name = dn;
    params.serialize_request(key).unwrap().der().to_vec()
}

fn p256_csr() -> Vec<u8> {
    csr_for(&KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn json_of(out: &CmdOutput) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"))
}

/// Asserts a clean failure with `code` whose stderr contains `text`.
fn assert_fails(out: &CmdOutput, code: i32, text: &str) {
    assert_eq!(out.code, Some(code), "expected exit {code}:\n{out}");
    assert!(
        out.stderr.contains(text),
        "stderr should contain {text:?}:\n{out}"
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "errors are one line:\n{out}"
    );
}

fn actions(audit: &Value) -> Vec<String> {
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

fn issue(ca: &TestCa, op: &Operator, name: &str, user_id: &str) -> (String, String) {
    let card = ca.admin_json(
        op,
        "issue-card",
        &["--name", name, "--user-id", user_id, "--role", ROLE],
    );
    assert_eq!(card["name"], name);
    (
        card["card_id"].as_str().unwrap().to_string(),
        card["code"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_it_desk_runs_cards_over_mutual_tls() {
    let ca = TestCa::start(|_| {});
    let grace = ca.bootstrap("Grace Hopper");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&grace.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let pem_text = std::fs::read_to_string(&grace.cert).unwrap();
    assert_eq!(
        pem_text.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + issuing"
    );

    // Issue two cards over the network.
    let (ada, ada_code) = issue(&ca, &grace, "Dr Ada Smith", "555000000001");
    let (bob, bob_code) = issue(&ca, &grace, "Dr Bob Jones", "555000000002");
    assert_eq!(ada.len(), 12);
    assert_eq!(ada_code.len(), 19);

    // Listing with filters.
    let all = ca.admin_json(&grace, "list-cards", &[]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let mine = ca.admin_json(&grace, "list-cards", &["--user-id", "555000000002"]);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["card_id"], bob.as_str());
    assert_eq!(mine[0]["state"], "issued");
    let active = ca.admin_json(&grace, "list-cards", &["--state", "active"]);
    assert_eq!(active.as_array().unwrap().len(), 0);
    let out = ca.admin(&grace, "list-cards", &["--state", "lost"]);
    assert_fails(&out, 2, "expected issued, active, suspended or revoked");

    // Ada enrols; her card becomes active and shows its certificate.
    ca.enrol(&ada_code, "ada").await;
    let active = ca.admin_json(&grace, "list-cards", &["--state", "active"]);
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["card_id"], ada.as_str());
    assert!(active[0]["cert_not_after"].is_string());
    let shown = ca.admin_json(&grace, "show-card", &["--card", &ada.to_lowercase()]);
    assert_eq!(shown["card_id"], ada.as_str());
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["certificates"].as_array().unwrap().len(), 1);
    assert!(shown["certificates"][0]["revoked_at"].is_null());
    let first_serial = shown["certificates"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();

    // Suspend and resume, each only once.
    let s = ca.admin_json(&grace, "suspend", &["--card", &ada]);
    assert_eq!(s["state"], "suspended");
    let listed = ca.admin_json(&grace, "list-cards", &["--state", "suspended"]);
    assert_eq!(listed[0]["card_id"], ada.as_str());
    assert_fails(
        &ca.admin(&grace, "suspend", &["--card", &ada]),
        5,
        "already suspended",
    );
    let r = ca.admin_json(&grace, "resume", &["--card", &ada]);
    assert_eq!(r["state"], "active");
    assert_fails(
        &ca.admin(&grace, "resume", &["--card", &ada]),
        5,
        "is not suspended",
    );

    // A PIN reset code for the enrolled card; none for a card never enrolled.
    let reset = ca.admin_json(&grace, "reset-pin", &["--card", &ada]);
    let reset_code = reset["code"].as_str().unwrap().to_string();
    assert_eq!(reset_code.len(), 19);
    assert_eq!(reset["card_id"], ada.as_str());
    assert_eq!(reset["tries"], 3);
    let shown = ca.admin_json(&grace, "show-card", &["--card", &ada]);
    assert_eq!(shown["reset_pending"], true);
    assert_eq!(shown["reset_tries_left"], 3);
    assert_fails(
        &ca.admin(&grace, "reset-pin", &["--card", &bob]),
        5,
        "has not been enrolled",
    );

    // Unknown, malformed, and bad reasons.
    assert_fails(
        &ca.admin(&grace, "show-card", &["--card", "0000000000AA"]),
        5,
        "no card 0000000000AA",
    );
    assert_fails(
        &ca.admin(&grace, "show-card", &["--card", "not-a-card"]),
        2,
        "is not a card id",
    );
    assert_fails(
        &ca.admin(
            &grace,
            "revoke",
            &["--card", &ada, "--reason", "certificate-hold"],
        ),
        2,
        "admin suspend",
    );
    assert_fails(
        &ca.admin(&grace, "revoke", &["--card", &ada, "--reason", "8"]),
        2,
        "not a revocation reason",
    );
    assert_fails(
        &ca.admin(&grace, "revoke", &["--card", &ada, "--reason", "lost-it"]),
        2,
        "--reason",
    );

    // Revoke with a reason: the card and its certificate.
    let revoked = ca.admin_json(
        &grace,
        "revoke",
        &["--card", &ada, "--reason", "key-compromise"],
    );
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revocation_reason"], "key-compromise");
    assert_eq!(revoked["certificates"][0]["reason"], "key-compromise");
    assert!(revoked["certificates"][0]["revoked_at"].is_string());
    assert_eq!(
        revoked["reset_pending"], false,
        "revocation ends the reset code"
    );
    assert_fails(
        &ca.admin(
            &grace,
            "revoke",
            &["--card", &ada, "--reason", "superseded"],
        ),
        5,
        "already revoked",
    );

    // Re-issue keeps the card id; enrolling again makes it active.
    let again = ca.admin_json(&grace, "reissue-card", &["--card", &ada]);
    assert_eq!(again["card_id"], ada.as_str());
    let new_code = again["code"].as_str().unwrap().to_string();
    assert_ne!(new_code, ada_code);
    let shown = ca.admin_json(&grace, "show-card", &["--card", &ada]);
    assert_eq!(shown["state"], "issued");
    ca.enrol(&new_code, "ada2").await;
    let shown = ca.admin_json(&grace, "show-card", &["--card", &ada]);
    assert_eq!(shown["state"], "active");
    let certs = shown["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    // Both may carry the same issued_at second on a fast run, so "newest
    // first" cannot order them: tell them apart by serial.
    let (old, new): (Vec<_>, Vec<_>) = certs
        .iter()
        .partition(|c| c["serial"] == first_serial.as_str());
    assert_eq!((old.len(), new.len()), (1, 1), "{certs:?}");
    assert!(
        new[0]["revoked_at"].is_null(),
        "the new certificate is good"
    );
    assert_eq!(old[0]["reason"], "key-compromise");

    // A re-issue ends the earlier enrolment code of a card never enrolled.
    let bob_again = ca.admin_json(&grace, "reissue-card", &["--card", &bob]);
    assert_eq!(bob_again["card_id"], bob.as_str());
    let err = ca
        .enrollment()
        .await
        .enroll(EnrollRequest {
            signing_csr_der: Vec::new(),
            code: bob_code.clone(),
            csr_der: p256_csr(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    ca.enrol(bob_again["code"].as_str().unwrap(), "bob").await;

    // The audit lists every action, by whom and from where, and never a code.
    let audit = ca.admin_json(&grace, "audit", &[]);
    let seen = actions(&audit);
    for action in [
        "operator_added",
        "card_issued",
        "cards_listed",
        "enrolled",
        "card_shown",
        "card_suspended",
        "card_resumed",
        "reset_code_released",
        "admin_refused",
        "card_revoked",
        "card_reissued",
    ] {
        assert!(
            seen.iter().any(|a| a == action),
            "{action} missing: {seen:?}"
        );
    }
    let bootstrap = &audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "operator_added")
        .unwrap();
    assert!(bootstrap["actor"].as_str().unwrap().starts_with("admin:"));
    assert_eq!(bootstrap["detail"]["serial"], grace.serial.as_str());
    let by_grace = format!("operator:Grace Hopper/{}", grace.serial);
    let revoke = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "card_revoked")
        .unwrap();
    assert_eq!(revoke["actor"], by_grace.as_str());
    assert_eq!(revoke["peer"], "127.0.0.1");
    assert_eq!(revoke["card_id"], ada.as_str());
    assert_eq!(revoke["detail"]["reason"], "key-compromise");
    let text = audit.to_string().to_uppercase();
    for code in [&ada_code, &new_code, &reset_code] {
        let bare = code.replace('-', "");
        assert!(
            !text.contains(code.as_str()) && !text.contains(&bare),
            "a code is in the audit"
        );
    }
    let log = ca.serve_log().to_uppercase();
    for code in [&ada_code, &new_code, &reset_code] {
        assert!(!log.contains(code.as_str()), "a code is in the log");
    }

    // Filter by card and page by sequence number.
    let ada_audit = ca.admin_json(&grace, "audit", &["--card", &ada]);
    let records = ada_audit["records"].as_array().unwrap();
    assert!(records.len() >= 8, "{ada_audit}");
    assert!(records.iter().all(|r| r["card_id"] == ada.as_str()));
    let last = records.last().unwrap()["seq"].as_i64().unwrap();
    let later = ca.admin_json(
        &grace,
        "audit",
        &["--after-seq", &last.to_string(), "--limit", "2"],
    );
    let later = later["records"].as_array().unwrap();
    assert!(later.len() <= 2 && later.iter().all(|r| r["seq"].as_i64().unwrap() > last));

    // The chain verifies; then someone with database access edits a record.
    let verified = ca.admin_json(&grace, "audit", &["--verify"]);
    assert_eq!(verified["verification"]["intact"], true);
    let target = revoke["seq"].as_i64().unwrap();
    let edit =
        format!("UPDATE audit SET detail = '{{\"reason\":\"unspecified\"}}' WHERE seq = {target}");
    let refused = ca.sql(&edit).await;
    assert!(refused.is_err(), "the trigger refuses edits");
    ca.sql(&ca.drop_trigger("audit_no_update")).await.unwrap();
    ca.sql(&edit).await.unwrap();
    let out = ca.admin(&grace, "audit", &["--verify", "--json"]);
    assert_eq!(out.code, Some(6), "{out}");
    assert!(
        out.stderr
            .contains(&format!("record {target} does not chain")),
        "{out}"
    );
    let broken = json_of(&out);
    assert_eq!(broken["verification"]["intact"], false);
    assert_eq!(broken["verification"]["first_broken_seq"], target);
    let out = ca.admin(&grace, "audit", &["--verify"]);
    assert_fails(&out, 6, &format!("record {target}"));
}

#[tokio::test]
async fn only_registered_operators_may_administer() {
    let ca = TestCa::start(|_| {});
    let grace = ca.bootstrap("Grace Hopper");
    let (ada, code) = issue(&ca, &grace, "Dr Ada Smith", "555000000001");
    let (card_pem, card_key) = ca.enrol(&code, "ada").await;

    // A clinician's card certificate, valid for this CA, is not an operator's.
    let clinician = Operator {
        cert: card_pem,
        key: card_key.to_str().unwrap().to_string(),
        serial: String::new(),
    };
    let out = ca.admin(&clinician, "list-cards", &["--json"]);
    assert_fails(
        &out,
        4,
        "is not a registration-authority operator certificate",
    );
    assert!(out.stderr.contains("id-kp-cmcRA"), "{out}");
    assert_fails(
        &ca.admin(
            &clinician,
            "revoke",
            &["--card", &ada, "--reason", "superseded"],
        ),
        4,
        "not a registration-authority operator certificate",
    );

    // No client certificate at all.
    let mut anonymous = AdminClient::new(ca.channel().await);
    let err = anonymous
        .list_cards(ListCardsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("no client certificate"), "{err:?}");

    // An operator of another CA: the TLS layer refuses the certificate.
    let other = TestCa::start(|_| {});
    let foreign = other.bootstrap("Eve Other");
    let out = ca.admin(&foreign, "list-cards", &[]);
    // The refusal is the server's TLS alert; when the server's close reaches
    // the client first, the alert is lost and the call only ends (exit 1).
    // Either way nothing is listed.
    if out.code == Some(1) {
        assert!(out.stdout.trim().is_empty(), "{out}");
        assert!(
            out.stderr.contains("canceled") || out.stderr.contains("closed"),
            "{out}"
        );
    } else {
        assert_fails(&out, 4, "refused the client certificate");
    }

    // A registered operator whose certificate was revoked in the database.
    let bob = ca.bootstrap("Bob Revoked");
    ca.admin_json(&bob, "list-cards", &[]);
    ca.sql(&format!(
        "UPDATE operators SET revoked_at = 1 WHERE serial = '{}'",
        bob.serial
    ))
    .await
    .unwrap();
    assert_fails(&ca.admin(&bob, "list-cards", &[]), 4, "has been revoked");

    // A key that is not the certificate's is caught before connecting.
    let mixed = Operator {
        cert: grace.cert.clone(),
        key: bob.key.clone(),
        serial: String::new(),
    };
    assert_fails(
        &ca.admin(&mixed, "list-cards", &[]),
        2,
        "is not the key of the certificate",
    );

    // Nothing changed, and every refusal is in the audit.
    let shown = ca.admin_json(&grace, "show-card", &["--card", &ada]);
    assert_eq!(shown["state"], "active");
    let audit = ca.admin_json(&grace, "audit", &[]);
    let failed: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "admin_auth_failed")
        .collect();
    assert_eq!(failed.len(), 4, "{audit}");
    assert!(failed.iter().all(|r| r["peer"] == "127.0.0.1"));
    assert!(failed.iter().all(|r| r["actor"] == "peer:127.0.0.1"));
    let by_card = failed
        .iter()
        .filter(|r| r["card_id"] == ada.as_str())
        .count();
    assert_eq!(by_card, 2, "the clinician's card is named");
    assert!(failed
        .iter()
        .any(|r| r["detail"]["reason"].as_str().unwrap().contains("revoked")));

    // Without --ca and without --dir: a usage error naming what is missing.
    let out = ca.cli(&["admin", "list-cards"]);
    assert_fails(&out, 2, "--ca (or LANYARD_ADMIN_CA) is needed");
    let out = ca.cli(&["admin", "show-card", "--card", &ada, "--ca", &ca.url]);
    assert_fails(&out, 2, "--ca-cert");
}

#[tokio::test]
async fn the_network_commands_can_come_from_the_environment() {
    let ca = TestCa::start(|_| {});
    let grace = ca.bootstrap("Grace Hopper");
    let mut cmd = Command::new(BIN);
    cmd.args(["admin", "list-cards", "--json"])
        .env_remove("LANYARD_CA_DIR")
        .env("LANYARD_ADMIN_CA", &ca.url)
        .env("LANYARD_ADMIN_CA_CERT", ca.dir().join("root.pem"))
        .env("LANYARD_ADMIN_CERT", &grace.cert)
        .env("LANYARD_ADMIN_KEY", &grace.key);
    let out = run(cmd, None, COMMAND_TIMEOUT);
    out.assert_success("list-cards from the environment");
    assert_eq!(json_of(&out), serde_json::json!([]));

    // A CA that is not there: exit status 3.
    let mut cmd = Command::new(BIN);
    cmd.args(["admin", "list-cards"])
        .env_remove("LANYARD_CA_DIR")
        .env("LANYARD_ADMIN_CA", "https://127.0.0.1:1")
        .env("LANYARD_ADMIN_CA_CERT", ca.dir().join("root.pem"))
        .env("LANYARD_ADMIN_CERT", &grace.cert)
        .env("LANYARD_ADMIN_KEY", &grace.key);
    let out = run(cmd, None, COMMAND_TIMEOUT);
    assert_fails(&out, 3, "cannot reach the CA at https://127.0.0.1:1");

    // --dir and --ca together are refused.
    let out = ca.cli(&[
        "admin",
        "list-cards",
        "--dir",
        ca.dir().to_str().unwrap(),
        "--ca",
        &ca.url,
    ]);
    assert_fails(&out, 2, "not both");
    // --dir on the CA host still lists, with the same JSON.
    let out = ca.cli(&[
        "admin",
        "list-cards",
        "--dir",
        ca.dir().to_str().unwrap(),
        "--json",
    ]);
    out.assert_success("list-cards --dir");
    assert_eq!(json_of(&out), serde_json::json!([]));
}

#[tokio::test]
async fn dual_control_needs_a_second_operator() {
    let ca = TestCa::start(|toml| {
        let text = std::fs::read_to_string(toml).unwrap();
        let text = text.replace(
            "require_second_operator = []",
            "require_second_operator = [\"reset-pin\", \"add-operator\"]",
        );
        assert!(text.contains("\"reset-pin\""), "{text}");
        std::fs::write(toml, text).unwrap();
    });
    // The CA host bootstraps operators directly (it holds the issuing key anyway).
    let alice = ca.bootstrap("Alice Admin");
    let bea = ca.bootstrap("Bea Second");

    // Alice asks to add Carl: it waits, nothing is issued.
    let carl_key = ca.path("carl.key");
    let carl_pem = ca.path("carl.pem");
    let pending = ca.admin_json(
        &alice,
        "add-operator",
        &[
            "--name",
            "Carl Third",
            "--new-key",
            carl_key.to_str().unwrap(),
            "--out",
            carl_pem.to_str().unwrap(),
        ],
    );
    let p = &pending["pending_approval"];
    assert_eq!(p["action"], "add-operator");
    assert_eq!(p["subject"], "Carl Third");
    let add_id = p["approval_id"].as_str().unwrap().to_string();
    assert!(!carl_pem.exists());

    // Alice cannot approve her own request.
    assert_fails(
        &ca.admin(&alice, "approve", &[&add_id]),
        4,
        "a second, different operator must approve",
    );
    // Bea sees it and approves; she receives Carl's certificate.
    let listed = ca.admin_json(&bea, "approvals", &[]);
    assert_eq!(listed[0]["approval_id"], add_id.as_str());
    assert!(listed[0]["requested_by"]
        .as_str()
        .unwrap()
        .starts_with("operator:Alice Admin/"));
    let approved = ca.admin_json(
        &bea,
        "approve",
        &[&add_id, "--out", carl_pem.to_str().unwrap()],
    );
    assert_eq!(approved["name"], "Carl Third");
    let carl = Operator {
        cert: carl_pem.clone(),
        key: carl_key.to_str().unwrap().to_string(),
        serial: approved["serial"].as_str().unwrap().to_string(),
    };
    assert_eq!(
        ca.admin_json(&carl, "approvals", &[]),
        serde_json::json!([])
    );
    // Approving twice changes nothing.
    assert_fails(
        &ca.admin(&bea, "approve", &[&add_id]),
        5,
        "already approved",
    );
    assert_fails(
        &ca.admin(&bea, "approve", &["00000000000000aa"]),
        5,
        "no approval 00000000000000aa",
    );

    // A PIN reset under dual control: no code until a second operator approves.
    let (card, code) = issue(&ca, &alice, "Dr Ada Smith", "555000000001");
    ca.enrol(&code, "ada").await;
    let out = ca.admin(&alice, "reset-pin", &["--card", &card, "--json"]);
    out.assert_success("reset-pin (pending)");
    let pending = json_of(&out);
    assert!(pending.get("code").is_none(), "{pending}");
    let reset_id = pending["pending_approval"]["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = ca.admin_json(&alice, "show-card", &["--card", &card]);
    assert_eq!(shown["reset_pending"], false);
    assert_fails(
        &ca.admin(&alice, "approve", &[&reset_id]),
        4,
        "requested by you",
    );
    let released = ca.admin_json(&carl, "approve", &[&reset_id]);
    assert_eq!(released["card_id"], card.as_str());
    assert_eq!(released["code"].as_str().unwrap().len(), 19);
    let shown = ca.admin_json(&alice, "show-card", &["--card", &card]);
    assert_eq!(shown["reset_pending"], true);
    // Nothing can be reset on a card that was never enrolled: refused at once.
    let (other, _) = issue(&ca, &alice, "Dr Bob Jones", "555000000002");
    assert_fails(
        &ca.admin(&alice, "reset-pin", &["--card", &other]),
        5,
        "has not been enrolled",
    );

    // Requested, approved and performed are all audited.
    let audit = ca.admin_json(&bea, "audit", &[]);
    let records = audit["records"].as_array().unwrap();
    let of = |id: &str, action: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action && r["detail"]["approval_id"] == id)
            .count()
    };
    assert_eq!(of(&add_id, "approval_requested"), 1);
    assert_eq!(of(&add_id, "approval_granted"), 1);
    assert_eq!(of(&add_id, "operator_added"), 1);
    assert_eq!(of(&reset_id, "approval_requested"), 1);
    assert_eq!(of(&reset_id, "approval_granted"), 1);
    assert_eq!(of(&reset_id, "reset_code_released"), 1);
    let granted = records
        .iter()
        .find(|r| {
            r["action"] == "approval_granted" && r["detail"]["approval_id"] == reset_id.as_str()
        })
        .unwrap();
    assert!(granted["actor"]
        .as_str()
        .unwrap()
        .starts_with("operator:Carl Third/"));
    assert!(records.iter().any(|r| r["action"] == "admin_refused"
        && r["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("requested by you")));
}

/// Debian's softhsm2 package puts the module here.
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[tokio::test]
async fn an_operator_key_can_stay_in_a_pkcs11_token() {
    if !require_tool("softhsm2-util") || !require_tool("pkcs11-tool") {
        return;
    }
    if !Path::new(SOFTHSM).is_file() {
        assert!(
            !in_ci(),
            "{SOFTHSM} is missing and CI=true: run scripts/install-deps.sh"
        );
        eprintln!("\n*** SKIP: {SOFTHSM} is missing; run scripts/install-deps.sh ***\n");
        return;
    }
    let hsm = tempfile::tempdir().unwrap();
    let tokens = hsm.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = hsm.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let conf_text = conf.to_str().unwrap().to_string();
    let tool = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.env("SOFTHSM2_CONF", &conf).args(args);
        run(cmd, None, COMMAND_TIMEOUT).assert_success(program);
    };
    tool(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "operator",
            "--so-pin",
            "5678",
            "--pin",
            "1234",
        ],
    );
    tool(
        "pkcs11-tool",
        &[
            "--module",
            SOFTHSM,
            "--token-label",
            "operator",
            "--login",
            "--pin",
            "1234",
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "grace",
            "--id",
            "01",
        ],
    );
    let pin = hsm.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let uri = format!(
        "pkcs11:token=operator;object=grace?module-path={SOFTHSM}&pin-source=file:{}",
        pin.display()
    );

    let ca = TestCa::start_with_env(|_| {}, &[("SOFTHSM2_CONF", &conf_text)]);
    let cert = ca.path("grace-hsm.pem");
    let out = ca.cli(&[
        "admin",
        "add-operator",
        "--dir",
        ca.dir().to_str().unwrap(),
        "--name",
        "Grace Token",
        "--key",
        &uri,
        "--out",
        cert.to_str().unwrap(),
        "--json",
    ]);
    out.assert_success("add-operator --key pkcs11:");
    let grace = Operator {
        cert,
        key: uri.clone(),
        serial: json_of(&out)["serial"].as_str().unwrap().to_string(),
    };
    let (card, _) = issue(&ca, &grace, "Dr Ada Smith", "555000000001");
    let listed = ca.admin_json(&grace, "list-cards", &[]);
    assert_eq!(listed[0]["card_id"], card.as_str());
    let audit = ca.admin_json(&grace, "audit", &["--card", &card]);
    assert_eq!(
        audit["records"][0]["actor"],
        format!("operator:Grace Token/{}", grace.serial).as_str()
    );

    // A wrong PIN is one clear line, and nothing is sent.
    std::fs::write(&pin, "9999\n").unwrap();
    let out = ca.admin(&grace, "list-cards", &[]);
    assert_fails(&out, 1, "wrong PIN");
}
