//! `lanyard enroll` end to end against a stand-in CA (`common::mock_ca`: a
//! real tonic server over TLS on 127.0.0.1, issuing with an openssl CA).
//! Checks the CLI contract (JSON, exit codes), that a failure leaves no card
//! file, and that a re-issue replaces a card in its slot.

mod common;

use common::mock_ca::{unreachable_url, MockCa};
use common::*;

fn card_files(env: &TestEnv) -> usize {
    std::fs::read_dir(env.store_dir().join("cards"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn enroll(env: &TestEnv, ca: &MockCa, code: &str, key: &str, pin: &str) -> std::process::Output {
    enroll_at(env, &ca.url, ca, code, key, pin)
}

fn enroll_at(
    env: &TestEnv,
    url: &str,
    ca: &MockCa,
    code: &str,
    key: &str,
    pin: &str,
) -> std::process::Output {
    env.lanyard(
        &[
            "enroll",
            "--ca",
            url,
            "--ca-cert",
            ca.root_pem.to_str().unwrap(),
            "--code",
            code,
            "--key",
            key,
            "--pin-stdin",
            "--json",
        ],
        &format!("{pin}\n"),
    )
}

#[test]
fn enrol_rsa_and_ec_then_sign_and_see_them_in_status() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());

    let out = enroll(&env, &ca, "GOOD-CODE", "rsa-2048", PIN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["slot"], 0);
    assert_eq!(card["key_type"], "rsa-2048");
    assert_eq!(card["holder_name"], "Dr Ada Smith");
    let rsa_id = card["card_id"].as_str().unwrap().to_string();

    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["slot"], 1);
    assert_eq!(card["key_type"], "ec-p256");

    // Both slots are full now.
    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slots"));

    let out = env.lanyard(&["status", "--json"], "");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(cards[0]["card_id"], rsa_id.as_str());
    assert!(cards[0]["subject"]
        .as_str()
        .unwrap()
        .contains("Dr Ada Smith"));
    assert!(cards[0]["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(cards[0]["locked"], false);
    assert_eq!(cards[0]["max_pin_failures"], 3);

    // The enrolled card signs after a restart, and the chain is the CA's.
    env.stop();
    env.start();
    let mut c = env.client(9);
    assert_eq!(code(&c.login(&rsa_id, PIN)), 0);
    let sig = signature(&c.sign(
        &rsa_id,
        lanyard_proto::agent::SignAlgorithm::RsaPkcs1 as i32,
        &[1; 36],
    ));
    assert_eq!(sig.len(), 256);
    let log = env.log();
    assert!(!log.contains("GOOD-CODE") && !log.contains(PIN), "{log}");
}

#[test]
fn refused_codes_bad_keys_and_bad_pins_leave_no_card() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());

    let out = enroll(&env, &ca, "USED-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = enroll(&env, &ca, "WRONG-KEY", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not for the key"));

    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", "12345");
    assert_eq!(out.status.code(), Some(4));
    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", "12345x");
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(card_files(&env), 0);
}

#[test]
fn code_from_stdin_keeps_it_out_of_the_command_line() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());
    let args = |code_line: &str| {
        env.lanyard(
            &[
                "enroll",
                "--ca",
                &ca.url,
                "--ca-cert",
                ca.root_pem.to_str().unwrap(),
                "--code",
                "-",
                "--key",
                "ec-p256",
                "--pin-stdin",
                "--json",
            ],
            &format!("{code_line}\n{PIN}\n"),
        )
    };
    // An empty first line is a usage error and nothing is enrolled.
    let out = args("  ");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--code -") && stderr.contains("enrolment code"),
        "{stderr}"
    );
    assert_eq!(card_files(&env), 0);
    // The code on the first line, the PIN on the second: enrolled.
    let out = args("GOOD-CODE");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(card_files(&env), 1);
}

#[test]
fn an_unreachable_ca_is_retried_then_reported() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());
    let out = enroll_at(&env, &unreachable_url(), &ca, "GOOD-CODE", "ec-p256", PIN);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    assert!(env.log().contains("retrying in 2 s"), "{}", env.log());
    assert_eq!(card_files(&env), 0);
}

#[test]
fn without_a_daemon_the_cli_says_so_with_exit_3() {
    let env = TestEnv::new();
    let out = env.lanyard(&["status"], "");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lanyardd is not running (no socket at")
            && err.contains("start it with `lanyardd`"),
        "{err}"
    );
    let out = env.lanyard(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn change_pin_from_stdin() {
    let mut env = TestEnv::new();
    env.add_card("CARD-1", 0, lanyard_daemon::keys::KeyType::EcP256);
    env.start();
    let out = env.lanyard(&["change-pin", "--pin-stdin"], "000000\n24681357\n");
    assert_eq!(out.status.code(), Some(4));
    let out = env.lanyard(&["change-pin", "--pin-stdin"], &format!("{PIN}\n1234\n"));
    assert_eq!(out.status.code(), Some(4));
    let out = env.lanyard(
        &["change-pin", "--card", "CARD-1", "--pin-stdin"],
        &format!("{PIN}\n24681357\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What is on disk right after the change is the new PIN.
    env.stop();
    env.start();
    let mut c = env.client(1);
    assert_eq!(
        code(&c.login("CARD-1", PIN)),
        lanyard_proto::agent::ErrorCode::PinIncorrect as i32
    );
    assert_eq!(code(&c.login("CARD-1", "24681357")), 0);
}

#[test]
fn a_reissued_card_replaces_the_revoked_one_in_its_slot() {
    let mut env = TestEnv::new();
    env.start();
    let ca = MockCa::start(env.tmp.path());
    let first: serde_json::Value =
        serde_json::from_slice(&enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN).stdout).unwrap();
    let first_id = first["card_id"].as_str().unwrap().to_string();
    let out = enroll(&env, &ca, "GOOD-CODE", "ec-p256", PIN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The IT desk revokes the first card; a check-in destroys its keys.
    ca.state
        .set_state(&first_id, lanyard_proto::ca::CardState::Revoked);
    let out = env.lanyard(&["check-in"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.card_file(&first_id)["status"], "revoked");
    // Both slots are held (one by the tombstone), yet the re-issue is accepted.
    ca.state
        .set_state(&first_id, lanyard_proto::ca::CardState::Active);
    let out = enroll(
        &env,
        &ca,
        &format!("REISSUE-{first_id}"),
        "rsa-2048",
        "24681357",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["card_id"], first_id.as_str());
    assert_eq!(card["slot"], 0);
    assert_eq!(card["status"], "active");
    assert_eq!(card["key_type"], "rsa-2048");
    assert_eq!(card_files(&env), 2);
    let mut c = env.client(3);
    assert_eq!(code(&c.login(&first_id, "24681357")), 0);
    assert_eq!(c.list_cards().len(), 2);
}
