//! Whose a path under `CLAUDE_CONFIG_DIR` is: the workspace's (shared by
//! every session) or one session's own.
//!
//! Claude Code writes, per session `<id>`: the transcript and what belongs
//! to it under `projects/<project>/` (the session's project directory: ccws
//! gives every session its own working directory, so the whole directory is
//! the session's), and `todos/<id>-agent-*.json`, `file-history/<id>/`,
//! `debug/<id>.txt`, `session-env/<id>/`. Everything else is shared:
//! `.claude.json`, `history.jsonl`, `settings.json`, `CLAUDE.md`,
//! `plugins/`, ..., and the workspace's auto-memory under
//! `projects/ws_<workspace>/`.

/// The owner of one relative, `/`-separated path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathOwner<'a> {
    /// The workspace: it goes into the shared home.
    Shared,
    /// The session with this id (`todos/`, `file-history/`, `debug/`, `session-env/`).
    Session(&'a str),
    /// The session whose project directory is `projects/<this name>`.
    Project(&'a str),
}

/// The directories under which session-owned entries live; they are
/// themselves shared (kept as directories in the home).
pub(crate) const SESSION_ROOTS: &[&str] =
    &["todos", "file-history", "debug", "session-env", "projects"];

/// Whose `rel` is.
pub(crate) fn owner(rel: &str) -> PathOwner<'_> {
    let mut parts = rel.splitn(3, '/');
    let (Some(top), Some(name)) = (parts.next(), parts.next()) else {
        return PathOwner::Shared;
    };
    let deeper = parts.next().is_some();
    match top {
        "projects" if name.starts_with("ws_") => PathOwner::Shared,
        "projects" => PathOwner::Project(name),
        "file-history" | "session-env" => PathOwner::Session(name),
        "todos" if !deeper => match name.split_once("-agent-") {
            Some((id, _)) if !id.is_empty() => PathOwner::Session(id),
            _ => PathOwner::Shared,
        },
        "debug" if !deeper => match name.strip_suffix(".txt") {
            Some(id) if !id.is_empty() => PathOwner::Session(id),
            _ => PathOwner::Shared,
        },
        _ => PathOwner::Shared,
    }
}

/// Whether `rel` belongs to the session `id` whose project directory is
/// `projects/<project>` (or was, under another temp base: a ccws project
/// name that reads back as `id`); its transcript and memory directory there
/// are not counted (they travel as the transcript object and in the home).
pub(crate) fn is_sessions(rel: &str, id: &str, project: &str) -> bool {
    match owner(rel) {
        PathOwner::Session(s) => s == id,
        PathOwner::Project(p) if p == project || project_session(p) == Some(id) => {
            let inner = rel
                .strip_prefix("projects/")
                .and_then(|r| r.strip_prefix(p))
                .unwrap_or("");
            let inner = inner.strip_prefix('/').unwrap_or(inner);
            let first = inner.split('/').next().unwrap_or("");
            !(first == "memory" || inner == format!("{id}.jsonl"))
        }
        _ => false,
    }
}

/// Whether `rel` is a directory on the way to session-owned entries (kept
/// in a session's own archive so that its entries can be reached).
pub(crate) fn is_way_to(rel: &str) -> bool {
    SESSION_ROOTS.contains(&rel)
}

/// Whether `rel` goes into the shared home, for the session whose project
/// directory is `projects/<own>` after the sessions `moved` had their files
/// moved to their own objects: shared paths do; a session's own paths do
/// not; another session's stay until they are moved (a home never loses
/// them on the way).
pub(crate) fn in_home(rel: &str, own_id: &str, own: &str, moved: &[String]) -> bool {
    let gone = |id: &str| id == own_id || moved.iter().any(|m| m == id);
    match owner(rel) {
        PathOwner::Shared => true,
        PathOwner::Session(id) => !gone(id),
        PathOwner::Project(p) if p == own => false,
        PathOwner::Project(p) => !project_session(p).is_some_and(gone),
    }
}

