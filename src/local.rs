//! A PostgreSQL server of the project's own, for machines where none is
//! configured or running.
//!
//! [`LocalCluster`] is a cluster in a directory of the project (by default
//! `.cruddur/pg`, git-ignored), run with the PostgreSQL binaries installed on
//! the machine. [`TempCluster`] is a private throwaway cluster in a temporary
//! directory, stopped and deleted when dropped: what the tests use when no
//! server is configured, and what reliability tests use when they need a
//! server they may stop and restart. [`resolve_config`] is the "embedded
//! default": the configured database when there is one, else the server at
//! the default URL when it answers, else the project's local cluster.
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
//! | `.lock` | serialises `init`, `start` and `stop` between processes |
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
//! # Environment
//!
//! | variable | meaning |
//! |---|---|
//! | `CRUDDUR_LOCAL_DIR` | the project cluster's directory (default `.cruddur/pg` in the project) |
//! | `CRUDDUR_PG_BINDIR` | the directory with `initdb`, `pg_ctl` and `postgres` (default: searched, see [`Binaries::find`]) |
//! | `CRUDDUR_PG_USER` | the OS user the server runs as when the current user is root (default `postgres`) |
//! | `CRUDDUR_DEFAULT_URL` | the URL [`resolve_config`] tries before the local cluster (default [`DEFAULT_DATABASE_URL`]) |

use std::fmt;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, DEFAULT_DATABASE_URL, DatabaseUrl, Environment};
use crate::error::{Error, Result};

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
/// How long [`resolve_config`] waits for the server at the default URL to
/// answer: 2 seconds.
pub const PROBE_TIMEOUT_SECS: u32 = 2;

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

/// How clients authenticate to a local cluster (see the
/// [module documentation](self#authentication)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    /// Trust on the cluster's private unix socket, password (`scram-sha-256`)
    /// over TCP. [`LocalCluster::url`] is a socket URL without a secret.
    #[default]
    SocketTrust,
    /// Password on every connection. [`LocalCluster::url`] is a TCP URL
    /// with the password.
    Password,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Auth::SocketTrust => "socket-trust",
            Auth::Password => "password",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "socket-trust" => Some(Auth::SocketTrust),
            "password" => Some(Auth::Password),
            _ => None,
        }
    }
}

/// How a new cluster is set up. Used only when the cluster is initialised;
/// an existing cluster keeps what it was created with.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// How clients authenticate (default [`Auth::SocketTrust`]).
    pub auth: Auth,
    /// Lines appended to `postgresql.conf` (e.g. `ssl = on`).
    pub conf: Vec<String>,
    /// Files written into the data directory with mode 0600, as (path
    /// relative to the data directory, contents): certificates and keys.
    pub files: Vec<(String, Vec<u8>)>,
    /// A throwaway cluster: `initdb --no-sync`, `fsync = off` and
    /// `full_page_writes = off`. Faster; a crash of the server loses nothing
    /// committed, but a crash of the machine can corrupt the data.
    /// Default off.
    pub throwaway: bool,
}

/// The directory of an installation's server programs (`initdb`, `pg_ctl`,
/// `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the server programs, in this order: `CRUDDUR_PG_BINDIR` (only
    /// there, when set); the directory of the `pg_ctl` on `PATH` (symlinks
    /// followed); `pg_config --bindir`; `/usr/lib/postgresql/<version>/bin`
    /// (Debian/Ubuntu, newest first); `/usr/pgsql-<version>/bin` (RPM);
    /// Homebrew's `postgresql@<version>` and `postgresql` (newest first);
    /// `/opt/homebrew/bin`; `/usr/local/bin`.
    pub fn find() -> Result<Self> {
        Self::find_version(None, &|k| std::env::var(k).ok())
    }

    /// The directory `dir`, when it holds `initdb`, `pg_ctl` and `postgres`.
    pub fn in_dir(dir: &Path) -> Option<Self> {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
            .then(|| Self {
                dir: dir.to_path_buf(),
            })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one program in the directory.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The major version (`15`, or `9.6` for old releases), as written in
    /// a data directory's `PG_VERSION`.
    pub fn major_version(&self) -> Result<String> {
        let out = Command::new(self.tool("pg_ctl"))
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Io {
                context: format!("running {} --version", self.tool("pg_ctl").display()),
                cause: e,
            })?;
        // "pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split_whitespace()
            .skip_while(|w| *w != "(PostgreSQL)")
            .nth(1)
            .unwrap_or_default();
        let parts: Vec<&str> = version.split(['.', 'b', 'r', 'd']).collect();
        match parts.as_slice() {
            [major, minor, ..] if major.parse::<u32>().is_ok_and(|m| m < 10) => {
                Ok(format!("{major}.{minor}"))
            }
            [major, ..] if major.parse::<u32>().is_ok() => Ok((*major).to_owned()),
            _ => Err(Error::PostgresNotInstalled {
                searched: format!(
                    "{} (unrecognised version `{}`)",
                    self.dir.display(),
                    text.trim()
                ),
            }),
        }
    }

    /// The first candidate (see [`Binaries::find`]) whose major version is
    /// `want`, or the first candidate at all when `want` is `None`.
    fn find_version(want: Option<&str>, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let candidates = candidate_dirs(lookup);
        let searched = || {
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let found: Vec<Binaries> = candidates.iter().filter_map(|d| Self::in_dir(d)).collect();
        let Some(want) = want else {
            return found
                .into_iter()
                .next()
                .ok_or_else(|| Error::PostgresNotInstalled {
                    searched: searched(),
                });
        };
        let mut seen = Vec::new();
        for bins in found {
            match bins.major_version() {
                Ok(v) if v == want => return Ok(bins),
                Ok(v) => seen.push(format!("{v} in {}", bins.dir.display())),
                Err(_) => {}
            }
        }
        if seen.is_empty() {
            return Err(Error::PostgresNotInstalled {
                searched: searched(),
            });
        }
        Err(Error::PostgresNotInstalled {
            searched: format!(
                "{}; the cluster was created by PostgreSQL {want}, and only these versions were found: {}",
                searched(),
                seen.join(", ")
            ),
        })
    }
}

