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

/// Refuses a card-store path (directory or file; a symlink is followed) not
/// owned by `uid` or open to group/others, naming the `chmod` that fixes it.
pub fn check_private_store_path(path: &Path, uid: u32) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot inspect {}", path.display()), e))?;
    let (kind, fix) = if meta.is_dir() {
        ("directory", "700")
    } else {
        ("file", "600")
    };
    if meta.uid() != uid {
        return Err(Error::InsecureDirectory(format!(
            "card store {kind} {} is owned by uid {}, not by you (uid {uid}); refusing to use it",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureDirectory(format!(
            "card store {kind} {} has mode {mode:04o}, open to other users; refusing to start: \
             run `chmod {fix} {}`",
            path.display(),
            path.display()
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
    fn store_paths_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private_store_path(&file, current_uid()).unwrap();
        check_private_store_path(tmp.path(), current_uid()).unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_private_store_path(&file, current_uid()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", file.display())),
                "{text}"
            );
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = check_private_store_path(tmp.path(), current_uid()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("chmod 700 {}", tmp.path().display())),
            "{err}"
        );
        let err = check_private_store_path(&file, current_uid() + 1).unwrap_err();
        assert!(matches!(err, Error::InsecureDirectory(_)), "{err}");
    }

    #[test]
    fn refuses_other_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let err = check_private_dir(tmp.path(), current_uid() + 1).unwrap_err();
        assert!(matches!(err, Error::InsecureDirectory(_)));
    }
}
