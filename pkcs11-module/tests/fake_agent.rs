//! The module against a fake agent (tests/support/fake_agent.rs): tokens and
//! objects from CardInfo, login error mapping, one round trip per C_Sign and
//! none for a length query, multi-part hashing in the module, daemon restarts
//! and fork. The real daemon is exercised by the workspace's system tests.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use openssl::pkey::PKey;
use openssl::rsa::Padding;
use support::fake_agent::FakeAgent;
use support::signature::pss_params;
use support::*;

const UNAVAILABLE: CK_ULONG = !0;

fn ulong(bytes: &[u8]) -> CK_ULONG {
    CK_ULONG::from_ne_bytes(bytes.try_into().unwrap())
}

#[test]
fn tokens_and_objects_from_card_info() {
    let (_g, m, agent) = setup();
    assert_eq!(slot_list(m, true), vec![0, 1]);
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(0, &mut t)), CKR_OK);
    assert_eq!(&t.label, b"Dr Ada Smith 0123456789ABCDEF   ");
    assert_eq!(&t.serialNumber, b"0123456789ABCDEF");
    assert_eq!(&t.model, b"Virtual card    ");
    let want = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
    assert_eq!(t.flags & want, want);
    assert_eq!((t.ulMinPinLen, t.ulMaxPinLen), (6, 8));
    assert_eq!(t.ulTotalPublicMemory, UNAVAILABLE);

    let mut n = 0;
    assert_eq!(p11!(m, C_GetMechanismList(1, null_mut(), &mut n)), CKR_OK);
    let mut mechs = vec![0; n as usize];
    assert_eq!(
        p11!(m, C_GetMechanismList(1, mechs.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    assert!(mechs.contains(&CKM_ECDSA_SHA384) && !mechs.contains(&CKM_RSA_PKCS));
    let mut mi: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        p11!(m, C_GetMechanismInfo(1, CKM_RSA_PKCS, &mut mi)),
        CKR_MECHANISM_INVALID
    );

    let h = open_session(m, 0, false);
    // Before login: leaf certificate, public key and two CA certificates.
    assert_eq!(find(m, h, CKO_CERTIFICATE).len(), 3);
    assert_eq!(find(m, h, CKO_PUBLIC_KEY).len(), 1);
    assert_eq!(find(m, h, CKO_PRIVATE_KEY).len(), 0);
    let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
    assert_eq!(
        attribute(m, h, pubkey, CKA_PUBLIC_KEY_INFO),
        agent.public_key_der(0)
    );
    assert_eq!(ulong(&attribute(m, h, pubkey, CKA_MODULUS_BITS)), 2048);
    assert_eq!(attribute(m, h, pubkey, CKA_VERIFY), vec![CK_TRUE]);
    let certs = find(m, h, CKO_CERTIFICATE);
    let trusted: Vec<_> = certs
        .iter()
        .filter(|c| attribute(m, h, **c, CKA_TRUSTED) == vec![CK_TRUE])
        .collect();
    assert_eq!(trusted.len(), 2);
    for c in &trusted {
        assert_eq!(ulong(&attribute(m, h, **c, CKA_CERTIFICATE_CATEGORY)), 2);
    }
    // Handles are stable per slot.
    assert_eq!(find(m, h, CKO_PUBLIC_KEY), vec![pubkey]);
    finalize(m);
}

#[test]
fn login_maps_daemon_errors_and_is_shared_by_sessions() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, true);
    let h2 = open_session(m, 0, false);
    assert_eq!(login(m, h, "999999"), CKR_PIN_INCORRECT);
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(0, &mut t)), CKR_OK);
    assert_ne!(t.flags & CKF_USER_PIN_COUNT_LOW, 0);
    assert_eq!(login(m, h, "12"), CKR_PIN_LEN_RANGE);
    let so = p11!(m, C_Login(h, CKU_SO, b"123456".as_ptr() as *mut u8, 6));
    assert_eq!(so, CKR_USER_TYPE_INVALID);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    assert_eq!(login(m, h2, "123456"), CKR_USER_ALREADY_LOGGED_IN);
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RW_USER_FUNCTIONS);
    assert_eq!(p11!(m, C_GetSessionInfo(h2, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    let key = private_key(m, h2);
    assert_eq!(attribute(m, h2, key, CKA_SIGN), vec![CK_TRUE]);
    assert_eq!(p11!(m, C_Logout(h2)), CKR_OK);
    assert_eq!(p11!(m, C_Logout(h)), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(find(m, h, CKO_PRIVATE_KEY).len(), 0);
    finalize(m);
}

#[test]
fn three_wrong_pins_lock_the_card() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "000000"), CKR_PIN_INCORRECT);
    assert_eq!(login(m, h, "000000"), CKR_PIN_INCORRECT);
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(0, &mut t)), CKR_OK);
    assert_ne!(t.flags & CKF_USER_PIN_FINAL_TRY, 0);
    assert_eq!(login(m, h, "000000"), CKR_PIN_LOCKED);
    assert_eq!(login(m, h, "123456"), CKR_PIN_LOCKED);
    assert_eq!(p11!(m, C_GetTokenInfo(0, &mut t)), CKR_OK);
    assert_ne!(t.flags & CKF_USER_PIN_LOCKED, 0);
    finalize(m);
}

