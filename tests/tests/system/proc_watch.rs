//! What other local users and same-user malware can read about our processes
//! while a test runs: a sampler of /proc/PID/cmdline and environ of every
//! `lanyard`, `lanyardd` and `lanyard-ca`, and where a process is blocked
//! (/proc/PID/syscall), so a test can catch the CLI waiting on its stdin or
//! on the daemon's answer.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The command names (/proc/PID/comm) of Lanyard's programs.
const OURS: [&str; 3] = ["lanyard", "lanyardd", "lanyard-ca"];

/// `cmdline` and `environ` of process `pid`, NULs shown as spaces; None once it is gone.
pub fn cmdline_and_environ(pid: u32) -> Option<(String, String)> {
    let read = |f: &str| {
        std::fs::read(format!("/proc/{pid}/{f}"))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
    };
    Some((read("cmdline")?, read("environ")?))
}

/// Samples every process of ours until stopped; keeps each distinct text.
pub struct ProcWatch {
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProcWatch {
    /// Starts sampling (every few milliseconds, as fast as /proc allows).
    pub fn start() -> ProcWatch {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                for text in sample() {
                    s.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(text);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        ProcWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns every text seen ("comm PID cmdline: …" and
    /// "comm PID environ: …").
    pub fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn sample() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let comm = comm.trim();
        if !OURS.contains(&comm) {
            continue;
        }
        if let Some((cmdline, environ)) = cmdline_and_environ(pid) {
            out.push(format!("{comm} {pid} cmdline: {cmdline}"));
            out.push(format!("{comm} {pid} environ: {environ}"));
        }
    }
    out
}

/// What a process is blocked reading: "pipe", "socket", or None when it is
/// in neither read(2) nor recvfrom(2) (x86_64 syscalls 0 and 45;
/// /proc/PID/syscall gives the number and the arguments, the fd first).
pub fn blocked_reading(pid: u32) -> Option<&'static str> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    if !matches!(fields.next()?, "0" | "45") {
        return None;
    }
    let fd = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    let target = std::fs::read_link(Path::new(&format!("/proc/{pid}/fd/{fd}"))).ok()?;
    let target = target.to_string_lossy();
    if target.starts_with("pipe:") {
        Some("pipe")
    } else if target.starts_with("socket:") {
        Some("socket")
    } else {
        None
    }
}

/// Polls until `pid` is blocked reading `what` ("pipe" or "socket"); panics
/// after `patience` naming `why`.
pub fn wait_blocked_reading(pid: u32, what: &str, why: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if blocked_reading(pid) == Some(what) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    panic!("process {pid} did not block reading a {what} ({why}) within {patience:?}; syscall: {syscall}");
}
