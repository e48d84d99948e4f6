//! Which `.env` file [`Settings::from_env`] reads, and which it refuses: one
//! in the current directory or a parent up to the project root (the
//! nearest directory with `.git`; without one, the current directory only),
//! owned by the current user or root and writable by nobody else.
//!
//! The current directory is process-wide, so each case runs in a child:
//! this test binary run again, in the directory of the case, where the
//! test `child` loads the settings and prints what it found.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use cruddur_db::Settings;

/// Set in the child, which is this binary run again.
const CHILD: &str = "CRUDDUR_DOTENV_TEST_CHILD";
/// The variable the `.env` files of these tests set.
const VAR: &str = cruddur_db_local::variables::CRUDDUR_PG_BINDIR.name();

/// Does nothing unless run as the child: then prints `value=<VAR>` or
/// `error=<the error>`.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    match Settings::from_env() {
        // On a line of its own: libtest's "test child ... " has no newline.
        Ok(settings) => println!(
            "\nvalue={}",
            settings
                .get(&cruddur_db_local::variables::CRUDDUR_PG_BINDIR)
                .unwrap_or("(unset)")
        ),
        Err(e) => println!("\nerror={e}"),
    }
}

/// What the child prints when run in `dir`.
fn load_in(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove(VAR)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("value=")
                .or_else(|| l.strip_prefix("error="))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the child printed nothing: {out:?}"))
}

/// Writes `dir/.env` setting [`VAR`] to `value`, mode 0600.
fn env_file(dir: &Path, value: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(".env");
    std::fs::write(&path, format!("{VAR}={value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_env_file_is_read_up_to_the_project_root_and_no_further() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path();
    let project = outer.join("project");
    let deep = project.join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir(project.join(".git")).unwrap();
    env_file(outer, "/planted/above/the/project");
    assert_eq!(
        load_in(&deep),
        "(unset)",
        "a .env above the project root must not be read"
    );
    env_file(&project, "/from/the/project");
    assert_eq!(load_in(&deep), "/from/the/project");
    env_file(&project.join("a"), "/from/a");
    assert_eq!(load_in(&deep), "/from/a", "the nearest one wins");
    // `.git` may be a file (a worktree, a submodule).
    let worktree = outer.join("worktree");
    std::fs::create_dir_all(worktree.join("sub")).unwrap();
    std::fs::write(worktree.join(".git"), "gitdir: elsewhere\n").unwrap();
    assert_eq!(load_in(&worktree.join("sub")), "(unset)");
}

#[test]
fn outside_a_git_checkout_only_the_current_directory_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let below = tmp.path().join("below");
    std::fs::create_dir(&below).unwrap();
    // Like a .env in the system temp directory, above a scratch directory.
    env_file(tmp.path(), "/planted/in/a/parent");
    assert_eq!(load_in(&below), "(unset)");
    assert_eq!(load_in(tmp.path()), "/planted/in/a/parent");
}

#[test]
fn a_env_file_others_may_write_is_refused_and_nothing_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let path = env_file(tmp.path(), "/from/a/shared/file");
    for mode in [0o666, 0o620, 0o602, 0o777] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = load_in(tmp.path());
        assert!(
            out.contains(&path.display().to_string())
                && out.contains("may write it")
                && out.contains("nothing from it was applied"),
            "mode {mode:o}: {out}"
        );
        assert!(!out.contains("/from/a/shared/file"), "mode {mode:o}: {out}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(load_in(tmp.path()), "/from/a/shared/file");
}

#[test]
fn a_env_file_of_another_user_is_refused_also_through_a_link() {
    if !is_root() {
        return; // only root can give a file away to test with
    }
    let tmp = tempfile::tempdir().unwrap();
    let theirs = tmp.path().join("theirs");
    let path = env_file(&theirs, "/chosen/by/nobody");
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let out = load_in(&theirs);
    assert!(
        out.contains(&path.display().to_string()) && out.contains("another user (uid 65534)"),
        "{out}"
    );
    // A link of ours to their file: the opened file is what is checked.
    let ours = tmp.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::os::unix::fs::symlink(&path, ours.join(".env")).unwrap();
    let out = load_in(&ours);
    assert!(out.contains("another user (uid 65534)"), "{out}");
}

/// Whether this process is root (`id -u`, to need no unsafe code here).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