/// Directories that may hold the server programs, best first, without
/// duplicates.
fn candidate_dirs(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    if let Some(dir) = lookup("CRUDDUR_PG_BINDIR").filter(|v| !v.trim().is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(path) = lookup("PATH") {
        for entry in std::env::split_paths(&path) {
            let pg_ctl = entry.join("pg_ctl");
            if pg_ctl.is_file() {
                // Debian links /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl,
                // and initdb/postgres live only in the link's target directory.
                let real = fs::canonicalize(&pg_ctl).unwrap_or(pg_ctl);
                if let Some(parent) = real.parent() {
                    dirs.push(parent.to_path_buf());
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !dir.is_empty() {
            dirs.push(PathBuf::from(dir));
        }
    }
    dirs.extend(versioned_dirs("/usr/lib/postgresql", "", "bin"));
    dirs.extend(versioned_dirs("/usr", "pgsql-", "bin"));
    for prefix in ["/opt/homebrew/opt", "/usr/local/opt"] {
        dirs.extend(versioned_dirs(prefix, "postgresql@", "bin"));
        dirs.push(Path::new(prefix).join("postgresql/bin"));
    }
    dirs.push(PathBuf::from("/opt/homebrew/bin"));
    dirs.push(PathBuf::from("/usr/local/bin"));
    let mut unique: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

/// `<parent>/<prefix><version>/<sub>` for every version found, newest first.
fn versioned_dirs(parent: &str, prefix: &str, sub: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?;
            let key: Vec<u32> = version
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((key, Path::new(parent).join(&name).join(sub)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The unprivileged OS user PostgreSQL runs as when we are root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
}

/// `None` when not root (the programs run as the current user).
fn server_user(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<ServerUser>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let name = lookup("CRUDDUR_PG_USER")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER_USER.to_owned());
    // `id` answers from every user database the system knows (NSS), which
    // reading /etc/passwd would not.
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .args([flag, "--", &name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) if uid != 0 => Ok(Some(ServerUser { name, uid, gid })),
        _ => Err(Error::NoServerUser { user: name }),
    }
}

/// What [`LocalCluster::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The server was started; `initialized` when the cluster was created
    /// first.
    Started {
        /// `initdb` ran first.
        initialized: bool,
    },
    /// The server was already running; nothing was done.
    AlreadyRunning {
        /// The postmaster's process id.
        pid: u32,
    },
}

/// What [`LocalCluster::status`] found.
#[derive(Debug, Clone)]
pub struct Status {
    /// The cluster's directory.
    pub dir: PathBuf,
    /// Whether the cluster exists (`initdb` ran).
    pub initialized: bool,
    /// Whether its server is running.
    pub running: bool,
    /// The postmaster's process id, when running.
    pub pid: Option<u32>,
    /// The TCP port on 127.0.0.1, once picked.
    pub port: Option<u16>,
    /// The unix socket directory.
    pub socket_dir: PathBuf,
    /// The server log.
    pub log_file: PathBuf,
    /// [`LocalCluster::url`], once a port is picked.
    pub url: Option<DatabaseUrl>,
}

impl fmt::Display for Status {
    /// Several `key: value` lines; the URL is shown redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.initialized, self.running, self.pid) {
            (false, _, _) => "not created yet (`cruddur-db local start` creates it)".to_owned(),
            (true, true, Some(pid)) => format!("running (pid {pid})"),
            (true, true, None) => "running".to_owned(),
            (true, false, _) => "stopped".to_owned(),
        };
        writeln!(f, "status:     {state}")?;
        writeln!(f, "directory:  {}", self.dir.display())?;
        if let Some(port) = self.port {
            writeln!(f, "tcp:        127.0.0.1:{port}")?;
        }
        writeln!(f, "socket dir: {}", self.socket_dir.display())?;
        writeln!(f, "log:        {}", self.log_file.display())?;
        if let Some(url) = &self.url {
            writeln!(f, "url:        {url}")?;
        }
        Ok(())
    }
}

/// A PostgreSQL cluster in a directory of its own, run with the machine's
/// server programs (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct LocalCluster {
    dir: PathBuf,
    bins: Binaries,
    owner: Option<ServerUser>,
    options: ClusterOptions,
}

impl LocalCluster {
    /// The project's cluster: `CRUDDUR_LOCAL_DIR` when set, else
    /// `.cruddur/pg` in the project root, which is the nearest directory
    /// from the current one upwards that holds `.cruddur`, else one that
    /// holds `Cargo.toml`, else the current directory.
    pub fn project() -> Result<Self> {
        let lookup = |k: &str| std::env::var(k).ok();
        let dir = match lookup("CRUDDUR_LOCAL_DIR").filter(|v| !v.trim().is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let cwd = std::env::current_dir().map_err(|e| Error::Io {
                    context: "reading the current directory".into(),
                    cause: e,
                })?;
                project_root(&cwd).join(DEFAULT_CLUSTER_DIR)
            }
        };
        Self::with_lookup(dir, ClusterOptions::default(), &lookup)
    }

    /// The cluster in `dir` (created at the first [`start`](Self::start)),
    /// with the default [`ClusterOptions`].
    pub fn at(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::with_options(dir, ClusterOptions::default())
    }

    /// The cluster in `dir`, created with `options` when it does not exist.
    ///
    /// Fails when no server programs are found (or none of the version the
    /// cluster was created with), and, as root, when there is no
    /// unprivileged user to run them as.
    pub fn with_options(dir: impl Into<PathBuf>, options: ClusterOptions) -> Result<Self> {
        Self::with_lookup(dir.into(), options, &|k| std::env::var(k).ok())
    }

    fn with_lookup(
        dir: PathBuf,
        options: ClusterOptions,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let dir = std::path::absolute(&dir).map_err(|e| Error::Io {
            context: format!("resolving {}", dir.display()),
            cause: e,
        })?;
        let want = fs::read_to_string(dir.join(DATA).join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_owned());
        let bins = Binaries::find_version(want.as_deref(), lookup)?;
        let owner = server_user(lookup)?;
        Ok(Self {
            dir,
            bins,
            owner,
            options,
        })
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(DATA)
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The server programs in use.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// Whether `initdb` has run.
    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// The unix socket directory: `<dir>/socket`, or a short directory in
    /// `/tmp` when that path is too long for a socket or needs quoting
    /// (see the [module documentation](self)).
    pub fn socket_dir(&self) -> PathBuf {
        let preferred = self.dir.join(SOCKET_DIR);
        let text = preferred.to_string_lossy();
        let plain = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
        if plain && text.len() + SOCKET_FILE_LEN <= MAX_SOCKET_PATH {
            preferred
        } else {
            PathBuf::from(format!(
                "/tmp/cruddur-{:016x}",
                fnv1a(self.dir.as_os_str().as_encoded_bytes())
            ))
        }
    }

    /// The TCP port, once the first start picked one.
    pub fn port(&self) -> Option<u16> {
        fs::read_to_string(self.dir.join(PORT_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// How clients authenticate: what the cluster was created with, else
    /// what it will be created with.
    pub fn auth(&self) -> Auth {
        fs::read_to_string(self.dir.join(AUTH_FILE))
            .ok()
            .and_then(|s| Auth::parse(&s))
            .unwrap_or(self.options.auth)
    }

    /// The URL of the [`DEFAULT_DATABASE`] (`cruddur`) on this cluster.
    pub fn url(&self) -> Result<DatabaseUrl> {
        self.url_for(DEFAULT_DATABASE)
    }

    /// The URL of `database` on this cluster: with [`Auth::SocketTrust`] a
    /// unix-socket URL without a password
    /// (`postgres:///cruddur?host=/…/socket&port=…&user=postgres`), with
    /// [`Auth::Password`] the [TCP URL](Self::tcp_url_for). Available once a
    /// port has been picked (after the first start).
    pub fn url_for(&self, database: &str) -> Result<DatabaseUrl> {
        match self.auth() {
            Auth::SocketTrust => self.socket_url_for(database),
            Auth::Password => self.tcp_url_for(database),
        }
    }

    /// The unix-socket URL of `database`, without a password.
    pub fn socket_url_for(&self, database: &str) -> Result<DatabaseUrl> {
        let port = self.require_port()?;
        DatabaseUrl::parse(&format!(
            "postgres:///{}?host={}&port={port}&user={SUPERUSER}",
            encode(database),
            encode(&self.socket_dir().to_string_lossy()),
        ))
    }

    /// The TCP URL of `database` on 127.0.0.1, with the password. Keep it
    /// out of output: [`DatabaseUrl`] shows it redacted.
    pub fn tcp_url_for(&self, database: &str) -> Result<DatabaseUrl> {
        let port = self.require_port()?;
        let password = fs::read_to_string(self.dir.join(PASSWORD_FILE))
            .map_err(|e| self.io_error("reading the password file", e))?;
        DatabaseUrl::parse(&format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{port}/{}",
            encode(password.trim()),
            encode(database)
        ))
    }

    fn require_port(&self) -> Result<u16> {
        self.port().ok_or_else(|| {
            self.error("it has not been started yet, so it has no port (start it with `cruddur-db local start`)")
        })
    }

    /// The postmaster's process id when this cluster's server is running.
    ///
    /// A `postmaster.pid` whose process is gone, or is now another program
    /// (the id was reused after a crash or a reboot), does not count.
    pub fn pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        self.is_our_postmaster(pid).then_some(pid)
    }

    /// Whether `pid` is a live process of this cluster's server.
    fn is_our_postmaster(&self, pid: u32) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if Path::new("/proc/self").exists() {
            if !proc_dir.exists() || is_zombie(&proc_dir) {
                return false;
            }
            // Every server process works in its data directory; a reused
            // pid belongs to a process that does not.
            return match (
                fs::read_link(proc_dir.join("cwd")),
                fs::canonicalize(self.data_dir()),
            ) {
                (Ok(cwd), Ok(data)) => cwd == data,
                // Not ours to inspect (another user without root): go by name.
                _ => fs::read_to_string(proc_dir.join("comm"))
                    .is_ok_and(|c| matches!(c.trim(), "postgres" | "postmaster")),
            };
        }
        // No /proc (macOS, BSD): ask whether the process exists.
        process_alive(pid)
    }

    /// Ids of every live process working in this cluster's data directory
    /// (the postmaster and its children). Read from `/proc`; empty where
    /// there is none.
    pub fn processes(&self) -> Vec<u32> {
        let (Ok(data), Ok(entries)) = (fs::canonicalize(self.data_dir()), fs::read_dir("/proc"))
        else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let e = e.ok()?;
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cwd = fs::read_link(e.path().join("cwd")).ok()?;
                (cwd == data && !is_zombie(&e.path())).then_some(pid)
            })
            .collect()
    }

    /// Whether it runs, where, and its URL.
    pub fn status(&self) -> Result<Status> {
        let pid = self.pid();
        Ok(Status {
            dir: self.dir.clone(),
            initialized: self.is_initialized(),
            running: pid.is_some(),
            pid,
            port: self.port(),
            socket_dir: self.socket_dir(),
            log_file: self.log_file(),
            url: self.url().ok(),
        })
    }

    /// Creates the cluster (`initdb`) unless it exists; returns whether it
    /// was created. UTF8, locale C (the same on every machine), superuser
    /// `postgres` with a generated password.
    pub fn init(&self) -> Result<bool> {
        let _lock = self.lock()?;
        self.init_locked()
    }

    fn init_locked(&self) -> Result<bool> {
        if self.is_initialized() {
            return Ok(false);
        }
        self.check_reachable()?;
        self.private_dir(&self.dir)?;
        // The cluster is built in a side directory and renamed into place
        // last, so that an interrupted first start (initdb killed, a crash
        // while the configuration is written) leaves no half-made data
        // directory that looks initialised: the next start removes the
        // leftover and begins again.
        let building = self.dir.join(DATA_BUILDING);
        if building.exists() {
            fs::remove_dir_all(&building)
                .map_err(|e| self.io_error("removing an interrupted initdb's directory", e))?;
        }
        let password = uuid::Uuid::new_v4().simple().to_string();
        let password_file = self.dir.join(PASSWORD_FILE);
        self.write_private(&password_file, password.as_bytes())?;
        let auth = self.options.auth;
        let local_auth = match auth {
            Auth::SocketTrust => "trust",
            Auth::Password => "scram-sha-256",
        };
        let mut cmd = self.command("initdb");
        cmd.arg("--pgdata")
            .arg(&building)
            .args([
                "--username",
                SUPERUSER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",
            ])
            .args(["--auth-local", local_auth, "--auth-host", "scram-sha-256"])
            .arg("--pwfile")
            .arg(&password_file);
        if self.options.throwaway {
            cmd.arg("--no-sync");
        }
        self.run(cmd, "initdb")?;

        let mut conf = String::from("\n# Added when cruddur-db created this cluster.\n");
        if self.options.throwaway {
            // Only an operating-system crash can lose what these skip;
            // commits still reach the WAL before they return, so a killed
            // server (what reliability tests do) loses nothing committed.
            conf.push_str("fsync = off\nfull_page_writes = off\n");
        }
        for line in &self.options.conf {
            conf.push_str(line);
            conf.push('\n');
        }
        // Last, so that the port and socket written at each start win.
        conf.push_str(&format!("include_if_exists = '{RUNTIME_CONF}'\n"));
        let conf_path = building.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| self.io_error("extending postgresql.conf", e))?;
        for (name, contents) in &self.options.files {
            let relative = Path::new(name);
            if !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(self.error(format!(
                    "the file name `{name}` must be a plain path inside the data directory"
                )));
            }
            self.write_private(&building.join(relative), contents)?;
        }
        fs::write(self.dir.join(AUTH_FILE), auth.as_str())
            .map_err(|e| self.io_error("writing the auth file", e))?;
        fs::rename(&building, self.data_dir())
            .map_err(|e| self.io_error("moving the new cluster into place", e))?;
        Ok(true)
    }

    /// Starts the server (creating the cluster first if needed) and waits,
    /// up to [`START_TIMEOUT`], until it accepts connections.
    ///
    /// A no-op when it already runs. A `postmaster.pid` left by a crash is
    /// removed once no process of the cluster is left. The TCP port is
    /// picked at the first start and kept; when another program took it
    /// meanwhile, a new one is picked (and the URL changes).
    pub fn start(&self) -> Result<StartOutcome> {
        let _lock = self.lock()?;
        let initialized = self.init_locked()?;
        if let Some(pid) = self.pid() {
            // Possibly still starting (another process started it).
            self.wait_ready()?;
            return Ok(StartOutcome::AlreadyRunning { pid });
        }
        self.clear_stale_pid_file()?;
        let mut attempt = 0;
        loop {
            let port = self.port_for_start(attempt > 0)?;
            let socket_dir = self.socket_dir();
            self.private_dir(&socket_dir)?;
            self.write_runtime_conf(port, &socket_dir)?;
            let log_start = fs::metadata(self.log_file()).map_or(0, |m| m.len());
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("--pgdata")
                .arg(self.data_dir())
                .arg("--log")
                .arg(self.log_file())
                .args(["--wait", "--timeout"])
                .arg(START_TIMEOUT.as_secs().to_string());
            match self.run(cmd, "pg_ctl start") {
                Ok(_) => break,
                Err(e) => {
                    let log = self.log_since(log_start);
                    let port_taken = log.contains("Address already in use");
                    if port_taken && attempt < 2 {
                        attempt += 1;
                        continue;
                    }
                    return Err(match e {
                        Error::LocalCluster { dir, message } => Error::LocalCluster {
                            dir,
                            message: format!(
                                "{message}\nlast lines of {}:\n{log}",
                                self.log_file().display()
                            ),
                        },
                        other => other,
                    });
                }
            }
        }
        self.wait_ready()?;
        Ok(StartOutcome::Started { initialized })
    }

    /// Stops the server with a fast shutdown (sessions are ended, nothing
    /// committed is lost) and waits until none of its processes is left;
    /// an immediate shutdown follows when the fast one does not finish
    /// within [`STOP_TIMEOUT`]. Returns whether it was running.
    pub fn stop(&self) -> Result<bool> {
        let _lock = self.lock()?;
        let Some(pid) = self.pid() else {
            return Ok(false);
        };
        let pg_ctl_stop = |mode: &str, timeout: Duration| {
            let mut cmd = self.command("pg_ctl");
            cmd.arg("stop")
                .arg("--pgdata")
                .arg(self.data_dir())
                .args(["--mode", mode, "--wait", "--timeout"])
                .arg(timeout.as_secs().to_string());
            self.run(cmd, "pg_ctl stop")
        };
        let fast = pg_ctl_stop("fast", STOP_TIMEOUT);
        let gone = |timeout| poll(timeout, || !self.is_our_postmaster(pid));
        if !gone(Duration::from_secs(5)) {
            let immediate = pg_ctl_stop("immediate", Duration::from_secs(10));
            if !gone(Duration::from_secs(10)) {
                let why = [fast.err(), immediate.err()]
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(self.error(format!("the server (pid {pid}) did not stop: {why}")));
            }
        }
        // The postmaster exits last, but a backend stuck in a system call
        // can linger a moment; "stopped" means none is left.
        if !poll(Duration::from_secs(10), || self.processes().is_empty()) {
            return Err(self.error(format!(
                "server processes {:?} are still running after the shutdown",
                self.processes()
            )));
        }
        Ok(true)
    }

    /// After a crash: waits for leftover server processes to exit, then
    /// removes `postmaster.pid` and the socket's lock file, whose process
    /// id may by now belong to another program (which would make the
    /// server refuse to start).
    fn clear_stale_pid_file(&self) -> Result<()> {
        let pid_file = self.data_dir().join("postmaster.pid");
        if !pid_file.exists() {
            return Ok(());
        }
        if !poll(Duration::from_secs(10), || self.processes().is_empty()) {
            return Err(self.error(format!(
                "the server is not running, but its processes {:?} are still alive; stop them and try again",
                self.processes()
            )));
        }
        tracing::info!("removing the stale {}", pid_file.display());
        remove_if_present(&pid_file).map_err(|e| self.io_error("removing postmaster.pid", e))?;
        if let Some(port) = self.port() {
            let socket = self.socket_dir().join(format!(".s.PGSQL.{port}"));
            let lock = self.socket_dir().join(format!(".s.PGSQL.{port}.lock"));
            for path in [socket, lock] {
                remove_if_present(&path)
                    .map_err(|e| self.io_error("removing a stale socket file", e))?;
            }
        }
        Ok(())
    }

    /// The remembered port when it is still free (or `force_new` is not
    /// asked), else a newly picked free one, remembered.
    fn port_for_start(&self, force_new: bool) -> Result<u16> {
        if !force_new
            && let Some(port) = self.port()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
        // Port 0 lets the kernel choose a free port; another program may
        // take it before the server binds it, which `start` retries.
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| self.io_error("picking a free TCP port", e))?
            .port();
        fs::write(self.dir.join(PORT_FILE), format!("{port}\n"))
            .map_err(|e| self.io_error("writing the port file", e))?;
        Ok(port)
    }

    fn write_runtime_conf(&self, port: u16, socket_dir: &Path) -> Result<()> {
        let text = format!(
            "# Written by cruddur-db at every start; put your settings in postgresql.conf.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n",
            socket_dir.to_string_lossy().replace('\'', "''")
        );
        self.write_private(&self.data_dir().join(RUNTIME_CONF), text.as_bytes())
    }

    fn wait_ready(&self) -> Result<()> {
        let url = self.url_for("postgres")?;
        crate::pool::wait_for_server(&url, START_TIMEOUT).map_err(|e| {
            self.error(format!(
                "the server does not accept connections: {e}\nlast lines of {}:\n{}",
                self.log_file().display(),
                self.log_since(0)
            ))
        })
    }

    /// The last 20 lines of the log written after byte `from`.
    fn log_since(&self, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.log_file()) {
            let _ = f.seek(SeekFrom::Start(from));
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Holds the cluster's lock file until the returned handle is dropped,
    /// so that two processes do not run `initdb` or `pg_ctl` at once.
    fn lock(&self) -> Result<fs::File> {
        self.private_dir(&self.dir)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| self.io_error("opening the lock file", e))?;
        file.lock()
            .map_err(|e| self.io_error("locking the cluster", e))?;
        Ok(file)
    }

    /// A PostgreSQL program of this installation, run as the server user,
    /// in the cluster directory, without the `PG*` variables of the caller.
    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bins.tool(tool));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        if let Some(user) = &self.owner {
            // std sets the group, drops supplementary groups and then the
            // user in the child before exec.
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
        let out = cmd
            .output()
            .map_err(|e| self.io_error(&format!("running {what}"), e))?;
        if out.status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut message = format!("{what} failed ({}): {}", out.status, stderr.trim());
        if stderr.trim().is_empty() {
            message.push_str(stdout.trim());
        }
        if let Some(user) = &self.owner
            && stderr.contains("Permission denied")
        {
            message.push_str(&format!(
                "\nThe server runs as the OS user `{}`, who must be able to reach {}: put the cluster elsewhere with CRUDDUR_LOCAL_DIR (e.g. under /var/tmp)",
                user.name,
                self.dir.display()
            ));
        }
        Err(self.error(message))
    }

    /// As root, checks that the server user may enter every directory
    /// above the cluster's: otherwise initdb and pg_ctl fail with a bare
    /// "Permission denied" (a project under /root, a `mktemp -d` directory).
    fn check_reachable(&self) -> Result<()> {
        let Some(user) = &self.owner else {
            return Ok(());
        };
        for dir in self.dir.ancestors().skip(1) {
            let Ok(meta) = fs::metadata(dir) else {
                continue; // created below, by us, for the server user
            };
            let mode = meta.mode();
            let can_enter = if meta.uid() == user.uid {
                mode & 0o100 != 0
            } else if meta.gid() == user.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !can_enter {
                return Err(self.error(format!(
                    "the server runs as the OS user `{}` (PostgreSQL refuses root), who cannot enter {} (mode {:o}, uid {}); make it reachable (e.g. `chmod o+x {}`) or put the cluster elsewhere with CRUDDUR_LOCAL_DIR",
                    user.name,
                    dir.display(),
                    mode & 0o7777,
                    meta.uid(),
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// Creates `dir` (and parents) with mode 0700, owned by the server user.
    fn private_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)
            .map_err(|e| self.io_error(&format!("creating {}", dir.display()), e))?;
        let meta = fs::metadata(dir).map_err(|e| self.io_error("inspecting a directory", e))?;
        let expected = self
            .owner
            .as_ref()
            .map_or_else(|| rustix::process::geteuid().as_raw(), |u| u.uid);
        // A shared place like /tmp could hold a directory someone else made
        // to catch our socket; use it only if it is ours to take.
        let mine = meta.uid() == expected || meta.uid() == rustix::process::geteuid().as_raw();
        if !mine {
            return Err(self.error(format!(
                "{} belongs to another user (uid {}); remove it or choose another directory",
                dir.display(),
                meta.uid()
            )));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| self.io_error("setting directory permissions", e))?;
        self.give_to_owner(dir)
    }

    /// Writes `contents` to `path` with mode 0600, owned by the server user.
    fn write_private(&self, path: &Path, contents: &[u8]) -> Result<()> {
        let what = format!("writing {}", path.display());
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| self.io_error(&what, e))?;
        file.write_all(contents)
            .map_err(|e| self.io_error(&what, e))?;
        // The mode given at creation does not apply to an existing file.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| self.io_error(&what, e))?;
        self.give_to_owner(path)
    }

    fn give_to_owner(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.owner {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                self.io_error(
                    &format!("giving {} to the OS user `{}`", path.display(), user.name),
                    e,
                )
            })?;
        }
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::LocalCluster {
            dir: self.dir.display().to_string(),
            message: message.into(),
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        self.error(format!("{what}: {e}"))
    }
}

/// The nearest directory from `start` upwards that holds `.cruddur`, else
/// `Cargo.toml`, else `start`.
fn project_root(start: &Path) -> PathBuf {
    let find = |marker: &str| start.ancestors().find(|d| d.join(marker).exists());
    find(".cruddur")
        .or_else(|| find("Cargo.toml"))
        .unwrap_or(start)
        .to_path_buf()
}

fn is_zombie(proc_dir: &Path) -> bool {
    // /proc/<pid>/stat: "pid (comm) S ...", where comm may hold spaces.
    fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Calls `done` every 50 ms until it is true or `timeout` passes.
fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 64-bit FNV-1a: a stable short name for a directory (std's hasher may
/// change between Rust releases, and the socket path must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Percent-encodes everything but unreserved characters, as libpq decodes
/// URLs (it does not read `+` as a space).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A private cluster in a temporary directory, stopped and deleted when
/// dropped (or by [`TempCluster::remove`]). It dereferences to its
/// [`LocalCluster`], so it can be stopped and started again.
///
/// It is a throwaway cluster (`fsync = off`): fast, for tests.
#[derive(Debug)]
pub struct TempCluster {
    cluster: LocalCluster,
    removed: AtomicBool,
}

impl TempCluster {
    /// Creates and starts one with the defaults ([`Auth::SocketTrust`]).
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    /// Options for a temporary cluster.
    pub fn builder() -> TempClusterBuilder {
        TempClusterBuilder::default()
    }

    /// Stops the server and deletes the directory (and the socket
    /// directory in `/tmp`, if one was used). Idempotent; dropping the
    /// cluster does the same.
    pub fn remove(&self) -> Result<()> {
        if self.removed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let stopped = self.cluster.stop();
        let socket_dir = self.cluster.socket_dir();
        if !socket_dir.starts_with(self.cluster.dir()) {
            let _ = fs::remove_dir_all(&socket_dir);
        }
        let removed = fs::remove_dir_all(self.cluster.dir())
            .map_err(|e| self.cluster.io_error("removing the temporary cluster", e));
        stopped.and(removed)
    }
}

impl Deref for TempCluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("could not remove the temporary cluster: {e}");
        }
    }
}

