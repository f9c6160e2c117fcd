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
use std::time::Duration;

use jupyter_proto::fuzz::fuzz;
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;

use crate::config::{Config, ImageSource};
use crate::token::{base_url, parse_line, parse_server_list, strip_ansi, Finding, LineAssembler, ListedServer};

// ---------------------------------------------------------------------------
// The harness is jupyter_proto::fuzz (shared with the bootstrap); the pieces

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

mod config;
mod token;
