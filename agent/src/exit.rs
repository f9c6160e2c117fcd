//! Exit codes, shared by every command (`--help` lists them, docs/agent.md
//! explains them), and [`Exit`], the error that carries one. Below the
//! command line, so that what it calls (the socket's client) can say how a
//! command ends without reaching back up.

pub use jupyter_proto::exit::{FAILED, OK, TIMED_OUT, USAGE};

/// The agent is not reachable and there is no state: it has not run here.
pub const NO_STATE: u8 = 4;
/// Another agent holds the lock on the state directory.
pub const LOCKED: u8 = 5;
/// Docker cannot be installed on this distribution (or with this source); nothing was changed.
pub const UNSUPPORTED: u8 = 6;

/// An outcome that is not success, with its exit code. Its message, when
/// not empty, is printed like any error; an empty one was already reported
/// (the state was printed, or the converge logged its failure).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Exit {
        Exit { code, message: message.into() }
    }

    /// The code alone: what the user needs to know is already on screen.
    pub fn silent(code: u8) -> Exit {
        Exit { code, message: String::new() }
    }
}
