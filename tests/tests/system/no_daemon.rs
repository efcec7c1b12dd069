//! Nothing running: the module loads, reports its slots with no token and returns at
//! once; the CLI says the daemon is unreachable (exit 3).

use std::process::Command;
use std::time::Duration;

use lanyard_test_support::{bin_path, module_path, run, Pkcs11Tool};

use crate::world::{scratch, tools_present};

#[test]
fn the_module_without_a_daemon_shows_empty_slots_quickly() {
    if !tools_present() {
        return;
    }
    let dir = scratch();
    let socket = dir.path().join("run").join("agent.sock");
    let tool = Pkcs11Tool::new(
        module_path(),
        vec![("LANYARD_AGENT_SOCK".into(), socket.into())],
    );
    let out = tool.run_with_timeout(&["-L"], Duration::from_secs(30));
    out.assert_success("pkcs11-tool -L with no daemon");
    assert!(
        out.elapsed < Duration::from_secs(5),
        "pkcs11-tool -L took {:?} with no daemon\n{out}",
        out.elapsed
    );
    let slots = lanyard_test_support::pkcs11_tool::parse_slot_list(&out.stdout);
    assert_eq!(
        slots.len(),
        2,
        "the default 2 slots should be listed\n{out}"
    );
    assert!(
        slots.iter().all(|s| s.empty && s.token_label.is_none()),
        "a token without a daemon?\n{out}"
    );

    // Asking for a token's objects fails cleanly instead of hanging.
    let objects = tool.run_with_timeout(&["--slot", "0", "-O"], Duration::from_secs(30));
    assert!(!objects.timed_out && !objects.success(), "{objects}");
    assert!(objects.elapsed < Duration::from_secs(5), "{objects}");
}

#[test]
fn the_cli_without_a_daemon_exits_3() {
    let dir = scratch();
    let socket = dir.path().join("run").join("agent.sock");
    let mut cmd = Command::new(bin_path("lanyard"));
    cmd.arg("status").env("LANYARD_AGENT_SOCK", &socket);
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(out.code, Some(3), "exit code 3 = daemon unreachable\n{out}");
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(
        out.stderr.trim().lines().count() <= 2,
        "expected one clear line\n{out}"
    );
}
