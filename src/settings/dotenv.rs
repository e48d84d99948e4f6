//! Finding, checking and loading the `.env` file (see the
//! [settings module docs](super)).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Loads the `.env` file of the current directory or its nearest parent
/// up to the project root (see the [module docs](self)) into the process
/// environment; variables already set win.
///
/// The file is opened once; its owner and mode are checked on that handle
/// and its content read from it, so the check and the read see one file.
/// The whole file is parsed before anything is applied: a line that does
/// not parse is an [`Error::DotEnv`] naming the file and the line number
/// (never the line, which may hold a password), and then no variable of the
/// file is set. A missing file is normal.
pub(super) fn load_dotenv() -> Result<()> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    let Some(path) = find_dotenv(&cwd) else {
        return Ok(());
    };
    let content = read_dotenv(&path)?;
    check_dotenv(&path, &content)?;
    dotenvy::from_read(content.as_slice()).map_err(|_| Error::DotEnv { path, line: None })
}

/// The `.env` to read from `cwd`: the nearest one in `cwd` and its parents
/// up to the nearest directory holding `.git`, or, when no parent holds
/// one, in `cwd` only.
fn find_dotenv(cwd: &Path) -> Option<PathBuf> {
    let root = cwd.ancestors().find(|dir| dir.join(".git").exists());
    let searched: Vec<&Path> = match root {
        Some(root) => cwd
            .ancestors()
            .take_while(|dir| *dir != root)
            .chain([root])
            .collect(),
        None => vec![cwd],
    };
    searched
        .into_iter()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

/// Opens the `.env` at `path`, checks on the opened file that it belongs
/// to the current user or root and that neither its group nor others may
/// write it, and returns its content, read from that same handle.
fn read_dotenv(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = || Error::DotEnv {
        path: path.to_owned(),
        line: None,
    };
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that a FIFO swapped in for the file cannot hang us;
    // it is then refused as no regular file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|_| unreadable())?;
    let meta = file.metadata().map_err(|_| unreadable())?;
    let unsafe_because = |reason: String| Error::DotEnvUnsafe {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(unsafe_because("it is not a regular file".into()));
    }
    let me = effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_because(format!(
            "it belongs to another user (uid {}), not to you (uid {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "its group or other users may write it (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        )));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content).map_err(|_| unreadable())?;
    Ok(content)
}

/// The effective user id of this process.
fn effective_uid() -> u32 {
    #[expect(
        unsafe_code,
        reason = "geteuid(2) through libc: no arguments, always succeeds"
    )]
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe {
        libc::geteuid()
    }
}

/// Parses every line of `content`, the `.env` file at `path`, without
/// applying any.
fn check_dotenv(path: &Path, content: &[u8]) -> Result<()> {
    let unreadable = |line| Error::DotEnv {
        path: path.to_owned(),
        line,
    };
    let items = dotenvy::from_read_iter(content);
    for item in items {
        match item {
            Ok(_) => {}
            Err(dotenvy::Error::LineParse(text, _)) => {
                let line = find_line(content, text.trim_end_matches(['\n', '\r']));
                return Err(unreadable(line));
            }
            Err(_) => return Err(unreadable(None)),
        }
    }
    Ok(())
}

/// The 1-based number of the line where `text` starts in `content`.
fn find_line(content: &[u8], text: &str) -> Option<usize> {
    let text = text.as_bytes();
    if text.is_empty() {
        return Some(content.split(|b| *b == b'\n').count());
    }
    let at = content.windows(text.len()).position(|w| w == text)?;
    Some(content[..at].iter().filter(|b| **b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_is_looked_for_up_to_the_project_root_only() {
        let base = std::env::temp_dir().join(format!(
            "cruddur-find-dotenv-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let deep = base.join("project/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(base.join(".env"), "A=1\n").unwrap();
        assert_eq!(
            find_dotenv(&deep),
            None,
            "no .git: the current directory only"
        );
        std::fs::write(deep.join(".env"), "A=1\n").unwrap();
        assert_eq!(find_dotenv(&deep), Some(deep.join(".env")));
        std::fs::remove_file(deep.join(".env")).unwrap();
        std::fs::create_dir(base.join("project/.git")).unwrap();
        assert_eq!(find_dotenv(&deep), None, "not above the project root");
        std::fs::write(base.join("project/.env"), "A=1\n").unwrap();
        assert_eq!(find_dotenv(&deep), Some(base.join("project/.env")));
        // A directory named .env is no file.
        std::fs::create_dir(base.join("project/a/.env")).unwrap();
        assert_eq!(find_dotenv(&deep), Some(base.join("project/.env")));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_env_fifo_is_refused_without_waiting_for_a_writer() {
        let base = std::env::temp_dir().join(format!(
            "cruddur-dotenv-fifo-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let fifo = base.join(".env");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_dotenv(&fifo).unwrap_err();
        std::fs::remove_dir_all(&base).unwrap();
        assert!(
            matches!(err, Error::DotEnvUnsafe { .. }) && err.to_string().contains("regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_env_file_names_the_line_but_not_its_value() {
        let dir = std::env::temp_dir().join(format!("cruddur-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(
            &path,
            "# comment\nA=1\n\nDATABASE_URL=postgres://u:hunter2@h/d x\nB=2\n",
        )
        .unwrap();
        let content = read_dotenv(&path).unwrap();
        let err = check_dotenv(&path, &content).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
