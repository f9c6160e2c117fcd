//! The room template (`userdata/room.yml`), checked like the single one
//! without a cloud account: rendered from the same user data, every
//! reference resolving, every resource with its required properties, the
//! user data within 16 KB, the parameters it shares with the single
//! template identical (labels, pickers, patterns), one copy of each
//! participant's resources per name (Count over the names split out of the
//! Participants string), one wait condition counting one signal per
//! participant, a Participants pattern that lets through only names that
//! make valid resource names, counts that hold whatever form the signals'
//! data takes, and a room that stays a margin below ROS's resource limit at
//! the size the template documents, every conditional resource counted.

use std::process::Command;

use std::collections::{BTreeMap, BTreeSet};

use crate::common::template::{
    as_get_att, as_ref, assert_end_time_wiring, assert_gpu_wiring, assert_tls_wiring, function, get, longest_value,
    read, sub_render, Template, INSTANCE, USER_DATA_LIMIT,
};
use yaml_rust2::Yaml;

const ROOM: &str = "userdata/room.yml";
/// ROS's limit on resources in one stack: the CreateStack API reference says
/// 200, the product limits page has said 200 and now says 300; the lower one
/// holds (docs/room.md#how-large-a-room-one-stack-holds).
const RESOURCES_PER_STACK: usize = 200;
/// Resources kept free below that limit at the documented room size: the
/// two pages disagree, and neither says how a resource whose condition is
/// false, or a counted resource's copies, are counted against it.
const MARGIN: usize = 10;
/// What the template's Participants description and pattern promise.
const MAX_PARTICIPANTS: usize = 30;

fn room() -> Template {
    Template::load_file(ROOM)
}

/// `{Fn::Split: [",", {Ref: Participants}]}`: the names, as a list.
fn names_list(node: &Yaml) -> bool {
    match function(node) {
        Some(("Fn::Split", Yaml::Array(a))) => {
            a.len() == 2 && a[0].as_str() == Some(",") && as_ref(&a[1]) == Some("Participants")
        }
        _ => false,
    }
}

/// `Count: {Fn::Length: <the names>}`.
fn counted_by_participants(resource: &Yaml) -> bool {
    matches!(get(resource, "Count").and_then(function), Some(("Fn::Length", arg)) if names_list(arg))
}

/// `Fn::Select: [{Ref: ALIYUN::Index}, X]`: X.
fn selected_by_index(node: &Yaml) -> Option<&Yaml> {
    match function(node) {
        Some(("Fn::Select", Yaml::Array(a))) if a.len() == 2 && as_ref(&a[0]) == Some("ALIYUN::Index") => Some(&a[1]),
        _ => None,
    }
}

/// Whether a condition holds for these parameter values (the functions the
/// ROS user guide's "Conditions" page lists for them, over `Ref`s and literals).
fn holds(t: &Template, node: &Yaml, values: &BTreeMap<&str, &str>) -> bool {
    let value = |n: &Yaml| -> String {
        match as_ref(n) {
            Some(p) => {
                values.get(p).unwrap_or_else(|| panic!("a condition reads {p}, which has no AllowedValues")).to_string()
            }
            None => n.as_str().map(str::to_string).unwrap_or_else(|| panic!("condition operand {n:?}")),
        }
    };
    let all = |a: &Yaml| {
        a.as_vec().unwrap_or_else(|| panic!("{a:?}")).iter().map(|c| holds(t, c, values)).collect::<Vec<_>>()
    };
    match function(node) {
        Some(("Fn::Equals", Yaml::Array(a))) if a.len() == 2 => value(&a[0]) == value(&a[1]),
        Some(("Fn::Not", a)) => !all(a)[0],
        Some(("Fn::And", a)) => all(a).into_iter().all(|b| b),
        Some(("Fn::Or", a)) => all(a).into_iter().any(|b| b),
        Some(("Condition", Yaml::String(c))) => holds(t, t.condition(c).unwrap(), values),
        other => panic!("a condition this checker cannot evaluate: {other:?}"),
    }
}

