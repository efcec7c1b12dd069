//! System tools the tests drive (`pkcs11-tool`, `openssl`, `setpriv`…): a test that
//! needs one either runs or says loudly why not; under `CI=true` a missing tool fails.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Full path of an executable found on `PATH`, if any.
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether `tool` is on `PATH`.
pub fn tool_available(tool: &str) -> bool {
    find_on_path(tool).is_some()
}

/// Whether this is a CI run (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").map(|v| v.to_ascii_lowercase()),
        Ok(v) if v == "true" || v == "1"
    )
}

/// Returns true when `tool` is available. When it is missing: panics under
/// `CI=true` (a CI run must never skip silently), otherwise prints a loud SKIP
/// line and returns false so the caller can `return` early.
///
/// ```no_run
/// if !lanyard_test_support::require_tool("pkcs11-tool") { return; }
/// ```
pub fn require_tool(tool: &str) -> bool {
    if tool_available(tool) {
        return true;
    }
    if in_ci() {
        panic!(
            "required tool `{tool}` is not installed and CI=true: run scripts/install-deps.sh \
             (as root) so this test can run"
        );
    }
    eprintln!(
        "\n*** SKIP: `{tool}` is not installed; this test did NOT run. \
         Run scripts/install-deps.sh (as root). Under CI=true this is a failure. ***\n"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_on_path_and_not_others() {
        assert!(find_on_path("sh").is_some_and(|p| p.is_absolute()));
        assert!(!tool_available("lanyard-no-such-tool-0f3a"));
        assert!(require_tool("sh"));
    }
}
