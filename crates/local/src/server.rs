//! Creating, starting and stopping a cluster's server.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Component, Path};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::cluster::*;
use crate::error::{Error, Result};
use crate::os::*;
use crate::safe_dir::SafeDir;
use crate::*;

impl LocalCluster {
    /// Creates the cluster (`initdb`) unless it exists; returns whether it
    /// was created. UTF8, locale C (the same on every machine), superuser
    /// `postgres` with a generated password.
    pub fn init(&self) -> Result<bool> {
        let _lock = self.lock()?;
        self.init_locked()
    }

    pub(crate) fn init_locked(&self) -> Result<bool> {
        if self.is_initialized() {
            return Ok(false);
        }
        self.check_reachable()?;
        let dir = self.private_dir(&self.dir)?;
        // A `data` that is there but cannot be opened as our directory (a
        // link, another user's) is refused, not built over.
        match dir.dir(DATA) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error("opening the data directory", e)),
            Ok(_) => {}
        }
        // The cluster is built in a side directory and renamed into place
        // last, so that an interrupted first start (initdb killed, a crash
        // while the configuration is written) leaves no half-made data
        // directory that looks initialised: the next start removes the
        // leftover and begins again.
        let building = self.dir.join(DATA_BUILDING);
        dir.remove_dir_all(DATA_BUILDING)
            .map_err(|e| self.io_error("removing an interrupted initdb's directory", e))?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let password_file = self.dir.join(PASSWORD_FILE);
        dir.write(PASSWORD_FILE, password.as_bytes())
            .map_err(|e| self.io_error("writing the password file", e))?;
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
        // initdb ran as the server user, who owns what it made.
        let built = dir
            .dir(DATA_BUILDING)
            .map_err(|e| self.io_error("opening the new data directory", e))?;
        built
            .append("postgresql.conf", conf.as_bytes())
            .map_err(|e| self.io_error("extending postgresql.conf", e))?;
        for (name, contents) in &self.options.files {
            let parts: Option<Vec<&str>> = Path::new(name)
                .components()
                .map(|c| match c {
                    Component::Normal(part) => part.to_str(),
                    _ => None,
                })
                .collect();
            let Some((file, parents)) = parts.as_deref().and_then(<[&str]>::split_last) else {
                return Err(self.error(format!(
                    "the file name `{name}` must be a plain path inside the data directory"
                )));
            };
            let what = format!("writing {}", building.join(name).display());
            let mut parent = None::<SafeDir>;
            for part in parents {
                let next = parent.as_ref().unwrap_or(&built).dir(part);
                parent = Some(next.map_err(|e| self.io_error(&what, e))?);
            }
            parent
                .as_ref()
                .unwrap_or(&built)
                .write(file, contents)
                .map_err(|e| self.io_error(&what, e))?;
        }
        dir.write(AUTH_FILE, auth.as_str().as_bytes())
            .map_err(|e| self.io_error("writing the auth file", e))?;
        dir.rename(DATA_BUILDING, DATA)
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
        self.start_locked()
    }

    pub(crate) fn start_locked(&self) -> Result<StartOutcome> {
        let initialized = self.init_locked()?;
        let primary = self.primary_number();
        if primary != 0 {
            // After a failover: the promoted replica is the primary, and
            // this data directory, the old primary, comes back as its
            // standby (never as a second primary).
            let outcome = match self.member(primary).run_server_locked()? {
                Some(pid) => StartOutcome::AlreadyRunning { pid },
                None => StartOutcome::Started { initialized },
            };
            self.rejoin_locked(0)?;
            return Ok(outcome);
        }
        Ok(match self.run_server_locked()? {
            Some(pid) => StartOutcome::AlreadyRunning { pid },
            None => StartOutcome::Started { initialized },
        })
    }

    /// Starts the server of an existing data directory unless it runs;
    /// returns the postmaster's id when it was running already. The caller
    /// holds the lock.
    pub(crate) fn run_server_locked(&self) -> Result<Option<u32>> {
        if let Some(pid) = self.pid() {
            // Possibly still starting (another process started it).
            self.wait_ready()?;
            return Ok(Some(pid));
        }
        self.clear_stale_pid_file()?;
        let mut attempt = 0;
        loop {
            let port = self.port_for_start(attempt > 0)?;
            let socket_dir = self.socket_dir();
            self.private_dir(&socket_dir)?;
            self.write_runtime_conf(port, &socket_dir)?;
            let log_start = self
                .open_dir()
                .and_then(|d| d.open_read(LOG_FILE))
                .and_then(|f| f.metadata())
                .map_or(0, |m| m.len());
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
                        Error::Cluster { dir, message } => Error::Cluster {
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
        Ok(None)
    }

    /// Stops the server with a fast shutdown (sessions are ended, nothing
    /// committed is lost) and waits until none of its processes is left;
    /// an immediate shutdown follows when the fast one does not finish
    /// within [`STOP_TIMEOUT`]. Returns whether it was running.
    ///
    /// Its [replicas](Self::start_replicas) are stopped first, the same
    /// way, so that none is left streaming from a server that is gone.
    pub fn stop(&self) -> Result<bool> {
        let _lock = self.lock()?;
        let primary = self.primary_number();
        if primary != 0 {
            // After a failover the primary is a replica's directory: the
            // standbys (this one among them) stop first.
            for m in self.member_numbers()? {
                if m != primary {
                    self.member(m).stop_locked()?;
                }
            }
            return self.member(primary).stop_locked();
        }
        self.stop_replicas_locked()?;
        self.stop_locked()
    }

    /// Stops this server only; the caller holds the lock.
    pub(crate) fn stop_locked(&self) -> Result<bool> {
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
    pub(crate) fn clear_stale_pid_file(&self) -> Result<()> {
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
        self.open_dir()
            .and_then(|d| d.dir(DATA))
            .and_then(|data| data.remove("postmaster.pid"))
            .map_err(|e| self.io_error("removing postmaster.pid", e))?;
        if let Some(port) = self.port() {
            let socket_dir = match SafeDir::open(&self.socket_dir(), self.give_to()) {
                Ok(dir) => dir,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(self.io_error("opening the socket directory", e)),
            };
            for name in [format!(".s.PGSQL.{port}"), format!(".s.PGSQL.{port}.lock")] {
                socket_dir
                    .remove(&name)
                    .map_err(|e| self.io_error("removing a stale socket file", e))?;
            }
        }
        Ok(())
    }

    /// The remembered port when it is still free (or `force_new` is not
    /// asked), else a newly picked free one, remembered.
    pub(crate) fn port_for_start(&self, force_new: bool) -> Result<u16> {
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
        self.open_dir()
            .and_then(|d| d.write(PORT_FILE, format!("{port}\n").as_bytes()))
            .map_err(|e| self.io_error("writing the port file", e))?;
        Ok(port)
    }

    pub(crate) fn write_runtime_conf(&self, port: u16, socket_dir: &Path) -> Result<()> {
        // The name a standby streams with (`pg_stat_replication`'s
        // application_name, what `synchronous_standby_names` lists): its
        // directory's, so that it holds after a rewind copied another
        // member's files over.
        let member = self
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("replica-"))
            .and_then(|k| k.parse().ok())
            .unwrap_or(0);
        let mut text = format!(
            "# Written by cruddur-db at every start; put your settings in postgresql.conf.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             cluster_name = '{}'\n",
            socket_dir.to_string_lossy().replace('\'', "''"),
            LocalCluster::member_name(member)
        );
        if !self.options.throwaway {
            // pg_rewind needs it to bring a failed primary back as a
            // standby (initdb did not enable data checksums); a throwaway
            // cluster runs without full_page_writes, which pg_rewind needs
            // too, so it cannot be rewound anyway.
            text.push_str("wal_log_hints = on\n");
        }
        self.open_dir()
            .and_then(|d| d.dir(DATA))
            .and_then(|data| data.write(RUNTIME_CONF, text.as_bytes()))
            .map_err(|e| self.io_error(&format!("writing {RUNTIME_CONF}"), e))
    }

    pub(crate) fn wait_ready(&self) -> Result<()> {
        let url = self.url_for("postgres")?;
        cruddur_db::pool::wait_for_server(&url, START_TIMEOUT).map_err(|e| {
            self.error(format!(
                "the server does not accept connections: {e}\nlast lines of {}:\n{}",
                self.log_file().display(),
                self.log_since(0)
            ))
        })
    }

    /// The last 20 lines of the log written after byte `from`.
    pub(crate) fn log_since(&self, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = self.open_dir().and_then(|d| d.open_read(LOG_FILE)) {
            let _ = f.seek(SeekFrom::Start(from));
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Holds the cluster's lock file until the returned handle is dropped,
    /// so that two processes do not run `initdb` or `pg_ctl` at once.
    pub(crate) fn lock(&self) -> Result<fs::File> {
        let file = self
            .private_dir(&self.dir)?
            .lock_file(LOCK_FILE)
            .map_err(|e| self.io_error("opening the lock file", e))?;
        file.lock()
            .map_err(|e| self.io_error("locking the cluster", e))?;
        Ok(file)
    }

    /// A PostgreSQL program of this installation (`pg_ctl`, `pg_basebackup`,
    /// ...) run as the server user when we are root (`postgres`, or
    /// `CRUDDUR_PG_USER`, the user the cluster's files belong to), in the
    /// cluster directory, stdin closed, without the `PG*` variables of the
    /// caller. The one place that decides who runs the server's programs.
    pub fn command(&self, tool: &str) -> Command {
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

    pub(crate) fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
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
    pub(crate) fn check_reachable(&self) -> Result<()> {
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

    /// Creates the cluster's directory (and parents), mode 0700 and owned
    /// by the server's OS user, for files to be put in it before
    /// [`init`](Self::init).
    pub fn create_dir(&self) -> Result<()> {
        self.private_dir(&self.dir).map(drop)
    }

    /// Creates `dir` (and parents) unless it exists and opens it without
    /// following a link (see [`SafeDir`]): mode 0700, owned by the server
    /// user. A directory someone else owns is refused: a shared place like
    /// /tmp could hold one made to catch our socket.
    pub(crate) fn private_dir(&self, dir: &Path) -> Result<SafeDir> {
        SafeDir::create(dir, self.give_to())
            .map_err(|e| self.io_error(&format!("creating {}", dir.display()), e))
    }

    /// The cluster's directory, which must exist, opened without following
    /// a link.
    pub(crate) fn open_dir(&self) -> std::io::Result<SafeDir> {
        SafeDir::open(&self.dir, self.give_to())
    }

    /// The server user's (uid, gid) when we are root.
    pub(crate) fn give_to(&self) -> Option<(u32, u32)> {
        self.owner.as_ref().map(|u| (u.uid, u.gid))
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::Cluster {
            dir: self.dir.display().to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io_error(&self, what: &str, cause: std::io::Error) -> Error {
        Error::Io {
            context: format!("local PostgreSQL cluster in {}: {what}", self.dir.display()),
            cause,
        }
    }
}
