//! `jupyter-room up` and `down`, and `show`/`cards` of a room by its name:
//! the room in the cloud, through the organiser's aliyun CLI
//! (docs/room.md).

use super::*;

pub(super) const UP_ABOUT: &str = "\
Creates a whole room in one action, through the organiser's aliyun CLI (configured with `aliyun \
configure`, or Cloud Shell's own; jupyter-room never reads cloud credentials).

The participants file holds one name per line (# starts a comment): each a lowercase letter then up to \
19 lowercase letters or digits, each once; every bad name and repeat is named with its line number, and \
nothing is created. ROOM is a lowercase letter, then up to 39 lowercase letters, digits or single \
hyphens, not ending in a hyphen.

The names are split into stacks of at most --per-stack (30 at most: ROS allows 200 resources per stack, \
and the room template keeps a margin below it; docs/room.md), as even as they can be, named ROOM-1, \
ROOM-2, ... Each is one `aliyun ros CreateStack` of the room template built into this binary \
(`jupyter-room template` prints it), with its own Participants, the --parameter values, and the tag \
jupyter-room=ROOM; at most 5 are created at once (ROS allows 50 concurrent stack operations per \
account). Every later command finds the room's stacks by that tag.

A stack of the room that already exists (found by the tag) is not created again: after a partial \
failure, run `up` again and only the missing stacks are created. A stack that exists with other \
participants than the file now gives it is refused: delete the room (`jupyter-room down`) or use \
another ROOM.

--dry-run prints the CreateStack commands (the template as \"$(jupyter-room template)\") and runs \
nothing. The --parameter values (a root password, say) are printed as given, and are in the aliyun \
CLI's arguments while it runs.";

pub(super) const CLOUD_EXIT_CODES: &str = "\
Exit codes:
  0  done (up: every stack exists or was created)
  2  bad command line, name, participants file or parameter: the message says which; nothing was done
  5  the aliyun CLI could not be run, or a call failed: the message names the call and quotes the CLI";

pub(super) const DOWN_ABOUT: &str = "\
Deletes every stack of the room (tagged jupyter-room=ROOM) with `aliyun ros DeleteStack`: every \
participant's instance, bucket and access key, and the room's network. Their work is gone with them.

Refused while some participant's work has not been collected: `jupyter-room collect` records whose \
work it brought back (in $XDG_STATE_HOME/jupyter-room/ROOM.json, else \
~/.local/state/jupyter-room/ROOM.json); --force deletes anyway. Then asks for a typed `yes`, naming \
how many stacks and participants go; --yes is that answer, for scripts (without a terminal and without \
--yes, nothing is deleted).";

pub(super) const DOWN_EXIT_CODES: &str = "\
Exit codes:
  0  every stack of the room is being deleted (or the room has none)
  2  bad command line or room name: nothing was deleted
  5  the aliyun CLI could not be run, or a call failed: the message names the call
  6  refused: some participant's work was not collected (use --force), or not confirmed; nothing was deleted";

/// Where the room's stacks are: the aliyun CLI and the region.
#[derive(Debug, Clone, Args)]
pub struct CloudArgs {
    /// The region of the room's stacks (default: $ALIBABA_CLOUD_REGION_ID, as the aliyun CLI reads it).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// The aliyun CLI to run (default: $JUPYTER_ROOM_ALIYUN, else aliyun on PATH).
    #[arg(long, value_name = "PATH")]
    pub aliyun: Option<PathBuf>,
}

impl CloudArgs {
    /// The CLI and the region, or the exit code after saying what is wrong.
    pub fn resolve(&self) -> Result<(Aliyun, String), u8> {
        let region = aliyun::region(self.region.as_deref()).map_err(|m| bad_input(&m))?;
        Ok((Aliyun::new(self.aliyun.clone()), region))
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The room's name (its stacks are ROOM-1, ROOM-2, ..., tagged jupyter-room=ROOM).
    #[arg(value_name = "ROOM")]
    pub room: String,

    /// The participants: one name per line; # starts a comment.
    #[arg(long, value_name = "FILE")]
    pub participants: PathBuf,

    /// The most participants in one stack (1 to 30).
    #[arg(long, value_name = "N", default_value_t = split::MAX_PER_STACK, allow_negative_numbers = true)]
    pub per_stack: i64,

    /// Another parameter of the room template, the same for every stack (repeatable), e.g.
    /// --parameter ZoneId=cn-hangzhou-h.
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,

    /// Print the CreateStack commands and run nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The room whose stacks to delete.
    #[arg(value_name = "ROOM")]
    pub room: String,

    /// Delete even though some participant's work was not collected.
    #[arg(long)]
    pub force: bool,

    /// Do not ask: the answer is yes (for scripts).
    #[arg(long)]
    pub yes: bool,

    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// What `show` and `cards` read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Source<'a> {
    Input(Option<&'a Path>),
    Room(String),
}

/// `--room ROOM`; else the argument is a file (or `-`, or stdin when absent)
/// unless it is not an existing file and is a room's name: saved GetStack
/// files are read as before, and `show lab` reads the room lab.
pub(super) fn source<'a>(input: Option<&'a Path>, room: Option<&str>) -> Source<'a> {
    if let Some(room) = room {
        return Source::Room(room.to_string());
    }
    match input {
        Some(p) if p != Path::new("-") && !p.exists() => match p.to_str() {
            Some(name) if up::is_room_name(name) => Source::Room(name.to_string()),
            _ => Source::Input(input),
        },
        _ => Source::Input(input),
    }
}

/// The room's stacks merged into one room; notes on the stacks on stderr.
/// `positional`: the room came as an argument that is no file, which a
/// message then says (a mistyped file name reads as a room's name).
pub(super) fn load_room(room: &str, cloud: &CloudArgs, positional: bool) -> Result<Room, u8> {
    if !up::is_room_name(room) {
        return Err(bad_input(&format!("{room:?}: not a room name ({})", up::ROOM_NAME_RULE)));
    }
    let as_room = if positional { format!("{room}: no such file; read as the room {room}: ") } else { String::new() };
    let region = aliyun::region(cloud.region.as_deref()).map_err(|m| bad_input(&format!("{as_room}{m}")))?;
    let aliyun = Aliyun::new(cloud.aliyun.clone());
    let (snapshot, looks) = cloud::snapshot_looks(&aliyun, &region, room).map_err(|e| {
        eprintln!("jupyter-room: {as_room}{e}");
        exit::CLOUD_FAILED
    })?;
    for note in cloud::notes(&snapshot) {
        eprintln!("jupyter-room: note: {note}");
    }
    Ok(cloud::as_room(&snapshot, &looks))
}

pub(super) fn cloud_failed(e: &aliyun::CloudError) -> u8 {
    eprintln!("jupyter-room: {e}");
    exit::CLOUD_FAILED
}

pub(super) fn run_up(args: &UpArgs) -> u8 {
    let room = &args.room;
    if !up::is_room_name(room) {
        return bad_input(&format!("{room:?}: not a room name ({})", up::ROOM_NAME_RULE));
    }
    if !(1..=split::MAX_PER_STACK).contains(&args.per_stack) {
        return bad_input(&format!(
            "--per-stack {}: expected 1 to {} (the most one stack holds)",
            args.per_stack,
            split::MAX_PER_STACK
        ));
    }
    let params = match up::parameters(&args.parameters) {
        Ok(p) => p,
        Err(m) => return bad_input(&m),
    };
    let file = args.participants.display().to_string();
    let text = match std::fs::read(&args.participants) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => return bad_input(&format!("--participants {file}: not UTF-8 text")),
        },
        Err(e) => return bad_input(&format!("--participants {file}: {}", os_message(&e))),
    };
    let names = match up::participants(&file, &text) {
        Ok(names) => names,
        Err(m) => return bad_input(&m),
    };
    let (aliyun, region) = if args.dry_run {
        // A dry run needs no CLI; the region is still what the commands say.
        match aliyun::region(args.cloud.region.as_deref()) {
            Ok(region) => (Aliyun::new(args.cloud.aliyun.clone()), region),
            Err(m) => return bad_input(&m),
        }
    } else {
        match args.cloud.resolve() {
            Ok(pair) => pair,
            Err(code) => return code,
        }
    };
    let per_stack = usize::try_from(args.per_stack).expect("checked: 1 to 30");
    let plan = up::plan(room, &region, &names, per_stack, &params);
    if args.dry_run {
        let mut out = String::new();
        for p in &plan {
            out.push_str(&format!(
                "# {}: {} participants ({} .. {})\n{}\n",
                p.name,
                p.participants.len(),
                p.participants[0],
                p.participants[p.participants.len() - 1],
                up::dry_run_line(p)
            ));
        }
        write_stdout(&out);
        eprintln!(
            "jupyter-room: dry run: {} stack(s) for {} participants, nothing created; when run, a stack of the room that \
             already exists is not created again",
            plan.len(),
            names.len()
        );
        return exit::ALL_READY;
    }

    // What exists already: by the tag, then each same-named stack's participants.
    let existing = match cloud::list_stacks(&aliyun, &region, room) {
        Ok(s) => s,
        Err(e) => return cloud_failed(&e),
    };
    let mut to_create = Vec::new();
    for p in &plan {
        let Some(found) = existing.iter().find(|s| s.name == p.name) else {
            to_create.push(p);
            continue;
        };
        let stack = match cloud::get_stack(&aliyun, &region, &found.id) {
            Ok(s) => s,
            Err(e) => return cloud_failed(&e),
        };
        let theirs = cloud::parameter(&stack, "Participants").unwrap_or_default();
        if theirs != p.participants.join(",") {
            return bad_input(&format!(
                "{} exists ({}) with the participants {theirs}, and the file now puts {} in it: nothing was created; \
                 to change a room, delete it (jupyter-room down {room}) or use another room name",
                p.name,
                found.id,
                p.participants.join(",")
            ));
        }
        println!("{}: exists already ({}, {}): not created again", p.name, found.id, found.status);
        if found.status.ends_with("_FAILED") || found.status.contains("ROLLBACK") {
            eprintln!(
                "jupyter-room: note: {} is {}: `jupyter-room show {room}` says why; to create it anew, delete it \
                 (aliyun ros DeleteStack --RegionId {region} --StackId {}) and run this `up` again",
                p.name, found.status, found.id
            );
        }
    }
    for s in existing.iter().filter(|s| !plan.iter().any(|p| p.name == s.name)) {
        eprintln!(
            "jupyter-room: note: {} ({}) is tagged {}={room} but is not one of this plan's stacks",
            s.name,
            s.id,
            up::TAG_KEY
        );
    }
    let results = cloud::parallel(&to_create, cloud::MAX_PARALLEL, |p| {
        aliyun.run(&p.call).map(|answer| answer.get("StackId").and_then(|v| v.as_str()).unwrap_or_default().to_string())
    });
    let mut failed = 0;
    for (p, result) in to_create.iter().zip(results) {
        match result {
            Ok(id) => println!(
                "{}: created ({id}), {} participants: {}",
                p.name,
                p.participants.len(),
                p.participants.join(", ")
            ),
            Err(e) => {
                failed += 1;
                eprintln!("jupyter-room: {e}");
            }
        }
    }
    let created = to_create.len() - failed;
    eprintln!(
        "jupyter-room: room {room}: {} stack(s), {created} created now, {} existing; `jupyter-room show {room}` shows \
         who is ready",
        plan.len(),
        plan.len() - to_create.len()
    );
    if failed > 0 {
        eprintln!("jupyter-room: {failed} stack(s) not created: fix the cause, then run the same `up` again (it creates only the missing ones)");
        return exit::CLOUD_FAILED;
    }
    exit::ALL_READY
}

