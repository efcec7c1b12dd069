//! The state of an initialised module in this process: the application id,
//! the daemon client, the fixed slots and the open sessions. Locks are fine
//! grained and never held across a daemon round trip (except a session's own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use cryptoki_sys::*;
use lanyard_proto::agent::{request, response, CardInfo, ListCards, Logout};

use crate::client::{lock, AgentClient, Retry};
use crate::error::{Pkcs11Error, Result};
use crate::session::Session;
use crate::slot::{SlotState, Token};

/// Number of slots when the daemon cannot be asked.
pub const DEFAULT_SLOT_COUNT: usize = 2;
/// Upper bound on slots, whatever the daemon says.
const MAX_SLOTS: usize = 64;

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// A session as the session table holds it.
#[derive(Clone)]
pub struct SessionEntry {
    pub slot: usize,
    pub rw: bool,
    pub session: Arc<Mutex<Session>>,
}

/// Everything C_Initialize sets up.
pub struct Library {
    pid: u32,
    pub app_id: Vec<u8>,
    pub client: AgentClient,
    slots: Vec<Mutex<SlotState>>,
    sessions: Mutex<HashMap<CK_SESSION_HANDLE, SessionEntry>>,
    next_session: AtomicU64,
    /// The client epoch whose consequences (lost logins) were applied.
    epoch_applied: AtomicU64,
    /// Slots whose card came or went since C_WaitForSlotEvent last looked.
    events: Mutex<Vec<usize>>,
    /// Cards seen at the first look are the starting state, not events.
    looked: AtomicBool,
}

/// Installs a new library state. A state left by the parent of a forked
/// process is replaced; one of this process is ALREADY_INITIALIZED.
pub fn install(make: impl FnOnce() -> Library) -> Result<()> {
    let mut guard = LIBRARY.write().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = guard.as_ref() {
        if existing.pid == std::process::id() {
            return Err(Pkcs11Error::AlreadyInitialized);
        }
        // Forked child: the parent's connections and sessions are not ours.
        existing.client.close();
    }
    *guard = Some(Arc::new(make()));
    Ok(())
}

/// Removes the library state (C_Finalize).
pub fn uninstall() -> Result<()> {
    let mut guard = LIBRARY.write().unwrap_or_else(|p| p.into_inner());
    let taken = guard.take();
    drop(guard);
    match taken {
        Some(lib) if lib.pid == std::process::id() => {
            // The application's logins end with it (best effort, outside the lock).
            let all: Vec<usize> = (0..lib.slot_count()).collect();
            lib.logout_if_idle(&all);
            lib.client.close();
            Ok(())
        }
        Some(lib) => {
            // A forked child that never re-initialised: drop the parent's
            // state here too, but the child was not initialised.
            lib.client.close();
            Err(Pkcs11Error::NotInitialized)
        }
        None => Err(Pkcs11Error::NotInitialized),
    }
}

/// The initialised library of this process.
pub fn get() -> Result<Arc<Library>> {
    let guard = LIBRARY.read().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(lib) if lib.pid == std::process::id() => Ok(Arc::clone(lib)),
        _ => Err(Pkcs11Error::NotInitialized),
    }
}

impl Library {
    /// A fresh state with `slot_count` empty slots.
    pub fn new(app_id: Vec<u8>, client: AgentClient, slot_count: usize) -> Library {
        let n = slot_count.clamp(1, MAX_SLOTS);
        let epoch = client.epoch();
        Library {
            pid: std::process::id(),
            app_id,
            client,
            slots: (0..n).map(|_| Mutex::new(SlotState::default())).collect(),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            epoch_applied: AtomicU64::new(epoch),
            events: Mutex::new(Vec::new()),
            looked: AtomicBool::new(false),
        }
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slot index of a CK_SLOT_ID.
    pub fn slot_index(&self, id: CK_SLOT_ID) -> Result<usize> {
        usize::try_from(id)
            .ok()
            .filter(|i| *i < self.slots.len())
            .ok_or(Pkcs11Error::SlotIdInvalid)
    }

    /// Locks one slot's state.
    pub fn slot(&self, index: usize) -> Result<MutexGuard<'_, SlotState>> {
        self.slots
            .get(index)
            .map(lock)
            .ok_or(Pkcs11Error::SlotIdInvalid)
    }

    /// The token in a slot, or TOKEN_NOT_PRESENT.
    pub fn token(&self, index: usize) -> Result<Arc<Token>> {
        self.slot(index)?
            .token
            .clone()
            .ok_or(Pkcs11Error::TokenNotPresent)
    }

    /// The token in a slot and whether this application is logged in to it.
    pub fn token_view(&self, index: usize) -> Result<(Arc<Token>, bool)> {
        let state = self.slot(index)?;
        let token = state.token.clone().ok_or(Pkcs11Error::DeviceRemoved)?;
        Ok((token, state.logged_in))
    }

    /// One daemon round trip, then the consequences of a restarted daemon.
    pub fn call(&self, body: request::Body, retry: Retry) -> Result<response::Body> {
        let result = self.client.call(body, retry);
        self.apply_epoch();
        Ok(result?)
    }

