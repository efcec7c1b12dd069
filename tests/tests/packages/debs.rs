//! Building, checking, installing and purging the two packages: the install is a
//! guard that purges on drop, so a failing test still leaves the machine as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lanyard_test_support::paths::{release_dir, repo_root};
use lanyard_test_support::{run, CmdOutput};

/// The package names, the CA's last (it is purged first).
pub const PACKAGES: [&str; 2] = ["lanyard", "lanyard-ca"];
/// What the CA package creates besides its files.
pub const CA_STATE: &str = "/var/lib/lanyard-ca";
/// The CA package's configuration directory.
pub const CA_CONFIG: &str = "/etc/lanyard-ca";
/// The CA's system user and group.
pub const CA_USER: &str = "lanyard-ca";
/// Where the package enables the user socket for every user.
const USER_SOCKET_LINK: &str = "/etc/systemd/user/sockets.target.wants/lanyardd.socket";
/// Where the package enables the CA's system service.
const CA_SERVICE_LINK: &str = "/etc/systemd/system/multi-user.target.wants/lanyard-ca.service";

const DPKG_TIMEOUT: Duration = Duration::from_secs(300);

/// The two .debs built in a temporary directory.
pub struct Debs {
    _dir: tempfile::TempDir,
    /// lanyard_*.deb then lanyard-ca_*.deb.
    pub files: Vec<PathBuf>,
}

/// `scripts/build-debs.sh --no-build` from the release binaries the tests use.
pub fn build() -> Debs {
    let dir = tempfile::Builder::new()
        .prefix("lanyard-debs-test.")
        .tempdir()
        .expect("cannot create a directory for the .debs");
    let target = release_dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("the release directory has a parent");
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/build-debs.sh"))
        .args(["--no-build", "--out"])
        .arg(dir.path())
        .env("CARGO_TARGET_DIR", target);
    let out = run(cmd, None, DPKG_TIMEOUT);
    out.assert_success("scripts/build-debs.sh");
    let files: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(files.len(), 2, "two .debs expected on stdout\n{out}");
    for (file, name) in files.iter().zip(PACKAGES) {
        let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            file.is_file()
                && file_name.starts_with(&format!("{name}_"))
                && file_name.ends_with(".deb"),
            "{} is not {name}'s .deb\n{out}",
            file.display()
        );
    }
    Debs { _dir: dir, files }
}

/// lintian on both packages at once: no error (warnings are printed).
pub fn lintian(debs: &Debs) {
    let mut cmd = Command::new("lintian");
    cmd.args(["--no-tag-display-limit"]).args(&debs.files);
    let out = run(cmd, None, DPKG_TIMEOUT);
    eprintln!("lintian:\n{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian errors:\n{}\n{out}",
        errors.join("\n")
    );
    assert!(out.success(), "lintian failed\n{out}");
}

fn dpkg(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new("dpkg");
    cmd.args(args);
    run(cmd, None, DPKG_TIMEOUT)
}

