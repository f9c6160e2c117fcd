//! Configuration: the TOML file that says what "converged" means on this host.
//!
//! The file is read into a `toml::Table` and walked key by key
//! ([`section`]), each value into its type ([`values`]), so that every
//! rejection names the file, the key, the value found and what is expected
//! (`config.toml: [container] port = 70000: expected an integer from 1 to
//! 65535`). Nothing on the host changes before the whole file is valid.

pub mod credentials;
mod gpu;
pub mod host;
mod image;
pub mod paths;
mod section;
#[cfg(test)]
mod tests;
mod tls;
pub mod values;
pub mod workspace;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use gpu::{GpuConfig, Gpus, MAX_GPUS};
pub use image::{Archive, ArchiveLocation, BuildConfig, ImageConfig, ImageSource, Pull};
use jupyter_proto::redact::redact_url;
use section::{toml_str, Section};
pub use tls::{Challenge, Fallback, TlsConfig, TlsMode, LETS_ENCRYPT};
pub use values::{
    with_tag, ContainerName, DockerHost, DockerSource, Host, ImageRef, Publish, PullPolicy, RestartPolicy, TokenChoice,
    UrlHost, Volume,
};

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
/// NVIDIA's package repository of the NVIDIA Container Toolkit, as its
/// install guide names it (docs/gpu.md#the-nvidia-container-toolkit).
pub const DEFAULT_NVIDIA_TOOLKIT_REPOSITORY: &str = "https://nvidia.github.io/libnvidia-container";
/// The ECS instance metadata service (docs/metadata.md).
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

/// `[container] gpus`: `"all"` or a number of GPUs (docs/gpu.md).
fn gpus(c: &mut Section) -> Result<Option<Gpus>, ConfigError> {
    use gpu::MAX_GPUS as MAX_COUNT;
    let expected = format!(
        "expected \"all\" or a number of GPUs from 1 to {MAX_COUNT} (written without quotes), or no gpus key for a container without GPUs"
    );
    match c.take("gpus") {
        None => Ok(None),
        Some(toml::Value::String(s)) if s == "all" => Ok(Some(Gpus::All)),
        Some(toml::Value::Integer(n)) if (1..=i64::from(MAX_COUNT)).contains(&n) => {
            Ok(Some(Gpus::Count(u32::try_from(n).expect("bounded above"))))
        }
        Some(v) => Err(c.err("gpus", Some(v.to_string()), &expected)),
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The local API's Unix socket.
    pub socket: PathBuf,
    /// The legacy result file of the hands-on (`/root/userdata-result.txt`).
    pub result_file: Option<PathBuf>,
    pub docker: DockerConfig,
    /// The workshop materials, when the instance fetches them itself.
    pub workspace: Option<WorkspaceConfig>,
    /// `[workspace] download_exclude`: globs (relative to the workspace)
    /// left out of "download my work" (docs/configuration.md), each checked
    /// when the file is read; empty without a `[workspace]`.
    pub download_exclude: Vec<String>,
    pub image: ImageConfig,
    pub container: ContainerConfig,
    pub jupyter: JupyterConfig,
    /// HTTPS in front of Jupyter (docs/tls.md).
    pub tls: TlsConfig,
    /// `[gpu]`: how the GPU steps wait (docs/gpu.md).
    pub gpu: GpuConfig,
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
    /// On the RPM distributions, remove the installed packages that conflict
    /// with docker-ce (podman, runc, ...) before installing it; `false`
    /// refuses instead (docs/docker-install.md#conflicting-packages).
    pub remove_conflicts: bool,
    /// The NVIDIA Container Toolkit's package repository, in NVIDIA's
    /// layout (`<repo>/gpgkey`, `<repo>/stable/deb/$(ARCH)`,
    /// `<repo>/stable/rpm/$basearch`): NVIDIA's own, or a mirror of it.
    pub nvidia_toolkit_repository: String,
}

/// The `[workspace]` section: materials fetched once into `path`, never overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceConfig {
    pub source: workspace::Source,
    /// The host directory (the hands-on: `/root/imagesearchhandson`).
    pub path: PathBuf,
    /// Where the container's env file is written (mode 0600) from `env`.
    pub env_file: Option<PathBuf>,
    /// Values are secrets: never logged, never in the state.
    pub env: BTreeMap<String, String>,
}

