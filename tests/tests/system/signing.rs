//! Signing through the module with real clients, verified by OpenSSL with the public
//! key of the enrolled certificate; the certificate chains to the CA; no login, no
//! signature.

use std::path::Path;

use crate::world::{
    export_certificate, openssl, public_key_of, scratch, shared_ca, sign, tools_present,
    verify_sha256, world, Card,
};

fn sign_and_verify(card: &Card, mechanism: &str, extra: &[&str]) {
    let w = world();
    let tool = w.daemon.pkcs11_tool();
    let dir = scratch();
    let data = dir.path().join("document.txt");
    std::fs::write(
        &data,
        b"Discharge summary: patient 943 476 5919, signed by the clinician.\n",
    )
    .expect("write data");
    let sig = dir.path().join("sig.bin");
    sign(&tool, card, mechanism, extra, &data, &sig).assert_success("pkcs11-tool --sign");
    let cert = export_certificate(&tool, card, dir.path());
    let pub_pem = public_key_of(&cert, dir.path(), "card");
    let ok = verify_sha256(&pub_pem, &sig, &data);
    ok.assert_success("openssl dgst -verify of the card's signature");
    assert!(ok.stdout.contains("Verified OK"), "{ok}");

    // The same check must reject a different document: the verification above means something.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, b"Discharge summary: patient 943 476 5918.\n").expect("write data");
    let bad = verify_sha256(&pub_pem, &sig, &other);
    assert!(
        !bad.success() && bad.combined().contains("Verification failure"),
        "{bad}"
    );
}

#[test]
fn rsa_sha256_pkcs1_signature_verifies_with_openssl() {
    if !tools_present() {
        return;
    }
    sign_and_verify(&world().rsa, "SHA256-RSA-PKCS", &[]);
}

#[test]
fn ecdsa_sha256_signature_verifies_with_openssl() {
    if !tools_present() {
        return;
    }
    sign_and_verify(
        &world().ec,
        "ECDSA-SHA256",
        &["--signature-format", "openssl"],
    );
}

fn check_chain(card: &Card, dir: &Path) {
    let w = world();
    let ca = shared_ca();
    let cert = export_certificate(&w.daemon.pkcs11_tool(), card, dir);
    let root = ca.root_pem();
    let issuing = ca.issuing_pem();
    let out = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().expect("utf-8"),
        "-untrusted",
        issuing.to_str().expect("utf-8"),
        cert.to_str().expect("utf-8"),
    ]);
    out.assert_success("openssl verify of the card certificate");
    assert!(out.stdout.contains(": OK"), "{out}");

    // Without the issuing CA the chain must not verify: the root alone did not sign it.
    let alone = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().expect("utf-8"),
        cert.to_str().expect("utf-8"),
    ]);
    assert!(
        !alone.success(),
        "card certificate verified without its issuing CA\n{alone}"
    );

    let text = openssl(&[
        "x509",
        "-in",
        cert.to_str().expect("utf-8"),
        "-noout",
        "-text",
    ]);
    text.assert_success("openssl x509 -text");
    assert!(
        text.stdout.contains(card.holder),
        "subject lacks the holder's name\n{text}"
    );
    assert!(
        text.stdout.contains("TLS Web Client Authentication"),
        "no clientAuth EKU\n{text}"
    );
    assert!(
        text.stdout.contains("Digital Signature"),
        "no digitalSignature key usage\n{text}"
    );
}

#[test]
fn card_certificates_chain_to_the_ca() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    check_chain(&world().rsa, dir.path());
    check_chain(&world().ec, dir.path());
}

#[test]
fn signing_without_login_is_refused() {
    if !tools_present() {
        return;
    }
    let w = world();
    let card = &w.rsa;
    let dir = scratch();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, b"no login, no signature").expect("write data");
    let sig = dir.path().join("sig.bin");
    let slot = card.slot.to_string();
    let out = w.daemon.pkcs11_tool().run(&[
        "--slot",
        &slot,
        "--sign",
        "-m",
        "SHA256-RSA-PKCS",
        "--id",
        &card.key_id,
        "-i",
        data.to_str().expect("utf-8"),
        "-o",
        sig.to_str().expect("utf-8"),
    ]);
    out.assert_failure("pkcs11-tool --sign without --login");
    let text = out.combined();
    assert!(
        text.contains("CKR_USER_NOT_LOGGED_IN")
            || text.contains("Private key not found")
            || text.contains("not found"),
        "refused for an unexpected reason\n{out}"
    );
    let written = std::fs::metadata(&sig).map(|m| m.len()).unwrap_or(0);
    assert_eq!(written, 0, "a signature was written without login\n{out}");
}
