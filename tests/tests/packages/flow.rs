//! The demo flow from the installed paths: /usr/bin/lanyard-ca made and served as the
//! package's lanyard-ca user in /var/lib/lanyard-ca, /usr/bin/lanyardd socket-activated
//! by a module call, a card enrolled with /usr/bin/lanyard, a signature through p11-kit-proxy.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanyard_test_support::process::{spawn_owned, stop_child};
use lanyard_test_support::{run, CmdOutput, Pkcs11Tool};

use crate::debs::{CA_STATE, CA_USER};

/// p11-kit's proxy module: it loads the modules p11-kit's configuration names.
const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";
const HOLDER: &str = "Dr Ada Smith";
const PIN: &str = "24681357";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A child stopped when dropped, with where its output went.
struct Running {
    child: Child,
    what: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

impl Running {
    fn assert_alive(&mut self, log: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status})\n{log}", self.what);
        }
    }
}

/// `setpriv` to the CA's system user, as the unit's User= would.
fn as_ca_user(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--pdeathsig",
        "KILL",
        "--reuid",
        CA_USER,
        "--regid",
        CA_USER,
    ])
    .args(["--clear-groups", "--", program]);
    cmd
}

/// `lanyard-ca init` in the package's state directory, then `serve` on loopback.
fn start_ca() -> (Running, String) {
    let mut init = as_ca_user("/usr/bin/lanyard-ca");
    init.args(["init", "--dir", CA_STATE]);
    run(init, None, COMMAND_TIMEOUT).assert_success("lanyard-ca init as the lanyard-ca user");

    let mut serve = as_ca_user("/usr/bin/lanyard-ca");
    serve
        .args(["serve", "--dir", CA_STATE, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn_owned(serve).expect("cannot start lanyard-ca serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let mut ca = Running {
        child,
        what: "lanyard-ca serve",
    };
    let url = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        ca.assert_alive("");
        panic!("lanyard-ca serve printed no `listening on` within {START_TIMEOUT:?}")
    });
    (ca, url)
}

/// A user's session: its own HOME and XDG directories, nothing of the test's.
struct Session {
    _dir: tempfile::TempDir,
    env: Vec<(OsString, OsString)>,
    socket: PathBuf,
    log: PathBuf,
}

