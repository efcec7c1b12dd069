//! Child processes for tests. Long-running children (CA, daemon) are started as
//! `setpriv --pdeathsig KILL -- PROGRAM …` from one reaper thread that lives as long
//! as the test binary, so the kernel kills them when the test process exits, even
//! for fixtures kept in a `static` that is never dropped. Short commands run with
//! a timeout and are killed when it expires.
//!
//! Why a dedicated thread: PR_SET_PDEATHSIG fires when the *thread* that forked the
//! child exits, and libtest runs every test on its own short-lived thread; a shared
//! fixture created by the first test would otherwise die with that test's thread.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::tools::tool_available;

type Job = Box<dyn FnOnce() + Send>;

fn reaper() -> &'static mpsc::Sender<Job> {
    static REAPER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("lanyard-test-reaper".into())
            .spawn(move || {
                // The sender lives in a static, so this loop ends only with the process.
                for job in rx {
                    job();
                }
            })
            .expect("cannot start the reaper thread for test children");
        tx
    })
}

/// A `Command` for a long-running child that the kernel kills (SIGKILL) when the
/// test process exits. Spawn it with [`spawn_owned`].
pub fn owned_command(program: impl AsRef<OsStr>) -> Command {
    if tool_available("setpriv") {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else {
        eprintln!("WARNING: setpriv not found; test children may outlive a crashed test run");
        Command::new(program)
    }
}

/// Spawns `cmd` from the reaper thread (see the module docs).
pub fn spawn_owned(mut cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(cmd.spawn());
    });
    reaper()
        .send(job)
        .map_err(|_| std::io::Error::other("reaper thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("reaper thread dropped the spawn request"))?
}

/// Removes `path` after this test process exits, however it exits. For fixtures kept
/// in a `static`, whose temporary directories are never dropped: a small `sh` waits
/// for end-of-file on a pipe whose write end only this process holds.
pub fn remove_at_exit(path: &std::path::Path) {
    static PIPES: OnceLock<std::sync::Mutex<Vec<std::process::ChildStdin>>> = OnceLock::new();
    let janitor = Command::new("sh")
        .args([
            "-c",
            "cat >/dev/null; sleep 0.5; rm -rf -- \"$1\"",
            "lanyard-test-janitor",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match janitor {
        Ok(mut child) => {
            if let Some(stdin) = child.stdin.take() {
                let pipes = PIPES.get_or_init(Default::default);
                if let Ok(mut pipes) = pipes.lock() {
                    pipes.push(stdin);
                }
            }
        }
        Err(e) => eprintln!("WARNING: {} will be left behind: {e}", path.display()),
    }
}

/// Sends SIGTERM to `pid` (through `kill(1)`, so no unsafe and no extra crate).
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops a child: SIGTERM, then SIGKILL if it is still there after `grace`.
/// Returns the exit status if it could be collected.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    terminate(child.id());
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// What a finished (or timed-out) command produced.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// What was run, for messages.
    pub command: String,
    /// Exit code; `None` when killed by a signal or the timeout.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// True when the command was killed because it ran past its timeout.
    pub timed_out: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, for searching.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the full output unless the command exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(self.success(), "{what}: expected success\n{self}");
        self
    }

    /// Panics with the full output unless the command failed (non-zero, not a timeout).
    pub fn assert_failure(&self, what: &str) -> &Self {
        assert!(
            !self.timed_out && self.code.is_some_and(|c| c != 0),
            "{what}: expected a clean non-zero exit\n{self}"
        );
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(
            f,
            "exit code: {:?}{} after {:.2?}",
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion with `stdin` fed in, killing it after `timeout`.
/// Never panics on the command's own failure: callers assert on the result.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    let command = describe(&cmd);
    let started = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return CmdOutput {
                command,
                code: None,
                stdout: String::new(),
                stderr: format!("cannot start: {e}"),
                timed_out: false,
                elapsed: started.elapsed(),
            }
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A child that exits without reading gives EPIPE; that is its business.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = started + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let collect = |h: Option<thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    CmdOutput {
        command,
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        stdout: collect(out),
        stderr: collect(err),
        timed_out,
        elapsed: started.elapsed(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
