//! The command line: read the input, show the room or write its cards (or
//! print the commands that create a larger room), and map the outcome to a
//! documented exit code.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::aliyun::{self, Aliyun};
use crate::input::{self, Room};
use crate::snapshot::{Seat, Snapshot};
use crate::text::{one_line, scrub};
use crate::{cards, cloud, collect, collected, fronts, show, split, up, update, watch};
use std::collections::BTreeMap;

/// Exit codes.
pub mod exit {
    /// Some participant failed or is still waiting, or the room names nobody yet.
    pub use jupyter_proto::exit::FAILED as NOT_ALL_READY;
    /// Every participant is ready.
    pub use jupyter_proto::exit::OK as ALL_READY;
    /// Bad command line or input: nothing was written.
    pub use jupyter_proto::exit::USAGE as BAD_INPUT;
    /// `cards`: the HTML file could not be written (nothing was).
    pub const NOT_WRITTEN: u8 = 4;
    /// A cloud command: the aliyun CLI could not be run, or a call failed.
    pub const CLOUD_FAILED: u8 = 5;
    /// `down`: refused (work not collected, or not confirmed); nothing was deleted.
    pub const REFUSED: u8 = 6;
}

/// The most input read: a GetStack answer for a room of 200 is about 100 KB.
const MAX_INPUT: u64 = 16 * 1024 * 1024;

const ABOUT: &str = "\
For the organiser of a room stack (one ECS instance per participant, all signalling one ROS wait \
condition with the participant's name as the signal id): reads the stack's outputs and shows who is \
ready, who failed and who is still waiting, or writes printable login cards with QR codes.

