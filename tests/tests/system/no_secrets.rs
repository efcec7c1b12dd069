//! The assessor's "secrets nowhere" check over a whole card life with
//! RUST_LOG=trace everywhere: enrolment (a wrong code first), wrong and right
//! unlocks, a signature, wrong and right PIN changes, a PIN reset (a wrong
//! code first), then a PIN change with the CLI caught after sending (daemon
//! stopped) and dumped with gcore. None of the PINs or codes may appear in the
//! daemon's, the CA's or the CLI's output, in any /proc/PID/cmdline or environ
//! of our processes while they ran, or in the CLI's core. (lanyardd itself is
//! not dumpable: hardening.rs.)

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use lanyard_test_support::{bin_path, require_tool, run, Ca, CmdOutput, Daemon, Operator};

use crate::proc_watch::{cmdline_and_environ, wait_blocked_reading, ProcWatch};
use crate::world::{scratch, status_cards, tools_present, ROLE};

// Distinctive: eight digits that no date, port, serial or size here is.
const PIN: &str = "73194628";
const WRONG_PIN: &str = "59036184";
const NEW_PIN: &str = "64820371";
const RESET_PIN: &str = "38472916";
const LAST_PIN: &str = "26093857";

/// The same code with its first letter or digit changed: well-formed, wrong.
fn wrong_code(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(i) = chars.iter().position(char::is_ascii_alphanumeric) {
        chars[i] = if chars[i] == '7' { '8' } else { '7' };
    }
    chars.into_iter().collect()
}

/// Runs the CLI against `daemon` with RUST_LOG=trace and keeps what it printed.
struct Cli<'a> {
    daemon: &'a Daemon,
    printed: String,
}

impl Cli<'_> {
    fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env = self.daemon.env();
        env.push(("RUST_LOG".into(), "trace".into()));
        env
    }

    fn run(&mut self, args: &[&str], stdin: &str) -> CmdOutput {
        let mut cmd = Command::new(bin_path("lanyard"));
        cmd.args(args).envs(self.env());
        let out = run(cmd, Some(stdin.as_bytes()), Duration::from_secs(180));
        self.printed.push_str(&format!("{out}\n"));
        out
    }
}

fn assert_nowhere(secrets: &[(&str, String)], places: &[(String, String)]) {
    for (what, secret) in secrets {
        let secret = secret.to_lowercase();
        for (place, text) in places {
            let text = text.to_lowercase();
            if let Some(at) = text.find(&secret) {
                let from = at.saturating_sub(300);
                let to = (at + secret.len() + 300).min(text.len());
                let near = String::from_utf8_lossy(&text.as_bytes()[from..to]);
                panic!("the {what} appears in {place}: …{near}…");
            }
        }
    }
}

