//! The driver's log lines: into pcscd's own log (its `log_msg`, so `pcscd -f`
//! and syslog show them at pcscd's chosen level), or stderr when loaded
//! elsewhere. Never APDU payloads (they carry PINs and signed data): only
//! addresses, lengths and states.

use std::fmt;

/// pcsc-lite's log priorities (debuglog.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// PCSC_LOG_DEBUG: shown with `pcscd --debug`.
    Debug,
    /// PCSC_LOG_INFO: shown with `pcscd --info`.
    Info,
    /// PCSC_LOG_ERROR: shown by default.
    Error,
}

impl Level {
    /// The value pcscd's `log_msg` takes.
    pub fn priority(self) -> i32 {
        match self {
            Level::Debug => 0,
            Level::Info => 1,
            Level::Error => 2,
        }
    }
}

/// Logs one line.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    let line = format!("lanyard-vpcd: {message}");
    #[cfg(test)]
    captured::record(&line);
    if !crate::ffi::pcscd_log::emit(level.priority(), &line) {
        eprintln!("{line}");
    }
}

/// Logs at debug level.
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}
/// Logs at info level.
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}
/// Logs at error level.
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
pub(crate) use {debug, error, info};

/// Test only: every line logged by this process, for tests that check what
/// the logs must never hold.
#[cfg(test)]
pub mod captured {
    use std::sync::Mutex;

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Keeps one line.
    pub fn record(line: &str) {
        LINES.lock().unwrap().push(line.to_string());
    }

    /// All lines so far.
    pub fn lines() -> Vec<String> {
        LINES.lock().unwrap().clone()
    }
}
