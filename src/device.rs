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

/// What the machine's libtorch offers, as compiled steps are keyed on it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// The linked libtorch's version (`2.11.0+cu130`).
    pub torch: Option<String>,
    /// The first visible GPU's compute capability (`sm_90`), if libtorch sees one.
    pub cuda_capability: Option<String>,
}

/// This machine's [`Platform`], asked of the worker once per process and
/// remembered between processes in the user's cache directory while the
/// machine (host, boot), the worker binary and `CUDA_VISIBLE_DEVICES` are
/// the same, so that a no-op `status` does not pay the worker's start-up.
/// A worker that cannot be asked gives an empty platform (keys then say
/// `unknown`, and the node that needs the worker fails when it runs).
pub fn platform() -> &'static Platform {
    static PLATFORM: std::sync::OnceLock<Platform> = std::sync::OnceLock::new();
    PLATFORM.get_or_init(|| {
        let stamp = platform_stamp();
        let file = platform_cache_file();
        if let (Some(stamp), Some(file)) = (&stamp, &file) {
            let cached = std::fs::read(file).ok().and_then(|b| serde_json::from_slice::<(String, Platform)>(&b).ok());
            if let Some((_, platform)) = cached.filter(|(saved, _)| saved == stamp) {
                return platform;
            }
        }
        let Ok(report) = report() else { return Platform::default() };
        let platform = Platform {
            torch: report["libtorch"].as_str().map(str::to_string),
            cuda_capability: report["cuda_capability"].as_str().map(str::to_string),
        };
        if let (Some(stamp), Some(file)) = (stamp, file) {
            if let Ok(text) = serde_json::to_vec(&(stamp, &platform)) {
                // Written whole under a temporary name: readers see the old file or the new.
                let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
                if std::fs::create_dir_all(file.parent().unwrap_or(&file)).is_ok() && std::fs::write(&tmp, text).is_ok()
                {
                    let _ = std::fs::rename(&tmp, &file);
                }
            }
        }
        platform
    })
}

/// `$XDG_CACHE_HOME/scalemake/platform-<host>.json`.
fn platform_cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(base.join("scalemake").join(format!("platform-{}.json", host.trim())))
}

/// What must be unchanged for a remembered platform to hold: the boot, the
/// worker binary (path, size, mtime) and the GPU mask.
fn platform_stamp() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let worker = worker_path();
    let meta = std::fs::metadata(&worker).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let mask = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    Some(format!("{} {} {} {mtime} {mask}", boot.trim(), worker.display(), meta.len()))
}
