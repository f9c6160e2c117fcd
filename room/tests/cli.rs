//! The binary as an organiser runs it: input from a file and from stdin,
//! the table, the CSV, the cards file and its mode, and the exit codes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn get_stack(room: &str, participants: &str) -> String {
    format!(
        r#"{{"StackId": "c754d2a4-28f1-46df-b557-9586173a****", "StackName": "room-1", "Status": "CREATE_COMPLETE",
  "Outputs": [
    {{"OutputKey": "Room", "OutputValue": {room}, "Description": "each participant's signal"}},
    {{"OutputKey": "Participants", "OutputValue": {participants}}},
    {{"OutputKey": "ReadyCount", "OutputValue": 1}}
  ]}}"#
    )
}

fn mixed() -> String {
    get_stack(
        &format!(
            r#"{{"alice": "{{\"url\":\"http://47.1.2.3:8888/?token={TOKEN}\"}}",
                "bob": "{{\"error\":\"the container exited with code 1\",\"step\":\"container\"}}"}}"#
        ),
        r#"["alice", "bob", "carol"]"#,
    )
}

fn all_ready() -> String {
    get_stack(
        &format!(
            r#"{{"alice": {{"url": "http://47.1.2.3:8888/?token={TOKEN}"}}, "bob": {{"url": "http://47.1.2.4:8888/?token=b0b"}}}}"#
        ),
        r#""alice,bob""#,
    )
}

fn room(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jupyter-room"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jupyter-room runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn show_reads_a_file_and_exits_1_when_someone_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "room.json", &mixed());
    let out = room(&["show", &input], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
PARTICIPANT  STATE    URL OR REASON
alice        ready    http://47.1.2.3:8888/?token=<redacted>
bob          failed   container: the container exited with code 1
carol        waiting  (no signal yet)
1 ready, 1 failed, 1 waiting
"
    );
    assert!(!text(&out.stderr).contains(TOKEN));
}

#[test]
fn show_reads_stdin_and_exits_0_when_all_are_ready() {
    for args in [&["show"][..], &["show", "-"][..]] {
        let out = room(args, Some(&all_ready()));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.ends_with("2 ready, 0 failed, 0 waiting\n"), "{stdout}");
        assert!(!stdout.contains(TOKEN) && !stdout.contains("b0b"), "{stdout}");
    }
    let out = room(&["show", "--show-token"], Some(&all_ready()));
    assert!(text(&out.stdout).contains(&format!("http://47.1.2.3:8888/?token={TOKEN}")));
}

#[test]
fn show_csv_keeps_the_summary_off_stdout() {
    let out = room(&["show", "--csv"], Some(&mixed()));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "\
participant,state,url_or_reason
alice,ready,http://47.1.2.3:8888/?token=<redacted>
bob,failed,container: the container exited with code 1
carol,waiting,
"
    );
    assert_eq!(text(&out.stderr), "1 ready, 1 failed, 1 waiting\n");
}

