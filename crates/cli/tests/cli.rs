//! The `cruddur-db` binary, driven with assert_cmd against throwaway
//! databases: exit codes, stdout and stderr of every command, production
//! protection, bad connections, hostile input, and that no output ever
//! holds a password.

mod common;

use std::path::Path;

use common::cli::{PASSWORD, cli, run, run_cmd};
use common::{TestDb, counts, server_url, unique_name};
use cruddur_db::{DatabaseUrl, admin};
use diesel::prelude::*;

/// `url` with the test server's role and [`PASSWORD`] in it.
fn with_password(url: &DatabaseUrl) -> String {
    common::with_password(url, PASSWORD).expose().to_owned()
}

/// `url` with `params` (`a=b&c=d`) added to its query string.
fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// A database name that no test created, dropped (if it came to exist)
/// when the guard goes.
struct NewDb {
    url: DatabaseUrl,
    with_password: String,
    _dropper: common::Dropper,
}

impl NewDb {
    fn new() -> Self {
        let url = server_url().with_database(&unique_name("cruddur_cli"));
        let with_password = with_password(&url);
        Self {
            _dropper: common::Dropper(url.clone()),
            url,
            with_password,
        }
    }

    fn exists(&self) -> bool {
        admin::database_exists(&self.url).expect("check database")
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn full_lifecycle_create_migrate_seed_feed_sessions_drop() {
    let db = NewDb::new();
    let url = db.with_password.as_str();
    run(url, &["create"])
        .success()
        .stdout_has("created database");
    run(url, &["migrate", "run"]).success().stdout_has(&format!(
        "applied {} migration(s)",
        common::migration_count()
    ));
    run(url, &["seed"])
        .success()
        .stdout_has("2 user(s), 2 activities");
    run(url, &["feed"])
        .success()
        .stdout_has("@andrewbrown")
        .stdout_has("This was imported as seed data!")
        .stdout_has("(2 activities)");
    let feed = run(url, &["feed", "--json"]).success().stdout.clone();
    let items = json(&feed);
    assert_eq!(items.as_array().map(Vec::len), Some(2), "{feed}");
    assert_eq!(items[1]["handle"], "andrewbrown", "{feed}");
    assert_eq!(
        items[0]["reply_to_activity_uuid"], items[1]["uuid"],
        "{feed}"
    );
    run(url, &["sessions"])
        .success()
        .stdout_has("this session")
        .stdout_has("1 session(s)");
    run(url, &["drop", "-y"])
        .success()
        .stdout_has("dropped database");
    assert!(!db.exists(), "drop left {} in place", db.url);
    run(url, &["drop", "-y"])
        .success()
        .stdout_has("does not exist; nothing to drop");
}

#[test]
fn setup_then_feed_shows_the_reference_feed_and_setup_starts_over() {
    let db = NewDb::new();
    let url = db.with_password.as_str();
    run(url, &["setup"])
        .success()
        .stdout_has("is set up")
        .stdout_has(&format!(
            "applied {} migration(s)",
            common::migration_count()
        ))
        .stdout_has("loaded the reference seed")
        .stderr_has("== create, migrate, seed");
    let seeded = counts(&mut cruddur_db::establish(&db.url).unwrap());
    // Setting up an existing database drops it: without -y and without a
    // terminal it asks nothing and refuses, and the data stays.
    run(url, &["setup"])
        .failure()
        .stderr_has("pass -y/--yes to confirm");
    assert_eq!(counts(&mut cruddur_db::establish(&db.url).unwrap()), seeded);
    run(
        url,
        &[
            "activity",
            "create",
            "--handle",
            "bayko",
            "--message",
            "hello",
            "--ttl",
            "1-hour",
        ],
    )
    .success();
    run(url, &["feed"]).success().stdout_has("(3 activities)");
    run(url, &["setup", "-y"])
        .success()
        .stdout_has("dropped database");
    run(url, &["feed"])
        .success()
        .stdout_has("This was imported as seed data!")
        .stdout_has("(2 activities)");
}

#[test]
fn create_prepare_and_seed_are_idempotent() {
    let db = NewDb::new();
    let url = db.with_password.as_str();
    run(url, &["create"])
        .success()
        .stdout_has("created database");
    run(url, &["create"])
        .success()
        .stdout_has("already exists; nothing to do");
    run(url, &["prepare"]).success().stdout_has(&format!(
        "existed, {} migration(s) applied, seeded",
        common::migration_count()
    ));
    run(url, &["prepare"])
        .success()
        .stdout_has("is ready; nothing to do");
    run(url, &["seed"])
        .success()
        .stdout_has("already holds the reference seed");
    let mut conn = cruddur_db::establish(&db.url).unwrap();
    assert_eq!(counts(&mut conn), (2, 2));

    let fresh = NewDb::new();
    run(&fresh.with_password, &["prepare"])
        .success()
        .stdout_has(&format!(
            "created, {} migration(s) applied, seeded",
            common::migration_count()
        ));
}

/// The destructive commands a production database refuses, as arguments.
const DESTRUCTIVE: [&[&str]; 5] = [
    &["drop", "-y"],
    &["drop", "-y", "--force"],
    &["schema-load", "-y"],
    &["setup", "-y"],
    &["migrate", "revert", "-y"],
];

#[test]
fn a_production_mark_refuses_destructive_commands_whatever_the_url_is_called() {
    let db = NewDb::new();
    let url = db.with_password.as_str();
    // Created and migrated through --prod: the database marks itself.
    let prod = || {
        let mut cmd = cli();
        cmd.env("PROD_CONNECTION_URL", url);
        cmd
    };
    run_cmd(prod(), &["--prod", "create"])
        .success()
        .stderr_has("PRODUCTION")
        .stderr_has("marked");
    run_cmd(prod(), &["--prod", "migrate"]).success();
    run_cmd(prod(), &["--prod", "seed"]).success();
    let before = counts(&mut cruddur_db::establish(&db.url).unwrap());

    // Now the same database under --database-url, with no PROD_CONNECTION_URL
    // in sight: the mark alone refuses.
    for args in DESTRUCTIVE
        .iter()
        .copied()
        .chain([&["seed", "--synthetic", "5", "10", "-y"][..]])
    {
        run(url, args)
            .failure()
            .stderr_has("refusing to")
            .stderr_has("marked as production")
            .stderr_has("--allow-production")
            .stderr_has("PRODUCTION");
        assert!(db.exists(), "`{}` dropped the database", args.join(" "));
        let mut conn = cruddur_db::establish(&db.url).unwrap();
        assert_eq!(
            counts(&mut conn),
            before,
            "`{}` changed data",
            args.join(" ")
        );
    }

    // The mark survives a schema reload that was explicitly allowed.
    run(url, &["--allow-production", "schema-load", "-y"])
        .success()
        .stderr_has("--allow-production");
    let status = run(url, &["status", "--json"]).success().stdout.clone();
    assert_eq!(json(&status)["environment"], "production", "{status}");
    run(url, &["drop", "-y"])
        .failure()
        .stderr_has("marked as production");
    run(url, &["--allow-production", "drop", "-y"])
        .success()
        .stdout_has("dropped database");
    assert!(!db.exists());
}

#[test]
fn prod_flag_and_the_production_url_refuse_before_any_mark() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    for args in DESTRUCTIVE {
        let mut full = vec!["--prod"];
        full.extend_from_slice(args);
        let mut cmd = cli();
        cmd.env("PROD_CONNECTION_URL", &url);
        run_cmd(cmd, &full)
            .failure()
            .stderr_has("--prod targets the production database");
        // The production URL passed as --database-url, spelled differently
        // (no password, other parameters): still production.
        let mut cmd = cli();
        cmd.env("PROD_CONNECTION_URL", &url);
        let other_spelling = with_params(db.url.expose(), "application_name=elsewhere");
        let mut full = vec!["--database-url", other_spelling.as_str()];
        full.extend_from_slice(args);
        run_cmd(cmd, &full)
            .failure()
            .stderr_has("it is the database of PROD_CONNECTION_URL");
        assert!(admin::database_exists(&db.url).unwrap());
    }
    // A bulk seed into an empty production database is allowed; into a
    // non-empty one it is not.
    let mut cmd = cli();
    cmd.env("PROD_CONNECTION_URL", &url);
    run_cmd(
        cmd,
        &["--prod", "seed", "--synthetic", "3", "7", "--rng-seed", "9"],
    )
    .success()
    .stdout_has("3 user(s) and 7 activities");
    let mut cmd = cli();
    cmd.env("PROD_CONNECTION_URL", &url);
    run_cmd(
        cmd,
        &[
            "--prod",
            "seed",
            "--synthetic",
            "3",
            "7",
            "--rng-seed",
            "10",
        ],
    )
    .failure()
    .stderr_has("refusing to bulk-seed the non-empty database");
    assert_eq!(counts(&mut db.conn()), (3, 7));
}

#[test]
fn drop_force_ends_an_idle_session_that_blocks_a_plain_drop() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    let mut idle = db.conn();
    run(&url, &["drop", "-y"])
        .failure()
        .stderr_has("being accessed by other users")
        .stderr_has("drop --force");
    assert!(admin::database_exists(&db.url).unwrap());
    run(&url, &["drop", "-y", "--force"])
        .success()
        .stdout_has("dropped database");
    assert!(!admin::database_exists(&db.url).unwrap());
    assert!(
        diesel::sql_query("SELECT 1").execute(&mut idle).is_err(),
        "the idle session should have been ended"
    );
}