pub(super) fn run_down(args: &DownArgs) -> u8 {
    let room = &args.room;
    if !up::is_room_name(room) {
        return bad_input(&format!("{room:?}: not a room name ({})", up::ROOM_NAME_RULE));
    }
    let (aliyun, region) = match args.cloud.resolve() {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let (snapshot, _) = match cloud::snapshot_looks(&aliyun, &region, room) {
        Ok(s) => s,
        Err(e) => return cloud_failed(&e),
    };
    if snapshot.stacks.is_empty() {
        println!("room {room}: no stack is tagged {}={room} in {region}: nothing to delete", up::TAG_KEY);
        return exit::ALL_READY;
    }
    let names: Vec<String> = snapshot.seats.iter().map(|s| s.name.clone()).collect();
    let stacks = snapshot.stacks.len();
    let missing = collected::missing(room, &names);
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
        let more = if missing.len() > shown.len() {
            format!(" and {} more", missing.len() - shown.len())
        } else {
            String::new()
        };
        if !args.force {
            eprintln!(
                "jupyter-room: refused: the work of {} of {} participant(s) was not collected ({}{more}); deleting the room's \
                 {stacks} stack(s) deletes it. Collect it first (jupyter-room collect {room} --out DIR), or delete anyway \
                 with --force. Nothing was deleted.",
                missing.len(),
                names.len(),
                shown.join(", ")
            );
            return exit::REFUSED;
        }
        eprintln!(
            "jupyter-room: --force: the work of {} participant(s) was not collected ({}{more}) and goes with the stacks",
            missing.len(),
            shown.join(", ")
        );
    }
    let question = format!(
        "Delete the {stacks} stack(s) of room {room} ({}), with the instances, buckets and keys of {} participant(s)?",
        snapshot.stacks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        names.len()
    );
    if !args.yes {
        if !io::stdin().is_terminal() {
            eprintln!("jupyter-room: {question}\njupyter-room: refused: no terminal to confirm on; add --yes to confirm. Nothing was deleted.");
            return exit::REFUSED;
        }
        eprint!("{question} Type yes to delete: ");
        let _ = io::stderr().flush();
        let mut answer = String::new();
        if io::stdin().read_line(&mut answer).is_err() || answer.trim() != "yes" {
            eprintln!("jupyter-room: not confirmed; nothing was deleted");
            return exit::REFUSED;
        }
    }
    let results =
        cloud::parallel(&snapshot.stacks, cloud::MAX_PARALLEL, |s| cloud::delete_stack(&aliyun, &region, &s.id));
    let mut failed = 0;
    for (s, result) in snapshot.stacks.iter().zip(results) {
        match result {
            Ok(()) => println!("{}: deleting ({})", s.name, s.id),
            Err(e) => {
                failed += 1;
                eprintln!("jupyter-room: {e}");
            }
        }
    }
    if failed > 0 {
        eprintln!("jupyter-room: {failed} stack(s) not deleted: run the same `down` again");
        return exit::CLOUD_FAILED;
    }
    eprintln!("jupyter-room: room {room}: {stacks} stack(s) being deleted; ROS deletes them in the background");
    exit::ALL_READY
}
