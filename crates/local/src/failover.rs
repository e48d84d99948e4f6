//! Synchronous standbys, failover and the stable endpoint (see the
//! [crate documentation](crate#failover)).
//!
//! A cluster's servers are its *members*: member 0 is the cluster's own
//! data directory, member K is `replica-K`. Which member is the primary is
//! kept in the file `primary` (absent: member 0). A failover kills the
//! primary, promotes the standby furthest along and writes the file; the
//! other standbys are pointed at the new primary, and the old one comes
//! back as a standby (rewound with `pg_rewind`) at the next start.

use std::time::{Duration, Instant};

use cruddur_db::DatabaseUrl;
use diesel::connection::SimpleConnection as _;
use diesel::dsl::sql;
use diesel::pg::data_types::PgLsn;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, PgLsn as PgLsnType, Text};

use crate::cluster::*;
use crate::error::Result;
use crate::os::poll;
use crate::*;

/// Which member is the primary: its number, `0` for the cluster's own
/// data directory. Absent until the first failover.
const PRIMARY_FILE: &str = "primary";
/// Present (`on`) when the primary waits for a standby at each commit.
const SYNCHRONOUS_FILE: &str = "synchronous";
/// The slot member 0 streams through once it is a standby.
const ORIGINAL_SLOT: &str = "cruddur_original";
/// How long a failover waits for the promoted server and for the other
/// standbys to stream from it: 60 seconds.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`LocalCluster::failover`] did.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    /// The member that was the primary and was killed (0: the cluster's
    /// own data directory, K: replica K).
    pub old_primary: u8,
    /// The postmaster killed, when one was running.
    pub killed_pid: Option<u32>,
    /// The member promoted.
    pub new_primary: u8,
    /// The promoted server's WAL receive position when it was chosen: the
    /// highest among the running standbys.
    pub promoted_at: Option<String>,
    /// The other standbys, now streaming from the new primary.
    pub repointed: Vec<u8>,
    /// The new primary's `synchronous_standby_names` (empty: it waits for
    /// no standby, because none is left running).
    pub synchronous_standby_names: String,
    /// From the kill to the new primary accepting writes.
    pub elapsed: Duration,
}

/// What [`LocalCluster::start`] did with a former primary after a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoined {
    /// It was rewound with `pg_rewind` onto the new primary's timeline and
    /// started as its standby.
    Rewound,
    /// It was a standby already; it was started (or was running).
    AlreadyStandby,
}

impl LocalCluster {
    /// Member `m` as a cluster: `0` is this one, K replica K.
    pub(crate) fn member(&self, m: u8) -> LocalCluster {
        if m == 0 {
            self.clone()
        } else {
            self.replica(m)
        }
    }

    /// The application name member `m` streams with (its `cluster_name`),
    /// as `synchronous_standby_names` and `pg_stat_replication` name it:
    /// `original` for member 0, `replicaK` for replica K.
    pub fn member_name(m: u8) -> String {
        if m == 0 {
            "original".to_owned()
        } else {
            format!("replica{m}")
        }
    }

    /// The physical slot member `m` streams through.
    pub(crate) fn member_slot(m: u8) -> String {
        if m == 0 {
            ORIGINAL_SLOT.to_owned()
        } else {
            Self::replica_slot(m)
        }
    }

