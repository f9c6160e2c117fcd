//! The config target: the TOML file (see the parent module).

use super::*;

const CONFIG_FILE: &str = "/etc/jupyter-agent/config.toml";

/// Marks the values the configuration treats as secrets (`env`, `args`).
const SECRET: &str = "SECRET-";

/// The tables `Config::parse` reads (`""` is the top level), the lines a
/// table needs before all its keys are read, and its keys as this file was
/// written. The keys fed are those the code itself names when it meets an
/// unknown key ([`code_keys`]), so that a key added to the code is fed too
/// (with string, flag or number values until [`value_for`] knows it).
const TABLES: &[(&str, &str, &[&str])] = &[
    ("", "", &["state_dir", "log_dir", "socket", "result_file"]),
    (
        "docker",
        "",
        &[
            "host",
            "ping_timeout",
            "install",
            "source",
            "mirror",
            "registry_mirrors",
            "remove_conflicts",
            "nvidia_toolkit_repository",
        ],
    ),
    (
        "workspace",
        "source = \"/srv/repo\"\nref = \"main\"\npath = \"/srv/w\"\n",
        &["source", "sha256", "ref", "path", "env_file", "env", "max_size"],
    ),
    ("image", "name = \"nb\"\n", &["name", "pull", "archive", "tag", "build"]),
    ("image.build", "context = \"/c\"\n", &["context", "dockerfile", "args"]),
    (
        "container",
        "",
        &["name", "command", "user", "env", "env_file", "volumes", "port", "publish", "restart", "metadata_access"],
    ),
    ("jupyter", "", &["token", "ready_timeout", "url_host", "metadata_endpoint"]),
];

/// The keys of `table` as the code lists them in its "unknown key; expected
/// one of: ..." message, tables left out; `None` if it does not say.
fn code_keys(table: &str) -> Option<Vec<String>> {
    let (_, needs, _) = TABLES.iter().find(|(t, _, _)| *t == table).expect("a table of TABLES");
    let probe = match table {
        "" => "zz_probe = 1\n[image]\nname = \"nb\"\n".to_string(),
        "image" => format!("[image]\n{needs}zz_probe = 1\n"),
        "image.build" => format!("[image]\ntag = \"nb:1\"\n[image.build]\n{needs}zz_probe = 1\n"),
        t => format!("[{t}]\n{needs}zz_probe = 1\n[image]\nname = \"nb\"\n"),
    };
    let e = Config::parse(Path::new(CONFIG_FILE), &probe).err()?;
    let list = e.expected.strip_prefix("unknown key; expected one of: ")?;
    let tables = ["docker", "workspace", "image", "container", "jupyter"];
    Some(list.split(", ").filter(|k| !tables.contains(k)).map(str::to_string).collect())
}

/// The keys fed in `table`: the code's, else this file's.
fn table_keys(table: &str) -> Vec<String> {
    code_keys(table).unwrap_or_else(|| {
        let (_, _, ours) = TABLES.iter().find(|(t, _, _)| *t == table).expect("a table of TABLES");
        ours.iter().map(|k| k.to_string()).collect()
    })
}

/// The keys fed come from the code: if its message changes, the fuzzer
/// would quietly fall back to the list above.
#[test]
fn config_keys_come_from_the_code() {
    for (table, _, ours) in TABLES {
        let keys = code_keys(table).unwrap_or_else(|| panic!("[{table}]: no list of keys in the unknown-key message"));
        assert!(!keys.is_empty() && keys.iter().any(|k| ours.contains(&k.as_str())), "[{table}]: {keys:?}");
    }
}

mod documents;
mod values;

use documents::*;
use values::*;

