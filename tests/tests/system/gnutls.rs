//! GnuTLS with the module given as `--provider`: `p11tool --list-all` shows each
//! card's objects by their `pkcs11:` URIs, `p11tool --test-sign` passes, and
//! `gnutls-cli` completes TLS 1.3 with client authentication, key and certificate
//! named by `pkcs11:` URIs and the PIN in `GNUTLS_PIN`, against a server that
//! requires the card.

use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{module_path, require_tool, run, CmdOutput};

use crate::pkcs11_uri::{hex_bytes, p11tool_urls, Pkcs11Uri};
use crate::tls_server::{assert_authenticated, TlsServer, REQUEST};
use crate::world::{scratch, tools_present, world, Card};

fn gnutls_tools() -> bool {
    tools_present() && require_tool("gnutls-cli") && require_tool("p11tool")
}

/// `p11tool --provider MODULE ARGS…` with the daemon's environment.
fn p11tool(args: &[&str], pin: Option<&str>) -> CmdOutput {
    let mut cmd = Command::new("p11tool");
    cmd.arg("--provider")
        .arg(module_path())
        .args(args)
        .envs(world().daemon.env());
    if let Some(pin) = pin {
        cmd.env("GNUTLS_PIN", pin);
    }
    // Generous: `--login --list-all` reads every attribute of every object
    // (two key pairs and certificates per card since document signing) and
    // takes tens of seconds on a loaded machine.
    run(cmd, None, Duration::from_secs(180))
}

#[test]
fn p11tool_list_all_shows_each_card_by_its_uri() {
    if !gnutls_tools() {
        return;
    }
    let w = world();
    let tokens = p11tool(&["--list-tokens"], None);
    tokens.assert_success("p11tool --list-tokens");
    for card in [&w.rsa, &w.ec] {
        // The token by its URI, as p11tool prints it…
        let token = tokens
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("URL:"))
            .map(str::trim)
            .find(|u| {
                Pkcs11Uri::parse(u)
                    .is_ok_and(|uri| uri.text("token") == Some(card.token_label.as_str()))
            })
            .unwrap_or_else(|| panic!("no token URI for {}\n{tokens}", card.holder));
        // …and that URI lists the card's certificate and public key by theirs.
        let out = p11tool(&["--list-all", token], None);
        out.assert_success("p11tool --list-all TOKEN-URI");
        let uris = p11tool_urls(&out.stdout);
        let key_id = hex_bytes(&card.key_id);
        for kind in ["cert", "public"] {
            let uri = uris
                .iter()
                .find(|u| u.get("id") == Some(key_id.as_slice()) && u.text("type") == Some(kind))
                .unwrap_or_else(|| panic!("no {kind} URI for {}'s card\n{out}", card.holder));
            assert_eq!(uri.text("token"), Some(card.token_label.as_str()), "{out}");
            assert_eq!(uri.text("manufacturer"), Some("Lanyard"), "{out}");
            assert_eq!(uri.text("object"), Some(card.holder), "{out}");
        }
        // The private key stays hidden until login…
        assert!(
            !uris.iter().any(|u| u.text("type") == Some("private")),
            "a private key listed without login\n{out}"
        );
        // …and is listed, by the same kind of URI, after it.
        let logged_in = p11tool(&["--login", "--list-all", token], Some(card.pin));
        logged_in.assert_success("p11tool --login --list-all TOKEN-URI");
        let private = p11tool_urls(&logged_in.stdout)
            .into_iter()
            .find(|u| u.text("type") == Some("private"))
            .unwrap_or_else(|| panic!("no private key after login\n{logged_in}"));
        assert_eq!(private.get("id"), Some(key_id.as_slice()), "{logged_in}");
        assert_eq!(private.text("object"), Some(card.holder), "{logged_in}");
    }
}

#[test]
fn p11tool_test_sign_passes_on_both_cards() {
    if !gnutls_tools() {
        return;
    }
    let w = world();
    for card in [&w.rsa, &w.ec] {
        let out = p11tool(
            &[
                "--batch",
                "--login",
                "--test-sign",
                &card.pkcs11_uri("private"),
            ],
            Some(card.pin),
        );
        out.assert_success("p11tool --test-sign");
        assert!(
            out.combined()
                .contains("Verifying against public key in the token... ok"),
            "{out}"
        );
    }
}

/// `gnutls-cli` limited to TLS 1.3, certificate and key as `pkcs11:` URIs, the
/// PIN from `GNUTLS_PIN` (not in the URI).
fn gnutls_client(card: &Card, server: &TlsServer) -> CmdOutput {
    let mut cmd = Command::new("gnutls-cli");
    cmd.arg("--provider")
        .arg(module_path())
        .arg("--x509cafile")
        .arg(server.cert())
        .arg("--x509certfile")
        .arg(card.pkcs11_uri("cert"))
        .arg("--x509keyfile")
        .arg(card.pkcs11_uri("private"))
        .args(["--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3"])
        .args(["--verify-hostname", "localhost", "-p"])
        .arg(server.port().to_string())
        .arg("127.0.0.1")
        .env("GNUTLS_PIN", card.pin)
        .envs(world().daemon.env());
    run(cmd, Some(REQUEST), Duration::from_secs(60))
}

#[test]
fn gnutls_cli_tls13_client_auth_with_pkcs11_uris_and_gnutls_pin() {
    if !gnutls_tools() {
        return;
    }
    for (card, sig) in [(&world().rsa, "RSA-PSS"), (&world().ec, "ECDSA")] {
        let dir = scratch();
        let server = TlsServer::start(dir.path(), &[]);
        let out = gnutls_client(card, &server);
        let log = server.finish();
        assert!(
            out.stdout.contains("Handshake was completed"),
            "{out}\n--- server ---\n{log}"
        );
        assert_authenticated(&out, &log, card, "TLSv1.3", sig);
    }
}
