//! The state of an initialised module in this process: the application id,
//! the daemon client, the fixed slots and the open sessions (each tied to one
//! card arrival, see `presence.rs`). Locks are fine grained and never held
//! across a daemon round trip (except a session's own).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use lanyard_proto::agent::{request, response, Logout};

use crate::client::{lock, AgentClient, Retry};
use crate::error::{Pkcs11Error, Result};
use crate::session::Session;
use crate::slot::{Insertion, SlotState, Token};

/// Number of slots when the daemon cannot be asked.
pub const DEFAULT_SLOT_COUNT: usize = 2;
/// Upper bound on slots, whatever the daemon says.
const MAX_SLOTS: usize = 64;

static LIBRARY: RwLock<Option<Arc<Library>>> = RwLock::new(None);

/// Session handles are numbered for the life of the process, not of one
/// C_Initialize: a handle kept across C_Finalize stays invalid instead of
/// naming a later session.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A session as the session table holds it.
#[derive(Clone)]
pub struct SessionEntry {
    pub slot: usize,
    /// The card arrival the session was opened on; once the slot holds
    /// another (or none), the session reports DEVICE_REMOVED until closed.
    pub insertion: Insertion,
    pub rw: bool,
    pub session: Arc<Mutex<Session>>,
}

/// A slot and the card arrival in it, e.g. whose last session just closed.
pub type Place = (usize, Insertion);

/// Everything C_Initialize sets up.
pub struct Library {
    pid: u32,
    pub app_id: Vec<u8>,
    pub client: AgentClient,
    pub(crate) slots: Vec<Mutex<SlotState>>,
    sessions: Mutex<HashMap<CK_SESSION_HANDLE, SessionEntry>>,
    /// The client epoch whose consequences (lost logins) were applied.
    epoch_applied: AtomicU64,
    /// Slots whose card came or went since C_WaitForSlotEvent last looked.
    pub(crate) events: Mutex<Vec<usize>>,
    /// Cards seen at the first look are the starting state, not events.
    pub(crate) looked: AtomicBool,
    /// Source of [`Insertion`] numbers (0 is an empty slot's).
    pub(crate) next_insertion: AtomicU64,
    /// Card lists are numbered when asked for ...
    pub(crate) next_ticket: AtomicU64,
    /// ... and one older than the last applied is dropped (held while applying).
    pub(crate) applied_ticket: Mutex<u64>,
    /// When the daemon's card list was last asked for.
    pub(crate) last_refresh: Mutex<Option<Instant>>,
    /// Session calls reuse a card list younger than this (see [`Library::fresh_session`]).
    session_refresh_interval: Duration,
}

/// Default for [`Library::fresh_session`]'s reuse of a recent card list.
pub const DEFAULT_SESSION_REFRESH: Duration = Duration::from_millis(200);

/// The session refresh interval: `LANYARD_PKCS11_REFRESH_MS` or the default.
/// 0 asks the daemon on every session call that starts something.
fn session_refresh_interval() -> Duration {
    std::env::var("LANYARD_PKCS11_REFRESH_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_SESSION_REFRESH)
}

/// Installs a new library state made by `make`. A state left by the parent
/// of a forked process is replaced; one of this process is
/// ALREADY_INITIALIZED.
///
/// `make` runs without the global lock: it may wait for a daemon that does
/// not answer, and neither the application's other calls nor a fork
/// (see [`hold_for_fork`]) should wait with it.
pub fn install(make: impl FnOnce() -> Library) -> Result<()> {
    if get().is_ok() {
        return Err(Pkcs11Error::AlreadyInitialized);
    }
    let lib = Arc::new(make());
    let mut guard = write_library();
    if guard.as_ref().is_some_and(|l| l.pid == std::process::id()) {
        // Another thread's C_Initialize won meanwhile.
        drop(guard);
        lib.client.close();
        return Err(Pkcs11Error::AlreadyInitialized);
    }
    let inherited = guard.replace(lib);
    drop(guard);
    if let Some(parent) = inherited {
        abandon(parent);
    }
    Ok(())
}

/// Removes the library state (C_Finalize).
pub fn uninstall() -> Result<()> {
    let taken = write_library().take();
    match taken {
        Some(lib) if lib.pid == std::process::id() => {
            // The application's logins end with it (best effort, outside the lock).
            lib.logout_if_idle(&lib.current_places());
            lib.client.close();
            Ok(())
        }
        Some(parent) => {
            // A forked child that never re-initialised: drop the parent's
            // state here too, but the child was not initialised.
            abandon(parent);
            Err(Pkcs11Error::NotInitialized)
        }
        None => Err(Pkcs11Error::NotInitialized),
    }
}

/// Lets go of the state a forked child inherited from its parent without
/// waiting for, or tearing down, anything a parent thread may have been in
/// the middle of when the process was copied: its idle connections are
/// closed if their lock is free (only the child's copies of the sockets;
/// the parent's stay open), and the rest is leaked, never dropped.
fn abandon(parent: Arc<Library>) {
    parent.client.abandon();
    std::mem::forget(parent);
}

fn write_library() -> std::sync::RwLockWriteGuard<'static, Option<Arc<Library>>> {
    LIBRARY.write().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// The global lock, held by the thread calling fork() while it forks.
    static HELD_FOR_FORK: RefCell<Option<std::sync::RwLockWriteGuard<'static, Option<Arc<Library>>>>> =
        const { RefCell::new(None) };
}

