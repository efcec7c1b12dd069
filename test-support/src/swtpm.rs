//! A real software TPM 2.0 (`swtpm socket`) for the TPM tests: its own state
//! directory, free loopback ports P and P+1 (the TCTI's rule), started initialised (`not-need-init,startup-clear`), killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::process::{owned_command, spawn_owned, stop_child};

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// A free port P with P+1 free too (the swtpm TCTI finds the control port at P+1).
fn free_port_pair() -> Option<u16> {
    let port = TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    let next = port.checked_add(1)?;
    TcpListener::bind(("127.0.0.1", next)).ok()?;
    Some(port)
}

impl Swtpm {
    /// A new TPM with a fresh state (so a new seed: another machine's TPM).
    pub fn start() -> Swtpm {
        let tmp = tempfile::tempdir().expect("temp dir for swtpm");
        let mut tpm = Swtpm::start_in(tmp.path());
        tpm._tmp = Some(tmp);
        tpm
    }

    /// The TPM whose state is in `state` (created there the first time).
    pub fn start_in(state: &Path) -> Swtpm {
        std::fs::create_dir_all(state).expect("swtpm state dir");
        let mut last = String::new();
        for _ in 0..5 {
            let Some(port) = free_port_pair() else {
                continue;
            };
            let ctrl = port + 1;
            let mut cmd = owned_command("swtpm");
            cmd.args(["socket", "--tpm2"])
                .arg(format!("--server=type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg(format!("--ctrl=type=tcp,port={ctrl},bindaddr=127.0.0.1"))
                .arg(format!("--tpmstate=dir={}", state.display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = spawn_owned(cmd).expect("cannot start swtpm");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    last = format!("swtpm exited ({status}): {err}");
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Swtpm {
                        child,
                        port,
                        state: state.to_path_buf(),
                        _tmp: None,
                    };
                }
                if Instant::now() > deadline {
                    let _ = stop_child(&mut child, Duration::from_secs(2));
                    last = "swtpm did not listen within 15 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("cannot start swtpm: {last}");
    }

    /// The TSS2 TCTI string that reaches it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Its state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Stops it (its state stays in the state directory).
    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