The input (a FILE, or stdin when FILE is - or absent) may be any of:
  - the JSON `aliyun ros GetStack` prints: its Room output holds the signals, its Participants
    output (else the Participants parameter) names the participants, in the room's order;
  - that Outputs list alone (... | jq .Outputs);
  - the Room output's value alone, or the wait condition's Data, as copied from the console:
    {\"alice\": {\"url\": \"http://...\"}, \"bob\": {\"error\": \"...\", \"step\": \"image\"}},
    also as a JSON string.
An output's value may be JSON or a string holding JSON; so may each participant's signal data:
{\"url\": URL} is ready, {\"error\": REASON, \"step\": STEP} failed; a participant listed but without
a signal is waiting. The Participants list may be a JSON list or a comma-separated string.

Tokens: `show` prints each login URL with its token <redacted> unless --show-token; `cards` writes
the full URLs (that is what a card is for) to a file of mode 0600.

Getting the input (the aliyun CLI, after `aliyun configure`, or in Cloud Shell):
  aliyun ros GetStack --RegionId cn-hangzhou --StackId <stack id> > room.json
  jupyter-room show room.json
  aliyun ros GetStack --RegionId cn-hangzhou --StackId <stack id> | jupyter-room show --csv > room.csv
  jupyter-room cards --html cards.html room.json

A room larger than one stack (30 participants): `jupyter-room split` prints the CreateStack commands.

A room by name, through the organiser's aliyun CLI (jupyter-room reads no credentials):
  jupyter-room up lab --participants names.txt --region cn-hangzhou --parameter ZoneId=...
  jupyter-room show lab --region cn-hangzhou     (or --room lab: every stack tagged jupyter-room=lab)
  jupyter-room down lab --region cn-hangzhou
A FILE|ROOM argument is read as a file when it exists (or is -); otherwise, when it is a room's name
(a lowercase letter, then up to 39 lowercase letters, digits or single hyphens), as the room.";

const EXIT_CODES: &str = "\
Exit codes:
  0  every participant is ready
  1  some participant failed or is still waiting (or the room names nobody yet)
  2  bad command line or input: the message names the input and says what was expected;
     nothing was written
  4  cards: the HTML file could not be written; nothing was
  5  a room by name: the aliyun CLI could not be run, or a call failed";

const SPLIT_ABOUT: &str = "\
One stack of userdata/room.yml holds at most 30 participants (ROS allows 200 resources per stack, \
and the room keeps a margin below it; docs/room.md). This takes the whole room's participants, checks \
their names (a lowercase letter, then up to 19 lowercase letters or digits; no duplicates), splits \
them into groups of at most --per-stack, and prints one `aliyun ros CreateStack` command per group, \
each with the same parameters and its own Participants list and stack name. It runs nothing and needs no cloud account: review the commands, then run them \
(or pass them to a shell). `jupyter-room show` reads each stack's GetStack output.

Groups are as even as they can be (70 names: 24, 23, 23), so no stack is left with a handful. Every \
value is shell-quoted; the template body is read by the shell that runs the command, as \
\"$(cat PATH)\".

A --param value (the root password, say) is printed as given: keep the output private, or leave such \
parameters out and add them when you run the commands.";

const SPLIT_EXIT_CODES: &str = "\
Exit codes:
  0  the commands were printed
  2  bad command line, option or name: the message says which; nothing was printed";

#[derive(Debug, Parser)]
#[command(
    name = "jupyter-room",
    version,
    about = "Who in a room stack is ready, failed or still waiting; printable login cards with QR codes",
    long_about = ABOUT,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A table of the participants: name, state (ready, failed, waiting), the login URL (token
    /// redacted) or what failed; then how many are in each state.
    #[command(after_help = EXIT_CODES)]
    Show(ShowArgs),
    /// A printable HTML page of login cards: each ready participant's URL with its token and a QR
    /// code of it; a card saying why for the others. Six cards to an A4 page.
    #[command(after_help = EXIT_CODES)]
    Cards(CardsArgs),
    /// For a room larger than one stack (30 participants): the names checked and split into even
    /// groups, and one `aliyun ros CreateStack` command printed per group (nothing is run).
    #[command(long_about = SPLIT_ABOUT, after_help = SPLIT_EXIT_CODES)]
    Split(SplitArgs),
    // --- the room in the cloud, through the organiser's aliyun CLI (up, down, template) ---
    /// Create the whole room: its participants split into stacks of the room template (ROOM-1,
    /// ROOM-2, ...), each tagged jupyter-room=ROOM, created through the aliyun CLI.
    #[command(long_about = UP_ABOUT, after_help = CLOUD_EXIT_CODES)]
    Up(UpArgs),
    /// Delete the room's stacks (every instance, bucket and key of the room), after a
    /// confirmation; refused while participants' work has not been collected, unless --force.
    #[command(long_about = DOWN_ABOUT, after_help = DOWN_EXIT_CODES)]
    Down(DownArgs),
    /// Print the room template this binary creates stacks with (userdata/room.yml).
    Template,

    // --- The participants' fronts: watch, collect, update (src/fronts.rs) ---
    /// A live view of the room: per participant where the setup is (the stack, then the
    /// instance's own progress), who is ready, who failed and why, and raised hands; refreshed
    /// in place, or written as a self-refreshing HTML page for a projector.
    #[command(long_about = WATCH_ABOUT, after_help = WATCH_EXIT_CODES)]
    Watch(WatchArgs),
    /// Downloads every ready participant's work through their own "download my work", one zip
    /// each, with an index (resumable).
    #[command(long_about = COLLECT_ABOUT, after_help = COLLECT_EXIT_CODES)]
    Collect(CollectArgs),
    /// Asks every ready participant's agent to take the organiser's fixes, and shows who updated
    /// and whose edited files were kept beside the new versions.
    #[command(long_about = UPDATE_ABOUT, after_help = UPDATE_EXIT_CODES)]
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The stack's outputs (see jupyter-room --help); stdin when - or absent. Not an existing
    /// file and a room's name: the room's stacks, through the aliyun CLI (as --room).
    #[arg(value_name = "FILE|ROOM")]
    pub input: Option<PathBuf>,

    /// The room whose stacks to read, through the aliyun CLI: every stack tagged jupyter-room=ROOM.
    #[arg(long, value_name = "ROOM", conflicts_with = "input")]
    pub room: Option<String>,

    #[command(flatten)]
    pub cloud: CloudArgs,

    /// CSV instead of the table: participant,state,url_or_reason (the summary goes to stderr).
    #[arg(long)]
    pub csv: bool,

    /// Print the login URLs with their tokens (stdout often ends up in a log, or on a projector).
    #[arg(long)]
    pub show_token: bool,
}

#[derive(Debug, Args)]
pub struct CardsArgs {
    /// Write the page here (mode 0600: it holds every ready participant's token), replacing it.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,

    /// The stack's outputs (see jupyter-room --help); stdin when - or absent. Not an existing
    /// file and a room's name: the room's stacks, through the aliyun CLI (as --room).
    #[arg(value_name = "INPUT|ROOM")]
    pub input: Option<PathBuf>,

    /// The room whose stacks to read, through the aliyun CLI: every stack tagged jupyter-room=ROOM.
    #[arg(long, value_name = "ROOM", conflicts_with = "input")]
    pub room: Option<String>,

    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The participants, comma-separated (alice,bob,carol).
    #[arg(long, value_name = "NAMES")]
    pub participants: Option<String>,

    /// Participants from a file too: one per line or comma-separated; # starts a comment.
    #[arg(long, value_name = "FILE")]
    pub participants_file: Option<PathBuf>,

    /// The most participants in one stack (1 to 30).
    #[arg(long, value_name = "N", default_value_t = split::MAX_PER_STACK, allow_negative_numbers = true)]
    pub per_stack: i64,

    /// The stacks' names: NAME-1, NAME-2, ...
    #[arg(long, value_name = "NAME", default_value = "handson-room")]
    pub stack_name: String,

    /// The region the stacks are created in.
    #[arg(long, value_name = "REGION", default_value = "cn-hangzhou")]
    pub region: String,

    /// The room template, as the commands read it (relative to where they run).
    #[arg(long, value_name = "PATH", default_value = "userdata/room.yml")]
    pub template: String,

    /// Another parameter of the template, the same for every stack (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
}

pub fn main() -> ExitCode {
    let cli = match jupyter_proto::exit::parse_command_line::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    ExitCode::from(run(cli.command))
}

/// Runs one command, printing to stdout and stderr; returns the exit code.
pub fn run(command: Command) -> u8 {
    match command {
        Command::Show(args) => run_show(&args),
        Command::Cards(args) => run_cards(&args),
        Command::Split(args) => run_split(args),
        Command::Up(args) => run_up(&args),
        Command::Down(args) => run_down(&args),
        Command::Template => {
            write_stdout(up::TEMPLATE);
            exit::ALL_READY
        }
        Command::Watch(args) => run_watch(&args),
        Command::Collect(args) => run_collect(&args),
        Command::Update(args) => run_update(&args),
    }
}

fn run_split(args: SplitArgs) -> u8 {
    let mut options = split::Options {
        participants: args.participants,
        participants_file: None,
        per_stack: args.per_stack,
        stack_name: args.stack_name,
        region: args.region,
        template: args.template,
        params: args.params,
    };
    // The options are checked before the file is read, as they come first.
    if let Err(message) = split::check_options(&options) {
        return bad_input(&message);
    }
    if let Some(path) = &args.participants_file {
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => options.participants_file = Some((name, text)),
                Err(_) => return bad_input(&format!("--participants-file {name}: not UTF-8 text")),
            },
            Err(e) => return bad_input(&format!("--participants-file {name}: {}", os_message(&e))),
        }
    }
    match split::plan(&options) {
        Ok(commands) => {
            write_stdout(&commands);
            jupyter_proto::exit::OK
        }
        Err(message) => bad_input(&message),
    }
}

