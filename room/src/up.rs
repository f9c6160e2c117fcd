//! `up`: a whole room in one action. The participants file is read and
//! checked, the names are split into stacks as `split` does (at most 30 a
//! stack, groups as even as they can be), and each stack is one
//! `aliyun ros CreateStack` of the room template, named `ROOM-1`, `ROOM-2`,
//! ... and tagged `jupyter-room=ROOM`, so that every later command finds
//! the room's stacks by that tag.

use crate::aliyun::Call;
use crate::split;

/// The room template (`userdata/room.yml`, rendered from `room.src.yml`),
/// as this binary creates its stacks with it.
pub const TEMPLATE: &str = include_str!("../../userdata/room.yml");

/// The tag every stack of a room carries: `jupyter-room=<room>`.
pub const TAG_KEY: &str = "jupyter-room";

/// The stack timeout `split` has always used: the wait condition gives the
/// instances an hour, ROS itself a half hour more.
pub const TIMEOUT_MINUTES: &str = "90";

/// What the room-name rule says, for messages and --help.
pub const ROOM_NAME_RULE: &str =
    "a lowercase letter, then up to 39 lowercase letters, digits or single hyphens, not ending in a hyphen";

/// A room's name: a lowercase letter, then up to 39 lowercase letters,
/// digits or `-` (no `--`, not ending in `-`). It names the stacks
/// (`ROOM-1`: ROS takes letters, digits, `-` and `_` in a stack name), is
/// the tag's value (at most 128 characters) and names the room's record
/// file, so it holds nothing a path or a shell would read otherwise.
pub fn is_room_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A participant's name as the room template's Participants pattern takes it
/// (`^[a-z][a-z0-9]{0,19}(,[a-z][a-z0-9]{0,19}){0,29}$`).
pub fn is_participant_name(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The participants file: one name per line, `#` starting a comment, blank
/// lines skipped. Every bad name and every repeat is named with its line
/// number (`file:3`), so one reading fixes them all.
pub fn participants(file: &str, text: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let name = line.split('#').next().unwrap_or_default().trim();
        if name.is_empty() {
            continue;
        }
        if !is_participant_name(name) {
            let why = if name.contains(',') || name.contains(char::is_whitespace) {
                "one name per line"
            } else {
                "a lowercase letter, then up to 19 lowercase letters or digits"
            };
            problems.push(format!("{file}:{n}: {}: {why}", crate::text::one_line(&format!("{name:?}"))));
            continue;
        }
        if let Some((first, _)) = names.iter().find(|(_, m)| m == name) {
            problems.push(format!("{file}:{n}: {name} again (first on line {first}): each participant once"));
            continue;
        }
        names.push((n, name.to_string()));
    }
    if !problems.is_empty() {
        let shown = problems.len().min(10);
        let more = problems.len() - shown;
        let mut message = problems[..shown].join("\n  ");
        if more > 0 {
            message.push_str(&format!("\n  ... and {more} more"));
        }
        return Err(format!(
            "the participants file has {} problem(s) (names go into resource and bucket names and are the \
             participants' keys in the room's output):\n  {message}",
            problems.len()
        ));
    }
    if names.is_empty() {
        return Err(format!("{file}: no participants (one name per line; # starts a comment)"));
    }
    Ok(names.into_iter().map(|(_, name)| name).collect())
}

/// `--parameter KEY=VALUE`, checked: a key of letters and digits (as the
/// template's parameter names are), not Participants (set per stack).
pub fn parameters(given: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in given {
        let Some((key, value)) = p.split_once('=') else {
            return Err(format!("--parameter {}: expected KEY=VALUE", crate::text::one_line(p)));
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("--parameter {}: the key is a template parameter's name (letters and digits)", key));
        }
        if key == "Participants" {
            return Err("--parameter Participants: up sets it per stack from --participants".into());
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("--parameter {key}: given twice"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// One stack to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub participants: Vec<String>,
    pub call: Call,
}

/// The stacks of the room: names split into groups of at most `per_stack`,
/// each a CreateStack call with the template, its Participants, the other
/// parameters and the room's tag.
pub fn plan(room: &str, region: &str, names: &[String], per_stack: usize, params: &[(String, String)]) -> Vec<Planned> {
    split::groups(names, per_stack)
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let name = format!("{room}-{}", i + 1);
            let mut call = Call::new("ros", "CreateStack")
                .param("RegionId", region)
                .param("StackName", &name)
                .param("TimeoutInMinutes", TIMEOUT_MINUTES)
                .param("TemplateBody", TEMPLATE);
            let participants = ("Participants".to_string(), group.join(","));
            for (n, (key, value)) in std::iter::once(&participants).chain(params).enumerate() {
                call = call
                    .param(format!("Parameters.{}.ParameterKey", n + 1), key)
                    .param(format!("Parameters.{}.ParameterValue", n + 1), value);
            }
            call = call.param("Tags.1.Key", TAG_KEY).param("Tags.1.Value", room);
            Planned { name, participants: group.to_vec(), call }
        })
        .collect()
}

