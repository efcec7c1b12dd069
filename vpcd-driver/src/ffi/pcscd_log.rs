//! pcscd's `log_msg(priority, fmt, ...)`, looked up at run time in the
//! process that loaded the driver (pcscd exports it to its drivers); absent
//! in any other process, where the driver logs to stderr instead.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

type LogMsg = unsafe extern "C" fn(c_int, *const c_char, ...);

fn log_msg() -> Option<LogMsg> {
    static LOG_MSG: OnceLock<Option<LogMsg>> = OnceLock::new();
    *LOG_MSG.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads;
        // a null result means "not found" and is checked before use.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"log_msg".as_ptr()) };
        if symbol.is_null() {
            None
        } else {
            // SAFETY: pcscd's log_msg has exactly this C signature (debuglog.h:
            // `void log_msg(const int priority, const char *fmt, ...)`); a
            // non-null data pointer from dlsym is the function's address.
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, LogMsg>(symbol) })
        }
    })
}

/// Hands `line` to pcscd's log; false when not running inside pcscd.
pub fn emit(priority: i32, line: &str) -> bool {
    let Some(log_msg) = log_msg() else {
        return false;
    };
    // Interior NULs cannot appear in our messages, but never fail on them.
    let text = CString::new(line.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the format is the constant "%s" and its one argument is a valid
    // NUL-terminated string that outlives the call; log_msg copies it.
    unsafe { log_msg(priority, c"%s".as_ptr(), text.as_ptr()) };
    true
}
