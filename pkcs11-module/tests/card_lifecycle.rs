//! The CA's card lifecycle as an application sees it through the module,
//! against the fake agent: a suspended, revoked or deleted card removes the
//! token (DEVICE_REMOVED on its sessions, TOKEN_NOT_PRESENT on its slot, a
//! slot event), a resumed card comes back as a new token, a renewed card
//! (new certificate and key, same id) keeps sessions and login, and an
//! expired card stays listed but refuses to sign.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use lanyard_proto::agent::CardStatus;
use support::signature::openssl_verifies;
use support::*;

/// Slot 1 holds the EC card of the fake agent, slot 0 the RSA one.
const EC_PIN: &str = "654321";
const RSA_PIN: &str = "123456";
const EC_CARD_ID: &str = "FEDCBA9876543210";

fn session_rv(m: &Module, h: CK_SESSION_HANDLE) -> (CK_RV, CK_STATE) {
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    let rv = p11!(m, C_GetSessionInfo(h, &mut info));
    (rv, info.state)
}

fn token_rv(m: &Module, slot: CK_SLOT_ID) -> CK_RV {
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    p11!(m, C_GetTokenInfo(slot, &mut t))
}

fn open_rv(m: &Module, slot: CK_SLOT_ID) -> CK_RV {
    let mut h = 0;
    p11!(
        m,
        C_OpenSession(slot, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
    )
}

fn event(m: &Module, flags: CK_FLAGS) -> (CK_RV, CK_SLOT_ID) {
    let mut slot: CK_SLOT_ID = 99;
    let rv = p11!(m, C_WaitForSlotEvent(flags, &mut slot, null_mut()));
    (rv, slot)
}

/// A call that never asks the daemon: it shows what the module already knows.
fn random_rv(m: &Module, h: CK_SESSION_HANDLE) -> CK_RV {
    let mut r = [0u8; 8];
    p11!(m, C_GenerateRandom(h, r.as_mut_ptr(), 8))
}

fn mech(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

/// The mechanism the card in `slot` signs with here.
fn sign_mech(slot: CK_SLOT_ID) -> CK_MECHANISM {
    mech(if slot == 0 {
        CKM_SHA256_RSA_PKCS
    } else {
        CKM_ECDSA_SHA256
    })
}

/// Whether `sig` is an RSA PKCS#1 SHA-256 signature of `data` by `spki`.
fn rsa_verifies(spki: &[u8], data: &[u8], sig: &[u8]) -> bool {
    openssl_verifies(spki, CKM_SHA256_RSA_PKCS, data, sig)
}

/// Finds objects of `class` with CKA_ID `id`.
fn find_by_id(
    m: &Module,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    id: &[u8],
) -> Vec<CK_OBJECT_HANDLE> {
    let mut class = class;
    let mut id = id.to_vec();
    let mut t = [
        CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: &mut class as *mut _ as *mut c_void,
            ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
        },
        CK_ATTRIBUTE {
            type_: CKA_ID,
            pValue: id.as_mut_ptr() as *mut c_void,
            ulValueLen: id.len() as CK_ULONG,
        },
    ];
    assert_eq!(p11!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 2)), CKR_OK);
    let mut out = vec![0; 8];
    let mut n = 0;
    assert_eq!(
        p11!(m, C_FindObjects(h, out.as_mut_ptr(), 8, &mut n)),
        CKR_OK
    );
    assert_eq!(p11!(m, C_FindObjectsFinal(h)), CKR_OK);
    out.truncate(n as usize);
    out
}