impl WorkspaceConfig {
    /// The source as a person wrote it, for messages and the record (no
    /// secrets: userinfo and query hidden; a signed URL signed again is the
    /// same source).
    pub fn source_label(&self) -> String {
        match &self.source {
            workspace::Source::Tarball { sha256, .. } => {
                format!("{} (sha256 {sha256})", self.source.display_url())
            }
            workspace::Source::Git { reference, .. } => {
                format!("{} (ref {reference})", self.source.display_url())
            }
        }
    }
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
    /// Whether the container may reach the metadata service (default: no;
    /// docs/threat-model.md#the-metadata-service).
    pub metadata_access: bool,
    /// The host's GPUs the container is given (default: none; docs/gpu.md).
    pub gpus: Option<Gpus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JupyterConfig {
    /// Where the login token comes from.
    pub token: TokenChoice,
    pub ready_timeout: Duration,
    pub url_host: UrlHost,
    pub metadata_endpoint: String,
}

/// The longest Unix socket path the kernel takes.
pub const MAX_SOCKET_PATH: usize = 107;

impl JupyterConfig {
    /// The metadata service's address: the host of `metadata_endpoint`, when
    /// it is an IPv4 address.
    pub fn metadata_address(&self) -> Option<std::net::Ipv4Addr> {
        reqwest::Url::parse(&self.metadata_endpoint).ok()?.host_str()?.parse().ok()
    }
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

    /// The built-in defaults, as an empty file gives them (no `[image]`).
    pub fn defaults() -> Config {
        Config::parse_inner(Path::new(DEFAULT_CONFIG_PATH), "", false).expect("the built-in defaults are valid")
    }

