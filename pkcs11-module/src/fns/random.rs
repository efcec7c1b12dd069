//! Random number generation (PKCS#11 3.0 5.15): C_GenerateRandom from the
//! operating system's generator; seeding is refused.

use cryptoki_sys::*;

use crate::error::{Pkcs11Error, Result};
use crate::library;

/// C_GenerateRandom into the caller's buffer.
pub fn generate_random(session: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
    let lib = library::get()?;
    lib.session(session)?;
    getrandom::getrandom(out).map_err(|e| Pkcs11Error::FunctionFailed(e.to_string()))
}

/// C_SeedRandom: the OS generator takes no seed from applications.
pub fn seed_random(session: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    lib.session(session)?;
    Err(Pkcs11Error::RandomSeedNotSupported)
}