#[test]
fn a_suspended_card_leaves_its_sessions_reporting_device_removed() {
    let (_g, m, agent) = setup();
    let h1 = open_session(m, 1, false);
    assert_eq!(login(m, h1, EC_PIN), CKR_OK);
    let h2 = open_session(m, 1, true);
    let h0 = open_session(m, 0, false);
    assert_eq!(login(m, h0, RSA_PIN), CKR_OK);

    agent.set_status(1, CardStatus::Suspended);
    // The first call after the removal notices it; no C_GetSlotList first.
    assert_eq!(session_rv(m, h1).0, CKR_DEVICE_REMOVED);
    assert_eq!(session_rv(m, h2).0, CKR_DEVICE_REMOVED);
    assert_eq!(login(m, h2, EC_PIN), CKR_DEVICE_REMOVED);
    let mut sm = sign_mech(1);
    assert_eq!(
        p11!(m, C_SignInit(h1, &mut sm, 0x20003)),
        CKR_DEVICE_REMOVED
    );
    assert_eq!(p11!(m, C_Logout(h1)), CKR_DEVICE_REMOVED);

    // The slot: no token, not listed as present, an event.
    assert_eq!(token_rv(m, 1), CKR_TOKEN_NOT_PRESENT);
    assert_eq!(open_rv(m, 1), CKR_TOKEN_NOT_PRESENT);
    assert_eq!(slot_list(m, true), vec![0]);
    assert_eq!(slot_list(m, false), vec![0, 1]);
    let mut si: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSlotInfo(1, &mut si)), CKR_OK);
    assert_eq!(si.flags & CKF_TOKEN_PRESENT, 0);
    assert_eq!(event(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(event(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);

    // The other card is untouched, login included.
    assert_eq!(session_rv(m, h0), (CKR_OK, CKS_RO_USER_FUNCTIONS));
    let key = private_key(m, h0);
    let signed = sign(m, h0, CKM_SHA256_RSA_PKCS, &mut [], key, b"still here");
    assert!(signed.is_ok());

    // Sessions of the removed card close cleanly, one by one or all at once.
    assert_eq!(p11!(m, C_CloseSession(h1)), CKR_OK);
    assert_eq!(p11!(m, C_CloseSession(h1)), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(p11!(m, C_CloseAllSessions(1)), CKR_OK);
    assert_eq!(session_rv(m, h2).0, CKR_SESSION_HANDLE_INVALID);
    assert_eq!(session_rv(m, h0).0, CKR_OK);
    finalize(m);
}

/// How the card in slot 1 goes away in one round of the test below.
#[derive(Clone, Copy, Debug)]
enum Removal {
    Suspend,
    Revoke,
    Delete,
}

/// A call made right after the removal, with what it must answer.
struct Probe {
    name: &'static str,
    /// Run before the removal, on a logged-in R/W session.
    prepare: fn(&Module, CK_SESSION_HANDLE),
    call: fn(&Module, CK_SESSION_HANDLE) -> CK_RV,
    expect: CK_RV,
}

fn nothing(_: &Module, _: CK_SESSION_HANDLE) {}

fn sign_init(m: &Module, h: CK_SESSION_HANDLE) {
    let key = private_key(m, h);
    let mut sm = sign_mech(1);
    assert_eq!(p11!(m, C_SignInit(h, &mut sm, key)), CKR_OK);
}

fn find_init(m: &Module, h: CK_SESSION_HANDLE) {
    assert_eq!(p11!(m, C_FindObjectsInit(h, null_mut(), 0)), CKR_OK);
}

fn probes() -> Vec<Probe> {
    vec![
        Probe {
            name: "C_GetSessionInfo",
            prepare: nothing,
            call: |m, h| session_rv(m, h).0,
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_FindObjectsInit",
            prepare: nothing,
            call: |m, h| p11!(m, C_FindObjectsInit(h, null_mut(), 0)),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_FindObjects",
            prepare: find_init,
            call: |m, h| {
                let mut out = [0; 4];
                let mut n = 0;
                p11!(m, C_FindObjects(h, out.as_mut_ptr(), 4, &mut n))
            },
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_FindObjectsFinal",
            prepare: find_init,
            call: |m, h| p11!(m, C_FindObjectsFinal(h)),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_GetAttributeValue",
            prepare: nothing,
            call: |m, h| {
                let mut t = [CK_ATTRIBUTE {
                    type_: CKA_LABEL,
                    pValue: null_mut(),
                    ulValueLen: 0,
                }];
                // The leaf certificate of slot 1 (handles are fixed per slot).
                p11!(m, C_GetAttributeValue(h, 0x20001, t.as_mut_ptr(), 1))
            },
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_SignInit",
            prepare: nothing,
            call: |m, h| {
                let mut sm = sign_mech(1);
                p11!(m, C_SignInit(h, &mut sm, 0x20003))
            },
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_Sign",
            prepare: sign_init,
            call: |m, h| sign_initialised(m, h, b"document").err().unwrap_or(CKR_OK),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_SignFinal",
            prepare: |m, h| {
                sign_init(m, h);
                assert_eq!(sign_update(m, h, b"abc"), CKR_OK);
            },
            call: |m, h| {
                let mut sig = [0u8; 64];
                let mut len: CK_ULONG = 64;
                p11!(m, C_SignFinal(h, sig.as_mut_ptr(), &mut len))
            },
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_VerifyInit",
            prepare: nothing,
            call: |m, h| {
                let mut sm = sign_mech(1);
                p11!(m, C_VerifyInit(h, &mut sm, 0x20002))
            },
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_Login",
            prepare: |m, h| assert_eq!(p11!(m, C_Logout(h)), CKR_OK),
            call: |m, h| login(m, h, EC_PIN),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_Logout",
            prepare: nothing,
            call: |m, h| p11!(m, C_Logout(h)),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_SetPIN",
            prepare: nothing,
            call: |m, h| set_pin(m, h, EC_PIN, "11223344"),
            expect: CKR_DEVICE_REMOVED,
        },
        Probe {
            name: "C_GetTokenInfo",
            prepare: nothing,
            call: |m, _| token_rv(m, 1),
            expect: CKR_TOKEN_NOT_PRESENT,
        },
        Probe {
            name: "C_OpenSession",
            prepare: nothing,
            call: |m, _| open_rv(m, 1),
            expect: CKR_TOKEN_NOT_PRESENT,
        },
        Probe {
            name: "C_GetMechanismList",
            prepare: nothing,
            call: |m, _| {
                let mut n = 0;
                p11!(m, C_GetMechanismList(1, null_mut(), &mut n))
            },
            expect: CKR_TOKEN_NOT_PRESENT,
        },
    ]
}

#[test]
fn every_kind_of_call_is_the_first_to_notice_a_removal() {
    let (_g, m, agent) = setup();
    let kinds = [Removal::Suspend, Removal::Revoke, Removal::Delete];
    for (i, probe) in probes().into_iter().enumerate() {
        let removal = kinds[i % kinds.len()];
        let h = open_session(m, 1, true);
        // The previous round's login ended with its card's removal.
        assert_eq!(login(m, h, EC_PIN), CKR_OK, "{}", probe.name);
        (probe.prepare)(m, h);
        let taken = match removal {
            Removal::Suspend => {
                agent.set_status(1, CardStatus::Suspended);
                None
            }
            Removal::Revoke => {
                agent.set_status(1, CardStatus::Revoked);
                None
            }
            Removal::Delete => Some(agent.take_card(1)),
        };
        let context = format!("{} after {removal:?}", probe.name);
        assert_eq!((probe.call)(m, h), probe.expect, "{context}");
        // The module knows now, without asking again.
        assert_eq!(random_rv(m, h), CKR_DEVICE_REMOVED, "{context}");
        assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK, "{context}");
        // Back for the next round (the fake kept this app's login; the
        // module ends it when the card comes back).
        match taken {
            Some(card) => agent.put_card(card),
            None => agent.set_status(1, CardStatus::Active),
        }
        assert_eq!(slot_list(m, true), vec![0, 1], "{context}");
        assert_eq!(event(m, CKF_DONT_BLOCK), (CKR_OK, 1), "{context}");
        assert_eq!(event(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT, "{context}");
    }
    finalize(m);
}

#[test]
fn a_daemon_refusing_a_revoked_card_removes_the_token() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 1, false);
    assert_eq!(login(m, h, EC_PIN), CKR_OK);
    sign_init(m, h);
    agent.set_status(1, CardStatus::Revoked);
    let (lists, signs) = (agent.count("ListCards"), agent.count("Sign"));
    // C_Sign makes its one round trip; the daemon's CARD_REVOKED is
    // DEVICE_REMOVED and makes the module look at the cards again.
    assert_eq!(sign_initialised(m, h, b"document"), Err(CKR_DEVICE_REMOVED));
    assert_eq!(agent.count("Sign"), signs + 1);
    assert_eq!(agent.count("ListCards"), lists + 1);
    assert_eq!(random_rv(m, h), CKR_DEVICE_REMOVED);
    assert_eq!(event(m, CKF_DONT_BLOCK), (CKR_OK, 1));
    assert_eq!(slot_list(m, true), vec![0]);
    finalize(m);
}

#[test]
fn an_expired_card_stays_listed_and_refuses_with_function_failed() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let key = private_key(m, h);
    agent.set_status(0, CardStatus::Expired);
    assert_eq!(
        sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"document"),
        Err(CKR_FUNCTION_FAILED)
    );
    assert_eq!(session_rv(m, h), (CKR_OK, CKS_RO_USER_FUNCTIONS));
    assert_eq!(p11!(m, C_Logout(h)), CKR_OK);
    assert_eq!(login(m, h, RSA_PIN), CKR_FUNCTION_FAILED);
    // The token, its sessions and its objects stay; nothing came or went.
    assert_eq!(slot_list(m, true), vec![0, 1]);
    assert_eq!(token_rv(m, 0), CKR_OK);
    assert_eq!(session_rv(m, h), (CKR_OK, CKS_RO_PUBLIC_SESSION));
    assert_eq!(find(m, h, CKO_CERTIFICATE).len(), 3);
    assert_eq!(event(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    // Re-issued under the same id (here: the status clears), it signs again.
    agent.set_status(0, CardStatus::Active);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    assert!(sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"document").is_ok());
    finalize(m);
}

