//! `update`: asks every ready participant's agent to take the organiser's
//! fixes (`POST <front>/_agent/update`, `confirm=yes`, their token in the
//! header, `Accept: application/json`), and reads what each did.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use crate::fronts::{self, authorization, reason};
use crate::input::State;
use crate::snapshot::Seat;
use crate::text::{self, one_line, pad, scrub};

/// A connection to a front is given this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent answers within 40 s ("under way" past that): a little more.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(55);
/// Default agents asked at once.
pub const PARALLEL: usize = 8;
/// The largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

pub use jupyter_proto::update::{Beside, Renamed, Updated};

/// The agent's answer (docs/pages.md#for-scripts): what the update did
/// (the agent's own [`Updated`]), or, for 202 and a refusal, `under_way`
/// or `error` alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Answer {
    #[serde(flatten)]
    pub update: Updated,
    pub under_way: bool,
    pub error: Option<String>,
}

/// What became of one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Updated(Box<Updated>),
    UpToDate,
    /// The agent took longer than it answers within: it goes on.
    UnderWay,
    /// The agent answered with a page rather than JSON (an older agent):
    /// it did it, without details.
    Done,
    NotReady(String),
    Unreachable(String),
    Failed(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Updated(_) | Outcome::Done => "updated",
            Outcome::UpToDate => "up to date",
            Outcome::UnderWay => "under way",
            Outcome::NotReady(_) => "not ready",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Done or going on: not something to look at.
    pub fn fine(&self) -> bool {
        matches!(self, Outcome::Updated(_) | Outcome::UpToDate | Outcome::UnderWay | Outcome::Done)
    }

    /// The detail column.
    pub fn detail(&self) -> String {
        let d = match self {
            Outcome::Updated(a) => {
                let mut parts = Vec::new();
                let count = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}"));
                parts.extend(count(a.updated.len(), "updated"));
                parts.extend(count(a.added.len(), "added"));
                parts.extend(count(a.restored.len(), "restored"));
                parts.extend(count(a.removed.len(), "removed"));
                for b in &a.kept_beside {
                    parts.push(format!("yours kept: {} (the new version beside it: {})", b.path, b.new_version));
                }
                for r in &a.renamed {
                    parts.push(format!("yours renamed: {} -> {}", r.path, r.yours));
                }
                parts.extend(count(a.kept_removed_upstream.len(), "removed upstream, yours kept"));
                if parts.is_empty() {
                    parts.push("nothing to change here".into());
                }
                parts.join("; ")
            }
            Outcome::UpToDate => String::new(),
            Outcome::UnderWay => "taking longer than 40 s; the agent goes on (watch shows it)".into(),
            Outcome::Done => "(the agent answered a page, without details)".into(),
            Outcome::NotReady(why) | Outcome::Unreachable(why) | Outcome::Failed(why) => why.clone(),
        };
        one_line(&scrub(&d))
    }
}

/// Reads an answer's status and body.
pub fn read_answer(status: u16, json: bool, body: &[u8]) -> Outcome {
    let answer = json.then(|| serde_json::from_slice::<Answer>(body).ok()).flatten();
    match (status, answer) {
        (202, _) => Outcome::UnderWay,
        (200, Some(a)) if a.update.up_to_date => Outcome::UpToDate,
        (200, Some(a)) => Outcome::Updated(Box::new(a.update)),
        (200..=299, None) => Outcome::Done,
        (_, Some(Answer { error: Some(e), .. })) => Outcome::Failed(format!("HTTP {status}: {e}")),
        (401 | 403, None) => Outcome::Failed(format!("the front refused the token (HTTP {status})")),
        (404, None) => Outcome::Failed(
            "the front has no update page (HTTP 404: an agent without the pages, or no materials)".into(),
        ),
        (_, _) => Outcome::Failed(format!("HTTP {status}")),
    }
}

async fn ask(client: &reqwest::Client, seat: &Seat) -> Outcome {
    let (token, front) = match (&seat.state, seat.token(), seat.front.as_deref()) {
        (State::Ready { .. }, Some(token), Some(front)) => (token, front),
        (State::Ready { .. }, None, _) => return Outcome::NotReady("no token in the login URL".into()),
        (State::Ready { .. }, _, None) => return Outcome::NotReady("no address known for the instance".into()),
        (State::Waiting, ..) => return Outcome::NotReady("no signal yet".into()),
        (State::Failed { .. }, ..) => return Outcome::NotReady("the setup failed".into()),
    };
    let Some(auth) = authorization(token) else {
        return Outcome::NotReady("the login URL's token is not a valid header value".into());
    };
    let url = format!("{}{}", front.trim_end_matches('/'), fronts::UPDATE_PATH);
    let sent = client
        .post(&url)
        .header("Authorization", auth)
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("confirm=yes")
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) if fronts::refused_to_send(&reason(&e)) => return Outcome::Failed(reason(&e)),
        Err(e) => return Outcome::Unreachable(reason(&e)),
    };
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER => body.extend_from_slice(&chunk),
            Ok(Some(_)) => return Outcome::Failed("an answer larger than 1 MiB".into()),
            Ok(None) => break,
            Err(e) => return Outcome::Unreachable(reason(&e)),
        }
    }
    read_answer(status, json, &body)
}

