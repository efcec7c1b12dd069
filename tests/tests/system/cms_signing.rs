//! Document signing, the shape of an electronic prescription signature: each
//! card carries a second key pair and certificate (PIV slot 9C's role)
//! whose private key has CKA_ALWAYS_AUTHENTICATE. `openssl cms -sign` through
//! libp11's engine (which does the context-specific login, asking OpenSSL's
//! UI for the PIN: `-passin`) makes a CMS signature that `openssl cms -verify` accepts against
//! the CA's root and issuing certificates, for the RSA and the EC card; a
//! C_Sign without the context-specific login is CKR_USER_NOT_LOGGED_IN.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{run, CmdOutput};

use crate::pkcs11_app::{Pkcs11App, CKR_OK};
use crate::tls_server::engine_config;
use crate::world::{openssl, percent_encode, scratch, shared_ca, tools_present, world, Card};

/// CKR_USER_NOT_LOGGED_IN.
const CKR_USER_NOT_LOGGED_IN: u64 = 0x101;

/// The CKA_ID (hex) of the card's document-signing certificate, found by its label.
fn signing_key_id(card: &Card) -> String {
    let objects = world().daemon.pkcs11_tool().objects(card.slot, None);
    let cert = objects
        .iter()
        .find(|o| {
            o.kind == "Certificate Object"
                && o.field("label")
                    .is_some_and(|l| l.contains("Digital Signature"))
        })
        .unwrap_or_else(|| panic!("no document-signing certificate on the token: {objects:?}"));
    let id = cert
        .id()
        .expect("the signing certificate has an ID")
        .to_string();
    assert_ne!(id, card.key_id, "the signing key has its own CKA_ID");
    id
}

/// Exports the certificate with CKA_ID `id` from the card as `dir/signing.pem`.
fn export_signing_certificate(card: &Card, id: &str, dir: &Path) -> PathBuf {
    let der = dir.join("signing.der");
    let pem = dir.join("signing.pem");
    world()
        .daemon
        .pkcs11_tool()
        .run(&[
            "--slot",
            &card.slot.to_string(),
            "--read-object",
            "--type",
            "cert",
            "--id",
            id,
            "-o",
            der.to_str().unwrap(),
        ])
        .assert_success("pkcs11-tool --read-object (signing certificate)");
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ])
    .assert_success("openssl x509");
    pem
}

/// RFC 7512 URI of the signing private key, with the PIN for the engine.
fn signing_key_uri(card: &Card, id: &str) -> String {
    let pct: String = id
        .as_bytes()
        .chunks(2)
        .map(|p| format!("%{}", std::str::from_utf8(p).unwrap_or("00")))
        .collect();
    format!(
        "pkcs11:token={};id={pct};type=private;pin-value={}",
        percent_encode(&card.token_label),
        card.pin
    )
}

/// `openssl cms -sign` with the key on the card. libp11 logs in with the URI's
/// pin-value, and for a CKA_ALWAYS_AUTHENTICATE key asks its UI for the PIN
/// of the context-specific login ("Enter PKCS#11 key PIN for …"): without a
/// terminal (`setsid`) OpenSSL's UI reads it from stdin, as a user typing it.
fn cms_sign(
    dir: &Path,
    signer: &Path,
    key_uri: &str,
    pin: &str,
    doc: &Path,
    out: &Path,
) -> CmdOutput {
    let mut cmd = Command::new("setsid");
    cmd.args(["-w", "openssl"])
        .args([
            "cms", "-sign", "-engine", "pkcs11", "-keyform", "engine", "-signer",
        ])
        .arg(signer)
        // The issuing CA goes into the signature: OpenSSL 3.0's CMS_verify
        // builds the chain from the certificates the signature carries.
        .arg("-certfile")
        .arg(shared_ca().issuing_pem())
        .args(["-inkey", key_uri, "-in"])
        .arg(doc)
        .arg("-out")
        .arg(out)
        .args(["-outform", "DER", "-binary", "-md", "sha256"])
        .env("OPENSSL_CONF", engine_config(dir))
        .envs(world().daemon.env());
    let pin_line = format!("{pin}\n");
    run(cmd, Some(pin_line.as_bytes()), Duration::from_secs(120))
}

