//! Property-based fuzzing of the agent's pure parsers (docs/fuzzing.md):
//!
//! | target | what is fed |
//! |---|---|
//! | `token` | [`parse_line`], [`strip_ansi`], [`base_url`], [`parse_server_list`] and [`LineAssembler`] (`src/token.rs`): arbitrary text, and Jupyter log lines and `server list --json` lines built to be almost right |
//! | `config` | [`Config::parse`] (`src/config`: TOML text to a validated configuration; it reads and writes no file): arbitrary text, and documents built from the real tables and keys with values of every TOML type |
//!
//! Each property must hold, and nothing may panic, on every input. `cargo
//! test` runs proptest's default number of cases per property (256, or
//! `PROPTEST_CASES`); `scripts/fuzz` runs a million in an optimised build and
//! prints, per property, the inputs run and how many the parser accepted.
//! [`Config::check_host`] is not fed: it reads the host's file system.

use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;

use crate::config::{Config, ImageSource};
use crate::token::{base_url, parse_line, parse_server_list, strip_ansi, Finding, LineAssembler, ListedServer};

// ---------------------------------------------------------------------------
// The harness

/// Runs `property` on proptest's configured number of inputs from
/// `strategy`, counting each one run; `property` says whether the parser
/// accepted its input. A failure or a panic fails the test with proptest's
/// minimal failing input; success prints the counts (seen with `--nocapture`).
fn fuzz<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value) -> Result<bool, TestCaseError>) {
    // No regression files are written beside the sources: a failure is
    // reported with its minimal input instead.
    let settings = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    let cases = u64::from(settings.cases);
    let mut runner = TestRunner::new(settings);
    let (ran, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let result = runner.run(&strategy, |input| {
        ran.fetch_add(1, Ordering::Relaxed);
        if property(input)? {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    let ran = ran.into_inner();
    if let Err(e) = result {
        panic!("fuzz {name}: {e} (after {ran} inputs)");
    }
    assert!(ran >= cases, "fuzz {name}: only {ran} of {cases} inputs ran");
    eprintln!(
        "fuzz {name}: {ran} inputs, {} accepted, no panic, {:.1} s",
        accepted.into_inner(),
        start.elapsed().as_secs_f64()
    );
}

/// Pieces that upset parsers: control characters (NUL, ESC, CR, LF),
/// quotes, TOML and URL punctuation, multi-byte and invisible characters.
#[rustfmt::skip]
const ODD: &[&str] = &[
    "\0", "\x1b", "\x1b[", "\x1b]", "\r", "\n", "\r\n", "\t", " ", "'", "\"", "\\", "[", "]", "[[", "{", "}", "=", "#",
    ":", "/", "?", "&", ".", "..", "...", "-", "--", "%", "%2", "~", "@", "é", "\u{fffd}", "\u{200b}", "\u{202e}",
    "\u{1f600}", "\u{7f}", "\u{85}", "\u{a0}", "\u{2028}", "\u{feff}", "a", "Z", "0", "9", "_", "token=", "?token=",
    "http://", "https://",
];

fn lit(items: &'static [&'static str]) -> BoxedStrategy<String> {
    select(items).prop_map(str::to_string).boxed()
}

/// Short text of any kind: printable, any `char` (controls included), or
/// runs of [`ODD`] pieces.
fn odd_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..40).prop_map(String::from_iter),
        vec(select(ODD), 0..12).prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// [`odd_text`], and now and then a long one (up to 40,000 characters).
fn arbitrary_text() -> BoxedStrategy<String> {
    prop_oneof![
        30 => odd_text(),
        1 => (odd_text(), 100..4_000usize).prop_map(|(s, n)| s.repeat(n).chars().take(40_000).collect()),
        1 => (select(ODD), 1_000..40_000usize).prop_map(|(s, n)| s.repeat(n)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// token: the login token in Jupyter's log

/// What any finding must be: a non-empty URL-safe token without white space
/// or a trailing `.`, that the line shows after `?token=`, and a path from `/`.
fn check_finding(line: &str, found: Option<Finding>) -> Result<bool, TestCaseError> {
    let path = match &found {
        None => return Ok(false),
        Some(Finding::Placeholder { path }) | Some(Finding::Token { path, .. }) => path,
    };
    prop_assert!(path.starts_with('/'), "path {path:?} of {line:?}");
    prop_assert!(path.chars().all(|c| c.is_ascii_alphanumeric() || "._~-/%".contains(c)), "path {path:?}");
    let base = base_url(path);
    prop_assert!(base.starts_with('/') && base.ends_with('/') && (base == "/" || !base.ends_with("//")), "{base:?}");
    let Some(Finding::Token { token, .. }) = &found else { return Ok(false) };
    prop_assert!(!token.is_empty(), "empty token from {line:?}");
    prop_assert!(!token.contains(char::is_whitespace), "token {token:?} from {line:?}");
    prop_assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || "_-.~%".contains(c)), "token {token:?}");
    prop_assert!(!token.ends_with('.'), "truncated token {token:?} from {line:?}");
    prop_assert!(line.contains(&format!("?token={token}")), "token {token:?} not in {line:?}");
    Ok(true)
}

/// Lines through the agent's own path: bytes in chunks of `chunk` into a
/// [`LineAssembler`], which drops line endings and ANSI codes.
fn assembled(bytes: &[u8], chunk: usize) -> Vec<String> {
    let mut a = LineAssembler::new();
    let mut lines: Vec<String> = bytes.chunks(chunk.max(1)).flat_map(|c| a.push(c)).collect();
    lines.extend(a.finish());
    lines
}

/// ANSI codes as a TTY log carries them; `broken` adds cut-off ones
/// (`ESC [` with no final byte eats the character after it).
fn ansi(broken: bool) -> BoxedStrategy<String> {
    let whole = prop_oneof![
        lit(&[
            "\x1b[0m",
            "\x1b[32m",
            "\x1b[1;31m",
            "\x1b[38;5;208m",
            "\x1b[?25l",
            "\x1b[2K",
            "\x1bM",
            "\x1b]0;jupyter\x07",
            "\x1b]8;;http://127.0.0.1:8888/?token=abc\x1b\\",
        ]),
        "\x1b\\[[0-9;?]{0,6}[ -/]{0,2}[@-~]",
    ];
    if broken {
        prop_oneof![3 => whole, 1 => lit(&["\x1b[", "\x1b", "\x1b]", "\x1b(B", "\x1b[1;"])].boxed()
    } else {
        whole.boxed()
    }
}

const LOG_PREFIXES: &[&str] = &[
    "",
    "[I 2024-01-01 10:00:00.123 ServerApp] ",
    "[I 2024-01-01 10:00:00.123 ServerApp]     ",
    "[I 10:00:00.123 NotebookApp] ",
    "[I 10:00:00.123 NotebookApp]  or ",
    "    or ",
    "        ",
    "[C 2024-01-01 10:00:00.000 ServerApp] ",
    "\t",
];

/// A server URL line; `well_formed` draws every piece from what Jupyter
/// prints (the token is 1 to 64 hex digits), else pieces may be anything.
#[derive(Debug, Clone)]
struct LogLine {
    pieces: Vec<String>,
    /// Where ANSI codes go: after piece `i`.
    ansi: Vec<(usize, String)>,
    token: String,
    path: String,
}

impl LogLine {
    fn text(&self) -> String {
        let mut out = String::new();
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            for (_, code) in self.ansi.iter().filter(|(at, _)| *at == i) {
                out.push_str(code);
            }
        }
        out
    }
}

fn log_line(well_formed: bool) -> BoxedStrategy<LogLine> {
    // Each piece as Jupyter prints it; unless `well_formed`, now and then
    // one close to it, or anything.
    let piece = |good: BoxedStrategy<String>, near: BoxedStrategy<String>| {
        if well_formed {
            good
        } else {
            let odd = odd_text().prop_map(|s| s.chars().take(24).collect::<String>());
            prop_oneof![12 => good, 1 => near, 1 => odd].boxed()
        }
    };
    let prefix = piece(lit(LOG_PREFIXES), lit(&["x", "[I 10:00:00 NotebookApp]", "token=", "\u{a0}"]));
    let scheme =
        piece(lit(&["http://", "https://"]), lit(&["HTTP://", "http:/", "file://", "ws://", "xhttp://", "http//"]));
    let host = prop_oneof![
        lit(&["127.0.0.1", "localhost", "[::1]", "(3f1c2b9a8d7e or 127.0.0.1)", "0.0.0.0", "3f1c2b9a8d7e"]),
        "[A-Za-z0-9][A-Za-z0-9.-]{0,12}",
        "\\[[0-9a-fA-F:]{2,10}\\]",
    ];
    let host = piece(host.boxed(), lit(&["", "[::1", "(a or b", "h_st", "h\u{e9}st"]));
    let port = piece(prop_oneof![Just(String::new()), ":[0-9]{1,5}"].boxed(), ":[0-9]{0,8}".boxed());
    let path = prop_oneof![
        lit(&["", "/", "/lab", "/tree", "/jupyter/lab", "/lab/", "/jupyter/"]),
        "/[A-Za-z0-9._~%/-]{0,16}",
    ];
    let path = piece(path.boxed(), lit(&["lab", "/a b", "/\u{e9}", "//", "/?"]));
    let query = piece(
        lit(&["?token="]),
        lit(&["?token", "?tokens=", "&token=", "?TOKEN=", "?foo=1&token=", "?token=?token=", "?token=="]),
    );
    let token = if well_formed {
        "[0-9a-f]{1,64}".boxed()
    } else {
        prop_oneof![
            6 => "[0-9a-f]{48}",
            2 => "[A-Za-z0-9_.~%-]{1,64}",
            1 => "[0-9a-f]{0,64}",
            1 => lit(&["...", "..", ".", ""]),
            1 => "[0-9a-f]{1,48}\\.{1,3}",
            1 => odd_text().prop_map(|s| s.chars().take(24).collect::<String>()),
        ]
        .boxed()
    };
    let suffix = piece(
        lit(&["", " ", "\r", " (3f1c2b9a8d7e)", "\tlater"]),
        lit(&["&x=1", "...", ".", "\x1b[0m", "#frag", "/x", "\u{a0}x"]),
    );
    // Where ANSI codes may go: a well-formed line takes them around the
    // prefix and after the URL only (piece 0 prefix, 1 scheme ... 6 token).
    let at = if well_formed { select(vec![0usize, 6]).boxed() } else { (0usize..8).boxed() };
    (prefix, scheme, host, port, path, query, token, suffix, vec((at, ansi(!well_formed)), 0..3))
        .prop_map(|(prefix, scheme, host, port, path, query, token, suffix, ansi)| LogLine {
            pieces: vec![prefix, scheme, host, port, path.clone(), query, token.clone(), suffix],
            ansi,
            token,
            path,
        })
        .boxed()
}

#[test]
fn token_parse_line_on_arbitrary_text() {
    fuzz("token/parse_line arbitrary", arbitrary_text(), |line| {
        let accepted = check_finding(&line, parse_line(&line))?;
        let clean = strip_ansi(&line);
        check_finding(&clean, parse_line(&clean))?;
        Ok(accepted)
    });
}

#[test]
fn token_parse_line_on_almost_valid_log_lines() {
    fuzz("token/parse_line log lines", (log_line(false), 1usize..64), |(line, chunk)| {
        let text = line.text();
        let accepted = check_finding(&text, parse_line(&text))?;
        for l in assembled(format!("{text}\n").as_bytes(), chunk) {
            check_finding(&l, parse_line(&l))?;
        }
        Ok(accepted)
    });
}

#[test]
fn token_well_formed_log_lines_yield_their_token() {
    fuzz("token/parse_line well-formed", (log_line(true), 1usize..64), |(line, chunk)| {
        let text = format!("{}\n", line.text());
        let lines = assembled(text.as_bytes(), chunk);
        prop_assert_eq!(lines.len(), 1);
        let path = if line.path.is_empty() { "/".to_string() } else { line.path.clone() };
        let found = parse_line(&lines[0]);
        check_finding(&lines[0], found.clone())?;
        prop_assert_eq!(found, Some(Finding::Token { token: line.token.clone(), path }), "{:?}", text);
        Ok(true)
    });
}

#[test]
fn token_strip_ansi_and_base_url() {
    fuzz("token/strip_ansi+base_url", arbitrary_text(), |s| {
        let clean = strip_ansi(&s);
        prop_assert!(clean.len() <= s.len());
        if !s.contains('\x1b') {
            prop_assert_eq!(clean.as_ref(), s.as_str());
        }
        let base = base_url(&s);
        prop_assert!(base.ends_with('/') && (base == "/" || !base.ends_with("//")), "base_url({:?}) = {:?}", s, base);
        Ok(clean.len() < s.len())
    });
}

/// A bytes stream as Docker's log delivers it: text, line endings, ANSI,
/// multi-byte characters and invalid UTF-8, cut into chunks anywhere.
fn log_bytes() -> BoxedStrategy<Vec<u8>> {
    let piece = prop_oneof![
        4 => any::<u8>().prop_map(|b| vec![b]),
        2 => select(ODD).prop_map(|s| s.as_bytes().to_vec()),
        1 => lit(&["\r\n", "\n", "\r", "\x1b[32m", "\x1b[0m"]).prop_map(String::into_bytes),
        1 => log_line(false).prop_map(|l| l.text().into_bytes()),
        1 => Just(vec![0xe2, 0x82]),
    ];
    vec(piece, 0..40).prop_map(|v| v.concat()).boxed()
}

#[test]
fn token_line_assembler_is_blind_to_chunking() {
    fuzz("token/LineAssembler", (log_bytes(), vec(1usize..32, 1..8)), |(bytes, sizes)| {
        let whole = assembled(&bytes, bytes.len());
        // Cut at the sizes given, in turn.
        let mut a = LineAssembler::new();
        let (mut lines, mut at, mut i) = (Vec::new(), 0, 0);
        while at < bytes.len() {
            let end = (at + sizes[i % sizes.len()]).min(bytes.len());
            lines.extend(a.push(&bytes[at..end]));
            (at, i) = (end, i + 1);
        }
        lines.extend(a.finish());
        prop_assert_eq!(&lines, &whole);
        let mut found = false;
        for l in &lines {
            prop_assert!(!l.contains(['\n', '\r']), "{:?}", l);
            found |= check_finding(l, parse_line(l))?;
        }
        Ok(found)
    });
}

/// A field of a `server list --json` line: absent, or a JSON value of some type.
#[derive(Debug, Clone)]
enum Field {
    Absent,
    Null,
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Field {
    fn json(&self) -> Option<serde_json::Value> {
        match self {
            Field::Absent => None,
            Field::Null => Some(serde_json::Value::Null),
            Field::Str(s) => Some(s.clone().into()),
            Field::Int(i) => Some((*i).into()),
            Field::Bool(b) => Some((*b).into()),
        }
    }
}

/// A field that mostly has the type serde expects (`numeric`: a port),
/// else is absent or of another type.
fn field(numeric: bool) -> BoxedStrategy<Field> {
    let string = || prop_oneof![lit(&["", "/", "/jupyter/", "0123456789abcdef"]), odd_text()].prop_map(Field::Str);
    let number = || prop_oneof![0i64..=65535, Just(65536), Just(-1), any::<i64>()].prop_map(Field::Int);
    let expected = if numeric { number().boxed() } else { string().boxed() };
    let other = if numeric { string().boxed() } else { number().boxed() };
    prop_oneof![
        3 => Just(Field::Absent),
        12 => expected,
        1 => other,
        1 => Just(Field::Null),
        1 => any::<bool>().prop_map(Field::Bool),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum ListLine {
    /// Text that, once trimmed, does not start with `{`.
    Noise(String),
    Server {
        token: Field,
        port: Field,
        base_url: Field,
        root_dir: Field,
        indent: String,
    },
}

fn list_line() -> BoxedStrategy<ListLine> {
    prop_oneof![
        1 => prop_oneof![lit(&["Currently running servers:", "", "[JupyterServerListApp] ...", "]"]), odd_text()]
            .prop_map(|s| ListLine::Noise(format!("x{}", s.replace(['\n', '\r'], " ")))),
        3 => (field(false), field(true), field(false), field(false), prop_oneof![lit(&["", " ", "\t", "  "]), ansi(false)]).prop_map(
            |(token, port, base_url, root_dir, indent)| ListLine::Server { token, port, base_url, root_dir, indent }
        ),
    ]
    .boxed()
}

/// The server serde makes of a line with these fields, if it takes it.
fn expected_server(token: &Field, port: &Field, base_url: &Field, root_dir: &Field) -> Option<ListedServer> {
    Some(ListedServer {
        token: match token {
            Field::Absent => String::new(),
            Field::Str(s) => s.clone(),
            _ => return None,
        },
        port: match port {
            Field::Absent => 0,
            Field::Int(i) => u16::try_from(*i).ok()?,
            _ => return None,
        },
        base_url: match base_url {
            Field::Absent => "/".into(),
            Field::Str(s) => s.clone(),
            _ => return None,
        },
        root_dir: match root_dir {
            Field::Absent | Field::Null => None,
            Field::Str(s) => Some(s.clone()),
            _ => return None,
        },
    })
}

#[test]
fn token_parse_server_list_on_arbitrary_text() {
    fuzz("token/parse_server_list arbitrary", arbitrary_text(), |text| {
        let servers = parse_server_list(&text);
        prop_assert!(servers.len() <= text.lines().count());
        Ok(!servers.is_empty())
    });
}

#[test]
fn token_parse_server_list_keeps_exactly_the_well_typed_servers() {
    fuzz("token/parse_server_list json lines", vec(list_line(), 0..6), |lines| {
        let mut text = String::new();
        let mut want = Vec::new();
        for line in &lines {
            match line {
                ListLine::Noise(s) => text.push_str(s),
                ListLine::Server { token, port, base_url, root_dir, indent } => {
                    let mut object = serde_json::Map::new();
                    object.insert("hostname".into(), "0.0.0.0".into());
                    for (key, f) in [("token", token), ("port", port), ("base_url", base_url), ("root_dir", root_dir)] {
                        if let Some(v) = f.json() {
                            object.insert(key.into(), v);
                        }
                    }
                    text.push_str(&format!("{indent}{} ", serde_json::Value::Object(object)));
                    let server = expected_server(token, port, base_url, root_dir);
                    want.extend(server);
                }
            }
            text.push('\n');
        }
        let got = parse_server_list(&text);
        prop_assert_eq!(&got, &want, "{:?}", text);
        Ok(!got.is_empty())
    });
}

// ---------------------------------------------------------------------------
// config: the TOML file

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
    ("docker", "", &["host", "ping_timeout", "install", "source", "mirror", "registry_mirrors"]),
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

/// A TOML string literal.
fn toml_string(s: impl Into<String>) -> String {
    toml::Value::String(s.into()).to_string()
}

fn strings(items: &'static [&'static str]) -> BoxedStrategy<String> {
    lit(items).prop_map(toml_string).boxed()
}

/// A key as a person might misspell it, or quote something odd as one.
fn key_name() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec!["name", "port", "token", "env", "build", "image", "colour", "prot", "state_dir"])
            .prop_map(str::to_string),
        "[A-Za-z_][A-Za-z0-9_-]{0,8}",
        odd_text().prop_map(toml_string),
    ]
    .boxed()
}

/// A TOML value of any type, nested up to three levels.
fn any_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        odd_text().prop_map(toml_string),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| toml::Value::Float(f).to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        lit(&[
            "1979-05-27",
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00.999999-07:00",
            "1979-05-27 07:32:00",
            "07:32:00",
            "nan",
            "-inf",
            "0x1f",
            "0o17",
            "0b101",
            "1_000",
            "1e400",
            "'literal \\ string'",
            "'''multi\nline'''",
            "\"\"\"multi\nbasic\"\"\"",
            "[]",
            "{}",
        ]),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            vec((key_name(), inner), 0..4).prop_map(|kv| {
                let kv: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
    .boxed()
}

fn array(item: BoxedStrategy<String>, len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(item, len).prop_map(|v| format!("[{}]", v.join(", "))).boxed()
}

/// A table of variables (`env`, `args`) as `NAME = value` lines: names good
/// and bad, values that are secrets (marked with [`SECRET`]), some with a
/// newline or a NUL.
fn variables() -> BoxedStrategy<Vec<String>> {
    let name = prop_oneof![
        20 => "[A-Z_][A-Z0-9_]{0,8}",
        1 => lit(&["JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "PATH"]),
        1 => "[0-9][A-Z]{0,3}",
        1 => odd_text().prop_map(toml_string),
    ];
    let value = prop_oneof![
        20 => "[a-z0-9 ]{0,8}".prop_map(|s| toml_string(format!("{SECRET}{s}"))),
        1 => lit(&["\n", "\r", "\0"]).prop_map(|odd| toml_string(format!("{SECRET}{odd}"))),
        1 => any_value(),
    ];
    // Names are unique: a repeated key is a TOML error, tried elsewhere.
    vec((name, value), 0..4)
        .prop_map(|kv| {
            let mut seen = std::collections::BTreeSet::new();
            kv.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| format!("{k} = {v}")).collect()
        })
        .boxed()
}

/// Absolute paths; `bad` adds relative ones, `..`, `/` itself, odd
/// characters and long paths (past the socket's 107 bytes).
fn path_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "/var/lib/jupyter-agent",
            "/srv/state",
            "/run/jupyter-agent.sock",
            "/root/imagesearchhandson",
            "/root/userdata-result.txt",
            "/var/log/jupyter-agent",
        ]),
        "/[a-z]{1,8}(/[a-z.]{1,8}){0,2}",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        4 => lit(&["/", "//", "/tmp", "/var/lib", "/a/../b", "/a/..", "relative/dir", "", "workspace", " /a"]),
        2 => odd_text().prop_map(|s| format!("/{s}")),
        1 => (1usize..5_000).prop_map(|n| format!("/{}", "x".repeat(n))),
    ]
    .boxed()
}

