//! The command line: parse, validate, run, and map every outcome to a
//! documented exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::curl_cli;
use crate::ros::{RosData, Target};
use crate::wait::{exit, Options, RosOptions};
use jupyter_proto::duration;

const EXIT_CODES: &str = "\
Exit codes:
  0  Jupyter is ready: the URL is on stdout (and the SUCCESS signal was delivered)
  1  the converge failed (the failed step, cause, exit code and log tail are on stderr),
     or the agent answered something this jupyter-bootstrap cannot use, or its socket is
     refused: another user than root could have put it there or serves it (docs/api.md)
  2  bad command line (also an unusable --ros-notify); nothing was waited for or signalled
  3  timed out, also when the agent never appeared at the socket
  4  the result file could not be written (overrides 0, 1 and 3)
  5  the ROS signal could not be delivered: refused (the signed URL has probably expired)
     or no answer within --ros-budget (overrides 0, 1, 3 and 4)";

const WAIT_ABOUT: &str = "\
Waits for jupyter-agent's verdict and passes it on.

It asks the agent's local API (docs/api.md) on --socket, waiting while the socket does not exist \
or refuses connections (the agent may still be starting), then follows the converge with long polls \
(GET /v1/wait?until=change) and shows each step as it changes on stderr: one live line on a terminal, \
else one plain line per change.

Ready: prints the login URL as one line on stdout, its token <redacted> unless --show-token; the result file \
(0600) and the SUCCESS signal's data hold the full URL. \
Failed: prints the failed step, the cause, the container's exit code and its last log lines on stderr.

With --result-file it also writes the hands-on's result file (mode 0600, atomically): its last line is \
the URL, or it says what failed.

With --ros-notify (or --ros-url) it signals an ALIYUN::ROS::WaitCondition, so that the stack completes \
only when Jupyter works, and fails at once with the reason when it does not: on ready \
{\"status\":\"SUCCESS\",\"id\":ID,\"data\":URL,\"reason\":\"Jupyter is ready\"}, else \
{\"status\":\"FAILURE\",\"id\":ID,\"reason\":\"<step>: <cause>; ...\"} (at most 1000 characters, tokens \
redacted). FAILURE is sent on a timeout too, and when the agent never appeared. Transport errors, 408, \
429 and 5xx are retried with exponential backoff within --ros-budget; any other answer fails at once. \
The whole run takes at most --timeout plus --ros-budget. In a room (one wait condition, Count = \
participants, each participant's name as --ros-id), --ros-data json sends {\"url\":URL} as data (with \"gpus\", their names, when the container has GPUs) and \
--ros-failure data turns a failure into SUCCESS with {\"error\":REASON,\"step\":STEP} as data, so that \
the room completes and its Data names who failed and why.

Typical user data (the signed URL in the environment, not in the process list):
  JUPYTER_BOOTSTRAP_ROS_NOTIFY=\"${WaitConditionHandle.CurlCli}\" \\
    jupyter-bootstrap wait --result-file /root/userdata-result.txt";

#[derive(Debug, Parser)]
#[command(
    name = "jupyter-bootstrap",
    version,
    about = "Waits for jupyter-agent's report and passes it on: terminal, result file, ROS wait condition",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait until Jupyter is ready or failed; print the URL, write the result file, signal ROS.
    #[command(long_about = WAIT_ABOUT, after_help = EXIT_CODES)]
    Wait(WaitArgs),
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The agent's API socket (`socket` in the agent's configuration).
    #[arg(long, value_name = "PATH", default_value = "/run/jupyter-agent.sock")]
    pub socket: PathBuf,

    /// Give up after this long: seconds (600) or a duration (30m, 1h30m). Keep it below the wait
    /// condition's Timeout minus --ros-budget, so that the FAILURE arrives before ROS gives up.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = duration::parse)]
    pub timeout: Duration,

    /// Also write the hands-on's result file here (mode 0600): its last line is the login URL,
    /// or it says what failed.
    #[arg(long, value_name = "FILE")]
    pub result_file: Option<PathBuf>,

    /// Print the login URL on stdout with its token; without it the token reads <redacted>
    /// (stdout often ends up in a log, cloud-init's among them).
    #[arg(long)]
    pub show_token: bool,

    /// Signal the wait condition described by this curl command line: the handle's CurlCli
    /// attribute, unchanged (its URL and -H headers are used; -i, -X POST, -s, -d ... are ignored).
    /// The signed URL is a secret: pass it in the environment variable rather than as an
    /// argument, which any local user can read in the process list.
    #[arg(
        long,
        value_name = "CURLCLI",
        env = "JUPYTER_BOOTSTRAP_ROS_NOTIFY",
        hide_env_values = true,
        conflicts_with = "ros_url",
        help_heading = "ROS wait condition"
    )]
    pub ros_notify: Option<String>,

    /// Signal the wait condition at this URL (the handle's URL attribute) instead.
    #[arg(long, value_name = "URL", help_heading = "ROS wait condition")]
    pub ros_url: Option<String>,

    /// A header to send with --ros-url, `Name: value` (repeatable), e.g. `x-acs-region-id: cn-beijing`.
    #[arg(long = "ros-header", value_name = "HEADER", requires = "ros_url", help_heading = "ROS wait condition")]
    pub ros_headers: Vec<String>,

    /// The signal's id: a later signal with the same id replaces this one; the wait condition's
    /// Data is keyed by it.
    #[arg(long, value_name = "ID", default_value = "jupyter", help_heading = "ROS wait condition")]
    pub ros_id: String,

    /// What SUCCESS carries as data: the login URL with its token, or nothing (for stacks whose
    /// outputs must not hold the token).
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = RosData::Url, help_heading = "ROS wait condition")]
    pub ros_data: RosData,

    /// How a failure is signalled: `fail` sends FAILURE, which fails the stack at once; `data`
    /// sends SUCCESS with {"error": REASON, "step": STEP} as data, so that a room's wait condition
    /// (Count = participants) completes and its Data names who failed and why.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = RosFailure::Fail, help_heading = "ROS wait condition")]
    pub ros_failure: RosFailure,

    /// How long to keep trying to deliver the signal (transport errors, 408, 429, 5xx), counting
    /// each attempt (at most 20 s each) and the delays between them (at most 30 s each).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration::parse, help_heading = "ROS wait condition")]
    pub ros_budget: Duration,

    /// Also signal each milestone as it passes (ids docker, materials, image, container; data: the
    /// step, its time and what it did), before the final signal: for a wait condition with Count 5
    /// and ShowProgressEvent Enabled, whose stack events then show the setup's progress.
    #[arg(long, help_heading = "ROS wait condition")]
    pub ros_milestones: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RosFailure {
    /// FAILURE: the stack fails at once with the reason.
    Fail,
    /// SUCCESS with {"error": REASON, "step": STEP} as data: the room completes.
    Data,
}

