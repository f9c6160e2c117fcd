//! Finding the login token in what Jupyter prints (docs/jupyter.md).
//!
//! Pure functions only: [`LineAssembler`] turns the byte chunks of Docker's
//! log stream (whose frames do not align with lines) into clean lines, and
//! [`parse_line`] recognises the URL lines of Notebook 5 and 6 and of
//! jupyter_server 1 and 2 (JupyterLab 3/4, Notebook 7).

use std::sync::LazyLock;

use regex_lite::Regex;

/// What one log line says about the login URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A URL with a token, e.g. `http://127.0.0.1:8888/lab?token=abc`.
    Token { token: String, path: String },
    /// The server hides a configured token behind the literal `?token=...`.
    Placeholder { path: String },
}

/// A URL to a server: scheme, host (name, IPv4, bracketed IPv6, or Notebook 5's
/// `(container-id or 127.0.0.1)`), optional
/// port, optional path, then `?token=`. The token is either Jupyter's
/// placeholder `...` or a run of URL-safe characters.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \b https?:// (?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]|\([A-Za-z0-9.\-\ ]+\)) (?::[0-9]{1,5})?
        (?P<path> /[A-Za-z0-9._~\-/%]* )?
        \?token= (?P<token> \.\.\. | [A-Za-z0-9_\-.~%]+ )
        (?P<rest> [^\s]* )",
    )
    .expect("valid regex")
});

/// ANSI escape sequences (CSI such as colours, and OSC), as a TTY log carries them.
static ANSI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]").expect("valid regex")
});

/// Parses one clean log line (see [`LineAssembler`]).
pub fn parse_line(line: &str) -> Option<Finding> {
    // A file:// URL (Notebook 6's "open this file in a browser") never has a
    // token; anything else with `?token=` is a candidate.
    let caps = URL.captures(line)?;
    let token = caps.name("token")?.as_str();
    let path = caps.name("path").map_or("/", |m| m.as_str()).to_string();
    if token == "..." {
        return Some(Finding::Placeholder { path });
    }
    // `?token=abc...` with trailing dots is a truncated display, not a token.
    let rest = caps.name("rest").map_or("", |m| m.as_str());
    if token.ends_with('.') || rest.starts_with('.') {
        return None;
    }
    Some(Finding::Token { token: token.to_string(), path })
}

/// Removes ANSI escape sequences.
pub fn strip_ansi(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\x1b') {
        ANSI.replace_all(s, "")
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Longest line kept whole; a longer one is cut (a runaway line without a
/// newline must not grow memory without bound).
pub const MAX_LINE: usize = 64 * 1024;

/// Reassembles lines from chunks that split them anywhere, including inside
/// a multi-byte character or between `\r` and `\n`.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: Vec<u8>,
}

impl LineAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the lines it completed, without line endings
    /// and ANSI codes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                out.push(clean(&self.partial));
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        out
    }

    /// The unterminated rest, when the stream ends.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = clean(&self.partial);
        self.partial.clear();
        Some(line)
    }
}

fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = strip_ansi(&text);
    // A TTY ends lines with CRLF; a progress display may rewrite a line with CR.
    let text = text.trim_end_matches('\r');
    match text.rfind('\r') {
        Some(i) => text[i + 1..].to_string(),
        None => text.to_string(),
    }
}

/// The server's base URL (`/`, or `/jupyter/` behind a prefix) from the path
/// of its login URL, which ends in `lab`, `tree` or nothing.
pub fn base_url(path: &str) -> String {
    let mut base = path.trim_end_matches('/');
    for suffix in ["/lab", "/tree"] {
        if let Some(b) = base.strip_suffix(suffix) {
            base = b;
            break;
        }
    }
    format!("{}/", base.trim_end_matches('/'))
}

/// A server as `jupyter server list --json` (or `jupyter notebook list
/// --json`) describes it: one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ListedServer {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default = "root_path")]
    pub base_url: String,
    /// Set by `jupyter server list` (2.x); 1.x and Notebook do not say.
    #[serde(default)]
    pub root_dir: Option<String>,
}

fn root_path() -> String {
    "/".into()
}

