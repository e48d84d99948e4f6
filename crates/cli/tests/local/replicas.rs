//! `local start --replicas N`, `local url --replica K`, the replicas in
//! `local status` and `local stop`, through the binary on a scratch
//! directory.

use std::time::Duration;

use cruddur_db::establish;
use cruddur_db_local::LocalCluster;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::{Count, common, process_alive, rows};

/// A project cluster in a scratch directory, driven through the binary
/// with `CRUDDUR_LOCAL_DIR`; stopping it (replicas first) on drop, so that
/// no server outlives a failed test. The directory goes with it.
pub(super) struct ScratchProject {
    pub(super) cluster_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ScratchProject {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // As root the server runs as `postgres`, who must reach the directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Self {
            cluster_dir: dir.path().join("pg"),
            _dir: dir,
        }
    }

    pub(super) fn run(&self, args: &[&str]) -> common::cli::Run {
        let mut cmd = common::cli::cli();
        cmd.env("CRUDDUR_LOCAL_DIR", &self.cluster_dir);
        common::cli::run_cmd(cmd, args)
    }

    pub(super) fn url(&self, args: &[&str]) -> cruddur_db::DatabaseUrl {
        let run = self.run(args);
        run.success();
        cruddur_db::DatabaseUrl::parse(run.stdout.trim()).unwrap()
    }

    /// The primary, or replica K, as a cluster (to list its processes).
    pub(super) fn cluster(&self, replica: Option<u8>) -> LocalCluster {
        let dir = match replica {
            None => self.cluster_dir.clone(),
            Some(k) => self.cluster_dir.join(format!("replica-{k}")),
        };
        LocalCluster::at(dir, common::settings()).unwrap()
    }
}

impl Drop for ScratchProject {
    fn drop(&mut self) {
        if self.cluster_dir.join("data").exists()
            && let Err(e) = self.cluster(None).stop()
        {
            eprintln!("stopping {}: {e}", self.cluster_dir.display());
        }
    }
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    b: bool,
}

pub(super) fn in_recovery(url: &cruddur_db::DatabaseUrl) -> bool {
    diesel::sql_query("SELECT pg_is_in_recovery() AS b")
        .get_result::<Flag>(&mut establish(url).unwrap())
        .unwrap()
        .b
}

/// Whether the row `v` of table `kept` shows up on `url` within 30 s (a
/// standby may not have the table yet: that counts as not yet).
pub(super) fn row_arrives(url: &cruddur_db::DatabaseUrl, v: i32) -> bool {
    let mut conn = establish(url).unwrap();
    common::eventually(Duration::from_secs(30), || {
        diesel::sql_query("SELECT count(*) AS n FROM kept WHERE v = $1")
            .bind::<diesel::sql_types::Integer, _>(v)
            .get_result::<Count>(&mut conn)
            .is_ok_and(|c| c.n == 1)
    })
}

