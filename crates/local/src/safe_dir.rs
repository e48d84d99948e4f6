//! Files in directories another user can write, touched without following
//! links.
//!
//! As root, the cluster directory and everything below it belong to the
//! server's OS user, who can put a symbolic link or a hard link wherever
//! we are about to write (`port` -> `/etc/shadow`, `socket` -> `/etc`). A
//! path resolved by the kernel at each call follows them, and root would
//! then truncate, chmod or chown the target. So every operation goes
//! through a [`SafeDir`]: a directory opened once with
//! `O_DIRECTORY | O_NOFOLLOW` whose owner was checked, and every file in it
//! is opened relative to that descriptor with `O_NOFOLLOW`, checked on the
//! opened descriptor (owner, file type, link count), and then changed
//! through the descriptor (`ftruncate`, `fchmod`, `fchown`), never by path.
//!
//! A link where a file of ours belongs is refused with an error that names
//! it, rather than replaced: it can only be there because someone put it
//! there, and the operator should know.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// A directory opened without following a link, whose owner is the
/// current user or the server's OS user.
#[derive(Debug)]
pub(crate) struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
    /// The server's OS user (uid, gid) when we are root: it may own what
    /// we open, and what we create is given to it.
    give_to: Option<(u32, u32)>,
}

/// The mode of every file we write: 0600.
const PRIVATE_FILE: u32 = 0o600;
/// The mode of every directory we create: 0700.
const PRIVATE_DIR: u32 = 0o700;

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing to use {}: {why}", path.display()),
    )
}

/// `name` as one plain path component, or an error.
fn plain_name(name: &str) -> io::Result<&str> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a plain file name"),
        )),
    }
}

impl SafeDir {
    /// Opens the existing directory `path`. Its last component must not be
    /// a symbolic link, and it must belong to the current user or to the
    /// server user `give_to`. The directories above it are the caller's
    /// choice (`CRUDDUR_LOCAL_DIR`) and are resolved as given.
    pub(crate) fn open(path: &Path, give_to: Option<(u32, u32)>) -> io::Result<Self> {
        let (parent, name) = split(path)?;
        let parent_fd = open_parent(&parent)?;
        Self::open_in(&parent_fd, name, path.to_path_buf(), give_to)
    }

    /// Creates the directory `path` unless it exists (its parents too,
    /// which are the caller's choice), then opens it as [`open`](Self::open)
    /// does and makes it mode 0700, owned by the server user.
    pub(crate) fn create(path: &Path, give_to: Option<(u32, u32)>) -> io::Result<Self> {
        let (parent, name) = split(path)?;
        std::fs::create_dir_all(&parent)?;
        let parent_fd = open_parent(&parent)?;
        match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(PRIVATE_DIR)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = Self::open_in(&parent_fd, name, path.to_path_buf(), give_to)?;
        dir.make_private(PRIVATE_DIR)?;
        Ok(dir)
    }

