//! The assessor's checks on one machine: SECURITY.md states the threat model the
//! issue lists, and (run as `nobody`, since root's capabilities bypass them) the
//! daemon is not dumpable and refuses an open card store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_test_support::paths::repo_root;
use lanyard_test_support::process::{spawn_owned, stop_child};
use lanyard_test_support::{bin_path, require_tool, run};

#[test]
fn security_md_states_the_threat_model() {
    let path = repo_root().join("SECURITY.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for heading in [
        "### A lost or stolen laptop",
        "### A copied card file restored to reset the retry counter",
        "### Malware running as the same user",
        "### A malicious application loading the module",
        "### Other local users reaching the card through pcscd (PC/SC on)",
        "### A compromised CA host",
        "## What Lanyard does not protect against",
    ] {
        assert!(text.contains(heading), "SECURITY.md lacks {heading:?}");
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for claim in [
        "Offline guessing of a 6-digit PIN is prevented only when the device secret is sealed in a TPM with dictionary-attack lockout.",
        "the device secret without the share opens nothing",
        "the TPM's lockout authorisation must be set",
        "sign **while the card is unlocked**",
        "SO_PEERCRED",
        "PR_SET_DUMPABLE=0",
    ] {
        assert!(flat.contains(claim), "SECURITY.md does not say {claim:?}");
    }
}

/// `nobody`'s uid and `nogroup`'s gid on Debian.
const NOBODY: u32 = 65534;
const AS_NOBODY: [&str; 4] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];

/// A directory tree owned by `nobody`: a copy of lanyardd, a home, XDG dirs, a socket dir.
struct NobodyHome {
    tmp: tempfile::TempDir,
}

