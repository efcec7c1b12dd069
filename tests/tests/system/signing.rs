//! Signing through the module with real clients, verified by OpenSSL with the public
//! key of the enrolled certificate; the certificate chains to the CA; no login, no
//! signature, and one application's login does not let another sign.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::run;

use crate::world::{
    export_certificate, openssl, openssl_verify, public_key_of, scratch, shared_ca, sign,
    tools_present, verify_sha256, world, Card,
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
    let out = openssl_verify(&root, Some(&issuing), &cert);
    out.assert_success("openssl verify of the card certificate");
    assert!(out.stdout.contains(": OK"), "{out}");

    // Without the issuing CA the chain must not verify: the root alone did not sign it.
    let alone = openssl_verify(&root, None, &cert);
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

/// Builds the C client in `c/sign_after_logout.c` (a minimal PKCS#11 host
/// application) into `dir`.
fn build_c_client(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/c/sign_after_logout.c");
    let exe = dir.join("sign_after_logout");
    let mut cc = Command::new("cc");
    cc.args(["-Wall", "-Werror", "-O1", "-I/usr/include/p11-kit-1", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl");
    run(cc, None, Duration::from_secs(120))
        .assert_success("cc sign_after_logout.c (needs libp11-kit-dev)");
    exe
}

#[test]
fn signing_without_login_is_refused() {
    if !tools_present() || !lanyard_test_support::require_tool("cc") {
        return;
    }
    let w = world();
    let card = &w.rsa;
    let dir = scratch();
    let client = build_c_client(dir.path());
    let mut cmd = Command::new(&client);
    cmd.arg(lanyard_test_support::module_path())
        .arg(card.slot.to_string())
        .arg(card.pin)
        .envs(w.daemon.env());
    let out = run(cmd, None, Duration::from_secs(60));
    out.assert_success("sign_after_logout");
    let value = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {name} in the client's output\n{out}"))
    };
    // Not even visible before login…
    assert_eq!(value("private_keys_before_login"), "0", "{out}");
    // …usable once logged in (so the refusal below is about the login)…
    assert_eq!(value("login"), "0x0", "{out}");
    // (the authentication key, signing below, and the document-signing key)
    assert_eq!(value("private_keys_after_login"), "2", "{out}");
    assert_eq!(value("sign_logged_in"), "0x0", "{out}");
    // …and refused with CKR_USER_NOT_LOGGED_IN (0x101) after C_Logout.
    assert_eq!(value("logout"), "0x0", "{out}");
    let refused = if value("sign_init_logged_out") == "0x0" {
        value("sign_logged_out")
    } else {
        value("sign_init_logged_out")
    };
    assert_eq!(
        refused, "0x101",
        "signing after logout was not refused with CKR_USER_NOT_LOGGED_IN\n{out}"
    );
}

#[test]
fn a_login_belongs_to_the_application_that_made_it() {
    if !tools_present() || !lanyard_test_support::require_tool("cc") {
        return;
    }
    let w = world();
    let card = &w.rsa; // the C client signs with CKM_SHA256_RSA_PKCS
    let dir = scratch();
    let client = build_c_client(dir.path());

    // Application A logs in and keeps its session open.
    let mut a = Command::new(&client);
    a.arg(lanyard_test_support::module_path())
        .arg(card.slot.to_string())
        .arg(card.pin)
        .arg("hold")
        .envs(w.daemon.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut a = lanyard_test_support::process::spawn_owned(a).expect("start application A");
    let mut a_out = std::io::BufReader::new(a.stdout.take().expect("piped"));
    let mut a_lines = Vec::new();
    let mut key = None;
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut a_out, &mut line).expect("read A");
        if n == 0 {
            break;
        }
        if let Some(k) = line.trim().strip_prefix("key=") {
            key = Some(k.to_string());
        }
        let holding = line.trim() == "holding";
        a_lines.push(line);
        if holding {
            break;
        }
    }
    let key = key.unwrap_or_else(|| panic!("application A did not log in:\n{}", a_lines.concat()));

    // Application B, same user, same card, never logged in: refused.
    let mut b = Command::new(&client);
    b.arg(lanyard_test_support::module_path())
        .arg(card.slot.to_string())
        .arg("-")
        .arg(format!("other:{key}"))
        .envs(w.daemon.env());
    let b = run(b, None, Duration::from_secs(60));
    b.assert_success("application B");
    let refused = b
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("sign_other_app=")
                .or_else(|| l.strip_prefix("sign_init_other_app="))
        })
        .filter(|rv| *rv != "0x0")
        .map(str::to_string);
    assert_eq!(
        refused.as_deref(),
        Some("0x101"),
        "application B signed with application A's login\n{b}"
    );

    // A is still logged in and still signs.
    drop(a.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut a_out, &mut rest).expect("read A");
    let _ = a.wait();
    assert!(
        rest.contains("sign_after_hold=0x0"),
        "application A lost its login:\n{}{rest}",
        a_lines.concat()
    );
}
