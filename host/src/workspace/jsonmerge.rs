//! Three-way merges of the files every session of a workspace rewrites, by
//! what they mean rather than whole: Claude Code rewrites `.claude.json`
//! whole at every start and appends one line per prompt to
//! `history.jsonl`, so two sessions that ran at once both "changed" them,
//! and a file-level merge would drop one side's projects entry or prompt.
//!
//! - JSON objects (`.claude.json`, `settings.json`, `.credentials.json`):
//!   key by key against the base, recursing into objects; a conflict only
//!   where both sides changed the same key to different values (the winner
//!   takes it, and its JSON path is reported); a present credential value
//!   is never replaced by an empty one.
//! - Append-only JSON lines (`history.jsonl`): the base, then both sides'
//!   appended lines, each once.
//!
//! Anything that does not parse falls back to the file-level rule (the
//! winner's file), and says so.

use serde_json::{Map, Value};

/// Which file kinds merge by meaning, by their path in the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A JSON object, merged key by key.
    Object,
    /// JSON lines that only grow.
    Lines,
}

/// How `rel` merges, if by meaning.
pub(crate) fn shape(rel: &str) -> Option<Shape> {
    match rel {
        ".claude.json" | "settings.json" | ".credentials.json" => Some(Shape::Object),
        "history.jsonl" => Some(Shape::Lines),
        _ => None,
    }
}

/// The largest file merged by meaning (a larger one merges whole).
pub(crate) const MAX_BYTES: u64 = 16 << 20;

/// The base contents of the files that merge by meaning (`.claude.json`,
/// `history.jsonl`, ...), as Setup found
/// them: relative path → text.
pub type SharedBase = std::collections::BTreeMap<String, String>;

/// Read the files that merge by meaning from `root` (ccws's own fresh
/// tree), skipping any that is not a plain UTF-8 file under [`MAX_BYTES`].
pub(crate) fn read_base(root: &std::path::Path) -> SharedBase {
    let mut out = SharedBase::new();
    for rel in [
        ".claude.json",
        "settings.json",
        ".credentials.json",
        "history.jsonl",
    ] {
        let path = root.join(rel);
        if let Ok(Some(bytes)) = super::untrusted::read_small(&path, MAX_BYTES) {
            if let Ok(text) = String::from_utf8(bytes) {
                out.insert(rel.to_owned(), text);
            }
        }
    }
    out
}

/// The outcome of one merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The merged content.
    pub bytes: Vec<u8>,
    /// JSON paths both sides changed differently (the winner's value kept).
    pub conflicts: Vec<String>,
}

/// Merge `mine` and `theirs` against `base` (`None`: absent there). With
/// `mine_wins`, a conflicting key takes mine's value, else theirs'.
/// `Err`: a side does not parse; the caller falls back to whole files.
pub(crate) fn merge(
    shape: Shape,
    base: Option<&[u8]>,
    mine: &[u8],
    theirs: &[u8],
    mine_wins: bool,
) -> Result<Merged, String> {
    match shape {
        Shape::Object => merge_objects(base, mine, theirs, mine_wins),
        Shape::Lines => merge_lines(base, mine, theirs),
    }
}

fn parse_object(side: &str, bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{side} is not a JSON object")),
        Err(e) => Err(format!("{side} is not JSON: {e}")),
    }
}

fn merge_objects(
    base: Option<&[u8]>,
    mine: &[u8],
    theirs: &[u8],
    mine_wins: bool,
) -> Result<Merged, String> {
    let base = match base {
        Some(b) => parse_object("the base", b)?,
        None => Map::new(),
    };
    let mine = parse_object("this session's", mine)?;
    let theirs = parse_object("the store's", theirs)?;
    let mut conflicts = Vec::new();
    let merged = merge_map(&base, &mine, &theirs, mine_wins, "", &mut conflicts);
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(merged)).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(Merged { bytes, conflicts })
}

