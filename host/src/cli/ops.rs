//! Operating the store: `ls`, `rm`, `gc`, and `outbox` (what waits on this
//! machine).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use ccws::s3::ObjectMeta;
use ccws::store::{DeleteFailure, Store};
use ccws::workspace::outbox::{Kind, Outbox, Queued};
use ccws::workspace::{ids, KeyOwner, Keys};
use indicatif::HumanBytes;
use serde::Serialize;
use time::OffsetDateTime;

use super::error::CliError;
use super::output;

/// RFC 3339 to the second, in UTC (`2026-12-05T03:21:34Z`).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// Serializes an optional time as RFC 3339 (or null).
fn opt_time<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

fn show_time(t: Option<OffsetDateTime>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".into())
}

/// Objects of one owner (a workspace, a session) added up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// How many objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The newest last-modified time among them (null if the store gave none).
    #[serde(serialize_with = "opt_time")]
    pub last_modified: Option<OffsetDateTime>,
    /// Whether some object had no last-modified time: its age is unknown.
    #[serde(skip)]
    pub undated: bool,
}

impl Tally {
    fn add(&mut self, o: &ObjectMeta) {
        self.objects += 1;
        self.bytes += o.size;
        match o.last_modified {
            Some(t) => self.last_modified = Some(self.last_modified.map_or(t, |m| m.max(t))),
            None => self.undated = true,
        }
    }
}

/// One workspace in `ccws ls`.
#[derive(Debug, Serialize)]
pub struct WorkspaceSummary {
    /// The workspace id.
    pub workspace: String,
    /// How many sessions have objects.
    pub sessions: u64,
    /// All its objects.
    #[serde(flatten)]
    pub tally: Tally,
}

/// One object of the workspace itself (the home and what lies beside it).
#[derive(Debug, Serialize)]
pub struct WorkspaceObject {
    /// The key below `workspaces/<ws>/`.
    pub name: String,
    /// Its key, as `ccws get` takes it (below the prefix).
    pub key: String,
    /// Its bytes.
    pub bytes: u64,
    /// When it was last written.
    #[serde(serialize_with = "opt_time")]
    pub last_modified: Option<OffsetDateTime>,
}

/// One session in `ccws ls WORKSPACE`.
#[derive(Debug, Serialize)]
pub struct SessionSummary {
    /// The session id.
    pub session: String,
    /// Its objects.
    #[serde(flatten)]
    pub tally: Tally,
}

/// `ccws ls WORKSPACE`.
#[derive(Debug, Serialize)]
pub struct WorkspaceListing {
    /// The workspace id.
    pub workspace: String,
    /// Its own objects (the shared home, its last good copy, ...).
    pub objects: Vec<WorkspaceObject>,
    /// Its sessions, by id.
    pub sessions: Vec<SessionSummary>,
}

/// Everything under `prefix`, page by page, handed to `each`.
async fn walk(
    store: &Store,
    prefix: &str,
    page_size: u32,
    mut each: impl FnMut(ObjectMeta),
) -> Result<(), CliError> {
    let mut pages = store.pages(prefix, page_size);
    while let Some(page) = pages.next().await? {
        page.into_iter().for_each(&mut each);
    }
    Ok(())
}

/// `ccws ls`: every workspace, added up.
pub async fn list_workspaces(
    store: &Store,
    keys: &Keys,
    page_size: u32,
) -> Result<Vec<WorkspaceSummary>, CliError> {
    let mut by_ws: BTreeMap<String, (Tally, std::collections::BTreeSet<String>)> = BTreeMap::new();
    walk(store, &keys.all_workspaces(), page_size, |o| {
        let Some(owner) = keys.parse(&o.key) else {
            return;
        };
        let entry = by_ws.entry(owner.workspace().to_owned()).or_default();
        entry.0.add(&o);
        if let KeyOwner::Session { session, .. } = owner {
            if !entry.1.contains(session) {
                entry.1.insert(session.to_owned());
            }
        }
    })
    .await?;
    Ok(by_ws
        .into_iter()
        .map(|(workspace, (tally, sessions))| WorkspaceSummary {
            workspace,
            sessions: sessions.len() as u64,
            tally,
        })
        .collect())
}