/// Every combination of the values allowed to the parameters the
/// conditions read.
fn condition_inputs(t: &Template) -> Vec<BTreeMap<&str, &str>> {
    fn refs<'a>(node: &'a Yaml, out: &mut BTreeSet<&'a str>) {
        if let Some(p) = as_ref(node) {
            out.insert(p);
        }
        match node {
            Yaml::Array(items) => items.iter().for_each(|i| refs(i, out)),
            Yaml::Hash(h) => h.values().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut read = BTreeSet::new();
    for (_, c) in t.section("Conditions") {
        refs(c, &mut read);
    }
    let mut combos = vec![BTreeMap::new()];
    for p in read {
        // A parameter with AllowedValues: each of them. One with a pattern
        // instead (EndTime): its default and a value equal to no literal
        // of the conditions, which stands for every other value.
        let definition = t.parameter(p).unwrap_or_else(|| panic!("a condition reads {p}, not a parameter"));
        let allowed: Vec<&str> = match get(definition, "AllowedValues").and_then(Yaml::as_vec) {
            Some(v) => v.iter().filter_map(Yaml::as_str).collect(),
            None => match (get(definition, "Default").and_then(Yaml::as_str), get(definition, "AllowedPattern")) {
                (Some(default), Some(_)) => vec![default, "(any other value)"],
                _ => panic!("a condition reads {p}, which has neither AllowedValues nor a default and a pattern"),
            },
        };
        combos = combos
            .into_iter()
            .flat_map(|c| {
                allowed.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(p, *v);
                    c
                })
            })
            .collect();
    }
    combos
}

