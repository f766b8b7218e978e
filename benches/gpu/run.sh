#!/usr/bin/env bash
# Every GPU check of the project (issue 16) in one call on the lent H200
# machine. Nothing is built there (it has no cargo): both binaries are built
# here, with the CUDA Hadamard kernel, stripped and carried; torch is the
# machine's /opt/torch/.venv (2.11.0+cu130, the same wheel as our venv).
# Everything lands under $OUT; the last lines printed are the summary.
#
# Here, first (builds, strips to target/carry/, checks the copy starts
# against a torch 2.11.0+cu130 lib dir and fits the 64 MiB carry limit):
#   bash benches/gpu/run.sh --prepare
# Then one call (about 9 minutes; each part has its own time cap):
#   run(command="bash benches/gpu/run.sh", carry=["target/carry", "data/fr"], timeout_s=600)
# or the parts, back to back while the machine is warm (cache/ survives a warm
# machine, so a second `study` call resumes a study cut short by its cap):
#   run(command="bash benches/gpu/run.sh bench", ..., timeout_s=360)
#   run(command="bash benches/gpu/run.sh study", ..., timeout_s=420)
#
# Parts:
#   bench: devices and `scalemake doctor`; the Hadamard kernel against the
#          reference and timed against a device-to-device copy; flat-buffer
#          Adam against per-tensor Adam; training throughput and MFU for
#          xxsmall, xsmall, small (bf16, batch 80 × 1024) against PyTorch
#          eager and torch.compile on the same GPU, with the worker's phase
#          timings and the torch profiler's tables (where the time goes).
#   variants: baseline, doped, FastFood and block-diagonal at xsmall's width
#          and depth, eager and compiled (issue 28: compile times included).
#   study: `scalemake run experiments/gpu-small.yaml` end to end (engine,
#          worker, fits, report); the report and the run's timings copied.
#          Its train nodes now run compiled (`compile: auto` on a GPU): the
#          wall time against the 176 s of 2026-12-04 (eager) is the before/after.
#   structured: issue 33 in one call: the Hadamard kernels against
#          the reference (the transform at 2^8 … 2^15 in fp32, bf16, fp16; the
#          fused FastFood layer, forward and every gradient); `bench-hadamard`
#          (each against a device-to-device copy of the same tensor, and the
#          fused layer against its tensor operations); then the four variants
#          side by side at xsmall and small (bf16, 80 × 1024): eager with the
#          kernels, FastFood again with them off (the before), and the
#          compiled step for baseline and block-diagonal at xsmall (≤ 5.5 min).
#   families: `scalemake run experiments/gpu-families.yaml` end to end (the
#          four families, 20 runs; capped at 6 min: a second call on the warm
#          machine resumes from its cache), report and fits copied.
#   parallel: the data-parallel NCCL path at N = 1 against the plain path
#          (issue 32, target ≤2% overhead): the same xsmall bf16 run (GPT-2's
#          tokenizer, batch 80 × 1024, 40 steps) as `devices: 1`, then as
#          rank 0 of a one-rank NCCL group (SCALEMAKE_RANK/WORLD/MASTER set:
#          every step all-reduces the 124M-float gradient through NCCL).
# With the compiled step (issue 28) the parts no longer fit one call: run
# `bench` (≤ 8 min), then `study` and `variants` while the machine is warm.
# Issue 33's two calls, back to back on one warm machine (data/fr-large.parquet
# from `--prepare`):
#   run(command="bash benches/gpu/run.sh structured", carry=["target/carry", "data/fr-large.parquet"], timeout_s=330)
#   run(command="bash benches/gpu/run.sh families", carry=["target/carry", "data/fr-large.parquet"], timeout_s=400)
set -euo pipefail
cd "$(dirname "$0")/../.."

CARRY=target/carry
DEVICE_TORCH=2.11.0+cu130

