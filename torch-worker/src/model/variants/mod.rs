//! The paper's variant layers, as parts that plug into the GPT block:
//! frozen random MLPs (doped models, Table 2) and structured MLPs — Adaptive
//! FastFood and block-diagonal + block-Hadamard (Table 3). Everything a
//! variant is in the worker lives in this folder: the layers here, the
//! Hadamard transform ([`hadamard`]) with its CUDA kernel (`hadamard.cu`)
//! and autograd shim (`hadamard_shim.cpp`). The variants themselves, their
//! names and parameter counts are `scalemake::train::variant`.
//!
//! Conventions the parameter accounting relies on (`gpt::param_counts`):
//! trainable structured parameters live under a `structured` path
//! component; fixed non-parameter tensors (FastFood's permutations) under
//! `buffers`, so they are saved with the weights but never counted.

use scalemake::train::{fastfood_blocks, ModelShape, FROZEN_MLP_RATIO};
use tch::nn;
use tch::{Kind, Tensor};

pub mod hadamard;

use super::layers::{residual_std, Dense, FeedForward, Mlp, INIT_STD};
use hadamard::hadamard;

/// The feed-forward part of a trainable block for `cfg.variant`.
pub fn feed_forward(vs: nn::Path<'_>, cfg: &ModelShape) -> Box<dyn FeedForward> {
    use scalemake::train::Variant;
    match cfg.variant {
        Variant::Baseline | Variant::Doped => Box::new(Mlp::new(vs, cfg)),
        Variant::Fastfood => Box::new(FastfoodMlp::new(vs, cfg)),
        Variant::BlockdiagHadamard => Box::new(BlockDiagMlp::new(vs, cfg)),
    }
}

/// Adaptive FastFood linear map (Le et al. 2013; Yang et al. 2015, "Deep
/// Fried Convnets"): per n×n block, y = S·H·G·Π·H·B·x with learnable
/// diagonals S, G, B, a fixed random permutation Π and the normalised
/// Walsh–Hadamard transform H. Inputs are zero-padded to n = 2^⌈log2 in⌉;
/// blocks are stacked until they cover the outputs.
///
/// Initialisation follows FastFood's random-projection construction, scaled
/// so the map starts like a dense N(0, std²) layer: B = ±1, G ~ N(0, 1),
/// S = std·√n.
#[derive(Debug)]
pub struct FastfoodLinear {
    s: Tensor,
    g: Tensor,
    b: Tensor,
    /// Π of every block as one permutation of the k·n stacked features.
    perm: Tensor,
    bias: Tensor,
    in_dim: i64,
    out_dim: i64,
    n: i64,
    blocks: i64,
}

impl FastfoodLinear {
    /// `in_dim → out_dim`, starting like a dense layer of N(0, `std`²) weights.
    pub fn new(vs: nn::Path<'_>, in_dim: i64, out_dim: i64, std: f64) -> Self {
        let (n, blocks) = fastfood_blocks(in_dim, out_dim);
        let structured = &vs / "structured";
        let b = structured.ones("b", &[blocks, n]);
        let g = structured.var("g", &[blocks, n], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let s = structured.var("s", &[blocks, n], nn::Init::Const(std * (n as f64).sqrt()));
        let perm = (&vs / "buffers").zeros_no_train("perm", &[blocks * n]);
        tch::no_grad(|| {
            let signs = Tensor::randint(2, [blocks, n], (Kind::Float, vs.device())) * 2.0 - 1.0;
            b.shallow_clone().copy_(&signs);
            // Block j's permutation, shifted to index block j's own features.
            let per_block: Vec<Tensor> =
                (0..blocks).map(|j| Tensor::randperm(n, (Kind::Int64, vs.device())) + j * n).collect();
            perm.shallow_clone().copy_(&Tensor::cat(&per_block, 0));
        });
        let bias = vs.zeros("bias", &[out_dim]);
        FastfoodLinear { s, g, b, perm, bias, in_dim, out_dim, n, blocks }
    }

    /// `x` (…, in_dim) → (…, out_dim), computed in `kind`: by the fused CUDA
    /// kernel where it applies, else by tensor operations.
    pub fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        #[cfg(hadamard_cuda)]
        if self.fused_applies(x, kind) {
            return self.forward_fused(x, kind);
        }
        self.forward_unfused(x, kind)
    }

