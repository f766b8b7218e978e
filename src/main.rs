//! The `scalemake` command line.
//!
//! Exit codes: 0 everything asked for is built / the command succeeded;
//! 1 a node failed (or `verify` found corruption); 2 bad input or usage
//! (experiment file errors, unknown targets); 130 interrupted by Ctrl-C.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
