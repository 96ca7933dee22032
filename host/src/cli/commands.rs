//! What each command does.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use ccws::archive::{Archiver, Limits, PackOptions, Report, SandboxConfig, UnpackOptions};
use ccws::config::{self, Overrides, StoreSettings};
use ccws::s3::{PutCondition, S3Client};
use ccws::store::{LocalStore, Store};
use ccws::workspace::{Keys, Outbox, Owner, Session, TeardownReport, WorkspaceConfig, Workspaces};

use super::args::{Cli, Command, Global, SessionArgs};
use super::error::CliError;
use super::output::{self, say};
use super::report::{ReportSink, RunRecord, EXIT_QUEUED};
use super::{ops, progress};

/// Run the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    let g = &cli.global;
    match cli.command {
        Command::Run {
            session,
            command,
            pass_aws_env,
            agent_user,
            report,
            strict,
        } => {
            let user = agent_user.as_deref().map(AgentUser::lookup).transpose()?;
            // Opened first: a report that cannot be written fails the
            // turn before it starts.
            let sink = report.as_deref().map(ReportSink::open).transpose()?;
            let mut rec = RunRecord::new(&session.workspace, &session.session);
            let res = run_turn(g, &session, &command, pass_aws_env, user.as_ref(), &mut rec).await;
            rec.finish(res, strict, sink)
        }
        Command::Setup { session, owner_pid } => {
            let ws = workspaces(g)?;
            let owner = Owner::of(owner_pid.unwrap_or_else(std::os::unix::process::parent_id));
            let pb = progress::activity(&format!("setting up session {}", session.session));
            let w = ws.setup(&session.workspace, &session.session, owner).await;
            pb.finish_and_clear();
            let w = w?;
            // The output is the hand-over: a caller that never got it
            // cannot use the session, so it is torn down again.
            if let Err(e) = output::write_strict(&setup_output(g, &w)) {
                let undone = match ws.teardown(&session.workspace, &session.session).await {
                    Ok(_) => "the session was torn down again".to_owned(),
                    Err(t) => format!("tearing the session down again failed too: {t}"),
                };
                return Err(CliError::Output(std::io::Error::new(
                    e.kind(),
                    format!("{e}; the session's paths never reached the caller, so {undone}"),
                )));
            }
            Ok(0)
        }
        Command::Teardown { session } => {
            let ws = workspaces(g)?;
            let pb = progress::activity(&format!("saving session {}", session.session));
            let r = ws.teardown(&session.workspace, &session.session).await;
            pb.finish_and_clear();
            let r = r?;
            if g.json {
                output::json(&r)?;
            } else {
                note_teardown(&r);
            }
            // Safely queued, but not delivered yet: the documented 75.
            Ok(if r.delivered() { 0 } else { EXIT_QUEUED })
        }
        Command::Flush { workspace } => {
            let ws = workspaces(g)?;
            let r = ws.flush(workspace.as_deref()).await?;
            if g.json {
                output::json(&r)?;
            } else {
                say(&format!(
                    "delivered {}, still queued {}",
                    r.delivered, r.remaining
                ));
                for e in &r.errors {
                    say(&format!("  {e}"));
                }
            }
            Ok(if r.remaining == 0 { 0 } else { EXIT_QUEUED })
        }
        Command::Ls { workspace, listing } => {
            let store = store(g)?;
            let keys = Keys::new(&g.prefix());
            match workspace {
                None => {
                    let list = ops::list_workspaces(&store, &keys, listing.page_size).await?;
                    ops::print_workspaces(g.json, &list)?;
                }
                Some(w) => {
                    let l = ops::list_workspace(&store, &keys, &w, listing.page_size).await?;
                    ops::print_workspace(g.json, &l)?;
                }
            }
            Ok(0)
        }
        Command::Rm {
            workspace,
            session,
            yes,
            listing,
        } => {
            let store = store(g)?;
            let keys = Keys::new(&g.prefix());
            let r = ops::remove(
                &store,
                &keys,
                &outbox(g),
                &workspace,
                session.as_deref(),
                yes,
                listing.page_size,
            )
            .await?;
            match r {
                Some(r) => ops::print_removal(g.json, &r),
                // Not confirmed (already said).
                None => Ok(1),
            }
        }
        Command::Gc {
            older_than,
            dry_run,
            workspace,
            listing,
        } => {
            let store = store(g)?;
            let keys = Keys::new(&g.prefix());
            let r = ops::gc(
                &store,
                &keys,
                &outbox(g),
                workspace.as_deref(),
                older_than,
                dry_run,
                listing.page_size,
            )
            .await?;
            ops::print_gc(g.json, &r)
        }
        Command::Outbox { workspace } => {
            let items =
                ops::outbox_items(&outbox(g), &Keys::new(&g.prefix()), workspace.as_deref())?;
            ops::print_outbox(g.json, &items)?;
            Ok(0)
        }
        Command::Get { key, dest } => get(g, &key, &dest).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ccws", &mut script);
            output::write(&script)?;
            Ok(0)
        }
        Command::Man { dir } => {
            let cmd = Cli::command();
            match dir {
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(cmd)
                        .render(&mut page)
                        .map_err(|e| CliError::Other(format!("rendering the manual page: {e}")))?;
                    output::write(&page)?;
                }
                Some(dir) => {
                    clap_mangen::generate_to(cmd, &dir)
                        .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
                    say(&format!("wrote the manual pages to {}", dir.display()));
                }
            }
            Ok(0)
        }
        Command::Put {
            src,
            key,
            if_match,
            if_none_match,
        } => {
            let store = store(g)?;
            let full = Keys::new(&g.prefix()).object(&key);
            let cond = match (if_match, if_none_match) {
                (Some(e), _) => PutCondition::IfMatch(e),
                (None, true) => PutCondition::IfNoneMatchAny,
                (None, false) => PutCondition::None,
            };
            // The library's upload of a file: one PUT, or parts in
            // parallel, a conflicting multipart upload sent again.
            let file = std::fs::File::open(&src)
                .map_err(|e| CliError::Other(format!("{}: {e}", src.display())))?;
            let pb = progress::activity(&format!("put {key}"));
            let meta = store.put_opened(file, &full, cond).await;
            pb.finish_and_clear();
            let meta = meta?;
            if g.json {
                output::json(
                    &serde_json::json!({"key": key, "size": meta.size, "etag": meta.etag}),
                )?;
            } else {
                say(&format!(
                    "uploaded {key} ({} bytes, etag {})",
                    meta.size,
                    meta.etag.unwrap_or_default()
                ));
            }
            Ok(0)
        }
        Command::Pack {
            dir,
            archive,
            exclude,
            level,
        } => {
            let a = archiver()?;
            let r = a
                .pack_file(
                    &dir,
                    &archive,
                    &PackOptions {
                        level,
                        exclude,
                        ..PackOptions::default()
                    },
                    None,
                )
                .await?;
            print_report(g, "packed", &r)?;
            Ok(0)
        }
        Command::Unpack {
            archive,
            dir,
            exclude,
            max_entries,
            max_total_bytes,
            max_file_bytes,
            max_ratio,
        } => {
            let a = archiver()?;
            let d = Limits::default();
            let limits = Limits {
                max_entries: max_entries.unwrap_or(d.max_entries),
                max_total_bytes: max_total_bytes.unwrap_or(d.max_total_bytes),
                max_file_bytes: max_file_bytes.unwrap_or(d.max_file_bytes),
                max_inflate_ratio: max_ratio,
                ..d
            };
            let r = a
                .unpack_file(&archive, &dir, &UnpackOptions { limits, exclude }, None)
                .await?;
            print_report(g, "unpacked", &r)?;
            Ok(0)
        }
        Command::Component { out, plain } => {
            let wasm = if plain {
                ccws::archive::plain_component_wasm().ok_or_else(|| {
                    CliError::Usage(
                        "this ccws was built without the plain component; build it with \
                         `--features plain-component` (e.g. `cargo install --path host \
                         --features plain-component`) to write one"
                            .into(),
                    )
                })?
            } else {
                ccws::archive::COMPONENT_WASM
            };
            if out == Path::new("-") {
                output::write(wasm)?;
            } else {
                std::fs::write(&out, wasm)
                    .map_err(|e| CliError::Other(format!("{}: {e}", out.display())))?;
                say(&format!("wrote {} ({} bytes)", out.display(), wasm.len()));
            }
            Ok(0)
        }
    }
}

