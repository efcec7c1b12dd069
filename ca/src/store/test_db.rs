//! Stores for unit tests, on the backend `LANYARD_TEST_DB` names (SQLite by
//! default, `postgres` for a fresh database on the test PostgreSQL server), so
//! every store test is written once and runs on both.

use lanyard_test_support::{TestBackend, TestDb};

use super::{DbLocation, Store};

/// What keeps a test store's database alive: the SQLite file's directory or
/// the PostgreSQL database (dropped with it).
#[derive(Debug)]
pub(crate) struct TestDbGuard {
    _tmp: tempfile::TempDir,
    db: TestDb,
    location: DbLocation,
}

impl TestDbGuard {
    /// Which backend the store runs on.
    pub(crate) fn backend(&self) -> TestBackend {
        self.db.backend()
    }

    /// Where the database is, to open a second store on it (as a second CA
    /// process would).
    pub(crate) fn location(&self) -> &DbLocation {
        &self.location
    }
}

/// A new, migrated, empty store on the backend `LANYARD_TEST_DB` names.
/// Keep the guard for as long as the store is used.
pub(crate) async fn test_store() -> (TestDbGuard, Store) {
    let tmp = match tempfile::tempdir() {
        Ok(tmp) => tmp,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let db = TestDb::from_env();
    let location = match db.url() {
        None => DbLocation::Sqlite(tmp.path().join("ca.db")),
        Some(url) => DbLocation::Postgres(url),
    };
    let store = match Store::create(&location).await {
        Ok(store) => store,
        Err(e) => panic!("cannot create the test store on {location}: {e}"),
    };
    let guard = TestDbGuard {
        _tmp: tmp,
        db,
        location,
    };
    (guard, store)
}
