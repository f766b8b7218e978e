//! The layers every model is built from: [`Dense`] (fp32 weights, matmuls
//! in the compute precision), the [`FeedForward`] seam a block's MLP plugs
//! into, the dense [`Mlp`], and GPT-2's initialisation scales. `gpt` and
//! `variants` both build on these, so neither needs the other's internals.

use scalemake::train::ModelShape;
use tch::nn;
use tch::{Kind, Tensor};

/// GPT-2's initialisation scale for weights.
pub(crate) const INIT_STD: f64 = 0.02;

/// A linear layer whose matmul runs in the model's compute precision while
/// its weights stay fp32 (explicit autocast: cast on use, fp32 master copy).
#[derive(Debug)]
pub struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    /// `in_dim → out_dim` with N(0, `std`) weights and a zero bias.
    pub fn new(vs: nn::Path<'_>, in_dim: i64, out_dim: i64, std: f64) -> Self {
        let weight = vs.var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0.0, stdev: std });
        let bias = Some(vs.zeros("bias", &[out_dim]));
        Dense { weight, bias }
    }

    /// Like [`Dense::new`], but never trained: no gradient, not in the optimiser.
    pub fn frozen(vs: nn::Path<'_>, in_dim: i64, out_dim: i64, std: f64) -> Self {
        let weight = vs.zeros_no_train("weight", &[out_dim, in_dim]);
        let bias = vs.zeros_no_train("bias", &[out_dim]);
        tch::no_grad(|| {
            weight.shallow_clone().copy_(&(Tensor::randn([out_dim, in_dim], (Kind::Float, vs.device())) * std))
        });
        Dense { weight, bias: Some(bias) }
    }

    /// `x @ Wᵀ + b` computed in `kind`.
    pub fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        let bias = self.bias.as_ref().map(|b| b.to_kind(kind));
        x.to_kind(kind).linear(&self.weight.to_kind(kind), bias.as_ref())
    }
}

/// A block's position-wise feed-forward part (dense MLP here; variants add others).
pub trait FeedForward: std::fmt::Debug + Send {
    /// `x`: (B, T, d) → (B, T, d), matmuls in `kind`.
    fn forward_t(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor;
}

/// The dense GELU MLP: d → 4d → d.
#[derive(Debug)]
pub struct Mlp {
    fc: Dense,
    proj: Dense,
    dropout: f64,
}

impl Mlp {
    /// Creates its weights under `vs`.
    pub fn new(vs: nn::Path<'_>, cfg: &ModelShape) -> Self {
        let d = cfg.d_model;
        Mlp {
            fc: Dense::new(&vs / "fc", d, 4 * d, INIT_STD),
            proj: Dense::new(&vs / "proj", 4 * d, d, residual_std(cfg)),
            dropout: cfg.dropout,
        }
    }
}

impl FeedForward for Mlp {
    fn forward_t(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor {
        self.proj.forward(&self.fc.forward(x, kind).gelu("none"), kind).dropout(self.dropout, train)
    }
}

/// GPT-2 scales the init of projections into the residual stream by
/// 1/√(2·layers), so the stream's variance does not grow with depth.
pub(crate) fn residual_std(cfg: &ModelShape) -> f64 {
    INIT_STD / (2.0 * cfg.n_layer as f64).sqrt()
}
