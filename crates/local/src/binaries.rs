//! Finding the PostgreSQL server programs installed on the machine.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cruddur_db::Settings;

use crate::error::{Error, Result};
use crate::variables::{CRUDDUR_PG_BINDIR, PATH};

/// The directory of an installation's server programs (`initdb`, `pg_ctl`,
/// `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub(crate) dir: PathBuf,
}

impl Binaries {
    /// Finds the server programs, in this order: `CRUDDUR_PG_BINDIR` (only
    /// there, when set); the directory of the `pg_ctl` on `PATH` (symlinks
    /// followed); `pg_config --bindir`; `/usr/lib/postgresql/<version>/bin`
    /// (Debian/Ubuntu, newest first); `/usr/pgsql-<version>/bin` (RPM);
    /// Homebrew's `postgresql@<version>` and `postgresql` (newest first);
    /// `/opt/homebrew/bin`; `/usr/local/bin`.
    pub fn find(settings: &Settings) -> Result<Self> {
        Self::find_version(None, settings)
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
    ///
    /// As root, only programs nobody else can change are run (see
    /// [`Error::UntrustedPrograms`]).
    pub fn major_version(&self) -> Result<String> {
        self.check_trusted()?;
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
    pub(crate) fn find_version(want: Option<&str>, settings: &Settings) -> Result<Self> {
        let candidates = candidate_dirs(settings);
        let searched = || {
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let found: Vec<Binaries> = candidates.iter().filter_map(|d| Self::in_dir(d)).collect();
        let Some(want) = want else {
            let bins = found
                .into_iter()
                .next()
                .ok_or_else(|| Error::PostgresNotInstalled {
                    searched: searched(),
                })?;
            bins.check_trusted()?;
            return Ok(bins);
        };
        let mut seen = Vec::new();
        for bins in found {
            // `pg_ctl --version` runs as the current user, root included:
            // an untrusted one is refused, not skipped.
            match bins.major_version() {
                Err(e @ Error::UntrustedPrograms { .. }) => return Err(e),
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

impl Binaries {
    /// As root, refuses programs another user could have written or
    /// replaced: see [`untrusted`]. The server programs run as the server
    /// user, and `pg_ctl --version` as root; either way, whoever may write
    /// them would choose what runs.
    pub(crate) fn check_trusted(&self) -> Result<()> {
        if !rustix::process::geteuid().is_root() {
            return Ok(());
        }
        for tool in TOOLS {
            let path = self.tool(tool);
            if !path.exists() && *tool == "pg_basebackup" {
                continue; // only replicas need it, and `run` reports it missing
            }
            if let Some(reason) = untrusted(&path) {
                return Err(Error::UntrustedPrograms { path, reason });
            }
        }
        Ok(())
    }
}

/// The programs of an installation that we run.
const TOOLS: &[&str] = &["pg_ctl", "initdb", "postgres", "pg_basebackup"];

/// Why the program at `path` could have been written by a user other than
/// root and the current one, or `None` when it could not: the file, and
/// every directory above it (both as named and with links resolved), must
/// belong to root or the current user and must not be writable by group
/// or others. A sticky world-writable directory (`/tmp`) is refused too:
/// programs that run as root do not belong there.
pub(crate) fn untrusted(path: &Path) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    let real = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) => return Some(format!("it cannot be resolved: {e}")),
    };
    let named = path.parent().map(Path::ancestors).into_iter().flatten();
    for at in std::iter::once(real.as_path())
        .chain(real.ancestors().skip(1))
        .chain(named)
    {
        if at.as_os_str().is_empty() {
            continue; // the current directory, met again as `real`'s
        }
        let meta = match fs::metadata(at) {
            Ok(meta) => meta,
            Err(e) => return Some(format!("{} cannot be inspected: {e}", at.display())),
        };
        if meta.uid() != 0 && meta.uid() != me {
            return Some(format!(
                "{} belongs to another user (uid {})",
                at.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!(
                "{} may be written by its group or other users (mode {:o})",
                at.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    None
}

/// The first `name` on `PATH` (from `settings`), when it exists.
pub(crate) fn on_path(name: &str, settings: &Settings) -> Option<PathBuf> {
    let path = settings.get(&PATH)?;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Directories that may hold the server programs, best first, without
/// duplicates.
pub(crate) fn candidate_dirs(settings: &Settings) -> Vec<PathBuf> {
    if let Some(dir) = settings.get(&CRUDDUR_PG_BINDIR) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(path) = settings.get(&PATH) {
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
    // `pg_config` runs as the current user, root included: only a trusted
    // one (see `untrusted`), found on PATH by us.
    let pg_config = on_path("pg_config", settings)
        .filter(|p| !rustix::process::geteuid().is_root() || untrusted(p).is_none());
    if let Some(pg_config) = pg_config
        && let Ok(out) = Command::new(pg_config)
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
pub(crate) fn versioned_dirs(parent: &str, prefix: &str, sub: &str) -> Vec<PathBuf> {
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
