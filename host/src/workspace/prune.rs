//! A bounded home: the shared directories Claude Code only ever adds to
//! (`shell-snapshots/`, `paste-cache/`) lose what is older than Claude's
//! own `cleanupPeriodDays` (30 by default) and what is beyond a count, when
//! a session publishes its home.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The directories that accumulate, relative to `CLAUDE_CONFIG_DIR`.
pub const ACCUMULATING: &[&str] = &["shell-snapshots", "paste-cache"];

/// How much of the accumulating directories a home keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    /// Entries older than this go (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// At most this many entries stay in each directory, the newest.
    pub max_entries: usize,
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_entries: 1000,
        }
    }
}

/// What to leave out: from `(name, modified)` listings of one directory,
/// the names that are too old, or beyond the newest `max_entries`.
pub(crate) fn plan(
    entries: &[(String, SystemTime)],
    rule: Cleanup,
    now: SystemTime,
) -> Vec<String> {
    let mut by_age: Vec<&(String, SystemTime)> = entries.iter().collect();
    by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_age
        .iter()
        .enumerate()
        .filter(|(i, (_, modified))| {
            let old = rule
                .max_age
                .is_some_and(|age| now.duration_since(*modified).is_ok_and(|d| d > age));
            old || *i >= rule.max_entries
        })
        .map(|(_, (name, _))| name.clone())
        .collect()
}

/// The relative paths under `root` to leave out of the home. Entries are
/// listed without following symlinks; what cannot be listed is kept.
pub(crate) fn pruned(root: &Path, rule: Cleanup) -> BTreeSet<String> {
    let now = SystemTime::now();
    let mut out = BTreeSet::new();
    for dir in ACCUMULATING {
        let path = root.join(dir);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&path) else {
            continue;
        };
        let entries: Vec<(String, SystemTime)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((name, modified))
            })
            .collect();
        out.extend(
            plan(&entries, rule, now)
                .into_iter()
                .map(|n| format!("{dir}/{n}")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_entries_and_those_beyond_the_count_go() {
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let entries: Vec<(String, SystemTime)> = (0..6)
            .map(|i| (format!("snap-{i}"), now - day * (i * 10)))
            .collect();
        // 0, 10, 20 days old stay; 30 is not over 30 days... 30 days and a bit is.
        let rule = Cleanup {
            max_age: Some(day * 30),
            max_entries: 100,
        };
        let mut gone = plan(&entries, rule, now + Duration::from_secs(1));
        gone.sort();
        assert_eq!(gone, ["snap-3", "snap-4", "snap-5"]);
        let rule = Cleanup {
            max_age: None,
            max_entries: 2,
        };
        let mut gone = plan(&entries, rule, now);
        gone.sort();
        assert_eq!(
            gone,
            ["snap-2", "snap-3", "snap-4", "snap-5"],
            "the newest two stay"
        );
    }

    #[test]
    fn only_the_accumulating_directories_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["shell-snapshots", "paste-cache", "plugins"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            for i in 0..3 {
                std::fs::write(dir.path().join(d).join(format!("f{i}")), "x").unwrap();
            }
        }
        let rule = Cleanup {
            max_age: None,
            max_entries: 1,
        };
        let gone = pruned(dir.path(), rule);
        assert_eq!(gone.len(), 4, "{gone:?}");
        assert!(gone.iter().all(|p| !p.starts_with("plugins")));
    }
}