/// Before fork() (pthread_atfork's prepare handler, in the forking thread):
/// takes the global lock, so that no other thread holds it while the
/// process is copied. A lock held by a thread that does not exist in the
/// child would never be released there, and the child's C_Initialize would
/// wait for it forever. Every holder of this lock holds it briefly and
/// without waiting for the daemon, so fork() is not held up.
pub fn hold_for_fork() {
    let guard = write_library();
    let _ = HELD_FOR_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            *held = Some(guard);
        }
    });
}

/// After fork(), in the parent and in the child (the forking thread, where
/// [`hold_for_fork`] took the lock): releases it. The child's inherited
/// state is then recognised by its pid and replaced by its C_Initialize.
pub fn release_after_fork() {
    let _ = HELD_FOR_FORK.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.take();
        }
    });
}

/// The initialised library of this process.
pub fn get() -> Result<Arc<Library>> {
    let guard = LIBRARY.read().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(lib) if lib.pid == std::process::id() => Ok(Arc::clone(lib)),
        _ => Err(Pkcs11Error::NotInitialized),
    }
}

/// Whether this process has called C_Initialize (and not C_Finalize since);
/// cheaper than [`get`] for the check every entry point makes first.
pub fn is_initialized() -> bool {
    let guard = LIBRARY.read().unwrap_or_else(|p| p.into_inner());
    guard
        .as_ref()
        .is_some_and(|lib| lib.pid == std::process::id())
}

