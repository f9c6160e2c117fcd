//! The organiser's whole day with a room of five in the (fake) cloud,
//! addressed by name from start to end through the organiser's `aliyun` CLI
//! (here the stand-in of `common::aliyun`, first on `jupyter-room`'s PATH,
//! its stacks real agents whose workspace is the organiser's materials, one
//! local git repository):
//!
//! - `up --dry-run` prints two CreateStack commands and creates nothing;
//!   `up` creates two stacks tagged with the room (three participants and
//!   two, with `--per-stack 3`); `up` again creates nothing;
//! - while the stacks build, `show ROOM` lists the five as waiting, and the
//!   room's Snapshot has each front at its instance's address (the
//!   InstanceGroup copies' PublicIps); `watch --once ROOM`, round after
//!   round, shows the five with each one's setup phase and step until all
//!   are ready;
//! - a participant raises a hand: `watch` shows it with its message (the
//!   table and the projector's page);
//! - `show ROOM` gives one table of five ready participants whose URLs
//!   open Jupyter; `cards --room` one page of five cards;
//! - two participants edit their notebook; `down` refuses (nothing
//!   collected), naming who; `collect ROOM --out DIR` brings back each
//!   participant's archive, the edited notebooks byte for byte, with an
//!   index; a second `collect` skips them;
//! - the organiser pushes a fix: `update ROOM` reports who updated and whose
//!   edited notebook was kept beside the new version (on the instances: the
//!   edited one unchanged, the new one beside it); again: up to date;
//! - `down ROOM --yes` (no `--force`: all work was collected) deletes both
//!   stacks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::aliyun::{FakeCloud, InstanceView};
use crate::common::{self, bin, get_status, http, split_url, MOUNT, NOTEBOOK};
use crate::room_fronts::{sha256_hex, unzip};

