//! The CA key's raw signing rate, measured in the same run: the issuing key
//! type and library the CA signs certificates with (`lanyard_certs::generate_ca_key`:
//! ECDSA P-384 / SHA-384 through rcgen and ring), over a certificate-sized
//! message, on one thread and on every core.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use lanyard_certs::rcgen::SigningKey as _;
use serde::Serialize;

/// About the size of a card certificate's to-be-signed part.
const MESSAGE_LEN: usize = 700;

/// Raw signatures per second.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RawRate {
    /// The key: "ECDSA P-384 (rcgen/ring)".
    pub key: &'static str,
    /// One thread, per second of wall time.
    pub one_thread_per_s: f64,
    /// One thread, per second of that thread's CPU time: what the CA's
    /// certificates per CPU-second compare with on a machine shared with
    /// other work.
    pub one_thread_per_cpu_s: f64,
    /// `threads` threads at once.
    pub all_threads_per_s: f64,
    /// How many threads (the cores available).
    pub threads: usize,
}

/// CPU seconds this thread has used (user + system), from /proc in USER_HZ (100).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn sign_for(key: &lanyard_certs::rcgen::KeyPair, period: Duration) -> Result<u64> {
    let message = vec![0x5a_u8; MESSAGE_LEN];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < period {
        key.sign(&message)
            .map_err(|e| anyhow!("the CA key type failed to sign: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// Measures for `period` on one thread, then on all cores.
pub fn measure(period: Duration) -> Result<RawRate> {
    let key = lanyard_certs::generate_ca_key().map_err(|e| anyhow!("CA key: {e}"))?;
    // Warm up (page in, CPU frequency).
    sign_for(&key, period / 10)?;
    let cpu0 = thread_cpu_seconds();
    let signed = sign_for(&key, period)? as f64;
    let cpu = thread_cpu_seconds()
        .zip(cpu0)
        .map(|(b, a)| b - a)
        .filter(|c| *c > 0.0)
        .ok_or_else(|| anyhow!("cannot read this thread's CPU time from /proc/thread-self/stat"))?;
    let one = signed / period.as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| sign_for(&key, period)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a signing thread panicked"))?)
            .sum::<Result<u64>>()
    })?;
    Ok(RawRate {
        key: "ECDSA P-384 (rcgen/ring)",
        one_thread_per_s: one,
        one_thread_per_cpu_s: signed / cpu,
        all_threads_per_s: total as f64 / period.as_secs_f64(),
        threads,
    })
}