// --- the room in the cloud: up, down, and show/cards of a room by name ---

const UP_ABOUT: &str = "\
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

const CLOUD_EXIT_CODES: &str = "\
Exit codes:
  0  done (up: every stack exists or was created)
  2  bad command line, name, participants file or parameter: the message says which; nothing was done
  5  the aliyun CLI could not be run, or a call failed: the message names the call and quotes the CLI";

const DOWN_ABOUT: &str = "\
Deletes every stack of the room (tagged jupyter-room=ROOM) with `aliyun ros DeleteStack`: every \
participant's instance, bucket and access key, and the room's network. Their work is gone with them.

Refused while some participant's work has not been collected: `jupyter-room collect` records whose \
work it brought back (in $XDG_STATE_HOME/jupyter-room/ROOM.json, else \
~/.local/state/jupyter-room/ROOM.json); --force deletes anyway. Then asks for a typed `yes`, naming \
how many stacks and participants go; --yes is that answer, for scripts (without a terminal and without \
--yes, nothing is deleted).";

const DOWN_EXIT_CODES: &str = "\
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
enum Source<'a> {
    Input(Option<&'a Path>),
    Room(String),
}

/// `--room ROOM`; else the argument is a file (or `-`, or stdin when absent)
/// unless it is not an existing file and is a room's name: saved GetStack
/// files are read as before, and `show lab` reads the room lab.
fn source<'a>(input: Option<&'a Path>, room: Option<&str>) -> Source<'a> {
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
fn load_room(room: &str, cloud: &CloudArgs, positional: bool) -> Result<Room, u8> {
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

fn cloud_failed(e: &aliyun::CloudError) -> u8 {
    eprintln!("jupyter-room: {e}");
    exit::CLOUD_FAILED
}

fn run_up(args: &UpArgs) -> u8 {
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

fn run_down(args: &DownArgs) -> u8 {
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

/// The system's own words for an I/O error (`No such file or directory`),
/// without Rust's ` (os error 2)`.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The room `show` and `cards` read: by its name through the aliyun CLI,
/// or from a saved answer; and whether it came from the cloud. `Err`: the
/// exit code, after saying what is wrong.
fn show_source(input: Option<&Path>, room: Option<&str>, cloud: &CloudArgs) -> Result<(Room, bool), u8> {
    match source(input, room) {
        Source::Room(name) => load_room(&name, cloud, room.is_none()).map(|r| (r, true)),
        Source::Input(input) => load(input).map(|r| (r, false)).map_err(|message| bad_input(&message)),
    }
}

fn run_show(args: &ShowArgs) -> u8 {
    let (room, from_cloud) = match show_source(args.input.as_deref(), args.room.as_deref(), &args.cloud) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let out = if args.csv { show::csv(&room, args.show_token) } else { show::table(&room, args.show_token) };
    write_stdout(&out);
    notes(&room, from_cloud);
    if args.csv {
        // Stdout is the CSV alone: the summary and the end line go to stderr.
        eprintln!("{}", show::summary(room.counts()));
        if let Some(end) = show::end_line_now(&room) {
            eprintln!("{end}");
        }
    }
    exit_code(&room)
}

fn run_cards(args: &CardsArgs) -> u8 {
    let (room, from_cloud) = match show_source(args.input.as_deref(), args.room.as_deref(), &args.cloud) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let page = cards::html(&room);
    let path = &args.html;
    if let Err(e) = jupyter_proto::fs::write_atomic(path, page.as_bytes(), 0o600) {
        eprintln!("jupyter-room: cannot write {}: {e}; nothing was written", path.display());
        return exit::NOT_WRITTEN;
    }
    let counts = room.counts();
    eprintln!(
        "jupyter-room: wrote {} cards to {} ({}), mode 0600: it holds the login tokens of {} participant(s); \
         hand each card to its participant only, and delete the file after the workshop",
        room.participants.len(),
        path.display(),
        show::summary(counts),
        counts.ready,
    );
    notes(&room, from_cloud);
    exit_code(&room)
}

fn bad_input(message: &str) -> u8 {
    eprintln!("jupyter-room: {message}");
    exit::BAD_INPUT
}

fn exit_code(room: &Room) -> u8 {
    if room.all_ready() {
        exit::ALL_READY
    } else {
        exit::NOT_ALL_READY
    }
}

/// Reads and parses the input; the error names it.
pub fn load(input: Option<&Path>) -> Result<Room, String> {
    let (name, text) = read_text(input)?;
    input::parse(&text).map_err(|e| format!("{name}: {e}"))
}

/// The input's name and text (stdin when absent or `-`).
fn read_text(input: Option<&Path>) -> Result<(String, String), String> {
    let (name, bytes) = match input {
        None => read_stdin()?,
        Some(p) if p == Path::new("-") => read_stdin()?,
        Some(p) => {
            let name = p.display().to_string();
            let file = std::fs::File::open(p).map_err(|e| format!("{name}: cannot read it: {e}"))?;
            (name.clone(), read_bounded(file).map_err(|e| format!("{name}: {e}"))?)
        }
    };
    let text = String::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8 text; {}", input::EXPECTED))?;
    Ok((name, text))
}

fn read_stdin() -> Result<(String, Vec<u8>), String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprintln!("jupyter-room: reading the stack's outputs from stdin (end with Ctrl-D; see jupyter-room --help)");
    }
    let bytes = read_bounded(stdin.lock()).map_err(|e| format!("stdin: {e}"))?;
    Ok(("stdin".to_string(), bytes))
}

fn read_bounded(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!("larger than {} MiB: not a stack's outputs", MAX_INPUT / 1024 / 1024));
    }
    Ok(bytes)
}

