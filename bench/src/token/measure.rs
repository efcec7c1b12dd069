//! Throughput and latency of C_Sign: N threads, each with its own session,
//! sign until the budget is spent; every call (C_SignInit + C_Sign) is timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde::Serialize;

use super::alg::Alg;
use super::module::{KeyRef, Module};

/// How much work one measurement does.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Sign for this long.
    Time(Duration),
    /// Exactly this many signatures in all (smoke runs).
    Ops(u64),
}

/// The result of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Threads (one session each).
    pub threads: usize,
    /// Signatures made.
    pub ops: u64,
    /// Wall time of the timed part, seconds.
    pub secs: f64,
    /// Signatures per second, all threads together.
    pub ops_per_sec: f64,
    /// Median latency of one signature, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

/// Signs with `key` from `threads` threads until `budget` is spent.
pub fn run(
    module: &Module,
    key: &KeyRef,
    pin: &str,
    alg: Alg,
    threads: usize,
    budget: Budget,
) -> anyhow::Result<Stats> {
    let input = alg.input();
    let remaining = AtomicU64::new(match budget {
        Budget::Ops(n) => n,
        Budget::Time(_) => u64::MAX,
    });
    let start_line = Barrier::new(threads + 1);
    let (results, start) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (input, remaining, start_line) = (&input, &remaining, &start_line);
                scope.spawn(move || -> anyhow::Result<Vec<u32>> {
                    let prepared = (|| {
                        let session = module.session(key.slot)?;
                        session.login(pin)?;
                        let mut out = vec![0u8; alg.signature_len()];
                        // One untimed signature: connections, caches, pages.
                        session.sign(alg, key.private, input, &mut out)?;
                        anyhow::Ok((session, out))
                    })();
                    start_line.wait();
                    let (session, mut out) = prepared?;
                    let deadline = match budget {
                        Budget::Time(d) => Some(Instant::now() + d),
                        Budget::Ops(_) => None,
                    };
                    let mut latencies = Vec::with_capacity(1 << 16);
                    loop {
                        if let Some(deadline) = deadline {
                            if Instant::now() >= deadline {
                                break;
                            }
                        } else if remaining
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                                r.checked_sub(1)
                            })
                            .is_err()
                        {
                            break;
                        }
                        let t = Instant::now();
                        session.sign(alg, key.private, input, &mut out)?;
                        latencies.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
                    }
                    Ok(latencies)
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("a signing thread panicked")))
            .collect();
        (results, start)
    });
    let secs = start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?.with_context(|| format!("{} with {threads} thread(s)", alg.name()))?);
    }
    Ok(stats(threads, all, secs))
}

fn stats(threads: usize, mut latencies: Vec<u32>, secs: f64) -> Stats {
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    Stats {
        threads,
        ops,
        secs,
        ops_per_sec: ops as f64 / secs.max(1e-9),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
    }
}

/// The `q` quantile of sorted nanoseconds, in microseconds (nearest rank).
fn percentile(sorted_ns: &[u32], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    f64::from(sorted_ns[rank - 1]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ns: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&ns, 0.50), 50.0);
        assert_eq!(percentile(&ns, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        let s = stats(2, vec![3000, 1000, 2000], 0.5);
        assert_eq!((s.ops, s.p50_us, s.ops_per_sec), (3, 2.0, 6.0));
    }
}
