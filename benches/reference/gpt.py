"""The scalemake GPT in plain PyTorch: the reference our libtorch model is
checked and benchmarked against.

Same architecture as torch-worker/src/model/gpt.rs (pre-LayerNorm blocks,
rotary embeddings in the GPT-NeoX half-split layout, SDPA attention, GELU
MLP of width 4d, tied or untied head, vocabulary padded to a multiple of 64)
and the same parameter names, so it loads our safetensors files directly.

    python gpt.py check DIR        # compare with a case written by `scalemake-torch reference-case DIR`
    python gpt.py bench --preset micro --device cpu --batch 16 --steps 20 [--bf16] [--compile]

Only torch is needed (safetensors are parsed here, the format is simple).
"""

import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "nano": (2, 2, 64, 64),
    "micro": (4, 4, 128, 256),
    "xxsmall": (3, 12, 768, 1024),
    "xsmall": (6, 12, 768, 1024),
    "small": (12, 12, 768, 1024),
    "medium": (24, 16, 1024, 1024),
}

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = bytearray(data[base + start : base + end])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if end > start else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


class Rotary(nn.Module):
    def __init__(self, head_size, context):
        super().__init__()
        half = head_size // 2
        inv_freq = torch.exp(torch.arange(half, dtype=torch.float64) * (-2.0 * math.log(10000.0) / head_size)).float()
        angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):
        t, hs = x.shape[-2], x.shape[-1]
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        x1, x2 = x[..., : hs // 2], x[..., hs // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, d, n_head, dropout):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.n_head, self.dropout = n_head, dropout

    def forward(self, x, rotary):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        heads = lambda z: z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
        q, k, v = rotary(heads(q)), rotary(heads(k)), heads(v)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return F.dropout(self.proj(y.transpose(1, 2).contiguous().view(b, t, d)), self.dropout, self.training)


class Mlp(nn.Module):
    def __init__(self, d, dropout):
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.dropout = dropout

    def forward(self, x):
        return F.dropout(self.proj(F.gelu(self.fc(x))), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, d, n_head, dropout):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = nn.LayerNorm(d), Attention(d, n_head, dropout), nn.LayerNorm(d), Mlp(d, dropout)

    def forward(self, x, rotary):
        x = x + self.attn(self.ln1(x), rotary)
        return x + self.mlp(self.ln2(x))


class Gpt(nn.Module):
    def __init__(self, vocab_size, n_layer, n_head, d_model, context, dropout=0.1, tied=True):
        super().__init__()
        self.vocab_size, self.dropout = vocab_size, dropout
        padded = (vocab_size + 63) // 64 * 64
        self.wte = nn.Embedding(padded, d_model)
        self.h = nn.ModuleList(Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = None if tied else nn.Linear(d_model, padded, bias=False)
        self.rotary = Rotary(d_model // n_head, context)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # projections into the residual stream
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(module):
        """GPT-2's initialisation, as scalemake's: N(0, 0.02) weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx):
        x = F.dropout(self.wte(idx), self.dropout, self.training)
        for block in self.h:
            x = block(x, self.rotary)
        x = self.ln_f(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight
        return (x @ head.t())[..., : self.vocab_size]

    def loss(self, idx, targets):
        logits = self.forward(idx).float()
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))


def from_config(shape):
    return Gpt(shape["vocab_size"], shape["n_layer"], shape["n_head"], shape["d_model"], shape["context"], shape["dropout"], shape["head"] == "tied")


def check(case_dir):
    """Loads a case written by the Rust worker and compares logits and a few Adam steps."""
    case = json.load(open(f"{case_dir}/case.json"))
    model = from_config(case["model"])
    model.load_state_dict(read_safetensors(f"{case_dir}/initial.safetensors"), strict=True)
    tensors = read_safetensors(f"{case_dir}/expected.safetensors")
    x, y = tensors["x"], tensors["y"]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    logit_diff = (logits - tensors["logits"]).abs().max().item()
    o = case["optim"]
    opt = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=False)
    losses = []
    for _ in range(case["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip"])
        opt.step()
        losses.append(loss.item())
    ours = tensors["losses"].tolist()
    loss_diff = max(abs(a - b) for a, b in zip(losses, ours))
    final = dict(model.named_parameters())
    param_diff = max((final[k].detach() - v).abs().max().item() for k, v in read_safetensors(f"{case_dir}/final.safetensors").items())
    report = {"logit_max_abs_diff": logit_diff, "loss_max_abs_diff": loss_diff, "param_max_abs_diff": param_diff, "losses_reference": losses, "losses_ours": ours}
    print(json.dumps(report))
    ok = logit_diff < case["tolerance"]["logits"] and loss_diff < case["tolerance"]["loss"] and param_diff < case["tolerance"]["params"]
    return 0 if ok else 1


def bench(args):
    n_layer, n_head, d, ctx = PRESETS[args.preset]
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = Gpt(args.vocab, n_layer, n_head, d, ctx).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    step_loss = model.loss
    if args.compile:
        step_loss = torch.compile(model.loss)
    accum = args.batch // args.micro_batch
    data = torch.randint(args.vocab, (args.micro_batch, ctx + 1), device=device)
    x, y = data[:, :-1], data[:, 1:]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step():
        opt.zero_grad(set_to_none=True)
        for _ in range(accum):
            with autocast:
                loss = step_loss(x, y) / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = args.steps * args.batch * ctx
    if args.profile:  # after the timed steps, so the profiler costs them nothing
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(3):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        with open(args.profile, "w") as f:
            f.write(f"{args.preset}, {'compiled' if args.compile else 'eager'}, 3 steps of {args.batch}x{ctx} tokens\n")
            f.write(prof.key_averages().table(sort_by=sort, row_limit=30))
    print(json.dumps({"impl": "pytorch" + ("+compile" if args.compile else ""), "preset": args.preset, "device": args.device, "bf16": args.bf16, "tokens_per_second": tokens / seconds, "steps": args.steps, "threads": torch.get_num_threads()}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("dir")
    b = sub.add_parser("bench")
    b.add_argument("--preset", default="micro", choices=PRESETS)
    b.add_argument("--vocab", type=int, default=50262)
    b.add_argument("--device", default="cpu")
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--micro-batch", type=int, default=None)
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--bf16", action="store_true")
    b.add_argument("--compile", action="store_true")
    b.add_argument("--profile", help="write the torch profiler's table of 3 more steps to this file")
    args = p.parse_args()
    if args.cmd == "check":
        return check(args.dir)
    args.micro_batch = args.micro_batch or args.batch
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
