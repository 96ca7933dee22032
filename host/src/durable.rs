//! The files ccws's own state lives in: a finished temporary file put under
//! its final name durably, lock files, and private directories.

use std::fs::File;
use std::io;
use std::path::Path;

use tempfile::NamedTempFile;

/// Flushes `tmp` to disk, then renames it over `dest`: the bytes reach the disk before the
/// name does, so a crash cannot leave a complete-looking `dest` with missing data; then syncs
/// `dest`'s directory (best effort), so that the rename itself is on disk. On failure `tmp`
/// is removed and `dest` is left as it was.
pub fn persist_synced(tmp: NamedTempFile, dest: &Path) -> io::Result<File> {
    persist_synced_with(tmp, dest, File::sync_all)
}

/// [`persist_synced`] with the sync step passed in, so tests can watch it or make it fail.
fn persist_synced_with(
    tmp: NamedTempFile,
    dest: &Path,
    sync: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<File> {
    // On an error `tmp` is dropped here, which deletes the file.
    sync(tmp.as_file())?;
    let file = tmp.persist(dest).map_err(|e| e.error)?;
    // A bare file name's parent is "": the current directory.
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let _ = File::open(dir).and_then(|d| d.sync_all());
    Ok(file)
}

/// Open (creating if missing) and `flock` the file at `path`, exclusively,
/// blocking until it is free. Returns only once the locked file is still the
/// one `path` names: the holder before us may have unlinked it (while holding
/// the lock, see [`SessionLock`]) as we waited, and a lock on an unlinked
/// inode excludes no one; then it is dropped and the current file locked.
/// A symlink at `path` is refused (`O_NOFOLLOW`): whoever planted it would
/// have ccws create or lock a file of its choosing.
pub fn lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        f.lock()?;
        let held = f.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(f),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        tracing::debug!(path = %path.display(), "lock file replaced while waiting; locking again");
    }
}

/// Create `dir` (and parents) with mode 0700 if missing.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn temp_with(dir: &Path, data: &str) -> NamedTempFile {
        let mut tmp = NamedTempFile::new_in(dir).unwrap();
        tmp.write_all(data.as_bytes()).unwrap();
        tmp
    }

    #[test]
    fn syncs_the_temp_file_before_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, "old").unwrap();
        let tmp = temp_with(dir.path(), "new");
        let tmp_path = tmp.path().to_path_buf();
        let mut synced = false;
        let file = persist_synced_with(tmp, &dest, |f| {
            // Called on the temp file, while `dest` still holds the old bytes.
            assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
            assert!(tmp_path.is_file(), "the temp file is not there yet");
            assert_eq!(f.metadata().unwrap().len(), 3);
            synced = true;
            f.sync_all()
        })
        .unwrap();
        assert!(synced, "the temp file was never synced");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(file.metadata().unwrap().len(), 3);
        assert_eq!(entries(dir.path()), ["dest"]);
    }

    #[test]
    fn a_failed_sync_removes_the_temp_file_and_leaves_dest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, "old").unwrap();
        let err = persist_synced_with(temp_with(dir.path(), "new"), &dest, |_| {
            Err(io::Error::other("injected fsync failure"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "injected fsync failure");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["dest"], "the temp file is left");

        // Without an old `dest`, none appears.
        std::fs::remove_file(&dest).unwrap();
        persist_synced_with(temp_with(dir.path(), "new"), &dest, |_| {
            Err(io::Error::other("injected fsync failure"))
        })
        .unwrap_err();
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join(".lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = lock_file(&link).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert!(!target.exists(), "nothing was created through the link");
    }

    #[test]
    fn the_real_sync_renames_over_dest() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, "old").unwrap();
        persist_synced(temp_with(dir.path(), "new"), &dest).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["dest"]);
    }
}
