//! Configuration: the TOML file that says what "converged" means on this host.
//!
//! The file is read into a `toml::Table` and walked key by key, so that every
//! rejection names the file, the key, the value found and what is expected
//! (`config.toml: [container] port = 70000: expected an integer from 1 to
//! 65535`). Nothing on the host changes before the whole file is valid.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the agent looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jupyter-agent/config.toml";
/// Where state lives when `state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/jupyter-agent";
/// The local API's Unix socket (docs/api.md).
pub const DEFAULT_SOCKET: &str = "/run/jupyter-agent.sock";
/// Where the agent writes logs of its own (the install log, dockerd's log).
pub const DEFAULT_LOG_DIR: &str = "/var/log/jupyter-agent";
/// Alibaba's mirror of Docker CE, reachable from every Alibaba Cloud region.
pub const DEFAULT_DOCKER_MIRROR: &str = "https://mirrors.aliyun.com/docker-ce";
/// The ECS instance metadata service (REFERENCE.md section 3).
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";

/// A rejected configuration: which file, which key, what was found, what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The key as a person finds it in the file: `[container] port`, or `state_dir`.
    pub key: String,
    /// The offending value, written as TOML; `None` for a missing or unknown key.
    pub value: Option<String>,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.value {
            Some(v) => write!(f, "{file}: {} = {v}: {}", self.key, self.expected),
            None if self.key.is_empty() => write!(f, "{file}: {}", self.expected),
            None => write!(f, "{file}: {}: {}", self.key, self.expected),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (or the default path when the built-in defaults are used).
    pub path: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The local API's Unix socket.
    pub socket: PathBuf,
    /// The legacy result file of the hands-on (`/root/userdata-result.txt`).
    pub result_file: Option<PathBuf>,
    pub docker: DockerConfig,
    /// The workshop materials, when the instance fetches them itself.
    pub workspace: Option<WorkspaceConfig>,
    pub image: ImageConfig,
    pub container: ContainerConfig,
    pub jupyter: JupyterConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// `unix:///path`, `tcp://host:port` or `http://host:port`; `None` means
    /// `DOCKER_HOST`, else the local socket.
    pub host: Option<String>,
    /// How long to wait for the engine to answer a ping.
    pub ping_timeout: Duration,
    /// Install and start Docker when the local engine does not answer.
    pub install: bool,
    pub source: DockerSource,
    /// The Docker CE package mirror (`<mirror>/linux/centos/docker-ce.repo`, `<mirror>/linux/debian`).
    pub mirror: String,
    /// Docker Hub mirrors merged into `/etc/docker/daemon.json`.
    pub registry_mirrors: Vec<String>,
}

/// Where Docker's packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerSource {
    /// The distribution's `docker.io` on Debian and Ubuntu, docker-ce elsewhere.
    Auto,
    /// The distribution's own package (Debian and Ubuntu only).
    Distro,
    /// Docker CE from `mirror`.
    DockerCe,
}

/// The `[workspace]` section: materials fetched once into `path`, never overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceConfig {
    pub source: crate::workspace::fetch::Source,
    /// The host directory (the hands-on: `/root/imagesearchhandson`).
    pub path: PathBuf,
    /// Where the container's env file is written (mode 0600) from `env`.
    pub env_file: Option<PathBuf>,
    /// Values are secrets: never logged, never in the state.
    pub env: BTreeMap<String, String>,
}

