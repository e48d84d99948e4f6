//! Test support: throwaway databases on a real PostgreSQL server.
//!
//! The server is `TEST_DATABASE_URL` when set, else `postgres://localhost/postgres`.
//! Two tiers:
//! - [`TestDb::new`] / [`TestDb::migrated`]: a database of the test's own,
//!   with a random name, dropped `WITH (FORCE)` when the guard drops; for
//!   tests that commit (migrations, seeding, the CLI, concurrency).
//! - [`with_rollback`]: a connection to a database shared by the test
//!   binary, inside a transaction that is never committed; for repository
//!   tests. The shared database is dropped when the test binary exits.
#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::sync::OnceLock;

use cruddur_db::{DatabaseUrl, admin, establish, run_migrations};
use diesel::prelude::*;

/// The server the tests use (its maintenance database).
pub fn server_url() -> DatabaseUrl {
    let raw = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres://localhost/postgres".to_owned());
    DatabaseUrl::parse(&raw).expect("TEST_DATABASE_URL is not a valid URL")
}

/// A random name that cannot collide with another test's.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A database owned by one test, dropped with it.
pub struct TestDb {
    /// The URL of the throwaway database.
    pub url: DatabaseUrl,
}

impl TestDb {
    /// A new, empty database.
    pub fn new() -> Self {
        let url = server_url().with_database(&unique_name("cruddur_test"));
        assert!(admin::create_database(&url).expect("create test database"));
        Self { url }
    }

    /// A new database with every migration applied.
    pub fn migrated() -> Self {
        let db = Self::new();
        run_migrations(&mut db.conn()).expect("migrate test database");
        db
    }

    /// A fresh connection to it.
    pub fn conn(&self) -> PgConnection {
        establish(&self.url).expect("connect to test database")
    }

    /// The database's name.
    pub fn name(&self) -> String {
        self.url.database().expect("test URL names a database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = admin::drop_database(&self.url, true) {
            eprintln!("could not drop test database {}: {e}", self.url);
        }
    }
}

static SHARED: OnceLock<DatabaseUrl> = OnceLock::new();

extern "C" fn drop_shared_database() {
    if let Some(url) = SHARED.get() {
        let _ = std::panic::catch_unwind(|| admin::drop_database(url, true));
    }
}

fn shared_url() -> &'static DatabaseUrl {
    SHARED.get_or_init(|| {
        let url = server_url().with_database(&unique_name("cruddur_test_shared"));
        admin::create_database(&url).expect("create shared test database");
        run_migrations(&mut establish(&url).expect("connect")).expect("migrate shared database");
        // Statics are never dropped; the C exit handler is the one hook that
        // runs after the last test, so the shared database does not outlive
        // the test binary.
        #[expect(
            unsafe_code,
            reason = "registering a plain extern \"C\" fn with atexit"
        )]
        // SAFETY: `drop_shared_database` is a valid `extern "C" fn()` that
        // catches panics, as atexit requires.
        unsafe {
            libc::atexit(drop_shared_database);
        }
        url
    })
}

/// Runs `f` on a connection to the shared migrated database inside a
/// transaction that is rolled back.
pub fn with_rollback<T>(f: impl FnOnce(&mut PgConnection) -> T) -> T {
    let mut conn = establish(shared_url()).expect("connect to shared test database");
    conn.begin_test_transaction()
        .expect("begin test transaction");
    f(&mut conn)
}

/// Inserts a user with a unique handle and returns it.
pub fn user(conn: &mut PgConnection, display_name: &str) -> cruddur_db::User {
    use cruddur_db::schema::users;
    let handle = unique_name("h");
    diesel::insert_into(users::table)
        .values(cruddur_db::NewUser {
            display_name,
            handle: &handle,
            email: "someone@example.com",
            cognito_user_id: "test-sub",
        })
        .returning(cruddur_db::User::as_returning())
        .get_result(conn)
        .expect("insert user")
}

/// Row counts of (users, activities).
pub fn counts(conn: &mut PgConnection) -> (i64, i64) {
    use cruddur_db::schema::{activities, users};
    (
        users::table.count().get_result(conn).expect("count users"),
        activities::table
            .count()
            .get_result(conn)
            .expect("count activities"),
    )
}
