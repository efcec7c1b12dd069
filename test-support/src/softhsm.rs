//! A private SoftHSM2 for a test: its own token directory and
//! `SOFTHSM2_CONF` in a given folder, so tests never touch the system's
//! tokens, and commands (softhsm2-util, pkcs11-tool…) run against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run, CmdOutput};

/// SoftHSM2's PKCS#11 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// How long one SoftHSM2 command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A SoftHSM2 configuration of its own.
pub struct SoftHsm {
    conf: PathBuf,
}

impl SoftHsm {
    /// Writes `dir/softhsm2.conf` with tokens in `dir/tokens`.
    pub fn new(dir: &Path) -> SoftHsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("cannot create the SoftHSM2 token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("cannot write softhsm2.conf");
        SoftHsm { conf }
    }

    /// The configuration file (the value of `SOFTHSM2_CONF`).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `program` with `SOFTHSM2_CONF` pointing at this configuration.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SOFTHSM2_CONF", &self.conf);
        cmd
    }

    /// Runs `program ARGS…` against this configuration.
    pub fn run(&self, program: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = self.command(program);
        cmd.args(args);
        run(cmd, None, COMMAND_TIMEOUT)
    }

    /// Initialises a token `label` in the free slot with the SO PIN and user PIN.
    pub fn init_token(&self, label: &str, so_pin: &str, pin: &str) {
        self.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                pin,
            ],
        )
        .assert_success("softhsm2-util --init-token");
    }
}
