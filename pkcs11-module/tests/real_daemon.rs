//! Optional checks against a running lanyardd with enrolled cards (ignored by
//! default; the workspace's system tests own the real end-to-end runs):
//!   LANYARD_AGENT_SOCK=... LANYARD_TEST_PINS=slot:pin,slot:pin \
//!   cargo test --release -p lanyard-pkcs11 --test real_daemon -- --ignored

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use support::*;

fn pins() -> Vec<(CK_SLOT_ID, String)> {
    std::env::var("LANYARD_TEST_PINS")
        .expect("LANYARD_TEST_PINS=slot:pin,...")
        .split(',')
        .map(|p| {
            let (s, pin) = p.split_once(':').expect("slot:pin");
            (s.parse().expect("slot number"), pin.to_string())
        })
        .collect()
}

fn verify(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    param: &mut [u8],
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    sig: &mut [u8],
) -> CK_RV {
    let mut mech = CK_MECHANISM {
        mechanism: mech,
        pParameter: if param.is_empty() {
            null_mut()
        } else {
            param.as_mut_ptr() as *mut c_void
        },
        ulParameterLen: param.len() as CK_ULONG,
    };
    let rv = p11!(m, C_VerifyInit(h, &mut mech, key));
    if rv != CKR_OK {
        return rv;
    }
    p11!(
        m,
        C_Verify(
            h,
            data.as_ptr() as *mut u8,
            data.len() as CK_ULONG,
            sig.as_mut_ptr(),
            sig.len() as CK_ULONG
        )
    )
}

#[test]
#[ignore = "needs a running lanyardd with enrolled cards"]
fn every_listed_mechanism_signs_and_verifies() {
    let _g = serial();
    let m = module();
    assert_eq!(p11!(m, C_Initialize(null_mut())), CKR_OK);
    for (slot, pin) in pins() {
        let h = open_session(m, slot, false);
        assert_eq!(login(m, h, &pin), CKR_OK);
        // The daemon's view of this application's login agrees with ours.
        let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(p11!(m, C_GetTokenInfo(slot, &mut t)), CKR_OK);
        let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(p11!(m, C_GetSessionInfo(h, &mut info)), CKR_OK);
        assert_eq!(info.state, CKS_RO_USER_FUNCTIONS, "slot {slot}");
        let key = find(m, h, CKO_PRIVATE_KEY)[0];
        let pubkey = find(m, h, CKO_PUBLIC_KEY)[0];
        let mut n = 0;
        assert_eq!(
            p11!(m, C_GetMechanismList(slot, null_mut(), &mut n)),
            CKR_OK
        );
        let mut mechs = vec![0; n as usize];
        assert_eq!(
            p11!(m, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut n)),
            CKR_OK
        );
        let doc = b"a document to sign";
        let sha256 = openssl::sha::sha256(doc);
        for mech in mechs {
            let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
            assert_eq!(p11!(m, C_GetMechanismInfo(slot, mech, &mut info)), CKR_OK);
            if info.flags & CKF_SIGN == 0 {
                continue;
            }
            let (data, mut param): (Vec<u8>, Vec<u8>) = match mech {
                CKM_RSA_PKCS => (vec![0x5a; 36], vec![]),
                CKM_RSA_PKCS_PSS => (
                    sha256.to_vec(),
                    [CKM_SHA256, CKG_MGF1_SHA256, 10]
                        .iter()
                        .flat_map(|v: &CK_ULONG| v.to_ne_bytes())
                        .collect(),
                ),
                CKM_SHA256_RSA_PKCS_PSS | CKM_SHA384_RSA_PKCS_PSS | CKM_SHA512_RSA_PKCS_PSS => {
                    let (hash, mgf, len) = match mech {
                        CKM_SHA256_RSA_PKCS_PSS => (CKM_SHA256, CKG_MGF1_SHA256, 32),
                        CKM_SHA384_RSA_PKCS_PSS => (CKM_SHA384, CKG_MGF1_SHA384, 48),
                        _ => (CKM_SHA512, CKG_MGF1_SHA512, 64),
                    };
                    (
                        doc.to_vec(),
                        [hash, mgf, len]
                            .iter()
                            .flat_map(|v: &CK_ULONG| v.to_ne_bytes())
                            .collect(),
                    )
                }
                CKM_ECDSA => (sha256.to_vec(), vec![]),
                _ => (doc.to_vec(), vec![]),
            };
            let mut sig = sign(m, h, mech, &mut param, key, &data)
                .unwrap_or_else(|rv| panic!("slot {slot} mechanism {mech:#x}: C_Sign {rv:#x}"));
            let rv = verify(m, h, mech, &mut param, pubkey, &data, &mut sig);
            assert_eq!(rv, CKR_OK, "slot {slot} mechanism {mech:#x}: C_Verify");
        }
        assert_eq!(p11!(m, C_CloseSession(h)), CKR_OK);
    }
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}

#[test]
#[ignore = "needs a running lanyardd with enrolled cards; prints signatures per second"]
fn sign_throughput() {
    let _g = serial();
    let m = module();
    assert_eq!(p11!(m, C_Initialize(null_mut())), CKR_OK);
    for (slot, pin) in pins() {
        let h = open_session(m, slot, false);
        assert_eq!(login(m, h, &pin), CKR_OK);
        let key = find(m, h, CKO_PRIVATE_KEY)[0];
        let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(p11!(m, C_GetTokenInfo(slot, &mut t)), CKR_OK);
        let mechanism = if ulong_attr(m, h, key, CKA_KEY_TYPE) == CKK_RSA {
            CKM_SHA256_RSA_PKCS
        } else {
            CKM_ECDSA_SHA256
        };
        for threads in [1usize, 4] {
            let per_thread = 500;
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        let h = open_session(m, slot, false);
                        for i in 0..per_thread {
                            let doc = format!("document {i}");
                            sign(m, h, mechanism, &mut [], key, doc.as_bytes()).expect("sign");
                        }
                    });
                }
            });
            let rate = (threads * per_thread) as f64 / start.elapsed().as_secs_f64();
            println!(
                "slot {slot} mechanism {mechanism:#x} threads {threads}: {rate:.0} signatures/s"
            );
        }
    }
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}

fn ulong_attr(
    m: &Module,
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> CK_ULONG {
    CK_ULONG::from_ne_bytes(attribute(m, h, obj, t).try_into().expect("CK_ULONG"))
}
