//! The organiser's `aliyun` CLI, run as a child process: `jupyter-room`
//! never reads cloud credentials, it asks the CLI the organiser has already
//! configured (`aliyun configure`, or Cloud Shell's own) to make each call.
//!
//! A call is written the way the CLI documents RPC-style APIs
//! (docs/room.md, "The aliyun calls"): `aliyun <product> <Api> --Name value
//! ...`, a list parameter as numbered names (`--Parameters.1.ParameterKey`,
//! `--Tags.1.Key`), a JSON array as one string value. Its stdout is the API's
//! JSON answer; a non-zero exit is a failed call, and the message names the
//! call and quotes the CLI's stderr.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::split::shell_quote;
use crate::text::{one_line, scrub};

/// The environment variable naming the CLI when `--aliyun` is not given.
pub const PROGRAM_ENV: &str = "JUPYTER_ROOM_ALIYUN";
/// The default region, as the aliyun CLI itself reads it
/// (<https://www.alibabacloud.com/help/en/cli/environment-variables>).
pub const REGION_ENV: &str = "ALIBABA_CLOUD_REGION_ID";

/// The most of an answer read: ListStacks pages of 50, GetStack of a room of
/// 30, a stack's resources, one resource's attributes are each well below 1 MiB.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;
/// The most of the CLI's stderr quoted in a message.
const MAX_ERROR: usize = 600;

/// How to run the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aliyun {
    program: OsString,
}

/// Why a call gave no answer; the text names the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError(pub String);

impl std::fmt::Display for CloudError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CloudError {}

/// One API call: `aliyun <product> <api> --Name value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub product: &'static str,
    pub api: &'static str,
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn new(product: &'static str, api: &'static str) -> Call {
        Call { product, api, params: Vec::new() }
    }

    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Call {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The CLI's arguments after its name.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![self.product.to_string(), self.api.to_string()];
        for (name, value) in &self.params {
            args.push(format!("--{name}"));
            args.push(value.clone());
        }
        args
    }

    /// The value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `aliyun ros ...`, every word shell-quoted, except the values named in
    /// `literal`, written as given (a `"$(...)"` the shell expands).
    pub fn shell(&self, literal: &[(&str, &str)]) -> String {
        let mut words = vec!["aliyun".to_string(), self.product.to_string(), self.api.to_string()];
        for (name, value) in &self.params {
            words.push(format!("--{name}"));
            match literal.iter().find(|(n, _)| n == name) {
                Some((_, text)) => words.push((*text).to_string()),
                None => words.push(shell_quote(value)),
            }
        }
        words.join(" ")
    }

    /// How a message names the call: `aliyun ros GetStack (StackId s-1)`.
    pub fn label(&self) -> String {
        let subject = ["StackName", "StackId"].iter().find_map(|k| self.get(k).map(|v| format!(" ({k} {v})")));
        format!("aliyun {} {}{}", self.product, self.api, subject.unwrap_or_default())
    }
}

impl Aliyun {
    /// `--aliyun PATH`, else `$JUPYTER_ROOM_ALIYUN`, else `aliyun` on PATH.
    pub fn new(program: Option<PathBuf>) -> Aliyun {
        let program = program
            .map(OsString::from)
            .or_else(|| std::env::var_os(PROGRAM_ENV).filter(|p| !p.is_empty()))
            .unwrap_or_else(|| OsString::from("aliyun"));
        Aliyun { program }
    }

    /// Runs the call and reads its JSON answer.
    pub fn run(&self, call: &Call) -> Result<Value, CloudError> {
        let label = call.label();
        let spawn = || {
            Command::new(&self.program)
                .args(call.args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        // ETXTBSY: the program was just written (an install or update under
        // way, or a test's stand-in while another thread forks); it passes.
        let mut child = spawn()
            .or_else(|e| match e.raw_os_error() {
                Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    spawn()
                }
                _ => Err(e),
            })
            .map_err(|e| {
                let program = PathBuf::from(&self.program).display().to_string();
                if e.kind() == std::io::ErrorKind::NotFound {
                    CloudError(format!(
                        "{label}: the aliyun CLI ({program}) was not found: install it and run `aliyun configure` \
                         (Cloud Shell has it ready), or name it with --aliyun PATH or {PROGRAM_ENV}"
                    ))
                } else {
                    CloudError(format!("{label}: cannot run {program}: {e}"))
                }
            })?;
        // Both pipes are read at once, so that neither fills up and stalls the CLI.
        let mut stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = (&mut stderr).take(MAX_ANSWER).read_to_end(&mut bytes);
            bytes
        });
        let mut out = Vec::new();
        let read = child.stdout.take().expect("piped").take(MAX_ANSWER + 1).read_to_end(&mut out);
        let status = child.wait().map_err(|e| CloudError(format!("{label}: {e}")))?;
        let errors = errors.join().unwrap_or_default();
        read.map_err(|e| CloudError(format!("{label}: reading its answer: {e}")))?;
        if !status.success() {
            let text = String::from_utf8_lossy(&errors);
            let text = if text.trim().is_empty() { String::from_utf8_lossy(&out) } else { text };
            let said = match one_line(&scrub(text.trim())) {
                said if said.is_empty() => "it printed no reason".to_string(),
                said => jupyter_proto::redact::bound(&said, MAX_ERROR),
            };
            let code = status.code().map_or("a signal".to_string(), |c| format!("exit {c}"));
            return Err(CloudError(format!("{label} failed ({code}): {said}")));
        }
        if out.len() as u64 > MAX_ANSWER {
            return Err(CloudError(format!("{label}: an answer larger than {} MiB", MAX_ANSWER / 1024 / 1024)));
        }
        serde_json::from_slice(&out).map_err(|e| {
            let start = jupyter_proto::redact::bound(&one_line(&String::from_utf8_lossy(&out)), 200);
            CloudError(format!("{label}: the answer is not JSON ({e}): {start}"))
        })
    }
}

