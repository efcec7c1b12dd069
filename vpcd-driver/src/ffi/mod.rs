//! The only unsafe code of the driver: pcsc-lite's IFD handler entry points
//! (handler.rs) and pcscd's log function (pcscd_log.rs). Pointers become
//! Rust values here; every call runs under catch_unwind so no panic crosses into pcscd.

mod handler;
pub mod pcscd_log;

use std::os::raw::c_ulong;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{DriverError, ResponseCode, Result};
use crate::log::{debug, error};

/// pcsc-lite's DWORD (`unsigned long` on Linux).
type Dword = c_ulong;
/// pcsc-lite's RESPONSECODE (`long`).
type ResponseCodeC = std::os::raw::c_long;

/// A DWORD as u64 (DWORD is 64-bit on 64-bit Linux, 32-bit elsewhere).
#[allow(clippy::useless_conversion)]
fn wide(value: Dword) -> u64 {
    u64::from(value)
}

/// Runs one entry point's safe body: errors are logged and become their
/// response code; a panic becomes IFD_COMMUNICATION_ERROR.
fn guard(entry: &str, body: impl FnOnce() -> Result<ResponseCode>) -> ResponseCodeC {
    let outcome = panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        Err(DriverError::Internal(what))
    });
    let code = match outcome {
        Ok(code) => code,
        Err(e) => {
            match e {
                // Expected while no card is in the slot, or for optional tags.
                DriverError::NoCard(_)
                | DriverError::UnknownTag(_)
                | DriverError::NotSupported(_) => debug!("{entry}: {e}"),
                _ => error!("{entry}: {e}"),
            }
            e.response_code()
        }
    };
    code.value() as ResponseCodeC
}

/// Hands an entry point's answer to pcscd: the bytes copied into `out` (of
/// `*len` bytes) and `*len` set to their count; on any error `*len` is 0
/// (when not null) and the error is returned.
///
/// # Safety
/// `len` is null or valid for reads and writes; `out` is null or valid for
/// writes of `*len` bytes.
unsafe fn answer(result: Result<Vec<u8>>, out: *mut u8, len: *mut Dword) -> Result<()> {
    if len.is_null() {
        return Err(result
            .err()
            .unwrap_or(DriverError::NullArgument("length pointer")));
    }
    // SAFETY: len is non-null and valid per this function's contract.
    let capacity = unsafe { *len } as usize;
    let fits = result.and_then(|value| {
        if out.is_null() {
            Err(DriverError::NullArgument("output buffer"))
        } else if value.len() > capacity {
            Err(DriverError::BufferTooSmall {
                capacity,
                needed: value.len(),
            })
        } else {
            Ok(value)
        }
    });
    match fits {
        Ok(value) => {
            // SAFETY: out is non-null and valid for `capacity` >= value.len()
            // bytes; value is a separate Rust buffer, so they do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out, value.len()) };
            // SAFETY: as above for len.
            unsafe { *len = value.len() as Dword };
            Ok(())
        }
        Err(e) => {
            // SAFETY: as above for len.
            unsafe { *len = 0 };
            Err(e)
        }
    }
}

/// Sets `*len` to 0 when `len` is not null.
///
/// # Safety
/// `len` is null or valid for writes.
unsafe fn clear_len(len: *mut Dword) {
    if !len.is_null() {
        // SAFETY: non-null and valid per this function's contract.
        unsafe { *len = 0 };
    }
}