/// What an accepted configuration must be, and what a refusal must say.
fn check_config(text: &str) -> Result<bool, TestCaseError> {
    let file = Path::new(CONFIG_FILE);
    let config = match Config::parse(file, text) {
        Ok(config) => config,
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with(CONFIG_FILE), "{}", message);
            prop_assert_eq!(&e.file, file);
            // The key and the value a message echoes are cut at 200 characters.
            prop_assert!(e.key.chars().count() <= 200, "key of {} characters", e.key.chars().count());
            if let Some(v) = &e.value {
                prop_assert!(v.chars().count() <= 200, "value of {} characters", v.chars().count());
            }
            // No secret, and a bounded message, whatever the refusal (the
            // findings of docs/fuzzing.md, fixed).
            prop_assert!(!message.contains(SECRET), "a secret in {:?}", message);
            prop_assert!(message.len() < 2_000, "a message of {} bytes: {:.300}", message.len(), message);
            return Ok(false);
        }
    };
    for (key, path) in [("state_dir", &config.state_dir), ("log_dir", &config.log_dir), ("socket", &config.socket)] {
        prop_assert!(path.is_absolute(), "{} = {:?}", key, path);
    }
    prop_assert!(config.socket.as_os_str().len() <= crate::config::MAX_SOCKET_PATH, "{:?}", config.socket);
    prop_assert!(config.result_file.as_ref().is_none_or(|p| p.is_absolute()));
    let d = &config.docker;
    let max = jupyter_proto::duration::MAX;
    prop_assert!(!d.ping_timeout.is_zero() && d.ping_timeout <= max, "{:?}", d.ping_timeout);
    prop_assert!(d.mirror.starts_with("https://") || d.mirror.starts_with("http://"), "{:?}", d.mirror);
    prop_assert!(d.registry_mirrors.iter().all(|m| !m.contains(char::is_whitespace)));
    let j = &config.jupyter;
    prop_assert!(j.ready_timeout >= Duration::from_secs(1) && j.ready_timeout <= max, "{:?}", j.ready_timeout);
    prop_assert!(j.metadata_endpoint.starts_with("http://") && !j.metadata_endpoint.contains(char::is_whitespace));
    let i = &config.image;
    prop_assert!(!i.reference.is_empty() && crate::config::with_tag(&i.reference) == i.reference, "{:?}", i.reference);
    match &i.source {
        ImageSource::Pull(_) => {}
        ImageSource::Archive(a) => match &a.location {
            crate::config::ArchiveLocation::Path(p) => prop_assert!(p.is_absolute()),
            crate::config::ArchiveLocation::Url(u) => {
                prop_assert!(u.starts_with("http://") || u.starts_with("https://"));
                prop_assert!(a.sha256.is_some(), "a URL archive always has its sha256");
            }
        },
        ImageSource::Build(b) => {
            prop_assert!(b.context.is_absolute());
            prop_assert!(!b.dockerfile.is_empty() && !b.dockerfile.starts_with('/'));
            prop_assert!(!b.dockerfile.split('/').any(|p| p == ".."));
        }
    }
    let c = &config.container;
    prop_assert!(c.port >= 1);
    prop_assert!(c.env.iter().all(|(k, v)| is_variable_name(k) && !v.contains('\0')), "{:?}", c.env);
    for v in &c.volumes {
        prop_assert!(v.host != Path::new("/") && !config.state_dir.starts_with(&v.host), "{:?}", v);
        prop_assert!(v.host.is_absolute() && v.container.starts_with('/'), "{:?}", v);
    }
    if let Some(w) = &config.workspace {
        prop_assert!(w.path.is_absolute() && !w.path.components().any(|c| c == Component::ParentDir), "{:?}", w.path);
        prop_assert!(w.env.iter().all(|(k, v)| is_variable_name(k) && !v.contains(['\n', '\r', '\0'])));
        prop_assert!(w.env.is_empty() || w.env_file.is_some());
        if let crate::workspace::fetch::Source::Tarball { sha256, .. } = &w.source {
            prop_assert!(
                sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }
    Ok(true)
}

fn is_variable_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn config_parse_on_arbitrary_text() {
    fuzz("config/parse arbitrary", arbitrary_text(), |text| check_config(&text));
}

#[test]
fn config_parse_on_documents_of_the_real_keys() {
    fuzz("config/parse documents", document(), |doc| check_config(&doc.text()));
}

/// The strategies above reach past the TOML syntax: a hand-written check
/// that the well-formed documents they build are accepted.
#[test]
fn config_documents_can_be_valid() {
    let table = |name: &str, style, lines: &[&str], subs| Table {
        name: name.into(),
        style,
        lines: lines.iter().map(|l| l.to_string()).collect(),
        subs,
    };
    let env = table("env", Style::Header, &["TOKEN = \"SECRET-1\""], vec![]);
    let doc = Document {
        root: vec![format!("state_dir = {}", toml_string("/srv/state"))],
        tables: vec![
            table(
                "workspace",
                Style::Header,
                &["source = \"/srv/repo\"", "ref = \"main\"", "path = \"/srv/w\"", "env_file = \"env\""],
                vec![env],
            ),
            table(
                "image",
                Style::Header,
                &["tag = \"nb:1\""],
                vec![table("build", Style::Inline, &["context = \"workspace\""], vec![])],
            ),
            table("container", Style::Dotted, &["port = 8888"], vec![]),
        ],
        damage: None,
    };
    let text = doc.text();
    assert!(check_config(&text).unwrap(), "{text}: {:?}", Config::parse(Path::new(CONFIG_FILE), &text).err());
}