/// Stdout closed early (`| head`) is not an error worth a panic.
fn write_stdout(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// What the organiser should know besides the rows, on stderr.
/// A room read from the cloud has had its stacks' notes already (an empty
/// one is a room without stacks, not a stack naming nobody).
fn notes(room: &Room, from_cloud: bool) {
    for note in notes_for(room) {
        if from_cloud && room.participants.is_empty() && note.contains("the room names nobody") {
            continue;
        }
        eprintln!("jupyter-room: note: {note}");
    }
}

pub fn notes_for(room: &Room) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(stack) = &room.stack {
        let status = stack.status.as_deref().map(one_line).unwrap_or_default();
        let reason = stack.status_reason.as_deref().map(|r| one_line(&scrub(r))).unwrap_or_default();
        if status.ends_with("_IN_PROGRESS") {
            notes.push(format!("the stack is still {status}: who has not signalled yet is waiting"));
        } else if status.ends_with("_FAILED") || status.contains("ROLLBACK") {
            notes.push(format!("the stack is {status}: {reason}"));
        }
        if stack.room_missing {
            notes.push(format!("the stack has no {} output yet: everyone listed is waiting", input::ROOM_OUTPUT));
        }
    }
    if !room.unlisted.is_empty() {
        let names: Vec<String> = room.unlisted.iter().map(|n| one_line(n)).collect();
        notes.push(format!(
            "not shown or counted, signalled under ids not in the Participants list (a participant renamed in \
             place, or removed): {}",
            names.join(", ")
        ));
    }
    if room.participants.is_empty() {
        notes.push("nobody has signalled yet and there is no Participants list: the room names nobody".into());
    }
    notes
}