#[test]
fn sign_is_one_round_trip_and_length_queries_none() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OPERATION_ACTIVE);
    let data = b"a clinical document";
    let before = agent.count("Sign");
    let mut len: CK_ULONG = 0;
    let d = data.as_ptr() as *mut u8;
    let dl = data.len() as CK_ULONG;
    assert_eq!(p11!(m, C_Sign(h, d, dl, null_mut(), &mut len)), CKR_OK);
    assert_eq!(len, 256);
    let mut small = [0u8; 10];
    len = 10;
    assert_eq!(
        p11!(m, C_Sign(h, d, dl, small.as_mut_ptr(), &mut len)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(len, 256);
    assert_eq!(agent.count("Sign"), before);
    let mut sig = vec![0u8; 256];
    assert_eq!(
        p11!(m, C_Sign(h, d, dl, sig.as_mut_ptr(), &mut len)),
        CKR_OK
    );
    assert_eq!(agent.count("Sign"), before + 1);
    assert_eq!(
        p11!(m, C_Sign(h, d, dl, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    let pkey = PKey::public_key_from_der(&agent.public_key_der(0)).unwrap();
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    v.update(data).unwrap();
    assert!(v.verify(&sig).unwrap());
    // The module's own verification agrees and rejects a changed signature.
    let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
    assert_eq!(p11!(m, C_VerifyInit(h, &mut mech, pubkey)), CKR_OK);
    assert_eq!(p11!(m, C_Verify(h, d, dl, sig.as_mut_ptr(), 256)), CKR_OK);
    sig[10] ^= 1;
    assert_eq!(p11!(m, C_VerifyInit(h, &mut mech, pubkey)), CKR_OK);
    assert_eq!(
        p11!(m, C_Verify(h, d, dl, sig.as_mut_ptr(), 256)),
        CKR_SIGNATURE_INVALID
    );
    assert_eq!(p11!(m, C_VerifyInit(h, &mut mech, pubkey)), CKR_OK);
    assert_eq!(
        p11!(m, C_Verify(h, d, dl, sig.as_mut_ptr(), 255)),
        CKR_SIGNATURE_LEN_RANGE
    );
    finalize(m);
}

#[test]
fn raw_rsa_pkcs_signs_a_bare_md5_sha1_pair() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let md5_sha1 = [0x5au8; 36];
    let sig = sign(m, h, CKM_RSA_PKCS, &mut [], key, &md5_sha1).unwrap();
    let rsa = PKey::public_key_from_der(&agent.public_key_der(0))
        .unwrap()
        .rsa()
        .unwrap();
    let mut out = vec![0u8; 256];
    let n = rsa.public_decrypt(&sig, &mut out, Padding::PKCS1).unwrap();
    assert_eq!(&out[..n], &md5_sha1);
    assert_eq!(agent.last_signed(), md5_sha1.to_vec());
    assert_eq!(
        sign(m, h, CKM_RSA_PKCS, &mut [], key, &[1; 246]),
        Err(CKR_DATA_LEN_RANGE)
    );
    assert_eq!(
        sign(m, h, CKM_ECDSA, &mut [], key, &[1; 32]),
        Err(CKR_MECHANISM_INVALID)
    );
    let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
    assert_eq!(
        sign(m, h, CKM_RSA_PKCS, &mut [], pubkey, &[1; 20]),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        sign(m, h, CKM_RSA_PKCS, &mut [], 12345, &[1; 20]),
        Err(CKR_KEY_HANDLE_INVALID)
    );
    finalize(m);
}

#[test]
fn pss_honours_the_callers_parameters() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let digest = openssl::sha::sha256(b"document");
    let mut params = pss_params(CKM_SHA256, CKG_MGF1_SHA256, 10);
    let sig = sign(m, h, CKM_RSA_PKCS_PSS, &mut params, key, &digest).unwrap();
    let last = agent.state.lock().unwrap().signs.last().unwrap().clone();
    assert_eq!(last.salt_len, 10);
    let pkey = PKey::public_key_from_der(&agent.public_key_der(0)).unwrap();
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(10))
        .unwrap();
    v.update(b"document").unwrap();
    assert!(v.verify(&sig).unwrap());
    // The digest must match hashAlg; the hashed variant must match its params.
    assert_eq!(
        sign(m, h, CKM_RSA_PKCS_PSS, &mut params, key, &digest[..20]),
        Err(CKR_DATA_LEN_RANGE)
    );
    assert_eq!(
        sign(m, h, CKM_SHA384_RSA_PKCS_PSS, &mut params, key, b"x"),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    assert_eq!(
        sign(m, h, CKM_SHA256_RSA_PKCS_PSS, &mut [], key, b"x"),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let sig = sign(m, h, CKM_SHA256_RSA_PKCS_PSS, &mut params, key, b"document").unwrap();
    let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS_PSS,
        pParameter: params.as_mut_ptr() as *mut c_void,
        ulParameterLen: params.len() as CK_ULONG,
    };
    assert_eq!(p11!(m, C_VerifyInit(h, &mut mech, pubkey)), CKR_OK);
    let mut sig = sig;
    assert_eq!(
        p11!(
            m,
            C_Verify(h, b"document".as_ptr() as *mut u8, 8, sig.as_mut_ptr(), 256)
        ),
        CKR_OK
    );
    finalize(m);
}

#[test]
fn multi_part_ecdsa_hashes_in_the_module() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 1, false);
    assert_eq!(login(m, h, "654321"), CKR_OK);
    let key = private_key(m, h);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_ECDSA_SHA256,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let document = vec![7u8; 3 * 1024 * 1024];
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    for part in document.chunks(1024 * 1024) {
        assert_eq!(
            p11!(
                m,
                C_SignUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    let mut sig = vec![0u8; 64];
    let mut len: CK_ULONG = 0;
    assert_eq!(p11!(m, C_SignFinal(h, null_mut(), &mut len)), CKR_OK);
    assert_eq!(len, 64);
    assert_eq!(p11!(m, C_SignFinal(h, sig.as_mut_ptr(), &mut len)), CKR_OK);
    assert_eq!(
        agent.last_signed(),
        openssl::sha::sha256(&document).to_vec()
    );
    let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
    assert_eq!(p11!(m, C_VerifyInit(h, &mut mech, pubkey)), CKR_OK);
    for part in document.chunks(1024 * 1024) {
        assert_eq!(
            p11!(
                m,
                C_VerifyUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    assert_eq!(p11!(m, C_VerifyFinal(h, sig.as_mut_ptr(), 64)), CKR_OK);
    // Raw CKM_ECDSA signs the caller's digest.
    let digest = openssl::sha::sha384(b"x");
    let sig = sign(m, h, CKM_ECDSA, &mut [], key, &digest).unwrap();
    assert_eq!(sig.len(), 64);
    finalize(m);
}

#[test]
fn signing_needs_login() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    let key = agent_private_handle();
    assert_eq!(
        sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"x"),
        Err(CKR_USER_NOT_LOGGED_IN)
    );
    assert_eq!(agent.count("Sign"), 0);
    finalize(m);
}

/// Private key handles are fixed per slot (slot 0 → 0x10003).
fn agent_private_handle() -> CK_OBJECT_HANDLE {
    (1 << 16) | 3
}

#[test]
fn attribute_protocol_over_ffi() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let mut label = [0u8; 2];
    let mut sign = [0u8; 1];
    let mut t = [
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label.as_mut_ptr() as *mut c_void,
            ulValueLen: 2,
        },
        CK_ATTRIBUTE {
            type_: CKA_SIGN,
            pValue: sign.as_mut_ptr() as *mut c_void,
            ulValueLen: 1,
        },
        CK_ATTRIBUTE {
            type_: CKA_PRIVATE_EXPONENT,
            pValue: null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: 0x7fff_0000,
            pValue: null_mut(),
            ulValueLen: 0,
        },
    ];
    let rv = p11!(
        m,
        C_GetAttributeValue(h, key, t.as_mut_ptr(), t.len() as CK_ULONG)
    );
    assert_eq!(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(t[0].ulValueLen, 12);
    assert_eq!(t[1].ulValueLen, UNAVAILABLE);
    assert_eq!(t[2].ulValueLen, 1);
    assert_eq!(sign[0], CK_TRUE);
    assert_eq!(t[3].ulValueLen, UNAVAILABLE);
    assert_eq!(t[4].ulValueLen, UNAVAILABLE);
    assert_eq!(
        p11!(m, C_GetAttributeValue(h, 999, t.as_mut_ptr(), 1)),
        CKR_OBJECT_HANDLE_INVALID
    );
    assert_eq!(p11!(m, C_DestroyObject(h, key)), CKR_TOKEN_WRITE_PROTECTED);
    finalize(m);
}

#[test]
fn daemon_restart_closes_sessions_and_logins() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    agent.restart();
    // The next call that reaches the daemon notices the new instance.
    assert_eq!(slot_list(m, true), vec![0, 1]);
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        p11!(m, C_GetSessionInfo(h, &mut info)),
        CKR_SESSION_HANDLE_INVALID
    );
    let h = open_session(m, 0, false);
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_PUBLIC_SESSION);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    assert!(sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"after restart").is_ok());
    // A restart detected by C_Sign itself (C_SignInit, which asks the
    // daemon for its cards, came before it): no crash, a clean error.
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    agent.restart();
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(
        p11!(
            m,
            C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len)
        ),
        CKR_USER_NOT_LOGGED_IN
    );
    assert_eq!(
        p11!(m, C_GetSessionInfo(h, &mut info)),
        CKR_SESSION_HANDLE_INVALID
    );
    finalize(m);
}