#[test]
fn no_pin_or_code_in_logs_ps_environment_or_a_core_of_the_cli() {
    if !tools_present() || !require_tool("gcore") {
        return;
    }
    let watch = ProcWatch::start();
    let ca = Ca::start_with_env(&[("RUST_LOG", "trace")]);
    let operators = scratch();
    let operator = Operator::bootstrap(&ca, "Ida Desk", operators.path());
    // Protected-path mode, so `lanyard unlock` takes a PIN too.
    let mut daemon = Daemon::builder()
        .config("protected_path = true\n")
        .env("RUST_LOG", "trace")
        .start();
    let mut cli = Cli {
        daemon: &daemon,
        printed: String::new(),
    };
    let root = ca.root_pem().to_string_lossy().into_owned();
    let enroll = |code: &str| {
        (
            [
                "enroll",
                "--ca",
                ca.url(),
                "--ca-cert",
                &root,
                "--code",
                "-",
                "--key",
                "ec-p256",
                "--pin-stdin",
            ],
            format!("{code}\n{PIN}\n"),
        )
    };

    // Enrolment: a wrong code is refused, the right one enrols.
    let issued = ca.issue_card("Dr Vera Secret", "555000000081", ROLE);
    let bad_code = wrong_code(&issued.code);
    let (args, stdin) = enroll(&bad_code);
    let out = cli.run(&args, &stdin);
    assert!(!out.success(), "a wrong enrolment code was accepted\n{out}");
    let (args, stdin) = enroll(&issued.code);
    cli.run(&args, &stdin).assert_success("lanyard enroll");
    assert_eq!(status_cards(&daemon).len(), 1);

    // Unlock: wrong PIN (an error message), right PIN, a signature, lock.
    let out = cli.run(&["unlock", "--pin-stdin"], &format!("{WRONG_PIN}\n"));
    assert_eq!(out.code, Some(4), "{out}");
    cli.run(&["unlock", "--pin-stdin"], &format!("{PIN}\n"))
        .assert_success("lanyard unlock");
    let tool = daemon.pkcs11_tool();
    let slot = tool
        .slots()
        .into_iter()
        .find(|s| s.token_label.is_some())
        .expect("a token")
        .id
        .to_string();
    let dir = scratch();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, b"a note signed while unlocked").expect("write");
    let data = data.to_string_lossy().into_owned();
    let sig = dir.path().join("sig.bin").to_string_lossy().into_owned();
    tool.run(&[
        "--slot",
        &slot,
        "--sign",
        "-m",
        "ECDSA-SHA256",
        "-i",
        &data,
        "-o",
        &sig,
    ])
    .assert_success("a signature with the unlocked card");
    cli.run(&["lock"], "").assert_success("lanyard lock");

    // PIN change: a wrong current PIN is refused, then the change.
    let out = cli.run(
        &["change-pin", "--pin-stdin"],
        &format!("{WRONG_PIN}\n{NEW_PIN}\n"),
    );
    assert_eq!(out.code, Some(4), "{out}");
    cli.run(
        &["change-pin", "--pin-stdin"],
        &format!("{PIN}\n{NEW_PIN}\n"),
    )
    .assert_success("lanyard change-pin");

    // PIN reset: the IT desk's code; a wrong one first.
    let card_id = issued.card_id.clone();
    let released = operator.admin_json(&ca, "reset-pin", &["--card", &card_id]);
    let reset_code = released["code"]
        .as_str()
        .unwrap_or_else(|| panic!("admin reset-pin --json has no code: {released}"))
        .to_string();
    let bad_reset = wrong_code(&reset_code);
    let reset = ["reset-pin", "--code", "-", "--pin-stdin"];
    let out = cli.run(&reset, &format!("{bad_reset}\n{RESET_PIN}\n"));
    assert!(!out.success(), "a wrong reset code was accepted\n{out}");
    cli.run(&reset, &format!("{reset_code}\n{RESET_PIN}\n"))
        .assert_success("lanyard reset-pin");

    // A PIN change caught after sending: the CLI waits on its stdin, the
    // daemon is stopped, the PINs go in, the CLI sends and waits for an
    // answer that cannot come: its core is taken then.
    let daemon_pid = daemon.pid().expect("lanyardd runs");
    let mut child = Command::new(bin_path("lanyard"))
        .args(["change-pin", "--pin-stdin"])
        .envs(cli.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lanyard change-pin");
    let pid = child.id();
    let patience = Duration::from_secs(60);
    wait_blocked_reading(pid, "pipe", "the PINs on stdin", patience);
    let signal = |sig: &str| {
        let mut kill = Command::new("kill");
        kill.args([sig, &daemon_pid.to_string()]);
        run(kill, None, Duration::from_secs(10)).assert_success("kill");
    };
    signal("-STOP");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("{RESET_PIN}\n{LAST_PIN}\n").as_bytes())
        .expect("write the PINs");
    drop(stdin);
    wait_blocked_reading(pid, "socket", "lanyardd's answer", patience);
    let (cli_cmdline, cli_environ) = cmdline_and_environ(pid).expect("the CLI is alive");
    let core = dir.path().join("lanyard-core");
    let mut gcore = Command::new("gcore");
    gcore.arg("-o").arg(&core).arg(pid.to_string());
    let dumped = run(gcore, None, Duration::from_secs(120));
    signal("-CONT");
    dumped.assert_success("gcore of the CLI");
    let out = child.wait_with_output().expect("lanyard change-pin ends");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "change-pin after the core: {printed}");
    cli.printed.push_str(&printed);
    let core = std::fs::read(core.with_extension(pid.to_string())).expect("the core gcore wrote");
    assert!(core.len() > 100_000, "a core of {} bytes", core.len());
    // The core is bytes: look for the ASCII of each secret. The socket path
    // the CLI holds is there, so the search does find what the CLI keeps.
    let core_text = String::from_utf8_lossy(&core).into_owned();
    let socket = daemon.socket().to_string_lossy().into_owned();
    assert!(
        core_text.contains(&socket),
        "the core has not even {socket}"
    );

    let (daemon_cmdline, daemon_environ) =
        cmdline_and_environ(daemon_pid).expect("lanyardd still runs");
    let printed = std::mem::take(&mut cli.printed);
    daemon.stop();
    let seen = watch.finish();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("lanyard ") && s.contains("change-pin")),
        "the sampler never saw a CLI, so it proves nothing: {seen:?}"
    );
    let daemon_log = daemon.log();
    let ca_log = ca.logs();
    for (who, log) in [("lanyardd", &daemon_log), ("lanyard-ca", &ca_log)] {
        assert!(
            log.contains("DEBUG") || log.contains("TRACE"),
            "{who} logged nothing below INFO, so this test would prove little:\n{log}"
        );
    }

    let compact = |c: &str| {
        c.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    };
    let mut secrets = vec![
        ("PIN", PIN.to_string()),
        ("wrong PIN", WRONG_PIN.to_string()),
        ("new PIN", NEW_PIN.to_string()),
        ("PIN set by the reset", RESET_PIN.to_string()),
        ("last PIN", LAST_PIN.to_string()),
    ];
    for (what, code) in [
        ("enrolment code", &issued.code),
        ("wrong enrolment code", &bad_code),
        ("reset code", &reset_code),
        ("wrong reset code", &bad_reset),
    ] {
        secrets.push((what, code.clone()));
        secrets.push((what, compact(code)));
    }
    let mut places = vec![
        ("lanyardd's log".to_string(), daemon_log),
        ("lanyard-ca's log".to_string(), ca_log),
        ("the CLI's output".to_string(), printed),
        ("lanyardd's cmdline".to_string(), daemon_cmdline),
        ("lanyardd's environment".to_string(), daemon_environ),
        ("the CLI's cmdline".to_string(), cli_cmdline),
        ("the CLI's environment".to_string(), cli_environ),
        ("the CLI's core".to_string(), core_text),
    ];
    places.extend(seen.into_iter().map(|s| ("/proc".to_string(), s)));
    assert_nowhere(&secrets, &places);
}
