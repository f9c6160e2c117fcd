//! The input shapes the organiser may hand over, and the refusals.

use super::*;

const URL_A: &str = "http://47.1.2.3:8888/?token=abc123";
const URL_C: &str = "http://47.1.2.5:8888/tree?token=ccc";

fn names(room: &Room) -> Vec<(&str, &str)> {
    room.participants.iter().map(|p| (p.name.as_str(), p.state.label())).collect()
}

fn ready(url: &str) -> State {
    State::Ready { url: url.into(), gpus: Vec::new() }
}

/// The brief's example, as the aliyun CLI prints it: Room an object of
/// JSON strings, Participants a list, counts as numbers.
const GET_STACK: &str = r#"{"StackId": "c754d2a4-28f1-46df-b557-9586173a****", "StackName": "room-42",
  "Status": "CREATE_COMPLETE", "StatusReason": "Stack CREATE completed successfully",
  "Parameters": [{"ParameterKey": "ALIYUN::Region", "ParameterValue": "cn-hangzhou"}],
  "Outputs": [
    {"OutputKey": "Room", "OutputValue": {"alice": "{\"url\":\"http://47.1.2.3:8888/?token=abc123\"}",
                                          "bob": "{\"error\":\"the container exited with code 1\",\"step\":\"image\"}"},
     "Description": "each participant's signal"},
    {"OutputKey": "Participants", "OutputValue": ["alice", "bob", "carol"], "Description": "names"},
    {"OutputKey": "ReadyCount", "OutputValue": 1}, {"OutputKey": "FailedCount", "OutputValue": 1}
  ], "RequestId": "B288A0BE-D927-4888-B0F7-B35EF84B6E6F"}"#;

#[test]
fn the_whole_get_stack_answer() {
    let room = parse(GET_STACK).unwrap();
    assert_eq!(names(&room), [("alice", "ready"), ("bob", "failed"), ("carol", "waiting")]);
    assert_eq!(room.participants[0].state, ready(URL_A));
    assert_eq!(
        room.participants[1].state,
        State::Failed { step: Some("image".into()), reason: "the container exited with code 1".into() }
    );
    let stack = room.stack.as_ref().unwrap();
    assert_eq!(stack.name.as_deref(), Some("room-42"));
    assert_eq!(stack.status.as_deref(), Some("CREATE_COMPLETE"));
    assert!(!stack.room_missing);
    assert!(room.unlisted.is_empty());
    assert_eq!(room.counts(), Counts { ready: 1, failed: 1, waiting: 1 });
    assert!(!room.all_ready());
}

