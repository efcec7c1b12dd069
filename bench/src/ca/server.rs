//! A real CA for the benchmark: `lanyard-ca init` (P-384 issuing key, P-256
//! server TLS key) on SQLite or a fresh PostgreSQL database, enrolment codes
//! issued through the CA library as `admin issue-card --dir` does, then
//! `lanyard-ca serve` on 127.0.0.1:0 with its logs in a file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use lanyard_ca::admin::cards::{issue, NewCard};
use lanyard_ca::admin::Caller;
use lanyard_ca::ca_dir::CaDir;
use lanyard_ca::config::CaConfig;
use lanyard_ca::store::Store;
use lanyard_test_support::process::{owned_command, spawn_owned, stop_child};
use lanyard_test_support::PgDatabase;

/// How long `serve` may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which database the CA keeps its records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// DIR/ca.db.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `scripts/postgres.sh`.
    Postgres,
}

impl DbKind {
    /// "SQLite" or "PostgreSQL".
    pub fn label(self) -> &'static str {
        match self {
            DbKind::Sqlite => "SQLite",
            DbKind::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh PostgreSQL database, or a clear error (not a panic) when there is none.
pub fn postgres_database() -> Result<PgDatabase> {
    // The test-support helper panics with an explanation; turn it into an error.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(PgDatabase::create);
    std::panic::set_hook(hook);
    made.map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown reason".into());
        anyhow!("PostgreSQL is unavailable for the benchmark: {why}")
    })
}

/// One enrolment code for a card issued before the timed part (a secret: never printed).
pub struct Code(pub zeroize::Zeroizing<String>);

/// A CA directory made by `init`, and its `serve` process once started.
pub struct CaServer {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    url: String,
    child: Option<Child>,
    _pg: Option<PgDatabase>,
}

fn lanyard_ca_bin() -> PathBuf {
    // Next to this binary (target/release/lanyard-bench), else the release directory.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let here = dir.join("lanyard-ca");
        if here.is_file() && dir.ends_with("release") {
            return here;
        }
    }
    lanyard_test_support::bin_path("lanyard-ca")
}

impl CaServer {
    /// `lanyard-ca init` in a new temporary directory on `db`.
    pub fn init(db: DbKind) -> Result<CaServer> {
        let tmp = tempfile::Builder::new()
            .prefix("lanyard-bench-ca.")
            .tempdir()
            .context("cannot create a temporary directory for the CA")?;
        let dir = tmp.path().join("ca");
        let pg = match db {
            DbKind::Sqlite => None,
            DbKind::Postgres => Some(postgres_database()?),
        };
        let mut cmd = Command::new(lanyard_ca_bin());
        cmd.args(["init", "--org", "Lanyard Bench"])
            .arg("--dir")
            .arg(&dir);
        if let Some(pg) = &pg {
            // Through the environment: the password stays out of the process list.
            cmd.env("LANYARD_CA_DATABASE", pg.url());
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .context("cannot run lanyard-ca init")?;
        if !out.status.success() {
            bail!(
                "lanyard-ca init failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(CaServer {
            _tmp: tmp,
            dir,
            url: String::new(),
            child: None,
            _pg: pg,
        })
    }

    /// Issues `n` cards with enrolment codes, as `admin issue-card --dir` does
    /// (same library call, audited as the host user), before `serve` runs.
    pub async fn issue_codes(&self, n: usize) -> Result<Vec<Code>> {
        let dir = CaDir::new(&self.dir);
        let config = CaConfig::load(&dir.config())?;
        let store = Store::open_configured(&dir, &config).await?;
        let caller = Caller::host();
        let mut codes = Vec::with_capacity(n);
        for i in 0..n {
            let card = NewCard {
                holder_name: format!("Bench Clinician {i}"),
                user_id: format!("{:012}", 500_000_000_000u64 + i as u64),
                role: "R8000".into(),
                valid_hours: None,
            };
            let issued = issue(&store, &config, &caller, &card)
                .await
                .with_context(|| format!("issuing bench card {i}"))?;
            codes.push(Code(issued.code.grouped()));
        }
        store.close().await;
        Ok(codes)
    }

    /// Starts `lanyard-ca serve` on 127.0.0.1:0 (logs at `info`, as deployed,
    /// into serve.log) with `max_concurrent_issuance`.
    pub fn serve(&mut self, max_concurrent_issuance: u32) -> Result<()> {
        let log = std::fs::File::create(self.log_path()).context("cannot create serve.log")?;
        let mut cmd = owned_command(lanyard_ca_bin());
        cmd.arg("serve")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env(
                "LANYARD_CA_MAX_CONCURRENT_ISSUANCE",
                max_concurrent_issuance.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = spawn_owned(cmd).context("cannot start lanyard-ca serve")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("lanyard-ca serve has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep reading so the pipe never fills.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => {
                self.url = url;
                self.child = Some(child);
                Ok(())
            }
            Err(_) => {
                stop_child(&mut child, Duration::from_secs(2));
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                bail!(
                    "lanyard-ca serve did not start within {START_TIMEOUT:?} (is {} built from this \
                     tree? cargo build --release -p lanyard-ca -p lanyard-bench):\n{log}",
                    lanyard_ca_bin().display()
                )
            }
        }
    }

    /// `https://127.0.0.1:PORT` once serving.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// root.pem, what clients trust.
    pub fn root_pem(&self) -> Result<Vec<u8>> {
        let path = self.dir.join("root.pem");
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// CPU seconds `serve` has used so far (user + system, all threads), from
    /// /proc: on a shared machine the CA's own cost per request is what
    /// stays comparable between runs.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
        // Linux reports them in USER_HZ, 100 on every architecture it runs on.
        Some((ticks(11)? + ticks(12)?) / 100.0)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }
}

impl Drop for CaServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}
