//! Test helpers: load the built liblanyard_pkcs11.so as an application
//! would (dlopen + C_GetInterface), and a fake agent that answers the agent
//! protocol with real keys, for unit-level tests of the module's protocol handling.
#![allow(dead_code)]

pub mod fake_agent;
pub mod process;
pub mod signature;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use cryptoki_sys::*;

/// The loaded module and its PKCS#11 3.0 function list.
pub struct Module {
    _lib: libloading::Library,
    pub f: &'static CK_FUNCTION_LIST_3_0,
    pub f2: &'static CK_FUNCTION_LIST,
}

/// The cdylib cargo built together with this test: it sits next to the
/// test executable in target/<profile>/deps/ (target/<profile>/ holds a copy
/// only after `cargo build`, and may be stale or from another build).
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    let beside = deps.join("liblanyard_pkcs11.so");
    if beside.exists() {
        return beside;
    }
    deps.parent()
        .expect("target dir")
        .join("liblanyard_pkcs11.so")
}

type GetInterface = unsafe extern "C" fn(
    *mut CK_UTF8CHAR,
    *mut CK_VERSION,
    *mut *mut CK_INTERFACE,
    CK_FLAGS,
) -> CK_RV;
type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;

impl Module {
    fn load() -> Module {
        let path = module_path();
        // SAFETY (test): loading our own cdylib; its initialisers are Rust statics.
        let lib = unsafe { libloading::Library::new(&path) }
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
        // SAFETY (test): the symbol has the PKCS#11 3.0 C_GetInterface signature.
        let get_interface: libloading::Symbol<GetInterface> =
            unsafe { lib.get(b"C_GetInterface") }.expect("C_GetInterface exported");
        let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
        let rv = unsafe {
            get_interface(
                c"PKCS 11".as_ptr() as *mut CK_UTF8CHAR,
                std::ptr::null_mut(),
                &mut iface,
                0,
            )
        };
        assert_eq!(rv, CKR_OK);
        // SAFETY (test): the module returns a static interface with a 3.0 list.
        let f = unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0) };
        let get_list: libloading::Symbol<GetFunctionList> =
            unsafe { lib.get(b"C_GetFunctionList") }.expect("C_GetFunctionList exported");
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        assert_eq!(unsafe { get_list(&mut list) }, CKR_OK);
        let f2 = unsafe { &*list };
        Module { _lib: lib, f, f2 }
    }
}

/// The module, loaded once per test process.
pub fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(Module::load)
}

/// The module has one global state per process: tests take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shorthand for calling an entry of the function list.
#[macro_export]
macro_rules! p11 {
    ($m:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let f = $m.f.$name.expect(stringify!($name));
        // SAFETY (test): calling the module with arguments valid for the spec.
        #[allow(clippy::macro_metavars_in_unsafe)]
        unsafe { f($($arg),*) }
    }};
}

/// Initialises the module with the agent socket at `sock` (NULL args).
pub fn initialize(m: &Module, sock: &std::path::Path) -> CK_RV {
    use_socket(sock);
    p11!(m, C_Initialize(std::ptr::null_mut()))
}

/// Initialises the module with CK_C_INITIALIZE_ARGS holding no mutex
/// callbacks and `flags` (e.g. CKF_OS_LOCKING_OK), as multi-threaded
/// applications such as NSS do.
pub fn initialize_with_flags(m: &Module, sock: &std::path::Path, flags: CK_FLAGS) -> CK_RV {
    use_socket(sock);
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags,
        pReserved: std::ptr::null_mut(),
    };
    p11!(
        m,
        C_Initialize(&mut args as *mut CK_C_INITIALIZE_ARGS as *mut std::ffi::c_void)
    )
}

/// Points the module's next C_Initialize at `sock`.
pub fn use_socket(sock: &std::path::Path) {
    std::env::set_var("LANYARD_AGENT_SOCK", sock);
    // These tests look at the first call after a change: no reuse of a
    // recent card list (the default reuse has its own test).
    if std::env::var_os("LANYARD_PKCS11_REFRESH_MS").is_none() {
        std::env::set_var("LANYARD_PKCS11_REFRESH_MS", "0");
    }
}

/// This test's turn with the module, a fake agent with its two cards, and
/// the module initialised against it.
pub fn setup() -> (
    MutexGuard<'static, ()>,
    &'static Module,
    fake_agent::FakeAgent,
) {
    let g = serial();
    let agent = fake_agent::FakeAgent::start();
    let m = module();
    // A test that failed half-way left the module initialised; each test
    // starts from a clean module, so one failure does not hide the others.
    let _ = p11!(m, C_Finalize(std::ptr::null_mut()));
    assert_eq!(initialize(m, &agent.path), CKR_OK);
    (g, m, agent)
}

