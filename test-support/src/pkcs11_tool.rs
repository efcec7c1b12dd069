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
        self.run_full(args, None, timeout)
    }

    /// As [`Pkcs11Tool::run`] with `stdin` fed in (pkcs11-tool reads a PIN it was
    /// not given from there).
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        self.run_full(args, Some(stdin), TIMEOUT)
    }

    fn run_full(&self, args: &[&str], stdin: Option<&str>, timeout: Duration) -> CmdOutput {
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
        run(cmd, stdin.map(str::as_bytes), timeout)
    }

    /// `-O` on `slot` (with `--login --pin` when `pin` is given), parsed; panics on failure.
    pub fn objects(&self, slot: u64, pin: Option<&str>) -> Vec<ObjectInfo> {
        let slot = slot.to_string();
        let mut args = vec!["--slot", slot.as_str()];
        if let Some(pin) = pin {
            args.extend(["--login", "--pin", pin]);
        }
        args.push("-O");
        let out = self.run(&args);
        out.assert_success("pkcs11-tool -O");
        parse_objects(&out.stdout)
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

/// One object as `pkcs11-tool -O` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// "Certificate Object", "Public Key Object", "Private Key Object", "Data object"…
    pub kind: String,
    /// The rest of the header line after the `;` (e.g. "RSA 2048 bits").
    pub detail: String,
    /// The indented `name: value` lines, in order, names lower-cased.
    pub fields: Vec<(String, String)>,
}

impl ObjectInfo {
    /// The value of the first field called `name` (lower case, without the colon).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The object's CKA_ID in hex, as printed.
    pub fn id(&self) -> Option<&str> {
        self.field("id")
    }
}

/// Parses `pkcs11-tool -O` output into objects.
pub fn parse_objects(text: &str) -> Vec<ObjectInfo> {
    let mut objects: Vec<ObjectInfo> = Vec::new();
    for line in text.lines() {
        let starts_indented = line.starts_with(' ') || line.starts_with('\t');
        if !starts_indented {
            let (head, detail) = line.split_once(';').unwrap_or((line, ""));
            if head.to_ascii_lowercase().contains("object") {
                objects.push(ObjectInfo {
                    kind: head.trim().to_string(),
                    detail: detail.trim().to_string(),
                    fields: Vec::new(),
                });
            }
            continue;
        }
        let Some(object) = objects.last_mut() else {
            continue;
        };
        if let Some((name, value)) = line.trim().split_once(':') {
            object
                .fields
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    objects
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

    #[test]
    fn parses_objects_with_ids() {
        let text = "Using slot 0 with a present token (0x0)\nPublic Key Object; RSA 2048 bits\n  label:      Dr Ada\n  ID:         a1b2\n  Usage:      verify\nPrivate Key Object; RSA\n  ID:         a1b2\n  Access:     sensitive, always sensitive, never extractable, local\n";
        let objects = parse_objects(text);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].kind, "Public Key Object");
        assert_eq!(objects[0].detail, "RSA 2048 bits");
        assert_eq!(objects[0].id(), Some("a1b2"));
        assert_eq!(objects[1].kind, "Private Key Object");
        assert!(objects[1]
            .field("access")
            .is_some_and(|a| a.contains("never extractable")));
    }
}
