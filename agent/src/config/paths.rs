//! Paths compared as the kernel resolves them, not by name
//! (docs/threat-model.md#whoever-writes-the-template-or-the-configuration):
//! `..` and symbolic links must not carry the agent's secrets into a
//! container or a build context, the state directory and every directory
//! above it must be root's alone, and a secret file is opened first and
//! checked through the opened descriptor, so that nothing can be swapped in
//! between the check and the read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

pub use super::section::normalize;
use super::section::toml_str;
use super::{Config, ConfigError, ImageSource, Pull, TokenChoice};

/// The one view the configuration gives before the host is looked at.
pub(super) fn by_name(path: &Path) -> Vec<PathBuf> {
    vec![normalize(path)]
}

/// `path` as the kernel resolves it: component by component, each link
/// followed (and `..` taken after it), a dangling link's target taken as
/// the path (a mount or a `mkdir` would make it), the part that does not
/// exist yet appended by name.
pub fn resolve(path: &Path) -> PathBuf {
    resolve_within(path, 40)
}

/// [`resolve`], following at most `links` more links (the kernel's
/// limit is 40).
fn resolve_within(path: &Path, links: u32) -> PathBuf {
    let mut out = PathBuf::from("/");
    let mut exists = true;
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir if !exists => {
                out.pop();
                continue;
            }
            Component::ParentDir | Component::Normal(_) => {}
        }
        let next = out.join(c.as_os_str());
        if !exists {
            out = next;
            continue;
        }
        match std::fs::canonicalize(&next) {
            Ok(real) => out = real,
            Err(_) => {
                exists = false;
                match (c, std::fs::read_link(&next)) {
                    (Component::ParentDir, _) => {
                        out.pop();
                    }
                    (_, Ok(target)) if links > 0 => out = resolve_within(&out.join(target), links - 1),
                    _ => out = next,
                }
            }
        }
    }
    out
}

/// Every way `path` may be taken: by name, as the kernel resolves it, and
/// as it resolves once cleaned by name (as the engine cleans a mount's
/// source). A check holds only if it holds for each.
pub fn views(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![normalize(path), resolve(path), resolve(&normalize(path))];
    out.sort();
    out.dedup();
    out
}

/// How `host` meets `secret`: `Some("is")`, `Some("holds")` or
/// `Some("is inside")`; `None` when neither contains the other.
fn relation(host: &Path, secret: &Path) -> Option<&'static str> {
    if host == secret {
        Some("is")
    } else if secret.starts_with(host) {
        Some("holds")
    } else if host.starts_with(secret) {
        Some("is inside")
    } else {
        None
    }
}

/// The secrets a container or a build context must not reach, named as a
/// message names them. `for_volumes` adds the env files outside the
/// workspace (a build never receives env files: they are withheld).
fn secrets(cfg: &Config, file: &Path, for_volumes: bool) -> Vec<(PathBuf, String)> {
    let mut out = vec![(cfg.state_dir.clone(), "the agent's state directory".to_string())];
    if file.is_absolute() {
        out.push((file.to_path_buf(), "the configuration file".into()));
    }
    if let ImageSource::Pull(Pull { credentials: Some(c), .. }) = &cfg.image.source {
        out.push((c.clone(), "the registry credentials".into()));
    }
    if let TokenChoice::File(t) = &cfg.jupyter.token {
        out.push((t.clone(), "the token file".into()));
    }
    if for_volumes {
        let workspace = cfg.workspace.as_ref().map(|w| normalize(&w.path));
        let env_files = cfg.container.env_file.iter().chain(cfg.workspace.as_ref().and_then(|w| w.env_file.as_ref()));
        for e in env_files {
            if !workspace.as_ref().is_some_and(|w| normalize(e).starts_with(w)) {
                out.push((e.clone(), "the env file".into()));
            }
        }
    }
    out
}

const VOLUME_EXPECTED: &str = "expected a host path that exposes none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file, an env file outside the workspace)";
const CONTEXT_EXPECTED: &str = "expected a directory that holds none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file)";

