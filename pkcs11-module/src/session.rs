//! A PKCS#11 session's operations (find, sign, verify, digest), each holding
//! only safe Rust state, and the CKS_* state a session reports.

use cryptoki_sys::*;
use lanyard_proto::agent::KeyRole;
use openssl::pkey::{PKey, Public};
use zeroize::Zeroizing;

use crate::error::{Pkcs11Error, Result};
use crate::hash::RunningHash;
use crate::mechanism::{Mechanism, SignScheme};

/// Data fed to a multi-part sign or verify operation.
#[derive(Debug)]
pub enum Accumulator {
    /// Hash-and-sign mechanisms hash as data arrives.
    Hash(RunningHash),
    /// Raw mechanisms (CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA) collect the
    /// input, up to the mechanism's limit.
    Raw { data: Vec<u8>, limit: usize },
}

impl Accumulator {
    /// The accumulator a scheme needs, given its signature length.
    pub fn for_scheme(scheme: &SignScheme, signature_len: usize) -> Result<Accumulator> {
        Ok(match scheme.prehash() {
            Some(h) => Accumulator::Hash(RunningHash::new(h)?),
            None => Accumulator::Raw {
                data: Vec::new(),
                limit: scheme.raw_input_limit(signature_len),
            },
        })
    }

    /// Adds a part; raw input beyond the limit is DATA_LEN_RANGE.
    pub fn update(&mut self, part: &[u8]) -> Result<()> {
        match self {
            Accumulator::Hash(h) => h.update(part),
            Accumulator::Raw { data, limit } => {
                if data.len().saturating_add(part.len()) > *limit {
                    return Err(Pkcs11Error::DataLenRange);
                }
                data.extend_from_slice(part);
                Ok(())
            }
        }
    }

    /// The digest (hashing mechanisms) or the collected bytes.
    pub fn finish(self) -> Result<Vec<u8>> {
        match self {
            Accumulator::Hash(h) => h.finish(),
            Accumulator::Raw { data, .. } => Ok(data),
        }
    }
}

/// What sign and verify operations share: the scheme, the fixed signature
/// length and the input gathered so far.
#[derive(Debug)]
pub struct KeyOp {
    pub scheme: SignScheme,
    pub signature_len: usize,
    /// Set by the first update: the operation must end with a Final call.
    pub multi_part: bool,
    acc: Accumulator,
}

impl KeyOp {
    /// A fresh operation for `scheme` with a key whose signatures have `signature_len` bytes.
    pub fn new(scheme: SignScheme, signature_len: usize) -> Result<KeyOp> {
        Ok(KeyOp {
            scheme,
            signature_len,
            multi_part: false,
            acc: Accumulator::for_scheme(&scheme, signature_len)?,
        })
    }

    /// The input of a single-part call (C_Sign, C_Verify): hashed here if the
    /// scheme hashes. A multi-part operation cannot end this way.
    pub fn single_input(&self, data: &[u8]) -> Result<Vec<u8>> {
        if self.multi_part {
            return Err(Pkcs11Error::OperationActive);
        }
        match self.scheme.prehash() {
            Some(h) => h.digest(data),
            None => Ok(data.to_vec()),
        }
    }

    /// The input gathered by the update calls (C_SignFinal, C_VerifyFinal);
    /// the operation is spent afterwards.
    pub fn gathered_input(&mut self) -> Result<Vec<u8>> {
        let spent = Accumulator::Raw {
            data: Vec::new(),
            limit: 0,
        };
        std::mem::replace(&mut self.acc, spent).finish()
    }
}

/// The start every C_*Init shares: a NULL mechanism ends the active
/// operation (PKCS#11 3.0); an init while one is active is OPERATION_ACTIVE.
/// `None` means the call is done (it was a cancel).
pub fn begin<'m, O>(
    active: &mut Option<O>,
    mech: Option<&'m Mechanism>,
) -> Result<Option<&'m Mechanism>> {
    match mech {
        None => {
            *active = None;
            Ok(None)
        }
        Some(_) if active.is_some() => Err(Pkcs11Error::OperationActive),
        Some(m) => Ok(Some(m)),
    }
}

/// An operation that takes its input in parts.
pub trait MultiPart {
    /// Adds a part and marks the operation multi-part.
    fn feed(&mut self, part: &[u8]) -> Result<()>;
}

