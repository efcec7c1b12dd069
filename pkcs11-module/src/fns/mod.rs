//! The PKCS#11 functions in safe Rust, one file per chapter of the
//! specification (as kryoptic does): general purpose, slot and token,
//! session, object, signing, verification, digest and random functions.

pub mod digest;
pub mod general;
pub mod objmgmt;
pub mod random;
pub mod sessmgmt;
pub mod signing;
pub mod stmgmt;
pub mod verify;

use cryptoki_sys::CK_SESSION_HANDLE;

use crate::client::lock;
use crate::error::{Pkcs11Error, Result};
use crate::library::{self, Library, SessionEntry};
use crate::session::Session;

/// Runs `f` with the library, the session's table entry and its operations,
/// locked for the duration (the only lock a daemon round trip may be under).
/// For calls within a running operation (updates, C_Sign, length queries):
/// the module's current view of the card decides, no extra round trip.
pub fn with_session<T>(
    handle: CK_SESSION_HANDLE,
    f: impl FnOnce(&Library, &SessionEntry, &mut Session) -> Result<T>,
) -> Result<T> {
    let lib = library::get()?;
    let entry = lib.session(handle)?;
    let mut session = lock(&entry.session);
    f(&lib, &entry, &mut session)
}

/// Like [`with_session`], after asking the daemon for its cards: calls that
/// start something or read the token notice a card removed since the last
/// call (DEVICE_REMOVED) and see a renewed card's new objects.
pub fn with_fresh_session<T>(
    handle: CK_SESSION_HANDLE,
    f: impl FnOnce(&Library, &SessionEntry, &mut Session) -> Result<T>,
) -> Result<T> {
    library::get()?.fresh_session(handle)?;
    with_session(handle, f)
}

/// What a function that fills a caller's buffer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// The caller passed NULL: only the length is returned.
    Length(usize),
    /// The bytes to copy out.
    Bytes(Vec<u8>),
}

/// The size-query protocol of PKCS#11 (5.2): `None` capacity (NULL buffer)
/// is a query; a buffer shorter than `needed` is BUFFER_TOO_SMALL. Returns
/// whether the caller's buffer can take the output.
pub fn fits(capacity: Option<usize>, needed: usize) -> Result<bool> {
    match capacity {
        None => Ok(false),
        Some(c) if c < needed => Err(Pkcs11Error::BufferTooSmall { needed }),
        Some(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_query_protocol() {
        assert_eq!(fits(None, 256), Ok(false));
        assert_eq!(
            fits(Some(1), 256),
            Err(Pkcs11Error::BufferTooSmall { needed: 256 })
        );
        assert_eq!(fits(Some(256), 256), Ok(true));
        assert_eq!(fits(Some(1024), 256), Ok(true));
    }
}
