//! The exported C_* functions that do something, in the order of the
//! PKCS#11 3.0 chapters. Each converts its pointers, calls `crate::fns`, and
//! writes results back; all checks and state live in the safe layer.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::{
    attributes_in, bytes_in, guard, guard_init, input_output, mechanism_in, output, template_in,
    to_usize, write_list, write_struct,
};
use crate::attribute::{AttrRequest, AttrResult};
use crate::error::{Pkcs11Error, Result};
use crate::fns::{digest, general, objmgmt, random, sessmgmt, signing, stmgmt, verify};

// ---- General purpose (5.4) ----

/// C_Initialize.
#[no_mangle]
pub unsafe extern "C" fn C_Initialize(init_args: *mut c_void) -> CK_RV {
    guard(|| {
        super::fork::register_fork_handlers();
        let args = if init_args.is_null() {
            None
        } else {
            // SAFETY: non-NULL pInitArgs points to a CK_C_INITIALIZE_ARGS (PKCS#11 5.4).
            let a = unsafe { (init_args as *const CK_C_INITIALIZE_ARGS).read_unaligned() };
            let callbacks = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            Some(general::InitArgs {
                mutex_callbacks: callbacks.iter().filter(|set| **set).count() as u8,
                flags: a.flags,
                reserved_is_null: a.pReserved.is_null(),
            })
        };
        general::initialize(args, super::real_uid())
    })
}

/// C_Finalize.
#[no_mangle]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard_init(|| {
        if !reserved.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        general::finalize()
    })
}

/// C_GetInfo as the 3.0 interface (and the exported symbol) reports it.
#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    // SAFETY: `info` is the caller's CK_INFO pointer, checked in write_struct.
    guard_init(|| unsafe {
        write_struct(info, || general::info(CK_VERSION { major: 3, minor: 0 }))
    })
}

/// C_GetInfo of the 2.40 function list.
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetInfo_v2(info: *mut CK_INFO) -> CK_RV {
    // SAFETY: as C_GetInfo.
    guard_init(|| unsafe {
        write_struct(info, || {
            general::info(CK_VERSION {
                major: 2,
                minor: 40,
            })
        })
    })
}

// ---- Slot and token management (5.5) ----

/// C_GetSlotList.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if count.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        let ids = stmgmt::slot_list(token_present != CK_FALSE)?;
        // SAFETY: caller's array and count, per the size-query protocol.
        unsafe { write_list(&ids, list, count) }
    })
}

/// C_GetSlotInfo.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    // SAFETY: caller's CK_SLOT_INFO pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(info, || stmgmt::slot_info(slot)) })
}

/// C_GetTokenInfo.
#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    // SAFETY: caller's CK_TOKEN_INFO pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(info, || stmgmt::token_info(slot)) })
}

/// C_GetMechanismList.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if count.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        let mechs = stmgmt::mechanism_list(slot)?;
        // SAFETY: caller's array and count, per the size-query protocol.
        unsafe { write_list(&mechs, list, count) }
    })
}

/// C_GetMechanismInfo.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    // SAFETY: caller's CK_MECHANISM_INFO pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(info, || stmgmt::mechanism_info(slot, mech)) })
}

/// C_InitToken: not possible on a virtual card.
#[no_mangle]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    _pin: *mut CK_UTF8CHAR,
    _pin_len: CK_ULONG,
    _label: *mut CK_UTF8CHAR,
) -> CK_RV {
    guard_init(|| stmgmt::init_token(slot))
}

/// C_InitPIN: the PIN is set at enrolment and reset by the IT desk.
#[no_mangle]
pub unsafe extern "C" fn C_InitPIN(
    session: CK_SESSION_HANDLE,
    _pin: *mut CK_UTF8CHAR,
    _pin_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| stmgmt::init_pin(session))
}

/// C_SetPIN.
#[no_mangle]
pub unsafe extern "C" fn C_SetPIN(
    session: CK_SESSION_HANDLE,
    old_pin: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new_pin: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if old_pin.is_null() || new_pin.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: non-NULL PIN buffers of the given lengths (PKCS#11 5.5).
        let (old, new) = unsafe { (bytes_in(old_pin, old_len)?, bytes_in(new_pin, new_len)?) };
        stmgmt::set_pin(session, old, new)
    })
}

/// C_WaitForSlotEvent.
#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> CK_RV {
    guard_init(|| {
        if slot.is_null() || !reserved.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's CK_SLOT_ID pointer, checked non-NULL.
        unsafe { write_struct(slot, || stmgmt::wait_for_slot_event(flags)) }
    })
}

// ---- Session management (5.6) ----

/// C_OpenSession. Notification callbacks are never called.
#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    // SAFETY: caller's CK_SESSION_HANDLE pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(session, || sessmgmt::open_session(slot, flags)) })
}

/// C_CloseSession.
#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    guard_init(|| sessmgmt::close_session(session))
}

