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

mod cloud_commands;
mod fronts_commands;

use cloud_commands::{
    load_room, run_down, run_up, source, Source, CLOUD_EXIT_CODES, DOWN_ABOUT, DOWN_EXIT_CODES, UP_ABOUT,
};
pub use cloud_commands::{CloudArgs, DownArgs, UpArgs};
pub use fronts_commands::{load_snapshot, CollectArgs, UpdateArgs, WatchArgs};
use fronts_commands::{
    run_collect, run_update, run_watch, COLLECT_ABOUT, COLLECT_EXIT_CODES, UPDATE_ABOUT, UPDATE_EXIT_CODES,
    WATCH_ABOUT, WATCH_EXIT_CODES,
};

#[cfg(test)]
mod tests {
    use super::fronts_commands::room_name;
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