if [ "${1:-}" = "--prepare" ]; then
  [ -x .venv/bin/python ] || { echo "run scripts/setup.sh first"; exit 1; }
  SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh # nvcc from PyPI → the worker gets the CUDA kernel
  readelf -d target/release/scalemake-torch | grep -q 'libcudart' ||
    { echo "the worker was built without the CUDA kernel (no nvcc found)"; exit 1; }
  readelf -d target/release/scalemake-torch | grep -q 'libtorch_cuda' ||
    { echo "the worker was built without NCCL's c10d (no CUDA headers found)"; exit 1; }
  mkdir -p "$CARRY"
  for bin in scalemake scalemake-torch; do
    strip -o "$CARRY/$bin" "target/release/$bin"
  done
  # The copy must start against the device's torch, not through the rpath to
  # this checkout's venv: hide that by loading through an explicit lib dir.
  torch_lib=$(.venv/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  cuda_lib=$(dirname "$torch_lib")/../nvidia/cu13/lib
  version=$(.venv/bin/python -c 'import torch; print(torch.__version__)')
  [ "$version" = "$DEVICE_TORCH" ] || echo "warning: local torch $version, the device has $DEVICE_TORCH"
  # Every library the worker needs must be in torch/lib or nvidia/cu13/lib
  # (LD_LIBRARY_PATH there) or the system's own.
  for lib in $(readelf -d "$CARRY/scalemake-torch" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [ -e "$torch_lib/$lib" ] || [ -e "$cuda_lib/$lib" ] || ldconfig -p | grep -q "^\s*$lib " ||
      { echo "the worker needs $lib, which the device's torch does not ship"; exit 1; }
  done
  LD_LIBRARY_PATH="$torch_lib:$cuda_lib" "$CARRY/scalemake-torch" devices
  "$CARRY/scalemake" doctor >/dev/null
  "$CARRY/scalemake" plan experiments/gpu-small.yaml --gpu H200 --mfu 0.1 | tail -3
  # The large corpus, packed for a machine without network (issue 33's study).
  if [ ! -f data/fr-large.parquet ]; then
    large=$(mktemp -d)
    scripts/fetch-corpus.sh --large "$large"
    .venv/bin/python scripts/pack-corpus.py "$large" data/fr-large.parquet
    rm -rf "$large"
  fi
  "$CARRY/scalemake" plan experiments/gpu-families.yaml --gpu H100 | tail -3
  # What each call carries: the tracked tree, the binaries, a corpus (the
  # default one for study; the packed large one for structured, families and
  # parallel; bench trains on random tokens).
  tracked=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
  for corpus in data/fr data/fr-large.parquet; do
    carried=$(du -cb "$CARRY" "$corpus" | tail -1 | cut -f1)
    total=$(((tracked + carried) / 1048576))
    echo "carry with $corpus: ${total} MiB of 64 (tracked $((tracked / 1048576)), binaries and corpus $((carried / 1048576)))"
    if [ "$total" -ge 64 ]; then
      [ "$corpus" = data/fr ] || { echo "over the carry limit"; exit 1; }
      echo "  over the limit: the study part (gpu-small.yaml, data/fr) cannot be carried with these binaries"
    fi
  done
  exit 0
fi

PART=${1:-all}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-/opt/torch/.venv/bin/python}
SCALEMAKE=$PWD/$CARRY/scalemake
WORKER=$PWD/$CARRY/scalemake-torch
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
# libcudart.so.13 (the kernel's) sits in the nvidia wheel beside torch.
export LD_LIBRARY_PATH="$TORCH_LIB:$(dirname "$TORCH_LIB")/../nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
START=$SECONDS
step() { echo; echo "== $* (at $((SECONDS - START)) s)"; }
# `capped N cmd…`: runs cmd for at most N seconds; a failure is noted, not fatal.
capped() {
  local cap=$1
  shift
  timeout "$cap" "$@" || echo "!! exited with $? (cap ${cap} s): $*" | tee -a "$OUT/failures.txt"
}

bench() {
  step "devices and doctor"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/nvidia-smi.csv" || true
  capped 60 "$WORKER" devices | tee "$OUT/devices.json"
  capped 60 "$SCALEMAKE" doctor | tee "$OUT/doctor.txt"

  step "hadamard kernel: agreement with the reference, then timing against a copy"
  capped 60 "$WORKER" check-hadamard | tee "$OUT/hadamard-check.txt"
  capped 60 "$WORKER" bench-hadamard cuda | tee "$OUT/hadamard.json"

  step "optimizer: flat buffers vs per-tensor"
  capped 60 "$WORKER" bench-optimizer small cuda | tee "$OUT/optimizer.json"

  step "training throughput: scalemake eager and compiled vs PyTorch eager vs torch.compile"
  SCALEMAKE_PYTHON="$PY" capped "${THROUGHPUT_CAP:-420}" "$PY" benches/train_throughput.py --worker "$WORKER" --python "$PY" --device cuda --bf16 \
    --presets "${PRESETS:-xxsmall,xsmall,small}" --batch 80 --micro-batch "${MICRO:-16}" --steps "${STEPS:-10}" --warmup 3 --reps 1 \
    --compile --scalemake-compiled --profile-dir "$OUT/profile" | tee "$OUT/throughput.md"
}

variants() {
  step "the four variants at xsmall's width and depth, eager and compiled"
  for variant in baseline doped fastfood blockdiag_hadamard; do
    for mode in eager compiled; do
      extra=()
      [ "$mode" = compiled ] && extra=(--compiled torch-worker/python/compile_step.py)
      SCALEMAKE_PYTHON="$PY" capped 240 "$WORKER" bench --preset xsmall --variant "$variant" --device cuda --bf16 \
        --batch 80 --micro-batch "${MICRO:-16}" --steps 10 --warmup 3 "${extra[@]}" | tee -a "$OUT/variants.jsonl"
    done
  done
}

# `run_study NAME CAP VARIANTS…`: experiments/NAME.yaml end to end from the
# cache here; its plan, run log, status, fits, report and the width-768 runs'
# logs of VARIANTS kept under $OUT.
run_study() {
  local name=$1 cap=$2
  shift 2
  local file=experiments/$name.yaml
  step "$name.yaml end to end"
  "$SCALEMAKE" plan "$file" --gpu H200 | tee "$OUT/$name-plan.txt" | tail -3
  SCALEMAKE_PYTHON="$PY" capped "$cap" "$SCALEMAKE" run --keep-going "$file" 2>&1 | tee "$OUT/$name-run.txt" |
    grep -v '^ *built\|^building' | tail -20
  "$SCALEMAKE" status "$file" > "$OUT/$name-status.txt" 2>&1 || true
  mkdir -p "$OUT/$name"
  for node in laws report; do
    key=$("$SCALEMAKE" show -f "$file" "$node" | awk '$1 == "key" { print $2 }')
    [ -d "cache/objects/$key/out" ] && cp -r "cache/objects/$key/out" "$OUT/$name/$node"
  done
  for variant in "$@"; do
    "$SCALEMAKE" log -f "$file" "train[width=768,variant=$variant]" > "$OUT/$name/train-768-$variant.log" 2>&1 || true
  done
}

study() { run_study gpu-small "${STUDY_CAP:-540}" baseline; }

structured() {
  step "hadamard kernels: agreement with the reference"
  capped 90 "$WORKER" check-hadamard | tee "$OUT/hadamard-check.txt" | tail -3
  step "hadamard kernels: against a copy, and the fused FastFood layer against its tensor operations"
  capped 90 "$WORKER" bench-hadamard cuda | tee "$OUT/hadamard.json" | tail -c 400
  step "the four variants side by side (bf16, 80 x 1024)"
  local flags=(--device cuda --bf16 --batch 80 --micro-batch "${MICRO:-16}" --steps 10 --warmup 3 --phases)
  for preset in xsmall small; do
    for variant in baseline doped fastfood blockdiag_hadamard; do
      capped 60 "$WORKER" bench --preset "$preset" --variant "$variant" "${flags[@]}" | tee -a "$OUT/variants.jsonl"
    done
    # The before: FastFood through tensor operations and the transform alone.
    SCALEMAKE_HADAMARD_KERNEL=off capped 60 "$WORKER" bench --preset "$preset" --variant fastfood "${flags[@]}" |
      tee -a "$OUT/variants.jsonl"
  done
  for variant in baseline blockdiag_hadamard; do
    SCALEMAKE_PYTHON="$PY" capped 75 "$WORKER" bench --preset xsmall --variant "$variant" "${flags[@]}" \
      --compiled torch-worker/python/compile_step.py | tee -a "$OUT/variants.jsonl"
  done
  "$PY" - "$OUT/variants.jsonl" <<'PY' | tee "$OUT/variants.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
base = {(r["preset"], r["impl"]): r["tokens_per_second"] for r in rows if r["variant"] == "baseline"}
print("| preset | variant | impl | kernels | tokens/s | × baseline | MFU trainable | MFU executed | peak GiB | step ms |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    b = base.get((r["preset"], r["impl"])) or base.get((r["preset"], "scalemake"))
    gib = (r.get("peak_memory_bytes") or 0) / 2**30
    print(f"| {r['preset']} | {r['variant']} | {r['impl']} | {'on' if r.get('hadamard_kernel') else 'off'} | "
          f"{r['tokens_per_second']:,.0f} | {r['tokens_per_second'] / b:.2f} | {r.get('mfu_trainable') or 0:.1%} | "
          f"{r.get('mfu') or 0:.1%} | {gib:.1f} | {r['step_ms']:.0f} |")
PY
}

families() { run_study gpu-families "${STUDY_CAP:-360}" baseline fastfood blockdiag_hadamard; }

parallel() {
  step "data parallel: NCCL at N = 1 against the plain path"
  mkdir -p parallel
  cat > parallel/exp.yaml <<'YAML'
name: parallel
nodes:
  corpus: {kind: corpus, paths: [data/fr-large.parquet]}
  tokenizer: {kind: tokenizer, input: corpus, pretrained: gpt2}
  shards: {kind: shards, input: [corpus, tokenizer]}
  train:
    kind: train
    input: shards
    model: {preset: xsmall}
    precision: bf16
    batch_size: 80
    micro_batch: 16
    max_tokens: 3276800
    eval_points: 2
    eval_tokens: 65536
    optim: {lr: 5e-4, warmup_tokens: 81920}
    device: cuda
    compile: off
YAML
  for path in plain nccl; do
    (
      [ "$path" = nccl ] && export SCALEMAKE_RANK=0 SCALEMAKE_WORLD=1 SCALEMAKE_MASTER=127.0.0.1:29531
      capped 240 "$SCALEMAKE" run --cache "parallel/cache-$path" -f parallel/exp.yaml > "$OUT/parallel-$path.txt" 2>&1
    )
    "$SCALEMAKE" log --cache "parallel/cache-$path" -f parallel/exp.yaml train > "$OUT/parallel-$path.log" 2>&1 || true
    echo "$path: $(grep -E '^step 40/40: .* tokens/s' "$OUT/parallel-$path.log" | tail -1)"
  done | tee "$OUT/parallel.txt"
}

case "$PART" in
  all) bench; study ;;
  parallel) parallel ;;
  structured) structured ;;
  families) families ;;
  bench) bench ;;
  variants) variants ;;
  study) study ;;
  *) echo "usage: run.sh [--prepare | all | bench | variants | study | parallel | structured | families]"; exit 2 ;;
esac

step "summary"
cat "$OUT/failures.txt" 2>/dev/null || echo "no step failed"
[ -f "$OUT/hadamard.json" ] && tail -c 600 "$OUT/hadamard.json"
[ -f "$OUT/throughput.md" ] && tail -n 12 "$OUT/throughput.md"
[ -f "$OUT/gpu-small-run.txt" ] && tail -n 3 "$OUT/gpu-small-run.txt"
[ -f "$OUT/parallel.txt" ] && cat "$OUT/parallel.txt"
[ -f "$OUT/variants.md" ] && cat "$OUT/variants.md"
[ -f "$OUT/gpu-families-run.txt" ] && tail -n 3 "$OUT/gpu-families-run.txt"
echo "done in $((SECONDS - START)) s"
