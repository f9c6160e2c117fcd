//! Reading the TOML file key by key: a [`Section`] hands out each key's
//! value as the type it must have, and reports anything else with the file,
//! the key, the value found and what was expected. Keys are removed as they
//! are read, so that whatever is left at [`Section::finish`] is unknown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jupyter_proto::duration::{Refused, MAX_SHOWN};

use super::values::Volume;
use super::ConfigError;

/// A TOML string literal, for messages.
/// A string value, quoted and escaped on one line, for messages.
pub fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// How much of a refused value a message echoes: a 10 MB value must not
/// make a 10 MB message.
pub const MAX_SHOWN_VALUE: usize = 200;

/// A variable name as a shell and Docker's env files take it.
pub fn is_variable_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One table of the file being validated; keys are removed as they are read,
/// so that whatever is left at `finish` is unknown.
pub struct Section<'a> {
    pub file: &'a Path,
    /// Dotted name (`image.build`), empty for the top level.
    name: &'static str,
    table: toml::Table,
    /// Keys already read, to list in the "unknown key" message.
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    pub fn new(file: &'a Path, name: &'static str, table: toml::Table) -> Self {
        Section { file, name, table, known: Vec::new() }
    }

    pub fn key_label(&self, key: &str) -> String {
        if key.starts_with('[') || self.name.is_empty() {
            key.to_string()
        } else {
            format!("[{}] {key}", self.name)
        }
    }

    pub fn err(&self, key: &str, value: Option<String>, expected: &str) -> ConfigError {
        let value = value.map(|v| jupyter_proto::redact::bound(&v, MAX_SHOWN_VALUE));
        let key = jupyter_proto::redact::bound(&self.key_label(key), MAX_SHOWN_VALUE);
        ConfigError { file: self.file.to_path_buf(), key, value, expected: expected.to_string() }
    }

    pub fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    pub fn expect_table(&self, key: &str, v: toml::Value) -> Result<toml::Table, ConfigError> {
        match v {
            toml::Value::Table(t) => Ok(t),
            // Not echoed: an array of tables ([[container]]) would show its env values.
            _ => Err(self.err(key, None, "expected a table (a [section]), not a value or an array of tables")),
        }
    }

    /// A child section that may be absent; its keys are checked by its own `finish`.
    pub fn section(&mut self, key: &'static str) -> Result<Section<'a>, ConfigError> {
        self.known.push(key);
        let table = match self.table.remove(key) {
            None => toml::Table::new(),
            Some(v) => self.expect_table(&format!("[{key}]"), v)?,
        };
        Ok(Section::new(self.file, key, table))
    }

    pub fn finish(self) -> Result<(), ConfigError> {
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

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, Some(v.to_string()), "expected a string")),
        }
    }

    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(key, Some(v.to_string()), "expected true or false")),
        }
    }

    /// An http:// or https:// URL without spaces.
    pub fn https_url(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        if !is_web_url(&s) {
            return Err(self.err(key, Some(toml_str(&s)), "expected an https:// (or http://) URL"));
        }
        Ok(Some(s.trim_end_matches('/').to_string()))
    }

    /// A package repository: an http:// or https:// URL, or a `file:///`
    /// directory (a mirror on this host's disk), without spaces.
    pub fn repository_url(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let local = s.strip_prefix("file:///").is_some_and(|rest| !rest.is_empty() && !s.contains(char::is_whitespace));
        if !is_web_url(&s) && !local {
            return Err(self.err(
                key,
                Some(toml_str(&s)),
                "expected an https:// (or http://) URL, or file:///DIR, of a repository in NVIDIA's layout",
            ));
        }
        let authority = s.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
        if authority.contains('@') {
            // Not shown: the part before @ is a password.
            return Err(self.err(
                key,
                None,
                "a URL with credentials (user:password@) would show them in the plan, the state, the logs and the \
                 commands' arguments; give the mirror's URL without them (apt reads credentials from /etc/apt/auth.conf.d/)",
            ));
        }
        Ok(Some(s.trim_end_matches('/').to_string()))
    }

    pub fn url_array(&mut self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(items) = self.str_array(key)? else { return Ok(Vec::new()) };
        if let Some(bad) = items.iter().find(|s| !is_web_url(s)) {
            return Err(self.err(key, Some(toml_str(bad)), "expected https:// (or http://) URLs of registry mirrors"));
        }
        Ok(items)
    }

    pub fn abs_path(&mut self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
            Some(s) => Err(self.err(key, Some(toml_str(&s)), "expected an absolute path (starting with /)")),
        }
    }

    /// A duration string (`"90s"`, `"10m"`), bounded by `jupyter_proto::duration::MAX`.
    pub fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        const EXPECTED: &str = "expected a duration such as \"90s\", \"10m\" or \"1h\"";
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => match jupyter_proto::duration::check(&s) {
                Ok(d) => Ok(Some(d)),
                Err(Refused::TooLong) => {
                    Err(self.err(key, Some(toml_str(&s)), &format!("expected at most {MAX_SHOWN}")))
                }
                Err(_) => Err(self.err(key, Some(toml_str(&s)), EXPECTED)),
            },
            Some(v) => Err(self.err(key, Some(v.to_string()), EXPECTED)),
        }
    }

    /// A duration of at least one second (anything shorter cannot cover
    /// even a server's start).
    pub fn at_least_a_second(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        let shown = self.table.get(key).map(|v| v.to_string());
        match self.duration(key)? {
            Some(d) if d < Duration::from_secs(1) => Err(self.err(key, shown, "expected at least 1s")),
            other => Ok(other),
        }
    }

    /// A duration of at least `min`; `expected` says why when shorter.
    pub fn duration_at_least(
        &mut self,
        key: &'static str,
        min: Duration,
        expected: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        let shown = self.table.get(key).map(|v| v.to_string());
        match self.duration(key)? {
            Some(d) if d < min => Err(self.err(key, shown, expected)),
            other => Ok(other),
        }
    }

    pub fn str_array(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let example = match key {
            "volumes" => "[\"/srv/data:/data\"]",
            "registry_mirrors" => "[\"https://registry-mirror.example\"]",
            _ => "[\"jupyter\", \"notebook\"]",
        };
        let expected = format!("expected a non-empty array of strings, e.g. {example}");
        let expected = expected.as_str();
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    match item {
                        toml::Value::String(s) => out.push(s.clone()),
                        _ => return Err(self.err(key, Some(toml::Value::Array(items.clone()).to_string()), expected)),
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.err(key, Some(v.to_string()), expected)),
        }
    }

    /// A table of strings; values are secrets, so messages never show them.
    pub fn string_map(&mut self, key: &'static str) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => {
                let mut out = BTreeMap::new();
                for (k, v) in t {
                    if !is_variable_name(&k) {
                        return Err(self.err(
                            &format!("{key}.{k:?}"),
                            None,
                            "expected a variable name: letters, digits and '_', not starting with a digit",
                        ));
                    }
                    match v {
                        toml::Value::String(s) if s.contains('\0') => {
                            return Err(self.err(
                                &format!("{key}.{k}"),
                                None,
                                "expected a value without NUL characters (the value is not shown: it may be a secret)",
                            ))
                        }
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

    pub fn integer(&mut self, key: &'static str, expected: &str) -> Result<Option<i64>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(i)),
            Some(v) => Err(self.err(key, Some(v.to_string()), expected)),
        }
    }

    pub fn port(&mut self, key: &'static str, zero_ok: bool) -> Result<Option<u16>, ConfigError> {
        let expected =
            if zero_ok { "expected an integer from 0 to 65535" } else { "expected an integer from 1 to 65535" };
        let min = if zero_ok { 0 } else { 1 };
        match self.integer(key, expected)? {
            None => Ok(None),
            Some(i) if (min..=65535).contains(&i) => Ok(Some(i as u16)),
            Some(i) => Err(self.err(key, Some(i.to_string()), expected)),
        }
    }

    /// A string read into a typed value (`FromStr`); a value it refuses is
    /// reported with what it expected.
    pub fn parsed<T: FromStr<Err = String>>(&mut self, key: &'static str) -> Result<Option<T>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        s.parse().map(Some).map_err(|expected: String| self.err(key, Some(toml_str(&s)), &expected))
    }

    /// Bind mounts; `/`, the agent's own state directory, a directory above
    /// it and one inside it are refused, compared by name once `.` and `..`
    /// are taken out: a container would own the host, read the agent's keys
    /// and token, or forge its state. The other secrets, and the paths as
    /// links resolve, are checked once the whole file is read
    /// (`config::paths`).
    pub fn volumes(
        &mut self,
        key: &'static str,
        workspace: Option<&Path>,
        state_dir: &Path,
    ) -> Result<Vec<Volume>, ConfigError> {
        let Some(items) = self.str_array(key)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in items {
            let volume = item.parse::<Volume>().and_then(|v| v.resolve(workspace));
            let volume = volume.map_err(|expected| self.err(key, Some(toml_str(&item)), &expected))?;
            let (host, state) = (normalize(&volume.host), normalize(state_dir));
            if host == Path::new("/") || state.starts_with(&host) || host.starts_with(&state) {
                return Err(self.err(
                    key,
                    Some(toml_str(&item)),
                    &format!(
                        "expected a host path that is neither /, nor holds or is inside the agent's state ({}): a container must not own the host",
                        jupyter_proto::redact::bound(&state_dir.display().to_string(), MAX_SHOWN_VALUE)
                    ),
                ));
            }
            out.push(volume);
        }
        Ok(out)
    }

    pub fn http_url(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(s) = self.string(key)? else { return Ok(None) };
        let host = s.strip_prefix("http://").unwrap_or_default();
        if !s.starts_with("http://") || host.is_empty() || host.starts_with('/') || s.contains(char::is_whitespace) {
            return Err(self.err(key, Some(toml_str(&s)), "expected an http:// URL with a host and no spaces"));
        }
        Ok(Some(s.trim_end_matches('/').to_string()))
    }
}

/// An http(s) URL with a host (`http:///` has none) and no white space.
pub(super) fn is_web_url(s: &str) -> bool {
    ["https://", "http://"]
        .iter()
        .any(|p| s.strip_prefix(p).is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')))
        && !s.contains(char::is_whitespace)
}

/// `path` with `.` and `..` taken out by name (`/a/b/../c` is `/a/c`; `..`
/// at the root stays there).
pub fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}
