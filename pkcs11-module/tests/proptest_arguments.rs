//! Property tests for the PKCS#11 argument layer, through the real module
//! (dlopen'd, against the fake agent): sequences of C_* calls with arbitrary
//! handles, templates (types, lengths, NULL values), mechanisms and their
//! parameters, data and output lengths. Every call answers a CK_RV and none
//! panics (a panic would be CKR_GENERAL_ERROR). The parsers behind them
//! (`PssParams::parse`, `SignScheme::parse`, `attribute::get_values`) are
//! also driven directly.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use lanyard_pkcs11::attribute::{self, AttrRequest, AttrValue};
use lanyard_pkcs11::mechanism::{KeyKind, Mechanism, PssParams, SignScheme};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::*;

/// A handle: one the module gave out (by index) or any value.
#[derive(Debug, Clone)]
enum Handle {
    Known(prop::sample::Index),
    Any(CK_ULONG),
}

fn handle() -> impl Strategy<Value = Handle> {
    prop_oneof![
        3 => any::<prop::sample::Index>().prop_map(Handle::Known),
        1 => any::<CK_ULONG>().prop_map(Handle::Any),
    ]
}

fn pick(h: &Handle, known: &[CK_ULONG]) -> CK_ULONG {
    match h {
        Handle::Known(i) if !known.is_empty() => known[i.index(known.len())],
        Handle::Known(_) => 0,
        Handle::Any(v) => *v,
    }
}

/// One template entry: a type, and a value buffer of `len` bytes (or NULL
/// with `len` as the announced length).
#[derive(Debug, Clone)]
struct Attr {
    attr_type: CK_ATTRIBUTE_TYPE,
    value: Option<Vec<u8>>,
    null_len: CK_ULONG,
}

fn attr() -> impl Strategy<Value = Attr> {
    let attr_type = prop_oneof![
        prop::sample::select(vec![
            CKA_CLASS,
            CKA_TOKEN,
            CKA_PRIVATE,
            CKA_LABEL,
            CKA_ID,
            CKA_KEY_TYPE,
            CKA_VALUE,
            CKA_MODULUS,
            CKA_MODULUS_BITS,
            CKA_PUBLIC_EXPONENT,
            CKA_EC_PARAMS,
            CKA_EC_POINT,
            CKA_SIGN,
            CKA_SENSITIVE,
            CKA_PRIVATE_EXPONENT,
            CKA_CERTIFICATE_TYPE,
            CKA_ALLOWED_MECHANISMS,
            CKA_ALWAYS_AUTHENTICATE,
            CKA_SUBJECT,
            CKA_ISSUER,
        ]),
        any::<CK_ULONG>(),
    ];
    (
        attr_type,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        prop_oneof![0..4096 as CK_ULONG, any::<CK_ULONG>()],
    )
        .prop_map(|(attr_type, value, null_len)| Attr {
            attr_type,
            value,
            null_len,
        })
}

/// Raw CK_ATTRIBUTEs over `attrs` (whose buffers must outlive them).
fn raw(attrs: &mut [Attr]) -> Vec<CK_ATTRIBUTE> {
    attrs
        .iter_mut()
        .map(|a| match &mut a.value {
            Some(v) => CK_ATTRIBUTE {
                type_: a.attr_type,
                pValue: v.as_mut_ptr() as *mut c_void,
                ulValueLen: v.len() as CK_ULONG,
            },
            None => CK_ATTRIBUTE {
                type_: a.attr_type,
                pValue: null_mut(),
                ulValueLen: a.null_len,
            },
        })
        .collect()
}

/// A mechanism with a parameter buffer, or NULL with an announced length.
#[derive(Debug, Clone)]
struct Mech {
    mechanism: CK_MECHANISM_TYPE,
    param: Option<Vec<u8>>,
    null_len: CK_ULONG,
}

fn mech() -> impl Strategy<Value = Mech> {
    let pss = (
        prop::sample::select(vec![CKM_SHA256, CKM_SHA384, CKM_SHA512, CKM_SHA_1, 0]),
        prop::sample::select(vec![CKG_MGF1_SHA256, CKG_MGF1_SHA384, CKG_MGF1_SHA1, 0]),
        prop_oneof![0..600 as CK_ULONG, any::<CK_ULONG>()],
    )
        .prop_map(|(h, m, s)| PssParams::encode(h, m, s));
    let mechanism = prop_oneof![
        prop::sample::select(vec![
            CKM_RSA_PKCS,
            CKM_SHA256_RSA_PKCS,
            CKM_RSA_PKCS_PSS,
            CKM_SHA256_RSA_PKCS_PSS,
            CKM_SHA384_RSA_PKCS_PSS,
            CKM_ECDSA,
            CKM_ECDSA_SHA256,
            CKM_ECDSA_SHA384,
            CKM_SHA256,
            CKM_SHA_1,
            CKM_RSA_X_509,
        ]),
        any::<CK_ULONG>(),
    ];
    let param = proptest::option::of(prop_oneof![
        pss,
        proptest::collection::vec(any::<u8>(), 0..64),
    ]);
    (
        mechanism,
        param,
        prop_oneof![Just(0 as CK_ULONG), any::<CK_ULONG>()],
    )
        .prop_map(|(mechanism, param, null_len)| Mech {
            mechanism,
            param,
            null_len,
        })
}

