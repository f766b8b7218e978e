//! Asks the libtorch worker (`scalemake-torch`) what hardware libtorch sees.
//!
//! The engine binary does not link libtorch (its static initialisation costs
//! ~300 ms per process, more than a whole no-op `status` may take); the
//! worker binary sits next to `scalemake` and is run only when needed: by
//! `doctor`, and by `run` when a selected node wants GPU slots.

use std::path::PathBuf;
use std::process::Command;

/// The worker binary: `$SCALEMAKE_TORCH`, else `scalemake-torch` next to this executable.
pub fn worker_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SCALEMAKE_TORCH") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().ok();
    exe.and_then(|e| e.parent().map(|d| d.join("scalemake-torch"))).unwrap_or_else(|| PathBuf::from("scalemake-torch"))
}

/// The worker's device report (JSON), or why it could not be obtained.
pub fn report() -> Result<serde_json::Value, String> {
    let path = worker_path();
    let out = Command::new(&path).arg("devices").output().map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!("{} devices failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{} devices printed invalid JSON: {e}", path.display()))
}

/// Number of CUDA devices libtorch can use, or why it is unknown.
pub fn cuda_device_count() -> Result<usize, String> {
    let r = report()?;
    r["cuda_devices"].as_u64().map(|n| n as usize).ok_or_else(|| "the worker's report has no cuda_devices".to_string())
}

/// The physical device a GPU slot stands for: slot `i` is the i-th device
/// libtorch sees, which is the i-th entry of our own `CUDA_VISIBLE_DEVICES`
/// when one is set (ids or UUIDs), else device `i`.
pub fn visible_device(slot: usize) -> String {
    let mask = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    mask.split(',').map(str::trim).filter(|s| !s.is_empty()).nth(slot).map_or_else(|| slot.to_string(), str::to_string)
}
