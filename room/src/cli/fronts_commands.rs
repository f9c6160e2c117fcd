//! `jupyter-room watch`, `collect` and `update`: the participants' fronts
//! (src/fronts.rs, docs/room.md#watch-collect-update). Each starts from a
//! Snapshot of the room; by its name, or from saved GetStack answers
//! (FILE...).

use super::*;

pub(super) const INPUTS_HELP: &str = "\
The room: its name (one argument that is no file: its stacks are found by their tag through the aliyun \
CLI, each round, and a participant's front is their instance's public address), or one or more saved \
`aliyun ros GetStack` answers (or any input `show` reads, see jupyter-room --help), one per stack of the \
room, where a participant's front is their login URL's scheme://host:port once ready; - reads stdin.";

pub(super) const WATCH_ABOUT: &str = "\
A live view of the room, per participant: where the setup is (the stack's status while it is created; \
then the instance's own progress from its front's /_agent/progress: phase, step, percentage), who is \
ready, who failed and why (the step and the reason their setup signalled), who cannot be reached, and \
raised hands with their message.

Every front is asked at once (at most 256 in flight; 1 s to connect, 1.5 s to answer), so a round over \
a room of 200 ends within 2 s; an instance that does not answer is shown as unreachable, with why. The \
progress carries no secret and no token is sent: any certificate is accepted for it.

On a terminal the table is redrawn in place every --interval, like top; Ctrl-C ends. With --html FILE \
the same rows are written (atomically, each round) as a page that reloads itself, for a projector: it \
holds no token (mode 0644). The saved answers are read again each round: save them again to show a \
later state of the stacks.";

pub(super) const WATCH_EXIT_CODES: &str = "\
Exit codes:
  0  --once: every participant is ready (or Ctrl-C ended the view)
  1  --once: some participant is not ready (setting up, failed, unreachable, waiting)
  2  bad command line or input: nothing was written
  4  --html: the page could not be written";

pub(super) const COLLECT_ABOUT: &str = "\
Downloads every ready participant's work through their own \"download my work\": GET \
<front>/_agent/download with `Authorization: token <their token>` (from their login URL; the token is \
in no argument, log line or file), one zip per participant as DIR/<participant>.zip (written to \
<participant>.zip.part, then renamed once complete), and an index, DIR/index.csv:

  participant,file,size,sha256,time,error

(size in bytes, SHA-256 in hex, time in UTC; for a participant not collected the file, size and \
sha256 are empty and error says why). The index is rewritten after each participant.

Resumable: a participant listed in the index whose archive in DIR still has that size and SHA-256 is \
skipped (--again collects them anew). A participant who is not ready, cannot be reached, refuses the \
token or whose download breaks off is listed with the reason, and the others go on.

Certificates: the token is sent only to a front whose certificate the system trusts for its address \
(an ACME certificate), or whose SHA-256 fingerprint is the one the participant's setup reported in the \
input (the ready signal's note, for a self-signed certificate); --insecure sends it to any (a machine \
in the middle could then take the tokens). A front with TLS off gets it in the clear, as the login \
link does.

Afterwards the room's record of collected work (for `down`) lists who was collected.";

pub(super) const COLLECT_EXIT_CODES: &str = "\
Exit codes:
  0  every participant's work is in DIR (collected now or before)
  1  some participant's is not (not ready, unreachable, refused, broken off): the index says why
  2  bad command line or input, or DIR is not a directory: nothing was asked
  4  the index could not be written";

pub(super) const UPDATE_ABOUT: &str = "\
Asks every ready participant's agent to take the organiser's fixes (the materials' new version, merged \
with the participant's copy as the update page does): POST <front>/_agent/update with body \
confirm=yes, `Authorization: token <their token>` and `Accept: application/json`. Shows per \
participant: updated (how many files, and each file of theirs kept, the new version beside it), up to \
date, under way (the agent takes longer than 40 s and goes on), not ready, unreachable, or failed and \
why. Certificates as for collect (see jupyter-room collect --help).";

pub(super) const UPDATE_EXIT_CODES: &str = "\
Exit codes:
  0  every participant updated, was up to date, or is updating
  1  some participant was not ready, unreachable, or failed
  2  bad command line or input: nothing was asked";

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(value_name = "FILE", required = true, help = INPUTS_HELP)]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// Write the view as a self-refreshing HTML page here (mode 0644: it holds no token), each round.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// One round, printed, then exit (the exit code says whether everyone is ready).
    #[arg(long)]
    pub once: bool,

    /// Time between rounds (at least 1s).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub interval: String,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[arg(value_name = "FILE", required = true, help = INPUTS_HELP)]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// The directory of the archives and the index (created, mode 0700, when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Downloads at once (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Collect again those whose archive is already complete in DIR.
    #[arg(long)]
    pub again: bool,

    /// Send the tokens to fronts whose certificate is neither trusted nor the reported one.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[arg(value_name = "FILE", required = true, help = INPUTS_HELP)]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// Agents asked at once (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// Send the tokens to fronts whose certificate is neither trusted nor the reported one.
    #[arg(long)]
    pub insecure: bool,
}

