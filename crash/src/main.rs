//! `lanyard-crash`: the crash-consistency harness. Real `lanyard-ca` (SQLite) and
//! `lanyardd` fault-injection builds, CYCLES cycles of sign / change-pin / wrong-PIN /
//! renew / check-in / enrol with kill -9 at random times and at LANYARD_FAULT points.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use rand::{Rng, SeedableRng};

mod checks;
mod cycle;
mod model;
mod ops;
mod plan;
mod procs;
mod report;

use cycle::World;
use model::{new_pin, Card};
use procs::{CaProc, DaemonProc};
use report::Report;

/// Kill -9 the daemon and the CA between and inside operations, and check
/// after every restart that nothing acknowledged was lost.
#[derive(Parser)]
#[command(name = "lanyard-crash", version)]
struct Cli {
    /// Cycles to run.
    #[arg(long, default_value_t = 1000)]
    cycles: u64,
    /// Random seed (printed; the same seed replays the same plan).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Print each cycle's plan and outcome on stderr.
    #[arg(long)]
    verbose: bool,
    /// Keep the working directory (logs, CA, card store) and print its path.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            if cli.json {
                eprint!("{}", report.table());
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("lanyard-crash: {e}"),
                }
            } else {
                print!("{}", report.table());
            }
            if report.violations.is_empty() && report.unexpected_failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lanyard-crash: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<Report> {
    let started = Instant::now();
    let seed = cli.seed.unwrap_or_else(|| rand::thread_rng().gen());
    // Kept when the run fails or with --keep (logs, CA, card store for a post-mortem).
    let base = tempfile::Builder::new()
        .prefix("lanyard-crash.")
        .tempdir()?
        .keep();
    eprintln!("lanyard-crash: working directory {}", base.display());
    let scratch = base.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let mut ca = CaProc::init(&base)?;
    ca.start(None)?;
    let mut daemon = DaemonProc::new(&base)?;
    anyhow::ensure!(daemon.start(None)?, "lanyardd-fault did not start");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cards = Vec::new();
    for n in 0..2u32 {
        let holder = format!("Crash I{n}");
        let (card_id, code) = ops::issue_card(&ca, &holder, &format!("5550000{n:05}"))?;
        let pin = new_pin(&mut rng, &[]);
        let out = ops::enroll(&daemon, ca.url(), &ca.dir().join("root.pem"), &code, &pin);
        anyhow::ensure!(
            out == ops::Outcome::Acked,
            "initial enrolment failed: {out:?}"
        );
        cards.push(Card {
            card_id,
            holder,
            pin,
            pending_pin: None,
            acked_failures: 0,
        });
    }
    let mut world = World {
        daemon,
        ca,
        cards,
        scratch: &scratch,
        rng,
        report: Report {
            seed,
            ..Report::default()
        },
        enrolled: 0,
        verbose: cli.verbose,
    };
    for i in 0..cli.cycles {
        world.cycle().with_context(|| {
            format!(
                "cycle {i} (daemon log {})",
                world.daemon.log_path().display()
            )
        })?;
        if (i + 1) % 50 == 0 {
            eprintln!(
                "lanyard-crash: {} cycles, {} kills, {} violations",
                i + 1,
                world.report.total_kills(),
                world.report.violations.len()
            );
        }
    }
    // A last full check on a clean restart of both.
    world.ca.stop();
    world.ca.start(None)?;
    world.daemon.stop();
    anyhow::ensure!(world.daemon.start(None)?, "lanyardd-fault did not start");
    checks::daemon_invariants(&world.daemon, &mut world.cards, &scratch, &mut world.report)?;
    checks::ca_invariants(
        world.ca.dir(),
        &world.daemon,
        &world.cards,
        &mut world.report,
    )?;
    world.daemon.stop();
    world.ca.stop();
    world.report.seconds = started.elapsed().as_secs_f64();
    if !cli.keep
        && world.report.violations.is_empty()
        && world.report.unexpected_failures.is_empty()
    {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(world.report)
}