// ---------------------------------------------------------------------------
// The participants' fronts: watch, collect, update (src/fronts.rs,
// docs/room.md#watch-collect-update). Each starts from a Snapshot of the
// room; until the room's stacks can be found by name, from saved GetStack
// answers (FILE...).
// ---------------------------------------------------------------------------

const INPUTS_HELP: &str = "\
The room: its name (one argument that is no file: its stacks are found by their tag through the aliyun \
CLI, each round, and a participant's front is their instance's public address), or one or more saved \
`aliyun ros GetStack` answers (or any input `show` reads, see jupyter-room --help), one per stack of the \
room, where a participant's front is their login URL's scheme://host:port once ready; - reads stdin.";

const WATCH_ABOUT: &str = "\
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

const WATCH_EXIT_CODES: &str = "\
Exit codes:
  0  --once: every participant is ready (or Ctrl-C ended the view)
  1  --once: some participant is not ready (setting up, failed, unreachable, waiting)
  2  bad command line or input: nothing was written
  4  --html: the page could not be written";

const COLLECT_ABOUT: &str = "\
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

const COLLECT_EXIT_CODES: &str = "\
Exit codes:
  0  every participant's work is in DIR (collected now or before)
  1  some participant's is not (not ready, unreachable, refused, broken off): the index says why
  2  bad command line or input, or DIR is not a directory: nothing was asked
  4  the index could not be written";

const UPDATE_ABOUT: &str = "\
Asks every ready participant's agent to take the organiser's fixes (the materials' new version, merged \
with the participant's copy as the update page does): POST <front>/_agent/update with body \
confirm=yes, `Authorization: token <their token>` and `Accept: application/json`. Shows per \
participant: updated (how many files, and each file of theirs kept, the new version beside it), up to \
date, under way (the agent takes longer than 40 s and goes on), not ready, unreachable, or failed and \
why. Certificates as for collect (see jupyter-room collect --help).";