/// `ccws ls WORKSPACE`: its own objects and its sessions.
pub async fn list_workspace(
    store: &Store,
    keys: &Keys,
    workspace: &str,
    page_size: u32,
) -> Result<WorkspaceListing, CliError> {
    ids::validate("workspace", workspace)?;
    let mut objects = Vec::new();
    let mut sessions: BTreeMap<String, Tally> = BTreeMap::new();
    walk(
        store,
        &keys.workspace_objects(workspace),
        page_size,
        |o| match keys.parse(&o.key) {
            Some(KeyOwner::Session { session, .. }) => {
                sessions.entry(session.to_owned()).or_default().add(&o)
            }
            Some(KeyOwner::Workspace { name, .. }) => objects.push(WorkspaceObject {
                name: name.to_owned(),
                key: keys.relative(&o.key).to_owned(),
                bytes: o.size,
                last_modified: o.last_modified,
            }),
            None => {}
        },
    )
    .await?;
    Ok(WorkspaceListing {
        workspace: workspace.to_owned(),
        objects,
        sessions: sessions
            .into_iter()
            .map(|(session, tally)| SessionSummary { session, tally })
            .collect(),
    })
}

/// Print `ccws ls`.
pub fn print_workspaces(json: bool, list: &[WorkspaceSummary]) -> Result<(), CliError> {
    if json {
        return output::json(&serde_json::json!({ "workspaces": list }));
    }
    if list.is_empty() {
        output::say("no workspaces in the store");
        return Ok(());
    }
    let width = list
        .iter()
        .map(|w| w.workspace.len())
        .max()
        .unwrap_or(0)
        .max(9);
    output::line(&format!(
        "{:<width$}  {:>8}  {:>7}  {:>10}  LAST MODIFIED",
        "WORKSPACE", "SESSIONS", "OBJECTS", "SIZE"
    ))?;
    for w in list {
        output::line(&format!(
            "{:<width$}  {:>8}  {:>7}  {:>10}  {}",
            w.workspace,
            w.sessions,
            w.tally.objects,
            HumanBytes(w.tally.bytes).to_string(),
            show_time(w.tally.last_modified)
        ))?;
    }
    Ok(())
}

/// Print `ccws ls WORKSPACE`.
pub fn print_workspace(json: bool, l: &WorkspaceListing) -> Result<(), CliError> {
    if json {
        return output::json(l);
    }
    if l.objects.is_empty() && l.sessions.is_empty() {
        output::say(&format!(
            "workspace {} has no objects in the store",
            l.workspace
        ));
        return Ok(());
    }
    let width = l
        .objects
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(0)
        .max(7);
    output::line(&format!(
        "{:<width$}  {:>10}  LAST MODIFIED",
        "OBJECT", "SIZE"
    ))?;
    for o in &l.objects {
        output::line(&format!(
            "{:<width$}  {:>10}  {}",
            o.name,
            HumanBytes(o.bytes).to_string(),
            show_time(o.last_modified)
        ))?;
    }
    let width = l
        .sessions
        .iter()
        .map(|s| s.session.len())
        .max()
        .unwrap_or(0)
        .max(7);
    output::line("")?;
    output::line(&format!(
        "{:<width$}  {:>7}  {:>10}  LAST MODIFIED",
        "SESSION", "OBJECTS", "SIZE"
    ))?;
    for s in &l.sessions {
        output::line(&format!(
            "{:<width$}  {:>7}  {:>10}  {}",
            s.session,
            s.tally.objects,
            HumanBytes(s.tally.bytes).to_string(),
            show_time(s.tally.last_modified)
        ))?;
    }
    Ok(())
}

/// What `ccws rm` or `ccws gc` deleted (or, on a dry run, would delete).
/// Keys are as `ccws get` takes them (below the prefix).
#[derive(Debug, Default, Serialize)]
pub struct Deletion {
    /// Keys deleted.
    pub keys: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Keys that could not be deleted, and why.
    pub failed: Vec<Failure>,
}

