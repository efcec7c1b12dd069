//! A real PostgreSQL for tests: the server that `scripts/postgres.sh` starts (once per
//! process, or `LANYARD_TEST_PG_URL`), a fresh database per test that is dropped
//! afterwards, and the choice of backend for CA tests (`LANYARD_TEST_DB`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::paths::repo_root;
use crate::tools::in_ci;

/// Environment variable choosing the CA tests' database: `sqlite` (default) or `postgres`.
pub const BACKEND_ENV: &str = "LANYARD_TEST_DB";
/// Environment variable with a ready server's base URL (`postgres://USER:PASSWORD@HOST:PORT/`);
/// when set, `scripts/postgres.sh` is not run.
pub const URL_ENV: &str = "LANYARD_TEST_PG_URL";

/// Which database the CA under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// The CA's own `ca.db` file.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

impl TestBackend {
    /// The backend `LANYARD_TEST_DB` names: unset or `sqlite` → SQLite, `postgres` →
    /// PostgreSQL; any other value panics (a typo must not silently test SQLite).
    pub fn from_env() -> TestBackend {
        match std::env::var(BACKEND_ENV) {
            Err(_) => TestBackend::Sqlite,
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "sqlite" => TestBackend::Sqlite,
                "postgres" | "postgresql" => TestBackend::Postgres,
                other => panic!("{BACKEND_ENV}={other:?}: expected `sqlite` or `postgres`"),
            },
        }
    }
}

/// The parts of the server's base URL.
#[derive(Clone)]
struct Server {
    user: String,
    password: String,
    host: String,
    port: String,
}

impl Server {
    /// Parses `postgres://USER:PASSWORD@HOST:PORT/` (anything after the slash is ignored).
    fn parse(url: &str) -> Result<Server, String> {
        let rest = url
            .trim()
            .strip_prefix("postgres://")
            .or_else(|| url.trim().strip_prefix("postgresql://"))
            .ok_or("not a postgres:// URL")?;
        let rest = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = rest.rsplit_once('@').ok_or("no USER:PASSWORD@ part")?;
        let (user, password) = userinfo.split_once(':').ok_or("no password")?;
        let (host, port) = hostport.rsplit_once(':').ok_or("no :PORT")?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !(ok(user) && ok(password) && ok(host) && port.chars().all(|c| c.is_ascii_digit())) {
            return Err(
                "unexpected characters (USER, PASSWORD, HOST: [A-Za-z0-9._-], PORT: digits)".into(),
            );
        }
        Ok(Server {
            user: user.into(),
            password: password.into(),
            host: host.into(),
            port: port.into(),
        })
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{database}",
            self.user, self.password, self.host, self.port
        )
    }

    /// Runs `sql` with psql on `database`; Ok(stdout) or Err(stderr). The password goes
    /// through the environment, and neither it nor the command line is ever printed.
    fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h", &self.host, "-p", &self.port, "-U", &self.user, "-d", database,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "20")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// Runs `scripts/postgres.sh`, or reads `LANYARD_TEST_PG_URL`, once per process.
fn server() -> Result<&'static Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let url = match std::env::var(URL_ENV) {
                Ok(url) => url,
                Err(_) => start_server()?,
            };
            Server::parse(&url).map_err(|e| format!("the PostgreSQL URL is unusable: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn start_server() -> Result<String, String> {
    let script = repo_root().join("scripts").join("postgres.sh");
    // stderr goes straight to the test's stderr (progress, and the reason for a failure).
    let mut child = Command::new(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let mut url = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut url)
            .map_err(|e| format!("cannot read the output of {}: {e}", script.display()))?;
    }
    let status = child
        .wait()
        .map_err(|e| format!("{} did not finish: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); it needs root and Debian's postgresql package",
            script.display()
        ));
    }
    Ok(url.trim().to_string())
}

