//! Links in the cluster directory: as root, `local start` works in a
//! directory the server's OS user owns, who can put a symbolic or hard
//! link where a file of ours belongs. Each test plants one (as that user
//! could) pointing at a root-owned file or directory outside the cluster,
//! runs `local start`, and checks that it refused, naming the link, and
//! that the target's owner, mode and content did not change.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::common;

/// A project cluster in a scratch directory, driven through the binary
/// with `CRUDDUR_LOCAL_DIR`, stopped on drop; and a root-owned directory
/// `victim/` beside it, with a file `victim/file`, that the links point at.
struct Scratch {
    cluster_dir: PathBuf,
    victim: PathBuf,
    _dir: tempfile::TempDir,
}

/// Owner, mode and content of a file or directory (a directory's content
/// is its sorted entry names).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    uid: u32,
    gid: u32,
    mode: u32,
    content: Vec<u8>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = std::fs::metadata(path).unwrap();
    let content = if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_encoded_bytes())
            .collect();
        names.sort();
        names.join(&b'\n')
    } else {
        std::fs::read(path).unwrap()
    };
    Snapshot {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        content,
    }
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // As root the server runs as `postgres`, who must reach the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(victim.join("file"), "root's own\n").unwrap();
        std::fs::set_permissions(victim.join("file"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        Self {
            cluster_dir: dir.path().join("pg"),
            victim,
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> common::cli::Run {
        let mut cmd = common::cli::cli();
        cmd.env("CRUDDUR_LOCAL_DIR", &self.cluster_dir);
        common::cli::run_cmd(cmd, args)
    }

    fn victim_file(&self) -> PathBuf {
        self.victim.join("file")
    }

    /// Runs `local start` with `link` planted at `at` (relative to the
    /// cluster directory) and checks that it is refused, naming `at`, and
    /// that the victim directory and file did not change; then puts what
    /// was at `at` back.
    fn refused_with(&self, at: &str, link: Link) {
        let path = self.cluster_dir.join(at);
        let aside = path.with_extension("aside");
        let had = std::fs::symlink_metadata(&path).is_ok();
        if had {
            std::fs::rename(&path, &aside).unwrap();
        }
        let target = match link {
            Link::SymlinkToDir => self.victim.clone(),
            Link::SymlinkToFile | Link::Hard => self.victim_file(),
            Link::DanglingSymlink => self.victim.join("made-by-root"),
        };
        let before = (snapshot(&self.victim), snapshot(&self.victim_file()));
        match link {
            Link::Hard => std::fs::hard_link(&target, &path).unwrap(),
            _ => std::os::unix::fs::symlink(&target, &path).unwrap(),
        }

        let run = self.run(&["local", "start"]);

        let after = (snapshot(&self.victim), snapshot(&self.victim_file()));
        std::fs::remove_file(&path).unwrap();
        if had {
            std::fs::rename(&aside, &path).unwrap();
        }
        assert_eq!(
            before, after,
            "{link:?} at {at}: `local start` changed the link's target\nstderr: {}",
            run.stderr
        );
        assert!(
            !self.victim.join("made-by-root").exists(),
            "{link:?} at {at}: a file was created through the link"
        );
        run.failure();
        let why = match link {
            Link::Hard => "hard links",
            Link::SymlinkToDir | Link::SymlinkToFile | Link::DanglingSymlink => "symbolic link",
        };
        assert!(
            run.stderr.contains("refusing to use")
                && run.stderr.contains(&path.display().to_string())
                && run.stderr.contains(why),
            "{link:?} at {at}: the error must name the link and why:\n{}",
            run.stderr
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.cluster_dir.join("data").exists() {
            let run = self.run(&["local", "stop"]);
            if run.code != 0 {
                eprintln!("stopping {}: {}", self.cluster_dir.display(), run.stderr);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Link {
    SymlinkToDir,
    SymlinkToFile,
    DanglingSymlink,
    Hard,
}

/// The files `local start` writes at every start of an existing cluster:
/// the socket directory, the port file (rewritten when it cannot be
/// read), the configuration file written at each start, and the lock.
#[test]
fn links_planted_in_an_existing_cluster_are_refused_and_their_targets_unchanged() {
    let scratch = Scratch::new();
    scratch.run(&["local", "start"]).success();
    scratch.run(&["local", "stop"]).success();

    for (at, link) in [
        ("socket", Link::SymlinkToDir),
        ("port", Link::SymlinkToFile),
        ("port", Link::Hard),
        ("data/cruddur.conf", Link::SymlinkToFile),
        ("data/cruddur.conf", Link::Hard),
        ("data/cruddur.conf", Link::DanglingSymlink),
        (".lock", Link::SymlinkToFile),
        (".lock", Link::DanglingSymlink),
        (".lock", Link::Hard),
        ("data", Link::SymlinkToDir),
    ] {
        scratch.refused_with(at, link);
    }

    // With the links gone the cluster starts, its data intact.
    scratch.run(&["local", "start"]).success();
    scratch.run(&["local", "status"]).success();
}

/// The files the first start writes before `initdb`: the password and the
/// lock, in a cluster directory made ready (as `create_dir` does) by the
/// server's user.
#[test]
fn links_planted_before_the_first_start_are_refused_and_their_targets_unchanged() {
    let scratch = Scratch::new();
    std::fs::create_dir(&scratch.cluster_dir).unwrap();
    std::os::unix::fs::chown(&scratch.cluster_dir, Some(postgres_uid()), None).unwrap();
    for (at, link) in [
        ("password", Link::SymlinkToFile),
        ("password", Link::Hard),
        ("password", Link::DanglingSymlink),
        ("socket", Link::SymlinkToDir),
    ] {
        scratch.refused_with(at, link);
    }
}

/// The cluster directory itself replaced by a link: refused, and the
/// target is not given to the server user.
#[test]
fn a_cluster_directory_that_is_a_link_is_refused() {
    let scratch = Scratch::new();
    std::os::unix::fs::symlink(&scratch.victim, &scratch.cluster_dir).unwrap();
    let before = snapshot(&scratch.victim);
    let run = scratch.run(&["local", "start"]);
    assert_eq!(before, snapshot(&scratch.victim), "{}", run.stderr);
    run.failure().stderr_has("refusing to use");
    std::fs::remove_file(&scratch.cluster_dir).unwrap();
}

/// A cluster whose socket path would be too long lives in
/// `/tmp/cruddur-<hash>`, where any local user can make the name first: a
/// link there, or another user's directory, is refused.
#[test]
fn a_socket_directory_planted_in_tmp_is_refused() {
    let mut scratch = Scratch::new();
    scratch.cluster_dir = scratch
        .cluster_dir
        .with_file_name(format!("{}-pg", "x".repeat(90)));
    let status = scratch.run(&["local", "status"]);
    let socket_dir = status
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("socket dir:"))
        .map(|d| PathBuf::from(d.trim()))
        .unwrap_or_else(|| panic!("no socket dir in:\n{}", status.stdout));
    assert!(
        socket_dir.to_string_lossy().starts_with("/tmp/cruddur-"),
        "{}",
        socket_dir.display()
    );
    let before = snapshot(&scratch.victim);
    std::os::unix::fs::symlink(&scratch.victim, &socket_dir).unwrap();
    let run = scratch.run(&["local", "start"]);
    std::fs::remove_file(&socket_dir).unwrap();
    assert_eq!(before, snapshot(&scratch.victim), "{}", run.stderr);
    run.failure()
        .stderr_has("refusing to use")
        .stderr_has("symbolic link")
        .stderr_has(&socket_dir.display().to_string());

    std::fs::create_dir(&socket_dir).unwrap();
    std::os::unix::fs::chown(&socket_dir, Some(65534), Some(65534)).unwrap();
    let run = scratch.run(&["local", "start"]);
    let owner = std::fs::metadata(&socket_dir).unwrap().uid();
    std::fs::remove_dir(&socket_dir).unwrap();
    assert_eq!(owner, 65534, "{}", run.stderr);
    run.failure().stderr_has("another user (uid 65534)");
}

fn postgres_uid() -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
