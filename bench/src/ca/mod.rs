//! `lanyard-bench ca` (being built).

/// Options of `lanyard-bench ca`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lanyard-bench ca is not built yet")
}
