//! The clinician's real use: TLS client authentication with the card, the key staying
//! in the daemon, through OpenSSL 3 and libp11's pkcs11 engine (an `OPENSSL_CONF`
//! engine section naming our module): `openssl s_client -engine pkcs11 -keyform
//! engine` (TLS 1.3 RSA-PSS and ECDSA, TLS 1.2 PKCS#1) and curl with `--engine
//! pkcs11 --key-type ENG`, against an `openssl s_server` that requires the card.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{require_tool, run, CmdOutput};

use crate::tls_server::{assert_authenticated, engine_config, TlsServer, REQUEST};
use crate::world::{export_certificate, scratch, tools_present, world, Card};

fn openssl_client(card: &Card, dir: &Path, server: &TlsServer, extra: &[&str]) -> CmdOutput {
    let w = world();
    let cert = export_certificate(&w.daemon.pkcs11_tool(), card, dir);
    let key = format!("{};pin-value={}", card.pkcs11_uri("private"), card.pin);
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", server.port()))
        .args(extra)
        .args([
            "-engine", "pkcs11", "-keyform", "engine", "-key", &key, "-cert",
        ])
        .arg(&cert)
        .arg("-CAfile")
        .arg(server.cert())
        .args(["-verify_return_error", "-quiet"])
        .env("OPENSSL_CONF", engine_config(dir))
        .envs(w.daemon.env());
    run(cmd, Some(REQUEST), Duration::from_secs(60))
}

#[test]
fn openssl_tls13_client_auth_with_the_rsa_card_signs_rsa_pss() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let server = TlsServer::start(dir.path(), &[]);
    let card = &world().rsa;
    let out = openssl_client(card, dir.path(), &server, &[]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.3", "RSA-PSS");
}

#[test]
fn openssl_tls12_client_auth_with_the_rsa_card_signs_pkcs1() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let server = TlsServer::start(dir.path(), &["-tls1_2", "-client_sigalgs", "RSA+SHA256"]);
    let card = &world().rsa;
    let out = openssl_client(card, dir.path(), &server, &["-tls1_2"]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.2", "RSA");
}

#[test]
fn openssl_tls13_client_auth_with_the_ec_card() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let server = TlsServer::start(dir.path(), &[]);
    let card = &world().ec;
    let out = openssl_client(card, dir.path(), &server, &[]);
    let log = server.finish();
    assert_authenticated(&out, &log, card, "TLSv1.3", "ECDSA");
}

/// `curl --engine pkcs11 --key-type ENG --key URI --cert-type ENG --cert URI
/// --pass PIN`: key and certificate both come from the token.
fn curl_client(card: &Card, dir: &Path, server: &TlsServer) -> CmdOutput {
    let w = world();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(server.cert())
        .args(["--engine", "pkcs11", "--key-type", "ENG", "--key"])
        .arg(card.pkcs11_uri("private"))
        .args(["--cert-type", "ENG", "--cert"])
        .arg(card.pkcs11_uri("cert"))
        .args(["--pass", card.pin])
        .arg(server.url())
        .env("OPENSSL_CONF", engine_config(dir))
        .envs(w.daemon.env());
    run(cmd, None, Duration::from_secs(60))
}

#[test]
fn curl_client_auth_through_the_pkcs11_engine_with_both_cards() {
    if !tools_present() || !require_tool("curl") {
        return;
    }
    for (card, sig) in [(&world().rsa, "RSA-PSS"), (&world().ec, "ECDSA")] {
        let dir = scratch();
        let server = TlsServer::start(dir.path(), &[]);
        let out = curl_client(card, dir.path(), &server);
        let log = server.finish();
        assert_authenticated(&out, &log, card, "TLSv1.3", sig);
    }
}