/// Whether `lib` is still this process's initialised library (no
/// C_Finalize since it was taken, nor a new C_Initialize after one).
pub fn is_current(lib: &Arc<Library>) -> bool {
    get().is_ok_and(|now| Arc::ptr_eq(&now, lib))
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
            epoch_applied: AtomicU64::new(epoch),
            events: Mutex::new(Vec::new()),
            looked: AtomicBool::new(false),
            next_insertion: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            applied_ticket: Mutex::new(0),
            last_refresh: Mutex::new(None),
            session_refresh_interval: session_refresh_interval(),
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

    /// Locks the slot of a session, which must still hold the card arrival
    /// the session was opened on (else DEVICE_REMOVED).
    pub fn live_slot(&self, entry: &SessionEntry) -> Result<MutexGuard<'_, SlotState>> {
        let state = self.slot(entry.slot)?;
        if state.token.is_none() || state.insertion != entry.insertion {
            return Err(Pkcs11Error::DeviceRemoved);
        }
        Ok(state)
    }

    /// The token of a session and whether this application is logged in to it.
    pub fn session_token(&self, entry: &SessionEntry) -> Result<(Arc<Token>, bool)> {
        let state = self.live_slot(entry)?;
        let token = state.token.clone().ok_or(Pkcs11Error::DeviceRemoved)?;
        Ok((token, state.logged_in))
    }

    /// Records this application's login state on a session's token.
    pub fn set_logged_in(&self, entry: &SessionEntry, logged_in: bool) -> Result<()> {
        self.live_slot(entry)?.logged_in = logged_in;
        Ok(())
    }

    /// One daemon round trip, then the consequences of a restarted daemon.
    /// A card the daemon says is gone (revoked, suspended, deleted; or the
    /// daemon itself) is looked up again at once, so the slot and its
    /// sessions follow.
    pub fn call(&self, body: request::Body, retry: Retry) -> Result<response::Body> {
        let result = self.client.call(body, retry);
        self.apply_epoch();
        let result = result.map_err(Pkcs11Error::from);
        if matches!(result, Err(Pkcs11Error::DeviceRemoved)) {
            self.refresh();
        }
        result
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

    /// Opens a session on the card now in a slot (TOKEN_NOT_PRESENT if none).
    pub fn open_session(&self, slot: usize, rw: bool) -> Result<CK_SESSION_HANDLE> {
        let insertion = {
            let state = self.slot(slot)?;
            state.token.as_ref().ok_or(Pkcs11Error::TokenNotPresent)?;
            state.insertion
        };
        let handle = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let entry = SessionEntry {
            slot,
            insertion,
            rw,
            session: Arc::new(Mutex::new(Session::default())),
        };
        lock(&self.sessions).insert(handle, entry);
        Ok(handle)
    }

    /// The session with this handle, as far as the module knows: unknown
    /// handles are SESSION_HANDLE_INVALID, sessions whose card has gone
    /// DEVICE_REMOVED.
    pub fn session(&self, handle: CK_SESSION_HANDLE) -> Result<SessionEntry> {
        let entry = lock(&self.sessions)
            .get(&handle)
            .cloned()
            .ok_or(Pkcs11Error::SessionHandleInvalid)?;
        drop(self.live_slot(&entry)?);
        Ok(entry)
    }

    /// The session with this handle after asking the daemon for its cards, so
    /// that a card removed since the last call is noticed by this one.
    ///
    /// A card list younger than the session refresh interval (200 ms by
    /// default) is reused: C_SignInit/C_FindObjectsInit are on the signing
    /// path, and a round trip each would cost fast (ECDSA) signing a large
    /// share of its rate. A removal is still noticed within that interval,
    /// and at once by any call the daemon answers with a removed card.
    pub fn fresh_session(&self, handle: CK_SESSION_HANDLE) -> Result<SessionEntry> {
        // A bad handle costs no round trip.
        self.session(handle)?;
        let recent =
            lock(&self.last_refresh).is_some_and(|at| at.elapsed() < self.session_refresh_interval);
        if !recent {
            self.refresh();
        }
        self.session(handle)
    }

    /// Closes one session, also one whose card has gone; returns its place if
    /// that was the last session on that card arrival.
    pub fn close_session(&self, handle: CK_SESSION_HANDLE) -> Result<Vec<Place>> {
        let mut sessions = lock(&self.sessions);
        let entry = sessions
            .remove(&handle)
            .ok_or(Pkcs11Error::SessionHandleInvalid)?;
        let place = (entry.slot, entry.insertion);
        let last = !sessions.values().any(|e| (e.slot, e.insertion) == place);
        Ok(if last { vec![place] } else { Vec::new() })
    }

    /// Closes sessions matching `which`; returns the places that lost their
    /// last session.
    pub fn drop_sessions(&self, which: impl Fn(&SessionEntry) -> bool) -> Vec<Place> {
        let mut sessions = lock(&self.sessions);
        let mut touched: Vec<Place> = Vec::new();
        sessions.retain(|_, e| {
            let close = which(e);
            if close && !touched.contains(&(e.slot, e.insertion)) {
                touched.push((e.slot, e.insertion));
            }
            !close
        });
        touched.retain(|place| !sessions.values().any(|e| (e.slot, e.insertion) == *place));
        touched
    }

    /// The place of every slot's current card, e.g. for C_Finalize.
    pub fn current_places(&self) -> Vec<Place> {
        (0..self.slots.len())
            .filter_map(|i| self.slot(i).ok().map(|s| (i, s.insertion)))
            .collect()
    }

    /// Closing the last session of an application logs it out of the token
    /// (PKCS#11 3.0 5.6): tell the daemon too, best effort. A place whose
    /// card has gone since has no login left to end.
    pub fn logout_if_idle(&self, places: &[Place]) {
        for &(index, insertion) in places {
            let card_id = {
                let Ok(mut state) = self.slot(index) else {
                    continue;
                };
                if !state.logged_in || state.insertion != insertion {
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

    /// (all, read/write) counts of the sessions on a slot's current card.
    pub fn session_counts(&self, slot: usize) -> (CK_ULONG, CK_ULONG) {
        let Ok(insertion) = self.slot(slot).map(|s| s.insertion) else {
            return (0, 0);
        };
        let sessions = lock(&self.sessions);
        let on_card = sessions
            .values()
            .filter(|e| e.slot == slot && e.insertion == insertion);
        let (mut all, mut rw) = (0, 0);
        for e in on_card {
            all += 1;
            if e.rw {
                rw += 1;
            }
        }
        (all, rw)
    }
}
