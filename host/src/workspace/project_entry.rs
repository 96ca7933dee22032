//! A session's entry in the shared `.claude.json`. Claude Code adds
//! `projects[<working directory>]` there at every start (trust, allowed
//! tools, MCP choices, the last session's cost); each ccws session has its
//! own working directory, so left alone the shared file would grow by one
//! entry per session, for ever. Teardown moves the session's entry into the
//! session's own files ([`FILE`] in its project directory), which travel
//! with the session; Setup puts it back.
//!
//! Both read and write the tree without following a symlink
//! ([`untrusted`]); a `.claude.json` that is not a JSON object is left as
//! it is (the shared-file merge keeps its own rules for it).

use serde_json::{Map, Value};

use super::layout::Layout;
use super::untrusted;
use super::{io_err, WorkspaceError};

/// The session's entry, in its project directory.
pub(crate) const FILE: &str = "ccws-project-entry.json";

/// The most of `.claude.json` read; a larger one is left as it is.
const MAX_BYTES: u64 = 64 << 20;

fn entry_rel(layout: &Layout) -> String {
    format!("{}/{FILE}", layout.session_subtree)
}

fn cwd(layout: &Layout) -> String {
    layout.project_dir.to_string_lossy().into_owned()
}

/// `.claude.json` as an object, if it is one (and not too large to read).
fn read_config(layout: &Layout) -> Option<Map<String, Value>> {
    let bytes = untrusted::read_small(&layout.claude_dir.join(".claude.json"), MAX_BYTES)
        .ok()
        .flatten()?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn write(layout: &Layout, rel: &str, value: &Value) -> Result<(), WorkspaceError> {
    // Claude Code writes it with two-space indents; so does this.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    untrusted::replace_small(&layout.claude_dir, rel, &bytes)
        .map_err(io_err(&layout.claude_dir.join(rel)))
}

/// Teardown: move the session's `projects` entry out of `.claude.json` into
/// its own files. The entry is written first, so a crash in between leaves
/// it in both places, never in neither. Whether an entry was moved.
pub(crate) fn take(layout: &Layout) -> Result<bool, WorkspaceError> {
    let Some(mut config) = read_config(layout) else {
        return Ok(false);
    };
    let Some(projects) = config.get_mut("projects").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let Some(entry) = projects.remove(&cwd(layout)) else {
        return Ok(false);
    };
    write(layout, &entry_rel(layout), &entry)?;
    write(layout, ".claude.json", &Value::Object(config))?;
    Ok(true)
}

/// Setup: put the session's entry, if it has one, back into `.claude.json`
/// (created if the home has none), unless an entry for its working
/// directory is already there. Whether an entry was put back.
pub(crate) fn restore(layout: &Layout) -> Result<bool, WorkspaceError> {
    let path = layout.claude_dir.join(entry_rel(layout));
    let Some(entry) = untrusted::read_small(&path, MAX_BYTES)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Ok(false);
    };
    let exists = layout.claude_dir.join(".claude.json").exists();
    let mut config = match read_config(layout) {
        Some(c) => c,
        None if !exists => Map::new(),
        // Not an object: not ours to rewrite.
        None => return Ok(false),
    };
    let projects = config
        .entry("projects")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(projects) = projects.as_object_mut() else {
        return Ok(false);
    };
    if projects.contains_key(&cwd(layout)) {
        return Ok(false);
    }
    projects.insert(cwd(layout), entry);
    write(layout, ".claude.json", &Value::Object(config))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path(), "w", "0f8fad5b-d9cb-469f-a165-70867728950e");
        std::fs::create_dir_all(l.claude_dir.join(&l.session_subtree)).unwrap();
        (dir, l)
    }

    fn config(l: &Layout) -> Value {
        serde_json::from_slice(&std::fs::read(l.claude_dir.join(".claude.json")).unwrap()).unwrap()
    }

    #[test]
    fn an_entry_leaves_the_shared_file_and_comes_back() {
        let (_d, l) = layout();
        let me = cwd(&l);
        let start = json!({"numStartups": 3, "projects": {"/other": {"a": 1}, me.clone(): {"hasTrustDialogAccepted": true}}});
        std::fs::write(l.claude_dir.join(".claude.json"), start.to_string()).unwrap();

        assert!(take(&l).unwrap());
        let shared = config(&l);
        assert_eq!(shared["projects"], json!({"/other": {"a": 1}}));
        assert_eq!(shared["numStartups"], 3);

        // The next setup starts from the shared file without it.
        assert!(restore(&l).unwrap());
        assert_eq!(
            config(&l)["projects"][&me],
            json!({"hasTrustDialogAccepted": true})
        );
        // Twice is once; an entry already there is kept.
        assert!(!restore(&l).unwrap());
    }

    #[test]
    fn a_home_without_claude_json_gets_one_and_odd_files_are_left_alone() {
        let (_d, l) = layout();
        assert!(!take(&l).unwrap(), "no .claude.json: nothing to take");
        std::fs::write(
            l.claude_dir.join(&l.session_subtree).join(FILE),
            r#"{"x": 1}"#,
        )
        .unwrap();
        assert!(restore(&l).unwrap());
        assert_eq!(config(&l)["projects"][cwd(&l)], json!({"x": 1}));

        for odd in ["[1, 2]", "{not json", r#"{"projects": 5}"#] {
            std::fs::write(l.claude_dir.join(".claude.json"), odd).unwrap();
            assert!(!take(&l).unwrap());
            assert!(!restore(&l).unwrap());
            let after = std::fs::read_to_string(l.claude_dir.join(".claude.json")).unwrap();
            assert_eq!(after, odd, "left as it was");
        }
    }
}
