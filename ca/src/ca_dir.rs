//! The layout of a CA directory (keys, certificates, ca.toml, ca.db) and the
//! atomic, fsynced writes every file in it gets (and the removal of the
//! temporary files a crash left behind).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::CaError;

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and the configuration.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of the CA directory itself.
pub const DIR_MODE: u32 = 0o700;

/// A CA directory and the names of the files in it.
#[derive(Debug, Clone)]
pub struct CaDir {
    root: PathBuf,
}

impl CaDir {
    /// The CA directory at `root` (nothing is checked yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CaDir { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Root CA certificate: what clients trust.
    pub fn root_pem(&self) -> PathBuf {
        self.root.join("root.pem")
    }
    /// Root CA private key; needed only by `init`, can be moved offline after.
    pub fn root_key(&self) -> PathBuf {
        self.root.join("root.key")
    }
    /// Issuing CA certificate.
    pub fn issuing_pem(&self) -> PathBuf {
        self.root.join("issuing.pem")
    }
    /// Issuing CA private key.
    pub fn issuing_key(&self) -> PathBuf {
        self.root.join("issuing.key")
    }
    /// The gRPC server's TLS certificate.
    pub fn server_pem(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    /// The gRPC server's TLS key.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.root.join("ca.toml")
    }
    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("ca.db")
    }

    /// Files whose presence means `init` already ran here.
    pub fn marker_files(&self) -> [PathBuf; 8] {
        [
            self.config(),
            self.database(),
            self.root_pem(),
            self.root_key(),
            self.issuing_pem(),
            self.issuing_key(),
            self.server_pem(),
            self.server_key(),
        ]
    }

    /// Fails with [`CaError::NotInitialised`] unless the files `serve` and
    /// `admin` need are present. root.key is deliberately not among them, and
    /// issuing.key is not needed when ca.toml's issuing_key names an HSM key,
    /// nor ca.db when `database` (ca.toml or LANYARD_CA_DATABASE) names PostgreSQL.
    pub fn require_initialised(&self) -> Result<(), CaError> {
        for f in [
            self.config(),
            self.database(),
            self.root_pem(),
            self.issuing_pem(),
            self.issuing_key(),
            self.server_pem(),
            self.server_key(),
        ] {
            let present = f.exists()
                || (f == self.issuing_key() && self.issuing_key_in_hsm()?)
                || (f == self.database() && self.database_elsewhere()?);
            if !present {
                return Err(CaError::NotInitialised {
                    dir: self.root.clone(),
                    missing: f,
                });
            }
        }
        Ok(())
    }

    /// Whether ca.toml names a PKCS#11 issuing key (so issuing.key is absent).
    fn issuing_key_in_hsm(&self) -> Result<bool, CaError> {
        Ok(crate::config::CaConfig::load(&self.config())?
            .issuing_key
            .is_some())
    }

    /// Whether the configuration names a database server (so ca.db is absent).
    fn database_elsewhere(&self) -> Result<bool, CaError> {
        Ok(crate::config::CaConfig::load(&self.config())?
            .database
            .is_some())
    }

    /// Removes the `.NAME.tmp.PID` files [`write_atomic`] left when a process
    /// died between write and rename (never acknowledged, so nothing is lost);
    /// a file whose PID is still running is another command's write in
    /// progress and stays. Returns the files removed; one that cannot be
    /// removed is logged and kept.
    pub fn remove_leftover_temp_files(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return removed;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = temp_file_pid(&name.to_string_lossy()) else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed an unfinished write");
                    removed.push(path);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove an unfinished write")
                }
            }
        }
        removed
    }

    /// Reads a whole file.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, CaError> {
        fs::read(path).map_err(|e| CaError::io("read", path, e))
    }
}

/// Creates `dir` (and missing parents) and sets it to 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|e| CaError::io("create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| CaError::io("set permissions on", dir, e))
}

/// The PID of a `.NAME.tmp.PID` name [`write_atomic`] gives its temporary files.
fn temp_file_pid(name: &str) -> Option<u32> {
    let (stem, pid) = name.strip_prefix('.')?.rsplit_once(".tmp.")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Writes `bytes` to `path` atomically: a temporary file with `mode` in the same
/// directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| CaError::io("create", &tmp, e))?;
        // The umask may have narrowed the mode; keys must be exactly 0600.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| CaError::io("set permissions on", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| CaError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| CaError::io("sync", &tmp, e))?;
        lanyard_fault::hit("ca.file.before_rename");
        fs::rename(&tmp, path).map_err(|e| CaError::io("rename into", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CaError::io("sync directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.key");
        write_atomic(&p, b"one", KEY_MODE).unwrap();
        write_atomic(&p, b"two", KEY_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn leftover_temp_files_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        write_atomic(&dir.config(), b"kept", PUBLIC_MODE).unwrap();
        // A PID above the kernel's maximum (4194304) never runs.
        let dead = tmp.path().join(".issuing.key.tmp.99999999");
        let live = tmp
            .path()
            .join(format!(".ca.toml.tmp.{}", std::process::id()));
        let others = [".tmp.1", ".x.tmp.", ".x.tmp.12a", "x.tmp.1", ".x.tmp"];
        for f in [&dead, &live] {
            fs::write(f, b"half").unwrap();
        }
        for f in others {
            fs::write(tmp.path().join(f), b"not ours").unwrap();
        }
        assert_eq!(dir.remove_leftover_temp_files(), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.exists(), "a running process's write stays");
        for f in others {
            assert!(tmp.path().join(f).exists(), "{f} is not a temporary file");
        }
        assert_eq!(fs::read(dir.config()).unwrap(), b"kept");
        assert!(dir.remove_leftover_temp_files().is_empty());
    }

    #[test]
    fn not_initialised_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CaDir::new(tmp.path()).require_initialised().unwrap_err();
        assert!(err.to_string().contains("ca.toml"), "{err}");
        assert!(err.to_string().contains("lanyard-ca init"), "{err}");
    }

    /// A CA directory with every marker file but `missing` (and root.key,
    /// which can live offline) is refused naming `name`, and accepted once
    /// `instead` changes its configuration.
    fn needed_unless(
        missing: fn(&CaDir) -> PathBuf,
        name: &str,
        instead: impl FnOnce(&mut crate::config::CaConfig),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        for f in dir.marker_files() {
            if f != missing(&dir) && f != dir.root_key() {
                write_atomic(&f, b"", PUBLIC_MODE).unwrap();
            }
        }
        let mut config = crate::config::CaConfig::new("T");
        config.save(&dir.config()).unwrap();
        let err = dir.require_initialised().unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        instead(&mut config);
        config.save(&dir.config()).unwrap();
        dir.require_initialised().unwrap();
    }

    #[test]
    fn issuing_key_file_is_needed_unless_the_key_is_in_an_hsm() {
        needed_unless(CaDir::issuing_key, "issuing.key", |config| {
            config.issuing_key = Some("pkcs11:token=ca;object=issuing".into());
        });
    }

    #[test]
    fn ca_db_is_needed_unless_the_database_is_postgres() {
        needed_unless(CaDir::database, "ca.db", |config| {
            config.database = Some("postgres://lanyard:pw@127.0.0.1:5432/ca".into());
        });
    }
}
