//! 1. Bakes the libtorch library directory into the binary's rpath so that
//!    `scalemake` runs without `LD_LIBRARY_PATH` after `scripts/setup.sh`
//!    (torch-sys reports it as `DEP_TCH_LIBTORCH_LIB`).
//! 2. Builds the CUDA Hadamard kernel (`src/model/variants/hadamard.cu`) and its autograd
//!    shim (`src/model/variants/hadamard_shim.cpp`) when an nvcc is found — `$NVCC`
//!    (`SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh` installs one beside the venv and
//!    sets it), the venv's `nvidia/cu13/bin/nvcc`, or `/usr/local/cuda/bin/nvcc` — and sets
//!    `cfg(hadamard_cuda)`, with the allocator's peak-memory query
//!    (`csrc/cuda_memory.cpp`, which needs the same CUDA headers). Without one the
//!    build skips them cleanly: the Hadamard transform uses the Kronecker
//!    reference everywhere and benchmarks report no peak memory.
//!    `SCALEMAKE_CUDA_KERNELS=0` skips it on purpose.
//! 3. Builds the AOTInductor package runner (`csrc/compiled_step.cpp`),
//!    which the compiled training step needs on every device.
//! 4. Builds the c10d shim (`csrc/distributed.cpp`) for data-parallel runs:
//!    with gloo where its headers are found (`$SCALEMAKE_GLOO_INCLUDE`, or
//!    `.deps/gloo/usr/include` that `scripts/setup.sh` unpacks from Debian's
//!    libgloo-dev: the torch wheel ships c10d's headers, not gloo's) and
//!    NCCL where the wheel's `nvidia/nccl` headers are.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-check-cfg=cfg(hadamard_cuda)");
    let Ok(lib_dir) = env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:rustc-env=SCALEMAKE_LIBTORCH_LIB={lib_dir}");
    build_package_runner(Path::new(&lib_dir));
    build_distributed(Path::new(&lib_dir));
    build_cuda_kernels(Path::new(&lib_dir));
}

/// The torch wheel's C++ headers (`torch/include` beside `torch/lib`).
fn torch_includes(torch_lib: &Path) -> [PathBuf; 2] {
    let include = torch_lib.parent().expect("torch/lib has a parent").join("include");
    [include.join("torch/csrc/api/include"), include]
}

fn build_package_runner(torch_lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/compiled_step.cpp");
    let mut runner = cc::Build::new();
    runner.cpp(true).std("c++17").file("csrc/compiled_step.cpp").includes(torch_includes(torch_lib));
    // The PyPI torch wheels are built with the C++11 ABI.
    runner.define("_GLIBCXX_USE_CXX11_ABI", "1").flag("-w").compile("scalemake_package");
}

/// Where gloo's headers are, if anywhere.
fn gloo_include() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=SCALEMAKE_GLOO_INCLUDE");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let candidates = [
        env::var_os("SCALEMAKE_GLOO_INCLUDE").map(PathBuf::from),
        Some(manifest.join("../.deps/gloo/usr/include")),
        Some(PathBuf::from("/usr/include")),
    ];
    candidates.into_iter().flatten().find(|dir| dir.join("gloo/config.h").is_file())
}

