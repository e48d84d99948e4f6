//! The local cluster: creation, start/stop, a crash's stale pid file, URLs
//! for the library and psql, password authentication, removal of temporary
//! clusters, the embedded default of `cruddur_db_local::resolve`, links
//! planted in the cluster directory (in `local/links.rs`), server programs
//! another user could have written (in `local/programs.rs`), replicas
//! (in `local/replicas.rs`) and failover (in `local/failover.rs`).
//!
//! Every test runs its own private cluster, never the machine's server.

mod common;
/// Synchronous standbys, `local failover` and writes across it.
#[path = "local/failover.rs"]
mod failover;
/// Links planted in the cluster directory by the server's OS user.
#[path = "local/links.rs"]
mod links;
/// Server programs another user could have written, never run as root.
#[path = "local/programs.rs"]
mod programs;
/// Replicas of the project cluster, driven through the binary.
#[path = "local/replicas.rs"]
mod replicas;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TempCluster;
use cruddur_db::Settings;
use cruddur_db::variables::{CRUDDUR_DEFAULT_URL, DATABASE_URL};
use cruddur_db::{Environment, UrlSource};
use cruddur_db::{Error, admin, establish};
use cruddur_db_local::{Fallback, LocalCluster, StartOutcome, resolve_with};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Alive and not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

fn pid_file_pid(cluster: &LocalCluster) -> u32 {
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid of a running cluster");
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn rows(url: &cruddur_db::DatabaseUrl) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM kept")
        .get_result::<Count>(&mut establish(url).unwrap())
        .unwrap()
        .n
}

#[test]
fn start_after_stop_finds_the_data_on_the_same_port() {
    let cluster = common::private_cluster();
    let url = cluster.url_for("postgres").unwrap();
    let port = cluster.port().unwrap();
    establish(&url)
        .unwrap()
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1), (2)")
        .unwrap();

    assert!(cluster.stop().unwrap(), "it was running");
    assert!(establish(&url).is_err(), "stopped means unreachable");
    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::Started { initialized: false },
        "the second start must not run initdb again"
    );
    assert_eq!(cluster.port(), Some(port), "the port is remembered");
    assert_eq!(rows(&url), 2);
}

#[test]
fn start_twice_is_a_no_op() {
    let cluster = common::private_cluster();
    let pid = cluster.pid().expect("running");
    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::AlreadyRunning { pid }
    );
    assert_eq!(cluster.pid(), Some(pid), "the same postmaster");
    let status = cluster.status().unwrap();
    assert!(status.running && status.initialized, "{status}");
    assert_eq!(status.pid, Some(pid));
}

#[test]
fn stop_leaves_no_process_of_the_cluster() {
    let cluster = common::private_cluster();
    let pid = pid_file_pid(&cluster);
    let before = cluster.processes();
    assert!(
        before.contains(&pid) && before.len() > 1,
        "postmaster {pid} and its children work in the data directory: {before:?}"
    );
    assert!(cluster.stop().unwrap());
    assert!(!process_alive(pid), "postmaster {pid} is gone");
    for child in before {
        assert!(!process_alive(child), "server process {child} is gone");
    }
    assert!(cluster.processes().is_empty());
    assert!(!cluster.status().unwrap().running);
    assert!(
        !cluster.stop().unwrap(),
        "stopping a stopped cluster is a no-op"
    );
}

#[test]
fn a_crash_leaves_a_stale_pid_file_that_start_handles() {
    let cluster = common::private_cluster();
    let url = cluster.url_for("postgres").unwrap();
    establish(&url)
        .unwrap()
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
        .unwrap();
    let pid = pid_file_pid(&cluster);
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(common::eventually(Duration::from_secs(10), || {
        !process_alive(pid)
    }));
    assert!(
        cluster.data_dir().join("postmaster.pid").exists(),
        "a crash leaves postmaster.pid behind"
    );
    assert_eq!(cluster.pid(), None, "a dead pid does not count as running");

    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::Started { initialized: false }
    );
    assert_eq!(rows(&url), 1, "committed data survives the crash");
}

