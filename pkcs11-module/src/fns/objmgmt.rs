//! Object management (PKCS#11 3.0 5.7): finding objects, reading their
//! attributes. Objects come from the card and cannot be created, changed or
//! destroyed through the module.

use cryptoki_sys::*;

use crate::attribute::{self, AttrRequest, AttrResult};
use crate::error::{Pkcs11Error, Result};
use crate::fns::with_fresh_session;
use crate::library::{self, Library, SessionEntry};
use crate::objects::Object;
use crate::session::FindOp;

/// C_FindObjectsInit with a template of (type, value bytes).
pub fn find_objects_init(
    handle: CK_SESSION_HANDLE,
    template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
) -> Result<()> {
    with_fresh_session(handle, |lib, entry, session| {
        if session.find.is_some() {
            return Err(Pkcs11Error::OperationActive);
        }
        let (token, logged_in) = lib.session_token(entry)?;
        let remaining = token
            .objects
            .iter()
            .filter(|o| (logged_in || !o.is_private()) && o.matches(template))
            .map(|o| o.handle)
            .collect();
        session.find = Some(FindOp { remaining });
        Ok(())
    })
}

/// C_FindObjects: up to `max` more handles (of the objects found at
/// C_FindObjectsInit; a card removed since is DEVICE_REMOVED).
pub fn find_objects(handle: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
    with_fresh_session(handle, |_, _, session| {
        let op = session
            .find
            .as_mut()
            .ok_or(Pkcs11Error::OperationNotInitialized)?;
        let n = max.min(op.remaining.len());
        Ok(op.remaining.drain(..n).collect())
    })
}

/// C_FindObjectsFinal.
pub fn find_objects_final(handle: CK_SESSION_HANDLE) -> Result<()> {
    with_fresh_session(handle, |_, _, session| {
        session
            .find
            .take()
            .map(|_| ())
            .ok_or(Pkcs11Error::OperationNotInitialized)
    })
}

/// Runs `f` on an object the session may see (private ones only after login).
///
/// Handles name an object's role on the card in its slot (leaf certificate,
/// public key, private key, n-th CA certificate), not one version of it: after
/// a renewal (same card, new certificate and key) a handle found before reads
/// the new object. The private key handle must stay valid, since applications
/// keep it and the daemon signs with the card's current key; its attributes
/// (CKA_ID, CKA_MODULUS...) must then describe that key, and the certificate
/// and public key handles follow the same rule rather than some handles
/// turning OBJECT_HANDLE_INVALID and others not. A handle whose object is
/// gone (a shorter chain) is OBJECT_HANDLE_INVALID.
pub fn with_object<T>(
    lib: &Library,
    entry: &SessionEntry,
    handle: CK_OBJECT_HANDLE,
    f: impl FnOnce(&Object) -> T,
) -> Result<T> {
    let (token, logged_in) = lib.session_token(entry)?;
    match token.object(handle) {
        Some(o) if logged_in || !o.is_private() => Ok(f(o)),
        _ => Err(Pkcs11Error::ObjectHandleInvalid),
    }
}

/// C_GetAttributeValue: per-entry results and the overall outcome.
pub fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object_handle: CK_OBJECT_HANDLE,
    template: &[AttrRequest],
) -> Result<(Vec<AttrResult>, Result<()>)> {
    let lib = library::get()?;
    let entry = lib.fresh_session(session)?;
    with_object(&lib, &entry, object_handle, |obj| {
        attribute::get_values(|t| obj.get(t), template)
    })
}

/// C_GetObjectSize: not meaningful for card objects.
pub fn get_object_size(
    session: CK_SESSION_HANDLE,
    object_handle: CK_OBJECT_HANDLE,
) -> Result<CK_ULONG> {
    let lib = library::get()?;
    let entry = lib.fresh_session(session)?;
    with_object(&lib, &entry, object_handle, |_| ())?;
    Ok(crate::CK_UNAVAILABLE_INFORMATION)
}

/// C_CreateObject, C_CopyObject, C_SetAttributeValue, C_DestroyObject,
/// C_GenerateKeyPair: the card's objects are fixed.
pub fn write_refused(session: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    lib.session(session)?;
    Err(Pkcs11Error::TokenWriteProtected)
}

/// Same, for calls naming an existing object: its handle is checked first.
pub fn write_object_refused(
    session: CK_SESSION_HANDLE,
    object_handle: CK_OBJECT_HANDLE,
) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    with_object(&lib, &entry, object_handle, |_| ())?;
    Err(Pkcs11Error::TokenWriteProtected)
}
