//! `jupyter-bootstrap`: waits for `jupyter-agent`'s verdict and passes it on
//! to whoever waits for it: the terminal, the hands-on's result file, and
//! the ROS wait condition that keeps the stack from completing before
//! Jupyter works. It only talks to the agent's local API (docs/api.md);
//! it never touches Docker.
//!
//! | module | what it does |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`wait`] | the runbook: follow the agent, then report: stdout, result file, ROS; the exit codes |
//! | [`progress`] | the live line on a terminal, plain lines elsewhere |
//! | [`ros`] | the wait-condition signal: body, reason, delivery |
//! | [`curl_cli`] | the handle's `CurlCli` string: URL and headers |
//!
//! The state document, the API client, redaction, durations, the result
//! file's format and the retry helper are `jupyter_proto`'s, shared with
//! the agent.

pub mod cli;
pub mod curl_cli;
#[cfg(test)]
mod fuzz_tests;
pub mod progress;
pub mod ros;
pub mod wait;