fn raw_mech(m: &mut Mech) -> CK_MECHANISM {
    match &mut m.param {
        Some(p) => CK_MECHANISM {
            mechanism: m.mechanism,
            pParameter: p.as_mut_ptr() as *mut c_void,
            ulParameterLen: p.len() as CK_ULONG,
        },
        None => CK_MECHANISM {
            mechanism: m.mechanism,
            pParameter: null_mut(),
            ulParameterLen: m.null_len,
        },
    }
}

/// One call of the sequence.
#[derive(Debug, Clone)]
enum Op {
    OpenSession {
        slot: Handle,
        flags: CK_FLAGS,
    },
    Login {
        session: Handle,
        user: CK_ULONG,
        pin: Vec<u8>,
    },
    FindObjects {
        session: Handle,
        template: Vec<Attr>,
        max: usize,
    },
    GetAttributes {
        session: Handle,
        object: Handle,
        template: Vec<Attr>,
    },
    GetObjectSize {
        session: Handle,
        object: Handle,
    },
    SignInit {
        session: Handle,
        mech: Mech,
        key: Handle,
    },
    Sign {
        session: Handle,
        data: Vec<u8>,
        out: Option<usize>,
    },
    SignUpdate {
        session: Handle,
        data: Vec<u8>,
    },
    SignFinal {
        session: Handle,
        out: Option<usize>,
    },
    VerifyInit {
        session: Handle,
        mech: Mech,
        key: Handle,
    },
    Verify {
        session: Handle,
        data: Vec<u8>,
        signature: Vec<u8>,
    },
    DigestInit {
        session: Handle,
        mech: Mech,
    },
    Digest {
        session: Handle,
        data: Vec<u8>,
        out: Option<usize>,
    },
    MechanismInfo {
        slot: Handle,
        mechanism: CK_MECHANISM_TYPE,
    },
    SessionInfo {
        session: Handle,
    },
    GenerateRandom {
        session: Handle,
        len: usize,
    },
    Logout {
        session: Handle,
    },
    CloseSession {
        session: Handle,
    },
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn out_len() -> impl Strategy<Value = Option<usize>> {
    proptest::option::of(0usize..600)
}

fn op() -> impl Strategy<Value = Op> {
    let template = || proptest::collection::vec(attr(), 0..6);
    prop_oneof![
        (handle(), any::<CK_FLAGS>()).prop_map(|(slot, flags)| Op::OpenSession { slot, flags }),
        (
            handle(),
            0..3 as CK_ULONG,
            prop_oneof![
                Just(b"123456".to_vec()),
                Just(b"654321".to_vec()),
                bytes(40)
            ]
        )
            .prop_map(|(session, user, pin)| Op::Login { session, user, pin }),
        (handle(), template(), 0usize..20).prop_map(|(session, template, max)| Op::FindObjects {
            session,
            template,
            max
        }),
        (handle(), handle(), template()).prop_map(|(session, object, template)| {
            Op::GetAttributes {
                session,
                object,
                template,
            }
        }),
        (handle(), handle()).prop_map(|(session, object)| Op::GetObjectSize { session, object }),
        (handle(), mech(), handle()).prop_map(|(session, mech, key)| Op::SignInit {
            session,
            mech,
            key
        }),
        (handle(), bytes(300), out_len()).prop_map(|(session, data, out)| Op::Sign {
            session,
            data,
            out
        }),
        (handle(), bytes(300)).prop_map(|(session, data)| Op::SignUpdate { session, data }),
        (handle(), out_len()).prop_map(|(session, out)| Op::SignFinal { session, out }),
        (handle(), mech(), handle()).prop_map(|(session, mech, key)| Op::VerifyInit {
            session,
            mech,
            key
        }),
        (handle(), bytes(100), bytes(300)).prop_map(|(session, data, signature)| Op::Verify {
            session,
            data,
            signature
        }),
        (handle(), mech()).prop_map(|(session, mech)| Op::DigestInit { session, mech }),
        (handle(), bytes(300), out_len()).prop_map(|(session, data, out)| Op::Digest {
            session,
            data,
            out
        }),
        (handle(), any::<CK_MECHANISM_TYPE>())
            .prop_map(|(slot, mechanism)| Op::MechanismInfo { slot, mechanism }),
        handle().prop_map(|session| Op::SessionInfo { session }),
        (handle(), 0usize..300).prop_map(|(session, len)| Op::GenerateRandom { session, len }),
        handle().prop_map(|session| Op::Logout { session }),
        handle().prop_map(|session| Op::CloseSession { session }),
    ]
}

/// Handles the module gave out so far.
#[derive(Default)]
struct Known {
    slots: Vec<CK_ULONG>,
    sessions: Vec<CK_ULONG>,
    objects: Vec<CK_ULONG>,
}

/// Calls `f(out, &mut len)` with an output buffer of `cap` bytes, or NULL.
fn with_out(cap: Option<usize>, f: impl FnOnce(*mut u8, *mut CK_ULONG) -> CK_RV) -> CK_RV {
    let mut buf = vec![0u8; cap.unwrap_or(0)];
    let mut len = cap.unwrap_or(0) as CK_ULONG;
    let ptr = if cap.is_some() {
        buf.as_mut_ptr()
    } else {
        null_mut()
    };
    f(ptr, &mut len)
}

fn run(m: &Module, k: &mut Known, op: Op) -> CK_RV {
    let s = |h: &Handle, k: &Known| pick(h, &k.sessions);
    let o = |h: &Handle, k: &Known| pick(h, &k.objects);
    match op {
        Op::OpenSession { slot, flags } => {
            let mut h = 0;
            let rv = p11!(
                m,
                C_OpenSession(pick(&slot, &k.slots), flags, null_mut(), None, &mut h)
            );
            if rv == CKR_OK {
                k.sessions.push(h);
            }
            rv
        }
        Op::Login { session, user, pin } => p11!(
            m,
            C_Login(
                s(&session, k),
                user,
                pin.as_ptr() as *mut u8,
                pin.len() as CK_ULONG
            )
        ),
        Op::FindObjects {
            session,
            mut template,
            max,
        } => {
            let h = s(&session, k);
            let mut t = raw(&mut template);
            let rv = p11!(m, C_FindObjectsInit(h, t.as_mut_ptr(), t.len() as CK_ULONG));
            if rv != CKR_OK {
                return rv;
            }
            let mut found = vec![0; max];
            let mut n = 0;
            let rv = p11!(
                m,
                C_FindObjects(h, found.as_mut_ptr(), max as CK_ULONG, &mut n)
            );
            if rv == CKR_OK {
                k.objects.extend_from_slice(&found[..(n as usize).min(max)]);
            }
            let end = p11!(m, C_FindObjectsFinal(h));
            if rv == CKR_OK {
                end
            } else {
                rv
            }
        }
        Op::GetAttributes {
            session,
            object,
            mut template,
        } => {
            let mut t = raw(&mut template);
            p11!(
                m,
                C_GetAttributeValue(
                    s(&session, k),
                    o(&object, k),
                    t.as_mut_ptr(),
                    t.len() as CK_ULONG
                )
            )
        }
        Op::GetObjectSize { session, object } => {
            let mut size = 0;
            p11!(m, C_GetObjectSize(s(&session, k), o(&object, k), &mut size))
        }
        Op::SignInit {
            session,
            mut mech,
            key,
        } => {
            let mut raw = raw_mech(&mut mech);
            p11!(m, C_SignInit(s(&session, k), &mut raw, o(&key, k)))
        }
        Op::Sign { session, data, out } => with_out(out, |p, len| {
            p11!(
                m,
                C_Sign(
                    s(&session, k),
                    data.as_ptr() as *mut u8,
                    data.len() as CK_ULONG,
                    p,
                    len
                )
            )
        }),
        Op::SignUpdate { session, data } => p11!(
            m,
            C_SignUpdate(
                s(&session, k),
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG
            )
        ),
        Op::SignFinal { session, out } => {
            with_out(out, |p, len| p11!(m, C_SignFinal(s(&session, k), p, len)))
        }
        Op::VerifyInit {
            session,
            mut mech,
            key,
        } => {
            let mut raw = raw_mech(&mut mech);
            p11!(m, C_VerifyInit(s(&session, k), &mut raw, o(&key, k)))
        }
        Op::Verify {
            session,
            data,
            signature,
        } => p11!(
            m,
            C_Verify(
                s(&session, k),
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                signature.as_ptr() as *mut u8,
                signature.len() as CK_ULONG
            )
        ),
        Op::DigestInit { session, mut mech } => {
            let mut raw = raw_mech(&mut mech);
            p11!(m, C_DigestInit(s(&session, k), &mut raw))
        }
        Op::Digest { session, data, out } => with_out(out, |p, len| {
            p11!(
                m,
                C_Digest(
                    s(&session, k),
                    data.as_ptr() as *mut u8,
                    data.len() as CK_ULONG,
                    p,
                    len
                )
            )
        }),
        Op::MechanismInfo { slot, mechanism } => {
            let mut info: CK_MECHANISM_INFO = CK_MECHANISM_INFO {
                ulMinKeySize: 0,
                ulMaxKeySize: 0,
                flags: 0,
            };
            p11!(
                m,
                C_GetMechanismInfo(pick(&slot, &k.slots), mechanism, &mut info)
            )
        }
        Op::SessionInfo { session } => {
            // SAFETY (test): a plain C struct.
            let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
            p11!(m, C_GetSessionInfo(s(&session, k), &mut info))
        }
        Op::GenerateRandom { session, len } => {
            let mut buf = vec![0u8; len];
            p11!(
                m,
                C_GenerateRandom(s(&session, k), buf.as_mut_ptr(), len as CK_ULONG)
            )
        }
        Op::Logout { session } => p11!(m, C_Logout(s(&session, k))),
        Op::CloseSession { session } => p11!(m, C_CloseSession(s(&session, k))),
    }
}

#[test]
fn arbitrary_call_sequences_answer_a_ck_rv_and_never_panic() {
    let (_g, m, _agent) = setup();
    let mut runner = TestRunner::new(Config::with_cases(128));
    let result = runner.run(&proptest::collection::vec(op(), 1..24), |ops| {
        let mut k = Known {
            slots: slot_list(m, false),
            ..Known::default()
        };
        for op in ops {
            let what = format!("{op:?}");
            let rv = run(m, &mut k, op);
            prop_assert_ne!(rv, CKR_GENERAL_ERROR, "{}", what);
        }
        prop_assert_eq!(p11!(m, C_CloseAllSessions(k.slots[0])), CKR_OK);
        prop_assert_eq!(p11!(m, C_CloseAllSessions(k.slots[1])), CKR_OK);
        Ok(())
    });
    finalize(m);
    result.unwrap();
}

proptest! {
    #[test]
    fn pss_parameters_parse_or_are_invalid(
        param in prop_oneof![
            bytes(40),
            (any::<CK_ULONG>(), any::<CK_ULONG>(), any::<CK_ULONG>())
                .prop_map(|(h, m, s)| PssParams::encode(h, m, s)),
        ],
        modulus_bits in prop_oneof![Just(2048usize), Just(3072), Just(4096), any::<usize>()],
    ) {
        if let Ok(p) = PssParams::parse(&param, modulus_bits) {
            prop_assert!(p.salt_len + p.hash.output_len() + 2 <= modulus_bits.div_ceil(8));
        }
    }

    #[test]
    fn sign_schemes_parse_or_are_refused(
        mechanism in any::<CK_MECHANISM_TYPE>(),
        known in prop::sample::select(vec![
            CKM_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS,
            CKM_ECDSA, CKM_ECDSA_SHA256,
        ]),
        use_known in any::<bool>(),
        param in bytes(40),
        rsa in any::<bool>(),
        key_bits in prop_oneof![Just(2048usize), Just(256), any::<usize>()],
        input in bytes(600),
        signature_len in 0usize..1024,
    ) {
        let mut mech = Mechanism::new(if use_known { known } else { mechanism });
        mech.param = param;
        let kind = if rsa { KeyKind::Rsa } else { KeyKind::Ec };
        if let Ok(scheme) = SignScheme::parse(&mech, kind, key_bits) {
            let _ = scheme.raw_input_limit(signature_len);
            let _ = scheme.signing_input(input, signature_len);
        }
    }

    #[test]
    fn get_values_answers_every_entry(
        template in proptest::collection::vec(
            (prop_oneof![0..8 as CK_ULONG, any::<CK_ULONG>()], proptest::option::of(0usize..64)),
            0..12,
        ),
    ) {
        let values = [
            AttrValue::Bytes(vec![1; 8]),
            AttrValue::Sensitive,
            AttrValue::Bytes(Vec::new()),
            AttrValue::Bytes(vec![2; 40]),
        ];
        let template: Vec<AttrRequest> = template
            .into_iter()
            .map(|(attr_type, capacity)| AttrRequest { attr_type, capacity })
            .collect();
        let (results, _) = attribute::get_values(|t| values.get(t as usize), &template);
        prop_assert_eq!(results.len(), template.len());
    }
}
