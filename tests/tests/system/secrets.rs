//! No secret reaches a log: after enrolment, wrong and right logins, a signature and a
//! PIN change, with debug logging on, neither the PINs nor the enrolment code appear
//! in the daemon's or the CA's captured output.

use lanyard_test_support::{Ca, Daemon, KeyType};

use crate::world::{scratch, sign, status_cards, tools_present, Card, ROLE};

#[test]
fn no_pin_or_code_appears_in_the_logs() {
    if !tools_present() {
        return;
    }
    // Its own CA, so its log holds this test's enrolments only.
    let ca = &Ca::start();
    let daemon = Daemon::builder().env("RUST_LOG", "debug").start();
    let pin = "80604020";
    let new_pin = "70503010";
    let wrong_pin = "91827364";
    let issued = ca.issue_card("Dr Jo Secret", "555000000008", ROLE);
    daemon
        .try_enroll(
            ca.url(),
            &ca.root_pem(),
            &issued.code,
            KeyType::Rsa2048,
            pin,
        )
        .assert_success("enrolment");
    let tool = daemon.pkcs11_tool();
    let token = tool
        .slots()
        .into_iter()
        .find(|s| s.token_label.is_some())
        .expect("a token");
    let slot = token.id;
    let key_id = tool
        .objects(slot, None)
        .iter()
        .find(|o| o.kind == "Public Key Object")
        .and_then(|o| o.id().map(str::to_string))
        .expect("a public key object");
    let card = Card {
        holder: "Dr Jo Secret",
        pin,
        issued: issued.clone(),
        slot,
        token_label: token.token_label.unwrap_or_default(),
        key_id,
        key: KeyType::Rsa2048,
    };
    let slot_arg = slot.to_string();
    let wrong = tool.run(&["--slot", &slot_arg, "--login", "--pin", wrong_pin, "-O"]);
    assert!(!wrong.success(), "{wrong}");
    let dir = scratch();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, b"secret-free logs").expect("write");
    sign(
        &tool,
        &card,
        "SHA256-RSA-PKCS",
        &[],
        &data,
        &dir.path().join("sig.bin"),
    )
    .assert_success("sign");
    daemon
        .lanyard(
            &["change-pin", "--pin-stdin"],
            Some(&format!("{pin}\n{new_pin}\n")),
        )
        .assert_success("change-pin");
    // A failed enrolment with a fresh code, so the CA logs a refusal too.
    let refused = ca.issue_card("Dr Jo Secret", "555000000008", ROLE);
    let again = daemon.try_enroll(
        ca.url(),
        &ca.root_pem(),
        &issued.code,
        KeyType::Rsa2048,
        pin,
    );
    assert!(!again.success(), "a used code was accepted\n{again}");
    assert_eq!(status_cards(&daemon).len(), 1);

    let daemon_log = daemon.log();
    let ca_log = ca.logs();
    assert!(
        !daemon_log.trim().is_empty(),
        "the daemon logged nothing, so this test would prove nothing"
    );
    assert!(
        !ca_log.trim().is_empty(),
        "the CA logged nothing, so this test would prove nothing"
    );
    let code_compact: String = issued
        .code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let refused_compact: String = refused
        .code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let secrets = [
        ("PIN", pin.to_string()),
        ("new PIN", new_pin.to_string()),
        ("wrong PIN", wrong_pin.to_string()),
        ("enrolment code", issued.code.clone()),
        ("enrolment code without separators", code_compact),
        ("unused enrolment code", refused.code.clone()),
        ("unused enrolment code without separators", refused_compact),
    ];
    for (what, secret) in &secrets {
        for (who, log) in [("lanyardd", &daemon_log), ("lanyard-ca", &ca_log)] {
            assert!(
                !log.to_lowercase().contains(&secret.to_lowercase()),
                "the {what} appears in {who}'s log:\n{log}"
            );
        }
    }
}
