//! Destructive commands that rebuild (`setup`), `prepare` interrupted and
//! run again, server text on the terminal, and `prepare` where nothing may
//! be written:
//!
//! - `setup` learns the name to create again from the server and libpq (a
//!   service file, `PGDATABASE`, the user name as the default database) and
//!   checks that it may create it before it drops anything;
//! - a database's environment mark survives `setup`, so the rebuilt
//!   production database is still refused;
//! - a first `prepare` killed between two migrations, or before its seed
//!   committed, is finished by the next one, seeded exactly once;
//! - role and database names from the server, and server errors, reach the
//!   terminal escaped;
//! - `prepare` of a current database works on read-only sessions.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cli::{PASSWORD, Run, cli, run, run_cmd};
use common::{Dropper, TestDb, counts, eventually, seeded, server_url, unique_name};
use cruddur_db::admin::{self, identify};
use cruddur_db::environment::{mark_environment, read_mark};
use cruddur_db::{DatabaseUrl, Environment};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

/// How long a poll waits for the server to reach a state before the test
/// fails: a bound that turns "never" into a failure, not a pause.
const BOUND: Duration = Duration::from_secs(60);

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The oid of the database `name`, or `None` when it does not exist.
fn oid_of(name: &str) -> Option<i64> {
    #[derive(QueryableByName)]
    struct Oid {
        #[diesel(sql_type = BigInt)]
        oid: i64,
    }
    diesel::sql_query("SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result::<Oid>(&mut admin::connect_maintenance(&server_url()).unwrap())
        .optional()
        .unwrap()
        .map(|o| o.oid)
}

/// The test server's parameters without a database name.
fn without_dbname(url: &DatabaseUrl) -> DatabaseUrl {
    let params: Vec<(&str, &str)> = url
        .params()
        .iter()
        .filter(|(k, _)| k != "dbname")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    DatabaseUrl::from_params(&params).unwrap()
}

/// A throwaway role, dropped with what it owns when the guard goes.
struct Role(String);

impl Role {
    fn create(name: &str, attributes: &str) -> Self {
        admin::connect_maintenance(&server_url())
            .unwrap()
            .batch_execute(&format!("CREATE ROLE {} LOGIN {attributes}", quote(name)))
            .unwrap();
        Self(name.to_owned())
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let role = quote(&self.0);
        let dropped = admin::connect_maintenance(&server_url()).and_then(|mut conn| {
            Ok(conn.batch_execute(&format!(
                "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}"
            ))?)
        });
        if let Err(e) = dropped {
            eprintln!("could not drop role {}: {e}", self.0);
        }
    }
}

/// A service file naming `params`, and the environment that points libpq
/// at it.
struct ServiceFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ServiceFile {
    fn new(params: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_service.conf");
        let mut text = String::from("[cruddur_svc]\n");
        for (k, v) in params {
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&path, text).unwrap();
        Self { _dir: dir, path }
    }
}

/// Variables set for one run of the binary.
type Env = Vec<(&'static str, String)>;

/// One way of reaching a database without naming it in the URL.
struct Spelling {
    what: &'static str,
    url: DatabaseUrl,
    env: Env,
    _keep: Option<ServiceFile>,
}

/// Ways of reaching the database `name` whose URL has no `dbname`: a service
/// file, a service file plus `PGDATABASE`, `PGDATABASE` alone, and hostile
/// session settings in the service's `options`.
fn unnamed_spellings(name: &str) -> Vec<Spelling> {
    let server = without_dbname(&server_url());
    let base: Vec<(String, String)> = server.params().to_vec();
    let with_db = |extra: &[(&str, &str)]| {
        let mut p = base.clone();
        p.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        p
    };
    let service = DatabaseUrl::parse("service=cruddur_svc").unwrap();
    let file_named = ServiceFile::new(&with_db(&[("dbname", name)]));
    let file_unnamed = ServiceFile::new(&base);
    let hostile = ServiceFile::new(&with_db(&[
        ("dbname", name),
        ("options", &common::hostile::options_value()),
    ]));
    vec![
        Spelling {
            what: "a service file's dbname",
            url: service.clone(),
            env: vec![("PGSERVICEFILE", file_named.path.display().to_string())],
            _keep: Some(file_named),
        },
        Spelling {
            what: "a service file without dbname, and PGDATABASE",
            url: service.clone(),
            env: vec![
                ("PGSERVICEFILE", file_unnamed.path.display().to_string()),
                ("PGDATABASE", name.to_owned()),
            ],
            _keep: Some(file_unnamed),
        },
        Spelling {
            what: "PGDATABASE with a URL that names no database",
            url: server.clone(),
            env: vec![("PGDATABASE", name.to_owned())],
            _keep: None,
        },
        Spelling {
            what: "a service file with hostile session settings",
            url: service,
            env: vec![("PGSERVICEFILE", hostile.path.display().to_string())],
            _keep: Some(hostile),
        },
    ]
}

/// Runs the binary on `url` with `env` set and `args`.
fn run_with(url: &DatabaseUrl, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = cli();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut full = vec!["--database-url", url.expose()];
    full.extend_from_slice(args);
    run_cmd(cmd, &full)
}

#[test]
fn setup_rebuilds_a_database_the_url_does_not_name() {
    for spelling in unnamed_spellings("placeholder").into_iter().map(|s| s.what) {
        let db = seeded();
        let name = db.name();
        let spelling = unnamed_spellings(&name)
            .into_iter()
            .find(|s| s.what == spelling)
            .unwrap();
        // A row of its own, which the rebuild must not keep.
        common::user(&mut db.conn(), "Not Seed Data");
        let before = oid_of(&name).unwrap();
        let out = run_with(&spelling.url, &spelling.env, &["setup", "-y"]);
        out.success()
            .stdout_has(&format!("dropped database `{name}`"))
            .stdout_has(&format!("database `{name}` is set up"));
        let after = oid_of(&name).unwrap_or_else(|| panic!("{}: `{name}` is gone", spelling.what));
        assert_ne!(before, after, "{}: not rebuilt", spelling.what);
        assert_eq!(counts(&mut db.conn()), (2, 2), "{}", spelling.what);
        // And `prepare` and `create` name it the same way.
        run_with(&spelling.url, &spelling.env, &["prepare"])
            .success()
            .stdout_has(&format!("database `{name}` is ready; nothing to do"));
        run_with(&spelling.url, &spelling.env, &["create"])
            .success()
            .stdout_has(&format!("database `{name}` already exists"));
        // Missing, it is created under the name libpq asks for.
        run_with(&spelling.url, &spelling.env, &["drop", "-y"])
            .success()
            .stdout_has(&format!("dropped database `{name}`"));
        run_with(&spelling.url, &spelling.env, &["setup", "-y"])
            .success()
            .stdout_has(&format!(
                "database `{name}` does not exist; nothing to drop"
            ))
            .stdout_has(&format!("created database `{name}`"));
        assert_eq!(counts(&mut db.conn()), (2, 2), "{}", spelling.what);
    }
}

#[test]
fn setup_rebuilds_the_database_named_after_the_user() {
    // No dbname anywhere: libpq asks for the database named like the user.
    let name = unique_name("cruddur_rb");
    let _role = Role::create(&name, "CREATEDB");
    let _dropper = Dropper(server_url().with_database(&name));
    admin::connect_maintenance(&server_url())
        .unwrap()
        .batch_execute(&format!("CREATE DATABASE {0} OWNER {0}", quote(&name)))
        .unwrap();
    let url = server_url().with_database(&name);
    cruddur_db::prepare(&url).unwrap();
    common::user(&mut cruddur_db::establish(&url).unwrap(), "Not Seed Data");
    let before = oid_of(&name).unwrap();
    let as_user = without_dbname(&server_url()).with_param("user", &name);
    let out = run(as_user.expose(), &["setup", "-y"]);
    out.success()
        .stdout_has(&format!("database `{name}` is set up"));
    assert_ne!(oid_of(&name), Some(before));
    assert_eq!(counts(&mut cruddur_db::establish(&url).unwrap()), (2, 2));
}

#[test]
fn setup_refuses_before_dropping_what_it_could_not_create_again() {
    let db = seeded();
    let name = db.name();
    // The owner may drop its database, but without CREATEDB it could not
    // create it again.
    let role = Role::create(&unique_name("cruddur_owner"), "NOCREATEDB NOSUPERUSER");
    db.conn()
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            quote(&name),
            quote(&role.0)
        ))
        .unwrap();
    let before = oid_of(&name).unwrap();
    let as_owner = db.url.with_param("user", &role.0);
    for args in [&["setup", "-y"][..], &["setup", "-y", "--force"]] {
        let out = run(as_owner.expose(), args);
        out.failure()
            .stderr_has("may not create databases")
            .stderr_has("nothing was dropped");
        assert_eq!(oid_of(&name), Some(before), "{args:?} dropped it");
        assert_eq!(counts(&mut db.conn()), (2, 2), "{args:?}");
    }
    // With PGDATABASE and no dbname in the URL, the same.
    let unnamed = without_dbname(&server_url()).with_param("user", &role.0);
    run_with(&unnamed, &[("PGDATABASE", name.clone())], &["setup", "-y"])
        .failure()
        .stderr_has("may not create databases");
    assert_eq!(oid_of(&name), Some(before));
    // A plain drop is still the owner's to do.
    run(as_owner.expose(), &["drop", "-y"]).success();
    assert_eq!(oid_of(&name), None);
}

