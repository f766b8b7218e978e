//! The paper's GPT decoder, in one screen: rotary attention → block → GPT,
//! from the dense layers and MLP of `super::layers`.
//!
//! Pre-LayerNorm blocks, causal self-attention through
//! `scaled_dot_product_attention` (flash kernels on GPU), rotary position
//! embeddings on queries and keys (no learned positions), GELU MLP of width
//! 4·d, dropout on attention and residuals, a final LayerNorm and an output
//! head tied to the token embedding by default. The vocabulary is padded to
//! a multiple of 64 for fast matmuls; padded rows are never counted and
//! their logits are cut off before the loss, so they are never predicted.
//! The block's feed-forward part is a [`FeedForward`] trait object, so model
//! variants (structured MLPs) add parts rather than flags; doped models add
//! frozen layers between blocks (`super::variants`).

use scalemake::train::{Head, ModelShape, ParamCounts, Variant};

use super::layers::{residual_std, Dense, FeedForward, INIT_STD};
use super::variants::{feed_forward, FrozenMlp};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Rotary position embedding tables (GPT-NeoX layout: the head is split in halves).
#[derive(Debug)]
struct Rotary {
    cos: Tensor, // (context, hs/2)
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &ModelShape, device: tch::Device) -> Self {
        let head_size = cfg.d_model / cfg.n_head;
        // inv_freq[i] = 10000^(-2i / hs)
        let inv_freq = (Tensor::arange(head_size / 2, (Kind::Double, device))
            * (-2.0 * 10000f64.ln() / head_size as f64))
            .exp()
            .to_kind(Kind::Float);
        let t = Tensor::arange(cfg.context, (Kind::Float, device));
        let angles = t.outer(&inv_freq);
        Rotary { cos: angles.cos(), sin: angles.sin() }
    }

    /// `x`: (B, nh, T, hs), rotated by position.
    fn apply(&self, x: &Tensor) -> Tensor {
        let (_, _, t, hs) = x.size4().expect("(B, nh, T, hs)");
        let cos = self.cos.narrow(0, 0, t).to_kind(x.kind());
        let sin = self.sin.narrow(0, 0, t).to_kind(x.kind());
        let x1 = x.narrow(-1, 0, hs / 2);
        let x2 = x.narrow(-1, hs / 2, hs / 2);
        Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x1 * &sin + &x2 * &cos], -1)
    }
}

/// Causal multi-head self-attention with rotary positions.
#[derive(Debug)]
struct Attention {
    qkv: Dense,
    proj: Dense,
    n_head: i64,
    dropout: f64,
}

impl Attention {
    fn new(vs: nn::Path<'_>, cfg: &ModelShape) -> Self {
        let d = cfg.d_model;
        Attention {
            qkv: Dense::new(&vs / "qkv", d, 3 * d, INIT_STD),
            proj: Dense::new(&vs / "proj", d, d, residual_std(cfg)),
            n_head: cfg.n_head,
            dropout: cfg.dropout,
        }
    }

    fn forward_t(&self, x: &Tensor, rotary: &Rotary, kind: Kind, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("(B, T, d)");
        let hs = d / self.n_head;
        let heads = |z: &Tensor| z.view([b, t, self.n_head, hs]).transpose(1, 2); // (B, nh, T, hs)
        let qkv = self.qkv.forward(x, kind).split(d, -1);
        let (q, k, v) = (rotary.apply(&heads(&qkv[0])), rotary.apply(&heads(&qkv[1])), heads(&qkv[2]));
        let dropout = if train { self.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, dropout, true, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, d]);
        self.proj.forward(&y, kind).dropout(self.dropout, train)
    }
}

/// One pre-LayerNorm transformer block.
#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    attn: Attention,
    ln2: nn::LayerNorm,
    ff: Box<dyn FeedForward>,
}

impl Block {
    /// The residual stream `x` stays fp32; the branches compute in `kind`.
    fn forward_t(&self, x: &Tensor, rotary: &Rotary, kind: Kind, train: bool) -> Tensor {
        let x = x + self.attn.forward_t(&self.ln1.forward(x), rotary, kind, train);
        &x + self.ff.forward_t(&self.ln2.forward(&x), kind, train)
    }
}

/// One layer of the stack: a transformer block, or a doped model's frozen MLP.
#[derive(Debug)]
enum Layer {
    Block(Box<Block>),
    Frozen(FrozenMlp),
}

/// The GPT decoder.
#[derive(Debug)]
pub struct Gpt {
    cfg: ModelShape,
    compute: Kind,
    wte: nn::Embedding,
    layers: Vec<Layer>,
    ln_f: nn::LayerNorm,
    lm_head: Option<Tensor>,
    rotary: Rotary,
}

