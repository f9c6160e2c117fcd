//! `show`: the room as a table for the terminal, or as CSV.
//!
//! Columns: participant, state (`ready`, `failed`, `waiting`) and the login
//! URL, its token `<redacted>` unless asked, or `<step>: <reason>`. Every
//! field is one line with its control characters defused
//! ([`text::one_line`]); reasons always have their tokens redacted.

use crate::input::{Counts, Participant, Room, State};
use crate::text::{self, one_line, pad};

/// What a waiting participant's row says in the table.
pub const NO_SIGNAL: &str = "(no signal yet)";

/// The third column: the URL or what failed; `None` when waiting.
pub fn detail(p: &Participant, show_token: bool) -> Option<String> {
    match &p.state {
        State::Ready { url } if show_token => Some(one_line(url)),
        State::Ready { url } => Some(one_line(&text::scrub(url))),
        State::Failed { step: Some(step), reason } => Some(one_line(&text::scrub(&format!("{step}: {reason}")))),
        State::Failed { step: None, reason } => Some(one_line(&text::scrub(reason))),
        State::Waiting => None,
    }
}

/// `2 ready, 1 failed, 1 waiting`.
pub fn summary(counts: Counts) -> String {
    format!("{} ready, {} failed, {} waiting", counts.ready, counts.failed, counts.waiting)
}

/// The table, its header first and the summary line last.
pub fn table(room: &Room, show_token: bool) -> String {
    let header = ["PARTICIPANT", "STATE", "URL OR REASON"];
    let rows: Vec<[String; 3]> = room
        .participants
        .iter()
        .map(|p| {
            [
                one_line(&p.name),
                p.state.label().to_string(),
                detail(p, show_token).unwrap_or_else(|| NO_SIGNAL.to_string()),
            ]
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
    fn summary_counts() {
        assert_eq!(summary(Counts { ready: 3, failed: 0, waiting: 2 }), "3 ready, 0 failed, 2 waiting");
    }
}