/// The stack's EndTime parameter after the summary: on stdout under the
/// table, on stderr with the CSV; nothing when the answer lists no
/// parameters (the tests above).
#[test]
fn show_says_when_the_instances_are_released() {
    let with_end = |value: &str| {
        mixed().replacen(
            r#""Status": "CREATE_COMPLETE","#,
            &format!(
                r#""Status": "CREATE_COMPLETE", "Parameters": [
                  {{"ParameterKey": "Participants", "ParameterValue": "alice,bob,carol"}},
                  {{"ParameterKey": "EndTime", "ParameterValue": "{value}"}}],"#
            ),
            1,
        )
    };
    let ends = "ends 2999-12-08T09:00:00Z: the instances are released then (delete the stack with jupyter-room down)\n";
    let out = room(&["show"], Some(&with_end("2999-12-08T09:00:00Z")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!("1 ready, 1 failed, 1 waiting\n{ends}")), "{}", text(&out.stdout));

    let out = room(&["show", "--csv"], Some(&with_end("2999-12-08T09:00:00Z")));
    assert!(text(&out.stdout).ends_with("carol,waiting,\n"), "{}", text(&out.stdout));
    assert_eq!(text(&out.stderr), format!("1 ready, 1 failed, 1 waiting\n{ends}"));

    let out = room(&["show"], Some(&with_end("2020-01-01T00:00:00Z")));
    assert!(
        text(&out.stdout).ends_with(
            "waiting\nended 2020-01-01T00:00:00Z: the instances have been released; the rest of the stack remains \
             until it is deleted (jupyter-room down)\n"
        ),
        "{}",
        text(&out.stdout)
    );

    let out = room(&["show"], Some(&with_end("")));
    assert!(
        text(&out.stdout)
            .ends_with("waiting\nno end time set: the instances run until the stack is deleted (jupyter-room down)\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_input_exits_2_naming_the_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "notes.txt", "alice: ready\n");
    let html = dir.path().join("cards.html");
    let out = room(&["cards", "--html", html.to_str().unwrap(), &input], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with(&format!("jupyter-room: {input}: not JSON (")), "{stderr}");
    assert!(stderr.contains("expected the JSON that `aliyun ros GetStack` prints"), "{stderr}");
    assert!(!html.exists(), "nothing written");
    assert_eq!(out.stdout, b"");

    let out = room(&["show"], Some("[1, 2]"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("jupyter-room: stdin: a list that is not GetStack's Outputs"));
    assert_eq!(out.stdout, b"", "no table for a bad input");

    let missing = dir.path().join("missing.json");
    let out = room(&["show", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.json: cannot read it: No such file"), "{}", text(&out.stderr));

    let out = room(&["show", "--no-such-flag"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cards_writes_a_0600_page_with_every_card_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("cards.html");
    // An older, readable file is replaced by a private one.
    fs::write(&html, "old").unwrap();
    fs::set_permissions(&html, fs::Permissions::from_mode(0o644)).unwrap();
    let out = room(&["cards", "--html", html.to_str().unwrap()], Some(&mixed()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"", "no token on stdout");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("wrote 3 cards to {}", html.display())), "{stderr}");
    assert!(stderr.contains("mode 0600"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert_eq!(fs::metadata(&html).unwrap().permissions().mode() & 0o777, 0o600);
    let page = fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("http://47.1.2.3:8888/?token={TOKEN}")), "the card holds the full URL");
    assert_eq!(page.matches("<section class=\"card").count(), 3);
    assert_eq!(page.matches("<svg ").count(), 1);
    let names: Vec<_> = dir.path().read_dir().unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["cards.html"], "no temporary file left beside it");

    let out = room(&["cards", "--html", html.to_str().unwrap()], Some(&all_ready()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn cards_that_cannot_be_written_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("no/such/dir/cards.html");
    let out = room(&["cards", "--html", html.to_str().unwrap()], Some(&all_ready()));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot write"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing was written"));
}

#[test]
fn help_explains_the_input_and_the_exit_codes() {
    let out = room(&["--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("aliyun ros GetStack --RegionId cn-hangzhou --StackId <stack id> > room.json"), "{help}");
    assert!(help.contains("Exit codes:"), "{help}");
    let out = room(&["--version"], None);
    assert_eq!(text(&out.stdout).trim(), format!("jupyter-room {}", env!("CARGO_PKG_VERSION")));
}

/// `split` as an organiser runs it: 70 names from the command line and a
/// file become three CreateStack commands of 24, 23 and 23, every name once
/// and in order; a bad or repeated name, or a file that is not there, is
/// refused with exit 2 and nothing on stdout.
#[test]
fn split_prints_one_create_stack_per_even_group_or_refuses_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..70).map(|i| format!("p{i}")).collect();
    let file = write(dir.path(), "names.txt", &format!("# the afternoon\n{}\n", names[40..].join("\n")));
    let list = names[..40].join(",");
    let out = room(
        &["split", "--participants", &list, "--participants-file", &file, "--param", "ZoneId=cn-hangzhou-h"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stderr, b"");
    let printed = text(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 6, "{printed}");
    let mut seen: Vec<String> = Vec::new();
    for (i, (comment, size)) in [(0, 24), (2, 23), (4, 23)].into_iter().enumerate() {
        let (first, last) = (&names[seen.len()], &names[seen.len() + size - 1]);
        assert_eq!(lines[comment], format!("# stack {}: {size} participants ({first} .. {last})", i + 1));
        let command = lines[comment + 1];
        let group = command.split("--Parameters.1.ParameterValue ").nth(1).unwrap().split(' ').next().unwrap();
        assert_eq!(
            command,
            format!(
                "aliyun ros CreateStack --RegionId cn-hangzhou --StackName handson-room-{} --TimeoutInMinutes 90 \
                 --TemplateBody \"$(cat userdata/room.yml)\" \
                 --Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue {group} \
                 --Parameters.2.ParameterKey ZoneId --Parameters.2.ParameterValue cn-hangzhou-h",
                i + 1
            )
        );
        seen.extend(group.split(',').map(String::from));
    }
    assert_eq!(seen, names, "every participant once, in order");

    let missing = dir.path().join("missing.txt");
    for (args, message) in [
        (
            vec!["split", "--participants", "alice,Bob"],
            "jupyter-room: participant names must be a lowercase letter then up to 19 lowercase letters or digits \
             (they go into resource and bucket names): 'Bob'\n"
                .to_string(),
        ),
        (
            vec!["split", "--participants", "alice,bob,alice"],
            "jupyter-room: each participant once (the name is their key in the room's output): alice more than once\n"
                .into(),
        ),
        (
            vec!["split", "--participants", ""],
            "jupyter-room: no participants: give --participants a,b,c or --participants-file FILE\n".into(),
        ),
        (
            vec!["split", "--participants-file", missing.to_str().unwrap()],
            format!("jupyter-room: --participants-file {}: No such file or directory\n", missing.display()),
        ),
        (
            vec!["split", "--participants", "a", "--per-stack", "31"],
            "jupyter-room: --per-stack 31: expected 1 to 30 (the most one stack holds)\n".into(),
        ),
    ] {
        let out = room(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr), message, "{args:?}");
        assert_eq!(out.stdout, b"", "{args:?}: nothing printed");
    }
    let out = room(&["split", "--per-stack", "x"], None);
    assert_eq!(out.status.code(), Some(2), "a bad command line");
    assert_eq!(out.stdout, b"");

    let out = room(&["split", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in ["70 names: 24, 23, 23", "0  the commands were printed", "2  bad command line", "--participants-file"]
    {
        assert!(help.contains(needle), "{needle} not in:\n{help}");
    }
}

#[test]
fn the_fronts_commands_refuse_bad_input_with_2_and_ask_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "room.json", &mixed());
    let a_file = write(dir.path(), "not-a-dir", "x");
    let missing = dir.path().join("missing.json").display().to_string();
    let out_dir = dir.path().join("out").display().to_string();
    for (args, says) in [
        (vec!["collect", "--out", a_file.as_str(), input.as_str()], "not a directory"),
        (vec!["collect", "--out", out_dir.as_str(), missing.as_str()], "missing.json: cannot read it"),
        (vec!["collect", "--out", out_dir.as_str(), "--parallel", "0", input.as_str()], "--parallel"),
        (vec!["collect", input.as_str()], "--out"),
        (vec!["watch", "--once", "--interval", "0", input.as_str()], "--interval"),
        (vec!["watch", "--once", "--interval", "500ms", input.as_str()], "at least 1s"),
        (vec!["watch", "--once"], "FILE"),
        (vec!["update", "--parallel", "65", input.as_str()], "--parallel"),
        (vec!["update", "-", "-"], "more than once"),
    ] {
        let out = room(&args, Some(""));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{args:?} should say {says}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).contains(TOKEN), "{args:?}");
    }
    assert!(!Path::new(&out_dir).exists(), "nothing was made");
}

#[test]
fn collect_lists_who_is_not_ready_and_exits_1_without_sending_a_token_anywhere_unasked() {
    let dir = tempfile::tempdir().unwrap();
    // alice's front is a closed loopback port: reached, refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let stack = get_stack(
        &format!(
            r#"{{"alice": {{"url": "http://127.0.0.1:{port}/?token={TOKEN}"}}, "bob": {{"error": "no image", "step": "image"}}}}"#
        ),
        r#""alice,bob,carol""#,
    );
    let input = write(dir.path(), "room.json", &stack);
    let out_dir = dir.path().join("work");
    let out = Command::new(env!("CARGO_BIN_EXE_jupyter-room"))
        .args(["collect", "--out", out_dir.to_str().unwrap(), &input])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(!said.contains(TOKEN), "{said}");
    let index = fs::read_to_string(out_dir.join("index.csv")).unwrap();
    let lines: Vec<&str> = index.lines().collect();
    assert_eq!(lines.len(), 4, "{index}");
    assert!(lines[1].starts_with("alice,,,,") && lines[1].contains("Connection refused"), "{index}");
    assert!(
        lines[2].starts_with("bob,,,,") && lines[2].ends_with("not ready: the setup failed at image: no image"),
        "{index}"
    );
    assert!(lines[3].starts_with("carol,,,,") && lines[3].ends_with("not ready: no signal yet"), "{index}");
    assert_eq!(fs::metadata(out_dir.join("index.csv")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&out_dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!dir.path().join("state").exists(), "nobody collected: nothing recorded");
}
