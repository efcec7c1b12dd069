//! General-purpose functions (PKCS#11 3.0 5.4): C_Initialize, C_Finalize,
//! C_GetInfo. Initialising makes the application id and the daemon client
//! and succeeds quickly even when no daemon runs.

use cryptoki_sys::*;

use crate::client::AgentClient;
use crate::error::{Pkcs11Error, Result};
use crate::library::{self, Library, DEFAULT_SLOT_COUNT};
use crate::slot::{module_version, padded};

/// CK_C_INITIALIZE_ARGS, read by the FFI layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitArgs {
    /// How many of the four mutex callbacks are set (0 or 4 are consistent).
    pub mutex_callbacks: u8,
    pub flags: CK_FLAGS,
    pub reserved_is_null: bool,
}

/// C_Initialize. `args` is `None` when the caller passed NULL.
pub fn initialize(args: Option<InitArgs>, uid: u32) -> Result<()> {
    let args = args.unwrap_or(InitArgs {
        reserved_is_null: true,
        ..InitArgs::default()
    });
    if !args.reserved_is_null {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    match args.mutex_callbacks {
        0 => {}
        4 if args.flags & CKF_OS_LOCKING_OK != 0 => {}
        // We lock with the OS primitives only; callbacks alone cannot be honoured.
        4 => return Err(Pkcs11Error::CantLock),
        _ => return Err(Pkcs11Error::ArgumentsBad),
    }
    let may_spawn_threads = args.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS == 0;
    let mut app_id = vec![0u8; 16];
    getrandom::getrandom(&mut app_id)
        .map_err(|e| Pkcs11Error::General(format!("no randomness for the application id: {e}")))?;
    let path = lanyard_proto::socket_path::agent_socket_path(uid);
    let mut reached = false;
    library::install(|| {
        let client = AgentClient::new(path, app_id.clone(), may_spawn_threads);
        // One probe learns the slot count; an absent daemon costs no wait,
        // an unresponsive one at most the connect timeout.
        let slots = match client.probe() {
            Ok(hello) => {
                reached = true;
                match hello.slot_count {
                    0 => DEFAULT_SLOT_COUNT,
                    n => n as usize,
                }
            }
            Err(_) => DEFAULT_SLOT_COUNT,
        };
        Library::new(app_id, client, slots)
    })?;
    let lib = library::get()?;
    if reached {
        lib.refresh();
    } else {
        // The application's starting view: no cards. Cards that appear once
        // the daemon is up are slot events.
        lib.update_slots(Vec::new());
    }
    Ok(())
}

/// C_Finalize.
pub fn finalize() -> Result<()> {
    library::uninstall()
}

/// C_GetInfo; `version` is the Cryptoki version of the interface asked.
pub fn info(version: CK_VERSION) -> Result<CK_INFO> {
    library::get()?;
    Ok(CK_INFO {
        cryptokiVersion: version,
        manufacturerID: padded::<32>("Lanyard"),
        flags: 0,
        libraryDescription: padded::<32>("Lanyard virtual smartcard"),
        libraryVersion: module_version(),
    })
}

/// Fails unless C_Initialize was called in this process.
pub fn check_initialized() -> Result<()> {
    if library::is_initialized() {
        Ok(())
    } else {
        Err(Pkcs11Error::NotInitialized)
    }
}
