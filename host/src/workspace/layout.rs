//! Where things are: the per-session temp tree and the object keys.

use std::path::{Path, PathBuf};

/// The per-session directory tree (the seed's `Workspace` paths).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// `<base>/cc-broker/sess_<session>`: the root, removed at teardown.
    pub temp_dir: PathBuf,
    /// `<temp_dir>/claude-config`: the agent's `CLAUDE_CONFIG_DIR`.
    pub claude_dir: PathBuf,
    /// `<temp_dir>/project`: the agent's working directory (it fixes the
    /// project directory's name); holds only `.claude/settings.local.json`.
    pub project_dir: PathBuf,
    /// `<claude_dir>/projects/<project>/memory`: the workspace's auto-memory
    /// during the turn, where Claude Code keeps a project's memory by
    /// default (and where ccws's local settings point it).
    pub memory_dir: PathBuf,
    /// `<claude_dir>/projects/<project>/<session>.jsonl`: the transcript.
    pub transcript: PathBuf,
    /// `projects/<project>`: this session's own project directory, relative
    /// to `claude_dir`; stored with the session, never in the home.
    pub session_subtree: String,
    /// `projects/ws_<workspace>/memory`: where the home keeps the
    /// workspace's auto-memory, relative to `claude_dir`.
    pub shared_memory: String,
    /// `<project_dir>/.claude/settings.local.json`: Claude Code's local
    /// settings for this working directory, written by Setup.
    pub local_settings: PathBuf,
}

impl Layout {
    /// The layout for `workspace`/`session` under `base` (already absolute).
    pub fn new(base: &Path, workspace: &str, session: &str) -> Self {
        let temp_dir = base.join("cc-broker").join(format!("sess_{session}"));
        let claude_dir = temp_dir.join("claude-config");
        let project_dir = temp_dir.join("project");
        let hash = project_hash(&project_dir);
        let session_subtree = format!("projects/{hash}");
        Layout {
            memory_dir: claude_dir.join(&session_subtree).join("memory"),
            transcript: claude_dir
                .join(&session_subtree)
                .join(format!("{session}.jsonl")),
            session_subtree,
            shared_memory: format!("projects/ws_{workspace}/memory"),
            local_settings: project_dir.join(".claude").join("settings.local.json"),
            temp_dir,
            claude_dir,
            project_dir,
        }
    }

    /// The session's project directory name (`projects/<this>`).
    pub fn project_name(&self) -> &str {
        self.session_subtree
            .strip_prefix("projects/")
            .unwrap_or(&self.session_subtree)
    }

    /// The paths below `claude_dir` (relative, `/`-separated) that the home
    /// must hold as directories if at all: `projects` down to the shared
    /// memory directory.
    pub fn must_be_dirs(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = String::new();
        for part in self.shared_memory.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            out.push(at.clone());
        }
        out
    }
}

/// The longest project directory name Claude Code uses as it is; a longer
/// one is cut and given a hash suffix, by a rule that has changed between
/// its versions.
pub const MAX_PROJECT_NAME: usize = 200;

/// Claude Code's project directory name: the project path with every
/// UTF-16 code unit outside `[A-Za-z0-9]` replaced by `-` (so a character
/// outside the Basic Multilingual Plane becomes two).
pub fn project_hash(project_dir: &Path) -> String {
    project_dir
        .to_string_lossy()
        .encode_utf16()
        .map(|u| match u8::try_from(u) {
            Ok(b) if b.is_ascii_alphanumeric() => char::from(b),
            _ => '-',
        })
        .collect()
}

/// Object keys, under an optional prefix:
/// `<prefix>workspaces/<ws>/claude-home.tar.gz` (and other objects of the
/// workspace beside it), `<prefix>workspaces/<ws>/sessions/<session>.jsonl`
/// and `<prefix>workspaces/<ws>/sessions/<session>/...` (a session's own
/// objects). [`Keys::parse`] reads a key back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// What an object key belongs to, as [`Keys::parse`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner<'a> {
    /// One session's object: its transcript (`sessions/<session>.jsonl`),
    /// or any object under `sessions/<session>/`.
    Session {
        /// The workspace id.
        workspace: &'a str,
        /// The session id.
        session: &'a str,
    },
    /// An object of the workspace itself (the shared home, its last good
    /// copy, ...): `name` is the key after `workspaces/<workspace>/`.
    Workspace {
        /// The workspace id.
        workspace: &'a str,
        /// The rest of the key.
        name: &'a str,
    },
}

