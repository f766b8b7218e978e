//! `scalemake-torch`: the only binary that links libtorch.
//!
//! Loading libtorch costs ~300 ms of static initialisation per process, which
//! would dominate every no-op `scalemake status`. So the engine binary does
//! not link it; work that needs libtorch runs in this worker process, which
//! also isolates CUDA state and lets the engine kill a run cleanly.
//!
//! Commands:
//! - `devices`: libtorch version, CUDA availability, device count and names
//!   (one JSON document on stdout);
//! - `train <job.json>`: runs a training job (`scalemake::train::job::TrainJob`),
//!   printing one JSON event per line on stdout and a human log on stderr.

use std::io::Write;
use std::process::ExitCode;

use scalemake::train::job::TrainJob;
use scalemake_torch::{device, train};

fn train_command(job_path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(job_path).map_err(|e| format!("{job_path}: {e}"))?;
    let job: TrainJob = serde_json::from_str(&text).map_err(|e| format!("{job_path}: {e}"))?;
    let stdout = std::io::stdout();
    train::run::run(&job, &mut |event| {
        let mut out = stdout.lock();
        // The engine reads events line by line; a closed pipe means it is gone.
        let _ = serde_json::to_writer(&mut out, &event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    })
}

fn main() -> ExitCode {
    // fp32 matmuls on GPU use TF32 tensor cores, as PyTorch does with
    // `allow_tf32 = True`; read by libtorch at its first cuBLAS call.
    if std::env::var_os("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE").is_none() {
        std::env::set_var("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["devices"] => {
            println!("{}", device::report());
            ExitCode::SUCCESS
        }
        ["train", job] => match train_command(job) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: scalemake-torch devices | scalemake-torch train <job.json>");
            ExitCode::from(2)
        }
    }
}
