//! Hot standbys of a local cluster on loopback: each a copy of the primary
//! made with `pg_basebackup -R`, streaming through a physical replication
//! slot of its own (see the [crate documentation](crate#replicas)).

use std::fmt;
use std::fs;
use std::path::PathBuf;

use cruddur_db::DatabaseUrl;
use diesel::connection::SimpleConnection as _;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

use crate::cluster::*;
use crate::error::{Error, Result};
use crate::failover::Rejoined;
use crate::*;

/// The most replicas [`LocalCluster::start_replicas`] makes: 8 (the
/// primary's default `max_wal_senders` is 10, and each standby holds one).
pub const MAX_REPLICAS: u8 = 8;

const REPLICA_PREFIX: &str = "replica-";
/// Where a replica is copied before it is renamed to `replica-K`.
const BUILDING_SUFFIX: &str = ".building";
const SLOT_PREFIX: &str = "cruddur_replica_";

/// Why [`LocalCluster::start_replicas`] removed a replica and made it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildReason {
    /// Its replication slot is gone from the primary: the WAL it needs may
    /// be gone too, so it could not catch up.
    SlotMissing,
    /// Its data directory was half made (a base backup that was
    /// interrupted) or is no standby's.
    HalfMade,
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RebuildReason::SlotMissing => "its replication slot was gone from the primary",
            RebuildReason::HalfMade => "its data directory was incomplete",
        })
    }
}

/// What [`LocalCluster::start_replicas`] did with one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOutcome {
    /// It did not exist: it was copied from the primary and started.
    Created,
    /// It was removed, copied again from the primary and started.
    Rebuilt(RebuildReason),
    /// It existed and was stopped; it was started with its data.
    Started,
    /// It was running; nothing was done.
    AlreadyRunning {
        /// Its postmaster's process id.
        pid: u32,
    },
    /// It is the primary (promoted by [`LocalCluster::failover`]); it was
    /// started if it was not running.
    Primary,
    /// It was the primary until a failover: it was rewound with
    /// `pg_rewind` and started as a standby of the new one.
    Rewound,
}

/// One replica's result of [`LocalCluster::start_replicas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStart {
    /// The replica's number, from 1.
    pub number: u8,
    /// What was done.
    pub outcome: ReplicaOutcome,
}

/// What [`LocalCluster::replicas`] found about one replica.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    /// The replica's number, from 1.
    pub number: u8,
    /// Its directory, `<cluster dir>/replica-K`.
    pub dir: PathBuf,
    /// Whether its server is running.
    pub running: bool,
    /// Its postmaster's process id, when running.
    pub pid: Option<u32>,
    /// Its TCP port on 127.0.0.1, once picked.
    pub port: Option<u16>,
    /// [`LocalCluster::replica_url`], once a port is picked.
    pub url: Option<DatabaseUrl>,
    /// What `pg_is_in_recovery()` answered (true for a standby); `None`
    /// when it is stopped or did not answer.
    pub in_recovery: Option<bool>,
    /// How many bytes of WAL it had still to replay when read: the
    /// primary's position minus its replay position, read just after it.
    /// `None` when either did not answer, or when it is not a replica of
    /// this primary.
    pub replay_lag_bytes: Option<u64>,
    /// Why it is not a replica of this primary, when its system identifier
    /// or timeline (see [`cruddur_db::ClusterIdentity`]) differs from the
    /// primary's: e.g. a replica directory left from another cluster. Its
    /// positions say nothing about the primary's then.
    pub not_following: Option<String>,
    /// Whether it is the primary now (promoted by
    /// [`LocalCluster::failover`]).
    pub is_primary: bool,
    /// How the primary waits for it, as `pg_stat_replication.sync_state`
    /// says (`async`, `sync`, `quorum`, `potential`), with the stream's
    /// `state`; `None` when it does not stream to the primary.
    pub sync_state: Option<String>,
}

