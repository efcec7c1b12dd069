//! The module loaded with no daemon running: it initialises fast, shows two
//! empty slots, answers NULL pointers with CKR_ARGUMENTS_BAD, and offers the
//! 2.40 function list and the 3.0 interfaces.

mod support;

use std::ptr::null_mut;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use support::{initialize, module, serial, slot_list};

fn missing_socket() -> std::path::PathBuf {
    std::env::temp_dir().join("lanyard-p11-test-no-such-dir/agent.sock")
}

#[test]
fn initialize_without_daemon_is_fast_and_shows_two_empty_slots() {
    let _g = serial();
    let m = module();
    let start = Instant::now();
    assert_eq!(initialize(m, &missing_socket()), CKR_OK);
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(slot_list(m, false), vec![0, 1]);
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetSlotInfo(1, &mut info)), CKR_OK);
    assert_eq!(info.flags & CKF_TOKEN_PRESENT, 0);
    assert_ne!(info.flags & CKF_REMOVABLE_DEVICE, 0);
    assert_eq!(info.flags & CKF_HW_SLOT, 0);
    let mut tinfo: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        p11!(m, C_GetTokenInfo(0, &mut tinfo)),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(p11!(m, C_GetSlotInfo(2, &mut info)), CKR_SLOT_ID_INVALID);
    let mut h = 0;
    assert_eq!(
        p11!(
            m,
            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
        ),
        CKR_TOKEN_NOT_PRESENT
    );
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn initialize_protocol() {
    let _g = serial();
    let m = module();
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(p11!(m, C_GetInfo(&mut info)), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_eq!(
        p11!(m, C_Finalize(null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );

    // Reserved must be NULL; mutex callbacks without OS locking cannot be honoured.
    unsafe extern "C" fn create(_: *mut *mut std::ffi::c_void) -> CK_RV {
        CKR_OK
    }
    unsafe extern "C" fn other(_: *mut std::ffi::c_void) -> CK_RV {
        CKR_OK
    }
    std::env::set_var("LANYARD_AGENT_SOCK", missing_socket());
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: 0,
        pReserved: std::ptr::dangling_mut::<std::ffi::c_void>(),
    };
    let init = |a: &mut CK_C_INITIALIZE_ARGS| {
        p11!(
            m,
            C_Initialize(a as *mut CK_C_INITIALIZE_ARGS as *mut std::ffi::c_void)
        )
    };
    assert_eq!(init(&mut args), CKR_ARGUMENTS_BAD);
    args.pReserved = null_mut();
    args.CreateMutex = Some(create);
    assert_eq!(init(&mut args), CKR_ARGUMENTS_BAD);
    args.DestroyMutex = Some(other);
    args.LockMutex = Some(other);
    args.UnlockMutex = Some(other);
    assert_eq!(init(&mut args), CKR_CANT_LOCK);
    args.flags = CKF_OS_LOCKING_OK;
    assert_eq!(init(&mut args), CKR_OK);
    assert_eq!(
        p11!(m, C_Initialize(null_mut())),
        CKR_CRYPTOKI_ALREADY_INITIALIZED
    );

    assert_eq!(p11!(m, C_GetInfo(&mut info)), CKR_OK);
    assert_eq!(
        (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        (3, 0)
    );
    assert_eq!(&info.manufacturerID[..8], b"Lanyard ");
    // The 2.40 list reports 2.40.
    let rv = unsafe { (m.f2.C_GetInfo.unwrap())(&mut info) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(
        (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        (2, 40)
    );
    assert_eq!(
        p11!(m, C_Finalize(std::ptr::dangling_mut::<std::ffi::c_void>())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn null_pointers_are_arguments_bad() {
    let _g = serial();
    let m = module();
    assert_eq!(initialize(m, &missing_socket()), CKR_OK);
    assert_eq!(p11!(m, C_GetInfo(null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(
        p11!(m, C_GetSlotList(CK_FALSE, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(p11!(m, C_GetSlotInfo(0, null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(p11!(m, C_GetTokenInfo(0, null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(
        p11!(m, C_GetMechanismList(0, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_GetMechanismInfo(0, CKM_SHA256, null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(
            m,
            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut())
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(p11!(m, C_GetSessionInfo(1, null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(
        p11!(m, C_GenerateRandom(1, null_mut(), 16)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_FindObjects(1, null_mut(), 1, null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_GetAttributeValue(1, 1, null_mut(), 1)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_Sign(1, null_mut(), 0, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_Digest(1, null_mut(), 4, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_Verify(1, null_mut(), 0, null_mut(), 0)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_WaitForSlotEvent(0, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_GetInterface(null_mut(), null_mut(), null_mut(), 0)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(m, C_GetInterfaceList(null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(p11!(m, C_GetFunctionList(null_mut())), CKR_ARGUMENTS_BAD);
    // A bad handle with valid pointers is a handle error.
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        p11!(m, C_GetSessionInfo(77, &mut info)),
        CKR_SESSION_HANDLE_INVALID
    );
    let mut slot = 0;
    assert_eq!(
        p11!(m, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_NO_EVENT
    );
    assert_eq!(
        p11!(m, C_EncryptInit(1, null_mut(), 0)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(
        p11!(m, C_EncryptInit(1, null_mut(), 0)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
}

#[test]
fn slot_list_size_query_protocol() {
    let _g = serial();
    let m = module();
    assert_eq!(initialize(m, &missing_socket()), CKR_OK);
    let mut n: CK_ULONG = 0;
    assert_eq!(p11!(m, C_GetSlotList(CK_FALSE, null_mut(), &mut n)), CKR_OK);
    assert_eq!(n, 2);
    let mut one = [99 as CK_SLOT_ID; 1];
    n = 1;
    assert_eq!(
        p11!(m, C_GetSlotList(CK_FALSE, one.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(n, 2);
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn function_list_and_interfaces() {
    let _g = serial();
    let m = module();
    assert_eq!((m.f2.version.major, m.f2.version.minor), (2, 40));
    assert_eq!((m.f.version.major, m.f.version.minor), (3, 0));

    let mut n: CK_ULONG = 0;
    assert_eq!(p11!(m, C_GetInterfaceList(null_mut(), &mut n)), CKR_OK);
    assert_eq!(n, 2);
    let mut list: [CK_INTERFACE; 2] = unsafe { std::mem::zeroed() };
    n = 1;
    assert_eq!(
        p11!(m, C_GetInterfaceList(list.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL
    );
    n = 2;
    assert_eq!(
        p11!(m, C_GetInterfaceList(list.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    for iface in &list {
        let name = unsafe { std::ffi::CStr::from_ptr(iface.pInterfaceName as *const _) };
        assert_eq!(name.to_str().unwrap(), "PKCS 11");
    }
    let v3 = unsafe { &*(list[0].pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    assert_eq!((v3.version.major, v3.version.minor), (3, 0));
    let v2 = unsafe { &*(list[1].pFunctionList as *const CK_FUNCTION_LIST) };
    assert_eq!((v2.version.major, v2.version.minor), (2, 40));

    let mut iface: *mut CK_INTERFACE = null_mut();
    let mut version = CK_VERSION {
        major: 2,
        minor: 40,
    };
    assert_eq!(
        p11!(
            m,
            C_GetInterface(c"PKCS 11".as_ptr() as *mut u8, &mut version, &mut iface, 0)
        ),
        CKR_OK
    );
    assert_eq!(
        unsafe { (*iface).pFunctionList } as *const _,
        list[1].pFunctionList as *const _
    );
    version.minor = 1;
    assert_eq!(
        p11!(m, C_GetInterface(null_mut(), &mut version, &mut iface, 0)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        p11!(
            m,
            C_GetInterface(c"Vendor".as_ptr() as *mut u8, null_mut(), &mut iface, 0)
        ),
        CKR_ARGUMENTS_BAD
    );
}

#[test]
fn unresponsive_daemon_costs_one_connect_timeout() {
    let _g = serial();
    let m = module();
    // A socket that accepts connections (backlog) but never answers, like a
    // stopped daemon.
    let dir = std::env::temp_dir().join(format!("lanyard-p11-stuck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.sock");
    let _ = std::fs::remove_file(&path);
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let start = Instant::now();
    assert_eq!(initialize(m, &path), CKR_OK);
    let init = start.elapsed();
    assert!(init < Duration::from_secs(4), "C_Initialize took {init:?}");
    let start = Instant::now();
    assert_eq!(slot_list(m, false), vec![0, 1]);
    assert_eq!(slot_list(m, true), Vec::<CK_SLOT_ID>::new());
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every entry point of the 3.0 list called with all-zero arguments (NULL
/// pointers, handle 0), before and after C_Initialize: each returns a CK_RV
/// and none panics (a caught panic would be CKR_GENERAL_ERROR) or blocks.
#[test]
fn every_entry_point_survives_null_arguments() {
    let _g = serial();
    let m = module();
    type Any = unsafe extern "C" fn(
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    ) -> CK_RV;
    let list = m.f as *const CK_FUNCTION_LIST_3_0;
    // SAFETY (test): after the CK_VERSION the list is 92 function pointers;
    // on x86-64 System V, extra integer arguments are ignored by the callee.
    let entries: Vec<Any> = unsafe {
        let first = std::ptr::addr_of!((*list).C_Initialize) as *const Option<Any>;
        (0..92)
            .map(|i| (*first.add(i)).expect("every entry is set"))
            .collect()
    };
    let (init_fn, finalize_fn) = (entries[0] as usize, entries[1] as usize);
    // C_CloseAllSessions(slot 0) is a valid call once initialised.
    let close_all = m.f.C_CloseAllSessions.expect("C_CloseAllSessions") as usize;
    let call_all = |phase: &str| {
        for (i, f) in entries.iter().enumerate() {
            if *f as usize == init_fn || *f as usize == finalize_fn {
                continue;
            }
            let rv = unsafe { f(0, 0, 0, 0, 0, 0, 0, 0, 0) };
            assert_ne!(
                rv, CKR_GENERAL_ERROR,
                "{phase}: entry {i} failed internally"
            );
            if *f as usize != close_all {
                assert_ne!(rv, CKR_OK, "{phase}: entry {i} accepted all-NULL arguments");
            }
        }
    };
    call_all("before C_Initialize");
    assert_eq!(initialize(m, &missing_socket()), CKR_OK);
    call_all("after C_Initialize");
    assert_eq!(p11!(m, C_Finalize(null_mut())), CKR_OK);
}