#[test]
fn a_resumed_card_comes_back_as_a_new_token() {
    let (_g, m, agent) = setup();
    let old = open_session(m, 1, false);
    assert_eq!(login(m, old, EC_PIN), CKR_OK);
    let other = open_session(m, 1, false);

    // A blocking wait reports the removal ...
    std::thread::scope(|s| {
        let waiter = s.spawn(|| event(m, 0));
        agent.set_status(1, CardStatus::Suspended);
        assert_eq!(waiter.join().unwrap(), (CKR_OK, 1));
    });
    assert_eq!(session_rv(m, old).0, CKR_DEVICE_REMOVED);
    // ... and the return.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| event(m, 0));
        agent.set_status(1, CardStatus::Active);
        assert_eq!(waiter.join().unwrap(), (CKR_OK, 1));
    });
    assert_eq!(slot_list(m, true), vec![0, 1]);
    assert_eq!(token_rv(m, 1), CKR_OK);

    // Sessions of the earlier arrival stay removed; the new token starts
    // logged out although the daemon had kept the login through the
    // suspension (the module ended it there).
    assert_eq!(session_rv(m, old).0, CKR_DEVICE_REMOVED);
    let h = open_session(m, 1, false);
    assert_eq!(session_rv(m, h), (CKR_OK, CKS_RO_PUBLIC_SESSION));
    let kept = agent
        .state
        .lock()
        .unwrap()
        .logins
        .iter()
        .any(|(_, card)| card == EC_CARD_ID);
    assert!(!kept, "the login from before the suspension is still open");
    assert_eq!(login(m, h, EC_PIN), CKR_OK);
    let key = private_key(m, h);
    let sig = sign(m, h, CKM_ECDSA_SHA256, &mut [], key, b"back again").unwrap();
    assert_eq!(sig.len(), 64);

    // The token counts only its own sessions, not the earlier arrival's.
    let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetTokenInfo(1, &mut t)), CKR_OK);
    assert_eq!(t.ulSessionCount, 1);
    // Closing the old arrival's sessions does not log the new one out.
    let logouts = agent.count("Logout");
    assert_eq!(p11!(m, C_CloseSession(old)), CKR_OK);
    assert_eq!(p11!(m, C_CloseSession(other)), CKR_OK);
    assert_eq!(agent.count("Logout"), logouts);
    assert_eq!(session_rv(m, h), (CKR_OK, CKS_RO_USER_FUNCTIONS));
    // Closing the last live one does.
    assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
    assert_eq!(agent.count("Logout"), logouts + 1);
    finalize(m);
}

