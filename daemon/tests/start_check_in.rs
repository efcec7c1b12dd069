//! The first signature after a start waits for the card's start-up check-in
//! (a real lanyardd, the mock CA holding its answer back): a card revoked
//! while the daemon was down never signs; an unreachable CA means the offline policy.

mod common;

use std::sync::atomic::Ordering;

use common::mock_ca::{unreachable_url, MockCa};
use common::*;
use lanyard_daemon::keys::KeyType;
use lanyard_proto::agent::{ErrorCode, Response};
use lanyard_proto::ca::CardState;

const DAY: i64 = 86_400;
const WAITING: &str = "first signature since start: waiting for the card's check-in";

/// A daemon holding card C1 at `ca` (reached at `url`), started while the
/// CA holds its answers back, with a logged-in application.
fn started(ca: &MockCa, url: &str) -> (TestEnv, Client) {
    let mut env = TestEnv::new();
    env.add_ca_card("C1", 0, KeyType::EcP256, ca, url, unix_now() - 60, 30 * DAY);
    ca.state.status_held.store(true, Ordering::SeqCst);
    env.start();
    let mut app = env.client(1);
    // Login is not held: the check-in is still on its way.
    assert_eq!(code(&app.login("C1", PIN)), 0, "{}", env.log());
    (env, app)
}

/// Signs on another thread, checks it waits for the check-in, then lets
/// the CA answer; the signature's answer.
fn sign_while_the_ca_holds_back(env: &TestEnv, ca: &MockCa, mut app: Client) -> Response {
    let signer = std::thread::spawn(move || app.sign("C1", 3, &[1; 32]));
    wait_for(30, "the signature to wait for the check-in", || {
        env.log().contains(WAITING)
    });
    assert!(!signer.is_finished(), "signed before the check-in");
    ca.state.status_held.store(false, Ordering::SeqCst);
    signer.join().expect("signer thread")
}

#[test]
fn a_card_revoked_while_the_daemon_was_down_never_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    ca.state.set_state("C1", CardState::Revoked);
    let (env, app) = started(&ca, &ca.url);
    let r = sign_while_the_ca_holds_back(&env, &ca, app);
    assert_eq!(
        code(&r),
        ErrorCode::CardRevoked as i32,
        "{r:?}\n{}",
        env.log()
    );
    assert!(!env.log().contains("cmd::sign: signed"), "{}", env.log());
    assert_eq!(env.card_file("C1")["status"], "revoked");
}

#[test]
fn a_first_signature_waits_then_signs_for_an_active_card() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    let (env, app) = started(&ca, &ca.url);
    let r = sign_while_the_ca_holds_back(&env, &ca, app);
    assert_eq!(code(&r), 0, "{r:?}\n{}", env.log());
    assert!(!signature(&r).is_empty());
    assert!(ca.state.status_calls.load(Ordering::SeqCst) >= 1);
    // Later signatures do not wait.
    let mut again = env.client(1);
    assert_eq!(code(&again.login("C1", PIN)), 0);
    assert_eq!(code(&again.sign("C1", 3, &[2; 32])), 0);
    assert_eq!(env.log().matches(WAITING).count(), 1, "{}", env.log());
}

#[test]
fn an_unreachable_ca_at_start_means_the_offline_policy_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = MockCa::start(tmp.path());
    let (env, mut app) = started(&ca, &unreachable_url());
    let r = app.sign("C1", 3, &[1; 32]);
    assert_eq!(code(&r), 0, "{r:?}\n{}", env.log());
    wait_for(30, "the offline policy to be logged", || {
        env.log()
            .contains("start-up check-in failed: the card signs offline")
    });
    assert_eq!(env.card_file("C1")["status"], "active");
}
