//! A cluster directory: its settings, paths, URLs and state.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use cruddur_db::{DatabaseUrl, Settings};

use crate::binaries::*;
use crate::error::{Error, Result};
use crate::os::*;
use crate::safe_dir::SafeDir;
use crate::variables::CRUDDUR_LOCAL_DIR;
use crate::*;

/// How clients authenticate to a local cluster (see the
/// [module documentation](crate#authentication)).
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Auth::SocketTrust => "socket-trust",
            Auth::Password => "password",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
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
            (false, _, _) => "not created yet".to_owned(),
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
/// server programs (see the [crate documentation](crate)).
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub(crate) dir: PathBuf,
    pub(crate) bins: Binaries,
    pub(crate) owner: Option<ServerUser>,
    pub(crate) options: ClusterOptions,
}

impl LocalCluster {
    /// The project's cluster: `CRUDDUR_LOCAL_DIR` when set, else
    /// `.cruddur/pg` in the project root, which is the nearest directory
    /// from the current one upwards that holds `.cruddur`, else one that
    /// holds `Cargo.toml`, else the current directory.
    pub fn project(settings: &Settings) -> Result<Self> {
        let dir = match settings.get(&CRUDDUR_LOCAL_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let cwd = std::env::current_dir().map_err(|e| Error::Io {
                    context: "reading the current directory".into(),
                    cause: e,
                })?;
                project_root(&cwd).join(DEFAULT_CLUSTER_DIR)
            }
        };
        Self::with_options(dir, ClusterOptions::default(), settings)
    }

    /// The cluster in `dir` (created at the first [`start`](Self::start)),
    /// with the default [`ClusterOptions`].
    pub fn at(dir: impl Into<PathBuf>, settings: &Settings) -> Result<Self> {
        Self::with_options(dir, ClusterOptions::default(), settings)
    }

    /// The cluster in `dir`, created with `options` when it does not exist.
    ///
    /// Fails when no server programs are found (or none of the version the
    /// cluster was created with), and, as root, when there is no
    /// unprivileged user to run them as.
    pub fn with_options(
        dir: impl Into<PathBuf>,
        options: ClusterOptions,
        settings: &Settings,
    ) -> Result<Self> {
        let dir: PathBuf = dir.into();
        let dir = std::path::absolute(&dir).map_err(|e| Error::Io {
            context: format!("resolving {}", dir.display()),
            cause: e,
        })?;
        let owner = server_user(settings)?;
        let want = SafeDir::open(&dir, owner.as_ref().map(|u| (u.uid, u.gid)))
            .and_then(|d| d.dir(DATA))
            .and_then(|data| data.read_to_string("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_owned());
        let bins = Binaries::find_version(want.as_deref(), settings)?;
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
    /// (see the [crate documentation](crate)).
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
        self.read_file(PORT_FILE).ok()?.trim().parse().ok()
    }

    /// How clients authenticate: what the cluster was created with, else
    /// what it will be created with.
    pub fn auth(&self) -> Auth {
        self.read_file(AUTH_FILE)
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
        let host = self.socket_dir().to_string_lossy().into_owned();
        Ok(DatabaseUrl::from_params(&[
            ("host", &host),
            ("port", &port.to_string()),
            ("user", SUPERUSER),
            ("dbname", database),
        ])?)
    }

    /// The TCP URL of `database` on 127.0.0.1, with the password. Keep it
    /// out of output: [`DatabaseUrl`] shows it redacted.
    pub fn tcp_url_for(&self, database: &str) -> Result<DatabaseUrl> {
        let port = self.require_port()?;
        let password = self
            .read_file(PASSWORD_FILE)
            .map_err(|e| self.io_error("reading the password file", e))?;
        Ok(DatabaseUrl::from_params(&[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("user", SUPERUSER),
            ("password", password.trim()),
            ("dbname", database),
        ])?)
    }

    /// The file `name` of the cluster's directory, read without following
    /// a link (see [`SafeDir`]).
    pub(crate) fn read_file(&self, name: &str) -> std::io::Result<String> {
        self.open_dir()?.read_to_string(name)
    }

    pub(crate) fn require_port(&self) -> Result<u16> {
        self.port()
            .ok_or_else(|| self.error("it has not been started yet, so it has no port"))
    }

    /// The postmaster's process id when this cluster's server is running.
    ///
    /// A `postmaster.pid` whose process is gone, or is now another program
    /// (the id was reused after a crash or a reboot), does not count.
    pub fn pid(&self) -> Option<u32> {
        let text = self
            .open_dir()
            .and_then(|d| d.dir(DATA))
            .and_then(|data| data.read_to_string("postmaster.pid"))
            .ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        self.is_our_postmaster(pid).then_some(pid)
    }

    /// Whether `pid` is a live process of this cluster's server.
    pub(crate) fn is_our_postmaster(&self, pid: u32) -> bool {
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
}
