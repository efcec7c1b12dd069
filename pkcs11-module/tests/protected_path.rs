//! Protected-authentication-path mode against the fake agent: every token
//! reports CKF_PROTECTED_AUTHENTICATION_PATH when the daemon's Hello says so
//! (whatever the card's state), C_Login with a NULL PIN becomes a protected
//! Login (cancelled prompt = CKR_FUNCTION_CANCELED), a PIN from the
//! application still works, and without the mode a NULL PIN stays ARGUMENTS_BAD.

mod support;

use std::ptr::null_mut;
use std::sync::MutexGuard;

use cryptoki_sys::*;
use lanyard_proto::agent::ErrorCode;
use support::fake_agent::FakeAgent;
use support::*;

/// This test's turn, with a fake agent in protected mode (or not) and the
/// module initialised against it.
fn setup_mode(protected: bool) -> (MutexGuard<'static, ()>, &'static Module, FakeAgent) {
    let g = serial();
    let agent = FakeAgent::start();
    agent.state.lock().unwrap().protected_path = protected;
    let m = module();
    let _ = p11!(m, C_Finalize(null_mut()));
    assert_eq!(initialize(m, &agent.path), CKR_OK);
    (g, m, agent)
}

fn token_flags(m: &Module, slot: CK_SLOT_ID) -> CK_FLAGS {
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(slot, &mut t)), CKR_OK);
    t.flags
}

fn null_pin_login(m: &Module, h: CK_SESSION_HANDLE) -> CK_RV {
    p11!(m, C_Login(h, CKU_USER, null_mut(), 0))
}

fn session_state(m: &Module, h: CK_SESSION_HANDLE) -> CK_STATE {
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    info.state
}

#[test]
fn every_token_reports_the_protected_path_in_that_mode_only() {
    let (_g, m, agent) = setup_mode(true);
    for slot in [0, 1] {
        assert_ne!(token_flags(m, slot) & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
    }
    // Whatever the card's PIN state: a locked card still says it.
    agent.state.lock().unwrap().card(0).failures = 3;
    let flags = token_flags(m, 0);
    assert_ne!(flags & CKF_USER_PIN_LOCKED, 0);
    assert_ne!(flags & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
    finalize(m);
}

#[test]
fn without_the_mode_no_token_reports_the_protected_path() {
    let (_g, m, _agent) = setup_mode(false);
    for slot in [0, 1] {
        assert_eq!(token_flags(m, slot) & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
    }
    finalize(m);
}

#[test]
fn a_null_pin_is_a_protected_login_that_signs() {
    let (_g, m, agent) = setup_mode(true);
    let h = open_session(m, 1, false);
    assert_eq!(session_state(m, h), CKS_RO_PUBLIC_SESSION);
    assert_eq!(null_pin_login(m, h), CKR_OK);
    assert_eq!(
        agent.state.lock().unwrap().protected_logins,
        vec!["FEDCBA9876543210".to_string()]
    );
    assert_eq!(session_state(m, h), CKS_RO_USER_FUNCTIONS);
    let key = private_key(m, h);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_ECDSA_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    let data = b"prescription";
    let mut sig = vec![0u8; 64];
    let mut len = sig.len() as CK_ULONG;
    assert_eq!(
        p11!(
            m,
            C_Sign(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut len
            )
        ),
        CKR_OK
    );
    assert_eq!(len, 64);
    // Logged in: a PIN is refused as usual, a NULL PIN is confirmed by the daemon.
    assert_eq!(login(m, h, "654321"), CKR_USER_ALREADY_LOGGED_IN);
    assert_eq!(null_pin_login(m, h), CKR_OK);
    assert_eq!(agent.state.lock().unwrap().protected_logins.len(), 2);
    finalize(m);
}

#[test]
fn an_unlocked_card_starts_logged_in_and_a_null_pin_login_is_confirmed() {
    let (_g, m, agent) = setup_mode(true);
    agent.state.lock().unwrap().unlocked = true;
    let h = open_session(m, 0, false);
    assert_eq!(session_state(m, h), CKS_RO_USER_FUNCTIONS);
    assert_eq!(find(m, h, CKO_PRIVATE_KEY).len(), 1);
    // A NULL-PIN login is answered by the daemon, not refused as already logged in ...
    assert_eq!(null_pin_login(m, h), CKR_OK);
    assert_eq!(agent.state.lock().unwrap().protected_logins.len(), 1);
    // ... while a PIN from the application still is.
    assert_eq!(login(m, h, "123456"), CKR_USER_ALREADY_LOGGED_IN);
    // Locked again: the session is public at the next look.
    agent.state.lock().unwrap().unlocked = false;
    agent.state.lock().unwrap().logins.clear();
    assert_eq!(session_state(m, h), CKS_RO_PUBLIC_SESSION);
    finalize(m);
}

#[test]
fn a_cancelled_or_wrong_prompt_is_reported_and_the_session_stays_public() {
    let (_g, m, agent) = setup_mode(true);
    let h = open_session(m, 0, false);
    for (answer, rv) in [
        (ErrorCode::Canceled, CKR_FUNCTION_CANCELED),
        (ErrorCode::PinIncorrect, CKR_PIN_INCORRECT),
        (ErrorCode::PinLocked, CKR_PIN_LOCKED),
    ] {
        agent.state.lock().unwrap().protected_answer = Some(answer);
        assert_eq!(null_pin_login(m, h), rv, "{answer:?}");
        assert_eq!(session_state(m, h), CKS_RO_PUBLIC_SESSION);
    }
    assert_eq!(agent.state.lock().unwrap().protected_logins.len(), 3);
    finalize(m);
}

#[test]
fn a_pin_from_the_application_still_logs_in_in_protected_mode() {
    let (_g, m, agent) = setup_mode(true);
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    assert!(agent.state.lock().unwrap().protected_logins.is_empty());
    assert_eq!(session_state(m, h), CKS_RO_USER_FUNCTIONS);
    finalize(m);
}

#[test]
fn without_the_mode_a_null_pin_is_arguments_bad_and_nothing_is_sent() {
    let (_g, m, agent) = setup_mode(false);
    let h = open_session(m, 0, false);
    let logins_before = agent.count("Login");
    assert_eq!(null_pin_login(m, h), CKR_ARGUMENTS_BAD);
    assert_eq!(agent.count("Login"), logins_before);
    assert_eq!(session_state(m, h), CKS_RO_PUBLIC_SESSION);
    finalize(m);
}