/// Parses the output of `jupyter server list --json` / `jupyter notebook list --json`.
pub fn parse_server_list(output: &str) -> Vec<ListedServer> {
    output
        .lines()
        .map(|l| strip_ansi(l).trim().to_string())
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(token: &str, path: &str) -> Option<Finding> {
        Some(Finding::Token { token: token.into(), path: path.into() })
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn lines_of_every_server_generation() {
        let cases: Vec<(String, Option<Finding>)> = vec![
            // Notebook 5
            (
                format!("[I 10:00:00.123 NotebookApp] http://(3f1c2b9a8d7e or 127.0.0.1):8888/?token={HEX}"),
                tok(HEX, "/"),
            ),
            (format!("        http://0.0.0.0:8888/?token={HEX}"), tok(HEX, "/")),
            // Notebook 6
            (format!("[I 10:00:00.123 NotebookApp] http://3f1c2b9a8d7e:8888/?token={HEX}"), tok(HEX, "/")),
            (format!("[I 10:00:00.123 NotebookApp]  or http://127.0.0.1:8888/?token={HEX}"), tok(HEX, "/")),
            (format!("     or http://127.0.0.1:8888/?token={HEX}"), tok(HEX, "/")),
            // jupyter_server 1 and 2
            (format!("[I 2026-11-27 10:00:00.123 ServerApp] http://localhost:8888/lab?token={HEX}"), tok(HEX, "/lab")),
            (
                format!("[I 2026-11-27 10:00:00.123 ServerApp]     http://127.0.0.1:8888/lab?token={HEX}"),
                tok(HEX, "/lab"),
            ),
            (format!("        http://127.0.0.1:8888/tree?token={HEX}"), tok(HEX, "/tree")),
            (format!("    http://[::1]:8888/lab?token={HEX}"), tok(HEX, "/lab")),
            (format!("    http://127.0.0.1:8888/jupyter/lab?token={HEX}"), tok(HEX, "/jupyter/lab")),
            // A configured token: the log shows the placeholder.
            (
                "[I 10:00:00.123 NotebookApp] http://127.0.0.1:8888/?token=...".into(),
                Some(Finding::Placeholder { path: "/".into() }),
            ),
            ("    http://127.0.0.1:8888/lab?token=...".into(), Some(Finding::Placeholder { path: "/lab".into() })),
            // Things that look like tokens but are not.
            ("        file:///root/.local/share/jupyter/runtime/nbserver-1-open.html".into(), None),
            ("[I 10:00:00 NotebookApp] The Jupyter Notebook is running at:".into(), None),
            ("token=0123456789abcdef".into(), None),
            ("see http://127.0.0.1:8888/?tokens=abc".into(), None),
            ("see http://127.0.0.1:8888/?token=".into(), None),
            ("http://127.0.0.1:8888/?foo=1&token=abc".into(), None),
            ("    http://127.0.0.1:8888/?token=0123abc...".into(), None),
            ("[W 10:00:00 NotebookApp] 403 GET /api/status?token=abc (172.17.0.1)".into(), None),
            ("".into(), None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(&line), want, "line: {line:?}");
        }
    }

    #[test]
    fn lines_split_across_frames_are_reassembled() {
        let text = format!("[I NotebookApp] Serving\n[I NotebookApp] http://127.0.0.1:8888/?token={HEX}\n");
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut a = LineAssembler::new();
            let mut lines = a.push(&bytes[..cut]);
            lines.extend(a.push(&bytes[cut..]));
            assert_eq!(lines.len(), 2, "cut at {cut}");
            assert_eq!(parse_line(&lines[1]), tok(HEX, "/"), "cut at {cut}");
        }
        // One byte at a time, as the worst framing would deliver it.
        let mut a = LineAssembler::new();
        let lines: Vec<String> = bytes.iter().flat_map(|b| a.push(std::slice::from_ref(b))).collect();
        assert_eq!(parse_line(&lines[1]), tok(HEX, "/"));
    }

    #[test]
    fn crlf_colour_codes_and_multibyte_splits() {
        let mut a = LineAssembler::new();
        let line = format!("\x1b[32m[I 10:00:00.123 NotebookApp]\x1b[0m http://127.0.0.1:8888/?token={HEX}\r\n");
        let lines = a.push(line.as_bytes());
        assert_eq!(parse_line(&lines[0]), tok(HEX, "/"));
        assert!(!lines[0].contains('\x1b') && !lines[0].ends_with('\r'));
        // "é" split between two chunks stays one character.
        let mut a = LineAssembler::new();
        let bytes = "caf\u{e9}\n".as_bytes();
        let mut lines = a.push(&bytes[..4]);
        lines.extend(a.push(&bytes[4..]));
        assert_eq!(lines, vec!["caf\u{e9}".to_string()]);
    }

    #[test]
    fn long_lines_are_bounded_and_unterminated_rest_is_kept() {
        let mut a = LineAssembler::new();
        let long = vec![b'x'; MAX_LINE * 3];
        assert!(a.push(&long).is_empty());
        let lines = a.push(b"\n");
        assert_eq!(lines[0].len(), MAX_LINE);
        a.push(b"tail without newline");
        assert_eq!(a.finish().as_deref(), Some("tail without newline"));
        assert_eq!(a.finish(), None);
    }

    #[test]
    fn base_urls() {
        assert_eq!(base_url("/"), "/");
        assert_eq!(base_url("/lab"), "/");
        assert_eq!(base_url("/tree"), "/");
        assert_eq!(base_url("/jupyter/lab"), "/jupyter/");
        assert_eq!(base_url("/jupyter/"), "/jupyter/");
    }

    /// Reads a whole captured log the way the agent does, in chunks of
    /// `chunk` bytes (Docker's frames split lines anywhere); every finding.
    fn findings(bytes: &[u8], chunk: usize) -> Vec<Finding> {
        let mut a = LineAssembler::new();
        let mut lines: Vec<String> = bytes.chunks(chunk).flat_map(|c| a.push(c)).collect();
        lines.extend(a.finish());
        lines.iter().filter_map(|l| parse_line(l)).collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Logs captured from real servers (tests/fixtures/README.md says how).
    const FIXTURES: &[(&str, &str, &str)] = &[
        ("notebook-5.7.16.log", "30d9a968166df46c005ad254cad5d5a8193a305d4c7bda48", "/"),
        ("notebook-6.4-debian12.log", "13a71efb49a19ebbb0e5104e448d579f342fa5aa79246771", "/"),
        ("notebook-6.4-debian12-tty.log", "1d59d5232e7f74e4769c926809347b1c9f85d4d68bae7eb1", "/"),
        ("notebook-6.4-debian12-token-from-env.log", "...", "/"),
        ("jupyter_server-1.24.0-lab-3.6.8.log", "7262d816b3bcee152891f395eb5e567ded8847410dfed8c4", "/lab"),
        ("jupyter_server-2.21.1-lab-4.6.6.log", "41517dec1333b8fa193d005c00a84b3419f5d55d2eb8f2ee", "/lab"),
        ("jupyter_server-2.21.1-notebook-7.6.5.log", "c8b759f4bdcc0ab13275cf9c3fad8554fdf4756e43e59460", "/tree"),
        ("jupyter_server-2.21.1-lab-4.6.6-token-from-env.log", "...", "/lab"),
    ];

    fn expected(token: &str, path: &str) -> Finding {
        if token == "..." {
            Finding::Placeholder { path: path.into() }
        } else {
            Finding::Token { token: token.into(), path: path.into() }
        }
    }

    #[test]
    fn every_real_server_log_yields_its_token_and_nothing_else() {
        for (name, token, path) in FIXTURES {
            let bytes = fixture(name);
            for chunk in [1, 3, 8, 13, 64, bytes.len()] {
                let found = findings(&bytes, chunk);
                assert!(!found.is_empty(), "{name} (chunks of {chunk}): no finding");
                // Every URL line of a log names the same token: no false positives.
                for f in &found {
                    assert_eq!(f, &expected(token, path), "{name} (chunks of {chunk})");
                }
            }
        }
    }

    #[test]
    fn two_servers_worth_of_noise_keep_their_order() {
        let mut both = fixture("jupyter_server-1.24.0-lab-3.6.8.log");
        both.extend(fixture("notebook-6.4-debian12-tty.log"));
        let found = findings(&both, 5);
        assert_eq!(found.first(), Some(&expected(FIXTURES[4].1, "/lab")));
        assert_eq!(found.last(), Some(&expected(FIXTURES[2].1, "/")));
    }

    #[test]
    fn the_tty_capture_really_has_colour_codes_and_crlf() {
        let raw = fixture("notebook-6.4-debian12-tty.log");
        assert!(raw.windows(2).any(|w| w == b"\r\n") && raw.contains(&0x1b), "the fixture lost its TTY bytes");
    }

    #[test]
    fn server_lists_from_real_servers() {
        for name in ["jupyter_server-2.21.1-server-list.json", "notebook-6.4-debian12-notebook-list.json"] {
            let text = String::from_utf8(fixture(name)).unwrap();
            let servers = parse_server_list(&text);
            assert_eq!(servers.len(), 1, "{name}");
            assert_eq!(servers[0].token, "0123456789abcdef0123456789abcdef0123456789abcdef", "{name}");
            assert_eq!(servers[0].port, 8888, "{name}");
            assert_eq!(servers[0].base_url, "/", "{name}");
        }
    }

    #[test]
    fn server_list_output() {
        let out = "{\"base_url\": \"/\", \"hostname\": \"0.0.0.0\", \"password\": false, \"pid\": 7, \"port\": 8888, \"secure\": false, \"sock\": \"\", \"token\": \"s3cret\", \"url\": \"http://abc:8888/\", \"version\": \"2.14.2\", \"root_dir\": \"/root\"}\n";
        let servers = parse_server_list(out);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].token, "s3cret");
        assert_eq!(servers[0].port, 8888);
        assert_eq!(parse_server_list("Currently running servers:\n"), vec![]);
    }
}
