//! Opening files in the session tree, which the agent writes: each file is
//! opened once, without following a symlink anywhere on its path, and only a
//! regular file is accepted. ccws then reads that one handle, so swapping
//! the path for a symlink (to a file of the broker's, a device or a FIFO)
//! after the check changes nothing.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

/// What stands at a path instead of a regular file reached through real
/// directories.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A symlink on the path or at its end.
    #[error("{0} is a symlink")]
    Symlink(String),
    /// A directory, FIFO, socket or device where a file should be.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// The path is not under the directory it must be read from.
    #[error("{0} is not under the session tree")]
    Outside(String),
    /// The file could not be opened or examined.
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Open `path`, under the directory `root`, for reading: `Ok(None)` when
/// nothing is there (or a file stands where a directory should be). Every
/// component below `root` is opened relative to the one before with
/// `O_NOFOLLOW`; the last with `O_NONBLOCK` too, so a FIFO cannot hang the
/// open; and the file is checked on its handle.
pub fn open_plain(root: &Path, path: &Path) -> Result<Option<File>, Refusal> {
    let shown = |at: &Path| at.display().to_string();
    let rel = path
        .strip_prefix(root)
        .map_err(|_| Refusal::Outside(shown(path)))?;
    let parts: Vec<_> = rel.components().collect();
    if parts.is_empty() || !parts.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Refusal::Outside(shown(path)));
    }
    let io_err = |at: &Path, source| Refusal::Io {
        path: shown(at),
        source,
    };
    let mut dir: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(|e| io_err(root, e))?
        .into();
    let mut at = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let kind = if last {
            libc::O_NONBLOCK
        } else {
            libc::O_DIRECTORY
        };
        let name = CString::new(part.as_os_str().as_bytes())
            .map_err(|e| io_err(&at, io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: `dir` is an open directory descriptor and `name` a
        // NUL-terminated string, both alive for the call.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | kind,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                Some(libc::ELOOP) => Err(Refusal::Symlink(shown(&at))),
                // A non-directory where a directory should be: a symlink is
                // refused, anything else means the file is not there.
                Some(libc::ENOTDIR) if is_symlink(&dir, &name) => Err(Refusal::Symlink(shown(&at))),
                Some(libc::ENOTDIR) => Ok(None),
                _ => Err(io_err(&at, e)),
            };
        }
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    let file = File::from(dir);
    let kind = file.metadata().map_err(|e| io_err(&at, e))?.file_type();
    if !kind.is_file() {
        return Err(Refusal::NotAFile(shown(&at)));
    }
    Ok(Some(file))
}

/// Whether `name` in `dir` is a symlink (only to word a refusal).
fn is_symlink(dir: &OwnedFd, name: &CString) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, and a live `stat`.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Read all of the regular file at `path`, up to `limit` bytes, without
/// following a symlink at its end or blocking on a FIFO: `Ok(None)` when it
/// does not exist. For the small JSON files ccws keeps in the session tree.
pub fn read_small(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is a symlink", path.display()),
            ))
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

/// Open the directory `root/rel` (`rel` relative, `/`-separated) one
/// component at a time, never following a symlink; with `create`, missing
/// directories are made (mode 0700). `Ok(None)`: not there (or not a
/// directory), and not created.
pub fn open_dir(root: &Path, rel: &str, create: bool) -> io::Result<Option<OwnedFd>> {
    let mut dir: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(root)?
        .into();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel}: not a plain relative path"),
            ));
        }
        let name =
            CString::new(part).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let open = |dir: &OwnedFd| {
            // SAFETY: a live directory descriptor and a NUL-terminated name.
            unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            }
        };
        let mut fd = open(&dir);
        if fd < 0 && create && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            // SAFETY: as above; mkdirat creates a directory, nothing more.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
            }
            fd = open(&dir);
        }
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(Some(dir))
}