/// `ccws run`: setup, the agent, teardown — on every exit path.
async fn run_turn(
    g: &Global,
    s: &SessionArgs,
    command: &[String],
    pass_aws_env: bool,
    user: Option<&AgentUser>,
    rec: &mut RunRecord,
) -> Result<u8, CliError> {
    use tokio::signal::unix::{signal, SignalKind};

    // (ccws is already not dumpable: main does that first, for every command.)
    let ws = workspaces(g)?;
    let pb = progress::activity(&format!("setting up session {}", s.session));
    let w = ws
        .setup(&s.workspace, &s.session, Owner::of(std::process::id()))
        .await;
    pb.finish_and_clear();
    let w = w?;
    tracing::info!(dir = %w.layout.temp_dir.display(), "workspace ready");
    rec.setup = Some(w.report.clone());
    if let Some(user) = user {
        if let Err(e) = user.hand_over(&w.layout.temp_dir) {
            let _ = ws.teardown(&s.workspace, &s.session).await;
            return Err(CliError::Other(format!(
                "handing the session tree to user {:?}: {e}",
                user.name
            )));
        }
    }

    // Listen before spawning so no signal slips between the two.
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| CliError::Other(format!("signals: {e}")))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| CliError::Other(format!("signals: {e}")))?;
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]).current_dir(&w.layout.project_dir);
    // Its own process group: whatever it leaves running in the background
    // is ended with it, before teardown reads the tree.
    cmd.process_group(0);
    for (k, v) in w.env() {
        cmd.env(k, v);
    }
    if let Some(user) = user {
        cmd.uid(user.uid).gid(user.gid);
        cmd.env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    cmd.env(
        "CCWS_SESSION_NEW",
        if w.report.transcript == ccws::workspace::TranscriptSource::New {
            "1"
        } else {
            "0"
        },
    );
    // The agent is not trusted with the store's credentials: main wiped them
    // from ccws's own environment, which the agent inherits.
    for k in config::CREDENTIAL_VARS {
        cmd.env_remove(k);
    }
    if pass_aws_env {
        let env = config::process_env();
        for k in config::CREDENTIAL_VARS {
            if let Some(v) = env.get(*k) {
                cmd.env(k, v);
            }
        }
    }
    let code = match cmd.spawn() {
        Err(e) => {
            say(&format!("ccws: cannot run {:?}: {e}", command[0]));
            127
        }
        Ok(mut child) => {
            let pid = child.id();
            let code = loop {
                tokio::select! {
                    status = child.wait() => {
                        break match status {
                            Ok(st) => exit_status_code(st),
                            Err(e) => {
                                say(&format!("ccws: waiting for the agent: {e}"));
                                1
                            }
                        };
                    }
                    _ = sigint.recv() => forward(pid, libc::SIGINT),
                    _ = sigterm.recv() => forward(pid, libc::SIGTERM),
                }
            };
            if let Some(pid) = pid {
                end_group(pid).await;
            }
            code
        }
    };
    rec.agent_exit_code = Some(code);
    let pb = progress::activity(&format!("saving session {}", s.session));
    let torn_down = ws.teardown(&s.workspace, &s.session).await;
    pb.finish_and_clear();
    match torn_down {
        Ok(r) => {
            note_teardown(&r);
            rec.teardown = Some(r);
        }
        Err(e) => {
            say(&format!("ccws: teardown: {e}"));
            let e = CliError::from(e);
            if code == 0 {
                return Err(e);
            }
            rec.teardown_error = Some(e);
        }
    }
    Ok(code)
}

