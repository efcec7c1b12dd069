//! Socket activation through `systemd-socket-activate` (the LISTEN_FDS protocol
//! systemd's lanyardd.socket uses): the first client starts lanyardd, which
//! signs, exits when idle (not while a card is unlocked), refuses a wrong
//! descriptor, and after a start never signs for a card revoked meanwhile.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{bin_path, require_tool, run, Daemon, KeyType};

use crate::lifecycle_world::{lifecycle_ca, wait_for};
use crate::pkcs11_app::{
    Pkcs11App, CKR_DEVICE_REMOVED, CKR_OK, CKR_SESSION_HANDLE_INVALID, CKR_TOKEN_NOT_PRESENT,
};
use crate::world::{
    enroll_card, enroll_card_at, export_certificate, public_key_of, scratch, sign, tools_present,
    verify_sha256,
};

/// The slot does not exist (any more).
const CKR_SLOT_ID_INVALID: u64 = 0x3;

/// How long a step may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn tools() -> bool {
    tools_present() && require_tool("systemd-socket-activate")
}

/// `systemd-socket-activate` listening for lanyardd, with its log.
struct Activation {
    child: Child,
    log: PathBuf,
}

impl Activation {
    /// Listens on `listen` (a path or IP:PORT; `datagram` for SOCK_DGRAM) and
    /// runs lanyardd with `args` and `daemon`'s environment on the first client.
    fn start(daemon: &Daemon, listen: &str, datagram: bool, args: &[&str], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create the activation log");
        let err = out.try_clone().expect("dup the log");
        let mut cmd = owned_command("systemd-socket-activate");
        if datagram {
            cmd.arg("--datagram");
        }
        cmd.args(["-l", listen]);
        for (k, v) in daemon.env() {
            let mut pair = k;
            pair.push("=");
            pair.push(v);
            cmd.arg("-E").arg(pair);
        }
        cmd.arg(bin_path("lanyardd"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_owned(cmd).expect("cannot start systemd-socket-activate");
        let activation = Activation {
            child,
            log: log.to_path_buf(),
        };
        activation.wait_log("Listening on", "systemd-socket-activate to listen");
        activation
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the log until it contains `needle`.
    fn wait_log(&self, needle: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}\n--- log ---\n{}", self.log());
    }

    /// The name of the process: systemd-socket-activate until it execs lanyardd.
    fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Waits for the process to end by itself.
    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}\n--- log ---\n{}", self.log());
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// A daemon with `config` and one enrolled card (RSA at the shared CA),
/// then stopped: its socket path is free for the activation.
fn enrolled_then_stopped(
    config: &str,
    holder: &'static str,
    user_id: &str,
) -> (Daemon, crate::world::Card) {
    let mut daemon = Daemon::builder().config(config).start();
    let card = enroll_card(&daemon, holder, user_id, KeyType::Rsa2048, "246810");
    daemon.stop();
    (daemon, card)
}

#[test]
fn the_first_client_starts_lanyardd_which_signs_and_exits_when_idle() {
    if !tools() {
        return;
    }
    let (daemon, card) = enrolled_then_stopped("", "Dr Sasha Socket", "555810000001");
    let dir = scratch();
    let socket = daemon.socket().to_string_lossy().into_owned();
    let mut act = Activation::start(
        &daemon,
        &socket,
        false,
        &["--idle-exit", "2s"],
        &dir.path().join("activation.log"),
    );
    assert_ne!(
        act.comm(),
        "lanyardd",
        "lanyardd must not run before a client comes"
    );
    assert!(!act.log().contains("lanyardd ready"), "{}", act.log());

    // Two clients at once: one daemon starts and answers both.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let env = daemon.env();
            std::thread::spawn(move || {
                let mut cmd = Command::new(bin_path("lanyard"));
                cmd.args(["status", "--json"]).envs(env);
                run(cmd, None, PATIENCE)
            })
        })
        .collect();
    for client in clients {
        let out = client.join().expect("client thread");
        out.assert_success("lanyard status against the activated socket");
        assert!(out.stdout.contains("Dr Sasha Socket"), "{out}");
    }
    let log = act.log();
    assert_eq!(log.matches("lanyardd ready").count(), 1, "{log}");
    assert!(log.contains("socket_activated=true"), "{log}");
    assert_eq!(act.comm(), "lanyardd");

