//! One real `pcscd -f` for the whole test run, its readers in vpcd's reversed mode:
//! Lanyard's own driver (liblanyard_vpcd.so) connects to 127.0.0.1:PORT, where a
//! `lanyardd --vpcd-listen` serves the card. pcscd's socket is fixed: a second pcscd is refused.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::ca::open_append;
use crate::paths::release_dir;
use crate::process::{owned_command, remove_at_exit, spawn_owned};
use crate::tools::tool_available;

/// How many readers the test pcscd offers (vpcd slots of one reader entry:
/// ports P, P+1, …); tests claim them with [`Pcscd::claim_reader`].
pub const READER_COUNT: u16 = 12;
/// The FRIENDLYNAME of the test reader entry; pcscd names slot `i`
/// "`READER_NAME` 00 0i".
pub const READER_NAME: &str = "Lanyard test vpcd";
/// How long pcscd may take to show its readers.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// pcscd's fixed pid file and socket (not configurable in pcsc-lite 1.9).
const RUN_PID_FILE: &str = "/run/pcscd/pcscd.pid";
const RUN_SOCKET: &str = "/run/pcscd/pcscd.comm";
/// The reader driver's file name in the release directory.
pub const DRIVER_FILE: &str = "liblanyard_vpcd.so";

/// One vpcd reader of the shared pcscd: a `lanyardd --vpcd-listen` on
/// [`VirtualReader::listen_addr`] puts its card in the reader named [`VirtualReader::name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualReader {
    /// The vpcd slot (0-based).
    pub index: u16,
    /// The loopback port vpcd connects to for this reader.
    pub port: u16,
    /// The reader name PC/SC clients see.
    pub name: String,
}

impl VirtualReader {
    /// `127.0.0.1:PORT`, the argument of `lanyardd --vpcd-listen`.
    pub fn listen_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The test run's pcscd.
pub struct Pcscd {
    _tmp: tempfile::TempDir,
    child: Mutex<Child>,
    log: PathBuf,
    config: PathBuf,
    base_port: u16,
    next_reader: AtomicU16,
}

impl Pcscd {
    /// The pcscd shared by every PC/SC test of this process, started on first
    /// use. Panics (with the reason) when another pcscd runs, when pcscd or the
    /// driver's build tools are missing, or when pcscd does not come up.
    pub fn shared() -> &'static Pcscd {
        static PCSCD: OnceLock<Pcscd> = OnceLock::new();
        PCSCD.get_or_init(|| {
            let pcscd = Pcscd::start();
            // A static is never dropped: remove its directory when the test binary exits.
            remove_at_exit(pcscd._tmp.path());
            pcscd
        })
    }