impl Gpt {
    /// The model `cfg` describes (its variant included) with weights under `vs`, computing
    /// matmuls and attention in `compute` (`Float` or `BFloat16`).
    pub fn new(vs: &nn::Path<'_>, cfg: &ModelShape, compute: Kind) -> Self {
        assert!(cfg.check().is_ok(), "invalid shape {cfg:?}");
        let ln = |p: nn::Path<'_>| nn::layer_norm(p, vec![cfg.d_model], Default::default());
        let init = nn::Init::Randn { mean: 0.0, stdev: INIT_STD };
        let wte = nn::embedding(
            vs / "wte",
            cfg.padded_vocab(),
            cfg.d_model,
            nn::EmbeddingConfig { ws_init: init, ..Default::default() },
        );
        // Trainable blocks h.0 … h.{L-1}; a doped model has a frozen MLP
        // (frozen.i) after every block but the last, so the first and last
        // layers are trainable (Table 2).
        let mut layers = Vec::new();
        for i in 0..cfg.n_layer {
            let b = vs / "h" / i;
            layers.push(Layer::Block(Box::new(Block {
                ln1: ln(&b / "ln1"),
                attn: Attention::new(&b / "attn", cfg),
                ln2: ln(&b / "ln2"),
                ff: feed_forward(&b / "mlp", cfg),
            })));
            if i < cfg.frozen_layers() {
                layers.push(Layer::Frozen(FrozenMlp::new(vs / "frozen" / i, cfg)));
            }
        }
        let lm_head = match cfg.head {
            Head::Tied => None,
            Head::Untied => Some((vs / "lm_head").var("weight", &[cfg.padded_vocab(), cfg.d_model], init)),
        };
        Gpt {
            cfg: cfg.clone(),
            compute,
            wte,
            layers,
            ln_f: ln(vs / "ln_f"),
            lm_head,
            rotary: Rotary::new(cfg, vs.device()),
        }
    }

    /// The shape it was built for.
    pub fn shape(&self) -> &ModelShape {
        &self.cfg
    }

    /// The precision of its matmuls and attention.
    pub fn compute_kind(&self) -> Kind {
        self.compute
    }

    /// `idx`: (B, T) token ids → logits (B, T, vocab_size) in the compute
    /// precision, padding cut off.
    pub fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let x = self.wte.forward(idx).dropout(self.cfg.dropout, train);
        let x = self.layers.iter().fold(x, |x, layer| match layer {
            Layer::Block(b) => b.forward_t(&x, &self.rotary, self.compute, train),
            Layer::Frozen(f) => f.forward_t(&x, self.compute, train),
        });
        let x = self.ln_f.forward(&x).to_kind(self.compute);
        let head = self.lm_head.as_ref().unwrap_or(&self.wte.ws);
        x.matmul(&head.to_kind(self.compute).tr()).narrow(-1, 0, self.cfg.vocab_size)
    }

    /// Mean cross-entropy (in fp32) of predicting `targets` (B, T) from `idx` (B, T).
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        let logits = self.forward_t(idx, train).to_kind(Kind::Float);
        logits.reshape([-1, self.cfg.vocab_size]).cross_entropy_for_logits(&targets.reshape([-1]))
    }
}

