//! `show`: the room as a table for the terminal, or as CSV.
//!
//! Columns: participant, state (`ready`, `failed`, `waiting`) and the login
//! URL, its token `<redacted>` unless asked (in the table, followed by the
//! container's GPUs when its data names them: `(GPU: Tesla T4)`), or
//! `<step>: <reason>`. Every
//! field is one line with its control characters defused
//! ([`text::one_line`]); reasons always have their tokens redacted. After
//! the summary, for a GetStack answer that lists its parameters, when the
//! instances are released ([`end_line`]).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::input::{Counts, EndTime, Participant, Room, State};
use crate::text::{self, one_line, pad};

/// What a waiting participant's row says in the table.
pub const NO_SIGNAL: &str = "(no signal yet)";

/// The third column: the URL or what failed; `None` when waiting.
pub fn detail(p: &Participant, show_token: bool) -> Option<String> {
    match &p.state {
        State::Ready { url, .. } if show_token => Some(one_line(url)),
        State::Ready { url, .. } => Some(one_line(&text::scrub(url))),
        State::Failed { step: Some(step), reason } => Some(one_line(&text::scrub(&format!("{step}: {reason}")))),
        State::Failed { step: None, reason } => Some(one_line(&text::scrub(reason))),
        State::Waiting => None,
    }
}