fn merge_map(
    base: &Map<String, Value>,
    mine: &Map<String, Value>,
    theirs: &Map<String, Value>,
    mine_wins: bool,
    path: &str,
    conflicts: &mut Vec<String>,
) -> Map<String, Value> {
    // Theirs' keys, then those only mine has (serde_json keeps keys sorted).
    let mut keys: Vec<&String> = theirs.keys().collect();
    keys.extend(mine.keys().filter(|k| !theirs.contains_key(*k)));
    let mut out = Map::new();
    for key in keys {
        let at = format!("{path}/{key}");
        let (b, m, t) = (base.get(key), mine.get(key), theirs.get(key));
        let value = if m == b {
            t.cloned()
        } else if t == b || m == t {
            m.cloned()
        } else if let (Some(Value::Object(mo)), Some(Value::Object(to))) = (m, t) {
            let empty = Map::new();
            let bo = match b {
                Some(Value::Object(bo)) => bo,
                _ => &empty,
            };
            Some(Value::Object(merge_map(
                bo, mo, to, mine_wins, &at, conflicts,
            )))
        } else {
            conflicts.push(at.clone());
            if mine_wins {
                m.cloned()
            } else {
                t.cloned()
            }
        };
        // A credential present on either side is never emptied.
        let value = match value {
            Some(v) if is_secret_key(key) && is_empty(&v) => [m, t]
                .into_iter()
                .flatten()
                .find(|x| !is_empty(x))
                .cloned()
                .or(Some(v)),
            None if is_secret_key(key) => {
                [m, t].into_iter().flatten().find(|x| !is_empty(x)).cloned()
            }
            v => v,
        };
        if let Some(v) = value {
            out.insert(key.clone(), v);
        }
    }
    out
}