/// A key the store would not delete.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// The key.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl Deletion {
    /// Delete `objects`, recording what went and what did not.
    async fn run(store: &Store, keys: &Keys, objects: &[ObjectMeta]) -> Result<Deletion, CliError> {
        let doomed: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
        let failed: Vec<DeleteFailure> = store.delete_many(&doomed).await?;
        let failed: BTreeMap<&str, &str> = failed
            .iter()
            .map(|f| (f.key.as_str(), f.reason.as_str()))
            .collect();
        let mut out = Deletion::default();
        for o in objects {
            let key = keys.relative(&o.key).to_owned();
            match failed.get(o.key.as_str()) {
                Some(reason) => out.failed.push(Failure {
                    key,
                    reason: (*reason).to_owned(),
                }),
                None => {
                    out.keys.push(key);
                    out.bytes += o.size;
                }
            }
        }
        Ok(out)
    }

    /// What deleting `objects` would do.
    fn planned(keys: &Keys, objects: &[ObjectMeta]) -> Deletion {
        Deletion {
            keys: objects
                .iter()
                .map(|o| keys.relative(&o.key).to_owned())
                .collect(),
            bytes: objects.iter().map(|o| o.size).sum(),
            failed: Vec::new(),
        }
    }
}

/// The objects of one session, or of a whole workspace.
pub async fn objects_of(
    store: &Store,
    keys: &Keys,
    workspace: &str,
    session: Option<&str>,
    page_size: u32,
) -> Result<Vec<ObjectMeta>, CliError> {
    ids::validate("workspace", workspace)?;
    let mut out = Vec::new();
    match session {
        None => {
            walk(store, &keys.workspace_objects(workspace), page_size, |o| {
                out.push(o)
            })
            .await?
        }
        Some(s) => {
            ids::validate("session", s)?;
            walk(store, &keys.session_listing(workspace, s), page_size, |o| {
                let mine = matches!(keys.parse(&o.key),
                    Some(KeyOwner::Session { workspace: w, session }) if w == workspace && session == s);
                if mine {
                    out.push(o);
                }
            })
            .await?
        }
    }
    Ok(out)
}

/// Ask on the terminal whether to delete `what`; without a terminal to
/// ask on, `--yes` is needed.
fn confirm(what: &str) -> Result<bool, CliError> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::Usage(format!(
            "not deleting {what} unasked: stdin is not a terminal; pass --yes to delete without asking"
        )));
    }
    {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "delete {what}? [y/N] ");
        let _ = err.flush();
    }
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::Other(format!("reading the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Entries in this machine's outbox for `workspace` (and `session`).
fn queued_for(outbox: &Outbox, workspace: &str, session: Option<&str>) -> usize {
    match outbox.list() {
        Ok(list) => list
            .iter()
            .filter(|q| {
                q.entry.workspace == workspace && session.is_none_or(|s| q.entry.session == s)
            })
            .count(),
        Err(e) => {
            tracing::warn!("reading the outbox at {}: {e}", outbox.dir().display());
            0
        }
    }
}

/// `ccws rm -w W [-s S]`.
#[derive(Debug, Serialize)]
pub struct Removal {
    /// The workspace.
    pub workspace: String,
    /// The session, or null for the whole workspace.
    pub session: Option<String>,
    /// What was deleted.
    #[serde(flatten)]
    pub deletion: Deletion,
}

/// `ccws rm`: delete one session's objects, or a whole workspace's.
pub async fn remove(
    store: &Store,
    keys: &Keys,
    outbox: &Outbox,
    workspace: &str,
    session: Option<&str>,
    yes: bool,
    page_size: u32,
) -> Result<Option<Removal>, CliError> {
    let objects = objects_of(store, keys, workspace, session, page_size).await?;
    let what = match session {
        Some(s) => format!("session {s} of workspace {workspace}"),
        None => format!("workspace {workspace}"),
    };
    let queued = queued_for(outbox, workspace, session);
    if queued > 0 {
        output::say(&format!(
            "ccws: note: {queued} upload(s) for {what} wait in this machine's outbox; \
             a later flush or setup writes them to the store again"
        ));
    }
    if objects.is_empty() {
        output::say(&format!(
            "ccws: {what} has no objects in {}",
            store.describe()
        ));
        return Ok(Some(Removal {
            workspace: workspace.into(),
            session: session.map(Into::into),
            deletion: Deletion::default(),
        }));
    }
    let bytes: u64 = objects.iter().map(|o| o.size).sum();
    if !yes
        && !confirm(&format!(
            "{} object(s) ({}) of {what} from {}",
            objects.len(),
            HumanBytes(bytes),
            store.describe()
        ))?
    {
        output::say("ccws: nothing deleted");
        return Ok(None);
    }
    let deletion = Deletion::run(store, keys, &objects).await?;
    Ok(Some(Removal {
        workspace: workspace.into(),
        session: session.map(Into::into),
        deletion,
    }))
}

/// Print what `rm` did; a partial deletion is a store error.
pub fn print_removal(json: bool, r: &Removal) -> Result<u8, CliError> {
    if json {
        output::json(r)?;
    } else if !r.deletion.keys.is_empty() {
        output::say(&format!(
            "deleted {} object(s) ({})",
            r.deletion.keys.len(),
            HumanBytes(r.deletion.bytes)
        ));
    }
    for f in &r.deletion.failed {
        output::say(&format!("ccws: could not delete {:?}: {}", f.key, f.reason));
    }
    Ok(if r.deletion.failed.is_empty() { 0 } else { 4 })
}

/// Parse an age such as `30d`, `12h`, `90m`, `45s`, `2w` or `1d12h`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("{s:?}: {c:?} is no unit (use s, m, h, d or w)")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?}: too long"))?;
        num.clear();
        any = true;
    }
    if !num.is_empty() {
        return Err(format!(
            "{s:?}: give the number a unit, e.g. {num}d (s, m, h, d or w)"
        ));
    }
    if !any {
        return Err(format!("{s:?}: expected an age such as 30d or 12h"));
    }
    Ok(Duration::from_secs(total))
}

