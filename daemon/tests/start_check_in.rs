//! The first signature after a start waits for the card's start-up check-in
//! (a real lanyardd, the mock CA answering slowly): a card revoked while the
//! daemon was down never signs; an unreachable CA means the offline policy.

mod common;

use std::sync::atomic::Ordering;

use common::mock_ca::{unreachable_url, MockCa};
use common::*;
use lanyard_daemon::keys::KeyType;
use lanyard_proto::agent::ErrorCode;
use lanyard_proto::ca::CardState;

const DAY: i64 = 86_400;

/// A daemon holding card C1 at `ca` (reached at `url`), the CA's answer
/// delayed by `delay_ms`; started, with a logged-in application.
fn started(ca: &MockCa, url: &str, delay_ms: u32) -> (TestEnv, Client) {
    let mut env = TestEnv::new();
    env.add_ca_card("C1", 0, KeyType::EcP256, ca, url, unix_now() - 60, 30 * DAY);
    ca.state.status_delay_ms.store(delay_ms, Ordering::SeqCst);
    env.start();
    let mut app = env.client(1);
    // Login is not held: the check-in is still on its way.
    assert_eq!(code(&app.login("C1", PIN)), 0, "{}", env.log());
    (env, app)
}

#[test]
fn a_card_revoked_while_the_daemon_was_down_never_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    ca.state.set_state("C1", CardState::Revoked);
    let (env, mut app) = started(&ca, &ca.url, 1500);
    let r = app.sign("C1", 3, &[1; 32]);
    assert_eq!(
        code(&r),
        ErrorCode::CardRevoked as i32,
        "{r:?}\n{}",
        env.log()
    );
    let log = env.log();
    assert!(
        log.contains("first signature since start: waiting for the card's check-in"),
        "{log}"
    );
    assert!(!log.contains("cmd::sign: signed"), "{log}");
    assert_eq!(env.card_file("C1")["status"], "revoked");
}

#[test]
fn a_first_signature_waits_then_signs_for_an_active_card() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    let (env, mut app) = started(&ca, &ca.url, 1000);
    let r = app.sign("C1", 3, &[1; 32]);
    assert_eq!(code(&r), 0, "{r:?}\n{}", env.log());
    assert!(!signature(&r).is_empty());
    assert!(ca.state.status_calls.load(Ordering::SeqCst) >= 1);
    assert!(env
        .log()
        .contains("first signature since start: waiting for the card's check-in"));
    // Later signatures do not wait.
    assert_eq!(code(&app.sign("C1", 3, &[2; 32])), 0);
}

#[test]
fn an_unreachable_ca_at_start_means_the_offline_policy_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    let (env, mut app) = started(&ca, &unreachable_url(), 0);
    let r = app.sign("C1", 3, &[1; 32]);
    assert_eq!(code(&r), 0, "{r:?}\n{}", env.log());
    wait_for(30, "the offline policy to be logged", || {
        env.log()
            .contains("start-up check-in failed: the card signs offline")
    });
    assert_eq!(env.card_file("C1")["status"], "active");
}
