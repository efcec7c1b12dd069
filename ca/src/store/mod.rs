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

pub mod admin;
mod derive;
mod enrolment;
mod lifecycle;
#[cfg(test)]
mod test_db;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};
use time::OffsetDateTime;

use crate::audit::{self, AuditEvent};
use crate::error::CaError;

pub use admin::{
    ApprovalRecord, AuditRecord, CardDetail, CardSummary, CertificateSummary, OperatorRecord,
    ResetStatus, StateFilter,
};
pub use derive::{ChallengeUse, DerivedFrom, DerivedIssuance};
pub use enrolment::{CardRecord, CertPurpose, CodeLookup, IssuedCert, PendingEnrolment};
pub use lifecycle::{
    CardLifecycle, CardState, CertRecord, CrlChangeMarker, LifecycleTx, ResetCodeRecord, StoredCrl,
};
#[cfg(test)]
pub(crate) use test_db::{test_store, TestDbGuard};

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

/// A pool of at most `max` connections to `options`, each set up for `backend`.
async fn open_pool(
    options: AnyConnectOptions,
    backend: Backend,
    max: u32,
    location: &DbLocation,
) -> Result<AnyPool, CaError> {
    AnyPoolOptions::new()
        .max_connections(max)
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
                } else {
                    // Named for a DBA's pg_stat_activity; a stuck writer
                    // fails others after the same wait as SQLite's.
                    conn.execute("SET application_name = 'lanyard-ca'; SET lock_timeout = '15s';")
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
        })
}

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
            DbLocation::Sqlite(_) => write!(f, "SQLite {}", self.redacted()),
            DbLocation::Postgres(_) => write!(f, "PostgreSQL {}", self.redacted()),
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
            // Not echoed: a mistyped URL may still hold a password.
            Some(_) => Err(CaError::BadDatabase(
                "the database must be a postgres://USER:PASSWORD@HOST:PORT/DB URL \
                 (leave the setting out for SQLite in the CA directory)"
                    .into(),
            )),
        }
    }

    /// The SQLite path, or the PostgreSQL URL with its password replaced by
    /// `****` (and nothing of it if it does not parse): safe to print and log.
    pub fn redacted(&self) -> String {
        match self {
            DbLocation::Sqlite(path) => path.display().to_string(),
            DbLocation::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() && u.set_password(Some("****")).is_err() {
                        return "(unprintable URL)".into();
                    }
                    u.to_string()
                }
                Err(_) => "(unparsable URL)".into(),
            },
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
    /// SQLite: one connection that every write transaction of this process
    /// queues for (woken at once when it frees, where SQLite's own busy
    /// handler would poll with sleeps of up to 100 ms); PostgreSQL: `pool`.
    writer: AnyPool,
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
        let options = AnyConnectOptions::from_url(&url).map_err(|e| CaError::DbConnect {
            location: location.to_string(),
            reason: e.to_string(),
        })?;
        let pool = open_pool(options.clone(), backend, MAX_CONNECTIONS, location).await?;
        let writer = match backend {
            Backend::Sqlite => open_pool(options, backend, 1, location).await?,
            Backend::Postgres => pool.clone(),
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&pool).await?;
        Ok(Store {
            pool,
            writer,
            backend,
        })
    }

    /// Whether the database already holds a CA's records (audit rows or
    /// cards): `init` refuses such a database rather than mix two CAs.
    pub async fn holds_records(&self) -> Result<bool, CaError> {
        use sqlx::Row;
        let row =
            sqlx::query("SELECT (SELECT COUNT(*) FROM audit) + (SELECT COUNT(*) FROM cards) AS n")
                .fetch_one(&self.pool)
                .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
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
        self.writer.close().await;
        self.pool.close().await;
    }

    /// A write transaction, serialised against every other writer: SQLite's
    /// write lock taken at once (`BEGIN IMMEDIATE`), or on PostgreSQL a
    /// transaction-scoped advisory lock shared by all CA replicas.
    pub async fn begin_write(&self) -> Result<Tx, CaError> {
        match self.backend {
            Backend::Sqlite => Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?),
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

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_test_support::{PgDatabase, TestBackend};
    use sqlx::Row;

    use crate::audit::AuditAction;

    fn event() -> AuditEvent {
        AuditEvent {
            actor: "admin:test".into(),
            action: AuditAction::CaInitialised,
            card_id: None,
            peer: None,
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn locations_never_show_a_password() {
        let default = Path::new("/var/lib/lanyard-ca/ca.db");
        let url = "postgres://lanyard:s3cret-pw@db.example:5432/ca";
        let loc = DbLocation::from_setting(Some(url), default).unwrap();
        assert_eq!(loc, DbLocation::Postgres(url.into()));
        for shown in [loc.to_string(), format!("{loc:?}"), loc.redacted()] {
            assert!(!shown.contains("s3cret-pw"), "{shown}");
            assert!(shown.contains("lanyard:****@db.example:5432/ca"), "{shown}");
        }
        let odd = DbLocation::Postgres("postgres://u:s3cret-pw@[::1/ca".into());
        assert!(!odd.to_string().contains("s3cret-pw"), "{odd}");
        assert_eq!(
            DbLocation::from_setting(None, default).unwrap(),
            DbLocation::Sqlite(default.into())
        );
        let err = DbLocation::from_setting(Some("mysql://u:s3cret-pw@h/ca"), default)
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
    }

    #[tokio::test]
    async fn the_test_store_is_on_the_backend_asked_for() {
        let (guard, store) = test_store().await;
        assert_eq!(guard.backend(), TestBackend::from_env());
        let expected = match guard.backend() {
            TestBackend::Sqlite => Backend::Sqlite,
            TestBackend::Postgres => Backend::Postgres,
        };
        assert_eq!(store.backend(), expected);
        assert!(!store.holds_records().await.unwrap());
        store.record_audit(&event()).await.unwrap();
        assert!(store.holds_records().await.unwrap());
    }

    #[tokio::test]
    async fn integers_text_and_bytes_round_trip() {
        let (_guard, store) = test_store().await;
        let der: Vec<u8> = (0..=255).collect();
        sqlx::query(
            "INSERT INTO crls (crl_number, der, this_update, next_update) VALUES ($1, $2, $3, $4)",
        )
        .bind(i64::MAX)
        .bind(&der)
        .bind(i64::MIN)
        .bind(0i64)
        .execute(store.pool())
        .await
        .unwrap();
        let row = sqlx::query(
            "SELECT crl_number, der, this_update, next_update, 1 AS one, \
                    (SELECT COUNT(*) FROM crls) AS n, CAST(NULL AS TEXT) AS absent \
             FROM crls",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(row.try_get::<i64, _>("crl_number").unwrap(), i64::MAX);
        assert_eq!(row.try_get::<Vec<u8>, _>("der").unwrap(), der);
        assert_eq!(row.try_get::<i64, _>("this_update").unwrap(), i64::MIN);
        assert_eq!(row.try_get::<i64, _>("one").unwrap(), 1);
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 1);
        assert_eq!(row.try_get::<Option<String>, _>("absent").unwrap(), None);
    }

    #[tokio::test]
    async fn crl_numbers_count_up() {
        let (_guard, store) = test_store().await;
        for expected in 1..=3 {
            let mut tx = store.begin_write().await.unwrap();
            assert_eq!(store.next_crl_number(&mut tx).await.unwrap(), expected);
            tx.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_writer_waits_for_another_process_writer() {
        let (guard, a) = test_store().await;
        // A second store on the same database, as a second CA process has.
        let b = Store::open(guard.location()).await.unwrap();
        let mut tx = a.begin_write().await.unwrap();
        audit::append(&mut tx, &event(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        let waiting = tokio::spawn(async move {
            // Chains onto A's row only if it waited for A's commit.
            b.record_audit(&event()).await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "B wrote while A held the write lock"
        );
        tx.commit().await.unwrap();
        waiting.await.unwrap().unwrap();
        assert_eq!(a.verify_audit().await.unwrap(), Ok(2));
    }

    /// (table, column) pairs of the Lanyard tables, sorted.
    async fn columns(store: &Store, sql: &str) -> Vec<(String, String)> {
        let mut cols: Vec<(String, String)> = sqlx::query(sql)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.try_get("t").unwrap(), r.try_get("c").unwrap()))
            .collect();
        cols.sort();
        cols
    }

    #[tokio::test]
    async fn both_migrations_make_the_same_tables_and_columns() {
        let Some(pg) = PgDatabase::create_or_skip() else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let lite = Store::create(&DbLocation::Sqlite(tmp.path().join("ca.db")))
            .await
            .unwrap();
        let post = Store::create(&DbLocation::Postgres(pg.url()))
            .await
            .unwrap();
        let lite_cols = columns(
            &lite,
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' AND m.name NOT LIKE '_sqlx%' \
               AND m.name <> 'crl_number_seq'",
        )
        .await;
        let post_cols = columns(
            &post,
            "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        )
        .await;
        assert!(lite_cols.len() > 40, "{lite_cols:?}");
        assert_eq!(lite_cols, post_cols);
        // SQLite's one-row counter is a sequence on PostgreSQL.
        let mut tx = post.begin_write().await.unwrap();
        assert_eq!(post.next_crl_number(&mut tx).await.unwrap(), 1);
        tx.rollback().await.unwrap();
        post.close().await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_without_showing_it() {
        let Some(pg) = PgDatabase::create_or_skip() else {
            return;
        };
        let wrong = pg.url().replace(pg.password(), "wrong-pw-4711");
        let err = Store::open(&DbLocation::Postgres(wrong))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("password authentication failed"), "{err}");
        assert!(err.contains("lanyard:****@127.0.0.1"), "{err}");
        assert!(
            !err.contains("wrong-pw-4711") && !err.contains(pg.password()),
            "{err}"
        );
        let store = Store::open(&DbLocation::Postgres(pg.url())).await.unwrap();
        assert!(!format!("{store:?}").contains(pg.password()));
        store.close().await;
    }
}