/// One session `gc` deleted, or would.
#[derive(Debug, Serialize)]
pub struct GcSession {
    /// The workspace.
    pub workspace: String,
    /// The session.
    pub session: String,
    /// Its objects when it was judged.
    #[serde(flatten)]
    pub tally: Tally,
}

/// What `gc` did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Only listed what it would delete.
    pub dry_run: bool,
    /// The cut-off: sessions last written before it go.
    #[serde(serialize_with = "opt_time")]
    pub cutoff: Option<OffsetDateTime>,
    /// Sessions looked at.
    pub sessions_seen: u64,
    /// Sessions deleted (or, on a dry run, to delete).
    pub sessions: Vec<GcSession>,
    /// Old sessions kept: this machine's outbox still holds uploads for
    /// them, or they were written to while gc ran.
    pub kept: Vec<String>,
    /// Objects deleted (or to delete).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Keys that could not be deleted, and why.
    pub failed: Vec<Failure>,
}

/// `ccws gc`: delete the sessions whose newest object is older than `age`.
pub async fn gc(
    store: &Store,
    keys: &Keys,
    outbox: &Outbox,
    workspace: Option<&str>,
    age: Duration,
    dry_run: bool,
    page_size: u32,
) -> Result<GcReport, CliError> {
    let now = OffsetDateTime::now_utc();
    let cutoff = now - age;
    let prefix = match workspace {
        Some(w) => {
            ids::validate("workspace", w)?;
            keys.workspace_objects(w)
        }
        None => keys.all_workspaces(),
    };
    // First the ages of all sessions, then each old one again, so that a
    // session written to meanwhile is seen and kept.
    let mut sessions: BTreeMap<(String, String), Tally> = BTreeMap::new();
    walk(store, &prefix, page_size, |o| {
        if let Some(KeyOwner::Session { workspace, session }) = keys.parse(&o.key) {
            sessions
                .entry((workspace.to_owned(), session.to_owned()))
                .or_default()
                .add(&o);
        }
    })
    .await?;
    let queued: Vec<Queued> = outbox.list().unwrap_or_else(|e| {
        tracing::warn!("reading the outbox at {}: {e}", outbox.dir().display());
        Vec::new()
    });
    let old = |t: &Tally| !t.undated && t.last_modified.is_some_and(|m| m < cutoff);
    let mut report = GcReport {
        dry_run,
        cutoff: Some(cutoff),
        sessions_seen: sessions.len() as u64,
        ..GcReport::default()
    };
    for ((ws, s), tally) in sessions {
        if !old(&tally) {
            continue;
        }
        if queued
            .iter()
            .any(|q| q.entry.workspace == ws && q.entry.session == s)
        {
            report.kept.push(format!("{ws}/{s}"));
            continue;
        }
        let objects = objects_of(store, keys, &ws, Some(&s), page_size).await?;
        let mut now_tally = Tally::default();
        objects.iter().for_each(|o| now_tally.add(o));
        if objects.is_empty() {
            continue;
        }
        if !old(&now_tally) {
            report.kept.push(format!("{ws}/{s}"));
            continue;
        }
        let d = if dry_run {
            Deletion::planned(keys, &objects)
        } else {
            Deletion::run(store, keys, &objects).await?
        };
        report.objects += d.keys.len() as u64;
        report.bytes += d.bytes;
        report.failed.extend(d.failed);
        report.sessions.push(GcSession {
            workspace: ws,
            session: s,
            tally: now_tally,
        });
    }
    Ok(report)
}

