//! `lanyard-bench token`: C_Sign throughput, latency and cold start through
//! Lanyard's module, SoftHSM2 in-process and SoftHSM2 behind p11-kit remoting,
//! in one run, next to OpenSSL's raw rate; prints one table and writes JSON.

mod alg;
mod cold_start;
mod configs;
mod measure;
mod module;
mod raw;
mod report;
mod rounds;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use alg::Alg;
use configs::{status, Config, Fixtures};
use measure::Budget;
use report::{AlgResult, ConfigResult, Report};

/// Options of `lanyard-bench token`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    child: Option<Child>,
    /// Seconds each measurement signs for (per configuration, mechanism and thread count).
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,
    /// Sign exactly this many times per measurement instead (a smoke run).
    #[arg(long)]
    ops: Option<u64>,
    /// Measure only these configurations (repeatable); all three by default.
    #[arg(long, value_enum)]
    only: Vec<Only>,
    /// Also measure this PKCS#11 module (repeatable); its tokens must hold keys.
    #[arg(long)]
    module: Vec<PathBuf>,
    /// The user PIN of the `--module` tokens.
    #[arg(long, env = "LANYARD_BENCH_MODULE_PIN", hide_env_values = true)]
    module_pin: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Interleaved rounds (each measurement gets duration/rounds per round;
    /// 1 with --ops).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cold-start processes per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    cold_runs: usize,
    /// Skip `openssl speed` (informational, about 6 s).
    #[arg(long)]
    no_openssl_speed: bool,
}

/// The configurations `--only` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    /// Lanyard's module with lanyardd and lanyard-ca.
    Lanyard,
    /// SoftHSM2 in-process.
    Softhsm,
    /// SoftHSM2 behind p11-kit server.
    P11kit,
}

