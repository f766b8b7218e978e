//! Starting the libtorch worker (`scalemake-torch`) for a node: which
//! device a `device:` setting means given the GPUs the node holds, and the
//! process that dies with scalemake. Shared by `train` and `compile`.

use std::path::Path;
use std::process::{Child, Stdio};

use super::{NodeCtx, NodeError};
use crate::process::spawn_group;

/// The device a node's `device:` runs on, given the GPU slots it holds:
/// `auto` and `cuda` run on the reserved GPU (made the only visible one);
/// `auto` with none reserved runs on the CPU, never on an unaccounted GPU.
/// `cuda:N` pins a device by the user's numbering and is left alone.
pub(super) fn resolve_device(device: &str, gpus: &[usize]) -> Result<String, String> {
    let valid = ["auto", "cpu", "cuda"].contains(&device)
        || device.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if !valid {
        return Err(format!("device `{device}`: expected auto, cpu, cuda or cuda:N"));
    }
    Ok(match (device, gpus.is_empty()) {
        ("auto" | "cuda", false) => "cuda:0".into(),
        ("auto", true) => "cpu".into(),
        _ => device.to_string(),
    })
}

/// Starts the worker in its own process group; it dies with scalemake.
/// SIGKILL on scalemake's death: the worker has nothing to clean up (its
/// checkpoints are replaced atomically) and must free its GPU at once.
/// `command` is the worker's (`train`, `compile`); its stdout goes to `stdout`, its stderr to the node's log.
/// The node's reserved GPUs become the worker's only visible ones, unless
/// the node's `device` pinned `cuda:N`, which keeps the machine's numbering.
pub(super) fn spawn_worker(
    ctx: &mut NodeCtx<'_>,
    (command, job_path): (&str, &Path),
    device: &str,
    stdout: Stdio,
) -> Result<Child, NodeError> {
    let pinned = device.starts_with("cuda:");
    let gpus = if pinned { Vec::new() } else { ctx.gpus().to_vec() };
    let worker = crate::device::worker_path();
    let log = ctx.log().try_clone().map_err(|e| NodeError::Failed(format!("cannot share the log: {e}")))?;
    let mut command_line = std::process::Command::new(&worker);
    command_line.arg(command).arg(job_path).current_dir(ctx.root()).stdin(Stdio::null()).stdout(stdout).stderr(log);
    spawn_group(&mut command_line, libc::SIGKILL, &gpus).map_err(|e| {
        NodeError::Failed(format!("cannot start the libtorch worker {}: {e} (run scripts/setup.sh)", worker.display()))
    })
}
