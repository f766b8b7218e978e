//! The CUDA kernels of `src/model/variants/hadamard.cu`, run on the CPU:
//! `tests/cuda_emulation/driver.cpp` compiles the kernel file as C++ with
//! `emulate_cuda.h` (each CUDA thread a fiber, barriers and warp shuffles
//! emulated), runs every kernel — the transform at 2^8 … 2^15 in fp32, bf16
//! and fp16, the fused FastFood layer forward and backward — and checks
//! them against double-precision references, with the host side's refusals.
//! This is how machines without a GPU (CI) test the kernels' index
//! arithmetic, shuffles and shared-memory exchanges; timing and the real
//! hardware's behaviour are the GPU check's (`check-hadamard`).

use std::path::Path;
use std::process::Command;

#[test]
fn hadamard_kernels_match_their_references_under_emulation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = dir.path().join("driver");
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let compiled = Command::new(&compiler)
        .args(["-std=c++17", "-O2", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas"])
        .arg("-I")
        .arg(root.join("src/model/variants"))
        .arg(root.join("tests/cuda_emulation/driver.cpp"))
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{compiler}` (set CXX): {e}"));
    assert!(
        compiled.status.success(),
        "{compiler} failed on the emulated kernels:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let warnings = String::from_utf8_lossy(&compiled.stderr);
    assert!(!warnings.contains("warning:"), "the kernels compile with warnings:\n{warnings}");
    let run = Command::new(&binary).output().expect("run the emulated kernels");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "emulated kernels out of tolerance:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Every case ran: 24 transforms + 1 unnormalised, 8 FastFood layers × 6 checks, the refusals.
    let cases = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(cases, 24 + 1 + 8 * 6 + 1, "{stdout}");
}
