//! Checks of a valid configuration against this host, before `run` or
//! `install` changes anything: paths the agent would replace or write
//! through must be its own to replace. Each refusal names the file, the key,
//! the value and what is expected, like any configuration error.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use super::section::toml_str;
use super::{Config, ConfigError};

/// The first line of an env file the agent writes: how it knows the file is
/// its own to rewrite.
pub const ENV_FILE_HEADER: &str = "# Written by jupyter-agent from [workspace.env]; edits here are replaced.";

impl Config {
    /// Refuses what would replace or expose something that is not the
    /// agent's: `file` names the configuration in messages.
    pub fn check_host(&self, file: &Path) -> Result<(), ConfigError> {
        let refuse = |key: &str, value: &Path, expected: &str| ConfigError {
            file: file.to_path_buf(),
            key: key.to_string(),
            value: Some(toml_str(&value.display().to_string())),
            expected: expected.to_string(),
        };
        if let Ok(meta) = std::fs::symlink_metadata(&self.socket) {
            if !meta.file_type().is_socket() {
                return Err(refuse(
                    "socket",
                    &self.socket,
                    "exists and is not a socket; expected a path for the agent's socket (what is there would be replaced)",
                ));
            }
        }
        for (key, dir) in [("state_dir", &self.state_dir), ("log_dir", &self.log_dir)] {
            if let Some(parent) = dir.parent().filter(|p| world_writable(p)) {
                return Err(refuse(
                    key,
                    dir,
                    &format!(
                        "is in {}, which every user may write to; expected a directory below one only root writes (e.g. /var/lib)",
                        parent.display()
                    ),
                ));
            }
        }
        if let Some(result) = &self.result_file {
            if result.is_dir() {
                return Err(refuse("result_file", result, "is a directory; expected the path of a file"));
            }
            if result.parent().is_some_and(|p| p.exists() && !p.is_dir()) {
                return Err(refuse("result_file", result, "is below something that is not a directory"));
            }
        }
        if let super::ImageSource::Pull(super::Pull { credentials: Some(path), .. }) = &self.image.source {
            if let Err(e) = super::credentials::read(path) {
                return Err(refuse("[image] credentials", path, &format!("{e:#}")));
            }
        }
        let env_files = [
            ("[workspace] env_file", self.workspace.as_ref().and_then(|w| w.env_file.as_ref())),
            ("[container] env_file", self.container.env_file.as_ref()),
        ];
        for (key, path) in env_files.into_iter().filter_map(|(k, p)| Some((k, p?))) {
            if let Some(problem) = env_file_problem(path) {
                return Err(refuse(key, path, &problem));
            }
        }
        if let Some(w) = &self.workspace {
            if let Some(env_file) = &w.env_file {
                let inside = env_file.starts_with(&w.path);
                let ours = starts_with_header(env_file);
                if env_file.exists() && !inside && !ours {
                    return Err(refuse(
                        "[workspace] env_file",
                        env_file,
                        "exists and was not written by jupyter-agent; expected a new file (it would be replaced)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The most an env file may hold: it is read whole when the container is made.
pub const MAX_ENV_FILE: u64 = 1 << 20;

/// Why the env file at `path` cannot be read as one, by what `fstat` says
/// of it (opened without blocking: a pipe would wait for a writer), before
/// a byte is read; `None` when it is missing or a small regular file.
fn env_file_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot be opened ({e}); expected an env file root can read")),
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return Some("is not a regular file (a device, a pipe or a directory); expected an env file".into());
    }
    (meta.len() > MAX_ENV_FILE)
        .then(|| format!("is {} bytes; an env file is read whole and may hold at most {MAX_ENV_FILE}", meta.len()))
}

/// Whether the file's first line is [`ENV_FILE_HEADER`], reading no more
/// than that line.
fn starts_with_header(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut head = Vec::new();
    // The header and its line end (`\n` or `\r\n`).
    let limit = ENV_FILE_HEADER.len() as u64 + 2;
    if file.take(limit).read_to_end(&mut head).is_err() {
        return false;
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line == ENV_FILE_HEADER.as_bytes()
}

/// Whether others may write to `dir` (`/tmp` is, sticky bit or not).
fn world_writable(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn config(dir: &Path, extra: &str) -> Config {
        let d = dir.display();
        let text = format!(
            "state_dir = \"{d}/state\"\nlog_dir = \"{d}/log\"\nsocket = \"{d}/agent.sock\"\n{extra}\n[image]\nname = \"nb\"\n"
        );
        Config::parse(Path::new("c.toml"), &text).unwrap()
    }

    #[test]
    fn paths_that_are_not_the_agents_are_refused_and_its_own_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(config(d, "").check_host(Path::new("c.toml")), Ok(()));

        std::fs::write(d.join("agent.sock"), "precious").unwrap();
        let err = config(d, "").check_host(Path::new("c.toml")).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("c.toml: socket = \"{}/agent.sock\": exists and is not a socket; expected a path for the agent's socket (what is there would be replaced)", d.display())
        );
        std::fs::remove_file(d.join("agent.sock")).unwrap();
        drop(UnixListener::bind(d.join("agent.sock")).unwrap());
        assert_eq!(config(d, "").check_host(Path::new("c.toml")), Ok(()), "a stale socket is the agent's to replace");

        std::fs::create_dir(d.join("result")).unwrap();
        let err = config(d, &format!("result_file = \"{}/result\"", d.display())).check_host(Path::new("c.toml"));
        assert!(err.unwrap_err().to_string().ends_with("/result\": is a directory; expected the path of a file"));
        std::fs::write(d.join("file"), "x").unwrap();
        let err = config(d, &format!("result_file = \"{}/file/result\"", d.display())).check_host(Path::new("c.toml"));
        assert!(err.unwrap_err().to_string().ends_with(": is below something that is not a directory"));

        let shared = d.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let text = format!("state_dir = \"{}/state\"\n[image]\nname = \"nb\"\n", shared.display());
        let err = Config::parse(Path::new("c.toml"), &text).unwrap().check_host(Path::new("c.toml")).unwrap_err();
        assert!(
            err.to_string().contains(&format!("is in {}, which every user may write to", shared.display())),
            "{err}"
        );

        let foreign = d.join("passwd");
        std::fs::write(&foreign, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let env = |f: &Path| {
            format!(
                "[workspace]\nsource = \"/srv/repo\"\nref = \"main\"\npath = \"{}/w\"\nenv_file = \"{}\"\n[workspace.env]\nA = \"1\"\n",
                d.display(),
                f.display()
            )
        };
        let err = config(d, &env(&foreign)).check_host(Path::new("c.toml")).unwrap_err().to_string();
        assert!(
            err.ends_with("exists and was not written by jupyter-agent; expected a new file (it would be replaced)"),
            "{err}"
        );
        std::fs::write(&foreign, format!("{ENV_FILE_HEADER}\nA=1\n")).unwrap();
        assert_eq!(config(d, &env(&foreign)).check_host(Path::new("c.toml")), Ok(()), "its own file");
    }

    /// An env file is read whole when the container is made: a device, a
    /// pipe or a huge file is refused by what `fstat` says, before a byte
    /// is read. Before, `check_host` read the workspace's env file whole
    /// (`/dev/zero`: until memory ran out).
    #[test]
    fn env_files_that_are_not_small_regular_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let huge = d.join("huge.env");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(8 << 30).unwrap();
        drop(file);
        let fifo = d.join("fifo.env");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let workspace = |f: &str| {
            format!(
                "[workspace]\nsource = \"/srv/repo\"\nref = \"main\"\npath = \"{}/w\"\nenv_file = \"{f}\"\n[workspace.env]\nA = \"1\"\n",
                d.display()
            )
        };
        let container = |f: &str| format!("[container]\nenv_file = \"{f}\"\n");
        let not_regular = "is not a regular file (a device, a pipe or a directory); expected an env file";
        let too_large = "is 8589934592 bytes; an env file is read whole and may hold at most 1048576";
        let started = std::time::Instant::now();
        for (extra, key, value, expected) in [
            (workspace("/dev/zero"), "[workspace] env_file", "/dev/zero".to_string(), not_regular),
            (container("/dev/zero"), "[container] env_file", "/dev/zero".to_string(), not_regular),
            (workspace(&fifo.display().to_string()), "[workspace] env_file", fifo.display().to_string(), not_regular),
            (workspace(&huge.display().to_string()), "[workspace] env_file", huge.display().to_string(), too_large),
            (container(&huge.display().to_string()), "[container] env_file", huge.display().to_string(), too_large),
        ] {
            let err = config(d, &extra).check_host(Path::new("c.toml")).unwrap_err().to_string();
            assert_eq!(err, format!("c.toml: {key} = \"{value}\": {expected}"), "{extra}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "read, not looked at");
    }
}