#[test]
fn a_pid_file_naming_another_live_program_is_stale() {
    let cluster = common::private_cluster();
    let pid_file = cluster.data_dir().join("postmaster.pid");
    let contents = std::fs::read_to_string(&pid_file).unwrap();
    assert!(cluster.stop().unwrap());

    // After a reboot the old postmaster's pid may belong to anything; the
    // server itself would then refuse to start ("lock file already exists").
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let (_, rest) = contents.split_once('\n').unwrap();
    std::fs::write(&pid_file, format!("{}\n{rest}", other.id())).unwrap();
    assert_eq!(cluster.pid(), None, "`sleep` is not this cluster's server");

    let started = cluster.start();
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(
        started.unwrap(),
        StartOutcome::Started { initialized: false }
    );
    establish(&cluster.url_for("postgres").unwrap()).unwrap();
}

#[test]
fn url_works_with_the_library_and_psql() {
    let cluster = common::private_cluster();
    let url = cluster.url().unwrap();
    assert_eq!(url.password(), None, "the socket URL holds no secret");
    assert!(admin::create_database(&url).unwrap(), "cruddur is created");
    let report = admin::prepare(&url).unwrap();
    assert!(report.seeded, "{report:?}");

    let out = Command::new("psql")
        .arg(url.expose())
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT handle FROM users ORDER BY handle",
        ])
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "psql {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "andrewbrown\nbayko\n");

    // TCP needs the password, which the TCP URL carries.
    let tcp = cluster.tcp_url_for("cruddur").unwrap();
    assert!(tcp.password().is_some());
    establish(&tcp).unwrap();
}

#[test]
fn a_wrong_password_is_an_authentication_error_that_hides_it() {
    let cluster = TempCluster::builder().password_auth(true).start().unwrap();
    let good = cluster.url_for("postgres").unwrap();
    let password = good.password().expect("a password cluster's URL has it");
    establish(&good).unwrap();

    let wrong_password = format!("not-{password}");
    let wrong = cruddur_db::DatabaseUrl::parse(&format!(
        "postgres://postgres:{wrong_password}@127.0.0.1:{}/postgres",
        cluster.port().unwrap()
    ))
    .unwrap();
    let Err(err) = establish(&wrong) else {
        panic!("a wrong password must be refused")
    };
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains(&wrong_password), "{message}");
    assert!(!message.contains(&password), "{message}");

    // The socket asks for it too on such a cluster.
    let Err(err) = establish(&cluster.socket_url_for("postgres").unwrap()) else {
        panic!("the socket must ask for the password too")
    };
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");

    let status = cluster.status().unwrap().to_string();
    assert!(!status.contains(&password), "{status}");
}

#[test]
fn ssl_option_serves_tls() {
    let work = std::env::temp_dir().join(common::unique_name("cruddur_tls"));
    std::fs::create_dir_all(&work).unwrap();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(work.join("key.pem"))
        .arg("-out")
        .arg(work.join("cert.pem"))
        .output();
    let Ok(made) = made else {
        eprintln!("skipped: openssl is not installed");
        return;
    };
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let cert = std::fs::read(work.join("cert.pem")).unwrap();
    let key = std::fs::read(work.join("key.pem")).unwrap();
    std::fs::remove_dir_all(&work).unwrap();

    let cluster = TempCluster::builder().ssl(cert, key).start().unwrap();
    let url = cluster
        .tcp_url_for("postgres")
        .unwrap()
        .with_default_param("sslmode", "require");
    #[derive(QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let ssl: Ssl = diesel::sql_query(
        "SELECT coalesce(version, 'none') AS version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .get_result(&mut establish(&url).unwrap())
    .unwrap();
    assert!(ssl.version.starts_with("TLS"), "{}", ssl.version);
}

#[test]
fn a_temporary_cluster_is_removed_on_drop() {
    let cluster = common::private_cluster();
    let dir = cluster.dir().to_path_buf();
    let pid = cluster.pid().unwrap();
    drop(cluster);
    assert!(!dir.exists(), "{} is deleted", dir.display());
    assert!(!process_alive(pid), "postmaster {pid} is stopped");
}