/// Keys whose values are credentials.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("token") || k.contains("apikey") || k.contains("oauth") || k.contains("secret")
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn merge_lines(base: Option<&[u8]>, mine: &[u8], theirs: &[u8]) -> Result<Merged, String> {
    let lines = |b: &[u8]| -> Result<Vec<String>, String> {
        let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    };
    let base = lines(base.unwrap_or_default())?;
    let mine = lines(mine)?;
    let theirs = lines(theirs)?;
    let mut conflicts = Vec::new();
    // What mine appended to the base; if mine is not an extension of it
    // (rewritten), every line of mine that theirs lacks.
    let appended: &[String] = if mine.starts_with(&base) {
        &mine[base.len()..]
    } else {
        conflicts.push("(this session rewrote the file; its lines are kept)".into());
        &mine
    };
    let mut out = theirs.clone();
    let mut seen: std::collections::HashSet<&str> = theirs.iter().map(String::as_str).collect();
    for line in appended {
        if seen.insert(line) {
            out.push(line.clone());
        }
    }
    let mut bytes = out.join("\n").into_bytes();
    if !bytes.is_empty() {
        bytes.push(b'\n');
    }
    Ok(Merged { bytes, conflicts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn parsed(m: &Merged) -> Value {
        serde_json::from_slice(&m.bytes).unwrap()
    }

    #[test]
    fn claude_json_keeps_both_sessions_projects() {
        let base = obj(
            serde_json::json!({"numStartups": 4, "projects": {"/a": {"x": 1}}, "oauthAccount": {"email": "e"}}),
        );
        let mine = obj(
            serde_json::json!({"numStartups": 5, "projects": {"/a": {"x": 1}, "/mine": {"y": 1}}, "oauthAccount": {"email": "e"}}),
        );
        let theirs = obj(
            serde_json::json!({"numStartups": 5, "projects": {"/a": {"x": 2}, "/theirs": {"z": 1}}, "oauthAccount": {"email": "e"}}),
        );
        let m = merge(Shape::Object, Some(&base), &mine, &theirs, true).unwrap();
        let v = parsed(&m);
        assert_eq!(v["projects"]["/mine"]["y"], 1);
        assert_eq!(v["projects"]["/theirs"]["z"], 1);
        assert_eq!(v["projects"]["/a"]["x"], 2, "only theirs changed it");
        assert_eq!(v["numStartups"], 5);
        assert!(m.conflicts.is_empty(), "{:?}", m.conflicts);
    }

    #[test]
    fn a_real_conflict_is_reported_and_the_winner_takes_it() {
        let base = obj(serde_json::json!({"theme": "dark", "n": {"k": 1}}));
        let mine = obj(serde_json::json!({"theme": "light", "n": {"k": 2}}));
        let theirs = obj(serde_json::json!({"theme": "solarized", "n": {"k": 3}}));
        let m = merge(Shape::Object, Some(&base), &mine, &theirs, true).unwrap();
        assert_eq!(parsed(&m)["theme"], "light");
        assert_eq!(m.conflicts, ["/n/k", "/theme"]);
        let m = merge(Shape::Object, Some(&base), &mine, &theirs, false).unwrap();
        assert_eq!(parsed(&m)["theme"], "solarized");
    }

    #[test]
    fn a_present_credential_is_never_emptied() {
        let base =
            obj(serde_json::json!({"oauthAccount": {"accountUuid": "u"}, "primaryApiKey": "k"}));
        let mine = obj(serde_json::json!({"oauthAccount": {}, "primaryApiKey": ""}));
        let theirs = base.clone();
        let v = parsed(&merge(Shape::Object, Some(&base), &mine, &theirs, true).unwrap());
        assert_eq!(v["oauthAccount"]["accountUuid"], "u");
        assert_eq!(v["primaryApiKey"], "k");
        // Deleted on one side: kept from the other.
        let mine = obj(serde_json::json!({}));
        let v = parsed(&merge(Shape::Object, Some(&base), &mine, &theirs, true).unwrap());
        assert_eq!(v["primaryApiKey"], "k");
    }

    #[test]
    fn deletions_on_one_side_apply() {
        let base = obj(serde_json::json!({"a": 1, "b": 2}));
        let mine = obj(serde_json::json!({"a": 1}));
        let theirs = obj(serde_json::json!({"a": 1, "b": 2, "c": 3}));
        let v = parsed(&merge(Shape::Object, Some(&base), &mine, &theirs, true).unwrap());
        assert_eq!(v, serde_json::json!({"a": 1, "c": 3}));
    }

    #[test]
    fn history_keeps_every_sessions_lines_once() {
        let base = b"{\"p\":1}\n{\"p\":2}\n";
        let mine = b"{\"p\":1}\n{\"p\":2}\n{\"p\":\"mine\"}\n";
        let theirs = b"{\"p\":1}\n{\"p\":2}\n{\"p\":\"theirs\"}\n";
        let m = merge(Shape::Lines, Some(base), mine, theirs, true).unwrap();
        assert_eq!(
            String::from_utf8(m.bytes).unwrap(),
            "{\"p\":1}\n{\"p\":2}\n{\"p\":\"theirs\"}\n{\"p\":\"mine\"}\n"
        );
        assert!(m.conflicts.is_empty());
        // Rewritten by mine: its lines that theirs lacks are kept, reported.
        let m = merge(
            Shape::Lines,
            Some(base),
            b"{\"p\":2}\n{\"p\":9}\n",
            theirs,
            true,
        )
        .unwrap();
        assert!(String::from_utf8(m.bytes).unwrap().ends_with("{\"p\":9}\n"));
        assert_eq!(m.conflicts.len(), 1);
    }

    #[test]
    fn what_does_not_parse_falls_back() {
        assert!(merge(Shape::Object, None, b"{", b"{}", true).is_err());
        assert!(merge(Shape::Object, None, b"[1]", b"{}", true).is_err());
    }

    fn small_map() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::btree_map("[a-e]", 0i64..4, 0..5)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    }

    proptest! {
        #[test]
        fn an_unchanged_side_yields_the_other(base in small_map(), other in small_map()) {
            let b = serde_json::to_vec(&Value::Object(base.clone())).unwrap();
            let o = serde_json::to_vec(&Value::Object(other.clone())).unwrap();
            let m = merge(Shape::Object, Some(&b), &b, &o, true).unwrap();
            prop_assert_eq!(parsed(&m), Value::Object(other.clone()));
            let m = merge(Shape::Object, Some(&b), &o, &b, false).unwrap();
            prop_assert_eq!(parsed(&m), Value::Object(other));
        }

        #[test]
        fn independent_additions_both_survive(
            base in small_map(),
            mine in proptest::collection::btree_map("m[a-e]", 0i64..4, 0..4),
            theirs in proptest::collection::btree_map("t[a-e]", 0i64..4, 0..4),
        ) {
            let with = |extra: &std::collections::BTreeMap<String, i64>| {
                let mut m = base.clone();
                m.extend(extra.iter().map(|(k, v)| (k.clone(), Value::from(*v))));
                serde_json::to_vec(&Value::Object(m)).unwrap()
            };
            let b = serde_json::to_vec(&Value::Object(base.clone())).unwrap();
            let v = parsed(&merge(Shape::Object, Some(&b), &with(&mine), &with(&theirs), true).unwrap());
            for (k, x) in mine.iter().chain(theirs.iter()) {
                prop_assert_eq!(&v[k], &Value::from(*x));
            }
        }
    }
}
