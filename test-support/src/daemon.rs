//! A real `lanyardd` for tests, with its own XDG_DATA_HOME, XDG_CONFIG_HOME and
//! agent socket (LANYARD_AGENT_SOCK in a 0700 directory), and helpers to drive it
//! with the `lanyard` CLI: wait until it answers, enrol, restart, stop.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::ca::{open_append, Ca, IssuedCard};
use crate::paths::{bin_path, module_path};
use crate::pkcs11_tool::Pkcs11Tool;
use crate::process::{owned_command, run, spawn_owned, stop_child, CmdOutput};

/// How long the daemon may take to answer `lanyard status` after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `lanyard` command may run (enrolment includes key generation,
/// Argon2 and a round trip to the CA).
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// The card key types `lanyard enroll --key` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA-2048, the default.
    Rsa2048,
    /// ECDSA P-256.
    EcP256,
}

impl KeyType {
    /// The `--key` argument.
    pub fn arg(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::EcP256 => "ec-p256",
        }
    }
}

/// Options for a daemon before it starts. For lifecycle tests, `config`
/// takes lanyardd.toml keys such as `check_in_interval_secs = 2`,
/// `renewal_fraction = 0.5`, `renewal_jitter_fraction = 0.0`,
/// `renewal_retry_min_secs = 1` (or use `env` with `LANYARDD_<KEY>`).
#[derive(Default)]
pub struct DaemonBuilder {
    config: Option<String>,
    envs: Vec<(OsString, OsString)>,
    data_from: Option<PathBuf>,
}

impl DaemonBuilder {
    /// Writes `text` as `$XDG_CONFIG_HOME/lanyard/lanyardd.toml`.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_string());
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Copies the contents of `dir` (another daemon's `$XDG_DATA_HOME`, e.g. its
    /// card store) into this daemon's before it starts: a copy of a device.
    pub fn data_from(mut self, dir: &Path) -> Self {
        self.data_from = Some(dir.to_path_buf());
        self
    }

    /// Starts the daemon and waits until `lanyard status` answers.
    pub fn start(self) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("lanyardd-test.")
            .tempdir()
            .expect("cannot create a temporary directory for the daemon");
        let base = tmp.path().to_path_buf();
        let data_home = base.join("data");
        let config_home = base.join("config");
        let run_dir = base.join("run");
        for dir in [&data_home, &config_home] {
            std::fs::create_dir_all(dir).expect("cannot create the daemon's directories");
        }
        std::fs::create_dir(&run_dir).expect("cannot create the socket directory");
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .expect("cannot chmod the socket directory");
        if let Some(from) = &self.data_from {
            let mut cp = Command::new("cp");
            cp.arg("-a").arg(from.join(".")).arg(&data_home);
            run(cp, None, CLI_TIMEOUT).assert_success("cp -a of a daemon's data directory");
        }
        if let Some(text) = &self.config {
            let dir = config_home.join("lanyard");
            std::fs::create_dir_all(&dir).expect("cannot create the config directory");
            std::fs::write(dir.join("lanyardd.toml"), text).expect("cannot write lanyardd.toml");
        }
        let mut daemon = Daemon {
            _tmp: tmp,
            socket: run_dir.join("agent.sock"),
            log: crate::kept_logs::log_path(&base, "lanyardd.log"),
            base,
            data_home,
            config_home,
            run_dir,
            extra_env: self.envs,
            child: None,
        };
        daemon.launch();
        daemon
    }
}

/// A running `lanyardd` with private directories.
pub struct Daemon {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    data_home: PathBuf,
    config_home: PathBuf,
    run_dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    extra_env: Vec<(OsString, OsString)>,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon with default configuration.
    pub fn start() -> Daemon {
        DaemonBuilder::default().start()
    }

