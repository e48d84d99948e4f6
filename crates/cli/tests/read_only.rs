//! Read paths (`status`, `migrate status`, `feed`, `sessions`, `prepare`
//! of a current database, the library's `prepare`, `home_feed` and
//! `home_feed_json`) work where nothing may be
//! written, and change nothing: a session with
//! `default_transaction_read_only=on`, a role that may only SELECT, and a
//! hot standby started from a private cluster with `pg_basebackup -R`.

mod common;

use std::process::{Command, Output};

use common::{TestDb, counts, unique_name};
use cruddur_db::{Config, Consistency, DatabaseUrl, FeedPage, Repository};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

fn cli(url: &DatabaseUrl, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
        .arg("--database-url")
        .arg(url.expose())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PROD_CONNECTION_URL")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cruddur-db")
}

fn ok(url: &DatabaseUrl, args: &[&str]) -> String {
    let out = cli(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} on {url}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every read path, by the CLI and the library, on a migrated and seeded
/// database reached through `url`.
fn every_read_path_works(url: &DatabaseUrl) {
    // `prepare` of a current database only reads, so it works here too.
    assert!(
        ok(url, &["prepare"]).contains("is ready; nothing to do"),
        "prepare on {url}"
    );
    let report = cruddur_db::prepare(url).expect("prepare a current database");
    assert_eq!(report, cruddur_db::PrepareReport::default());
    let all_applied = format!("{} applied, 0 pending", common::migration_count());
    assert!(ok(url, &["status"]).contains(&all_applied));
    assert!(ok(url, &["migrate", "status"]).contains(&all_applied));
    assert!(ok(url, &["feed"]).contains("This was imported as seed data!"));
    assert!(ok(url, &["feed", "--json"]).contains("This was imported as seed data!"));
    ok(url, &["sessions"]);
    let repo = Repository::connect(&Config::new(url.clone())).expect("connect");
    let typed = repo
        .home_feed(Consistency::Primary, FeedPage::default())
        .expect("typed feed");
    let json = repo
        .home_feed_json(Consistency::Primary, FeedPage::default())
        .expect("JSON feed");
    assert_eq!(typed.len(), 2);
    assert_eq!(json, serde_json::to_string(&typed).unwrap());
    // The pages of a user and of a crud are reads too.
    assert!(ok(url, &["profile", "show", "--handle", "bayko"]).contains("\"cruds_count\":1"));
    let parent = typed[1].uuid.to_string();
    let args = [
        "activity",
        "show",
        "--handle",
        "andrewbrown",
        "--uuid",
        &parent,
    ];
    assert!(ok(url, &args).contains("This was imported as a seed reply!"));
    repo.user_short(Consistency::Primary, "bayko")
        .expect("short card");
}

fn has_migrations_table(conn: &mut PgConnection) -> bool {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "to_regclass('__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(conn)
    .unwrap()
}

#[test]
fn read_paths_work_on_read_only_sessions_and_change_nothing() {
    // Unmigrated: looking must not create Diesel's table.
    let empty = TestDb::new();
    empty
        .conn()
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            empty.name()
        ))
        .unwrap();
    let none_applied = format!("0 applied, {} pending", common::migration_count());
    assert!(ok(&empty.url, &["status"]).contains(&none_applied));
    assert!(ok(&empty.url, &["migrate", "status"]).contains(&none_applied));
    let feed = cli(&empty.url, &["feed"]);
    let stderr = String::from_utf8_lossy(&feed.stderr);
    assert!(
        !feed.status.success() && stderr.contains("pending"),
        "{stderr}"
    );
    assert!(
        !has_migrations_table(&mut empty.conn()),
        "a read created a table"
    );

    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).unwrap();
    db.conn()
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name()
        ))
        .unwrap();
    let before = counts(&mut db.conn());
    every_read_path_works(&db.url);
    assert_eq!(counts(&mut db.conn()), before);
}

#[test]
fn read_paths_work_for_a_role_that_may_only_select() {
    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).unwrap();
    let role = unique_name("reader");
    db.conn()
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE \"{}\" TO {role}; \
             GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            db.name()
        ))
        .unwrap();
    let reader = db
        .url
        .with_param("user", &role)
        .with_param("password", "unused");
    every_read_path_works(&reader);
    db.conn()
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .unwrap();
}

#[test]
fn read_paths_work_on_a_hot_standby() {
    let pair = common::StreamingPair::start();
    let name = "feed";
    cruddur_db::prepare(&pair.primary_url(name)).unwrap();
    assert!(
        pair.caught_up(std::time::Duration::from_secs(30)),
        "the standby did not replay the new database within 30 s"
    );

    let replica = pair.standby_url(name);
    let mut conn = cruddur_db::establish(&replica).expect("connect to the standby");
    let identity = cruddur_db::admin::identify(&mut conn).unwrap();
    assert!(identity.in_recovery, "the standby is in recovery");
    let before = counts(&mut conn);
    every_read_path_works(&replica);
    assert_eq!(counts(&mut conn), before);
}
