//! Runs OpenSC's `pkcs11-tool --module liblanyard_pkcs11.so …` with a daemon's
//! environment, and reads its `-L` slot listing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run, CmdOutput};

/// How long one `pkcs11-tool` run may take (`--test` logs in and signs several times).
const TIMEOUT: Duration = Duration::from_secs(120);

/// `pkcs11-tool` bound to a module and an environment.
#[derive(Clone)]
pub struct Pkcs11Tool {
    module: PathBuf,
    envs: Vec<(OsString, OsString)>,
    wrapper: Vec<OsString>,
}

impl Pkcs11Tool {
    /// A runner for `module` with `envs` set.
    pub fn new(module: PathBuf, envs: Vec<(OsString, OsString)>) -> Self {
        Pkcs11Tool {
            module,
            envs,
            wrapper: Vec::new(),
        }
    }

    /// Runs every command behind `wrapper` (e.g. `setpriv --reuid=nobody …`).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(OsString::from).collect();
        self
    }

    /// The module path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// `pkcs11-tool --module MODULE ARGS…`.
    pub fn run(&self, args: &[&str]) -> CmdOutput {
        self.run_with_timeout(args, TIMEOUT)
    }

    /// As [`Pkcs11Tool::run`] with a custom timeout.
    pub fn run_with_timeout(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg("pkcs11-tool");
                cmd
            }
            None => Command::new("pkcs11-tool"),
        };
        cmd.arg("--module").arg(&self.module).args(args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        run(cmd, None, timeout)
    }

    /// `-L`, parsed; panics with the output if it fails.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let out = self.run(&["-L"]);
        out.assert_success("pkcs11-tool -L");
        parse_slot_list(&out.stdout)
    }
}

/// One slot as `pkcs11-tool -L` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot id (the number in `Slot N (0x…)`).
    pub id: u64,
    /// The slot description after the colon.
    pub description: String,
    /// The token label, when a token is present.
    pub token_label: Option<String>,
    /// True when the slot printed "(empty)" or no token lines.
    pub empty: bool,
}

/// Parses `pkcs11-tool -L` output:
///
/// ```text
/// Slot 0 (0x0): Lanyard virtual card slot 0
///   token label        : Dr Ada Smith 1234
/// Slot 1 (0x1): Lanyard virtual card slot 1
///   (empty)
/// ```
pub fn parse_slot_list(text: &str) -> Vec<SlotInfo> {
    let mut slots: Vec<SlotInfo> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            let (head, description) = rest.split_once(':').unwrap_or((rest, ""));
            let hex = head
                .split_once("(0x")
                .and_then(|(_, h)| h.strip_suffix(')'))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
            let id = hex.or_else(|| head.split_whitespace().next().and_then(|n| n.parse().ok()));
            if let Some(id) = id {
                slots.push(SlotInfo {
                    id,
                    description: description.trim().to_string(),
                    token_label: None,
                    empty: true,
                });
            }
            continue;
        }
        let Some(slot) = slots.last_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if let Some(value) = trimmed.strip_prefix("token label") {
            let value = value.trim_start().trim_start_matches(':').trim();
            slot.token_label = Some(value.to_string());
            slot.empty = false;
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_present_and_empty_slots() {
        let text = "Available slots:\nSlot 0 (0x0): Lanyard slot 0\n  token label        : Dr Ada Smith 42\n  token manufacturer : Lanyard\nSlot 1 (0x1): Lanyard slot 1\n  (empty)\n";
        let slots = parse_slot_list(text);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].id, 0);
        assert_eq!(slots[0].token_label.as_deref(), Some("Dr Ada Smith 42"));
        assert!(!slots[0].empty);
        assert_eq!(slots[1].id, 1);
        assert!(slots[1].empty);
        assert_eq!(slots[1].token_label, None);
    }
}