#[test]
fn the_room_template_is_rendered_from_the_same_user_data_and_its_references_resolve() {
    let t = room();
    assert!(read(ROOM).starts_with("# GENERATED by scripts/render-userdata.py from userdata/room.src.yml"));
    let single = Template::load();
    assert_eq!(t.user_data().0, single.user_data().0, "one script, two renderings");
    let errors = t.broken_references();
    assert!(errors.is_empty(), "broken references in {ROOM}:\n{}", errors.join("\n"));
    let errors = t.missing_properties();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn shared_parameters_are_the_single_templates_own() {
    let (t, single) = (room(), Template::load());
    let mut shared = 0;
    for (name, definition) in t.section("Parameters") {
        if let Some(theirs) = single.parameter(name) {
            assert_eq!(definition, theirs, "parameter {name} differs from the single template's");
            shared += 1;
        }
    }
    assert!(shared >= 15, "only {shared} parameters shared");
    assert!(t.parameter("TlsMode").is_some(), "the room offers TlsMode too");
    for own in ["Participants", "RoomMode"] {
        assert!(t.parameter(own).is_some() && single.parameter(own).is_none(), "{own}");
    }
    assert_eq!(t.parameter("Participants").unwrap()["Type"].as_str(), Some("String"));
    assert_eq!(t.parameter("RoomMode").unwrap()["Default"].as_str(), Some("tolerant"));
}

/// As in the single template: TlsMode acme by default, and port 80 open to
/// 0.0.0.0/0 by the room's one security group only under the acme condition.
#[test]
fn tls_mode_defaults_to_acme_and_only_acme_opens_port_80_to_all() {
    assert_tls_wiring(&room(), ROOM);
}

/// As in the single template: EndTime releases every participant's
/// instance at the workshop's end, or none when empty.
#[test]
fn end_time_sets_every_instance_s_automatic_release_or_nothing_when_empty() {
    assert_end_time_wiring(&room(), ROOM);
}

/// The per-participant resources (counted by the names) and the shared ones.
const OWN_TYPES: [&str; 6] = [
    INSTANCE,
    "ALIYUN::OSS::Bucket",
    "ALIYUN::RAM::User",
    "ALIYUN::RAM::AccessKey",
    "ALIYUN::RAM::AttachPolicyToUser",
    "ALIYUN::RAM::ManagedPolicy",
];

#[test]
fn each_participant_gets_their_own_copy_and_the_wait_condition_counts_one_signal_each() {
    let t = room();
    for (name, resource) in t.section("Resources") {
        let ty = resource["Type"].as_str().unwrap();
        let own = OWN_TYPES.contains(&ty);
        assert_eq!(counted_by_participants(resource), own, "{name} ({ty}): one per participant iff it is theirs");
        if own {
            assert!(get(resource, "Condition").is_none(), "{name}: a participant's resource under a condition");
        }
    }
    let (wait, condition) = t.only("ALIYUN::ROS::WaitCondition");
    let count = get(&condition["Properties"], "Count").expect("Count");
    assert!(
        matches!(function(count), Some(("Fn::Length", arg)) if names_list(arg)),
        "{wait}.Count: one signal per participant, no milestones"
    );

    // The user data: the participant's own name as the signal id, their own
    // key and bucket, the room's mode.
    let (_, vars) = t.user_data();
    let var = |k: &str| vars.iter().find(|(n, _)| *n == k).unwrap_or_else(|| panic!("UserData maps no {k}")).1;
    assert!(selected_by_index(var("SignalId")).is_some_and(names_list), "SignalId: the copy's own name");
    assert_eq!(as_ref(var("RoomMode")), Some("RoomMode"));
    for (k, attribute) in [
        ("AccessKeyId", ("JupyterAccessKey", "AccessKeyId")),
        ("AccessKeySecret", ("JupyterAccessKey", "AccessKeySecret")),
        ("BucketName", ("Bucket", "Name")),
    ] {
        assert_eq!(selected_by_index(var(k)).and_then(as_get_att), Some(attribute), "{k}: the participant's own");
    }
    // The room's outputs: the Data keyed by participant, the list, and the counts.
    let outputs = t.section("Outputs");
    let output = |k: &str| outputs.iter().find(|(n, _)| *n == k).unwrap_or_else(|| panic!("no output {k}")).1;
    assert_eq!(as_get_att(&output("Room")["Value"]), Some((wait, "Data")));
    assert!(names_list(&output("Participants")["Value"]), "the Participants output is the list of names");
    for k in ["ReadyCount", "FailedCount"] {
        let (method, _, input) = count_output(&t, k);
        assert_eq!(method, "First", "{k}");
        assert_eq!(as_get_att(&input["data"]), Some((wait, "Data")), "{k}: Fn::Jq reads the wait condition's Data");
        assert!(names_list(&input["names"]), "{k}: Fn::Jq reads the Participants list");
    }
}

/// `Fn::Jq [method, script, {data: ..., names: ...}]` of a count output.
fn count_output<'a>(t: &'a Template, key: &str) -> (&'a str, &'a str, &'a Yaml) {
    let outputs = t.section("Outputs");
    let value = &outputs.iter().find(|(n, _)| *n == key).unwrap_or_else(|| panic!("no output {key}")).1["Value"];
    match function(value) {
        Some(("Fn::Jq", Yaml::Array(a))) if a.len() == 3 => {
            (a[0].as_str().unwrap(), a[1].as_str().expect("the jq script, a string"), &a[2])
        }
        other => panic!("{key} is not Fn::Jq [method, script, object]: {other:?}"),
    }
}

