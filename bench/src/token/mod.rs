//! `lanyard-bench token` (being built).

/// Options of `lanyard-bench token`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("lanyard-bench token is not built yet")
}
