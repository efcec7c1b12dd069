//! Fork safety: registers the pthread_atfork handlers that keep other threads
//! from holding the module's global lock while fork() copies the process
//! (the locking itself is safe Rust in `library.rs`).

use std::panic::catch_unwind;
use std::sync::Once;

use crate::library;

static REGISTERED: Once = Once::new();

/// Registers the fork handlers once per loaded library (at the first
/// C_Initialize). glibc drops them when the library is unloaded.
pub fn register_fork_handlers() {
    REGISTERED.call_once(|| {
        // SAFETY: the handlers are extern "C" functions without arguments
        // that live as long as this library; glibc registers them under this
        // library's DSO handle and unregisters them when it is unloaded.
        // A failure (ENOMEM) leaves the module working, without the handlers.
        let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
    });
}

/// Before fork(), in the forking thread.
extern "C" fn prepare() {
    // Nothing may unwind into fork(); the handler does not panic, but a
    // bug must not abort the host application.
    let _ = catch_unwind(library::hold_for_fork);
}

/// After fork(), in the parent and in the child.
extern "C" fn release() {
    let _ = catch_unwind(library::release_after_fork);
}
