//! Signing (PKCS#11 3.0 5.13): the module checks and hashes, the daemon signs
//! what the module sends in exactly one round trip per signature. Length
//! queries are answered locally: the signature length is fixed per key.

use cryptoki_sys::*;
use lanyard_proto::agent::{request, response, HashAlgorithm, Sign, SignAlgorithm};

use crate::client::{lock, Retry};
use crate::error::{Pkcs11Error, Result};
use crate::fns::{fits, Out};
use crate::library::{self, Library, SessionEntry};
use crate::mechanism::{Mechanism, SignScheme};
use crate::objects::ObjectKind;
use crate::session::{Accumulator, SignOp};

/// C_SignInit; `None` mechanism cancels an active signature (PKCS#11 3.0).
pub fn sign_init(
    session: CK_SESSION_HANDLE,
    mech: Option<&Mechanism>,
    key: CK_OBJECT_HANDLE,
) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let Some(mech) = mech else {
        s.sign = None;
        return Ok(());
    };
    if s.sign.is_some() {
        return Err(Pkcs11Error::OperationActive);
    }
    let (token, logged_in) = {
        let state = lib.slot(entry.slot)?;
        (
            state.token.clone().ok_or(Pkcs11Error::DeviceRemoved)?,
            state.logged_in,
        )
    };
    match token.object(key).map(|o| o.kind) {
        Some(ObjectKind::PrivateKey) if !logged_in => return Err(Pkcs11Error::UserNotLoggedIn),
        Some(ObjectKind::PrivateKey) => {}
        Some(ObjectKind::PublicKey) => return Err(Pkcs11Error::KeyFunctionNotPermitted),
        _ => return Err(Pkcs11Error::KeyHandleInvalid),
    }
    let scheme = SignScheme::parse(mech, token.kind, token.key_bits)?;
    s.sign = Some(SignOp {
        card_id: token.card.card_id.clone(),
        scheme,
        signature_len: token.signature_len,
        multi_part: false,
        acc: Accumulator::for_scheme(&scheme, token.signature_len)?,
    });
    Ok(())
}

/// C_Sign (single part).
pub fn sign(session: CK_SESSION_HANDLE, data: &[u8], capacity: Option<usize>) -> Result<Out> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .sign
        .as_ref()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    if op.multi_part {
        return Err(Pkcs11Error::OperationActive);
    }
    if !fits(capacity, op.signature_len)? {
        return Ok(Out::Length(op.signature_len));
    }
    // From here the operation ends, whatever the outcome.
    let op = s.sign.take().ok_or(Pkcs11Error::OperationNotInitialized)?;
    let input = match op.scheme.prehash() {
        Some(h) => h.digest(data)?,
        None => data.to_vec(),
    };
    let signature = sign_with_daemon(&lib, &entry, &op, input)?;
    Ok(Out::Bytes(signature))
}

/// C_SignUpdate: hashing mechanisms hash here; raw ones collect the input.
pub fn sign_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .sign
        .as_mut()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    op.multi_part = true;
    let result = op.acc.update(part);
    if result.is_err() {
        s.sign = None;
    }
    result
}

/// C_SignFinal.
pub fn sign_final(session: CK_SESSION_HANDLE, capacity: Option<usize>) -> Result<Out> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .sign
        .as_ref()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    if !fits(capacity, op.signature_len)? {
        return Ok(Out::Length(op.signature_len));
    }
    let mut op = s.sign.take().ok_or(Pkcs11Error::OperationNotInitialized)?;
    let acc = std::mem::replace(
        &mut op.acc,
        Accumulator::Raw {
            data: Vec::new(),
            limit: 0,
        },
    );
    let input = acc.finish()?;
    let signature = sign_with_daemon(&lib, &entry, &op, input)?;
    Ok(Out::Bytes(signature))
}

/// Checks the (hashed) input, asks the daemon for the signature and checks
/// its length. The session's own lock is held by the caller; no other.
fn sign_with_daemon(
    lib: &Library,
    entry: &SessionEntry,
    op: &SignOp,
    input: Vec<u8>,
) -> Result<Vec<u8>> {
    let data = op.scheme.signing_input(input, op.signature_len)?;
    if !lib.slot(entry.slot)?.logged_in {
        return Err(Pkcs11Error::UserNotLoggedIn);
    }
    let mut req = Sign {
        card_id: op.card_id.clone(),
        data,
        ..Sign::default()
    };
    match op.scheme {
        SignScheme::RsaPkcs1 { .. } => req.algorithm = SignAlgorithm::RsaPkcs1 as i32,
        SignScheme::RsaPss { params, .. } => {
            req.algorithm = SignAlgorithm::RsaPss as i32;
            req.hash = params.hash.to_proto() as i32;
            req.mgf_hash = params.mgf_hash.to_proto() as i32;
            req.salt_len =
                u32::try_from(params.salt_len).map_err(|_| Pkcs11Error::MechanismParamInvalid)?;
        }
        SignScheme::Ecdsa { .. } => {
            req.algorithm = SignAlgorithm::Ecdsa as i32;
            req.hash = HashAlgorithm::Unspecified as i32;
        }
    }
    let reply = lib.call(request::Body::Sign(req), Retry::Never);
    let signature = match reply {
        Ok(response::Body::Signature(s)) => s.signature,
        Ok(_) => {
            return Err(Pkcs11Error::DeviceError(
                "the daemon answered Sign with another message".into(),
            ))
        }
        Err(Pkcs11Error::UserNotLoggedIn) => {
            lib.slot(entry.slot)?.logged_in = false;
            return Err(Pkcs11Error::UserNotLoggedIn);
        }
        Err(e) => return Err(e),
    };
    let rsa = !matches!(op.scheme, SignScheme::Ecdsa { .. });
    fixed_length(signature, op.signature_len, rsa)
}

/// RSA signatures are exactly k bytes (left-padded with zeros if the daemon
/// dropped leading zeros); ECDSA r||s must be exactly 2 × field size.
fn fixed_length(mut signature: Vec<u8>, len: usize, may_pad: bool) -> Result<Vec<u8>> {
    if signature.len() == len {
        return Ok(signature);
    }
    if may_pad && signature.len() < len && !signature.is_empty() {
        let mut padded = vec![0u8; len - signature.len()];
        padded.append(&mut signature);
        return Ok(padded);
    }
    Err(Pkcs11Error::DeviceError(format!(
        "the daemon returned a {}-byte signature, {} expected",
        signature.len(),
        len
    )))
}