impl WaitArgs {
    /// The options, once everything clap cannot check is checked.
    pub fn validate(self) -> Result<Options, String> {
        let target = match (&self.ros_notify, &self.ros_url) {
            (Some(cli), _) => Some(curl_cli::parse(cli).map_err(|e| format!("--ros-notify: {e}"))?),
            (None, Some(url)) => Some(Target::new(url, &self.ros_headers).map_err(|e| format!("--ros-url: {e}"))?),
            (None, None) => None,
        };
        if self.ros_id.trim().is_empty() {
            return Err("--ros-id: expected a non-empty id".into());
        }
        Ok(Options {
            socket: self.socket,
            timeout: self.timeout,
            result_file: self.result_file,
            show_token: self.show_token,
            ros: target.map(|target| RosOptions {
                target,
                id: self.ros_id,
                data: self.ros_data,
                failure_as_data: self.ros_failure == RosFailure::Data,
                budget: self.ros_budget,
                milestones: self.ros_milestones,
            }),
        })
    }
}

/// Runs the parsed command line.
pub fn main() -> ExitCode {
    let cli: Cli = match jupyter_proto::exit::parse_command_line() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let Command::Wait(args) = cli.command;
    let opts = match args.validate() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("jupyter-bootstrap: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jupyter-bootstrap: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    ExitCode::from(rt.block_on(crate::wait::run(&opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let cli = Cli::try_parse_from(["jupyter-bootstrap", "wait"].iter().chain(args)).map_err(|e| e.to_string())?;
        let Command::Wait(args) = cli.command;
        args.validate()
    }

    #[test]
    fn the_defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.socket, PathBuf::from("/run/jupyter-agent.sock"));
        assert_eq!(o.timeout, Duration::from_secs(1800));
        assert!(o.result_file.is_none() && o.ros.is_none());
    }

    #[test]
    fn ros_options() {
        let o = parse(&["--ros-notify", "curl -H 'x-acs-region-id: cn-beijing' http://100.100.100.110/w?s=1"]).unwrap();
        let ros = o.ros.unwrap();
        assert_eq!(ros.target.url.to_string(), "http://100.100.100.110/w?s=1");
        assert_eq!((ros.id.as_str(), ros.data, ros.budget), ("jupyter", RosData::Url, Duration::from_secs(300)));
        assert!(!ros.failure_as_data, "a failure fails the stack unless asked otherwise");
        let o = parse(&[
            "--ros-url",
            "http://127.0.0.1:1/w",
            "--ros-header",
            "a: b",
            "--ros-header",
            "c: d",
            "--ros-id",
            "nb",
            "--ros-data",
            "none",
            "--ros-budget",
            "90",
            "--timeout",
            "10m",
        ])
        .unwrap();
        let ros = o.ros.unwrap();
        assert_eq!(ros.target.headers.len(), 2);
        assert_eq!((ros.id.as_str(), ros.data, ros.budget), ("nb", RosData::None, Duration::from_secs(90)));
        assert_eq!(o.timeout, Duration::from_secs(600));
    }

    #[test]
    fn usage_errors_name_the_option() {
        for (args, want) in [
            (&["--timeout", "soon"][..], "invalid value 'soon' for '--timeout <DURATION>'"),
            (&["--ros-notify", ""], "--ros-notify: no URL in the curl command line"),
            (&["--ros-notify", "curl -i 'x"], "--ros-notify: cannot split the curl command line"),
            (&["--ros-url", "https://h/w"], "--ros-url: `https://h/w`: https:// is not supported"),
            (&["--ros-header", "a: b"], "the following required arguments were not provided"),
            (&["--ros-notify", "curl http://h/w", "--ros-url", "http://h/w"], "cannot be used with"),
            (&["--ros-url", "http://h/w", "--ros-id", " "], "--ros-id: expected a non-empty id"),
            (&["--ros-data", "token"], "invalid value 'token' for '--ros-data <WHAT>'"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_documents_every_exit_code() {
        use clap::CommandFactory;
        let help = Cli::command().find_subcommand_mut("wait").unwrap().render_long_help().to_string();
        for code in ["  0  ", "  1  ", "  2  ", "  3  ", "  4  ", "  5  "] {
            assert!(help.contains(code), "{help}");
        }
        assert!(help.contains("--ros-budget"));
        Cli::command().debug_assert();
    }
}
