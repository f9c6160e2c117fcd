//! What `jupyter-agent` and `jupyter-bootstrap` share, so that each rule
//! exists once: the agent writes and serves the state document, the
//! bootstrap and the agent's own CLI read it.
//!
//! | module | what it holds |
//! |---|---|
//! | `fuzz` | the property tests' harness and text strategies (feature `fuzz`, tests only) |
//! | `certificate_check` | a rustls server-certificate check whose caller decides only what is accepted (feature `tls`) |
//! | [`state`] | the versioned state document (docs/api.md), its transitions and version check |
//! | [`client`] | the local API's client: status, long polls and logs over the Unix socket |
//! | [`redact`] | one set of rules that keep tokens, secrets and credentials out of text |
//! | [`report`] | the failure in one line, and the hands-on's legacy result file |
//! | [`duration`] | durations on command lines and in the configuration, bounded |
//! | [`exit`] | the exit codes both binaries share |
//! | [`fs`] | atomic file writes |
//! | [`retry`] | the one retry helper: exponential backoff within a budget; one attempt's failure and which HTTP answers are transient |
//! | [`trust`] | whether the agent's socket and the directories above it belong to root and no one else may replace them |
//! | [`update`] | what taking the organiser's fixes did, file by file: the agent answers it, `jupyter-room update` reads it |
//!
//! Nothing here links bollard, nor a TLS stack without the feature `tls`
//! (the agent's, `jupyter-room`'s and the tests'): `jupyter-bootstrap`
//! depends on this crate and stays small.

#[cfg(feature = "tls")]
pub mod certificate_check;
pub mod client;
pub mod duration;
pub mod exit;
pub mod fs;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod redact;
pub mod report;
pub mod retry;
pub mod state;
pub mod trust;
pub mod update;