    /// Where a file that failed validation puts the state and the socket:
    /// its `state_dir` and `socket` when they read as absolute paths, else
    /// the defaults. A long-running `run` publishes its refusal there.
    pub fn locations(path: &Path) -> (PathBuf, PathBuf) {
        let table: Option<toml::Table> = std::fs::read_to_string(path).ok().and_then(|t| t.parse().ok());
        let get = |key: &str, default: &str| {
            let value = table.as_ref().and_then(|t| t.get(key)).and_then(|v| v.as_str()).filter(|s| s.starts_with('/'));
            PathBuf::from(value.unwrap_or(default))
        };
        (get("state_dir", DEFAULT_STATE_DIR), get("socket", DEFAULT_SOCKET))
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
        // Where and why, but not the offending line: it may hold a secret,
        // and it may be megabytes long.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
                format!(" at line {line}, column {column}")
            });
            let why = jupyter_proto::redact::bound(e.message().trim_end(), 200);
            ConfigError {
                file: path.to_path_buf(),
                key: String::new(),
                value: None,
                expected: format!("not valid TOML{at}: {why}"),
            }
        })?;
        let mut root = Section::new(path, "", table);

        let state_dir = root.abs_path("state_dir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let log_dir = root.abs_path("log_dir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR));
        let socket = root.abs_path("socket")?.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        // sun_path holds 108 bytes, the terminating NUL included (unix(7)).
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(root.err(
                "socket",
                Some(toml_str(&socket.display().to_string())),
                &format!(
                    "expected a path of at most {MAX_SOCKET_PATH} bytes (the kernel's limit for a Unix socket address)"
                ),
            ));
        }
        let result_file = root.abs_path("result_file")?;

        let mut d = root.section("docker")?;
        let docker = DockerConfig {
            host: d.parsed::<DockerHost>("host")?.map(|h| h.0),
            ping_timeout: d.duration("ping_timeout")?.unwrap_or(Duration::from_secs(60)),
            install: d.boolean("install")?.unwrap_or(true),
            source: d.parsed("source")?.unwrap_or(DockerSource::Auto),
            mirror: d.https_url("mirror")?.unwrap_or_else(|| DEFAULT_DOCKER_MIRROR.into()),
            registry_mirrors: d.url_array("registry_mirrors")?,
            remove_conflicts: d.boolean("remove_conflicts")?.unwrap_or(true),
            nvidia_toolkit_repository: d
                .repository_url("nvidia_toolkit_repository")?
                .unwrap_or_else(|| DEFAULT_NVIDIA_TOOLKIT_REPOSITORY.into()),
        };
        d.finish()?;

        let (workspace, download_exclude) = match root.take("workspace") {
            None => (None, Vec::new()),
            Some(v) => {
                let t = root.expect_table("[workspace]", v)?;
                let (w, exclude) = workspace_config(Section::new(path, "workspace", t))?;
                (Some(w), exclude)
            }
        };
        let workspace_path = workspace.as_ref().map(|w| w.path.clone());

        let image = match root.take("image") {
            None if !image_required => ImageConfig {
                reference: "jupyter-agent/notebook:local".into(),
                source: ImageSource::Pull(Pull { policy: PullPolicy::Never, credentials: None }),
            },
            None => {
                return Err(root.err("[image]", None, "missing; expected a section with one of name, archive or build"))
            }
            Some(v) => {
                let t = root.expect_table("image", v)?;
                image::image_config(Section::new(path, "image", t), workspace_path.as_deref())?
            }
        };

        let mut c = root.section("container")?;
        let container = ContainerConfig {
            name: c.parsed::<ContainerName>("name")?.map_or_else(|| "jupyter".into(), |n| n.0),
            command: c.str_array("command")?,
            user: c.string("user")?,
            env: c.string_map("env")?.unwrap_or_default(),
            env_file: c.abs_path("env_file")?.or_else(|| workspace.as_ref().and_then(|w| w.env_file.clone())),
            volumes: c.volumes("volumes", workspace_path.as_deref(), &state_dir)?,
            port: c.port("port", false)?.unwrap_or(8888),
            publish: c.parsed("publish")?.unwrap_or(Publish { address: IpAddr::from([0, 0, 0, 0]), port: 8888 }),
            restart: c.parsed("restart")?.unwrap_or(RestartPolicy::UnlessStopped),
            metadata_access: c.boolean("metadata_access")?.unwrap_or(false),
            gpus: gpus(&mut c)?,
        };
        c.finish()?;

        let mut j = root.section("jupyter")?;
        let jupyter = JupyterConfig {
            token: j.parsed("token")?.unwrap_or(TokenChoice::Generate),
            ready_timeout: j.at_least_a_second("ready_timeout")?.unwrap_or(Duration::from_secs(600)),
            url_host: j.parsed("url_host")?.unwrap_or(UrlHost::Auto),
            metadata_endpoint: j.http_url("metadata_endpoint")?.unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into()),
        };
        if matches!(jupyter.token, TokenChoice::Generate | TokenChoice::File(_)) {
            if let Some(key) = container.env.keys().find(|k| *k == "JUPYTER_TOKEN" || *k == "JUPYTER_TOKEN_FILE") {
                return Err(j.err(
                    "token",
                    None,
                    &format!("is the agent's to give (\"generate\" by default), but [container] env sets {key}; set [jupyter] token = \"image\" to let the server take {key}, or remove it"),
                ));
            }
        }
        if !container.metadata_access && jupyter.metadata_address().is_none() {
            return Err(j.err(
                "metadata_endpoint",
                Some(toml_str(&jupyter.metadata_endpoint)),
                "expected an IPv4 address as the host (the agent keeps the container from reaching it), unless [container] metadata_access = true",
            ));
        }
        j.finish()?;
        let tls = tls::tls_config(root.section("tls")?, &container.publish)?;
        let gpu = gpu::gpu_config(root.section("gpu")?)?;
        root.finish()?;

        let mut image = image;
        if let ImageSource::Build(build) = &mut image.source {
            // Access keys must not reach the engine with the context, nor a layer.
            build.withhold = container
                .env_file
                .iter()
                .chain(workspace.as_ref().and_then(|w| w.env_file.as_ref()))
                .cloned()
                .collect();
            build.withhold.dedup();
        }
        let config = Config {
            state_dir,
            log_dir,
            socket,
            result_file,
            docker,
            workspace,
            download_exclude,
            image,
            container,
            jupyter,
            tls,
            gpu,
        };
        // By name here; as the host resolves them in `check_paths`.
        paths::check_exposure(&config, path, paths::by_name)?;
        Ok(config)
    }

    /// Where Jupyter's port is published: on the host's loopback, a port
    /// Docker picks, when the agent's front takes the configured address
    /// (docs/front.md); as configured for `run --once`, which leaves no
    /// front behind (and refuses `[tls]`).
    pub fn jupyter_publish(&self, fronted: bool) -> Publish {
        match fronted {
            true => Publish { address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port: 0 },
            false => self.container.publish,
        }
    }

    /// The secrets this file names, for the run's redactor
    /// ([`crate::secrets`]): the values of `[container] env` and
    /// `[workspace.env]` (the access keys), a signed archive URL's query and
    /// a materials URL's query and credentials. The env file's values, the
    /// registry's password and the login token are added as they are read.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.container.env.values().cloned().collect();
        if let Some(w) = &self.workspace {
            out.extend(w.env.values().cloned());
            out.extend(crate::secrets::of_url(w.source.raw_url()));
        }
        if let ImageSource::Archive(Archive { location: ArchiveLocation::Url(url), .. }) = &self.image.source {
            out.extend(crate::secrets::of_url(url));
        }
        out
    }

    /// `<state_dir>/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
}

/// The `[workspace]` section and its `download_exclude` globs.
fn workspace_config(mut s: Section) -> Result<(WorkspaceConfig, Vec<String>), ConfigError> {
    use workspace::Source;
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
    let shown = redact_url(&url);
    let max_size = s.parsed::<values::ByteSize>("max_size")?.map_or(workspace::DEFAULT_MAX_SIZE, |b| b.0);
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
            Source::Tarball { url, sha256: sha.to_ascii_lowercase(), max_size }
        }
        (None, Some(_)) if is_archive(&url) => {
            return Err(s.err(
                "source",
                Some(toml_str(&shown)),
                "names a tarball, which takes sha256 (its sha256sum), not ref (a git branch, tag or commit)",
            ))
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
            Source::Git { url, reference, max_size }
        }
    };
    let download_exclude = workspace::download_exclude(&mut s)?;
    s.finish()?;
    Ok((WorkspaceConfig { source, path, env_file, env }, download_exclude))
}

/// Whether a URL names an archive by its ending (query and fragment aside).
fn is_archive(url: &str) -> bool {
    let path = jupyter_proto::redact::without_query(url).to_ascii_lowercase();
    [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip"].iter().any(|end| path.ends_with(end))
}