    /// If the daemon restarted since we last looked, every login is gone:
    /// close all sessions and mark the tokens logged out.
    pub fn apply_epoch(&self) {
        let now = self.client.epoch();
        let before = self.epoch_applied.swap(now, Ordering::AcqRel);
        if before != now {
            lock(&self.sessions).clear();
            for slot in &self.slots {
                lock(slot).logged_in = false;
            }
        }
    }

    /// Asks the daemon for the cards and updates every slot. An unreachable
    /// daemon means no card is present.
    pub fn refresh(&self) {
        let cards = match self.call(request::Body::ListCards(ListCards {}), Retry::Idempotent) {
            Ok(response::Body::Cards(list)) => list.cards,
            _ => Vec::new(),
        };
        self.update_slots(cards);
    }

    /// Puts `cards` into their slots. A slot whose card changed (or went)
    /// loses its sessions and login.
    pub fn update_slots(&self, cards: Vec<CardInfo>) {
        let mut by_slot: Vec<Option<CardInfo>> = vec![None; self.slots.len()];
        for card in cards {
            if let Some(place) = by_slot.get_mut(card.slot as usize) {
                *place = Some(card);
            }
        }
        for (index, card) in by_slot.into_iter().enumerate() {
            let mut state = lock(&self.slots[index]);
            let old_id = state.token.as_ref().map(|t| t.card.card_id.clone());
            match card {
                None => {
                    *state = SlotState::default();
                }
                Some(card) => {
                    let keep = state.token.as_ref().is_some_and(|t| t.same_content(&card));
                    state.pin = card.pin.unwrap_or_default();
                    state.pin_min_len = card.pin_min_len;
                    state.pin_max_len = card.pin_max_len;
                    state.logged_in = card.logged_in;
                    if !keep {
                        // A card the module cannot present stays invisible.
                        state.token = Token::new(index, card).ok().map(Arc::new);
                    }
                }
            }
            let new_id = state.token.as_ref().map(|t| t.card.card_id.clone());
            drop(state);
            if old_id.is_some() && old_id != new_id {
                self.drop_sessions(|e| e.slot == index);
            }
            if old_id != new_id && self.looked.load(Ordering::Acquire) {
                let mut events = lock(&self.events);
                if !events.contains(&index) {
                    events.push(index);
                }
            }
        }
        self.looked.store(true, Ordering::Release);
    }

    /// The next slot with a card event, if any (C_WaitForSlotEvent).
    pub fn take_event(&self) -> Option<usize> {
        let mut events = lock(&self.events);
        (!events.is_empty()).then(|| events.remove(0))
    }

    /// Opens a session on a slot.
    pub fn open_session(&self, slot: usize, rw: bool) -> CK_SESSION_HANDLE {
        let handle = self.next_session.fetch_add(1, Ordering::Relaxed);
        let entry = SessionEntry {
            slot,
            rw,
            session: Arc::new(Mutex::new(Session::default())),
        };
        lock(&self.sessions).insert(handle, entry);
        handle
    }

    /// The session with this handle.
    pub fn session(&self, handle: CK_SESSION_HANDLE) -> Result<SessionEntry> {
        lock(&self.sessions)
            .get(&handle)
            .cloned()
            .ok_or(Pkcs11Error::SessionHandleInvalid)
    }

    /// Closes one session; returns its slot if that was the slot's last session.
    pub fn close_session(&self, handle: CK_SESSION_HANDLE) -> Result<Vec<usize>> {
        let mut sessions = lock(&self.sessions);
        let entry = sessions
            .remove(&handle)
            .ok_or(Pkcs11Error::SessionHandleInvalid)?;
        let last = !sessions.values().any(|e| e.slot == entry.slot);
        Ok(if last { vec![entry.slot] } else { Vec::new() })
    }

    /// Closes sessions matching `which`; returns the slots that lost their
    /// last session.
    pub fn drop_sessions(&self, which: impl Fn(&SessionEntry) -> bool) -> Vec<usize> {
        let mut sessions = lock(&self.sessions);
        let mut touched: Vec<usize> = Vec::new();
        sessions.retain(|_, e| {
            let close = which(e);
            if close && !touched.contains(&e.slot) {
                touched.push(e.slot);
            }
            !close
        });
        touched.retain(|slot| !sessions.values().any(|e| e.slot == *slot));
        touched
    }

    /// Closing the last session of an application logs it out of the token
    /// (PKCS#11 3.0 5.6): tell the daemon too, best effort.
    pub fn logout_if_idle(&self, slots: &[usize]) {
        for &index in slots {
            let card_id = {
                let Ok(mut state) = self.slot(index) else {
                    continue;
                };
                if !state.logged_in {
                    continue;
                }
                state.logged_in = false;
                state.token.as_ref().map(|t| t.card.card_id.clone())
            };
            if let Some(card_id) = card_id {
                let _ = self.call(request::Body::Logout(Logout { card_id }), Retry::Never);
            }
        }
    }

    /// (all, read/write) session counts on a slot.
    pub fn session_counts(&self, slot: usize) -> (CK_ULONG, CK_ULONG) {
        let sessions = lock(&self.sessions);
        let on_slot = sessions.values().filter(|e| e.slot == slot);
        let (mut all, mut rw) = (0, 0);
        for e in on_slot {
            all += 1;
            if e.rw {
                rw += 1;
            }
        }
        (all, rw)
    }
}
