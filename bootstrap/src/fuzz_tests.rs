//! Property-based fuzzing of [`curl_cli::parse`], the reader of the wait
//! condition handle's `CurlCli` (docs/fuzzing.md): arbitrary text, and curl
//! command lines as ROS hands them out, with options, headers and the URL
//! written in every quoting shell_words knows, sometimes broken.
//!
//! Each property must hold, and nothing may panic, on every input. `cargo
//! test` runs proptest's default number of cases per property (256, or
//! `PROPTEST_CASES`); `scripts/fuzz.sh` runs a million in an optimised build and
//! prints, per property, the inputs run and how many the parser accepted.

use jupyter_proto::fuzz::{self, fuzz, lit};
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;

use crate::curl_cli::parse;
use crate::ros::Target;

// ---------------------------------------------------------------------------
// The harness is jupyter_proto::fuzz (shared with the agent); the pieces

/// Pieces that upset a shell-word splitter and a URL parser: quotes,
/// backslashes, `#`, `&`, white space, control and multi-byte characters.
#[rustfmt::skip]
const ODD: &[&str] = &[
    "\0", "\x1b", "\r", "\n", "\t", " ", "'", "\"", "\\", "\\\n", "\\&", "&", "#", "$", "`", "-", "--", "=", ":", "/",
    "//", "?", "@", "[", "]", "%", "%2B", "é", "\u{fffd}", "\u{200b}", "\u{a0}", "\u{1f600}", "\u{7f}", "a", "Z", "0",
    "http://", "https://", "curl", "-H", "-X", "--url",
];

/// [`jupyter_proto::fuzz::odd_text`] with these [`ODD`] pieces.
fn odd_text() -> BoxedStrategy<String> {
    fuzz::odd_text(ODD)
}

/// [`jupyter_proto::fuzz::arbitrary_text`] with these [`ODD`] pieces.
fn arbitrary_text() -> BoxedStrategy<String> {
    fuzz::arbitrary_text(ODD)
}

// ---------------------------------------------------------------------------
// Command lines

/// How a word is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Quoting {
    /// Every character that is not plainly safe escaped with `\` (as ROS writes `\&`).
    Bare,
    /// `'...'`, a `'` inside written `'\''`.
    Single,
    /// `"..."`, with `\` before `\`, `"`, `$` and `` ` ``.
    Double,
    /// As it is, unescaped: may split, glue or open a quote.
    Raw,
}