#[test]
fn drop_without_yes_on_a_non_terminal_stdin_is_refused() {
    let db = TestDb::new();
    let url = with_password(&db.url);
    let mut cmd = cli();
    cmd.write_stdin("y\n");
    run_cmd(cmd, &["--database-url", &url, "drop"])
        .failure()
        .stderr_has("stdin is not a terminal; pass -y/--yes");
    assert!(admin::database_exists(&db.url).unwrap());
}

#[test]
fn errors_end_with_the_command_that_fixes_them() {
    let missing = with_password(&server_url().with_database(&unique_name("cruddur_missing")));
    run(&missing, &["status"])
        .failure()
        .stderr_has("does not exist on the server of")
        .stderr_has("(create it with `cruddur-db create`)");
    let db = TestDb::new();
    run(&with_password(&db.url), &["feed"])
        .failure()
        .stderr_has(&format!(
            "{} migration(s) pending",
            common::migration_count()
        ))
        .stderr_has("(run `cruddur-db migrate run` first)");
    // No URL, nothing at the default URL, the local cluster not running.
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = cli();
    cmd.env("CRUDDUR_DEFAULT_URL", "postgres://localhost:1/cruddur")
        .env("CRUDDUR_LOCAL_DIR", scratch.path().join("pg"));
    run_cmd(cmd, &["status"])
        .failure()
        .stderr_has("nothing answers at the default URL")
        .stderr_has("(start the local cluster with `cruddur-db local start` or `cruddur-db prepare`, or set DATABASE_URL)");
    assert!(
        !scratch.path().join("pg").exists(),
        "status started a cluster"
    );
}