/// The stack's resources counted as ROS's preprocessing makes them
/// (docs/ros.md#counted-resources), every conditional resource with its
/// condition evaluated for every value the parameters it reads allow: the
/// most is with TlsMode acme, 8 shared resources (the port 80 rule among
/// them) and 6 per participant. At the documented size the room stays the
/// margin below ROS's limit, and one participant more would not; the
/// arithmetic in docs/room.md, the Participants description and its
/// pattern, and `jupyter-room split`'s largest group say the same.
#[test]
fn the_documented_room_size_keeps_a_margin_below_the_resource_limit_with_every_conditional_resource() {
    let t = room();
    let per: usize = t.section("Resources").into_iter().filter(|(_, r)| counted_by_participants(r)).count();
    let shared_for = |values: &BTreeMap<&str, &str>| -> usize {
        t.section("Resources")
            .into_iter()
            .filter(|(_, r)| !counted_by_participants(r))
            .filter(|(_, r)| match get(r, "Condition").and_then(Yaml::as_str) {
                Some(c) => holds(&t, t.condition(c).unwrap(), values),
                None => true,
            })
            .count()
    };
    let inputs = condition_inputs(&t);
    assert!(inputs.len() >= 3, "TlsMode's three values at least: {inputs:?}");
    let (worst, shared) = inputs.iter().map(|v| (v, shared_for(v))).max_by_key(|(_, n)| *n).unwrap();
    assert_eq!(worst.get("TlsMode"), Some(&"acme"), "the most resources: with TlsMode acme ({worst:?})");
    let conditional: Vec<&str> =
        t.section("Resources").into_iter().filter(|(_, r)| get(r, "Condition").is_some()).map(|(n, _)| n).collect();
    assert_eq!(conditional, ["AcmeChallengeIngress"], "the conditional resources this arithmetic has counted");
    assert_eq!((shared, per), (8, 6), "shared and per-participant resources, as docs/room.md counts them");

    let total = |n: usize| shared + n * per;
    let bound = RESOURCES_PER_STACK - MARGIN;
    assert!(total(MAX_PARTICIPANTS) <= bound, "{MAX_PARTICIPANTS} participants: {} resources", total(MAX_PARTICIPANTS));
    assert!(total(MAX_PARTICIPANTS + 1) > bound, "the documented maximum is not the largest that keeps the margin");

    // docs/room.md says the same arithmetic.
    let doc = read("docs/room.md");
    let sum = format!(
        "{shared} + {MAX_PARTICIPANTS} x {per} = {}, {} below",
        total(MAX_PARTICIPANTS),
        RESOURCES_PER_STACK - total(MAX_PARTICIPANTS)
    );
    assert!(doc.contains(&sum), "docs/room.md does not say `{sum}`");
    assert!(doc.contains(&format!("**{MAX_PARTICIPANTS} participants**")), "docs/room.md: the room size in bold");

    // The template promises it, and its pattern holds to it.
    let p = t.parameter("Participants").unwrap();
    let description = p["Description"].as_str().unwrap();
    assert!(description.contains(&format!("At most {MAX_PARTICIPANTS} per stack")), "{description}");
    let pattern = p["AllowedPattern"].as_str().unwrap();
    assert!(pattern.ends_with(&format!("{{0,{}}}$", MAX_PARTICIPANTS - 1)), "{pattern}");

    // jupyter-room split makes no larger group.
    let split = |per_stack: usize| {
        Command::new(crate::common::bin("jupyter-room"))
            .args(["split", "--participants", "alice", "--per-stack", &per_stack.to_string()])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(split(MAX_PARTICIPANTS), Some(0));
    assert_eq!(split(MAX_PARTICIPANTS + 1), Some(2), "jupyter-room split --per-stack {}", MAX_PARTICIPANTS + 1);
}

/// The Participants pattern, as Python's `re` reads it (ROS does not name
/// its regular expression dialect; this pattern uses only what every
/// dialect shares): names that make a valid bucket, RAM user and host name
/// and a signal id that is no integer, separated by bare commas; up to the
/// documented room size.
#[test]
fn the_participants_pattern_lets_through_only_names_that_make_valid_resource_names() {
    let t = room();
    let p = t.parameter("Participants").unwrap();
    assert_eq!(p["Type"].as_str(), Some("String"), "AllowedPattern is documented for String parameters");
    let pattern = p["AllowedPattern"].as_str().unwrap();
    let max_length = usize::try_from(get(p, "MaxLength").and_then(crate::common::template::as_int).unwrap()).unwrap();
    let names = |n: usize| (0..n).map(|i| format!("p{i:0>19}")).collect::<Vec<_>>().join(",");
    assert_eq!(names(MAX_PARTICIPANTS).len(), max_length, "MaxLength: the longest list the pattern takes");

    let accepted = [
        "alice".to_string(),
        "alice,bob,carol".into(),
        "a".into(),
        "p0,p1,p2".into(),
        "x1234567890123456789".into(),
        names(MAX_PARTICIPANTS),
    ];
    let refused = [
        String::new(),
        "alice, bob".into(),
        " bob".into(),
        "bob ".into(),
        "alice,,bob".into(),
        "alice,".into(),
        ",alice".into(),
        "Alice".into(),
        "1bob".into(),
        "42".into(),
        "bob-x".into(),
        "bob_x".into(),
        "x12345678901234567890".into(),
        "alice\nbob".into(),
        "名字".into(),
        names(MAX_PARTICIPANTS + 1),
    ];
    let script = "import re, sys\n\
                  p = sys.argv[1]\n\
                  for v in sys.argv[2:]:\n\
                  \x20   print(int(re.search(p, v) is not None and re.fullmatch(p, v) is not None))\n";
    let out =
        Command::new("python3").arg("-c").arg(script).arg(pattern).args(&accepted).args(&refused).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Vec<bool> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l == "1").collect();
    for (value, ok) in accepted.iter().chain(&refused).zip(&verdicts) {
        assert_eq!(*ok, accepted.contains(value), "{pattern} on {value:?}");
    }
    assert_eq!(verdicts.len(), accepted.len() + refused.len());
}

