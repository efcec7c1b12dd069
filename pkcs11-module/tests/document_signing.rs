//! The document-signing key against the fake agent: a card with a
//! SigningKeyInfo shows a second certificate and key pair (own CKA_ID,
//! "Digital Signature" labels) whose private key has CKA_ALWAYS_AUTHENTICATE;
//! each signature needs C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit, whose
//! PIN goes to the daemon with that one Sign (and is wiped); without it
//! C_Sign is CKR_USER_NOT_LOGGED_IN and the operation ends. The
//! authentication key signs as before, without a context login.

mod support;

use std::ptr::null_mut;
use std::sync::MutexGuard;

use cryptoki_sys::*;
use lanyard_proto::agent::KeyRole;
use support::fake_agent::FakeAgent;
use support::signature::{openssl_verifies, sign_init};
use support::*;

/// This test's turn, with both fake cards given a signing key before the
/// module first lists them.
fn setup_signing() -> (MutexGuard<'static, ()>, &'static Module, FakeAgent) {
    let g = serial();
    let agent = FakeAgent::start();
    agent.add_signing_key(0);
    agent.add_signing_key(1);
    let m = module();
    let _ = p11!(m, C_Finalize(null_mut()));
    assert_eq!(initialize(m, &agent.path), CKR_OK);
    (g, m, agent)
}

fn context_login(m: &Module, h: CK_SESSION_HANDLE, pin: &str) -> CK_RV {
    p11!(
        m,
        C_Login(
            h,
            CKU_CONTEXT_SPECIFIC,
            pin.as_ptr() as *mut u8,
            pin.len() as CK_ULONG
        )
    )
}

fn bool_attr(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_TYPE) -> bool {
    attribute(m, h, o, t) == [1]
}

fn label(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    String::from_utf8(attribute(m, h, o, CKA_LABEL)).unwrap()
}

/// (authentication, signing) private key handles of a logged-in session.
fn private_keys(m: &Module, h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let keys = find(m, h, CKO_PRIVATE_KEY);
    assert_eq!(keys.len(), 2, "authentication and signing key");
    let (signing, auth): (Vec<_>, Vec<_>) = keys
        .into_iter()
        .partition(|k| bool_attr(m, h, *k, CKA_ALWAYS_AUTHENTICATE));
    assert_eq!((auth.len(), signing.len()), (1, 1));
    (auth[0], signing[0])
}

#[test]
fn the_signing_key_is_a_second_always_authenticate_key_pair() {
    let (_g, m, agent) = setup_signing();
    let info = agent.card_info(0);
    let signing = info.signing_key.clone().unwrap();
    let h = open_session(m, 0, false);
    // Before login: two certificates of the card (plus the chain) and two public keys.
    let certs = find(m, h, CKO_CERTIFICATE);
    assert_eq!(certs.len(), 4, "card, signing, issuing, root");
    assert!(certs
        .iter()
        .any(|c| attribute(m, h, *c, CKA_VALUE) == signing.certificate_der));
    assert_eq!(find(m, h, CKO_PUBLIC_KEY).len(), 2);
    assert!(find(m, h, CKO_PRIVATE_KEY).is_empty());

    assert_eq!(login(m, h, "123456"), CKR_OK);
    let (auth, sign_key) = private_keys(m, h);
    assert_eq!(attribute(m, h, auth, CKA_ID), info.key_id);
    assert_eq!(attribute(m, h, sign_key, CKA_ID), signing.key_id);
    assert_ne!(info.key_id, signing.key_id);
    assert!(!bool_attr(m, h, auth, CKA_ALWAYS_AUTHENTICATE));
    assert!(bool_attr(m, h, sign_key, CKA_SIGN));
    assert!(label(m, h, sign_key).contains("Digital Signature"));
    assert!(!label(m, h, auth).contains("Digital Signature"));
    assert_eq!(
        attribute(m, h, sign_key, CKA_PUBLIC_KEY_INFO),
        signing.public_key_der
    );
    finalize(m);
}

