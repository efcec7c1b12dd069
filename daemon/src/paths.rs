//! Where the daemon keeps things: the socket directory (checked for owner and
//! mode), the card store and the config file, from the XDG rules.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The real uid of this process.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The agent socket: `override_path` (from `--socket`), else the shared rule.
pub fn socket_path(override_path: Option<PathBuf>) -> PathBuf {
    override_path.unwrap_or_else(|| lanyard_proto::socket_path::agent_socket_path(current_uid()))
}

fn xdg_dir(var: &str, home_fallback: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
        if p.is_absolute() {
            return Ok(p);
        }
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home.join(home_fallback)),
        _ => Err(Error::Internal(format!(
            "neither {var} nor HOME is set to an absolute path"
        ))),
    }
}

/// The card store: `$XDG_DATA_HOME/lanyard`, else `~/.local/share/lanyard`.
pub fn store_dir() -> Result<PathBuf> {
    Ok(xdg_dir("XDG_DATA_HOME", ".local/share")?.join("lanyard"))
}

/// The config file: `$XDG_CONFIG_HOME/lanyard/lanyardd.toml`, else `~/.config/lanyard/lanyardd.toml`.
pub fn config_file() -> Result<PathBuf> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?
        .join("lanyard")
        .join("lanyardd.toml"))
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create directory {}", dir.display()), e))
}

/// Creates the socket directory 0700 if missing, then refuses it unless it is
/// owned by `uid` and closed to group and others.
pub fn prepare_socket_dir(dir: &Path, uid: u32) -> Result<()> {
    create_private_dir(dir)?;
    check_private_dir(dir, uid)
}

/// Refuses a directory not owned by `uid` or open to group/others.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("cannot inspect {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::InsecureDirectory(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != uid {
        return Err(Error::InsecureDirectory(format!(
            "{} is owned by uid {}, not by you (uid {uid}); refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureDirectory(format!(
            "{} has mode {mode:04o}, open to other users; run `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0700_and_accepts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare_socket_dir(&dir, current_uid()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn refuses_open_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_socket_dir(&dir, current_uid()).unwrap_err();
        assert!(err.to_string().contains("0755"), "{err}");
    }

    #[test]
    fn refuses_other_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let err = check_private_dir(tmp.path(), current_uid() + 1).unwrap_err();
        assert!(matches!(err, Error::InsecureDirectory(_)));
    }
}