/// Options for a [`TempCluster`]; [`start`](Self::start) creates it.
#[derive(Debug, Clone, Default)]
pub struct TempClusterBuilder {
    options: ClusterOptions,
}

impl TempClusterBuilder {
    /// Asks for the password on every connection ([`Auth::Password`]), so
    /// that [`LocalCluster::url`] carries it and a wrong one fails.
    /// Default off.
    pub fn password_auth(mut self, on: bool) -> Self {
        self.options.auth = if on {
            Auth::Password
        } else {
            Auth::SocketTrust
        };
        self
    }

    /// Appends a line to `postgresql.conf`.
    pub fn conf_line(mut self, line: impl Into<String>) -> Self {
        self.options.conf.push(line.into());
        self
    }

    /// Writes a file into the data directory (mode 0600, owned by the
    /// server user); `name` is relative to the data directory.
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.options.files.push((name.into(), contents.into()));
        self
    }

    /// Turns TLS on with this certificate and key (PEM): writes
    /// `server.crt` and `server.key` and sets `ssl = on`.
    pub fn ssl(self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.file("server.crt", cert_pem)
            .file("server.key", key_pem)
            .conf_line("ssl = on")
    }

    /// Creates the cluster in a new directory under the system's temporary
    /// directory and starts it. On failure nothing is left behind.
    ///
    /// Temporary clusters left behind by processes that were killed before
    /// they could remove theirs (Ctrl-C on `cargo test`) are removed first,
    /// so that their servers do not pile up; those of live processes are
    /// left alone.
    pub fn start(mut self) -> Result<TempCluster> {
        self.options.throwaway = true;
        remove_abandoned_temp_clusters();
        let name = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", &name[..12]));
        let cluster = TempCluster {
            cluster: LocalCluster::with_options(dir, self.options)?,
            removed: AtomicBool::new(false),
        };
        // On error `cluster` is dropped, which removes it.
        cluster.cluster.private_dir(cluster.cluster.dir())?;
        fs::write(
            cluster.cluster.dir().join(OWNER_FILE),
            std::process::id().to_string(),
        )
        .map_err(|e| cluster.cluster.io_error("writing the owner file", e))?;
        cluster.cluster.start()?;
        Ok(cluster)
    }
}

