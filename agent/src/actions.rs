//! The actions the running agent takes when asked (docs/api.md#actions):
//! reset the workspace, take the organiser's fixes, raise or lower a hand.
//! Whoever asks (the local API today, the front's pages next) holds an
//! [`Actions`], a cheap clonable sender; the daemon's watch loop
//! (`converge/watch.rs`) receives each [`Action`] between the container's
//! events and takes them one at a time, so that an action never runs
//! beside a converge: one asked while a converge runs (the first one, or
//! a reset's) waits for it to end, and is refused as busy, with nothing
//! done, when it waited too long.
//!
//! A raised hand is kept in `<state_dir>/hand.json` (0600, written
//! atomically) across restarts of the agent, and lowers itself after
//! [`HAND_TTL`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

pub use jupyter_proto::state::{Hand, ResetAnswer};

/// The longest message a hand carries, in characters.
pub const HAND_MESSAGE_MAX: usize = 280;
/// A raised hand lowers itself this long after it was raised (the
/// organiser lowers it on answering: `jupyter-agent hand lower`).
pub const HAND_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// How long an asker waits for a hand to be taken: the watch loop takes it
/// at once unless a converge runs.
pub const HAND_WAIT: Duration = Duration::from_secs(10);
/// How long an asker waits for a reset's answer: a converge that runs
/// first, then the fetch of the materials.
pub const RESET_WAIT: Duration = Duration::from_secs(20 * 60);
/// Actions waiting to be taken; beyond, the agent is busy.
const QUEUE: usize = 8;

/// Where an action's answer goes; a dropped receiver (the asker gave up)
/// means the action is not taken at all.
pub type Reply<T> = oneshot::Sender<Result<T, ActionError>>;

/// What the running agent is asked to do.
#[derive(Debug)]
pub enum Action {
    /// Move the participant's copy aside, fetch the materials fresh, and
    /// converge again: the container is re-created on the fresh copy and
    /// the same URL logs in. The answer comes once the fresh copy is in
    /// place, before the container is re-created (follow the state).
    Reset(Reply<ResetAnswer>),
    /// Raise or lower the hand; the answer is the hand as it is now.
    Hand(HandChange, Reply<Option<Hand>>),
    /// Take the organiser's fixes into the participant's copy, in place
    /// (docs/workspace-update.md): no converge follows, the container keeps
    /// its identity and Jupyter keeps running.
    Update(Reply<crate::workspace::Updated>),
}

/// A change of the hand; make a raise with [`HandChange::raise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandChange {
    /// Raise it (again: the message is replaced and the clock starts again).
    Raise {
        message: Option<String>,
    },
    Lower,
}

impl HandChange {
    /// A raise with `message` as typed: trimmed, none when empty, refused
    /// when longer than [`HAND_MESSAGE_MAX`] characters or when it holds a
    /// control character (a line break included).
    pub fn raise(message: Option<&str>) -> Result<HandChange, ActionError> {
        Ok(HandChange::Raise { message: checked_message(message)? })
    }
}

/// Why an action was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The request cannot be taken as it is: nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// Not possible with this configuration (a reset without `[workspace]`).
    #[error("{0}")]
    Refused(String),
    /// The agent could not take it now (a converge runs, or it takes no
    /// actions): nothing was done.
    #[error("{0}")]
    Busy(String),
    /// Taken, and it failed; the error says what was left as it was.
    #[error("{0}")]
    Failed(String),
}

/// The sender the API and the front hold.
#[derive(Debug, Clone)]
pub struct Actions(mpsc::Sender<Action>);

/// The channel: the senders' side, and the watch loop's.
pub fn channel() -> (Actions, mpsc::Receiver<Action>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Actions(tx), rx)
}

impl Actions {
    /// Resets the workspace ([`Action::Reset`]).
    pub async fn reset(&self) -> Result<ResetAnswer, ActionError> {
        self.ask(Action::Reset, RESET_WAIT).await
    }

    /// Takes the organiser's fixes ([`Action::Update`]).
    pub async fn update(&self) -> Result<crate::workspace::Updated, ActionError> {
        self.ask(Action::Update, RESET_WAIT).await
    }

    /// Raises or lowers the hand ([`Action::Hand`]).
    pub async fn hand(&self, change: HandChange) -> Result<Option<Hand>, ActionError> {
        self.ask(|reply| Action::Hand(change, reply), HAND_WAIT).await
    }

    async fn ask<T>(&self, action: impl FnOnce(Reply<T>) -> Action, within: Duration) -> Result<T, ActionError> {
        let (reply, answer) = oneshot::channel();
        self.0.try_send(action(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ActionError::Busy("the agent has too many actions waiting; nothing was done; try again shortly".into())
            }
            mpsc::error::TrySendError::Closed(_) => ActionError::Busy("the agent is stopping; nothing was done".into()),
        })?;
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ActionError::Busy("the agent stopped before it took this action".into())),
            // The receiver is dropped here: the watch loop will not take it.
            Err(_) => Err(ActionError::Busy(format!(
                "the agent did not take this action within {}: a converge is running; nothing was done; \
                 try again once it is ready (jupyter-agent wait)",
                jupyter_proto::duration::show(within)
            ))),
        }
    }
}