    fn open_in(
        parent: &impl AsFd,
        name: &str,
        path: PathBuf,
        give_to: Option<(u32, u32)>,
    ) -> io::Result<Self> {
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => {
                refused(&path, "it is a symbolic link or not a directory")
            }
            other => io::Error::from(other),
        })?;
        let dir = Self { fd, path, give_to };
        dir.check(&dir.fd, &dir.path, FileType::Directory)?;
        Ok(dir)
    }

    /// The subdirectory `name`, which must exist.
    pub(crate) fn dir(&self, name: &str) -> io::Result<SafeDir> {
        let name = plain_name(name)?;
        Self::open_in(&self.fd, name, self.path.join(name), self.give_to)
    }

    /// Creates the subdirectory `name` unless it exists, mode 0700 and
    /// owned by the server user.
    pub(crate) fn create_dir(&self, name: &str) -> io::Result<SafeDir> {
        let name = plain_name(name)?;
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(PRIVATE_DIR)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.dir(name)?;
        dir.make_private(PRIVATE_DIR)?;
        Ok(dir)
    }

    /// Opens the file `name` with `flags` (plus `O_NOFOLLOW`, `O_NONBLOCK`
    /// so that a FIFO cannot block us, and `O_CLOEXEC`), creating it with
    /// mode 0600 when `flags` has `O_CREAT`, and checks the opened file: a
    /// regular file with one link, owned by us or the server user.
    fn open_file(&self, name: &str, flags: OFlags) -> io::Result<File> {
        let name = plain_name(name)?;
        let path = self.path.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(PRIVATE_FILE),
        )
        .map_err(|e| match e {
            Errno::LOOP => refused(&path, "it is a symbolic link"),
            other => io::Error::from(other),
        })?;
        self.check(&fd, &path, FileType::RegularFile)?;
        // Back to blocking I/O, for the lock.
        let status = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, status - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// Owner, type and (for a file) link count of an opened descriptor.
    fn check(&self, fd: &impl AsFd, path: &Path, want: FileType) -> io::Result<()> {
        let stat = rustix::fs::fstat(fd)?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != want {
            return Err(refused(
                path,
                &format!("it is a {kind:?}, where a {want:?} was expected"),
            ));
        }
        let me = rustix::process::geteuid().as_raw();
        let server = self.give_to.map(|(uid, _)| uid);
        if stat.st_uid != me && Some(stat.st_uid) != server {
            return Err(refused(
                path,
                &format!("it belongs to another user (uid {})", stat.st_uid),
            ));
        }
        if kind == FileType::RegularFile && stat.st_nlink > 1 {
            return Err(refused(
                path,
                &format!(
                    "it has {} hard links, so it is also another file",
                    stat.st_nlink
                ),
            ));
        }
        Ok(())
    }

    /// `fchmod` and, as root, `fchown` to the server user.
    fn make_private_fd(&self, fd: &impl AsFd, mode: u32) -> io::Result<()> {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
        if let Some((uid, gid)) = self.give_to {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    fn make_private(&self, mode: u32) -> io::Result<()> {
        self.make_private_fd(&self.fd, mode)
    }

    /// Replaces the contents of the file `name` (created when missing) with
    /// `contents`; mode 0600, owned by the server user.
    pub(crate) fn write(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let mut file = self.open_file(name, OFlags::WRONLY | OFlags::CREATE)?;
        self.make_private_fd(&file, PRIVATE_FILE)?;
        rustix::fs::ftruncate(&file, 0)?;
        file.write_all(contents)
    }

    /// Appends `contents` to the existing file `name`.
    pub(crate) fn append(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let mut file = self.open_file(name, OFlags::WRONLY | OFlags::APPEND)?;
        file.write_all(contents)
    }

    /// The file `name` opened for writing without truncating it (created
    /// when missing, mode 0600, owned by the server user): a lock file.
    pub(crate) fn lock_file(&self, name: &str) -> io::Result<File> {
        let file = self.open_file(name, OFlags::WRONLY | OFlags::CREATE)?;
        self.make_private_fd(&file, PRIVATE_FILE)?;
        Ok(file)
    }

    /// The file `name` opened for reading.
    pub(crate) fn open_read(&self, name: &str) -> io::Result<File> {
        self.open_file(name, OFlags::RDONLY)
    }

    /// The contents of the file `name`, as text.
    pub(crate) fn read_to_string(&self, name: &str) -> io::Result<String> {
        let mut text = String::new();
        self.open_read(name)?.read_to_string(&mut text)?;
        Ok(text)
    }

    /// Removes the file `name` (not a directory); a missing one is fine.
    /// `unlinkat` removes a link itself, never its target.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        let name = plain_name(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` and, when it is a directory, everything in it; a
    /// missing one is fine. Each level is opened relative to the one above
    /// with `O_NOFOLLOW`, so a link inside is removed, never followed.
    pub(crate) fn remove_dir_all(&self, name: &str) -> io::Result<()> {
        let name = std::ffi::CString::new(plain_name(name)?)?;
        match remove_tree(&self.fd, &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Renames `from` to `to`, both in this directory (`renameat` follows
    /// no link: it moves the entry itself).
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (plain_name(from)?, plain_name(to)?);
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }
}

/// Removes `name` in `parent`, with everything in it when it is a
/// directory (see [`SafeDir::remove_dir_all`]).
fn remove_tree(parent: &impl AsFd, name: &CStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        // Linux says EISDIR for a directory; POSIX allows EPERM.
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let child = entry.file_name();
        if child != c"." && child != c".." {
            names.push(child.to_owned());
        }
    }
    for child in names {
        remove_tree(&dir, &child)?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// `path`'s parent and last component, which must be a plain name.
fn split(path: &Path) -> io::Result<(PathBuf, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| path.is_absolute())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not an absolute path to a directory", path.display()),
            )
        })?;
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok((parent, plain_name(name)?))
}

