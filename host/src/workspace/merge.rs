//! Applying one session's changes onto a newer home, file by file.
//!
//! `base` is the manifest taken at Setup, `mine` the tree at Teardown and
//! `theirs` the newer home another session uploaded meanwhile. Whatever this
//! session added, changed or deleted since `base` is replayed onto `theirs`;
//! everything else in `theirs` is kept. When both sides changed the same path
//! this (later) teardown wins for that path, and the path is reported; unless
//! `theirs` may be the newer side (a queued home, or an upload resumed after
//! a crash that may have landed already): then theirs wins, also reported.
//!
//! `mine_root` is always ccws's own copy (the staged archive unpacked in a
//! private scratch directory), never the agent's live tree.

use std::fs;
use std::io;
use std::path::Path;

use super::jsonmerge::{self, SharedBase};
use super::manifest::{self, Item, Manifest};

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeReport {
    /// Files this session added or changed, written onto theirs.
    pub written: Vec<String>,
    /// Paths this session deleted, removed from theirs.
    pub deleted: Vec<String>,
    /// Paths both sides changed differently; this session's version won
    /// (or theirs, where theirs may be newer). For a file merged by meaning,
    /// the JSON paths inside it (`.claude.json:/theme`).
    pub conflicts: Vec<String>,
    /// Files both sides changed that were merged by meaning (JSON key by
    /// key, appended lines), not replaced whole.
    #[serde(default)]
    pub merged: Vec<String>,
}

/// Which side keeps a path both sides changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// This session (the later teardown).
    Mine,
    /// The store's home (it may be newer than this session's changes).
    Theirs,
}

/// Replay `mine`'s changes since `base` onto the directory `theirs`;
/// `shared` holds the base contents of the files that merge by meaning.
pub(crate) fn apply(
    base: &Manifest,
    shared: &SharedBase,
    mine_root: &Path,
    mine: &Manifest,
    theirs_root: &Path,
    winner: Winner,
) -> io::Result<MergeReport> {
    let mut report = MergeReport::default();
    // Added or changed by this session (directories first, by sorted order).
    for (rel, item) in mine {
        if base.get(rel) == Some(item) {
            continue;
        }
        let target = theirs_root.join(rel);
        let theirs = current(&target)?;
        let theirs_changed = theirs.as_ref() != base.get(rel) && theirs.as_ref() != Some(item);
        let in_conflict = theirs_changed && theirs.is_some();
        if in_conflict
            && matches!(item, Item::File { .. })
            && matches!(theirs, Some(Item::File { .. }))
        {
            if let Some(shape) = jsonmerge::shape(rel) {
                if by_meaning(shape, rel, shared, mine_root, &target, winner, &mut report)? {
                    continue;
                }
            }
        }
        if in_conflict && winner == Winner::Theirs {
            report.conflicts.push(rel.clone());
            continue;
        }
        match item {
            Item::Dir => {
                if matches!(theirs, Some(Item::File { .. })) {
                    fs::remove_file(&target)?;
                    report.conflicts.push(rel.clone());
                }
                fs::create_dir_all(&target)?;
            }
            Item::File { .. } => {
                if in_conflict {
                    report.conflicts.push(rel.clone());
                }
                if matches!(theirs, Some(Item::Dir)) {
                    fs::remove_dir_all(&target)?;
                }
                if let Some(parent) = target.parent() {
                    ensure_dir(theirs_root, parent)?;
                }
                // fs::copy carries the permission bits (the executable bit).
                fs::copy(mine_root.join(rel), &target)?;
                report.written.push(rel.clone());
            }
        }
    }
    // Deleted by this session: deepest first so directories empty out.
    for (rel, item) in base.iter().rev() {
        if mine.contains_key(rel) {
            continue;
        }
        let target = theirs_root.join(rel);
        let theirs = current(&target)?;
        match (item, theirs) {
            (_, None) => {}
            (Item::File { .. }, Some(t @ Item::File { .. })) => {
                if &t != item {
                    report.conflicts.push(rel.clone());
                    if winner == Winner::Theirs {
                        continue;
                    }
                }
                fs::remove_file(&target)?;
                report.deleted.push(rel.clone());
            }
            (Item::Dir, Some(Item::Dir)) => {
                // Only if nothing of theirs remains in it.
                if fs::remove_dir(&target).is_ok() {
                    report.deleted.push(rel.clone());
                }
            }
            // The kind changed on their side: keep theirs.
            _ => report.conflicts.push(rel.clone()),
        }
    }
    Ok(report)
}

/// Merge `rel` by meaning into `target` (theirs); `Ok(false)`: it could not
/// be (too large, or a side does not parse): the file-level rule applies.
fn by_meaning(
    shape: jsonmerge::Shape,
    rel: &str,
    shared: &SharedBase,
    mine_root: &Path,
    target: &Path,
    winner: Winner,
    report: &mut MergeReport,
) -> io::Result<bool> {
    let read = |p: &Path| -> io::Result<Option<Vec<u8>>> {
        if fs::metadata(p)?.len() > jsonmerge::MAX_BYTES {
            return Ok(None);
        }
        fs::read(p).map(Some)
    };
    let (Some(mine), Some(theirs)) = (read(&mine_root.join(rel))?, read(target)?) else {
        return Ok(false);
    };
    let base = shared.get(rel).map(String::as_bytes);
    match jsonmerge::merge(shape, base, &mine, &theirs, winner == Winner::Mine) {
        Ok(m) => {
            fs::write(target, &m.bytes)?;
            report
                .conflicts
                .extend(m.conflicts.into_iter().map(|c| format!("{rel}:{c}")));
            report.merged.push(rel.to_owned());
            report.written.push(rel.to_owned());
            Ok(true)
        }
        Err(why) => {
            tracing::warn!(path = rel, "merged as a whole file: {why}");
            Ok(false)
        }
    }
}