/// C_Finalize, which must succeed.
pub fn finalize(m: &Module) {
    assert_eq!(p11!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

/// The one private key a logged-in session sees.
pub fn private_key(m: &Module, h: CK_SESSION_HANDLE) -> CK_OBJECT_HANDLE {
    let keys = find(m, h, CKO_PRIVATE_KEY);
    assert_eq!(keys.len(), 1);
    keys[0]
}

/// C_GetSlotList(present) as a Vec.
pub fn slot_list(m: &Module, present: bool) -> Vec<CK_SLOT_ID> {
    let mut n: CK_ULONG = 0;
    let flag = if present { CK_TRUE } else { CK_FALSE };
    assert_eq!(
        p11!(m, C_GetSlotList(flag, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut ids = vec![0; n as usize];
    assert_eq!(
        p11!(m, C_GetSlotList(flag, ids.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    ids.truncate(n as usize);
    ids
}

/// Opens a session (R/W when `rw`).
pub fn open_session(m: &Module, slot: CK_SLOT_ID, rw: bool) -> CK_SESSION_HANDLE {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    let rv = p11!(
        m,
        C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut h)
    );
    assert_eq!(rv, CKR_OK);
    h
}

/// C_Login(CKU_USER, pin).
pub fn login(m: &Module, h: CK_SESSION_HANDLE, pin: &str) -> CK_RV {
    p11!(
        m,
        C_Login(h, CKU_USER, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)
    )
}

/// C_SetPIN(old, new).
pub fn set_pin(m: &Module, h: CK_SESSION_HANDLE, old: &str, new: &str) -> CK_RV {
    p11!(
        m,
        C_SetPIN(
            h,
            old.as_ptr() as *mut u8,
            old.len() as CK_ULONG,
            new.as_ptr() as *mut u8,
            new.len() as CK_ULONG
        )
    )
}

/// C_SignUpdate with `part`.
pub fn sign_update(m: &Module, h: CK_SESSION_HANDLE, part: &[u8]) -> CK_RV {
    p11!(
        m,
        C_SignUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)
    )
}

/// Finds objects of `class`.
pub fn find(m: &Module, h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS) -> Vec<CK_OBJECT_HANDLE> {
    let mut class = class;
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: &mut class as *mut _ as *mut std::ffi::c_void,
        ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
    }];
    assert_eq!(p11!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 1)), CKR_OK);
    let mut out = vec![0; 16];
    let mut n = 0;
    assert_eq!(
        p11!(m, C_FindObjects(h, out.as_mut_ptr(), 16, &mut n)),
        CKR_OK
    );
    assert_eq!(p11!(m, C_FindObjectsFinal(h)), CKR_OK);
    out.truncate(n as usize);
    out
}

/// One attribute's bytes.
pub fn attribute(
    m: &Module,
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> Vec<u8> {
    let mut a = CK_ATTRIBUTE {
        type_: t,
        pValue: std::ptr::null_mut(),
        ulValueLen: 0,
    };
    assert_eq!(p11!(m, C_GetAttributeValue(h, obj, &mut a, 1)), CKR_OK);
    let mut buf = vec![0u8; a.ulValueLen as usize];
    a.pValue = buf.as_mut_ptr() as *mut std::ffi::c_void;
    assert_eq!(p11!(m, C_GetAttributeValue(h, obj, &mut a, 1)), CKR_OK);
    buf.truncate(a.ulValueLen as usize);
    buf
}

/// C_SignInit + C_Sign.
pub fn sign(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    param: &mut [u8],
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = signature::sign_init(m, h, mech, param, key);
    if rv != CKR_OK {
        return Err(rv);
    }
    sign_initialised(m, h, data)
}

/// C_Sign on an operation already initialised, with room for any signature.
pub fn sign_initialised(m: &Module, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
    signature_out(|sig, len| {
        p11!(
            m,
            C_Sign(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                sig,
                len
            )
        )
    })
}

/// Runs a call that writes a signature (C_Sign, C_SignFinal) into a buffer
/// with room for any; the signature or the call's CK_RV.
pub fn signature_out(call: impl FnOnce(*mut u8, &mut CK_ULONG) -> CK_RV) -> Result<Vec<u8>, CK_RV> {
    let mut sig = vec![0u8; 1024];
    let mut len = sig.len() as CK_ULONG;
    let rv = call(sig.as_mut_ptr(), &mut len);
    if rv != CKR_OK {
        return Err(rv);
    }
    sig.truncate(len as usize);
    Ok(sig)
}

/// The CK_RV of C_GetSessionInfo on `h`.
pub fn session_rv(m: &Module, h: CK_SESSION_HANDLE) -> CK_RV {
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    p11!(m, C_GetSessionInfo(h, &mut info))
}