/// Name prefix of temporary cluster directories.
const TEMP_PREFIX: &str = "cruddur-pg-";
/// The id of the process that created a temporary cluster.
const OWNER_FILE: &str = "owner.pid";

/// Stops and deletes temporary clusters whose creating process is gone.
/// Best effort: a failure is logged, never returned.
fn remove_abandoned_temp_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No owner file yet: being created right now by someone else.
        let Some(owner) = fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if process_alive(owner) {
            continue;
        }
        // Claim it: of several processes sweeping at once, one wins the
        // rename and removes it; the others move on.
        if fs::rename(dir.join(OWNER_FILE), dir.join("owner.removing")).is_err() {
            continue;
        }
        match LocalCluster::at(&dir) {
            Ok(cluster) => {
                tracing::info!("removing the abandoned temporary cluster {}", dir.display());
                let abandoned = TempCluster {
                    cluster,
                    removed: AtomicBool::new(false),
                };
                if let Err(e) = abandoned.remove() {
                    tracing::warn!("could not remove an abandoned temporary cluster: {e}");
                }
            }
            Err(e) => tracing::warn!("could not inspect {}: {e}", dir.display()),
        }
    }
}

/// Whether process `pid` exists (and is not a zombie).
fn process_alive(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        return proc_dir.exists() && !is_zombie(&proc_dir);
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where [`resolve_config`] found the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// Given by the caller (a command-line flag).
    Explicit,
    /// `DATABASE_URL` or `CONNECTION_URL` (environment or `.env`).
    Environment,
    /// The default URL, where a server answered.
    Default,
    /// The project's [`LocalCluster`], because nothing answered at the
    /// default URL.
    LocalCluster {
        /// It was started by this call (else it was already running).
        started: bool,
    },
}

