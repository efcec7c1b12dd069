//! PKCS#11 3.0 interfaces and the 2.40 function list: C_GetInterfaceList
//! and C_GetInterface (name, version and flag selection, before
//! C_Initialize), C_GetFunctionList, and each list driving a whole
//! initialise-login-sign-finalise run through its own entries.

mod support;

use std::ffi::CStr;
use std::ptr::null_mut;

use cryptoki_sys::*;
use support::fake_agent::FakeAgent;
use support::signature::openssl_verifies;
use support::{module, serial, use_socket};

/// CKF_INTERFACE_FORK_SAFE (PKCS#11 3.0 5.4): not offered by this module,
/// whose child processes re-initialise.
const CKF_INTERFACE_FORK_SAFE: CK_FLAGS = 1;

/// Calls an entry of any function list.
macro_rules! call {
    ($list:expr, $name:ident ( $($arg:expr),* $(,)? )) => {{
        let f = $list.$name.expect(stringify!($name));
        // SAFETY (test): arguments valid for the function per the spec.
        #[allow(clippy::macro_metavars_in_unsafe)]
        unsafe { f($($arg),*) }
    }};
}

/// C_GetInterface, the interface (or NULL) it wrote and its CK_RV.
fn get_interface(
    name: Option<&CStr>,
    version: Option<CK_VERSION>,
    flags: CK_FLAGS,
) -> (CK_RV, *mut CK_INTERFACE) {
    let m = module();
    let mut iface: *mut CK_INTERFACE = null_mut();
    let mut version = version;
    let version_ptr = version
        .as_mut()
        .map_or(null_mut(), |v| v as *mut CK_VERSION);
    let name_ptr = name.map_or(null_mut(), |n| n.as_ptr() as *mut CK_UTF8CHAR);
    let rv = p11!(m, C_GetInterface(name_ptr, version_ptr, &mut iface, flags));
    (rv, iface)
}

fn v(major: u8, minor: u8) -> CK_VERSION {
    CK_VERSION { major, minor }
}

/// The version at the head of an interface's function list.
fn list_version(iface: *const CK_INTERFACE) -> (u8, u8) {
    // SAFETY (test): every function list starts with its CK_VERSION.
    let version = unsafe { *((*iface).pFunctionList as *const CK_VERSION) };
    (version.major, version.minor)
}