fn url_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "https://mirrors.aliyun.com/docker-ce",
            "https://mirrors.aliyun.com/docker-ce/",
            "http://100.100.100.200",
            "http://127.0.0.1:8080/",
            "https://registry.example",
        ]),
        "https?://[a-z0-9.]{1,12}(:[0-9]{1,5})?(/[a-z]{1,6})?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&["http://", "https://", "http:///x", "https://a b", "ftp://x", "http://u:pw@h/r.tgz?x=1#f", "mirror"]),
        "(https?|tcp|unix|ftp)://[a-z0-9.:/@ -]{0,16}",
    ]
    .boxed()
}

fn image_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&[
            "notebook",
            "notebook:latest",
            "jupyter/base-notebook:2024-01-01",
            "registry.example:5000/team/notebook:1.0",
            "localhost/nb:V1",
            "nb@sha256:abc",
        ]),
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[A-Za-z0-9._-]{1,8})?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&["Registry.Example:5000/Team/nb:V1", "localhost/Upper:1", "UPPER", "-x", ":tag", "a:", "a/", "a@", ""]),
        "[A-Za-z0-9._/:@-]{0,20}",
        (1usize..300).prop_map(|n| format!("{}:1", "n".repeat(n))),
    ]
    .boxed()
}

fn volume_text(bad: bool) -> BoxedStrategy<String> {
    let good = prop_oneof![
        lit(&["workspace:/home/jupyter/w:ro", "workspace:/w", "/data:/data", "/srv:/srv:ro", "/a:/b:rw"]),
        "/(data|opt|mnt)/[a-z]{1,5}:/[a-z]{1,6}(:ro|:rw)?",
    ];
    if !bad {
        return good.boxed();
    }
    prop_oneof![
        lit(&[
            "/a:/b:zz",
            "/:/host",
            "/var/lib:/x",
            "/var/lib/jupyter-agent:/s",
            "/var:/v",
            "data:/data",
            "/a:b",
            "/a",
            "",
            "/a:/b:ro:x",
        ]),
        "(/|workspace)[a-z/]{0,6}:/[a-z/]{0,6}(:ro|:rw|:zz)?",
        (path_text(true), path_text(false)).prop_map(|(h, c)| format!("{h}:{c}")),
    ]
    .boxed()
}

