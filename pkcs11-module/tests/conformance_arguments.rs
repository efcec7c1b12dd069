//! Every function of the PKCS#11 3.0 function list called with NULL
//! pointers, invalid session, slot and object handles, unsupported
//! mechanisms, without an operation, and before C_Initialize: each answers
//! the precise CK_RV of the table below and none crashes. The table names
//! every entry of the list (checked), so a new entry point needs its rows.

mod support;

use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr::null_mut;

use cryptoki_sys::*;
use support::*;

const BAD_SESSION: CK_SESSION_HANDLE = 0xdead_beef;
const BAD_SLOT: CK_SLOT_ID = 77;
const BAD_OBJECT: CK_OBJECT_HANDLE = 0x0bad_0bad;
/// The EC card's private key (slot 1), hidden from a session not logged in.
const EC_PRIVATE_KEY: CK_OBJECT_HANDLE = (2 << 16) | 3;
/// The RSA card's certificate (slot 0), not on the EC card's token.
const RSA_CERTIFICATE: CK_OBJECT_HANDLE = (1 << 16) | 1;
const PIN: &[u8] = b"123456";
const DATA: [u8; 32] = [7; 32];

/// The sessions and objects the table's calls name.
struct Ctx {
    m: &'static Module,
    /// Slot 0 (RSA), read/write, logged in, no operation active.
    user: CK_SESSION_HANDLE,
    /// Slot 1 (EC), not logged in, no operation active.
    public: CK_SESSION_HANDLE,
    /// The RSA card's private and public key.
    key: CK_OBJECT_HANDLE,
    public_key: CK_OBJECT_HANDLE,
}

/// One row: a call and the CK_RV it must return once initialised.
struct Case {
    what: &'static str,
    /// The function list entry it calls.
    entry: usize,
    call: Box<dyn Fn(&Ctx) -> CK_RV>,
    want: CK_RV,
}

fn mech(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

/// A mechanism whose parameter pointer is NULL but whose length is not.
fn mech_null_param(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: null_mut(),
        ulParameterLen: 24,
    }
}

/// A mechanism that takes no parameter, given one.
fn mech_with_param(t: CK_MECHANISM_TYPE, param: &mut [u8; 8]) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: param.as_mut_ptr() as *mut c_void,
        ulParameterLen: 8,
    }
}

/// A template entry asking for the length of `t`.
fn attr(t: CK_ATTRIBUTE_TYPE) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: null_mut(),
        ulValueLen: 0,
    }
}

/// A template entry with a NULL value of non-zero length (bad in a search).
fn attr_null_value(t: CK_ATTRIBUTE_TYPE) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: null_mut(),
        ulValueLen: 4,
    }
}

fn ulong(n: CK_ULONG) -> CK_ULONG {
    n
}

fn zeroed<T>() -> T {
    // SAFETY (test): only for the plain C structs of PKCS#11.
    unsafe { std::mem::zeroed() }
}

fn data() -> *mut u8 {
    DATA.as_ptr() as *mut u8
}

fn pin() -> *mut u8 {
    PIN.as_ptr() as *mut u8
}

fn dangling() -> *mut c_void {
    std::ptr::dangling_mut::<c_void>()
}

/// C_Initialize arguments with a non-NULL pReserved.
fn reserved_args() -> CK_C_INITIALIZE_ARGS {
    CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: 0,
        pReserved: dangling(),
    }
}

