//! Message digesting (PKCS#11 3.0 5.12): SHA-1 and SHA-2 computed in the
//! module with OpenSSL; no daemon round trip.

use cryptoki_sys::*;

use crate::error::{Pkcs11Error, Result};
use crate::fns::{fits, with_session, Out};
use crate::hash::{HashAlg, RunningHash};
use crate::mechanism::{self, Mechanism};
use crate::session::{begin, update, DigestOp};

/// C_DigestInit; `None` mechanism cancels an active digest (PKCS#11 3.0).
pub fn digest_init(session: CK_SESSION_HANDLE, mech: Option<&Mechanism>) -> Result<()> {
    with_session(session, |lib, entry, s| {
        let Some(mech) = begin(&mut s.digest, mech)? else {
            return Ok(());
        };
        let (token, _) = lib.session_token(entry)?;
        if !mechanism::offers(token.kind, mech.mechanism, CKF_DIGEST) {
            return Err(Pkcs11Error::MechanismInvalid);
        }
        if !mech.param.is_empty() {
            // The SHA digests take no parameter.
            return Err(Pkcs11Error::MechanismParamInvalid);
        }
        let alg =
            HashAlg::from_digest_mechanism(mech.mechanism).ok_or(Pkcs11Error::MechanismInvalid)?;
        s.digest = Some(DigestOp {
            hash: RunningHash::new(alg)?,
            multi_part: false,
        });
        Ok(())
    })
}

/// C_Digest (single part).
pub fn digest(session: CK_SESSION_HANDLE, data: &[u8], capacity: Option<usize>) -> Result<Out> {
    with_session(session, |_, _, s| {
        let op = s
            .digest
            .as_ref()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        if op.multi_part {
            // A single-part call cannot finish a multi-part operation; like
            // every failed C_Sign/C_Verify/C_Digest it ends the operation.
            s.digest = None;
            return Err(Pkcs11Error::OperationActive);
        }
        let alg = op.hash.alg();
        if !fits(capacity, alg.output_len())? {
            return Ok(Out::Length(alg.output_len()));
        }
        s.digest = None;
        Ok(Out::Bytes(alg.digest(data)?))
    })
}

/// C_DigestUpdate.
pub fn digest_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
    with_session(session, |_, _, s| update(&mut s.digest, part))
}

/// C_DigestFinal.
pub fn digest_final(session: CK_SESSION_HANDLE, capacity: Option<usize>) -> Result<Out> {
    with_session(session, |_, _, s| {
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
    })
}