fn quote(s: &str, how: Quoting) -> String {
    match how {
        // A newline cannot be escaped (`\` newline is a line continuation).
        Quoting::Bare if s.is_empty() || s.contains('\n') => quote(s, Quoting::Single),
        Quoting::Bare => {
            let mut out = String::new();
            for c in s.chars() {
                if !(c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c)) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        Quoting::Single => format!("'{}'", s.replace('\'', "'\\''")),
        Quoting::Double => {
            let mut out = String::from("\"");
            for c in s.chars() {
                if "\\\"$`".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        }
        Quoting::Raw => s.to_string(),
    }
}

fn quoting(raw: bool) -> BoxedStrategy<Quoting> {
    let q = prop_oneof![Just(Quoting::Bare), Just(Quoting::Single), Just(Quoting::Double)];
    if raw {
        prop_oneof![15 => q, 1 => Just(Quoting::Raw)].boxed()
    } else {
        q.boxed()
    }
}

/// The signature in the URL's query: it must never show in a message.
const SECRET: &str = "SIGSECRET";

#[derive(Debug, Clone)]
struct Url {
    text: String,
    /// How it is given: a word of its own, `--url VALUE`, `--url=VALUE`.
    form: u8,
    quoting: Quoting,
}

/// One or more words of the command line.
#[derive(Debug, Clone)]
enum Item {
    /// Words written as they are (flags, `-X POST`, a body option and its
    /// value); `complete` unless an option may be left without its value
    /// (and take the next word for it).
    Words {
        words: Vec<(String, Quoting)>,
        complete: bool,
    },
    /// `-H` / `--header`, the value separate or attached.
    Header {
        name: String,
        sep: String,
        value: String,
        form: u8,
        quoting: Quoting,
    },
    Url(Url),
}

impl Item {
    fn words(&self) -> Vec<String> {
        match self {
            Item::Words { words, .. } => words.iter().map(|(s, q)| quote(s, *q)).collect(),
            Item::Header { name, sep, value, form, quoting } => {
                let h = format!("{name}{sep}{value}");
                match form % 4 {
                    0 => vec!["-H".into(), quote(&h, *quoting)],
                    1 => vec![quote(&format!("-H{h}"), *quoting)],
                    2 => vec!["--header".into(), quote(&h, *quoting)],
                    _ => vec![quote(&format!("--header={h}"), *quoting)],
                }
            }
            Item::Url(u) => match u.form % 4 {
                0 | 1 => vec![quote(&u.text, u.quoting)],
                2 => vec!["--url".into(), quote(&u.text, u.quoting)],
                _ => vec![quote(&format!("--url={}", u.text), u.quoting)],
            },
        }
    }
}

/// A whole command line: program, items in order, what joins the words,
/// and maybe a damaged character.
#[derive(Debug, Clone)]
struct Command {
    program: String,
    items: Vec<Item>,
    /// The URL last, after `--`.
    dashdash: Option<Url>,
    spaces: Vec<String>,
    damage: Option<(usize, Option<&'static str>)>,
}

impl Command {
    fn text(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if !self.program.is_empty() {
            words.push(self.program.clone());
        }
        words.extend(self.items.iter().flat_map(Item::words));
        if let Some(u) = &self.dashdash {
            words.push("--".into());
            words.push(quote(&u.text, u.quoting));
        }
        let mut text = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                text.push_str(&self.spaces[i % self.spaces.len()]);
            }
            text.push_str(w);
        }
        if let Some((at, insert)) = self.damage {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            if !chars.is_empty() {
                let (i, c) = chars[at % chars.len()];
                match insert {
                    Some(s) => text.insert_str(i, s),
                    None => text.replace_range(i..i + c.len_utf8(), ""),
                }
            }
        }
        text
    }

    /// Whether every word is read as written: no damage, no raw word, plain
    /// white space between words, no option that may take the next word.
    fn intact(&self) -> bool {
        let raw = |q: &Quoting| *q == Quoting::Raw;
        self.damage.is_none()
            && self.spaces.iter().all(|s| SPACES.contains(&s.as_str()))
            && self.dashdash.as_ref().is_none_or(|u| !raw(&u.quoting))
            && self.items.iter().all(|i| match i {
                Item::Words { words, complete } => *complete && words.iter().all(|(_, q)| !raw(q)),
                Item::Header { quoting, .. } => !raw(quoting),
                Item::Url(u) => !raw(&u.quoting),
            })
    }
}

/// What joins words: blanks, a tab, a newline, `\` newline (a continuation).
const SPACES: &[&str] = &[" ", "  ", "\t", " \\\n  ", "\n  "];

/// Options curl takes without a value.
#[rustfmt::skip]
const FLAGS: &[&str] = &[
    "-i", "-s", "-S", "-sS", "-sSf", "-isS", "-v", "-L", "-k", "-g", "-q", "-4", "-6", "--include", "--silent",
    "--show-error", "--fail", "--fail-with-body", "--verbose", "--location", "--insecure", "--globoff", "--compressed",
    "--ipv4", "--ipv6", "--retry-connrefused", "--retry-all-errors", "--no-progress-meter",
];

/// Options curl takes with a value, and values for them.
#[rustfmt::skip]
const WITH_VALUE: &[&str] = &[
    "-X", "-d", "-m", "-o", "-A", "-w", "--request", "--data", "--data-raw", "--data-binary", "--data-ascii", "--json",
    "--max-time", "--connect-timeout", "--retry", "--retry-delay", "--retry-max-time", "--output", "--write-out",
    "--user-agent",
];
const VALUES: &[&str] =
    &["POST", "PUT", "{\"status\":\"SUCCESS\",\"id\":\"1\"}", "10", "/dev/null", "%{http_code}", "ros-notify", ""];

/// Options as ROS's CurlCli and people write them; `odd` adds options curl
/// has that the parser refuses, clusters with unknown letters, and options
/// left without their value.
fn option_item(odd: bool) -> BoxedStrategy<Item> {
    let q = quoting(odd);
    let one = |word: String, q: Quoting, complete: bool| Item::Words { words: vec![(word, q)], complete };
    let flag = (select(FLAGS), q.clone()).prop_map(move |(f, q)| one(f.into(), q, true));
    let valued = (select(WITH_VALUE), select(VALUES), q.clone(), 0..3u8).prop_map(|(o, v, q, form)| {
        let words = match (form, o.starts_with("--")) {
            (0, true) => vec![(format!("{o}={v}"), q)],
            // `-X` with an empty value attached is `-X` alone.
            (0, false) if !v.is_empty() => vec![(format!("{o}{v}"), q)],
            _ => vec![(o.into(), Quoting::Bare), (v.into(), q)],
        };
        Item::Words { words, complete: true }
    });
    // Clusters: flags, then maybe a letter that takes the rest as its value.
    let letters = if odd { "[HXdmoAw]" } else { "[XdmoAw]" };
    let cluster = ("[isSfvLkgq46]{1,4}", weighted(0.5, (letters, "[A-Za-z0-9:]{1,8}")), q.clone()).prop_map(
        move |(flags, valued, q)| {
            let rest = valued.map(|(l, v)| format!("{l}{v}")).unwrap_or_default();
            one(format!("-{flags}{rest}"), q, true)
        },
    );
    if !odd {
        return prop_oneof![3 => flag, 3 => valued, 1 => cluster].boxed();
    }
    let refused = (
        lit(&["-Z", "-sZ", "--cert", "--silent=yes", "--data-urlencode", "-u", "--user", "-:", "-é", "--", "-"]),
        q.clone(),
    )
        .prop_map(move |(o, q)| one(o, q, true));
    // Anything else that starts with `-`: maybe an option that takes the next word.
    let other =
        (prop_oneof!["-[A-Za-z0-9]{1,3}", "--[a-z-]{1,12}(=[a-z]{0,3})?", odd_text().prop_map(|s| format!("-{s}"))], q)
            .prop_map(move |(o, q)| one(o, q, false));
    let dangling = prop_oneof![select(WITH_VALUE).prop_map(str::to_string), "-[isS]{0,2}[HXdmoAw]"]
        .prop_map(move |o| one(o, Quoting::Bare, false));
    prop_oneof![6 => flag, 6 => valued, 2 => cluster, 1 => refused, 1 => other, 1 => dangling].boxed()
}

fn header_item(odd: bool) -> BoxedStrategy<Item> {
    let name = prop_oneof![
        lit(&["Content-Type", "Accept", "x-acs-region-id", "X-Acs-Signature-Nonce", "User-Agent"]),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
    ];
    let value = prop_oneof![
        lit(&["application/json", "cn-hangzhou", "cn-beijing", "", " padded "]),
        "[ -~]{0,20}",
        vec(prop_oneof![lit(&["é", "\u{1f600}", "\u{a0}", "\t"]), "[ -~]{1,3}"], 0..6).prop_map(|v| v.concat()),
    ];
    let sep = lit(&[":", ": ", " : ", ":\t"]);
    let (name, value, sep) = if odd {
        (
            prop_oneof![10 => name, 1 => odd_text(), 1 => Just(String::new())].boxed(),
            prop_oneof![10 => value, 1 => odd_text()].boxed(),
            prop_oneof![10 => sep, 1 => lit(&["", " ", "=", "::"]), 1 => odd_text()].boxed(),
        )
    } else {
        (name.boxed(), value.boxed(), sep)
    };
    (name, sep, value, any::<u8>(), quoting(odd))
        .prop_map(|(name, sep, value, form, quoting)| Item::Header { name, sep, value, form, quoting })
        .boxed()
}

/// The handle's URL: ROS's metadata address and others, ports, paths, the
/// signed query with [`SECRET`] in it.
fn url(odd: bool) -> BoxedStrategy<Url> {
    let scheme = if odd {
        prop_oneof![
            12 => Just("http://".to_string()),
            2 => lit(&["HTTP://", "Http://", "https://", "ftp://", "http:/", "http:", "//", ""]),
            1 => odd_text(),
        ]
        .boxed()
    } else {
        Just("http://".to_string()).boxed()
    };
    let host = prop_oneof![
        lit(&["100.100.100.110", "127.0.0.1", "ros.example", "[::1]", "localhost", "ros-vpc.cn-hangzhou.aliyuncs.com"]),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,8}){0,2}",
    ];
    let host = if odd {
        prop_oneof![10 => host, 1 => lit(&["", "u:p@", "u@h", "[::1", "h:", ":80", "[]"]), 1 => odd_text()].boxed()
    } else {
        host.boxed()
    };
    let port = prop_oneof![Just(String::new()), (1u32..=65535).prop_map(|p| format!(":{p}"))];
    let port = if odd { prop_oneof![port, ":[0-9]{0,7}"].boxed() } else { port.boxed() };
    let path = lit(&["/waitcondition", "/", "/a/b"]);
    let path = if odd { prop_oneof![3 => path, 1 => lit(&["", "#frag", "?"]), 1 => odd_text()].boxed() } else { path };
    let query =
        (lit(&["stackname=s1&stackid=abc&resource=Handle&expire=1700000000&", "", "a=1&"]), "[A-Za-z0-9]{0,16}(%2B)?")
            .prop_map(|(head, sig)| format!("?{head}signature={SECRET}{sig}"));
    let query = if odd {
        prop_oneof![4 => query, 1 => Just(String::new()), 1 => odd_text().prop_map(|s| format!("?{SECRET}{s}"))].boxed()
    } else {
        query.boxed()
    };
    (scheme, host, port, path, query, any::<u8>(), quoting(odd))
        .prop_map(|(scheme, host, port, path, query, form, quoting)| Url {
            text: format!("{scheme}{host}{port}{path}{query}"),
            form,
            quoting,
        })
        .boxed()
}

