//! The function tables handed to applications: the PKCS#11 2.40
//! CK_FUNCTION_LIST (C_GetFunctionList) and, through C_GetInterface /
//! C_GetInterfaceList, the 3.0 list under the interface name "PKCS 11".

use std::ffi::{c_void, CStr};

use cryptoki_sys::*;

use super::entry::*;
use super::unsupported::*;
use super::{guard, write_list};
use crate::error::Pkcs11Error;

/// Builds a function list: the 2.40 functions every list has, its own
/// C_GetInfo (which reports the list's version) and the functions only newer
/// lists have.
macro_rules! function_list {
    ($ty:ident, $major:expr, $minor:expr, $get_info:ident, [$($extra:ident),* $(,)?]) => {
        $ty {
            version: CK_VERSION { major: $major, minor: $minor },
            C_GetInfo: Some($get_info),
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(C_GetOperationState),
            C_SetOperationState: Some(C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(C_SignRecoverInit),
            C_SignRecover: Some(C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
            C_VerifyRecover: Some(C_VerifyRecover),
            C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
            $($extra: Some($extra),)*
        }
    };
}

/// The 2.40 list (C_GetFunctionList).
static FUNCTION_LIST_2_40: CK_FUNCTION_LIST =
    function_list!(CK_FUNCTION_LIST, 2, 40, C_GetInfo_v2, []);

/// The 3.0 list (C_GetInterface "PKCS 11" version 3.0).
static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = function_list!(
    CK_FUNCTION_LIST_3_0,
    3,
    0,
    C_GetInfo,
    [
        C_GetInterfaceList,
        C_GetInterface,
        C_LoginUser,
        C_SessionCancel,
        C_MessageEncryptInit,
        C_EncryptMessage,
        C_EncryptMessageBegin,
        C_EncryptMessageNext,
        C_MessageEncryptFinal,
        C_MessageDecryptInit,
        C_DecryptMessage,
        C_DecryptMessageBegin,
        C_DecryptMessageNext,
        C_MessageDecryptFinal,
        C_MessageSignInit,
        C_SignMessage,
        C_SignMessageBegin,
        C_SignMessageNext,
        C_MessageSignFinal,
        C_MessageVerifyInit,
        C_VerifyMessage,
        C_VerifyMessageBegin,
        C_VerifyMessageNext,
        C_MessageVerifyFinal,
    ]
);

const INTERFACE_NAME: &CStr = c"PKCS 11";

/// The interfaces, newest first: C_GetInterface without a version picks 3.0.
struct Interfaces([CK_INTERFACE; 2]);

// SAFETY: the raw pointers inside point to immutable statics (the name and
// the function lists); sharing them between threads is sound.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST_3_0 as *const CK_FUNCTION_LIST_3_0 as *mut c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST_2_40 as *const CK_FUNCTION_LIST as *mut c_void,
        flags: 0,
    },
]);

const INTERFACE_VERSIONS: [CK_VERSION; 2] = [
    CK_VERSION { major: 3, minor: 0 },
    CK_VERSION {
        major: 2,
        minor: 40,
    },
];

/// C_GetFunctionList: the 2.40 list. Callable before C_Initialize.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard(|| {
        if list.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: checked non-NULL; the caller gives a place for one pointer.
        // Applications only read the list (PKCS#11 5.4), so handing out a
        // mutable pointer to the immutable static is the C API's convention.
        unsafe {
            list.write_unaligned(
                &FUNCTION_LIST_2_40 as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST,
            )
        };
        Ok(())
    })
}

/// C_GetInterfaceList (3.0): both interfaces, size-query protocol.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(
    list: *mut CK_INTERFACE,
    count: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's array and count, per the size-query protocol.
    guard(|| unsafe { write_list(&INTERFACES.0, list, count) })
}

/// C_GetInterface (3.0): by name ("PKCS 11" or NULL), version (or NULL for
/// the newest) and flags (none are offered).
#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    interface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    guard(|| {
        if interface.is_null() {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        if !name.is_null() {
            // SAFETY: a non-NULL name is a NUL-terminated string (PKCS#11 5.4).
            let asked = unsafe { CStr::from_ptr(name as *const std::ffi::c_char) };
            if asked != INTERFACE_NAME {
                return Err(Pkcs11Error::ArgumentsBad);
            }
        }
        let wanted = if version.is_null() {
            None
        } else {
            // SAFETY: a non-NULL version points to a CK_VERSION.
            Some(unsafe { version.read_unaligned() })
        };
        let index = match wanted {
            None => 0,
            Some(v) => INTERFACE_VERSIONS
                .iter()
                .position(|have| have.major == v.major && have.minor == v.minor)
                .ok_or(Pkcs11Error::ArgumentsBad)?,
        };
        let chosen = &INTERFACES.0[index];
        if chosen.flags & flags != flags {
            return Err(Pkcs11Error::ArgumentsBad);
        }
        // SAFETY: checked non-NULL; the interface is a static that lives as
        // long as the library, and applications only read it.
        unsafe { interface.write_unaligned(chosen as *const CK_INTERFACE as *mut CK_INTERFACE) };
        Ok(())
    })
}
