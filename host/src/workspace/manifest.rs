//! A manifest of a tree: every regular file's SHA-256 and executable bit, and
//! every directory. Taken at Setup; compared at Teardown to find this
//! session's own changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    /// A directory.
    Dir,
    /// A regular file: SHA-256 (hex) and whether it is executable.
    File {
        /// SHA-256 of the content, hex.
        sha256: String,
        /// Any executable bit set.
        exec: bool,
    },
}

/// Relative `/`-separated path → item. Symlinks and special files are left
/// out, as the archive leaves them out. A tree may be changing while it is
/// scanned: an entry that vanishes, or turns into something else than a
/// regular file, is left out too.
pub type Manifest = BTreeMap<String, Item>;

/// Scan `root`, leaving out the subtree `exclude` (relative) if given.
pub fn scan(root: &Path, exclude: Option<&str>) -> io::Result<Manifest> {
    scan_where(root, &|rel: &str| exclude != Some(rel))
}

/// Scan `root`, taking only the paths `keep` accepts (a directory it
/// refuses is left out with its subtree). The walk keeps its own stack, so
/// a tree nested thousands of levels deep costs no call stack.
pub fn scan_where(root: &Path, keep: &dyn Fn(&str) -> bool) -> io::Result<Manifest> {
    scan_within(root, keep, u64::MAX)
}

/// [`scan_where`], leaving out files larger than `max_file` bytes (as a
/// pack under that limit does) without reading them.
pub fn scan_within(
    root: &Path,
    keep: &dyn Fn(&str) -> bool,
    max_file: u64,
) -> io::Result<Manifest> {
    let mut out = Manifest::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut dirs: Vec<(std::path::PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if !prefix.is_empty() && vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if !keep(&rel) {
                continue;
            }
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if ft.is_dir() {
                out.insert(rel.clone(), Item::Dir);
                dirs.push((entry.path(), rel));
            } else if ft.is_file() {
                if entry.metadata().is_ok_and(|m| m.len() > max_file) {
                    continue;
                }
                match file_item(&entry.path()) {
                    Ok(item) => {
                        out.insert(rel, item);
                    }
                    Err(e) if vanished(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

/// Whether `e` says the entry changed under the scan (gone, or swapped for
/// a symlink or a non-regular file), or cannot be named by a path.
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            // ENAMETOOLONG: deeper than a path can name; pack leaves it out too.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
        )
        || e.kind() == io::ErrorKind::InvalidData
}

/// The manifest item of one regular file, opened without following a
/// symlink and without blocking on a FIFO; anything but a regular file is
/// an `InvalidData` error.
pub fn file_item(path: &Path) -> io::Result<Item> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let exec = md.permissions().mode() & 0o111 != 0;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Item::File {
        sha256: hex::encode(hasher.finalize()),
        exec,
    })
}
