//! Slot and token management (PKCS#11 3.0 5.5): slot lists and information,
//! token information, mechanisms, C_SetPIN (the daemon's ChangePin) and slot
//! events.

use cryptoki_sys::*;
use lanyard_proto::agent::{request, ChangePin};

use crate::client::Retry;
use crate::error::{Pkcs11Error, Result};
use crate::library;
use crate::mechanism;
use crate::slot;

/// C_GetSlotList. Refreshes the cards first: this is how applications
/// discover tokens.
pub fn slot_list(token_present: bool) -> Result<Vec<CK_SLOT_ID>> {
    let lib = library::get()?;
    lib.refresh();
    let mut ids = Vec::new();
    for i in 0..lib.slot_count() {
        if !token_present || lib.slot(i)?.token.is_some() {
            ids.push(i as CK_SLOT_ID);
        }
    }
    Ok(ids)
}

/// C_GetSlotInfo.
pub fn slot_info(id: CK_SLOT_ID) -> Result<CK_SLOT_INFO> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    lib.refresh();
    let state = lib.slot(index)?;
    Ok(slot::slot_info(index, &state))
}

/// C_GetTokenInfo.
pub fn token_info(id: CK_SLOT_ID) -> Result<CK_TOKEN_INFO> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    lib.refresh();
    let (all, rw) = lib.session_counts(index);
    let state = lib.slot(index)?.clone();
    let token = state.token.as_ref().ok_or(Pkcs11Error::TokenNotPresent)?;
    Ok(slot::token_info(
        token,
        &state,
        all,
        rw,
        lib.client.protected_path(),
    ))
}

/// C_GetMechanismList.
pub fn mechanism_list(id: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    lib.refresh();
    let token = lib.token(index)?;
    Ok(mechanism::mechanism_list(token.kind))
}

/// C_GetMechanismInfo.
pub fn mechanism_info(id: CK_SLOT_ID, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    lib.refresh();
    let token = lib.token(index)?;
    mechanism::mechanism_info(token.kind, mech).ok_or(Pkcs11Error::MechanismInvalid)
}

/// C_SetPIN: the user's PIN, through the daemon (which enforces the policy).
pub fn set_pin(session: CK_SESSION_HANDLE, old_pin: &[u8], new_pin: &[u8]) -> Result<()> {
    let lib = library::get()?;
    let entry = lib.fresh_session(session)?;
    if !entry.rw {
        return Err(Pkcs11Error::SessionReadOnly);
    }
    let (token, _) = lib.session_token(&entry)?;
    let old_pin = pin_text(old_pin)?;
    let new_pin = pin_text(new_pin)?;
    lib.call(
        request::Body::ChangePin(ChangePin {
            card_id: token.card.card_id.clone(),
            old_pin,
            new_pin,
        }),
        Retry::Never,
    )?;
    Ok(())
}

/// A PIN as the daemon takes it: UTF-8 text.
pub fn pin_text(pin: &[u8]) -> Result<String> {
    String::from_utf8(pin.to_vec()).map_err(|_| Pkcs11Error::PinInvalid)
}

/// How often a blocking C_WaitForSlotEvent asks the daemon for its cards.
const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// C_WaitForSlotEvent: a card enrolled into, or gone from (revoked,
/// suspended, deleted), a slot since the last call; a card back from
/// suspension is an event too. A renewal is not: the token stays. Blocking
/// waits poll the daemon and end with CRYPTOKI_NOT_INITIALIZED when another
/// thread calls C_Finalize, also if C_Initialize follows before the next
/// poll: the wait belongs to the initialisation it started in.
pub fn wait_for_slot_event(flags: CK_FLAGS) -> Result<CK_SLOT_ID> {
    let lib = library::get()?;
    loop {
        lib.refresh();
        if let Some(slot) = lib.take_event() {
            return Ok(slot as CK_SLOT_ID);
        }
        if flags & CKF_DONT_BLOCK != 0 {
            return Err(Pkcs11Error::NoEvent);
        }
        std::thread::sleep(EVENT_POLL);
        if !library::is_current(&lib) {
            return Err(Pkcs11Error::NotInitialized);
        }
    }
}

/// C_InitToken: a virtual card is initialised by enrolment.
pub fn init_token(id: CK_SLOT_ID) -> Result<()> {
    let lib = library::get()?;
    let index = lib.slot_index(id)?;
    lib.refresh();
    lib.token(index)?;
    Err(Pkcs11Error::FunctionNotSupported)
}

/// C_InitPIN needs the Security Officer, whom a virtual card does not have:
/// the PIN is set at enrolment and reset through the IT desk.
pub fn init_pin(session: CK_SESSION_HANDLE) -> Result<()> {
    let lib = library::get()?;
    lib.session(session)?;
    Err(Pkcs11Error::UserNotLoggedIn)
}