impl Session {
    fn new() -> Session {
        let dir = tempfile::Builder::new()
            .prefix("lanyard-packages-test.")
            .tempdir()
            .expect("cannot create the session directory");
        let base = dir.path();
        let runtime = base.join("run");
        for sub in ["home", "data", "config", "run"] {
            std::fs::create_dir(base.join(sub)).expect("cannot create a session directory");
        }
        // What lanyardd.socket's DirectoryMode=0700 makes.
        let sock_dir = runtime.join("lanyard");
        std::fs::create_dir(&sock_dir).expect("cannot create the socket directory");
        for d in [&runtime, &sock_dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .expect("cannot chmod the runtime directory");
        }
        let env = [
            ("HOME", base.join("home")),
            ("XDG_RUNTIME_DIR", runtime),
            ("XDG_DATA_HOME", base.join("data")),
            ("XDG_CONFIG_HOME", base.join("config")),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), v.into_os_string()))
        .collect();
        Session {
            socket: sock_dir.join("agent.sock"),
            log: base.join("lanyardd.log"),
            env,
            _dir: dir,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("LANYARD_AGENT_SOCK")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn lanyard(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let mut cmd = self.command("/usr/bin/lanyard");
        cmd.args(args);
        run(cmd, stdin.map(str::as_bytes), COMMAND_TIMEOUT)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `systemd-socket-activate` holding %t/lanyard/agent.sock as lanyardd.socket
    /// would: the installed lanyardd starts only when `first_client` connects, and
    /// takes the socket over (LISTEN_FDS) in the same process.
    fn start_daemon_on_demand(&self, first_client: impl FnOnce() -> CmdOutput) -> Running {
        let log = std::fs::File::create(&self.log).expect("cannot create the daemon log");
        let socket = self.socket.to_str().expect("a UTF-8 socket path");
        let mut cmd = self.command("setpriv");
        cmd.args([
            "--pdeathsig",
            "KILL",
            "--",
            "systemd-socket-activate",
            "-l",
            socket,
        ])
        .arg("/usr/bin/lanyardd")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cannot share the log file"))
        .stderr(log);
        let mut daemon = Running {
            child: spawn_owned(cmd).expect("cannot start systemd-socket-activate"),
            what: "systemd-socket-activate /usr/bin/lanyardd",
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.socket.exists() {
            daemon.assert_alive(&self.log());
            assert!(
                Instant::now() < deadline,
                "no socket at {socket}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // comm is cut to 15 bytes; the same process becomes lanyardd on exec.
        let comm = || {
            std::fs::read_to_string(format!("/proc/{}/comm", daemon.child.id()))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        assert_eq!(
            comm(),
            "systemd-socket-",
            "lanyardd started before any client"
        );
        first_client().assert_success("the first client of the socket");
        assert_eq!(
            comm(),
            "lanyardd",
            "the first client did not start lanyardd\n{}",
            self.log()
        );
        daemon
    }
}

/// The card issued by the CA: (enrolment code, card id).
fn issue_card() -> (String, String) {
    let mut cmd = as_ca_user("/usr/bin/lanyard-ca");
    cmd.args(["admin", "issue-card", "--dir", CA_STATE, "--name", HOLDER])
        .args([
            "--user-id",
            "555123456789",
            "--role",
            "R8000 Clinical Practitioner",
            "--json",
        ]);
    let out = run(cmd, None, COMMAND_TIMEOUT);
    out.assert_success("lanyard-ca admin issue-card");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("issue-card --json: {e}\n{out}"));
    let field = |k: &str| {
        json[k]
            .as_str()
            .unwrap_or_else(|| panic!("issue-card --json has no {k}\n{out}"))
            .to_string()
    };
    (field("code"), field("card_id"))
}

/// The whole flow; every process it starts is stopped before it returns.
pub fn run_demo() {
    let (_ca, url) = start_ca();
    let (code, card_id) = issue_card();
    let session = Session::new();
    // No module path of ours: p11-kit-proxy finds the token through lanyard.module,
    // and its first call starts the daemon.
    let p11 = Pkcs11Tool::new(PathBuf::from(P11_KIT_PROXY), session.env.clone());
    let _daemon = session.start_daemon_on_demand(|| p11.run(&["-L"]));
    let root_pem = Path::new(CA_STATE).join("root.pem");
    let root_pem = root_pem.to_str().expect("a UTF-8 path");
    session
        .lanyard(
            &[
                "enroll",
                "--ca",
                &url,
                "--ca-cert",
                root_pem,
                "--code",
                &code,
                "--pin-stdin",
            ],
            Some(&format!("{PIN}\n")),
        )
        .assert_success("/usr/bin/lanyard enroll");
    let status = session.lanyard(&["status"], None);
    status.assert_success("lanyard status");
    assert!(
        status.stdout.contains(&card_id),
        "status does not show the card\n{status}"
    );

    let slots = p11.slots();
    let slot = slots
        .iter()
        .find(|s| s.token_label.as_deref().is_some_and(|l| l.contains(HOLDER)))
        .unwrap_or_else(|| {
            panic!(
                "p11-kit-proxy shows no {HOLDER} token: {slots:?}\n{}",
                session.log()
            )
        })
        .id;
    let objects = p11.objects(slot, Some(PIN));
    let key_id = objects
        .iter()
        .find(|o| o.kind.starts_with("Private Key"))
        .and_then(|o| o.id())
        .unwrap_or_else(|| panic!("no private key on the token: {objects:?}"))
        .to_string();

    let work = tempfile::tempdir().expect("cannot create a work directory");
    let file = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    std::fs::write(
        file("hello.txt"),
        "Discharge summary, signed from the installed packages.\n",
    )
    .expect("cannot write the document");
    let slot = slot.to_string();
    p11.run(&[
        "--slot",
        &slot,
        "--read-object",
        "--type",
        "cert",
        "--id",
        &key_id,
        "-o",
        &file("card.der"),
    ])
    .assert_success("pkcs11-tool --read-object through p11-kit-proxy");
    p11.run(&[
        "--slot",
        &slot,
        "--login",
        "--pin",
        PIN,
        "--sign",
        "-m",
        "SHA256-RSA-PKCS",
        "--id",
        &key_id,
        "-i",
        &file("hello.txt"),
        "-o",
        &file("sig.bin"),
    ])
    .assert_success("pkcs11-tool --sign through p11-kit-proxy");

    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args);
        run(cmd, None, COMMAND_TIMEOUT)
    };
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &file("card.der"),
        "-pubkey",
        "-noout",
        "-out",
        &file("pub.pem"),
    ])
    .assert_success("openssl x509 -pubkey");
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &file("pub.pem"),
        "-signature",
        &file("sig.bin"),
        &file("hello.txt"),
    ]);
    verified.assert_success("openssl dgst -verify");
    assert!(verified.stdout.contains("Verified OK"), "{verified}");
}
