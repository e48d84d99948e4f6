//! A private primary with one hot standby fed by streaming replication:
//! [`StreamingPair`], for the tests of read replicas and of read paths on
//! a standby.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cruddur_db::DatabaseUrl;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::{TempCluster, eventually, unique_name};

/// A free TCP port on the loopback address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private primary ([`TempCluster`]) and a hot standby made from it with
/// `pg_basebackup -R -X stream -c fast -C -S <slot>`, streaming from it
/// through a physical replication slot. Dropping it stops the standby,
/// drops the slot (which would otherwise hold WAL on the primary) and
/// removes both.
///
/// The standby listens on a unix socket in its own directory, on a port of
/// its own.
pub struct StreamingPair {
    primary: TempCluster,
    standby_dir: PathBuf,
    port: u16,
    slot: String,
}

impl StreamingPair {
    /// Starts a primary and a standby with default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a primary and a standby whose `postgresql.conf` also has
    /// `standby_conf` (e.g. `max_standby_streaming_delay = '1s'`).
    pub fn start_with(standby_conf: &[&str]) -> Self {
        let primary = TempCluster::start().expect("start the primary");
        let slot = unique_name("standby");
        let standby_dir = primary.dir().join("standby");
        let mut backup = primary.command("pg_basebackup");
        backup
            .arg("--host")
            .arg(primary.socket_dir())
            .arg("--port")
            .arg(primary.port().expect("the primary has a port").to_string())
            .args(["--username", "postgres", "--pgdata"])
            .arg(standby_dir.join("data"))
            .args([
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--create-slot",
                "--slot",
                &slot,
            ]);
        run(backup, "pg_basebackup");
        let pair = Self {
            primary,
            standby_dir,
            port: free_port(),
            slot,
        };
        if !standby_conf.is_empty() {
            let conf = pair.standby_dir.join("data").join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).expect("read the standby's conf");
            for line in standby_conf {
                text.push('\n');
                text.push_str(line);
            }
            text.push('\n');
            std::fs::write(&conf, text).expect("write the standby's conf");
        }
        pair.start_standby();
        pair
    }

    /// The primary.
    pub fn primary(&self) -> &TempCluster {
        &self.primary
    }

    /// `database` on the primary.
    pub fn primary_url(&self, database: &str) -> DatabaseUrl {
        self.primary.url_for(database).expect("the primary's URL")
    }

    /// `database` on the standby (its unix socket).
    pub fn standby_url(&self, database: &str) -> DatabaseUrl {
        self.primary_url(database)
            .with_param("host", &self.standby_dir.to_string_lossy())
            .with_param("port", &self.port.to_string())
    }

    /// The standby's data directory.
    pub fn standby_data(&self) -> PathBuf {
        self.standby_dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.primary.command("pg_ctl");
        cmd.args(args).arg("--pgdata").arg(self.standby_data());
        cmd
    }

    /// Starts the standby (again) and waits until it accepts connections.
    pub fn start_standby(&self) {
        let mut start = self.pg_ctl(&["start", "--wait", "--timeout", "60"]);
        start
            .arg("--log")
            .arg(self.standby_dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=''",
                self.port,
                self.standby_dir.display()
            ));
        run(start, "starting the standby");
    }

    /// Stops the standby at once (`pg_ctl stop -m immediate`): as if it
    /// crashed.
    pub fn stop_standby(&self) {
        run(
            self.pg_ctl(&["stop", "-m", "immediate", "--wait"]),
            "stopping the standby",
        );
    }

    /// Freezes the standby: SIGSTOP to its postmaster and every process
    /// it started. The kernel still accepts connections and data for it,
    /// but nothing answers: a server that hangs, or a host gone silent.
    pub fn freeze_standby(&self) {
        self.signal_standby(libc::SIGSTOP);
    }

    /// Lets a frozen standby run again (SIGCONT).
    pub fn thaw_standby(&self) {
        self.signal_standby(libc::SIGCONT);
    }

    /// Sends `signal` to the standby's postmaster (first, so that it
    /// starts no new process) and then to its children.
    fn signal_standby(&self, signal: libc::c_int) {
        let Some(postmaster) = self.standby_postmaster() else {
            return;
        };
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        for pid in pids {
            #[expect(unsafe_code, reason = "kill(2) through libc")]
            // SAFETY: kill(2) with a pid read from the standby's own
            // postmaster.pid or /proc; it touches no memory of ours.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// The standby's postmaster, from the first line of `postmaster.pid`.
    fn standby_postmaster(&self) -> Option<libc::pid_t> {
        let text = std::fs::read_to_string(self.standby_data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// A new connection to `database` on the standby.
    pub fn standby_conn(&self, database: &str) -> PgConnection {
        cruddur_db::establish(&self.standby_url(database)).expect("connect to the standby")
    }

    /// Pauses replay on the standby and waits until it is paused: WAL is
    /// still received, but nothing more becomes visible there.
    pub fn pause_replay(&self, database: &str) {
        let mut conn = self.standby_conn(database);
        conn.batch_execute("SELECT pg_wal_replay_pause()")
            .expect("pause replay");
        let paused = eventually(Duration::from_secs(10), || {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "pg_get_wal_replay_pause_state()",
            ))
            .get_result::<String>(&mut conn)
            .is_ok_and(|s| s == "paused")
        });
        assert!(paused, "replay did not pause within 10 s");
    }

    /// Resumes replay on the standby.
    pub fn resume_replay(&self, database: &str) {
        self.standby_conn(database)
            .batch_execute("SELECT pg_wal_replay_resume()")
            .expect("resume replay");
    }

    /// Waits (up to `bound`) until the standby has replayed everything the
    /// primary had written when this was called; returns whether it did.
    pub fn caught_up(&self, bound: Duration) -> bool {
        let mut primary = cruddur_db::establish(&self.primary_url("postgres")).expect("primary");
        let target = cruddur_db::replica::current_position(&mut primary).expect("primary LSN");
        let mut standby = self.standby_conn("postgres");
        eventually(bound, || {
            cruddur_db::replica::replay_position(&mut standby)
                .is_ok_and(|p| p.is_some_and(|p| p >= target))
        })
    }
}

/// The processes whose parent is `parent` (from `/proc/PID/stat`).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parens.
            let ppid: libc::pid_t = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

impl Drop for StreamingPair {
    fn drop(&mut self) {
        // A standby left frozen by a failed test would not stop.
        self.thaw_standby();
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "--wait"]).output();
        // The walsender of the stopped standby exits shortly after it;
        // only then can the slot go.
        let dropped = eventually(Duration::from_secs(10), || {
            cruddur_db::establish(&self.primary_url("postgres")).is_ok_and(|mut conn| {
                conn.batch_execute(&format!("SELECT pg_drop_replication_slot('{}')", self.slot))
                    .is_ok()
            })
        });
        if !dropped {
            eprintln!(
                "could not drop the replication slot {} of {}",
                self.slot,
                self.standby_dir.display()
            );
        }
        // `primary` drops next: it stops the primary and removes its
        // directory, the standby's included.
    }
}

/// Whether `conn` is on a standby (`pg_is_in_recovery()`).
pub fn in_recovery(conn: &mut PgConnection) -> cruddur_db::Result<bool> {
    Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "pg_is_in_recovery()",
    ))
    .get_result(conn)?)
}

/// Whether the activity `uuid` is visible on `conn`, and whether `conn` is
/// on a standby: what a routed read saw, and where.
pub fn sees(conn: &mut PgConnection, uuid: uuid::Uuid) -> cruddur_db::Result<(bool, bool)> {
    use cruddur_db::schema::activities;
    let found: i64 = activities::table
        .filter(activities::uuid.eq(uuid))
        .count()
        .get_result(conn)?;
    Ok((found == 1, in_recovery(conn)?))
}