impl NobodyHome {
    fn new() -> NobodyHome {
        let tmp = tempfile::Builder::new()
            .prefix("lanyard-hardening.")
            .tempdir()
            .expect("temp dir");
        let home = NobodyHome { tmp };
        for dir in ["bin", "home", "data", "config", "run", "probe"] {
            std::fs::create_dir(home.path(dir)).expect("mkdir");
        }
        std::fs::copy(bin_path("lanyardd"), home.lanyardd()).expect("copy lanyardd");
        for path in [
            home.tmp.path().to_path_buf(),
            home.path("bin"),
            home.lanyardd(),
        ] {
            chmod(&path, 0o755);
        }
        for dir in ["home", "data", "config", "run", "probe"] {
            chmod(&home.path(dir), 0o700);
            std::os::unix::fs::chown(home.path(dir), Some(NOBODY), Some(NOBODY))
                .expect("chown to nobody");
        }
        home
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn lanyardd(&self) -> PathBuf {
        self.path("bin").join("lanyardd")
    }

    /// `setpriv … -- PROGRAM ARGS` as nobody, with this home's environment.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(AS_NOBODY)
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("LANYARD_AGENT_SOCK", self.path("run").join("agent.sock"))
            .current_dir(self.path("probe"));
        cmd
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A lanyardd running as nobody (killed on drop).
struct NobodyDaemon {
    child: Child,
    log: PathBuf,
}

impl NobodyDaemon {
    /// Starts lanyardd as nobody with RLIMIT_MEMLOCK (soft) set to `memlock` bytes
    /// (set by prlimit, then setpriv drops to nobody: one pid throughout).
    fn start(home: &NobodyHome, memlock: u64) -> NobodyDaemon {
        let log = home.path("lanyardd.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let inner = home.command(&home.lanyardd(), &[]);
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--memlock={memlock}:"))
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .current_dir(home.path("probe"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_owned(cmd).expect("start lanyardd as nobody");
        let mut daemon = NobodyDaemon { child, log };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lanyardd as nobody exited ({status})\n{}", self.log());
            }
            if self.log().contains("lanyardd ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("lanyardd as nobody did not get ready\n{}", self.log());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of /proc/PID/status, e.g. "VmLck".
    fn status_field(&self, name: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in /proc/PID/status:\n{status}"))
            .trim()
            .to_string()
    }
}

impl Drop for NobodyDaemon {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// A soft RLIMIT_MEMLOCK that holds the 2 MiB key heap: 8 MiB (the usual
/// default), within this process's hard limit, which a test cannot raise.
fn enough_memlock() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        .expect("Max locked memory in /proc/self/limits");
    let want = 8 << 20;
    if hard == "unlimited" {
        return want;
    }
    let hard: u64 = hard.parse().expect("a number of bytes");
    assert!(
        hard >= 2 << 20,
        "the hard RLIMIT_MEMLOCK ({hard} bytes) is below the daemon's 2 MiB key heap: \
         raise it (ulimit -l) to run this test"
    );
    want.min(hard)
}

fn tools_for_nobody() -> bool {
    ["setpriv", "prlimit", "gcore", "gdb"]
        .iter()
        .all(|t| require_tool(t))
}

/// The same user cannot read the daemon's /proc files or take a core of it; a
/// dumpable process of that user, as a control, can be read.
#[test]
fn the_daemon_is_not_dumpable_by_its_own_user() {
    if !tools_for_nobody() {
        return;
    }
    let home = NobodyHome::new();
    let daemon = NobodyDaemon::start(&home, enough_memlock());
    let mut control = spawn_owned({
        let mut c = home.command(Path::new("/bin/sleep"), &["120"]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    })
    .expect("start a control process as nobody");
    std::thread::sleep(Duration::from_millis(200));

    let owner = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/environ"))
            .expect("stat /proc/PID/environ")
            .uid()
    };
    assert_eq!(
        owner(control.id()),
        NOBODY,
        "control: /proc/PID is nobody's"
    );
    assert_eq!(
        owner(daemon.pid()),
        0,
        "a non-dumpable process's /proc/PID files belong to root"
    );
    let read_environ = |pid: u32| {
        run(
            home.command(Path::new("/bin/cat"), &[&format!("/proc/{pid}/environ")]),
            None,
            Duration::from_secs(10),
        )
    };
    read_environ(control.id()).assert_success("nobody reads its own dumpable process's environ");
    let refused = read_environ(daemon.pid());
    refused.assert_failure("nobody reads lanyardd's environ");
    assert!(refused.stderr.contains("Permission denied"), "{refused}");

    let core_prefix = home.path("probe").join("core");
    let prefix = core_prefix.to_string_lossy();
    let gcore = run(
        home.command(
            Path::new("/usr/bin/gcore"),
            &["-o", &prefix, &daemon.pid().to_string()],
        ),
        None,
        Duration::from_secs(60),
    );
    assert!(
        !gcore.success(),
        "gcore of lanyardd by its own user worked\n{gcore}"
    );
    let core = home.path("probe").join(format!("core.{}", daemon.pid()));
    assert!(!core.exists(), "a core of lanyardd was written\n{gcore}");

    stop_child(&mut control, Duration::from_secs(2));
    assert!(daemon.log().contains("lanyardd ready"));
}

/// With enough RLIMIT_MEMLOCK the key heap is locked (VmLck > 0); with none the
/// daemon still starts but says clearly that keys may be swapped.
#[test]
fn key_memory_is_locked_or_the_daemon_warns() {
    if !tools_for_nobody() {
        return;
    }
    let home = NobodyHome::new();
    {
        let daemon = NobodyDaemon::start(&home, enough_memlock());
        let vmlck = daemon.status_field("VmLck");
        let kib: u64 = vmlck
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("VmLck {vmlck:?}: {e}"));
        assert!(kib >= 2048, "VmLck is {vmlck}, expected the 2 MiB key heap");
        let log = daemon.log();
        assert!(log.contains("key memory locked"), "{log}");
        assert!(!log.contains("NOT locked"), "{log}");
    }
    let daemon = NobodyDaemon::start(&home, 0);
    assert_eq!(daemon.status_field("VmLck"), "0 kB");
    let log = daemon.log();
    assert!(
        log.contains("WARN")
            && log.contains("key memory is NOT locked")
            && log.contains("RLIMIT_MEMLOCK")
            && log.contains("rlimit_memlock=0"),
        "no clear warning about RLIMIT_MEMLOCK in the log:\n{log}"
    );
}

/// Creates `path` (a directory, or a file with `text`) owned by nobody with `mode`.
fn make_for_nobody(path: &Path, text: Option<&str>, mode: u32) {
    match text {
        Some(t) => std::fs::write(path, t).expect("write"),
        None => std::fs::create_dir(path).expect("mkdir"),
    }
    chmod(path, mode);
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
}

/// lanyardd refuses to start on a card store its user left open to others,
/// naming the path and the `chmod` that fixes it, and starts once fixed.
#[test]
fn the_daemon_refuses_an_open_card_store() {
    if !tools_for_nobody() {
        return;
    }
    let home = NobodyHome::new();
    let store = home.path("data").join("lanyard");
    make_for_nobody(&store, None, 0o700);
    make_for_nobody(&store.join("cards"), None, 0o700);
    let card = store.join("cards").join("CARD1.json");
    make_for_nobody(&card, Some("{}"), 0o644);

    let refused = run(
        home.command(&home.lanyardd(), &[]),
        None,
        Duration::from_secs(30),
    );
    refused.assert_failure("lanyardd on a world-readable card file");
    let expected = format!("chmod 600 {}", card.display());
    assert!(
        refused.stderr.contains("0644") && refused.stderr.contains(&expected),
        "the refusal does not name the mode and the fix `{expected}`\n{refused}"
    );
    assert!(
        !home.path("run").join("agent.sock").exists(),
        "a socket was created"
    );

    chmod(&store, 0o750);
    chmod(&card, 0o600);
    let refused = run(
        home.command(&home.lanyardd(), &[]),
        None,
        Duration::from_secs(30),
    );
    refused.assert_failure("lanyardd on a group-readable store directory");
    assert!(
        refused
            .stderr
            .contains(&format!("chmod 700 {}", store.display())),
        "{refused}"
    );

    chmod(&store, 0o700);
    let daemon = NobodyDaemon::start(&home, enough_memlock());
    assert!(daemon.log().contains("lanyardd ready"));
}

/// Another uid cannot read a daemon's card store: `nobody` can neither list it
/// nor read the device secret of a daemon run by this test's user.
#[test]
fn another_uid_cannot_read_the_card_store() {
    if !require_tool("setpriv") {
        return;
    }
    let daemon = lanyard_test_support::Daemon::start();
    let store = daemon.data_home().join("lanyard");
    let secret = store.join("device.secret");
    assert!(secret.exists(), "no device secret at {}", secret.display());
    for (tool, target) in [("/bin/ls", &store), ("/bin/cat", &secret)] {
        let mut cmd = Command::new("setpriv");
        cmd.args(AS_NOBODY).arg(tool).arg(target).current_dir("/");
        let out = run(cmd, None, Duration::from_secs(10));
        out.assert_failure("nobody reading the card store");
        assert!(out.stderr.contains("Permission denied"), "{out}");
    }
}

/// `lanyard status` says which protection is in force at rest (the device
/// secret in a file by default; tpm.rs covers "tpm"), whether a TPM or
/// full-disk encryption was found, and warns when the disk is unprotected.
#[test]
fn status_says_what_protects_the_store_at_rest() {
    let daemon = lanyard_test_support::Daemon::start();
    let json = daemon.status_json();
    let p = &json["device_protection"];
    assert_eq!(p["device_secret"], "file", "{json}");
    let tpm = p["tpm"].as_bool().expect("tpm is a boolean");
    let fde = p["disk_encryption"]
        .as_bool()
        .expect("disk_encryption is a boolean");
    assert_eq!(tpm, Path::new("/dev/tpmrm0").exists(), "{json}");
    let warning = p["warning"].as_str().expect("warning is a string");
    assert_eq!(p["tpm_tcti"], "", "{json}");
    // The secret is in a file: only disk encryption keeps it from a thief.
    assert_eq!(warning.is_empty(), fde, "{json}");

    let text = daemon.lanyard(&["status"], None);
    text.assert_success("lanyard status");
    assert!(
        text.stdout
            .contains("protection: device secret in a file; TPM: "),
        "{text}"
    );
    if !warning.is_empty() {
        assert!(
            text.stdout
                .contains("WARNING: neither a TPM nor full-disk encryption was found"),
            "{text}"
        );
    }
}
