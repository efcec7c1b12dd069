//! Other processes in tests: a forked child that runs a closure and exits
//! with its verdict, this test binary started again to run one test in a
//! child process, and waiting for either with a generous deadline (a hung
//! child is killed and reported, never waited for forever).

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a child process may take before it counts as hung.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Forks; the child runs `body` and exits 0 if it returned Ok, 1 (after
/// printing why) if it returned an error or panicked. Returns the child's pid.
pub fn fork_child(body: impl FnOnce() -> Result<(), String>) -> libc::pid_t {
    // SAFETY (test): the child only runs `body` and then _exits; it never
    // returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(Ok(())) => 0,
            Ok(Err(why)) => {
                eprintln!("forked child: {why}");
                1
            }
            Err(_) => 1,
        };
        // SAFETY (test): ends the child without running the harness's exit code.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// How a forked child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signalled(i32),
    /// Still running at the deadline (killed then).
    Hung,
}

/// Waits for the forked child `pid`, polling, for at most `deadline`.
pub fn wait_child(pid: libc::pid_t, deadline: Duration) -> ChildEnd {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY (test): waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return ChildEnd::Exited(libc::WEXITSTATUS(status));
            }
            return ChildEnd::Signalled(libc::WTERMSIG(status));
        }
        assert_eq!(r, 0, "waitpid failed");
        if start.elapsed() > deadline {
            // SAFETY (test): killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return ChildEnd::Hung;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts this test binary again, running only the ignored test `test`
/// with `envs` added to the environment (its stdout discarded).
pub fn spawn_test(test: &str, envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("test executable path");
    Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        // The harness's chatter; failures are told on stderr.
        .stdout(Stdio::null())
        .spawn()
        .expect("start the test binary again")
}

/// Waits for a spawned process, polling, for at most `deadline`; a process
/// still running then is killed and `None` returned.
pub fn wait_process(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
