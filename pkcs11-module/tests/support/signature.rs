//! Signing through the module and checking the result with OpenSSL alone:
//! mechanism parameters, multi-part signing, and verification of PKCS#1,
//! PSS and ECDSA (r||s) signatures against a SubjectPublicKeyInfo.

use cryptoki_sys::*;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};

use super::{sign_update, signature_out, Module};
use crate::p11;

/// CK_RSA_PKCS_PSS_PARAMS as bytes (hashAlg, mgf, sLen).
pub fn pss_params(hash: CK_MECHANISM_TYPE, mgf: CK_ULONG, salt: CK_ULONG) -> Vec<u8> {
    [hash, mgf, salt]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

/// The parameters this file's PSS checks use: SHA-256, MGF1-SHA-256, 32-byte salt.
pub fn pss_sha256_params() -> Vec<u8> {
    pss_params(CKM_SHA256, CKG_MGF1_SHA256, 32)
}

/// A CK_MECHANISM pointing at `param` (NULL when empty).
pub fn mechanism(mech: CK_MECHANISM_TYPE, param: &mut [u8]) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: mech,
        pParameter: if param.is_empty() {
            std::ptr::null_mut()
        } else {
            param.as_mut_ptr() as *mut std::ffi::c_void
        },
        ulParameterLen: param.len() as CK_ULONG,
    }
}

/// C_SignInit with `mech` and its parameter bytes (empty for none).
pub fn sign_init(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    param: &mut [u8],
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    p11!(m, C_SignInit(h, &mut mechanism(mech, param), key))
}

/// C_SignInit, one C_SignUpdate per chunk of `chunk` bytes, C_SignFinal.
pub fn sign_multi_part(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    param: &mut [u8],
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    chunk: usize,
) -> Result<Vec<u8>, CK_RV> {
    let rv = sign_init(m, h, mech, param, key);
    if rv != CKR_OK {
        return Err(rv);
    }
    for part in data.chunks(chunk) {
        let rv = sign_update(m, h, part);
        if rv != CKR_OK {
            return Err(rv);
        }
    }
    signature_out(|sig, len| p11!(m, C_SignFinal(h, sig, len)))
}

/// Whether OpenSSL accepts `sig` over `data` by the key `spki` for one of
/// the hash-and-sign mechanisms CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS
/// (with [`pss_sha256_params`]) or CKM_ECDSA_SHA256 (r||s).
pub fn openssl_verifies(spki: &[u8], mech: CK_MECHANISM_TYPE, data: &[u8], sig: &[u8]) -> bool {
    let key = PKey::public_key_from_der(spki).expect("SubjectPublicKeyInfo");
    let der;
    let sig = match mech {
        CKM_ECDSA_SHA256 => {
            let half = sig.len() / 2;
            let (Ok(r), Ok(s)) = (
                BigNum::from_slice(&sig[..half]),
                BigNum::from_slice(&sig[half..]),
            ) else {
                return false;
            };
            let Ok(Ok(encoded)) = EcdsaSig::from_private_components(r, s).map(|s| s.to_der())
            else {
                return false;
            };
            der = encoded;
            &der[..]
        }
        CKM_SHA256_RSA_PKCS | CKM_SHA256_RSA_PKCS_PSS => sig,
        other => panic!("no OpenSSL check for mechanism {other:#x}"),
    };
    let mut v = Verifier::new(MessageDigest::sha256(), &key).expect("verifier");
    if mech == CKM_SHA256_RSA_PKCS_PSS {
        v.set_rsa_padding(Padding::PKCS1_PSS).expect("PSS");
        v.set_rsa_mgf1_md(MessageDigest::sha256()).expect("MGF1");
        v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32))
            .expect("salt length");
    }
    v.update(data).expect("hashing");
    v.verify(sig).unwrap_or(false)
}
