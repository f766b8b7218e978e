#!/usr/bin/env bash
# Installs everything scalemake needs and builds it. Idempotent: a second run
# only checks that the venv and corpus are in place and lets cargo decide the
# build is up to date.
#
#  1. a Python venv with torch==2.11.0 from PyPI (libtorch for tch 0.24). It is
#     kept in a user cache dir keyed by the torch version, so fresh clones (CI)
#     reuse it, and linked into the project as .venv; rebuilt when broken.
#  2. real French prose for the data path (scripts/fetch-corpus.sh → data/fr/).
#     Also gloo's C++ headers (Debian's libgloo-dev, unpacked without root)
#     for the worker's data-parallel shim.
#  3. `cargo build --release` of the workspace with LIBTORCH_USE_PYTORCH=1:
#     `scalemake` (the engine) and `scalemake-torch` (the libtorch worker, with
#     an rpath to the venv's torch/lib), linked as bin/.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
TOKENIZERS_VERSION=0.23.3
TENSORBOARD_VERSION=2.21.0
PYARROW_VERSION=26.0.1
GLOO_DEB_VERSION=0.0~git20220518.5b14351-3
PYTHON=${PYTHON:-python3}
CACHE_ROOT=${SCALEMAKE_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalemake}
VENV=$CACHE_ROOT/venv-torch-$TORCH_VERSION

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

venv_is_healthy() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" - "$TORCH_VERSION" >/dev/null 2>&1 <<'PY'
import sys, pathlib, torch
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
lib = pathlib.Path(torch.__file__).parent / "lib"
assert (lib / "libtorch_cpu.so").exists()
PY
}

if ! venv_is_healthy; then
  say "creating venv with torch==$TORCH_VERSION in $VENV (one-time, ~3 GB)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
  venv_is_healthy || { say "torch install in $VENV is broken"; exit 1; }
fi

# Python `tokenizers`: the reference our tokenizer.json is tested against.
if ! "$VENV/bin/python" -c 'import tokenizers' >/dev/null 2>&1; then
  say "installing tokenizers==$TOKENIZERS_VERSION into the venv"
  "$VENV/bin/pip" install --quiet "tokenizers==$TOKENIZERS_VERSION"
fi

# Python `tensorboard`: its own reader checks our event files in the tests.
if ! "$VENV/bin/python" -c 'import tensorboard' >/dev/null 2>&1; then
  say "installing tensorboard==$TENSORBOARD_VERSION into the venv"
  "$VENV/bin/pip" install --quiet "tensorboard==$TENSORBOARD_VERSION"
fi

# Python `pyarrow`: writes the Parquet files the corpus tests read, as
# Hugging Face datasets ship them.
if ! "$VENV/bin/python" -c 'import pyarrow' >/dev/null 2>&1; then
  say "installing pyarrow==$PYARROW_VERSION into the venv"
  "$VENV/bin/pip" install --quiet "pyarrow==$PYARROW_VERSION"
fi

# nvcc from PyPI, only when asked (SCALEMAKE_CUDA_BUILD=1): with it the
# worker build compiles the CUDA Hadamard kernel (torch-worker/src/model/variants/hadamard.cu) for GPU
# machines; without it the build skips the kernel and uses the reference.
# It goes beside the venv, not into it: the venv is shared with every clone
# (CI's included), and an nvcc there would make all their builds compile
# the kernels. This build alone is pointed at it ($NVCC, read by build.rs).
NVCC_DIR=$CACHE_ROOT/nvcc-13.0
if [ "${SCALEMAKE_CUDA_BUILD:-0}" = 1 ]; then
  if [ ! -x "$NVCC_DIR/nvidia/cu13/bin/nvcc" ]; then
    say "installing nvcc 13.0 (nvidia-cuda-nvcc, -crt, -cccl, nvidia-nvvm) into $NVCC_DIR"
    rm -rf "$NVCC_DIR.tmp"
    "$VENV/bin/pip" install --quiet --no-deps --target "$NVCC_DIR.tmp" "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-nvvm==13.0.*"
    rm -rf "$NVCC_DIR" && mv "$NVCC_DIR.tmp" "$NVCC_DIR"
  fi
  export NVCC=$NVCC_DIR/nvidia/cu13/bin/nvcc
fi

# gloo's C++ headers, for the worker's c10d shim (data-parallel training on
# the CPU, torch-worker/csrc/distributed.cpp): the torch wheel ships gloo's
# library code inside libtorch_cpu but not its headers. Debian's
# libgloo-dev has them; `apt-get download` and `dpkg-deb -x` need no root.
# Kept beside the venv, linked as .deps/gloo.
GLOO_DIR=$CACHE_ROOT/libgloo-dev-$GLOO_DEB_VERSION
if [ ! -f "$GLOO_DIR/usr/include/gloo/config.h" ]; then
  say "unpacking gloo's headers (Debian libgloo-dev $GLOO_DEB_VERSION) into $GLOO_DIR"
  deb_dir=$(mktemp -d)
  if ! (cd "$deb_dir" && apt-get download "libgloo-dev=$GLOO_DEB_VERSION" >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$deb_dir" && apt-get download "libgloo-dev=$GLOO_DEB_VERSION" >/dev/null 2>&1) ||
      (cd "$deb_dir" && apt-get download libgloo-dev >/dev/null) ||
      { say "apt-get download libgloo-dev failed: data-parallel CPU training will be off in this build"; }
  fi
  if ls "$deb_dir"/libgloo-dev_*.deb >/dev/null 2>&1; then
    rm -rf "$GLOO_DIR.tmp" && mkdir -p "$GLOO_DIR.tmp"
    dpkg-deb -x "$deb_dir"/libgloo-dev_*.deb "$GLOO_DIR.tmp"
    rm -rf "$GLOO_DIR" && mv "$GLOO_DIR.tmp" "$GLOO_DIR"
  fi
  rm -rf "$deb_dir"
fi
mkdir -p .deps
if [ -d "$GLOO_DIR" ] && [ "$(readlink .deps/gloo 2>/dev/null)" != "$GLOO_DIR" ]; then
  rm -rf .deps/gloo
  ln -s "$GLOO_DIR" .deps/gloo
fi

# Project-local handle on the venv (.cargo/config.toml points torch-sys here).
if [ "$(readlink .venv 2>/dev/null)" != "$VENV" ]; then
  rm -rf .venv
  ln -s "$VENV" .venv
fi

# torch-sys finds libtorch by asking the active venv's python.
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
scripts/fetch-corpus.sh

say "building scalemake (release)"
cargo build --release --quiet --workspace --bins
mkdir -p bin
ln -sf ../target/release/scalemake bin/scalemake
ln -sf ../target/release/scalemake-torch bin/scalemake-torch
say "ready: bin/scalemake"