impl<'a> KeyOwner<'a> {
    /// The workspace the key belongs to.
    pub fn workspace(&self) -> &'a str {
        match self {
            KeyOwner::Session { workspace, .. } | KeyOwner::Workspace { workspace, .. } => {
                workspace
            }
        }
    }
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is added when missing).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Keys {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// The prefix every key starts with (`""`, or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the object `key` names below the prefix (what `ccws get`
    /// and `ccws put` take).
    pub fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `key` below the prefix (as [`Keys::object`] takes it), or the
    /// whole key when it lies outside the prefix.
    pub fn relative<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.prefix.as_str()).unwrap_or(key)
    }

    /// What every workspace's keys start with: `<prefix>workspaces/`.
    pub fn all_workspaces(&self) -> String {
        format!("{}workspaces/", self.prefix)
    }

    /// What all of one workspace's keys start with.
    pub fn workspace_objects(&self, workspace: &str) -> String {
        format!("{}{workspace}/", self.all_workspaces())
    }

    /// What all of a workspace's session keys start with.
    pub fn all_sessions(&self, workspace: &str) -> String {
        format!("{}sessions/", self.workspace_objects(workspace))
    }

    /// A listing prefix that holds all of one session's keys (and those of
    /// sessions whose ids extend it: sort them out with [`Keys::parse`]).
    pub fn session_listing(&self, workspace: &str, session: &str) -> String {
        format!("{}{session}", self.all_sessions(workspace))
    }

    /// Which workspace or session `key` belongs to; `None` for a key
    /// outside `<prefix>workspaces/<ws>/`.
    pub fn parse<'k>(&self, key: &'k str) -> Option<KeyOwner<'k>> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let (workspace, name) = rest.strip_prefix("workspaces/")?.split_once('/')?;
        if workspace.is_empty() || name.is_empty() {
            return None;
        }
        let session = name
            .strip_prefix("sessions/")
            .and_then(|r| match r.split_once('/') {
                Some((s, below)) => (!below.is_empty()).then_some(s),
                None => r.strip_suffix(".jsonl"),
            });
        Some(match session {
            Some(session) if !session.is_empty() => KeyOwner::Session { workspace, session },
            _ => KeyOwner::Workspace { workspace, name },
        })
    }

    /// The workspace's shared home tarball.
    pub fn home(&self, workspace: &str) -> String {
        format!("{}workspaces/{workspace}/claude-home.tar.gz", self.prefix)
    }

    /// The last home ccws published and could read back, copied on the
    /// server after every publish; Setup falls back to it when the home
    /// itself cannot be used.
    pub fn home_good(&self, workspace: &str) -> String {
        format!(
            "{}workspaces/{workspace}/claude-home.good.tar.gz",
            self.prefix
        )
    }

    /// Where Setup keeps a home it could not use, for inspection, before a
    /// later publish replaces it.
    pub fn home_rejected(&self, workspace: &str) -> String {
        format!(
            "{}workspaces/{workspace}/claude-home.rejected.tar.gz",
            self.prefix
        )
    }

    /// One session's own files besides its transcript (subagents, tool
    /// results, todos, file history, debug log, session environment).
    pub fn session_state(&self, workspace: &str, session: &str) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}/state.tar.gz",
            self.prefix
        )
    }

    /// The index of a session's state deltas.
    pub fn session_state_index(&self, workspace: &str, session: &str) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}/state.json",
            self.prefix
        )
    }

    /// One delta of a session's own files: the `n`th since the whole set.
    pub fn session_state_delta(&self, workspace: &str, session: &str, n: usize) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}/state/{n:04}.tar.gz",
            self.prefix
        )
    }

    /// The index of a session's transcript parts.
    pub fn transcript_index(&self, workspace: &str, session: &str) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}/transcript.json",
            self.prefix
        )
    }

    /// One part of a session's transcript: its bytes from `offset` on.
    pub fn transcript_part(&self, workspace: &str, session: &str, offset: u64) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}/transcript/{offset:020}.jsonl",
            self.prefix
        )
    }

    /// One session's transcript.
    pub fn transcript(&self, workspace: &str, session: &str) -> String {
        format!(
            "{}workspaces/{workspace}/sessions/{session}.jsonl",
            self.prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_count_utf16_units_as_claude_code_does() {
        assert_eq!(
            project_hash(Path::new("/Users/me/.agents")),
            "-Users-me--agents"
        );
        // `/`, é and each half of 😀's surrogate pair: one `-` each.
        assert_eq!(project_hash(Path::new("/é/😀")), "-----");
    }

    #[test]
    fn paths_follow_the_seed() {
        let l = Layout::new(Path::new("/tmp"), "w1", "s.1");
        assert_eq!(l.temp_dir, Path::new("/tmp/cc-broker/sess_s.1"));
        assert_eq!(
            l.claude_dir,
            Path::new("/tmp/cc-broker/sess_s.1/claude-config")
        );
        assert_eq!(l.project_dir, Path::new("/tmp/cc-broker/sess_s.1/project"));
        assert_eq!(
            l.memory_dir,
            Path::new(
                "/tmp/cc-broker/sess_s.1/claude-config/projects/-tmp-cc-broker-sess-s-1-project/memory"
            )
        );
        assert_eq!(l.shared_memory, "projects/ws_w1/memory");
        assert_eq!(
            l.local_settings,
            Path::new("/tmp/cc-broker/sess_s.1/project/.claude/settings.local.json")
        );
        assert_eq!(
            l.session_subtree,
            "projects/-tmp-cc-broker-sess-s-1-project"
        );
        assert_eq!(
            l.transcript,
            Path::new("/tmp/cc-broker/sess_s.1/claude-config/projects/-tmp-cc-broker-sess-s-1-project/s.1.jsonl")
        );
    }

    #[test]
    fn the_directories_setup_creates() {
        let l = Layout::new(Path::new("/tmp"), "w1", "s");
        assert_eq!(
            l.must_be_dirs(),
            ["projects", "projects/ws_w1", "projects/ws_w1/memory"]
        );
    }

    #[test]
    fn every_key_parses_back_to_its_owner() {
        for prefix in ["", "team/a"] {
            let k = Keys::new(prefix);
            let session = |key: String| {
                assert!(key.starts_with(&k.session_listing("w.1", "s-1")), "{key}");
                assert_eq!(
                    k.parse(&key),
                    Some(KeyOwner::Session {
                        workspace: "w.1",
                        session: "s-1"
                    }),
                    "{key}"
                );
            };
            session(k.transcript("w.1", "s-1"));
            session(k.transcript_index("w.1", "s-1"));
            session(k.transcript_part("w.1", "s-1", 42));
            session(k.session_state("w.1", "s-1"));
            session(k.session_state_index("w.1", "s-1"));
            session(k.session_state_delta("w.1", "s-1", 3));
            for (key, name) in [
                (k.home("w.1"), "claude-home.tar.gz"),
                (k.home_good("w.1"), "claude-home.good.tar.gz"),
                (k.home_rejected("w.1"), "claude-home.rejected.tar.gz"),
            ] {
                assert!(key.starts_with(&k.workspace_objects("w.1")), "{key}");
                assert_eq!(
                    k.parse(&key),
                    Some(KeyOwner::Workspace {
                        workspace: "w.1",
                        name
                    })
                );
            }
        }
    }

    #[test]
    fn parse_sorts_out_neighbours_and_strangers() {
        let k = Keys::new("p");
        // A session whose id extends another's is its own.
        assert_eq!(
            k.parse("p/workspaces/w/sessions/s.jsonl.jsonl"),
            Some(KeyOwner::Session {
                workspace: "w",
                session: "s.jsonl"
            })
        );
        assert_eq!(
            k.parse("p/workspaces/w/sessions/s2/x"),
            Some(KeyOwner::Session {
                workspace: "w",
                session: "s2"
            })
        );
        // Under sessions/ but no session's: the workspace's.
        assert_eq!(
            k.parse("p/workspaces/w/sessions/notes.txt"),
            Some(KeyOwner::Workspace {
                workspace: "w",
                name: "sessions/notes.txt"
            })
        );
        for stranger in [
            "workspaces/w/claude-home.tar.gz",
            "p/other/w/x",
            "p/workspaces/w",
            "p/workspaces//x",
            "p/workspaces/w/",
            "pq/workspaces/w/x",
        ] {
            assert_eq!(k.parse(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn keys_with_and_without_prefix() {
        assert_eq!(Keys::new("").home("w"), "workspaces/w/claude-home.tar.gz");
        assert_eq!(
            Keys::new("/team/a/").transcript("w", "s"),
            "team/a/workspaces/w/sessions/s.jsonl"
        );
    }
}