/// A command line with one URL (a second one now and then, when `odd`).
fn command(odd: bool) -> BoxedStrategy<Command> {
    let program = if odd {
        prop_oneof![10 => lit(&["curl", "/usr/bin/curl", ""]), 1 => lit(&["CURL", "curl.exe", "sudo curl", "/"])]
            .boxed()
    } else {
        lit(&["curl", "/usr/bin/curl", ""])
    };
    let item = prop_oneof![2 => option_item(odd), 1 => header_item(odd)];
    let urls = if odd {
        prop_oneof![1 => Just(Vec::new()), 8 => vec(url(true), 1), 1 => vec(url(true), 2)].boxed()
    } else {
        vec(url(false), 1..=1).boxed()
    };
    let spaces = if odd {
        vec(prop_oneof![15 => lit(SPACES), 1 => odd_text()], 1..4).boxed()
    } else {
        vec(lit(SPACES), 1..4).boxed()
    };
    let damage = if odd {
        weighted(0.1, (any::<usize>(), prop_oneof![select(ODD).prop_map(Some), Just(None)])).boxed()
    } else {
        Just(None).boxed()
    };
    (program, vec(item, 0..7), urls, any::<usize>(), any::<bool>(), spaces, damage)
        .prop_map(|(program, mut items, mut urls, at, dashdash, spaces, damage)| {
            // The last URL after `--`, when it is a word of its own.
            let dashdash = if dashdash && urls.last().is_some_and(|u| u.form % 4 < 2) { urls.pop() } else { None };
            for (k, u) in urls.into_iter().enumerate() {
                let i = at.wrapping_add(k) % (items.len() + 1);
                items.insert(i, Item::Url(u));
            }
            Command { program, items, dashdash, spaces, damage }
        })
        .boxed()
}

