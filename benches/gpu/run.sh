#!/usr/bin/env bash
# The GPU checks of issues 4 and 5, in one run on the H100 machine (nothing
# is built there: the worker binary is built here, with the CUDA kernel, and
# carried; torch comes from the machine's /opt/torch/.venv). Writes
# everything under $OUT.
#
# Here, first:
#   SCALEMAKE_CUDA_BUILD=1 scripts/setup.sh     # nvcc from PyPI → kernel built
#   bash benches/gpu/run.sh --prepare           # a copy of tiny.yaml's shards
# Then:
#   run(command="bash benches/gpu/run.sh", carry=["target/release/scalemake-torch", "benches/gpu/shards"])
#
# Steps (about 8 minutes in all):
#   1. devices: libtorch sees CUDA after dlopen of libtorch_cuda.so;
#   2. the Hadamard kernel against the reference (the GPU-only test, as a
#      command) and its timing against a copy of the same tensor;
#   3. flat-buffer Adam vs tch's per-tensor Adam on `small` parameters;
#   4. training throughput and MFU, bf16, batch 80 × 1024 (micro-batch 16):
#      xxsmall, xsmall, small — scalemake vs PyTorch eager vs torch.compile;
#   5. the variants' throughput on the Table 3 backbone (12L, d=1024);
#   6. a real bf16 training run of `xxsmall` on the French shards (job JSON,
#      log-spaced evaluations, metrics) to show the train path end to end.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--prepare" ]; then
  shards=$(dirname "$(ls cache/objects/*/out/meta.json | head -1)")
  rm -rf benches/gpu/shards && mkdir -p benches/gpu/shards
  cp "$shards"/*.bin "$shards"/meta.json benches/gpu/shards/
  du -sh benches/gpu/shards
  exit 0
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-/opt/torch/.venv/bin/python}
WORKER=${WORKER:-target/release/scalemake-torch}
DEVICE=${DEVICE:-cuda}
PRESETS=${PRESETS:-xxsmall,xsmall,small}
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step() { echo; echo "== $* ($(date +%T))"; }

step devices
"$WORKER" devices | tee "$OUT/devices.json"

step "hadamard kernel: agreement with the reference"
"$WORKER" check-hadamard | tee "$OUT/hadamard-check.txt" || echo "check-hadamard FAILED"

step "hadamard kernel: timing"
"$WORKER" bench-hadamard "$DEVICE" | tee "$OUT/hadamard.json" || echo "bench-hadamard failed"

step "optimizer: flat buffers vs per-tensor"
"$WORKER" bench-optimizer small "$DEVICE" | tee "$OUT/optimizer.json"

step "throughput"
timeout 360 "$PY" benches/train_throughput.py --worker "$WORKER" --python "$PY" --device "$DEVICE" --bf16 \
  --presets "$PRESETS" --batch "${BATCH:-80}" --micro-batch "${MICRO:-16}" --steps "${STEPS:-10}" --warmup 3 --reps 1 \
  ${COMPILE---compile} | tee "$OUT/throughput.md"

step "variants on the Table 3 backbone"
for variant in baseline fastfood blockdiag_hadamard doped; do
  timeout 90 "$WORKER" bench --preset structured_fastfood --variant "$variant" --device "$DEVICE" --bf16 \
    --batch "${BATCH:-80}" --micro-batch "${MICRO:-16}" --steps 5 --warmup 2 | tee -a "$OUT/variants.jsonl" || echo "variant $variant failed"
done

step "training run"
cat > "$OUT/job.json" <<JSON
{"model":{"vocab_size":50262,"n_layer":3,"n_head":12,"d_model":768,"context":1024,"dropout":0.1,"head":"tied"},
 "optim":{"lr":5e-4,"beta1":0.9,"beta2":0.95,"eps":1e-8,"weight_decay":0,"clip":1,"warmup_tokens":2e6,"decay_tokens":2e7,"final_lr_fraction":0.1},
 "batch_size":${BATCH:-80},"micro_batch":${MICRO:-16},"max_tokens":${TRAIN_TOKENS:-16384000},"eval_points":12,"eval_tokens":${EVAL_TOKENS:-262144},"seed":0,
 "device":"$DEVICE","precision":"bf16","checkpoint_seconds":0,"checkpoint_steps":0,"threads":0,"peak_flops":null,
 "shards":"$PWD/benches/gpu/shards","out":"$OUT/train","work":"$OUT/train-work"}
JSON
mkdir -p "$OUT/train"
timeout 150 "$WORKER" train "$OUT/job.json" > "$OUT/train-events.jsonl" 2> "$OUT/train.log" || echo "training exited with $?"
tail -n 15 "$OUT/train.log"
tail -n 1 "$OUT/train-events.jsonl"
rm -f "$OUT/train/model.safetensors" # 150 MB; the metrics are what matter here
