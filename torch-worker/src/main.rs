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
//! - `compile <job.json>`: compiles a model's training step
//!   (`scalemake::train::compile::CompileJob`) into the job's output directory;
//! - `train <job.json>`: runs a training job (`scalemake::train::job::TrainJob`),
//!   printing one JSON event per line on stdout and a human log on stderr;
//! - `reference-case <dir>` and `bench …`: the model against the PyTorch
//!   reference (`benches/reference/gpt.py`), for tests and benchmarks;
//! - `bench-optimizer <preset> <device>`: flat-buffer Adam against tch's
//!   per-tensor Adam;
//! - `bench-hadamard <device>`: the CUDA Hadamard kernels (the transform and
//!   the fused FastFood layer) against a copy, the Kronecker reference and
//!   the unfused layer; `check-hadamard`: their agreement with the
//!   reference (the GPU-only test, runnable where there is no cargo).

use std::io::Write;
use std::process::ExitCode;

use scalemake::train::job::{Event, TrainJob};
use scalemake_torch::distributed::Rendezvous;
use scalemake_torch::{device, train};

mod tools;

fn train_command(job_path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(job_path).map_err(|e| format!("{job_path}: {e}"))?;
    let job: TrainJob = serde_json::from_str(&text).map_err(|e| format!("{job_path}: {e}"))?;
    // A rank started by rank 0 here, or by srun; else the worker the engine
    // started, which is rank 0 of a run of several devices.
    let rank = Rendezvous::from_env()?;
    let is_root = rank.as_ref().is_none_or(|r| r.rank == 0);
    let emit_root = move |event: &Event| {
        if is_root {
            emit(event)
        }
    };
    // A panic inside libtorch calls (tch unwraps) still reaches the engine as a reason.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()));
        emit_root(&Event::Failed { message: message.unwrap_or_else(|| "the worker panicked".into()) });
        default_hook(info);
    }));
    train::run::stop_on_signals()?;
    let (mut local, rank) = match rank {
        Some(rank) => (None, Some(rank)),
        None if job.devices > 1 => {
            let (ranks, rank0) = train::ranks::LocalRanks::start(std::path::Path::new(job_path), job.devices as usize)?;
            scalemake::train::job::write_ranks(&job.work, &ranks.pids())?;
            (Some(ranks), Some(rank0))
        }
        None => (None, None),
    };
    let mut result = train::run::run(&job, rank.as_ref(), &mut |event| emit_root(&event));
    if let Some(ranks) = local.as_mut() {
        // A rank that died is the reason the collectives failed: say which.
        if let Err(message) = &result {
            if let Some(why) = ranks.failure() {
                result = Err(format!("{why}; rank 0 stopped: {message}"));
            }
        }
    }
    if let (Ok(()), Some(ranks)) = (&result, local.take()) {
        result = ranks.finish();
    }
    if let Err(message) = &result {
        emit_root(&Event::Failed { message: message.clone() });
        if let Some(rank) = rank.as_ref().filter(|_| !is_root) {
            eprintln!("rank {}: {message}", rank.rank);
        }
    }
    result
}

fn compile_command(job_path: &str) -> Result<(), String> {
    use scalemake::train::compile::{CompileJob, RECORD_FILE};
    let text = std::fs::read_to_string(job_path).map_err(|e| format!("{job_path}: {e}"))?;
    let job: CompileJob = serde_json::from_str(&text).map_err(|e| format!("{job_path}: {e}"))?;
    let record = train::compiled::compile(&job)?;
    let path = job.out.join(RECORD_FILE);
    let text = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}", serde_json::to_string(&record).map_err(|e| e.to_string())?);
    Ok(())
}

/// Writes one event line; the engine reads them line by line (a closed pipe
/// means it is gone, and then nobody is listening anyway).
fn emit(event: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, event);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Keeps freed memory in the heap instead of returning it to the kernel.
///
/// glibc serves every allocation over 32 MiB with a fresh `mmap` and unmaps
/// it on free, so each training step page-faults its large buffers (logits
/// of B·T·vocab floats) all over again: 30% of CPU training time went to
/// the kernel's page-fault path before this. GPU memory has its own caching
/// allocator; this is the CPU's equivalent.
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

const BENCH_USAGE: &str =
    "bench [--preset P] [--variant V] [--layers L] [--d-model D] [--heads H] [--context T] [--vocab V] [--device D] [--threads N] [--batch B] [--micro-batch M] [--steps N] [--warmup W] [--bf16] [--phases] [--compiled EXPORTER]";

/// Parses `bench` flags (the same as `gpt.py bench`).
fn bench_spec(args: &[&str]) -> Result<tools::BenchSpec, String> {
    let mut spec = tools::BenchSpec {
        preset: "micro".into(),
        vocab: 50_262,
        device: "cpu".into(),
        batch: 16,
        micro_batch: 0,
        steps: 20,
        warmup: 3,
        bf16: false,
        phases: false,
        variant: None,
        shape: tools::ShapeOverrides::default(),
        threads: 0,
        compiled: None,
    };
    let mut it = args.iter();
    while let Some(&flag) = it.next() {
        if flag == "--bf16" || flag == "--phases" {
            *(if flag == "--bf16" { &mut spec.bf16 } else { &mut spec.phases }) = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let int = || value.parse::<i64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag {
            "--preset" => spec.preset = value.to_string(),
            "--variant" => {
                spec.variant = Some(
                    scalemake::train::Variant::from_name(value).ok_or_else(|| format!("unknown variant {value}"))?,
                )
            }
            "--device" => spec.device = value.to_string(),
            "--vocab" => spec.vocab = int()?,
            "--batch" => spec.batch = int()?,
            "--micro-batch" => spec.micro_batch = int()?,
            "--steps" => spec.steps = int()? as usize,
            "--layers" => spec.shape.n_layer = Some(int()?),
            "--d-model" => spec.shape.d_model = Some(int()?),
            "--heads" => spec.shape.n_head = Some(int()?),
            "--context" => spec.shape.context = Some(int()?),
            "--threads" => spec.threads = int()? as i32,
            "--warmup" => spec.warmup = int()? as usize,
            "--compiled" => spec.compiled = Some(std::path::PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if spec.micro_batch == 0 {
        spec.micro_batch = spec.batch;
    }
    Ok(spec)
}

/// Exit status of a command: 0, or 1 with the error on stderr.
fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
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
        ["train", job] => finish(train_command(job)),
        ["compile", job] => finish(compile_command(job)),
        ["check-hadamard"] => finish(tools::check_hadamard()),
        ["bench-hadamard", device] => {
            let dims: Vec<i64> = (8..=15).map(|bits| 1 << bits).collect();
            finish(tools::bench_hadamard(device, &dims, &[768, 1024], 20).map(|report| println!("{report}")))
        }
        ["bench-optimizer", preset, device] => {
            finish(tools::bench_optimizer(preset, 50_262, device, 20).map(|report| println!("{report}")))
        }
        ["reference-case", dir] => finish(tools::reference_case(std::path::Path::new(dir), "nano", 1000)),
        ["bench", rest @ ..] => match bench_spec(rest) {
            Ok(spec) => finish(tools::bench(&spec).map(|report| println!("{report}"))),
            Err(e) => {
                eprintln!("error: {e}\n{BENCH_USAGE}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: scalemake-torch devices | train <job.json> | compile <job.json> | reference-case <dir> | bench-optimizer <preset> <device> | bench-hadamard <device> | check-hadamard | {BENCH_USAGE}");
            ExitCode::from(2)
        }
    }
}