impl WorkspaceConfig {
    /// The source as a person wrote it, for messages and the record (no secrets: userinfo removed).
    pub fn source_label(&self) -> String {
        match &self.source {
            crate::workspace::fetch::Source::Tarball { url, sha256 } => {
                format!("{} (sha256 {sha256})", crate::workspace::fetch::redact_url(url))
            }
            crate::workspace::fetch::Source::Git { url, reference } => {
                format!("{} (ref {reference})", crate::workspace::fetch::redact_url(url))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// The reference the container runs, always with a tag.
    pub reference: String,
    pub source: ImageSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Pull(PullPolicy),
    Archive(PathBuf),
    Build(BuildConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    pub context: PathBuf,
    /// Relative to the context.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    /// Values are secrets: they never reach a log.
    pub env: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    pub volumes: Vec<Volume>,
    pub port: u16,
    pub publish: Publish,
    pub restart: RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

impl Volume {
    /// The form Docker's `Binds` takes.
    pub fn bind(&self) -> String {
        let mode = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{mode}", self.host.display(), self.container)
    }
}

/// Host address and port the container port is published on. Port 0 lets
/// Docker choose a free port (useful for tests and for several agents on one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub address: IpAddr,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure => "on-failure",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JupyterConfig {
    pub ready_timeout: Duration,
    pub url_host: UrlHost,
    pub metadata_endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlHost {
    /// Ask the ECS metadata service, else use the machine's primary address.
    Auto,
    Explicit(String),
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            value: None,
            expected: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// For the commands that do not converge (`status`, `token`, `url`,
    /// `install-docker`): reads `path` if it exists, else takes the built-in
    /// defaults, and does not require an `[image]` section. Still rejects
    /// unknown keys and bad values.
    pub fn load_or_default(path: &Path) -> Result<Config, ConfigError> {
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                key: String::new(),
                value: None,
                expected: format!("cannot read the configuration file: {e}"),
            })?
        } else {
            String::new()
        };
        Config::parse_inner(path, &text, false)
    }

    /// Validates `text`, reporting errors against `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_inner(path, text, true)
    }

    fn parse_inner(path: &Path, text: &str, image_required: bool) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            value: None,
            expected: format!("not valid TOML: {}", e.to_string().trim_end()),
        })?;
        let mut root = Section::new(path, "", table);

        let state_dir = root.abs_path("state_dir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let log_dir = root.abs_path("log_dir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR));
        let socket = root.abs_path("socket")?.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        let result_file = root.abs_path("result_file")?;

        let mut d = root.section("docker")?;
        let docker = DockerConfig {
            host: d.docker_host("host")?,
            ping_timeout: d.duration("ping_timeout")?.unwrap_or(Duration::from_secs(60)),
            install: d.boolean("install")?.unwrap_or(true),
            source: d.docker_source("source")?.unwrap_or(DockerSource::Auto),
            mirror: d.https_url("mirror")?.unwrap_or_else(|| DEFAULT_DOCKER_MIRROR.into()),
            registry_mirrors: d.url_array("registry_mirrors")?,
        };
        d.finish()?;

        let workspace = match root.take("workspace") {
            None => None,
            Some(v) => {
                let t = root.expect_table("[workspace]", v)?;
                Some(workspace_config(Section::new(path, "workspace", t))?)
            }
        };
        let workspace_path = workspace.as_ref().map(|w| w.path.clone());

        let image = match root.take("image") {
            None if !image_required => ImageConfig {
                reference: "jupyter-agent/notebook:local".into(),
                source: ImageSource::Pull(PullPolicy::Never),
            },
            None => {
                return Err(root.err("[image]", None, "missing; expected a section with one of name, archive or build"))
            }
            Some(v) => {
                let t = root.expect_table("image", v)?;
                image_config(Section::new(path, "image", t), workspace_path.as_deref())?
            }
        };

        let mut c = root.section("container")?;
        let container = ContainerConfig {
            name: c.container_name("name")?.unwrap_or_else(|| "jupyter".into()),
            command: c.str_array("command")?,
            user: c.string("user")?,
            env: c.string_map("env")?.unwrap_or_default(),
            env_file: c.abs_path("env_file")?.or_else(|| workspace.as_ref().and_then(|w| w.env_file.clone())),
            volumes: c.volumes("volumes", workspace_path.as_deref())?,
            port: c.port("port", false)?.unwrap_or(8888),
            publish: c.publish("publish")?.unwrap_or(Publish { address: IpAddr::from([0, 0, 0, 0]), port: 8888 }),
            restart: c.restart("restart")?.unwrap_or(RestartPolicy::UnlessStopped),
        };
        c.finish()?;

        let mut j = root.section("jupyter")?;
        let jupyter = JupyterConfig {
            ready_timeout: j.duration("ready_timeout")?.unwrap_or(Duration::from_secs(600)),
            url_host: j.url_host("url_host")?.unwrap_or(UrlHost::Auto),
            metadata_endpoint: j.http_url("metadata_endpoint")?.unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into()),
        };
        j.finish()?;
        root.finish()?;

        Ok(Config {
            path: path.to_path_buf(),
            state_dir,
            log_dir,
            socket,
            result_file,
            docker,
            workspace,
            image,
            container,
            jupyter,
        })
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

