//! The workspace commands (`workspace status`, `check`, `update`, `reset`,
//! `download`, `backups`) and `hand`: what a participant does from their
//! pages, for the organiser over SSH (docs/workspace.md, docs/pages.md).

use super::*;

/// The `[workspace]` section, or exit 2 saying there is none.
pub(super) fn workspace_config(config: &Path) -> Result<(Config, WorkspaceConfig)> {
    let cfg = lenient_config(config)?;
    match cfg.workspace.clone() {
        Some(w) => Ok((cfg, w)),
        None => Err(Exit::new(
            exit::USAGE,
            format!("{}: no [workspace] section: there are no materials to manage", config.display()),
        )
        .into()),
    }
}

pub(super) fn workspace_status(config: &Path, json: bool) -> Result<()> {
    let (cfg, w) = workspace_config(config)?;
    let Some(record) = crate::workspace::pending(&cfg.state_dir)? else {
        return Err(Exit::new(
            exit::NO_STATE,
            format!("{} has not been fetched yet: jupyter-agent run", w.path.display()),
        )
        .into());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&record).expect("serializable"));
    } else {
        print!("{}", crate::cli::render::workspace(&w, &record));
    }
    Ok(())
}

/// How long `workspace reset` waits for Jupyter to be back after a reset
/// through the agent.
const RESET_READY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `workspace reset`: through the running agent when one answers (the
/// container is re-created on the fresh copy), else the files alone.
pub(super) fn workspace_reset(config: &Path) -> Result<()> {
    let (cfg, w) = workspace_config(config)?;
    let rt = runtime()?;
    if let Some(before) = rt.block_on(crate::client::running(&cfg, true))? {
        return workspace_reset_through_agent(&rt, &cfg, &w, &before);
    }
    let reset = rt.block_on(crate::workspace::reset(&w, &cfg.state_dir))?;
    println!(
        "your copy was moved to {}; {} now holds {}.\nRestart the agent (systemctl restart jupyter-agent, or jupyter-agent run) to restart Jupyter on it.",
        reset.aside.display(),
        w.path.display(),
        reset.identity
    );
    Ok(())
}

/// The `[workspace]` section of a copy the agent fetched, or exit 4.
pub(super) fn fetched_workspace(config: &Path) -> Result<(Config, WorkspaceConfig)> {
    let (cfg, w) = workspace_config(config)?;
    if crate::workspace::pending(&cfg.state_dir)?.is_none() {
        let message = format!("{} has not been fetched yet: jupyter-agent run", w.path.display());
        return Err(Exit::new(exit::NO_STATE, message).into());
    }
    Ok((cfg, w))
}

pub(super) fn workspace_update(config: &Path, json: bool) -> Result<()> {
    let (cfg, w) = fetched_workspace(config)?;
    let updated = runtime()?.block_on(crate::workspace::update(&w, &cfg.state_dir))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&updated).expect("serializable"));
    } else {
        print!("{}", render_update(&w.path, &updated, false));
    }
    Ok(())
}

pub(super) fn workspace_check(config: &Path, json: bool) -> Result<()> {
    let (cfg, w) = fetched_workspace(config)?;
    let checked = runtime()?.block_on(crate::workspace::check(&w, &cfg.state_dir))?;
    match (checked, json) {
        (checked, true) => println!("{}", serde_json::to_string_pretty(&checked).expect("serializable")),
        (Some(checked), false) => print!("{}", render_update(&w.path, &checked, true)),
        (None, false) => println!("{} is up to date with its source: nothing to take", w.path.display()),
    }
    Ok(())
}

/// The human form of `workspace update` (and, `preview`, of `workspace check`).
pub(super) fn render_update(path: &Path, u: &crate::workspace::Updated, preview: bool) -> String {
    if u.up_to_date {
        return format!("{} is up to date with {} ({}): nothing to take\n", path.display(), u.source, u.to);
    }
    let mut out = if preview {
        format!(
            "{} moved from {} to {}; jupyter-agent workspace update would do this in {}:\n",
            u.source,
            u.from,
            u.to,
            path.display()
        )
    } else {
        format!("updated {} from {} to {} ({}):\n", path.display(), u.from, u.to, u.source)
    };
    for (label, text) in u.changes() {
        out.push_str(&format!("  {label}: {text}\n"));
    }
    if !u.changes_files() {
        out.push_str("  no file changes\n");
    }
    if !preview {
        out.push_str("Jupyter keeps running on the same copy: reopen a file to see its new version.\n");
    }
    out
}

/// The reset by the running agent (`POST /v1/workspace/reset`), then the
/// wait until Jupyter is back, and whether its URL is the one from before.
pub(super) fn workspace_reset_through_agent(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    w: &WorkspaceConfig,
    before: &State,
) -> Result<()> {
    let reset = rt.block_on(crate::client::reset(cfg))?;
    println!(
        "your copy was moved to {}; {} now holds {}.\nThe agent re-creates Jupyter on it (running kernels are gone)...",
        reset.aside.display(),
        w.path.display(),
        reset.identity
    );
    let _ = std::io::stdout().flush();
    let (state, timed_out) = rt.block_on(crate::client::wait(cfg, RESET_READY_TIMEOUT))?;
    match state.phase {
        Phase::Ready => {
            let after = rt.block_on(crate::client::running(cfg, true))?;
            let url = |s: Option<&State>| s.and_then(|s| s.jupyter.as_ref()).map(|j| j.url.clone());
            match (url(Some(before)), url(after.as_ref())) {
                (Some(old), Some(new)) if old == new => {
                    println!("Jupyter is back on the same URL: {}", jupyter_proto::redact::redact(&new))
                }
                (Some(_), _) => println!("Jupyter is back, on a new URL: jupyter-agent url prints it"),
                (None, _) => println!("Jupyter is ready: jupyter-agent url prints its URL"),
            }
            Ok(())
        }
        Phase::Failed => {
            let failure = state.failure();
            Err(Exit::new(
                exit::FAILED,
                format!(
                    "the copy was reset, but Jupyter did not come back: {}: {}; see jupyter-agent status",
                    failure.step, failure.cause
                ),
            )
            .into())
        }
        phase if timed_out => Err(Exit::new(
            exit::TIMED_OUT,
            format!(
                "Jupyter is not back after {} (phase: {phase}); see jupyter-agent status",
                jupyter_proto::duration::show(RESET_READY_TIMEOUT)
            ),
        )
        .into()),
        phase => {
            Err(Exit::new(exit::FAILED, format!("Jupyter is not back (phase: {phase}); see jupyter-agent status"))
                .into())
        }
    }
}

