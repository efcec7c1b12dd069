//! Card lifecycle through a real lanyardd and the `lanyard` CLI against the
//! mock CA (`common::mock_ca`, real TLS): renewal over mTLS signed by the
//! daemon's in-memory key, automatic renewal, a busy CA, check-in
//! (suspend, resume, revoke), PIN reset, and the error paths without a CA.

mod common;

use common::mock_ca::{unreachable_url, MockCa};
use common::*;
use lanyard_daemon::keys::KeyType;
use lanyard_proto::agent::{request, CardInfo, ErrorCode, Renew, ResetPin, Response};
use lanyard_proto::ca::CardState;
use std::sync::atomic::Ordering;

const DAY: i64 = 86_400;

fn renew(c: &mut Client, card: &str, pin: &str) -> Response {
    c.call(request::Body::Renew(Renew {
        card_id: card.into(),
        pin: pin.into(),
    }))
}

fn card_info(c: &mut Client, card: &str) -> CardInfo {
    c.list_cards()
        .into_iter()
        .find(|i| i.card_id == card)
        .unwrap_or_else(|| panic!("card {card} not listed"))
}

fn status_card(env: &TestEnv, card: &str) -> serde_json::Value {
    let v = env.status_json();
    v["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["card_id"] == card)
        .cloned()
        .unwrap_or_else(|| panic!("card {card} not in status: {v}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn message(r: &Response) -> String {
    r.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn renewal_over_mtls_is_signed_by_the_daemon_key_and_apps_keep_signing() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    let now = unix_now();
    env.add_ca_card("EC-1", 0, KeyType::EcP256, &ca, &ca.url, now - 60, 30 * DAY);
    env.add_ca_card(
        "RSA-1",
        1,
        KeyType::Rsa2048,
        &ca,
        &ca.url,
        now - 60,
        30 * DAY,
    );
    env.start();
    let mut app = env.client(1);
    for card in ["EC-1", "RSA-1"] {
        assert_eq!(code(&app.login(card, PIN)), 0);
        let before = card_info(&mut app, card);
        assert!(signs_with(&mut app, card, &before.public_key_der));

        let out = env.lanyard(&["renew", "--card", card, "--json"], "");
        assert!(out.status.success(), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["card_id"], card);
        assert_eq!(json["status"], "active");
        assert!(json["last_renewal"].is_string(), "{json}");

        // The CA's TLS layer verified the client certificate against its root
        // and the handshake signature against that certificate's key: the
        // card's current certificate, whose key only the daemon holds.
        let presented = ca.state.presented.lock().unwrap().last().cloned().unwrap();
        assert_eq!(presented, before.certificate_der, "{card}");

        // The same application signs on, now with the new key, without a PIN.
        let after = card_info(&mut app, card);
        assert_ne!(
            after.public_key_der, before.public_key_der,
            "{card} re-keyed"
        );
        assert_ne!(after.certificate_der, before.certificate_der);
        assert!(after.logged_in);
        assert!(signs_with(&mut app, card, &after.public_key_der), "{card}");
        assert!(
            !signs_with(&mut app, card, &before.public_key_der),
            "{card}"
        );
    }
    assert_eq!(ca.state.renewals.load(Ordering::SeqCst), 2);
    // The new key is what is stored: after a restart the PIN opens it.
    env.stop();
    env.start();
    let mut app = env.client(2);
    for card in ["EC-1", "RSA-1"] {
        assert_eq!(code(&app.login(card, PIN)), 0);
        let info = card_info(&mut app, card);
        assert!(signs_with(&mut app, card, &info.public_key_der));
    }
    let log = env.log();
    assert!(log.contains("certificate renewed"), "{log}");
    assert!(!log.contains(PIN));
}

#[test]
fn renew_needs_the_card_unlocked_or_its_pin() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    env.add_ca_card(
        "C1",
        0,
        KeyType::EcP256,
        &ca,
        &ca.url,
        unix_now() - 60,
        30 * DAY,
    );
    env.start();
    let mut c = env.client(1);
    let r = renew(&mut c, "C1", "");
    assert_eq!(code(&r), ErrorCode::NotLoggedIn as i32);
    let old = card_info(&mut c, "C1");

    let out = env.lanyard(&["renew", "--pin-stdin"], "000000\n");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(status_card(&env, "C1")["pin_failures"], 1);
    assert_eq!(ca.state.renewals.load(Ordering::SeqCst), 0);

    let out = env.lanyard(&["renew", "--pin-stdin"], &format!("{PIN}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("renewed with a new key"));
    let new = card_info(&mut c, "C1");
    assert_ne!(new.public_key_der, old.public_key_der);
    let status = status_card(&env, "C1");
    assert_eq!(status["pin_failures"], 0);
    // The PIN unlocked the card for this renewal only.
    assert!(status["next_renewal"].is_null(), "{status}");
    assert_eq!(
        code(&c.sign("C1", 3, &[1; 32])),
        ErrorCode::NotLoggedIn as i32
    );
    assert_eq!(code(&c.login("C1", PIN)), 0);
    assert!(signs_with(&mut c, "C1", &new.public_key_der));
}

#[test]
fn an_unlocked_card_renews_by_itself_when_due() {
    let mut env = TestEnv::new();
    env.config_extra("renewal_fraction = 0.5\nrenewal_jitter_fraction = 0.0\n");
    let ca = MockCa::start(env.tmp.path());
    // Half of this certificate's lifetime is already over: renewal is due.
    let now = unix_now();
    env.add_ca_card("C1", 0, KeyType::EcP256, &ca, &ca.url, now - 1000, 1900);
    env.start();
    assert!(
        status_card(&env, "C1")["next_renewal"].is_null(),
        "locked: not scheduled"
    );
    assert_eq!(ca.state.renewals.load(Ordering::SeqCst), 0);

    let mut app = env.client(1);
    let before = card_info(&mut app, "C1");
    assert_eq!(code(&app.login("C1", PIN)), 0);
    wait_for(60, "the automatic renewal", || {
        card_info(&mut app, "C1").public_key_der != before.public_key_der
    });
    let after = card_info(&mut app, "C1");
    assert!(signs_with(&mut app, "C1", &after.public_key_der));
    let status = status_card(&env, "C1");
    assert!(status["last_renewal"].is_string(), "{status}");
    assert_eq!(status["last_renewal_error"], "");
    // The new one-day certificate is next due about half a day later, not now.
    let life = after.lifecycle.unwrap();
    assert!(life.next_renewal > unix_now() + 3600, "{life:?}");
    assert_eq!(ca.state.renewals.load(Ordering::SeqCst), 1);
    assert!(env.log().contains("renewal due"));
}

#[test]
fn a_busy_ca_is_ca_busy_recorded_and_changes_nothing() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    env.add_ca_card(
        "C1",
        0,
        KeyType::EcP256,
        &ca,
        &ca.url,
        unix_now() - 60,
        30 * DAY,
    );
    env.start();
    ca.state.renew_busy.store(1000, Ordering::SeqCst);
    let mut app = env.client(1);
    assert_eq!(code(&app.login("C1", PIN)), 0);
    let before = card_info(&mut app, "C1");
    let r = renew(&mut app, "C1", "");
    assert_eq!(code(&r), ErrorCode::CaBusy as i32, "{r:?}");
    assert!(message(&r).contains("try again in 1 s"), "{r:?}");
    // retry-after (1 s) is within the interactive budget: every attempt was made.
    assert_eq!(ca.state.presented.lock().unwrap().len(), 3);
    let after = card_info(&mut app, "C1");
    assert_eq!(after.certificate_der, before.certificate_der);
    assert!(signs_with(&mut app, "C1", &before.public_key_der));
    let status = status_card(&env, "C1");
    assert!(
        status["last_renewal_error"]
            .as_str()
            .unwrap()
            .contains("busy"),
        "{status}"
    );
    let out = env.lanyard(&["renew"], "");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(env.log().contains("is busy"));
}

#[test]
fn a_certificate_the_ca_does_not_trust_is_refused_in_the_handshake() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    // Issued by another PKI, but with this CA on record.
    let other_dir = env.tmp.path().join("other-ca");
    std::fs::create_dir(&other_dir).unwrap();
    let other = MockCa::start(&other_dir);
    env.add_ca_card(
        "C1",
        0,
        KeyType::EcP256,
        &other,
        &ca.url,
        unix_now() - 60,
        30 * DAY,
    );
    let path = env.store_dir().join("cards/C1.json");
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["ca_cert_pem"] = ca.root_pem_text().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    env.start();
    let mut app = env.client(1);
    assert_eq!(code(&app.login("C1", PIN)), 0);
    let before = card_info(&mut app, "C1");
    let r = renew(&mut app, "C1", "");
    // A TLS 1.3 client learns of the refusal from the server's alert on its
    // first read; when the server's close arrives as a reset first, the alert
    // is lost and all the daemon can say is that the connection broke.
    let refused = code(&r) == ErrorCode::CaRefused as i32 && message(&r).contains("refused");
    let broken = code(&r) == ErrorCode::CaUnavailable as i32;
    assert!(refused || broken, "{r:?}");
    assert_eq!(
        card_info(&mut app, "C1").certificate_der,
        before.certificate_der
    );
    assert_eq!(ca.state.renewals.load(Ordering::SeqCst), 0);
}

#[test]
fn check_in_suspends_resumes_and_revokes() {
    let mut env = TestEnv::new();
    env.config_extra("check_in_interval_secs = 1\n");
    let ca = MockCa::start(env.tmp.path());
    env.add_ca_card(
        "C1",
        0,
        KeyType::EcP256,
        &ca,
        &ca.url,
        unix_now() - 60,
        30 * DAY,
    );
    env.start();
    let mut app = env.client(1);
    assert_eq!(code(&app.login("C1", PIN)), 0);
    let info = card_info(&mut app, "C1");
    assert!(signs_with(&mut app, "C1", &info.public_key_der));

    // Suspended: the periodic check-in removes the token; the keys stay.
    ca.state.set_state("C1", CardState::Suspended);
    wait_for(30, "the suspension to be seen", || {
        app.list_cards().is_empty()
    });
    assert_eq!(
        code(&app.sign("C1", 3, &[1; 32])),
        ErrorCode::CardSuspended as i32
    );
    assert_eq!(code(&app.login("C1", PIN)), ErrorCode::CardSuspended as i32);
    let status = status_card(&env, "C1");
    assert_eq!(status["status"], "suspended");
    assert!(status["warning"].as_str().unwrap().contains("suspended"));
    assert!(env.card_file("C1")["private_key"].is_object());
    let out = env.lanyard(&["renew"], "");
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));

    // Resumed: the card returns, the PIN opens it again.
    ca.state.set_state("C1", CardState::Active);
    let out = env.lanyard(&["check-in", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let cards: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cards[0]["status"], "active");
    assert!(cards[0]["last_check_in"].is_string());
    assert_eq!(app.list_cards().len(), 1);
    assert_eq!(code(&app.login("C1", PIN)), 0);

    // Revoked: the keys are destroyed on the device.
    ca.state.set_state("C1", CardState::Revoked);
    let out = env.lanyard(&["check-in"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("status:     revoked"));
    assert!(app.list_cards().is_empty());
    assert_eq!(
        code(&app.sign("C1", 3, &[1; 32])),
        ErrorCode::CardRevoked as i32
    );
    assert_eq!(code(&app.login("C1", PIN)), ErrorCode::CardRevoked as i32);
    let file = env.card_file("C1");
    assert_eq!(file["status"], "revoked");
    assert!(file.get("private_key").is_none() && file.get("wrapped_card_key").is_none());
    let status = status_card(&env, "C1");
    assert!(
        status["warning"].as_str().unwrap().contains("re-issue"),
        "{status}"
    );
    // A restart keeps the tombstone (slot held, not listed) and loads it cleanly.
    env.stop();
    env.start();
    let v = env.status_json();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["cards"][0]["status"], "revoked");
    assert!(env.client(2).list_cards().is_empty());
    assert!(env.log().contains("keys were destroyed"));
}

#[test]
fn reset_pin_rekeys_and_an_exhausted_code_destroys_the_keys() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    env.add_ca_card(
        "C1",
        0,
        KeyType::EcP256,
        &ca,
        &ca.url,
        unix_now() - 60,
        30 * DAY,
    );
    env.start();
    let mut c = env.client(1);
    for _ in 0..3 {
        c.login("C1", "000000");
    }
    assert_eq!(code(&c.login("C1", PIN)), ErrorCode::PinLocked as i32);
    let before = card_info(&mut c, "C1");

    let out = env.lanyard(
        &["reset-pin", "--code", "NOT-THE-CODE", "--pin-stdin"],
        "24681357\n",
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not accept the reset code"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1);
    let same = card_info(&mut c, "C1");
    assert_eq!(same.certificate_der, before.certificate_der);
    assert!(same.pin.unwrap().locked, "nothing changed");

    let out = env.lanyard(
        &["reset-pin", "--code", "RESET-OK", "--pin-stdin", "--json"],
        "24681357\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["card_id"].as_str(), json["slot"].as_u64()),
        (Some("C1"), Some(0))
    );
    assert_eq!(json["locked"], false);
    let after = card_info(&mut c, "C1");
    assert_ne!(after.public_key_der, before.public_key_der);
    assert_eq!(code(&c.login("C1", PIN)), ErrorCode::PinIncorrect as i32);
    assert_eq!(code(&c.login("C1", "24681357")), 0);
    assert!(signs_with(&mut c, "C1", &after.public_key_der));

    let r = c.call(request::Body::ResetPin(ResetPin {
        card_id: "C1".into(),
        code: "RESET-LAST".into(),
        new_pin: "13572468".into(),
        ..ResetPin::default()
    }));
    assert_eq!(code(&r), ErrorCode::CardRevoked as i32, "{r:?}");
    assert!(
        message(&r).contains("ask your IT desk to re-issue card C1"),
        "{r:?}"
    );
    let file = env.card_file("C1");
    assert_eq!(file["status"], "revoked");
    assert!(file.get("private_key").is_none());
    assert!(c.list_cards().is_empty());
    let log = env.log();
    for secret in ["RESET-OK", "RESET-LAST", "24681357", "13572468"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn without_a_ca_renew_reset_pin_and_check_in_fail_clearly_and_change_nothing() {
    let mut env = TestEnv::new();
    let ca = MockCa::start(env.tmp.path());
    let down = unreachable_url();
    env.add_card("OLD-1", 0, KeyType::EcP256);
    env.add_ca_card(
        "C2",
        1,
        KeyType::EcP256,
        &ca,
        &down,
        unix_now() - 60,
        30 * DAY,
    );
    env.start();
    let file_before = env.card_file("C2");
    let mut c = env.client(1);

    // A card enrolled before renewal existed has no CA on record.
    let out = env.lanyard(
        &["renew", "--card", "OLD-1", "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no CA on record"), "{}", stderr(&out));
    let out = env.lanyard(
        &[
            "reset-pin",
            "--card",
            "OLD-1",
            "--code",
            "RESET-OK",
            "--pin-stdin",
        ],
        "24681357\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--ca URL --ca-cert FILE"),
        "{}",
        stderr(&out)
    );

    // An unreachable CA: CA_UNAVAILABLE after the retries, nothing changed.
    assert_eq!(code(&c.login("C2", PIN)), 0);
    let r = renew(&mut c, "C2", "");
    assert_eq!(code(&r), ErrorCode::CaUnavailable as i32, "{r:?}");
    assert!(message(&r).contains("unreachable"), "{r:?}");
    let r = c.call(request::Body::ResetPin(ResetPin {
        card_id: "C2".into(),
        code: "RESET-OK".into(),
        new_pin: "24681357".into(),
        ..ResetPin::default()
    }));
    assert_eq!(code(&r), ErrorCode::CaUnavailable as i32, "{r:?}");
    let out = env.lanyard(&["check-in", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let cards: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c2 = cards
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["card_id"] == "C2")
        .unwrap();
    assert_eq!(c2["status"], "active");
    assert!(
        c2["last_check_in_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{c2}"
    );
    let file_after = env.card_file("C2");
    for field in [
        "certificate",
        "private_key",
        "wrapped_card_key",
        "pin_failures",
        "status",
    ] {
        assert_eq!(file_after[field], file_before[field], "{field} changed");
    }
    assert!(file_after["lifecycle"]["last_renewal_error"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    assert_eq!(c.list_cards().len(), 2);
    assert_eq!(code(&c.login("C2", PIN)), 0, "the PIN is unchanged");

    // Bad input is refused before anything happens.
    let bad = |card: &str, code_text: &str, pin: &str, url: &str| ResetPin {
        card_id: card.into(),
        code: code_text.into(),
        new_pin: pin.into(),
        ca_url: url.into(),
        ..ResetPin::default()
    };
    for (req, want) in [
        (bad("C2", "RESET-OK", "123", ""), ErrorCode::PinLenRange),
        (bad("C2", "  ", "24681357", ""), ErrorCode::BadRequest),
        (
            bad("NOPE", "RESET-OK", "24681357", ""),
            ErrorCode::NoSuchCard,
        ),
        (
            bad("C2", "RESET-OK", "24681357", "http://ca:1"),
            ErrorCode::BadRequest,
        ),
        (bad("", "RESET-OK", "24681357", ""), ErrorCode::BadRequest),
    ] {
        let r = c.call(request::Body::ResetPin(req));
        assert_eq!(code(&r), want as i32, "{r:?}");
    }
    assert_eq!(
        code(&renew(&mut c, "NOPE", "")),
        ErrorCode::NoSuchCard as i32
    );
    assert_eq!(
        env.card_file("C2")["certificate"],
        file_before["certificate"]
    );
}