fn workspace_config(mut s: Section) -> Result<WorkspaceConfig, ConfigError> {
    use crate::workspace::fetch::Source;
    let url = s.string("source")?.ok_or_else(|| {
        s.err("source", None, "missing; expected the URL of a tarball (with sha256) or of a git repository (with ref)")
    })?;
    let sha256 = s.string("sha256")?;
    let reference = s.string("ref")?;
    let path = s.abs_path("path")?.ok_or_else(|| {
        s.err("path", None, "missing; expected the host directory, e.g. path = \"/root/imagesearchhandson\"")
    })?;
    if path.parent().is_none() || path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(s.err(
            "path",
            Some(toml_str(&path.display().to_string())),
            "expected a directory below /, without ..",
        ));
    }
    let env_file = match s.string("env_file")? {
        None => None,
        Some(f) if f.is_empty() || f.split('/').any(|p| p == "..") => {
            return Err(s.err(
                "env_file",
                Some(toml_str(&f)),
                "expected a file name inside the workspace (env) or an absolute path",
            ))
        }
        Some(f) if f.starts_with('/') => Some(PathBuf::from(f)),
        Some(f) => Some(path.join(f)),
    };
    let env = s.string_map("env")?.unwrap_or_default();
    if let Some(k) = env.iter().find(|(_, v)| v.contains(['\n', '\r'])).map(|(k, _)| k) {
        return Err(s.err(
            &format!("env.{k}"),
            None,
            "expected a value on one line (the value is not shown: it may be a secret)",
        ));
    }
    if !env.is_empty() && env_file.is_none() {
        return Err(s.err(
            "env_file",
            None,
            "missing; [workspace.env] needs a file to be written to, e.g. env_file = \"env\"",
        ));
    }
    let shown = crate::workspace::fetch::redact_url(&url);
    let source = match (sha256, reference) {
        (Some(_), Some(_)) => {
            return Err(s.err(
                "[workspace]",
                None,
                "has both sha256 and ref; expected sha256 for a tarball or ref for a git repository",
            ))
        }
        (None, None) => {
            return Err(s.err(
                "[workspace]",
                None,
                "expected sha256 (the source is a tarball) or ref (the source is a git repository)",
            ))
        }
        (Some(sha), None) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(s.err(
                    "source",
                    Some(toml_str(&shown)),
                    "expected an http:// or https:// URL of a tarball",
                ));
            }
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(s.err(
                    "sha256",
                    Some(toml_str(&sha)),
                    "expected 64 hexadecimal digits (sha256sum of the tarball)",
                ));
            }
            Source::Tarball { url, sha256: sha.to_ascii_lowercase() }
        }
        (None, Some(reference)) => {
            let ok = ["https://", "http://", "file://", "ssh://", "git://", "/"].iter().any(|p| url.starts_with(p));
            if !ok || url.contains(char::is_whitespace) {
                return Err(s.err(
                    "source",
                    Some(toml_str(&shown)),
                    "expected a git repository URL (https://, file://, ssh://) or an absolute path",
                ));
            }
            if reference.is_empty() || reference.starts_with('-') || reference.contains(char::is_whitespace) {
                return Err(s.err("ref", Some(toml_str(&reference)), "expected a branch, a tag or a commit"));
            }
            Source::Git { url, reference }
        }
    };
    s.finish()?;
    Ok(WorkspaceConfig { source, path, env_file, env })
}

fn image_config(mut s: Section, workspace: Option<&Path>) -> Result<ImageConfig, ConfigError> {
    let name = s.image_ref("name")?;
    let pull = s.pull("pull")?;
    let archive = s.abs_path("archive")?;
    let tag = s.image_ref("tag")?;
    let build = match s.take("build") {
        None => None,
        Some(v) => {
            let t = s.expect_table("build", v)?;
            let mut b = Section::new(s.file, "image.build", t);
            let context = match b.string("context")?.as_deref() {
                None => {
                    return Err(b.err(
                        "context",
                        None,
                        "missing; expected the absolute path of the build context directory, or \"workspace\"",
                    ))
                }
                Some("workspace") => workspace.map(Path::to_path_buf).ok_or_else(|| {
                    b.err(
                        "context",
                        Some(toml_str("workspace")),
                        "names the workspace, but there is no [workspace] section",
                    )
                })?,
                Some(p) if p.starts_with('/') => PathBuf::from(p),
                Some(p) => {
                    return Err(b.err(
                        "context",
                        Some(toml_str(p)),
                        "expected an absolute path (starting with /) or \"workspace\"",
                    ))
                }
            };
            let dockerfile = b.string("dockerfile")?.unwrap_or_else(|| "Dockerfile".into());
            if dockerfile.is_empty() || dockerfile.starts_with('/') || dockerfile.split('/').any(|p| p == "..") {
                return Err(b.err(
                    "dockerfile",
                    Some(toml_str(&dockerfile)),
                    "expected a path relative to the build context, inside it",
                ));
            }
            let args = b.string_map("args")?.unwrap_or_default();
            b.finish()?;
            Some(BuildConfig { context, dockerfile, args })
        }
    };
    let sources = [name.is_some(), archive.is_some(), build.is_some()];
    if sources.iter().filter(|x| **x).count() != 1 {
        let found: Vec<&str> =
            ["name", "archive", "build"].iter().zip(sources).filter(|(_, on)| *on).map(|(k, _)| *k).collect();
        let found = if found.is_empty() { "none".to_string() } else { found.join(" and ") };
        return Err(s.err(
            "[image]",
            None,
            &format!("found {found}; expected exactly one image source: name (pull), archive (docker load) or build"),
        ));
    }
    let out = if let Some(reference) = name {
        if tag.is_some() {
            return Err(s.err(
                "tag",
                None,
                "only goes with archive or build; with name, the tag is part of the name (name = \"repo:tag\")",
            ));
        }
        ImageConfig { reference, source: ImageSource::Pull(pull.unwrap_or(PullPolicy::IfNotPresent)) }
    } else {
        if pull.is_some() {
            return Err(s.err(
                "pull",
                None,
                "only goes with name; an archive is loaded and a build is built, never pulled",
            ));
        }
        let reference = tag.ok_or_else(|| {
            s.err(
                "tag",
                None,
                "missing; expected the name:tag the loaded or built image gets, e.g. tag = \"notebook:latest\"",
            )
        })?;
        match (archive, build) {
            (Some(a), _) => ImageConfig { reference, source: ImageSource::Archive(a) },
            (_, Some(b)) => ImageConfig { reference, source: ImageSource::Build(b) },
            _ => unreachable!("exactly one source was checked above"),
        }
    };
    s.finish()?;
    Ok(out)
}