#[test]
fn resolve_uses_the_local_cluster_only_when_nothing_answers() {
    let cluster = common::private_cluster();
    let cluster_url = cluster.url_for("postgres").unwrap();

    // A server answers at the default URL: it is used, the cluster is not.
    let default_answers = Settings::default().with(&CRUDDUR_DEFAULT_URL, cluster_url.expose());
    let r = resolve_with(
        None,
        Environment::Development,
        &default_answers,
        Fallback::Start,
        || -> cruddur_db_local::Result<LocalCluster> {
            panic!("the local cluster must not be used when the default answers")
        },
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::Default);
    assert!(r.notice.is_none());

    // Nothing listens on port 1: the (stopped) local cluster is started.
    assert!(cluster.stop().unwrap());
    let nothing_there =
        Settings::default().with(&CRUDDUR_DEFAULT_URL, "postgres://localhost:1/feed");
    // Without leave to start it, a stopped cluster is an error that says so.
    let err = resolve_with(
        None,
        Environment::Development,
        &nothing_there,
        Fallback::IfRunning,
        || Ok((*cluster).clone()),
    )
    .unwrap_err();
    assert!(
        matches!(err, cruddur_db_local::Error::NothingAnswers { .. }),
        "{err}"
    );
    assert!(
        cluster.pid().is_none(),
        "IfRunning must not start the cluster"
    );
    let r = resolve_with(
        None,
        Environment::Development,
        &nothing_there,
        Fallback::Start,
        || Ok((*cluster).clone()),
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::LocalCluster { started: true });
    let notice = r.notice.unwrap();
    assert!(
        notice.contains("local cluster") && notice.contains(&cluster.dir().display().to_string()),
        "{notice}"
    );
    assert!(!notice.contains('\n'), "one line: {notice}");
    assert_eq!(r.config.database_url.database().as_deref(), Some("feed"));
    admin::prepare(&r.config.database_url).unwrap();

    // Running already: reused.
    let r = resolve_with(
        None,
        Environment::Development,
        &nothing_there,
        Fallback::IfRunning,
        || Ok((*cluster).clone()),
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::LocalCluster { started: false });

    // A configured URL that fails is an error, never the local cluster.
    let configured = Settings::default().with(&DATABASE_URL, "postgres://localhost:1/cruddur");
    let r = resolve_with(
        None,
        Environment::Development,
        &configured,
        Fallback::Start,
        || -> cruddur_db_local::Result<LocalCluster> {
            panic!("a configured URL must not fall back")
        },
    )
    .unwrap();
    assert_eq!(r.source, UrlSource::Environment(&DATABASE_URL));
    assert!(matches!(
        establish(&r.config.database_url),
        Err(Error::Unreachable { .. })
    ));
}

#[test]
fn project_cluster_lives_under_the_project() {
    // Only constructs it: nothing is started in the working tree.
    let cluster = LocalCluster::project(common::settings()).unwrap();
    let expected = common::settings()
        .get(&cruddur_db_local::variables::CRUDDUR_LOCAL_DIR)
        .map_or_else(
            // The workspace root, two levels above this crate.
            || {
                let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
                crate_dir.ancestors().nth(2).unwrap().join(".cruddur/pg")
            },
            Into::into,
        );
    assert_eq!(cluster.dir(), std::path::absolute(expected).unwrap());
}

#[test]
fn clusters_of_killed_processes_are_removed_by_the_next_one() {
    let abandoned = common::private_cluster();
    let dir = abandoned.dir().to_path_buf();
    let pid = abandoned.pid().unwrap();
    // Pretend its creator was killed: the owner file names a finished process.
    let mut finished = Command::new("true").spawn().unwrap();
    finished.wait().unwrap();
    std::fs::write(dir.join("owner.pid"), finished.id().to_string()).unwrap();
    // Keep `abandoned` from removing itself: the next cluster must do it.
    std::mem::forget(abandoned);

    let _next = common::private_cluster();
    assert!(!dir.exists(), "{} is removed", dir.display());
    assert!(!process_alive(pid), "its server {pid} is stopped");
}

#[test]
fn a_first_start_killed_during_initdb_leaves_a_cluster_that_starts() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    // As root the server runs as `postgres`, who must reach the directory.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cluster_dir = dir.path().join("pg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
        .args(["local", "start"])
        .env("CRUDDUR_LOCAL_DIR", &cluster_dir)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the whole group (the CLI and its initdb) once initdb has begun
    // to write the cluster, and before it finished.
    let begun = cluster_dir.join("data.initdb").join("PG_VERSION");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !begun.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(begun.exists(), "initdb did not start");
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    let cluster = LocalCluster::at(&cluster_dir, common::settings()).unwrap();
    assert!(
        !cluster.is_initialized(),
        "a half-made cluster must not look initialised"
    );

    let started = cluster
        .start()
        .expect("a start after the interrupted one works");
    assert_eq!(started, StartOutcome::Started { initialized: true });
    let url = cluster.url_for("postgres").unwrap();
    establish(&url).unwrap().batch_execute("SELECT 1").unwrap();
    cluster.stop().unwrap();
}