#[derive(clap::Subcommand, Debug)]
enum Child {
    /// (internal) one cold start: load, log in, sign once, print the steps.
    #[command(hide = true)]
    ColdStart(cold_start::ChildArgs),
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Child::ColdStart(child)) = args.child {
        return cold_start::child(child);
    }
    let budget = match args.ops {
        Some(0) => bail!("--ops must be at least 1"),
        Some(n) => Budget::Ops(n),
        None if args.duration_secs > 0.0 && args.duration_secs.is_finite() => {
            Budget::Time(Duration::from_secs_f64(args.duration_secs))
        }
        None => bail!("--duration-secs must be a positive number"),
    };
    let want = |o: Only| args.only.is_empty() || args.only.contains(&o);
    let module_pin = match (&args.module_pin, args.module.is_empty()) {
        (Some(pin), _) => pin.as_str(),
        (None, true) => "",
        (None, false) => bail!("--module needs --module-pin (or LANYARD_BENCH_MODULE_PIN)"),
    };

    let mut fixtures = Fixtures::default();
    let mut configs: Vec<Config> = Vec::new();
    // Kept loaded (not measured) when only p11kit is wanted: it made the token.
    let mut _token_maker = None;
    if want(Only::Lanyard) {
        let path = configs::lanyard_module()?;
        configs.push(configs::lanyard(&mut fixtures, &path)?);
    }
    if want(Only::Softhsm) || want(Only::P11kit) {
        let softhsm = configs::softhsm(&mut fixtures)?;
        if want(Only::Softhsm) {
            configs.push(softhsm);
        } else {
            _token_maker = Some(softhsm);
        }
    }
    if want(Only::P11kit) {
        configs.push(configs::p11kit(&mut fixtures)?);
    }
    for path in &args.module {
        configs.push(configs::other(path, module_pin)?);
    }

    status("verifying one signature per configuration and mechanism");
    let mut unsupported = Vec::new();
    for c in &mut configs {
        let mut usable = Vec::new();
        for (alg, key) in std::mem::take(&mut c.keys) {
            let session = c.module.session(key.slot)?;
            let mut out = vec![0u8; alg.signature_len()];
            let input = alg.input();
            match session.sign(alg, key.private, &input, &mut out) {
                Err(e) if module::CallFailed::is_mechanism_invalid(&e) => {
                    eprintln!(
                        "lanyard-bench: {}: {} is not offered ({e})",
                        c.kind.name(),
                        alg.name()
                    );
                    unsupported.push(format!("{}: {}", c.kind.name(), alg.name()));
                    continue;
                }
                result => result
                    .and_then(|n| verify::verify(alg, &key.public, &input, &out[..n]))
                    .with_context(|| format!("{}: {}", c.kind.name(), alg.name()))?,
            }
            drop(session);
            usable.push((alg, key));
        }
        c.keys = usable;
    }

    let rounds = if args.ops.is_some() {
        1
    } else {
        args.rounds.max(1)
    };
    let round_budget = match budget {
        Budget::Time(d) => Budget::Time(d / rounds as u32),
        ops => ops,
    };
    let mut measured = Vec::new();
    for round in 1..=rounds {
        status(&format!(
            "round {round}/{rounds}: OpenSSL's raw signing rate"
        ));
        let raw = raw::measure(round_budget)?;
        let mut results = Vec::new();
        for c in &configs {
            results.push(measure_config(c, round_budget, round, rounds)?);
        }
        measured.push(rounds::Round {
            raw,
            configs: results,
        });
    }
    let speed = if !args.no_openssl_speed && args.ops.is_none() {
        status("openssl speed rsa2048 ecdsap256 (for information)");
        raw::openssl_speed()
            .map_err(|e| eprintln!("lanyard-bench: openssl speed skipped: {e:#}"))
            .ok()
    } else {
        None
    };
    let (raw, mut results, mut targets) = rounds::combine(measured, speed);
    for (c, r) in configs.iter().zip(results.iter_mut()) {
        r.cold_start = cold_start(c, args.cold_runs)?;
    }
    targets.extend(report::cold_start_target(&results));
    let report = Report {
        date: now(),
        machine: report::machine(),
        budget: match budget {
            Budget::Time(d) => format!("{:.1} s", d.as_secs_f64() / rounds as f64),
            Budget::Ops(n) => format!("{n} ops"),
        },
        rounds,
        raw,
        configs: results,
        unsupported,
        targets,
    };
    println!("{}", report::render(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(configs);
    drop(fixtures);
    Ok(())
}

fn measure_config(
    c: &Config,
    budget: Budget,
    round: usize,
    rounds: usize,
) -> anyhow::Result<ConfigResult> {
    let name = c.kind.name();
    let mut mechanisms = Vec::new();
    for (alg, key) in &c.keys {
        status(&format!(
            "round {round}/{rounds}: {name}: {} with 1 and 2 threads",
            alg.name()
        ));
        let one_thread = measure::run(&c.module, key, &c.pin, *alg, 1, budget)?;
        let two_threads = measure::run(&c.module, key, &c.pin, *alg, 2, budget)?;
        mechanisms.push(AlgResult {
            alg: *alg,
            verified: true,
            scaling: two_threads.ops_per_sec / one_thread.ops_per_sec.max(1e-9),
            one_thread,
            two_threads,
        });
    }
    Ok(ConfigResult {
        name,
        module: c.module.path.display().to_string(),
        mechanisms,
        first_logins: c.first_logins.clone(),
        cold_start: None,
    })
}

/// Cold start of `c`, signing with ECDSA where there is a key (the cheapest
/// signature: what is measured is the start, not the arithmetic).
fn cold_start(c: &Config, runs: usize) -> anyhow::Result<Option<cold_start::ColdStart>> {
    let first = c
        .keys
        .iter()
        .find(|(a, _)| *a == Alg::Ecdsa)
        .or_else(|| c.keys.first());
    let Some((alg, key)) = first.filter(|_| runs > 0) else {
        return Ok(None);
    };
    status(&format!("{}: cold start ({runs} processes)", c.kind.name()));
    cold_start::measure(&c.module.path, &key.token, &c.pin, *alg, runs).map(Some)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}
