#![doc = include_str!("../README.md")]

use std::sync::{Once, OnceLock};

pub mod disk;
pub mod hostile;
pub mod netns;
mod pgbouncer;
mod standby;
mod temp_cluster;
pub mod tls;
pub mod variables;

pub use disk::DiskFullCluster;
pub use hostile::{HOSTILE_SETTINGS, Hostile, HostileRole};
pub use netns::{NetnsCluster, Privileged, Unavailable};
pub use pgbouncer::PgBouncer;
pub use standby::{StreamingPair, free_port, in_recovery, run, sees};
pub use temp_cluster::{TempCluster, TempClusterBuilder};

use cruddur_db::{DatabaseUrl, Error, Settings, admin, establish, run_migrations};
use diesel::prelude::*;

/// The server tried when `TEST_DATABASE_URL` is unset.
pub const DEFAULT_TEST_SERVER: &str = "postgres://localhost/postgres";

/// The server the tests use (its maintenance database); chosen once per
/// test binary.
pub fn server_url() -> DatabaseUrl {
    static SERVER: OnceLock<DatabaseUrl> = OnceLock::new();
    SERVER.get_or_init(choose_server).clone()
}

/// The variables of the environment (and `.env`), read once per test binary.
pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings::from_env().expect("read the environment and .env"))
}

fn choose_server() -> DatabaseUrl {
    if let Some(raw) = settings().get(&variables::TEST_DATABASE_URL) {
        return DatabaseUrl::parse(raw).expect("TEST_DATABASE_URL is not a valid URL");
    }
    let default = match settings().get(&cruddur_db::variables::CRUDDUR_DEFAULT_URL) {
        Some(raw) => DatabaseUrl::parse(raw)
            .expect("CRUDDUR_DEFAULT_URL is not a valid URL")
            .with_database("postgres"),
        None => DatabaseUrl::parse(DEFAULT_TEST_SERVER).expect("valid default URL"),
    };
    // A short timeout: when nothing listens, the private cluster should
    // not wait behind libpq's default.
    let probe = default.with_default_param(
        "connect_timeout",
        &cruddur_db::resolve::PROBE_TIMEOUT_SECS.to_string(),
    );
    match establish(&probe) {
        Err(Error::Unreachable { .. }) => {
            let cluster = shared_cluster();
            eprintln!(
                "no server at {default}: the tests use a private cluster in {}",
                cluster.dir().display()
            );
            cluster.url_for("postgres").expect("private cluster URL")
        }
        _ => default,
    }
}

static CLUSTER: OnceLock<TempCluster> = OnceLock::new();

/// The private cluster this test binary falls back to, started on first
/// use and removed at exit (after the shared database is dropped).
fn shared_cluster() -> &'static TempCluster {
    CLUSTER.get_or_init(|| {
        let cluster = TempCluster::start().expect("start a private PostgreSQL cluster");
        register_cleanup();
        cluster
    })
}

/// A private throwaway cluster of the caller's own, removed when dropped:
/// for tests that stop and restart a server.
pub fn private_cluster() -> TempCluster {
    TempCluster::start().expect("start a private PostgreSQL cluster")
}

/// A random name that cannot collide with another test's.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The keys of a feed item, in the order SPEC §3 gives them.
pub const FEED_KEYS: [&str; 10] = [
    "uuid",
    "display_name",
    "handle",
    "message",
    "replies_count",
    "reposts_count",
    "likes_count",
    "reply_to_activity_uuid",
    "expires_at",
    "created_at",
];

/// A database owned by one test, dropped with it.
pub struct TestDb {
    /// The URL of the throwaway database.
    pub url: DatabaseUrl,
}

impl TestDb {
    /// A new, empty database.
    #[expect(
        clippy::new_without_default,
        reason = "new() creates a database on the server: not a default value"
    )]
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

/// Drops the database of its URL (`WITH (FORCE)`) when it goes, for tests
/// that let another program create the database.
pub struct Dropper(pub DatabaseUrl);

impl Drop for Dropper {
    fn drop(&mut self) {
        if let Err(e) = admin::drop_database(&self.0, true) {
            eprintln!("could not drop test database {}: {e}", self.0);
        }
    }
}

static SHARED: OnceLock<DatabaseUrl> = OnceLock::new();

/// Statics are never dropped; the C exit handler is the one hook that runs
/// after the last test. One handler does both jobs, in order: the shared
/// database first, then the private cluster it may live on.
extern "C" fn cleanup_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(url) = SHARED.get() {
            let _ = admin::drop_database(url, true);
        }
        if let Some(cluster) = CLUSTER.get()
            && let Err(e) = cluster.remove()
        {
            eprintln!("could not remove the private cluster: {e}");
        }
    });
}

fn register_cleanup() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        #[expect(
            unsafe_code,
            reason = "registering a plain extern \"C\" fn with atexit"
        )]
        // SAFETY: `cleanup_at_exit` is a valid `extern "C" fn()` that
        // catches panics, as atexit requires.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

fn shared_url() -> &'static DatabaseUrl {
    SHARED.get_or_init(|| {
        let url = server_url().with_database(&unique_name("cruddur_test_shared"));
        admin::create_database(&url).expect("create shared test database");
        run_migrations(&mut establish(&url).expect("connect")).expect("migrate shared database");
        register_cleanup();
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

/// How many migrations the library embeds ([`cruddur_db::MIGRATIONS`]).
pub fn migration_count() -> usize {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&cruddur_db::MIGRATIONS)
        .map(|m| m.len())
        .unwrap_or_default()
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

/// How many sessions of `conn`'s database (other than `conn`'s own) wait
/// for a lock now; 0 when it cannot be read.
pub fn lock_waiters(conn: &mut PgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    .get_result::<Waiting>(conn)
    .map_or(0, |w| w.n)
}

/// Polls `done` every 20 ms until it holds or `bound` passes; returns
/// whether it held. The bound turns "never" into a failure; it is not a
/// timing measurement.
pub fn eventually(bound: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

/// `url` with `password` in it, and a user (the server's current user when
/// the URL names none), so that the password stands in the URL's user-info.
/// Trust authentication ignores it; tests use it to prove it never shows.
pub fn with_password(url: &DatabaseUrl, password: &str) -> DatabaseUrl {
    let url = if url.param("user").is_some() {
        url.clone()
    } else {
        let mut conn = admin::connect_maintenance(url).expect("connect to the test server");
        let user: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
            "current_user::text",
        ))
        .get_result(&mut conn)
        .expect("current_user");
        url.with_param("user", &user)
    };
    url.with_param("password", password)
}