/// `dpkg --purge` of both packages (the CA's first); a package that is not
/// installed is not an error for dpkg.
fn purge() -> CmdOutput {
    dpkg(&["--purge", PACKAGES[1], PACKAGES[0]])
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn getent(db: &str, key: &str) -> bool {
    let mut cmd = Command::new("getent");
    cmd.args([db, key]);
    run(cmd, None, Duration::from_secs(30)).success()
}

/// The packages installed with `dpkg -i`; purged again when dropped.
pub struct Installed {
    /// Every path `dpkg -L` listed that did not exist before the install.
    new_paths: BTreeSet<PathBuf>,
    purged: bool,
}

impl Installed {
    /// Purges what a previous run left, installs both .debs, records `dpkg -L`.
    pub fn install(debs: &Debs) -> Installed {
        purge().assert_success("dpkg --purge of a previous run's packages");
        assert!(
            !exists(Path::new(CA_STATE)) && !getent("passwd", CA_USER),
            "{CA_STATE} or the {CA_USER} user is on this machine without the package: \
             remove them by hand, the test will not"
        );
        let listed = |debs: &Debs| -> BTreeSet<PathBuf> {
            debs.files
                .iter()
                .flat_map(|deb| {
                    let mut cmd = Command::new("dpkg-deb");
                    cmd.arg("--contents").arg(deb);
                    let out = run(cmd, None, DPKG_TIMEOUT);
                    out.assert_success("dpkg-deb --contents");
                    contents_paths(&out.stdout)
                })
                .collect()
        };
        let before: BTreeSet<PathBuf> = listed(debs).into_iter().filter(|p| exists(p)).collect();
        let mut installed = Installed {
            new_paths: BTreeSet::new(),
            purged: false,
        };
        let mut cmd = Command::new("dpkg");
        cmd.arg("-i").args(&debs.files);
        run(cmd, None, DPKG_TIMEOUT).assert_success("dpkg -i of both packages");

        for name in PACKAGES {
            let out = dpkg(&["-L", name]);
            out.assert_success("dpkg -L");
            installed.new_paths.extend(
                out.stdout
                    .lines()
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute() && p != Path::new("/.") && !before.contains(p)),
            );
        }
        for path in [
            "/usr/bin/lanyardd",
            "/usr/bin/lanyard",
            "/usr/bin/lanyard-ca",
            "/usr/lib/x86_64-linux-gnu/pkcs11/liblanyard_pkcs11.so",
            "/usr/lib/pcsc/drivers/serial/liblanyard_vpcd.so",
            "/usr/share/p11-kit/modules/lanyard.module",
            "/usr/lib/systemd/user/lanyardd.socket",
            "/usr/lib/systemd/user/lanyardd.service",
            "/usr/lib/systemd/system/lanyard-ca.service",
            "/etc/lanyard-ca/lanyard-ca.conf",
            "/usr/share/doc/lanyard/examples/lanyard-vpcd.conf",
        ] {
            assert!(
                installed.new_paths.contains(Path::new(path)) || before.contains(Path::new(path)),
                "dpkg -L does not list {path}"
            );
            assert!(Path::new(path).is_file(), "{path} is not installed");
        }
        // The reader is an example only: an active one would add a reader to every pcscd.
        let active_reader = std::fs::read_dir("/etc/reader.conf.d")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("lanyard"));
        assert!(!active_reader, "the package activated a pcscd reader");
        assert!(getent("passwd", CA_USER), "postinst made no {CA_USER} user");
        assert!(getent("group", CA_USER), "postinst made no {CA_USER} group");
        assert!(
            exists(Path::new(USER_SOCKET_LINK)),
            "{USER_SOCKET_LINK}: socket not enabled"
        );
        assert!(
            exists(Path::new(CA_SERVICE_LINK)),
            "{CA_SERVICE_LINK}: service not enabled"
        );
        state_dir_is_the_users();
        installed
    }

    /// `dpkg --purge`, then nothing of the packages may remain.
    pub fn purge_and_check(mut self) {
        self.purged = true;
        purge().assert_success("dpkg --purge of both packages");
        let left: Vec<&PathBuf> = self.new_paths.iter().filter(|p| exists(p)).collect();
        assert!(left.is_empty(), "dpkg --purge left {left:?}");
        for path in [CA_STATE, CA_CONFIG, USER_SOCKET_LINK, CA_SERVICE_LINK] {
            assert!(!exists(Path::new(path)), "dpkg --purge left {path}");
        }
        assert!(
            !getent("passwd", CA_USER),
            "dpkg --purge left the {CA_USER} user"
        );
        assert!(
            !getent("group", CA_USER),
            "dpkg --purge left the {CA_USER} group"
        );
        for dir in [
            "/var/lib/systemd/deb-systemd-helper-enabled",
            "/var/lib/systemd/deb-systemd-user-helper-enabled",
            "/var/lib/systemd/deb-systemd-helper-masked",
            "/var/lib/systemd/deb-systemd-user-helper-masked",
        ] {
            let out = Command::new("find")
                .args([dir, "-name", "*lanyard*"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            assert!(
                out.trim().is_empty(),
                "dpkg --purge left systemd state: {out}"
            );
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let out = purge();
            eprintln!("packages test: purged the packages after a failure\n{out}");
        }
    }
}

/// /var/lib/lanyard-ca: the CA user's own, closed to others.
fn state_dir_is_the_users() {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(CA_STATE).expect("postinst made no /var/lib/lanyard-ca");
    assert_eq!(meta.mode() & 0o777, 0o700, "{CA_STATE} mode");
    let mut cmd = Command::new("stat");
    cmd.args(["-c", "%U:%G", CA_STATE]);
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(
        out.stdout.trim(),
        format!("{CA_USER}:{CA_USER}"),
        "{CA_STATE} owner"
    );
}

/// The absolute paths in `dpkg-deb --contents` output (`./usr/bin/x` -> `/usr/bin/x`).
fn contents_paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| p.strip_prefix('.'))
        .map(|p| PathBuf::from(p.trim_end_matches('/')))
        .filter(|p| p.as_os_str().len() > 1)
        .collect()
}