/// Asks every seat, `parallel` at once; the outcomes in the seats' order.
pub async fn update_all(
    client: &reqwest::Client,
    seats: &[Seat],
    parallel: usize,
    progress: &(dyn Fn(&Seat, &Outcome) + Sync),
) -> Vec<Outcome> {
    let mut answers: Vec<(usize, Outcome)> = stream::iter(seats.iter().enumerate())
        .map(|(i, seat)| async move {
            let o = ask(client, seat).await;
            progress(seat, &o);
            (i, o)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, o)| o).collect()
}

/// The table: participant, outcome, detail; then the counts.
pub fn table(seats: &[Seat], outcomes: &[Outcome]) -> String {
    let header = ["PARTICIPANT", "UPDATE", "DETAIL"];
    let names: Vec<String> = seats.iter().map(|s| one_line(&s.name)).collect();
    let name_width = names.iter().map(|n| text::width(n)).chain([header[0].len()]).max().unwrap_or(0);
    let label_width = outcomes.iter().map(|o| o.label().len()).chain([header[1].len()]).max().unwrap_or(0);
    let mut out = String::new();
    let mut line = |cells: [&str; 3]| {
        let text = format!("{}  {}  {}", pad(cells[0], name_width), pad(cells[1], label_width), cells[2]);
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for (name, o) in names.iter().zip(outcomes) {
        line([name, o.label(), &o.detail()]);
    }
    let n = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    out.push_str(&format!(
        "{} updated ({} with files of theirs kept beside the new versions), {} up to date, {} under way, \
         {} not ready, {} unreachable, {} failed\n",
        n(&|o| matches!(o, Outcome::Updated(_) | Outcome::Done)),
        n(&|o| matches!(o, Outcome::Updated(a) if !a.kept_beside.is_empty())),
        n(&|o| matches!(o, Outcome::UpToDate)),
        n(&|o| matches!(o, Outcome::UnderWay)),
        n(&|o| matches!(o, Outcome::NotReady(_))),
        n(&|o| matches!(o, Outcome::Unreachable(_))),
        n(&|o| matches!(o, Outcome::Failed(_))),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_the_agent_sends_them() {
        let body = br#"{"source":"file:///r","from":"a","to":"b","up_to_date":false,"updated":["guide.md"],
            "added":[],"restored":[],"kept_beside":[{"path":"hello.ipynb","new_version":"hello.new-20261207.ipynb"}],
            "renamed":[],"removed":[],"kept_removed_upstream":[],"left":[]}"#;
        let o = read_answer(200, true, body);
        assert_eq!(o.label(), "updated");
        assert_eq!(
            o.detail(),
            "1 updated; yours kept: hello.ipynb (the new version beside it: hello.new-20261207.ipynb)"
        );
        assert_eq!(read_answer(200, true, br#"{"up_to_date":true}"#), Outcome::UpToDate);
        assert_eq!(read_answer(202, true, br#"{"under_way":true}"#), Outcome::UnderWay);
        assert_eq!(read_answer(200, false, b"<html>"), Outcome::Done);
        assert_eq!(
            read_answer(409, true, br#"{"error":"no [workspace] source configured"}"#),
            Outcome::Failed("HTTP 409: no [workspace] source configured".into())
        );
        assert_eq!(
            read_answer(403, false, b"<html>"),
            Outcome::Failed("the front refused the token (HTTP 403)".into())
        );
    }

    #[test]
    fn the_table_says_who_updated_and_whose_files_were_kept() {
        let seat = |name: &str| Seat { name: name.into(), stack: "r".into(), front: None, state: State::Waiting };
        let kept = Updated {
            updated: vec!["guide.md".into()],
            kept_beside: vec![Beside { path: "hello.ipynb".into(), new_version: "hello.new.ipynb".into() }],
            ..Updated::default()
        };
        let out = table(
            &[seat("alice"), seat("bob"), seat("carol"), seat("dave")],
            &[
                Outcome::Updated(Box::new(kept)),
                Outcome::UpToDate,
                Outcome::Unreachable("cannot connect: Connection refused".into()),
                Outcome::NotReady("no signal yet".into()),
            ],
        );
        assert_eq!(
            out,
            "\
PARTICIPANT  UPDATE       DETAIL
alice        updated      1 updated; yours kept: hello.ipynb (the new version beside it: hello.new.ipynb)
bob          up to date
carol        unreachable  cannot connect: Connection refused
dave         not ready    no signal yet
1 updated (1 with files of theirs kept beside the new versions), 1 up to date, 0 under way, 1 not ready, 1 unreachable, 0 failed
"
        );
    }
}
