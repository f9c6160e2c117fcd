//! The token target: log lines, ANSI, base URLs, the line assembler and
//! `server list --json` (see the parent module).

use super::*;

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