#[test]
fn a_failing_list_keeps_the_tokens_and_a_gone_daemon_removes_them() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    agent.state.lock().unwrap().fail_list = true;
    // The daemon is there but cannot list: nothing is concluded from that.
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    assert_eq!(slot_list(m, true), vec![0, 1]);
    let mut slot: CK_SLOT_ID = 99;
    assert_eq!(
        p11!(m, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_NO_EVENT
    );
    // No daemon at all: no cards.
    drop(agent);
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_DEVICE_REMOVED);
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
    finalize(m);
}

#[test]
fn closing_the_last_session_logs_out() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
    assert_eq!(agent.count("Logout"), 1);
    let h = open_session(m, 0, false);
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_PUBLIC_SESSION);
    assert_eq!(p11!(m, C_CloseAllSessions(0)), CKR_OK);
    assert_eq!(p11!(m, C_CloseSession(h)), CKR_SESSION_HANDLE_INVALID);
    finalize(m);
}

#[test]
fn concurrent_sessions_sign_in_parallel() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                let h = open_session(m, 0, false);
                for i in 0..10 {
                    let data = format!("thread {t} doc {i}");
                    assert!(sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, data.as_bytes()).is_ok());
                }
            });
        }
    });
    assert_eq!(agent.count("Sign"), 80);
    finalize(m);
}

