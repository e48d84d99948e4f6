#![doc = include_str!("../README.md")]

mod binaries;
mod cluster;
pub mod error;
mod failover;
mod os;
mod replicas;
mod resolve;
mod safe_dir;
mod server;
#[cfg(test)]
mod tests;
pub mod variables;

use std::time::Duration;

pub use binaries::Binaries;
pub use cluster::{Auth, ClusterOptions, LocalCluster, StartOutcome, Status};
pub use error::{Error, Result};
pub use failover::{FAILOVER_TIMEOUT, FailoverReport, Rejoined};
pub use os::{ServerUser, process_alive, server_user};
pub use replicas::{MAX_REPLICAS, RebuildReason, ReplicaOutcome, ReplicaStart, ReplicaStatus};
pub use resolve::{Fallback, resolve, resolve_with};

/// The project cluster's directory, relative to the project root.
pub const DEFAULT_CLUSTER_DIR: &str = ".cruddur/pg";
/// The database superuser of a local cluster.
pub const SUPERUSER: &str = "postgres";
/// The OS user the server runs as when the current user is root, unless
/// `CRUDDUR_PG_USER` names another.
pub const DEFAULT_SERVER_USER: &str = "postgres";
/// The database [`LocalCluster::url`] names: Cruddur's.
pub const DEFAULT_DATABASE: &str = "cruddur";
/// How long [`LocalCluster::start`] waits for the server to accept
/// connections: 60 seconds (a first start after a crash replays the WAL).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`LocalCluster::stop`] waits for a fast shutdown before it
/// falls back to an immediate one: 30 seconds.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest socket path we create: macOS's `sun_path` holds 104 bytes with
/// the terminating NUL (Linux's 108), and PostgreSQL refuses longer ones.
const MAX_SOCKET_PATH: usize = 103;
/// The socket file name's longest form, `/.s.PGSQL.65535`.
const SOCKET_FILE_LEN: usize = 15;

const DATA: &str = "data";
const PASSWORD_FILE: &str = "password";
const AUTH_FILE: &str = "auth";
/// Where `initdb` builds a new cluster before it is renamed to [`DATA`].
const DATA_BUILDING: &str = "data.initdb";
const PORT_FILE: &str = "port";
const SOCKET_DIR: &str = "socket";
const LOG_FILE: &str = "server.log";
const LOCK_FILE: &str = ".lock";
/// Written at every start: port and socket directory.
const RUNTIME_CONF: &str = "cruddur.conf";

/// Variables that would make the PostgreSQL programs act on another
/// cluster or server than the one we name on their command line.
const PG_ENV: &[&str] = &[
    "PGDATA",
    "PGPORT",
    "PGHOST",
    "PGHOSTADDR",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
];