/// Refuses a volume or a build context that holds, is, or is inside one of
/// the agent's secrets, both compared through `see` (by name when the file
/// is read, `by_name`; every way the host may resolve them before
/// anything changes, [`views`]).
pub(super) fn check_exposure(cfg: &Config, file: &Path, see: fn(&Path) -> Vec<PathBuf>) -> Result<(), ConfigError> {
    // A configuration named by a relative path (`--config c.toml`) is a
    // secret all the same.
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let refuse = |key: &str, value: String, secret: &Path, what: &str, how: &str, seen: &Path, given: &Path| {
        let resolved =
            if seen != normalize(given) { format!(" (resolved: {})", seen.display()) } else { String::new() };
        let expected = if key.ends_with("volumes") { VOLUME_EXPECTED } else { CONTEXT_EXPECTED };
        ConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            value: Some(jupyter_proto::redact::bound(&toml_str(&value), super::section::MAX_SHOWN_VALUE)),
            expected: format!("{how} {what} {}{resolved}; {expected}", secret.display()),
        }
    };
    // The first pair of views in which the host path meets a secret.
    let meet = |host: &Path, secrets: &[(PathBuf, String)]| {
        for seen in see(host) {
            for (secret, what) in secrets {
                for s in see(secret) {
                    if let Some(how) = relation(&seen, &s) {
                        return Some((seen, secret.clone(), what.clone(), how));
                    }
                }
            }
        }
        None
    };
    let volume_secrets = secrets(cfg, &absolute, true);
    for v in &cfg.container.volumes {
        if let Some((seen, secret, what, how)) = meet(&v.host, &volume_secrets) {
            return Err(refuse("[container] volumes", v.bind(), &secret, &what, how, &seen, &v.host));
        }
    }
    if let ImageSource::Build(b) = &cfg.image.source {
        if let Some((seen, secret, what, how)) = meet(&b.context, &secrets(cfg, &absolute, false)) {
            let value = b.context.display().to_string();
            return Err(refuse("[image.build] context", value, &secret, &what, how, &seen, &b.context));
        }
    }
    Ok(())
}