    /// The layer as tensor operations (the reference the kernel is checked against).
    pub fn forward_unfused(&self, x: &Tensor, kind: Kind) -> Tensor {
        let mut lead = x.size();
        lead.pop();
        let x = x.to_kind(kind);
        let x = if self.in_dim < self.n { x.constant_pad_nd([0, self.n - self.in_dim]) } else { x };
        let z = x.unsqueeze(-2) * self.b.to_kind(kind); // (…, k, n)
        let z = hadamard(&z, true);
        let z = z.reshape([-1, self.blocks * self.n]).index_select(1, &self.perm.to_kind(Kind::Int64));
        let z = z.view([-1, self.blocks, self.n]) * self.g.to_kind(kind);
        let z = hadamard(&z, true) * self.s.to_kind(kind);
        let y = z.reshape([-1, self.blocks * self.n]).narrow(1, 0, self.out_dim) + self.bias.to_kind(kind);
        lead.push(self.out_dim);
        y.view(lead.as_slice())
    }

    /// Whether the fused kernel takes this layer and input.
    #[cfg(hadamard_cuda)]
    fn fused_applies(&self, x: &Tensor, kind: Kind) -> bool {
        hadamard::kernel_enabled()
            && x.device().is_cuda()
            && hadamard::kernel_kind(kind)
            && self.s.kind() == Kind::Float
            && hadamard::fastfood_kernel_shape(self.n, self.in_dim, self.out_dim)
    }

    /// The layer in one kernel: one read of `x`, one write of the output.
    #[cfg(hadamard_cuda)]
    fn forward_fused(&self, x: &Tensor, kind: Kind) -> Tensor {
        let mut lead = x.size();
        lead.pop();
        let rows = x.to_kind(kind).reshape([-1, self.in_dim]);
        let perm = self.perm.view([self.blocks, self.n]).to_kind(Kind::Int);
        let y = hadamard::kernel::fastfood(&rows, &self.b, &self.g, &self.s, &self.bias, &perm, self.out_dim)
            .unwrap_or_else(|e| panic!("FastFood kernel: {e}"));
        lead.push(self.out_dim);
        y.view(lead.as_slice())
    }
}

/// The fused FastFood kernel against the layer's tensor operations in fp64
/// on the same device, forward and every gradient (x, b, g, s, bias), in
/// fp32, bf16 and fp16, for the projections of the paper's widths (256 …
/// 1024, and 2048 for n = 8192) on CUDA device `index`: the worst relative
/// errors per case, or the first case out of tolerance.
#[cfg(hadamard_cuda)]
pub fn check_fastfood_kernel(index: usize) -> Result<Vec<String>, String> {
    let device = tch::Device::Cuda(index);
    let mut report = Vec::new();
    for d in [256i64, 512, 768, 1024, 2048] {
        for (in_dim, out_dim) in [(d, 4 * d), (4 * d, d)] {
            for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
                tch::manual_seed(d);
                let vs = nn::VarStore::new(device);
                let layer = FastfoodLinear::new(vs.root(), in_dim, out_dim, 0.02);
                tch::no_grad(|| {
                    // Away from the initial constants, so every parameter matters.
                    let _ = layer.s.shallow_clone().normal_(0.0, 1.0);
                    let _ = layer.bias.shallow_clone().normal_(0.0, 0.1);
                });
                let params = [&layer.b, &layer.g, &layer.s, &layer.bias];
                let x = Tensor::randn([37, in_dim], (Kind::Float, device)).to_kind(kind).set_requires_grad(true);
                let w = Tensor::randn([37, out_dim], (Kind::Float, device));
                let fused = layer.forward_fused(&x, kind);
                let loss = (fused.to_kind(Kind::Float) * &w).sum(Kind::Float);
                let mut inputs = vec![&x];
                inputs.extend(params);
                let grads = Tensor::run_backward(&[&loss], &inputs, false, false);
                let x64 = x.detach().to_kind(Kind::Double).set_requires_grad(true);
                let want = layer.forward_unfused(&x64, Kind::Double);
                let loss64 = (&want * w.to_kind(Kind::Double)).sum(Kind::Double);
                let mut inputs64 = vec![&x64];
                inputs64.extend(params);
                let grads64 = Tensor::run_backward(&[&loss64], &inputs64, false, false);
                let relative = |ours: &Tensor, want: &Tensor| {
                    let want = want.to_kind(Kind::Double);
                    (ours.to_kind(Kind::Double) - &want).abs().max().double_value(&[])
                        / want.abs().max().double_value(&[]).max(1e-30)
                };
                let mut errors = vec![relative(&fused, &want)];
                errors.extend(grads.iter().zip(&grads64).map(|(ours, want)| relative(ours, want)));
                let tol = match kind {
                    Kind::Float => 1e-5,
                    Kind::Half => 1e-2,
                    _ => 5e-2,
                };
                let worst = errors.iter().cloned().fold(0.0, f64::max);
                let line = format!(
                    "FastFood {kind:?} {in_dim}→{out_dim}: relative errors y {:.1e}, dx {:.1e}, db {:.1e}, dg {:.1e}, ds {:.1e}, dbias {:.1e} (tolerance {tol:.0e})",
                    errors[0], errors[1], errors[2], errors[3], errors[4], errors[5]
                );
                if worst >= tol {
                    return Err(line);
                }
                report.push(line);
            }
        }
    }
    Ok(report)
}