const ROOM: &str = "lab";
const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// Where an instance's setup can be while `watch` asks it: its agent's
/// phases (docs/pages.md), `starting` for a front that has no phase yet.
const SETUP_PHASES: [&str; 8] = [
    "starting",
    "pending",
    "installing-docker",
    "preparing-gpu",
    "fetching-workspace",
    "preparing-image",
    "starting-container",
    "waiting-for-token",
];

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
fn a_room_of_five_in_two_stacks_the_whole_day_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // The organiser's materials: one repository, every instance's workspace
    // (a copy of its `main`, mounted in the container).
    let materials = dir.path().join("materials");
    common::materials_repo(&materials, &[("hello.ipynb", NOTEBOOK), ("guide.md", "# Step 1\n")]);
    let source = materials.clone();
    let cloud = FakeCloud::start(move |env| common::materials_config(env, &source, ""));
    let state = dir.path().join("state");
    let me = Organiser { cloud: &cloud, state: &state };
    let file = dir.path().join("participants.txt");
    std::fs::write(&file, "# the morning group\nalice\nbob\ncarol  # late\n\ndave\nerin\n").unwrap();
    let file = file.to_str().unwrap();
    let up = ["up", ROOM, "--participants", file, "--per-stack", "3", "--parameter", "TlsMode=off"];
    let day = Instant::now();

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

    // watch, round after round while they set up: the five each time, in
    // the room's order, each with where their setup is (a phase and its
    // step, from their front; unreachable only while their front is not
    // up yet), until all are ready.
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let rounds = loop {
        let watch = me.run(&["watch", "--once", ROOM]);
        let (out, err) = text(&watch);
        let table = watch_rows(&out);
        assert_eq!(table.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), NAMES, "{out}{err}");
        for (name, (_, setup, detail)) in NAMES.iter().zip(&table) {
            let known = setup == "ready"
                || SETUP_PHASES.contains(&setup.as_str())
                || (setup == "unreachable" && (detail.contains("refused") || detail == "no answer in time"));
            assert!(known, "{name}: {setup} {detail}\n{out}{err}");
            let shown = format!("{setup} {detail}").trim().to_string();
            let phases = seen.entry(name).or_default();
            if phases.last() != Some(&shown) {
                phases.push(shown);
            }
        }
        if watch.status.code() == Some(0) {
            break out;
        }
        assert_eq!(watch.status.code(), Some(1), "{out}{err}");
        if Instant::now() > deadline {
            let said: Vec<String> = NAMES.iter().filter_map(|n| cloud.instance(n)).map(|i| i.said()).collect();
            panic!("not all ready within 5 minutes:\n{out}{err}\n{}", said.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("watch while the room set up: {seen:#?}");
    assert!(rounds.contains("5 ready, 0 setting up, 0 failed, 0 unreachable, 0 waiting"), "{rounds}");
    for (name, shown) in &seen {
        assert_eq!(shown.last().map(String::as_str), Some("ready"), "{name}: {shown:?}");
    }
    assert!(
        seen.values().flatten().any(|s| SETUP_PHASES.iter().any(|p| s.starts_with(&format!("{p} ")))),
        "watch showed a setup phase with its step before ready: {seen:?}"
    );

    let instances: Vec<InstanceView> =
        NAMES.iter().map(|n| cloud.instance(n).unwrap_or_else(|| panic!("{n}'s instance"))).collect();
    let said = || instances.iter().map(InstanceView::said).collect::<Vec<_>>().join("\n");

    // carol raises her hand: watch shows it, with her message, on the table
    // and on the projector's page.
    let raised = instances[2].agent(&["hand", "raise", "--message", "stuck on step 3"]);
    assert!(raised.status.success(), "{}", String::from_utf8_lossy(&raised.stderr));
    let page = dir.path().join("room.html");
    let watch = me.run(&["watch", "--once", "--html", page.to_str().unwrap(), ROOM]);
    let (out, err) = text(&watch);
    assert_eq!(watch.status.code(), Some(0), "all ready: {out}{err}");
    for (name, _, detail) in watch_rows(&out) {
        let hand = detail.contains("HAND");
        assert_eq!(hand, name == "carol", "{name}:\n{out}");
    }
    assert!(out.contains("; 1 hand raised"), "{out}");
    let hand = out.lines().find(|l| l.starts_with("hand raised: carol at ")).unwrap_or_else(|| panic!("{out}"));
    assert!(hand.ends_with(" stuck on step 3"), "{hand}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("http-equiv=\"refresh\"") && html.contains("stuck on step 3"), "{html}");

    // show ROOM: one table, the five ready.
    let show = me.run(&["show", ROOM, "--show-token"]);
    let (table, err) = text(&show);
    assert_eq!(show.status.code(), Some(0), "{table}{err}");
    assert_eq!(table.lines().filter(|l| l.starts_with("PARTICIPANT")).count(), 1, "one table:\n{table}");
    assert!(table.contains("5 ready, 0 failed, 0 waiting"), "{table}");
    let mut tokens = Vec::new();
    for (row, name) in rows(&table).iter().zip(NAMES) {
        assert_eq!(row[0], name, "the room's order:\n{table}");
        assert_eq!(row[1], "ready");
        let (base, _, token) = split_url(&row[2]);
        assert_eq!(base, format!("http://{}:8888", addresses[name]), "{name}'s URL is at their instance");
        assert_eq!(status_within(&format!("{base}/api/status"), &token), 200, "{name}'s URL opens Jupyter");
        tokens.push(token);
    }
    let no_token = |what: &str, out: &str| {
        for t in &tokens {
            assert!(!out.contains(t.as_str()), "a token in {what}:\n{out}");
        }
    };
    no_token("watch's table", &out);
    no_token("watch's page", &html);

    // cards --room: one page of the five cards, private.
    let cards_page = dir.path().join("cards.html");
    let cards = me.run(&["cards", "--html", cards_page.to_str().unwrap(), "--room", ROOM]);
    let (out, err) = text(&cards);
    assert_eq!(cards.status.code(), Some(0), "{out}{err}");
    assert!(err.contains("wrote 5 cards"), "{err}");
    let html = std::fs::read_to_string(&cards_page).unwrap();
    for name in NAMES {
        assert!(html.contains(&format!("http://{}:8888/", addresses[name])), "{name}'s card");
    }
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cards_page).unwrap().permissions()) & 0o777,
        0o600
    );

    // The Snapshot the room's other commands start from: each participant's
    // front at their instance's address (now from the PublicIps output).
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

    // bob (lab-1) and erin (lab-2) edit their notebook, in Jupyter's container.
    let edited: BTreeMap<&str, String> = ["bob", "erin"]
        .into_iter()
        .map(|name| {
            let mine = format!(
                r#"{{"cells": [{{"cell_type": "markdown", "metadata": {{}}, "source": ["{name}'s answer"]}}], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}"#
            );
            let instance = &instances[NAMES.iter().position(|n| *n == name).unwrap()];
            let edit = format!("cat > {MOUNT}/hello.ipynb");
            let mut child = Command::new("docker")
                .args(["exec", "-i", &instance.container, "sh", "-c", &edit])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("docker exec");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), mine.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success(), "{name}'s edit\n{}", instance.said());
            (name, mine)
        })
        .collect();
    let notebook_of = |name: &str| edited.get(name).map(String::as_str).unwrap_or(NOTEBOOK);

    // down before collect: refused, naming who; nothing deleted.
    let refused = me.run(&["down", ROOM, "--yes"]);
    let (out, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(6), "{out}{err}");
    assert!(
        err.contains("the work of 5 of 5 participant(s) was not collected (alice, bob, carol, dave, erin)"),
        "{err}"
    );
    assert!(err.contains("2 stack(s)") && err.contains("--force"), "{err}");
    // Without a terminal and without --yes: not confirmed, even with --force.
    let unconfirmed = me.run(&["down", ROOM, "--force"]);
    let (_, err) = text(&unconfirmed);
    assert_eq!(unconfirmed.status.code(), Some(6), "{err}");
    assert!(err.contains("Delete the 2 stack(s) of room lab") && err.contains("5 participant(s)"), "{err}");
    assert_eq!(cloud.count("ros", "DeleteStack"), 0);

    // collect ROOM: one zip each, the edited notebooks byte for byte, an index.
    let work = dir.path().join("work");
    let started = Instant::now();
    let collect = me.run(&["collect", ROOM, "--out", work.to_str().unwrap()]);
    println!("collect: {} participants in {:.2} s", NAMES.len(), started.elapsed().as_secs_f64());
    let (out, err) = text(&collect);
    assert_eq!(collect.status.code(), Some(0), "{out}{err}\n{}", said());
    assert!(err.contains("5 front(s) have TLS off (http://)"), "{err}");
    assert!(out.contains("5 collected now, 0 already in"), "{out}");
    no_token("collect's output", &format!("{out}{err}"));
    let index = std::fs::read_to_string(work.join("index.csv")).unwrap();
    let lines: Vec<&str> = index.lines().collect();
    assert_eq!(lines[0], "participant,file,size,sha256,time,error", "{index}");
    for name in NAMES {
        let zip = work.join(format!("{name}.zip"));
        let entries = unzip(&zip);
        assert_eq!(
            entries.get("hello.ipynb").map(Vec::as_slice),
            Some(notebook_of(name).as_bytes()),
            "{name}'s notebook: {:?}",
            entries.keys()
        );
        assert_eq!(entries.get("guide.md").map(Vec::as_slice), Some(&b"# Step 1\n"[..]), "{name}");
        let line = lines.iter().find(|l| l.starts_with(&format!("{name},"))).unwrap_or_else(|| panic!("{index}"));
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1], format!("{name}.zip"), "{line}");
        assert_eq!(fields[2], std::fs::metadata(&zip).unwrap().len().to_string(), "{line}");
        assert_eq!(fields[3], sha256_hex(&zip), "{line}");
        assert_eq!(fields[5], "", "{line}");
    }
    no_token("the index", &index);
    // Again: the complete archives are skipped, untouched.
    let before: Vec<_> =
        NAMES.iter().map(|n| std::fs::metadata(work.join(format!("{n}.zip"))).unwrap().modified().unwrap()).collect();
    let collect = me.run(&["collect", ROOM, "--out", work.to_str().unwrap()]);
    let (out, err) = text(&collect);
    assert_eq!(collect.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("0 collected now, 5 already in"), "{out}");
    for (name, modified) in NAMES.iter().zip(before) {
        assert!(err.contains(&format!("{name}: already collected ({name}.zip)")), "{err}");
        assert_eq!(std::fs::metadata(work.join(format!("{name}.zip"))).unwrap().modified().unwrap(), modified);
    }

    // The organiser's fix: update ROOM merges it; bob's and erin's edited
    // notebooks are kept, the new version beside each.
    let fixed = NOTEBOOK.replace(
        "\"cells\": []",
        "\"cells\": [{\"cell_type\": \"markdown\", \"metadata\": {}, \"source\": [\"fixed\"]}]",
    );
    std::fs::write(materials.join("hello.ipynb"), &fixed).unwrap();
    common::git(&materials, &["commit", "-q", "-am", "the organiser's fix"]);
    let update = me.run(&["update", ROOM]);
    let (table, err) = text(&update);
    assert_eq!(update.status.code(), Some(0), "{table}{err}\n{}", said());
    no_token("update's output", &format!("{table}{err}"));
    for name in NAMES {
        let r = row(&table, name);
        if edited.contains_key(name) {
            assert!(
                r.contains("updated") && r.contains("yours kept: hello.ipynb (the new version beside it: hello.new-"),
                "{r}"
            );
        } else {
            assert!(r.contains("updated") && r.contains("1 updated") && !r.contains("yours kept"), "{r}");
        }
    }
    assert!(table.contains("5 updated (2 with files of theirs kept beside the new versions)"), "{table}");
    for (name, instance) in NAMES.iter().zip(&instances) {
        let handson = instance.path("handson");
        let in_place = std::fs::read_to_string(handson.join("hello.ipynb")).unwrap();
        let beside: Vec<String> = std::fs::read_dir(&handson)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hello.new-") && n.ends_with(".ipynb"))
            .collect();
        if edited.contains_key(name) {
            assert_eq!(in_place, notebook_of(name), "{name}'s own, in place");
            assert_eq!(beside.len(), 1, "the new version beside {name}'s: {beside:?}");
            assert_eq!(std::fs::read_to_string(handson.join(&beside[0])).unwrap(), fixed);
        } else {
            assert_eq!(in_place, fixed, "{name}: {}", instance.said());
            assert!(beside.is_empty(), "{name}: {beside:?}");
        }
    }
    // Again: nothing to take.
    let update = me.run(&["update", ROOM]);
    let (table, err) = text(&update);
    assert_eq!(update.status.code(), Some(0), "{table}{err}");
    assert!(table.contains("0 updated (0 with files of theirs kept beside the new versions), 5 up to date"), "{table}");

    // down ROOM --yes: all work collected, both stacks deleted (no --force).
    let down = me.run(&["down", ROOM, "--yes"]);
    let (out, err) = text(&down);
    assert_eq!(down.status.code(), Some(0), "{out}{err}");
    assert!(!err.contains("--force"), "{err}");
    assert_eq!(cloud.count("ros", "DeleteStack"), 2);
    assert!(cloud.stacks().is_empty());
    assert!(out.contains("lab-1: deleting") && out.contains("lab-2: deleting"), "{out}");
    let gone = me.run(&["show", ROOM]);
    let (_, err) = text(&gone);
    assert_eq!(gone.status.code(), Some(1), "{err}");
    assert!(err.contains("no stack is tagged jupyter-room=lab"), "{err}");
    println!("the day, up to down: {:.1} s", day.elapsed().as_secs_f64());
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

/// `watch`'s rows: (participant, setup, the rest of the line), between
/// the header and the blank line before the summary.
fn watch_rows(table: &str) -> Vec<(String, String, String)> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("PARTICIPANT"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            let setup = words.next().unwrap_or_default().to_string();
            (name, setup, words.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// The row of `name` in a table (its first column).
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}