impl fmt::Display for ReplicaStatus {
    /// One line: number, state, port, lag and the URL redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replica {}: ", self.number)?;
        match (self.running, self.pid) {
            (true, Some(pid)) => write!(f, "running (pid {pid})")?,
            _ => f.write_str("stopped")?,
        }
        if self.is_primary {
            f.write_str(", the PRIMARY (promoted by a failover)")?;
        }
        if let Some(port) = self.port {
            write!(f, ", tcp 127.0.0.1:{port}")?;
        }
        if let Some(state) = &self.sync_state {
            write!(f, ", {state}")?;
        }
        if self.in_recovery == Some(false) && !self.is_primary {
            f.write_str(", NOT in recovery")?;
        }
        if let Some(why) = &self.not_following {
            write!(f, ", NOT a replica of this primary ({why})")?;
        }
        if let Some(lag) = self.replay_lag_bytes {
            write!(f, ", {lag} bytes behind")?;
        }
        if let Some(url) = &self.url {
            write!(f, ", url {url}")?;
        }
        Ok(())
    }
}

impl LocalCluster {
    /// The name of replica `number`'s physical slot on the primary:
    /// `cruddur_replica_K`.
    pub fn replica_slot(number: u8) -> String {
        format!("{SLOT_PREFIX}{number}")
    }

    /// Replica `number`'s directory: `<cluster dir>/replica-K`, laid out
    /// like the cluster's own (`data/`, `port`, `socket/`, `server.log`).
    pub fn replica_dir(&self, number: u8) -> PathBuf {
        self.dir.join(Self::replica_name(number))
    }

    /// Replica `number` as a cluster of its own, run by the same programs
    /// and OS user.
    pub(crate) fn replica(&self, number: u8) -> LocalCluster {
        LocalCluster {
            dir: self.replica_dir(number),
            bins: self.bins.clone(),
            owner: self.owner.clone(),
            options: self.options.clone(),
        }
    }

    /// Starts the primary (creating it if needed), then replicas `1..=n`:
    /// each that does not exist is copied from the primary and started,
    /// each that is stopped is started with its data. A replica whose slot
    /// is gone from the primary, or whose copy was interrupted, is removed
    /// and made again. Replicas above `n` are left as they are. Running it
    /// twice changes nothing the second time.
    ///
    /// Fails when `n` is above [`MAX_REPLICAS`].
    ///
    /// The standbys stay synchronous or asynchronous as they were (see
    /// [`start_replicas_with`](Self::start_replicas_with)).
    pub fn start_replicas(&self, n: u8) -> Result<Vec<ReplicaStart>> {
        self.start_replicas_with(n, self.is_synchronous())
    }

    /// [`start_replicas`](Self::start_replicas), making the standbys
    /// synchronous or not: when `synchronous`, the primary's
    /// `synchronous_standby_names` is `ANY 1 (…)` of every standby (each
    /// by its application name, [`member_name`](Self::member_name)) with
    /// `synchronous_commit = on`, so that a commit returns only once one
    /// standby has flushed it, and this waits until one streams as
    /// synchronous. Otherwise the primary waits for none.
    pub fn start_replicas_with(&self, n: u8, synchronous: bool) -> Result<Vec<ReplicaStart>> {
        if n > MAX_REPLICAS {
            return Err(self.error(format!(
                "{n} replicas asked for; at most {MAX_REPLICAS} are supported"
            )));
        }
        let _lock = self.lock()?;
        self.start_locked()?;
        let primary_number = self.primary_number();
        let mut primary = cruddur_db::establish(&self.primary_member().url_for("postgres")?)?;
        let mut started = Vec::new();
        for number in 1..=n {
            let outcome = if number == primary_number {
                ReplicaOutcome::Primary
            } else {
                self.start_replica_locked(&mut primary, number)?
            };
            started.push(ReplicaStart { number, outcome });
        }
        let standbys: Vec<u8> = self
            .member_numbers()?
            .into_iter()
            .filter(|&m| m != primary_number)
            .collect();
        self.set_synchronous_standbys(&mut primary, &standbys, synchronous)?;
        if synchronous {
            self.wait_for_synchronous(&mut primary)?;
        }
        Ok(started)
    }