/// The MLP with both projections as FastFood transforms: d → 4d → d.
#[derive(Debug)]
struct FastfoodMlp {
    fc: FastfoodLinear,
    proj: FastfoodLinear,
    dropout: f64,
}

impl FastfoodMlp {
    /// Creates its parameters under `vs`.
    fn new(vs: nn::Path<'_>, cfg: &ModelShape) -> Self {
        let d = cfg.d_model;
        FastfoodMlp {
            fc: FastfoodLinear::new(&vs / "fc", d, 4 * d, INIT_STD),
            proj: FastfoodLinear::new(&vs / "proj", 4 * d, d, residual_std(cfg)),
            dropout: cfg.dropout,
        }
    }
}

impl FeedForward for FastfoodMlp {
    fn forward_t(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor {
        self.proj.forward(&self.fc.forward(x, kind).gelu("none"), kind).dropout(self.dropout, train)
    }
}

/// The MLP as two block-diagonal matrices with a block Hadamard transform
/// after the first, so features mix across blocks: d → 4d → d with
/// `blocks` diagonal blocks in each matrix (4 in the paper), a quarter of a
/// dense MLP's weights at the same cost per weight.
///
/// The hidden layer stays block-major, (blocks, rows, 4d/blocks), from the
/// first batched matrix product to the second, so the blocks are `blocks`
/// plain matrix products and the mixing one small one over the block axis.
#[derive(Debug)]
struct BlockDiagMlp {
    w1: Tensor, // (blocks, d/blocks, 4d/blocks)
    b1: Tensor,
    w2: Tensor, // (blocks, 4d/blocks, d/blocks)
    b2: Tensor,
    /// H_blocks / √blocks, the mixing of the hidden layer's blocks.
    mix: Tensor,
    blocks: i64,
    dropout: f64,
}

impl BlockDiagMlp {
    /// Creates its parameters under `vs`.
    fn new(vs: nn::Path<'_>, cfg: &ModelShape) -> Self {
        let (d, k) = (cfg.d_model, cfg.blocks);
        let structured = &vs / "structured";
        let w1 = structured.var("w1", &[k, d / k, 4 * d / k], nn::Init::Randn { mean: 0.0, stdev: INIT_STD });
        let w2 = structured.var("w2", &[k, 4 * d / k, d / k], nn::Init::Randn { mean: 0.0, stdev: residual_std(cfg) });
        BlockDiagMlp {
            w1,
            b1: vs.zeros("fc_bias", &[4 * d]),
            w2,
            b2: vs.zeros("proj_bias", &[d]),
            mix: hadamard::hadamard_matrix(k, Kind::Float, vs.device()) / (k as f64).sqrt(),
            blocks: k,
            dropout: cfg.dropout,
        }
    }
}

impl FeedForward for BlockDiagMlp {
    fn forward_t(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor {
        let mut shape = x.size();
        let d = shape.pop().expect("features");
        let k = self.blocks;
        let hidden = 4 * d / k;
        // (rows, d) → (k, rows, d/k): block j of every row, one matrix per block.
        let blocks = x.to_kind(kind).reshape([-1, k, d / k]).transpose(0, 1);
        // (k, rows, 4d/k), then (H_k ⊗ I)·h: block i of the output is Σ_j H_ij/√k · block j.
        let h = blocks.bmm(&self.w1.to_kind(kind));
        let h = if k > 1 { self.mix.to_kind(kind).matmul(&h.reshape([k, -1])).view([k, -1, hidden]) } else { h };
        let h = (h + self.b1.to_kind(kind).view([k, 1, hidden])).gelu("none");
        let y = h.bmm(&self.w2.to_kind(kind)).transpose(0, 1).reshape([-1, d]) + self.b2.to_kind(kind);
        shape.push(d);
        y.view(shape.as_slice()).dropout(self.dropout, train)
    }
}

/// A doped model's frozen layer: a residual MLP of hidden size 6·d with
/// random weights that are never trained (not in the optimiser, no
/// gradient memory), after a LayerNorm without parameters. Its weights come
/// from the global generator, so they are a function of the run's seed.
#[derive(Debug)]
pub struct FrozenMlp {
    fc: Dense,
    proj: Dense,
    d_model: i64,
    dropout: f64,
}

impl FrozenMlp {
    /// Creates its fixed weights under `vs`.
    pub fn new(vs: nn::Path<'_>, cfg: &ModelShape) -> Self {
        let (d, hidden) = (cfg.d_model, FROZEN_MLP_RATIO * cfg.d_model);
        FrozenMlp {
            fc: Dense::frozen(&vs / "fc", d, hidden, INIT_STD),
            proj: Dense::frozen(&vs / "proj", hidden, d, residual_std(cfg)),
            d_model: d,
            dropout: cfg.dropout,
        }
    }