#[test]
fn replicas_stream_show_in_status_and_stop_with_the_cluster() {
    let project = ScratchProject::new();
    let began = std::time::Instant::now();
    let first = project.run(&["local", "start", "--replicas", "2"]);
    first.success();
    eprintln!(
        "timing: `local start --replicas 2` from nothing took {:?}",
        began.elapsed()
    );
    first
        .stderr_has("created and started the local cluster")
        .stderr_has("created and started replica 1")
        .stderr_has("created and started replica 2");

    let primary = project.url(&["local", "url"]);
    let replicas = [
        project.url(&["local", "url", "--replica", "1"]),
        project.url(&["local", "url", "--replica", "2"]),
    ];
    assert!(!in_recovery(&primary), "the primary is not a standby");
    for url in &replicas {
        assert_ne!(url, &primary, "a replica has its own socket or port");
        assert!(in_recovery(url), "{url} is a standby");
    }
    establish(&primary)
        .unwrap()
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
        .unwrap();
    for url in &replicas {
        assert!(row_arrives(url, 1), "the primary's row reaches {url}");
    }
    let Err(err) = establish(&replicas[0])
        .unwrap()
        .batch_execute("INSERT INTO kept VALUES (99)")
    else {
        panic!("a hot standby must refuse writes")
    };
    assert!(err.to_string().contains("read-only"), "{err}");

    // The library's view: in recovery, and behind by the bytes it has not
    // replayed while replay is paused (deterministic lag), none once caught up.
    establish(&replicas[0])
        .unwrap()
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    establish(&primary)
        .unwrap()
        .batch_execute("INSERT INTO kept SELECT generate_series(100, 1100)")
        .unwrap();
    let lag_of = |k: u8| {
        let all = project.cluster(None).replicas().unwrap();
        let status = all.iter().find(|r| r.number == k).unwrap();
        assert_eq!(status.in_recovery, Some(true), "{status}");
        status.replay_lag_bytes.unwrap()
    };
    assert!(lag_of(1) > 0, "paused replica 1 is behind");
    establish(&replicas[0])
        .unwrap()
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    assert!(
        common::eventually(Duration::from_secs(30), || lag_of(1) == 0 && lag_of(2) == 0),
        "both catch up"
    );

    let status = project.run(&["local", "status"]);
    status
        .success()
        .stdout_has("status:     running")
        .stdout_has("replica 1: running (pid ")
        .stdout_has("replica 2: running (pid ");
    assert!(
        !status.stdout.contains("NOT in recovery"),
        "{}",
        status.stdout
    );

    // Idempotent: nothing is copied or restarted a second time.
    let pids: Vec<_> = [1, 2]
        .map(|k| project.cluster(Some(k)).pid().unwrap())
        .into();
    project
        .run(&["local", "start", "--replicas", "2"])
        .success()
        .stderr_has(&format!("replica 1 is already running (pid {})", pids[0]))
        .stderr_has(&format!("replica 2 is already running (pid {})", pids[1]));

    // A replica that was never made is an error naming the command that makes it.
    project
        .run(&["local", "url", "--replica", "3"])
        .failure()
        .stderr_has("no replica 3")
        .stderr_has("local start --replicas 3");

    // Stop leaves no process of the primary or of a replica.
    let clusters = [None, Some(1), Some(2)].map(|k| project.cluster(k));
    let before: Vec<u32> = clusters.iter().flat_map(|c| c.processes()).collect();
    assert!(before.len() >= 6, "three servers with children: {before:?}");
    project
        .run(&["local", "stop"])
        .success()
        .stderr_has("stopped the local cluster");
    for pid in &before {
        assert!(!process_alive(*pid), "server process {pid} is gone");
    }
    for cluster in &clusters {
        assert!(
            cluster.processes().is_empty(),
            "{}",
            cluster.dir().display()
        );
    }
    project
        .run(&["local", "status"])
        .stdout_has("replica 1: stopped")
        .stdout_has("replica 2: stopped");

    // A plain start leaves them stopped, and says so.
    project
        .run(&["local", "start"])
        .success()
        .stderr_has("2 replica(s) stopped");
    assert!(project.cluster(Some(1)).pid().is_none());

    // Started again with their data, on the same ports.
    let began = std::time::Instant::now();
    project
        .run(&["local", "start", "--replicas", "2"])
        .success()
        .stderr_has("started replica 1 in")
        .stderr_has("started replica 2 in");
    eprintln!(
        "timing: restarting 2 stopped replicas took {:?}",
        began.elapsed()
    );
    for (k, url) in replicas.iter().enumerate() {
        assert_eq!(
            &project.url(&["local", "url", "--replica", &(k + 1).to_string()]),
            url,
            "replica {} keeps its URL",
            k + 1
        );
        assert!(in_recovery(url));
        // 1 and 100..=1100.
        assert_eq!(rows(url), 1002, "replica {} kept its data", k + 1);
    }
    establish(&primary)
        .unwrap()
        .batch_execute("INSERT INTO kept VALUES (2)")
        .unwrap();
    for url in &replicas {
        assert!(
            row_arrives(url, 2),
            "a new row reaches {url} after the restart"
        );
    }
}