/// The manifest item at `path` now, not following symlinks.
fn current(path: &Path) -> io::Result<Option<Item>> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(Some(Item::Dir)),
        Ok(md) if md.is_file() => manifest::file_item(path).map(Some),
        Ok(_) => {
            // A symlink or special file (never produced by unpack): replace it.
            fs::remove_file(path)?;
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Create `dir` and its parents under `root`, replacing files in the way.
fn ensure_dir(root: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(io::Error::other)?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&at)?;
                fs::create_dir(&at)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::manifest::scan;

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    #[test]
    fn replays_adds_changes_and_deletes_and_reports_conflicts() {
        let base_dir = tempfile::tempdir().unwrap();
        write(base_dir.path(), "memory/a.md", "a0");
        write(base_dir.path(), "memory/b.md", "b0");
        write(base_dir.path(), "memory/c.md", "c0");
        write(base_dir.path(), "memory/gone.md", "g0");
        let base = scan(base_dir.path(), None).unwrap();

        // Mine: changed a, added d, deleted gone, changed c.
        let mine_dir = tempfile::tempdir().unwrap();
        write(mine_dir.path(), "memory/a.md", "a-mine");
        write(mine_dir.path(), "memory/b.md", "b0");
        write(mine_dir.path(), "memory/c.md", "c-mine");
        write(mine_dir.path(), "memory/new/d.md", "d-mine");
        let mine = scan(mine_dir.path(), None).unwrap();

        // Theirs: changed b, changed c (conflict), added e.
        let theirs = tempfile::tempdir().unwrap();
        write(theirs.path(), "memory/a.md", "a0");
        write(theirs.path(), "memory/b.md", "b-theirs");
        write(theirs.path(), "memory/c.md", "c-theirs");
        write(theirs.path(), "memory/gone.md", "g0");
        write(theirs.path(), "memory/e.md", "e-theirs");

        let r = apply(
            &base,
            &SharedBase::new(),
            mine_dir.path(),
            &mine,
            theirs.path(),
            Winner::Mine,
        )
        .unwrap();
        let read = |rel: &str| fs::read_to_string(theirs.path().join(rel)).ok();
        assert_eq!(read("memory/a.md").as_deref(), Some("a-mine"));
        assert_eq!(read("memory/b.md").as_deref(), Some("b-theirs"));
        assert_eq!(read("memory/c.md").as_deref(), Some("c-mine"));
        assert_eq!(read("memory/new/d.md").as_deref(), Some("d-mine"));
        assert_eq!(read("memory/e.md").as_deref(), Some("e-theirs"));
        assert_eq!(read("memory/gone.md"), None);
        assert_eq!(r.conflicts, vec!["memory/c.md".to_string()]);
        assert_eq!(r.deleted, vec!["memory/gone.md".to_string()]);
    }

    #[test]
    fn when_theirs_may_be_newer_their_side_of_a_conflict_stays() {
        let base_dir = tempfile::tempdir().unwrap();
        write(base_dir.path(), "m/a.md", "a0");
        write(base_dir.path(), "m/b.md", "b0");
        write(base_dir.path(), "m/c.md", "c0");
        let base = scan(base_dir.path(), None).unwrap();
        // Mine: changed a and b, deleted c.
        let mine_dir = tempfile::tempdir().unwrap();
        write(mine_dir.path(), "m/a.md", "a-mine");
        write(mine_dir.path(), "m/b.md", "b-mine");
        let mine = scan(mine_dir.path(), None).unwrap();
        // Theirs: changed a and c after mine (a replayed turn must not undo them).
        let theirs = tempfile::tempdir().unwrap();
        write(theirs.path(), "m/a.md", "a-newer");
        write(theirs.path(), "m/b.md", "b0");
        write(theirs.path(), "m/c.md", "c-newer");
        let r = apply(
            &base,
            &SharedBase::new(),
            mine_dir.path(),
            &mine,
            theirs.path(),
            Winner::Theirs,
        )
        .unwrap();
        let read = |rel: &str| fs::read_to_string(theirs.path().join(rel)).ok();
        assert_eq!(read("m/a.md").as_deref(), Some("a-newer"));
        assert_eq!(
            read("m/b.md").as_deref(),
            Some("b-mine"),
            "no conflict: mine applies"
        );
        assert_eq!(read("m/c.md").as_deref(), Some("c-newer"));
        assert_eq!(
            r.conflicts,
            vec!["m/a.md".to_string(), "m/c.md".to_string()]
        );
        assert!(r.deleted.is_empty());
    }
}