/// ReadyCount and FailedCount, run through jq (the ROS Fn::Jq page refers
/// to jq's own manual) on what ROS may hand them: the Data attribute as
/// the documented JSON string or already an object, each signal's data a
/// JSON string or an object; a participant renamed in place, whose old id
/// stays in Data; a participant who has not signalled; no signal at all.
/// Each count is the participants of the list in that state, as
/// jupyter-room shows them (an error wins over a URL).
#[test]
fn the_counts_hold_whether_the_data_are_strings_or_objects_and_count_only_listed_names() {
    let t = room();
    let (_, ready, _) = count_output(&t, "ReadyCount");
    let (_, failed, _) = count_output(&t, "FailedCount");
    let url = serde_json::json!({"url": "https://47.1.2.3:8888/?token=abc"});
    let error = serde_json::json!({"error": "the container exited with code 1", "step": "container"});
    let both = serde_json::json!({"url": "https://47.1.2.4:8888/?token=x", "error": "late failure", "step": "token"});
    let signals = serde_json::json!({"alice": url, "bob": error, "carol": error, "carol2": url, "dave": both});
    let as_strings: serde_json::Map<String, serde_json::Value> = signals
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
        .collect();
    // carol was renamed carol2 in place; erin has not signalled.
    let names = ["alice", "bob", "carol2", "dave", "erin"];
    let cases = [
        (
            "Data a JSON string of JSON strings",
            serde_json::Value::String(serde_json::Value::Object(as_strings.clone()).to_string()),
            (2, 2),
        ),
        ("Data an object of JSON strings", serde_json::Value::Object(as_strings), (2, 2)),
        ("Data a JSON string of objects", serde_json::Value::String(signals.to_string()), (2, 2)),
        ("Data an object of objects", signals.clone(), (2, 2)),
        ("no signal yet", serde_json::Value::Null, (0, 0)),
        ("an empty Data", serde_json::Value::String(String::new()), (0, 0)),
        ("Data of no signal", serde_json::Value::String("{}".into()), (0, 0)),
    ];
    let jq = |script: &str, input: &serde_json::Value| -> String {
        let mut child = Command::new("jq")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("jq: {e} (scripts/test.sh installs it: scripts/lib.sh ensure_test_packages)"));
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "jq {script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for (what, data, (want_ready, want_failed)) in cases {
        let input = serde_json::json!({"data": data, "names": names});
        assert_eq!(jq(ready, &input), want_ready.to_string(), "ReadyCount, {what}: {input}");
        assert_eq!(jq(failed, &input), want_failed.to_string(), "FailedCount, {what}: {input}");
    }
}

