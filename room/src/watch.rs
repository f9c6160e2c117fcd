//! `watch`: per participant, where the setup is (the stack's status, then
//! the instance's own progress), who is ready, who failed and why, and
//! raised hands; as a table for the terminal or a self-refreshing HTML page.
//!
//! Everything shown comes from the stacks and the instances, whose root can
//! write anything: every field is one line with its control characters
//! defused and tokens redacted ([`text`]), and the page escapes it.

use std::time::Duration;

use crate::cards::escape;
use crate::fronts::Probe;
use crate::input::State;
use crate::snapshot::{Seat, Snapshot};
use crate::text::{self, one_line, pad, scrub};

/// The longest detail or hand message shown, in characters.
const MAX_DETAIL: usize = 100;

/// Where one participant is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    Ready,
    /// Under way: the phase (`preparing-image`) or the stack's step.
    Busy(String),
    Failed,
    /// A front that should answer did not.
    Unreachable,
    /// Nothing to ask yet: no signal and no front.
    Waiting,
}

impl Setup {
    pub fn label(&self) -> &str {
        match self {
            Setup::Ready => "ready",
            Setup::Busy(phase) => phase,
            Setup::Failed => "failed",
            Setup::Unreachable => "unreachable",
            Setup::Waiting => "waiting",
        }
    }
}

/// One participant's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub setup: Setup,
    /// The step and its progress, why it failed, why it is unreachable.
    pub detail: String,
    /// A raised hand: `HH:MM message`.
    pub hand: Option<String>,
}

/// One line, tokens redacted, bounded.
fn clean(s: &str) -> String {
    let line = one_line(&scrub(s));
    if line.chars().count() > MAX_DETAIL {
        let cut: String = line.chars().take(MAX_DETAIL - 1).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// The row of `seat` given what its front said.
pub fn row(snapshot: &Snapshot, seat: &Seat, probe: &Probe) -> Row {
    let signal_failure = match &seat.state {
        State::Failed { step: Some(step), reason } => Some(format!("{step}: {reason}")),
        State::Failed { step: None, reason } => Some(reason.clone()),
        _ => None,
    };
    let (setup, detail, hand) = match probe {
        Probe::Answered(p) => {
            let hand = p.hand.as_ref().map(|h| {
                let at = h.raised_at.get(11..16).unwrap_or(&h.raised_at);
                match h.message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                    Some(m) => clean(&format!("{at} {m}")),
                    None => clean(at),
                }
            });
            let certificate = p.certificate.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            if let Some(step) = &p.failed_step {
                (Setup::Failed, signal_failure.unwrap_or_else(|| format!("{step}: see jupyter-agent status")), hand)
            } else if p.ready {
                (Setup::Ready, certificate.trim().to_string(), hand)
            } else {
                let step = match (&p.step, &p.progress) {
                    (Some(s), Some(pr)) => format!("{s} {pr}"),
                    (Some(s), None) => s.clone(),
                    _ => String::new(),
                };
                let phase = if p.phase.is_empty() { "starting".to_string() } else { p.phase.clone() };
                let phase = if phase == "ready" { "restarting".to_string() } else { phase };
                (Setup::Busy(clean(&phase)), format!("{step}{certificate}"), hand)
            }
        }
        Probe::Unreachable(why) => match &seat.state {
            State::Failed { .. } => (Setup::Failed, signal_failure.unwrap_or_default(), None),
            State::Ready { .. } => (Setup::Unreachable, format!("signalled ready; now {why}"), None),
            State::Waiting => (Setup::Unreachable, why.clone(), None),
        },
        Probe::NoFront => match &seat.state {
            State::Failed { .. } => (Setup::Failed, signal_failure.unwrap_or_default(), None),
            State::Ready { .. } => (Setup::Ready, "(no address to ask)".into(), None),
            State::Waiting => {
                let stack = snapshot.stack_of(seat);
                let status = stack.map(|s| s.status.as_str()).unwrap_or_default();
                let why = stack.and_then(|s| s.status_reason.as_deref()).unwrap_or_default();
                if status.ends_with("_FAILED") || status.contains("ROLLBACK") || status.starts_with("DELETE") {
                    (Setup::Failed, format!("stack {}: {status} {why}", seat.stack), None)
                } else if status.ends_with("_IN_PROGRESS") {
                    (Setup::Busy("creating".into()), format!("stack {}: {status}", seat.stack), None)
                } else {
                    (Setup::Waiting, "no signal yet".into(), None)
                }
            }
        },
    };
    Row { name: one_line(&seat.name), setup, detail: clean(&detail), hand }
}

/// Every row, in the snapshot's order.
pub fn rows(snapshot: &Snapshot, probes: &[Probe]) -> Vec<Row> {
    snapshot.seats.iter().zip(probes).map(|(seat, probe)| row(snapshot, seat, probe)).collect()
}

/// How many are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ready: usize,
    pub busy: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub waiting: usize,
    pub hands: usize,
}