#[test]
fn allow_production_setup_keeps_the_mark_so_the_next_drop_is_refused() {
    let db = seeded();
    let name = db.name();
    mark_environment(&mut db.conn(), Environment::Production).unwrap();
    let mark = read_mark(&mut db.conn()).unwrap().expect("marked");
    let mut spellings: Vec<(String, DatabaseUrl, Env)> = vec![
        ("the exact URL".into(), db.url.clone(), vec![]),
        (
            "hostile session settings in options".into(),
            db.url
                .with_param("options", &common::hostile::options_value()),
            vec![],
        ),
    ];
    let unnamed = unnamed_spellings(&name);
    for s in &unnamed {
        spellings.push((s.what.to_owned(), s.url.clone(), s.env.clone()));
    }
    for (what, url, env) in &spellings {
        run_with(url, env, &["setup", "-y"])
            .failure()
            .stderr_has("refusing to set up");
        let before = oid_of(&name).unwrap();
        run_with(url, env, &["--allow-production", "setup", "-y"])
            .success()
            .stdout_has("kept its mark: production");
        assert_ne!(oid_of(&name), Some(before), "{what}: not rebuilt");
        assert_eq!(
            read_mark(&mut db.conn()).unwrap().as_ref(),
            Some(&mark),
            "{what}: the mark changed"
        );
        let rebuilt = oid_of(&name);
        for args in [
            &["drop", "-y"][..],
            &["drop", "-y", "--force"],
            &["schema-load", "-y"],
        ] {
            run_with(url, env, args)
                .failure()
                .stderr_has("it is marked as production");
            assert_eq!(oid_of(&name), rebuilt, "{what}: {args:?}");
        }
        run_with(url, env, &["status"])
            .success()
            .stdout_has("production");
        assert_eq!(counts(&mut db.conn()), (2, 2), "{what}");
    }
}

