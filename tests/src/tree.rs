//! Building directory trees and reading them back for comparison.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// What a tree holds: relative path → `None` for a directory, file bytes
/// and executable bit for a file.
pub type Snapshot = BTreeMap<String, Option<(Vec<u8>, bool)>>;

/// Write a file (creating parents).
pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Mark a file executable (0755).
pub fn make_executable(root: &Path, rel: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Read a tree back: directories and regular files (symlinks are listed as
/// files whose content is `symlink:` + target, to make them visible).
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    use std::os::unix::fs::PermissionsExt;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap();
            out.insert(
                rel,
                Some((format!("symlink:{}", t.display()).into_bytes(), false)),
            );
        } else if md.is_dir() {
            out.insert(rel, None);
            walk(root, &p, out);
        } else {
            let exec = md.permissions().mode() & 0o111 != 0;
            out.insert(rel, Some((fs::read(&p).unwrap(), exec)));
        }
    }
}

/// The names in directory `dir` (not recursive), sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
