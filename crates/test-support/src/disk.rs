//! A server whose disk fills: [`DiskFullCluster`], a private cluster whose
//! database lives in a tablespace on a size-limited tmpfs, which
//! [`fill`](DiskFullCluster::fill) fills to the last page with a filler
//! file and [`free`](DiskFullCluster::free) empties again.
//!
//! Only the tablespace is on the small volume; the data directory, and so
//! `pg_wal`, stay on the machine's disk. PostgreSQL PANICs (and restarts,
//! losing every session) when it cannot write WAL: that is a server
//! crash, which the restart tests cover. A full data volume with WAL on a
//! volume of its own is the fault that leaves the server up, failing only
//! what needs new space, as RDS and most production setups see it.
//!
//! Needs root (`mount`); see [`Privileged`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use cruddur_db::DatabaseUrl;
use diesel::connection::SimpleConnection;

use crate::TempCluster;
use crate::netns::{Privileged, Unavailable};

/// Mount points begin with this, then the owning process id and a counter.
const PREFIX: &str = "cruddur-tmpfs-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A tmpfs of `size` bytes mounted on a new directory under the system's
/// temporary directory, owned by the server's OS user. Unmounted and its
/// directory removed when dropped.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts one of `size_mib` MiB. `Err` when this process may not mount
    /// (not root, no `CAP_SYS_ADMIN`); any later failure panics.
    pub fn mount(size_mib: u32) -> Result<Self, Unavailable> {
        Privileged::root()?;
        remove_abandoned();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{n}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let owner = cruddur_db_local::server_user(crate::settings())
            .expect("the server's OS user")
            .map(|u| format!(",uid={},gid={}", u.uid, u.gid))
            .unwrap_or_default();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0700{owner}"))
            .arg("tmpfs")
            .arg(&dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(Self { dir }),
            other => {
                let _ = fs::remove_dir(&dir);
                Err(Unavailable(match other {
                    Ok(out) => format!(
                        "`mount -t tmpfs` failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    Err(e) => format!("cannot run `mount`: {e}"),
                }))
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.dir, false);
    }
}

fn unmount(dir: &Path, lazy: bool) {
    let mut cmd = Command::new("umount");
    if lazy {
        cmd.arg("--lazy");
    }
    match cmd.arg(dir).output() {
        Ok(out) if out.status.success() => {
            let _ = fs::remove_dir(dir);
        }
        Ok(out) => eprintln!(
            "could not unmount {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("could not run umount for {}: {e}", dir.display()),
    }
}

/// Unmounts the volumes of processes that are gone. Best effort.
fn remove_abandoned() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !cruddur_db_local::process_alive(pid) {
            eprintln!("unmounting the abandoned volume {}", entry.path().display());
            unmount(&entry.path(), true);
        }
    }
}

/// A private cluster ([`TempCluster`]) whose database `cruddur` is in the
/// tablespace `small`, on a [`Tmpfs`] of its own; WAL and the catalogs
/// stay on the machine's disk (see the [module documentation](self)).
pub struct DiskFullCluster {
    // Declared first: the server stops before its volume is unmounted.
    cluster: TempCluster,
    volume: Tmpfs,
}

/// The filler's name on the volume.
const FILLER: &str = "filler";

impl DiskFullCluster {
    /// Mounts a tmpfs of `size_mib` MiB, starts a cluster and creates the
    /// database `cruddur` in a tablespace there. `Err` when this process
    /// may not mount ([`Privileged::or_skip`] decides).
    pub fn start(size_mib: u32) -> Result<Self, Unavailable> {
        let volume = Tmpfs::mount(size_mib)?;
        let cluster = TempCluster::start().expect("start a private cluster");
        let location = volume.path().to_string_lossy().replace('\'', "''");
        let mut admin = cruddur_db::establish(&cluster.url_for("postgres").expect("its URL"))
            .expect("connect to the private cluster");
        admin
            .batch_execute(&format!("CREATE TABLESPACE small LOCATION '{location}'"))
            .expect("create the tablespace on the small volume");
        admin
            .batch_execute("CREATE DATABASE cruddur TABLESPACE small")
            .expect("create the database in it");
        Ok(Self { cluster, volume })
    }

    /// The cluster.
    pub fn cluster(&self) -> &TempCluster {
        &self.cluster
    }

    /// `database` on the cluster (its unix socket).
    pub fn url_for(&self, database: &str) -> DatabaseUrl {
        self.cluster.url_for(database).expect("the cluster's URL")
    }

    /// Fills the volume: writes the filler file until the kernel refuses
    /// (`ENOSPC`), first in 1 MiB pieces, then page by page, so that not
    /// one page is left. Returns the bytes written.
    pub fn fill(&self) -> u64 {
        let path = self.volume.path().join(FILLER);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut written = 0_u64;
        for piece in [1 << 20, 4096, 512] {
            let zeros = vec![0_u8; piece];
            loop {
                match file.write(&zeros) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("writing {}: {e}", path.display()),
                }
            }
        }
        written
    }

    /// Removes the filler: the space is free again.
    pub fn free(&self) {
        let path = self.volume.path().join(FILLER);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }
}