#[test]
fn the_rooms_user_data_fits_in_16_kb_with_the_longest_values() {
    let t = room();
    let (text, vars) = t.user_data();
    let mut errors = Vec::new();
    let longest: std::collections::BTreeMap<&str, String> = vars
        .iter()
        .filter_map(|(var, value)| {
            // The participant's name: at most 20 characters (Participants' pattern).
            if *var == "SignalId" {
                return Some((*var, "x".repeat(20)));
            }
            match longest_value(&t, var, value) {
                Ok(n) => Some((*var, "x".repeat(n))),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        })
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let worst =
        sub_render(text, |name| longest.get(name).cloned().ok_or_else(|| format!("no value for ${{{name}}}"))).unwrap();
    assert!(
        worst.len() <= USER_DATA_LIMIT,
        "the room's user data can reach {} bytes; ROS allows {USER_DATA_LIMIT}",
        worst.len()
    );
}

/// Alibaba's own formatter and checker of ROS templates, `rostran format`
/// (PyPI alibabacloud-ros-tran, installed by scripts/lib.sh's
/// ensure_rostran), accepts both templates. It reports a problem
/// (`Invalid template resource Vpc. The type should be str.`) and still
/// exits 0, so what it prints decides.
#[test]
fn alibabas_template_formatter_accepts_both_templates() {
    let rostran = std::env::var("ROSTRAN").unwrap_or_else(|_| "/var/tmp/jupyter-agent-rostran/bin/rostran".into());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for template in ["userdata/template.yml", ROOM] {
        let out =
            Command::new(&rostran).arg("format").arg(repo.join(template)).env("NO_COLOR", "1").output().unwrap_or_else(
                |e| panic!("{rostran}: {e} (scripts/test.sh installs it: scripts/lib.sh ensure_rostran)"),
            );
        let printed = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rostran format {template}: {printed}");
        assert!(
            printed.trim_end().ends_with("Formatted successfully.") && !printed.contains("Invalid"),
            "rostran format {template} found a problem:\n{}",
            printed.lines().filter(|l| !l.starts_with(' ')).collect::<Vec<_>>().join("\n")
        );
    }
}

/// A room larger than one stack: `jupyter-room split` prints one CreateStack
/// command per group of at most 30, as even as they can be, every name once
/// and in order; a bad or repeated name is refused (exit 2, nothing printed).
#[test]
fn a_larger_room_is_split_into_stacks_that_each_fit() {
    let room = crate::common::bin("jupyter-room");
    let names: Vec<String> = (0..70).map(|i| format!("p{i}")).collect();
    let out = Command::new(&room)
        .args(["split", "--participants", &names.join(","), "--param", "ZoneId=cn-hangzhou-h"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let commands: Vec<&str> = printed.lines().filter(|l| l.starts_with("aliyun ros CreateStack")).collect();
    assert_eq!(commands.len(), 3, "{printed}");
    let mut seen: Vec<String> = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        assert!(command.contains(&format!("--StackName handson-room-{}", i + 1)), "{command}");
        assert!(command.contains("--TemplateBody \"$(cat userdata/room.yml)\""), "{command}");
        assert!(command.contains("--Parameters.2.ParameterKey ZoneId --Parameters.2.ParameterValue cn-hangzhou-h"));
        let group = command.split("--Parameters.1.ParameterValue ").nth(1).unwrap().split(' ').next().unwrap();
        let group: Vec<String> = group.split(',').map(String::from).collect();
        assert!(group.len() <= MAX_PARTICIPANTS && group.len() >= 23, "{} in stack {}", group.len(), i + 1);
        seen.extend(group);
    }
    assert_eq!(seen, names, "every participant once, in order");

    for bad in ["alice,Bob", "alice,bob,alice", "", "a-b"] {
        let out = Command::new(&room).args(["split", "--participants", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?}: nothing printed");
    }
}

/// ROS's preprocessing of the room for 1, 20 and the documented maximum of
/// participants, played here (docs/ros.md#counted-resources): each counted
/// resource becomes one copy per name, `ALIYUN::Index` its index; then the
/// stack's resource count is within the limit, and each copy's user data
/// signals with its own participant's name and uses its own key and bucket.
#[test]
fn rooms_of_1_20_and_the_maximum_expand_within_the_limit_each_copy_with_its_own_name() {
    let t = room();
    for n in [1, 20, MAX_PARTICIPANTS] {
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let mut resources = 0;
        for (name, resource) in t.section("Resources") {
            let copies = if counted_by_participants(resource) { n } else { 1 };
            resources += copies;
            if resource["Type"].as_str() != Some(INSTANCE) {
                continue;
            }
            let (_, vars) = t.user_data();
            for (index, participant) in names.iter().enumerate().take(copies) {
                // Fn::Select [ALIYUN::Index, X] of this copy: X's element `index`.
                let pick = |var: &str| -> String {
                    let value = vars.iter().find(|(k, _)| *k == var).unwrap().1;
                    let list = selected_by_index(value).unwrap_or_else(|| panic!("{name}.{var} is not per copy"));
                    match (names_list(list), as_get_att(list)) {
                        (true, _) => participant.clone(),
                        (_, Some((resource, attribute))) => format!("{resource}[{index}].{attribute}"),
                        other => panic!("{name}.{var}: {other:?}"),
                    }
                };
                assert_eq!(pick("SignalId"), *participant, "copy {index} of {n} signals as its participant");
                assert_eq!(pick("AccessKeyId"), format!("JupyterAccessKey[{index}].AccessKeyId"));
                assert_eq!(pick("AccessKeySecret"), format!("JupyterAccessKey[{index}].AccessKeySecret"));
                assert_eq!(pick("BucketName"), format!("Bucket[{index}].Name"));
            }
        }
        assert!(resources <= RESOURCES_PER_STACK, "{n} participants: {resources} resources");
    }
}

/// The PublicIps output, run through jq: the instances are groups of one,
/// so `Fn::GetAtt` of the counted group is a list of one-address lists (or,
/// should ROS flatten it, the addresses); either way the output is the
/// addresses in the participants' order.
#[test]
fn the_public_ips_output_is_the_addresses_in_order_whether_the_copies_lists_are_nested_or_not() {
    let t = room();
    let outputs = t.section("Outputs");
    let value = &outputs.iter().find(|(n, _)| *n == "PublicIps").expect("a PublicIps output").1["Value"];
    let Some(("Fn::Jq", Yaml::Array(a))) = function(value) else { panic!("PublicIps is not Fn::Jq: {value:?}") };
    assert_eq!(a[0].as_str(), Some("First"));
    assert_eq!(as_get_att(&a[2]), Some(("JupyterInstance", "PublicIps")), "the instance groups' PublicIps");
    let script = a[1].as_str().unwrap();
    let want = r#"["47.1.2.3","47.1.2.4","47.1.2.5"]"#;
    for input in [r#"[["47.1.2.3"],["47.1.2.4"],["47.1.2.5"]]"#, r#"["47.1.2.3","47.1.2.4","47.1.2.5"]"#] {
        let mut child = Command::new("jq")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("jq: {e} (scripts/test.sh installs it: scripts/lib.sh ensure_test_packages)"));
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "jq {script} on {input}");
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), want, "on {input}");
    }
}

#[test]
fn the_rooms_gpu_option_is_the_single_templates() {
    assert_gpu_wiring(&Template::load_file(ROOM), "room.yml");
}