#[test]
fn replicas_whose_slot_is_gone_or_copy_was_cut_short_are_rebuilt() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "2"])
        .success();
    let primary = project.url(&["local", "url"]);
    let replica_2 = project.cluster(Some(2));
    let marker = replica_2.data_dir().join("cruddur-test-marker");

    // Stop everything, bring back the primary alone and drop the slot.
    project.run(&["local", "stop"]).success();
    std::fs::write(&marker, "the old copy").unwrap();
    project.run(&["local", "start"]).success();
    establish(&primary)
        .unwrap()
        .batch_execute(
            "SELECT pg_drop_replication_slot('cruddur_replica_2');
             CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)",
        )
        .unwrap();

    let began = std::time::Instant::now();
    // And a copy cut short: a `.building` directory left behind, with the
    // slot its pg_basebackup had already created.
    let building = project.cluster_dir.join("replica-3.building");
    std::fs::create_dir_all(building.join("data")).unwrap();
    std::fs::write(building.join("data/PG_VERSION"), "15\n").unwrap();
    establish(&primary)
        .unwrap()
        .batch_execute("SELECT pg_create_physical_replication_slot('cruddur_replica_3', true)")
        .unwrap();

    project
        .run(&["local", "start", "--replicas", "3"])
        .success()
        .stderr_has("started replica 1 in")
        .stderr_has("note: replica 3 was removed and copied again")
        .stderr_has("data directory was incomplete")
        .stderr_has("note: replica 2 was removed and copied again")
        .stderr_has("replication slot was gone");
    eprintln!(
        "timing: rebuilding replicas 2 and 3 took {:?}",
        began.elapsed()
    );
    assert!(!marker.exists(), "replica 2's old data directory is gone");
    assert!(replica_2.pid().is_some(), "replica 2 runs");

    #[derive(QueryableByName)]
    struct Slot {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        active: bool,
    }
    let mut conn = establish(&primary).unwrap();
    assert!(
        common::eventually(Duration::from_secs(30), || {
            diesel::sql_query(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'cruddur_replica_2'",
            )
            .get_result::<Slot>(&mut conn)
            .is_ok_and(|s| s.active)
        }),
        "the slot is made again and replica 2 streams from it"
    );
    let url = project.url(&["local", "url", "--replica", "2"]);
    assert!(in_recovery(&url));
    assert!(row_arrives(&url, 7), "the rebuilt copy has the rows");
    conn.batch_execute("INSERT INTO kept VALUES (8)").unwrap();
    assert!(row_arrives(&url, 8), "and receives new ones");
    assert!(!building.exists(), "the leftover copy is gone");
    let url_3 = project.url(&["local", "url", "--replica", "3"]);
    assert!(in_recovery(&url_3));
    assert!(row_arrives(&url_3, 8), "replica 3 streams too");
}

#[test]
fn concurrent_starts_with_replicas_make_each_replica_once() {
    let project = ScratchProject::new();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
                .args(["local", "start", "--replicas", "1"])
                .env("CRUDDUR_LOCAL_DIR", &project.cluster_dir)
                .env("NO_COLOR", "1")
                .env_remove("DATABASE_URL")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let stderrs: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            stderr
        })
        .collect();
    let created = stderrs
        .iter()
        .filter(|e| e.contains("created and started replica 1"))
        .count();
    assert_eq!(created, 1, "the lock lets one run copy it: {stderrs:#?}");
    assert!(
        !stderrs.iter().any(|e| e.contains("copied again")),
        "no run sees another's copy half made: {stderrs:#?}"
    );
    assert!(in_recovery(&project.url(&[
        "local",
        "url",
        "--replica",
        "1"
    ])));
}

#[test]
fn a_replica_directory_of_another_cluster_is_shown_as_not_following_the_primary() {
    let ours = ScratchProject::new();
    let theirs = ScratchProject::new();
    for project in [&ours, &theirs] {
        project
            .run(&["local", "start", "--replicas", "1"])
            .success();
    }
    let status = ours.run(&["local", "status"]);
    status.success();
    assert!(
        !status.stdout.contains("NOT a replica of this primary"),
        "{}",
        status.stdout
    );
    // Their replica's directory in place of ours (as a directory restored
    // from elsewhere would be): our slot is still there, so it starts.
    for project in [&ours, &theirs] {
        project.run(&["local", "stop"]).success();
    }
    let ours_replica = ours.cluster_dir.join("replica-1");
    std::fs::remove_dir_all(&ours_replica).unwrap();
    std::fs::rename(theirs.cluster_dir.join("replica-1"), &ours_replica).unwrap();
    ours.run(&["local", "start", "--replicas", "1"]).success();
    let status = ours.run(&["local", "status"]);
    status.success();
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with("replica 1:"))
        .unwrap_or_else(|| panic!("no replica line: {}", status.stdout))
        .to_owned();
    assert!(line.contains("running"), "{line}");
    assert!(
        line.contains("NOT a replica of this primary (a standby of another cluster"),
        "{line}"
    );
    assert!(!line.contains("bytes behind"), "{line}");
    ours.run(&["local", "stop"]).success();
}