fn open_parent(parent: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    /// A scratch directory, its `SafeDir`, and a victim file outside it.
    fn scratch() -> (tempfile::TempDir, SafeDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir = SafeDir::create(&tmp.path().join("cluster"), None).unwrap();
        (tmp, dir, victim)
    }

    fn unchanged(victim: &Path) {
        let meta = std::fs::metadata(victim).unwrap();
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "precious\n");
        assert_eq!(meta.mode() & 0o7777, 0o644, "{}", victim.display());
    }

    #[test]
    fn files_are_created_private_and_rewritten_in_place() {
        let (_tmp, dir, _) = scratch();
        dir.write("port", b"5432\n").unwrap();
        dir.write("port", b"1\n").unwrap();
        assert_eq!(dir.read_to_string("port").unwrap(), "1\n");
        dir.append("port", b"2\n").unwrap();
        assert_eq!(dir.read_to_string("port").unwrap(), "1\n2\n");
        let meta = std::fs::metadata(dir.path.join("port")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let sub = dir.create_dir("socket").unwrap();
        sub.write("f", b"x").unwrap();
        assert_eq!(dir.dir("socket").unwrap().read_to_string("f").unwrap(), "x");
        dir.rename("socket", "sock").unwrap();
        dir.remove_dir_all("sock").unwrap();
        dir.remove("port").unwrap();
        dir.remove("port").unwrap();
        assert!(std::fs::read_dir(&dir.path).unwrap().next().is_none());
    }

    #[test]
    fn symbolic_links_are_refused_for_every_operation() {
        let (tmp, dir, victim) = scratch();
        std::os::unix::fs::symlink(&victim, dir.path.join("port")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.path.join("socket")).unwrap();
        let dangling = tmp.path().join("made");
        std::os::unix::fs::symlink(&dangling, dir.path.join(".lock")).unwrap();
        let refusals = [
            ("write", dir.write("port", b"1").unwrap_err()),
            ("append", dir.append("port", b"1").unwrap_err()),
            ("read", dir.read_to_string("port").unwrap_err()),
            ("lock", dir.lock_file(".lock").map(drop).unwrap_err()),
            ("open dir", dir.dir("socket").map(drop).unwrap_err()),
            (
                "create dir",
                dir.create_dir("socket").map(drop).unwrap_err(),
            ),
        ];
        for (what, err) in refusals {
            let text = err.to_string();
            assert!(
                text.contains("refusing to use") && text.contains("symbolic link"),
                "{what}: {text}"
            );
        }
        unchanged(&victim);
        assert!(!dangling.exists(), "nothing is created through a link");
        // Removing or renaming acts on the link itself.
        dir.rename("port", "old-port").unwrap();
        dir.remove("old-port").unwrap();
        unchanged(&victim);
        let cluster_link = tmp.path().join("cluster-link");
        std::os::unix::fs::symlink(&dir.path, &cluster_link).unwrap();
        for err in [
            SafeDir::open(&cluster_link, None).unwrap_err(),
            SafeDir::create(&cluster_link, None).unwrap_err(),
        ] {
            assert!(err.to_string().contains("refusing to use"), "{err}");
        }
    }

    #[test]
    fn removing_a_tree_removes_links_in_it_never_their_targets() {
        let (tmp, dir, victim) = scratch();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "kept").unwrap();
        let tree = dir.create_dir("replica-1.building").unwrap();
        let sub = tree.create_dir("data").unwrap();
        sub.write("f", b"x").unwrap();
        std::os::unix::fs::symlink(&outside, sub.path.join("to-dir")).unwrap();
        std::os::unix::fs::symlink(&victim, tree.path.join("to-file")).unwrap();
        std::fs::hard_link(&victim, tree.path.join("hard")).unwrap();
        dir.remove_dir_all("replica-1.building").unwrap();
        assert!(!tree.path.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "kept"
        );
        unchanged(&victim);
        // A link in place of the tree: the link goes, its target stays.
        std::os::unix::fs::symlink(&outside, dir.path.join("data.initdb")).unwrap();
        dir.remove_dir_all("data.initdb").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "kept"
        );
        dir.remove_dir_all("never-there").unwrap();
    }

    #[test]
    fn hard_links_fifos_and_names_with_slashes_are_refused() {
        let (tmp, dir, victim) = scratch();
        std::fs::hard_link(&victim, dir.path.join("auth")).unwrap();
        for err in [
            dir.write("auth", b"x").unwrap_err(),
            dir.read_to_string("auth").unwrap_err(),
        ] {
            assert!(err.to_string().contains("hard links"), "{err}");
        }
        unchanged(&victim);
        let fifo = dir.path.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = dir.read_to_string("fifo").unwrap_err();
        assert!(err.to_string().contains("Fifo"), "{err}");
        for name in ["../victim", "a/b", "..", ".", ""] {
            let err = dir.write(name, b"x").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
        }
        unchanged(&victim);
        drop(tmp);
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return; // only root can make one to test with
        }
        let (tmp, dir, _) = scratch();
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = SafeDir::create(&theirs, None).unwrap_err();
        assert!(err.to_string().contains("another user"), "{err}");
        assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        // The server user's own is fine, and what we write is given to it.
        let server = SafeDir::create(&theirs, Some((65534, 65534))).unwrap();
        server.write("port", b"1").unwrap();
        assert_eq!(std::fs::metadata(theirs.join("port")).unwrap().uid(), 65534);
        drop(dir);
    }
}
