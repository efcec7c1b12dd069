//! Another user must be refused by the daemon itself (SO_PEERCRED), not only by file
//! permissions: the socket is opened to everyone (directories 0711, socket 0666) and
//! `nobody` connects with the CLI and with pkcs11-tool through the module.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{bin_path, module_path, run, CmdOutput, Daemon, KeyType, Pkcs11Tool};

use crate::world::{enroll_card, tools_present};

const AS_NOBODY: [&str; 5] = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--",
];

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Copies `src` into `dir` (0755) so `nobody` can use it wherever the checkout is.
fn copy_for_nobody(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().expect("a file name"));
    std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    chmod(&dst, 0o755);
    dst
}

fn as_nobody(program: &Path, args: &[&str], socket: &Path) -> CmdOutput {
    let mut cmd = Command::new(AS_NOBODY[0]);
    cmd.args(&AS_NOBODY[1..])
        .arg(program)
        .args(args)
        .env("LANYARD_AGENT_SOCK", socket)
        .env_remove("XDG_RUNTIME_DIR")
        .current_dir("/");
    run(cmd, None, Duration::from_secs(60))
}

#[test]
fn a_peer_of_another_uid_is_refused_by_the_daemon() {
    if !tools_present() {
        return;
    }
    let daemon = Daemon::start();
    let card = enroll_card(
        &daemon,
        "Dr Finn Owner",
        "555000000004",
        KeyType::Rsa2048,
        "135790",
    );

    // Open every path to the socket to everybody: only the daemon can refuse now.
    chmod(daemon.base_dir(), 0o711);
    chmod(daemon.run_dir(), 0o711);
    chmod(daemon.socket(), 0o666);
    let mut ancestor = daemon.base_dir().parent();
    while let Some(dir) = ancestor {
        let mode = std::fs::metadata(dir)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by others ({mode:o})",
            dir.display()
        );
        ancestor = dir.parent();
    }
    let probe = {
        let mut cmd = Command::new(AS_NOBODY[0]);
        cmd.args(&AS_NOBODY[1..])
            .args(["test", "-w"])
            .arg(daemon.socket());
        run(cmd, None, Duration::from_secs(10))
    };
    probe.assert_success("nobody can write to the socket file (so the filesystem does not refuse)");

    let tools = tempfile::Builder::new()
        .prefix("lanyard-nobody.")
        .tempdir()
        .expect("temp dir");
    chmod(tools.path(), 0o755);
    let lanyard = copy_for_nobody(&bin_path("lanyard"), tools.path());
    let module = copy_for_nobody(&module_path(), tools.path());

    let status = as_nobody(&lanyard, &["status"], daemon.socket());
    status.assert_failure("lanyard status as nobody");
    let text = status.combined().to_lowercase();
    assert!(
        text.contains("permission") || text.contains("denied") || text.contains("refused"),
        "{status}"
    );
    assert!(
        !status.combined().contains(card.holder),
        "nobody saw the owner's card\n{status}"
    );

    // pkcs11-tool as nobody, through the module, pointed at the owner's socket.
    let env = vec![(
        "LANYARD_AGENT_SOCK".into(),
        daemon.socket().as_os_str().to_owned(),
    )];
    let p11 = Pkcs11Tool::new(module, env).wrapped(&AS_NOBODY);
    let listing = p11.run_with_timeout(&["-L"], Duration::from_secs(30));
    assert!(
        !listing.timed_out,
        "pkcs11-tool -L as nobody hung\n{listing}"
    );
    assert!(
        !listing.combined().contains(card.holder),
        "nobody sees the owner's token\n{listing}"
    );
    let slots = lanyard_test_support::pkcs11_tool::parse_slot_list(&listing.stdout);
    assert!(
        slots.iter().all(|s| s.token_label.is_none()),
        "a token is present for nobody\n{listing}"
    );

    // The daemon noticed, and it still serves its owner.
    let log = daemon.log().to_lowercase();
    assert!(
        log.contains("65534") && log.contains("refused"),
        "the daemon's log does not record refusing uid 65534:\n{}",
        daemon.log()
    );
    daemon
        .lanyard(&["status"], None)
        .assert_success("owner's lanyard status afterwards");
}
