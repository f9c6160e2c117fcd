//! One look at a room, whatever it is made from: its stacks and, per
//! participant, where their instance is and what their setup reported.
//! The room's stacks, found by their tag through the organiser's `aliyun`
//! CLI, make one (`cloud`); `watch`, `collect` and `update` start from it
//! and reach each participant's front.

use crate::input::{Room, State};

/// A room at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The room's name (every stack of it is tagged with it).
    pub room: String,
    /// Its stacks, in their creation order.
    pub stacks: Vec<StackSeen>,
    /// Every participant of every stack, in the room's order.
    pub seats: Vec<Seat>,
}

/// A stack as ROS shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackSeen {
    pub name: String,
    pub id: String,
    /// ROS's status (`CREATE_IN_PROGRESS`, `CREATE_COMPLETE`, ...).
    pub status: String,
    pub status_reason: Option<String>,
    /// The workshop's end (the template's end-time parameter), when set:
    /// the instances are released then.
    pub ends_at: Option<String>,
}

/// One participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub name: String,
    /// The name of the stack that holds their instance.
    pub stack: String,
    /// Their front's base URL (`https://<public IP>:8888`, `http://` with
    /// TLS off), once the instance has a public address: where the
    /// progress JSON (`/_agent/progress`) and the pages answer.
    pub front: Option<String>,
    /// What their setup reported through the wait condition: ready with the
    /// login URL (token included), failed, or nothing yet.
    pub state: State,
}

impl Seat {
    /// The login token, from the login URL once ready.
    pub fn token(&self) -> Option<&str> {
        match &self.state {
            State::Ready { url, .. } => url.split_once("token=").map(|(_, t)| t.split('&').next().unwrap_or(t)),
            _ => None,
        }
    }
}

impl Snapshot {
    /// A snapshot from saved GetStack answers (or any input `show` reads),
    /// each with the name it was read under (a file's path): one stack per
    /// input, its participants in order. A seat's front is its login URL's
    /// `scheme://host:port` once ready, else unknown (the answers do not
    /// carry the instances' addresses). A participant named in more than
    /// one input keeps the first seat.
    pub fn from_rooms(room: &str, inputs: &[(String, Room)]) -> Snapshot {
        let mut snapshot = Snapshot { room: room.to_string(), ..Snapshot::default() };
        let mut seen = std::collections::HashSet::new();
        for (input, parsed) in inputs {
            let info = parsed.stack.clone().unwrap_or_default();
            let stack = info.name.clone().unwrap_or_else(|| input.clone());
            snapshot.stacks.push(StackSeen {
                name: stack.clone(),
                id: String::new(),
                status: info.status.unwrap_or_default(),
                status_reason: info.status_reason,
                ends_at: info.end_time.at().map(str::to_string),
            });
            for p in &parsed.participants {
                if !seen.insert(p.name.clone()) {
                    continue;
                }
                let front = match &p.state {
                    State::Ready { url, .. } => front_of(url),
                    _ => None,
                };
                snapshot.seats.push(Seat { name: p.name.clone(), stack: stack.clone(), front, state: p.state.clone() });
            }
        }
        snapshot
    }

    /// The stack a seat is in.
    pub fn stack_of(&self, seat: &Seat) -> Option<&StackSeen> {
        self.stacks.iter().find(|s| s.name == seat.stack)
    }
}

/// `scheme://host[:port]` of an http(s) URL: where its front answers.
pub fn front_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Credentials in the URL are not part of where it answers.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_are_the_login_urls_scheme_host_and_port() {
        assert_eq!(front_of("https://1.2.3.4:8888/?token=abc").as_deref(), Some("https://1.2.3.4:8888"));
        assert_eq!(front_of("HTTP://1.2.3.4:8888?token=abc").as_deref(), Some("http://1.2.3.4:8888"));
        assert_eq!(front_of("http://[::1]:8888/lab#x").as_deref(), Some("http://[::1]:8888"));
        assert_eq!(front_of("http://u:p@1.2.3.4/").as_deref(), Some("http://1.2.3.4"));
        assert_eq!(front_of("ftp://1.2.3.4/"), None);
        assert_eq!(front_of("http:///x"), None);
    }

    #[test]
    fn a_snapshot_from_saved_answers_has_a_stack_per_input_and_each_participant_once() {
        let one = crate::input::parse(
            r#"{"StackName": "r-1", "Status": "CREATE_COMPLETE", "Outputs": [
                {"OutputKey": "Participants", "OutputValue": "alice,bob"},
                {"OutputKey": "Room", "OutputValue": {"alice": {"url": "https://1.2.3.4:8888/?token=t1"},
                                                      "bob": {"error": "no image", "step": "image"}}}]}"#,
        )
        .unwrap();
        let two =
            crate::input::parse(r#"{"carol": {"url": "http://5.6.7.8:8888/lab?token=t3"}, "alice": null}"#).unwrap();
        let snap = Snapshot::from_rooms("r", &[("a.json".into(), one), ("b.json".into(), two)]);
        assert_eq!(snap.room, "r");
        let stacks: Vec<(&str, &str)> = snap.stacks.iter().map(|s| (s.name.as_str(), s.status.as_str())).collect();
        assert_eq!(stacks, [("r-1", "CREATE_COMPLETE"), ("b.json", "")]);
        let seats: Vec<(&str, &str, Option<&str>)> =
            snap.seats.iter().map(|s| (s.name.as_str(), s.stack.as_str(), s.front.as_deref())).collect();
        assert_eq!(
            seats,
            [
                ("alice", "r-1", Some("https://1.2.3.4:8888")),
                ("bob", "r-1", None),
                ("carol", "b.json", Some("http://5.6.7.8:8888")),
            ]
        );
        assert_eq!(snap.seats[2].token(), Some("t3"));
        assert_eq!(snap.stack_of(&snap.seats[1]).map(|s| s.name.as_str()), Some("r-1"));
    }

    #[test]
    fn the_token_is_the_login_urls() {
        let seat = |state| Seat { name: "alice".into(), stack: "r-1".into(), front: None, state };
        assert_eq!(
            seat(State::Ready { url: "https://1.2.3.4:8888/?token=abc".into(), gpus: Vec::new() }).token(),
            Some("abc")
        );
        assert_eq!(
            seat(State::Ready { url: "https://1.2.3.4:8888/lab?token=abc&x=1".into(), gpus: Vec::new() }).token(),
            Some("abc")
        );
        assert_eq!(seat(State::Waiting).token(), None);
    }
}