const UPDATE_EXIT_CODES: &str = "\
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
fn load_saved(inputs: &[PathBuf]) -> Result<(Snapshot, BTreeMap<String, [u8; 32]>), String> {
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
fn room_name(rooms: &[(String, Room)]) -> String {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

/// A note for fronts without TLS: the tokens cross the network as the
/// login links do.
fn plain_http_note(seats: &[Seat]) {
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

fn run_watch(args: &WatchArgs) -> u8 {
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

fn run_collect(args: &CollectArgs) -> u8 {
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

fn run_update(args: &UpdateArgs) -> u8 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_its_help_says_how_to_get_the_input() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "aliyun ros GetStack --RegionId cn-hangzhou --StackId <stack id>",
            "jupyter-room cards --html cards.html room.json",
            "0  every participant is ready",
            "1  some participant failed or is still waiting",
            "2  bad command line or input",
            "4  cards: the HTML file could not be written",
            "<redacted>",
        ] {
            assert!(help.contains(needle), "{needle} not in:\n{help}");
        }
    }

    #[test]
    fn a_room_by_name_or_a_saved_file() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("lab");
        std::fs::write(&saved, "{}").unwrap();
        assert_eq!(source(Some(&saved), None), Source::Input(Some(&saved)), "an existing file is read as before");
        assert_eq!(source(Some(Path::new("lab")), None), Source::Room("lab".into()), "no such file: the room");
        assert_eq!(source(Some(Path::new("room.json")), None), Source::Input(Some(Path::new("room.json"))));
        assert_eq!(source(Some(Path::new("-")), None), Source::Input(Some(Path::new("-"))));
        assert_eq!(source(None, None), Source::Input(None));
        assert_eq!(source(None, Some("lab")), Source::Room("lab".into()));
    }

    #[test]
    fn the_cloud_commands_help_says_what_they_do() {
        let up = Cli::command().find_subcommand_mut("up").unwrap().render_long_help().to_string();
        for needle in
            ["jupyter-room=ROOM", "--per-stack", "--dry-run", "not created again", "50 concurrent", "5  the aliyun CLI"]
        {
            assert!(up.contains(needle), "{needle} not in:\n{up}");
        }
        let down = Cli::command().find_subcommand_mut("down").unwrap().render_long_help().to_string();
        for needle in ["--force", "--yes", "collected", "6  refused"] {
            assert!(down.contains(needle), "{needle} not in:\n{down}");
        }
    }

    #[test]
    fn the_fronts_commands_say_what_they_send_and_their_exit_codes() {
        let mut cli = Cli::command();
        let help = |cli: &mut clap::Command, name: &str| {
            cli.find_subcommand_mut(name).expect("a subcommand").render_long_help().to_string()
        };
        let watch = help(&mut cli, "watch");
        for needle in ["/_agent/progress", "within 2 s", "no token is sent", "mode 0644", "--once", "4  --html"] {
            assert!(watch.contains(needle), "{needle} not in:\n{watch}");
        }
        let collect = help(&mut cli, "collect");
        for needle in [
            "Authorization: token <their token>",
            "participant,file,size,sha256,time,error",
            "--again",
            "--insecure",
            "0  every participant's work is in DIR",
            "4  the index could not be written",
        ] {
            assert!(collect.contains(needle), "{needle} not in:\n{collect}");
        }
        let update = help(&mut cli, "update");
        for needle in ["POST <front>/_agent/update", "confirm=yes", "Accept: application/json", "kept"] {
            assert!(update.contains(needle), "{needle} not in:\n{update}");
        }
    }

    #[test]
    fn a_rooms_name_is_its_stacks_without_the_number() {
        let stack = |name: &str| {
            let text =
                format!(r#"{{"StackName": "{name}", "Outputs": [{{"OutputKey": "Room", "OutputValue": {{}}}}]}}"#);
            ("x.json".to_string(), input::parse(&text).unwrap())
        };
        assert_eq!(room_name(&[stack("handson-room-1"), stack("handson-room-2")]), "handson-room");
        assert_eq!(room_name(&[stack("workshop")]), "workshop");
        assert_eq!(room_name(&[stack("a-b-")]), "a-b-");
        let bare = ("saved/room-a.json".to_string(), input::parse(r#"{"alice": null}"#).unwrap());
        assert_eq!(room_name(&[bare]), "room-a");
    }

    #[test]
    fn notes_on_the_stack() {
        let room = input::parse(
            r#"{"StackId": "s", "Status": "CREATE_IN_PROGRESS",
                "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "a"}]}"#,
        )
        .unwrap();
        assert_eq!(
            notes_for(&room),
            [
                "the stack is still CREATE_IN_PROGRESS: who has not signalled yet is waiting",
                "the stack has no Room output yet: everyone listed is waiting",
            ]
        );
        let room = input::parse(
            r#"{"StackId": "s", "Status": "CREATE_FAILED", "StatusReason": "WaitCondition timed out\n(x)",
                "Outputs": [{"OutputKey": "Room", "OutputValue": {}}]}"#,
        )
        .unwrap();
        assert_eq!(
            notes_for(&room),
            [
                "the stack is CREATE_FAILED: WaitCondition timed out (x)",
                "nobody has signalled yet and there is no Participants list: the room names nobody",
            ]
        );
        assert_eq!(exit_code(&room), exit::NOT_ALL_READY, "an empty room is not ready");
    }
}
