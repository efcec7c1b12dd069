//! Protected-authentication-path mode over the agent socket: `lanyard
//! unlock`/`lock` and the idle timeout, protected logins while unlocked, and
//! the daemon's own PIN prompt through a scripted pinentry speaking the real
//! Assuan protocol (right PIN, wrong PIN counted, cancel, missing program,
//! no answer, one prompt at a time).

mod common;

use std::time::Duration;

use common::*;
use lanyard_daemon::keys::KeyType;
use lanyard_proto::agent::{request, ErrorCode, SignAlgorithm, Unlock};
use lanyard_test_support::{Answer, PinentryStandIn};

const ECDSA: i32 = SignAlgorithm::Ecdsa as i32;
const CARD: &str = "CARD-1";

/// A daemon in protected mode with card CARD-1 (EC) and `answer` as its pinentry.
fn protected(answer: Answer, extra: &str) -> (TestEnv, PinentryStandIn) {
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    let pinentry = PinentryStandIn::new(env.tmp.path(), "test", answer);
    env.config_extra(&format!(
        "protected_path = true\npinentry_program = \"{}\"\n{extra}",
        pinentry.program().display()
    ));
    env.start();
    (env, pinentry)
}

fn message(r: &lanyard_proto::agent::Response) -> String {
    r.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

fn pin_failures(env: &TestEnv) -> u64 {
    env.status_json()["cards"][0]["pin_failures"]
        .as_u64()
        .unwrap()
}

fn unlock(env: &TestEnv, pin: &str) -> std::process::Output {
    env.lanyard(
        &["unlock", "--card", CARD, "--pin-stdin", "--json"],
        &format!("{pin}\n"),
    )
}

#[test]
fn hello_says_the_mode_and_plain_mode_refuses_protected_requests() {
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    env.start();
    let mut c = env.client(1);
    assert!(!c.hello().protected_path);
    let r = c.protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::BadRequest as i32, "{r:?}");
    assert!(message(&r).contains("protected_path"), "{r:?}");
    let out = unlock(&env, PIN);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protected_path = true"));
    assert_eq!(pin_failures(&env), 0, "a refused unlock checks no PIN");
    drop(c);

    let (env, _) = protected(Answer::Cancel, "");
    assert!(env.client(1).hello().protected_path);
}

#[test]
fn unlock_lets_protected_logins_in_until_lock_ends_them() {
    let (env, pinentry) = protected(Answer::Cancel, "");
    let out = unlock(&env, PIN);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["card_id"], CARD);
    assert!(v["idle_until"].as_str().unwrap().ends_with('Z'), "{v}");
    let until = env.status_json()["cards"][0]["unlocked_until"].clone();
    assert!(
        until.as_str().is_some_and(|t| t.ends_with('Z')),
        "status shows until when: {until}"
    );

    // Unlocked: an application sees the card logged in before any login
    // (as a browser needs), and its protected login succeeds at once.
    let mut app = env.client(1);
    assert!(app.list_cards()[0].logged_in);
    assert_eq!(code(&app.sign(CARD, ECDSA, &[7; 32])), 0);
    assert_eq!(code(&app.protected_login(CARD)), 0);
    assert_eq!(code(&app.sign(CARD, ECDSA, &[7; 32])), 0);
    assert_eq!(pinentry.prompts(), 0, "no prompt while unlocked");
    // An application that logged in with its PIN is not affected by the lock.
    let mut pin_app = env.client(2);
    assert_eq!(code(&pin_app.login(CARD, PIN)), 0);

    let out = env.lanyard(&["lock", "--json"], "");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["locked"], serde_json::json!([CARD]));
    assert_eq!(
        env.status_json()["cards"][0]["unlocked_until"],
        serde_json::Value::Null
    );

    let r = app.sign(CARD, ECDSA, &[7; 32]);
    assert_eq!(code(&r), ErrorCode::NotLoggedIn as i32, "{r:?}");
    assert!(!app.list_cards()[0].logged_in);
    assert_eq!(code(&pin_app.sign(CARD, ECDSA, &[7; 32])), 0);

    // Locked: the next protected login asks, and this user cancels.
    let r = app.protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::Canceled as i32, "{r:?}");
    assert_eq!(pinentry.prompts(), 1);
    assert_eq!(
        pin_failures(&env),
        0,
        "a cancelled prompt is not a PIN attempt"
    );

    let out = env.lanyard(&["lock"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("No card was unlocked"));
}

