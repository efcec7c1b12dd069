//! Where the agent socket lives. One rule for the daemon, the CLI and the
//! module: `LANYARD_AGENT_SOCK`, else `$XDG_RUNTIME_DIR/lanyard/agent.sock`,
//! else `/tmp/lanyard-$UID/agent.sock`.

use std::path::PathBuf;

/// Environment variable that overrides the socket path for every component.
pub const SOCKET_ENV: &str = "LANYARD_AGENT_SOCK";

/// The agent socket path from the process environment and the real uid.
pub fn agent_socket_path(uid: u32) -> PathBuf {
    resolve(
        std::env::var_os(SOCKET_ENV).map(PathBuf::from),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        uid,
    )
}

/// The rule itself, separated from the environment so it can be tested.
pub fn resolve(overridden: Option<PathBuf>, runtime_dir: Option<PathBuf>, uid: u32) -> PathBuf {
    match (overridden, runtime_dir) {
        (Some(p), _) if !p.as_os_str().is_empty() => p,
        (_, Some(r)) if r.is_absolute() => r.join("lanyard").join("agent.sock"),
        _ => PathBuf::from(format!("/tmp/lanyard-{uid}/agent.sock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_wins() {
        let p = resolve(Some("/x/s".into()), Some("/run/user/5".into()), 5);
        assert_eq!(p, PathBuf::from("/x/s"));
    }

    #[test]
    fn runtime_dir_next() {
        let p = resolve(None, Some("/run/user/5".into()), 5);
        assert_eq!(p, PathBuf::from("/run/user/5/lanyard/agent.sock"));
    }

    #[test]
    fn tmp_fallback_and_relative_runtime_dir_ignored() {
        assert_eq!(
            resolve(None, None, 0),
            PathBuf::from("/tmp/lanyard-0/agent.sock")
        );
        assert_eq!(
            resolve(Some("".into()), Some("rel".into()), 7),
            PathBuf::from("/tmp/lanyard-7/agent.sock")
        );
    }
}