/// C_CloseAllSessions.
#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    guard_init(|| sessmgmt::close_all_sessions(slot))
}

/// C_GetSessionInfo.
#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    session: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    // SAFETY: caller's CK_SESSION_INFO pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(info, || sessmgmt::session_info(session)) })
}

/// C_Login.
#[no_mangle]
pub unsafe extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        let pin = if pin.is_null() {
            None
        } else {
            // SAFETY: non-NULL PIN buffer of pin_len bytes.
            Some(unsafe { bytes_in(pin, pin_len)? })
        };
        sessmgmt::login(session, user, pin)
    })
}

/// C_Logout.
#[no_mangle]
pub unsafe extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard_init(|| sessmgmt::logout(session))
}

/// C_SessionCancel (3.0).
#[no_mangle]
pub unsafe extern "C" fn C_SessionCancel(session: CK_SESSION_HANDLE, flags: CK_FLAGS) -> CK_RV {
    guard_init(|| sessmgmt::session_cancel(session, flags))
}

// ---- Object management (5.7) ----

/// C_CreateObject: the card's objects are fixed.
#[no_mangle]
pub unsafe extern "C" fn C_CreateObject(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        if object.is_null() || (template.is_null() && count > 0) {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        objmgmt::write_refused(session)
    })
}

/// C_CopyObject.
#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    new_object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        if new_object.is_null() || (template.is_null() && count > 0) {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        objmgmt::write_object_refused(session, object)
    })
}

/// C_DestroyObject.
#[no_mangle]
pub unsafe extern "C" fn C_DestroyObject(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| objmgmt::write_object_refused(session, object))
}

/// C_GetObjectSize.
#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: caller's CK_ULONG pointer; write_struct checks it for NULL.
    guard_init(|| unsafe { write_struct(size, || objmgmt::get_object_size(session, object)) })
}

/// C_GetAttributeValue with the full protocol of PKCS#11 3.0 5.7.5.
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if template.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's array of `count` CK_ATTRIBUTEs, checked non-NULL.
        let attrs = unsafe { attributes_in(template, count)? };
        let requests: Vec<AttrRequest> = attrs
            .iter()
            .map(|a| {
                Ok(AttrRequest {
                    attr_type: a.type_,
                    capacity: if a.pValue.is_null() {
                        None
                    } else {
                        Some(to_usize(a.ulValueLen)?)
                    },
                })
            })
            .collect::<Result<_>>()?;
        let (results, outcome) = objmgmt::get_attribute_value(session, object, &requests)?;
        for (i, result) in results.into_iter().enumerate() {
            // SAFETY: `i` < count; the template is the caller's writable array.
            let slot = unsafe { template.add(i) };
            // SAFETY: as above, one CK_ATTRIBUTE.
            let mut a = unsafe { slot.read_unaligned() };
            match result {
                AttrResult::Value(bytes)
                    if a.pValue.is_null() || a.ulValueLen < bytes.len() as CK_ULONG =>
                {
                    // Checked by the safe layer already; never write past the buffer.
                    return Err(Pkcs11Error::General(
                        "attribute larger than its buffer".into(),
                    ));
                }
                AttrResult::Value(bytes) => {
                    // SAFETY: pValue is non-NULL and holds ulValueLen >=
                    // bytes.len() bytes (checked just above).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            a.pValue as *mut u8,
                            bytes.len(),
                        )
                    };
                    a.ulValueLen = bytes.len() as CK_ULONG;
                }
                AttrResult::Length(n) => a.ulValueLen = n as CK_ULONG,
                AttrResult::Unavailable => a.ulValueLen = crate::CK_UNAVAILABLE_INFORMATION,
            }
            // SAFETY: writing back the same element.
            unsafe { slot.write_unaligned(a) };
        }
        outcome
    })
}

/// C_SetAttributeValue.
#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if template.is_null() && count > 0 {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        objmgmt::write_object_refused(session, object)
    })
}

/// C_FindObjectsInit.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        // SAFETY: caller's template of `count` attributes (NULL iff empty).
        let template = unsafe { template_in(template, count)? };
        objmgmt::find_objects_init(session, &template)
    })
}

/// C_FindObjects.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if objects.is_null() || count.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        let max = to_usize(max)?;
        let found = objmgmt::find_objects(session, max)?;
        let n = found.len().min(max);
        // SAFETY: the caller's array holds `max` >= n handles; count is
        // checked non-NULL.
        unsafe {
            std::ptr::copy_nonoverlapping(found.as_ptr(), objects, n);
            count.write_unaligned(n as CK_ULONG);
        }
        Ok(())
    })
}

/// C_FindObjectsFinal.
#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    guard_init(|| objmgmt::find_objects_final(session))
}

// ---- Message digesting (5.12) ----

/// C_DigestInit.
#[no_mangle]
pub unsafe extern "C" fn C_DigestInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
) -> CK_RV {
    guard_init(|| {
        // SAFETY: caller's CK_MECHANISM or NULL.
        let mech = unsafe { mechanism_in(mech)? };
        digest::digest_init(session, mech.as_ref())
    })
}