/// `hand raise` and `hand lower`, through the running agent.
pub(super) fn hand(config: &Path, command: HandCommand) -> Result<()> {
    let cfg = lenient_config(config)?;
    let (raise, message, json) = match &command {
        HandCommand::Raise { message, json } => (true, message.as_deref(), *json),
        HandCommand::Lower { json } => (false, None, *json),
    };
    if raise {
        // Refused here before anything is asked (the agent checks it again).
        crate::actions::HandChange::raise(message).map_err(|e| Exit::new(exit::USAGE, format!("--message: {e}")))?;
    }
    let hand = runtime()?.block_on(crate::client::hand(&cfg, raise, message))?;
    if json {
        println!("{}", serde_json::json!({ "hand": hand }));
    } else {
        match &hand {
            Some(h) => print!("{}", crate::cli::render::hand(h)),
            None => println!("the hand is lowered"),
        }
    }
    Ok(())
}

/// `workspace download`: the workspace (or a backup) as a zip into `out`
/// (a file, a directory, or `-` for stdout), through a temporary file
/// renamed when complete.
pub(super) fn workspace_download(config: &Path, out: &Path, backup: Option<&str>) -> Result<()> {
    use crate::workspace::download::{file_name, find_backup, write_zip, Exclude};
    let (cfg, w) = workspace_config(config)?;
    let root = match backup {
        None => w.path.clone(),
        Some(name) => match find_backup(&w, name)? {
            Some(b) => b.path,
            None => {
                return Err(Exit::new(
                    exit::USAGE,
                    format!(
                        "--backup {name}: no such copy beside {}; jupyter-agent workspace backups lists them",
                        w.path.display()
                    ),
                )
                .into())
            }
        },
    };
    if !root.is_dir() {
        return Err(Exit::new(exit::NO_STATE, format!("{} does not exist: nothing to download", root.display())).into());
    }
    let exclude = Exclude::for_workspace(&cfg)?;
    let name = file_name(&root, chrono::Local::now().date_naive());
    if out == Path::new("-") {
        let stdout = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&stdout) {
            return Err(Exit::new(
                exit::USAGE,
                "--out -: stdout is a terminal; redirect it (> file.zip) or give --out a file or a directory",
            )
            .into());
        }
        let summary = write_zip(&root, &exclude, std::io::BufWriter::with_capacity(1 << 18, stdout))?;
        eprintln!("{}", downloaded(&root, "stdout", &summary));
        return Ok(());
    }
    let target = if out.is_dir() { out.join(&name) } else { out.to_path_buf() };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let dir = dir.canonicalize().with_context(|| format!("--out {}: its directory", out.display()))?;
    // An archive growing inside the tree it archives would archive itself.
    if dir.starts_with(root.canonicalize().with_context(|| format!("reading {}", root.display()))?) {
        return Err(Exit::new(
            exit::USAGE,
            format!("--out {}: inside {}, which it archives; choose a place outside it", out.display(), root.display()),
        )
        .into());
    }
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    // tempfile creates it 0600: the participant's work, maybe with secrets of their own.
    let summary = write_zip(&root, &exclude, std::io::BufWriter::new(part.as_file_mut()))?;
    part.as_file().sync_all().with_context(|| format!("writing {}", target.display()))?;
    part.persist(&target).with_context(|| format!("writing {}", target.display()))?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    eprintln!("{}", downloaded(&root, &target.display().to_string(), &summary));
    Ok(())
}

/// What `workspace download` tells on stderr.
pub(super) fn downloaded(root: &Path, to: &str, s: &crate::workspace::download::Summary) -> String {
    let mut text = format!(
        "wrote {} as a zip to {to}: {} files ({} bytes), {} directories, {} links; {} bytes of zip; {} left out",
        root.display(),
        s.files,
        s.bytes,
        s.directories,
        s.links,
        s.archive_bytes,
        s.excluded
    );
    for skipped in &s.skipped {
        text.push_str(&format!("\nnot archived: {}: {}", skipped.path, skipped.why));
    }
    text
}

/// `workspace backups`: the copies a reset moved aside, newest first.
pub(super) fn workspace_backups(config: &Path, json: bool) -> Result<()> {
    let (_, w) = workspace_config(config)?;
    let list = crate::workspace::download::backups(&w)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serializable"));
    } else if list.is_empty() {
        println!("no copies moved aside beside {} (workspace reset makes them)", w.path.display());
    } else {
        for b in &list {
            let at = b.taken_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into());
            println!("{}  {at}  {} bytes", b.name, b.size);
        }
    }
    Ok(())
}
