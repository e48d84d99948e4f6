//! The local cluster's errors.

/// Result with the local cluster's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong finding, creating, starting or stopping a cluster, or
/// resolving which database to use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) were
    /// found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; looked in {searched}. Install them (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql@16`), set CRUDDUR_PG_BINDIR to their directory, or set DATABASE_URL to a server you run"
    )]
    PostgresNotInstalled {
        /// The places that were searched, comma-separated.
        searched: String,
    },
    /// Running as root, and a server program (chosen by
    /// `CRUDDUR_PG_BINDIR` or found on `PATH`) could have been written by
    /// another user: it is not run.
    #[error(
        "refusing to run {} as root: {reason}. Whoever may change it would choose what runs; point CRUDDUR_PG_BINDIR at an installation that only root can change (e.g. /usr/lib/postgresql/<version>/bin)",
        .path.display()
    )]
    UntrustedPrograms {
        /// The program.
        path: std::path::PathBuf,
        /// Why it could have been written by another user.
        reason: String,
    },
    /// Running as root, and no unprivileged OS user exists to run the
    /// cluster as (PostgreSQL refuses to run as root).
    #[error(
        "PostgreSQL refuses to run as root, and there is no unprivileged OS user `{user}` to run the local cluster as: create one (e.g. `useradd --system --user-group --home-dir /var/lib/postgresql {user}`), set CRUDDUR_PG_USER to another unprivileged user, run as a normal user, or set DATABASE_URL to a server you run"
    )]
    NoServerUser {
        /// The user that was looked for.
        user: String,
    },
    /// A cluster could not be created, started, stopped or inspected.
    #[error("local PostgreSQL cluster in {dir}: {message}")]
    Cluster {
        /// The cluster's directory.
        dir: String,
        /// What went wrong, with the tool's output or the server log's tail.
        message: String,
    },
    /// An I/O error, with what was being done.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// No database is configured, nothing answers at the default URL, and
    /// the local cluster is not running (and was not to be started).
    #[error(
        "no database is configured, nothing answers at the default URL, and the local cluster in {} is not running",
        .dir.display()
    )]
    NothingAnswers {
        /// Why the default URL did not answer.
        #[source]
        cause: cruddur_db::Error,
        /// The local cluster's directory.
        dir: std::path::PathBuf,
    },
    /// A replica that was asked for does not exist (it was never made).
    #[error("the local PostgreSQL cluster in {} has no replica {number}", .dir.display())]
    NoReplica {
        /// The cluster's directory.
        dir: std::path::PathBuf,
        /// The replica's number.
        number: u8,
    },
    /// The data layer failed (a bad URL or setting, a server that refused).
    #[error(transparent)]
    Db(#[from] cruddur_db::Error),
}
