//! Session management (PKCS#11 3.0 5.6): opening and closing sessions,
//! session information, C_Login/C_Logout. Login state belongs to this
//! application and token and is shared by all its sessions.

use cryptoki_sys::*;
use lanyard_proto::agent::{request, Login, Logout};

use crate::client::Retry;
use crate::error::{Pkcs11Error, Result};
use crate::fns::stmgmt::pin_text;
use crate::fns::with_session;
use crate::library;
use crate::session::session_state;

/// C_OpenSession.
pub fn open_session(id: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(Pkcs11Error::SessionParallelNotSupported);
    }
    if flags & !(CKF_SERIAL_SESSION | CKF_RW_SESSION) != 0 {
        return Err(Pkcs11Error::ArgumentsBad);
    }
    // A card revoked or suspended since the last call is TOKEN_NOT_PRESENT
    // now, not a session that fails later.
    lib.refresh();
    // Read/write sessions are allowed although the token is write protected:
    // like OpenSC's card modules, writes then fail one by one, and clients
    // such as pkcs11-tool --test need a R/W session to sign.
    lib.open_session(index, flags & CKF_RW_SESSION != 0)
}

/// C_CloseSession; also closes a session whose card has gone.
pub fn close_session(handle: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    let emptied = lib.close_session(handle)?;
    lib.logout_if_idle(&emptied);
    Ok(())
}

/// C_CloseAllSessions.
pub fn close_all_sessions(id: CK_SLOT_ID) -> Result<()> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    // Sessions of a card that has gone are closed too.
    let emptied = lib.drop_sessions(|e| e.slot == index);
    lib.logout_if_idle(&emptied);
    Ok(())
}

/// C_GetSessionInfo.
pub fn session_info(handle: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO> {
    let lib = library::get()?;
    let entry = lib.fresh_session(handle)?;
    let (_, logged_in) = lib.session_token(&entry)?;
    let mut flags = CKF_SERIAL_SESSION;
    if entry.rw {
        flags |= CKF_RW_SESSION;
    }
    Ok(CK_SESSION_INFO {
        slotID: entry.slot as CK_SLOT_ID,
        state: session_state(entry.rw, logged_in),
        flags,
        ulDeviceError: 0,
    })
}

/// C_Login. `pin` is `None` for a NULL pin pointer: in
/// protected-authentication-path mode the daemon then logs in through
/// `lanyard unlock` or its own PIN prompt; otherwise ARGUMENTS_BAD.
pub fn login(handle: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: Option<&[u8]>) -> Result<()> {
    let lib = library::get()?;
    // Learn of a restarted daemon (and its login state) or a removed card
    // before sending the PIN, so the login is not made on behalf of sessions
    // that are gone.
    let entry = lib.fresh_session(handle)?;
    match user {
        CKU_USER => {}
        // Only a C_SignInit on the document-signing key (CKA_ALWAYS_AUTHENTICATE) waits for it.
        CKU_CONTEXT_SPECIFIC => return crate::fns::signing::context_login(handle, pin),
        _ => return Err(Pkcs11Error::UserTypeInvalid),
    }
    let protected = pin.is_none() && lib.client.protected_path();
    let card_id = {
        let (token, logged_in) = lib.session_token(&entry)?;
        // A protected-path token may show logged in before the application
        // logs in (a card unlocked with `lanyard unlock`): a NULL-PIN login
        // is then confirmed by the daemon rather than refused, as some
        // applications (pkcs11-tool 0.23) take USER_ALREADY_LOGGED_IN for a failure.
        if logged_in && !protected {
            return Err(Pkcs11Error::UserAlreadyLoggedIn);
        }
        token.card.card_id.clone()
    };
    let login = match pin {
        Some(pin) => Login {
            card_id,
            pin: pin_text(pin)?,
            protected: false,
        },
        None if lib.client.protected_path() => Login {
            card_id,
            pin: String::new(),
            protected: true,
        },
        None => return Err(Pkcs11Error::ArgumentsBad),
    };
    lib.call(request::Body::Login(login), Retry::Never)?;
    // The session may have been closed meanwhile if the daemon restarted, or
    // its card removed.
    lib.session(handle)?;
    lib.set_logged_in(&entry, true)
}

/// C_Logout.
pub fn logout(handle: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.fresh_session(handle)?;
    let card_id = {
        let mut state = lib.live_slot(&entry)?;
        if !state.logged_in {
            return Err(Pkcs11Error::UserNotLoggedIn);
        }
        state.logged_in = false;
        state.token.as_ref().map(|t| t.card.card_id.clone())
    };
    if let Some(card_id) = card_id {
        // The module's state is already logged out; a daemon that cannot be
        // told has lost the login anyway.
        let _ = lib.call(request::Body::Logout(Logout { card_id }), Retry::Never);
    }
    Ok(())
}

/// C_SessionCancel (3.0): ends the operations named by `flags`.
pub fn session_cancel(handle: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<()> {
    with_session(handle, |_, _, s| {
        if flags & CKF_SIGN != 0 {
            s.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            s.verify = None;
        }
        if flags & CKF_DIGEST != 0 {
            s.digest = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
        Ok(())
    })
}
