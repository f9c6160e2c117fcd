//! Property-based fuzzing of the agent's pure parsers (docs/fuzzing.md):
//!
//! | target | what is fed |
//! |---|---|
//! | `token` | [`parse_line`], [`strip_ansi`], [`base_url`], [`parse_server_list`] and [`LineAssembler`] (`src/token.rs`): arbitrary text, and Jupyter log lines and `server list --json` lines built to be almost right |
//! | `config` | [`Config::parse`] (`src/config`: TOML text to a validated configuration; it reads and writes no file): arbitrary text, and documents built from the real tables and keys with values of every TOML type |
//!
//! Each property must hold, and nothing may panic, on every input. `cargo
//! test` runs proptest's default number of cases per property (256, or
//! `PROPTEST_CASES`); `scripts/fuzz.sh` runs a million in an optimised build and
//! prints, per property, the inputs run and how many the parser accepted.
//! [`Config::check_host`] is not fed: it reads the host's file system.

use std::path::{Component, Path};
use std::time::Duration;

use jupyter_proto::fuzz::{self, fuzz, lit};
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

/// [`jupyter_proto::fuzz::odd_text`] with these [`ODD`] pieces.
fn odd_text() -> BoxedStrategy<String> {
    fuzz::odd_text(ODD)
}

/// [`jupyter_proto::fuzz::arbitrary_text`] with these [`ODD`] pieces.
fn arbitrary_text() -> BoxedStrategy<String> {
    fuzz::arbitrary_text(ODD)
}

mod config;
mod token;
