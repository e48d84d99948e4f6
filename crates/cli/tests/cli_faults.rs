//! Bad days at the command line: what `status` and `create` show for a
//! wrong password and for a TLS connection with certificate verification
//! (on private clusters of the tests' own), and eight `migrate run`
//! processes on one database at once. What the library does on those days
//! is tested in the library's `faults` and `reliability`.

mod common;

use std::process::Command;

use common::{TempCluster, TestDb};
use diesel::prelude::*;

#[test]
fn status_says_a_verify_full_connection_uses_tls() {
    let (_dir, _cluster, good, password) = common::tls::verifying_cluster();

    let out = Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
        .args(["--database-url", good.expose(), "status"])
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TLS"), "{stdout}");
    assert!(!stdout.contains("not encrypted"), "{stdout}");
    assert!(!stdout.contains(&password), "{stdout}");
}

#[test]
fn status_and_create_name_a_wrong_password() {
    let cluster = TempCluster::builder().password_auth(true).start().unwrap();
    let right = cluster.tcp_url_for("postgres").unwrap();
    let wrong_password = "Wr0ng-Pa55word";
    let wrong = common::with_password(&right, wrong_password);
    assert_eq!(wrong.password().as_deref(), Some(wrong_password));
    // `create` does not mistake it for a missing database.
    for args in [&["status"][..], &["create"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
            .args(["--database-url", wrong.expose()])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("authentication failed"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(wrong_password), "{args:?}: {stderr}");
    }
}

#[test]
fn concurrent_migrate_processes_all_succeed_once() {
    let db = TestDb::new();
    common::cli_all_succeed_at_once(
        8,
        &["--database-url", db.url.expose(), "migrate", "run"],
        "migrate run",
    );
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        distinct: i64,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS n, count(DISTINCT version) AS distinct FROM __diesel_schema_migrations",
    )
    .get_result(&mut db.conn())
    .unwrap();
    let n = i64::try_from(common::migration_count()).unwrap();
    assert_eq!((row.n, row.distinct), (n, n));
}
