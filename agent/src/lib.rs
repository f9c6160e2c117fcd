//! `jupyter-agent`: converges a host to "a Jupyter container is running and
//! its login URL is known and proven", and answers questions about it.
//!
//! The converge ([`converge`]) runs these steps, one module each:
//!
//! | step | module | what it does |
//! |---|---|---|
//! | docker, engine | [`docker_install`], [`engine`] | install and start Docker when absent; wait (bounded) for a ping |
//! | git: ... | [`docker_install::git`] | install git when a git workspace needs it and it is missing |
//! | workspace | [`workspace`] | fetch the workshop materials once, never overwrite them |
//! | image | [`image`] | pull, load or build the image, always tagged |
//! | container | [`container`] | create, reuse, start or recreate it by configuration hash |
//! | token | [`jupyter`], [`token`] | follow the log, parse the token, prove it on `/api/status` |
//! | tls | [`tls`] | with `[tls]` on: the certificate (ACME or self-signed) and the HTTPS listener in front of Jupyter |
//! | url | [`url`] | the host from the ECS metadata service, the login URL |
//!
//! Around them: [`config`] (the validated TOML file), [`state`] (the state
//! file, its lock and the recorder), [`daemon`] (`run`: the API served
//! beside the converge and the watch), [`actions`] (what the running agent is
//! asked to do: reset the workspace, raise a hand), [`api`] (the local API), [`client`]
//! (the CLI's side of it), [`cli`] (commands and exit codes), [`doctor`],
//! [`service`] (the systemd unit), [`runtimes`] (podman or containerd
//! instead of Docker), [`logging`], [`secrets`] (the run's one redactor,
//! which the log, the state and the workspace record go through), [`http`] (the HTTP client)
//! and [`transfer`] (the retry of long attempts, the one verified download
//! that workspace tarballs and image archives share). What the agent shares
//! with `jupyter-bootstrap` (the state document, the API client, redaction,
//! durations, the result file, the retry helper) is `jupyter_proto`'s.

pub mod actions;
pub mod api;
pub mod build_context;
pub mod cli;
pub mod client;
pub mod config;
pub mod container;
pub mod converge;
pub mod daemon;
pub mod docker_install;
pub mod doctor;
pub mod engine;
pub mod exit;
pub mod front;
#[cfg(test)]
mod fuzz_tests;
pub mod gpu;
pub mod http;
pub mod image;
pub mod jupyter;
pub mod logging;
pub mod login;
pub mod network;
pub mod notify;
pub mod runtimes;
pub mod secrets;
pub mod service;
pub mod state;
pub mod tls;
pub mod token;
pub mod transfer;
pub mod url;
pub mod workspace;
