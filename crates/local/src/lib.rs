//! A PostgreSQL server of the project's own, for machines where none is
//! configured or running.
//!
//! [`LocalCluster`] is a cluster in a directory of the project (by default
//! `.cruddur/pg`, git-ignored), run with the PostgreSQL binaries installed on
//! the machine (the tests' private throwaway clusters are built on it, in
//! `cruddur-db-test-support`). [`resolve`] is the "embedded default": the
//! library's [`cruddur_db::resolve()`] (the configured database when there
//! is one, else the server at the default URL when it answers), else the
//! project's local cluster.
//!
//! # Layout of a cluster directory
//!
//! | path | what |
//! |---|---|
//! | `data/` | the data directory (`PGDATA`), made by `initdb` |
//! | `password` | the superuser's generated password, mode 0600 |
//! | `auth` | how clients authenticate (`socket-trust` or `password`) |
//! | `port` | the TCP port, picked at the first start and kept afterwards |
//! | `socket/` | the unix socket directory, mode 0700 (see below) |
//! | `server.log` | the server's log, appended to at every start |
//! | `.lock` | serialises `init`, `start`, `stop` and the replicas' starts between processes |
//! | `replica-K/` | replica K (from 1), laid out like the cluster: `data/`, `password`, `auth`, `port`, `socket/`, `server.log` |
//! | `replica-K.building/` | a replica being copied; renamed to `replica-K` when complete |
//!
//! A unix socket path may be at most about 100 bytes (107 on Linux, 103 on
//! macOS). When `<dir>/socket/.s.PGSQL.<port>` would be longer, or the path
//! holds characters that would need quoting in a URL, the socket lives in
//! `/tmp/cruddur-<hash of the directory>` instead: short, and stable for a
//! given cluster so that its URL does not change.
//!
//! # Authentication
//!
//! The superuser is `postgres`, with a password generated at `initdb` and
//! kept in the 0600 `password` file. The default ([`Auth::SocketTrust`])
//! trusts connections over the cluster's unix socket and asks for the
//! password (`scram-sha-256`) over TCP. That is safe because the socket
//! directory is 0700 and owned by the server's OS user: only that user and
//! root can reach it, and both could read the data files anyway. In
//! exchange, [`LocalCluster::url`] holds no secret, so it can be printed,
//! pasted into `.env` and given to `psql` and `diesel`. TCP, which every
//! local user can reach, always needs the password
//! ([`LocalCluster::tcp_url_for`]). [`Auth::Password`] asks for the password
//! on the socket too, for tests of authentication failures.
//!
//! # Replicas
//!
//! [`LocalCluster::start_replicas`] adds hot standbys on loopback: replica K
//! is a copy of the primary made with `pg_basebackup --write-recovery-conf`
//! from the primary's socket as the superuser (so its `primary_conninfo`
//! names that socket), streaming through the physical slot
//! `cruddur_replica_K`, which keeps the WAL it still needs on the primary
//! while it is stopped. Its port is picked like the primary's and kept.
//! [`LocalCluster::stop`] stops the replicas before the primary. A replica
//! whose slot is gone, or whose copy was cut short, is removed and copied
//! again at the next [`start_replicas`](LocalCluster::start_replicas).
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root. When the current process
//! is root (containers, CI), every PostgreSQL program runs as an
//! unprivileged OS user instead: `CRUDDUR_PG_USER`, default `postgres` (the
//! user the Debian/Ubuntu and RPM packages create). The cluster directory is
//! given to that user, who must be able to reach it (a project under a
//! private home directory cannot be; set `CRUDDUR_LOCAL_DIR`). When no such
//! user exists, the error says how to create one.
//!
//! That user can then write the cluster directory, and could plant a
//! symbolic or hard link where root is about to write (`port`,
//! `data/cruddur.conf`, the socket directory). So root touches nothing
//! there by path: each directory is opened with `O_DIRECTORY | O_NOFOLLOW`
//! and its owner checked, and each file is opened relative to it with
//! `O_NOFOLLOW`, checked on the opened descriptor (owner root or the server
//! user, a regular file, one link) and changed only through it. A link
//! where a file of ours belongs is refused with an error naming it (it can
//! only be there because someone put it there); remove it and start again.
//!
//! Root also runs programs: `pg_ctl --version`, `pg_config`, `id`, and the
//! server programs (as the server user). Each must be, with every
//! directory above it (as named and with links resolved), owned by root
//! (or the current user) and writable by nobody else, or it is refused
//! ([`Error::UntrustedPrograms`]): a `CRUDDUR_PG_BINDIR` in `/tmp` or in a
//! directory another user owns is never run.
//!
//! # Environment
//!
//! | variable | meaning |
//! |---|---|
//! | `CRUDDUR_LOCAL_DIR` | the project cluster's directory (default `.cruddur/pg` in the project) |
//! | `CRUDDUR_PG_BINDIR` | the directory with `initdb`, `pg_ctl` and `postgres` (default: searched, see [`Binaries::find`]); as root, only one that nobody but root can change |
//! | `CRUDDUR_PG_USER` | the OS user the server runs as when the current user is root (default `postgres`) |
//! | `PATH` | where the server programs (and, as root, `id`) are looked for when `CRUDDUR_PG_BINDIR` is unset |
//!
//! They are declared in [`variables`]. [`resolve`] also reads the
//! library's `DATABASE_URL`, `CONNECTION_URL` and `CRUDDUR_DEFAULT_URL`
//! (see [`cruddur_db::resolve()`]).

mod binaries;
mod cluster;
pub mod error;
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
pub use os::process_alive;
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