    // pkcs11-tool signs through the activated daemon; OpenSSL verifies.
    let tool = daemon.pkcs11_tool();
    let data = dir.path().join("letter.txt");
    std::fs::write(&data, b"Discharge summary, ward 7.\n").expect("write data");
    let sig = dir.path().join("letter.sig");
    sign(&tool, &card, "SHA256-RSA-PKCS", &[], &data, &sig).assert_success("pkcs11-tool --sign");
    let cert = export_certificate(&tool, &card, dir.path());
    let public = public_key_of(&cert, dir.path(), "socket");
    verify_sha256(&public, &sig, &data).assert_success("openssl verifies the signature");

    // Nothing to do for 2 s: it stops by itself, with code 0, leaving the socket to systemd.
    let status = act.wait_exit("the idle exit");
    assert!(status.success(), "{status}\n{}", act.log());
    let log = act.log();
    assert!(log.contains("stopping: idle exit"), "{log}");
    assert!(log.contains("idle for 2s"), "{log}");
    assert!(
        daemon.socket().exists(),
        "the activated socket file must stay"
    );
}

#[test]
fn an_unlocked_card_keeps_an_idle_daemon_running() {
    if !tools() {
        return;
    }
    let (daemon, card) =
        enrolled_then_stopped("protected_path = true\n", "Dr Uma Unlocked", "555810000002");
    let dir = scratch();
    let socket = daemon.socket().to_string_lossy().into_owned();
    let mut act = Activation::start(
        &daemon,
        &socket,
        false,
        &["--idle-exit", "1s"],
        &dir.path().join("activation.log"),
    );
    let card_id = card.issued.card_id.as_str();
    daemon
        .lanyard(
            &["unlock", "--card", card_id, "--pin-stdin"],
            Some("246810\n"),
        )
        .assert_success("lanyard unlock");
    act.wait_log(
        "staying reason=\"a card is unlocked\"",
        "the idle daemon to stay for the unlocked card",
    );
    assert!(
        act.running(),
        "exited while a card was unlocked\n{}",
        act.log()
    );
    daemon
        .lanyard(&["lock", "--card", card_id], None)
        .assert_success("lanyard lock");
    let status = act.wait_exit("the idle exit once the card is locked");
    assert!(status.success(), "{status}\n{}", act.log());
    assert!(act.log().contains("stopping: idle exit"), "{}", act.log());
}

#[test]
fn a_descriptor_that_is_not_a_listening_unix_stream_socket_is_refused() {
    if !tools() {
        return;
    }
    let daemon = {
        let mut d = Daemon::start();
        d.stop();
        d
    };
    let dir = scratch();

    // A regular file as fd 3.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"x").expect("write file");
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" 3<\"$1\"",
    ])
    .arg(bin_path("lanyardd"))
    .arg(&file)
    .envs(daemon.env());
    let out = run(cmd, None, PATIENCE);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("socket activation: fd 3 (LISTEN_FDS) is not usable")
            && out.stderr.contains("non-socket"),
        "{out}"
    );

    // A bad idle period is refused before anything starts.
    let mut cmd = Command::new(bin_path("lanyardd"));
    cmd.args(["--idle-exit", "soon"]).envs(daemon.env());
    let out = run(cmd, None, PATIENCE);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("idle_exit = \"soon\" is not a duration"),
        "{out}"
    );
    assert!(!daemon.socket().exists(), "nothing may be bound");

    // A TCP socket.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut act = Activation::start(&daemon, &listen, false, &[], &dir.path().join("tcp.log"));
    let _client = std::net::TcpStream::connect(&listen).expect("connect to the TCP listener");
    let status = act.wait_exit("lanyardd to refuse a TCP socket");
    assert_eq!(status.code(), Some(1), "{}", act.log());
    assert!(
        act.log().contains("fd 3 is a TCP/IP (AF_INET) socket"),
        "{}",
        act.log()
    );

    // A Unix datagram socket.
    let path = dir.path().join("dgram.sock");
    let path_text = path.to_string_lossy().into_owned();
    let mut act = Activation::start(
        &daemon,
        &path_text,
        true,
        &[],
        &dir.path().join("dgram.log"),
    );
    UnixDatagram::unbound()
        .and_then(|s| s.send_to(b"hello", &path))
        .expect("send a datagram");
    let status = act.wait_exit("lanyardd to refuse a datagram socket");
    assert_eq!(status.code(), Some(1), "{}", act.log());
    assert!(act.log().contains("not SOCK_STREAM"), "{}", act.log());
}