/// The table. Functions the card does not offer answer
/// FUNCTION_NOT_SUPPORTED whatever their arguments.
fn cases(m: &'static Module) -> Vec<Case> {
    let mut cases = Vec::new();
    macro_rules! case {
        (|$c:ident| $name:ident ( $($arg:expr),* $(,)? ) => $want:expr) => {
            cases.push(Case {
                what: concat!(stringify!($name), "(", stringify!($($arg),*), ")"),
                entry: m.f.$name.map_or(0, |f| f as usize),
                call: Box::new(move |$c: &Ctx| {
                    let f = $c.m.f.$name.expect(stringify!($name));
                    // SAFETY (test): every pointer is NULL, dangling only
                    // where the function must reject it unread, or valid.
                    #[allow(unused_unsafe, clippy::macro_metavars_in_unsafe)]
                    unsafe {
                        f($($arg),*)
                    }
                }),
                want: $want,
            })
        };
    }

    // ---- General purpose ----
    case!(|c| C_Initialize(null_mut()) => CKR_CRYPTOKI_ALREADY_INITIALIZED);
    case!(|c| C_Initialize(&mut reserved_args() as *mut _ as *mut c_void) => CKR_ARGUMENTS_BAD);
    case!(|c| C_Finalize(dangling()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetInfo(null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetFunctionList(null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetInterfaceList(null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetInterface(null_mut(), null_mut(), null_mut(), 0) => CKR_ARGUMENTS_BAD);

    // ---- Slots and tokens ----
    case!(|c| C_GetSlotList(CK_FALSE, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetSlotInfo(BAD_SLOT, &mut zeroed::<CK_SLOT_INFO>()) => CKR_SLOT_ID_INVALID);
    case!(|c| C_GetSlotInfo(0, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetTokenInfo(BAD_SLOT, &mut zeroed::<CK_TOKEN_INFO>()) => CKR_SLOT_ID_INVALID);
    case!(|c| C_GetTokenInfo(0, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetMechanismList(BAD_SLOT, null_mut(), &mut ulong(0)) => CKR_SLOT_ID_INVALID);
    case!(|c| C_GetMechanismList(0, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetMechanismInfo(BAD_SLOT, CKM_SHA256, &mut zeroed::<CK_MECHANISM_INFO>()) => CKR_SLOT_ID_INVALID);
    case!(|c| C_GetMechanismInfo(0, CKM_AES_CBC, &mut zeroed::<CK_MECHANISM_INFO>()) => CKR_MECHANISM_INVALID);
    case!(|c| C_GetMechanismInfo(0, CKM_ECDSA, &mut zeroed::<CK_MECHANISM_INFO>()) => CKR_MECHANISM_INVALID);
    case!(|c| C_GetMechanismInfo(0, CKM_SHA256, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_InitToken(BAD_SLOT, pin(), 6, [b' '; 32].as_mut_ptr()) => CKR_SLOT_ID_INVALID);
    case!(|c| C_InitToken(0, pin(), 6, [b' '; 32].as_mut_ptr()) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_InitPIN(BAD_SESSION, pin(), 6) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_InitPIN(c.user, pin(), 6) => CKR_USER_NOT_LOGGED_IN);
    case!(|c| C_SetPIN(BAD_SESSION, pin(), 6, pin(), 6) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SetPIN(c.user, null_mut(), 6, pin(), 6) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SetPIN(c.user, pin(), 6, null_mut(), 6) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SetPIN(c.public, pin(), 6, pin(), 6) => CKR_SESSION_READ_ONLY);
    case!(|c| C_WaitForSlotEvent(CKF_DONT_BLOCK, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ulong(0), dangling()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ulong(0), null_mut()) => CKR_NO_EVENT);

    // ---- Sessions ----
    case!(|c| C_OpenSession(BAD_SLOT, CKF_SERIAL_SESSION, null_mut(), None, &mut ulong(0)) => CKR_SLOT_ID_INVALID);
    case!(|c| C_OpenSession(0, 0, null_mut(), None, &mut ulong(0)) => CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    case!(|c| C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_CloseSession(BAD_SESSION) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_CloseSession(CK_INVALID_HANDLE) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_CloseAllSessions(BAD_SLOT) => CKR_SLOT_ID_INVALID);
    case!(|c| C_GetSessionInfo(BAD_SESSION, &mut zeroed::<CK_SESSION_INFO>()) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GetSessionInfo(c.user, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetOperationState(c.user, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SetOperationState(c.user, data(), 32, 0, 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_Login(BAD_SESSION, CKU_USER, pin(), 6) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_Login(c.public, CKU_USER, null_mut(), 6) => CKR_ARGUMENTS_BAD);
    case!(|c| C_Login(c.public, 99, pin(), 6) => CKR_USER_TYPE_INVALID);
    case!(|c| C_Login(c.public, CKU_SO, pin(), 6) => CKR_USER_TYPE_INVALID);
    case!(|c| C_Login(c.public, CKU_CONTEXT_SPECIFIC, pin(), 6) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_Login(c.user, CKU_USER, pin(), 6) => CKR_USER_ALREADY_LOGGED_IN);
    case!(|c| C_Logout(BAD_SESSION) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_Logout(c.public) => CKR_USER_NOT_LOGGED_IN);
    case!(|c| C_LoginUser(c.public, CKU_USER, pin(), 6, pin(), 6) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SessionCancel(BAD_SESSION, CKF_SIGN) => CKR_SESSION_HANDLE_INVALID);

    // ---- Objects ----
    case!(|c| C_CreateObject(BAD_SESSION, [attr(CKA_LABEL)].as_mut_ptr(), 1, &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_CreateObject(c.user, null_mut(), 1, &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_CreateObject(c.user, [attr(CKA_LABEL)].as_mut_ptr(), 1, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_CreateObject(c.user, [attr(CKA_LABEL)].as_mut_ptr(), 1, &mut ulong(0)) => CKR_TOKEN_WRITE_PROTECTED);
    case!(|c| C_CopyObject(BAD_SESSION, c.key, null_mut(), 0, &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_CopyObject(c.user, BAD_OBJECT, null_mut(), 0, &mut ulong(0)) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_CopyObject(c.user, c.key, null_mut(), 0, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_CopyObject(c.user, c.key, null_mut(), 0, &mut ulong(0)) => CKR_TOKEN_WRITE_PROTECTED);
    case!(|c| C_DestroyObject(BAD_SESSION, c.key) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_DestroyObject(c.user, BAD_OBJECT) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_DestroyObject(c.user, c.key) => CKR_TOKEN_WRITE_PROTECTED);
    case!(|c| C_GetObjectSize(BAD_SESSION, c.key, &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GetObjectSize(c.user, BAD_OBJECT, &mut ulong(0)) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_GetObjectSize(c.user, c.key, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetAttributeValue(BAD_SESSION, c.key, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GetAttributeValue(c.user, BAD_OBJECT, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_GetAttributeValue(c.user, CK_INVALID_HANDLE, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_GetAttributeValue(c.public, RSA_CERTIFICATE, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_GetAttributeValue(c.public, EC_PRIVATE_KEY, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_GetAttributeValue(c.user, c.key, null_mut(), 1) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SetAttributeValue(BAD_SESSION, c.key, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SetAttributeValue(c.user, BAD_OBJECT, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_OBJECT_HANDLE_INVALID);
    case!(|c| C_SetAttributeValue(c.user, c.key, null_mut(), 1) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SetAttributeValue(c.user, c.key, [attr(CKA_LABEL)].as_mut_ptr(), 1) => CKR_TOKEN_WRITE_PROTECTED);
    case!(|c| C_FindObjectsInit(BAD_SESSION, null_mut(), 0) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_FindObjectsInit(c.user, null_mut(), 1) => CKR_ARGUMENTS_BAD);
    case!(|c| C_FindObjectsInit(c.user, [attr_null_value(CKA_CLASS)].as_mut_ptr(), 1) => CKR_ARGUMENTS_BAD);
    case!(|c| C_FindObjects(BAD_SESSION, [0; 4].as_mut_ptr(), 4, &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_FindObjects(c.user, [0; 4].as_mut_ptr(), 4, &mut ulong(0)) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_FindObjects(c.user, null_mut(), 4, &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_FindObjects(c.user, [0; 4].as_mut_ptr(), 4, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_FindObjectsFinal(BAD_SESSION) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_FindObjectsFinal(c.user) => CKR_OPERATION_NOT_INITIALIZED);

    // ---- Encryption, decryption, key management: not offered ----
    case!(|c| C_EncryptInit(c.user, &mut mech(CKM_RSA_PKCS), c.public_key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_Encrypt(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_EncryptUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_EncryptFinal(c.user, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptInit(c.user, &mut mech(CKM_RSA_PKCS), c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_Decrypt(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptFinal(c.user, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DigestKey(c.user, c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignRecoverInit(c.user, &mut mech(CKM_RSA_PKCS), c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignRecover(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_VerifyRecoverInit(c.user, &mut mech(CKM_RSA_PKCS), c.public_key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_VerifyRecover(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DigestEncryptUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptDigestUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignEncryptUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptVerifyUpdate(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_WrapKey(c.user, &mut mech(CKM_RSA_PKCS), c.public_key, c.key, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_UnwrapKey(c.user, &mut mech(CKM_RSA_PKCS), c.key, data(), 32, null_mut(), 0, &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DeriveKey(c.user, &mut mech(CKM_ECDH1_DERIVE), c.key, null_mut(), 0, &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    // Key generation is refused by the write-protected token, after the
    // arguments and the session are checked.
    case!(|c| C_GenerateKey(BAD_SESSION, &mut mech(CKM_AES_KEY_GEN), null_mut(), 0, &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GenerateKey(c.user, null_mut(), null_mut(), 0, &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKey(c.user, &mut mech(CKM_AES_KEY_GEN), null_mut(), 1, &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKey(c.user, &mut mech(CKM_AES_KEY_GEN), null_mut(), 0, null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKey(c.user, &mut mech(CKM_AES_KEY_GEN), null_mut(), 0, &mut ulong(0)) => CKR_TOKEN_WRITE_PROTECTED);
    case!(|c| C_GenerateKeyPair(BAD_SESSION, &mut mech(CKM_EC_KEY_PAIR_GEN), null_mut(), 0, null_mut(), 0, &mut ulong(0), &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GenerateKeyPair(c.user, null_mut(), null_mut(), 0, null_mut(), 0, &mut ulong(0), &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKeyPair(c.user, &mut mech(CKM_EC_KEY_PAIR_GEN), null_mut(), 1, null_mut(), 0, &mut ulong(0), &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKeyPair(c.user, &mut mech(CKM_EC_KEY_PAIR_GEN), null_mut(), 0, null_mut(), 0, null_mut(), &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GenerateKeyPair(c.user, &mut mech(CKM_EC_KEY_PAIR_GEN), null_mut(), 0, null_mut(), 0, &mut ulong(0), &mut ulong(0)) => CKR_TOKEN_WRITE_PROTECTED);

    // ---- Digesting ----
    case!(|c| C_DigestInit(BAD_SESSION, &mut mech(CKM_SHA256)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_DigestInit(c.user, &mut mech(CKM_MD5)) => CKR_MECHANISM_INVALID);
    case!(|c| C_DigestInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS)) => CKR_MECHANISM_INVALID);
    case!(|c| C_DigestInit(c.user, &mut mech_null_param(CKM_SHA256)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_DigestInit(c.user, &mut mech_with_param(CKM_SHA256, &mut [0; 8])) => CKR_MECHANISM_PARAM_INVALID);
    case!(|c| C_Digest(BAD_SESSION, data(), 32, null_mut(), &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_Digest(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_Digest(c.user, null_mut(), 32, null_mut(), &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_Digest(c.user, data(), 32, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_DigestUpdate(BAD_SESSION, data(), 32) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_DigestUpdate(c.user, data(), 32) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_DigestUpdate(c.user, null_mut(), 32) => CKR_ARGUMENTS_BAD);
    case!(|c| C_DigestFinal(BAD_SESSION, null_mut(), &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_DigestFinal(c.user, null_mut(), &mut ulong(0)) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_DigestFinal(c.user, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);

    // ---- Signing ----
    case!(|c| C_SignInit(BAD_SESSION, &mut mech(CKM_SHA256_RSA_PKCS), c.key) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), BAD_OBJECT) => CKR_KEY_HANDLE_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), CK_INVALID_HANDLE) => CKR_KEY_HANDLE_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), c.public_key) => CKR_KEY_FUNCTION_NOT_PERMITTED);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), RSA_CERTIFICATE) => CKR_KEY_HANDLE_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_AES_CBC), c.key) => CKR_MECHANISM_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_ECDSA_SHA256), c.key) => CKR_MECHANISM_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256), c.key) => CKR_MECHANISM_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS_PSS), c.key) => CKR_MECHANISM_PARAM_INVALID);
    case!(|c| C_SignInit(c.user, &mut mech_null_param(CKM_SHA256_RSA_PKCS_PSS), c.key) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SignInit(c.user, &mut mech_with_param(CKM_SHA256_RSA_PKCS, &mut [0; 8]), c.key) => CKR_MECHANISM_PARAM_INVALID);
    case!(|c| C_SignInit(c.public, &mut mech(CKM_ECDSA_SHA256), EC_PRIVATE_KEY) => CKR_USER_NOT_LOGGED_IN);
    case!(|c| C_Sign(BAD_SESSION, data(), 32, null_mut(), &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_Sign(c.user, data(), 32, null_mut(), &mut ulong(0)) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_Sign(c.user, null_mut(), 32, null_mut(), &mut ulong(0)) => CKR_ARGUMENTS_BAD);
    case!(|c| C_Sign(c.user, data(), 32, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SignUpdate(BAD_SESSION, data(), 32) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SignUpdate(c.user, data(), 32) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_SignUpdate(c.user, null_mut(), 32) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SignFinal(BAD_SESSION, null_mut(), &mut ulong(0)) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SignFinal(c.user, null_mut(), &mut ulong(0)) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_SignFinal(c.user, null_mut(), null_mut()) => CKR_ARGUMENTS_BAD);

    // ---- Verifying ----
    case!(|c| C_VerifyInit(BAD_SESSION, &mut mech(CKM_SHA256_RSA_PKCS), c.public_key) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_VerifyInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), BAD_OBJECT) => CKR_KEY_HANDLE_INVALID);
    case!(|c| C_VerifyInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), c.key) => CKR_KEY_FUNCTION_NOT_PERMITTED);
    case!(|c| C_VerifyInit(c.user, &mut mech(CKM_AES_CBC), c.public_key) => CKR_MECHANISM_INVALID);
    case!(|c| C_VerifyInit(c.user, &mut mech_with_param(CKM_SHA256_RSA_PKCS, &mut [0; 8]), c.public_key) => CKR_MECHANISM_PARAM_INVALID);
    case!(|c| C_Verify(BAD_SESSION, data(), 32, [0; 256].as_mut_ptr(), 256) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_Verify(c.user, data(), 32, [0; 256].as_mut_ptr(), 256) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_Verify(c.user, data(), 32, null_mut(), 256) => CKR_ARGUMENTS_BAD);
    case!(|c| C_Verify(c.user, null_mut(), 32, [0; 256].as_mut_ptr(), 256) => CKR_ARGUMENTS_BAD);
    case!(|c| C_VerifyUpdate(BAD_SESSION, data(), 32) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_VerifyUpdate(c.user, data(), 32) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_VerifyUpdate(c.user, null_mut(), 32) => CKR_ARGUMENTS_BAD);
    case!(|c| C_VerifyFinal(BAD_SESSION, [0; 256].as_mut_ptr(), 256) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_VerifyFinal(c.user, [0; 256].as_mut_ptr(), 256) => CKR_OPERATION_NOT_INITIALIZED);
    case!(|c| C_VerifyFinal(c.user, null_mut(), 256) => CKR_ARGUMENTS_BAD);

    // ---- Random numbers, legacy parallel functions ----
    case!(|c| C_SeedRandom(BAD_SESSION, data(), 32) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_SeedRandom(c.user, null_mut(), 32) => CKR_ARGUMENTS_BAD);
    case!(|c| C_SeedRandom(c.user, data(), 32) => CKR_RANDOM_SEED_NOT_SUPPORTED);
    case!(|c| C_GenerateRandom(BAD_SESSION, [0; 8].as_mut_ptr(), 8) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GenerateRandom(c.user, null_mut(), 8) => CKR_ARGUMENTS_BAD);
    case!(|c| C_GetFunctionStatus(BAD_SESSION) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_GetFunctionStatus(c.user) => CKR_FUNCTION_NOT_PARALLEL);
    case!(|c| C_CancelFunction(BAD_SESSION) => CKR_SESSION_HANDLE_INVALID);
    case!(|c| C_CancelFunction(c.user) => CKR_FUNCTION_NOT_PARALLEL);

    // ---- Message-based functions (3.0): not offered ----
    let nul = || null_mut::<c_void>();
    case!(|c| C_MessageEncryptInit(c.user, &mut mech(CKM_AES_GCM), c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_EncryptMessage(c.user, nul(), 0, null_mut(), 0, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_EncryptMessageBegin(c.user, nul(), 0, null_mut(), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_EncryptMessageNext(c.user, nul(), 0, data(), 32, null_mut(), &mut ulong(0), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageEncryptFinal(c.user) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageDecryptInit(c.user, &mut mech(CKM_AES_GCM), c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptMessage(c.user, nul(), 0, null_mut(), 0, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptMessageBegin(c.user, nul(), 0, null_mut(), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_DecryptMessageNext(c.user, nul(), 0, data(), 32, null_mut(), &mut ulong(0), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageDecryptFinal(c.user) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageSignInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), c.key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignMessage(c.user, nul(), 0, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignMessageBegin(c.user, nul(), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_SignMessageNext(c.user, nul(), 0, data(), 32, null_mut(), &mut ulong(0)) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageSignFinal(c.user) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageVerifyInit(c.user, &mut mech(CKM_SHA256_RSA_PKCS), c.public_key) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_VerifyMessage(c.user, nul(), 0, data(), 32, [0; 256].as_mut_ptr(), 256) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_VerifyMessageBegin(c.user, nul(), 0) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_VerifyMessageNext(c.user, nul(), 0, data(), 32, [0; 256].as_mut_ptr(), 256) => CKR_FUNCTION_NOT_SUPPORTED);
    case!(|c| C_MessageVerifyFinal(c.user) => CKR_FUNCTION_NOT_SUPPORTED);
    cases
}

/// Functions an application may call before C_Initialize.
fn callable_uninitialised(m: &Module, entry: usize) -> bool {
    let f = m.f;
    [
        f.C_GetFunctionList.map(|f| f as usize),
        f.C_GetInterfaceList.map(|f| f as usize),
        f.C_GetInterface.map(|f| f as usize),
    ]
    .contains(&Some(entry))
}

/// Runs every case; returns the mismatches as lines.
fn run(c: &Ctx, cases: &[Case], want: impl Fn(&Case) -> Option<CK_RV>) -> Vec<String> {
    cases
        .iter()
        .filter_map(|case| {
            let want = want(case)?;
            let got = (case.call)(c);
            (got != want).then(|| format!("{}: {got:#x}, expected {want:#x}", case.what))
        })
        .collect()
}

#[test]
fn every_function_answers_bad_arguments_and_handles_with_the_precise_ckr() {
    let (_g, m, _agent) = setup();
    let user = open_session(m, 0, true);
    assert_eq!(login(m, user, "123456"), CKR_OK);
    let key = private_key(m, user);
    let public_key = find(m, user, CKO_PUBLIC_KEY)[0];
    let public = open_session(m, 1, false);
    let ctx = Ctx {
        m,
        user,
        public,
        key,
        public_key,
    };
    let cases = cases(m);

    // The table covers every entry of the 3.0 function list.
    type Entry = Option<unsafe extern "C" fn()>;
    let first = std::ptr::addr_of!(m.f.C_Initialize) as *const Entry;
    // SAFETY (test): after its CK_VERSION the 3.0 list is 92 function pointers.
    let all: HashSet<usize> = (0..92)
        .map(|i| unsafe { *first.add(i) }.map_or(0, |f| f as usize))
        .collect();
    let covered: HashSet<usize> = cases.iter().map(|c| c.entry).collect();
    assert_eq!(all.len(), 92);
    assert!(
        all.is_subset(&covered),
        "{} entries of the function list have no row",
        all.difference(&covered).count()
    );

    let wrong = run(&ctx, &cases, |case| Some(case.want));
    assert!(wrong.is_empty(), "initialised:\n{}", wrong.join("\n"));
    // Twice: no case changed the state another depends on.
    let wrong = run(&ctx, &cases, |case| Some(case.want));
    assert!(wrong.is_empty(), "second round:\n{}", wrong.join("\n"));
    // The sessions are as they were.
    let mut info: CK_SESSION_INFO = zeroed();
    assert_eq!(p11!(m, C_GetSessionInfo(user, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RW_USER_FUNCTIONS);
    assert_eq!(p11!(m, C_GetSessionInfo(public, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RO_PUBLIC_SESSION);

    // Not initialised (never, and again after C_Finalize): whatever the
    // arguments, CRYPTOKI_NOT_INITIALIZED, except for the functions meant
    // for before C_Initialize.
    finalize(m);
    let initialize = m.f.C_Initialize.map_or(0, |f| f as usize);
    let before = |case: &Case| {
        if case.entry == initialize {
            None
        } else if callable_uninitialised(m, case.entry) {
            Some(case.want)
        } else {
            Some(CKR_CRYPTOKI_NOT_INITIALIZED)
        }
    };
    let wrong = run(&ctx, &cases, before);
    assert!(wrong.is_empty(), "not initialised:\n{}", wrong.join("\n"));
}

#[test]
fn operations_started_twice_or_finished_out_of_order() {
    let (_g, m, _agent) = setup();
    let h = open_session(m, 0, false);
    assert_eq!(login(m, h, "123456"), CKR_OK);
    let key = private_key(m, h);
    let public_key = find(m, h, CKO_PUBLIC_KEY)[0];
    let mut sha = mech(CKM_SHA256_RSA_PKCS);
    let mut digest = mech(CKM_SHA256);

    assert_eq!(p11!(m, C_SignInit(h, &mut sha, key)), CKR_OK);
    assert_eq!(p11!(m, C_SignInit(h, &mut sha, key)), CKR_OPERATION_ACTIVE);
    // The other kinds of operation are independent.
    assert_eq!(p11!(m, C_VerifyInit(h, &mut sha, public_key)), CKR_OK);
    assert_eq!(
        p11!(m, C_VerifyInit(h, &mut sha, public_key)),
        CKR_OPERATION_ACTIVE
    );
    assert_eq!(p11!(m, C_DigestInit(h, &mut digest)), CKR_OK);
    assert_eq!(p11!(m, C_DigestInit(h, &mut digest)), CKR_OPERATION_ACTIVE);
    assert_eq!(p11!(m, C_FindObjectsInit(h, null_mut(), 0)), CKR_OK);
    assert_eq!(
        p11!(m, C_FindObjectsInit(h, null_mut(), 0)),
        CKR_OPERATION_ACTIVE
    );
    // C_SessionCancel ends the ones named, and only those.
    assert_eq!(
        p11!(m, C_SessionCancel(h, CKF_SIGN | CKF_FIND_OBJECTS)),
        CKR_OK
    );
    assert_eq!(
        p11!(m, C_SignFinal(h, null_mut(), &mut ulong(0))),
        CKR_OPERATION_NOT_INITIALIZED
    );
    assert_eq!(
        p11!(m, C_FindObjectsFinal(h)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    assert_eq!(p11!(m, C_DigestUpdate(h, data(), 32)), CKR_OK);
    assert_eq!(p11!(m, C_VerifyUpdate(h, data(), 32)), CKR_OK);
    // A NULL mechanism ends an operation too (PKCS#11 3.0).
    assert_eq!(p11!(m, C_DigestInit(h, null_mut())), CKR_OK);
    assert_eq!(
        p11!(m, C_DigestUpdate(h, data(), 32)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    assert_eq!(p11!(m, C_VerifyInit(h, null_mut(), 0)), CKR_OK);
    assert_eq!(
        p11!(m, C_VerifyFinal(h, [0; 256].as_mut_ptr(), 256)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // A multi-part digest cannot end with the single-part call.
    assert_eq!(p11!(m, C_DigestInit(h, &mut digest)), CKR_OK);
    assert_eq!(p11!(m, C_DigestUpdate(h, data(), 32)), CKR_OK);
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    assert_eq!(
        p11!(m, C_Digest(h, data(), 32, out.as_mut_ptr(), &mut len)),
        CKR_OPERATION_ACTIVE
    );
    assert_eq!(
        p11!(m, C_DigestFinal(h, out.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // A raw RSA signature of more than k - 11 bytes is DATA_LEN_RANGE and
    // ends the operation.
    let mut raw = mech(CKM_RSA_PKCS);
    assert_eq!(p11!(m, C_SignInit(h, &mut raw, key)), CKR_OK);
    let long = [1u8; 246];
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(
        p11!(
            m,
            C_Sign(h, long.as_ptr() as *mut u8, 246, sig.as_mut_ptr(), &mut len)
        ),
        CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        p11!(m, C_Sign(h, data(), 32, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    finalize(m);
}
