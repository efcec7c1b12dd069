//! Message digesting (PKCS#11 3.0 5.12): SHA-1 and SHA-2 computed in the
//! module with OpenSSL; no daemon round trip.

use cryptoki_sys::*;

use crate::client::lock;
use crate::error::{Pkcs11Error, Result};
use crate::fns::{fits, Out};
use crate::hash::{HashAlg, RunningHash};
use crate::library;
use crate::mechanism::{self, Mechanism};
use crate::session::DigestOp;

/// C_DigestInit; `None` mechanism cancels an active digest (PKCS#11 3.0).
pub fn digest_init(session: CK_SESSION_HANDLE, mech: Option<&Mechanism>) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let token = lib.token(entry.slot)?;
    let mut s = lock(&entry.session);
    let Some(mech) = mech else {
        s.digest = None;
        return Ok(());
    };
    if s.digest.is_some() {
        return Err(Pkcs11Error::OperationActive);
    }
    if !mechanism::offers(token.kind, mech.mechanism, CKF_DIGEST) {
        return Err(Pkcs11Error::MechanismInvalid);
    }
    let alg =
        HashAlg::from_digest_mechanism(mech.mechanism).ok_or(Pkcs11Error::MechanismInvalid)?;
    s.digest = Some(DigestOp {
        hash: RunningHash::new(alg)?,
        multi_part: false,
    });
    Ok(())
}

/// C_Digest (single part).
pub fn digest(session: CK_SESSION_HANDLE, data: &[u8], capacity: Option<usize>) -> Result<Out> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .digest
        .as_ref()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    if op.multi_part {
        return Err(Pkcs11Error::OperationActive);
    }
    let alg = op.hash.alg();
    if !fits(capacity, alg.output_len())? {
        return Ok(Out::Length(alg.output_len()));
    }
    s.digest = None;
    Ok(Out::Bytes(alg.digest(data)?))
}

/// C_DigestUpdate.
pub fn digest_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .digest
        .as_mut()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    op.multi_part = true;
    let result = op.hash.update(part);
    if result.is_err() {
        s.digest = None;
    }
    result
}

/// C_DigestFinal.
pub fn digest_final(session: CK_SESSION_HANDLE, capacity: Option<usize>) -> Result<Out> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let mut s = lock(&entry.session);
    let op = s
        .digest
        .as_ref()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    let len = op.hash.alg().output_len();
    if !fits(capacity, len)? {
        return Ok(Out::Length(len));
    }
    let op = s
        .digest
        .take()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    Ok(Out::Bytes(op.hash.finish()?))
}