/// Move the entry `from` to `to` (both relative to `root`, `/`-separated)
/// with one `renameat`, both parents reached without following a symlink
/// (the destination's parents are created); a symlink at `from` itself is
/// moved as the link it is. `Ok(false)`: nothing at `from`, or something
/// already at `to` (then nothing is moved).
pub fn move_within(root: &Path, from: &str, to: &str) -> io::Result<bool> {
    let split = |rel: &str| -> io::Result<(String, CString)> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let name =
            CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok((parent.to_owned(), name))
    };
    let (from_parent, from_name) = split(from)?;
    let (to_parent, to_name) = split(to)?;
    let Some(src) = open_dir(root, &from_parent, false)? else {
        return Ok(false);
    };
    let Some(dst) = open_dir(root, &to_parent, true)? else {
        return Ok(false);
    };
    // SAFETY: two live directory descriptors and NUL-terminated names;
    // RENAME_NOREPLACE never overwrites what is at the destination.
    let rc = unsafe {
        libc::renameat2(
            src.as_raw_fd(),
            from_name.as_ptr(),
            dst.as_raw_fd(),
            to_name.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EEXIST) => Ok(false),
        _ => Err(e),
    }
}

/// Replace the file `rel` (relative to `root`, `/`-separated) with
/// `bytes`: written to a new file beside it (mode 0600), then renamed over
/// it, its parents reached (and made) without following a symlink; a
/// symlink at `rel` itself is replaced, never followed.
pub fn replace_small(root: &Path, rel: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let Some(dir) = open_dir(root, parent, true)? else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{parent} in {} is not a directory", root.display()),
        ));
    };
    let cstr =
        |s: String| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let tmp = cstr(format!(".{name}.ccws-{}", std::process::id()))?;
    let name = cstr(name.to_owned())?;
    // SAFETY: a live directory descriptor and a NUL-terminated name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    // SAFETY: as above; O_EXCL | O_NOFOLLOW create a new file or fail.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned here alone.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let written = file.write_all(bytes);
    drop(file);
    // SAFETY: a live directory descriptor and NUL-terminated names.
    let rc = written.and_then(|()| {
        match unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    });
    if rc.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn replace_small_replaces_a_symlink_and_never_writes_through_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), "theirs").unwrap();
        // A symlink at the file itself is replaced, not followed.
        symlink(outside.join("victim"), root.join("f.json")).unwrap();
        replace_small(&root, "f.json", b"ours").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "theirs"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("f.json")).unwrap(),
            "ours"
        );
        assert!(!std::fs::symlink_metadata(root.join("f.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A symlinked parent is refused.
        symlink(&outside, root.join("link")).unwrap();
        assert!(replace_small(&root, "link/victim", b"ours").is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "theirs"
        );
        // Missing parents are made.
        replace_small(&root, "a/b/c.json", b"x").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("a/b/c.json")).unwrap(),
            "x"
        );
    }

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("projects/p/s.jsonl");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"transcript").unwrap();
        (root, file)
    }

    fn read(mut f: File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn moves_stay_inside_the_root_whatever_the_agent_planted() {
        let (root, _) = tree();
        let r = root.path();
        std::fs::create_dir_all(r.join("projects/p/memory")).unwrap();
        std::fs::write(r.join("projects/p/memory/m.md"), b"m").unwrap();
        assert!(move_within(r, "projects/p/memory", "projects/ws_w/memory").unwrap());
        assert_eq!(
            std::fs::read(r.join("projects/ws_w/memory/m.md")).unwrap(),
            b"m"
        );
        assert!(
            !move_within(r, "projects/p/memory", "projects/ws_w/memory").unwrap(),
            "nothing left to move"
        );
        // A symlinked destination parent is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.join("projects/q/memory")).unwrap();
        symlink(outside.path(), r.join("projects/ws_x")).unwrap();
        assert!(!move_within(r, "projects/q/memory", "projects/ws_x/memory").unwrap());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(r.join("projects/q/memory").is_dir());
        // Nothing is overwritten.
        std::fs::create_dir_all(r.join("a/memory")).unwrap();
        std::fs::create_dir_all(r.join("b/memory")).unwrap();
        assert!(!move_within(r, "a/memory", "b/memory").unwrap());
    }

    #[test]
    fn a_plain_file_opens_and_the_handle_outlives_a_swap() {
        let (root, file) = tree();
        let handle = open_plain(root.path(), &file).unwrap().unwrap();
        // The agent swaps the path for a symlink after the open: the handle
        // still reads the file that was checked.
        let secret = root.path().join("../secret-for-swap-test");
        std::fs::remove_file(&file).unwrap();
        symlink(&secret, &file).unwrap();
        assert_eq!(read(handle), "transcript");
    }

    #[test]
    fn missing_files_and_files_in_the_way_are_nothing_there() {
        let (root, file) = tree();
        let missing = root.path().join("projects/p/other.jsonl");
        assert!(open_plain(root.path(), &missing).unwrap().is_none());
        let under_a_file = file.join("x");
        assert!(open_plain(root.path(), &under_a_file).unwrap().is_none());
    }

    #[test]
    fn symlinks_anywhere_on_the_path_are_refused() {
        let (root, file) = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("s.jsonl"), b"secret").unwrap();
        // At the end.
        std::fs::remove_file(&file).unwrap();
        symlink(outside.path().join("s.jsonl"), &file).unwrap();
        let got = open_plain(root.path(), &file).unwrap_err();
        assert!(
            matches!(got, Refusal::Symlink(ref p) if p.ends_with("p/s.jsonl")),
            "{got}"
        );
        // A parent directory.
        let p = root.path().join("projects/p");
        std::fs::remove_dir_all(&p).unwrap();
        symlink(outside.path(), &p).unwrap();
        let got = open_plain(root.path(), &file).unwrap_err();
        assert!(
            matches!(got, Refusal::Symlink(ref p) if p.ends_with("projects/p")),
            "{got}"
        );
        // The root itself.
        let link = outside.path().join("root-link");
        symlink(root.path(), &link).unwrap();
        let got = open_plain(&link, &link.join("projects/p/s.jsonl")).unwrap_err();
        assert!(matches!(got, Refusal::Io { .. }), "{got}");
    }

    #[test]
    fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let (root, file) = tree();
        std::fs::remove_file(&file).unwrap();
        let name = CString::new(file.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path alive for the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let got = open_plain(root.path(), &file).unwrap_err();
        assert!(matches!(got, Refusal::NotAFile(_)), "{got}");
        let got = read_small(&file, 100).unwrap_err();
        assert!(got.to_string().contains("not a regular file"), "{got}");
        let dir = root.path().join("projects");
        let got = open_plain(root.path(), &dir).unwrap_err();
        assert!(matches!(got, Refusal::NotAFile(_)), "{got}");
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let (root, _) = tree();
        for path in [
            Path::new("/etc/passwd"),
            &root.path().join("../x"),
            root.path(),
        ] {
            let got = open_plain(root.path(), path).unwrap_err();
            assert!(matches!(got, Refusal::Outside(_)), "{path:?}: {got}");
        }
    }

    #[test]
    fn read_small_reads_a_file_and_refuses_the_rest() {
        let (root, file) = tree();
        assert_eq!(read_small(&file, 100).unwrap().unwrap(), b"transcript");
        assert!(read_small(&root.path().join("none"), 100)
            .unwrap()
            .is_none());
        let got = read_small(&file, 5).unwrap_err();
        assert!(got.to_string().contains("larger than 5 bytes"), "{got}");
        let link = root.path().join("link");
        symlink(&file, &link).unwrap();
        let got = read_small(&link, 100).unwrap_err();
        assert!(got.to_string().contains("is a symlink"), "{got}");
    }
}