/// The value of `key` in `table` as TOML text: mostly one the key takes
/// (`good`), now and then one close to it that it refuses (`bad`), or any
/// TOML value.
fn value_for(table: &str, key: &str) -> BoxedStrategy<String> {
    let (good, bad): (BoxedStrategy<String>, BoxedStrategy<String>) = match (table, key) {
        (_, "state_dir" | "log_dir" | "socket" | "result_file" | "archive" | "path") => {
            (path_text(false).prop_map(toml_string).boxed(), path_text(true).prop_map(toml_string).boxed())
        }
        ("container", "env_file") => (
            path_text(false).prop_map(toml_string).boxed(),
            prop_oneof![strings(&["env", "../env"]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "env_file") => (
            prop_oneof![strings(&["env", "sub/env", ".env"]), path_text(false).prop_map(toml_string)].boxed(),
            prop_oneof![strings(&["", "../env", "a/../b"]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "ping_timeout" | "ready_timeout") => (
            prop_oneof![
                strings(&["90s", "10m", "1h", "1h 30m", "1h30m", "600", "1s", "1500ms", "30d"]),
                "[1-9][0-9]{0,3}(s|m|h)".prop_map(toml_string)
            ]
            .boxed(),
            prop_oneof![
                strings(&[
                    "0",
                    "0s",
                    "500ms",
                    "999ms",
                    "31d",
                    "2592001",
                    "18446744073709551615",
                    "18446744073709551615s"
                ]),
                strings(&["300000000000y", "-5", "soon", "", " 2s ", "5 parsecs"]),
                "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|y)?".prop_map(toml_string),
                any::<i64>().prop_map(|i| i.to_string()),
            ]
            .boxed(),
        ),
        (_, "install" | "metadata_access") => {
            (any::<bool>().prop_map(|b| b.to_string()).boxed(), strings(&["true", "yes", "1"]))
        }
        ("docker", "source") => (strings(&["auto", "distro", "docker-ce"]), strings(&["apt", "Auto", ""])),
        ("docker", "host") => (
            strings(&["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "http://127.0.0.1:2375"]),
            prop_oneof![
                strings(&["unix://", "tcp://", "/var/run/docker.sock", ""]),
                url_text(true).prop_map(toml_string)
            ]
            .boxed(),
        ),
        (_, "mirror") => (url_text(false).prop_map(toml_string).boxed(), url_text(true).prop_map(toml_string).boxed()),
        (_, "metadata_endpoint") => (
            prop_oneof![
                strings(&["http://100.100.100.200", "http://100.100.100.200/", "http://127.0.0.1:8080"]),
                "http://[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?(/[a-z]{1,6})?"
                    .prop_map(toml_string),
            ]
            .boxed(),
            prop_oneof![
                strings(&["http://metadata.example", "https://100.100.100.200", "http://[::1]:80"]),
                url_text(true).prop_map(toml_string)
            ]
            .boxed(),
        ),
        (_, "registry_mirrors") => (
            array(url_text(false).prop_map(toml_string).boxed(), 1..3),
            prop_oneof![Just("[]".to_string()), array(url_text(true).prop_map(toml_string).boxed(), 1..3)].boxed(),
        ),
        ("workspace", "source") => (
            strings(&[
                "https://example.com/w.tar.gz",
                "https://github.com/o/r.git",
                "/srv/repo",
                "file:///srv/repo",
                "ssh://git@h/r",
                "git://h/r",
            ]),
            strings(&["https://u:pw@example.com/w.tgz?sig=1", "ftp://h/r", "relative", "https://h/a b", ""]),
        ),
        (_, "sha256") => {
            ("[0-9a-fA-F]{64}".prop_map(toml_string).boxed(), "[0-9a-fg]{0,70}".prop_map(toml_string).boxed())
        }
        (_, "ref") => (strings(&["main", "v1.0", "0123abc"]), strings(&["", "-x", "--upload-pack=x", "a b"])),
        (_, "max_size") => (
            prop_oneof![
                strings(&["500MB", "2GiB", "1 KiB", "1B"]),
                "[1-9][0-9]{0,3}(B|kB|KB|MB|GB|KiB|MiB|GiB)".prop_map(toml_string)
            ]
            .boxed(),
            prop_oneof![
                strings(&["500", "0MB", "1TB", "2048GiB", "99999999999999999999GB", "-1MB", "1.5GB", "MB", ""]),
                "[0-9]{0,25} ?[A-Za-z]{0,4}".prop_map(toml_string),
            ]
            .boxed(),
        ),
        ("image", "name" | "tag") => {
            (image_text(false).prop_map(toml_string).boxed(), image_text(true).prop_map(toml_string).boxed())
        }
        (_, "pull") => (strings(&["always", "if-not-present", "never"]), strings(&["sometimes", "Always", ""])),
        (_, "context") => (
            strings(&["/ctx", "/srv/build", "/root/imagesearchhandson", "workspace"]),
            prop_oneof![strings(&["rel", ""]), path_text(true).prop_map(toml_string)].boxed(),
        ),
        (_, "dockerfile") => (
            strings(&["Dockerfile", "sub/Dockerfile", "docker/Dockerfile.gpu"]),
            strings(&["/abs/Dockerfile", "../Dockerfile", "a/../../b", ""]),
        ),
        (_, "env" | "args") => {
            (variables().prop_map(|kv| format!("{{ {} }}", kv.join(", "))).boxed(), strings(&["A=1"]))
        }
        ("container", "name") => (
            prop_oneof![strings(&["jupyter", "nb_1.x"]), "[a-z0-9][a-z0-9_.-]{0,10}".prop_map(toml_string)].boxed(),
            strings(&["-x", "a b", "", "_x", "é"]),
        ),
        (_, "command") => (
            array(
                prop_oneof![strings(&["jupyter", "lab", "--ip=0.0.0.0"]), odd_text().prop_map(toml_string)].boxed(),
                1..4,
            ),
            prop_oneof![Just("[]".to_string()), strings(&["jupyter lab"]), lit(&["[\"jupyter\", 1]", "[[\"a\"]]"])]
                .boxed(),
        ),
        (_, "user") => (strings(&["root", "1000:1000", "jovyan"]), strings(&[""])),
        (_, "volumes") => (
            array(volume_text(false).prop_map(toml_string).boxed(), 1..3),
            array(volume_text(true).prop_map(toml_string).boxed(), 1..3),
        ),
        (_, "port") => (
            prop_oneof![lit(&["1", "8888", "65535"]), (1u16..=65535).prop_map(|p| p.to_string())].boxed(),
            prop_oneof![lit(&["0", "65536", "-1", "\"8888\"", "8888.0"]), any::<i64>().prop_map(|i| i.to_string())]
                .boxed(),
        ),
        (_, "publish") => (
            strings(&["0.0.0.0:8888", "127.0.0.1:0", "[::1]:8888", "[::]:1", "9999", "10.0.0.1:80"]),
            strings(&["::1:80", "1.2.3.4:99999", "x:1", ":80", "", "localhost:8888"]),
        ),
        (_, "restart") => (strings(&["no", "always", "unless-stopped", "on-failure"]), strings(&["sometimes", ""])),
        (_, "url_host") => (
            strings(&["auto", "example.com", "1.2.3.4", "[::1]", "::1", "ecs-1.cn-hangzhou"]),
            strings(&["a:1", "", "ex ample", "a_b", "http://h"]),
        ),
        ("jupyter", "token") => (
            strings(&["generate", "image", "none", "/etc/jupyter-agent/token"]),
            strings(&["relative/token", "/a/../token", "", "Generate", "s3cret"]),
        ),
        // A key this file has no values for: a string, a flag or a number.
        _ => (
            prop_oneof![
                odd_text().prop_map(toml_string),
                any::<bool>().prop_map(|b| b.to_string()),
                (0u16..9999).prop_map(|i| i.to_string())
            ]
            .boxed(),
            any_value(),
        ),
    };
    prop_oneof![30 => good, 2 => bad, 1 => any_value()].boxed()
}

/// `key = value` for `key` of `table`, present with probability `p`.
fn entry(p: f64, table: &str, key: &str) -> BoxedStrategy<Option<String>> {
    let key = key.to_string();
    let line = value_for(table, &key).prop_map(move |v| format!("{key} = {v}"));
    if p >= 1.0 {
        line.prop_map(Some).boxed()
    } else {
        weighted(p, line).boxed()
    }
}

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    /// `[docker]` and its keys below.
    Header,
    /// `docker = { ... }` at the top.
    Inline,
    /// `docker.key = ...` at the top.
    Dotted,
    /// `[[docker]]`: an array of tables.
    Array,
}

fn style() -> BoxedStrategy<Style> {
    prop_oneof![
        40 => Just(Style::Header),
        2 => Just(Style::Inline),
        2 => Just(Style::Dotted),
        1 => Just(Style::Array),
    ]
    .boxed()
}

/// A table present in the document: its name, how it is written, its
/// lines, and its sub-tables (`[container.env]`, `[image.build]`).
#[derive(Debug, Clone)]
struct Table {
    name: String,
    style: Style,
    lines: Vec<String>,
    subs: Vec<Table>,
}

impl Table {
    /// Renders the table: headers and what follows them go `below`; an
    /// inline or dotted table goes where its parent's keys are (`here`).
    fn render(&self, prefix: &str, here: &mut Vec<String>, below: &mut Vec<String>) {
        let name = format!("{prefix}{}", self.name);
        match self.style {
            Style::Header | Style::Array => {
                let header = if self.style == Style::Array { format!("[[{name}]]") } else { format!("[{name}]") };
                let mut own = self.lines.clone();
                let mut after = Vec::new();
                for sub in &self.subs {
                    sub.render(&format!("{name}."), &mut own, &mut after);
                }
                below.push(header);
                below.extend(own);
                below.extend(after);
            }
            Style::Inline | Style::Dotted => here.extend(self.key_lines()),
        }
    }

    /// The table as keys of its parent: `name = { ... }` or `name.key = ...`.
    fn key_lines(&self) -> Vec<String> {
        let mut items = self.lines.clone();
        items.extend(self.subs.iter().flat_map(Table::key_lines));
        if self.style == Style::Dotted {
            items.iter().map(|l| format!("{}.{l}", self.name)).collect()
        } else {
            vec![format!("{} = {{ {} }}", self.name, items.join(", "))]
        }
    }
}

/// How a rendered document is then damaged, if at all.
#[derive(Debug, Clone)]
enum Damage {
    Insert { at: usize, text: &'static str },
    Delete { at: usize, len: usize },
    DuplicateLine { at: usize },
    Truncate { at: usize },
}

#[derive(Debug, Clone)]
struct Document {
    root: Vec<String>,
    tables: Vec<Table>,
    damage: Option<Damage>,
}

impl Document {
    fn text(&self) -> String {
        let (mut top, mut below) = (self.root.clone(), Vec::new());
        for t in &self.tables {
            t.render("", &mut top, &mut below);
        }
        top.extend(below);
        let mut text = top.join("\n");
        text.push('\n');
        let at_char =
            |at: usize| text.char_indices().map(|(i, _)| i).nth(at % text.chars().count().max(1)).unwrap_or(0);
        match &self.damage {
            None => {}
            Some(Damage::Insert { at, text: s }) => {
                let i = at_char(*at);
                text.insert_str(i, s);
            }
            Some(Damage::Delete { at, len }) => {
                let i = at_char(*at);
                let end = text[i..].char_indices().nth(*len).map_or(text.len(), |(j, _)| i + j);
                text.replace_range(i..end, "");
            }
            Some(Damage::DuplicateLine { at }) => {
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[at % lines.len()].to_string();
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            Some(Damage::Truncate { at }) => {
                let i = at_char(*at);
                text.truncate(i);
            }
        }
        text
    }
}

/// Lines of `table`: each key in `keys` present with its probability, the
/// rest of its keys now and then, and rarely an unknown one.
fn lines(table: &'static str, keys: &[(&str, f64)]) -> BoxedStrategy<Vec<String>> {
    // A key given 0 is left to the caller.
    let mut entries: Vec<BoxedStrategy<Option<String>>> =
        keys.iter().filter(|(_, p)| *p > 0.0).map(|(k, p)| entry(*p, table, k)).collect();
    for k in table_keys(table) {
        if !keys.iter().any(|(known, _)| *known == k) && !matches!(k.as_str(), "env" | "args" | "build") {
            entries.push(entry(0.3, table, &k));
        }
    }
    entries.push(weighted(0.02, (key_name(), any_value()).prop_map(|(k, v)| format!("{k} = {v}"))).boxed());
    entries.prop_map(|lines| lines.into_iter().flatten().collect()).boxed()
}

/// A variables sub-table (`env`, `args`), present with probability `p`.
fn variables_table(p: f64, name: &'static str) -> BoxedStrategy<Option<Table>> {
    weighted(
        p,
        (style(), variables()).prop_map(move |(style, lines)| Table { name: name.into(), style, lines, subs: vec![] }),
    )
    .boxed()
}

fn table(
    name: &'static str,
    lines: BoxedStrategy<Vec<String>>,
    subs: Vec<BoxedStrategy<Option<Table>>>,
) -> BoxedStrategy<Table> {
    (style(), lines, subs)
        .prop_map(move |(style, lines, subs)| Table {
            name: name.into(),
            style,
            lines,
            subs: subs.into_iter().flatten().collect(),
        })
        .boxed()
}

/// `[workspace]`: a tarball (source, sha256, maybe max_size) or a git
/// repository (source, ref), a path, maybe env_file and `[workspace.env]`;
/// now and then a key missing or one too many.
fn workspace_table() -> BoxedStrategy<Table> {
    let tarball = lines(
        "workspace",
        &[
            ("source", 0.0),
            ("env", 0.0),
            ("sha256", 0.97),
            ("path", 0.97),
            ("env_file", 0.6),
            ("max_size", 0.3),
            ("ref", 0.02),
        ],
    );
    let git = lines(
        "workspace",
        &[
            ("source", 0.0),
            ("env", 0.0),
            ("ref", 0.97),
            ("path", 0.97),
            ("env_file", 0.6),
            ("max_size", 0.02),
            ("sha256", 0.02),
        ],
    );
    let tarball_source = prop_oneof![
        20 => strings(&["https://example.com/w.tar.gz", "http://10.0.0.1/w.tgz?x=1", "https://u:pw@example.com/w.zip"]),
        1 => value_for("workspace", "source"),
    ];
    let git_source = prop_oneof![
        20 => strings(&["https://github.com/o/r.git", "/srv/repo", "file:///srv/repo", "ssh://git@h/r", "git://h/r"]),
        1 => value_for("workspace", "source"),
    ];
    let with_source = |lines: BoxedStrategy<Vec<String>>, source: BoxedStrategy<String>| {
        (lines, weighted(0.97, source)).prop_map(|(mut lines, source)| {
            lines.extend(source.map(|s| format!("source = {s}")));
            lines
        })
    };
    let lines = prop_oneof![with_source(tarball, tarball_source.boxed()), with_source(git, git_source.boxed())];
    table("workspace", lines.boxed(), vec![variables_table(0.3, "env")])
}

/// `[image]`: exactly one of name (with pull), archive or build (with
/// tag), now and then none, two, or tag and pull where they do not go.
fn image_table() -> BoxedStrategy<Table> {
    let build = table(
        "build",
        lines("image.build", &[("context", 0.97), ("dockerfile", 0.4)]),
        vec![variables_table(0.2, "args")],
    );
    let shapes = prop_oneof![
        10 => lines("image", &[("name", 1.0), ("pull", 0.4), ("tag", 0.02), ("archive", 0.02)]).prop_map(|l| (l, None)),
        5 => lines("image", &[("archive", 1.0), ("tag", 0.97), ("pull", 0.02), ("name", 0.02)]).prop_map(|l| (l, None)),
        5 => (lines("image", &[("tag", 0.97), ("pull", 0.02), ("name", 0.02), ("archive", 0.02)]), build)
            .prop_map(|(l, b)| (l, Some(b))),
        1 => lines("image", &[("name", 0.0), ("archive", 0.0), ("tag", 0.1), ("pull", 0.1)]).prop_map(|l| (l, None)),
    ];
    (style(), shapes)
        .prop_map(|(style, (lines, build))| Table {
            name: "image".into(),
            style,
            lines,
            subs: build.into_iter().collect(),
        })
        .boxed()
}

fn document() -> BoxedStrategy<Document> {
    let root = lines("", &[("state_dir", 0.3), ("log_dir", 0.3), ("socket", 0.3), ("result_file", 0.3)]);
    let plain = |name: &'static str, p: f64, subs: Vec<BoxedStrategy<Option<Table>>>| {
        weighted(p, table(name, lines(name, &[]), subs)).boxed()
    };
    let tables: Vec<BoxedStrategy<Option<Table>>> = vec![
        plain("docker", 0.5, vec![]),
        weighted(0.4, workspace_table()).boxed(),
        weighted(0.97, image_table()).boxed(),
        plain("container", 0.5, vec![variables_table(0.2, "env")]),
        plain("jupyter", 0.5, vec![]),
        // Unknown tables.
        weighted(
            0.01,
            table(
                "extra",
                vec((key_name(), any_value()).prop_map(|(k, v)| format!("{k} = {v}")), 0..2).boxed(),
                vec![],
            ),
        )
        .boxed(),
    ];
    let damage = prop_oneof![
        (any::<usize>(), select(ODD)).prop_map(|(at, text)| Damage::Insert { at, text }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Damage::Delete { at, len }),
        any::<usize>().prop_map(|at| Damage::DuplicateLine { at }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
    ];
    (root, tables, weighted(0.05, damage))
        .prop_map(|(root, tables, damage)| Document { root, tables: tables.into_iter().flatten().collect(), damage })
        .boxed()
}

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
        ImageSource::Archive(a) => prop_assert!(a.is_absolute()),
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
