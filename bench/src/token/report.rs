//! The result of a run: one table with the ratios and a PASS/MISS line per
//! target of issue 6 (all ratios within this run), and the same as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::alg::Alg;
use super::cold_start::ColdStart;
use super::configs::FirstLogin;
use super::measure::Stats;
use super::raw::RawRates;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// Where.
    pub machine: Machine,
    /// What each measurement did per round ("1.0 s" or "300 ops").
    pub budget: String,
    /// Rounds: every configuration measured once per round, in turn.
    pub rounds: usize,
    /// The crypto library's own single-thread rates.
    pub raw: RawRates,
    /// Every configuration measured.
    pub configs: Vec<ConfigResult>,
    /// "configuration: mechanism" pairs the module refused (CKR_MECHANISM_INVALID).
    pub unsupported: Vec<String>,
    /// The targets of issue 6 part 2 (only those whose inputs were measured).
    pub targets: Vec<TargetCheck>,
}

/// The machine.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub nproc: usize,
    /// "model name" of /proc/cpuinfo.
    pub cpu: String,
}

/// One configuration's figures.
#[derive(Debug, Serialize)]
pub struct ConfigResult {
    /// lanyard, softhsm, p11kit or module:PATH.
    pub name: String,
    /// The module file.
    pub module: String,
    /// One row per mechanism its tokens have a key for.
    pub mechanisms: Vec<AlgResult>,
    /// The first C_Login of each token (for Lanyard: unlocking, Argon2id).
    pub first_logins: Vec<FirstLogin>,
    /// Spawn → first signature in a new process.
    pub cold_start: Option<ColdStart>,
}

/// One mechanism in one configuration.
#[derive(Debug, Serialize)]
pub struct AlgResult {
    /// The mechanism.
    pub alg: Alg,
    /// Whether a signature verified with the token's public key.
    pub verified: bool,
    /// One thread.
    pub one_thread: Stats,
    /// Two threads (a session each).
    pub two_threads: Stats,
    /// two_threads / one_thread ops/s.
    pub scaling: f64,
}

/// A target and whether this run met it.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub target: String,
    /// The measured ratio (or milliseconds for cold start).
    pub measured: f64,
    /// The bound.
    pub required: f64,
    /// "at_least" or "at_most".
    pub bound: &'static str,
    /// Whether the bound holds.
    pub pass: bool,
    /// The ratio in each round (the median is `measured`).
    pub per_round: Vec<f64>,
}

impl TargetCheck {
    /// Whether `value` meets the bound.
    pub fn holds(&self, value: f64) -> bool {
        if self.bound == "at_least" {
            value >= self.required
        } else {
            value <= self.required
        }
    }
}

impl ConfigResult {
    /// The row of `alg`, if measured.
    pub fn alg(&self, alg: Alg) -> Option<&AlgResult> {
        self.mechanisms.iter().find(|m| m.alg == alg)
    }
}

fn at_least(target: String, measured: f64, required: f64) -> TargetCheck {
    TargetCheck {
        target,
        measured,
        required,
        bound: "at_least",
        pass: measured >= required,
        per_round: Vec::new(),
    }
}

fn at_most(target: String, measured: f64, required: f64) -> TargetCheck {
    TargetCheck {
        target,
        measured,
        required,
        bound: "at_most",
        pass: measured <= required,
        per_round: Vec::new(),
    }
}

/// The targets of issue 6 part 2 that this run's figures allow checking.
pub fn targets(configs: &[ConfigResult], raw: &RawRates) -> Vec<TargetCheck> {
    let find = |name: &str| configs.iter().find(|c| c.name == name);
    let mut out = Vec::new();
    let Some(lanyard) = find("lanyard") else {
        return out;
    };
    let one = |c: &ConfigResult, a: Alg| c.alg(a).map(|r| r.one_thread.ops_per_sec);
    let ratio = |other: &str, a: Alg| Some(one(lanyard, a)? / one(find(other)?, a)?.max(1e-9));
    let rows = [
        (
            "p11kit",
            Alg::Ecdsa,
            4.0,
            "Lanyard / p11-kit remote, ECDSA P-256",
        ),
        (
            "p11kit",
            Alg::RsaPkcs,
            2.0,
            "Lanyard / p11-kit remote, RSA-2048",
        ),
        (
            "softhsm",
            Alg::Ecdsa,
            1.0,
            "Lanyard / SoftHSM2 in-process, ECDSA P-256",
        ),
        (
            "softhsm",
            Alg::RsaPkcs,
            1.8,
            "Lanyard / SoftHSM2 in-process, RSA-2048",
        ),
    ];
    for (other, alg, required, what) in rows {
        if let Some(r) = ratio(other, alg) {
            out.push(at_least(what.into(), r, required));
        }
    }
    if let Some(r) = one(lanyard, Alg::RsaPkcs) {
        out.push(at_least(
            "Lanyard / raw OpenSSL, RSA-2048 (1 thread)".into(),
            r / raw.rsa2048_pkcs1.max(1e-9),
            0.85,
        ));
    }
    if let Some(r) = one(lanyard, Alg::Ecdsa) {
        out.push(at_least(
            "Lanyard / raw OpenSSL, ECDSA P-256 (1 thread)".into(),
            r / raw.ecdsa_p256.max(1e-9),
            0.50,
        ));
    }
    for m in &lanyard.mechanisms {
        out.push(at_least(
            format!("Lanyard 2 threads / 1 thread, {}", m.alg.name()),
            m.scaling,
            1.8,
        ));
    }
    for m in &lanyard.mechanisms {
        out.push(at_most(
            format!("Lanyard p99 / p50 under 2 threads, {}", m.alg.name()),
            m.two_threads.p99_us / m.two_threads.p50_us.max(1e-9),
            2.0,
        ));
    }
    out
}