/// The pid of a backend on database `name`, other than `except`, that waits
/// for a lock; polled for at most [`BOUND`].
fn backend_waiting_on(name: &str, except: i32) -> i32 {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let conn = &mut admin::connect_maintenance(&server_url()).unwrap();
    let mut found = None;
    let waited = eventually(BOUND, || {
        found = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> $2 \
             AND wait_event_type = 'Lock'",
        )
        .bind::<Text, _>(name)
        .bind::<Integer, _>(except)
        .get_result::<Pid>(conn)
        .optional()
        .unwrap()
        .map(|p| p.pid);
        found.is_some()
    });
    assert!(waited, "no backend waited for the lock within {BOUND:?}");
    found.unwrap()
}

/// Kills `child` (SIGKILL) and ends its server session `pid`, waiting (with
/// a bound) until the server has let go of it.
fn kill_with_its_session(mut child: Child, pid: i32) {
    child.kill().unwrap();
    child.wait().unwrap();
    let conn = &mut admin::connect_maintenance(&server_url()).unwrap();
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<Integer, _>(pid)
        .execute(conn)
        .unwrap();
    let gone = eventually(BOUND, || {
        #[derive(QueryableByName)]
        struct Alive {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            alive: bool,
        }
        !diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1) AS alive")
            .bind::<Integer, _>(pid)
            .get_result::<Alive>(conn)
            .unwrap()
            .alive
    });
    assert!(
        gone,
        "the killed run's session did not end within {BOUND:?}"
    );
}

