//! The CA benchmark's results: per database the enrolment and renewal
//! phases (requests and certificates per second, p50/p99, errors) next to the
//! raw signing rate, then the storm; printed as a Markdown table and kept as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::load::Phase;
use super::raw::RawRate;
use super::server::DbKind;
use super::storm::StormReport;

/// One phase, summarised.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    /// Requests answered with certificates that check out.
    pub ok: usize,
    /// Requests refused by back-pressure.
    pub busy: usize,
    /// Other failures.
    pub errors: usize,
    /// The first error messages.
    pub first_errors: Vec<String>,
    /// Certificates issued.
    pub certificates: usize,
    /// Successful requests per second of wall time.
    pub requests_per_s: f64,
    /// Certificates per second of wall time.
    pub certificates_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// CPU the CA process spent per successful request, ms (answer checks and
    /// clients excluded; includes the CA's TLS handshakes).
    pub ca_cpu_ms_per_request: Option<f64>,
    /// Certificates per CPU-second of the CA process: the CA's capacity per
    /// core, comparable with the raw one-thread signing rate.
    pub certificates_per_ca_cpu_s: Option<f64>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

impl PhaseReport {
    /// Summarises `phase`.
    pub fn of(mut phase: Phase) -> Self {
        phase.latencies.sort();
        let secs = phase.wall.as_secs_f64().max(1e-9);
        let cpu = phase.ca_cpu_s.filter(|c| *c > 0.0 && phase.ok > 0);
        PhaseReport {
            ok: phase.ok,
            busy: phase.busy,
            errors: phase.errors,
            first_errors: phase.first_errors,
            certificates: phase.certificates,
            requests_per_s: phase.ok as f64 / secs,
            certificates_per_s: phase.certificates as f64 / secs,
            p50_ms: percentile(&phase.latencies, 0.50),
            p99_ms: percentile(&phase.latencies, 0.99),
            ca_cpu_ms_per_request: cpu.map(|c| 1000.0 * c / phase.ok as f64),
            certificates_per_ca_cpu_s: cpu.map(|c| phase.certificates as f64 / c),
        }
    }
}

/// Both phases on one database.
#[derive(Debug, Serialize)]
pub struct DbReport {
    /// The database.
    pub db: DbKind,
    /// Enrolments.
    pub enrol: PhaseReport,
    /// Renewals.
    pub renew: PhaseReport,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct CaReport {
    /// UTC date and time of the run.
    pub date: String,
    /// CPU model, cores, kernel.
    pub machine: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per phase.
    pub ops: usize,
    /// The CA's max_concurrent_issuance.
    pub max_concurrent_issuance: u32,
    /// The CA key's raw signing rate.
    pub raw: RawRate,
    /// Per database.
    pub databases: Vec<DbReport>,
    /// The storm simulation.
    pub storm: Option<StormReport>,
}

/// "model name × cores, kernel".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

fn pct(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.0} %", 100.0 * a / b)
    } else {
        "-".into()
    }
}

impl CaReport {
    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let raw = &self.raw;
        let _ = writeln!(s, "# lanyard-bench ca — {}\n", self.date);
        let _ = writeln!(s, "Machine: {}  ", self.machine);
        let _ = writeln!(
            s,
            "{} concurrent clients, {} enrolments then {} renewals per database, each a new TLS \
             connection (renewals: mTLS with the card's certificate), each request with two CSRs \
             (authentication + document signing: two certificates); CA max_concurrent_issuance = {}.\n",
            self.clients, self.ops, self.ops, self.max_concurrent_issuance
        );
        let _ = writeln!(
            s,
            "Raw signing rate of the CA key ({}), same run: **{:.0}/s on 1 thread**, {:.0}/s on {} \
             threads; {:.0} per CPU-second of the signing thread (the machine is shared: wall-clock \
             ratios move with other work, CPU-time ratios much less).\n",
            raw.key, raw.one_thread_per_s, raw.all_threads_per_s, raw.threads, raw.one_thread_per_cpu_s
        );
        let _ = writeln!(
            s,
            "| database | phase | requests/s | certificates/s | vs raw 1 thread | vs raw {} threads | p50 ms | p99 ms | ok | busy | errors | CA CPU ms/request | certificates per CA CPU-s | vs raw per CPU-s |",
            raw.threads
        );
        let _ = writeln!(
            s,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for db in &self.databases {
            for (name, p) in [("enrolment", &db.enrol), ("renewal", &db.renew)] {
                let _ = writeln!(
                    s,
                    "| {} | {name} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
                    db.db.label(),
                    p.requests_per_s,
                    p.certificates_per_s,
                    pct(p.certificates_per_s, raw.one_thread_per_s),
                    pct(p.certificates_per_s, raw.all_threads_per_s),
                    p.p50_ms,
                    p.p99_ms,
                    p.ok,
                    p.busy,
                    p.errors,
                    p.ca_cpu_ms_per_request
                        .map_or("-".into(), |v| format!("{v:.2}")),
                    p.certificates_per_ca_cpu_s
                        .map_or("-".into(), |v| format!("{v:.0}")),
                    p.certificates_per_ca_cpu_s
                        .map_or("-".into(), |v| pct(v, raw.one_thread_per_cpu_s)),
                );
            }
        }
        for db in &self.databases {
            for (name, p) in [("enrolment", &db.enrol), ("renewal", &db.renew)] {
                for e in &p.first_errors {
                    let _ = writeln!(s, "\n- {} {name} error: {e}", db.db.label());
                }
            }
        }
        if let Some(storm) = &self.storm {
            s.push_str(&storm_markdown(storm));
        }
        s
    }
}

fn storm_markdown(r: &StormReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Renewal storm (simulation)\n\n{} cards, {:.0}-day certificates (CA default), renewal at \
         {:.0} % ± {:.0} % of the lifetime, retries {}–{} s doubling (daemon defaults), CA retry-after {} s; \
         mass enrolment over {} days; a card is unlocked (and so renews) for {} h a day from a start \
         between {:02}:00 and {:02}:00; {} days simulated against **{:.1} requests/s** of CA capacity.\n",
        r.cards,
        r.lifetime_days,
        r.renewal_fraction * 100.0,
        r.jitter_fraction * 100.0,
        r.retry_min_secs,
        r.retry_max_secs,
        r.retry_after_secs,
        r.usage.enrol_days,
        r.usage.online / 3600,
        r.usage.first_unlock / 3600,
        (r.usage.first_unlock + r.usage.unlock_spread) / 3600,
        r.days,
        r.capacity_per_s
    );
    let _ = writeln!(
        s,
        "| scenario | peak requests/s (1 s) | peak requests/s (1 min mean) | peak issued/s | max queue | refused/unanswered | renewals | max wait h | min validity left d | expired | drained after h |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let start_day = f64::from(r.outage.outage_start.unwrap_or(0)) / 86_400.0;
    for (name, o) in [
        ("CA up".to_string(), &r.normal),
        (
            format!("CA down {} h from day {start_day:.2}", r.outage_hours),
            &r.outage,
        ),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {} | {:.1} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
            o.peak_attempts_per_s,
            o.peak_bucket_attempts_per_s,
            o.peak_served_per_s,
            o.max_queue,
            o.failed_requests,
            o.renewals,
            o.max_wait_hours,
            o.min_margin_days,
            o.expired_cards,
            o.drain_hours
                .map(|h| format!("{h:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(
        s,
        "\nDuring the outage {} devices failed at least once; after it the queue peaked at {}.",
        r.outage.outage_affected, r.outage.backlog_after_outage
    );
    s
}