    fn start_replica_locked(
        &self,
        primary: &mut PgConnection,
        number: u8,
    ) -> Result<ReplicaOutcome> {
        let replica = self.replica(number);
        let slot = Self::replica_slot(number);
        let building = self.building_dir(number);
        let dir = self
            .open_dir()
            .map_err(|e| self.io_error("opening the cluster directory", e))?;
        let mut reason = None;
        if building.exists() {
            // A copy was interrupted before it was renamed into place.
            dir.remove_dir_all(&Self::building_name(number))
                .map_err(|e| self.io_error("removing an interrupted replica copy", e))?;
            reason = Some(RebuildReason::HalfMade);
        }
        if replica.dir.exists()
            && replica.is_initialized()
            && !replica.data_dir().join("standby.signal").is_file()
            && self.has_failed_over()
        {
            // A primary that a failover replaced: rewound, not copied again.
            return Ok(match self.rejoin_locked(number)? {
                Rejoined::Rewound => ReplicaOutcome::Rewound,
                Rejoined::AlreadyStandby => ReplicaOutcome::Started,
            });
        }
        if replica.dir.exists() {
            let complete =
                replica.is_initialized() && replica.data_dir().join("standby.signal").is_file();
            if !complete {
                reason = Some(RebuildReason::HalfMade);
            } else if !slot_exists(primary, &slot)? {
                reason = Some(RebuildReason::SlotMissing);
            } else {
                let outcome = match replica.run_server_locked()? {
                    Some(pid) => ReplicaOutcome::AlreadyRunning { pid },
                    None => ReplicaOutcome::Started,
                };
                if self.primary_number() != 0 {
                    // Stopped during a failover, it may still name the
                    // old primary.
                    self.point_at_primary(number)?;
                }
                return Ok(outcome);
            }
            // Without its slot a running standby cannot stream, and its
            // files go with the directory.
            replica.stop_locked()?;
            dir.remove_dir_all(&Self::replica_name(number))
                .map_err(|e| self.io_error("removing a replica to make it again", e))?;
        }
        self.build_replica_locked(primary, number)?;
        replica.run_server_locked()?;
        Ok(reason.map_or(ReplicaOutcome::Created, ReplicaOutcome::Rebuilt))
    }

    fn building_dir(&self, number: u8) -> PathBuf {
        self.dir.join(Self::building_name(number))
    }

    fn building_name(number: u8) -> String {
        format!("{REPLICA_PREFIX}{number}{BUILDING_SUFFIX}")
    }

    fn replica_name(number: u8) -> String {
        format!("{REPLICA_PREFIX}{number}")
    }