#[test]
fn forked_child_must_reinitialise() {
    let (_g, m, _agent) = setup();
    assert_eq!(slot_list(m, true), vec![0, 1]);
    // SAFETY (test): the child only calls the module and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut n: CK_ULONG = 0;
        let before = p11!(m, C_GetSlotList(CK_TRUE, null_mut(), &mut n));
        let init = p11!(m, C_Initialize(null_mut()));
        let mut n2: CK_ULONG = 0;
        let after = p11!(m, C_GetSlotList(CK_TRUE, null_mut(), &mut n2));
        let ok =
            before == CKR_CRYPTOKI_NOT_INITIALIZED && init == CKR_OK && after == CKR_OK && n2 == 2;
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY (test): waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    // The parent is untouched.
    assert_eq!(slot_list(m, true), vec![0, 1]);
    finalize(m);
}

#[test]
fn digest_and_random() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 1, false);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA384,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_DigestInit(h, &mut mech)), CKR_OK);
    let mut out = [0u8; 48];
    let mut len: CK_ULONG = 47;
    let d = b"abc".as_ptr() as *mut u8;
    assert_eq!(
        p11!(m, C_Digest(h, d, 3, out.as_mut_ptr(), &mut len)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(len, 48);
    assert_eq!(
        p11!(m, C_Digest(h, d, 3, out.as_mut_ptr(), &mut len)),
        CKR_OK
    );
    assert_eq!(out, openssl::sha::sha384(b"abc"));
    mech.mechanism = CKM_MD5;
    assert_eq!(p11!(m, C_DigestInit(h, &mut mech)), CKR_MECHANISM_INVALID);
    let mut r = [0u8; 32];
    assert_eq!(p11!(m, C_GenerateRandom(h, r.as_mut_ptr(), 32)), CKR_OK);
    assert_ne!(r, [0u8; 32]);
    assert_eq!(
        p11!(m, C_SeedRandom(h, r.as_mut_ptr(), 32)),
        CKR_RANDOM_SEED_NOT_SUPPORTED
    );
    finalize(m);
}

#[test]
fn slot_events_when_cards_come_and_go() {
    let (_g, m, agent) = setup();
    let mut slot: CK_SLOT_ID = 99;
    let wait = |flags, slot: &mut CK_SLOT_ID| p11!(m, C_WaitForSlotEvent(flags, slot, null_mut()));
    assert_eq!(wait(CKF_DONT_BLOCK, &mut slot), CKR_NO_EVENT);
    let h = open_session(m, 1, false);
    let card = agent.take_card(1);
    assert_eq!(wait(CKF_DONT_BLOCK, &mut slot), CKR_OK);
    assert_eq!(slot, 1);
    assert_eq!(wait(CKF_DONT_BLOCK, &mut slot), CKR_NO_EVENT);
    // The session outlives its card only to report it (card_lifecycle.rs
    // tests this in depth).
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_DEVICE_REMOVED);
    assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
    assert_eq!(slot_list(m, true), vec![0]);
    // A blocking wait returns when the card is back.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut slot: CK_SLOT_ID = 99;
            (wait(0, &mut slot), slot)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        agent.put_card(card);
        assert_eq!(waiter.join().unwrap(), (CKR_OK, 1));
    });
    // C_Finalize ends a blocking wait.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut slot: CK_SLOT_ID = 99;
            wait(0, &mut slot)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        finalize(m);
        assert_eq!(waiter.join().unwrap(), CKR_CRYPTOKI_NOT_INITIALIZED);
    });
}

