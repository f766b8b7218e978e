"""Training throughput, scalemake (libtorch via tch) against the PyTorch
reference model, side by side in one run.

For each preset, runs `scalemake-torch bench` and `benches/reference/gpt.py
bench` alternately (`--reps` times each, same settings, random tokens) and
prints a Markdown table of median tokens/s, MFU where the device's peak is
known, and the ratios. PyTorch runs in eager mode, and with `torch.compile`
when `--compile` is given; scalemake runs eager, and with its compiled step
(AOTInductor, `torch-worker/python/compile_step.py`) when `--scalemake-compiled`
is given, with the compile's seconds and the steps that pay it back.

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


def run(cmd, env=None, timeout=None):
    """The JSON report of one benchmark process; `None` (and why, on stderr)
    when it failed or ran past `timeout` seconds, so the other rows still run."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"note: {' '.join(cmd)} ran past {timeout} s", file=sys.stderr)
        return None
    if out.returncode != 0:
        print(f"note: {' '.join(cmd)} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
        return None
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
    p.add_argument("--scalemake-compiled", action="store_true", help="also scalemake's compiled step (compiled once per preset, timed)")
    p.add_argument("--compile-timeout", type=float, default=150, help="seconds a torch.compile run may take, compilation included")
    p.add_argument("--profile-dir", help="where the time goes: the worker's phases and the torch profiler's tables, per preset")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs only)")
    a = p.parse_args()
    if a.profile_dir:
        os.makedirs(a.profile_dir, exist_ok=True)
    micro = a.micro_batch or a.batch
    common = ["--vocab", str(a.vocab), "--device", a.device, "--batch", str(a.batch), "--micro-batch", str(micro), "--steps", str(a.steps), "--warmup", str(a.warmup)] + (["--bf16"] if a.bf16 else [])
    reference = str(ROOT / "benches/reference/gpt.py")
    # glibc returns every >32 MiB buffer to the kernel on free; the worker
    # keeps them (mallopt), so PyTorch is also measured with the same setting.
    same_malloc = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647")
    rows, notes = [], []
    device_name = None
    for preset in a.presets.split(","):
        runs = {"scalemake": [], "pytorch": []}
        if a.scalemake_compiled:
            runs["scalemake compiled"] = []
        compile_seconds = []
        if a.device == "cpu":
            runs["pytorch (same malloc)"] = []
        if a.compile:
            runs["pytorch + compile"] = []
        for rep in range(a.reps):
            profile = a.profile_dir and rep == 0
            ours = run([a.worker, "bench", "--preset", preset] + common + (["--phases"] if profile else []))
            if ours:
                device_name = ours["device"]
                runs["scalemake"].append(ours["tokens_per_second"])
            torch_profile = ["--profile", f"{a.profile_dir}/{preset}-pytorch.txt"] if profile else []
            eager = run([a.python, reference, "bench", "--preset", preset] + common + torch_profile)
            if eager:
                runs["pytorch"].append(eager["tokens_per_second"])
            if profile and ours:
                Path(a.profile_dir, f"{preset}-scalemake-phases.json").write_text(json.dumps({k: ours[k] for k in ("step_ms", "phases_ms")}, indent=1))
                phases = ", ".join(f"{k} {v:.1f} ms" for k, v in ours["phases_ms"].items())
                print(f"{preset}: scalemake step {ours['step_ms']:.1f} ms; synchronised phases: {phases}", file=sys.stderr)
            if a.device == "cpu":
                same = run([a.python, reference, "bench", "--preset", preset] + common, same_malloc)
                if same:
                    runs["pytorch (same malloc)"].append(same["tokens_per_second"])
            if a.scalemake_compiled:
                exporter = str(ROOT / "torch-worker/python/compile_step.py")
                mine = run([a.worker, "bench", "--preset", preset, "--compiled", exporter] + common, timeout=a.compile_timeout + 300)
                if mine:
                    runs["scalemake compiled"].append(mine["tokens_per_second"])
                    compile_seconds.append(mine["compile_seconds"])
            if a.compile:  # needs Triton and a C compiler
                compiled = run([a.python, reference, "bench", "--preset", preset, "--compile"] + common, timeout=a.compile_timeout)
                if compiled:
                    runs["pytorch + compile"].append(compiled["tokens_per_second"])
        peak = a.peak_tflops * 1e12 if a.peak_tflops else next((v for k, v in PEAK.items() if k in (device_name or "")), None)
        if peak and not a.peak_tflops and not a.bf16:
            peak /= 2  # the table holds bf16 peaks; TF32 is half
        median = lambda impl: statistics.median(runs[impl]) if runs.get(impl) else None
        ours, mine = median("scalemake"), median("scalemake compiled")
        for impl, values in runs.items():
            if not values:
                rows.append(f"| {preset} | {impl} | failed | – | – | – |")
                continue
            tps = statistics.median(values)
            mfu = f"{100 * tps * flops_per_token(preset, a.vocab) / peak:.1f}%" if peak else "–"
            ratio = f"{ours / tps:.2f}×" if ours else "–"
            compiled_ratio = f"{mine / tps:.2f}×" if mine else "–"
            rows.append(f"| {preset} | {impl} | {tps:,.0f} | {mfu} | {ratio} | {compiled_ratio} |")
        if ours and mine and compile_seconds:
            tokens_per_step = a.batch * LAYERS[preset][2]
            saved = tokens_per_step / ours - tokens_per_step / mine  # seconds a step saves
            payback = f"{statistics.median(compile_seconds) / saved:,.0f} steps" if saved > 0 else "never (not faster)"
            notes.append(f"{preset}: compiled in {statistics.median(compile_seconds):.0f} s, paid back after {payback}")
    print(f"device: {device_name}; batch {a.batch} (micro-batch {micro}); {'bf16' if a.bf16 else 'fp32'}; {a.steps} timed steps after {a.warmup}; median of {a.reps} alternating runs\n")
    print("| preset | implementation | tokens/s | MFU | scalemake ÷ this | scalemake compiled ÷ this |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    if notes:
        print("\n" + "\n".join(f"- {n}" for n in notes))


if __name__ == "__main__":
    main()
