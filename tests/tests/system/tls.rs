//! The clinician's real use: TLS client authentication with the card, the key staying
//! in the daemon. OpenSSL (through libp11's pkcs11 engine) and GnuTLS (`gnutls-cli`,
//! `p11tool`) load the module and authenticate to an `openssl s_server` that requires
//! a client certificate chaining to the Lanyard CA: TLS 1.3 (RSA-PSS, ECDSA) and
//! TLS 1.2 with PKCS#1 v1.5.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{module_path, require_tool, run, CmdOutput};

use crate::world::{export_certificate, openssl, scratch, shared_ca, tools_present, world, Card};

/// A one-connection `openssl s_server` that requires a client certificate.
struct Server {
    child: Child,
    port: u16,
    output: mpsc::Receiver<String>,
    /// The server's self-signed certificate, for the client to trust.
    cert: PathBuf,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let key = dir.join("server.key");
        let cert = dir.join("server.pem");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().expect("utf-8"),
            "-out",
            cert.to_str().expect("utf-8"),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-days",
            "1",
        ])
        .assert_success("make the test server's certificate");
        // The server trusts the Lanyard chain for client certificates.
        let ca = shared_ca();
        let chain = dir.join("client-ca.pem");
        let mut pem = std::fs::read(ca.issuing_pem()).expect("read issuing.pem");
        pem.extend(std::fs::read(ca.root_pem()).expect("read root.pem"));
        std::fs::write(&chain, pem).expect("write the client CA bundle");

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let mut cmd = owned_command("openssl");
        cmd.args(["s_server", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-naccept", "1", "-Verify", "2", "-www", "-CAfile"])
            .arg(&chain)
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_owned(cmd).expect("start openssl s_server");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            child,
            port,
            output: rx,
            cert,
        };
        let seen = server.collect_until("ACCEPT", Duration::from_secs(20));
        assert!(seen.contains("ACCEPT"), "s_server did not start:\n{seen}");
        server
    }

    fn collect_until(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut text = String::new();
        while std::time::Instant::now() < deadline {
            match self.output.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                    if line.contains(marker) {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        text
    }

    /// Waits for the server to finish its one connection; returns what it printed.
    fn finish(mut self) -> String {
        let text = self.collect_until("\u{0}", Duration::from_secs(10));
        stop_child(&mut self.child, Duration::from_secs(2));
        text
    }
}

/// An OpenSSL config that loads libp11's pkcs11 engine with our module.
fn engine_config(dir: &Path) -> PathBuf {
    let path = dir.join("openssl-pkcs11.cnf");
    let text = format!(
        "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n\
         [engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n\
         MODULE_PATH = {}\ninit = 0\n",
        module_path().display()
    );
    std::fs::write(&path, text).expect("write the OpenSSL config");
    path
}

fn openssl_client(card: &Card, dir: &Path, server: &Server, extra: &[&str]) -> CmdOutput {
    let w = world();
    let cert = export_certificate(&w.daemon.pkcs11_tool(), card, dir);
    let key = format!("{};pin-value={}", card.pkcs11_uri("private"), card.pin);
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", server.port))
        .args(extra)
        .args([
            "-engine", "pkcs11", "-keyform", "engine", "-key", &key, "-cert",
        ])
        .arg(&cert)
        .arg("-CAfile")
        .arg(&server.cert)
        .args(["-verify_return_error", "-quiet"])
        .env("OPENSSL_CONF", engine_config(dir))
        .envs(w.daemon.env());
    run(
        cmd,
        Some(b"GET / HTTP/1.0\r\n\r\n"),
        Duration::from_secs(60),
    )
}

fn gnutls_client(card: &Card, server: &Server) -> CmdOutput {
    let w = world();
    let mut cmd = Command::new("gnutls-cli");
    cmd.arg("--provider")
        .arg(module_path())
        .arg("--x509cafile")
        .arg(&server.cert)
        .arg("--x509certfile")
        .arg(card.pkcs11_uri("cert"))
        .arg("--x509keyfile")
        .arg(format!(
            "{};pin-value={}",
            card.pkcs11_uri("private"),
            card.pin
        ))
        .args(["--verify-hostname", "localhost", "-p"])
        .arg(server.port.to_string())
        .arg("127.0.0.1")
        .envs(w.daemon.env());
    run(
        cmd,
        Some(b"GET / HTTP/1.0\r\n\r\n"),
        Duration::from_secs(60),
    )
}

/// The page `s_server -www` sends back describes the session, including the
/// client certificate it accepted.
fn assert_authenticated(out: &CmdOutput, server_log: &str, card: &Card, protocol: &str, sig: &str) {
    assert!(
        out.success(),
        "TLS client failed\n{out}\n--- server ---\n{server_log}"
    );
    let page = &out.stdout;
    assert!(
        page.contains(&format!("Protocol  : {protocol}")),
        "not {protocol}\n{out}"
    );
    assert!(
        page.contains("Client certificate"),
        "no client certificate in the session\n{out}"
    );
    assert!(
        page.contains(&format!("CN={}", card.holder)),
        "another client certificate\n{out}"
    );
    assert!(
        page.contains(&format!("Peer signature type: {sig}")),
        "client signed without {sig}\n{out}"
    );
    assert!(
        server_log.contains(&format!("CN = {}", card.holder)),
        "server did not verify the card\n{server_log}"
    );
}

fn tls_tools() -> bool {
    tools_present() && require_tool("gnutls-cli") && require_tool("p11tool")
}

#[test]
fn openssl_tls13_client_auth_with_the_rsa_card_signs_rsa_pss() {
    if !tls_tools() {
        return;
    }
    let dir = scratch();
    let server = Server::start(dir.path(), &[]);
    let card = &world().rsa;
    let out = openssl_client(card, dir.path(), &server, &[]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.3", "RSA-PSS");
}

#[test]
fn openssl_tls12_client_auth_with_the_rsa_card_signs_pkcs1() {
    if !tls_tools() {
        return;
    }
    let dir = scratch();
    let server = Server::start(dir.path(), &["-tls1_2", "-client_sigalgs", "RSA+SHA256"]);
    let card = &world().rsa;
    let out = openssl_client(card, dir.path(), &server, &["-tls1_2"]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.2", "RSA");
}

#[test]
fn openssl_tls13_client_auth_with_the_ec_card() {
    if !tls_tools() {
        return;
    }
    let dir = scratch();
    let server = Server::start(dir.path(), &[]);
    let card = &world().ec;
    let out = openssl_client(card, dir.path(), &server, &[]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.3", "ECDSA");
}

#[test]
fn gnutls_client_auth_with_certificate_and_key_from_the_token() {
    if !tls_tools() {
        return;
    }
    for (card, sig) in [(&world().rsa, "RSA-PSS"), (&world().ec, "ECDSA")] {
        let dir = scratch();
        let server = Server::start(dir.path(), &[]);
        let out = gnutls_client(card, &server);
        let log = server.finish();
        assert!(
            out.stdout.contains("Handshake was completed"),
            "{out}\n--- server ---\n{log}"
        );
        assert_authenticated(&out, &log, card, "TLSv1.3", sig);
    }
}

#[test]
fn p11tool_test_sign_passes_on_both_cards() {
    if !tls_tools() {
        return;
    }
    let w = world();
    for card in [&w.rsa, &w.ec] {
        let mut cmd = Command::new("p11tool");
        cmd.args(["--batch", "--login", "--provider"])
            .arg(module_path())
            .arg("--test-sign")
            .arg(card.pkcs11_uri("private"))
            .env("GNUTLS_PIN", card.pin)
            .envs(w.daemon.env());
        let out = run(cmd, None, Duration::from_secs(60));
        out.assert_success("p11tool --test-sign");
        assert!(
            out.combined()
                .contains("Verifying against public key in the token... ok"),
            "{out}"
        );
    }
}
