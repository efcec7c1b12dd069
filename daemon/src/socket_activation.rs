//! systemd socket activation (the sd_listen_fds protocol): when LISTEN_PID is
//! this process and LISTEN_FDS >= 1, fd 3 is the agent listener. It must be a
//! listening AF_UNIX stream socket in a directory only we can change.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;

use crate::error::{Error, Result};

/// The first passed descriptor (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: RawFd = 3;

/// The variables of the protocol, removed once read so children do not see them.
pub const LISTEN_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// A listener handed over by systemd (or `systemd-socket-activate`).
#[derive(Debug)]
pub struct Activated {
    /// The listening socket (close-on-exec).
    pub listener: std::os::unix::net::UnixListener,
    /// Its path, as bound by whoever created it.
    pub path: PathBuf,
}

/// How many descriptors the environment passes to process `pid`: `None`
/// when it passes none to us (no LISTEN_PID, another process's, or
/// LISTEN_FDS=0); an error when the variables are malformed.
pub fn passed_fds(pid: u32, get: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    let Some(listen_pid) = get("LISTEN_PID") else {
        return Ok(None);
    };
    let listen_pid: u32 = listen_pid.trim().parse().map_err(|_| {
        Error::SocketActivation(format!("LISTEN_PID={listen_pid:?} is not a process id"))
    })?;
    if listen_pid != pid {
        return Ok(None);
    }
    let fds = get("LISTEN_FDS").ok_or_else(|| {
        Error::SocketActivation("LISTEN_PID is set but LISTEN_FDS is missing".into())
    })?;
    let n: usize = fds
        .trim()
        .parse()
        .map_err(|_| Error::SocketActivation(format!("LISTEN_FDS={fds:?} is not a number")))?;
    Ok((n > 0).then_some(n))
}

/// The agent listener passed by systemd, if any: reads and removes the
/// LISTEN_* variables (call before any thread starts), then takes fd 3 and
/// checks it. A descriptor that is not a listening AF_UNIX stream socket,
/// or a socket whose directory others could change, is refused.
pub fn take_from_env() -> Result<Option<Activated>> {
    let passed = passed_fds(std::process::id(), |k| std::env::var(k).ok());
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in LISTEN_VARS {
        std::env::remove_var(var);
    }
    let Some(count) = passed? else {
        return Ok(None);
    };
    for extra in (LISTEN_FDS_START + 1)..(LISTEN_FDS_START + count.min(64) as RawFd) {
        // Ours to close-on-exec; unused, so no child inherits them.
        let _ = fcntl(extra, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    if count > 1 {
        tracing::warn!(
            passed = count,
            names = names.as_deref().unwrap_or(""),
            "socket activation passed several descriptors; only the first (fd 3) is used"
        );
    }
    let (fd, facts) = adopt_inherited_socket(LISTEN_FDS_START).map_err(|e| {
        Error::SocketActivation(format!(
            "fd {LISTEN_FDS_START} (LISTEN_FDS) is not usable: {e}"
        ))
    })?;
    facts.check()?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    let path = listener
        .local_addr()
        .map_err(|e| {
            Error::SocketActivation(format!(
                "fd {LISTEN_FDS_START} is not an AF_UNIX socket: {e}"
            ))
        })?
        .as_pathname()
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::SocketActivation(format!(
                "fd {LISTEN_FDS_START} is an unnamed or abstract socket; lanyardd needs a \
                 socket file (ListenStream=%t/lanyard/agent.sock)"
            ))
        })?;
    check_socket_path(&path, crate::paths::current_uid())?;
    Ok(Some(Activated { listener, path }))
}

/// What `getsockopt` says about an inherited descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFacts {
    /// SO_DOMAIN (AF_UNIX, AF_INET, …).
    pub domain: i32,
    /// SO_TYPE (SOCK_STREAM, SOCK_DGRAM, …).
    pub kind: i32,
    /// SO_ACCEPTCONN: listen() was called.
    pub listening: bool,
}

impl SocketFacts {
    /// Refuses anything but a listening AF_UNIX stream socket.
    pub fn check(&self) -> Result<()> {
        let fd = LISTEN_FDS_START;
        if self.domain != libc::AF_UNIX {
            let what = match self.domain {
                libc::AF_INET => "a TCP/IP (AF_INET) socket",
                libc::AF_INET6 => "a TCP/IP (AF_INET6) socket",
                _ => "not an AF_UNIX socket",
            };
            return Err(Error::SocketActivation(format!(
                "fd {fd} is {what}; lanyardd listens on a Unix socket only (ListenStream=PATH)"
            )));
        }
        if self.kind != libc::SOCK_STREAM {
            return Err(Error::SocketActivation(format!(
                "fd {fd} is a Unix socket of type {}, not SOCK_STREAM (ListenStream=, not \
                 ListenDatagram= or ListenSequentialPacket=)",
                self.kind
            )));
        }
        if !self.listening {
            return Err(Error::SocketActivation(format!(
                "fd {fd} is a Unix stream socket that is not listening (Accept=no is needed)"
            )));
        }
        Ok(())
    }
}