    /// x + MLP(LN(x)).
    pub fn forward_t(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor {
        let normed = x.layer_norm([self.d_model], None::<Tensor>, None::<Tensor>, 1e-5, false);
        x + self.proj.forward(&self.fc.forward(&normed, kind).gelu("none"), kind).dropout(self.dropout, train)
    }
}

#[cfg(test)]
mod tests {
    use super::hadamard::hadamard_matrix;
    use super::*;
    use scalemake::train::Variant;
    use tch::Device;

    /// The normalised Hadamard matrix as a dense (n, n) tensor.
    fn h(n: i64) -> Tensor {
        hadamard_matrix(n, Kind::Double, Device::Cpu) / (n as f64).sqrt()
    }

    /// `layer` as a dense (out_dim, in_dim) matrix: its output on the
    /// identity, less the bias, transposed.
    fn materialize(layer: &FastfoodLinear) -> Tensor {
        let eye = Tensor::eye(layer.in_dim, (Kind::Float, layer.s.device()));
        (layer.forward_unfused(&eye, Kind::Float) - layer.bias.to_kind(Kind::Float)).tr()
    }

    #[test]
    fn fastfood_is_s_h_g_pi_h_b_per_block() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = FastfoodLinear::new(vs.root(), 12, 40, 0.02); // n = 16, 3 blocks, 8 outputs dropped
        let (n, k) = (16, 3);
        let perm: Vec<i64> = Vec::try_from(layer.perm.to_kind(Kind::Int64)).unwrap();
        let mut blocks = Vec::new();
        for j in 0..k {
            let diag = |t: &Tensor| t.get(j).to_kind(Kind::Double).diag(0);
            // Π as a matrix: output i takes input perm[i] (within the block).
            let p = Tensor::zeros([n, n], (Kind::Double, Device::Cpu));
            for i in 0..n {
                let _ = p.get(i).get(perm[(j * n + i) as usize] - j * n).fill_(1.0);
            }
            blocks.push(
                diag(&layer.s).matmul(&h(n)).matmul(&diag(&layer.g)).matmul(&p).matmul(&h(n)).matmul(&diag(&layer.b)),
            );
        }
        // Stack the blocks, keep 40 outputs, and drop the 4 padded inputs.
        let dense = Tensor::cat(&blocks, 0).narrow(0, 0, 40).narrow(1, 0, 12);
        let x = Tensor::randn([5, 12], (Kind::Float, Device::Cpu));
        let ours = layer.forward(&x, Kind::Float) - &layer.bias;
        let expected = x.to_kind(Kind::Double).matmul(&dense.tr());
        assert!(ours.to_kind(Kind::Double).allclose(&expected, 1e-5, 1e-6, false));
        assert!(materialize(&layer).to_kind(Kind::Double).allclose(&dense, 1e-5, 1e-6, false));
    }

