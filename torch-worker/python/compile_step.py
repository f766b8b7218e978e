"""Compiles scalemake's training step (forward + backward of one micro-batch)
into an AOTInductor package that the Rust worker runs.

The model here mirrors torch-worker/src/model/ op for op, casts included
(fp32 master weights, matmuls and attention in the compute dtype, the
residual stream, LayerNorms and the loss in fp32), for all four variants.
It is written as functions over a dict keyed by the Rust VarStore's names,
so nothing has to translate names: the worker says which tensors it has
(`spec.json`), this script checks that the model uses exactly those, and
the package's inputs follow the worker's order.

The package computes, for one micro-batch,

    (flat_params, *frozen, idx, targets) -> (loss, flat_grads)

where `flat_params` is the worker's flat fp32 parameter buffer (sorted
names, as `FlatParams` lays it out) and `flat_grads` the gradient of the
mean loss in the same layout. Parameters are inputs, not constants, so one
package serves every step of every run of this shape. Dropout draws from
libtorch's default generator, which the worker reseeds every step, so a
resumed run replays the same masks.

    python compile_step.py SPEC_JSON OUT_DIR

writes OUT_DIR/step.pt2 and OUT_DIR/export.json (what was compiled, how long
each phase took), or exits non-zero with the reason on stderr.
"""

import json
import warnings
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"float": torch.float32, "bfloat16": torch.bfloat16, "int64": torch.int64}
# The Rust reference transform's largest Kronecker factor (hadamard.rs: MAX_FACTOR_BITS).
MAX_FACTOR_BITS = 5
LN_EPS = 1e-5


def hadamard_matrix(m, dtype, device):
    """Sylvester's H_m, entries ±1 (as hadamard.rs builds it)."""
    i = torch.arange(m, device=device)
    bits = torch.bitwise_and(i[:, None], i[None, :])
    parity = torch.zeros_like(bits)
    for b in range(int(math.log2(m)) + 1):
        parity = parity ^ ((bits >> b) & 1)
    return (1 - 2 * parity).to(dtype)


def hadamard(x, normalized):
    """x·H_n over the last dimension, as the Kronecker-factorised reference."""
    shape = x.shape
    n = shape[-1]
    bits = n.bit_length() - 1
    assert 1 << bits == n, f"Hadamard size {n} is not a power of two"
    factors, left = [], bits
    while left > 0:
        b = min(left, MAX_FACTOR_BITS)
        factors.append(1 << b)
        left -= b
    y = x.reshape(-1, *factors)
    last = len(factors)
    for axis, m in enumerate(factors):
        h = hadamard_matrix(m, x.dtype, x.device)
        y = y.movedim(axis + 1, last).matmul(h).movedim(last, axis + 1)
    y = y.reshape(shape)
    return y / math.sqrt(n) if normalized else y