    /// Copies the running primary into `replica-K.building` with a new
    /// slot, then renames it to `replica-K`: a copy cut short never looks
    /// like a replica.
    fn build_replica_locked(&self, primary: &mut PgConnection, number: u8) -> Result<()> {
        let slot = Self::replica_slot(number);
        // An interrupted copy may have created the slot already, and
        // `--create-slot` refuses an existing one. An active slot is not
        // dropped: something still streams from it, and the copy fails.
        diesel::sql_query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
        )
        .bind::<Text, _>(&slot)
        .execute(primary)
        .map_err(cruddur_db::Error::from)?;
        let building = self.building_dir(number);
        let dir = self.private_dir(&self.dir)?;
        let copy = dir
            .create_dir(&Self::building_name(number))
            .map_err(|e| self.io_error("creating the replica's directory", e))?;
        let source = self.primary_member();
        let port = source.require_port()?;
        let mut cmd = self.command("pg_basebackup");
        cmd.arg("--pgdata")
            .arg(building.join(DATA))
            .arg("--host")
            .arg(source.socket_dir())
            .arg("--port")
            .arg(port.to_string())
            .args(["--username", SUPERUSER, "--no-password"])
            .args(["--write-recovery-conf", "--wal-method=stream"])
            .args(["--checkpoint=fast", "--create-slot", "--slot", &slot]);
        if self.options.throwaway {
            cmd.arg("--no-sync");
        }
        let password = self
            .read_file(PASSWORD_FILE)
            .map_err(|e| self.io_error("reading the password file", e))?;
        if self.auth() == Auth::Password {
            // `--write-recovery-conf` keeps it in the standby's
            // postgresql.auto.conf (mode 0600), for its walreceiver.
            cmd.env("PGPASSWORD", password.trim());
        }
        self.run(cmd, "pg_basebackup")?;
        // The copy has the primary's users and pg_hba.conf, so the same
        // password and authentication.
        copy.write(PASSWORD_FILE, password.as_bytes())
            .and_then(|()| copy.write(AUTH_FILE, self.auth().as_str().as_bytes()))
            .map_err(|e| self.io_error("writing the replica's password and auth files", e))?;
        dir.rename(&Self::building_name(number), &Self::replica_name(number))
            .map_err(|e| self.io_error("moving the new replica into place", e))
    }

    /// Every replica in the cluster's directory, by number, with whether it
    /// runs and, when it does, whether it is in recovery and how far behind
    /// it is. Asks each running replica and the primary.
    pub fn replicas(&self) -> Result<Vec<ReplicaStatus>> {
        let mut found = Vec::new();
        for number in self.replica_numbers()? {
            let replica = self.replica(number);
            let pid = replica.pid();
            let mut status = ReplicaStatus {
                number,
                dir: replica.dir.clone(),
                running: pid.is_some(),
                pid,
                port: replica.port(),
                url: replica.url().ok(),
                in_recovery: None,
                replay_lag_bytes: None,
                not_following: None,
                is_primary: self.primary_number() == number,
                sync_state: self.sync_state(number),
            };
            // The promoted one is the primary: it follows nothing.
            if pid.is_some()
                && !status.is_primary
                && let Ok(mut conn) = replica
                    .url_for("postgres")
                    .and_then(|url| Ok(cruddur_db::establish(&url)?))
            {
                status.in_recovery = diesel::select(sql::<Bool>("pg_is_in_recovery()"))
                    .get_result(&mut conn)
                    .ok();
                let replayed: Option<String> =
                    diesel::select(sql::<Nullable<Text>>("pg_last_wal_replay_lsn()::text"))
                        .get_result(&mut conn)
                        .ok()
                        .flatten();
                // Read after the replica's position, so the lag is not
                // understated. The primary's write position, not its insert
                // position: that one runs ahead by a page header at a page
                // boundary, which an idle replica never replays.
                status.not_following = self.not_following(&mut conn);
                status.replay_lag_bytes = replayed
                    .filter(|_| status.not_following.is_none())
                    .and_then(|replayed| {
                        let url = self.primary_member().url_for("postgres").ok()?;
                        let mut primary = cruddur_db::establish(&url).ok()?;
                        let lag: i64 = diesel::select(
                            sql::<BigInt>("greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), ")
                                .bind::<Text, _>(replayed)
                                .sql("::pg_lsn), 0)::bigint"),
                        )
                        .get_result(&mut primary)
                        .ok()?;
                        u64::try_from(lag).ok()
                    });
            }
            found.push(status);
        }
        Ok(found)
    }

    /// Why the standby on `replica` does not follow this primary (another
    /// system identifier or timeline), or `None` when it does or either
    /// identity could not be read.
    fn not_following(&self, replica: &mut PgConnection) -> Option<String> {
        let theirs = cruddur_db::replica::standby_identity(replica).ok()??;
        let url = self.primary_member().url_for("postgres").ok()?;
        let mut primary = cruddur_db::establish(&url).ok()?;
        let ours = cruddur_db::replica::primary_identity(&mut primary).ok()??;
        if theirs.system_identifier != ours.system_identifier {
            Some(format!(
                "a standby of another cluster: system identifier {}, the primary's {}",
                theirs.system_identifier, ours.system_identifier
            ))
        } else if theirs.timeline != ours.timeline {
            Some(format!(
                "on timeline {}, the primary on timeline {}",
                theirs.timeline, ours.timeline
            ))
        } else {
            None
        }
    }

    /// The URL of the [`DEFAULT_DATABASE`] on replica `number`, as
    /// [`url`](Self::url) is the primary's: for the project cluster a
    /// unix-socket URL without a password.
    ///
    /// Fails with [`Error::NoReplica`] when the replica does not exist, and
    /// when it has never been started.
    pub fn replica_url(&self, number: u8) -> Result<DatabaseUrl> {
        let replica = self.replica(number);
        if !replica.is_initialized() {
            return Err(Error::NoReplica {
                dir: self.dir.clone(),
                number,
            });
        }
        replica.url()
    }

    /// Stops every replica; the caller holds the lock.
    pub(crate) fn stop_replicas_locked(&self) -> Result<()> {
        for number in self.replica_numbers()? {
            self.replica(number).stop_locked()?;
        }
        Ok(())
    }

    /// Member `m`'s (0: this data directory, K: replica K) `sync_state`
    /// and `state` in the primary's `pg_stat_replication` (e.g. `quorum,
    /// streaming`), when it streams to the primary.
    pub fn sync_state(&self, m: u8) -> Option<String> {
        let primary = self.primary_member();
        if self.primary_number() == m {
            return None;
        }
        let mut conn = cruddur_db::establish(&primary.url_for("postgres").ok()?).ok()?;
        diesel::select(
            sql::<Nullable<Text>>(
                "(SELECT sync_state || ', ' || state FROM pg_stat_replication WHERE application_name = ",
            )
            .bind::<Text, _>(Self::member_name(m))
            .sql(" LIMIT 1)"),
        )
        .get_result(&mut conn)
        .ok()
        .flatten()
    }

    /// Points the running standby `m` at the current primary
    /// (`primary_conninfo` and its slot, reloaded; PostgreSQL 13 and later
    /// restart the WAL receiver on it).
    pub(crate) fn point_at_primary(&self, m: u8) -> Result<()> {
        let conninfo = self.primary_conninfo(&self.primary_member())?;
        let mut conn = cruddur_db::establish(&self.member(m).url_for("postgres")?)?;
        // ALTER SYSTEM runs alone (not in a transaction block) and takes
        // no parameters.
        for statement in [
            format!(
                "ALTER SYSTEM SET primary_conninfo = '{}'",
                conninfo.replace('\'', "''")
            ),
            format!(
                "ALTER SYSTEM SET primary_slot_name = '{}'",
                Self::member_slot(m)
            ),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            conn.batch_execute(&statement)
                .map_err(cruddur_db::Error::from)?;
        }
        Ok(())
    }

    /// The numbers of the `replica-K` directories, ascending.
    pub(crate) fn replica_numbers(&self) -> Result<Vec<u8>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error("listing the replicas", e)),
        };
        let mut numbers: Vec<u8> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                // `replica-K.building` does not parse: it is no replica yet.
                name.to_str()?.strip_prefix(REPLICA_PREFIX)?.parse().ok()
            })
            .filter(|&n| n > 0)
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }
}

fn slot_exists(primary: &mut PgConnection, slot: &str) -> Result<bool> {
    Ok(diesel::select(
        sql::<Bool>("EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ")
            .bind::<Text, _>(slot)
            .sql(")"),
    )
    .get_result(primary)
    .map_err(cruddur_db::Error::from)?)
}
