//! How a clinician types a PIN: `lanyard enroll` on a terminal asks twice without
//! echo (driven here through a pseudo-terminal made by `script`), two different
//! entries enrol nothing, and with no terminal and no `--pin-stdin` it says so.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanyard_test_support::process::{spawn_owned, stop_child};
use lanyard_test_support::{bin_path, require_tool, run, Daemon};

use crate::world::{shared_ca, status_cards, tools_present, ROLE};

/// Quotes `arg` for `sh -c`.
fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Runs `lanyard ARGS…` on a pseudo-terminal, answering each prompt in turn;
/// returns (exit code, everything the terminal showed).
fn on_a_terminal(
    daemon: &Daemon,
    args: &[&str],
    answers: &[(&str, &str)],
) -> (Option<i32>, String) {
    let lanyard = bin_path("lanyard");
    let mut line = sh_quote(lanyard.to_str().expect("utf-8"));
    for arg in args {
        line.push(' ');
        line.push_str(&sh_quote(arg));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"])
        .envs(daemon.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_owned(cmd).expect("start script");
    let screen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("piped");
    let sink = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let mut stdin = child.stdin.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = |s: &Arc<Mutex<String>>| s.lock().map(|t| t.clone()).unwrap_or_default();
    let mut seen = 0;
    for (prompt, answer) in answers {
        loop {
            let text = shown(&screen);
            if let Some(at) = text[seen..].find(prompt) {
                seen += at + prompt.len();
                break;
            }
            if Instant::now() > deadline {
                stop_child(&mut child, Duration::from_secs(1));
                panic!("no prompt {prompt:?} on the terminal:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin
            .write_all(format!("{answer}\r").as_bytes())
            .expect("type on the terminal");
    }
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            stop_child(&mut child, Duration::from_secs(1));
            panic!("lanyard did not finish:\n{}", shown(&screen));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    (status, shown(&screen))
}

fn present() -> bool {
    tools_present() && require_tool("script") && require_tool("setsid")
}

#[test]
fn enroll_on_a_terminal_asks_for_the_pin_twice_without_echo() {
    if !present() {
        return;
    }
    let ca = shared_ca();
    let daemon = Daemon::start();
    let root = ca.root_pem();
    let args = |code: &str| -> Vec<String> {
        [
            "enroll",
            "--ca",
            ca.url(),
            "--ca-cert",
            root.to_str().expect("utf-8"),
            "--code",
            code,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // Two different PINs: nothing is enrolled and the code is not spent.
    let issued = ca.issue_card("Dr Pat Typed", "555000000014", ROLE);
    let a = args(&issued.code);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, screen) = on_a_terminal(
        &daemon,
        &a,
        &[("(digits): ", "13572468"), ("again: ", "13572460")],
    );
    assert_eq!(code, Some(4), "mismatched PINs: exit 4\n{screen}");
    assert!(screen.contains("do not match"), "{screen}");
    assert!(
        status_cards(&daemon).is_empty(),
        "a card was enrolled from mismatched PINs"
    );

    let (code, screen) = on_a_terminal(
        &daemon,
        &a,
        &[("(digits): ", "13572468"), ("again: ", "13572468")],
    );
    assert_eq!(code, Some(0), "enrolment on a terminal\n{screen}");
    assert!(
        !screen.contains("13572468"),
        "the PIN was echoed on the terminal:\n{screen}"
    );
    assert_eq!(status_cards(&daemon).len(), 1);
}

#[test]
fn without_a_terminal_or_pin_stdin_enroll_says_what_to_do() {
    if !present() {
        return;
    }
    let ca = shared_ca();
    let daemon = Daemon::start();
    let issued = ca.issue_card("Dr Quinn NoTty", "555000000015", ROLE);
    // setsid: no controlling terminal, as in cron or CI.
    let mut cmd = Command::new("setsid");
    cmd.arg("-w")
        .arg(bin_path("lanyard"))
        .args(["enroll", "--ca", ca.url(), "--ca-cert"])
        .arg(ca.root_pem())
        .args(["--code", &issued.code])
        .envs(daemon.env());
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(
        out.code,
        Some(2),
        "no terminal and no --pin-stdin is a usage error\n{out}"
    );
    assert!(
        out.stderr.contains("--pin-stdin"),
        "the message does not point to --pin-stdin\n{out}"
    );
    assert!(status_cards(&daemon).is_empty());
}
