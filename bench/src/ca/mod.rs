//! `lanyard-bench ca`: the real `lanyard-ca serve` over TLS on 127.0.0.1 under
//! N concurrent enrolling then renewing clients, on SQLite and PostgreSQL,
//! next to the CA key's raw signing rate; then the renewal-storm simulation.

mod csrs;
mod load;
mod raw;
mod report;
mod server;
pub mod storm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use report::{CaReport, DbReport, PhaseReport};
use server::{CaServer, DbKind};

/// Which databases to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbChoice {
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only (scripts/postgres.sh, or LANYARD_TEST_PG_URL).
    Postgres,
    /// Both, one after the other.
    Both,
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Options of `lanyard-bench ca`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Databases to measure.
    #[arg(long, value_enum, default_value = "both")]
    db: DbChoice,
    /// Enrolments per database, then as many renewals (0: storm only, needs --capacity).
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// The CA's max_concurrent_issuance.
    #[arg(long, default_value_t = lanyard_ca::config::DEFAULT_MAX_CONCURRENT_ISSUANCE)]
    max_concurrent_issuance: u32,
    /// Seconds for each raw signing measurement.
    #[arg(long, default_value_t = 3.0)]
    raw_secs: f64,
    /// Cards in the storm simulation (the NHS smartcard population).
    #[arg(long, default_value_t = 1_400_000)]
    storm_cards: u32,
    /// Days simulated.
    #[arg(long, default_value_t = 120)]
    storm_days: u32,
    /// Days the mass enrolment takes.
    #[arg(long, default_value_t = 21)]
    enrol_days: u32,
    /// Hours the CA is down in the second storm run.
    #[arg(long, default_value_t = 24)]
    outage_hours: u32,
    /// CA capacity for the storm, requests/s (default: the slowest measured renewal rate).
    #[arg(long, value_name = "N")]
    capacity: Option<f64>,
    /// Skip the storm simulation.
    #[arg(long)]
    no_storm: bool,
    /// Seed of the storm's random draws.
    #[arg(long, default_value_t = 20_261_125)]
    seed: u64,
    /// JSON results.
    #[arg(long, value_name = "FILE", default_value_os_t = results_dir().join("ca.json"))]
    json: PathBuf,
    /// Markdown table.
    #[arg(long, value_name = "FILE", default_value_os_t = results_dir().join("ca.md"))]
    table: PathBuf,
    /// PNG plot of the storm.
    #[arg(long, value_name = "FILE", default_value_os_t = results_dir().join("storm.png"))]
    plot: PathBuf,
}

/// Runs the benchmark.
pub fn run(args: Args) -> Result<()> {
    if args.ops == 0 && args.capacity.is_none() && !args.no_storm {
        bail!("--ops 0 measures nothing: give the storm a --capacity N (requests/s)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    eprintln!("measuring the CA key's raw signing rate …");
    let raw = raw::measure(Duration::from_secs_f64(args.raw_secs.max(0.1)))?;
    let kinds: &[DbKind] = match (args.ops, args.db) {
        (0, _) => &[],
        (_, DbChoice::Sqlite) => &[DbKind::Sqlite],
        (_, DbChoice::Postgres) => &[DbKind::Postgres],
        (_, DbChoice::Both) => &[DbKind::Sqlite, DbKind::Postgres],
    };
    let mut databases = Vec::new();
    for &kind in kinds {
        databases.push(runtime.block_on(measure_db(&args, kind))?);
    }
    let storm = if args.no_storm {
        None
    } else {
        let capacity = match args.capacity {
            Some(c) if c > 0.0 => c,
            Some(c) => bail!("--capacity must be above 0, not {c}"),
            None => databases
                .iter()
                .map(|d| d.renew.requests_per_s)
                .fold(f64::INFINITY, f64::min),
        };
        if !capacity.is_finite() || capacity <= 0.0 {
            bail!("no renewal succeeded, so there is no CA capacity for the storm (see the errors above)");
        }
        eprintln!(
            "simulating the renewal storm: {} cards, {} days, {capacity:.1} requests/s …",
            args.storm_cards, args.storm_days
        );
        let report = storm::run(&storm::StormParams {
            cards: args.storm_cards,
            days: args.storm_days,
            enrol_days: args.enrol_days,
            capacity,
            outage_hours: args.outage_hours,
            seed: args.seed,
        });
        storm::plot::draw(&report, &args.plot)?;
        Some(report)
    };
    let report = CaReport {
        date: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        machine: report::machine(),
        clients: args.clients,
        ops: args.ops,
        max_concurrent_issuance: args.max_concurrent_issuance,
        raw,
        databases,
        storm,
    };
    let table = report.markdown();
    println!("{table}");
    write(&args.table, table.as_bytes())?;
    let json = serde_json::to_vec_pretty(&report).context("serialising the results")?;
    write(&args.json, &json)?;
    if report.storm.is_some() {
        eprintln!("storm plot: {}", args.plot.display());
    }
    Ok(())
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// One database: init, codes and client material (untimed), serve, enrol, renew.
async fn measure_db(args: &Args, kind: DbKind) -> Result<DbReport> {
    eprintln!(
        "{}: preparing the CA, {} codes and client keys …",
        kind.label(),
        args.ops
    );
    let mut ca = CaServer::init(kind)?;
    let codes = ca.issue_codes(args.ops).await?;
    let devices = Arc::new(tokio::task::block_in_place(|| csrs::prepare(args.ops))?);
    ca.serve(args.max_concurrent_issuance)?;
    let pem = ca.root_pem()?;
    eprintln!(
        "{}: {} enrolments, {} clients …",
        kind.label(),
        args.ops,
        args.clients
    );
    let cpu0 = ca.cpu_seconds();
    let (mut enrol, enrolled) =
        load::enrol(ca.url(), &pem, codes, devices.clone(), args.clients).await?;
    let cpu1 = ca.cpu_seconds();
    eprintln!("{}: {} renewals …", kind.label(), enrolled.len());
    let mut renew = load::renew(ca.url(), &pem, enrolled, devices, args.clients).await?;
    let cpu2 = ca.cpu_seconds();
    enrol.ca_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    renew.ca_cpu_s = cpu1.zip(cpu2).map(|(a, b)| b - a);
    drop(ca);
    Ok(DbReport {
        db: kind,
        enrol: PhaseReport::of(enrol),
        renew: PhaseReport::of(renew),
    })
}