    fn start() -> Pcscd {
        if let Some(other) = other_pcscd() {
            panic!(
                "another pcscd is running ({other}); pcscd's socket /run/pcscd/pcscd.comm is \
                 fixed, so the PC/SC tests need it stopped: `systemctl stop pcscd.socket \
                 pcscd.service` (or kill that process) and run the tests again"
            );
        }
        remove_stale_run_files();
        let tmp = tempfile::Builder::new()
            .prefix("pcscd-test.")
            .tempdir()
            .expect("cannot create a temporary directory for pcscd");
        let driver = driver_path();
        let base_port = free_port_block(READER_COUNT);
        let config = tmp.path().join("reader.conf");
        std::fs::write(&config, reader_conf(&driver, base_port))
            .expect("cannot write the pcscd reader configuration");
        let log = tmp.path().join("pcscd.log");
        let out = open_append(&log);
        let err = out
            .try_clone()
            .expect("cannot duplicate the log file handle");
        // SIGTERM (not KILL) when the test process ends: pcscd then removes its
        // socket and pid file, which a later pcscd would otherwise have to trust.
        let mut cmd = if tool_available("setpriv") {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--pdeathsig", "TERM", "--", "pcscd"]);
            cmd
        } else {
            owned_command("pcscd")
        };
        // -f: foreground, logs to stdout; -i: info level; -a: every APDU (hex);
        // -c: only our reader configuration, not /etc/reader.conf.d.
        cmd.args(["--foreground", "--info", "--apdu", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_owned(cmd).expect("cannot start pcscd");
        let pcscd = Pcscd {
            _tmp: tmp,
            child: Mutex::new(child),
            log,
            config,
            base_port,
            next_reader: AtomicU16::new(0),
        };
        pcscd.wait_ready();
        pcscd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            self.assert_alive();
            // pcscd says so at --info level once every reader of the configuration is added.
            if self.log().contains("daemon ready.") {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "pcscd did not say 'daemon ready.' within {START_TIMEOUT:?}\n--- pcscd log ---\n{}",
            self.log()
        );
    }

    /// The next reader no other test has claimed; panics when all
    /// [`READER_COUNT`] are taken (raise the count).
    pub fn claim_reader(&self) -> VirtualReader {
        let index = self.next_reader.fetch_add(1, Ordering::SeqCst);
        assert!(
            index < READER_COUNT,
            "all {READER_COUNT} test vpcd readers are claimed: raise READER_COUNT in \
             test-support/src/pcscd.rs"
        );
        self.reader(index)
    }

    /// Reader `index` (whether claimed or not).
    pub fn reader(&self, index: u16) -> VirtualReader {
        VirtualReader {
            index,
            port: self.base_port + index,
            // pcscd numbers a reader's slots in hexadecimal.
            name: format!("{READER_NAME} 00 {index:02X}"),
        }
    }

    /// Panics with pcscd's log when pcscd has exited (it must live for the whole run).
    pub fn assert_alive(&self) {
        let status = match self.child.lock() {
            Ok(mut child) => child.try_wait().ok().flatten(),
            Err(_) => None,
        };
        if let Some(status) = status {
            panic!("pcscd exited ({status})\n--- pcscd log ---\n{}", self.log());
        }
    }

    /// pcscd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok().map(|c| c.id())
    }

    /// Everything pcscd logged so far (APDUs included, hex).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The reader configuration pcscd was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

/// The reader.conf entry: vpcd's reversed mode (`DEVICENAME HOST:FIRST-LAST`:
/// the driver connects to one card per port, one reader slot each).
pub fn reader_conf(driver: &Path, base_port: u16) -> String {
    let last_port = base_port + READER_COUNT - 1;
    format!(
        "# Lanyard test readers: the driver connects to 127.0.0.1:{base_port}..{last_port}\n\
         FRIENDLYNAME \"{READER_NAME}\"\n\
         DEVICENAME   127.0.0.1:{base_port}-{last_port}\n\
         LIBPATH      {}\n\
         CHANNELID    {base_port}\n",
        driver.display()
    )
}

/// liblanyard_vpcd.so in the release directory; panics saying how to build it.
pub fn driver_path() -> PathBuf {
    let path = release_dir().join(DRIVER_FILE);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p lanyard-vpcd-driver` \
         (scripts/test.sh builds the whole workspace)",
        path.display()
    );
    path
}

/// pcscd's run files left by one that was killed: with no pcscd running (checked
/// first), a stale pid file could name a process that reused the pid, and the new
/// pcscd would refuse to start ("Another pcscd seems to be running").
fn remove_stale_run_files() {
    for file in [RUN_PID_FILE, RUN_SOCKET] {
        match std::fs::remove_file(file) {
            Ok(()) => eprintln!("pcscd fixture: removed the stale {file}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("pcscd fixture: cannot remove the stale {file}: {e}"),
        }
    }
}

/// A running pcscd that is not ours, as "pid N: command line", if any.
/// Zombies (exited, not yet reaped) do not count.
pub fn other_pcscd() -> Option<String> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if is_live_pcscd(&stat) {
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            return Some(format!("pid {pid}: {}", cmdline.trim()));
        }
    }
    None
}

/// Whether a `/proc/PID/stat` line is a pcscd that has not exited.
fn is_live_pcscd(stat: &str) -> bool {
    // "PID (COMM) STATE …": COMM may hold spaces and parentheses; the last ')' ends it.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = stat.get(open + 1..close).unwrap_or("");
    let state = stat
        .get(close + 1..)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("");
    comm == "pcscd" && state != "Z" && state != "X"
}

/// The first of `count` consecutive loopback ports that are all free now,
/// below the kernel's ephemeral range so outgoing connections do not take them.
fn free_port_block(count: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let low = 20000u16.min(ephemeral_low.saturating_sub(4000));
    let span = ephemeral_low.saturating_sub(low).saturating_sub(count) / count;
    // Start somewhere that depends on the process, so parallel runs rarely collide.
    let start = u32::from(std::process::id() as u16) % u32::from(span.max(1));
    for step in 0..u32::from(span.max(1)) {
        let block = ((start + step) % u32::from(span.max(1))) as u16;
        let base = low + block * count;
        let free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {count} consecutive free loopback ports between {low} and {ephemeral_low}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_conf_is_reversed_mode_on_loopback() {
        let text = reader_conf(Path::new("/x/liblanyard_vpcd.so"), 21000);
        let last = 21000 + READER_COUNT - 1;
        assert!(
            text.contains(&format!("DEVICENAME   127.0.0.1:21000-{last}\n")),
            "{text}"
        );
        assert!(
            text.contains("LIBPATH      /x/liblanyard_vpcd.so\n"),
            "{text}"
        );
        assert!(
            !text.contains("/dev/null"),
            "server mode must not be used: {text}"
        );
    }

    #[test]
    fn port_block_is_free_and_below_the_ephemeral_range() {
        let base = free_port_block(READER_COUNT);
        for i in 0..READER_COUNT {
            assert!(TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        }
        assert!(base >= 1024);
    }

    #[test]
    fn a_live_pcscd_is_told_from_zombies_and_other_programs() {
        assert!(is_live_pcscd("4242 (pcscd) S 1 4242 4242 0 -1"));
        assert!(!is_live_pcscd("4242 (pcscd) Z 1 4242 4242 0 -1"));
        assert!(!is_live_pcscd("4243 (pcscd-helper) S 1"));
        assert!(!is_live_pcscd("4244 (a (pcscd) x) S 1"));
        assert!(!is_live_pcscd("garbage"));
    }
}