/// What an accepted target must be: an http:// URL with a host, the
/// headers parsed; and what no message may show: the signature.
fn check_target(cli: &str, result: &Result<Target, String>, intact: bool) -> Result<bool, TestCaseError> {
    match result {
        Ok(t) => {
            prop_assert!(t.url.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http")), "{}", t.url);
            prop_assert!(t.url.host().is_some_and(|h| !h.is_empty()), "{}", t.url);
            Ok(true)
        }
        Err(e) => {
            prop_assert!(!e.is_empty());
            if intact {
                prop_assert!(!e.contains(SECRET), "the signature shows in {:?} (from {:?})", e, cli);
            }
            Ok(false)
        }
    }
}

#[test]
fn curl_cli_parse_on_arbitrary_text() {
    fuzz("curl_cli/parse arbitrary", arbitrary_text(), |cli| check_target(&cli, &parse(&cli), false));
}

#[test]
fn curl_cli_parse_on_almost_valid_commands() {
    fuzz("curl_cli/parse commands", command(true), |cmd| {
        let cli = cmd.text();
        check_target(&cli, &parse(&cli), cmd.intact())
    });
}

#[test]
fn curl_cli_valid_commands_give_their_url_and_headers() {
    fuzz("curl_cli/parse valid commands", command(false), |cmd| {
        let cli = cmd.text();
        let t = parse(&cli).map_err(|e| TestCaseError::fail(format!("{cli:?}: {e}")))?;
        let in_items = cmd.items.iter().find_map(|i| match i {
            Item::Url(u) => Some(&u.text),
            _ => None,
        });
        let url = in_items.or(cmd.dashdash.as_ref().map(|u| &u.text)).expect("one URL");
        prop_assert_eq!(&t.url.to_string(), url, "{:?}", cli);
        let want: Vec<(String, Vec<u8>)> = cmd
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Header { name, sep, value, .. } => {
                    let h = format!("{name}{sep}{value}");
                    let (n, v) = h.split_once(':').expect("a colon");
                    Some((n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
                }
                _ => None,
            })
            .collect();
        let got: Vec<(String, Vec<u8>)> =
            t.headers.iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect();
        prop_assert_eq!(got, want, "{:?}", cli);
        Ok(true)
    });
}