#[test]
fn a_card_revoked_while_the_daemon_was_down_never_signs_after_activation() {
    if !tools() || !require_tool("cc") {
        return;
    }
    let lca = lifecycle_ca();
    let mut daemon = Daemon::start();
    let card = enroll_card_at(
        &lca.ca,
        &daemon,
        "Dr Reza Restart",
        "555810000003",
        KeyType::EcP256,
        "135790",
    );
    let card_id = card.issued.card_id.clone();
    daemon.stop();
    let revoked = lca.admin_json(
        "revoke",
        &["--card", &card_id, "--reason", "key-compromise"],
    );
    assert_eq!(revoked["state"], "revoked", "{revoked}");

    let dir = scratch();
    let socket = daemon.socket().to_string_lossy().into_owned();
    let act = Activation::start(&daemon, &socket, false, &[], &dir.path().join("act.log"));
    // The application's C_Initialize starts lanyardd; it signs at once.
    let mut app = Pkcs11App::start(&daemon);
    let data = dir.path().join("order.txt");
    std::fs::write(&data, b"Prescription 7731.\n").expect("write data");
    let sig = dir.path().join("order.sig");
    // Wherever the check-in's answer lands (before C_OpenSession, C_Login,
    // C_FindObjects or C_Sign), the card is refused: the token or its key is gone.
    let (stage, rv) = 'refused: {
        let open = app.call(&format!("open {}", card.slot)).rv;
        if open != CKR_OK {
            break 'refused ("C_OpenSession", open);
        }
        let login = app.login(card.pin);
        if login != CKR_OK {
            break 'refused ("C_Login", login);
        }
        let key = app.call("key");
        if key.rv != CKR_OK || key.number("count") != 1 {
            break 'refused ("C_FindObjects", key.rv);
        }
        ("C_Sign", app.sign(true, &data, &sig))
    };
    eprintln!("the revoked card was refused at {stage}: 0x{rv:x}");
    let removed = [
        CKR_DEVICE_REMOVED,
        CKR_TOKEN_NOT_PRESENT,
        CKR_SESSION_HANDLE_INVALID,
    ];
    match stage {
        "C_Sign" => assert!(removed.contains(&rv), "C_Sign: 0x{rv:x}\n{}", act.log()),
        // The slot is empty or gone (CKR_SLOT_ID_INVALID).
        "C_OpenSession" | "C_Login" => assert!(
            removed.contains(&rv) || rv == CKR_SLOT_ID_INVALID,
            "{stage}: 0x{rv:x}"
        ),
        // The key objects left with the token.
        _ => assert!(rv == CKR_OK || removed.contains(&rv), "{stage}: 0x{rv:x}"),
    }
    assert!(std::fs::metadata(&sig)
        .map(|m| m.len() == 0)
        .unwrap_or(true));
    // The start-up check-in ends with the card revoked (keys destroyed).
    let card_status = || {
        let status = daemon.status_json();
        let listed = status["cards"].as_array().cloned().unwrap_or_default();
        listed
            .iter()
            .find(|c| c["card_id"] == card_id.as_str())
            .map(|c| c["status"].clone())
    };
    wait_for("the start-up check-in to revoke the card", || {
        (card_status() == Some("revoked".into())).then_some(())
    });
    assert!(
        act.log()
            .contains("card revoked; its keys were destroyed on this device"),
        "{}",
        act.log()
    );
}