#[test]
fn bad_connections_fail_fast_and_name_what_failed() {
    let missing = server_url().with_database(&unique_name("cruddur_missing"));
    let unknown_role = DatabaseUrl::parse(&with_password(&server_url()))
        .unwrap()
        .with_param("user", &unique_name("no_such_role"))
        .expose()
        .to_owned();
    let cases = [
        (
            format!("mysql://root:{PASSWORD}@127.0.0.1/cruddur"),
            "invalid database URL",
        ),
        ("not a url".to_owned(), "invalid database URL"),
        (
            format!("postgres://root:{PASSWORD}@127.0.0.1:1/cruddur"),
            "cannot reach the database server",
        ),
        // The library says what failed; the CLI adds the command that fixes it.
        (with_password(&missing), "does not exist on the server of"),
        (unknown_role, "authentication failed"),
    ];
    for (url, expected) in &cases {
        for args in [
            &["status"][..],
            &["feed"],
            &["sessions"],
            &["migrate", "status"],
            &["seed"],
        ] {
            // A hang would hit the command timeout in `cli()` and fail.
            run(url, args).failure().stderr_has(expected);
        }
    }
    // create on an unknown role is an authentication failure, not a
    // missing database.
    let (role_url, _) = &cases[4];
    run(role_url, &["create"])
        .failure()
        .stderr_has("authentication failed");
    assert!(!admin::database_exists(&missing).unwrap());
}

