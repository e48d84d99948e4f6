//! The `home_feed` example, run as a user runs it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestDb;
use cruddur_db::DatabaseUrl;

/// The password put in the URL: the test server's trust authentication
/// ignores it; the point is that it never shows up in any output.
const PASSWORD: &str = "S3cretPw";

/// The example's binary, which `cargo test` builds beside the tests.
fn example() -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let path = deps.parent()?.join("examples").join("home_feed");
    path.exists().then_some(path)
}

#[test]
fn the_example_names_its_database_on_every_run() {
    let Some(example) = example() else {
        panic!("the home_feed example is not built; run the tests with `cargo test`");
    };
    let db = TestDb::new();
    let url = common::with_password(&db.url, PASSWORD);
    let shown = url.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");
    for run in ["first", "second"] {
        let (stdout, stderr) = run_example(&example, &url);
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains(PASSWORD),
                "{run} run printed the password: {text}"
            );
        }
        let note = format!("note: using {shown} (from DATABASE_URL)");
        assert_eq!(
            stderr.lines().filter(|l| *l == note).count(),
            1,
            "{run} run lacks {note:?}:\n{stderr}"
        );
        assert!(
            stdout.contains("This was imported as seed data!"),
            "{stdout}"
        );
    }
    // The URL shown is libpq's reading, redacted.
    assert_eq!(DatabaseUrl::parse(url.expose()).unwrap().to_string(), shown);
}

#[test]
fn the_example_runs_behind_a_transaction_pooler_with_the_direct_url() {
    let Some(example) = example() else {
        panic!("the home_feed example is not built; run the tests with `cargo test`");
    };
    let db = TestDb::new();
    let bouncer = common::PgBouncer::start(2);
    let pooled = bouncer.url(&db.name());
    let direct = [
        ("CRUDDUR_POOLER", "transaction"),
        ("DATABASE_DIRECT_URL", db.url.expose()),
    ];
    for run in ["first", "second"] {
        let (stdout, _) = run_example_with(&example, &pooled, &direct);
        assert!(
            stdout.contains("This was imported as seed data!"),
            "{run}: {stdout}"
        );
    }
}

fn run_example(example: &std::path::Path, url: &DatabaseUrl) -> (String, String) {
    run_example_with(example, url, &[])
}

fn run_example_with(
    example: &std::path::Path,
    url: &DatabaseUrl,
    env: &[(&str, &str)],
) -> (String, String) {
    let out = Command::new(example)
        .envs(env.iter().copied())
        .env("DATABASE_URL", url.expose())
        .env_remove("CONNECTION_URL")
        .env_remove("PGPASSWORD")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the example failed on {url}: {stderr}"
    );
    (stdout, stderr)
}

#[test]
fn the_example_finishes_an_interrupted_first_run_and_reads_a_read_only_database() {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;
    let Some(example) = example() else {
        panic!("the home_feed example is not built; run the tests with `cargo test`");
    };
    // As a first run killed after its first migration leaves it.
    let db = TestDb::new();
    {
        let conn = &mut db.conn();
        let mut all = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(
            &cruddur_db::MIGRATIONS,
        )
        .unwrap();
        all.sort_by_key(|m| m.name().version().to_string());
        conn.applied_migrations().unwrap();
        conn.run_migration(&*all[0]).unwrap();
    }
    let (stdout, stderr) = run_example(&example, &db.url);
    assert!(stderr.contains("loaded the reference seed"), "{stderr}");
    assert!(stdout.contains("(2 activities)"), "{stdout}");

    // Current, and every session read-only (a cautious URL, a replica's
    // settings): it reads the feed and writes nothing.
    db.conn()
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name()
        ))
        .unwrap();
    for url in [
        db.url.clone(),
        db.url
            .with_param("options", "-c default_transaction_read_only=on"),
    ] {
        let (stdout, stderr) = run_example(&example, &url);
        assert!(!stderr.contains("prepared"), "{stderr}");
        assert!(stdout.contains("(2 activities)"), "{stdout}");
    }
    assert_eq!(common::counts(&mut db.conn()), (2, 2));
}

#[test]
fn the_example_shows_server_errors_escaped() {
    let Some(example) = example() else {
        panic!("the home_feed example is not built; run the tests with `cargo test`");
    };
    // A role that does not exist, whose name the server quotes back.
    let role = format!(
        "{}\u{1b}]0;p\u{7}\u{1b}[2J\nerror: forged",
        &common::unique_name("nobody")[..20]
    );
    let url = common::server_url().with_param("user", &role);
    let out = Command::new(&example)
        .env("DATABASE_URL", url.expose())
        .env_remove("CONNECTION_URL")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("\\u{1b}]0;p"), "{stderr}");
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {stderr:?}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("error: forged")),
        "{stderr}"
    );
}
