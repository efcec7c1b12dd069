//! A real `lanyard-ca` for tests: `init` in a temporary directory, `serve` on
//! 127.0.0.1:0 (the port is read from its "listening on https://…" line), and
//! `admin issue-card --json` for enrolment codes. Its output is kept for log checks.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::paths::bin_path;
use crate::process::{owned_command, run, spawn_owned, stop_child, CmdOutput};

/// How long `serve` may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot `lanyard-ca` command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A card issued by the CA: what `issue-card --json` printed.
#[derive(Debug, Clone)]
pub struct IssuedCard {
    /// The one-time enrolment code (a secret: tests grep logs for it).
    pub code: String,
    /// The card id.
    pub card_id: String,
    /// When the code expires, as printed.
    pub expires_at: String,
    /// The whole JSON document.
    pub json: serde_json::Value,
}

/// A running CA with its own directory.
pub struct Ca {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    dir: PathBuf,
    url: String,
    envs: Vec<(String, String)>,
    /// Extra `serve` arguments (e.g. `--crl-listen 127.0.0.1:0`).
    serve_args: Vec<String>,
    /// `http://IP:PORT/issuing.crl` when `serve` announced a CRL listener.
    crl_url: Option<String>,
    child: Option<Child>,
    /// Where `serve` writes stdout and stderr (see `kept_logs`).
    stdout_log: PathBuf,
    stderr_log: PathBuf,
}

impl Ca {
    /// `lanyard-ca init` in a new temporary directory, then `serve` on 127.0.0.1:0.
    pub fn start() -> Ca {
        Ca::start_with_env(&[])
    }

    /// As [`Ca::start`], with extra environment for `serve` (e.g.
    /// `LANYARD_CA_RATE_LIMIT_WINDOW_SECS`).
    pub fn start_with_env(envs: &[(&str, &str)]) -> Ca {
        Ca::start_with(envs, &[])
    }

    /// As [`Ca::start_with_env`], with extra `serve` arguments; with
    /// `--crl-listen ADDR` the announced CRL URL is kept (see [`Ca::crl_url`]).
    pub fn start_with(envs: &[(&str, &str)], serve_args: &[&str]) -> Ca {
        let tmp = tempfile::Builder::new()
            .prefix("lanyard-ca-test.")
            .tempdir()
            .expect("cannot create a temporary directory for the CA");
        let base = tmp.path().to_path_buf();
        let dir = base.join("ca");
        let init = Ca::command_in(&dir, &["init"]);
        init.assert_success("lanyard-ca init");
        assert!(
            dir.join("root.pem").is_file() && dir.join("issuing.pem").is_file(),
            "lanyard-ca init did not write root.pem and issuing.pem in {}\n{init}",
            dir.display()
        );
        let mut ca = Ca {
            _tmp: tmp,
            dir,
            url: String::new(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
            crl_url: None,
            child: None,
            stdout_log: crate::kept_logs::log_path(&base, "ca-serve.stdout"),
            stderr_log: crate::kept_logs::log_path(&base, "ca-serve.stderr"),
            base,
        };
        ca.serve();
        ca
    }

    fn serve(&mut self) {
        let log_path = self.log_path();
        let mut cmd = owned_command(bin_path("lanyard-ca"));
        cmd.arg("serve")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.serve_args)
            .env("RUST_LOG", "debug")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(open_append(&self.stderr_log));
        let mut child = spawn_owned(cmd).expect("cannot start lanyard-ca serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let (crl_tx, crl_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut log = open_append(&log_path);
            let mut tx = Some(tx);
            let mut crl_tx = Some(crl_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
                if let Some(url) = line.trim().strip_prefix("crl on ") {
                    if let Some(tx) = crl_tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => self.url = url,
            Err(_) => {
                let status = stop_child(&mut child, Duration::from_secs(2));
                panic!(
                    "lanyard-ca serve did not print `listening on https://…` within {START_TIMEOUT:?} \
                     (exit: {status:?})\n--- its output ---\n{}",
                    self.logs()
                );
            }
        }
        assert!(
            self.url.starts_with("https://127.0.0.1:"),
            "unexpected listening line: {}",
            self.url
        );
        if self.serve_args.iter().any(|a| a == "--crl-listen") {
            match crl_rx.recv_timeout(START_TIMEOUT) {
                Ok(url) => self.crl_url = Some(url),
                Err(_) => {
                    let status = stop_child(&mut child, Duration::from_secs(2));
                    panic!(
                        "lanyard-ca serve --crl-listen did not print `crl on http://…` \
                         (exit: {status:?})\n--- its output ---\n{}",
                        self.logs()
                    );
                }
            }
        }
        self.child = Some(child);
    }

    fn command_in(dir: &Path, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(bin_path("lanyard-ca"));
        let (sub, rest) = args.split_first().expect("a subcommand");
        cmd.arg(sub).arg("--dir").arg(dir).args(rest);
        run(cmd, None, COMMAND_TIMEOUT)
    }

    /// Runs `lanyard-ca SUB --dir DIR ARGS…` (e.g. `["admin", …]` is not
    /// supported here: use [`Ca::admin`]).
    pub fn command(&self, args: &[&str]) -> CmdOutput {
        Ca::command_in(&self.dir, args)
    }

    /// Runs `lanyard-ca admin SUB --dir DIR ARGS…`.
    pub fn admin(&self, sub: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(bin_path("lanyard-ca"));
        cmd.args(["admin", sub])
            .arg("--dir")
            .arg(&self.dir)
            .args(args);
        run(cmd, None, COMMAND_TIMEOUT)
    }

    /// `admin issue-card --json`; panics with the output if it fails.
    pub fn issue_card(&self, name: &str, user_id: &str, role: &str) -> IssuedCard {
        let out = self.admin(
            "issue-card",
            &[
                "--name",
                name,
                "--user-id",
                user_id,
                "--role",
                role,
                "--json",
            ],
        );
        out.assert_success("lanyard-ca admin issue-card");
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("issue-card --json printed invalid JSON ({e})\n{out}"));
        let field = |k: &str| match &json[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => panic!("issue-card --json has no `{k}`\n{out}"),
            other => other.to_string(),
        };
        crate::kept_logs::record_secret(&field("code"));
        IssuedCard {
            code: field("code"),
            card_id: field("card_id"),
            expires_at: field("expires_at"),
            json,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://IP:PORT/issuing.crl` as `serve --crl-listen` announced it, if it was asked to.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// The CA directory (`root.pem`, `issuing.pem`, database…).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The temporary directory holding everything of this CA.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// `DIR/root.pem`, what clients trust.
    pub fn root_pem(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// `DIR/issuing.pem`.
    pub fn issuing_pem(&self) -> PathBuf {
        self.dir.join("issuing.pem")
    }

    fn log_path(&self) -> PathBuf {
        self.stdout_log.clone()
    }

    /// Everything `serve` printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "{}\n{}",
            read(self.log_path()),
            read(self.stderr_log.clone())
        )
    }

    /// Stops `serve` (the directory stays, so it can be served again).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Serves the same directory again on a new port.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn open_append(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", path.display()))
}