impl MultiPart for KeyOp {
    fn feed(&mut self, part: &[u8]) -> Result<()> {
        self.multi_part = true;
        self.acc.update(part)
    }
}

/// C_SignUpdate, C_VerifyUpdate, C_DigestUpdate: feeds the active operation;
/// an error ends it.
pub fn update<O: MultiPart>(op: &mut Option<O>, part: &[u8]) -> Result<()> {
    let active = op.as_mut().ok_or(Pkcs11Error::OperationNotInitialized)?;
    let result = active.feed(part);
    if result.is_err() {
        *op = None;
    }
    result
}

/// An active C_SignInit: the daemon signs with the card `card_id`'s key
/// `key`. The document-signing key (CKA_ALWAYS_AUTHENTICATE) needs
/// `context_pin`, set by C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit and
/// good for this one operation.
#[derive(Debug)]
pub struct SignOp {
    pub card_id: String,
    pub op: KeyOp,
    pub key: KeyRole,
    pub context_pin: Option<ContextPin>,
}

impl SignOp {
    /// Whether the operation needs a context-specific login before it signs.
    pub fn always_authenticate(&self) -> bool {
        self.key == KeyRole::Signing
    }
}

/// The PIN of a context-specific login: wiped when dropped, never printed.
pub struct ContextPin(pub Zeroizing<String>);

impl std::fmt::Debug for ContextPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextPin(..)")
    }
}

impl MultiPart for SignOp {
    fn feed(&mut self, part: &[u8]) -> Result<()> {
        self.op.feed(part)
    }
}

/// An active C_VerifyInit: verified here with the card's public key.
pub struct VerifyOp {
    pub public_key: PKey<Public>,
    pub op: KeyOp,
}

impl MultiPart for VerifyOp {
    fn feed(&mut self, part: &[u8]) -> Result<()> {
        self.op.feed(part)
    }
}

/// An active C_DigestInit.
#[derive(Debug)]
pub struct DigestOp {
    pub hash: RunningHash,
    pub multi_part: bool,
}

impl MultiPart for DigestOp {
    fn feed(&mut self, part: &[u8]) -> Result<()> {
        self.multi_part = true;
        self.hash.update(part)
    }
}

/// An active C_FindObjectsInit: the matching handles not yet returned.
#[derive(Debug, Default)]
pub struct FindOp {
    pub remaining: std::collections::VecDeque<CK_OBJECT_HANDLE>,
}

/// The operations of one session (its slot and R/W flag live in the
/// session table, [`crate::library::SessionEntry`]).
#[derive(Default)]
pub struct Session {
    pub find: Option<FindOp>,
    pub sign: Option<SignOp>,
    pub verify: Option<VerifyOp>,
    pub digest: Option<DigestOp>,
}

/// CKS_* for a session, from the token's login state.
pub fn session_state(rw: bool, logged_in: bool) -> CK_STATE {
    match (rw, logged_in) {
        (false, false) => CKS_RO_PUBLIC_SESSION,
        (false, true) => CKS_RO_USER_FUNCTIONS,
        (true, false) => CKS_RW_PUBLIC_SESSION,
        (true, true) => CKS_RW_USER_FUNCTIONS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlg;

    #[test]
    fn raw_accumulator_enforces_limit() {
        let scheme = SignScheme::RsaPkcs1 { prehash: None };
        let mut a = Accumulator::for_scheme(&scheme, 256).unwrap();
        a.update(&[1; 200]).unwrap();
        a.update(&[1; 45]).unwrap();
        assert_eq!(a.update(&[1]), Err(Pkcs11Error::DataLenRange));
        assert_eq!(a.finish().unwrap().len(), 245);
    }

    #[test]
    fn hashing_accumulator_has_no_limit() {
        let scheme = SignScheme::Ecdsa {
            prehash: Some(HashAlg::Sha256),
        };
        let mut a = Accumulator::for_scheme(&scheme, 64).unwrap();
        for _ in 0..100 {
            a.update(&[0; 1000]).unwrap();
        }
        assert_eq!(
            a.finish().unwrap(),
            HashAlg::Sha256.digest(&[0; 100_000]).unwrap()
        );
    }
}