/// The user `ccws run --agent-user` runs the agent as.
struct AgentUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl AgentUser {
    /// Look `user` (a name or a uid) up in the password database; only root
    /// may switch to it.
    fn lookup(user: &str) -> Result<AgentUser, CliError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(CliError::Usage(format!(
                "--agent-user {user}: only root can run the agent as another user; run ccws as root, or leave the option out"
            )));
        }
        let c = std::ffi::CString::new(user)
            .map_err(|_| CliError::Usage(format!("--agent-user {user:?}: not a user name")))?;
        // SAFETY: getpwnam/getpwuid return a pointer into static storage (or
        // NULL), read at once on this thread before any other lookup.
        let pw = unsafe {
            let by_name = libc::getpwnam(c.as_ptr());
            match (by_name.is_null(), user.parse::<u32>()) {
                (true, Ok(uid)) => libc::getpwuid(uid),
                _ => by_name,
            }
        };
        if pw.is_null() {
            return Err(CliError::Usage(format!(
                "--agent-user {user}: no such user in the password database"
            )));
        }
        // SAFETY: `pw` is non-NULL and its strings are NUL-terminated.
        let (name, uid, gid, home) = unsafe {
            let p = &*pw;
            (
                std::ffi::CStr::from_ptr(p.pw_name)
                    .to_string_lossy()
                    .into_owned(),
                p.pw_uid,
                p.pw_gid,
                PathBuf::from(
                    std::ffi::CStr::from_ptr(p.pw_dir)
                        .to_string_lossy()
                        .into_owned(),
                ),
            )
        };
        if uid == 0 {
            return Err(CliError::Usage(format!(
                "--agent-user {user}: that is root; name an unprivileged user"
            )));
        }
        Ok(AgentUser {
            name,
            uid,
            gid,
            home,
        })
    }

    /// Give the session tree to this user (nothing in it is followed: it is
    /// ccws's fresh tree), and let it pass through `cc-broker/` to reach it.
    fn hand_over(&self, tree: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let broker = tree.parent().unwrap_or(tree);
        // Every directory above cc-broker must let others pass through.
        for dir in broker.ancestors().skip(1) {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o001 == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "user {:?} cannot pass through {} (mode {:o}); allow others to \
                         search it (chmod o+x) or choose a --temp-dir they can reach",
                        self.name,
                        dir.display(),
                        mode & 0o7777
                    ),
                ));
            }
        }
        std::fs::set_permissions(broker, std::fs::Permissions::from_mode(0o711))?;
        fn walk(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    walk(&e.path(), uid, gid)?;
                } else {
                    std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
                }
            }
            Ok(())
        }
        walk(tree, self.uid, self.gid)
    }
}

