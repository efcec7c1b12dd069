//! C_GetAttributeValue per PKCS#11 3.0 section 5.7.5: unknown attributes
//! (ATTRIBUTE_TYPE_INVALID), sensitive ones (ATTRIBUTE_SENSITIVE: the RSA
//! private exponent and primes, the EC private value) and too-small buffers
//! (BUFFER_TOO_SMALL) each set that entry's ulValueLen to
//! CK_UNAVAILABLE_INFORMATION and leave its buffer alone, every other entry
//! is still filled, and when several apply the module always answers
//! SENSITIVE, else TYPE_INVALID, else BUFFER_TOO_SMALL.

mod support;

use std::ffi::c_void;

use cryptoki_sys::*;
use support::*;

const UNAVAILABLE: CK_ULONG = lanyard_pkcs11::CK_UNAVAILABLE_INFORMATION;
/// A vendor-defined attribute type no object has.
const UNKNOWN: CK_ATTRIBUTE_TYPE = CKA_VENDOR_DEFINED | 0x4c59;
/// What buffers hold before the call: any change is a write.
const UNTOUCHED: u8 = 0xee;

/// One template entry: NULL pValue (`None`) or a buffer of that capacity.
type Ask = (CK_ATTRIBUTE_TYPE, Option<usize>);

/// What came back for one entry: ulValueLen and the buffer (if any).
#[derive(Debug, PartialEq, Eq)]
struct Got {
    len: CK_ULONG,
    buf: Option<Vec<u8>>,
}

/// C_GetAttributeValue over `asks` in one call.
fn get(m: &Module, h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, asks: &[Ask]) -> (CK_RV, Vec<Got>) {
    let mut bufs: Vec<Option<Vec<u8>>> = asks
        .iter()
        .map(|(_, cap)| cap.map(|n| vec![UNTOUCHED; n]))
        .collect();
    let mut template: Vec<CK_ATTRIBUTE> = asks
        .iter()
        .zip(bufs.iter_mut())
        .map(|((t, cap), buf)| CK_ATTRIBUTE {
            type_: *t,
            pValue: buf
                .as_mut()
                .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr() as *mut c_void),
            ulValueLen: cap.unwrap_or(0) as CK_ULONG,
        })
        .collect();
    let rv = p11!(
        m,
        C_GetAttributeValue(h, obj, template.as_mut_ptr(), template.len() as CK_ULONG)
    );
    let got = template
        .iter()
        .zip(bufs)
        .map(|(a, buf)| Got {
            len: a.ulValueLen,
            buf,
        })
        .collect();
    (rv, got)
}

/// An entry whose value was copied out: its length and bytes.
fn value(bytes: &[u8], capacity: usize) -> Got {
    let mut buf = bytes.to_vec();
    buf.resize(capacity, UNTOUCHED);
    Got {
        len: bytes.len() as CK_ULONG,
        buf: Some(buf),
    }
}

/// An entry marked unavailable, its buffer (of `capacity`, if any) untouched.
fn unavailable(capacity: Option<usize>) -> Got {
    Got {
        len: UNAVAILABLE,
        buf: capacity.map(|n| vec![UNTOUCHED; n]),
    }
}

fn length(n: usize) -> Got {
    Got {
        len: n as CK_ULONG,
        buf: None,
    }
}

