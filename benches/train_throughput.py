"""Training throughput, scalemake (libtorch via tch) against the PyTorch
reference model, side by side in one run.

For each preset, runs `scalemake-torch bench` and `benches/reference/gpt.py
bench` alternately (`--reps` times each, same settings, random tokens) and
prints a Markdown table of median tokens/s, MFU where the device's peak is
known, and the ratios. PyTorch runs in eager mode, and with `torch.compile`
when `--compile` is given.

CPU (this machine):
    .venv/bin/python benches/train_throughput.py --device cpu --presets micro --batch 16 --steps 5
GPU (benches/gpu/run.sh):
    python benches/train_throughput.py --device cuda --bf16 --presets xxsmall,xsmall,small \\
        --batch 80 --micro-batch 16 --steps 20 --compile
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
LAYERS = {"nano": (2, 64, 64), "micro": (4, 128, 256), "xxsmall": (3, 768, 1024), "xsmall": (6, 768, 1024), "small": (12, 768, 1024), "medium": (24, 1024, 1024)}


def flops_per_token(preset, vocab):
    """The same accounting as scalemake's ModelShape::flops_per_token."""
    layers, d, ctx = LAYERS[preset]
    n = layers * (12 * d * d + 13 * d) + 2 * d
    return 6 * (n + vocab * d) + 12 * layers * ctx * d


def run(cmd, env=None, optional=False):
    """The JSON report of one benchmark process; `None` for an optional one that failed."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        if optional:
            print(f"note: {' '.join(cmd)} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
            return None
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", default=str(ROOT / "target/release/scalemake-torch"))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--device", default="cpu")
    p.add_argument("--presets", default="micro")
    p.add_argument("--vocab", type=int, default=50262)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs only)")
    a = p.parse_args()
    micro = a.micro_batch or a.batch
    common = ["--vocab", str(a.vocab), "--device", a.device, "--batch", str(a.batch), "--micro-batch", str(micro), "--steps", str(a.steps), "--warmup", str(a.warmup)] + (["--bf16"] if a.bf16 else [])
    reference = str(ROOT / "benches/reference/gpt.py")
    # glibc returns every >32 MiB buffer to the kernel on free; the worker
    # keeps them (mallopt), so PyTorch is also measured with the same setting.
    same_malloc = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647")
    rows = []
    device_name = None
    for preset in a.presets.split(","):
        runs = {"scalemake": [], "pytorch": [], "pytorch (same malloc)": []}
        if a.compile:
            runs["pytorch + compile"] = []
        for _ in range(a.reps):
            ours = run([a.worker, "bench", "--preset", preset] + common)
            device_name = ours["device"]
            runs["scalemake"].append(ours["tokens_per_second"])
            runs["pytorch"].append(run([a.python, reference, "bench", "--preset", preset] + common)["tokens_per_second"])
            if a.device == "cpu":
                runs["pytorch (same malloc)"].append(run([a.python, reference, "bench", "--preset", preset] + common, same_malloc)["tokens_per_second"])
            if a.compile:  # needs Triton and a C compiler; a failure is reported, not fatal
                compiled = run([a.python, reference, "bench", "--preset", preset, "--compile"] + common, optional=True)
                if compiled:
                    runs["pytorch + compile"].append(compiled["tokens_per_second"])
        peak = a.peak_tflops * 1e12 if a.peak_tflops else next((v for k, v in PEAK.items() if k in (device_name or "")), None)
        if peak and not a.peak_tflops and not a.bf16:
            peak /= 2  # the table holds bf16 peaks; TF32 is half
        ours = statistics.median(runs["scalemake"])
        for impl, values in runs.items():
            if not values:
                continue
            tps = statistics.median(values)
            mfu = f"{100 * tps * flops_per_token(preset, a.vocab) / peak:.1f}%" if peak else "–"
            rows.append(f"| {preset} | {impl} | {tps:,.0f} | {mfu} | {ours / tps:.2f}× |")
    print(f"device: {device_name}; batch {a.batch} (micro-batch {micro}); {'bf16' if a.bf16 else 'fp32'}; {a.steps} timed steps after {a.warmup}; median of {a.reps} alternating runs\n")
    print("| preset | implementation | tokens/s | MFU | scalemake ÷ this |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
