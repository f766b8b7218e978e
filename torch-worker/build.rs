//! Bakes the libtorch library directory into the binary's rpath so that
//! `scalemake` runs without `LD_LIBRARY_PATH` after `scripts/setup.sh`.
//! torch-sys reports the directory it linked against as `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        println!("cargo:rustc-env=SCALEMAKE_LIBTORCH_LIB={lib_dir}");
    }
}
