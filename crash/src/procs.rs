//! The two processes under test, started from the fault-injection builds
//! (`lanyardd-fault`, `lanyard-ca-fault`) with an optional `LANYARD_FAULT`, killed
//! with SIGKILL by the harness or by themselves, and started again on the same state.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lanyard_test_support::process::{owned_command, run, spawn_owned, stop_child, CmdOutput};
use lanyard_test_support::release_dir;

/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CLI command may run.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The fault-injection build of `name` (`lanyardd-fault`, `lanyard-ca-fault`).
pub fn fault_bin(name: &str) -> Result<PathBuf> {
    let path = release_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --locked --features \
             lanyard-daemon/fault-injection,lanyard-ca/fault-injection --bin lanyardd-fault \
             --bin lanyard-ca-fault` (scripts/test.sh and scripts/crash.sh do)",
            path.display()
        );
    }
    Ok(path)
}

/// How a process ended, as seen by the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Still running.
    Alive,
    /// Killed by SIGKILL (its own fault point, or the harness).
    Killed,
    /// Anything else (a crash or an exit): always a finding.
    Other(Option<i32>),
}

fn death_of(child: &mut Child) -> Death {
    match child.try_wait() {
        Ok(None) => Death::Alive,
        Ok(Some(status)) if status.signal() == Some(9) => Death::Killed,
        Ok(Some(status)) => Death::Other(status.code().or(status.signal().map(|s| 128 + s))),
        Err(_) => Death::Other(None),
    }
}

/// Waits up to `grace` for `child` to be seen dead (a process that just closed
/// its socket may not be reaped yet).
fn settle(child: &mut Child, grace: Duration) -> Death {
    let deadline = Instant::now() + grace;
    loop {
        let d = death_of(child);
        if d != Death::Alive || Instant::now() >= deadline {
            return d;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A supervised child process: its pid, how it died, stopping it. A dead
/// child is reaped and forgotten.
#[derive(Default)]
struct Supervised(Option<Child>);

impl Supervised {
    fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Whether it died (waiting up to `grace`).
    fn check_death(&mut self, grace: Duration) -> Death {
        let Some(child) = self.0.as_mut() else {
            return Death::Killed;
        };
        let d = settle(child, grace);
        if d != Death::Alive {
            self.0 = None;
        }
        d
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

/// SIGKILL of a child that is not yet reaped (so its pid cannot be reused).
pub fn sigkill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `lanyardd-fault` on private directories, driven with the real `lanyard` CLI.
pub struct DaemonProc {
    bin: PathBuf,
    data_home: PathBuf,
    config_home: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Supervised,
}

impl DaemonProc {
    /// Prepares the directories and the fast-KDF test configuration (as the fixtures use).
    pub fn new(base: &Path) -> Result<Self> {
        let data_home = base.join("data");
        let config_home = base.join("config");
        let run_dir = base.join("run");
        std::fs::create_dir_all(&data_home)?;
        std::fs::create_dir_all(config_home.join("lanyard"))?;
        std::fs::create_dir_all(&run_dir)?;
        std::fs::set_permissions(
            &run_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        std::fs::write(
            config_home.join("lanyard").join("lanyardd.toml"),
            // Five tries, not three: a check after a crash may try the new PIN of an
            // interrupted change first, and must not lock the card doing it.
            "argon2_memory_kib = 64\nargon2_iterations = 1\nmax_pin_failures = 5\nslots = 4\n",
        )?;
        Ok(DaemonProc {
            bin: fault_bin("lanyardd-fault")?,
            data_home,
            config_home,
            socket: run_dir.join("agent.sock"),
            log: base.join("lanyardd.log"),
            child: Supervised::default(),
        })
    }

    /// The environment pointing `lanyard`, the module and the daemon at this store.
    pub fn env(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("LANYARD_AGENT_SOCK".into(), self.socket.clone()),
            ("XDG_DATA_HOME".into(), self.data_home.clone()),
            ("XDG_CONFIG_HOME".into(), self.config_home.clone()),
        ]
    }

    /// The card files' directory.
    pub fn cards_dir(&self) -> PathBuf {
        self.data_home.join("lanyard").join("cards")
    }

    /// Starts the daemon (with `fault` as LANYARD_FAULT) and waits until it
    /// answers: `Ok(false)` when the armed fault point killed it during start-up.
    pub fn start(&mut self, fault: Option<&str>) -> Result<bool> {
        let log = open_append(&self.log)?;
        let mut cmd = owned_command(&self.bin);
        cmd.envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(f) = fault {
            cmd.env("LANYARD_FAULT", f);
        }
        self.child = Supervised(Some(
            spawn_owned(cmd).context("cannot start lanyardd-fault")?,
        ));
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.0.as_mut() {
                let d = death_of(child);
                if d == Death::Killed && fault.is_some() {
                    self.child = Supervised::default();
                    return Ok(false);
                }
                if d != Death::Alive {
                    bail!(
                        "lanyardd-fault died during start-up ({d:?}); log {}",
                        self.log.display()
                    );
                }
            }
            if self.lanyard(&["status"], None).success() {
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "lanyardd-fault did not answer within {START_TIMEOUT:?}; log {}",
            self.log.display()
        )
    }

    /// Runs `lanyard ARGS…` with `stdin`.
    pub fn lanyard(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let mut cmd = Command::new(release_dir().join("lanyard"));
        cmd.args(args).envs(self.env());
        run(cmd, stdin.map(str::as_bytes), CLI_TIMEOUT)
    }

    /// Its pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Whether it died (waiting up to `grace`); a dead daemon is reaped and forgotten.
    pub fn check_death(&mut self, grace: Duration) -> Death {
        self.child.check_death(grace)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.child.stop()
    }

    /// The daemon's log so far.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// `lanyard-ca-fault serve` on one directory and one port (the cards keep the CA's URL).
pub struct CaProc {
    bin: PathBuf,
    dir: PathBuf,
    base: PathBuf,
    listen: String,
    url: String,
    child: Supervised,
}

impl CaProc {
    /// `init` in `base/ca`; nothing is served yet.
    pub fn init(base: &Path) -> Result<Self> {
        let bin = fault_bin("lanyard-ca-fault")?;
        let dir = base.join("ca");
        let mut cmd = Command::new(&bin);
        cmd.arg("init").arg("--dir").arg(&dir);
        let out = run(cmd, None, CLI_TIMEOUT);
        if !out.success() {
            bail!("lanyard-ca init failed\n{out}");
        }
        Ok(CaProc {
            bin,
            dir,
            base: base.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            url: String::new(),
            child: Supervised::default(),
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves (with `fault` as LANYARD_FAULT) and waits for its listening line;
    /// after the first start, always on the same port.
    pub fn start(&mut self, fault: Option<&str>) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.try_start(fault) {
                Ok(()) => return Ok(()),
                // The port of a killed CA may take a moment to be free again.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("lanyard-crash: CA start failed, retrying: {e:#}");
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(&mut self, fault: Option<&str>) -> Result<()> {
        let mut cmd = owned_command(&self.bin);
        cmd.arg("serve")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--listen", &self.listen])
            .env("LANYARD_CA_RATE_LIMIT_MAX_FAILURES", "100000")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(open_append(&self.base.join("ca.log"))?);
        if let Some(f) = fault {
            cmd.env("LANYARD_FAULT", f);
        }
        let mut child = spawn_owned(cmd).context("cannot start lanyard-ca-fault serve")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut log = open_append(&self.base.join("ca.log"))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            use std::io::Write;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => {
                if let Some(addr) = url.strip_prefix("https://") {
                    self.listen = addr.to_string();
                }
                self.url = url;
                self.child = Supervised(Some(child));
                Ok(())
            }
            Err(_) => {
                let status = stop_child(&mut child, Duration::from_secs(2));
                bail!(
                    "lanyard-ca serve did not come up ({status:?}); log {}",
                    self.base.join("ca.log").display()
                )
            }
        }
    }

    /// `lanyard-ca-fault admin SUB --dir DIR ARGS…`.
    pub fn admin(&self, sub: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["admin", sub])
            .arg("--dir")
            .arg(&self.dir)
            .args(args);
        run(cmd, None, CLI_TIMEOUT)
    }

    /// Its pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Whether it died (waiting up to `grace`); a dead CA is reaped and forgotten.
    pub fn check_death(&mut self, grace: Duration) -> Death {
        self.child.check_death(grace)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.child.stop()
    }
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}