#[test]
fn each_signature_needs_its_own_context_specific_login() {
    let (_g, m, agent) = setup_signing();
    for (slot, pin, mech) in [
        (0, "123456", CKM_SHA256_RSA_PKCS),
        (1, "654321", CKM_ECDSA_SHA256),
    ] {
        let spki = agent.card_info(slot).signing_key.unwrap().public_key_der;
        let h = open_session(m, slot as CK_SLOT_ID, false);
        // Not right after C_SignInit on the signing key: no operation waits for it.
        assert_eq!(context_login(m, h, pin), CKR_OPERATION_NOT_INITIALIZED);
        assert_eq!(login(m, h, pin), CKR_OK);
        let (auth, key) = private_keys(m, h);
        let doc = b"Rx: amoxicillin 500 mg";

        // Without the context-specific login: refused, nothing sent, operation over.
        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        let before = agent.count("Sign");
        assert_eq!(sign_initialised(m, h, doc), Err(CKR_USER_NOT_LOGGED_IN));
        assert_eq!(agent.count("Sign"), before);
        assert_eq!(
            sign_initialised(m, h, doc),
            Err(CKR_OPERATION_NOT_INITIALIZED)
        );
        // The application's own login is untouched.
        assert_eq!(find(m, h, CKO_PRIVATE_KEY).len(), 2);

        // With it: the PIN goes with this Sign only, to the signing key.
        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        assert_eq!(context_login(m, h, pin), CKR_OK);
        let sig = sign_initialised(m, h, doc).unwrap();
        assert!(openssl_verifies(&spki, mech, doc, &sig));
        let sent = agent.signs().last().cloned().unwrap();
        assert_eq!(sent.key, KeyRole::Signing as i32);
        assert_eq!(sent.context_pin, pin);

        // The next signature needs the PIN again (multi-part too).
        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        assert_eq!(sign_initialised(m, h, doc), Err(CKR_USER_NOT_LOGGED_IN));
        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        assert_eq!(context_login(m, h, pin), CKR_OK);
        assert_eq!(sign_update(m, h, &doc[..5]), CKR_OK);
        assert_eq!(sign_update(m, h, &doc[5..]), CKR_OK);
        let sig = signature_out(|sig, len| p11!(m, C_SignFinal(h, sig, len))).unwrap();
        assert!(openssl_verifies(&spki, mech, doc, &sig));

        // A wrong context PIN is the daemon's to refuse (and count).
        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        assert_eq!(context_login(m, h, "000000"), CKR_OK);
        assert_eq!(sign_initialised(m, h, doc), Err(CKR_PIN_INCORRECT));

        // After C_SignInit on the authentication key there is nothing to log in to,
        // and it signs with no context login, as before.
        assert_eq!(sign_init(m, h, mech, &mut [], auth), CKR_OK);
        assert_eq!(context_login(m, h, pin), CKR_OPERATION_NOT_INITIALIZED);
        let sig = sign_initialised(m, h, doc).unwrap();
        let auth_spki = agent.public_key_der(slot);
        assert!(openssl_verifies(&auth_spki, mech, doc, &sig));
        let sent = agent.signs().last().cloned().unwrap();
        assert_eq!(sent.key, KeyRole::Authentication as i32);
        assert!(sent.context_pin.is_empty());
    }
    finalize(m);
}

#[test]
fn a_context_login_needs_the_user_logged_in() {
    let (_g, m, _agent) = setup_signing();
    let h = open_session(m, 1, false);
    let h2 = open_session(m, 1, false);
    assert_eq!(login(m, h, "654321"), CKR_OK);
    let (_, key) = private_keys(m, h);
    assert_eq!(sign_init(m, h, CKM_ECDSA_SHA256, &mut [], key), CKR_OK);
    // Logging out (through another session) ends the user's login.
    assert_eq!(p11!(m, C_Logout(h2)), CKR_OK);
    assert_eq!(context_login(m, h, "654321"), CKR_USER_NOT_LOGGED_IN);
    finalize(m);
}

#[test]
fn a_card_without_a_signing_key_shows_one_key_pair() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    assert!(!bool_attr(m, h, key, CKA_ALWAYS_AUTHENTICATE));
    assert_eq!(find(m, h, CKO_CERTIFICATE).len(), 3);
    finalize(m);
}