/// A hand's message as typed, checked (see [`HandChange::raise`]).
fn checked_message(message: Option<&str>) -> Result<Option<String>, ActionError> {
    let Some(text) = message.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let count = text.chars().count();
    if count > HAND_MESSAGE_MAX {
        return Err(ActionError::Invalid(format!(
            "the message has {count} characters: at most {HAND_MESSAGE_MAX} are kept; make it shorter"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(ActionError::Invalid(format!(
            "the message holds a control character ({}): write it on one line, without tabs or line breaks",
            c.escape_unicode()
        )));
    }
    Ok(Some(text.to_string()))
}

fn hand_path(state_dir: &Path) -> PathBuf {
    state_dir.join("hand.json")
}

/// When `hand` lowers itself.
pub fn expires_at(hand: &Hand) -> DateTime<Utc> {
    hand.raised_at + chrono::Duration::from_std(HAND_TTL).expect("a small duration")
}

/// The hand kept in the state directory, if one is raised and not yet
/// expired at `now`. An expired one is removed; one that cannot be read
/// (or whose message a person edited past the bounds) is left out, and
/// logged.
pub fn load_hand(state_dir: &Path, now: DateTime<Utc>) -> Option<Hand> {
    let path = hand_path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the raised hand; it is left out");
            return None;
        }
    };
    let hand = serde_json::from_slice::<Hand>(&bytes).map_err(|e| e.to_string()).and_then(|h| {
        checked_message(h.message.as_deref()).map(|message| Hand { message, ..h }).map_err(|e| e.to_string())
    });
    match hand {
        Ok(hand) if expires_at(&hand) <= now => {
            let _ = std::fs::remove_file(&path);
            None
        }
        Ok(hand) => Some(hand),
        Err(e) => {
            warn!(file = %path.display(), error = %e, "the raised hand cannot be used; it is left out");
            None
        }
    }
}

/// Keeps `hand` in the state directory (0600, atomically), or removes the
/// file when it is lowered.
pub fn save_hand(state_dir: &Path, hand: Option<&Hand>) -> Result<()> {
    let path = hand_path(state_dir);
    match hand {
        Some(hand) => {
            let mut json = serde_json::to_vec_pretty(hand).expect("a hand serializes");
            json.push(b'\n');
            crate::state::write_atomic(&path, &json, 0o600)
                .with_context(|| format!("writing the raised hand to {}", path.display()))
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_message_is_bounded_on_one_line_and_kept_as_typed() {
        let raise = |m: &str| HandChange::raise(Some(m));
        let kept = |m: &str| Ok(HandChange::Raise { message: Some(m.to_string()) });
        assert_eq!(raise("stuck on step 3"), kept("stuck on step 3"));
        assert_eq!(raise("  <b>x</b> & \"y\"  "), kept("<b>x</b> & \"y\""), "stored as text, escaped on output");
        assert_eq!(raise("   "), Ok(HandChange::Raise { message: None }));
        assert_eq!(HandChange::raise(None), Ok(HandChange::Raise { message: None }));
        let longest = "é".repeat(HAND_MESSAGE_MAX);
        assert_eq!(raise(&longest), kept(&longest), "characters, not bytes");
        assert_eq!(
            raise(&format!("{longest}x")),
            Err(ActionError::Invalid("the message has 281 characters: at most 280 are kept; make it shorter".into()))
        );
        assert_eq!(
            raise("line\nbreak"),
            Err(ActionError::Invalid(
                "the message holds a control character (\\u{a}): write it on one line, without tabs or line breaks"
                    .into()
            ))
        );
        assert!(raise("bell\u{7}").is_err() && raise("esc\u{1b}[2J").is_err() && raise("del\u{7f}").is_err());
    }

    #[test]
    fn a_hand_is_kept_0600_until_lowered_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let now = Utc::now();
        assert_eq!(load_hand(state, now), None);
        let hand = Hand { raised_at: now, message: Some("stuck on step 3".into()) };
        save_hand(state, Some(&hand)).unwrap();
        let file = state.join("hand.json");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_hand(state, now), Some(hand.clone()));
        // Still raised just before its time; gone (and the file removed) at it.
        let ttl = chrono::Duration::from_std(HAND_TTL).unwrap();
        assert_eq!(load_hand(state, now + ttl - chrono::Duration::seconds(1)), Some(hand.clone()));
        assert_eq!(load_hand(state, now + ttl), None);
        assert!(!file.exists());
        // Lowered: the file goes; lowering again is no error.
        save_hand(state, Some(&hand)).unwrap();
        save_hand(state, None).unwrap();
        assert!(!file.exists());
        save_hand(state, None).unwrap();
        // A file edited past the bounds, or garbage, is left out.
        std::fs::write(&file, format!(r#"{{"raised_at":"{}","message":"a\u0007b"}}"#, now.to_rfc3339())).unwrap();
        assert_eq!(load_hand(state, now), None);
        std::fs::write(&file, "not json").unwrap();
        assert_eq!(load_hand(state, now), None);
    }

    #[tokio::test]
    async fn an_action_nobody_takes_is_refused_as_busy_and_then_not_taken() {
        let (actions, mut rx) = channel();
        let (raise, lower) = (HandChange::raise(Some("x")).unwrap(), HandChange::Lower);
        let asked = actions.ask(|reply| Action::Hand(raise, reply), Duration::from_millis(50)).await;
        assert!(matches!(&asked, Err(ActionError::Busy(m)) if m.contains("within 50ms")), "{asked:?}");
        // The asker gave up: the loop sees a reply nobody waits for.
        match rx.recv().await.unwrap() {
            Action::Hand(_, reply) => assert!(reply.is_closed()),
            other => panic!("{other:?}"),
        }
        // Taken: the answer is the loop's.
        let taker = tokio::spawn(async move {
            if let Some(Action::Hand(HandChange::Lower, reply)) = rx.recv().await {
                let _ = reply.send(Ok(None));
            }
        });
        assert_eq!(actions.hand(lower).await, Ok(None));
        taker.await.unwrap();
        // The loop is gone.
        assert!(matches!(actions.reset().await, Err(ActionError::Busy(m)) if m.contains("stopping")));
    }
}