fn build_distributed(torch_lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/distributed.cpp");
    let mut shim = cc::Build::new();
    shim.cpp(true).std("c++17").file("csrc/distributed.cpp").includes(torch_includes(torch_lib));
    if let Some(gloo) = gloo_include() {
        println!("cargo:rerun-if-changed={}", gloo.join("gloo/config.h").display());
        shim.include(gloo).define("USE_C10D_GLOO", None);
    } else {
        println!(
            "cargo:warning=no gloo headers (run scripts/setup.sh): data-parallel CPU training is off in this build"
        );
    }
    // NCCL's c10d header needs the CUDA toolkit's headers too (the
    // runtime's alone lack crt/): those of the nvcc that builds the kernels.
    let site_packages = torch_lib.parent().and_then(Path::parent);
    let nccl = site_packages.map(|s| s.join("nvidia/nccl/include")).filter(|d| d.join("nccl.h").is_file());
    let cuda = site_packages
        .and_then(find_nvcc)
        .and_then(|nvcc| nvcc.parent().and_then(Path::parent).map(|root| root.join("include")))
        .filter(|d| d.join("crt/host_config.h").is_file());
    if let (Some(nccl), Some(cuda)) = (nccl, cuda) {
        shim.include(nccl).include(cuda).define("USE_C10D_NCCL", None);
        // cuda.h is the runtime wheel's, where nvcc was installed elsewhere ($NVCC).
        if let Some(runtime) = site_packages.map(|s| s.join("nvidia/cu13/include")).filter(|d| d.is_dir()) {
            shim.include(runtime);
        }
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    // The PyPI torch wheels are built with the C++11 ABI.
    shim.define("_GLIBCXX_USE_CXX11_ABI", "1").flag("-w").compile("scalemake_distributed");
}

/// The nvcc to use, if any.
fn find_nvcc(site_packages: &Path) -> Option<PathBuf> {
    let candidates = [
        env::var_os("NVCC").map(PathBuf::from),
        Some(site_packages.join("nvidia/cu13/bin/nvcc")),
        Some(PathBuf::from("/usr/local/cuda/bin/nvcc")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn build_cuda_kernels(torch_lib: &Path) {
    for path in [
        "src/model/variants/hadamard.cu",
        "src/model/variants/hadamard.h",
        "src/model/variants/hadamard_shim.cpp",
        "csrc/cuda_memory.cpp",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=SCALEMAKE_CUDA_KERNELS");
    if env::var("SCALEMAKE_CUDA_KERNELS").as_deref() == Ok("0") {
        return;
    }
    let Some(site_packages) = torch_lib.parent().and_then(Path::parent) else { return };
    // An nvcc installed into the venv by hand adds files here: rebuild with the kernel.
    let pip_cuda_dir = site_packages.join("nvidia/cu13");
    if pip_cuda_dir.is_dir() {
        println!("cargo:rerun-if-changed={}", pip_cuda_dir.display());
    }
    let Some(nvcc) = find_nvcc(site_packages) else { return };
    let cuda_root = nvcc.parent().and_then(Path::parent).expect("nvcc lives in <cuda>/bin").to_path_buf();
    let pip_cuda = site_packages.join("nvidia/cu13");
    let includes: Vec<PathBuf> =
        [cuda_root.join("include"), pip_cuda.join("include")].into_iter().filter(|p| p.is_dir()).collect();
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    let object = out.join("hadamard.o");
    let mut nvcc_cmd = Command::new(&nvcc);
    nvcc_cmd.args(["-c", "src/model/variants/hadamard.cu", "-O3", "-std=c++17", "-Xcompiler", "-fPIC"]);
    // Ampere and Hopper (the H100 this project benchmarks on), plus PTX for newer GPUs.
    nvcc_cmd.args([
        "-gencode",
        "arch=compute_80,code=sm_80",
        "-gencode",
        "arch=compute_90,code=sm_90",
        "-gencode",
        "arch=compute_90,code=compute_90",
    ]);
    for dir in &includes {
        nvcc_cmd.arg("-I").arg(dir);
    }
    let status =
        nvcc_cmd.arg("-o").arg(&object).status().unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
    assert!(status.success(), "{} failed on src/model/variants/hadamard.cu", nvcc.display());

    let mut shim = cc::Build::new();
    shim.cpp(true)
        .std("c++17")
        .file("src/model/variants/hadamard_shim.cpp")
        .file("csrc/cuda_memory.cpp")
        .object(&object)
        .includes(torch_includes(torch_lib));
    for dir in &includes {
        shim.include(dir);
    }
    // The PyPI torch wheels are built with the C++11 ABI.
    shim.define("_GLIBCXX_USE_CXX11_ABI", "1").flag("-w").compile("scalemake_cuda");

    let cudart_dir = [pip_cuda.join("lib"), cuda_root.join("lib64")]
        .into_iter()
        .find(|d| d.join("libcudart.so.13").exists() || d.join("libcudart.so").exists());
    let Some(cudart_dir) = cudart_dir else { panic!("nvcc found at {} but no libcudart next to it", nvcc.display()) };
    println!("cargo:rustc-link-search=native={}", cudart_dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart_dir.display());
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    if cudart_dir.join("libcudart.so").exists() {
        println!("cargo:rustc-link-lib=dylib=cudart");
    } else {
        println!("cargo:rustc-link-lib=dylib:+verbatim=libcudart.so.13");
    }
    println!("cargo:rustc-cfg=hadamard_cuda");
}