/// The EndTime parameter of the GetStack answer (the ROS GetStack reference:
/// `Parameters`, a list of `{ParameterKey, ParameterValue}`).
#[test]
fn the_end_time_is_read_from_the_parameters_set_empty_or_absent() {
    let with = |params: &str| {
        let answer = format!(
            r#"{{"StackId": "s", "Status": "CREATE_COMPLETE", {params}
                "Outputs": [{{"OutputKey": "Room", "OutputValue": {{}}}}]}}"#
        );
        parse(&answer).unwrap().stack.unwrap().end_time
    };
    let region = r#"{"ParameterKey": "ALIYUN::Region", "ParameterValue": "cn-hangzhou"}"#;
    let end = |value: &str| format!(r#"{{"ParameterKey": "EndTime", "ParameterValue": {value}}}"#);

    let set = with(&format!(r#""Parameters": [{region}, {}],"#, end(r#"" 2026-12-08T09:00:00Z""#)));
    assert_eq!(set, EndTime::At("2026-12-08T09:00:00Z".into()));
    assert_eq!(set.at(), Some("2026-12-08T09:00:00Z"), "what StackSeen::ends_at holds");
    for empty in [r#""""#, r#""  ""#, "null"] {
        let none = with(&format!(r#""Parameters": [{}, {region}],"#, end(empty)));
        assert_eq!(none, EndTime::NotSet, "EndTime {empty}");
        assert_eq!(none.at(), None);
    }
    // A template without the parameter: its instances have no release time.
    assert_eq!(with(&format!(r#""Parameters": [{region}],"#)), EndTime::NotSet);
    // No Parameters list: nothing known.
    assert_eq!(with(""), EndTime::Unknown);
    assert_eq!(with(r#""Parameters": null,"#), EndTime::Unknown);
    assert_eq!(EndTime::Unknown.at(), None);
    // The brief's answer lists only a pseudo parameter; a part of a GetStack
    // answer alone says nothing of the stack.
    assert_eq!(parse(GET_STACK).unwrap().stack.unwrap().end_time, EndTime::NotSet);
    assert_eq!(parse(r#"{"alice": {"url": "http://1.2.3.4:8888/?token=t"}}"#).unwrap().stack, None);
}

#[test]
fn output_values_as_strings_holding_json() {
    // Fn::GetAtt [WaitCondition, Data] is documented as a JSON string; a
    // Participants output may be a JSON list in a string, or a
    // comma-separated string, as the Participants parameter is.
    let data = serde_json::json!({"alice": {"url": URL_A}, "carol": URL_C}).to_string();
    for participants in [
        serde_json::json!("[\"carol\", \"alice\", \"bob\"]"),
        serde_json::json!("carol, alice,bob,"),
        serde_json::json!(["carol", "alice", "bob", "alice"]),
    ] {
        let input = serde_json::json!({"Outputs": [
            {"OutputKey": "Participants", "OutputValue": participants},
            {"OutputKey": "Room", "OutputValue": data},
        ]});
        let room = parse(&input.to_string()).unwrap();
        assert_eq!(names(&room), [("carol", "ready"), ("alice", "ready"), ("bob", "waiting")], "{participants}");
        assert_eq!(room.participants[0].state, ready(URL_C));
    }
}

#[test]
fn the_outputs_list_alone_and_one_entry() {
    let outputs = serde_json::from_str::<Value>(GET_STACK).unwrap()["Outputs"].to_string();
    let room = parse(&outputs).unwrap();
    assert_eq!(names(&room), [("alice", "ready"), ("bob", "failed"), ("carol", "waiting")]);
    assert_eq!(room.stack, None);

    let one = r#"{"OutputKey": "Room", "OutputValue": {"zoe": {"url": "https://h/?token=z"}, "adam": null}}"#;
    assert_eq!(names(&parse(one).unwrap()), [("adam", "waiting"), ("zoe", "ready")]);
}

#[test]
fn the_bare_room_object_sorted_by_name() {
    let room = parse(
        r#"{"carol": {"url": "http://h3:8888/?token=c"}, "alice": "{\"url\":\"http://h1:8888/?token=a\"}",
                         "bob": {"error": "no space left", "step": "image"}}"#,
    )
    .unwrap();
    assert_eq!(names(&room), [("alice", "ready"), ("bob", "failed"), ("carol", "ready")]);
    assert_eq!(room.stack, None);
    assert!(room.unlisted.is_empty(), "without a list nobody is unlisted");
}

#[test]
fn the_wait_conditions_data_as_a_json_string() {
    // The Data attribute copied as it is: a JSON string whose content is
    // the object, each value the signal's data (itself JSON in a string).
    let data = serde_json::json!({"alice": serde_json::json!({"url": URL_A}).to_string()}).to_string();
    let input = serde_json::to_string(&data).unwrap();
    assert!(input.starts_with('"'), "{input}");
    let room = parse(&input).unwrap();
    assert_eq!(room.participants, [Participant { name: "alice".into(), state: ready(URL_A) }]);
}

#[test]
fn a_bare_url_as_data_is_ready() {
    // A single-instance stack's bootstrap sends the URL itself as data.
    let room = parse(&serde_json::json!({"jupyter": URL_A}).to_string()).unwrap();
    assert_eq!(room.participants[0].state, ready(URL_A));
}

#[test]
fn listed_but_absent_is_waiting_and_unlisted_signals_are_neither_rows_nor_counted() {
    let input = serde_json::json!({"Outputs": [
        {"OutputKey": "Participants", "OutputValue": "bob,alice"},
        {"OutputKey": "Room", "OutputValue": {"zed": {"url": URL_C}, "dave": {"url": URL_A}, "alice": {"url": URL_A}}},
    ]});
    let room = parse(&input.to_string()).unwrap();
    assert_eq!(names(&room), [("bob", "waiting"), ("alice", "ready")]);
    assert_eq!(room.unlisted, ["dave", "zed"]);
    assert_eq!(room.counts(), Counts { ready: 1, failed: 0, waiting: 1 });
}

/// A participant replaced by renaming in place (carol -> carol2, the stack
/// updated): the wait condition's Data keeps carol's old failure beside
/// carol2's signal, and the stack's Participants list names carol2 only.
/// The list decides: carol2 is shown once, carol not at all, and the counts
/// are the room's, not the signals'.
#[test]
fn a_participant_renamed_in_place_is_shown_once_under_the_name_the_stack_has_now() {
    let signal = |v: serde_json::Value| v.to_string();
    let get_stack = |data: serde_json::Value| {
        serde_json::json!({
            "StackId": "s", "StackName": "handson-room-1", "Status": "UPDATE_COMPLETE",
            "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "alice,carol2"}],
            "Outputs": [
                {"OutputKey": "Room", "OutputValue": data.to_string()},
                {"OutputKey": "Participants", "OutputValue": ["alice", "carol2"]},
                {"OutputKey": "ReadyCount", "OutputValue": 2}, {"OutputKey": "FailedCount", "OutputValue": 0},
            ],
        })
        .to_string()
    };
    let room = parse(&get_stack(serde_json::json!({
        "alice": signal(serde_json::json!({"url": URL_A})),
        "carol": signal(serde_json::json!({"error": "no space left on device", "step": "image"})),
        "carol2": signal(serde_json::json!({"url": URL_C})),
    })))
    .unwrap();
    assert_eq!(names(&room), [("alice", "ready"), ("carol2", "ready")]);
    assert_eq!(room.participants[1].state, ready(URL_C));
    assert_eq!(room.unlisted, ["carol"]);
    assert_eq!(room.counts(), Counts { ready: 2, failed: 0, waiting: 0 });
    assert!(room.all_ready(), "the replaced participant's old failure does not hold the room back");

    // Before the new instance has signalled (or if ROS refused its late
    // signal): carol2 waits, and carol's failure is still not theirs.
    let room = parse(&get_stack(serde_json::json!({
        "alice": signal(serde_json::json!({"url": URL_A})),
        "carol": signal(serde_json::json!({"error": "no space left on device", "step": "image"})),
    })))
    .unwrap();
    assert_eq!(names(&room), [("alice", "ready"), ("carol2", "waiting")]);
    assert_eq!(room.unlisted, ["carol"]);
    assert_eq!(room.counts(), Counts { ready: 1, failed: 0, waiting: 1 });
}

/// One id twice in the Data text, an old signal and a new one (ROS keeps
/// one per id, a later one replacing an earlier; a hand-merged or odd copy
/// may hold both): the later one in the text wins, whether Data is the
/// documented JSON string or already an object in the GetStack answer.
/// Ids equal but for surrounding blanks are one participant, and the one
/// spelled without blanks wins wherever it stands.
#[test]
fn one_id_twice_in_the_data_is_one_participant_and_the_later_signal_wins() {
    let failed = serde_json::json!({"error": "the container exited with code 1", "step": "container"}).to_string();
    let fixed = serde_json::json!({"url": URL_C}).to_string();
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    for (first, second, want) in [(&failed, &fixed, "ready"), (&fixed, &failed, "failed")] {
        let data =
            format!("{{\"alice\": {}, \"carol\": {}, \"carol\": {}}}", quote(&fixed), quote(first), quote(second));
        let as_string = format!(
            r#"{{"Outputs": [{{"OutputKey": "Participants", "OutputValue": ["alice", "carol"]}},
                {{"OutputKey": "Room", "OutputValue": {}}}]}}"#,
            quote(&data)
        );
        let as_object = format!(
            r#"{{"Outputs": [{{"OutputKey": "Participants", "OutputValue": ["alice", "carol"]}},
                {{"OutputKey": "Room", "OutputValue": {data}}}]}}"#
        );
        for input in [&as_string, &as_object, &data] {
            let room = parse(input).unwrap();
            assert_eq!(names(&room), [("alice", "ready"), ("carol", want)], "{input}");
            assert!(room.unlisted.is_empty());
        }
    }

    for data in
        [serde_json::json!({" carol": failed, "carol": fixed}), serde_json::json!({"carol": fixed, "carol ": failed})]
    {
        let room = parse(&data.to_string()).unwrap();
        assert_eq!(room.participants, [Participant { name: "carol".into(), state: ready(URL_C) }], "{data}");
        let listed = serde_json::json!({"Outputs": [
            {"OutputKey": "Participants", "OutputValue": "carol"}, {"OutputKey": "Room", "OutputValue": data}]});
        let room = parse(&listed.to_string()).unwrap();
        assert_eq!(room.participants, [Participant { name: "carol".into(), state: ready(URL_C) }], "{data}");
        assert!(room.unlisted.is_empty(), "{data}");
    }
}

#[test]
fn a_stack_still_being_created() {
    // No outputs yet (or empty values): the Participants parameter names the room.
    let input = r#"{"StackId": "s", "Status": "CREATE_IN_PROGRESS",
      "Parameters": [{"ParameterKey": "Participants", "ParameterValue": "alice,bob"}]}"#;
    let room = parse(input).unwrap();
    assert_eq!(names(&room), [("alice", "waiting"), ("bob", "waiting")]);
    assert!(room.stack.as_ref().unwrap().room_missing);
    assert_eq!(room.counts(), Counts { ready: 0, failed: 0, waiting: 2 });

    let input = r#"{"StackId": "s", "Status": "CREATE_IN_PROGRESS", "Outputs": [
      {"OutputKey": "Room", "OutputValue": ""}, {"OutputKey": "Participants", "OutputValue": ["alice"]}]}"#;
    assert_eq!(names(&parse(input).unwrap()), [("alice", "waiting")]);
}

#[test]
fn odd_signals_are_failures_that_say_what_arrived() {
    let room = parse(
        r#"{"a": {"url": "ftp://h/x"}, "b": {"status": "ok"}, "c": 42, "d": "hello", "e": "{not json",
            "f": {"error": {"code": 3}}, "g": {"error": "boom", "step": ""}, "h": {"url": 7}}"#,
    )
    .unwrap();
    let reasons: Vec<String> = room
        .participants
        .iter()
        .map(|p| match &p.state {
            State::Failed { step, reason } => format!("{step:?} {reason}"),
            other => panic!("{}: {other:?}", p.name),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "None \"url\" is not an http(s) URL: ftp://h/x",
            "None signal data with neither \"url\" nor \"error\": {\"status\":\"ok\"}",
            "None unexpected signal data: 42",
            "None unexpected signal data: hello",
            "None signal data that is not JSON: {not json",
            "None {\"code\":3}",
            "None boom",
            "None \"url\" is not a string: 7",
        ]
    );
    // An error wins over a URL: the instance said it failed.
    let room = parse(r#"{"x": {"url": "http://h/", "error": "late failure"}}"#).unwrap();
    assert_eq!(room.participants[0].state.label(), "failed");
}

#[test]
fn long_reasons_are_bounded() {
    let room = parse(&serde_json::json!({"a": {"error": "x".repeat(5000)}}).to_string()).unwrap();
    let State::Failed { reason, .. } = &room.participants[0].state else { panic!() };
    assert_eq!(reason.chars().count(), MAX_REASON);
    assert!(reason.ends_with('…'));
}

#[test]
fn bad_inputs_say_what_was_expected() {
    for (input, want) in [
        ("", "empty; expected the JSON that `aliyun ros GetStack` prints"),
        ("   \n", "empty;"),
        ("<html>", "not JSON (expected value at line 1 column 1); expected"),
        ("42", "a number; expected"),
        ("[]", "an empty list; expected"),
        ("[1, 2]", "a list that is not GetStack's Outputs; expected"),
        ("\"hello\"", "a string that is not JSON"),
        (r#"{"Outputs": {"a": 1}}"#, "\"Outputs\" is an object: expected a list of"),
        (
            r#"{"Outputs": [{"OutputKey": "Url", "OutputValue": "x"}]}"#,
            "no output named \"Room\" and no Participants list (found outputs Url)",
        ),
        (r#"{"StackId": "s", "Status": "CREATE_COMPLETE"}"#, "(found no outputs)"),
        (r#"{"Outputs": [{"OutputKey": "Room", "OutputValue": [1]}]}"#, "the Room output is a list"),
        (
            r#"{"Outputs": [{"OutputKey": "Room", "OutputValue": "{oops"}]}"#,
            "the Room output is a string that is not JSON",
        ),
        (
            r#"{"Outputs": [{"OutputKey": "Room", "OutputValue": {}}, {"OutputKey": "Participants", "OutputValue": [{"n": 1}]}]}"#,
            "the Participants output[0] is an object: expected a participant's name",
        ),
        (
            r#"{"Outputs": [{"OutputKey": "Room", "OutputValue": {}}, {"OutputKey": "Participants", "OutputValue": "[\"a\""}]}"#,
            "the Participants output starts with '[' but is not a JSON list",
        ),
        (
            r#"{"Outputs": [{"OutputKey": "Participants", "OutputValue": 3}]}"#,
            "the Participants output is a number: expected a list of names",
        ),
        (r#"{"Outputs": [{"OutputKey": "Room"}, 5]}"#, "Outputs[1] is a number: expected an object with"),
        (
            r#"{"RequestId": "B2", "Code": "StackNotFound", "Message": "The Stack (x) could not be found."}"#,
            "an error answer, not a stack: StackNotFound: The Stack (x) could not be found.; expected",
        ),
        (
            r#"{"name": "jupyter-room", "version": 1, "tags": ["a"]}"#,
            "an object none of whose values is a participant's signal data",
        ),
    ] {
        let e = parse(input).expect_err(input).0;
        assert!(e.contains(want), "{input:?}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn http_urls() {
    for ok in ["http://h", "https://1.2.3.4:8888/?token=x", "HTTP://H/"] {
        assert!(is_http_url(ok), "{ok}");
    }
    for bad in ["", "http://", "http:///x", "javascript:alert(1)", "ftp://h", "http://h /x", "h/x"] {
        assert!(!is_http_url(bad), "{bad}");
    }
}