/// A TOML string literal, for messages.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One table of the file being validated; keys are removed as they are read,
/// so that whatever is left at `finish` is unknown.
struct Section<'a> {
    file: &'a Path,
    /// Dotted name (`image.build`), empty for the top level.
    name: &'static str,
    table: toml::Table,
    /// Keys already read, to list in the "unknown key" message.
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn new(file: &'a Path, name: &'static str, table: toml::Table) -> Self {
        Section { file, name, table, known: Vec::new() }
    }

    fn key_label(&self, key: &str) -> String {
        if key.starts_with('[') || self.name.is_empty() {
            key.to_string()
        } else {
            format!("[{}] {key}", self.name)
        }
    }

    fn err(&self, key: &str, value: Option<String>, expected: &str) -> ConfigError {
        ConfigError { file: self.file.to_path_buf(), key: self.key_label(key), value, expected: expected.to_string() }
    }

    fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    fn expect_table(&self, key: &str, v: toml::Value) -> Result<toml::Table, ConfigError> {
        match v {
            toml::Value::Table(t) => Ok(t),
            other => Err(self.err(key, Some(other.to_string()), "expected a table (a [section])")),
        }
    }

    /// A child section that may be absent; its keys are checked by its own `finish`.
    fn section(&mut self, key: &'static str) -> Result<Section<'a>, ConfigError> {
        self.known.push(key);
        let table = match self.table.remove(key) {
            None => toml::Table::new(),
            Some(v) => self.expect_table(&format!("[{key}]"), v)?,
        };
        Ok(Section::new(self.file, key, table))
    }

    fn finish(self) -> Result<(), ConfigError> {
        let known = &self.known;
        if let Some((key, _)) = self.table.iter().next() {
            let expected = if known.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key; expected one of: {}", known.join(", "))
            };
            return Err(self.err(key, None, &expected));
        }
        Ok(())
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, Some(v.to_string()), "expected a string")),
        }
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(key, Some(v.to_string()), "expected true or false")),
        }
    }

    fn docker_source(&mut self, key: &'static str) -> Result<Option<DockerSource>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        match s.as_str() {
            "auto" => Ok(Some(DockerSource::Auto)),
            "distro" => Ok(Some(DockerSource::Distro)),
            "docker-ce" => Ok(Some(DockerSource::DockerCe)),
            _ => Err(self.err(key, Some(toml_str(&s)), "expected one of \"auto\", \"distro\", \"docker-ce\"")),
        }
    }

    /// An http:// or https:// URL without spaces.
    fn https_url(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        if !is_web_url(&s) {
            return Err(self.err(key, Some(toml_str(&s)), "expected an https:// (or http://) URL"));
        }
        Ok(Some(s.trim_end_matches('/').to_string()))
    }

    fn url_array(&mut self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(items) = self.str_array(key)? else { return Ok(Vec::new()) };
        if let Some(bad) = items.iter().find(|s| !is_web_url(s)) {
            return Err(self.err(key, Some(toml_str(bad)), "expected https:// (or http://) URLs of registry mirrors"));
        }
        Ok(items)
    }

    fn abs_path(&mut self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
            Some(s) => Err(self.err(key, Some(toml_str(&s)), "expected an absolute path (starting with /)")),
        }
    }

    fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        const EXPECTED: &str = "expected a duration such as \"90s\", \"10m\" or \"1h\"";
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => match humantime::parse_duration(&s) {
                Ok(d) if !d.is_zero() => Ok(Some(d)),
                _ => Err(self.err(key, Some(toml_str(&s)), EXPECTED)),
            },
            Some(v) => Err(self.err(key, Some(v.to_string()), EXPECTED)),
        }
    }

    fn str_array(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        const EXPECTED: &str = "expected a non-empty array of strings, e.g. [\"jupyter\", \"notebook\"]";
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    match item {
                        toml::Value::String(s) => out.push(s.clone()),
                        _ => return Err(self.err(key, Some(toml::Value::Array(items.clone()).to_string()), EXPECTED)),
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.err(key, Some(v.to_string()), EXPECTED)),
        }
    }

    /// A table of strings; values are secrets, so messages never show them.
    fn string_map(&mut self, key: &'static str) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => {
                let mut out = BTreeMap::new();
                for (k, v) in t {
                    if k.is_empty() || k.contains('=') {
                        return Err(self.err(&format!("{key}.{k}"), None, "expected a variable name without '='"));
                    }
                    match v {
                        toml::Value::String(s) => {
                            out.insert(k, s);
                        }
                        _ => {
                            return Err(self.err(
                                &format!("{key}.{k}"),
                                None,
                                "expected a string value (the value is not shown: it may be a secret)",
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.err(key, None, "expected a table of strings, e.g. env = { REGION = \"cn-beijing\" }")),
        }
    }

    fn integer(&mut self, key: &'static str, expected: &str) -> Result<Option<i64>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(i)),
            Some(v) => Err(self.err(key, Some(v.to_string()), expected)),
        }
    }

    fn port(&mut self, key: &'static str, zero_ok: bool) -> Result<Option<u16>, ConfigError> {
        let expected =
            if zero_ok { "expected an integer from 0 to 65535" } else { "expected an integer from 1 to 65535" };
        let min = if zero_ok { 0 } else { 1 };
        match self.integer(key, expected)? {
            None => Ok(None),
            Some(i) if (min..=65535).contains(&i) => Ok(Some(i as u16)),
            Some(i) => Err(self.err(key, Some(i.to_string()), expected)),
        }
    }

    fn publish(&mut self, key: &'static str) -> Result<Option<Publish>, ConfigError> {
        const EXPECTED: &str =
            "expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"";
        let Some(s) = self.string(key)? else { return Ok(None) };
        let bad = || self.err(key, Some(toml_str(&s)), EXPECTED);
        let (addr, port) = match s.rsplit_once(':') {
            Some((a, p)) => (a.trim_start_matches('[').trim_end_matches(']'), p),
            None => ("0.0.0.0", s.as_str()),
        };
        let address: IpAddr = addr.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(Some(Publish { address, port }))
    }

    fn restart(&mut self, key: &'static str) -> Result<Option<RestartPolicy>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let p = match s.as_str() {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure,
            _ => {
                return Err(self.err(
                    key,
                    Some(toml_str(&s)),
                    "expected one of \"no\", \"always\", \"unless-stopped\", \"on-failure\"",
                ))
            }
        };
        Ok(Some(p))
    }

    fn pull(&mut self, key: &'static str) -> Result<Option<PullPolicy>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let p = match s.as_str() {
            "always" => PullPolicy::Always,
            "if-not-present" => PullPolicy::IfNotPresent,
            "never" => PullPolicy::Never,
            _ => {
                return Err(self.err(
                    key,
                    Some(toml_str(&s)),
                    "expected one of \"always\", \"if-not-present\", \"never\"",
                ))
            }
        };
        Ok(Some(p))
    }

    /// An image reference, given a tag when it has none (an empty tag would pull every tag).
    fn image_ref(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let valid = !s.is_empty()
            && !s.starts_with(['-', ':', '/', '@'])
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
            && !s.ends_with([':', '/', '@']);
        if !valid {
            return Err(self.err(key, Some(toml_str(&s)), "expected an image reference such as \"notebook:latest\" or \"registry.example:5000/team/notebook:1.0\""));
        }
        Ok(Some(with_tag(&s)))
    }

    fn container_name(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let mut chars = s.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(self.err(
                key,
                Some(toml_str(&s)),
                "expected a container name: letters, digits, '_', '.' and '-', starting with a letter or digit",
            ));
        }
        Ok(Some(s))
    }

    fn volumes(&mut self, key: &'static str, workspace: Option<&Path>) -> Result<Vec<Volume>, ConfigError> {
        const EXPECTED: &str =
            "expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")";
        let Some(items) = self.str_array(key)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in items {
            let bad = || self.err(key, Some(toml_str(&item)), EXPECTED);
            let parts: Vec<&str> = item.split(':').collect();
            let (host, container, read_only) = match parts.as_slice() {
                [h, c] => (*h, *c, false),
                [h, c, "ro"] => (*h, *c, true),
                [h, c, "rw"] => (*h, *c, false),
                _ => return Err(bad()),
            };
            let host = match (host, workspace) {
                ("workspace", Some(w)) => w.to_path_buf(),
                ("workspace", None) => {
                    return Err(self.err(
                        key,
                        Some(toml_str(&item)),
                        "names the workspace, but there is no [workspace] section",
                    ))
                }
                (h, _) if h.starts_with('/') => PathBuf::from(h),
                _ => return Err(bad()),
            };
            if !container.starts_with('/') {
                return Err(bad());
            }
            out.push(Volume { host, container: container.to_string(), read_only });
        }
        Ok(out)
    }

    fn docker_host(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let ok = ["unix:///", "tcp://", "http://"].iter().any(|p| s.starts_with(p) && s.len() > p.len());
        if !ok {
            return Err(self.err(
                key,
                Some(toml_str(&s)),
                "expected unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT",
            ));
        }
        Ok(Some(s))
    }

    fn url_host(&mut self, key: &'static str) -> Result<Option<UrlHost>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        if s == "auto" {
            return Ok(Some(UrlHost::Auto));
        }
        let valid = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !valid {
            return Err(self.err(key, Some(toml_str(&s)), "expected \"auto\", a host name or an IP address"));
        }
        Ok(Some(UrlHost::Explicit(s)))
    }

    fn http_url(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        if !s.starts_with("http://") || s.len() <= "http://".len() {
            return Err(self.err(key, Some(toml_str(&s)), "expected an http:// URL"));
        }
        Ok(Some(s.trim_end_matches('/').to_string()))
    }
}