/// The region: `--region`, else `$ALIBABA_CLOUD_REGION_ID`; a region ID is
/// lowercase letters, digits and `-` (`cn-hangzhou`, `ap-southeast-1`).
pub fn region(given: Option<&str>) -> Result<String, String> {
    let from_env = std::env::var(REGION_ENV).ok().filter(|r| !r.is_empty());
    let (region, source) = match (given, from_env) {
        (Some(r), _) => (r.to_string(), "--region".to_string()),
        (None, Some(r)) => (r, REGION_ENV.to_string()),
        (None, None) => {
            return Err(format!(
                "no region: give --region REGION (e.g. --region cn-hangzhou) or set {REGION_ENV}, as for the aliyun CLI"
            ))
        }
    };
    let ok = !region.is_empty()
        && region.len() <= 64
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(format!(
            "{source} {region:?}: not a region ID (lowercase letters, digits and -, e.g. cn-hangzhou)"
        ));
    }
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_written_as_the_cli_documents_rpc_calls() {
        let call = Call::new("ros", "CreateStack")
            .param("RegionId", "cn-hangzhou")
            .param("StackName", "lab-1")
            .param("TemplateBody", "ROSTemplateFormatVersion: '2015-09-01'")
            .param("Parameters.1.ParameterKey", "Participants")
            .param("Parameters.1.ParameterValue", "alice,bob")
            .param("Tags.1.Key", "jupyter-room")
            .param("Tags.1.Value", "lab");
        assert_eq!(
            call.args(),
            [
                "ros",
                "CreateStack",
                "--RegionId",
                "cn-hangzhou",
                "--StackName",
                "lab-1",
                "--TemplateBody",
                "ROSTemplateFormatVersion: '2015-09-01'",
                "--Parameters.1.ParameterKey",
                "Participants",
                "--Parameters.1.ParameterValue",
                "alice,bob",
                "--Tags.1.Key",
                "jupyter-room",
                "--Tags.1.Value",
                "lab",
            ]
        );
        assert_eq!(
            call.shell(&[("TemplateBody", "\"$(jupyter-room template)\"")]),
            "aliyun ros CreateStack --RegionId cn-hangzhou --StackName lab-1 --TemplateBody \"$(jupyter-room template)\" \
             --Parameters.1.ParameterKey Participants --Parameters.1.ParameterValue alice,bob \
             --Tags.1.Key jupyter-room --Tags.1.Value lab"
        );
        assert_eq!(call.label(), "aliyun ros CreateStack (StackName lab-1)");
    }

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("aliyun");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_answer_is_read_and_a_failure_names_the_call_and_quotes_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let call = Call::new("ros", "GetStack").param("RegionId", "cn-hangzhou").param("StackId", "s-1");
        let ok = Aliyun::new(Some(script(dir.path(), r#"echo "{\"args\": \"$*\"}""#)));
        assert_eq!(ok.run(&call).unwrap()["args"], "ros GetStack --RegionId cn-hangzhou --StackId s-1");

        let failing = Aliyun::new(Some(script(
            dir.path(),
            "echo 'ERROR: SDK.ServerError' >&2; echo 'ErrorCode: StackNotFound' >&2; exit 1",
        )));
        assert_eq!(
            failing.run(&call).unwrap_err().0,
            "aliyun ros GetStack (StackId s-1) failed (exit 1): ERROR: SDK.ServerError ErrorCode: StackNotFound"
        );

        let silent = Aliyun::new(Some(script(dir.path(), "exit 3")));
        assert_eq!(
            silent.run(&call).unwrap_err().0,
            "aliyun ros GetStack (StackId s-1) failed (exit 3): it printed no reason"
        );

        let garbled = Aliyun::new(Some(script(dir.path(), "echo 'not json'")));
        assert!(garbled.run(&call).unwrap_err().0.contains("the answer is not JSON"));

        let missing = Aliyun::new(Some(dir.path().join("absent")));
        let message = missing.run(&call).unwrap_err().0;
        assert!(message.contains("was not found") && message.contains("--aliyun PATH"), "{message}");
    }

    #[test]
    fn the_region_is_checked() {
        assert_eq!(region(Some("cn-hangzhou")).unwrap(), "cn-hangzhou");
        assert!(region(Some("CN hangzhou")).unwrap_err().contains("not a region ID"));
    }
}