fn cms_verify(doc: &Path, sig: &Path, out: &Path) -> CmdOutput {
    let ca = shared_ca();
    openssl(&[
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        sig.to_str().unwrap(),
        "-content",
        doc.to_str().unwrap(),
        "-CAfile",
        ca.root_pem().to_str().unwrap(),
        "-certfile",
        ca.issuing_pem().to_str().unwrap(),
        "-binary",
        "-out",
        out.to_str().unwrap(),
    ])
}

fn signs_and_verifies(card: &Card) {
    let dir = scratch();
    let id = signing_key_id(card);
    let signer = export_signing_certificate(card, &id, dir.path());
    let doc = dir.path().join("prescription.txt");
    std::fs::write(&doc, b"Rx: amoxicillin 500 mg, three times daily, 7 days\n").unwrap();
    let sig = dir.path().join("prescription.p7s");
    let out = cms_sign(
        dir.path(),
        &signer,
        &signing_key_uri(card, &id),
        card.pin,
        &doc,
        &sig,
    );
    out.assert_success("openssl cms -sign with the card's signing key");
    let verified = dir.path().join("verified.txt");
    let v = cms_verify(&doc, &sig, &verified);
    v.assert_success("openssl cms -verify");
    assert!(v.stderr.contains("Verification successful"), "{v}");
    assert_eq!(
        std::fs::read(&verified).unwrap(),
        std::fs::read(&doc).unwrap()
    );

    // A changed document does not verify.
    let forged = dir.path().join("forged.txt");
    std::fs::write(&forged, b"Rx: oxycodone 80 mg\n").unwrap();
    assert!(!cms_verify(&forged, &sig, &verified).success());

    // The card's login (authentication) certificate is not a document signer:
    // OpenSSL's S/MIME signing purpose refuses it; the signing one passes.
    let ca = shared_ca();
    let purpose = |cert: &Path| {
        openssl(&[
            "verify",
            "-purpose",
            "smimesign",
            "-CAfile",
            ca.root_pem().to_str().unwrap(),
            "-untrusted",
            ca.issuing_pem().to_str().unwrap(),
            cert.to_str().unwrap(),
        ])
    };
    assert!(purpose(&signer).success());
    let auth = crate::world::export_certificate(&world().daemon.pkcs11_tool(), card, dir.path());
    assert!(
        !purpose(&auth).success(),
        "the login certificate must not sign documents"
    );
}

#[test]
fn openssl_cms_signs_with_the_rsa_cards_signing_key() {
    if !tools_present() || !lanyard_test_support::require_tool("cc") {
        return;
    }
    signs_and_verifies(&world().rsa);
}

#[test]
fn openssl_cms_signs_with_the_ec_cards_signing_key() {
    if !tools_present() || !lanyard_test_support::require_tool("cc") {
        return;
    }
    signs_and_verifies(&world().ec);
}

#[test]
fn a_signature_without_the_context_specific_login_is_refused() {
    if !tools_present() || !lanyard_test_support::require_tool("cc") {
        return;
    }
    let w = world();
    let dir = scratch();
    let data = dir.path().join("doc");
    std::fs::write(&data, b"Rx").unwrap();
    let sig = dir.path().join("sig");
    for card in [&w.rsa, &w.ec] {
        let mut app = Pkcs11App::start(&w.daemon);
        app.open(card.slot);
        assert_eq!(app.login(card.pin), CKR_OK);
        let ec = card.key == lanyard_test_support::KeyType::EcP256;
        // The document-signing key: logged in is not enough.
        app.find_signing_key();
        assert_eq!(app.sign(ec, &data, &sig), CKR_USER_NOT_LOGGED_IN);
        // The application's login still works for the authentication key.
        app.find_key();
        assert_eq!(app.sign(ec, &data, &sig), CKR_OK);
    }
}