#[test]
fn interface_list_and_selection_work_before_c_initialize() {
    let _g = serial();
    let m = module();
    // Not initialised: these calls must work anyway (PKCS#11 3.0 5.4).
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetInfo(&mut info)), CKR_CRYPTOKI_NOT_INITIALIZED);

    let mut n: CK_ULONG = 0;
    assert_eq!(p11!(m, C_GetInterfaceList(null_mut(), &mut n)), CKR_OK);
    assert_eq!(n, 2);
    let mut list: [CK_INTERFACE; 3] = unsafe { std::mem::zeroed() };
    n = 3;
    assert_eq!(
        p11!(m, C_GetInterfaceList(list.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    assert_eq!(n, 2, "a larger array gets the real count");
    for iface in &list[..2] {
        let name = unsafe { CStr::from_ptr(iface.pInterfaceName as *const _) };
        assert_eq!(name, c"PKCS 11");
        assert_eq!(iface.flags, 0, "no fork-safe or other interface flags");
        assert!(!iface.pFunctionList.is_null());
    }
    assert_eq!(list_version(&list[0]), (3, 0), "newest first");
    assert_eq!(list_version(&list[1]), (2, 40));

    // Name "PKCS 11" or NULL (the default), version or NULL (the newest).
    for name in [Some(c"PKCS 11"), None] {
        let (rv, iface) = get_interface(name, None, 0);
        assert_eq!(rv, CKR_OK);
        assert_eq!(
            unsafe { (*iface).pFunctionList },
            list[0].pFunctionList,
            "{name:?}"
        );
        let (rv, iface) = get_interface(name, Some(v(2, 40)), 0);
        assert_eq!(rv, CKR_OK);
        assert_eq!(unsafe { (*iface).pFunctionList }, list[1].pFunctionList);
        let (rv, iface) = get_interface(name, Some(v(3, 0)), 0);
        assert_eq!(rv, CKR_OK);
        assert_eq!(unsafe { (*iface).pFunctionList }, list[0].pFunctionList);
    }

    // Nothing matches: ARGUMENTS_BAD, and the output is left alone.
    for (name, version, flags) in [
        (Some(c"Vendor Lanyard"), None, 0),
        (Some(c"PKCS 11 "), None, 0),
        (Some(c"PKCS 11"), Some(v(3, 1)), 0),
        (None, Some(v(2, 20)), 0),
        (None, None, CKF_INTERFACE_FORK_SAFE),
        (Some(c"PKCS 11"), Some(v(2, 40)), CKF_INTERFACE_FORK_SAFE),
    ] {
        let (rv, iface) = get_interface(name, version, flags);
        assert_eq!(
            rv,
            CKR_ARGUMENTS_BAD,
            "{name:?} {:?} {flags}",
            version.map(|v| (v.major, v.minor))
        );
        assert!(iface.is_null());
    }
    assert_eq!(
        p11!(m, C_GetInterface(null_mut(), null_mut(), null_mut(), 0)),
        CKR_ARGUMENTS_BAD
    );

    // C_GetFunctionList (exported and in the 3.0 list) gives the 2.40 list.
    let mut f2: *mut CK_FUNCTION_LIST = null_mut();
    assert_eq!(p11!(m, C_GetFunctionList(&mut f2)), CKR_OK);
    assert_eq!(f2 as *mut std::ffi::c_void, list[1].pFunctionList);
    assert_eq!(
        f2 as *const CK_FUNCTION_LIST,
        m.f2 as *const CK_FUNCTION_LIST
    );
    // The 3.0 list's own C_GetInterface* entries answer the same.
    let f3 = unsafe { &*(list[0].pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    let mut iface: *mut CK_INTERFACE = null_mut();
    let mut want = v(2, 40);
    assert_eq!(
        call!(f3, C_GetInterface(null_mut(), &mut want, &mut iface, 0)),
        CKR_OK
    );
    assert_eq!(unsafe { (*iface).pFunctionList }, list[1].pFunctionList);
    n = 0;
    assert_eq!(call!(f3, C_GetInterfaceList(null_mut(), &mut n)), CKR_OK);
    assert_eq!(n, 2);
}

/// Every entry of both lists is set, and the entries the lists share are
/// the same functions, except C_GetInfo, which reports its list's version.
#[test]
fn every_list_entry_is_set_and_shared_entries_agree() {
    let m = module();
    type Entry = Option<unsafe extern "C" fn()>;
    let entries = |first: *const Entry, n: usize| -> Vec<usize> {
        // SAFETY (test): after the CK_VERSION a list is `n` function pointers.
        (0..n)
            .map(|i| unsafe { *first.add(i) }.map_or(0, |f| f as usize))
            .collect()
    };
    let v3 = entries(std::ptr::addr_of!(m.f.C_Initialize) as *const Entry, 92);
    let v2 = entries(std::ptr::addr_of!(m.f2.C_Initialize) as *const Entry, 68);
    assert!(v3.iter().all(|f| *f != 0), "a 3.0 entry is NULL");
    assert!(v2.iter().all(|f| *f != 0), "a 2.40 entry is NULL");
    let get_info = 2; // C_Initialize, C_Finalize, C_GetInfo, ...
    for i in 0..68 {
        if i == get_info {
            assert_ne!(v2[i], v3[i], "C_GetInfo must report the list's version");
        } else {
            assert_eq!(v2[i], v3[i], "entry {i} differs between the lists");
        }
    }
}

/// Initialises, checks C_GetInfo's version, logs in and signs, all through
/// the one function list `$list`, then finalises through it.
macro_rules! sign_through {
    ($list:expr, $agent:expr, $want:expr) => {{
        let l = $list;
        let agent: &FakeAgent = $agent;
        assert_eq!((l.version.major, l.version.minor), $want);
        use_socket(&agent.path);
        assert_eq!(call!(l, C_Initialize(null_mut())), CKR_OK);
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(call!(l, C_GetInfo(&mut info)), CKR_OK);
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            $want
        );
        let mut n: CK_ULONG = 0;
        assert_eq!(call!(l, C_GetSlotList(CK_TRUE, null_mut(), &mut n)), CKR_OK);
        assert_eq!(n, 2);
        let mut h = 0;
        assert_eq!(
            call!(
                l,
                C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
            ),
            CKR_OK
        );
        let pin = b"123456";
        assert_eq!(
            call!(l, C_Login(h, CKU_USER, pin.as_ptr() as *mut u8, 6)),
            CKR_OK
        );
        let mut class = CKO_PRIVATE_KEY;
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: &mut class as *mut _ as *mut std::ffi::c_void,
            ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
        }];
        assert_eq!(call!(l, C_FindObjectsInit(h, t.as_mut_ptr(), 1)), CKR_OK);
        let mut key = 0;
        let mut found = 0;
        assert_eq!(call!(l, C_FindObjects(h, &mut key, 1, &mut found)), CKR_OK);
        assert_eq!(found, 1);
        assert_eq!(call!(l, C_FindObjectsFinal(h)), CKR_OK);
        let mut mech = CK_MECHANISM {
            mechanism: CKM_SHA256_RSA_PKCS,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(call!(l, C_SignInit(h, &mut mech, key)), CKR_OK);
        let data = b"signed through one function list";
        let mut sig = [0u8; 256];
        let mut len: CK_ULONG = 256;
        assert_eq!(
            call!(
                l,
                C_Sign(
                    h,
                    data.as_ptr() as *mut u8,
                    data.len() as CK_ULONG,
                    sig.as_mut_ptr(),
                    &mut len
                )
            ),
            CKR_OK
        );
        assert!(openssl_verifies(
            &agent.public_key_der(0),
            CKM_SHA256_RSA_PKCS,
            data,
            &sig[..len as usize]
        ));
        assert_eq!(call!(l, C_Finalize(null_mut())), CKR_OK);
    }};
}

#[test]
fn each_function_list_works_on_its_own() {
    let _g = serial();
    let m = module();
    let _ = p11!(m, C_Finalize(null_mut()));
    let agent = FakeAgent::start();

    // The 2.40 list from C_GetFunctionList.
    let mut f2: *mut CK_FUNCTION_LIST = null_mut();
    assert_eq!(p11!(m, C_GetFunctionList(&mut f2)), CKR_OK);
    sign_through!(unsafe { &*f2 }, &agent, (2, 40));

    // The 2.40 interface from C_GetInterface.
    let (rv, iface) = get_interface(Some(c"PKCS 11"), Some(v(2, 40)), 0);
    assert_eq!(rv, CKR_OK);
    let l = unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST) };
    sign_through!(l, &agent, (2, 40));

    // The default interface: 3.0, whose 3.0-only entries answer too.
    let (rv, iface) = get_interface(None, None, 0);
    assert_eq!(rv, CKR_OK);
    let l3 = unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    sign_through!(l3, &agent, (3, 0));
    use_socket(&agent.path);
    assert_eq!(call!(l3, C_Initialize(null_mut())), CKR_OK);
    let mut h = 0;
    assert_eq!(
        call!(
            l3,
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
        ),
        CKR_OK
    );
    assert_eq!(
        call!(l3, C_SessionCancel(h, CKF_SIGN | CKF_FIND_OBJECTS)),
        CKR_OK
    );
    assert_eq!(
        call!(l3, C_MessageSignInit(h, null_mut(), 0)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    assert_eq!(call!(l3, C_Finalize(null_mut())), CKR_OK);
}
