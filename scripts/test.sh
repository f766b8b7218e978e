#!/usr/bin/env bash
# Runs the whole test suite (what CI runs): sets up the venv and builds via
# scripts/setup.sh, then runs every test of the workspace with nextest (or
# cargo test where nextest is missing). Tests use the release profile so the
# libtorch-linked build from setup is reused, not compiled twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# System packages some tests use; without them those tests fail and say what is missing.
# Installed only as root with apt (a CI machine), never with
# SCALEMAKE_NO_SYSTEM_PACKAGES=1. Chromium renders the HTML report; Slurm
# (scripts/slurm-local.sh) runs the Slurm backend's tests.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${SCALEMAKE_NO_SYSTEM_PACKAGES:-}" ]; then
  if ! command -v chromium >/dev/null; then
    echo "test.sh: installing Debian's chromium for the browser tests (report, serve)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium >/tmp/scalemake-apt.log 2>&1 ||
      { apt-get update -q >>/tmp/scalemake-apt.log 2>&1 && apt-get install -y -q --no-install-recommends chromium >>/tmp/scalemake-apt.log 2>&1; } ||
      echo "test.sh: chromium could not be installed (see /tmp/scalemake-apt.log); the browser test will fail"
  fi
  # The zstd CLI writes the .zst corpus files tests/formats.rs reads.
  if ! command -v zstd >/dev/null; then
    echo "test.sh: installing Debian's zstd for the corpus format tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends zstd >>/tmp/scalemake-apt.log 2>&1 ||
      echo "test.sh: zstd could not be installed (see /tmp/scalemake-apt.log); the .zst test will fail"
  fi
  # A real single-node Slurm for tests/slurm.rs (the tests also bring it up
  # themselves; doing it once here keeps the install out of their time).
  if ! bash scripts/slurm-local.sh status >/dev/null 2>&1; then
    echo "test.sh: starting a local Slurm for the Slurm backend's tests"
    bash scripts/slurm-local.sh up || echo "test.sh: no local Slurm; the Slurm tests will fail and say why"
  fi
fi
# The S3 server tests/remote.rs starts on 127.0.0.1 (s3s-fs; MinIO is not
# installable here). Built once into a cache outside the checkout and reused;
# 0.14.1 is the last release that builds with Rust 1.95.
S3S_FS="${SCALEMAKE_S3S_FS:-$HOME/.cache/scalemake/tools/bin/s3s-fs}"
if [ ! -x "$S3S_FS" ]; then
  echo "test.sh: installing the S3 test server s3s-fs into $(dirname "$(dirname "$S3S_FS")")"
  cargo install s3s-fs --version =0.14.1 --locked --features binary --root "$(dirname "$(dirname "$S3S_FS")")" ||
    echo "test.sh: s3s-fs could not be installed; the remote cache's S3 tests will fail and say so"
fi
export SCALEMAKE_S3S_FS="$S3S_FS"
# The MLflow tracking server tests/mlflow.rs starts on 127.0.0.1, in a venv of
# its own next to the torch one (mlflow brings ~75 packages that must not move
# under torch and tensorboard, and the users of setup.sh never need it).
# Rebuilt when its mlflow is not this version; ~1 min and ~850 MB once.
MLFLOW_VERSION=3.17.2
MLFLOW_VENV="${SCALEMAKE_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalemake}/venv-mlflow-$MLFLOW_VERSION"
mlflow_is_healthy() {
  [ -x "$MLFLOW_VENV/bin/mlflow" ] &&
    "$MLFLOW_VENV/bin/python" -c 'import sys, importlib.metadata as m; assert m.version("mlflow") == sys.argv[1]' "$MLFLOW_VERSION" 2>/dev/null
}
if ! mlflow_is_healthy; then
  echo "test.sh: installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV"
  rm -rf "$MLFLOW_VENV"
  { "${PYTHON:-python3}" -m venv "$MLFLOW_VENV" && "$MLFLOW_VENV/bin/pip" install --quiet "mlflow==$MLFLOW_VERSION"; } ||
    echo "test.sh: mlflow could not be installed; the MLflow tests will fail and say so"
fi
export SCALEMAKE_MLFLOW="$MLFLOW_VENV/bin/mlflow"
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast "$@"
else
  cargo test --release --workspace --no-fail-fast "$@"
fi
