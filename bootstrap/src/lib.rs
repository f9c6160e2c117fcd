//! `jupyter-bootstrap`: waits for `jupyter-agent`'s verdict and passes it on
//! to whoever waits for it: the terminal, the hands-on's result file, and
//! the ROS wait condition that keeps the stack from completing before
//! Jupyter works. It only talks to the agent's local API (docs/api.md);
//! it never touches Docker.
//!
//! | module | what it does |
//! |---|---|
//! | [`cli`] | the command line and the exit codes |
//! | [`wait`] | the runbook: follow the agent, then report: stdout, result file, ROS |
//! | [`agent`] | the agent's API on its Unix socket: status and the long poll |
//! | [`state`] | the agent's state document, as read here |
//! | [`progress`] | the live line on a terminal, plain lines elsewhere |
//! | [`result_file`] | the legacy `/root/userdata-result.txt` |
//! | [`ros`] | the wait-condition signal: body, reason, delivery |
//! | [`curl_cli`] | the handle's `CurlCli` string: URL and headers |
//! | [`retry`] | the one retry helper: backoff within a budget |
//! | [`redact`] | no token where it does not belong; bounded text |
//! | [`duration`] | `600` or `30m` on the command line |

pub mod agent;
pub mod cli;
pub mod curl_cli;
pub mod duration;
pub mod progress;
pub mod redact;
pub mod result_file;
pub mod retry;
pub mod ros;
pub mod state;
pub mod wait;
