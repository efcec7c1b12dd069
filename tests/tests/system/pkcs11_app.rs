//! Drives `c/pkcs11_app.c`, a long-running PKCS#11 application in C, from the
//! lifecycle tests: it keeps its module instance, session and login while the
//! card is renewed, revoked, suspended or resumed underneath it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use lanyard_test_support::process::{owned_command, remove_at_exit, spawn_owned};
use lanyard_test_support::{module_path, run, Daemon};

/// CKR_OK.
pub const CKR_OK: u64 = 0x0;
/// CKR_DEVICE_REMOVED.
pub const CKR_DEVICE_REMOVED: u64 = 0x32;
/// CKR_TOKEN_NOT_PRESENT.
pub const CKR_TOKEN_NOT_PRESENT: u64 = 0xE0;
/// CKR_SESSION_HANDLE_INVALID.
pub const CKR_SESSION_HANDLE_INVALID: u64 = 0xB3;

/// How long one command may take (a sign may wait for the daemon under load).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds `c/pkcs11_app.c` once per test binary (needs `cc` and libp11-kit-dev).
fn executable() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("lanyard-pkcs11-app.")
            .tempdir()
            .expect("cannot create a directory for the C application")
            .keep();
        remove_at_exit(&dir);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/c/pkcs11_app.c");
        let exe = dir.join("pkcs11_app");
        let mut cc = Command::new("cc");
        cc.args(["-Wall", "-Werror", "-O1", "-I/usr/include/p11-kit-1", "-o"])
            .arg(&exe)
            .arg(&src)
            .arg("-ldl");
        run(cc, None, Duration::from_secs(120))
            .assert_success("cc pkcs11_app.c (needs libp11-kit-dev)");
        exe
    })
}

/// One answer line: `name=0xRV key=value…`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The line as printed.
    pub line: String,
    /// The CK_RV.
    pub rv: u64,
    /// The `key=value` pairs after it.
    pub fields: HashMap<String, String>,
}

impl Reply {
    fn parse(line: &str) -> Option<Reply> {
        let mut words = line.split_whitespace();
        let (_, rv) = words.next()?.split_once('=')?;
        let rv = u64::from_str_radix(rv.strip_prefix("0x")?, 16).ok()?;
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Reply {
            line: line.to_string(),
            rv,
            fields,
        })
    }

    /// A field as a number; panics naming the line if it is missing.
    pub fn number(&self, key: &str) -> u64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number {key}= in {:?}", self.line))
    }
}

/// A running `pkcs11_app` bound to one daemon.
pub struct Pkcs11App {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Pkcs11App {
    /// Starts the application against `daemon` and checks C_Initialize succeeded.
    pub fn start(daemon: &Daemon) -> Pkcs11App {
        let mut cmd = owned_command(executable());
        cmd.arg(module_path())
            .envs(daemon.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_owned(cmd).expect("cannot start pkcs11_app");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut app = Pkcs11App {
            child,
            stdin,
            lines,
        };
        let init = app.read_reply("initialize");
        assert_eq!(init.rv, CKR_OK, "C_Initialize failed: {}", init.line);
        app
    }

    fn read_reply(&mut self, what: &str) -> Reply {
        let line = self.lines.recv_timeout(REPLY_TIMEOUT).unwrap_or_else(|e| {
            let status = self.child.try_wait();
            panic!("pkcs11_app gave no answer to {what:?} ({e}; process: {status:?})")
        });
        Reply::parse(&line).unwrap_or_else(|| panic!("pkcs11_app answered {what:?} with {line:?}"))
    }

    /// Sends one command line and returns its answer.
    pub fn call(&mut self, command: &str) -> Reply {
        writeln!(self.stdin, "{command}")
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("cannot send {command:?} to pkcs11_app: {e}"));
        let verb = command.split_whitespace().next().unwrap_or_default();
        self.read_reply(verb)
    }

    /// C_OpenSession on `slot`; panics unless it succeeded.
    pub fn open(&mut self, slot: u64) {
        let r = self.call(&format!("open {slot}"));
        assert_eq!(r.rv, CKR_OK, "C_OpenSession({slot}): {}", r.line);
    }

    /// C_Login with `pin`; the CK_RV.
    pub fn login(&mut self, pin: &str) -> u64 {
        self.call(&format!("login {pin}")).rv
    }

    /// Finds the authentication private key for later signatures; panics
    /// unless exactly one was found.
    pub fn find_key(&mut self) {
        let r = self.call("key");
        assert!(
            r.rv == CKR_OK && r.number("count") == 1,
            "C_FindObjects(private key): {}",
            r.line
        );
    }

    /// Finds the document-signing private key (CKA_ALWAYS_AUTHENTICATE) for
    /// later signatures; panics unless exactly one was found.
    pub fn find_signing_key(&mut self) {
        let r = self.call("key signing");
        assert!(
            r.rv == CKR_OK && r.number("count") == 1,
            "C_FindObjects(document-signing key): {}",
            r.line
        );
    }

    /// Signs the file `data` (SHA256-RSA-PKCS or ECDSA-SHA256, raw r||s) into `sig`; the CK_RV.
    pub fn sign(&mut self, ec: bool, data: &Path, sig: &Path) -> u64 {
        let kind = if ec { "ec" } else { "rsa" };
        let r = self.call(&format!("sign {kind} {} {}", data.display(), sig.display()));
        r.rv
    }

    /// C_GetSessionInfo on the open session; the CK_RV.
    pub fn session_rv(&mut self) -> u64 {
        self.call("session").rv
    }

    /// C_GetSlotList(tokenPresent=TRUE); panics if the call fails.
    pub fn present_slots(&mut self) -> Vec<u64> {
        let r = self.call("slots");
        assert_eq!(r.rv, CKR_OK, "C_GetSlotList(TRUE): {}", r.line);
        r.fields
            .get("list")
            .map(|l| l.split(',').filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// C_WaitForSlotEvent(CKF_DONT_BLOCK): the slot of a pending event, if any.
    pub fn slot_event(&mut self) -> Option<u64> {
        let r = self.call("event");
        (r.rv == CKR_OK).then(|| r.number("slot"))
    }

    /// C_Finalize and exit.
    pub fn quit(mut self) {
        let r = self.call("quit");
        assert_eq!(r.rv, CKR_OK, "C_Finalize: {}", r.line);
        let _ = self.child.wait();
    }
}

impl Drop for Pkcs11App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