/// The cold-start target, once Lanyard's cold start is measured.
pub fn cold_start_target(configs: &[ConfigResult]) -> Option<TargetCheck> {
    let c = configs
        .iter()
        .find(|c| c.name == "lanyard")?
        .cold_start
        .as_ref()?;
    Some(at_most(
        "Lanyard cold start, spawn → first signature (ms)".into(),
        c.median_ms,
        20.0,
    ))
}

/// The human-readable table.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "lanyard-bench token — {} — {} CPUs, {} — {} per measurement, {} interleaved round(s) (figures: the median round; ratios: the median of the rounds' ratios)",
        r.date, r.machine.nproc, r.machine.cpu, r.budget, r.rounds
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| configuration | mechanism | 1 thread ops/s | p50 µs | p99 µs | 2 threads ops/s | p50 µs | p99 µs | 2T/1T | verified |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in &r.configs {
        for m in &c.mechanisms {
            let (a, b) = (&m.one_thread, &m.two_threads);
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2}x | {} |",
                c.name,
                m.alg.name(),
                a.ops_per_sec,
                a.p50_us,
                a.p99_us,
                b.ops_per_sec,
                b.p50_us,
                b.p99_us,
                m.scaling,
                if m.verified { "yes" } else { "NO" }
            );
        }
    }
    for u in &r.unsupported {
        let _ = writeln!(
            s,
            "| {u} (not offered: CKR_MECHANISM_INVALID) | | | | | | | | | |"
        );
    }
    let _ = writeln!(s);
    let _ = write!(
        s,
        "Raw OpenSSL, 1 thread (the daemon's calls): RSA-2048 PKCS#1 v1.5 {:.0}/s ({:.0}/s with one EVP_PKEY_CTX reused), ECDSA P-256 {:.0}/s",
        r.raw.rsa2048_pkcs1, r.raw.rsa2048_pkcs1_ctx_reused, r.raw.ecdsa_p256
    );
    if let Some(sp) = &r.raw.openssl_speed {
        let _ = write!(
            s,
            "; `openssl speed`: rsa2048 {:.0} sign/s, ecdsap256 {:.0} sign/s",
            sp.rsa2048_sign, sp.ecdsa_p256_sign
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s);
    let _ = writeln!(s, "| configuration | first C_Login per token (ms) | cold start: spawn → first signature, median (min) | child: load+C_Initialize / C_Login / C_Sign |");
    let _ = writeln!(s, "|---|---|---|---|");
    for c in &r.configs {
        let logins: Vec<String> = c
            .first_logins
            .iter()
            .map(|l| format!("{}: {:.1}", l.token, l.ms))
            .collect();
        let cold = c.cold_start.as_ref().map_or("—".to_string(), |cs| {
            format!(
                "{:.1} ms ({:.1}), {} runs, {}",
                cs.median_ms,
                cs.min_ms,
                cs.runs,
                cs.alg.arg()
            )
        });
        let steps = c.cold_start.as_ref().map_or("—".to_string(), |cs| {
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                cs.steps.init_us / 1000.0,
                cs.steps.login_us / 1000.0,
                cs.steps.sign_us / 1000.0
            )
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.name,
            logins.join(", "),
            cold,
            steps
        );
    }
    if !r.targets.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| target | measured (median) | rounds | required | result |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---|");
        for t in &r.targets {
            let bound = if t.bound == "at_least" { "≥" } else { "≤" };
            let rounds: Vec<String> = t.per_round.iter().map(|v| format!("{v:.2}")).collect();
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} | {} {} | {} |",
                t.target,
                t.measured,
                rounds.join(", "),
                bound,
                t.required,
                if t.pass { "PASS" } else { "MISS" }
            );
        }
    }
    s
}

/// The machine's CPU count and model.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu,
    }
}
