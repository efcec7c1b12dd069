//! Object management (PKCS#11 3.0 5.7): finding objects, reading their
//! attributes. Objects come from the card and cannot be created, changed or
//! destroyed through the module.

use cryptoki_sys::*;

use crate::attribute::{self, AttrRequest, AttrResult};
use crate::error::{Pkcs11Error, Result};
use crate::library::{self, Library, SessionEntry};
use crate::objects::Object;
use crate::session::FindOp;

/// Objects of the session's token the application may see now (private
/// objects only after login).
fn visible_objects(lib: &Library, entry: &SessionEntry) -> Result<Vec<Object>> {
    let state = lib.slot(entry.slot)?;
    let token = state.token.as_ref().ok_or(Pkcs11Error::DeviceRemoved)?;
    Ok(token
        .objects
        .iter()
        .filter(|o| state.logged_in || !o.is_private())
        .cloned()
        .collect())
}

/// C_FindObjectsInit with a template of (type, value bytes).
pub fn find_objects_init(
    handle: CK_SESSION_HANDLE,
    template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(handle)?;
    let mut session = crate::client::lock(&entry.session);
    if session.find.is_some() {
        return Err(Pkcs11Error::OperationActive);
    }
    let remaining = visible_objects(&lib, &entry)?
        .iter()
        .filter(|o| o.matches(template))
        .map(|o| o.handle)
        .collect();
    session.find = Some(FindOp { remaining });
    Ok(())
}

/// C_FindObjects: up to `max` more handles.
pub fn find_objects(handle: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
    let lib = library::get()?;
    let entry = lib.session(handle)?;
    let mut session = crate::client::lock(&entry.session);
    let op = session
        .find
        .as_mut()
        .ok_or(Pkcs11Error::OperationNotInitialized)?;
    let n = max.min(op.remaining.len());
    Ok(op.remaining.drain(..n).collect())
}

/// C_FindObjectsFinal.
pub fn find_objects_final(handle: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.session(handle)?;
    let mut session = crate::client::lock(&entry.session);
    session
        .find
        .take()
        .map(|_| ())
        .ok_or(Pkcs11Error::OperationNotInitialized)
}

/// Looks up an object the session may see.
pub fn object(lib: &Library, entry: &SessionEntry, handle: CK_OBJECT_HANDLE) -> Result<Object> {
    visible_objects(lib, entry)?
        .into_iter()
        .find(|o| o.handle == handle)
        .ok_or(Pkcs11Error::ObjectHandleInvalid)
}

/// C_GetAttributeValue: per-entry results and the overall outcome.
pub fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object_handle: CK_OBJECT_HANDLE,
    template: &[AttrRequest],
) -> Result<(Vec<AttrResult>, Result<()>)> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    let obj = object(&lib, &entry, object_handle)?;
    Ok(attribute::get_values(|t| obj.get(t), template))
}

/// C_GetObjectSize: not meaningful for card objects.
pub fn get_object_size(
    session: CK_SESSION_HANDLE,
    object_handle: CK_OBJECT_HANDLE,
) -> Result<CK_ULONG> {
    let lib = library::get()?;
    let entry = lib.session(session)?;
    object(&lib, &entry, object_handle)?;
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
    object(&lib, &entry, object_handle)?;
    Err(Pkcs11Error::TokenWriteProtected)
}
