//! A forgotten PIN through the whole system: three wrong PINs lock the card, the
//! IT desk releases a one-time reset code, a wrong code is refused and counted,
//! the right one gives the same card and slot a new PIN, key and certificate,
//! and the old certificate is revoked (superseded) on the CRL.

use lanyard_test_support::{require_tool, Daemon, KeyType};

use crate::lifecycle_world::{
    assert_audited, cert_serial, certificate_into, lifecycle_ca, normalise_serial, public_key_text,
    refresh_key_id, status_card, verify_with_crl, wait_for_crl_entry, CHECK_IN_DAEMON_CONFIG,
};
use crate::world::{
    enroll_card_at, openssl_verify, public_key_of, scratch, sign, tools_present, verify_sha256,
};

const OLD_PIN: &str = "918273";
const NEW_PIN: &str = "564738";
const WRONG_PIN: &str = "000000";

/// The same code with its first character changed: well-formed, but wrong.
fn wrong_code(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let first = chars
        .iter()
        .position(char::is_ascii_alphanumeric)
        .expect("a code has characters");
    chars[first] = if chars[first] == '7' { '8' } else { '7' };
    chars.into_iter().collect()
}

#[test]
fn reset_pin_end_to_end_counts_a_wrong_code_and_supersedes_the_old_certificate() {
    if !tools_present() || !require_tool("cc") {
        return;
    }
    let lca = lifecycle_ca();
    let daemon = Daemon::builder().config(CHECK_IN_DAEMON_CONFIG).start();
    let mut card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Pat Forgetful",
        "555500000001",
        KeyType::Rsa2048,
        OLD_PIN,
    );
    let card_id = card.issued.card_id.clone();
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let old_cert = certificate_into(&tool, &card, dir.path(), "old");
    let old_serial = cert_serial(&old_cert);
    let old_key = public_key_text(&old_cert, dir.path(), "old");
    let slot_before = status_card(&daemon, &card_id)["slot"].clone();
    let slot = card.slot.to_string();

    // Three wrong PINs lock the card; then even the right PIN is refused.
    for n in 1..=3 {
        let out = tool.run(&["--slot", &slot, "--login", "--pin", WRONG_PIN, "-O"]);
        assert!(!out.success(), "wrong PIN {n} was accepted\n{out}");
    }
    let status = status_card(&daemon, &card_id);
    assert_eq!(
        status["locked"], true,
        "three wrong PINs did not lock: {status}"
    );
    let out = tool.run(&["--slot", &slot, "--login", "--pin", OLD_PIN, "-O"]);
    assert!(!out.success(), "a locked card accepted its PIN\n{out}");
    assert!(out.combined().contains("CKR_PIN_LOCKED"), "{out}");

    // The IT desk releases a reset code.
    let released = lca.admin_json("reset-pin", &["--card", &card_id]);
    let code = released["code"]
        .as_str()
        .unwrap_or_else(|| panic!("admin reset-pin --json has no code: {released}"))
        .to_string();
    let tries = released["tries"].as_u64().expect("tries");
    assert!(tries >= 2, "{released}");
    let shown = lca.show_card(&card_id);
    assert_eq!(shown["reset_pending"], true, "{shown}");
    assert_eq!(shown["reset_tries_left"], tries, "{shown}");

    // A wrong code is refused, changes nothing on the device, and is counted.
    let refused = daemon.reset_pin(&card_id, &wrong_code(&code), NEW_PIN);
    assert!(
        !refused.success(),
        "a wrong reset code was accepted\n{refused}"
    );
    assert_eq!(
        refused.code,
        Some(5),
        "exit 5 (CA refused) expected\n{refused}"
    );
    let shown = lca.show_card(&card_id);
    assert_eq!(
        shown["reset_tries_left"],
        tries - 1,
        "the wrong code was not counted: {shown}"
    );
    assert_eq!(status_card(&daemon, &card_id)["locked"], true);

    // The right code: new PIN, same card id and slot, new key and certificate.
    let out = daemon.reset_pin(&card_id, &code, NEW_PIN);
    out.assert_success("lanyard reset-pin with the right code");
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("lanyard reset-pin --json printed invalid JSON ({e})\n{out}"));
    assert_eq!(json["card_id"], card_id.as_str(), "{json}");
    assert_eq!(
        json["slot"], slot_before,
        "the reset moved the card: {json}"
    );
    let status = status_card(&daemon, &card_id);
    assert_eq!(status["locked"], false, "{status}");
    assert_eq!(status["pin_failures"], 0, "{status}");
    assert_eq!(status["slot"], slot_before, "{status}");
    refresh_key_id(&tool, &mut card);
    let new_cert = certificate_into(&tool, &card, dir.path(), "new");
    assert_ne!(cert_serial(&new_cert), old_serial, "no new certificate");
    assert_ne!(
        public_key_text(&new_cert, dir.path(), "new"),
        old_key,
        "the reset kept the old key"
    );
    openssl_verify(&lca.ca.root_pem(), Some(&lca.ca.issuing_pem()), &new_cert)
        .assert_success("the new certificate chains to the root");

    // The old PIN no longer works; the NEW PIN signs through pkcs11-tool.
    let out = tool.run(&["--slot", &slot, "--login", "--pin", OLD_PIN, "-O"]);
    assert!(
        !out.success(),
        "the old PIN still works after a reset\n{out}"
    );
    card.pin = NEW_PIN;
    let data = dir.path().join("document.txt");
    std::fs::write(&data, b"Sick note 5521, signed after a PIN reset.\n").expect("write data");
    let sig = dir.path().join("sig.bin");
    sign(&tool, &card, "SHA256-RSA-PKCS", &[], &data, &sig)
        .assert_success("pkcs11-tool --sign with the new PIN");
    let pub_pem = public_key_of(&new_cert, dir.path(), "verify");
    verify_sha256(&pub_pem, &sig, &data)
        .assert_success("the new PIN's signature verifies with the new certificate");

    // The old certificate is revoked as superseded, on the CA and on the CRL.
    let shown = lca.show_card(&card_id);
    let old = shown["certificates"]
        .as_array()
        .and_then(|certs| {
            certs.iter().find(|c| {
                c["serial"]
                    .as_str()
                    .is_some_and(|s| normalise_serial(s) == old_serial)
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("show-card does not list the old certificate: {shown}"));
    assert_eq!(old["reason"], "superseded", "{shown}");
    assert_eq!(shown["state"], "active", "{shown}");
    assert_eq!(
        shown["reset_pending"], false,
        "the code is single-use: {shown}"
    );
    let crl = wait_for_crl_entry(lca.crl_url(), dir.path(), &old_serial);
    assert_eq!(crl.revoked[&old_serial], "Superseded", "{}", crl.text);
    let rejected = verify_with_crl(&lca.ca, &crl, &old_cert);
    assert!(
        !rejected.success() && rejected.combined().contains("certificate revoked"),
        "{rejected}"
    );
    verify_with_crl(&lca.ca, &crl, &new_cert)
        .assert_success("the new certificate passes the CRL check");

    // The same code cannot be used twice.
    let again = daemon.reset_pin(&card_id, &code, OLD_PIN);
    assert!(!again.success(), "a reset code worked twice\n{again}");

    assert_audited(
        lca,
        &card_id,
        &["reset_code_released", "pin_reset_failed", "pin_reset"],
    );
}