#[test]
fn an_idle_unlock_ends_by_itself() {
    let (env, pinentry) = protected(Answer::Cancel, "unlock_idle_timeout_secs = 1\n");
    let out = unlock(&env, PIN);
    assert!(out.status.success(), "{out:?}");
    let mut app = env.client(1);
    assert_eq!(code(&app.protected_login(CARD)), 0);
    // The idle timer ends it by itself: nothing else touches the card meanwhile.
    wait_for(30, "the idle timer to end the unlock after 1 s", || {
        env.log().contains("unlock ended: idle timeout")
    });
    assert!(env.status_json()["cards"][0]["unlocked_until"].is_null());
    assert!(!app.list_cards()[0].logged_in);
    let r = app.sign(CARD, ECDSA, &[7; 32]);
    assert_eq!(code(&r), ErrorCode::NotLoggedIn as i32, "{r:?}");
    assert_eq!(pinentry.prompts(), 0);
}

#[test]
fn a_wrong_pin_to_unlock_is_counted() {
    let (env, _) = protected(Answer::Cancel, "");
    let out = unlock(&env, "999999");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 tries left"));
    assert_eq!(pin_failures(&env), 1);
    // Through the socket: an explicit idle time is accepted.
    let mut c = env.client(1);
    let r = c.call(request::Body::Unlock(Unlock {
        card_id: CARD.into(),
        pin: PIN.into(),
        idle_timeout_secs: 120,
    }));
    assert_eq!(code(&r), 0, "{r:?}");
    assert_eq!(pin_failures(&env), 0);
    // The CLI's --idle: minutes, 1 to 1440; anything else is a usage error
    // before any PIN is read.
    let out = env.lanyard(
        &["unlock", "--idle", "2", "--pin-stdin", "--json"],
        &format!("{PIN}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    for bad in ["0", "1441", "soon"] {
        let out = env.lanyard(&["unlock", "--idle", bad, "--pin-stdin"], "999999\n");
        assert_eq!(out.status.code(), Some(2), "--idle {bad}: {out:?}");
    }
    assert_eq!(pin_failures(&env), 0);
}

#[test]
fn the_prompt_names_the_card_and_the_right_pin_logs_in() {
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    let pinentry = PinentryStandIn::new(env.tmp.path(), "ok", Answer::Pin(PIN.into()));
    env.config_extra(&format!(
        "protected_path = true\npinentry_program = \"{}\"\n",
        pinentry.program().display()
    ));
    env.env.push(("GPG_TTY".into(), "/dev/pts/42".into()));
    env.env.push(("TERM".into(), "xterm-256color".into()));
    env.start();
    let mut app = env.client(1);
    let r = app.protected_login(CARD);
    assert_eq!(code(&r), 0, "{r:?}");
    assert_eq!(code(&app.sign(CARD, ECDSA, &[7; 32])), 0);
    let commands = pinentry.commands();
    for want in [
        "OPTION ttyname=/dev/pts/42",
        "OPTION ttytype=xterm-256color",
        "SETTITLE Lanyard",
        "SETPROMPT PIN:",
        "GETPIN",
        "BYE",
    ] {
        assert!(commands.iter().any(|c| c == want), "{want} in {commands:?}");
    }
    let desc = pinentry.descriptions().join("\n");
    assert!(desc.contains(CARD), "{desc}");
    assert!(desc.contains("Dr Ada Smith"), "{desc}");
    // The requesting process: this test binary, by its /proc/PID/comm.
    assert!(desc.contains("The application protected_path"), "{desc}");
    // Never a secret in the daemon's log.
    assert!(!env.log().contains(PIN));
    assert!(env.log().contains("asking for the PIN with pinentry"));
}

#[test]
fn escaped_pin_data_is_decoded() {
    let (env, _) = protected(Answer::RawData("%31%32%33456".into()), "");
    assert_eq!(code(&env.client(1).protected_login(CARD)), 0);
    // '%' is escaped as %25: "12%456" is not a PIN of digits, refused uncounted.
    let (env, _) = protected(Answer::Pin("12%456".into()), "");
    let r = env.client(1).protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::PinInvalid as i32, "{r:?}");
    assert_eq!(pin_failures(&env), 0);
    let (env, _) = protected(Answer::RawData("12%zz".into()), "");
    let r = env.client(1).protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::Canceled as i32, "{r:?}");
}