/// Refuses a socket whose directory is not ours or that others may write
/// (they could replace the socket); warns when others may reach the socket
/// (each peer's uid is still checked).
pub fn check_socket_path(path: &Path, uid: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir_meta = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("cannot inspect {}", dir.display()), e))?;
    if dir_meta.uid() != uid || dir_meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::InsecureDirectory(format!(
            "the activated socket {} is in {} (owner uid {}, mode {:o}), which others can \
             change; use a directory owned by uid {uid} with mode 0700 (DirectoryMode=0700)",
            path.display(),
            dir.display(),
            dir_meta.uid(),
            dir_meta.permissions().mode() & 0o7777
        )));
    }
    let sock_mode = std::fs::symlink_metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .map_err(|e| Error::io(format!("cannot inspect {}", path.display()), e))?;
    let dir_mode = dir_meta.permissions().mode() & 0o777;
    if sock_mode & 0o077 != 0 && dir_mode & 0o077 != 0 {
        tracing::warn!(
            socket = %path.display(),
            socket_mode = format!("{sock_mode:o}"),
            directory_mode = format!("{dir_mode:o}"),
            "the activated socket is reachable by other users (each connection's uid is \
             still checked); SocketMode=0600 and DirectoryMode=0700 close it"
        );
    }
    Ok(())
}

/// The FFI edge: takes ownership of the inherited descriptor `fd` (marked
/// close-on-exec) and reads SO_DOMAIN, SO_TYPE and SO_ACCEPTCONN.
#[allow(unsafe_code)]
fn adopt_inherited_socket(fd: RawFd) -> std::io::Result<(OwnedFd, SocketFacts)> {
    // Fails with EBADF unless fd is open.
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: fd is open (F_SETFD succeeded), was passed to this process alone
    // (LISTEN_PID is ours) and is taken once: the LISTEN_* variables are
    // removed before this runs, and nothing else in lanyardd uses fd 3.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let int_option = |name: libc::c_int| -> std::io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are live locals of the sizes passed, and
        // the options read (SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN) are ints.
        let rc = unsafe {
            libc::getsockopt(
                owned.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let facts = SocketFacts {
        domain: int_option(libc::SO_DOMAIN)?,
        kind: int_option(libc::SO_TYPE)?,
        listening: int_option(libc::SO_ACCEPTCONN)? != 0,
    };
    Ok((owned, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn only_fds_passed_to_this_process_count() {
        assert_eq!(passed_fds(42, env(&[])).unwrap(), None);
        let ours = [("LISTEN_PID", "42"), ("LISTEN_FDS", "1")];
        assert_eq!(passed_fds(42, env(&ours)).unwrap(), Some(1));
        assert_eq!(passed_fds(43, env(&ours)).unwrap(), None);
        let none = [("LISTEN_PID", "42"), ("LISTEN_FDS", "0")];
        assert_eq!(passed_fds(42, env(&none)).unwrap(), None);
        let two = [("LISTEN_PID", "42"), ("LISTEN_FDS", " 2 ")];
        assert_eq!(passed_fds(42, env(&two)).unwrap(), Some(2));
    }

    #[test]
    fn the_variables_are_removed_even_when_meant_for_another_process() {
        // No other test reads these variables.
        std::env::set_var("LISTEN_PID", "1");
        std::env::set_var("LISTEN_FDS", "1");
        std::env::set_var("LISTEN_FDNAMES", "agent");
        assert!(take_from_env().unwrap().is_none());
        for var in LISTEN_VARS {
            assert!(std::env::var_os(var).is_none(), "{var} left set");
        }
    }

    #[test]
    fn malformed_variables_are_clear_errors() {
        for (vars, needle) in [
            (&[("LISTEN_PID", "x")][..], "LISTEN_PID"),
            (&[("LISTEN_PID", "42")][..], "LISTEN_FDS is missing"),
            (
                &[("LISTEN_PID", "42"), ("LISTEN_FDS", "-1")][..],
                "LISTEN_FDS",
            ),
        ] {
            let err = passed_fds(42, env(vars)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("socket activation"), "{err}");
        }
    }

    #[test]
    fn only_a_listening_unix_stream_socket_passes() {
        let good = SocketFacts {
            domain: libc::AF_UNIX,
            kind: libc::SOCK_STREAM,
            listening: true,
        };
        assert!(good.check().is_ok());
        let tcp = SocketFacts {
            domain: libc::AF_INET,
            ..good
        };
        assert!(tcp.check().unwrap_err().to_string().contains("TCP/IP"));
        let dgram = SocketFacts {
            kind: libc::SOCK_DGRAM,
            ..good
        };
        assert!(dgram
            .check()
            .unwrap_err()
            .to_string()
            .contains("SOCK_STREAM"));
        let idle = SocketFacts {
            listening: false,
            ..good
        };
        assert!(idle
            .check()
            .unwrap_err()
            .to_string()
            .contains("not listening"));
    }

    #[test]
    fn real_sockets_are_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let (fd, facts) =
            adopt_inherited_socket(nix::unistd::dup(listener.as_raw_fd()).unwrap()).unwrap();
        assert!(facts.check().is_ok(), "{facts:?}");
        drop(fd);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (_fd, facts) =
            adopt_inherited_socket(nix::unistd::dup(tcp.as_raw_fd()).unwrap()).unwrap();
        assert_eq!((facts.domain, facts.listening), (libc::AF_INET, true));
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let err = adopt_inherited_socket(nix::unistd::dup(file.as_raw_fd()).unwrap()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }

    #[test]
    fn a_socket_in_a_directory_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let uid = crate::paths::current_uid();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_socket_path(&path, uid).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_socket_path(&path, uid).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_socket_path(&path, uid).unwrap_err().to_string();
        assert!(err.contains("DirectoryMode=0700"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = check_socket_path(&path, uid + 1).unwrap_err().to_string();
        assert!(err.contains("others can change"), "{err}");
    }
}