class Model:
    """The GPT of gpt.rs over a dict of tensors `w` keyed by the Rust names."""

    def __init__(self, shape, compute):
        self.s = shape
        self.kind = compute
        self.used = set()

    def w(self, weights, name):
        self.used.add(name)
        return weights[name]

    def dense(self, W, prefix, x, weight="weight", bias="bias"):
        k = self.kind
        return F.linear(x.to(k), self.w(W, f"{prefix}.{weight}").to(k), self.w(W, f"{prefix}.{bias}").to(k))

    def layer_norm(self, W, prefix, x):
        return F.layer_norm(x, (self.s["d_model"],), self.w(W, f"{prefix}.weight"), self.w(W, f"{prefix}.bias"), LN_EPS)

    def rotary(self, x):
        hs, t = x.shape[-1], x.shape[-2]
        inv_freq = (torch.arange(hs // 2, dtype=torch.float64, device=x.device) * (-2.0 * math.log(10000.0) / hs)).exp().float()
        angles = torch.outer(torch.arange(self.s["context"], dtype=torch.float32, device=x.device), inv_freq)
        cos, sin = angles.cos()[:t].to(x.dtype), angles.sin()[:t].to(x.dtype)
        x1, x2 = x[..., : hs // 2], x[..., hs // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def attention(self, W, p, x, train):
        b, t, d = x.shape
        nh = self.s["n_head"]
        q, k, v = self.dense(W, f"{p}.qkv", x).split(d, dim=-1)
        heads = lambda z: z.view(b, t, nh, d // nh).transpose(1, 2)
        q, k, v = self.rotary(heads(q)), self.rotary(heads(k)), heads(v)
        drop = self.s["dropout"] if train else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, d)
        return F.dropout(self.dense(W, f"{p}.proj", y), self.s["dropout"], train)

    def mlp(self, W, p, x, train):
        h = F.gelu(self.dense(W, f"{p}.fc", x))
        return F.dropout(self.dense(W, f"{p}.proj", h), self.s["dropout"], train)

    def fastfood_linear(self, W, p, x, in_dim, out_dim):
        k = self.kind
        n = 1 << max(in_dim - 1, 0).bit_length()
        blocks = (out_dim + n - 1) // n
        lead = x.shape[:-1]
        x = x.to(k)
        if in_dim < n:
            x = F.pad(x, (0, n - in_dim))
        z = x.unsqueeze(-2) * self.w(W, f"{p}.structured.b").to(k)
        z = hadamard(z, True)
        perm = self.w(W, f"{p}.buffers.perm").to(torch.int64)
        z = z.reshape(-1, blocks * n).index_select(1, perm)
        z = z.view(-1, blocks, n) * self.w(W, f"{p}.structured.g").to(k)
        z = hadamard(z, True) * self.w(W, f"{p}.structured.s").to(k)
        y = z.reshape(-1, blocks * n)[:, :out_dim] + self.w(W, f"{p}.bias").to(k)
        return y.view(*lead, out_dim)

    def fastfood_mlp(self, W, p, x, train):
        d = self.s["d_model"]
        h = F.gelu(self.fastfood_linear(W, f"{p}.fc", x, d, 4 * d))
        return F.dropout(self.fastfood_linear(W, f"{p}.proj", h, 4 * d, d), self.s["dropout"], train)

    def blockdiag_mlp(self, W, p, x, train):
        # Block-major hidden layer, as BlockDiagMlp in mod.rs: (k, rows, 4d/k)
        # from one batched product to the next, the mixing one small product.
        k, kind = self.s["blocks"], self.kind
        d = x.shape[-1]
        hidden = 4 * d // k
        blocks = x.to(kind).reshape(-1, k, d // k).transpose(0, 1)
        h = torch.bmm(blocks, self.w(W, f"{p}.structured.w1").to(kind))
        if k > 1:
            mix = hadamard_matrix(k, kind, x.device) / math.sqrt(k)
            h = mix.matmul(h.reshape(k, -1)).view(k, -1, hidden)
        h = F.gelu(h + self.w(W, f"{p}.fc_bias").to(kind).view(k, 1, hidden))
        y = torch.bmm(h, self.w(W, f"{p}.structured.w2").to(kind)).transpose(0, 1).reshape(-1, d)
        y = y + self.w(W, f"{p}.proj_bias").to(kind)
        return F.dropout(y.view(*x.shape[:-1], d), self.s["dropout"], train)

    def frozen(self, W, p, x, train):
        normed = F.layer_norm(x, (self.s["d_model"],), None, None, LN_EPS)
        h = F.gelu(self.dense(W, f"{p}.fc", normed))
        return x + F.dropout(self.dense(W, f"{p}.proj", h), self.s["dropout"], train)

    def loss(self, W, idx, targets, train=True):
        s, k = self.s, self.kind
        feed_forward = {
            "baseline": self.mlp,
            "doped": self.mlp,
            "fastfood": self.fastfood_mlp,
            "blockdiag_hadamard": self.blockdiag_mlp,
        }[s["variant"]]
        x = F.dropout(F.embedding(idx, self.w(W, "wte.weight")), s["dropout"], train)
        frozen_layers = s["n_layer"] - 1 if s["variant"] == "doped" else 0
        for i in range(s["n_layer"]):
            p = f"h.{i}"
            x = x + self.attention(W, f"{p}.attn", self.layer_norm(W, f"{p}.ln1", x), train)
            x = x + feed_forward(W, f"{p}.mlp", self.layer_norm(W, f"{p}.ln2", x), train)
            if i < frozen_layers:
                x = self.frozen(W, f"frozen.{i}", x, train)
        x = self.layer_norm(W, "ln_f", x).to(k)
        head = self.w(W, "wte.weight" if s["head"] == "tied" else "lm_head.weight")
        logits = x.matmul(head.to(k).t())[..., : s["vocab_size"]].float()
        return F.cross_entropy(logits.reshape(-1, s["vocab_size"]), targets.reshape(-1))


class Joint(torch.nn.Module):
    """The model as a module with the worker's tensors as parameters and
    buffers, so `aot_export_module` can trace forward and backward together."""

    def __init__(self, model, trainable, frozen):
        super().__init__()
        self.model = model
        self.trainable_names = [name for name, _ in trainable]
        self.frozen_names = [name for name, _ in frozen]
        for i, (_, t) in enumerate(trainable):
            self.register_parameter(f"p{i}", torch.nn.Parameter(t))
        for i, (_, t) in enumerate(frozen):
            self.register_buffer(f"f{i}", t)

    def forward(self, idx, targets):
        weights = {name: getattr(self, f"p{i}") for i, name in enumerate(self.trainable_names)}
        weights.update({name: getattr(self, f"f{i}") for i, name in enumerate(self.frozen_names)})
        return (self.model.loss(weights, idx, targets),)


class Step(torch.nn.Module):
    """The exported interface: flat parameters in, loss and flat gradients out."""

    def __init__(self, joint_graph, shapes):
        super().__init__()
        self.joint = joint_graph
        self.shapes = shapes

    def forward(self, flat, *rest):
        params, offset = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            params.append(flat[offset : offset + n].view(shape))
            offset += n
        loss, *grads = self.joint(*params, *rest)
        return loss, torch.cat([g.reshape(-1) for g in grads])


def main(spec_path, out_dir):
    spec = json.load(open(spec_path))
    shape = spec["model"]
    device = torch.device(spec["device"])
    compute = DTYPES[spec["compute"]]
    torch.manual_seed(0)
    trainable = [(name, torch.randn(dims, device=device) * 0.02) for name, dims in spec["trainable"]]
    frozen = []
    for name, dims, dtype in spec["frozen"]:
        t = torch.zeros(dims, dtype=DTYPES[dtype], device=device)
        if name.endswith(".perm"):  # a FastFood permutation must index in range
            t = torch.arange(math.prod(dims), device=device).to(DTYPES[dtype]).view(dims)
        frozen.append((name, t))
    model = Model(shape, compute)
    rows, context = spec["micro_batch"], shape["context"]
    idx = torch.randint(shape["vocab_size"], (rows, context), device=device)
    targets = torch.randint(shape["vocab_size"], (rows, context), device=device)

    # The mirror must use exactly the worker's tensors: a name it lacks or
    # leaves unused means the two models differ, and compiling would be wrong.
    joint = Joint(model, trainable, frozen)
    with torch.no_grad():
        joint(idx, targets)
    given = {name for name, _ in trainable} | {name for name, _ in frozen}
    if model.used != given:
        missing, unused = sorted(model.used - given), sorted(given - model.used)
        sys.exit(f"the exporter's model does not match the worker's: it needs {missing} and leaves {unused} unused")

    from torch._functorch.aot_autograd import aot_export_module

    # Deterministic kernels only: the embedding's backward is otherwise an
    # atomic scatter-add over token ids, whose order (and so its rounding)
    # changes from run to run, and a resumed run must replay the same bits.
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", category=FutureWarning)

    timings = {}
    start = time.perf_counter()
    graph, signature = aot_export_module(joint, (idx, targets), trace_joint=True, output_loss_index=0)
    grads = signature.backward_signature.gradients_to_parameters
    if len(grads) != len(trainable):
        sys.exit(f"the joint graph has {len(grads)} gradients for {len(trainable)} parameters")
    step = Step(graph, [tuple(dims) for _, dims in spec["trainable"]])
    flat = torch.cat([t.reshape(-1) for _, t in trainable])
    inputs = (flat, *[t for _, t in frozen], idx, targets)
    exported = torch.export.export(step, inputs, strict=False)
    timings["export_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    package = os.path.join(out_dir, "step.pt2")
    torch._inductor.aoti_compile_and_package(exported, package_path=package)
    timings["inductor_seconds"] = time.perf_counter() - start
    info = {
        "torch": torch.__version__,
        "device": str(device),
        "inputs": ["flat_params"] + [name for name, _ in frozen] + ["idx", "targets"],
        "outputs": ["loss", "flat_grads"],
        **timings,
    }
    with open(os.path.join(out_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
