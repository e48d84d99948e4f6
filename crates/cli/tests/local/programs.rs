//! Which server programs root runs: a `CRUDDUR_PG_BINDIR` (from the
//! environment or a `.env`) naming programs another user could have
//! written or replaced is refused, and they never run. The fake programs
//! here append to a marker file when they run.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::common;

/// A scratch place: `base` (under the target directory, which only root
/// may write, unlike the system temp directory) for the fake
/// installations, and a cluster directory and a marker file in a
/// temporary directory that the server user may write.
struct Scratch {
    base: PathBuf,
    cluster_dir: PathBuf,
    marker: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique_name("fake_pg"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // The fake initdb runs as the server user, and writes the marker.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Self {
            cluster_dir: tmp.path().join("pg"),
            marker: tmp.path().join("ran"),
            base,
            _tmp: tmp,
        }
    }

    /// A directory `base/name` (mode `dir_mode`) holding fake `initdb`,
    /// `pg_ctl` and `postgres` (mode `file_mode`) that write the marker.
    fn fake_bindir(&self, name: &str, dir_mode: u32, file_mode: u32) -> PathBuf {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for tool in ["initdb", "pg_ctl", "postgres"] {
            let path = dir.join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{}'\necho 'pg_ctl (PostgreSQL) 15.0'\nexit 1\n",
                    self.marker.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
        dir
    }

    fn start_with(&self, bindir: &Path) -> common::cli::Run {
        let mut cmd = common::cli::cli();
        cmd.env("CRUDDUR_LOCAL_DIR", &self.cluster_dir)
            .env("CRUDDUR_PG_BINDIR", bindir);
        common::cli::run_cmd(cmd, &["local", "start"])
    }

    fn ran(&self) -> Option<String> {
        std::fs::read_to_string(&self.marker).ok()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.cluster_dir.join("data").exists() {
            let mut cmd = common::cli::cli();
            cmd.env("CRUDDUR_LOCAL_DIR", &self.cluster_dir)
                .env_remove("CRUDDUR_PG_BINDIR");
            let run = common::cli::run_cmd(cmd, &["local", "stop"]);
            if run.code != 0 {
                eprintln!("stopping {}: {}", self.cluster_dir.display(), run.stderr);
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether `dir` and every directory above it belong to root and are
/// writable by root only: where a trusted installation could live.
fn root_only(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

fn assert_refused(scratch: &Scratch, case: &str, run: &common::cli::Run, named: &Path) {
    assert_eq!(
        scratch.ran(),
        None,
        "{case}: a fake program ran\nstderr: {}",
        run.stderr
    );
    run.failure();
    assert!(
        run.stderr.contains("refusing to run") && run.stderr.contains(&named.display().to_string()),
        "{case}: the error must name what is refused:\n{}",
        run.stderr
    );
}

#[test]
fn programs_another_user_could_have_written_are_never_run_as_root() {
    if !is_root() {
        return; // the check is root's: others run the programs as themselves
    }
    let scratch = Scratch::new();

    let world_writable = scratch.fake_bindir("world-writable", 0o777, 0o755);
    let run = scratch.start_with(&world_writable);
    assert_refused(
        &scratch,
        "a world-writable directory",
        &run,
        &world_writable,
    );
    assert!(run.stderr.contains("mode 777"), "{}", run.stderr);

    let sticky = scratch.fake_bindir("sticky", 0o1777, 0o755);
    let run = scratch.start_with(&sticky);
    assert_refused(&scratch, "a sticky world-writable directory", &run, &sticky);

    let group_writable = scratch.fake_bindir("group-writable", 0o775, 0o755);
    let run = scratch.start_with(&group_writable);
    assert_refused(
        &scratch,
        "a group-writable directory",
        &run,
        &group_writable,
    );

    let writable_file = scratch.fake_bindir("writable-file", 0o755, 0o757);
    let run = scratch.start_with(&writable_file);
    assert_refused(&scratch, "a world-writable program", &run, &writable_file);

    let theirs = scratch.fake_bindir("theirs", 0o755, 0o755);
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let run = scratch.start_with(&theirs);
    assert_refused(&scratch, "another user's directory", &run, &theirs);
    assert!(run.stderr.contains("uid 65534"), "{}", run.stderr);

    // Safe itself, in a directory anyone may write (so anyone could
    // replace it).
    let open_parent = scratch.base.join("open");
    std::fs::create_dir(&open_parent).unwrap();
    std::fs::set_permissions(&open_parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let below_open = scratch.fake_bindir("open/bin", 0o755, 0o755);
    let run = scratch.start_with(&below_open);
    assert_refused(
        &scratch,
        "below a world-writable directory",
        &run,
        &open_parent,
    );

    // A link, in a safe place, to an unsafe one: what it resolves to counts.
    let link = scratch.base.join("link");
    std::os::unix::fs::symlink(&world_writable, &link).unwrap();
    let run = scratch.start_with(&link);
    assert_refused(
        &scratch,
        "a link to a world-writable directory",
        &run,
        &world_writable,
    );

    // Other spellings of the same directory: `..`, a trailing slash, `.`.
    for spelled in [
        format!("{}/sticky/../world-writable/", scratch.base.display()),
        format!("{}/./world-writable/.", scratch.base.display()),
    ] {
        let run = scratch.start_with(Path::new(&spelled));
        assert_refused(&scratch, &spelled, &run, Path::new(&spelled));
    }

    // The same programs where only root may change them are run: the
    // refusals above are the check's doing, not the fakes'.
    if root_only(&scratch.base) {
        let trusted = scratch.fake_bindir("trusted", 0o755, 0o755);
        let run = scratch.start_with(&trusted);
        run.failure();
        assert!(
            scratch.ran().is_some(),
            "trusted fakes must run:\n{}",
            run.stderr
        );
    } else {
        eprintln!(
            "skipped the trusted case: {} is not root's alone",
            scratch.base.display()
        );
    }
}

/// The attack as found: `CRUDDUR_PG_BINDIR` in a `.env`. One above the
/// project root is not read at all; one in the project naming a
/// world-writable directory is read, and its programs refused.
#[test]
fn a_env_file_cannot_make_root_run_a_planted_program() {
    if !is_root() {
        return;
    }
    let scratch = Scratch::new();
    let planted = scratch.fake_bindir("planted", 0o777, 0o755);
    let outer = tempfile::tempdir().unwrap();
    let project = outer.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    let env_line = format!("CRUDDUR_PG_BINDIR={}\n", planted.display());

    let above = outer.path().join(".env");
    std::fs::write(&above, &env_line).unwrap();
    let mut cmd = common::cli::cli();
    cmd.current_dir(&project)
        .env("CRUDDUR_LOCAL_DIR", &scratch.cluster_dir)
        .env_remove("CRUDDUR_PG_BINDIR");
    // Started with the machine's programs (stopped when `scratch` goes).
    let run = common::cli::run_cmd(cmd, &["local", "start"]);
    assert_eq!(
        scratch.ran(),
        None,
        "the .env above the project root must not be read:\n{}",
        run.stderr
    );
    run.success();
    std::fs::remove_file(&above).unwrap();

    let inside = project.join(".env");
    std::fs::write(&inside, &env_line).unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = common::cli::cli();
    cmd.current_dir(&project)
        .env("CRUDDUR_LOCAL_DIR", &scratch.cluster_dir)
        .env_remove("CRUDDUR_PG_BINDIR");
    let run = common::cli::run_cmd(cmd, &["local", "start"]);
    assert_refused(
        &scratch,
        "a .env naming a world-writable directory",
        &run,
        &planted,
    );

    // World-writable itself: not read (and nothing run).
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut cmd = common::cli::cli();
    cmd.current_dir(&project)
        .env("CRUDDUR_LOCAL_DIR", &scratch.cluster_dir)
        .env_remove("CRUDDUR_PG_BINDIR");
    let run = common::cli::run_cmd(cmd, &["local", "start"]);
    assert_eq!(scratch.ran(), None, "{}", run.stderr);
    run.failure()
        .stderr_has("not reading")
        .stderr_has(&inside.display().to_string());
}