    #[test]
    fn fastfood_starts_at_the_scale_of_a_dense_layer() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = FastfoodLinear::new(vs.root(), 256, 1024, 0.02);
        let std = f64::try_from(materialize(&layer).std(true)).unwrap();
        assert!((std - 0.02).abs() < 0.004, "entries of the materialised map have std {std}, a dense init has 0.02");
    }

    #[test]
    fn fastfood_gradients_match_finite_differences() {
        tch::manual_seed(5);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let layer = FastfoodLinear::new(vs.root(), 6, 10, 0.5);
        vs.double();
        let x = Tensor::randn([3, 6], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([3, 10], (Kind::Double, Device::Cpu));
        let f = |layer: &FastfoodLinear| (layer.forward(&x, Kind::Double) * &w).sum(Kind::Double);
        f(&layer).backward();
        let eps = 1e-6;
        for param in [&layer.g, &layer.s, &layer.b] {
            let grad = param.grad().view([-1]);
            for i in [0i64, 7, 13] {
                let mut entry = param.view([-1]).get(i);
                let at = |delta: f64, entry: &mut Tensor| {
                    tch::no_grad(|| {
                        let _ = entry.g_add_scalar_(delta);
                    });
                    let v = f(&layer).double_value(&[]);
                    tch::no_grad(|| {
                        let _ = entry.g_add_scalar_(-delta);
                    });
                    v
                };
                let numeric = (at(eps, &mut entry) - at(-eps, &mut entry)) / (2.0 * eps);
                let analytic = grad.double_value(&[i]);
                assert!((numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()), "{numeric} vs {analytic}");
            }
        }
    }

    #[test]
    fn block_diagonal_mlp_equals_its_dense_form() {
        tch::manual_seed(6);
        let cfg = ModelShape {
            variant: Variant::BlockdiagHadamard,
            d_model: 16,
            dropout: 0.0,
            ..ModelShape::preset("nano", 300).unwrap()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mlp = BlockDiagMlp::new(vs.root(), &cfg);
        let (d, k) = (16, 4);
        let dense_blocks = |w: &Tensor, rows: i64, cols: i64| {
            // (k, in/k, out/k) → block-diagonal (in, out)
            let m = Tensor::zeros([rows, cols], (Kind::Double, Device::Cpu));
            for j in 0..k {
                let block = w.get(j).to_kind(Kind::Double);
                m.narrow(0, j * rows / k, rows / k).narrow(1, j * cols / k, cols / k).copy_(&block);
            }
            m
        };
        let w1 = dense_blocks(&mlp.w1, d, 4 * d);
        let w2 = dense_blocks(&mlp.w2, 4 * d, d);
        // Block Hadamard: block i of the output = Σ_j H_ij/√k · block j of the input.
        let mix = h(k).kron(&Tensor::eye(4 * d / k, (Kind::Double, Device::Cpu)));
        let x = Tensor::randn([2, 3, d], (Kind::Double, Device::Cpu));
        let hidden = (x.matmul(&w1).matmul(&mix) + mlp.b1.to_kind(Kind::Double)).gelu("none");
        let expected = hidden.matmul(&w2) + mlp.b2.to_kind(Kind::Double);
        let ours = mlp.forward_t(&x.to_kind(Kind::Float), Kind::Float, false).to_kind(Kind::Double);
        assert!(ours.allclose(&expected, 1e-4, 1e-5, false));
    }
}
