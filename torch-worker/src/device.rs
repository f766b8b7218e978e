//! What libtorch sees: versions, CUDA, devices.
//!
//! The PyPI torch wheel splits CUDA support into `libtorch_cuda.so`, which
//! the linker drops as unused (`--as-needed`). Unless it is loaded before the
//! first CUDA query, libtorch reports no CUDA even on a GPU machine, so
//! [`load_cuda_runtime`] dlopens it (RTLD_GLOBAL) first.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// The libtorch library directory the binary was linked against.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    option_env!("SCALEMAKE_LIBTORCH_LIB").map(PathBuf::from)
}

/// Loads `libtorch_cuda.so`; returns why not if it cannot be loaded
/// (expected with a CPU-only libtorch).
fn load_cuda_runtime() -> Result<String, String> {
    load_torch_library("libtorch_cuda.so")
}

/// Loads one of libtorch's libraries (`libtorch.so`) globally, so that
/// libraries loaded later that need it by name find it: a compiled step
/// (`.pt2`) is such a library, and carries no path to libtorch of its own.
pub fn load_torch_library(file: &str) -> Result<String, String> {
    let candidates: Vec<String> = libtorch_lib_dir()
        .map(|d| d.join(file).display().to_string())
        .into_iter()
        .chain(std::iter::once(file.to_string()))
        .collect();
    let mut last_error = String::from("not found");
    for path in candidates {
        let Ok(c) = CString::new(path.as_str()) else { continue };
        // SAFETY: dlopen with a valid C string; the handle is kept for the process lifetime.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return Ok(path);
        }
        // SAFETY: dlerror returns a thread-local C string or null.
        let err = unsafe { libc::dlerror() };
        if !err.is_null() {
            last_error = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
        }
    }
    Err(last_error)
}

/// The torch version of the linked libtorch (`2.11.0+cu130`), read from the
/// wheel's `version.py` next to its `lib/` directory.
pub fn libtorch_version() -> Option<String> {
    let version_py = libtorch_lib_dir()?.parent()?.join("version.py");
    let text = std::fs::read_to_string(version_py).ok()?;
    text.lines().find_map(|l| l.strip_prefix("__version__ = ")).map(|v| v.trim().trim_matches(['\'', '"']).to_string())
}

/// GPU names from `nvidia-smi` (tch has no device-name query).
fn gpu_names() -> Vec<String> {
    nvidia_smi("name,memory.total")
}

/// One line per GPU of `nvidia-smi --query-gpu=<fields>`, empty without one.
fn nvidia_smi(fields: &str) -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .arg(format!("--query-gpu={fields}"))
        .arg("--format=csv,noheader")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The first visible GPU's compute capability as `sm_90` (what a compiled
/// step's kernels are built for), from `nvidia-smi` (tch has no query).
fn cuda_capability(visible: i64) -> Option<String> {
    if visible == 0 {
        return None;
    }
    let mask = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let physical = mask.split(',').next().and_then(|id| id.trim().parse::<usize>().ok()).unwrap_or(0);
    let cap = nvidia_smi("compute_cap").into_iter().nth(physical)?;
    Some(format!("sm_{}", cap.trim().replace('.', "")))
}

#[cfg(hadamard_cuda)]
extern "C" {
    fn scalemake_cuda_peak_allocated(device: i32) -> i64;
    fn scalemake_cuda_reset_peak(device: i32) -> bool;
}

/// Starts a new peak of the CUDA caching allocator's bytes on `device`
/// (nothing on the CPU, or in a build without the CUDA toolkit).
pub fn reset_peak_memory(device: tch::Device) {
    #[cfg(hadamard_cuda)]
    if let tch::Device::Cuda(index) = device {
        // SAFETY: plain C call; a refusal only means no peak to report.
        let _ = unsafe { scalemake_cuda_reset_peak(index as i32) };
    }
    let _ = device;
}

/// Peak bytes the CUDA caching allocator handed out on `device` since the
/// last [`reset_peak_memory`]: `None` on the CPU or in a build without the
/// CUDA toolkit.
pub fn peak_memory(device: tch::Device) -> Option<u64> {
    #[cfg(hadamard_cuda)]
    if let tch::Device::Cuda(index) = device {
        // SAFETY: plain C call.
        let bytes = unsafe { scalemake_cuda_peak_allocated(index as i32) };
        return u64::try_from(bytes).ok();
    }
    let _ = device;
    None
}

/// Whether libtorch can use CUDA here (after loading its CUDA library).
pub fn cuda_ready() -> bool {
    load_cuda_runtime().is_ok() && tch::Cuda::is_available()
}

/// The device a job's `device:` names (`auto`, `cpu`, `cuda`, `cuda:N`) and
/// a description of it for logs, e.g. `cuda:0 (NVIDIA H100 80GB HBM3, 81559 MiB)`.
pub fn resolve(spec: &str) -> Result<(tch::Device, String), String> {
    let cuda = load_cuda_runtime().is_ok() && tch::Cuda::is_available();
    let count = if cuda { tch::Cuda::device_count().max(0) as usize } else { 0 };
    let index = match spec {
        "cpu" => None,
        "auto" => (count > 0).then_some(0),
        "cuda" => Some(0),
        other => Some(
            other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("device `{other}`: expected auto, cpu, cuda or cuda:N"))?,
        ),
    };
    match index {
        None => Ok((tch::Device::Cpu, format!("cpu ({} threads)", tch::get_num_threads()))),
        Some(i) if i < count => {
            // nvidia-smi lists every GPU; libtorch's i-th is the i-th of the mask.
            let mask = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
            let physical = mask.split(',').nth(i).and_then(|id| id.trim().parse::<usize>().ok()).unwrap_or(i);
            let name = gpu_names().get(physical).cloned().unwrap_or_else(|| "unknown GPU".into());
            Ok((tch::Device::Cuda(i), format!("cuda:{i} ({name})")))
        }
        Some(i) => Err(format!("device cuda:{i} was asked for, but libtorch sees {count} CUDA device(s)")),
    }
}

/// Everything `scalemake doctor` and the GPU slot count need, as JSON.
pub fn report() -> serde_json::Value {
    let cuda_lib = load_cuda_runtime();
    let cuda = tch::Cuda::is_available();
    let count = if cuda { tch::Cuda::device_count().max(0) } else { 0 };
    serde_json::json!({
        "tch": "0.24",
        "libtorch": libtorch_version(),
        "libtorch_dir": libtorch_lib_dir(),
        "libtorch_cuda": match &cuda_lib { Ok(p) => serde_json::json!({"loaded": p}), Err(e) => serde_json::json!({"error": e}) },
        "cuda_available": cuda,
        "cuda_devices": count,
        "cudnn_available": cuda && tch::Cuda::cudnn_is_available(),
        "gpu_names": gpu_names(),
        "cuda_capability": cuda_capability(count),
        "cpu_threads": tch::get_num_threads(),
        "hadamard_kernel": crate::model::variants::hadamard::KERNEL_BUILT,
    })
}
