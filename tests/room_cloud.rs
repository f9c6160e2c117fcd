//! A room of five in the (fake) cloud, addressed by name from start to end
//! through the organiser's `aliyun` CLI (here the stand-in of
//! `common::aliyun`, first on `jupyter-room`'s PATH, its stacks real agents):
//! `up --dry-run` prints two CreateStack commands and creates nothing; `up`
//! creates two stacks tagged with the room (three participants and two,
//! with `--per-stack 3`); `up` again creates nothing; `show ROOM` gives one
//! table of five ready participants whose URLs open Jupyter, and the room's
//! Snapshot gives each participant's front at their instance's address;
//! `down` refuses while work is not collected, naming who, and with
//! `--force --yes` deletes both stacks.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::aliyun::FakeCloud;
use crate::common::{bin, get_status, http, split_url};

const ROOM: &str = "lab";
const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

struct Organiser<'a> {
    cloud: &'a FakeCloud,
    /// Their XDG_STATE_HOME (the collected records).
    state: &'a Path,
}

impl Organiser<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("jupyter-room"))
            .args(args)
            .env("PATH", self.cloud.path_env())
            .env("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")
            .env("XDG_STATE_HOME", self.state)
            .env_remove("JUPYTER_ROOM_ALIYUN")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("jupyter-room runs")
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_room_of_five_in_two_stacks_up_show_and_down_by_name() {
    let cloud = FakeCloud::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let me = Organiser { cloud: &cloud, state: &state };
    let file = dir.path().join("participants.txt");
    std::fs::write(&file, "# the morning group\nalice\nbob\ncarol  # late\n\ndave\nerin\n").unwrap();
    let file = file.to_str().unwrap();
    let up = ["up", ROOM, "--participants", file, "--per-stack", "3", "--parameter", "TlsMode=off"];

    // --dry-run: the commands, and not one call.
    let dry = me.run(&[&up[..], &["--dry-run"]].concat());
    let (out, err) = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out}{err}");
    let commands: Vec<&str> = out.lines().filter(|l| l.starts_with("aliyun ros CreateStack ")).collect();
    assert_eq!(commands.len(), 2, "{out}");
    for (command, (stack, names)) in commands.iter().zip([("lab-1", "alice,bob,carol"), ("lab-2", "dave,erin")]) {
        for part in [
            format!("--StackName {stack} "),
            "--RegionId cn-hangzhou ".into(),
            "--TemplateBody \"$(jupyter-room template)\" ".into(),
            format!("--Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue {names} "),
            "--Parameters.2.ParameterKey TlsMode --Parameters.2.ParameterValue off ".into(),
            "--Tags.1.Key jupyter-room --Tags.1.Value lab".into(),
        ] {
            assert!(command.contains(&part), "{part:?} not in {command}");
        }
    }
    assert!(cloud.calls().is_empty(), "a dry run calls nothing: {:?}", cloud.calls());
    // The template the commands read is the one `up` creates stacks with.
    let template = me.run(&["template"]);
    assert_eq!(String::from_utf8_lossy(&template.stdout), std::fs::read_to_string(repo("userdata/room.yml")).unwrap());

    // up: two stacks, tagged with the room.
    let created = me.run(&up);
    let (out, err) = text(&created);
    assert_eq!(created.status.code(), Some(0), "{out}{err}");
    assert_eq!(cloud.count("ros", "CreateStack"), 2);
    let mut stacks = cloud.stacks();
    // Created in parallel: in any order.
    stacks.sort_by(|a, b| a.name.cmp(&b.name));
    let tag = ("jupyter-room".to_string(), ROOM.to_string());
    assert_eq!(
        stacks.iter().map(|s| (s.name.as_str(), s.tags.contains(&tag), s.participants.join(","))).collect::<Vec<_>>(),
        [("lab-1", true, "alice,bob,carol".to_string()), ("lab-2", true, "dave,erin".to_string())]
    );
    for stack in ["lab-1", "lab-2"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{stack}: created ("))), "{stack} reported: {out}");
    }

    // up again: nothing new, and it says so.
    let again = me.run(&up);
    let (out, err) = text(&again);
    assert_eq!(again.status.code(), Some(0), "{out}{err}");
    assert_eq!(cloud.count("ros", "CreateStack"), 2, "nothing created again");
    assert_eq!(out.matches("exists already").count(), 2, "{out}");

    // While the stacks build: one table of the five, waiting until each
    // signals; the fronts from each participant's InstanceGroup copy, its
    // PublicIps attribute (GetStackResource), as no PublicIps output is
    // there yet; ECS is not asked.
    let early = me.run(&["show", ROOM]);
    let (out, err) = text(&early);
    assert_eq!(early.status.code(), Some(1), "not ready yet: {out}{err}");
    assert_eq!(rows(&out).len(), NAMES.len(), "{out}");
    assert!(err.contains("lab-1 is still CREATE_IN_PROGRESS") && err.contains("lab-2 is still"), "{err}");
    let aliyun = jupyter_room::aliyun::Aliyun::new(Some(cloud.program()));
    let addresses = cloud.addresses();
    let asked_before = cloud.count("ros", "GetStackResource");
    let building = jupyter_room::cloud::snapshot(&aliyun, "cn-hangzhou", ROOM).unwrap();
    assert_eq!(
        building.stacks.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(),
        ["CREATE_IN_PROGRESS"; 2],
        "the stacks are still building (no PublicIps output)"
    );
    assert_eq!(cloud.count("ros", "GetStackResource") - asked_before, NAMES.len(), "one copy asked per participant");
    for call in cloud.calls().iter().filter(|c| c.get(1).map(String::as_str) == Some("GetStackResource")) {
        let value = |name: &str| call.iter().position(|a| a == name).map(|i| call[i + 1].as_str());
        assert_eq!(value("--ShowResourceAttributes"), Some("true"), "{call:?}");
        assert!(value("--LogicalResourceId").is_some_and(|r| r.starts_with("JupyterInstance[")), "{call:?}");
    }
    assert_eq!(cloud.count("ecs", "DescribeInstances"), 0, "the group's PublicIps is the address: ECS is not asked");
    let fronts: Vec<(String, Option<String>)> =
        building.seats.iter().map(|s| (s.name.clone(), s.front.clone())).collect();
    let expected: Vec<(String, Option<String>)> =
        NAMES.iter().map(|n| (n.to_string(), Some(format!("http://{}:8888", addresses[*n])))).collect();
    assert_eq!(fronts, expected);

    // show ROOM: one table, the five ready.
    let deadline = Instant::now() + Duration::from_secs(300);
    let table = loop {
        let show = me.run(&["show", ROOM, "--show-token"]);
        let (out, err) = text(&show);
        if show.status.code() == Some(0) {
            break out;
        }
        assert_eq!(show.status.code(), Some(1), "{out}{err}");
        assert!(Instant::now() < deadline, "not all ready within 5 minutes:\n{out}{err}");
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(table.lines().filter(|l| l.starts_with("PARTICIPANT")).count(), 1, "one table:\n{table}");
    assert!(table.contains("5 ready, 0 failed, 0 waiting"), "{table}");
    for (row, name) in rows(&table).iter().zip(NAMES) {
        assert_eq!(row[0], name, "the room's order:\n{table}");
        assert_eq!(row[1], "ready");
        let (base, _, token) = split_url(&row[2]);
        assert_eq!(base, format!("http://{}:8888", addresses[name]), "{name}'s URL is at their instance");
        assert_eq!(status_within(&format!("{base}/api/status"), &token), 200, "{name}'s URL opens Jupyter");
    }

    // cards --room: one page of the five cards, private.
    let page = dir.path().join("cards.html");
    let cards = me.run(&["cards", "--html", page.to_str().unwrap(), "--room", ROOM]);
    let (out, err) = text(&cards);
    assert_eq!(cards.status.code(), Some(0), "{out}{err}");
    assert!(err.contains("wrote 5 cards"), "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    for name in NAMES {
        assert!(html.contains(&format!("http://{}:8888/", addresses[name])), "{name}'s card");
    }
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&page).unwrap().permissions()) & 0o777,
        0o600
    );

    // The Snapshot the room's other commands start from: each participant's
    // front at their instance's address (now from the PublicIps output), its
    // progress page answering.
    let snapshot = jupyter_room::cloud::snapshot(&aliyun, "cn-hangzhou", ROOM).unwrap();
    assert_eq!(snapshot.stacks.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["CREATE_COMPLETE"; 2]);
    for seat in &snapshot.seats {
        let front = seat.front.clone().unwrap_or_else(|| panic!("{} has no front", seat.name));
        assert_eq!(front, format!("http://{}:8888", addresses[&seat.name]));
        let progress: serde_json::Value =
            http().get(format!("{front}/_agent/progress")).send().unwrap().json().unwrap();
        assert_eq!(progress["ready"], true, "{}: {progress}", seat.name);
        assert!(seat.token().is_some());
    }
    assert_eq!(
        snapshot.seats.iter().map(|s| (s.name.as_str(), s.stack.as_str())).collect::<Vec<_>>(),
        [("alice", "lab-1"), ("bob", "lab-1"), ("carol", "lab-1"), ("dave", "lab-2"), ("erin", "lab-2")]
    );

    // down before collect: refused, naming the count; nothing deleted.
    let refused = me.run(&["down", ROOM, "--yes"]);
    let (out, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(6), "{out}{err}");
    assert!(err.contains("the work of 5 of 5 participant(s) was not collected"), "{err}");
    assert!(err.contains("2 stack(s)") && err.contains("--force"), "{err}");
    assert_eq!(cloud.count("ros", "DeleteStack"), 0);

    // Four collected (the record `collect` writes): erin's work is still missing.
    let records = state.join("jupyter-room");
    std::fs::create_dir_all(&records).unwrap();
    let collected: serde_json::Map<String, serde_json::Value> =
        NAMES[..4].iter().map(|n| (n.to_string(), serde_json::json!({"out": "/tmp/work", "at": 1}))).collect();
    std::fs::write(records.join("lab.json"), serde_json::json!({"room": ROOM, "collected": collected}).to_string())
        .unwrap();
    let refused = me.run(&["down", ROOM, "--yes"]);
    let (_, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(6), "{err}");
    assert!(err.contains("the work of 1 of 5 participant(s) was not collected (erin)"), "{err}");

    // Without a terminal and without --yes: not confirmed.
    let unconfirmed = me.run(&["down", ROOM, "--force"]);
    let (_, err) = text(&unconfirmed);
    assert_eq!(unconfirmed.status.code(), Some(6), "{err}");
    assert!(err.contains("Delete the 2 stack(s) of room lab") && err.contains("5 participant(s)"), "{err}");
    assert_eq!(cloud.count("ros", "DeleteStack"), 0);

    // --force --yes: both stacks deleted.
    let down = me.run(&["down", ROOM, "--force", "--yes"]);
    let (out, err) = text(&down);
    assert_eq!(down.status.code(), Some(0), "{out}{err}");
    assert_eq!(cloud.count("ros", "DeleteStack"), 2);
    assert!(cloud.stacks().is_empty());
    assert!(out.contains("lab-1: deleting") && out.contains("lab-2: deleting"), "{out}");
    let gone = me.run(&["show", ROOM]);
    let (_, err) = text(&gone);
    assert_eq!(gone.status.code(), Some(1), "{err}");
    assert!(err.contains("no stack is tagged jupyter-room=lab"), "{err}");
}

/// The URL's status, asked again for up to 30 s while the front answers 503
/// (its progress page: Jupyter busy answering four others on a loaded machine).
fn status_within(url: &str, token: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get_status(url, token);
        if status != 503 || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The table's rows: each line's words, header and summary left out.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.starts_with("PARTICIPANT") && !l.contains(" ready, "))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}
