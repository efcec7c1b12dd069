//! A throwaway OpenSSH server on 127.0.0.1 for the OpenSSH tests: its own config,
//! host key and authorized_keys in a 0700 directory under `$HOME/.cache` (not
//! /tmp, whose mode StrictModes refuses), public-key login only, logging to a
//! file the tests read; and the `ssh` client command that logs in to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::tools::find_on_path;
use lanyard_test_support::{module_path, run, CmdOutput};

/// A running `sshd -D -e` and its files.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
}

/// The directory the server's files live in: under the user's home, every
/// ancestor closed to group and others (as StrictModes checks).
fn private_base() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .expect("HOME must be set: the sshd test keeps its files under $HOME/.cache");
    let base = home.join(".cache").join("lanyard-system-tests");
    std::fs::create_dir_all(&base).expect("create $HOME/.cache/lanyard-system-tests");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
        .expect("chmod 0700 the sshd test directory");
    for dir in base.ancestors().skip(1) {
        let mode = std::fs::metadata(dir)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert!(
            mode & 0o022 == 0,
            "{} is writable by group or others; sshd's StrictModes would refuse the \
             authorized_keys below it (set HOME to a private directory)",
            dir.display()
        );
    }
    base
}

/// The login name of this process's user.
pub fn user_name() -> String {
    let mut id = Command::new("id");
    id.arg("-un");
    let out = run(id, None, Duration::from_secs(10));
    out.assert_success("id -un");
    out.stdout.trim().to_string()
}

impl Sshd {
    /// Starts `sshd` accepting exactly the public keys in `authorized_keys`
    /// (OpenSSH format, one per line).
    pub fn start(authorized_keys: &str) -> Sshd {
        let sshd = find_on_path("sshd").expect("sshd (openssh-server) is not installed");
        // sshd as root needs its privilege-separation directory.
        if crate::world::running_as_root() {
            std::fs::create_dir_all("/run/sshd").expect("mkdir -p /run/sshd");
        }
        let dir = tempfile::Builder::new()
            .prefix("sshd.")
            .tempdir_in(private_base())
            .expect("create the sshd directory");
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("host_key"));
        run(keygen, None, Duration::from_secs(30)).assert_success("ssh-keygen (host key)");
        let keys = d.join("authorized_keys");
        std::fs::write(&keys, authorized_keys).expect("write authorized_keys");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600))
            .expect("chmod authorized_keys");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n\
                 UsePAM no\nAuthorizedKeysFile {keys}\nStrictModes yes\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\n\
                 LogLevel VERBOSE\n",
                host_key = d.join("host_key").display(),
                keys = keys.display(),
            ),
        )
        .expect("write sshd_config");
        let log = d.join("sshd.log");
        let log_file = std::fs::File::create(&log).expect("create sshd.log");
        let mut cmd = owned_command(&sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup sshd.log"))
            .stderr(log_file);
        let child = spawn_owned(cmd).expect("start sshd");
        let mut server = Sshd {
            child,
            port,
            dir,
            log,
        };
        server.wait_listening();
        // The client knows this host key and no other.
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("read host_key.pub");
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .expect("write known_hosts");
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.log().contains("Server listening on") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not start listening:\n{}", self.log());
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A directory for the test's own files next to the server's.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ssh -I MODULE -p PORT USER@127.0.0.1 REMOTE_COMMAND` with `extra` options,
    /// the PIN given by an SSH_ASKPASS program (forced, no terminal) that records
    /// each prompt in `prompts`; no user ssh config, agent or password.
    pub fn ssh(
        &self,
        pin: &str,
        prompts: &Path,
        extra: &[&str],
        remote_command: &str,
        env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    ) -> CmdOutput {
        let askpass = self.dir().join(format!("askpass-{pin}"));
        std::fs::write(
            &askpass,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\nprintf '%s\\n' '{pin}'\n",
                prompts.display()
            ),
        )
        .expect("write the askpass program");
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
            .expect("chmod askpass");
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p"])
            .arg(self.port.to_string())
            .arg("-I")
            .arg(module_path())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir().join("known_hosts").display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=no",
                "-o",
                "IdentityAgent=none",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "KbdInteractiveAuthentication=no",
            ])
            .args(extra)
            .arg(format!("{}@127.0.0.1", user_name()))
            .arg(remote_command)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("SSH_AUTH_SOCK")
            .envs(env);
        run(cmd, None, Duration::from_secs(90))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}
