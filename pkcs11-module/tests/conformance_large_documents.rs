//! Documents larger than the 1 MiB agent frame: 3 MiB signed in 64 KiB
//! C_SignUpdate parts (and in one C_Sign) with CKM_SHA256_RSA_PKCS,
//! CKM_SHA256_RSA_PKCS_PSS and CKM_ECDSA_SHA256. The module hashes, the
//! daemon receives only the digest (checked on the Sign request), OpenSSL
//! verifies the signature over the whole document, and so does
//! C_VerifyUpdate/C_VerifyFinal.

mod support;

use cryptoki_sys::*;
use support::signature::{mechanism, openssl_verifies, pss_sha256_params, sign_multi_part};
use support::*;

const DOCUMENT_LEN: usize = 3 * 1024 * 1024;
const PART: usize = 64 * 1024;
/// A Sign request holds the card id and at most a DigestInfo: far below this.
const MAX_REQUEST: usize = 512;

/// A 3 MiB document whose bytes all matter (no repeating block).
fn document() -> Vec<u8> {
    let mut doc = Vec::with_capacity(DOCUMENT_LEN);
    let mut block = openssl::sha::sha256(b"scanned referral");
    while doc.len() < DOCUMENT_LEN {
        doc.extend_from_slice(&block);
        block = openssl::sha::sha256(&block);
    }
    doc.truncate(DOCUMENT_LEN);
    doc
}

/// The DER DigestInfo prefix of SHA-256 (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// What the daemon must receive for `mech` over `doc`: its SHA-256, wrapped
/// in a DigestInfo for PKCS#1 v1.5.
fn expected_input(mech: CK_MECHANISM_TYPE, doc: &[u8]) -> Vec<u8> {
    let digest = openssl::sha::sha256(doc);
    if mech == CKM_SHA256_RSA_PKCS {
        [&SHA256_DIGEST_INFO[..], &digest[..]].concat()
    } else {
        digest.to_vec()
    }
}

/// C_VerifyInit, 64 KiB C_VerifyUpdate parts, C_VerifyFinal.
fn verify_multi_part(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    param: &mut [u8],
    key: CK_OBJECT_HANDLE,
    doc: &[u8],
    sig: &[u8],
) -> CK_RV {
    assert_eq!(
        p11!(m, C_VerifyInit(h, &mut mechanism(mech, param), key)),
        CKR_OK
    );
    for part in doc.chunks(PART) {
        let rv = p11!(
            m,
            C_VerifyUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
        );
        assert_eq!(rv, CKR_OK);
    }
    let mut sig = sig.to_vec();
    p11!(m, C_VerifyFinal(h, sig.as_mut_ptr(), sig.len() as CK_ULONG))
}

#[test]
fn three_mebibytes_in_64_kib_parts_for_pkcs1_pss_and_ecdsa() {
    let (_g, m, agent) = setup();
    let doc = document();
    // The application logs in to each token once; its sessions share that.
    for (slot, pin) in [(0, "123456"), (1, "654321")] {
        assert_eq!(login(m, open_session(m, slot, false), pin), CKR_OK);
    }
    for (slot, mech, mut param) in [
        (0, CKM_SHA256_RSA_PKCS, vec![]),
        (0, CKM_SHA256_RSA_PKCS_PSS, pss_sha256_params()),
        (1, CKM_ECDSA_SHA256, vec![]),
    ] {
        let h = open_session(m, slot, false);
        let key = private_key(m, h);
        let spki = agent.public_key_der(slot as usize);
        let public = find(m, h, CKO_PUBLIC_KEY)[0];

        let sig = sign_multi_part(m, h, mech, &mut param, key, &doc, PART)
            .unwrap_or_else(|rv| panic!("{mech:#x}: multi-part signing failed: {rv:#x}"));
        assert!(openssl_verifies(&spki, mech, &doc, &sig), "{mech:#x}");
        let sent = agent
            .state
            .lock()
            .unwrap()
            .signs
            .last()
            .unwrap()
            .data
            .clone();
        assert_eq!(sent, expected_input(mech, &doc), "{mech:#x}");

        // The module verifies the same way, and notices one changed byte.
        assert_eq!(
            verify_multi_part(m, h, mech, &mut param, public, &doc, &sig),
            CKR_OK
        );
        let mut changed = doc.clone();
        changed[DOCUMENT_LEN - 1] ^= 1;
        assert_eq!(
            verify_multi_part(m, h, mech, &mut param, public, &changed, &sig),
            CKR_SIGNATURE_INVALID
        );

        // The whole document in one C_Sign: hashed here too.
        let sig = sign(m, h, mech, &mut param, key, &doc).unwrap();
        assert!(openssl_verifies(&spki, mech, &doc, &sig), "{mech:#x}");
        let sent = agent
            .state
            .lock()
            .unwrap()
            .signs
            .last()
            .unwrap()
            .data
            .clone();
        assert_eq!(sent, expected_input(mech, &doc), "{mech:#x}");
    }
    // Not one request to the daemon carried the document.
    let requests = agent.requests();
    assert_eq!(requests.iter().filter(|r| r.name == "Sign").count(), 6);
    let largest = requests.iter().map(|r| r.size).max().unwrap();
    assert!(largest <= MAX_REQUEST, "a {largest}-byte request");
    finalize(m);
}
