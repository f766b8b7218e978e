#!/usr/bin/env python3
"""No-op `status`/`run` of two scalemake binaries, interleaved.

Each binary gets its own built copy of the same project (the cache format may
differ between versions), e.g. two copies of a project kept by
`BENCH_KEEP=1 cargo bench --bench noop`, each built with its binary
(`scalemake run -j2`). Old and new alternate, order swapped every round, so
noise on a shared machine hits both alike. Prints Markdown rows:
median / min of each, and new / old.

usage: compare_noop.py OLD_BIN OLD_PROJECT NEW_BIN NEW_PROJECT [REPS=20]
"""
import statistics
import subprocess
import sys
import time


def main():
    old_bin, old_dir, new_bin, new_dir = sys.argv[1:5]
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    setups = {"old": (old_bin, old_dir), "new": (new_bin, new_dir)}
    times = {(who, cmd): [] for who in setups for cmd in ("status", "run")}
    for who, (binary, project) in setups.items():
        for cmd in ("status", "run"):  # warm-up; must be a no-op
            out = subprocess.run([binary, cmd], cwd=project, capture_output=True, text=True)
            if "fresh" not in out.stdout + out.stderr:
                sys.exit(f"{who} {cmd} is not a no-op:\n{out.stdout[-500:]}{out.stderr[-500:]}")
    for r in range(reps):
        for cmd in ("status", "run"):
            for who in ("old", "new") if r % 2 == 0 else ("new", "old"):
                binary, project = setups[who]
                t = time.perf_counter()
                subprocess.run([binary, cmd], cwd=project, capture_output=True)
                times[(who, cmd)].append(time.perf_counter() - t)
    for cmd in ("status", "run"):
        old, new = times[("old", cmd)], times[("new", cmd)]
        ms = lambda xs: f"{1000 * statistics.median(xs):.0f} / {1000 * min(xs):.0f} ms"
        ratio = f"{statistics.median(new) / statistics.median(old):.2f} / {min(new) / min(old):.2f}"
        print(f"| `scalemake {cmd}` | {ms(old)} | {ms(new)} | {ratio} |")


if __name__ == "__main__":
    main()
