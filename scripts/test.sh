#!/usr/bin/env bash
# Runs the whole test suite (what CI runs): sets up the venv and builds via
# scripts/setup.sh, then runs every test of the workspace with nextest (or
# cargo test where nextest is missing). Tests use the release profile so the
# libtorch-linked build from setup is reused, not compiled twice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast "$@"
else
  cargo test --release --workspace --no-fail-fast "$@"
fi
