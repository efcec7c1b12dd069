//! The size-query protocol (PKCS#11 3.0 section 5.2) on every
//! variable-length output: a NULL buffer returns the length with CKR_OK, a
//! buffer too small returns CKR_BUFFER_TOO_SMALL with the length, and the
//! operation is still active after both (the final call with room then
//! completes it): C_Sign, C_SignFinal, C_Digest, C_DigestFinal, the lists
//! (slots, mechanisms, interfaces), C_GetAttributeValue, and C_FindObjects
//! handing out its results a few at a time.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use support::signature::{openssl_verifies, sign_init};
use support::*;

/// What a byte buffer holds before the call: any change is a write.
const UNTOUCHED: u8 = 0xee;

/// Runs the protocol on a function writing bytes through (buffer, length):
/// a NULL buffer, a buffer one byte short, a non-NULL zero-length buffer,
/// then one with room to spare. Returns the output.
fn bytes_protocol(what: &str, mut call: impl FnMut(*mut u8, &mut CK_ULONG) -> CK_RV) -> Vec<u8> {
    let mut len: CK_ULONG = 12345;
    assert_eq!(call(null_mut(), &mut len), CKR_OK, "{what}: NULL buffer");
    let needed = len;
    assert!(needed > 0 && needed < 12345, "{what}: length {needed}");
    for short in [needed - 1, 0] {
        let mut buf = vec![UNTOUCHED; short as usize + 1];
        let mut len = short;
        assert_eq!(
            call(buf.as_mut_ptr(), &mut len),
            CKR_BUFFER_TOO_SMALL,
            "{what}: {short}-byte buffer"
        );
        assert_eq!(len, needed, "{what}: length after BUFFER_TOO_SMALL");
        assert!(
            buf.iter().all(|b| *b == UNTOUCHED),
            "{what}: wrote into a buffer too small"
        );
    }
    let mut buf = vec![UNTOUCHED; needed as usize + 100];
    let mut len = buf.len() as CK_ULONG;
    assert_eq!(
        call(buf.as_mut_ptr(), &mut len),
        CKR_OK,
        "{what}: with room"
    );
    assert_eq!(len, needed, "{what}: length written");
    assert!(buf[needed as usize..].iter().all(|b| *b == UNTOUCHED));
    buf.truncate(needed as usize);
    buf
}

/// The same for functions filling an array of `T` (slot ids, mechanisms,
/// interfaces) through (array, count).
fn list_protocol<T: Copy>(
    what: &str,
    zero: T,
    mut call: impl FnMut(*mut T, &mut CK_ULONG) -> CK_RV,
) -> Vec<T> {
    let mut n: CK_ULONG = 12345;
    assert_eq!(call(null_mut(), &mut n), CKR_OK, "{what}: NULL list");
    let needed = n;
    assert!(needed > 0 && needed < 12345, "{what}: count {needed}");
    let mut short = vec![zero; needed as usize - 1];
    let mut n = needed - 1;
    assert_eq!(
        call(short.as_mut_ptr(), &mut n),
        CKR_BUFFER_TOO_SMALL,
        "{what}: short list"
    );
    assert_eq!(n, needed, "{what}: count after BUFFER_TOO_SMALL");
    let mut list = vec![zero; needed as usize + 3];
    let mut n = list.len() as CK_ULONG;
    assert_eq!(call(list.as_mut_ptr(), &mut n), CKR_OK, "{what}: with room");
    assert_eq!(n, needed, "{what}: count written");
    list.truncate(needed as usize);
    list
}

const DOCUMENT: &[u8] = b"discharge letter, ward 7";

#[test]
fn c_sign_and_c_sign_final() {
    let (_g, m, agent) = setup();
    for (slot, pin, mech, len) in [
        (0, "123456", CKM_SHA256_RSA_PKCS, 256),
        (1, "654321", CKM_ECDSA_SHA256, 64),
    ] {
        let h = open_session(m, slot, false);
        assert_eq!(login(m, h, pin), CKR_OK);
        let key = private_key(m, h);
        let spki = agent.public_key_der(slot as usize);
        let signs = agent.count("Sign");

        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        let sig = bytes_protocol("C_Sign", |out, out_len| {
            p11!(
                m,
                C_Sign(
                    h,
                    DOCUMENT.as_ptr() as *mut u8,
                    DOCUMENT.len() as CK_ULONG,
                    out,
                    out_len
                )
            )
        });
        assert_eq!(sig.len(), len);
        assert!(openssl_verifies(&spki, mech, DOCUMENT, &sig));
        // Length queries and short buffers are answered in the module.
        assert_eq!(agent.count("Sign"), signs + 1);

        assert_eq!(sign_init(m, h, mech, &mut [], key), CKR_OK);
        for part in DOCUMENT.chunks(5) {
            assert_eq!(sign_update(m, h, part), CKR_OK);
        }
        let sig = bytes_protocol("C_SignFinal", |out, out_len| {
            p11!(m, C_SignFinal(h, out, out_len))
        });
        assert!(openssl_verifies(&spki, mech, DOCUMENT, &sig));
        assert_eq!(agent.count("Sign"), signs + 2);
        // The successful call ended the operation.
        assert_eq!(
            sign_initialised(m, h, DOCUMENT),
            Err(CKR_OPERATION_NOT_INITIALIZED)
        );
    }
    finalize(m);
}

