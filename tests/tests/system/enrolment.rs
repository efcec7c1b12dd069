//! Enrolment against the real CA: a code works once, a wrong code and a CA that is
//! down fail with one clear line and leave no card behind, and an enrolled card
//! survives a daemon restart and a crash (kill -9) and still signs.

use std::net::TcpListener;

use lanyard_test_support::{Ca, CmdOutput, Daemon, KeyType};

use crate::world::{
    enroll_card, export_certificate, public_key_of, scratch, shared_ca, sign, status_cards,
    tools_present, verify_sha256, Card, ROLE,
};

/// Exit code of `lanyard` for a CA or enrolment failure (the CLI contract).
const EXIT_ENROL_FAILED: i32 = 5;

fn assert_clear_enrol_failure(out: &CmdOutput, what: &str) {
    out.assert_failure(what);
    assert_eq!(
        out.code,
        Some(EXIT_ENROL_FAILED),
        "{what}: exit code (5 = CA/enrolment failure)\n{out}"
    );
    let message = out.stderr.trim();
    assert!(!message.is_empty(), "{what}: no error message\n{out}");
    assert!(
        !message.contains("panicked") && !message.contains("RUST_BACKTRACE"),
        "{what}: a panic instead of an error\n{out}"
    );
}

#[test]
fn an_enrolment_code_cannot_be_reused() {
    if !tools_present() {
        return;
    }
    // Its own CA: deliberate failures must not use up the shared CA's rate limit.
    let ca = &Ca::start();
    let issued = ca.issue_card("Dr Gina Once", "555000000005", ROLE);
    let first = Daemon::start();
    first
        .try_enroll(
            ca.url(),
            &ca.root_pem(),
            &issued.code,
            KeyType::Rsa2048,
            "246802",
        )
        .assert_success("first enrolment with the code");
    assert_eq!(status_cards(&first).len(), 1);

    // The same code again, from another device and from the same one.
    let second = Daemon::start();
    let again = second.try_enroll(
        ca.url(),
        &ca.root_pem(),
        &issued.code,
        KeyType::Rsa2048,
        "246802",
    );
    assert_clear_enrol_failure(&again, "second enrolment with a used code");
    let text = again.stderr.to_lowercase();
    assert!(
        text.contains("code")
            && (text.contains("used") || text.contains("invalid") || text.contains("expired")),
        "the message does not say the code is used or invalid\n{again}"
    );
    assert!(
        status_cards(&second).is_empty(),
        "a card was left behind by a refused enrolment"
    );
    let same = first.try_enroll(
        ca.url(),
        &ca.root_pem(),
        &issued.code,
        KeyType::Rsa2048,
        "246802",
    );
    assert_clear_enrol_failure(&same, "re-enrolment with a used code on the same daemon");
    assert_eq!(
        status_cards(&first).len(),
        1,
        "a second card appeared from a used code"
    );
}

#[test]
fn a_wrong_code_fails_cleanly() {
    if !tools_present() {
        return;
    }
    let ca = &Ca::start();
    let daemon = Daemon::start();
    let out = daemon.try_enroll(
        ca.url(),
        &ca.root_pem(),
        "ABCD-EFGH-JKMN-PQRS",
        KeyType::Rsa2048,
        "246802",
    );
    assert_clear_enrol_failure(&out, "enrolment with a wrong code");
    assert!(
        out.stderr.to_lowercase().contains("code"),
        "the message does not mention the code\n{out}"
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "expected one clear line\n{out}"
    );
    assert!(status_cards(&daemon).is_empty(), "a card was left behind");
}

#[test]
fn a_ca_that_is_down_gives_a_clear_error_and_no_card() {
    if !tools_present() {
        return;
    }
    let ca = shared_ca();
    let issued = ca.issue_card("Dr Hal Down", "555000000006", ROLE);
    // A port that nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port();
    let daemon = Daemon::start();
    let out = daemon.try_enroll(
        &format!("https://127.0.0.1:{port}"),
        &ca.root_pem(),
        &issued.code,
        KeyType::Rsa2048,
        "246802",
    );
    assert_clear_enrol_failure(&out, "enrolment against a CA that is down");
    let text = out.stderr.to_lowercase();
    assert!(
        text.contains("ca")
            || text.contains("connect")
            || text.contains("unavailable")
            || text.contains("reach"),
        "the message does not say the CA could not be reached\n{out}"
    );
    assert!(
        status_cards(&daemon).is_empty(),
        "a half-enrolled card was left behind"
    );

    // The code was not spent: the same code works once the CA is reachable.
    daemon
        .try_enroll(
            ca.url(),
            &ca.root_pem(),
            &issued.code,
            KeyType::Rsa2048,
            "246802",
        )
        .assert_success("enrolment once the CA is back");
    assert_eq!(status_cards(&daemon).len(), 1);
}