#[test]
fn activity_create_rejects_hostile_input_and_writes_nothing() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    run(&url, &["seed"]).success();
    let before = counts(&mut db.conn());
    let long = "x".repeat(281);
    let cases: [(&[&str], Option<&str>, &[&str]); 5] = [
        (
            &[
                "--handle",
                "andrewbrown",
                "--message",
                " \t ",
                "--ttl",
                "7-days",
            ],
            None,
            &["message_blank"],
        ),
        (
            &[
                "--handle",
                "andrewbrown",
                "--message",
                &long,
                "--ttl",
                "7-days",
            ],
            None,
            &["message_exceed_max_chars"],
        ),
        (
            &[
                "--handle",
                "andrewbrown",
                "--message-file",
                "-",
                "--ttl",
                "7-days",
            ],
            Some("nul\0byte"),
            &["message_contains_nul"],
        ),
        (
            &["--handle", "", "--message", "", "--ttl", "1-day"],
            None,
            &["message_blank", "user_handle_blank"],
        ),
        (
            &[
                "--handle",
                "nobody'; DROP TABLE users; --",
                "--message",
                "hi",
                "--ttl",
                "1-day",
            ],
            None,
            &["user not found"],
        ),
    ];
    for (args, stdin, expected) in cases {
        let mut full = vec!["--database-url", url.as_str(), "activity", "create"];
        full.extend_from_slice(args);
        let mut cmd = cli();
        if let Some(input) = stdin {
            cmd.write_stdin(input);
        }
        let result = run_cmd(cmd, &full);
        result.failure();
        for code in expected {
            result.stderr_has(code);
        }
        assert_eq!(counts(&mut db.conn()), before, "{args:?} wrote something");
    }
    // A ttl outside the seven is a usage error that lists them (clap's
    // possible values), before any connection is made.
    for ttl in ["forever'; --", "", "7-DAYS"] {
        let result = run(
            &url,
            &[
                "activity",
                "create",
                "--handle",
                "andrewbrown",
                "--message",
                "hi",
                "--ttl",
                ttl,
            ],
        );
        assert_eq!(result.code, 2, "--ttl {ttl:?}: {}", result.stderr);
        result.stderr_has(
            "possible values: 30-days, 7-days, 3-days, 1-day, 12-hours, 3-hours, 1-hour",
        );
        assert_eq!(
            counts(&mut db.conn()),
            before,
            "--ttl {ttl:?} wrote something"
        );
    }

    // SQL-looking text is just text: stored verbatim, tables intact.
    let hostile = "'); DROP TABLE users; -- \\ \"quoted\" 🦀";
    let created = run(
        &url,
        &[
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--message",
            hostile,
            "--ttl",
            "3-hours",
        ],
    )
    .success()
    .stdout
    .clone();
    let object = json(&created);
    assert_eq!(object["message"], hostile, "{created}");
    assert_eq!(object["handle"], "andrewbrown", "{created}");
    assert_eq!(counts(&mut db.conn()), (before.0, before.1 + 1));
    // 280 characters (multi-byte ones) is the limit, not over it.
    let at_limit = "é".repeat(280);
    run(
        &url,
        &[
            "activity",
            "create",
            "--handle",
            "bayko",
            "--message",
            &at_limit,
            "--ttl",
            "1-hour",
        ],
    )
    .success();
}

#[test]
fn migrate_status_lists_applied_and_pending() {
    let db = TestDb::new();
    let url = with_password(&db.url);
    let n = common::migration_count();
    let status = run(&url, &["migrate", "status"]).success().stdout.clone();
    assert_eq!(status.matches("pending   2026-").count(), n, "{status}");
    assert!(
        status.contains(&format!("0 applied, {n} pending")),
        "{status}"
    );
    run(&url, &["migrate"])
        .success()
        .stdout_has(&format!("applied {n} migration(s)"));
    let all_applied = format!("{n} applied, 0 pending");
    run(&url, &["migrate", "status"])
        .success()
        .stdout_has("applied   2026-11-24-000003_create_activities")
        .stdout_has(&all_applied);
    run(&url, &["migrate", "revert"])
        .failure()
        .stderr_has("pass -y/--yes to confirm");
    run(&url, &["migrate", "status"])
        .success()
        .stdout_has(&all_applied);
    run(&url, &["migrate", "revert", "-y"])
        .success()
        .stdout_has("reverted");
    run(&url, &["migrate", "status"])
        .success()
        .stdout_has("pending   2026-12-03-000003_create_idempotency_keys")
        .stdout_has(&format!("{} applied, 1 pending", n - 1));
    run(&url, &["migrate", "run"])
        .success()
        .stdout_has("applied 1 migration(s)");
    run(&url, &["migrate", "run"])
        .success()
        .stdout_has("up to date");
}

