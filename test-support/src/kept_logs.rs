//! Logs kept for a grep after the whole run: with LANYARD_TEST_LOG_DIR set
//! (scripts/test.sh sets it), the CA and daemon fixtures write their logs
//! there instead of into their temporary directories, and every secret they
//! handle (enrolment codes, PINs and reset codes of 8 characters or more;
//! shorter PINs would match timestamps and ports) is listed in its
//! `secrets.txt`. `scripts/check-test-logs.sh` then looks for each secret in
//! every kept log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the directory.
pub const LOG_DIR_ENV: &str = "LANYARD_TEST_LOG_DIR";
/// Shortest secret listed (a 6-digit PIN would match unrelated numbers).
pub const MIN_SECRET_LEN: usize = 8;

fn kept_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(LOG_DIR_ENV)?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Where a fixture writes the log `name`: in the kept directory (a name
/// unique to this process and fixture) when there is one, else in `base`.
pub fn log_path(base: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    match kept_dir() {
        Some(dir) => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let suffix = if name.ends_with(".log") { "" } else { ".log" };
            dir.join(format!("{}-{n}-{name}{suffix}", std::process::id()))
        }
        None => base.join(name),
    }
}

/// Lists `secret` (and, for a grouped code, its form without separators)
/// for the grep after the run, when logs are kept and it is long enough.
pub fn record_secret(secret: &str) {
    let Some(dir) = kept_dir() else { return };
    let compact: String = secret.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut lines = String::new();
    for s in [secret.trim(), compact.as_str()] {
        if s.len() >= MIN_SECRET_LEN && !lines.lines().any(|l| l == s) {
            lines.push_str(s);
            lines.push('\n');
        }
    }
    if lines.is_empty() {
        return;
    }
    // One append per call: lines from parallel tests do not interleave.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("secrets.txt"));
    if let Ok(mut f) = file {
        let _ = f.write_all(lines.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_not_listed_and_codes_get_their_compact_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        // No other test of this crate reads the variable.
        std::env::set_var(LOG_DIR_ENV, dir.path());
        record_secret("123456");
        record_secret("7KQD-9M2X-H4TA-PZ3E");
        record_secret("73194628");
        let listed = std::fs::read_to_string(dir.path().join("secrets.txt")).expect("listed");
        assert_eq!(
            listed, "7KQD-9M2X-H4TA-PZ3E\n7KQD9M2XH4TAPZ3E\n73194628\n",
            "{listed}"
        );
        let log = log_path(Path::new("/nowhere"), "lanyardd.log");
        assert!(log.starts_with(dir.path()), "{}", log.display());
        assert!(
            log.to_string_lossy().ends_with("-lanyardd.log"),
            "{}",
            log.display()
        );
        let log = log_path(Path::new("/nowhere"), "ca-serve.stderr");
        assert!(
            log.to_string_lossy().ends_with("-ca-serve.stderr.log"),
            "{}",
            log.display()
        );
        std::env::remove_var(LOG_DIR_ENV);
        assert_eq!(log_path(Path::new("/base"), "x"), Path::new("/base/x"));
    }
}
