//! Verification (PKCS#11 3.0 5.14) in software: the public key is known to
//! the module (CKA_PUBLIC_KEY_INFO), so OpenSSL checks signatures here
//! without a daemon round trip.

use cryptoki_sys::*;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;

use crate::error::{Pkcs11Error, Result};
use crate::fns::{with_fresh_session, with_session};
use crate::mechanism::{Mechanism, PssParams, SignScheme};
use crate::objects::ObjectKind;
use crate::session::{begin, update, KeyOp, VerifyOp};

/// C_VerifyInit on the public key object; `None` mechanism cancels.
pub fn verify_init(
    session: CK_SESSION_HANDLE,
    mech: Option<&Mechanism>,
    key: CK_OBJECT_HANDLE,
) -> Result<()> {
    with_fresh_session(session, |lib, entry, s| {
        let Some(mech) = begin(&mut s.verify, mech)? else {
            return Ok(());
        };
        let (token, logged_in) = lib.session_token(entry)?;
        let role = match token.object(key).map(|o| (o.kind, o.role)) {
            Some((ObjectKind::PublicKey, role)) => role,
            // The private key is only visible after login; it does not verify.
            Some((ObjectKind::PrivateKey, _)) if logged_in => {
                return Err(Pkcs11Error::KeyFunctionNotPermitted)
            }
            _ => return Err(Pkcs11Error::KeyHandleInvalid),
        };
        let public_key = token
            .public_key_for(role)
            .ok_or(Pkcs11Error::KeyHandleInvalid)?
            .clone();
        let scheme = SignScheme::parse(mech, token.kind, token.key_bits)?;
        s.verify = Some(VerifyOp {
            public_key,
            op: KeyOp::new(scheme, token.signature_len)?,
        });
        Ok(())
    })
}

/// C_Verify (single part).
pub fn verify(session: CK_SESSION_HANDLE, data: &[u8], signature: &[u8]) -> Result<()> {
    with_session(session, |_, _, s| {
        let active = s
            .verify
            .as_ref()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        if active.op.multi_part {
            // A single-part call cannot finish a multi-part operation; like
            // every failed C_Sign/C_Verify/C_Digest it ends the operation.
            s.verify = None;
            return Err(Pkcs11Error::OperationActive);
        }
        let op = s
            .verify
            .take()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        let input = op.op.single_input(data)?;
        check(&op, input, signature)
    })
}

/// C_VerifyUpdate.
pub fn verify_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
    with_session(session, |_, _, s| update(&mut s.verify, part))
}

/// C_VerifyFinal.
pub fn verify_final(session: CK_SESSION_HANDLE, signature: &[u8]) -> Result<()> {
    with_session(session, |_, _, s| {
        let mut op = s
            .verify
            .take()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        let input = op.op.gathered_input()?;
        check(&op, input, signature)
    })
}

/// Verifies `signature` over `input` (the digest or raw bytes) as the
/// operation's scheme.
fn check(op: &VerifyOp, input: Vec<u8>, signature: &[u8]) -> Result<()> {
    let KeyOp {
        scheme,
        signature_len,
        ..
    } = op.op;
    if signature.len() != signature_len {
        return Err(Pkcs11Error::SignatureLenRange);
    }
    let data = scheme.signing_input(input, signature_len)?;
    let ok = match scheme {
        SignScheme::RsaPkcs1 { .. } => verify_pkcs1(&op.public_key, &data, signature)?,
        SignScheme::RsaPss { params, .. } => {
            verify_pss(&op.public_key, &params, &data, signature).unwrap_or(false)
        }
        SignScheme::Ecdsa { .. } => verify_ecdsa(&op.public_key, &data, signature)?,
    };
    if ok {
        Ok(())
    } else {
        Err(Pkcs11Error::SignatureInvalid)
    }
}

/// PKCS#1 v1.5: recover the padded block and compare with what was signed.
fn verify_pkcs1(key: &PKey<Public>, data: &[u8], signature: &[u8]) -> Result<bool> {
    let rsa = key.rsa().map_err(|_| Pkcs11Error::KeyTypeInconsistent)?;
    let mut recovered = vec![0u8; rsa.size() as usize];
    match rsa.public_decrypt(signature, &mut recovered, Padding::PKCS1) {
        Ok(n) => Ok(recovered.get(..n) == Some(data)),
        Err(_) => Ok(false),
    }
}

fn verify_pss(
    key: &PKey<Public>,
    params: &PssParams,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.verify_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
    ctx.set_signature_md(params.hash.md())?;
    ctx.set_rsa_mgf1_md(params.mgf_hash.md())?;
    let salt = i32::try_from(params.salt_len).map_err(|_| Pkcs11Error::MechanismParamInvalid)?;
    ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt))?;
    Ok(ctx.verify(digest, signature)?)
}

/// ECDSA with r||s as PKCS#11 encodes it.
fn verify_ecdsa(key: &PKey<Public>, digest: &[u8], signature: &[u8]) -> Result<bool> {
    let ec = key.ec_key().map_err(|_| Pkcs11Error::KeyTypeInconsistent)?;
    let half = signature.len() / 2;
    let r = BigNum::from_slice(&signature[..half])?;
    let s = BigNum::from_slice(&signature[half..])?;
    let sig = EcdsaSig::from_private_components(r, s)?;
    Ok(sig.verify(digest, &ec).unwrap_or(false))
}