/// C_Digest.
#[no_mangle]
pub unsafe extern "C" fn C_Digest(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's input buffer and output buffer/length (PKCS#11 5.12).
    guard_init(|| unsafe {
        input_output(data, data_len, out, out_len, |d, cap| {
            digest::digest(session, d, cap)
        })
    })
}

/// C_DigestUpdate.
#[no_mangle]
pub unsafe extern "C" fn C_DigestUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's input buffer of part_len bytes.
    guard_init(|| digest::digest_update(session, unsafe { bytes_in(part, part_len)? }))
}

/// C_DigestFinal.
#[no_mangle]
pub unsafe extern "C" fn C_DigestFinal(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's output buffer and length (PKCS#11 5.12).
    guard_init(|| unsafe { output(out, out_len, |cap| digest::digest_final(session, cap)) })
}

// ---- Signing (5.13) ----

/// C_SignInit.
#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        // SAFETY: caller's CK_MECHANISM or NULL.
        let mech = unsafe { mechanism_in(mech)? };
        signing::sign_init(session, mech.as_ref(), key)
    })
}

/// C_Sign.
#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's input buffer and output buffer/length (PKCS#11 5.13).
    guard_init(|| unsafe {
        input_output(data, data_len, signature, signature_len, |d, cap| {
            signing::sign(session, d, cap)
        })
    })
}

/// C_SignUpdate.
#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's input buffer of part_len bytes.
    guard_init(|| signing::sign_update(session, unsafe { bytes_in(part, part_len)? }))
}

/// C_SignFinal.
#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's output buffer and length (PKCS#11 5.13).
    guard_init(|| unsafe {
        output(signature, signature_len, |cap| {
            signing::sign_final(session, cap)
        })
    })
}

// ---- Verifying (5.14) ----

/// C_VerifyInit.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        // SAFETY: caller's CK_MECHANISM or NULL.
        let mech = unsafe { mechanism_in(mech)? };
        verify::verify_init(session, mech.as_ref(), key)
    })
}

/// C_Verify.
#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if signature.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's input buffers.
        let (data, sig) = unsafe {
            (
                bytes_in(data, data_len)?,
                bytes_in(signature, signature_len)?,
            )
        };
        verify::verify(session, data, sig)
    })
}

/// C_VerifyUpdate.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's input buffer of part_len bytes.
    guard_init(|| verify::verify_update(session, unsafe { bytes_in(part, part_len)? }))
}

/// C_VerifyFinal.
#[no_mangle]
pub unsafe extern "C" fn C_VerifyFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if signature.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's input buffer.
        let sig = unsafe { bytes_in(signature, signature_len)? };
        verify::verify_final(session, sig)
    })
}

// ---- Key management (5.16): the card's keys are made at enrolment ----

/// C_GenerateKeyPair.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public_template: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private_template: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        if mech.is_null() || public_key.is_null() || private_key.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's templates of the given lengths (NULL iff empty).
        unsafe {
            attributes_in(public_template, public_count)?;
            attributes_in(private_template, private_count)?;
        }
        objmgmt::write_refused(session)
    })
}

/// C_GenerateKey.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard_init(|| {
        if mech.is_null() || key.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: caller's template of `count` attributes (NULL iff empty).
        unsafe { attributes_in(template, count)? };
        objmgmt::write_refused(session)
    })
}

// ---- Random number generation (5.15) ----

/// C_SeedRandom.
#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    session: CK_SESSION_HANDLE,
    seed: *mut CK_BYTE,
    seed_len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        // SAFETY: caller's input buffer (only checked, never read further).
        unsafe { bytes_in(seed, seed_len)? };
        random::seed_random(session)
    })
}

/// C_GenerateRandom.
#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard_init(|| {
        if out.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        let len = to_usize(len)?;
        if len > isize::MAX as usize {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: non-NULL output buffer of `len` writable bytes (PKCS#11 5.15).
        let buf = unsafe { std::slice::from_raw_parts_mut(out, len) };
        random::generate_random(session, buf)
    })
}

/// C_GetFunctionStatus: legacy, always CKR_FUNCTION_NOT_PARALLEL.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionStatus(session: CK_SESSION_HANDLE) -> CK_RV {
    guard_init(|| legacy_parallel(session))
}

/// C_CancelFunction: legacy, always CKR_FUNCTION_NOT_PARALLEL.
#[no_mangle]
pub unsafe extern "C" fn C_CancelFunction(session: CK_SESSION_HANDLE) -> CK_RV {
    guard_init(|| legacy_parallel(session))
}

fn legacy_parallel(session: CK_SESSION_HANDLE) -> Result<()> {
    let lib = crate::library::get()?;
    lib.session(session)?;
    Err(Pkcs11Error::FunctionNotParallel)
}
