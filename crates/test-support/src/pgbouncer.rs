//! A real PgBouncer in transaction mode in front of the tests' server:
//! [`PgBouncer`], for the tests of the data layer behind a pooler.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cruddur_db::DatabaseUrl;
use diesel::prelude::*;

use crate::{eventually, free_port, server_url};

/// The program, as Debian's package installs it (in `/usr/sbin`, which a
/// user's `PATH` may lack).
fn program() -> PathBuf {
    let installed = Path::new("/usr/sbin/pgbouncer");
    if installed.exists() {
        installed.to_owned()
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// A PgBouncer process (transaction mode, `server_round_robin` off, as by
/// default) listening on a free loopback port, in front of the server of
/// [`server_url`], with `pool_size` server connections per database and
/// user. Clients connect with trust; it connects to the server as the
/// server URL says (its user and password). Stopped and its directory
/// removed when dropped.
///
/// As root it runs as the OS user `postgres` (PgBouncer refuses root).
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
}

impl PgBouncer {
    /// Starts one with `pool_size` server connections per database; panics
    /// with PgBouncer's log when it does not come up.
    pub fn start(pool_size: u32) -> Self {
        Self::in_front_of(&server_url(), pool_size)
    }

    /// Starts one in front of the server of `server` (for the benchmark,
    /// whose server is its own choice).
    pub fn in_front_of(server: &DatabaseUrl, pool_size: u32) -> Self {
        let (host, port) = server_address(server);
        let user = server
            .param("user")
            .map(str::to_owned)
            .unwrap_or_else(os_user);
        let password = server
            .param("password")
            .map(|p| format!(" password={p}"))
            .unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("cruddur-pgbouncer-")
            .tempdir_in("/tmp")
            .expect("make PgBouncer's directory")
            .keep();
        let listen = free_port();
        let ini = format!(
            "[databases]\n* = host={host} port={port}{password}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {auth}\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
             max_client_conn = 1000\nmax_db_connections = {pool_size}\n\
             server_reset_query =\nignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\nlog_connections = 0\nlog_disconnections = 0\n",
            auth = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).expect("write users.txt");
        let mut cmd = Command::new(program());
        cmd.arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = unprivileged_user() {
            for path in ["", "pgbouncer.ini", "users.txt"] {
                chown(&dir.join(path), uid, gid);
            }
            cmd.uid(uid).gid(gid);
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("start pgbouncer (is Debian's `pgbouncer` package installed?): {e}")
        });
        let bouncer = Self {
            child,
            dir,
            port: listen,
            user,
        };
        let up = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
        });
        assert!(up, "PgBouncer did not start:\n{}", bouncer.log());
        bouncer
    }

    /// The URL of `database` through the pooler.
    pub fn url(&self, database: &str) -> DatabaseUrl {
        DatabaseUrl::parse(&format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            self.user, self.port
        ))
        .expect("valid PgBouncer URL")
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM: immediate shutdown, client connections closed.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where PgBouncer reaches the server of `url`: its host (a socket
/// directory or a name) and port; without a host in the URL, the first
/// socket directory the server itself reports.
fn server_address(url: &DatabaseUrl) -> (String, String) {
    let port = url.param("port").unwrap_or("5432").to_owned();
    if let Some(host) = url.param("host").filter(|h| !h.is_empty()) {
        return (host.to_owned(), port);
    }
    #[derive(QueryableByName)]
    struct Dirs {
        #[diesel(sql_type = diesel::sql_types::Text)]
        dirs: String,
    }
    let mut conn = cruddur_db::establish(url).expect("connect to the test server");
    let dirs: Dirs = diesel::sql_query("SELECT current_setting('unix_socket_directories') AS dirs")
        .get_result(&mut conn)
        .expect("read unix_socket_directories");
    let first = dirs
        .dirs
        .split(',')
        .next()
        .unwrap_or("/tmp")
        .trim()
        .to_owned();
    (first, port)
}

/// The current OS user's name (libpq's default user).
fn os_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// As root, the uid and gid of `postgres` (the user PostgreSQL's packages
/// create), which PgBouncer runs as; `None` when not root.
fn unprivileged_user() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root, PgBouncer needs the OS user `postgres`")
    };
    Some((id("-u"), id("-g")))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}