    /// The number of the member that is the primary: 0 (this cluster's own
    /// data directory) until a [`failover`](Self::failover), then the
    /// replica promoted.
    pub fn primary_number(&self) -> u8 {
        self.read_file(PRIMARY_FILE)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether a [`failover`](Self::failover) ever ran here.
    pub(crate) fn has_failed_over(&self) -> bool {
        self.read_file(PRIMARY_FILE).is_ok()
    }

    /// The member that is the primary, as a cluster.
    pub fn primary_member(&self) -> LocalCluster {
        self.member(self.primary_number())
    }

    /// Whether the primary waits for a standby at each commit (set by
    /// [`start_replicas_with`](Self::start_replicas_with)).
    pub fn is_synchronous(&self) -> bool {
        self.read_file(SYNCHRONOUS_FILE)
            .is_ok_and(|s| s.trim() == "on")
    }

    /// Whether any replica directory exists (made by
    /// [`start_replicas`](Self::start_replicas)). Asks no server.
    pub fn has_replicas(&self) -> bool {
        self.replica_numbers().is_ok_and(|n| !n.is_empty())
    }

    /// Every member that exists: 0 and each `replica-K`, ascending.
    pub(crate) fn member_numbers(&self) -> Result<Vec<u8>> {
        let mut numbers = vec![0];
        numbers.extend(self.replica_numbers()?);
        Ok(numbers)
    }

    /// The stable endpoint of `database`: one URL listing every member
    /// (the primary first) with `target_session_attrs=read-write`, so that
    /// libpq tries each in turn and keeps the one that accepts writes. A
    /// client that reconnects after a [`failover`](Self::failover) reaches
    /// the new primary without a new URL. Over the unix sockets without a
    /// password ([`Auth::SocketTrust`]), else over TCP with it.
    pub fn endpoint_url_for(&self, database: &str) -> Result<DatabaseUrl> {
        let primary = self.primary_number();
        let mut order = vec![primary];
        order.extend(self.member_numbers()?.into_iter().filter(|&m| m != primary));
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for m in order {
            let member = self.member(m);
            let Some(port) = member.port() else { continue };
            hosts.push(match self.auth() {
                Auth::SocketTrust => member.socket_dir().to_string_lossy().into_owned(),
                Auth::Password => "127.0.0.1".to_owned(),
            });
            ports.push(port.to_string());
        }
        if hosts.is_empty() {
            return Err(self.error("it has not been started yet, so it has no port"));
        }
        let (hosts, ports) = (hosts.join(","), ports.join(","));
        let mut params = vec![
            ("host", hosts.as_str()),
            ("port", ports.as_str()),
            ("user", SUPERUSER),
            ("dbname", database),
            ("target_session_attrs", "read-write"),
        ];
        let password;
        if self.auth() == Auth::Password {
            password = self
                .read_file(PASSWORD_FILE)
                .map_err(|e| self.io_error("reading the password file", e))?;
            params.push(("password", password.trim()));
        }
        Ok(DatabaseUrl::from_params(&params)?)
    }

    /// [`endpoint_url_for`](Self::endpoint_url_for) the [`DEFAULT_DATABASE`].
    pub fn endpoint_url(&self) -> Result<DatabaseUrl> {
        self.endpoint_url_for(DEFAULT_DATABASE)
    }

    /// The key=value connection string a standby streams from the primary
    /// `primary` with (libpq quoting).
    pub(crate) fn primary_conninfo(&self, primary: &LocalCluster) -> Result<String> {
        let port = primary.require_port()?;
        let quote = cruddur_db::conninfo::quote_key_value;
        let mut text = format!("user={SUPERUSER} port={port} ");
        match self.auth() {
            Auth::SocketTrust => {
                text.push_str(&format!(
                    "host={}",
                    quote(&primary.socket_dir().to_string_lossy())
                ));
            }
            Auth::Password => {
                let password = self
                    .read_file(PASSWORD_FILE)
                    .map_err(|e| self.io_error("reading the password file", e))?;
                text.push_str(&format!(
                    "host=127.0.0.1 password={}",
                    quote(password.trim())
                ));
            }
        }
        Ok(text)
    }

    /// Sets the primary's `synchronous_standby_names` to `ANY 1 (…)` of
    /// the standbys among `standbys` (each one's application name), or to
    /// nothing, and `synchronous_commit = on`, and reloads it. Returns the
    /// value set.
    pub(crate) fn set_synchronous_standbys(
        &self,
        primary: &mut PgConnection,
        standbys: &[u8],
        synchronous: bool,
    ) -> Result<String> {
        let names = if synchronous && !standbys.is_empty() {
            let list: Vec<String> = standbys.iter().map(|&m| Self::member_name(m)).collect();
            format!("ANY 1 ({})", list.join(", "))
        } else {
            String::new()
        };
        // ALTER SYSTEM takes no parameters; the names are ours (letters and
        // digits only).
        for statement in [
            format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
            "ALTER SYSTEM SET synchronous_commit = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            primary
                .batch_execute(&statement)
                .map_err(cruddur_db::Error::from)?;
        }
        let value = if synchronous { "on" } else { "off" };
        self.open_dir()
            .and_then(|d| d.write(SYNCHRONOUS_FILE, format!("{value}\n").as_bytes()))
            .map_err(|e| self.io_error("writing the synchronous file", e))?;
        Ok(names)
    }

    /// Waits until at least one standby streams to `primary` as a
    /// synchronous one (`pg_stat_replication.sync_state` `sync` or
    /// `quorum`), for at most [`FAILOVER_TIMEOUT`].
    pub(crate) fn wait_for_synchronous(&self, primary: &mut PgConnection) -> Result<()> {
        let synced = poll(FAILOVER_TIMEOUT, || {
            diesel::select(sql::<Bool>(
                "EXISTS (SELECT 1 FROM pg_stat_replication \
                 WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))",
            ))
            .get_result(primary)
            .unwrap_or(false)
        });
        if synced {
            Ok(())
        } else {
            Err(self.error(format!(
                "no standby became synchronous within {} s (see pg_stat_replication on the primary)",
                FAILOVER_TIMEOUT.as_secs()
            )))
        }
    }

    /// What RDS Multi-AZ does when the primary's host fails, locally:
    ///
    /// 1. the primary's postmaster is killed (`SIGKILL`), then any of its
    ///    processes left, as a host failure would end them;
    /// 2. the running standby with the highest WAL receive position is
    ///    promoted (`pg_ctl promote`): with a synchronous standby it holds
    ///    every commit that was acknowledged;
    /// 3. the `primary` file names it, so that
    ///    [`endpoint_url`](Self::endpoint_url) lists it first (the endpoint
    ///    finds it anyway: the others refuse writes);
    /// 4. every other running standby gets a slot on the new primary and is
    ///    pointed at it (`ALTER SYSTEM SET primary_conninfo`, reloaded; it
    ///    follows the new timeline, as `recovery_target_timeline` is
    ///    `latest` by default), and the failover waits until each streams;
    /// 5. a synchronous cluster's new primary waits for those standbys
    ///    (for none when none is left: writes would block otherwise).
    ///
    /// The old primary stays down; the next [`start`](Self::start) rewinds
    /// it and brings it back as a standby. Fails, having killed nothing,
    /// when no standby is running.
    pub fn failover(&self) -> Result<FailoverReport> {
        let _lock = self.lock()?;
        let old = self.primary_number();
        let old_member = self.member(old);
        let standbys: Vec<u8> = self
            .member_numbers()?
            .into_iter()
            .filter(|&m| m != old && self.member(m).pid().is_some())
            .collect();
        if standbys.is_empty() {
            return Err(self.error(
                "no standby is running to take over (start some with `cruddur-db local start --replicas N`)",
            ));
        }
        let began = Instant::now();
        let killed_pid = old_member.kill_locked()?;

        // The standby that received the most WAL loses the least; with a
        // synchronous standby that is one that holds every acknowledged
        // commit.
        let mut best: Option<(u8, u64)> = None;
        for &m in &standbys {
            let Ok(mut conn) = self
                .member(m)
                .url_for("postgres")
                .and_then(|u| Ok(cruddur_db::establish(&u)?))
            else {
                continue;
            };
            let received: Option<PgLsn> = diesel::select(sql::<Nullable<PgLsnType>>(
                "coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())",
            ))
            .get_result(&mut conn)
            .ok()
            .flatten();
            let position = received.map_or(0, |l| l.0);
            if best.is_none_or(|(_, b)| position > b) {
                best = Some((m, position));
            }
        }
        let Some((new, position)) = best else {
            return Err(self.error(format!(
                "the primary was killed, but no standby answered to be promoted; start one and promote it with `pg_ctl promote` (standbys: {standbys:?})"
            )));
        };
        let promoted = self.member(new);
        let mut cmd = promoted.command("pg_ctl");
        cmd.arg("promote")
            .arg("--pgdata")
            .arg(promoted.data_dir())
            .args(["--wait", "--timeout"])
            .arg(FAILOVER_TIMEOUT.as_secs().to_string());
        promoted.run(cmd, "pg_ctl promote")?;
        self.open_dir()
            .and_then(|d| d.write(PRIMARY_FILE, format!("{new}\n").as_bytes()))
            .map_err(|e| self.io_error("writing the primary file", e))?;
        let mut primary = cruddur_db::establish(&promoted.url_for("postgres")?)?;
        let elapsed = began.elapsed();

        // Slots for every other member, so that each keeps its WAL here
        // from now on (slots are not copied to standbys).
        let others: Vec<u8> = self
            .member_numbers()?
            .into_iter()
            .filter(|&m| m != new)
            .collect();
        for &m in &others {
            create_slot(&mut primary, &Self::member_slot(m))?;
        }
        let mut repointed = Vec::new();
        for &m in standbys.iter().filter(|&&m| m != new) {
            self.point_at_primary(m)?;
            repointed.push(m);
        }
        for &m in &repointed {
            if !poll(FAILOVER_TIMEOUT, || streaming(&mut primary, m)) {
                return Err(self.error(format!(
                    "member {m} was pointed at the new primary (replica {new}) but does not stream from it within {} s; see {}",
                    FAILOVER_TIMEOUT.as_secs(),
                    self.member(m).log_file().display()
                )));
            }
        }
        let synchronous_standby_names =
            self.set_synchronous_standbys(&mut primary, &repointed, self.is_synchronous())?;
        Ok(FailoverReport {
            old_primary: old,
            killed_pid,
            new_primary: new,
            promoted_at: (position > 0).then(|| cruddur_db::replica::Lsn(position).to_string()),
            repointed,
            synchronous_standby_names,
            elapsed,
        })
    }

    /// Kills this server as a host failure would: `SIGKILL` to the
    /// postmaster, then to every process of it left, and waits until none
    /// is. Returns the postmaster's id when it was running.
    pub(crate) fn kill_locked(&self) -> Result<Option<u32>> {
        let pid = self.pid();
        let kill = |pid: u32| {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                // Gone already is what we want.
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        };
        if let Some(pid) = pid {
            kill(pid);
        }
        for child in self.processes() {
            kill(child);
        }
        if !poll(Duration::from_secs(10), || self.processes().is_empty()) {
            return Err(self.error(format!(
                "server processes {:?} are still alive after SIGKILL",
                self.processes()
            )));
        }
        Ok(pid)
    }

    /// Brings member `m`, a former primary, back as a standby of the
    /// current primary: stopped if it runs, rewound with `pg_rewind` onto
    /// the primary's timeline (`pg_rewind` first finishes its crash
    /// recovery), given `standby.signal`, the primary's conninfo and its
    /// slot, and started. A member that is a standby already is only
    /// started. The caller holds the lock, and the primary runs.
    pub(crate) fn rejoin_locked(&self, m: u8) -> Result<Rejoined> {
        let member = self.member(m);
        let primary = self.primary_member();
        let mut conn = cruddur_db::establish(&primary.url_for("postgres")?)?;
        create_slot(&mut conn, &Self::member_slot(m))?;
        if member.data_dir().join("standby.signal").is_file() {
            member.run_server_locked()?;
            return Ok(Rejoined::AlreadyStandby);
        }
        // A primary of the old timeline: it may hold WAL the new primary
        // never had, which pg_rewind takes out.
        member.stop_locked()?;
        member.clear_stale_pid_file()?;
        // pg_rewind reads the source's timeline from its control file,
        // which a promotion updates only at its next checkpoint: without
        // one it finds "the same timeline" and rewinds nothing.
        conn.batch_execute("CHECKPOINT")
            .map_err(cruddur_db::Error::from)?;
        let port = primary.require_port()?;
        let host = match self.auth() {
            Auth::SocketTrust => primary.socket_dir().to_string_lossy().into_owned(),
            Auth::Password => "127.0.0.1".to_owned(),
        };
        let source = format!(
            "user={SUPERUSER} dbname=postgres port={port} host={}",
            cruddur_db::conninfo::quote_key_value(&host)
        );
        let mut cmd = member.command("pg_rewind");
        if self.auth() == Auth::Password {
            // Through the environment: an argument would show in `ps`.
            let password = self
                .read_file(PASSWORD_FILE)
                .map_err(|e| self.io_error("reading the password file", e))?;
            cmd.env("PGPASSWORD", password.trim());
        }
        cmd.arg("--target-pgdata")
            .arg(member.data_dir())
            .arg("--source-server")
            .arg(&source)
            .arg("--progress");
        member.run(cmd, "pg_rewind").map_err(|e| {
            self.error(format!(
                "{e}\nthe former primary (member {m}) could not be rewound; to copy it anew instead: `cruddur-db local stop`, remove {}, and `cruddur-db local start --replicas N`",
                member.data_dir().display()
            ))
        })?;
        let data = member
            .open_dir()
            .and_then(|d| d.dir(DATA))
            .map_err(|e| self.io_error("opening the rewound data directory", e))?;
        // pg_rewind copied the primary's postgresql.auto.conf; the lines
        // appended last win.
        let recovery = format!(
            "\n# Written by cruddur-db when this server rejoined as a standby.\n\
             primary_conninfo = '{}'\nprimary_slot_name = '{}'\n",
            self.primary_conninfo(&primary)?.replace('\'', "''"),
            Self::member_slot(m)
        );
        data.append("postgresql.auto.conf", recovery.as_bytes())
            .and_then(|()| data.write("standby.signal", b""))
            .map_err(|e| self.io_error("writing the rewound server's recovery settings", e))?;
        member.run_server_locked()?;
        if !poll(FAILOVER_TIMEOUT, || streaming(&mut conn, m)) {
            return Err(self.error(format!(
                "the former primary (member {m}) was rewound and started, but does not stream from the primary within {} s; see {}",
                FAILOVER_TIMEOUT.as_secs(),
                member.log_file().display()
            )));
        }
        if self.is_synchronous() {
            let standbys: Vec<u8> = self
                .member_numbers()?
                .into_iter()
                .filter(|&s| s != self.primary_number())
                .collect();
            self.set_synchronous_standbys(&mut conn, &standbys, true)?;
            self.wait_for_synchronous(&mut conn)?;
        }
        Ok(Rejoined::Rewound)
    }
}

/// Whether member `m` streams to `primary` (`pg_stat_replication`).
fn streaming(primary: &mut PgConnection, m: u8) -> bool {
    diesel::select(
        sql::<Bool>(
            "EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' \
             AND application_name = ",
        )
        .bind::<Text, _>(LocalCluster::member_name(m))
        .sql(")"),
    )
    .get_result(primary)
    .unwrap_or(false)
}

/// Creates the physical slot `name` on `primary` unless it exists.
fn create_slot(primary: &mut PgConnection, name: &str) -> Result<()> {
    diesel::sql_query(
        "SELECT pg_create_physical_replication_slot($1) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind::<Text, _>(name)
    .execute(primary)
    .map_err(cruddur_db::Error::from)?;
    Ok(())
}