/// The session id in a ccws project directory name: Claude Code names it
/// after the working directory `<base>/cc-broker/sess_<id>/project` with
/// every character outside `[A-Za-z0-9]` replaced by `-`, so the id can be
/// read back when it holds only `[A-Za-z0-9-]` (UUIDs do). `None` for other
/// names (a cut, hashed long name, or not a ccws session's).
pub(crate) fn project_session(name: &str) -> Option<&str> {
    let rest = name.strip_suffix("-project")?;
    let at = rest.rfind("-cc-broker-sess-")?;
    let id = &rest[at + "-cc-broker-sess-".len()..];
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn what_claude_code_writes_is_classified() {
        let p = "-tmp-cc-broker-sess-0f8fad5b-d9cb-469f-a165-70867728950e-project";
        let cases = [
            (".claude.json", PathOwner::Shared),
            ("history.jsonl", PathOwner::Shared),
            ("settings.json", PathOwner::Shared),
            ("plugins/x/y.json", PathOwner::Shared),
            ("projects", PathOwner::Shared),
            ("projects/ws_acme/memory/MEMORY.md", PathOwner::Shared),
            (&format!("projects/{p}/{U}.jsonl"), PathOwner::Project(p)),
            (
                &format!("projects/{p}/{U}/subagents/a.jsonl"),
                PathOwner::Project(p),
            ),
            ("todos", PathOwner::Shared),
            (&format!("todos/{U}-agent-{U}.json"), PathOwner::Session(U)),
            ("todos/readme.json", PathOwner::Shared),
            (&format!("file-history/{U}"), PathOwner::Session(U)),
            (&format!("file-history/{U}/abc@v1"), PathOwner::Session(U)),
            (&format!("debug/{U}.txt"), PathOwner::Session(U)),
            ("debug/latest", PathOwner::Shared),
            (&format!("session-env/{U}/hook-1.sh"), PathOwner::Session(U)),
            ("shell-snapshots/snapshot-1.sh", PathOwner::Shared),
        ];
        for (rel, want) in cases {
            assert_eq!(owner(rel), want, "{rel}");
        }
    }

    #[test]
    fn a_sessions_own_paths_leave_out_its_transcript_and_memory() {
        let p = "-t-cc-broker-sess-s1-project";
        assert!(is_sessions(&format!("projects/{p}"), "s1", p));
        assert!(is_sessions(
            &format!("projects/{p}/s1/tool-results/x"),
            "s1",
            p
        ));
        assert!(!is_sessions(&format!("projects/{p}/s1.jsonl"), "s1", p));
        assert!(!is_sessions(&format!("projects/{p}/memory"), "s1", p));
        assert!(!is_sessions(
            &format!("projects/{p}/memory/MEMORY.md"),
            "s1",
            p
        ));
        assert!(is_sessions("todos/s1-agent-s1.json", "s1", p));
        assert!(!is_sessions("todos/s2-agent-s2.json", "s1", p));
        assert!(!is_sessions("projects/-other-project/x", "s1", p));
        assert!(is_way_to("todos") && is_way_to("projects"));
        assert!(!is_way_to("projects/-other"));
        // Its project directory under an earlier temp base is still its own.
        assert!(is_sessions(
            "projects/-old-cc-broker-sess-s1-project/s1/x",
            "s1",
            p
        ));
        assert!(!is_sessions(
            "projects/-old-cc-broker-sess-s1-project/s1.jsonl",
            "s1",
            p
        ));
    }

    #[test]
    fn the_home_holds_shared_paths_and_sessions_not_yet_moved() {
        let own = "-t-cc-broker-sess-s1-project";
        let other = format!("-t-cc-broker-sess-{U}-project");
        let moved = vec![U.to_string()];
        assert!(in_home("settings.json", "s1", own, &[]));
        assert!(!in_home(&format!("projects/{own}/x"), "s1", own, &[]));
        assert!(!in_home("todos/s1-agent-s1.json", "s1", own, &[]));
        assert!(in_home(&format!("todos/{U}-agent-a.json"), "s1", own, &[]));
        assert!(!in_home(
            &format!("todos/{U}-agent-a.json"),
            "s1",
            own,
            &moved
        ));
        assert!(in_home(&format!("projects/{other}/x"), "s1", own, &[]));
        assert!(!in_home(&format!("projects/{other}/x"), "s1", own, &moved));
        assert!(
            in_home("projects/-home-me-app/x", "s1", own, &moved),
            "not a ccws session's"
        );
    }

    #[test]
    fn the_session_is_read_back_from_a_project_name() {
        assert_eq!(
            project_session(&format!("-tmp-cc-broker-sess-{U}-project")),
            Some(U)
        );
        assert_eq!(project_session("-home-me-src-app"), None);
        assert_eq!(project_session("-tmp-cc-broker-sess--project"), None);
    }
}