#[test]
fn finalize_ends_the_applications_logins() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 1, false);
    assert_eq!(login(m, h, "654321"), CKR_OK);
    assert_eq!(agent.state.lock().unwrap().logins.len(), 1);
    finalize(m);
    assert_eq!(agent.state.lock().unwrap().logins.len(), 0);
}

#[test]
fn set_pin_goes_to_the_daemon_from_a_rw_session() {
    let (_g, m, agent) = setup();
    let set = |h, old, new| set_pin(m, h, old, new);
    let ro = open_session(m, 0, false);
    assert_eq!(set(ro, "123456", "24681357"), CKR_SESSION_READ_ONLY);
    let rw = open_session(m, 0, true);
    assert_eq!(set(rw, "000000", "24681357"), CKR_PIN_INCORRECT);
    assert_eq!(set(rw, "123456", "24681357"), CKR_OK);
    assert_eq!(agent.count("ChangePin"), 2);
    assert_eq!(login(m, ro, "24681357"), CKR_OK);
    assert_eq!(
        p11!(m, C_SetPIN(rw, null_mut(), 0, null_mut(), 0)),
        CKR_ARGUMENTS_BAD
    );
    finalize(m);
}

#[test]
fn closed_idle_connections_are_replaced_without_losing_sessions() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let hellos = agent.count("Hello");
    agent.drop_connections();
    // The same daemon instance answers on a new connection: the login holds.
    assert!(sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"after reconnect").is_ok());
    assert_eq!(agent.count("Hello"), hellos + 1);
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    finalize(m);
}

