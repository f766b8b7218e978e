#!/usr/bin/env python3
"""The block-diagonal MLP's two layouts, side by side in one process.

    .venv/bin/python benches/blockdiag_layout.py [--device cpu|cuda] [--rows N] [--d D] [--reps R]

Forward + backward of the block-diagonal + block-Hadamard MLP (d → 4d → d,
4 blocks) as the worker computed it before issue 33 — `(rows, k, 1, d/k) @
(k, d/k, 4d/k)`, which torch's matmul runs by expanding the weights to every
row — and as it does now, block-major from one `bmm` to the next
(torch-worker/src/model/variants/mod.rs, BlockDiagMlp). Prints milliseconds
per call, alternating the two, and their ratio; checks they agree.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def hadamard(k, device):
    i = torch.arange(k, device=device)
    bits = i[:, None] & i[None, :]
    parity = torch.zeros_like(bits)
    for b in range(int(math.log2(k)) + 1):
        parity ^= (bits >> b) & 1
    return (1 - 2 * parity).float() / math.sqrt(k)


def before(x, w1, b1, w2, b2, mix):
    k = w1.shape[0]
    rows, d = x.shape
    h = x.reshape(rows, k, 1, d // k).matmul(w1).reshape(rows, 4 * d)
    chunks = h.view(rows, k, 4 * d // k).transpose(1, 2)
    h = chunks.matmul(mix).transpose(1, 2).reshape(rows, 4 * d) + b1
    return F.gelu(h).reshape(rows, k, 1, 4 * d // k).matmul(w2).reshape(rows, d) + b2


def after(x, w1, b1, w2, b2, mix):
    k = w1.shape[0]
    rows, d = x.shape
    h = torch.bmm(x.reshape(rows, k, d // k).transpose(0, 1), w1)
    h = mix.matmul(h.reshape(k, -1)).view(k, rows, 4 * d // k)
    h = F.gelu(h + b1.view(k, 1, 4 * d // k))
    return torch.bmm(h, w2).transpose(0, 1).reshape(rows, d) + b2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    k, d, dev = 4, a.d, a.device
    x = torch.randn(a.rows, d, device=dev, requires_grad=True)
    w1 = (torch.randn(k, d // k, 4 * d // k, device=dev) * 0.02).requires_grad_()
    w2 = (torch.randn(k, 4 * d // k, d // k, device=dev) * 0.02).requires_grad_()
    b1 = torch.zeros(4 * d, device=dev, requires_grad=True)
    b2 = torch.zeros(d, device=dev, requires_grad=True)
    mix = hadamard(k, dev)
    args = (x, w1, b1, w2, b2, mix)
    assert torch.allclose(before(*args), after(*args), atol=1e-5), "the layouts disagree"

    def timed(f):
        start = time.perf_counter()
        f(*args).square().sum().backward()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        return 1e3 * (time.perf_counter() - start)

    times = {"before": [], "after": []}
    for name, f in [("before", before), ("after", after)]:
        timed(f)  # warm up
    for _ in range(a.reps):
        for name, f in [("before", before), ("after", after)]:
            times[name].append(timed(f))
    med = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
    print(f"rows {a.rows}, d {d}, 4 blocks, {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"before (broadcast matmul): {med['before']:.1f} ms; after (block-major bmm): {med['after']:.1f} ms; "
          f"{med['before'] / med['after']:.1f}x")


if __name__ == "__main__":
    main()