pub fn tally(rows: &[Row]) -> Tally {
    let mut t = Tally::default();
    for r in rows {
        match r.setup {
            Setup::Ready => t.ready += 1,
            Setup::Busy(_) => t.busy += 1,
            Setup::Failed => t.failed += 1,
            Setup::Unreachable => t.unreachable += 1,
            Setup::Waiting => t.waiting += 1,
        }
        t.hands += usize::from(r.hand.is_some());
    }
    t
}

/// `3 ready, 1 setting up, 1 failed, 0 unreachable, 0 waiting; 1 hand raised`.
pub fn summary(t: Tally) -> String {
    format!(
        "{} ready, {} setting up, {} failed, {} unreachable, {} waiting; {} hand{} raised",
        t.ready,
        t.busy,
        t.failed,
        t.unreachable,
        t.waiting,
        t.hands,
        if t.hands == 1 { "" } else { "s" }
    )
}

/// `room NAME: N participants, polled in 0.84 s at 10:02:03 UTC`.
pub fn headline(snapshot: &Snapshot, round: Duration, at: &str) -> String {
    format!(
        "room {}: {} participant{}, polled in {:.2} s at {at}",
        one_line(&snapshot.room),
        snapshot.seats.len(),
        if snapshot.seats.len() == 1 { "" } else { "s" },
        round.as_secs_f64()
    )
}