/// The room, by its name through the aliyun CLI (one argument that is
/// no file and is a room's name, as for `show`) or from saved answers:
/// the snapshot, and the certificate fingerprints the participants'
/// setups reported. `Err`: the exit code, after saying what is wrong.
pub fn load_snapshot(inputs: &[PathBuf], cloud: &CloudArgs) -> Result<(Snapshot, BTreeMap<String, [u8; 32]>), u8> {
    if let [only] = inputs {
        if let Source::Room(room) = source(Some(only), None) {
            let as_room = format!("{room}: no such file; read as the room {room}: ");
            let region = aliyun::region(cloud.region.as_deref()).map_err(|m| bad_input(&format!("{as_room}{m}")))?;
            let aliyun = Aliyun::new(cloud.aliyun.clone());
            let (snapshot, looks) = cloud::snapshot_looks(&aliyun, &region, &room).map_err(|e| {
                eprintln!("jupyter-room: {as_room}{e}");
                exit::CLOUD_FAILED
            })?;
            let mut fingerprints = BTreeMap::new();
            for look in &looks {
                for (who, fp) in fronts::fingerprints(&look.answer.to_string()) {
                    fingerprints.entry(who).or_insert(fp);
                }
            }
            return Ok((snapshot, fingerprints));
        }
    }
    load_saved(inputs).map_err(|message| bad_input(&message))
}

/// The room from saved answers.
pub(super) fn load_saved(inputs: &[PathBuf]) -> Result<(Snapshot, BTreeMap<String, [u8; 32]>), String> {
    let mut rooms = Vec::new();
    let mut fingerprints = BTreeMap::new();
    if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err("stdin (-) given more than once".into());
    }
    for path in inputs {
        let (name, text) = read_text(Some(path))?;
        let room = input::parse(&text).map_err(|e| format!("{name}: {e}"))?;
        for (who, fp) in fronts::fingerprints(&text) {
            fingerprints.entry(who).or_insert(fp);
        }
        rooms.push((name, room));
    }
    let name = room_name(&rooms);
    Ok((Snapshot::from_rooms(&name, &rooms), fingerprints))
}

/// The room's name from its stacks' (`handson-room-1` -> `handson-room`),
/// else the first input's file name without its extension.
pub(super) fn room_name(rooms: &[(String, Room)]) -> String {
    let stack = rooms.iter().find_map(|(_, r)| r.stack.as_ref()?.name.clone());
    if let Some(stack) = stack {
        return match stack.rsplit_once('-') {
            Some((base, n)) if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                base.to_string()
            }
            _ => stack,
        };
    }
    let first = rooms.first().map(|(n, _)| n.as_str()).unwrap_or("room");
    Path::new(first).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "room".into())
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

/// A note for fronts without TLS: the tokens cross the network as the
/// login links do.
pub(super) fn plain_http_note(seats: &[Seat]) {
    let plain = seats
        .iter()
        .filter(|s| s.token().is_some() && s.front.as_deref().is_some_and(|f| f.starts_with("http://")))
        .count();
    if plain > 0 {
        eprintln!(
            "jupyter-room: note: {plain} front(s) have TLS off (http://): their tokens cross the network \
             unencrypted, as their login links do"
        );
    }
}

