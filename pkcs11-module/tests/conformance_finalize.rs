//! C_Finalize with sessions open and operations in progress: it succeeds,
//! ends the application's logins, every call then answers
//! CKR_CRYPTOKI_NOT_INITIALIZED, and after C_Initialize again the old
//! session handles stay invalid (never reused for new sessions) while new
//! sessions log in and sign.

mod support;

use std::ptr::null_mut;

use cryptoki_sys::*;
use support::signature::{openssl_verifies, sign_init};
use support::*;

fn find_objects_rv(m: &Module, h: CK_SESSION_HANDLE) -> CK_RV {
    let mut found = [0; 4];
    let mut n = 0;
    p11!(m, C_FindObjects(h, found.as_mut_ptr(), 4, &mut n))
}

#[test]
fn c_finalize_with_open_sessions_then_c_initialize_again() {
    let (_g, m, agent) = setup();
    let signing = open_session(m, 0, false);
    assert_eq!(login(m, signing, "123456"), CKR_OK);
    let key = private_key(m, signing);
    assert_eq!(
        sign_init(m, signing, CKM_SHA256_RSA_PKCS, &mut [], key),
        CKR_OK
    );
    let finding = open_session(m, 1, true);
    assert_eq!(login(m, finding, "654321"), CKR_OK);
    assert_eq!(p11!(m, C_FindObjectsInit(finding, null_mut(), 0)), CKR_OK);
    let idle = open_session(m, 1, false);
    let old = [signing, finding, idle];
    assert_eq!(agent.state.lock().unwrap().logins.len(), 2);

    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
    // The application's logins ended with it.
    assert!(agent.state.lock().unwrap().logins.is_empty());
    assert_eq!(agent.count("Logout"), 2);
    for h in old {
        assert_eq!(session_rv(m, h), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_eq!(
            sign_initialised(m, h, b"x"),
            Err(CKR_CRYPTOKI_NOT_INITIALIZED)
        );
        assert_eq!(p11!(m, C_CloseSession(h)), CKR_CRYPTOKI_NOT_INITIALIZED);
    }
    assert_eq!(p11!(m, C_CloseAllSessions(0)), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_eq!(
        p11!(m, C_Finalize(null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );

    assert_eq!(initialize(m, &agent.path), CKR_OK);
    // As many new sessions as there were old ones: none takes an old handle.
    let new: Vec<CK_SESSION_HANDLE> = (0..3).map(|i| open_session(m, i % 2, false)).collect();
    for h in old {
        assert!(!new.contains(&h), "old handle {h} reused");
        assert_eq!(session_rv(m, h), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(
            sign_initialised(m, h, b"x"),
            Err(CKR_SESSION_HANDLE_INVALID)
        );
        assert_eq!(find_objects_rv(m, h), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(login(m, h, "123456"), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(p11!(m, C_CloseSession(h)), CKR_SESSION_HANDLE_INVALID);
    }
    // The new sessions start logged out, and count only themselves.
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(new[0], &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_PUBLIC_SESSION);
    let mut token: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(0, &mut token)), CKR_OK);
    assert_eq!(token.ulSessionCount, 2);
    assert_eq!(login(m, new[0], "123456"), CKR_OK);
    let key = private_key(m, new[0]);
    let sig = sign(m, new[0], CKM_SHA256_RSA_PKCS, &mut [], key, b"again").unwrap();
    assert!(openssl_verifies(
        &agent.public_key_der(0),
        CKM_SHA256_RSA_PKCS,
        b"again",
        &sig
    ));
    finalize(m);
}