/// The result of [`resolve_config`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration to use.
    pub config: Config,
    /// Where its URL came from.
    pub source: UrlSource,
    /// One line for the user when the local cluster is used (show it on
    /// stderr); `None` otherwise.
    pub notice: Option<String>,
}

/// The configuration to use, with the embedded default:
///
/// 1. `explicit` (a command-line URL), when given;
/// 2. else `DATABASE_URL` / `CONNECTION_URL` (environment, `.env`);
/// 3. else the default URL (`CRUDDUR_DEFAULT_URL`, else
///    [`DEFAULT_DATABASE_URL`]) when a server answers there within
///    [`PROBE_TIMEOUT_SECS`] (even if it then refuses us: a server that
///    answers is the one meant, and its error is worth seeing);
/// 4. else the project's [`LocalCluster`], started when it is not running,
///    with the default URL's database name.
///
/// A configured URL (1, 2) is never replaced: if it fails, the caller sees
/// that error. Pool settings come from the environment in every case.
pub fn resolve_config(explicit: Option<DatabaseUrl>) -> Result<Resolved> {
    crate::config::load_dotenv()?;
    resolve_config_with(explicit, |k| std::env::var(k).ok(), LocalCluster::project)
}

/// A development [`Config`] for `url`, with the other settings (pool size,
/// statement timeout) read from `lookup`.
fn config_for(url: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Config> {
    Config::from_lookup(Environment::Development, |k| match k {
        "DATABASE_URL" => Some(url.to_owned()),
        "CONNECTION_URL" => None,
        other => lookup(other),
    })
}

/// [`resolve_config`] with the variables read from `lookup` and the local
/// cluster given by `cluster` (for tests and callers with their own
/// settings). It reads no `.env` file.
pub fn resolve_config_with(
    explicit: Option<DatabaseUrl>,
    lookup: impl Fn(&str) -> Option<String>,
    cluster: impl FnOnce() -> Result<LocalCluster>,
) -> Result<Resolved> {
    let with_url = |url: &str| config_for(url, &lookup);
    if let Some(url) = explicit {
        return Ok(Resolved {
            config: with_url(url.expose())?,
            source: UrlSource::Explicit,
            notice: None,
        });
    }
    match Config::from_lookup(Environment::Development, &lookup) {
        Ok(config) => {
            return Ok(Resolved {
                config,
                source: UrlSource::Environment,
                notice: None,
            });
        }
        Err(Error::MissingUrl { .. }) => {}
        Err(e) => return Err(e),
    }
    resolve_default_with(lookup, cluster, true)
}

/// The default URL when a server answers there, else the project's local
/// cluster: started when `may_start`, otherwise used only if it is already
/// running (so that commands other than `prepare` never start a server as
/// a side effect). For callers that have already found no configured URL.
pub fn resolve_default(may_start: bool) -> Result<Resolved> {
    crate::config::load_dotenv()?;
    resolve_default_with(|k| std::env::var(k).ok(), LocalCluster::project, may_start)
}

fn resolve_default_with(
    lookup: impl Fn(&str) -> Option<String>,
    cluster: impl FnOnce() -> Result<LocalCluster>,
    may_start: bool,
) -> Result<Resolved> {
    let with_url = |url: &str| config_for(url, &lookup);
    let default_raw = lookup("CRUDDUR_DEFAULT_URL")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let default = DatabaseUrl::parse(&default_raw)?;
    let probe = default.with_default_param("connect_timeout", &PROBE_TIMEOUT_SECS.to_string());
    let unreachable = match crate::pool::establish(&probe) {
        Err(e @ Error::Unreachable { .. }) => e,
        // Connected, or the server answered with a refusal or "no such
        // database": it is there.
        _ => {
            return Ok(Resolved {
                config: with_url(default.expose())?,
                source: UrlSource::Default,
                notice: None,
            });
        }
    };
    let cluster = cluster()?;
    let started = if cluster.pid().is_some() {
        false
    } else if may_start {
        matches!(cluster.start()?, StartOutcome::Started { .. })
    } else {
        return Err(match unreachable {
            Error::Unreachable { message, .. } => Error::Unreachable {
                url: default.to_string(),
                message: format!(
                    "{message}\n(no database is configured and the local cluster in {} is not running: \
                     start it with `cruddur-db local start` or `cruddur-db prepare`, or set DATABASE_URL)",
                    cluster.dir().display()
                ),
            },
            other => other,
        });
    };
    let database = default
        .database()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let url = cluster.url_for(&database)?;
    let notice = format!(
        "no database configured and nothing answers at {default}: using the local cluster in {} ({}), {url}",
        cluster.dir().display(),
        if started {
            "started"
        } else {
            "already running"
        },
    );
    Ok(Resolved {
        config: with_url(url.expose())?,
        source: UrlSource::LocalCluster { started },
        notice: Some(notice),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_falls_back_to_tmp_when_too_long_or_odd() {
        let bins = Binaries {
            dir: PathBuf::from("/nonexistent"),
        };
        let cluster = |dir: &str| LocalCluster {
            dir: PathBuf::from(dir),
            bins: bins.clone(),
            owner: None,
            options: ClusterOptions::default(),
        };
        let short = cluster("/work/project/.cruddur/pg");
        assert_eq!(
            short.socket_dir(),
            Path::new("/work/project/.cruddur/pg/socket")
        );
        let long_path = format!("/work/{}/.cruddur/pg", "x".repeat(80));
        let long = cluster(&long_path);
        let dir = long.socket_dir();
        assert!(
            dir.to_string_lossy().starts_with("/tmp/cruddur-"),
            "{}",
            dir.display()
        );
        assert!(dir.as_os_str().len() + SOCKET_FILE_LEN <= MAX_SOCKET_PATH);
        assert_eq!(
            dir,
            cluster(&long_path).socket_dir(),
            "stable per directory"
        );
        assert_ne!(dir, cluster(&format!("{long_path}2")).socket_dir());
        let spaced = cluster("/work/my project/.cruddur/pg");
        assert!(
            spaced
                .socket_dir()
                .to_string_lossy()
                .starts_with("/tmp/cruddur-")
        );
    }

    #[test]
    fn missing_server_user_message_says_what_to_do() {
        let message = Error::NoServerUser {
            user: "postgres".into(),
        }
        .to_string();
        for needle in [
            "refuses to run as root",
            "`postgres`",
            "useradd",
            "CRUDDUR_PG_USER",
            "DATABASE_URL",
        ] {
            assert!(message.contains(needle), "{needle:?} missing in: {message}");
        }
    }

    #[test]
    fn missing_binaries_message_names_places_and_remedies() {
        let err = Binaries::find_version(None, &|k| {
            (k == "CRUDDUR_PG_BINDIR").then(|| "/nonexistent/pg/bin".to_owned())
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/pg/bin"), "{message}");
        assert!(message.contains("apt-get install postgresql"), "{message}");
    }

    #[test]
    fn unknown_server_user_is_reported_when_root() {
        if !rustix::process::geteuid().is_root() {
            return; // the server runs as the current user; nothing to look up
        }
        let err =
            server_user(&|k| (k == "CRUDDUR_PG_USER").then(|| "cruddur-no-such-user-x".to_owned()))
                .unwrap_err();
        assert!(
            matches!(&err, Error::NoServerUser { user } if user == "cruddur-no-such-user-x"),
            "{err}"
        );
    }

    #[test]
    fn project_root_prefers_a_cruddur_dir_then_cargo_toml() {
        let base =
            std::env::temp_dir().join(format!("cruddur-root-{}", uuid::Uuid::new_v4().simple()));
        let nested = base.join("a/b");
        fs::create_dir_all(&nested).unwrap();
        assert_eq!(project_root(&nested), nested, "no marker: the start");
        fs::write(base.join("Cargo.toml"), "").unwrap();
        assert_eq!(project_root(&nested), base);
        fs::create_dir_all(base.join("a/.cruddur")).unwrap();
        assert_eq!(project_root(&nested), base.join("a"));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn encodes_like_libpq_decodes() {
        assert_eq!(encode("/tmp/a b+c"), "%2Ftmp%2Fa%20b%2Bc");
        assert_eq!(encode("cruddur_test-1.x"), "cruddur_test-1.x");
    }

    #[test]
    fn explicit_and_environment_urls_are_never_replaced() {
        let no_cluster =
            || -> Result<LocalCluster> { panic!("the local cluster must not be used") };
        let explicit = DatabaseUrl::parse("postgres://localhost:1/explicit").unwrap();
        let r = resolve_config_with(Some(explicit), |_| None, no_cluster).unwrap();
        assert_eq!(r.source, UrlSource::Explicit);
        assert_eq!(
            r.config.database_url.database().as_deref(),
            Some("explicit")
        );
        assert!(r.notice.is_none());

        let env =
            |k: &str| (k == "CONNECTION_URL").then(|| "postgres://localhost:1/from_env".to_owned());
        let r = resolve_config_with(None, env, no_cluster).unwrap();
        assert_eq!(r.source, UrlSource::Environment);
        assert_eq!(
            r.config.database_url.database().as_deref(),
            Some("from_env")
        );
    }

    #[test]
    fn auth_names_round_trip() {
        assert_eq!(Auth::parse("password"), Some(Auth::Password));
        assert_eq!(
            Auth::parse(Auth::SocketTrust.as_str()),
            Some(Auth::SocketTrust)
        );
        assert_eq!(Auth::parse("md5"), None);
    }
}