#[test]
fn cards_of_a_daemon_started_later_are_slot_events() {
    let _g = serial();
    let m = module();
    let agent = FakeAgent::start();
    let later = agent.path.with_file_name("later.sock");
    assert_eq!(initialize(m, &later), CKR_OK);
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    std::fs::rename(&agent.path, &later).unwrap();
    let mut slot: CK_SLOT_ID = 99;
    assert_eq!(
        p11!(m, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_OK
    );
    assert_eq!(slot, 0);
    assert_eq!(
        p11!(m, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_OK
    );
    assert_eq!(slot, 1);
    assert_eq!(slot_list(m, true), vec![0, 1]);
    finalize(m);
}

#[test]
fn single_part_call_after_update_ends_the_operation() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    assert_eq!(
        p11!(m, C_SignUpdate(h, b"abc".as_ptr() as *mut u8, 3)),
        CKR_OK
    );
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    let rv = p11!(
        m,
        C_Sign(h, b"abc".as_ptr() as *mut u8, 3, sig.as_mut_ptr(), &mut len)
    );
    assert_eq!(rv, CKR_OPERATION_ACTIVE);
    assert_eq!(
        p11!(m, C_SignFinal(h, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // A NULL mechanism cancels an active operation (PKCS#11 3.0).
    assert_eq!(p11!(m, C_SignInit(h, &mut mech, key)), CKR_OK);
    assert_eq!(p11!(m, C_SignInit(h, null_mut(), key)), CKR_OK);
    assert_eq!(
        p11!(m, C_SignFinal(h, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    assert_eq!(agent.count("Sign"), 0);
    finalize(m);
}

/// Many threads mixing every kind of call, with card removal and a daemon
/// restart in the middle: no deadlock, no internal error.
#[test]
fn mixed_concurrent_calls_do_not_deadlock() {
    let (_g, m, agent) = setup();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut workers = Vec::new();
            for t in 0..6u64 {
                let done = &done;
                workers.push(
                    std::thread::Builder::new()
                        .spawn_scoped(s, move || {
                            let mut n = 0u64;
                            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                                n += 1;
                                let slot = (t + n) % 2;
                                let mut h = 0;
                                let rv = p11!(
                                    m,
                                    C_OpenSession(
                                        slot,
                                        CKF_SERIAL_SESSION,
                                        null_mut(),
                                        None,
                                        &mut h
                                    )
                                );
                                if rv != CKR_OK {
                                    assert_ne!(rv, CKR_GENERAL_ERROR);
                                    continue;
                                }
                                let pin = if slot == 0 { "123456" } else { "654321" };
                                let rv = login(m, h, pin);
                                assert_ne!(rv, CKR_GENERAL_ERROR);
                                let mut class = CKO_PRIVATE_KEY;
                                let mut t = [CK_ATTRIBUTE {
                                    type_: CKA_CLASS,
                                    pValue: &mut class as *mut _ as *mut c_void,
                                    ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
                                }];
                                let mut keys = [0; 4];
                                let mut found = 0;
                                if p11!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 1)) == CKR_OK {
                                    let _ =
                                        p11!(m, C_FindObjects(h, keys.as_mut_ptr(), 4, &mut found));
                                    let _ = p11!(m, C_FindObjectsFinal(h));
                                }
                                if found == 1 {
                                    let mech = if slot == 0 {
                                        CKM_SHA256_RSA_PKCS
                                    } else {
                                        CKM_ECDSA_SHA256
                                    };
                                    if let Err(rv) = sign(m, h, mech, &mut [], keys[0], b"doc") {
                                        assert_ne!(rv, CKR_GENERAL_ERROR);
                                    }
                                }
                                let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                                assert_ne!(
                                    p11!(m, C_GetTokenInfo(slot, &mut info)),
                                    CKR_GENERAL_ERROR
                                );
                                let mut ev = 0;
                                assert_ne!(
                                    p11!(
                                        m,
                                        C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ev, null_mut())
                                    ),
                                    CKR_GENERAL_ERROR
                                );
                                if n % 3 == 1 {
                                    assert_ne!(p11!(m, C_Logout(h)), CKR_GENERAL_ERROR);
                                }
                                assert_ne!(p11!(m, C_CloseSession(h)), CKR_GENERAL_ERROR);
                            }
                        })
                        .unwrap(),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            let card = agent.take_card(1);
            std::thread::sleep(std::time::Duration::from_millis(200));
            agent.put_card(card);
            agent.restart();
            std::thread::sleep(std::time::Duration::from_millis(300));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            for w in workers {
                w.join().unwrap();
            }
            tx.send(()).unwrap();
        });
        // A deadlock shows as no answer here.
        if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            eprintln!("deadlock: workers did not finish");
            std::process::abort();
        }
    });
    finalize(m);
}
