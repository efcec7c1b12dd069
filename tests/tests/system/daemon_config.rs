//! `lanyardd` as configured and started by a user: `lanyardd.toml` keys take effect
//! (slot count seen by the module, PIN length policy), a bad config or a socket
//! directory open to others stops the daemon at once with a message that says why.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{bin_path, run, CmdOutput, Daemon, KeyType};

use crate::world::{scratch, shared_ca, status_cards, tools_present, ROLE};

/// Runs `lanyardd` in `dir` with its own XDG directories and socket; it is expected
/// to exit by itself.
fn lanyardd_expecting_exit(
    dir: &std::path::Path,
    socket_dir_mode: u32,
    config: Option<&str>,
) -> CmdOutput {
    let run_dir = dir.join("run");
    std::fs::create_dir(&run_dir).expect("mkdir run");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(socket_dir_mode))
        .expect("chmod");
    let config_dir = dir.join("config").join("lanyard");
    std::fs::create_dir_all(&config_dir).expect("mkdir config");
    if let Some(text) = config {
        std::fs::write(config_dir.join("lanyardd.toml"), text).expect("write config");
    }
    let mut cmd = Command::new(bin_path("lanyardd"));
    cmd.env("LANYARD_AGENT_SOCK", run_dir.join("agent.sock"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    run(cmd, None, Duration::from_secs(20))
}

#[test]
fn config_sets_the_slot_count_and_the_pin_length() {
    if !tools_present() {
        return;
    }
    let daemon = Daemon::builder()
        .config("slots = 3\npin_min_len = 7\n")
        .start();
    let slots = daemon.pkcs11_tool().slots();
    assert_eq!(slots.len(), 3, "slots = 3 in lanyardd.toml: {slots:?}");

    let ca = shared_ca();
    let issued = ca.issue_card("Dr Ola Config", "555000000013", ROLE);
    let short = daemon.try_enroll(
        ca.url(),
        &ca.root_pem(),
        &issued.code,
        KeyType::EcP256,
        "123456",
    );
    assert_eq!(
        short.code,
        Some(4),
        "a 6-digit PIN with pin_min_len = 7: exit 4 (PIN problem)\n{short}"
    );
    assert!(
        status_cards(&daemon).is_empty(),
        "a card was enrolled with a too-short PIN"
    );
    daemon
        .try_enroll(
            ca.url(),
            &ca.root_pem(),
            &issued.code,
            KeyType::EcP256,
            "1234567",
        )
        .assert_success("enrolment with a 7-digit PIN (the code was not spent by the refused PIN)");
    assert_eq!(status_cards(&daemon).len(), 1);
}

#[test]
fn a_malformed_config_stops_the_daemon_with_a_message() {
    let dir = scratch();
    let out = lanyardd_expecting_exit(dir.path(), 0o700, Some("slots = \"two\"\n"));
    out.assert_failure("lanyardd with a malformed lanyardd.toml");
    assert!(
        out.stderr.contains("lanyardd.toml"),
        "the message does not name the file\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn a_socket_directory_open_to_others_is_refused() {
    let dir = scratch();
    let out = lanyardd_expecting_exit(dir.path(), 0o755, None);
    out.assert_failure("lanyardd with its socket directory 0755");
    assert!(
        out.stderr.contains("0755"),
        "the message does not show the mode\n{out}"
    );
    assert!(
        out.stderr.contains("chmod 700"),
        "the message does not say what to do\n{out}"
    );
    assert!(
        !dir.path().join("run").join("agent.sock").exists(),
        "a socket was created anyway"
    );
}