    /// A builder for a daemon with a config file or extra environment.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// The environment that points `lanyardd`, `lanyard` and the module at this daemon.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("LANYARD_AGENT_SOCK".into(), self.socket.clone().into()),
            ("XDG_DATA_HOME".into(), self.data_home.clone().into()),
            ("XDG_CONFIG_HOME".into(), self.config_home.clone().into()),
        ]
    }

    fn launch(&mut self) {
        let log = open_append(&self.log);
        let log2 = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        let mut cmd = owned_command(bin_path("lanyardd"));
        cmd.envs(self.env())
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = spawn_owned(cmd).expect("cannot start lanyardd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "lanyardd exited during start-up ({status})\n--- its log ---\n{}",
                        self.log()
                    );
                }
            }
            let out = self.lanyard(&["status"], None);
            if out.success() {
                return;
            }
            last = Some(out);
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "lanyardd did not answer `lanyard status` within {START_TIMEOUT:?}\nlast try: {}\n--- its log ---\n{}",
            last.map(|o| o.to_string()).unwrap_or_default(),
            self.log()
        );
    }

    /// Runs `lanyard ARGS…` against this daemon, with `stdin` fed in.
    pub fn lanyard(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let mut cmd = Command::new(bin_path("lanyard"));
        cmd.args(args).envs(self.env());
        run(cmd, stdin.map(str::as_bytes), CLI_TIMEOUT)
    }

    /// `lanyard status --json`, parsed; panics with the output if it fails.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.lanyard(&["status", "--json"], None);
        out.assert_success("lanyard status --json");
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("lanyard status --json printed invalid JSON ({e})\n{out}"))
    }

    /// `lanyard enroll --ca URL --ca-cert root.pem --code - --key K --pin-stdin`
    /// with the code and `pin` on stdin (so neither is in the command line);
    /// returns the output whatever happened.
    pub fn try_enroll(
        &self,
        ca_url: &str,
        ca_cert: &Path,
        code: &str,
        key: KeyType,
        pin: &str,
    ) -> CmdOutput {
        crate::kept_logs::record_secret(code);
        crate::kept_logs::record_secret(pin);
        let ca_cert = ca_cert.to_string_lossy();
        self.lanyard(
            &[
                "enroll",
                "--ca",
                ca_url,
                "--ca-cert",
                &ca_cert,
                "--code",
                "-",
                "--key",
                key.arg(),
                "--pin-stdin",
            ],
            Some(&format!("{code}\n{pin}\n")),
        )
    }

    /// Issues a card at `ca` and enrols it here; panics with the output on failure.
    pub fn enroll(
        &self,
        ca: &Ca,
        name: &str,
        user_id: &str,
        key: KeyType,
        pin: &str,
    ) -> IssuedCard {
        let card = ca.issue_card(name, user_id, "R8000 Clinical Practitioner");
        self.try_enroll(ca.url(), &ca.root_pem(), &card.code, key, pin)
            .assert_success("lanyard enroll");
        card
    }

    /// `lanyard renew --card ID --json`, with `pin` on stdin (`--pin-stdin`)
    /// when given; returns the output whatever happened.
    pub fn renew(&self, card_id: &str, pin: Option<&str>) -> CmdOutput {
        let mut args = vec!["renew", "--card", card_id, "--json"];
        if pin.is_some() {
            args.push("--pin-stdin");
        }
        self.lanyard(&args, pin.map(|p| format!("{p}\n")).as_deref())
    }

    /// `lanyard reset-pin --card ID --code - --pin-stdin --json` with the
    /// code and `new_pin` on stdin; returns the output whatever happened.
    pub fn reset_pin(&self, card_id: &str, code: &str, new_pin: &str) -> CmdOutput {
        crate::kept_logs::record_secret(code);
        crate::kept_logs::record_secret(new_pin);
        self.lanyard(
            &[
                "reset-pin",
                "--card",
                card_id,
                "--code",
                "-",
                "--pin-stdin",
                "--json",
            ],
            Some(&format!("{code}\n{new_pin}\n")),
        )
    }

    /// `lanyard check-in --json` (the daemon asks the CA about every card
    /// now); returns the output whatever happened.
    pub fn check_in(&self) -> CmdOutput {
        self.lanyard(&["check-in", "--json"], None)
    }

    /// A `pkcs11-tool` runner using the built module against this daemon.
    pub fn pkcs11_tool(&self) -> Pkcs11Tool {
        Pkcs11Tool::new(module_path(), self.env())
    }

    /// Stops the daemon gracefully (SIGTERM, SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same directories and waits until it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.launch();
    }

    /// Graceful stop then start.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the daemon wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The socket's directory (created 0700).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The temporary directory holding everything of this daemon.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// `$XDG_DATA_HOME` of this daemon (the card store is under `lanyard/`).
    pub fn data_home(&self) -> &Path {
        &self.data_home
    }

    /// The card file of `card_id` (`$XDG_DATA_HOME/lanyard/cards/ID.json`).
    pub fn card_file(&self, card_id: &str) -> PathBuf {
        self.data_home
            .join("lanyard")
            .join("cards")
            .join(format!("{card_id}.json"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
