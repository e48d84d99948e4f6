//! The operating system: the user the server runs as, processes, files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cruddur_db::Settings;

use crate::error::{Error, Result};
use crate::variables::CRUDDUR_PG_USER;
use crate::*;

/// The unprivileged OS user PostgreSQL (and whatever else refuses root,
/// such as PgBouncer) runs as when we are root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    /// Its name (`CRUDDUR_PG_USER`, default `postgres`).
    pub name: String,
    /// Its uid (never 0).
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// The OS user the server's programs run as: `None` when not root (they
/// run as the current user); as root, `CRUDDUR_PG_USER` (default
/// `postgres`), or [`Error::NoServerUser`] when there is no such user.
/// The one place that decides who runs them.
pub fn server_user(settings: &Settings) -> Result<Option<ServerUser>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let name = settings
        .get(&CRUDDUR_PG_USER)
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| DEFAULT_SERVER_USER.to_owned());
    // `id` answers from every user database the system knows (NSS), which
    // reading /etc/passwd would not. We are root: only an `id` that no
    // other user could have put on PATH.
    let id_program =
        crate::binaries::on_path("id", settings).unwrap_or_else(|| PathBuf::from("/usr/bin/id"));
    if let Some(reason) = crate::binaries::untrusted(&id_program) {
        return Err(Error::UntrustedPrograms {
            path: id_program,
            reason,
        });
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new(&id_program)
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

/// The nearest directory from `start` upwards that holds `.cruddur`, else
/// the outermost one whose `Cargo.toml` declares a `[workspace]` (so that
/// every member of a workspace finds the same cluster), else the nearest
/// one with a `Cargo.toml`, else `start`.
pub(crate) fn project_root(start: &Path) -> PathBuf {
    let find = |marker: &str| start.ancestors().find(|d| d.join(marker).exists());
    let workspace = || {
        start
            .ancestors()
            .filter(|d| {
                std::fs::read_to_string(d.join("Cargo.toml"))
                    .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
            })
            .last()
    };
    find(".cruddur")
        .or_else(workspace)
        .or_else(|| find("Cargo.toml"))
        .unwrap_or(start)
        .to_path_buf()
}

pub(crate) fn is_zombie(proc_dir: &Path) -> bool {
    // /proc/<pid>/stat: "pid (comm) S ...", where comm may hold spaces.
    fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Calls `done` every 50 ms until it is true or `timeout` passes.
pub(crate) fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
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
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether process `pid` exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        return proc_dir.exists() && !is_zombie(&proc_dir);
    }
    // No /proc (macOS, BSD): signal 0 asks whether it exists; EPERM means
    // it does, as another user's.
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}