fn is_web_url(s: &str) -> bool {
    ["https://", "http://"].iter().any(|p| s.starts_with(p) && s.len() > p.len()) && !s.contains(char::is_whitespace)
}

/// `name` with `:latest` appended when it names no tag or digest.
pub fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/jupyter-agent/config.toml"), text).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "[image]\nname = \"notebook\"\n";

    #[test]
    fn defaults_fill_everything_but_the_image() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/jupyter-agent"));
        assert_eq!(c.result_file, None);
        assert_eq!(c.image.reference, "notebook:latest");
        assert_eq!(c.image.source, ImageSource::Pull(PullPolicy::IfNotPresent));
        assert_eq!(c.container.name, "jupyter");
        assert_eq!(c.container.port, 8888);
        assert_eq!(c.container.publish, Publish { address: "0.0.0.0".parse().unwrap(), port: 8888 });
        assert_eq!(c.container.restart, RestartPolicy::UnlessStopped);
        assert_eq!(c.jupyter.ready_timeout, Duration::from_secs(600));
        assert_eq!(c.jupyter.url_host, UrlHost::Auto);
        assert_eq!(c.docker.host, None);
        assert!(c.docker.install);
        assert_eq!(c.docker.source, DockerSource::Auto);
        assert_eq!(c.docker.mirror, DEFAULT_DOCKER_MIRROR);
        assert!(c.docker.registry_mirrors.is_empty());
        assert_eq!(c.log_dir, PathBuf::from("/var/log/jupyter-agent"));
    }

    #[test]
    fn commands_that_do_not_converge_need_no_image_but_still_refuse_bad_keys() {
        let missing = Path::new("/nonexistent/jupyter-agent/config.toml");
        assert_eq!(Config::load_or_default(missing).unwrap().state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "state_dir = \"/srv/state\"\n").unwrap();
        assert_eq!(Config::load_or_default(&path).unwrap().state_dir, PathBuf::from("/srv/state"));
        std::fs::write(&path, "[docker]\nsorce = \"auto\"\n").unwrap();
        assert!(Config::load_or_default(&path).unwrap_err().to_string().contains("[docker] sorce: unknown key"));
        assert!(Config::load(&path).is_err());
    }

    #[test]
    fn the_handson_example_parses() {
        let text = include_str!("../../examples/handson.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.container.user.as_deref(), Some("root"));
        assert_eq!(c.container.volumes[0].container, "/home/jupyter/jupyter-working");
        let w = c.workspace.as_ref().unwrap();
        assert_eq!(w.path, PathBuf::from("/root/imagesearchhandson"));
        assert_eq!(c.container.volumes[0].host, w.path, "the repository is mounted");
        assert!(matches!(&c.image.source, ImageSource::Build(b) if b.context == w.path), "built from its Dockerfile");
        assert_eq!(c.container.env_file.as_deref(), Some(Path::new("/root/imagesearchhandson/env")));
        assert!(w.env.contains_key("IMAGESEARCH_INSTANCE_NAME"), "the name the notebooks read");
    }

    #[test]
    fn every_example_parses() {
        for text in [include_str!("../../examples/local.toml"), include_str!("../../examples/pull.toml")] {
            parse(text).unwrap();
        }
    }

    #[test]
    fn rejections_name_file_key_value_and_expectation() {
        let f = "/etc/jupyter-agent/config.toml";
        let cases: &[(&str, String)] = &[
            ("[container]\nport = 70000\n", format!("{f}: [container] port = 70000: expected an integer from 1 to 65535")),
            ("[container]\nport = \"8888\"\n", format!("{f}: [container] port = \"8888\": expected an integer from 1 to 65535")),
            ("[container]\nprot = 1\n", format!("{f}: [container] prot: unknown key; expected one of: name, command, user, env, env_file, volumes, port, publish, restart")),
            ("colour = 1\n", format!("{f}: colour: unknown key; expected one of: state_dir, log_dir, socket, result_file, docker, workspace, image, container, jupyter")),
            ("[jupyter]\nready_timeout = \"soon\"\n", format!("{f}: [jupyter] ready_timeout = \"soon\": expected a duration such as \"90s\", \"10m\" or \"1h\"")),
            ("[jupyter]\nready_timeout = 600\n", format!("{f}: [jupyter] ready_timeout = 600: expected a duration such as \"90s\", \"10m\" or \"1h\"")),
            ("state_dir = \"relative/dir\"\n", format!("{f}: state_dir = \"relative/dir\": expected an absolute path (starting with /)")),
            ("[container]\nrestart = \"sometimes\"\n", format!("{f}: [container] restart = \"sometimes\": expected one of \"no\", \"always\", \"unless-stopped\", \"on-failure\"")),
            ("[container]\npublish = \"0.0.0.0:99999\"\n", format!("{f}: [container] publish = \"0.0.0.0:99999\": expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"")),
            ("[container]\nvolumes = [\"data:/data\"]\n", format!("{f}: [container] volumes = \"data:/data\": expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")")),
            ("[container]\nenv = { SECRET = 42 }\n", format!("{f}: [container] env.SECRET: expected a string value (the value is not shown: it may be a secret)")),
            ("[docker]\nhost = \"docker.sock\"\n", format!("{f}: [docker] host = \"docker.sock\": expected unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT")),
            ("[docker]\nsource = \"snap\"\n", format!("{f}: [docker] source = \"snap\": expected one of \"auto\", \"distro\", \"docker-ce\"")),
            ("[docker]\ninstall = \"yes\"\n", format!("{f}: [docker] install = \"yes\": expected true or false")),
            ("[docker]\nregistry_mirrors = [\"mirror.example\"]\n", format!("{f}: [docker] registry_mirrors = \"mirror.example\": expected https:// (or http://) URLs of registry mirrors")),
            ("[image]\npull = \"sometimes\"\nname = \"x\"\n", format!("{f}: [image] pull = \"sometimes\": expected one of \"always\", \"if-not-present\", \"never\"")),
        ];
        for (body, want) in cases {
            let text = if body.contains("[image]") { body.to_string() } else { format!("{body}{MINIMAL}") };
            assert_eq!(parse(&text).unwrap_err(), *want, "config:\n{text}");
        }
    }

    #[test]
    fn a_workspace_is_a_tarball_or_a_git_repository_and_can_be_named() {
        use crate::workspace::fetch::Source;
        let sha = "ab".repeat(32);
        let c = parse(&format!(
            "[workspace]\nsource = \"https://example.com/h.tar.gz\"\nsha256 = \"{}\"\npath = \"/root/handson\"\nenv_file = \"env\"\n\
             [workspace.env]\nREGION = \"cn-beijing\"\n\
             [image]\ntag = \"notebook:latest\"\n[image.build]\ncontext = \"workspace\"\n\
             [container]\nvolumes = [\"workspace:/home/jupyter/jupyter-working\"]\n",
            sha.to_uppercase()
        ))
        .unwrap();
        let w = c.workspace.as_ref().unwrap();
        assert_eq!(w.source, Source::Tarball { url: "https://example.com/h.tar.gz".into(), sha256: sha.clone() });
        assert_eq!(w.env_file.as_deref(), Some(Path::new("/root/handson/env")));
        assert_eq!(c.container.env_file.as_deref(), Some(Path::new("/root/handson/env")), "the container gets it");
        assert_eq!(c.container.volumes[0].host, PathBuf::from("/root/handson"));
        assert!(matches!(&c.image.source, ImageSource::Build(b) if b.context == Path::new("/root/handson")));
        let g = parse("[workspace]\nsource = \"file:///srv/repo.git\"\nref = \"main\"\npath = \"/root/w\"\n[image]\nname = \"x\"\n").unwrap();
        assert_eq!(
            g.workspace.unwrap().source,
            Source::Git { url: "file:///srv/repo.git".into(), reference: "main".into() }
        );

        let f = "/etc/jupyter-agent/config.toml";
        let cases = [
            ("source = \"https://x/a.tgz\"\npath = \"/w\"", format!("{f}: [workspace]: expected sha256 (the source is a tarball) or ref (the source is a git repository)")),
            ("source = \"https://x/a.tgz\"\nsha256 = \"abc\"\npath = \"/w\"", format!("{f}: [workspace] sha256 = \"abc\": expected 64 hexadecimal digits (sha256sum of the tarball)")),
            ("source = \"https://u:pw@x/a.git\"\nref = \"main\"\nsha256 = \"abc\"\npath = \"/w\"", format!("{f}: [workspace]: has both sha256 and ref; expected sha256 for a tarball or ref for a git repository")),
            ("source = \"ftp://u:pw@x/a.tgz\"\nsha256 = \"{sha}\"\npath = \"/w\"", format!("{f}: [workspace] source = \"ftp://***@x/a.tgz\": expected an http:// or https:// URL of a tarball")),
            ("source = \"/srv/repo\"\nref = \"main\"", format!("{f}: [workspace] path: missing; expected the host directory, e.g. path = \"/root/imagesearchhandson\"")),
            ("source = \"/srv/repo\"\nref = \"main\"\npath = \"/w\"\nenv = { A = \"1\" }", format!("{f}: [workspace] env_file: missing; [workspace.env] needs a file to be written to, e.g. env_file = \"env\"")),
            ("source = \"/srv/repo\"\nref = \"main\"\npath = \"/w\"\nenv_file = \"../env\"", format!("{f}: [workspace] env_file = \"../env\": expected a file name inside the workspace (env) or an absolute path")),
        ];
        for (body, want) in cases {
            let body = body.replace("{sha}", &sha);
            assert_eq!(parse(&format!("[workspace]\n{body}\n[image]\nname = \"x\"\n")).unwrap_err(), want, "{body}");
        }
        assert_eq!(
            parse("[image]\ntag = \"nb\"\n[image.build]\ncontext = \"workspace\"\n").unwrap_err(),
            format!(
                "{f}: [image.build] context = \"workspace\": names the workspace, but there is no [workspace] section"
            )
        );
    }

    #[test]
    fn image_needs_exactly_one_source() {
        let f = "/etc/jupyter-agent/config.toml";
        assert_eq!(
            parse("[container]\nport = 8888\n").unwrap_err(),
            format!("{f}: [image]: missing; expected a section with one of name, archive or build")
        );
        assert_eq!(
            parse("[image]\nname = \"a\"\narchive = \"/a.tar\"\n").unwrap_err(),
            format!("{f}: [image]: found name and archive; expected exactly one image source: name (pull), archive (docker load) or build")
        );
        assert_eq!(
            parse("[image]\narchive = \"/a.tar\"\n").unwrap_err(),
            format!("{f}: [image] tag: missing; expected the name:tag the loaded or built image gets, e.g. tag = \"notebook:latest\"")
        );
        assert_eq!(
            parse("[image]\nname = \"a\"\ntag = \"b\"\n").unwrap_err(),
            format!("{f}: [image] tag: only goes with archive or build; with name, the tag is part of the name (name = \"repo:tag\")")
        );
        assert_eq!(
            parse("[image]\ntag = \"nb\"\n[image.build]\ncontext = \"/ctx\"\ndockerfile = \"../Dockerfile\"\n").unwrap_err(),
            format!("{f}: [image.build] dockerfile = \"../Dockerfile\": expected a path relative to the build context, inside it")
        );
    }

    #[test]
    fn secrets_never_reach_a_message() {
        let err = parse("[image]\nname = \"a\"\n[container]\nenv = { KEY = [\"s3cr3t\"] }\n").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn invalid_toml_is_reported_with_the_file() {
        let err = parse("[image\nname = 1").unwrap_err();
        assert!(err.starts_with("/etc/jupyter-agent/config.toml: not valid TOML:"), "{err}");
    }

    #[test]
    fn tags_are_always_named() {
        assert_eq!(with_tag("notebook"), "notebook:latest");
        assert_eq!(with_tag("notebook:6"), "notebook:6");
        assert_eq!(with_tag("localhost:5000/notebook"), "localhost:5000/notebook:latest");
        assert_eq!(with_tag("localhost:5000/notebook:1"), "localhost:5000/notebook:1");
        assert_eq!(with_tag("nb@sha256:abc"), "nb@sha256:abc");
    }

    #[test]
    fn publish_forms() {
        let c = parse(&format!("{MINIMAL}[container]\npublish = \"127.0.0.1:0\"\n")).unwrap();
        assert_eq!(c.container.publish, Publish { address: "127.0.0.1".parse().unwrap(), port: 0 });
        let c = parse(&format!("{MINIMAL}[container]\npublish = \"9999\"\n")).unwrap();
        assert_eq!(c.container.publish.port, 9999);
    }
}