#[test]
fn repeated_wrong_codes_are_rate_limited_and_logged() {
    if !tools_present() {
        return;
    }
    // Default limit (5 failures), a short window so the test can see it end,
    // yet long enough that five attempts fit in it on a loaded machine (EC
    // keys: the daemon makes a new key for every attempt, and RSA key
    // generation can take seconds when the machine is busy).
    const WINDOW_SECS: u64 = 8;
    let ca = Ca::start_with_env(&[(
        "LANYARD_CA_RATE_LIMIT_WINDOW_SECS",
        &WINDOW_SECS.to_string(),
    )]);
    let issued = ca.issue_card("Dr Lee Limit", "555000000010", ROLE);
    let daemon = Daemon::start();
    let mut limited = None;
    for attempt in 1..=8 {
        let wrong = format!("WXYZ-WXYZ-WXYZ-WXY{attempt}");
        let out = daemon.try_enroll(ca.url(), &ca.root_pem(), &wrong, KeyType::EcP256, "246802");
        assert_clear_enrol_failure(&out, "enrolment with a wrong code");
        if out.stderr.to_lowercase().contains("too many") {
            limited = Some((attempt, out));
            break;
        }
    }
    let (attempt, out) = limited.expect("eight wrong codes in a row were never rate-limited");
    assert!(attempt > 1, "rate-limited on the first failure\n{out}");
    // While limited, even the right code is turned away, and not spent.
    let early = daemon.try_enroll(
        ca.url(),
        &ca.root_pem(),
        &issued.code,
        KeyType::EcP256,
        "246802",
    );
    assert_clear_enrol_failure(&early, "enrolment while rate-limited");
    assert!(early.stderr.to_lowercase().contains("too many"), "{early}");
    assert!(status_cards(&daemon).is_empty());
    assert!(
        ca.logs().contains("too many failed attempts"),
        "the CA did not log the limit:\n{}",
        ca.logs()
    );

    std::thread::sleep(std::time::Duration::from_millis(WINDOW_SECS * 1000 + 500));
    daemon
        .try_enroll(
            ca.url(),
            &ca.root_pem(),
            &issued.code,
            KeyType::EcP256,
            "246802",
        )
        .assert_success("enrolment after the rate-limit window");
    assert_eq!(status_cards(&daemon).len(), 1);
}

fn sign_and_verify(daemon: &Daemon, card: &Card, what: &str) {
    let tool = daemon.pkcs11_tool();
    let dir = scratch();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, what.as_bytes()).expect("write data");
    let sig = dir.path().join("sig.bin");
    sign(&tool, card, "SHA256-RSA-PKCS", &[], &data, &sig).assert_success(what);
    let cert = export_certificate(&tool, card, dir.path());
    let pub_pem = public_key_of(&cert, dir.path(), "restart");
    verify_sha256(&pub_pem, &sig, &data).assert_success(what);
}

#[test]
fn an_enrolled_card_survives_restart_and_crash() {
    if !tools_present() {
        return;
    }
    let mut daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Ivy Restart",
        "555000000007",
        KeyType::Rsa2048,
        "864209",
    );
    let ids = |d: &Daemon| -> Vec<String> {
        status_cards(d)
            .iter()
            .map(|c| c["card_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let before = ids(&daemon);
    assert_eq!(before, vec![card.issued.card_id.clone()]);

    daemon.kill_hard();
    daemon.start_again();
    assert_eq!(ids(&daemon), before, "the card changed across kill -9");
    sign_and_verify(&daemon, &card, "signature after kill -9 and start");

    daemon.restart();
    assert_eq!(ids(&daemon), before, "the card changed across a restart");
    sign_and_verify(&daemon, &card, "signature after a graceful restart");
}
