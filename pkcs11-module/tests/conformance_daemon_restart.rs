//! The daemon stopping, crashing or restarting under a running application:
//! its sessions fail with a precise CK_RV (DEVICE_REMOVED while the daemon
//! is away, SESSION_HANDLE_INVALID once a new daemon instance answered,
//! which forgot every login), the slots report the tokens gone and back, and
//! a new session and login work without C_Finalize/C_Initialize.

mod support;

use std::ptr::null_mut;

use cryptoki_sys::*;
use support::signature::{openssl_verifies, sign_init};
use support::*;

const RSA_PIN: &str = "123456";
const EC_PIN: &str = "654321";

/// Every slot event waiting now (CKF_DONT_BLOCK until CKR_NO_EVENT).
fn events(m: &Module) -> Vec<CK_SLOT_ID> {
    let mut slots = Vec::new();
    loop {
        let mut slot: CK_SLOT_ID = 99;
        match p11!(m, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())) {
            CKR_OK => slots.push(slot),
            CKR_NO_EVENT => return slots,
            rv => panic!("C_WaitForSlotEvent: {rv:#x}"),
        }
    }
}

/// Opens a session on the RSA token, logs in, signs and checks the signature.
fn fresh_login_signs(m: &Module, spki: &[u8]) -> CK_SESSION_HANDLE {
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let key = private_key(m, h);
    let sig = sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"new session").unwrap();
    assert!(openssl_verifies(
        spki,
        CKM_SHA256_RSA_PKCS,
        b"new session",
        &sig
    ));
    h
}

#[test]
fn a_daemon_that_stops_and_comes_back_ends_sessions_cleanly_then_serves_new_ones() {
    let (_g, m, mut agent) = setup();
    let spki = agent.public_key_der(0);
    // A signature half done, a search half done, a digest half done.
    let signing = open_session(m, 0, false);
    assert_eq!(login(m, signing, RSA_PIN), CKR_OK);
    let key = private_key(m, signing);
    assert_eq!(
        sign_init(m, signing, CKM_SHA256_RSA_PKCS, &mut [], key),
        CKR_OK
    );
    let finding = open_session(m, 1, true);
    assert_eq!(login(m, finding, EC_PIN), CKR_OK);
    assert_eq!(p11!(m, C_FindObjectsInit(finding, null_mut(), 0)), CKR_OK);
    let digesting = open_session(m, 1, false);
    let mut sha256 = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_DigestInit(digesting, &mut sha256)), CKR_OK);
    assert_eq!(events(m), Vec::<CK_SLOT_ID>::new());

    agent.go_down();
    // The signature cannot be made: the token went with the daemon.
    assert_eq!(
        sign_initialised(m, signing, b"document"),
        Err(CKR_DEVICE_REMOVED)
    );
    assert_eq!(session_rv(m, signing), CKR_DEVICE_REMOVED);
    let mut found = [0; 4];
    let mut n = 0;
    assert_eq!(
        p11!(m, C_FindObjects(finding, found.as_mut_ptr(), 4, &mut n)),
        CKR_DEVICE_REMOVED
    );
    assert_eq!(
        p11!(m, C_DigestUpdate(digesting, b"abc".as_ptr() as *mut u8, 3)),
        CKR_DEVICE_REMOVED
    );
    assert_eq!(login(m, finding, EC_PIN), CKR_DEVICE_REMOVED);
    // The slots stay, empty.
    assert_eq!(slot_list(m, false), vec![0, 1]);
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    let mut slot_info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSlotInfo(0, &mut slot_info)), CKR_OK);
    assert_eq!(slot_info.flags & CKF_TOKEN_PRESENT, 0);
    let mut token: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        p11!(m, C_GetTokenInfo(0, &mut token)),
        CKR_TOKEN_NOT_PRESENT
    );
    let mut h = 0;
    assert_eq!(
        p11!(
            m,
            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
        ),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(events(m), vec![0, 1]);

    agent.come_back();
    // The first call that reaches the new daemon instance learns that every
    // session and login is gone.
    assert_eq!(slot_list(m, true), vec![0, 1]);
    assert_eq!(events(m), vec![0, 1]);
    for old in [signing, finding, digesting] {
        assert_eq!(session_rv(m, old), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(
            sign_initialised(m, old, b"x"),
            Err(CKR_SESSION_HANDLE_INVALID)
        );
        assert_eq!(p11!(m, C_CloseSession(old)), CKR_SESSION_HANDLE_INVALID);
    }
    // Same application, no C_Finalize/C_Initialize: a new session and login.
    let h = fresh_login_signs(m, &spki);
    assert_eq!(session_rv(m, h), CKR_OK);
    finalize(m);
}

#[test]
fn a_daemon_crashing_during_c_sign_is_device_removed_and_the_application_recovers() {
    let (_g, m, agent) = setup();
    let spki = agent.public_key_der(0);
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let key = private_key(m, h);
    let other = open_session(m, 1, false);
    assert_eq!(sign_init(m, h, CKM_SHA256_RSA_PKCS, &mut [], key), CKR_OK);
    // The daemon dies on the Sign request and a new instance takes the
    // socket (as systemd socket activation restarts it).
    agent.state.lock().unwrap().crash_on_sign = true;
    assert_eq!(sign_initialised(m, h, b"document"), Err(CKR_DEVICE_REMOVED));
    agent.state.lock().unwrap().crash_on_sign = false;
    // The module looked again at once: the new instance closed every session.
    assert_eq!(session_rv(m, h), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(session_rv(m, other), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(agent.count("Sign"), 1, "a Sign must never be sent twice");
    fresh_login_signs(m, &spki);
    finalize(m);
}

#[test]
fn a_daemon_restarted_between_two_calls_is_noticed_by_the_next_one() {
    let (_g, m, mut agent) = setup();
    let spki = agent.public_key_der(0);
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let key = private_key(m, h);
    assert_eq!(sign_init(m, h, CKM_SHA256_RSA_PKCS, &mut [], key), CKR_OK);
    // Stopped and started again while the application was not calling.
    agent.go_down();
    agent.come_back();
    // C_Sign reaches the new instance, which has no login for this
    // application; the module then drops every session of the old one.
    assert_eq!(
        sign_initialised(m, h, b"document"),
        Err(CKR_USER_NOT_LOGGED_IN)
    );
    assert_eq!(session_rv(m, h), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(
        p11!(m, C_FindObjectsInit(h, null_mut(), 0)),
        CKR_SESSION_HANDLE_INVALID
    );
    fresh_login_signs(m, &spki);
    finalize(m);
}