fn spawn_prepare(url: &DatabaseUrl) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
        .args(["--database-url", url.expose(), "prepare"])
        .env_remove("DATABASE_URL")
        .env_remove("PROD_CONNECTION_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn applied_count(conn: &mut PgConnection) -> usize {
    cruddur_db::migrations::applied_versions(conn)
        .unwrap()
        .len()
}

fn backend_pid(conn: &mut PgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .unwrap()
}

/// After a killed first run, the next `prepare` migrates and seeds, and the
/// ones after change nothing, whichever session settings each run has.
fn rerun_ends_seeded_once(db: &TestDb) {
    let url = common::with_password(&db.url, PASSWORD);
    let hostile = url.with_param("options", &common::hostile::options_value());
    run(hostile.expose(), &["prepare"])
        .success()
        .stdout_has("seeded");
    assert_eq!(counts(&mut db.conn()), (2, 2));
    for again in [&url, &hostile] {
        run(again.expose(), &["prepare"])
            .success()
            .stdout_has("is ready; nothing to do");
    }
    assert_eq!(counts(&mut db.conn()), (2, 2));
    assert_eq!(applied_count(&mut db.conn()), common::migration_count());
}

#[test]
fn a_first_prepare_killed_between_two_migrations_is_finished_and_seeded_once() {
    let db = TestDb::new();
    // An uncommitted table of the same name holds the second migration's
    // CREATE TABLE users (a catalog unique-index wait) after the first
    // migration has committed.
    let blocker = &mut db.conn();
    blocker
        .batch_execute("BEGIN; CREATE TABLE users (blocker integer)")
        .unwrap();
    let child = spawn_prepare(&db.url);
    let pid = backend_waiting_on(&db.name(), backend_pid(blocker));
    assert_eq!(
        applied_count(&mut db.conn()),
        1,
        "killed between migrations"
    );
    kill_with_its_session(child, pid);
    blocker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(applied_count(&mut db.conn()), 1);
    rerun_ends_seeded_once(&db);
}

#[test]
fn a_first_prepare_killed_before_its_seed_committed_is_finished_and_seeded_once() {
    let db = TestDb::new();
    // The seed takes this advisory lock in its transaction; holding it here
    // stops the run with every migration applied and nothing seeded.
    let blocker = &mut db.conn();
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(cruddur_db::repo::seed::SEED_LOCK_KEY)
        .execute(blocker)
        .unwrap();
    let child = spawn_prepare(&db.url);
    let pid = backend_waiting_on(&db.name(), backend_pid(blocker));
    assert_eq!(applied_count(&mut db.conn()), common::migration_count());
    kill_with_its_session(child, pid);
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(cruddur_db::repo::seed::SEED_LOCK_KEY)
        .execute(blocker)
        .unwrap();
    assert_eq!(counts(&mut db.conn()), (0, 0));
    rerun_ends_seeded_once(&db);
}

/// A name that tries to run terminal commands and forge a line (short
/// enough for PostgreSQL's 63 bytes).
fn hostile_name(prefix: &str) -> String {
    let unique = unique_name(prefix);
    format!("{prefix}{}{HOSTILE_SUFFIX}", &unique[unique.len() - 10..])
}

const HOSTILE_SUFFIX: &str = "\u{1b}]0;p\u{7}\u{1b}[2J\u{9b}1m\u{202e}\nerror: forged";

