//! The `scalemake` command line.
//!
//! Exit codes: 0 everything asked for is built / the command succeeded;
//! 1 a node failed (or `verify` found corruption); 2 bad input or usage
//! (experiment file errors, unknown targets); 130 interrupted by Ctrl-C.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`scalemake status 2>&1 | head`): Rust ignores SIGPIPE, which
    // turns the next print into a panic and exit code 101. A run killed so
    // is a crash like any other: nothing partial is published.
    // SAFETY: restoring a default disposition, before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    cli::main()
}