pub(super) fn run_watch(args: &WatchArgs) -> u8 {
    let interval = match jupyter_proto::duration::parse(&args.interval) {
        Ok(d) if d >= std::time::Duration::from_secs(1) => d,
        Ok(_) => return bad_input(&format!("--interval {}: expected at least 1s", args.interval)),
        Err(e) => return bad_input(&format!("--interval {e}")),
    };
    let mut snapshot = match load_snapshot(&args.inputs, &args.cloud) {
        Ok((s, _)) => s,
        Err(code) => return code,
    };
    let terminal = io::stdout().is_terminal();
    runtime().block_on(async {
        let client = fronts::progress_client();
        let mut first = true;
        loop {
            let (probes, took) = fronts::probe_all(&client, &snapshot.seats).await;
            let rows = watch::rows(&snapshot, &probes);
            let headline = watch::headline(&snapshot, took, &watch::clock());
            if let Some(path) = &args.html {
                let page = watch::html(&headline, &rows, interval);
                if let Err(e) = jupyter_proto::fs::write_atomic(path, page.as_bytes(), 0o644) {
                    eprintln!("jupyter-room: cannot write {}: {e}", path.display());
                    return exit::NOT_WRITTEN;
                }
            }
            let table = watch::table(&headline, &rows);
            if args.once {
                write_stdout(&table);
                let all_ready = !rows.is_empty() && rows.iter().all(|r| r.setup == watch::Setup::Ready);
                return if all_ready { exit::ALL_READY } else { exit::NOT_ALL_READY };
            }
            if terminal {
                // Home, each line over the last frame's (its rest erased),
                // then everything below erased: no blank flash between frames.
                let ends = format!("every {}; Ctrl-C ends", jupyter_proto::duration::show(interval));
                let frame: String = format!("{table}{ends}").lines().map(|l| format!("{l}\x1b[K\n")).collect();
                let clear = if first { "\x1b[2J" } else { "" };
                write_stdout(&format!("{clear}\x1b[H{frame}\x1b[J"));
                first = false;
            } else if args.html.is_some() {
                write_stdout(&format!("{headline}: {}\n", watch::summary(watch::tally(&rows))));
            } else {
                write_stdout(&format!("{table}\n"));
            }
            tokio::select! {
                _ = tokio::time::sleep(interval.saturating_sub(took)) => {}
                _ = tokio::signal::ctrl_c() => return exit::ALL_READY,
            }
            // The saved answers again: the organiser may have saved newer
            // ones (stdin is read once).
            if args.inputs.iter().any(|p| p.as_os_str() == "-") {
                continue;
            }
            // A failure was said on stderr; the last room read stays on show.
            if let Ok((s, _)) = load_snapshot(&args.inputs, &args.cloud) {
                snapshot = s;
            }
        }
    })
}

pub(super) fn run_collect(args: &CollectArgs) -> u8 {
    let (snapshot, fingerprints) = match load_snapshot(&args.inputs, &args.cloud) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let dir = match collect::prepare(&args.out) {
        Ok(d) => d,
        Err(message) => return bad_input(&message),
    };
    plain_http_note(&snapshot.seats);
    let trust = fronts::Trust::pinned(args.insecure, &snapshot.seats, &fingerprints);
    let client = fronts::token_client(&trust, collect::CONNECT_TIMEOUT, collect::STALL_TIMEOUT, None);
    let progress = |o: &collect::Outcome| {
        let e = o.entry();
        let name = one_line(&e.participant);
        match o {
            collect::Outcome::Collected(_) => {
                eprintln!("jupyter-room: collected {name}: {} ({} bytes)", e.file, e.size.unwrap_or(0))
            }
            collect::Outcome::Skipped(_) => eprintln!("jupyter-room: {name}: already collected ({})", e.file),
            collect::Outcome::Missed(_) => eprintln!("jupyter-room: {name}: not collected: {}", e.error),
        }
    };
    let options =
        collect::Options { dir: &dir, parallel: usize::from(args.parallel), again: args.again, progress: &progress };
    let outcomes = match runtime().block_on(collect::collect(&client, &snapshot.seats, &options)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("jupyter-room: {message}");
            return exit::NOT_WRITTEN;
        }
    };
    let out = collect::table(&outcomes, &dir);
    let got: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o, collect::Outcome::Missed(_)))
        .map(|o| o.entry().participant.clone())
        .collect();
    let missed = outcomes.len() - got.len();
    write_stdout(&out);
    if got.is_empty() {
        // Nothing to record.
    } else if let Err(e) = collected::record(&snapshot.room, &got, &dir) {
        eprintln!("jupyter-room: note: could not record the collected work for `down`: {e}");
    }
    if missed == 0 && !outcomes.is_empty() {
        exit::ALL_READY
    } else {
        exit::NOT_ALL_READY
    }
}

pub(super) fn run_update(args: &UpdateArgs) -> u8 {
    let (snapshot, fingerprints) = match load_snapshot(&args.inputs, &args.cloud) {
        Ok(s) => s,
        Err(code) => return code,
    };
    plain_http_note(&snapshot.seats);
    let trust = fronts::Trust::pinned(args.insecure, &snapshot.seats, &fingerprints);
    let client =
        fronts::token_client(&trust, update::CONNECT_TIMEOUT, update::TOTAL_TIMEOUT, Some(update::TOTAL_TIMEOUT));
    let progress = |seat: &Seat, o: &update::Outcome| {
        eprintln!("jupyter-room: {}: {}", one_line(&seat.name), o.label());
    };
    let outcomes =
        runtime().block_on(update::update_all(&client, &snapshot.seats, usize::from(args.parallel), &progress));
    write_stdout(&update::table(&snapshot.seats, &outcomes));
    if !outcomes.is_empty() && outcomes.iter().all(update::Outcome::fine) {
        exit::ALL_READY
    } else {
        exit::NOT_ALL_READY
    }
}
