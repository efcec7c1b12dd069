//! The server side of every TLS client-authentication test: a one-connection
//! `openssl s_server -Verify 1 -verify_return_error -www` that requires a client
//! certificate chaining to the Lanyard CA, and the checks on what it saw.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{module_path, CmdOutput};

use crate::world::{openssl, shared_ca, Card};

/// What a client sends once connected: `s_server -www` answers with a page
/// describing the session.
pub const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// A one-connection `openssl s_server` that requires a client certificate.
pub struct TlsServer {
    child: Child,
    port: u16,
    output: mpsc::Receiver<String>,
    cert: PathBuf,
}

impl TlsServer {
    /// Starts the server with a fresh self-signed certificate for 127.0.0.1 and
    /// `localhost` in `dir`; `extra` are more `s_server` options.
    pub fn start(dir: &Path, extra: &[&str]) -> TlsServer {
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
            .args(["-naccept", "1", "-Verify", "1", "-verify_return_error"])
            .args(["-www", "-CAfile"])
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
        let mut server = TlsServer {
            child,
            port,
            output: rx,
            cert,
        };
        let seen = server.collect_until("ACCEPT", Duration::from_secs(20));
        assert!(seen.contains("ACCEPT"), "s_server did not start:\n{seen}");
        server
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// The server's self-signed certificate (PEM), for the client to trust.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    fn collect_until(&mut self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        while Instant::now() < deadline {
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
    pub fn finish(mut self) -> String {
        let text = self.collect_until("\u{0}", Duration::from_secs(10));
        stop_child(&mut self.child, Duration::from_secs(2));
        text
    }

    /// Stops a server started for several connections (`-naccept N`, e.g.
    /// for a browser) now; returns what it printed.
    pub fn stop(mut self) -> String {
        stop_child(&mut self.child, Duration::from_secs(2));
        // The output pipes are closed now: this ends as soon as they are read.
        self.collect_until("\u{0}", Duration::from_secs(10))
    }
}

/// An OpenSSL config that loads libp11's pkcs11 engine with our module (its
/// default would be p11-kit-proxy).
pub fn engine_config(dir: &Path) -> PathBuf {
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

/// The client got the page, and the page and the server's log show the session
/// used `protocol`, the card's certificate, and a client signature of type `sig`
/// (as `s_server` names it: `RSA-PSS`, `RSA`, `ECDSA`).
pub fn assert_authenticated(
    out: &CmdOutput,
    server_log: &str,
    card: &Card,
    protocol: &str,
    sig: &str,
) {
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