/// How `--dry-run` prints a stack's command: runnable as it is, the template
/// body read from this binary.
pub fn dry_run_line(p: &Planned) -> String {
    p.call.shell(&[("TemplateBody", "\"$(jupyter-room template)\"")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for good in ["lab", "a", "ws-2026-03", "x1"] {
            assert!(is_room_name(good), "{good}");
        }
        for bad in ["", "Lab", "1lab", "lab-", "la--b", "la_b", "a b", "../x", &"a".repeat(41)] {
            assert!(!is_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_participants_file_one_name_a_line_comments_and_blanks_skipped() {
        let text = "# morning group\nalice\n\n  bob   # late\r\ncarol\n";
        assert_eq!(participants("room.txt", text).unwrap(), ["alice", "bob", "carol"]);
    }

    #[test]
    fn every_bad_name_and_repeat_is_named_with_its_line() {
        let text = "alice\nBob\nalice\nbob,carol\n1x\ndave\nthisnameistoolongforit\ndave\n";
        let message = participants("names.txt", text).unwrap_err();
        assert_eq!(
            message,
            "the participants file has 6 problem(s) (names go into resource and bucket names and are the participants' \
             keys in the room's output):\n  \
             names.txt:2: \"Bob\": a lowercase letter, then up to 19 lowercase letters or digits\n  \
             names.txt:3: alice again (first on line 1): each participant once\n  \
             names.txt:4: \"bob,carol\": one name per line\n  \
             names.txt:5: \"1x\": a lowercase letter, then up to 19 lowercase letters or digits\n  \
             names.txt:7: \"thisnameistoolongforit\": a lowercase letter, then up to 19 lowercase letters or digits\n  \
             names.txt:8: dave again (first on line 6): each participant once"
        );
        assert_eq!(
            participants("empty.txt", "# nobody\n\n").unwrap_err(),
            "empty.txt: no participants (one name per line; # starts a comment)"
        );
    }

    #[test]
    fn five_names_two_per_stack_make_three_tagged_stacks() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let params = parameters(&["TlsMode=off".into(), "RootPassword=it's x".into()]).unwrap();
        let plan = plan("lab", "cn-hangzhou", &names, 2, &params);
        let got: Vec<(&str, Vec<String>)> = plan.iter().map(|p| (p.name.as_str(), p.participants.clone())).collect();
        assert_eq!(
            got,
            [
                ("lab-1", vec!["a".to_string(), "b".into()]),
                ("lab-2", vec!["c".to_string(), "d".into()]),
                ("lab-3", vec!["e".to_string()])
            ]
        );
        assert_eq!(plan[0].call.get("TemplateBody"), Some(TEMPLATE));
        assert_eq!(
            dry_run_line(&plan[1]),
            "aliyun ros CreateStack --RegionId cn-hangzhou --StackName lab-2 --TimeoutInMinutes 90 \
             --TemplateBody \"$(jupyter-room template)\" \
             --Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue c,d \
             --Parameters.2.ParameterKey TlsMode --Parameters.2.ParameterValue off \
             --Parameters.3.ParameterKey RootPassword --Parameters.3.ParameterValue 'it'\"'\"'s x' \
             --Tags.1.Key jupyter-room --Tags.1.Value lab"
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(parameters(&["A=b=c".into()]).unwrap(), [("A".to_string(), "b=c".to_string())]);
        assert!(parameters(&["novalue".into()]).unwrap_err().contains("KEY=VALUE"));
        assert!(parameters(&["Participants=a".into()]).unwrap_err().contains("per stack"));
        assert!(parameters(&["A=1".into(), "A=2".into()]).unwrap_err().contains("twice"));
        assert!(parameters(&["a b=1".into()]).unwrap_err().contains("letters and digits"));
    }

    #[test]
    fn the_embedded_template_is_the_room_template() {
        assert!(TEMPLATE.contains("\nROSTemplateFormatVersion: "), "a ROS template");
        assert!(TEMPLATE.contains("JupyterInstance:") && TEMPLATE.contains("Participants:"));
        // One argument of the CLI: Linux takes at most 128 KiB in one argument
        // (MAX_ARG_STRLEN), and CreateStack a TemplateBody of 512 KiB.
        assert!(TEMPLATE.len() < 100 * 1024, "{} bytes", TEMPLATE.len());
    }
}