#[test]
fn each_rule_alone_and_the_other_entries_still_filled() {
    let (_g, m, agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let card = agent.card_info(0);
    let label = b"Dr Ada Smith".to_vec();
    let modulus = card.rsa_modulus.clone();
    let sign_true = vec![CK_TRUE];

    // Nothing wrong: lengths for NULL, values for big enough buffers.
    let asks = [
        (CKA_LABEL, None),
        (CKA_MODULUS, Some(512)),
        (CKA_SIGN, Some(1)),
    ];
    let (rv, got) = get(m, h, key, &asks);
    assert_eq!(rv, CKR_OK);
    assert_eq!(
        got,
        vec![length(12), value(&modulus, 512), value(&sign_true, 1)]
    );

    // An attribute the object does not have.
    let asks = [
        (CKA_LABEL, Some(12)),
        (UNKNOWN, Some(8)),
        (CKA_SIGN, Some(1)),
    ];
    let (rv, got) = get(m, h, key, &asks);
    assert_eq!(rv, CKR_ATTRIBUTE_TYPE_INVALID);
    assert_eq!(
        got,
        vec![
            value(&label, 12),
            unavailable(Some(8)),
            value(&sign_true, 1)
        ]
    );
    // ... also as a length query, and attributes of other key types.
    for missing in [UNKNOWN, CKA_EC_POINT, CKA_VALUE, CKA_CERTIFICATE_TYPE] {
        let (rv, got) = get(m, h, key, &[(missing, None), (CKA_LABEL, None)]);
        assert_eq!(rv, CKR_ATTRIBUTE_TYPE_INVALID, "{missing:#x}");
        assert_eq!(got, vec![unavailable(None), length(12)]);
    }

    // Private key material: sensitive, with or without a buffer.
    for secret in [
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
        CKA_EXPONENT_2,
        CKA_COEFFICIENT,
    ] {
        for capacity in [None, Some(1024)] {
            let (rv, got) = get(m, h, key, &[(CKA_LABEL, None), (secret, capacity)]);
            assert_eq!(rv, CKR_ATTRIBUTE_SENSITIVE, "{secret:#x}");
            assert_eq!(got, vec![length(12), unavailable(capacity)]);
        }
    }

    // A buffer too small: BUFFER_TOO_SMALL, unavailable, nothing written.
    let asks = [
        (CKA_MODULUS, Some(255)),
        (CKA_LABEL, Some(64)),
        (CKA_ID, None),
    ];
    let (rv, got) = get(m, h, key, &asks);
    assert_eq!(rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(
        got,
        vec![
            unavailable(Some(255)),
            value(&label, 64),
            length(card.key_id.len())
        ]
    );
    // A zero-length buffer is a buffer too (not a length query).
    let (rv, got) = get(m, h, key, &[(CKA_LABEL, Some(0))]);
    assert_eq!(rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(got, vec![unavailable(Some(0))]);
    finalize(m);
}

#[test]
fn the_ec_private_value_is_sensitive() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 1, false);
    assert_eq!(login(m, h, "654321"), CKR_OK);
    let key = private_key(m, h);
    let (rv, got) = get(m, h, key, &[(CKA_VALUE, Some(32)), (CKA_KEY_TYPE, Some(8))]);
    assert_eq!(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(
        got,
        vec![unavailable(Some(32)), value(&CKK_EC.to_ne_bytes(), 8)]
    );
    // The key says so itself.
    let (rv, got) = get(
        m,
        h,
        key,
        &[
            (CKA_SENSITIVE, Some(1)),
            (CKA_EXTRACTABLE, Some(1)),
            (CKA_ALWAYS_SENSITIVE, Some(1)),
            (CKA_NEVER_EXTRACTABLE, Some(1)),
        ],
    );
    assert_eq!(rv, CKR_OK);
    assert_eq!(
        got,
        vec![
            value(&[CK_TRUE], 1),
            value(&[CK_FALSE], 1),
            value(&[CK_TRUE], 1),
            value(&[CK_TRUE], 1)
        ]
    );
    // The certificate's CKA_VALUE is no secret.
    let cert = find(m, h, CKO_CERTIFICATE)[0];
    let (rv, got) = get(m, h, cert, &[(CKA_VALUE, None)]);
    assert_eq!(rv, CKR_OK);
    assert!(got[0].len > 100 && got[0].len != UNAVAILABLE);
    finalize(m);
}

#[test]
fn when_several_rules_apply_sensitive_then_type_invalid_then_buffer_too_small() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let too_small: Ask = (CKA_MODULUS, Some(8));
    let unknown: Ask = (UNKNOWN, None);
    let sensitive: Ask = (CKA_PRIVATE_EXPONENT, None);
    let fine: Ask = (CKA_LABEL, Some(12));
    for (asks, want) in [
        (vec![too_small, unknown, fine], CKR_ATTRIBUTE_TYPE_INVALID),
        (vec![unknown, too_small, fine], CKR_ATTRIBUTE_TYPE_INVALID),
        (vec![too_small, sensitive, fine], CKR_ATTRIBUTE_SENSITIVE),
        (vec![sensitive, too_small, fine], CKR_ATTRIBUTE_SENSITIVE),
        (vec![unknown, sensitive, fine], CKR_ATTRIBUTE_SENSITIVE),
        (vec![sensitive, unknown, fine], CKR_ATTRIBUTE_SENSITIVE),
        (
            vec![too_small, unknown, sensitive, fine],
            CKR_ATTRIBUTE_SENSITIVE,
        ),
        (
            vec![fine, sensitive, unknown, too_small],
            CKR_ATTRIBUTE_SENSITIVE,
        ),
    ] {
        let (rv, got) = get(m, h, key, &asks);
        assert_eq!(rv, want, "{asks:?}");
        // Every rule still marks its own entry; the good one is filled.
        for (ask, got) in asks.iter().zip(&got) {
            if *ask == fine {
                assert_eq!(*got, value(b"Dr Ada Smith", 12));
            } else {
                assert_eq!(*got, unavailable(ask.1), "{ask:?}");
            }
        }
    }
    finalize(m);
}