#[test]
fn status_reports_server_environment_tls_and_migrations() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    let text = run(&url, &["status"]).success().stdout.clone();
    for field in [
        "server       PostgreSQL",
        "environment  development",
        "tls ",
        format!(
            "migrations   {} applied, 0 pending",
            common::migration_count()
        )
        .as_str(),
    ] {
        assert!(text.contains(field), "status lacks {field:?}:\n{text}");
    }
    let status = json(&run(&url, &["status", "--json"]).success().stdout);
    assert_eq!(status["database"], db.name().as_str());
    assert_eq!(status["migrations_applied"], common::migration_count());
    assert!(status["tls"].is_boolean(), "{status}");
    assert!(status["mark"].is_null(), "{status}");
}

#[test]
fn sessions_marks_the_holder_of_the_migration_lock() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    let mut holder = db.conn();
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(cruddur_db::migrations::MIGRATION_LOCK_KEY)
        .execute(&mut holder)
        .unwrap();
    let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(&mut holder)
    .unwrap();
    let listed = json(&run(&url, &["sessions", "--json"]).success().stdout);
    let sessions = listed.as_array().expect("an array");
    let held = sessions
        .iter()
        .find(|s| s["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing from {listed}"));
    assert_eq!(held["holds_migration_lock"], true, "{listed}");
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["holds_migration_lock"] == true)
            .count(),
        1,
        "{listed}"
    );
    run(&url, &["sessions"])
        .success()
        .stdout_has("holds the migration lock")
        .stdout_has(&format!("{pid:>7}"));
}