/// The uid the agent's own files belong to: root, or the user running it
/// (the tests' case when not root).
fn ours(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// `uid 65534 (nobody)`, or `uid 54321` when no account has it.
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Why `dir` may not hold the agent's secrets, if it may not: it, or a
/// directory above it (by name and as links resolve), belongs to someone
/// else or may be written by others. A directory above that everyone may
/// write to is allowed only with the sticky bit and a next directory of
/// root's (as `/tmp/x` made by root: nobody else can rename or remove it).
/// Parts that do not exist yet are the agent's to make.
pub fn dir_refusal(dir: &Path) -> Option<String> {
    if let Ok(meta) = std::fs::metadata(dir) {
        if !meta.is_dir() {
            return Some("is not a directory".into());
        }
        if !ours(meta.uid()) {
            return Some(format!("belongs to {}; expected a directory of root's", describe_uid(meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!(
                "may be written by users other than root (mode {:o}); expected a directory only root may write to",
                meta.mode() & 0o7777
            ));
        }
    }
    // Every directory above, by name (each link followed to its target)
    // and as the existing part resolves.
    for chain in views(dir) {
        let ancestors: Vec<&Path> = chain.ancestors().skip(1).collect();
        for (i, above) in ancestors.iter().enumerate() {
            let Ok(meta) = std::fs::metadata(above) else { continue };
            if !ours(meta.uid()) {
                return Some(format!(
                    "is below {}, which belongs to {}; expected a directory whose every parent is root's",
                    above.display(),
                    describe_uid(meta.uid())
                ));
            }
            if meta.mode() & 0o022 == 0 {
                continue;
            }
            // The next directory down, the one that others must not replace.
            let below = if i == 0 { chain.as_path() } else { ancestors[i - 1] };
            let sticky_and_ours = meta.mode() & 0o1000 != 0
                && std::fs::symlink_metadata(below).is_ok_and(|m| m.is_dir() && ours(m.uid()));
            if !sticky_and_ours {
                return Some(format!(
                    "is below {}, which users other than root may write to (mode {:o}); expected a directory whose every parent only root may write to",
                    above.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
    }
    None
}

/// What a secret file must be besides a regular file of root's that is no
/// symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Private {
    /// Readable by root alone (mode `0600` or stricter).
    RootOnly,
    /// Written by root alone; others may read it (an organiser's env file).
    RootWritten,
}

/// Why a secret file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileRefused {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is a symbolic link; expected the file itself")]
    Link,
    #[error("is not a regular file")]
    NotFile,
    #[error("belongs to {0}")]
    Owner(String),
    #[error("may be written by users other than root (mode {0:o})")]
    Writable(u32),
    #[error("is readable by users other than root (mode {0:o})")]
    Readable(u32),
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
}

/// The most a secret file may hold: credentials, a token, an env file.
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// Opens `path` without following a final symbolic link (nor blocking on a
/// FIFO), then checks the opened file itself (fstat): a regular file of
/// root's, private as `private` says, at most [`MAX_SECRET_FILE`] bytes;
/// returns its text.
pub fn read_private(path: &Path, private: Private) -> Result<String, FileRefused> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc_flags()).open(path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            FileRefused::Link
        } else {
            e.into()
        }
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileRefused::NotFile);
    }
    if !ours(meta.uid()) {
        return Err(FileRefused::Owner(describe_uid(meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileRefused::Writable(mode));
    }
    if private == Private::RootOnly && mode & 0o077 != 0 {
        return Err(FileRefused::Readable(mode));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(FileRefused::TooLarge(MAX_SECRET_FILE));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(FileRefused::TooLarge(MAX_SECRET_FILE));
    }
    Ok(text)
}

fn libc_flags() -> i32 {
    nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC
}

/// Opens the directory `dir` (a link to one is followed: [`dir_refusal`]
/// checks the chain it resolves to) for a check and a change of mode
/// through its descriptor.
pub fn open_dir(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC).open(dir)
}

impl Config {
    /// What only this host can tell about the configuration's paths, before
    /// anything changes: the state directory and every directory above it
    /// must be root's alone, and no volume or build context may reach a
    /// secret once links are resolved. `file` names the configuration.
    pub fn check_paths(&self, file: &Path) -> Result<(), ConfigError> {
        if let Some(why) = dir_refusal(&self.state_dir) {
            return Err(ConfigError {
                file: file.to_path_buf(),
                key: "state_dir".into(),
                value: Some(toml_str(&self.state_dir.display().to_string())),
                expected: format!("{why}, e.g. {}", super::DEFAULT_STATE_DIR),
            });
        }
        check_exposure(self, file, views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_links_resolved() {
        assert_eq!(
            normalize(Path::new("/var/lib/jupyter-agent/../jupyter-agent")),
            Path::new("/var/lib/jupyter-agent")
        );
        assert_eq!(normalize(Path::new("/../../a/./b/")), Path::new("/a/b"));
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::os::unix::fs::symlink(real.join("d"), real.join("l")).unwrap();
        assert_eq!(resolve(&real.join("l/not/yet")), real.join("d/not/yet"));
        assert_eq!(resolve(&real.join("l/../x")), real.join("x"), "by name first, as the file says");
        std::os::unix::fs::symlink(real.join("later"), real.join("dangling")).unwrap();
        assert_eq!(resolve(&real.join("dangling/x")), real.join("later/x"), "a dangling link leads to its target");
        std::os::unix::fs::symlink(real.join("loop"), real.join("loop")).unwrap();
        assert_eq!(resolve(&real.join("loop")), real.join("loop"), "a loop ends");
        assert_eq!(relation(Path::new("/a"), Path::new("/a/b")), Some("holds"));
        assert_eq!(relation(Path::new("/a/b"), Path::new("/a")), Some("is inside"));
        assert_eq!(relation(Path::new("/a/bc"), Path::new("/a/b")), None);
    }
}
