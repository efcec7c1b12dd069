//! An IT-desk operator for tests: bootstrapped on the CA host with
//! `lanyard-ca admin add-operator --dir` (a new key file and certificate), then
//! driving `lanyard-ca admin …` over gRPC with mutual TLS as a real operator does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ca::Ca;
use crate::paths::bin_path;
use crate::process::{run, CmdOutput};

/// How long one admin command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An operator's certificate and key files.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's name (the certificate's CN).
    pub name: String,
    /// The operator certificate, PEM (followed by the issuing CA's).
    pub cert: PathBuf,
    /// The operator's private key, PKCS#8 PEM.
    pub key: PathBuf,
}

impl Operator {
    /// `lanyard-ca admin add-operator --dir CA_DIR --name NAME --new-key
    /// DIR/KEY --out DIR/CERT --json` on the CA host; panics with the output on failure.
    pub fn bootstrap(ca: &Ca, name: &str, dir: &Path) -> Operator {
        let stem: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let key = dir.join(format!("{stem}.key"));
        let cert = dir.join(format!("{stem}.pem"));
        let mut cmd = Command::new(bin_path("lanyard-ca"));
        cmd.args(["admin", "add-operator", "--dir"])
            .arg(ca.dir())
            .args(["--name", name, "--new-key"])
            .arg(&key)
            .arg("--out")
            .arg(&cert)
            .arg("--json");
        let out = run(cmd, None, COMMAND_TIMEOUT);
        out.assert_success("lanyard-ca admin add-operator --dir");
        assert!(
            key.is_file() && cert.is_file(),
            "add-operator --dir did not write {} and {}\n{out}",
            key.display(),
            cert.display()
        );
        Operator {
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// `lanyard-ca admin SUB --ca URL --ca-cert root.pem --cert CERT --key KEY ARGS…`;
    /// returns the output whatever happened.
    pub fn admin(&self, ca: &Ca, sub: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(bin_path("lanyard-ca"));
        cmd.args(["admin", sub, "--ca", ca.url(), "--ca-cert"])
            .arg(ca.root_pem())
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(args)
            // The operator's environment must not point the CLI at a CA directory.
            .env_remove("LANYARD_CA_DIR");
        run(cmd, None, COMMAND_TIMEOUT)
    }

    /// As [`Operator::admin`] with `--json`; panics with the output unless it
    /// succeeded and printed one JSON document.
    pub fn admin_json(&self, ca: &Ca, sub: &str, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.admin(ca, sub, &all);
        out.assert_success(&format!("lanyard-ca admin {sub}"));
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!("lanyard-ca admin {sub} --json printed invalid JSON ({e})\n{out}")
        })
    }
}
