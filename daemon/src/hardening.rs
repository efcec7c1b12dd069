//! Process hardening at start-up: the daemon is not dumpable (no core file, no
//! ptrace or `/proc/PID/mem` by processes of the same user), and private keys
//! live in locked memory (OpenSSL's secure heap: mlock'd, guard pages, left
//! out of core dumps), with a warning when RLIMIT_MEMLOCK is too low for it.

use std::ffi::c_int;

use crate::error::{Error, Result};

/// Size of OpenSSL's secure heap. Private-key numbers (RSA d, p, q and CRT
/// values, EC scalars) and the temporaries of private-key operations are
/// allocated there: a few KiB per key, so 2 MiB is room for every card and
/// concurrent signatures, and stays within the usual 8 MiB RLIMIT_MEMLOCK.
pub const SECURE_HEAP_BYTES: usize = 2 * 1024 * 1024;
/// Smallest allocation in the secure heap (a power of two, as OpenSSL needs).
const SECURE_HEAP_MIN_ALLOC: usize = 32;

extern "C" {
    // libcrypto (OpenSSL 3), already linked through openssl-sys, which does
    // not declare it: `int CRYPTO_secure_malloc_init(size_t sz, size_t minsize)`.
    fn CRYPTO_secure_malloc_init(size: usize, minsize: usize) -> c_int;
}

/// Marks the process not dumpable (`PR_SET_DUMPABLE=0`).
pub fn set_not_dumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| Error::Internal(format!("cannot set PR_SET_DUMPABLE=0: {e}")))
}

/// What became of the key memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMemory {
    /// The secure heap is in place and locked in RAM.
    Locked,
    /// The secure heap is in place but could not be locked (RLIMIT_MEMLOCK,
    /// here in bytes when known, is too low): keys may reach swap.
    NotLocked {
        /// The soft RLIMIT_MEMLOCK, `None` when unknown or unlimited.
        limit: Option<u64>,
    },
    /// OpenSSL refused to set up the secure heap: keys are in ordinary memory.
    Unavailable,
}

/// Sets up OpenSSL's secure heap so private keys are kept in locked memory.
/// Call once, before any key is created or loaded and before other threads start.
pub fn lock_key_memory() -> KeyMemory {
    // SAFETY: called once at start-up, before any thread or secure allocation
    // exists; both sizes are powers of two as OpenSSL requires, and the
    // function only maps and locks an arena owned by libcrypto.
    let rc = unsafe { CRYPTO_secure_malloc_init(SECURE_HEAP_BYTES, SECURE_HEAP_MIN_ALLOC) };
    match rc {
        1 => KeyMemory::Locked,
        2 => KeyMemory::NotLocked {
            limit: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|t| memlock_soft_limit(&t)),
        },
        _ => KeyMemory::Unavailable,
    }
}

/// Logs what [`lock_key_memory`] achieved: INFO when locked, WARN otherwise.
pub fn log_key_memory(state: KeyMemory) {
    let need = SECURE_HEAP_BYTES / 1024;
    match state {
        KeyMemory::Locked => tracing::info!(bytes = SECURE_HEAP_BYTES, "key memory locked"),
        KeyMemory::NotLocked { limit } => tracing::warn!(
            rlimit_memlock = %limit.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
            "key memory is NOT locked: RLIMIT_MEMLOCK is below the {need} KiB the key heap needs, \
             so private keys may be written to swap; raise it (LimitMEMLOCK= in the systemd unit, \
             or memlock in /etc/security/limits.conf)"
        ),
        KeyMemory::Unavailable => tracing::warn!(
            "key memory is NOT locked: OpenSSL's secure heap could not be set up, so private keys \
             are in ordinary memory and may be written to swap"
        ),
    }
}

/// The soft "Max locked memory" limit in bytes from `/proc/self/limits` text;
/// `None` when absent, unparsable or unlimited.
fn memlock_soft_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max processes             63419                63419                processes \n\
Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn reads_the_soft_memlock_limit() {
        assert_eq!(memlock_soft_limit(LIMITS), Some(8_388_608));
        let zero = LIMITS.replace("8388608              8388608", "0 0");
        assert_eq!(memlock_soft_limit(&zero), Some(0));
    }

    #[test]
    fn unlimited_or_missing_is_none() {
        let unlimited = LIMITS.replace("8388608              8388608", "unlimited unlimited");
        assert_eq!(memlock_soft_limit(&unlimited), None);
        assert_eq!(memlock_soft_limit("garbage"), None);
        assert_eq!(memlock_soft_limit(""), None);
    }
}