/// Whether the test PostgreSQL server can be used. Missing: panics under `CI=true`;
/// otherwise prints a loud SKIP line and returns false so the caller can `return`.
pub fn require_postgres() -> bool {
    match server() {
        Ok(_) => true,
        Err(reason) if in_ci() => {
            panic!("PostgreSQL is required and CI=true, but it is unavailable: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "\n*** SKIP: PostgreSQL is unavailable ({reason}); this test did NOT run. \
                 Run scripts/postgres.sh as root. Under CI=true this is a failure. ***\n"
            );
            false
        }
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if let Err(e) = read {
        panic!("cannot read /dev/urandom for a database name: {e}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh PostgreSQL database (`lanyard_t_<random>`, owned by the test role), dropped
/// (best effort, closing any connection still open) when this value is dropped.
pub struct PgDatabase {
    server: Server,
    name: String,
}

impl PgDatabase {
    /// Creates a new database; panics when PostgreSQL is unavailable or refuses.
    pub fn create() -> PgDatabase {
        let server = match server() {
            Ok(s) => s.clone(),
            Err(reason) => panic!(
                "PostgreSQL is unavailable: {reason}\n(run scripts/postgres.sh as root, or set \
                 {URL_ENV}=postgres://USER:PASSWORD@HOST:PORT/)"
            ),
        };
        let name = format!("lanyard_t_{}", random_suffix());
        if let Err(e) = server.psql("postgres", &format!("CREATE DATABASE {name}")) {
            panic!("cannot create the test database {name}: {e}");
        }
        PgDatabase { server, name }
    }

    /// [`PgDatabase::create`], or `None` after a loud SKIP when PostgreSQL is unavailable
    /// and this is not CI (see [`require_postgres`]).
    pub fn create_or_skip() -> Option<PgDatabase> {
        require_postgres().then(PgDatabase::create)
    }

    /// The database's URL, with the password: give it to the CA, never print it.
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password in [`PgDatabase::url`], so a test can check it is never shown.
    pub fn password(&self) -> &str {
        &self.server.password
    }

    /// Runs `sql` in this database with psql (unaligned, tuples only): its output, or
    /// a panic with psql's error.
    pub fn psql(&self, sql: &str) -> String {
        self.server
            .psql(&self.name, sql)
            .unwrap_or_else(|e| panic!("psql on {}: {sql}\n{e}", self.name))
    }
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgDatabase({})", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.server.psql("postgres", &sql) {
            eprintln!(
                "warning: could not drop the test database {}: {e}",
                self.name
            );
        }
    }
}

/// The database of one test CA, chosen by `LANYARD_TEST_DB`: the CA's own SQLite
/// file, or a fresh PostgreSQL database given to `lanyard-ca init --database`.
#[derive(Debug)]
pub enum TestDb {
    /// SQLite: `init` makes `ca.db` in the CA directory.
    Sqlite,
    /// A fresh PostgreSQL database, dropped with this value.
    Postgres(PgDatabase),
}

impl TestDb {
    /// The database for `LANYARD_TEST_DB` (see [`TestBackend::from_env`]).
    pub fn from_env() -> TestDb {
        TestDb::new(TestBackend::from_env())
    }

    /// A database of `backend` (PostgreSQL: a new database; panics if unavailable,
    /// because the caller asked for it explicitly).
    pub fn new(backend: TestBackend) -> TestDb {
        match backend {
            TestBackend::Sqlite => TestDb::Sqlite,
            TestBackend::Postgres => TestDb::Postgres(PgDatabase::create()),
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> TestBackend {
        match self {
            TestDb::Sqlite => TestBackend::Sqlite,
            TestDb::Postgres(_) => TestBackend::Postgres,
        }
    }

    /// The `database` setting for the CA: `None` for SQLite, the URL for PostgreSQL.
    pub fn url(&self) -> Option<String> {
        match self {
            TestDb::Sqlite => None,
            TestDb::Postgres(db) => Some(db.url()),
        }
    }

    /// Arguments to add to `lanyard-ca init`: `[]` or `["--database", URL]`.
    pub fn init_args(&self) -> Vec<String> {
        match self.url() {
            None => Vec::new(),
            Some(url) => vec!["--database".into(), url],
        }
    }

    /// The PostgreSQL database, if this is one.
    pub fn postgres(&self) -> Option<&PgDatabase> {
        match self {
            TestDb::Sqlite => None,
            TestDb::Postgres(db) => Some(db),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_parsed_and_rebuilt() {
        let s = Server::parse("postgres://lanyard:abc123@127.0.0.1:5432/\n").unwrap();
        assert_eq!(s.url("x"), "postgres://lanyard:abc123@127.0.0.1:5432/x");
        assert!(Server::parse("mysql://a:b@h:1/").is_err());
        assert!(Server::parse("postgres://a@h:1/").is_err());
        assert!(Server::parse("postgres://a:b@h/").is_err());
        assert!(Server::parse("postgres://a:b'c@h:1/").is_err());
    }

    #[test]
    fn a_fresh_database_is_created_and_dropped() {
        let Some(db) = PgDatabase::create_or_skip() else {
            return;
        };
        let name = db.name().to_string();
        assert!(name.starts_with("lanyard_t_") && name.len() == 26, "{name}");
        assert_eq!(db.psql("SELECT current_database()"), name);
        db.psql("CREATE TABLE t (x BIGINT)");
        let server = db.server.clone();
        let other = PgDatabase::create();
        assert_ne!(other.name(), name);
        drop(db);
        let left = server
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
            )
            .unwrap();
        assert_eq!(left, "0");
    }
}
