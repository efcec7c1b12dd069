//! The CA database through sqlx's `Any` driver: SQLite (a file in the CA
//! directory, the default) or PostgreSQL (a URL shared by CA replicas), with
//! one schema made by the migrations of the same numbers in
//! `ca/migrations/sqlite` and `ca/migrations/postgres`.
//!
//! Every query is written once, with `$1`-style placeholders that both
//! drivers accept, and binds only integers, text and bytes. A write
//! transaction ([`Store::begin_write`]) is serialised on both backends, so
//! read-then-write sequences (codes, serials, the audit chain) cannot
//! interleave with another writer, even one in another CA process.

mod enrolment;
mod lifecycle;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use time::OffsetDateTime;

use crate::audit::{self, AuditEvent};
use crate::error::CaError;

pub use enrolment::{CardRecord, CodeLookup, IssuedCert, PendingEnrolment};
pub use lifecycle::{
    CardLifecycle, CardState, CertRecord, CrlChangeMarker, LifecycleTx, ResetCodeRecord, StoredCrl,
};

/// How long a writer waits for another (e.g. `admin` while `serve` runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Connections per CA process.
const MAX_CONNECTIONS: u32 = 8;

/// The PostgreSQL advisory lock every write transaction takes (any constant
/// unique to Lanyard; "LANYARD" in ASCII).
const PG_WRITE_LOCK: i64 = 0x004C_414E_5941_5244;

/// The SQLite migrations, embedded in the binary.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The PostgreSQL migrations, embedded in the binary.
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A transaction on the CA database.
pub type Tx = Transaction<'static, Any>;

/// Where the CA's database is.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host/db`).
    Postgres(String),
}

impl std::fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for DbLocation {
    /// The location without any password, for messages and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbLocation::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            DbLocation::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("****"));
                    }
                    write!(f, "PostgreSQL {u}")
                }
                Err(_) => write!(f, "PostgreSQL (unparsable URL)"),
            },
        }
    }
}

impl DbLocation {
    /// `database` from the configuration or command line, else `default_sqlite`.
    pub fn from_setting(database: Option<&str>, default_sqlite: &Path) -> Result<Self, CaError> {
        match database {
            None => Ok(DbLocation::Sqlite(default_sqlite.to_path_buf())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(DbLocation::Postgres(url.to_string()))
            }
            Some(other) => Err(CaError::BadDatabase(format!(
                "{other:?} is not a postgres:// URL (leave the setting out for SQLite)"
            ))),
        }
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The CA database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Creates the database if it does not exist (a SQLite file; a PostgreSQL
    /// database must exist already) and applies the migrations.
    pub async fn create(location: &DbLocation) -> Result<Self, CaError> {
        Self::connect(location, true).await
    }

    /// Opens an existing database and applies any new migrations.
    pub async fn open(location: &DbLocation) -> Result<Self, CaError> {
        Self::connect(location, false).await
    }

    /// Opens the database the configuration names: `database`, or else the
    /// CA directory's ca.db.
    pub async fn open_configured(
        dir: &crate::ca_dir::CaDir,
        config: &crate::config::CaConfig,
    ) -> Result<Self, CaError> {
        let location = DbLocation::from_setting(config.database.as_deref(), &dir.database())?;
        Self::open(&location).await
    }

    /// Opens the SQLite file at `path` (tests and the default location).
    pub async fn open_sqlite(path: &Path) -> Result<Self, CaError> {
        Self::open(&DbLocation::Sqlite(path.to_path_buf())).await
    }

    async fn connect(location: &DbLocation, create: bool) -> Result<Self, CaError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (url, backend) = match location {
            DbLocation::Sqlite(path) => {
                let url = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(create)
                    .to_url_lossy();
                (url, Backend::Sqlite)
            }
            DbLocation::Postgres(text) => {
                let url = url::Url::parse(text).map_err(|e| {
                    CaError::BadDatabase(format!("{location} is not a valid URL ({e})"))
                })?;
                (url, Backend::Postgres)
            }
        };
        let options = AnyConnectOptions::from_url(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets `admin` read while `serve` writes; FULL sync
                        // makes an acknowledged issuance durable.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| CaError::DbConnect {
                location: location.to_string(),
                reason: e.to_string(),
            })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for queries that need no transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection (checkpoints a SQLite WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction, serialised against every other writer: SQLite's
    /// write lock taken at once (`BEGIN IMMEDIATE`), or on PostgreSQL a
    /// transaction-scoped advisory lock shared by all CA replicas.
    pub async fn begin_write(&self) -> Result<Tx, CaError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Appends one audit record in its own transaction.
    pub async fn record_audit(&self, event: &AuditEvent) -> Result<(), CaError> {
        let mut tx = self.begin_write().await?;
        audit::append(&mut tx, event, OffsetDateTime::now_utc()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the audit chain: `Ok(rows)` or `Err(first broken seq)`.
    pub async fn verify_audit(&self) -> Result<Result<u64, i64>, CaError> {
        let mut conn = self.pool.acquire().await?;
        audit::verify_chain(&mut conn).await
    }

    /// The next CRL number, inside `tx`: a PostgreSQL sequence, or SQLite's
    /// one-row counter (safe because `tx` holds the write lock).
    pub async fn next_crl_number(&self, tx: &mut Tx) -> Result<i64, CaError> {
        use sqlx::Row;
        let row = match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "UPDATE crl_number_seq SET value = value + 1 WHERE id = 1 RETURNING value",
                )
                .fetch_one(&mut **tx)
                .await?
            }
            Backend::Postgres => {
                sqlx::query("SELECT nextval('crl_number_seq') AS value")
                    .fetch_one(&mut **tx)
                    .await?
            }
        };
        Ok(row.try_get("value")?)
    }
}