#[test]
fn a_renewed_card_keeps_sessions_and_login_and_shows_its_new_objects() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, RSA_PIN), CKR_OK);
    let h_part = open_session(m, 0, false);
    let key = private_key(m, h);
    let public = find(m, h, CKO_PUBLIC_KEY)[0];
    let old_id = attribute(m, h, public, CKA_ID);
    let old_spki = attribute(m, h, public, CKA_PUBLIC_KEY_INFO);
    let cert = find_by_id(m, h, CKO_CERTIFICATE, &old_id);
    assert_eq!(cert.len(), 1);
    let cert = cert[0];
    let old_cert = attribute(m, h, cert, CKA_VALUE);
    // A multi-part signature that starts before the renewal ...
    let mut sm = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(p11!(m, C_SignInit(h_part, &mut sm, key)), CKR_OK);
    let part = b"first half, ";
    assert_eq!(sign_update(m, h_part, part), CKR_OK);
    let logins = agent.count("Login");

    agent.renew(0);
    let new = agent.card_info(0);
    assert_ne!(new.public_key_der, old_spki);
    assert_ne!(new.key_id, old_id);

    // Handles found before the renewal name the card's objects, which are
    // now the new ones (see objmgmt::with_object for why).
    assert_eq!(
        attribute(m, h, public, CKA_PUBLIC_KEY_INFO),
        new.public_key_der
    );
    assert_eq!(attribute(m, h, public, CKA_ID), new.key_id);
    assert_eq!(attribute(m, h, key, CKA_ID), new.key_id);
    assert_eq!(attribute(m, h, cert, CKA_VALUE), new.certificate_der);
    assert_ne!(new.certificate_der, old_cert);

    // ... ends after it, signed by the new key.
    let rest = b"second half";
    assert_eq!(sign_update(m, h_part, rest), CKR_OK);
    let mut sig = vec![0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(
        p11!(m, C_SignFinal(h_part, sig.as_mut_ptr(), &mut len)),
        CKR_OK
    );
    let whole = [&part[..], &rest[..]].concat();
    assert!(rsa_verifies(&new.public_key_der, &whole, &sig));
    assert!(!rsa_verifies(&old_spki, &whole, &sig));

    // The already-open session signs with the key handle found before.
    let sig = sign(m, h, CKM_SHA256_RSA_PKCS, &mut [], key, b"after renewal").unwrap();
    assert!(rsa_verifies(&new.public_key_der, b"after renewal", &sig));
    // The module verifies with the new public key too.
    let mut vm = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(p11!(m, C_VerifyInit(h, &mut vm, public)), CKR_OK);
    let mut sig = sig;
    let d = b"after renewal";
    assert_eq!(
        p11!(
            m,
            C_Verify(
                h,
                d.as_ptr() as *mut u8,
                d.len() as CK_ULONG,
                sig.as_mut_ptr(),
                256
            )
        ),
        CKR_OK
    );

    // A new search finds the new objects under the new CKA_ID, none under the old.
    assert_eq!(find_by_id(m, h, CKO_CERTIFICATE, &new.key_id), vec![cert]);
    assert_eq!(find_by_id(m, h, CKO_PUBLIC_KEY, &new.key_id), vec![public]);
    assert_eq!(find_by_id(m, h, CKO_PRIVATE_KEY, &new.key_id), vec![key]);
    assert!(find_by_id(m, h, CKO_CERTIFICATE, &old_id).is_empty());

    // No PIN again, no slot event, the sessions still logged in.
    assert_eq!(agent.count("Login"), logins);
    assert_eq!(session_rv(m, h), (CKR_OK, CKS_RO_USER_FUNCTIONS));
    assert_eq!(session_rv(m, h_part), (CKR_OK, CKS_RO_USER_FUNCTIONS));
    assert_eq!(event(m, CKF_DONT_BLOCK).0, CKR_NO_EVENT);
    assert_eq!(slot_list(m, true), vec![0, 1]);
    finalize(m);
}

#[test]
fn signing_reuses_a_recent_card_list_and_still_learns_of_a_removal() {
    let (_g, m, agent) = setup();
    // Initialise again with the production default (a recent list is reused).
    finalize(m);
    std::env::set_var("LANYARD_PKCS11_REFRESH_MS", "60000");
    let rv = initialize(m, &agent.path);
    std::env::set_var("LANYARD_PKCS11_REFRESH_MS", "0");
    assert_eq!(rv, CKR_OK);
    let h = open_session(m, 1, false);
    assert_eq!(login(m, h, EC_PIN), CKR_OK);
    let lists = agent.count("ListCards");
    for _ in 0..5 {
        sign_init(m, h);
        assert!(sign_initialised(m, h, b"document").is_ok());
    }
    // Five C_SignInit + C_Sign pairs: five Signs, no extra card lists.
    assert_eq!(agent.count("ListCards"), lists);
    // A revocation is still noticed by the next signature the daemon refuses.
    agent.set_status(1, CardStatus::Revoked);
    sign_init(m, h);
    assert_eq!(sign_initialised(m, h, b"document"), Err(CKR_DEVICE_REMOVED));
    assert_eq!(slot_list(m, true), vec![0]);
    finalize(m);
}
