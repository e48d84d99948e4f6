//! Read paths (`status`, `migrate status`, `feed`, `sessions`, the
//! library's `home_feed` and `home_feed_json`) work where nothing may be
//! written, and change nothing: a session with
//! `default_transaction_read_only=on`, a role that may only SELECT, and a
//! hot standby started from a private cluster with `pg_basebackup -R`.

mod common;

use std::process::{Command, Output};

use common::{TestDb, counts, unique_name};
use cruddur_db::{Config, DatabaseUrl, FeedPage, Repository};
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
    assert!(ok(url, &["status"]).contains("3 applied, 0 pending"));
    assert!(ok(url, &["migrate", "status"]).contains("3 applied, 0 pending"));
    assert!(ok(url, &["feed"]).contains("This was imported as seed data!"));
    assert!(ok(url, &["feed", "--json"]).contains("This was imported as seed data!"));
    ok(url, &["sessions"]);
    let repo = Repository::connect(&Config::new(url.clone())).expect("connect");
    let typed = repo.home_feed(FeedPage::default()).expect("typed feed");
    let json = repo.home_feed_json(FeedPage::default()).expect("JSON feed");
    assert_eq!(typed.len(), 1);
    assert_eq!(json, serde_json::to_string(&typed).unwrap());
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
    assert!(ok(&empty.url, &["status"]).contains("0 applied, 3 pending"));
    assert!(ok(&empty.url, &["migrate", "status"]).contains("0 applied, 3 pending"));
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

/// A free TCP port on the loopback address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PostgreSQL program as the cluster's server user (`postgres` when
/// the tests run as root).
fn as_server(cluster: &cruddur_db_local::LocalCluster, tool: &str) -> Command {
    let program = cluster.binaries().tool(tool);
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if root {
        let user = common::settings()
            .get("CRUDDUR_PG_USER")
            .unwrap_or(cruddur_db_local::DEFAULT_SERVER_USER)
            .to_owned();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &user, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn read_paths_work_on_a_hot_standby() {
    let primary = common::private_cluster();
    let name = "feed";
    let url = primary.url_for(name).unwrap();
    cruddur_db::prepare(&url).unwrap();

    let standby = primary.dir().join("standby");
    let data = standby.join("data");
    // pg_basebackup creates `standby` for the server user; the standby's
    // socket goes there too.
    let socket = standby.clone();
    let mut backup = as_server(&primary, "pg_basebackup");
    backup
        .arg("--host")
        .arg(primary.socket_dir())
        .arg("--port")
        .arg(primary.port().unwrap().to_string())
        .args(["--username", "postgres", "--pgdata"])
        .arg(&data)
        .args([
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        ]);
    run(backup, "pg_basebackup");
    let port = free_port();
    let mut start = as_server(&primary, "pg_ctl");
    start
        .arg("start")
        .arg("--pgdata")
        .arg(&data)
        .arg("--log")
        .arg(standby.join("server.log"))
        .args(["--wait", "--timeout", "60", "-o"])
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=''",
            socket.display()
        ));
    run(start, "starting the standby");
    let stop = || {
        let mut stop = as_server(&primary, "pg_ctl");
        stop.arg("stop")
            .arg("--pgdata")
            .arg(&data)
            .args(["-m", "immediate"]);
        let _ = stop.output();
    };

    let replica = url
        .with_param("host", &socket.to_string_lossy())
        .with_param("port", &port.to_string());
    let mut conn = cruddur_db::establish(&replica).expect("connect to the standby");
    let identity = cruddur_db::admin::identify(&mut conn).unwrap();
    assert!(identity.in_recovery, "the standby is in recovery");
    let before = counts(&mut conn);
    let result = std::panic::catch_unwind(|| every_read_path_works(&replica));
    let after = counts(&mut conn);
    stop();
    result.unwrap();
    assert_eq!(after, before);
}