/// Writes an executable script standing in for psql: it prints its
/// arguments and which PG variables it got, never the password itself.
fn fake_psql(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-psql");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"ARGS:$*\"\necho \"PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE\"\n\
             [ \"$PGPASSWORD\" = \"{PASSWORD}\" ] && echo PASSWORD-IN-ENV\n\
             [ -z \"$PGSTRAY\" ] || echo STRAY\nexit 3\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn connect_hands_the_password_to_psql_through_the_environment() {
    let db = TestDb::migrated();
    let url = with_params(&with_password(&db.url), "sslmode=prefer&keepalives=1");
    let dir = tempfile::tempdir().unwrap();
    let psql = fake_psql(dir.path());
    let mut cmd = cli();
    cmd.env("PGHOST", "somewhere-else.invalid");
    let result = run_cmd(
        cmd,
        &[
            "--database-url",
            &url,
            "connect",
            "--psql",
            psql.to_str().unwrap(),
            "--",
            "-c",
            "select 1",
        ],
    );
    // exec: psql's exit status is the command's.
    assert_eq!(result.code, 3, "{}", result.stderr);
    assert!(
        result.stdout.contains("PASSWORD-IN-ENV"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains(&format!("PGDATABASE={}", db.name())),
        "{}",
        result.stdout
    );
    assert!(
        !result.stdout.contains("somewhere-else"),
        "{}",
        result.stdout
    );
    assert!(
        result
            .stdout
            .contains("ARGS:--dbname=keepalives=1 -c select 1"),
        "{}",
        result.stdout
    );

    // The real psql, when installed, reaches the database.
    if std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok()
    {
        run(
            &with_password(&db.url),
            &["connect", "--", "-Atc", "select current_database()"],
        )
        .success()
        .stdout_has(&db.name());
    }
    let missing = run(&url, &["connect", "--psql", "/nonexistent/psql"]);
    missing
        .failure()
        .stderr_has("cannot run `/nonexistent/psql`");
}

#[test]
fn user_confirm_reads_an_event_once_per_subject() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    let event = r#"{"request":{"userAttributes":{"name":"Ann Lee","email":"ann@example.com","preferred_username":"annlee","sub":"sub-ann"}}}"#;
    for created in [true, false] {
        let mut cmd = cli();
        cmd.write_stdin(event);
        let out = run_cmd(
            cmd,
            &["--database-url", &url, "user", "confirm", "--event", "-"],
        );
        let value = json(&out.success().stdout);
        assert_eq!(value["created"], created, "{value}");
        assert_eq!(value["user"]["handle"], "annlee", "{value}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("event.json");
    std::fs::write(&bad, r#"{"request":{"userAttributes":{"name":""}}}"#).unwrap();
    run(&url, &["user", "confirm", "--event", bad.to_str().unwrap()])
        .failure()
        .stderr_has("`email` is missing");
    assert_eq!(counts(&mut db.conn()).0, 1);
}

#[test]
fn profile_and_activity_pages_replies_and_profile_updates() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    run(&url, &["seed"]).success();
    let page = json(
        &run(&url, &["profile", "show", "--handle", "andrewbrown"])
            .success()
            .stdout,
    );
    assert_eq!(page["profile"]["handle"], "andrewbrown", "{page}");
    assert_eq!(page["profile"]["cognito_user_uuid"], "MOCK", "{page}");
    assert_eq!(page["profile"]["cruds_count"], 1, "{page}");
    let parent = page["activities"][0]["uuid"].as_str().unwrap().to_owned();
    let show = [
        "activity",
        "show",
        "--handle",
        "andrewbrown",
        "--uuid",
        &parent,
    ];
    let thread = json(&run(&url, &show).success().stdout);
    assert_eq!(thread["activity"]["uuid"], parent.as_str(), "{thread}");
    assert_eq!(thread["replies"][0]["handle"], "bayko", "{thread}");

    let reply = run(
        &url,
        &[
            "activity",
            "reply",
            "--handle",
            "andrewbrown",
            "--to",
            &parent,
            "--message",
            "hello back",
        ],
    )
    .success()
    .stderr_has("write token: ")
    .stdout
    .clone();
    let reply = json(&reply);
    assert_eq!(reply["reply_to_activity_uuid"], parent.as_str(), "{reply}");
    assert_eq!(reply["message"], "hello back", "{reply}");
    let thread = json(&run(&url, &show).success().stdout);
    assert_eq!(thread["activity"]["replies_count"], 2, "{thread}");
    assert_eq!(thread["replies"][1]["uuid"], reply["uuid"], "{thread}");
    // One reply per page: the cursor of the first page leads to the second.
    let first = run(&url, &[&show[..], &["--limit", "1"]].concat())
        .success()
        .stderr_has("next page: --after ")
        .stderr
        .clone();
    let cursor = first
        .split("--after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let second = json(
        &run(
            &url,
            &[&show[..], &["--limit", "1", "--after", &cursor]].concat(),
        )
        .success()
        .stdout,
    );
    assert_eq!(second["replies"][0]["uuid"], reply["uuid"], "{second}");

    let short = json(
        &run(
            &url,
            &[
                "profile",
                "update",
                "--handle",
                "bayko",
                "--display-name",
                "Bayko",
                "--bio",
                "New bio",
            ],
        )
        .success()
        .stdout,
    );
    assert_eq!(short["handle"], "bayko", "{short}");
    assert_eq!(short["display_name"], "Bayko", "{short}");
    assert_eq!(short.as_object().map(|o| o.len()), Some(3), "{short}");
    let bayko = json(
        &run(&url, &["profile", "show", "--handle", "bayko"])
            .success()
            .stdout,
    );
    assert_eq!(bayko["profile"]["bio"], "New bio", "{bayko}");

    // Bad input and unknown names: every failing code, nothing written.
    let before = counts(&mut db.conn());
    run(
        &url,
        &[
            "activity",
            "reply",
            "--handle",
            "",
            "--to",
            "nope",
            "--message",
            "",
        ],
    )
    .failure()
    .stderr_has("reply not created")
    .stderr_has("message_blank, activity_uuid_invalid, user_handle_blank");
    let missing = uuid::Uuid::new_v4().to_string();
    for (args, text) in [
        (
            &[
                "activity",
                "reply",
                "--handle",
                "bayko",
                "--to",
                &missing,
                "--message",
                "hi",
            ][..],
            "activity not found",
        ),
        (
            &["activity", "show", "--handle", "bayko", "--uuid", &parent],
            "activity not found",
        ),
        (&["profile", "show", "--handle", "nobody"], "user not found"),
        (
            &[
                "profile",
                "update",
                "--handle",
                "bayko",
                "--display-name",
                " ",
                "--bio",
                "x",
            ],
            "display_name_blank",
        ),
        (
            &[
                "profile",
                "update",
                "--handle",
                "nobody",
                "--display-name",
                "N",
                "--bio",
                "",
            ],
            "user not found",
        ),
    ] {
        run(&url, args).failure().stderr_has(text);
    }
    assert_eq!(counts(&mut db.conn()), before);
    let bayko = json(
        &run(&url, &["profile", "show", "--handle", "bayko"])
            .success()
            .stdout,
    );
    assert_eq!(bayko["profile"]["display_name"], "Bayko", "{bayko}");
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["frobnicate"][..],
        &["seed", "--rng-seed", "5"],
        &["seed", "--synthetic", "5"],
        &["feed", "--limit", "ten"],
        &["activity", "create", "--handle", "x", "--ttl", "1-day"],
    ] {
        let out = run_cmd(cli(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("Usage:") || out.stderr.contains("error:"),
            "{args:?}"
        );
    }
    run_cmd(cli(), &["--help"])
        .success()
        .stdout_has("schema-load");
}

#[test]
fn no_output_of_any_command_contains_the_password() {
    // run() already checks every output of every test; this one walks every
    // command, with diagnostics on, over a reachable and an unreachable URL.
    let db = NewDb::new();
    let reachable = db.with_password.clone();
    let unreachable = format!("postgres://root:{PASSWORD}@127.0.0.1:1/cruddur");
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"request":{"userAttributes":{"name":"Pat","email":"p@example.com","preferred_username":"pat","sub":"sub-pat"}}}"#,
    )
    .unwrap();
    let psql = fake_psql(dir.path());
    let event = event.to_str().unwrap();
    let psql = psql.to_str().unwrap();
    let commands: [&[&str]; 20] = [
        &["create"],
        &["create"],
        &["status"],
        &["migrate", "status"],
        &["migrate", "run"],
        &["seed"],
        &["seed", "--synthetic", "2", "3"],
        &["prepare"],
        &["feed"],
        &["feed", "--json", "--limit", "1"],
        &["feed", "--before", "garbage"],
        &[
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--message",
            "m",
            "--ttl",
            "1-day",
        ],
        &["user", "confirm", "--event", event],
        &["sessions"],
        &["status", "--json"],
        &["connect", "--psql", psql],
        &["schema-load"],
        &["setup"],
        &["drop"],
        &["drop", "-y", "--force"],
    ];
    for url in [&reachable, &unreachable] {
        for args in commands {
            let mut full = vec!["--database-url", url.as_str()];
            full.extend_from_slice(args);
            let mut cmd = cli();
            cmd.env("RUST_LOG", "debug");
            let out = run_cmd(cmd, &full);
            if url == &unreachable {
                assert_ne!(out.code, 0, "{args:?} on an unreachable server");
            }
        }
        // Through the environment, too.
        for var in ["DATABASE_URL", "CONNECTION_URL"] {
            let mut cmd = cli();
            cmd.env(var, url).env("RUST_LOG", "trace");
            run_cmd(cmd, &["status"]);
        }
        let mut cmd = cli();
        cmd.env("PROD_CONNECTION_URL", url).env("RUST_LOG", "debug");
        run_cmd(cmd, &["--prod", "status"]);
    }
}

#[test]
fn a_second_bulk_seed_with_the_same_rng_seed_says_what_to_pass() {
    let db = TestDb::migrated();
    let url = with_password(&db.url);
    run(&url, &["seed", "--synthetic", "3", "5", "--rng-seed", "7"]).success();
    let before = counts(&mut db.conn());
    run(
        &url,
        &["seed", "--synthetic", "3", "5", "--rng-seed", "7", "-y"],
    )
    .failure()
    .stderr_has("already holds the synthetic seed of --rng-seed 7")
    .stderr_has("--rng-seed 8");
    assert_eq!(counts(&mut db.conn()), before, "nothing written");
    run(
        &url,
        &["seed", "--synthetic", "3", "5", "--rng-seed", "8", "-y"],
    )
    .success();
    assert_eq!(counts(&mut db.conn()), (before.0 + 3, before.1 + 5));
}
