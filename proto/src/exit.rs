//! The exit codes both binaries share, with the same meaning; each binary's
//! own codes start at 4 (`jupyter-agent --help`, `jupyter-bootstrap --help`).

/// Jupyter is ready (or the command did what was asked).
pub const OK: u8 = 0;
/// The converge failed, or Jupyter is not ready.
pub const FAILED: u8 = 1;
/// Bad command line or configuration: nothing was changed, nothing waited for.
pub const USAGE: u8 = 2;
/// A wait timed out.
pub const TIMED_OUT: u8 = 3;

/// Parses the command line; `Err` is the exit code after clap has printed
/// what it had to say: [`USAGE`] for a bad command line, [`OK`] for `--help`
/// and `--version`.
pub fn parse_command_line<P: clap::Parser>() -> Result<P, u8> {
    P::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            USAGE
        } else {
            OK
        }
    })
}
