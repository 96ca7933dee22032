//! Path rules for archive entries: what may be written, and where.

use crate::types::SkipReason;

/// Turn an entry's raw name into a clean relative path (`a/b/c`, no `.`
/// components, no trailing slash), or say why it must be skipped. The empty
/// string means the destination root itself (`./`).
pub fn clean_entry_path(raw: &[u8]) -> Result<String, SkipReason> {
    if raw.contains(&0) {
        return Err(SkipReason::NulInName);
    }
    let s = std::str::from_utf8(raw).map_err(|_| SkipReason::NonUtf8Name)?;
    if s.starts_with('/') {
        return Err(SkipReason::AbsolutePath);
    }
    let mut out = String::with_capacity(s.len());
    for comp in s.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(SkipReason::ParentComponent),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Ok(out)
}

/// The proper ancestors of a clean relative path, shortest first
/// (`a/b/c` gives `a`, `a/b`).
pub fn ancestors(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// `path` as a `/`-separated path relative to the directory `root`, if it
/// is below it (compared by name: `.` components aside, no symlinks are
/// resolved).
pub fn relative_to(root: &std::path::Path, path: &std::path::Path) -> Option<String> {
    use std::path::Component;
    let names = |p: &std::path::Path| -> Vec<String> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (root, path) = (names(root), names(path));
    (path.len() > root.len() && path.starts_with(&root)).then(|| path[root.len()..].join("/"))
}

/// Lossy display form of a raw entry name, for reports.
pub fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\0', "\\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_rejects() {
        assert_eq!(clean_entry_path(b"a/./b//c/").unwrap(), "a/b/c");
        assert_eq!(clean_entry_path(b"./").unwrap(), "");
        assert_eq!(clean_entry_path(b"../x"), Err(SkipReason::ParentComponent));
        assert_eq!(
            clean_entry_path(b"a/../../x"),
            Err(SkipReason::ParentComponent)
        );
        assert_eq!(clean_entry_path(b"a/.."), Err(SkipReason::ParentComponent));
        assert_eq!(
            clean_entry_path(b"/etc/passwd"),
            Err(SkipReason::AbsolutePath)
        );
        assert_eq!(clean_entry_path(b"//x"), Err(SkipReason::AbsolutePath));
        assert_eq!(clean_entry_path(b"a\0b"), Err(SkipReason::NulInName));
        assert_eq!(clean_entry_path(b"a\xffb"), Err(SkipReason::NonUtf8Name));
        assert_eq!(clean_entry_path("ünï/☃".as_bytes()).unwrap(), "ünï/☃");
        assert_eq!(clean_entry_path(b"..a/b..").unwrap(), "..a/b..");
    }

    #[test]
    fn relative_paths_below_a_root() {
        use std::path::Path;
        let rel = |r: &str, p: &str| relative_to(Path::new(r), Path::new(p));
        assert_eq!(rel("/src", "/src/x.tar.gz").as_deref(), Some("x.tar.gz"));
        assert_eq!(rel("/src/", "/src/./a/x").as_deref(), Some("a/x"));
        assert_eq!(rel("src", "src/a").as_deref(), Some("a"));
        assert_eq!(rel("/src", "/src"), None);
        assert_eq!(rel("/src", "/srcx/a"), None);
        assert_eq!(rel("/src", "/out/a"), None);
    }

    #[test]
    fn ancestors_shortest_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
