//! The README's demo command, run for real: `scripts/demo.sh --no-wait` (package check
//! and build included) succeeds and cleans up, and in its waiting mode every command it
//! prints works when pasted into another shell; Ctrl-C stops the daemon and the CA.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanyard_test_support::paths::{release_dir, repo_root};
use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::{bin_path, run, CmdOutput};

use crate::world::{scratch, tools_present};

fn demo_script() -> PathBuf {
    repo_root().join("scripts").join("demo.sh")
}

/// The target directory the tests' binaries came from, so the demo uses the same ones.
fn target_dir() -> PathBuf {
    release_dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("release dir has a parent")
}

/// `bash scripts/demo.sh` with the environment a person's shell would have: without
/// the per-package variables `cargo test` sets (ring's build script tracks
/// CARGO_MANIFEST_DIR, so they would make the demo's `cargo build` rebuild
/// everything), and with the test binaries' target directory.
fn demo_command(program: &str, spawn_owned_child: bool) -> Command {
    let mut cmd = if spawn_owned_child {
        owned_command(program)
    } else {
        Command::new(program)
    };
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let from_cargo = name == "CARGO" || (name.starts_with("CARGO_") && name != "CARGO_HOME");
        if from_cargo || name == "LD_LIBRARY_PATH" || name == "RUST_RECURSION_COUNT" {
            cmd.env_remove(&key);
        }
    }
    cmd.arg(demo_script()).env("CARGO_TARGET_DIR", target_dir());
    cmd
}

fn field<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    stdout.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[test]
fn the_demo_runs_for_real_with_no_wait() {
    if !tools_present() || !lanyard_test_support::require_tool("jq") {
        return;
    }
    let mut cmd = demo_command("bash", false);
    // The whole script, install-deps and `cargo build --release` included: after
    // scripts/test.sh built everything both are quick no-ops.
    cmd.arg("--no-wait");
    let out = run(cmd, None, Duration::from_secs(300));
    out.assert_success("scripts/demo.sh --no-wait");
    assert!(out.stdout.contains("demo: signature verified"), "{out}");
    let pin = field(&out.stdout, "PIN")
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()),
        "PIN line: {pin:?}\n{out}"
    );
    let module = field(&out.stdout, "Module").unwrap_or_default();
    assert!(
        module.starts_with('/') && Path::new(module).is_file(),
        "module path {module:?}\n{out}"
    );
    let dir = field(&out.stdout, "Directory").unwrap_or_default();
    assert!(!dir.is_empty(), "no Directory line\n{out}");
    assert!(
        !Path::new(dir).exists(),
        "the demo left {dir} behind\n{out}"
    );
}

#[test]
fn the_demo_prints_commands_that_work_as_printed() {
    if !tools_present() || !lanyard_test_support::require_tool("jq") {
        return;
    }
    let scratch = scratch();
    let dir = scratch.path().join("demo");
    let pin = "13572468";
    let mut cmd = demo_command("bash", true);
    cmd.args(["--no-build", "--pin-stdin", "--dir"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_owned(cmd).expect("start scripts/demo.sh");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{pin}\n").as_bytes())
        .expect("write the PIN");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut printed = Vec::new();
    let mut ready = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("press Ctrl-C");
                printed.push(line);
                if done {
                    ready = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let printed = printed.join("\n");
    if !ready {
        stop_child(&mut child, Duration::from_secs(10));
        panic!(
            "the demo did not reach its waiting state\n--- stdout ---\n{printed}\n--- stderr ---\n{}",
            stderr.join().unwrap_or_default()
        );
    }
    assert!(printed.contains("demo: signature verified"), "{printed}");
    assert!(
        printed.contains(pin),
        "the PIN given on stdin is not printed\n{printed}"
    );

    // Every indented, non-comment line is a command meant to be pasted as is.
    let commands: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("    ") && !l.trim_start().starts_with('#'))
        .map(str::trim)
        .collect();
    assert!(
        commands.len() >= 6,
        "expected the printed commands\n{printed}"
    );
    let mut outputs: Vec<CmdOutput> = Vec::new();
    for command in &commands {
        let mut sh = Command::new("bash");
        sh.args(["-c", command]).current_dir("/");
        let out = run(sh, None, Duration::from_secs(120));
        out.assert_success("a command printed by the demo");
        outputs.push(out);
    }
    let all = outputs
        .iter()
        .map(|o| o.combined())
        .collect::<Vec<_>>()
        .join("\n");
    for expected in [
        "Dr Ada Smith",
        "Verified OK",
        "No errors",
        "Private Key Object",
    ] {
        assert!(
            all.contains(expected),
            "no {expected:?} in the printed commands' output\n{all}"
        );
    }
    assert!(commands.iter().any(|c| c.contains("--sign")), "{printed}");
    assert!(commands.iter().any(|c| c.contains("--test")), "{printed}");

    // Ctrl-C: the script stops the daemon and the CA and keeps --dir.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    // The script gives the daemon and then the CA up to 10 s each to stop
    // before killing them: allow both on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.unwrap_or_else(|| {
        stop_child(&mut child, Duration::from_secs(1));
        panic!("the demo did not stop within 60 s of SIGINT")
    });
    assert!(!status.success(), "interrupted demo exited {status}");
    assert!(
        dir.join("ca").join("root.pem").is_file(),
        "--dir was not kept"
    );
    let mut after = Command::new(bin_path("lanyard"));
    after
        .arg("status")
        .env("LANYARD_AGENT_SOCK", dir.join("run").join("agent.sock"));
    let after = run(after, None, Duration::from_secs(30));
    assert_eq!(
        after.code,
        Some(3),
        "the demo's daemon still answers after Ctrl-C\n{after}"
    );
}