/// Print what `gc` did; a partial deletion is a store error.
pub fn print_gc(json: bool, r: &GcReport) -> Result<u8, CliError> {
    if json {
        output::json(r)?;
    } else {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        for s in &r.sessions {
            output::line(&format!(
                "{verb} {}/{} ({} object(s), {}, last written {})",
                s.workspace,
                s.session,
                s.tally.objects,
                HumanBytes(s.tally.bytes),
                show_time(s.tally.last_modified)
            ))?;
        }
        for k in &r.kept {
            output::say(&format!(
                "ccws: kept {k}: it has uploads waiting in this machine's outbox, or was written to meanwhile"
            ));
        }
        output::say(&format!(
            "{verb} {} of {} session(s): {} object(s), {}",
            r.sessions.len(),
            r.sessions_seen,
            r.objects,
            HumanBytes(r.bytes)
        ));
    }
    for f in &r.failed {
        output::say(&format!("ccws: could not delete {:?}: {}", f.key, f.reason));
    }
    Ok(if r.failed.is_empty() { 0 } else { 4 })
}

/// One queued upload in `ccws outbox`.
#[derive(Debug, Serialize)]
pub struct OutboxItem {
    /// What it holds: `transcript`, `state` or `home`.
    pub kind: Kind,
    /// The workspace.
    pub workspace: String,
    /// The session that queued it.
    pub session: String,
    /// The object key it goes to (below the prefix, as `ccws get` takes it).
    pub key: String,
    /// The payload's bytes.
    pub bytes: u64,
    /// When it was queued.
    pub queued_at: String,
    /// Seconds since then.
    pub age_secs: u64,
    /// Why the last attempt failed.
    pub last_error: String,
}

/// `ccws outbox`: what waits on this machine.
pub fn outbox_items(
    outbox: &Outbox,
    keys: &Keys,
    workspace: Option<&str>,
) -> Result<Vec<OutboxItem>, CliError> {
    let list = outbox.list().map_err(|e| {
        CliError::Other(format!(
            "reading the outbox at {}: {e}",
            outbox.dir().display()
        ))
    })?;
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    Ok(list
        .into_iter()
        .filter(|q| workspace.is_none_or(|w| q.entry.workspace == w))
        .map(|q| {
            let bytes = std::fs::metadata(q.payload()).map(|m| m.len()).unwrap_or(0);
            let e = q.entry;
            OutboxItem {
                kind: e.kind,
                queued_at: OffsetDateTime::from_unix_timestamp(e.created as i64)
                    .map(rfc3339)
                    .unwrap_or_default(),
                age_secs: now.saturating_sub(e.created),
                workspace: e.workspace,
                session: e.session,
                key: keys.relative(&e.key).to_owned(),
                bytes,
                last_error: e.last_error,
            }
        })
        .collect())
}

/// `12s`, `5m`, `3h`, `2d`: an age, roughly.
fn show_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Print `ccws outbox`.
pub fn print_outbox(json: bool, items: &[OutboxItem]) -> Result<(), CliError> {
    if json {
        return output::json(&serde_json::json!({ "entries": items }));
    }
    if items.is_empty() {
        output::say("the outbox is empty: everything reached the store");
        return Ok(());
    }
    output::line(&format!(
        "{:<10}  {:>10}  {:>5}  {:<40}  LAST ERROR",
        "KIND", "SIZE", "AGE", "KEY"
    ))?;
    for i in items {
        output::line(&format!(
            "{:<10}  {:>10}  {:>5}  {:<40}  {}",
            i.kind.describe(),
            HumanBytes(i.bytes).to_string(),
            show_age(i.age_secs),
            i.key,
            i.last_error
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        assert!(parse_age("30").unwrap_err().contains("30d"));
        assert!(parse_age("d").is_err());
        assert!(parse_age("3y").unwrap_err().contains("no unit"));
        assert!(parse_age("").is_err());
        assert!(parse_age("99999999999999999999w").is_err());
    }

    #[test]
    fn times_are_rfc3339_to_the_second() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
            + time::Duration::milliseconds(250);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
