//! Private throwaway clusters: what the tests use when no server is
//! configured, and what reliability tests use when they need a server they
//! may stop and restart.

use std::fs;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use cruddur_db_local::{Auth, ClusterOptions, Error, LocalCluster, Result};

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
        let removed = fs::remove_dir_all(self.cluster.dir()).map_err(|cause| Error::Io {
            context: format!(
                "removing the temporary cluster {}",
                self.cluster.dir().display()
            ),
            cause,
        });
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
            eprintln!("could not remove the temporary cluster: {e}");
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
            cluster: LocalCluster::with_options(dir, self.options, crate::settings())?,
            removed: AtomicBool::new(false),
        };
        // On error `cluster` is dropped, which removes it.
        cluster.cluster.create_dir()?;
        fs::write(
            cluster.cluster.dir().join(OWNER_FILE),
            std::process::id().to_string(),
        )
        .map_err(|cause| Error::Io {
            context: format!(
                "writing the owner file of {}",
                cluster.cluster.dir().display()
            ),
            cause,
        })?;
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
        if cruddur_db_local::process_alive(owner) {
            continue;
        }
        // Claim it: of several processes sweeping at once, one wins the
        // rename and removes it; the others move on.
        if fs::rename(dir.join(OWNER_FILE), dir.join("owner.removing")).is_err() {
            continue;
        }
        match LocalCluster::at(&dir, crate::settings()) {
            Ok(cluster) => {
                eprintln!("removing the abandoned temporary cluster {}", dir.display());
                let abandoned = TempCluster {
                    cluster,
                    removed: AtomicBool::new(false),
                };
                if let Err(e) = abandoned.remove() {
                    eprintln!("could not remove an abandoned temporary cluster: {e}");
                }
            }
            Err(e) => eprintln!("could not inspect {}: {e}", dir.display()),
        }
    }
}