#[test]
fn c_digest_and_c_digest_final() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    let mut sha384 = CK_MECHANISM {
        mechanism: CKM_SHA384,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(p11!(m, C_DigestInit(h, &mut sha384)), CKR_OK);
    let digest = bytes_protocol("C_Digest", |out, out_len| {
        p11!(
            m,
            C_Digest(
                h,
                DOCUMENT.as_ptr() as *mut u8,
                DOCUMENT.len() as CK_ULONG,
                out,
                out_len
            )
        )
    });
    assert_eq!(digest, openssl::sha::sha384(DOCUMENT));

    assert_eq!(p11!(m, C_DigestInit(h, &mut sha384)), CKR_OK);
    for part in DOCUMENT.chunks(7) {
        assert_eq!(
            p11!(
                m,
                C_DigestUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    let digest = bytes_protocol("C_DigestFinal", |out, out_len| {
        p11!(m, C_DigestFinal(h, out, out_len))
    });
    assert_eq!(digest, openssl::sha::sha384(DOCUMENT));
    let mut len: CK_ULONG = 0;
    assert_eq!(
        p11!(m, C_DigestFinal(h, null_mut(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    finalize(m);
}

#[test]
fn c_get_attribute_value() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    let cert = find(m, h, CKO_CERTIFICATE)[0];
    let value = bytes_protocol("C_GetAttributeValue", |out, out_len| {
        let mut a = CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: out as *mut c_void,
            ulValueLen: *out_len,
        };
        let rv = p11!(m, C_GetAttributeValue(h, cert, &mut a, 1));
        // A too-small buffer reports CK_UNAVAILABLE_INFORMATION (PKCS#11
        // 3.0 5.7.5), not the length; the length comes from a NULL query.
        if rv == CKR_BUFFER_TOO_SMALL {
            assert_eq!(a.ulValueLen, lanyard_pkcs11::CK_UNAVAILABLE_INFORMATION);
            let mut query = CK_ATTRIBUTE {
                pValue: null_mut(),
                ..a
            };
            assert_eq!(p11!(m, C_GetAttributeValue(h, cert, &mut query, 1)), CKR_OK);
            *out_len = query.ulValueLen;
        } else {
            *out_len = a.ulValueLen;
        }
        rv
    });
    assert_eq!(value, agent.card_info(0).certificate_der);
    finalize(m);
}

#[test]
fn slot_mechanism_and_interface_lists() {
    let (_g, m, _agent) = setup();
    for present in [CK_FALSE, CK_TRUE] {
        let slots = list_protocol("C_GetSlotList", 99, |list, n| {
            p11!(m, C_GetSlotList(present, list, n))
        });
        assert_eq!(slots, vec![0, 1]);
    }
    let rsa = list_protocol("C_GetMechanismList", 0, |list, n| {
        p11!(m, C_GetMechanismList(0, list, n))
    });
    assert!(rsa.contains(&CKM_SHA256_RSA_PKCS_PSS) && !rsa.contains(&CKM_ECDSA));
    let ec = list_protocol("C_GetMechanismList", 0, |list, n| {
        p11!(m, C_GetMechanismList(1, list, n))
    });
    assert!(ec.contains(&CKM_ECDSA_SHA256) && !ec.contains(&CKM_RSA_PKCS));
    let zero: CK_INTERFACE = unsafe { std::mem::zeroed() };
    let ifaces = list_protocol("C_GetInterfaceList", zero, |list, n| {
        p11!(m, C_GetInterfaceList(list, n))
    });
    assert_eq!(ifaces.len(), 2);
    // No operation state to size: the function is not offered at all.
    let h = open_session(m, 0, false);
    let mut len: CK_ULONG = 0;
    assert_eq!(
        p11!(m, C_GetOperationState(h, null_mut(), &mut len)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    finalize(m);
}

#[test]
fn c_find_objects_hands_out_results_a_few_at_a_time() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    // Leaf certificate, public key, private key, two CA certificates.
    assert_eq!(p11!(m, C_FindObjectsInit(h, null_mut(), 0)), CKR_OK);
    let mut found = Vec::new();
    let mut out = [0 as CK_OBJECT_HANDLE; 4];
    let mut n: CK_ULONG = 99;
    // Room for none: none returned, nothing lost.
    assert_eq!(
        p11!(m, C_FindObjects(h, out.as_mut_ptr(), 0, &mut n)),
        CKR_OK
    );
    assert_eq!(n, 0);
    for max in [2, 1, 4, 4] {
        let mut n: CK_ULONG = 99;
        assert_eq!(
            p11!(m, C_FindObjects(h, out.as_mut_ptr(), max, &mut n)),
            CKR_OK
        );
        assert!(n <= max);
        found.extend_from_slice(&out[..n as usize]);
    }
    // Exhausted: still active, returning nothing, until C_FindObjectsFinal.
    let mut n: CK_ULONG = 99;
    assert_eq!(
        p11!(m, C_FindObjects(h, out.as_mut_ptr(), 4, &mut n)),
        CKR_OK
    );
    assert_eq!(n, 0);
    assert_eq!(p11!(m, C_FindObjectsFinal(h)), CKR_OK);
    found.sort_unstable();
    found.dedup();
    assert_eq!(found.len(), 5);
    finalize(m);
}