#[test]
fn a_wrong_pin_at_the_prompt_is_counted_and_says_so_next_time() {
    let (env, pinentry) = protected(Answer::Pin("999999".into()), "");
    let mut app = env.client(1);
    let r = app.protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::PinIncorrect as i32, "{r:?}");
    assert_eq!(tries_left(&r), 2);
    assert_eq!(pin_failures(&env), 1);
    let r = app.protected_login(CARD);
    assert_eq!(tries_left(&r), 1, "{r:?}");
    let last = pinentry.descriptions().pop().unwrap_or_default();
    assert!(last.contains("2 tries left"), "{last}");
    assert_eq!(
        code(&app.protected_login(CARD)),
        ErrorCode::PinIncorrect as i32
    );
    // Locked: no prompt any more.
    let r = app.protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::PinLocked as i32, "{r:?}");
    assert_eq!(pinentry.prompts(), 3);
}

#[test]
fn no_prompt_possible_is_canceled() {
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    env.config_extra("protected_path = true\npinentry_program = \"/nonexistent/pinentry\"\n");
    env.start();
    let r = env.client(1).protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::Canceled as i32, "{r:?}");
    assert!(message(&r).contains("/nonexistent/pinentry"), "{r:?}");
    assert_eq!(pin_failures(&env), 0);

    // A program that is not a pinentry (no Assuan greeting).
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    env.config_extra("protected_path = true\npinentry_program = \"true\"\n");
    env.start();
    let r = env.client(1).protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::Canceled as i32, "{r:?}");
    assert!(
        message(&r).contains("no PIN prompt could be shown"),
        "{r:?}"
    );
}

#[test]
fn an_unanswered_prompt_is_canceled_at_the_timeout() {
    let (env, pinentry) = protected(Answer::Silent, "pinentry_timeout_secs = 1\n");
    let r = env.client(1).protected_login(CARD);
    assert_eq!(code(&r), ErrorCode::Canceled as i32, "{r:?}");
    assert!(message(&r).contains("not answered"), "{r:?}");
    assert!(pinentry.commands().contains(&"SETTIMEOUT 1".to_string()));
    assert_eq!(pin_failures(&env), 0);
}

#[test]
fn one_prompt_at_a_time_per_card() {
    let mut env = TestEnv::new();
    env.add_card(CARD, 0, KeyType::EcP256);
    let gate = env.tmp.path().join("gate");
    let pinentry = PinentryStandIn::new(
        env.tmp.path(),
        "gated",
        Answer::Gated {
            pin: PIN.into(),
            gate: gate.clone(),
        },
    );
    env.config_extra(&format!(
        "protected_path = true\npinentry_program = \"{}\"\n",
        pinentry.program().display()
    ));
    env.start();
    let socket = env.socket.clone();
    let first = {
        let socket = socket.clone();
        std::thread::spawn(move || code(&Client::connect(&socket, 1).protected_login(CARD)))
    };
    wait_for(30, "the first prompt", || pinentry.prompts() == 1);
    let second =
        std::thread::spawn(move || code(&Client::connect(&socket, 2).protected_login(CARD)));
    // Give the second login time to reach the daemon while the first prompt is open.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pinentry.prompts(),
        1,
        "a second prompt opened beside the first"
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(first.join().unwrap(), 0);
    assert_eq!(second.join().unwrap(), 0);
    // The second prompt began only after the first ended.
    let commands = pinentry.commands();
    let first_bye = commands.iter().position(|c| c == "BYE").unwrap();
    let second_getpin = commands.iter().rposition(|c| c == "GETPIN").unwrap();
    assert_eq!(pinentry.prompts(), 2);
    assert!(first_bye < second_getpin, "{commands:?}");
}