/// The table: the headline, a header, a row each, the summary; raised
/// hands again at the end, where they are seen.
pub fn table(headline: &str, rows: &[Row]) -> String {
    let header = ["PARTICIPANT", "SETUP", "DETAIL", "HAND"];
    let name_width = rows.iter().map(|r| text::width(&r.name)).chain([header[0].len()]).max().unwrap_or(0);
    let setup_width = rows.iter().map(|r| text::width(r.setup.label())).chain([header[1].len()]).max().unwrap_or(0);
    let detail_width = rows.iter().map(|r| text::width(&r.detail)).chain([header[2].len()]).max().unwrap_or(0);
    let mut out = format!("{headline}\n\n");
    let mut line = |cells: [&str; 4]| {
        let text = format!(
            "{}  {}  {}  {}",
            pad(cells[0], name_width),
            pad(cells[1], setup_width),
            pad(cells[2], detail_width),
            cells[3]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for r in rows {
        let hand = r.hand.as_deref().map(|h| format!("HAND {h}")).unwrap_or_default();
        line([&r.name, r.setup.label(), &r.detail, &hand]);
    }
    out.push('\n');
    out.push_str(&summary(tally(rows)));
    out.push('\n');
    for r in rows.iter().filter(|r| r.hand.is_some()) {
        out.push_str(&format!("hand raised: {} at {}\n", r.name, r.hand.as_deref().unwrap_or_default()));
    }
    out
}

/// The page for a projector: the same rows, refreshed by the browser every
/// `refresh`. It holds no token (the rows never do), so it is written 0644.
pub fn html(headline: &str, rows: &[Row], refresh: Duration) -> String {
    let mut body = String::new();
    for r in rows {
        let class = match r.setup {
            Setup::Ready => "ready",
            Setup::Failed => "failed",
            Setup::Unreachable => "unreachable",
            _ => "busy",
        };
        let hand = r.hand.as_deref().map(|h| format!("✋ {}", escape(h))).unwrap_or_default();
        body.push_str(&format!(
            "<tr class=\"{class}{}\"><td>{}</td><td>{}</td><td>{}</td><td>{hand}</td></tr>\n",
            if r.hand.is_some() { " hand" } else { "" },
            escape(&r.name),
            escape(r.setup.label()),
            escape(&r.detail),
        ));
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;font-size:1.2em}}
table{{border-collapse:collapse;width:100%}} td,th{{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd}}
tr.ready td:nth-child(2){{color:#176f2c}} tr.failed td:nth-child(2){{color:#b00020;font-weight:bold}}
tr.unreachable td:nth-child(2){{color:#9a6700}} tr.hand{{background:#fff3bf}}
</style></head>
<body>
<h1>{title}</h1>
<p>{summary}</p>
<table><thead><tr><th>Participant</th><th>Setup</th><th>Detail</th><th>Hand</th></tr></thead>
<tbody>
{body}</tbody></table>
</body></html>
"#,
        refresh = refresh.as_secs().max(1),
        title = escape(headline),
        summary = escape(&summary(tally(rows))),
    )
}

/// The time of day in UTC, `HH:MM:SS UTC`.
pub fn clock() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fronts::{Hand, Progress};
    use crate::snapshot::StackSeen;

    fn snapshot() -> Snapshot {
        let seat = |name: &str, front: Option<&str>, state: State| Seat {
            name: name.into(),
            stack: "r-1".into(),
            front: front.map(Into::into),
            state,
        };
        Snapshot {
            room: "r".into(),
            stacks: vec![StackSeen { name: "r-1".into(), status: "CREATE_IN_PROGRESS".into(), ..StackSeen::default() }],
            seats: vec![
                seat(
                    "alice",
                    Some("http://1.1.1.1:8888"),
                    State::Ready { url: "http://1.1.1.1:8888/?token=t".into(), gpus: Vec::new() },
                ),
                seat("张伟", Some("http://1.1.1.2:8888"), State::Waiting),
                seat("bob", None, State::Failed { step: Some("image".into()), reason: "no such image".into() }),
                seat("carol", None, State::Waiting),
                seat(
                    "dave",
                    Some("http://1.1.1.3:8888"),
                    State::Ready { url: "http://1.1.1.3:8888/?token=u".into(), gpus: Vec::new() },
                ),
            ],
        }
    }

    fn probes() -> Vec<Probe> {
        vec![
            Probe::Answered(Progress {
                phase: "ready".into(),
                ready: true,
                hand: Some(Hand {
                    raised_at: "2026-12-07T10:42:00Z".into(),
                    message: Some("stuck\u{1b}[2J on ?token=abcd1234 step 3".into()),
                }),
                ..Progress::default()
            }),
            Probe::Answered(Progress {
                phase: "preparing-image".into(),
                step: Some("image".into()),
                progress: Some("45%".into()),
                ..Progress::default()
            }),
            Probe::NoFront,
            Probe::NoFront,
            Probe::Unreachable("cannot connect: Connection refused".into()),
        ]
    }

    #[test]
    fn the_table_shows_each_participants_setup_and_defuses_a_hands_message() {
        let rows = rows(&snapshot(), &probes());
        let out = table("room r: 5 participants, polled in 0.10 s at 10:42:03 UTC", &rows);
        assert_eq!(
            out,
            "\
room r: 5 participants, polled in 0.10 s at 10:42:03 UTC

PARTICIPANT  SETUP            DETAIL                                                   HAND
alice        ready                                                                     HAND 10:42 stuck\u{fffd}[2J on ?token=<redacted> step 3
张伟         preparing-image  image 45%
bob          failed           image: no such image
carol        creating         stack r-1: CREATE_IN_PROGRESS
dave         unreachable      signalled ready; now cannot connect: Connection refused

1 ready, 2 setting up, 1 failed, 1 unreachable, 0 waiting; 1 hand raised
hand raised: alice at 10:42 stuck\u{fffd}[2J on ?token=<redacted> step 3
"
        );
    }

    #[test]
    fn the_page_escapes_and_refreshes_itself() {
        let mut snap = snapshot();
        snap.seats[0].name = "<b>alice</b>".into();
        let rows = rows(&snap, &probes());
        let page = html("room <r>", &rows, Duration::from_secs(5));
        assert!(page.contains(r#"<meta http-equiv="refresh" content="5">"#), "{page}");
        assert!(page.contains("&lt;b&gt;alice&lt;/b&gt;") && !page.contains("<b>alice"), "{page}");
        assert!(page.contains("<title>room &lt;r&gt;</title>"), "{page}");
        assert!(page.contains("✋ 10:42 stuck"), "{page}");
        assert!(!page.contains("abcd1234") && !page.contains("token=t"), "no token on the page: {page}");
    }

    #[test]
    fn a_failed_stack_and_a_finished_stack_without_a_signal() {
        let mut snap = snapshot();
        snap.stacks[0].status = "CREATE_FAILED".into();
        snap.stacks[0].status_reason = Some("quota".into());
        let r = row(&snap, &snap.seats[3], &Probe::NoFront);
        assert_eq!((r.setup, r.detail.as_str()), (Setup::Failed, "stack r-1: CREATE_FAILED quota"));
        snap.stacks[0].status = "CREATE_COMPLETE".into();
        let r = row(&snap, &snap.seats[3], &Probe::NoFront);
        assert_eq!((r.setup, r.detail.as_str()), (Setup::Waiting, "no signal yet"));
        // The instance says it failed: the signal's reason is shown.
        let failed = Probe::Answered(Progress {
            phase: "failed".into(),
            failed_step: Some("image".into()),
            ..Progress::default()
        });
        let r = row(&snap, &snap.seats[2], &failed);
        assert_eq!((r.setup, r.detail.as_str()), (Setup::Failed, "image: no such image"));
    }
}
