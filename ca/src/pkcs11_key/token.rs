//! Reaching the token an RFC 7512 URI names: loading the module once per
//! process, choosing the one matching slot, reading the PIN from the URI's
//! pin source, opening a session and logging in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::error::{call, Pkcs11Error};
use crate::pkcs11_uri::{PinSource, Pkcs11Uri};

/// Modules stay loaded and initialised for the life of the process: several
/// keys may share one, and finalising under another user would break it.
fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let failed = |reason: String| Pkcs11Error::Module {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(failed("no such file".into()));
    }
    let ctx = Pkcs11::new(path).map_err(|e| failed(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(format!("C_Initialize: {e}"))),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// The module the URI's `module-path` names, loaded as [`module`] does.
pub(crate) fn uri_module(uri: &Pkcs11Uri) -> Result<Pkcs11, Pkcs11Error> {
    module(
        uri.module_path
            .as_deref()
            .ok_or(Pkcs11Error::NoModulePath)?,
    )
}

/// The PIN named by the URI, if any.
pub(crate) fn read_pin(
    source: Option<&PinSource>,
) -> Result<Option<Zeroizing<String>>, Pkcs11Error> {
    match source {
        None => Ok(None),
        Some(PinSource::Value(v)) => {
            tracing::warn!(
                "the PKCS#11 URI carries its PIN in pin-value, visible to anyone who can read \
                 the URI (ca.toml, shell history, process list); prefer pin-source=file:PATH"
            );
            Ok(Some(v.clone()))
        }
        Some(PinSource::File(path)) => {
            let bytes =
                Zeroizing::new(std::fs::read(path).map_err(|source| Pkcs11Error::PinFile {
                    path: path.clone(),
                    source,
                })?);
            let first = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.lines().next())
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.is_empty())
                .ok_or_else(|| Pkcs11Error::EmptyPin { path: path.clone() })?;
            Ok(Some(Zeroizing::new(first.to_string())))
        }
    }
}

fn describe(slot: Slot, info: &TokenInfo) -> String {
    format!(
        "{:?} (slot-id {}, serial {:?})",
        info.label(),
        slot.id(),
        info.serial_number()
    )
}

/// The one slot whose token matches every token and slot attribute of the URI.
pub(crate) fn find_token(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let lib = ctx.get_library_info().map_err(call("C_GetInfo"))?;
    let lib_matches = uri
        .library_manufacturer
        .as_deref()
        .is_none_or(|m| m == lib.manufacturer_id())
        && uri
            .library_description
            .as_deref()
            .is_none_or(|d| d == lib.library_description())
        && uri.library_version.is_none_or(|(a, b)| {
            (a, b) == (lib.library_version().major(), lib.library_version().minor())
        });
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(call("C_GetSlotList"))? {
        let info = ctx.get_token_info(slot).map_err(call("C_GetTokenInfo"))?;
        // An uninitialised token (SoftHSM2's free slot) holds no keys.
        if !info.token_initialized() {
            continue;
        }
        let slot_info = ctx.get_slot_info(slot).map_err(call("C_GetSlotInfo"))?;
        found.push(describe(slot, &info));
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if lib_matches
            && eq(&uri.token, info.label())
            && eq(&uri.manufacturer, info.manufacturer_id())
            && eq(&uri.serial, info.serial_number())
            && eq(&uri.model, info.model())
            && eq(&uri.slot_description, slot_info.slot_description())
            && eq(&uri.slot_manufacturer, slot_info.manufacturer_id())
            && uri.slot_id.is_none_or(|id| id == slot.id())
        {
            matching.push((slot, info));
        }
    }
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(Pkcs11Error::NoToken {
            uri: uri.redacted(),
            found,
        }),
        count => Err(Pkcs11Error::AmbiguousToken {
            uri: uri.redacted(),
            count,
        }),
    }
}

pub(crate) fn login(
    session: &Session,
    info: &TokenInfo,
    pin: Option<&Zeroizing<String>>,
) -> Result<(), Pkcs11Error> {
    let token = info.label().to_string();
    let result = match pin {
        Some(pin) => session.login(UserType::User, Some(&AuthPin::from(pin.as_str()))),
        None if !info.login_required() => return Ok(()),
        None if info.protected_authentication_path() => session.login(UserType::User, None),
        None => return Err(Pkcs11Error::NoPin { token }),
    };
    match result {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Pkcs11Error::WrongPin { token })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked { token }),
        Err(e) => Err(call("C_Login")(e)),
    }
}

/// Opens a session on the URI's token and logs in.
pub(crate) fn connect(
    ctx: &Pkcs11,
    uri: &Pkcs11Uri,
    pin: Option<&Zeroizing<String>>,
    read_write: bool,
) -> Result<(Session, TokenInfo), Pkcs11Error> {
    let (slot, info) = find_token(ctx, uri)?;
    let session = if read_write {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(call("C_OpenSession"))?;
    login(&session, &info, pin)?;
    Ok((session, info))
}
