//! Where the built workspace artefacts are: the release profile directory that
//! `scripts/test.sh` builds once, found from the running test binary or the
//! Cargo environment.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Name of the PKCS#11 module file in the release directory.
pub const MODULE_FILE: &str = "liblanyard_pkcs11.so";

fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // target/release/deps/<test-binary> -> target/release: the very profile the
    // test binary was built in, whatever CARGO_TARGET_DIR was.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(release) = exe.parent().and_then(Path::parent) {
            dirs.push(release.to_path_buf());
        }
        // target/release/<binary> (lanyard-bench) -> target/release.
        if let Some(dir) = exe.parent().filter(|d| d.ends_with("release")) {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(target).join("release"));
    }
    // test-support/../target/release
    dirs.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("release"),
    );
    dirs
}

/// The release directory that holds `lanyardd`, `lanyard`, `lanyard-ca` and the module.
pub fn release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dirs = candidates();
        for dir in &dirs {
            if dir.join("lanyardd").is_file() && dir.join(MODULE_FILE).is_file() {
                return dir.clone();
            }
        }
        panic!(
            "built binaries not found in any of {dirs:?}: run `cargo build --release --workspace` \
             first (scripts/test.sh does)"
        );
    })
}

/// Absolute path of a workspace binary (`lanyardd`, `lanyard`, `lanyard-ca`).
pub fn bin_path(name: &str) -> PathBuf {
    let path = release_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --workspace`",
        path.display()
    );
    path
}

/// Absolute path of `liblanyard_pkcs11.so`.
pub fn module_path() -> PathBuf {
    bin_path(MODULE_FILE)
}

/// The repository root (for scripts/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
