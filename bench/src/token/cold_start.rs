//! Cold start: a new process (this binary, `lanyard-bench token cold-start`)
//! that loads the module, C_Initialize, C_Login, and makes its first C_Sign,
//! timed by the parent from spawn to the child's "signed" line. For Lanyard
//! the card is already unlocked by the bench process (another application),
//! so the child's login must not pay Argon2id again.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use super::alg::Alg;
use super::module::Module;

/// Environment variable carrying the PIN to the child (not its argv).
const PIN_ENV: &str = "LANYARD_BENCH_PIN";

/// Arguments of the hidden `cold-start` child.
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    /// The module to load.
    #[arg(long)]
    module: PathBuf,
    /// The token's label.
    #[arg(long)]
    token: String,
    /// ecdsa, rsa-pkcs or rsa-pss.
    #[arg(long)]
    alg: String,
}

/// What the child reports of its own steps, microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildSteps {
    /// dlopen + C_Initialize.
    pub init_us: f64,
    /// C_OpenSession + C_Login.
    pub login_us: f64,
    /// Finding the key + C_SignInit + C_Sign.
    pub sign_us: f64,
}

/// Cold-start figures of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    /// The mechanism of the first signature.
    pub alg: Alg,
    /// Runs made.
    pub runs: usize,
    /// Median spawn → first signature, milliseconds.
    pub median_ms: f64,
    /// Fastest run, milliseconds.
    pub min_ms: f64,
    /// The child's own steps in the median run.
    pub steps: ChildSteps,
}

/// The child: signs once and prints its steps as one JSON line.
pub fn child(args: ChildArgs) -> anyhow::Result<()> {
    let alg = Alg::parse(&args.alg).ok_or_else(|| anyhow!("unknown --alg {}", args.alg))?;
    let pin = std::env::var(PIN_ENV).map_err(|_| anyhow!("{PIN_ENV} is not set"))?;
    let t0 = Instant::now();
    let module = Module::load(&args.module)?;
    let t1 = Instant::now();
    let slot = module.slot_by_label(&args.token)?;
    let session = module.session(slot)?;
    session.login(&pin)?;
    let t2 = Instant::now();
    let (key, _) = session
        .find_private(alg)?
        .ok_or_else(|| anyhow!("no {} key on {:?}", alg.name(), args.token))?;
    let mut out = vec![0u8; alg.signature_len()];
    session.sign(alg, key, &alg.input(), &mut out)?;
    let t3 = Instant::now();
    let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
    let steps = ChildSteps {
        init_us: us(t0, t1),
        login_us: us(t1, t2),
        sign_us: us(t2, t3),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&steps)?)?;
    stdout.flush()?;
    Ok(())
}

/// Spawns the child `runs` times and keeps the median.
pub fn measure(
    module: &Path,
    token: &str,
    pin: &str,
    alg: Alg,
    runs: usize,
) -> anyhow::Result<ColdStart> {
    // The running binary itself, even if a rebuild replaced the file meanwhile
    // (exec of /proc/self/exe happens in the forked copy of this process).
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().context("cannot find the running lanyard-bench")?
    };
    let mut samples: Vec<(f64, ChildSteps)> = Vec::new();
    for _ in 0..runs.max(1) {
        let mut cmd = Command::new(&exe);
        cmd.args(["token", "cold-start", "--module"])
            .arg(module)
            .args(["--token", token, "--alg", alg.arg()])
            .env(PIN_ENV, pin)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().context("cannot spawn the cold-start child")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("child without stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        let output = child.wait_with_output()?;
        if !output.status.success() || line.trim().is_empty() {
            bail!(
                "cold-start child failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let steps: ChildSteps = serde_json::from_str(line.trim())
            .with_context(|| format!("cold-start child printed {line:?}"))?;
        samples.push((elapsed, steps));
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let min_ms = samples[0].0;
    let (median_ms, steps) = samples.swap_remove(samples.len() / 2);
    Ok(ColdStart {
        alg,
        runs: runs.max(1),
        median_ms,
        min_ms,
        steps,
    })
}
