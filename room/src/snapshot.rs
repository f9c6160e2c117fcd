//! One look at a room, whatever it is made from: its stacks and, per
//! participant, where their instance is and what their setup reported.
//! The room's stacks, found by their tag through the organiser's `aliyun`
//! CLI, make one (`cloud`); `watch`, `collect` and `update` start from it
//! and reach each participant's front.

use crate::input::State;

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
            State::Ready { url } => url.split_once("token=").map(|(_, t)| t.split('&').next().unwrap_or(t)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_login_urls() {
        let seat = |state| Seat { name: "alice".into(), stack: "r-1".into(), front: None, state };
        assert_eq!(seat(State::Ready { url: "https://1.2.3.4:8888/?token=abc".into() }).token(), Some("abc"));
        assert_eq!(seat(State::Ready { url: "https://1.2.3.4:8888/lab?token=abc&x=1".into() }).token(), Some("abc"));
        assert_eq!(seat(State::Waiting).token(), None);
    }
}