fn forward(pid: Option<u32>, sig: libc::c_int) {
    if let Some(pid) = pid {
        tracing::info!(pid, sig, "forwarding signal to the agent's process group");
        // SAFETY: signalling the process group our child leads.
        unsafe {
            libc::kill(-(pid as libc::pid_t), sig);
        }
    }
}

/// How long the agent's leftover processes get between SIGTERM and SIGKILL.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// End whatever is left of the agent's process group (led by `pgid`, the
/// agent itself, already reaped): SIGTERM, up to [`GRACE`] to exit, then
/// SIGKILL, and wait until the group is empty, so that teardown reads a tree
/// nothing of the agent's still writes. (A process that left the group,
/// with `setsid`, is out of reach: teardown packs the tree once into ccws's
/// own directory, so a late write changes nothing it sends.)
async fn end_group(pgid: u32) {
    let pgid = pgid as libc::pid_t;
    // SAFETY (all three): kill on a process group of our own making.
    let alive = || unsafe { libc::kill(-pgid, 0) } == 0;
    if !alive() {
        return;
    }
    tracing::info!(pgid, "ending the agent's leftover processes");
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = tokio::time::Instant::now() + GRACE;
    while alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if alive() {
        tracing::warn!(
            pgid,
            "the agent's leftover processes ignored SIGTERM; killing them"
        );
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let deadline = tokio::time::Instant::now() + GRACE;
        while alive() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn exit_status_code(st: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

async fn get(g: &Global, key: &str, dest: &Path) -> Result<u8, CliError> {
    let store = store(g)?;
    let full = Keys::new(&g.prefix()).object(key);
    if dest != Path::new("-") {
        // The library's download into a file: ranges in parallel, each
        // resumed where it broke, written beside the file and renamed.
        let pb = progress::activity(&format!("get {key}"));
        let meta = store.download_file(&full, dest).await;
        pb.finish_and_clear();
        let meta = meta?;
        if g.json {
            output::json(&serde_json::json!({"key": key, "size": meta.size, "etag": meta.etag}))?;
        }
        return Ok(0);
    }
    let obj = store.get(&full).await?;
    let pb = progress::bar(&format!("get {key}"), Some(obj.meta.size));
    let mut body = pb.wrap_async_read(obj.body);
    // The object is the output: no JSON after it.
    let mut out = tokio::io::stdout();
    let copied = async {
        tokio::io::copy(&mut body, &mut out).await?;
        tokio::io::AsyncWriteExt::flush(&mut out).await
    };
    match copied.await {
        Ok(_) => {}
        // The reader went away: the output ends, quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(CliError::Other(format!("downloading {key}: {e}"))),
    }
    pb.finish_and_clear();
    Ok(0)
}

fn archiver() -> Result<Archiver, CliError> {
    Ok(Archiver::new(SandboxConfig::default())?)
}

fn store(g: &Global) -> Result<Store, CliError> {
    let env = config::process_env();
    let o = Overrides {
        bucket: g.bucket.clone().filter(|b| !b.is_empty()),
        endpoint: g.endpoint.clone(),
        region: g.region.clone(),
        profile: g.profile.clone(),
        path_style: g.path_style,
        local_store: g.local_store.clone(),
        sse: g.sse.clone(),
        sse_kms_key_id: g.sse_kms_key_id.clone(),
        storage_class: g.storage_class.clone(),
    };
    Ok(match config::resolve_store(&o, &env)? {
        StoreSettings::S3(c) => Store::S3(S3Client::new(*c).map_err(config::SettingsError::from)?),
        StoreSettings::Local(dir) => Store::Local(LocalStore::open(dir)?),
    })
}

/// ccws's durable state directory on this machine.
fn state_dir(g: &Global) -> PathBuf {
    g.state_dir()
}

/// This machine's outbox (as [`Workspaces`] keeps it), without a store.
fn outbox(g: &Global) -> Outbox {
    Outbox::new(state_dir(g).join("outbox"))
}

fn workspaces(g: &Global) -> Result<Workspaces, CliError> {
    let store = store(g)?;
    let mut cfg = WorkspaceConfig::new(state_dir(g));
    cfg.temp_base = g.temp_dir();
    cfg.keys = Keys::new(&g.prefix());
    let days = g.cleanup_days()?;
    cfg.cleanup.max_age =
        (days > 0).then(|| std::time::Duration::from_secs(days.saturating_mul(24 * 3600)));
    tracing::debug!(store = %store.describe(), "using store");
    Ok(Workspaces::new(store, archiver()?, cfg))
}

/// What `setup` prints: the session as JSON, or shell `export` lines.
fn setup_output(g: &Global, w: &Session) -> Vec<u8> {
    if g.json {
        return output::json_line(w);
    }
    // Shell syntax, so a broker can `eval "$(ccws setup ...)"`.
    let mut text = String::new();
    for (k, v) in w.env() {
        let quoted = v.to_string_lossy().replace('\'', "'\\''");
        text.push_str(&format!("export {k}='{quoted}'\n"));
    }
    text.into_bytes()
}

/// Say on stderr what a teardown left queued.
fn note_teardown(r: &TeardownReport) {
    // A refused transcript was already reported by teardown's warning.
    let status = |d: &ccws::workspace::Delivery| {
        serde_json::to_value(d)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    tracing::info!(
        transcript = status(&r.transcript),
        state = status(&r.state),
        home = status(&r.home),
        "teardown done"
    );
    if !r.delivered() {
        say("ccws: some uploads are queued in the outbox (they failed, or wait behind older ones); `ccws flush` or the next setup will deliver them");
    }
}

/// A skipped entry's reason as the snake_case word `--json` uses.
fn skip_reason(r: ccws::archive::SkipReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_report(g: &Global, verb: &str, r: &Report) -> Result<(), CliError> {
    if g.json {
        return output::json(r);
    }
    say(&format!(
        "{verb} {} files, {} dirs, {} bytes",
        r.files, r.dirs, r.bytes
    ));
    for s in &r.skipped {
        say(&format!(
            "  skipped {} ({}) {}",
            s.path,
            skip_reason(s.reason),
            s.detail
        ));
    }
    Ok(())
}