/// Counts the variables of a built model: embedding-like tensors (the ones
/// with `padded_vocab` rows) count `vocab_size` rows only; other tensors are
/// trainable or frozen by `requires_grad`, and structured when their path has
/// a `structured` component (FastFood diagonals in a `fastfood` model, whose
/// compute the paper takes as free); `buffers` (fixed indices) are not
/// parameters.
pub fn param_counts(vs: &nn::VarStore, cfg: &ModelShape) -> ParamCounts {
    let mut counts = ParamCounts::default();
    for (name, t) in vs.variables() {
        if name.split('.').any(|part| part == "buffers") {
            continue;
        }
        let size = t.size();
        let numel = size.iter().product::<i64>();
        if name == "wte.weight" || name == "lm_head.weight" {
            counts.embedding += cfg.vocab_size * size[1..].iter().product::<i64>();
            continue;
        }
        if name.split('.').any(|part| part == "structured") {
            counts.structured += numel;
            if cfg.variant == Variant::Fastfood {
                counts.fastfood += numel;
            }
        }
        if t.requires_grad() {
            counts.trainable += numel;
        } else {
            counts.frozen += numel;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Trainer;
    use scalemake::train::job::OptimSpec;
    use scalemake::train::PRESETS;
    use tch::Device;

    fn build(cfg: &ModelShape) -> (nn::VarStore, Gpt) {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt::new(&vs.root(), cfg, Kind::Float);
        (vs, model)
    }

    #[test]
    fn built_models_have_the_formula_counts_for_every_preset() {
        for preset in PRESETS {
            let cfg = ModelShape::preset(preset.name, 50_262).unwrap();
            let (vs, _model) = build(&cfg);
            assert_eq!(param_counts(&vs, &cfg), cfg.param_counts(), "{cfg:?}");
        }
        let untied = ModelShape { head: Head::Untied, ..ModelShape::preset("nano", 1000).unwrap() };
        let (vs, _model) = build(&untied);
        assert_eq!(param_counts(&vs, &untied), untied.param_counts());
    }

    #[test]
    fn shapes_padding_and_initial_loss() {
        tch::manual_seed(0);
        let cfg = ModelShape::preset("nano", 1000).unwrap();
        assert_eq!(cfg.padded_vocab(), 1024);
        let (_vs, model) = build(&cfg);
        let idx = Tensor::randint(1000, [3, 17], (Kind::Int64, tch::Device::Cpu));
        let logits = model.forward_t(&idx, false);
        assert_eq!(logits.size(), [3, 17, 1000], "padded rows are never predicted");
        let targets = Tensor::randint(1000, [3, 17], (Kind::Int64, tch::Device::Cpu));
        let loss = model.loss(&idx, &targets, false).double_value(&[]);
        assert!((loss - (1000f64).ln()).abs() < 0.1, "initial loss {loss} should be near ln(1000)");
    }

    #[test]
    fn bf16_compute_keeps_fp32_weights_and_close_logits() {
        tch::manual_seed(2);
        let cfg = ModelShape { dropout: 0.0, ..ModelShape::preset("nano", 500).unwrap() };
        let (vs, fp32) = build(&cfg);
        let idx = Tensor::randint(500, [2, 33], (Kind::Int64, tch::Device::Cpu));
        let a = fp32.forward_t(&idx, false);
        let shared = Gpt { compute: Kind::BFloat16, ..fp32 };
        let b = shared.forward_t(&idx, false);
        assert_eq!(b.kind(), Kind::BFloat16);
        assert!(vs.variables().values().all(|t| t.kind() == Kind::Float), "master weights stay fp32");
        let diff = (a - b.to_kind(Kind::Float)).abs().max().double_value(&[]);
        assert!(diff < 0.05, "bf16 logits within {diff} of fp32");
    }

    #[test]
    fn attention_is_causal() {
        tch::manual_seed(1);
        let (_vs, model) = build(&ModelShape::preset("nano", 100).unwrap());
        let a = Tensor::from_slice(&[5i64, 6, 7, 8]).view([1, 4]);
        let b = Tensor::from_slice(&[5i64, 6, 7, 9]).view([1, 4]);
        let (la, lb) = (model.forward_t(&a, false), model.forward_t(&b, false));
        assert!(
            la.narrow(1, 0, 3).allclose(&lb.narrow(1, 0, 3), 1e-5, 1e-6, false),
            "earlier positions must not see later tokens"
        );
        assert!(!la.narrow(1, 3, 1).allclose(&lb.narrow(1, 3, 1), 1e-5, 1e-6, false));
    }

    fn shape(variant: Variant) -> ModelShape {
        ModelShape { variant, dropout: 0.0, ..ModelShape::preset("nano", 300).unwrap() }
    }

    #[test]
    fn every_variant_has_its_formula_counts() {
        for variant in Variant::ALL {
            for base in ["nano", "micro"] {
                let cfg = ModelShape { variant, ..ModelShape::preset(base, 1000).unwrap() };
                let (vs, _model) = build(&cfg);
                assert_eq!(param_counts(&vs, &cfg), cfg.param_counts(), "{cfg:?}");
            }
        }
    }

    fn optim() -> OptimSpec {
        OptimSpec::constant(3e-3)
    }

    #[test]
    fn frozen_layers_never_change_and_stay_out_of_the_optimizer() {
        tch::manual_seed(7);
        let cfg = shape(Variant::Doped);
        let (vs, model) = build(&cfg);
        let frozen_before: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(n, _)| n.starts_with("frozen.")).map(|(n, t)| (n, t.copy())).collect();
        assert_eq!(frozen_before.len(), 4, "one frozen MLP (fc, proj) between the two blocks");
        let mut trainer = Trainer::new(&vs, &optim());
        assert!(
            trainer.layout().iter().all(|(name, _)| !name.starts_with("frozen.")),
            "frozen weights are not in the flat buffers"
        );
        let flat_size: i64 = trainer.layout().iter().map(|(_, s)| s.iter().product::<i64>()).sum();
        assert_eq!(
            flat_size,
            cfg.param_counts().trainable + cfg.padded_vocab() * cfg.d_model,
            "optimizer state covers trainable parameters only"
        );
        let data = Tensor::randint(300, [2, 17], (Kind::Int64, Device::Cpu));
        let batch = [(data.narrow(1, 0, 16), data.narrow(1, 1, 16))];
        for _ in 0..3 {
            trainer.step(&model, &batch).unwrap();
        }
        for (name, before) in frozen_before {
            let now = &vs.variables()[&name];
            assert!(now.equal(&before), "{name} changed");
            assert!(!now.grad().defined(), "{name} has gradient memory");
        }
    }

    #[test]
    fn every_variant_learns_on_the_cpu() {
        for variant in Variant::ALL {
            tch::manual_seed(8);
            let cfg = shape(variant);
            let (vs, model) = build(&cfg);
            let mut trainer = Trainer::new(&vs, &optim());
            let data = Tensor::randint(300, [4, 33], (Kind::Int64, Device::Cpu));
            let batch = [(data.narrow(1, 0, 32), data.narrow(1, 1, 32))];
            let first = trainer.step(&model, &batch).unwrap().loss.double_value(&[]);
            let mut last = first;
            for _ in 0..30 {
                last = trainer.step(&model, &batch).unwrap().loss.double_value(&[]);
            }
            assert!(last < first - 1.0, "{variant:?}: loss {first:.3} → {last:.3}");
        }
    }
}
