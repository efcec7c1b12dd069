//! Signing (PKCS#11 3.0 5.13): the module checks and hashes, the daemon signs
//! what the module sends in exactly one round trip per signature. Length
//! queries are answered locally: the signature length is fixed per key. The
//! document-signing key (CKA_ALWAYS_AUTHENTICATE) signs only after a
//! context-specific login, whose PIN goes with the one signature.

use cryptoki_sys::*;
use lanyard_proto::agent::{request, response, HashAlgorithm, Sign, SignAlgorithm};

use crate::client::Retry;
use crate::error::{Pkcs11Error, Result};
use crate::fns::{fits, with_fresh_session, with_session, Out};
use crate::library::{Library, SessionEntry};
use crate::mechanism::{Mechanism, SignScheme};
use crate::objects::ObjectKind;
use crate::session::{begin, update, ContextPin, KeyOp, SignOp};

/// C_SignInit; `None` mechanism cancels an active signature (PKCS#11 3.0).
pub fn sign_init(
    session: CK_SESSION_HANDLE,
    mech: Option<&Mechanism>,
    key: CK_OBJECT_HANDLE,
) -> Result<()> {
    with_fresh_session(session, |lib, entry, s| {
        let Some(mech) = begin(&mut s.sign, mech)? else {
            return Ok(());
        };
        let (token, logged_in) = lib.session_token(entry)?;
        let role = match token.object(key).map(|o| (o.kind, o.role)) {
            Some((ObjectKind::PrivateKey, _)) if !logged_in => {
                return Err(Pkcs11Error::UserNotLoggedIn)
            }
            Some((ObjectKind::PrivateKey, role)) => role,
            Some((ObjectKind::PublicKey, _)) => return Err(Pkcs11Error::KeyFunctionNotPermitted),
            _ => return Err(Pkcs11Error::KeyHandleInvalid),
        };
        let scheme = SignScheme::parse(mech, token.kind, token.key_bits)?;
        s.sign = Some(SignOp {
            card_id: token.card.card_id.clone(),
            op: KeyOp::new(scheme, token.signature_len)?,
            key: role,
            context_pin: None,
        });
        Ok(())
    })
}

/// C_Sign (single part). A card removed meanwhile is learnt from the
/// daemon's answer (see [`Library::call`]), not from an extra round trip.
pub fn sign(session: CK_SESSION_HANDLE, data: &[u8], capacity: Option<usize>) -> Result<Out> {
    with_session(session, |lib, entry, s| {
        let active = s
            .sign
            .as_ref()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        if active.op.multi_part {
            // A single-part call cannot finish a multi-part operation; like
            // every failed C_Sign/C_Verify/C_Digest it ends the operation.
            s.sign = None;
            return Err(Pkcs11Error::OperationActive);
        }
        if !fits(capacity, active.op.signature_len)? {
            return Ok(Out::Length(active.op.signature_len));
        }
        // From here the operation ends, whatever the outcome.
        let sign = s.sign.take().ok_or(Pkcs11Error::OperationNotInitialized)?;
        let input = sign.op.single_input(data)?;
        sign_with_daemon(lib, entry, &sign, input).map(Out::Bytes)
    })
}

/// C_SignUpdate: hashing mechanisms hash here; raw ones collect the input.
pub fn sign_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
    with_session(session, |_, _, s| update(&mut s.sign, part))
}

/// C_SignFinal.
pub fn sign_final(session: CK_SESSION_HANDLE, capacity: Option<usize>) -> Result<Out> {
    with_session(session, |lib, entry, s| {
        let active = s
            .sign
            .as_ref()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        if !fits(capacity, active.op.signature_len)? {
            return Ok(Out::Length(active.op.signature_len));
        }
        let mut sign = s.sign.take().ok_or(Pkcs11Error::OperationNotInitialized)?;
        let input = sign.op.gathered_input()?;
        sign_with_daemon(lib, entry, &sign, input).map(Out::Bytes)
    })
}

/// C_Login(CKU_CONTEXT_SPECIFIC): valid only while a C_SignInit on the
/// document-signing key waits for it; keeps `pin` for that one signature.
/// The daemon checks the PIN (and counts a wrong one) when it signs.
pub fn context_login(session: CK_SESSION_HANDLE, pin: Option<&[u8]>) -> Result<()> {
    with_session(session, |lib, entry, s| {
        let active = s
            .sign
            .as_mut()
            .filter(|op| op.always_authenticate())
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        if !lib.session_token(entry)?.1 {
            return Err(Pkcs11Error::UserNotLoggedIn);
        }
        let pin = pin.ok_or(Pkcs11Error::ArgumentsBad)?;
        let pin = std::str::from_utf8(pin).map_err(|_| Pkcs11Error::PinInvalid)?;
        active.context_pin = Some(ContextPin(pin.to_string().into()));
        Ok(())
    })
}

/// Checks the (hashed) input, asks the daemon for the signature and checks
/// its length. The session's own lock is held by the caller; no other.
fn sign_with_daemon(
    lib: &Library,
    entry: &SessionEntry,
    sign: &SignOp,
    input: Vec<u8>,
) -> Result<Vec<u8>> {
    let op = &sign.op;
    let (scheme, signature_len) = (op.scheme, op.signature_len);
    let data = scheme.signing_input(input, signature_len)?;
    if !lib.session_token(entry)?.1 {
        return Err(Pkcs11Error::UserNotLoggedIn);
    }
    let context_pin = match (&sign.context_pin, sign.always_authenticate()) {
        (Some(pin), true) => pin.0.to_string(),
        // CKA_ALWAYS_AUTHENTICATE without C_Login(CKU_CONTEXT_SPECIFIC).
        (None, true) => return Err(Pkcs11Error::UserNotLoggedIn),
        (_, false) => String::new(),
    };
    let mut req = Sign {
        card_id: sign.card_id.clone(),
        data,
        key: sign.key as i32,
        context_pin,
        ..Sign::default()
    };
    match scheme {
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
    let signature = match lib.call(request::Body::Sign(req), Retry::Never) {
        Ok(response::Body::Signature(s)) => s.signature,
        Ok(_) => {
            return Err(Pkcs11Error::DeviceError(
                "the daemon answered Sign with another message".into(),
            ))
        }
        Err(Pkcs11Error::UserNotLoggedIn) => {
            lib.set_logged_in(entry, false)?;
            return Err(Pkcs11Error::UserNotLoggedIn);
        }
        Err(e) => return Err(e),
    };
    let rsa = !matches!(scheme, SignScheme::Ecdsa { .. });
    fixed_length(signature, signature_len, rsa)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_signatures_are_left_padded_ecdsa_never() {
        assert_eq!(fixed_length(vec![1, 2], 4, true).unwrap(), vec![0, 0, 1, 2]);
        assert!(fixed_length(vec![1, 2], 4, false).is_err());
        assert!(fixed_length(vec![1; 5], 4, true).is_err());
        assert!(fixed_length(vec![], 4, true).is_err());
    }
}