/// The GPUs in a few words, equal names counted: `Tesla T4`, `2x NVIDIA A10`,
/// `NVIDIA A10, Tesla T4`; `None` without GPUs.
pub fn gpus(names: &[String]) -> Option<String> {
    let mut groups: Vec<(usize, &str)> = Vec::new();
    for name in names {
        match groups.iter_mut().find(|(_, n)| n == name) {
            Some((count, _)) => *count += 1,
            None => groups.push((1, name)),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(count, name)| match count {
            1 => one_line(name),
            n => format!("{n}x {}", one_line(name)),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `2 ready, 1 failed, 1 waiting`.
pub fn summary(counts: Counts) -> String {
    format!("{} ready, {} failed, {} waiting", counts.ready, counts.failed, counts.waiting)
}

/// What the stack's `EndTime` means for the organiser
/// (docs/room.md#the-end-of-the-workshop), or nothing when the input does
/// not say: ECS releases the instances at that time, and only them, so the
/// stack still has to be deleted. `now`: seconds since the Unix epoch.
pub fn end_line(end: &EndTime, now: i64) -> Option<String> {
    match end {
        EndTime::Unknown => None,
        EndTime::NotSet => {
            Some("no end time set: the instances run until the stack is deleted (jupyter-room down)".to_string())
        }
        EndTime::At(at) => {
            let at_text = one_line(at);
            Some(match unix_seconds(at) {
                Some(t) if t <= now => format!(
                    "ended {at_text}: the instances have been released; the rest of the stack remains until it \
                     is deleted (jupyter-room down)"
                ),
                _ => {
                    format!("ends {at_text}: the instances are released then (delete the stack with jupyter-room down)")
                }
            })
        }
    }
}

/// The room's end line now, when its input says.
pub fn end_line_now(room: &Room) -> Option<String> {
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    end_line(&room.stack.as_ref()?.end_time, now)
}

/// `yyyy-MM-ddTHH:mm:ssZ` (UTC, the form `EndTime` takes) as seconds since
/// the Unix epoch; `None` for anything else.
pub fn unix_seconds(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = t.get(from..to)?;
        digits.bytes().all(|c| c.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The table, its header first, then the summary line, then (for a GetStack
/// answer that lists its parameters) the end line.
pub fn table(room: &Room, show_token: bool) -> String {
    let header = ["PARTICIPANT", "STATE", "URL OR REASON"];
    let rows: Vec<[String; 3]> = room
        .participants
        .iter()
        .map(|p| {
            let mut third = detail(p, show_token).unwrap_or_else(|| NO_SIGNAL.to_string());
            if let State::Ready { gpus: names, .. } = &p.state {
                if let Some(g) = gpus(names) {
                    third.push_str(&format!("  (GPU: {g})"));
                }
            }
            [one_line(&p.name), p.state.label().to_string(), third]
        })
        .collect();
    let name_width = rows.iter().map(|r| text::width(&r[0])).chain([header[0].len()]).max().unwrap_or(0);
    let state_width = "waiting".len().max(header[1].len());
    let mut out = String::new();
    let mut line = |cells: [&str; 3]| {
        let text = format!("{}  {}  {}", pad(cells[0], name_width), pad(cells[1], state_width), cells[2]);
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2]]);
    }
    out.push_str(&summary(room.counts()));
    out.push('\n');
    if let Some(end) = end_line_now(room) {
        out.push_str(&end);
        out.push('\n');
    }
    out
}

/// The same rows as CSV (RFC 4180 quoting, LF line ends) under the header
/// `participant,state,url_or_reason`; a waiting row's third field is empty.
pub fn csv(room: &Room, show_token: bool) -> String {
    let mut out = String::from("participant,state,url_or_reason\n");
    for p in &room.participants {
        let fields = [one_line(&p.name), p.state.label().to_string(), detail(p, show_token).unwrap_or_default()];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// One CSV field: quoted when it holds a comma, a quote, a line break or
/// surrounding spaces, its quotes doubled. A field a spreadsheet would run
/// as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'`, as OWASP advises against CSV injection:
/// names and reasons come from the instances.
pub fn csv_field(field: &str) -> String {
    let guarded;
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{field}");
        guarded.as_str()
    } else {
        field
    };
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse;

    fn room() -> Room {
        parse(
            r#"{"Outputs": [
              {"OutputKey": "Participants", "OutputValue": ["alice", "张伟", "bob", "carol"]},
              {"OutputKey": "Room", "OutputValue": {
                 "alice": "{\"url\":\"http://47.1.2.3:8888/?token=abc123\"}",
                 "张伟": {"url": "http://47.1.2.4:8888/tree?token=zzz999"},
                 "bob": {"error": "the container exited with code 1", "step": "container"}}}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_table_redacts_tokens_and_aligns_wide_names() {
        let table = table(&room(), false);
        assert_eq!(
            table,
            "\
PARTICIPANT  STATE    URL OR REASON
alice        ready    http://47.1.2.3:8888/?token=<redacted>
张伟         ready    http://47.1.2.4:8888/tree?token=<redacted>
bob          failed   container: the container exited with code 1
carol        waiting  (no signal yet)
2 ready, 1 failed, 1 waiting
"
        );
        assert!(!table.contains("abc123") && !table.contains("zzz999"));
    }

    #[test]
    fn show_token_shows_the_whole_url_but_never_a_token_in_a_reason() {
        let mut room = room();
        room.participants[2].state =
            State::Failed { step: Some("token".into()), reason: "probe http://h/?token=leak failed".into() };
        let table = table(&room, true);
        assert!(table.contains("http://47.1.2.3:8888/?token=abc123"), "{table}");
        assert!(table.contains("token: probe http://h/?token=<redacted> failed"), "{table}");
        assert!(!table.contains("leak"), "{table}");
    }

    #[test]
    fn csv_rows_follow_the_table() {
        assert_eq!(
            csv(&room(), false),
            "\
participant,state,url_or_reason
alice,ready,http://47.1.2.3:8888/?token=<redacted>
张伟,ready,http://47.1.2.4:8888/tree?token=<redacted>
bob,failed,container: the container exited with code 1
carol,waiting,
"
        );
        assert!(csv(&room(), true).contains("alice,ready,http://47.1.2.3:8888/?token=abc123\n"));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1+2"), "'-1+2");
    }

    #[test]
    fn hostile_names_and_reasons_stay_on_their_row() {
        let room = parse(
            r#"{"eve\u001b[2J": {"error": "line one\nline two, \"quoted\"\u001b]0;title\u0007", "step": "image"}}"#,
        )
        .unwrap();
        let table = table(&room, false);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(!table.contains('\u{1b}') && !table.contains('\u{7}'), "{table:?}");
        assert!(table.contains("image: line one line two, \"quoted\"\u{fffd}]0;title\u{fffd}"), "{table}");
        let csv = csv(&room, false);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "eve\u{fffd}[2J,failed,\"image: line one line two, \"\"quoted\"\"\u{fffd}]0;title\u{fffd}\""
        );
    }

    #[test]
    fn the_end_line_says_when_the_instances_are_released_and_that_the_stack_remains() {
        let dec8 = unix_seconds("2026-12-08T09:00:00Z").unwrap();
        assert_eq!(
            end_line(&EndTime::At("2026-12-08T09:00:00Z".into()), dec8 - 1).unwrap(),
            "ends 2026-12-08T09:00:00Z: the instances are released then (delete the stack with jupyter-room down)"
        );
        assert_eq!(
            end_line(&EndTime::At("2026-12-08T09:00:00Z".into()), dec8).unwrap(),
            "ended 2026-12-08T09:00:00Z: the instances have been released; the rest of the stack remains until it \
             is deleted (jupyter-room down)"
        );
        assert_eq!(
            end_line(&EndTime::NotSet, dec8).unwrap(),
            "no end time set: the instances run until the stack is deleted (jupyter-room down)"
        );
        assert_eq!(end_line(&EndTime::Unknown, dec8), None);
        // Not the documented form: shown as given, on one line, never "ended".
        assert_eq!(
            end_line(&EndTime::At("soon\n\u{1b}[2J".into()), i64::MAX).unwrap(),
            "ends soon \u{fffd}[2J: the instances are released then (delete the stack with jupyter-room down)"
        );
    }

    #[test]
    fn unix_seconds_reads_the_end_time_form_only() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(unix_seconds("2026-12-08T09:00:00Z"), Some(1_796_720_400));
        assert_eq!(unix_seconds("2028-02-29T23:59:59Z"), Some(1_835_481_599));
        for bad in [
            "2026-12-08T09:00Z",
            "2026-12-08 09:00:00Z",
            "2026-13-08T09:00:00Z",
            "2026-12-08T09:00:00",
            "+026-12-08T09:00:00Z",
            "",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_table_ends_with_the_end_line_of_a_get_stack_answer_that_lists_its_parameters() {
        let answer = |params: &str| {
            parse(&format!(
                r#"{{"StackId": "s", "Status": "CREATE_COMPLETE", {params}
                    "Outputs": [{{"OutputKey": "Room", "OutputValue": {{"alice": {{"url": "http://1.2.3.4:8888/?token=t"}}}}}}]}}"#
            ))
            .unwrap()
        };
        let set = table(
            &answer(r#""Parameters": [{"ParameterKey": "EndTime", "ParameterValue": "2999-12-08T09:00:00Z"}],"#),
            false,
        );
        assert!(set.ends_with("1 ready, 0 failed, 0 waiting\nends 2999-12-08T09:00:00Z: the instances are released then (delete the stack with jupyter-room down)\n"), "{set}");
        let empty = table(&answer(r#""Parameters": [{"ParameterKey": "EndTime", "ParameterValue": ""}],"#), false);
        assert!(
            empty.ends_with(
                "waiting\nno end time set: the instances run until the stack is deleted (jupyter-room down)\n"
            ),
            "{empty}"
        );
        let unknown = table(&answer(""), false);
        assert!(unknown.ends_with("1 ready, 0 failed, 0 waiting\n"), "{unknown}");
        assert!(!csv(&answer(r#""Parameters": [],"#), false).contains("end"), "the CSV is the rows alone");
    }

    #[test]
    fn the_table_names_each_participants_gpus_and_the_csv_keeps_its_columns() {
        let room = parse(
            r#"{"alice": {"url": "http://47.1.2.3:8888/?token=abc123", "gpus": ["Tesla T4"]},
                "bob": "{\"url\":\"http://47.1.2.4:8888/?token=b\",\"gpus\":[\"NVIDIA A10\",\"NVIDIA A10\"]}",
                "carol": {"url": "http://47.1.2.5:8888/?token=c", "gpus": "not a list"}}"#,
        )
        .unwrap();
        let table = table(&room, false);
        assert!(
            table.contains("alice        ready    http://47.1.2.3:8888/?token=<redacted>  (GPU: Tesla T4)\n"),
            "{table}"
        );
        assert!(table.contains("ready    http://47.1.2.4:8888/?token=<redacted>  (GPU: 2x NVIDIA A10)\n"), "{table}");
        assert!(table.contains("ready    http://47.1.2.5:8888/?token=<redacted>\n"), "{table}");
        assert!(csv(&room, false).contains("alice,ready,http://47.1.2.3:8888/?token=<redacted>\n"));
        let two = ["NVIDIA A10".to_string(), "Tesla T4".to_string(), "NVIDIA A10".to_string()];
        assert_eq!(gpus(&two).unwrap(), "2x NVIDIA A10, Tesla T4");
        assert_eq!(gpus(&[]), None);
    }

    #[test]
    fn summary_counts() {
        assert_eq!(summary(Counts { ready: 3, failed: 0, waiting: 2 }), "3 ready, 0 failed, 2 waiting");
    }
}
