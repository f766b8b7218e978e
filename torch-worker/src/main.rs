//! `scalemake-torch`: the only binary that links libtorch.
//!
//! Loading libtorch costs ~300 ms of static initialisation per process, which
//! would dominate every no-op `scalemake status`. So the engine binary does
//! not link it; work that needs libtorch (device queries now, training
//! later) runs in this worker process, which also isolates CUDA state and
//! lets the engine kill a run cleanly.
//!
//! Commands (output is one JSON document on stdout):
//! - `devices`: libtorch version, CUDA availability, device count and names.

mod device;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("devices") => {
            println!("{}", device::report());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: scalemake-torch devices");
            ExitCode::from(2)
        }
    }
}