/// Fails unless `text` holds no control character but line ends, no line
/// forged by a name, and the escaped form of the hostile part.
fn inert(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{what} printed a control character: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("error: forged")),
        "{what} let a name forge a line: {text}"
    );
}

#[test]
fn server_text_reaches_the_terminal_escaped() {
    // A role whose name holds escape sequences and a newline marks a
    // database whose name holds them too.
    // (The role goes after the database, which holds what it created.)
    let role = Role::create(&hostile_name("marker_"), "SUPERUSER");
    let name = hostile_name("esc_");
    let db_url = server_url().with_database(&name);
    let _dropper = Dropper(db_url.clone());
    assert!(admin::create_database(&db_url).unwrap());
    cruddur_db::prepare(&db_url).unwrap();
    let as_role = db_url.with_param("user", &role.0);
    mark_environment(
        &mut cruddur_db::establish(&as_role).unwrap(),
        Environment::Production,
    )
    .unwrap();
    let escaped = "\\u{1b}]0;p\\u{7}\\u{1b}[2J\\u{9b}1m\\u{202e}\\nerror: forged";

    for (who, url) in [
        ("the default role", &db_url),
        ("the hostile role", &as_role),
    ] {
        let status = run(url.expose(), &["status"]);
        status.success().stdout_has(escaped);
        inert(&format!("status as {who}"), &status.stdout);
        inert(&format!("status as {who}"), &status.stderr);
        for args in [
            &["drop", "-y"][..],
            &["setup", "-y"],
            &["schema-load", "-y"],
        ] {
            let refused = run(url.expose(), args);
            refused
                .failure()
                .stderr_has("it is marked as production")
                .stderr_has(escaped);
            inert(&format!("{args:?} as {who}"), &refused.stdout);
            inert(&format!("{args:?} as {who}"), &refused.stderr);
        }
    }
    // Server errors too: the server's own message names the database.
    let missing = server_url().with_database(&hostile_name("missing_"));
    let out = run(missing.expose(), &["status"]);
    out.failure().stderr_has("does not exist");
    inert("status of a missing database", &out.stderr);
    // The database is untouched, and still marked by that role.
    let mark = read_mark(&mut cruddur_db::establish(&db_url).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(mark.marked_by, role.0);
    assert!(identify(&mut cruddur_db::establish(&db_url).unwrap()).is_ok());
}

#[test]
fn prepare_of_a_current_database_works_where_nothing_may_be_written() {
    let db = seeded();
    let read_only_role = Role::create(&unique_name("cruddur_ro"), "SUPERUSER");
    admin::connect_maintenance(&server_url())
        .unwrap()
        .batch_execute(&format!(
            "ALTER ROLE {} SET default_transaction_read_only = on",
            quote(&read_only_role.0)
        ))
        .unwrap();
    let spellings = [
        (
            "options in the URL",
            db.url
                .with_param("options", "-c default_transaction_read_only=on"),
        ),
        (
            "options with hostile settings too",
            db.url.with_param(
                "options",
                &format!(
                    "-c default_transaction_read_only=on {}",
                    common::hostile::options_value()
                ),
            ),
        ),
        (
            "a role set read-only",
            db.url.with_param("user", &read_only_role.0),
        ),
    ];
    for (what, url) in &spellings {
        run(url.expose(), &["prepare"])
            .success()
            .stdout_has("is ready; nothing to do");
        run(url.expose(), &["migrate"])
            .success()
            .stdout_has("is up to date; no migration pending");
        assert_eq!(counts(&mut db.conn()), (2, 2), "{what}");
    }
    // Not current: it says the session is read-only, and creates nothing.
    let empty = TestDb::new();
    let url = empty
        .url
        .with_param("options", "-c default_transaction_read_only=on");
    run(url.expose(), &["prepare"])
        .failure()
        .stderr_has("read-only");
    assert_eq!(applied_count(&mut empty.conn()), 0);
    let present: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "to_regclass('__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(&mut empty.conn())
    .unwrap();
    assert!(!present, "a refused prepare created the migrations table");
}
