//! The paper's GPT decoder, in one screen: rotary attention → MLP → block → GPT.
//!
//! Pre-LayerNorm blocks, causal self-attention through
//! `scaled_dot_product_attention` (flash kernels on GPU), rotary position
//! embeddings on queries and keys (no learned positions), GELU MLP of width
//! 4·d, dropout on attention and residuals, a final LayerNorm and an output
//! head tied to the token embedding by default. The vocabulary is padded to
//! a multiple of 64 for fast matmuls; padded rows are never counted and
//! their logits are cut off before the loss, so they are never predicted.
//! The block's feed-forward part is a [`FeedForward`] trait object, so model
//! variants (frozen, structured) add parts rather than flags.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Whether the output head shares the token embedding's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One matrix for input embedding and output projection (GPT-2's choice; the default).
    Tied,
    /// A separate output projection.
    Untied,
}

/// Model shape. Presets follow the paper's Table 1, plus two CPU-sized ones.
#[derive(Clone, Debug, PartialEq)]
pub struct GptConfig {
    /// Tokenizer vocabulary (50,262 in the paper); the embedding is padded to a multiple of 64.
    pub vocab_size: i64,
    /// Transformer blocks.
    pub n_layer: i64,
    /// Attention heads (`d_model` must divide evenly).
    pub n_head: i64,
    /// Residual stream width.
    pub d_model: i64,
    /// Longest sequence (1,024 in the paper); sizes the rotary tables.
    pub context: i64,
    /// Dropout on attention weights and residual branches (0.1 in the paper).
    pub dropout: f64,
    /// Output head tied to the embedding or not.
    pub head: Head,
}

impl GptConfig {
    fn preset(vocab_size: i64, n_layer: i64, n_head: i64, d_model: i64, context: i64) -> Self {
        GptConfig { vocab_size, n_layer, n_head, d_model, context, dropout: 0.1, head: Head::Tied }
    }
    /// 2 layers, d=64: unit tests.
    pub fn nano(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 2, 2, 64, 64)
    }
    /// 4 layers, d=128: CPU training in minutes.
    pub fn micro(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 4, 4, 128, 256)
    }
    /// Table 1 XXSmall: 3 layers, d=768, 12 heads.
    pub fn xxsmall(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 3, 12, 768, 1024)
    }
    /// Table 1 XSmall: 6 layers, d=768, 12 heads.
    pub fn xsmall(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 6, 12, 768, 1024)
    }
    /// Table 1 Small: 12 layers, d=768, 12 heads.
    pub fn small(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 12, 12, 768, 1024)
    }
    /// Table 1 Medium: 24 layers, d=1024, 16 heads.
    pub fn medium(vocab_size: i64) -> Self {
        Self::preset(vocab_size, 24, 16, 1024, 1024)
    }

    /// Embedding rows: the vocabulary rounded up to a multiple of 64.
    pub fn padded_vocab(&self) -> i64 {
        (self.vocab_size + 63) / 64 * 64
    }

    fn head_size(&self) -> i64 {
        self.d_model / self.n_head
    }
}

/// A block's position-wise feed-forward part (dense MLP here; variants add others).
pub trait FeedForward: std::fmt::Debug + Send {
    /// `x`: (B, T, d) → (B, T, d).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor;
}

/// The dense GELU MLP: d → 4d → d.
#[derive(Debug)]
pub struct Mlp {
    fc: nn::Linear,
    proj: nn::Linear,
    dropout: f64,
}

impl Mlp {
    /// Creates its weights under `vs`.
    pub fn new(vs: nn::Path<'_>, cfg: &GptConfig) -> Self {
        let d = cfg.d_model;
        Mlp { fc: nn::linear(&vs / "fc", d, 4 * d, Default::default()), proj: nn::linear(&vs / "proj", 4 * d, d, Default::default()), dropout: cfg.dropout }
    }
}

impl FeedForward for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.proj.forward(&self.fc.forward(x).gelu("none")).dropout(self.dropout, train)
    }
}

/// Rotary position embedding tables (GPT-NeoX layout: the head is split in halves).
#[derive(Debug)]
struct Rotary {
    cos: Tensor, // (context, hs/2)
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &GptConfig, device: tch::Device) -> Self {
        let half = cfg.head_size() / 2;
        // inv_freq[i] = 10000^(-2i / hs)
        let inv_freq = (Tensor::arange(half, (Kind::Double, device)) * (-2.0 * 10000f64.ln() / cfg.head_size() as f64)).exp().to_kind(Kind::Float);
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
    qkv: nn::Linear,
    proj: nn::Linear,
    n_head: i64,
    dropout: f64,
}

impl Attention {
    fn new(vs: nn::Path<'_>, cfg: &GptConfig) -> Self {
        let d = cfg.d_model;
        Attention {
            qkv: nn::linear(&vs / "qkv", d, 3 * d, Default::default()),
            proj: nn::linear(&vs / "proj", d, d, Default::default()),
            n_head: cfg.n_head,
            dropout: cfg.dropout,
        }
    }

    fn forward_t(&self, x: &Tensor, rotary: &Rotary, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("(B, T, d)");
        let hs = d / self.n_head;
        let heads = |z: &Tensor| z.view([b, t, self.n_head, hs]).transpose(1, 2); // (B, nh, T, hs)
        let qkv = self.qkv.forward(x).split(d, -1);
        let (q, k, v) = (rotary.apply(&heads(&qkv[0])), rotary.apply(&heads(&qkv[1])), heads(&qkv[2]));
        let dropout = if train { self.dropout } else { 0.0 };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, dropout, true, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, d]);
        self.proj.forward(&y).dropout(self.dropout, train)
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
    fn forward_t(&self, x: &Tensor, rotary: &Rotary, train: bool) -> Tensor {
        let x = x + self.attn.forward_t(&self.ln1.forward(x), rotary, train);
        &x + self.ff.forward_t(&self.ln2.forward(&x), train)
    }
}

/// The GPT decoder.
#[derive(Debug)]
pub struct Gpt {
    cfg: GptConfig,
    wte: nn::Embedding,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    lm_head: Option<nn::Linear>,
    rotary: Rotary,
}

impl Gpt {
    /// A baseline model (dense MLPs) with weights under `vs`.
    pub fn new(vs: &nn::Path<'_>, cfg: &GptConfig) -> Self {
        assert!(cfg.d_model % cfg.n_head == 0 && cfg.head_size() % 2 == 0, "d_model must split into heads of even size");
        let ln = |p: nn::Path<'_>| nn::layer_norm(p, vec![cfg.d_model], Default::default());
        let wte = nn::embedding(vs / "wte", cfg.padded_vocab(), cfg.d_model, nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() });
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let b = vs / "h" / i;
                Block { ln1: ln(&b / "ln1"), attn: Attention::new(&b / "attn", cfg), ln2: ln(&b / "ln2"), ff: Box::new(Mlp::new(&b / "mlp", cfg)) }
            })
            .collect();
        let lm_head = match cfg.head {
            Head::Tied => None,
            Head::Untied => Some(nn::linear(vs / "lm_head", cfg.d_model, cfg.padded_vocab(), nn::LinearConfig { bias: false, ..Default::default() })),
        };
        Gpt { cfg: cfg.clone(), wte, blocks, ln_f: ln(vs / "ln_f"), lm_head, rotary: Rotary::new(cfg, vs.device()) }
    }

    /// `idx`: (B, T) token ids → logits (B, T, vocab_size), padding cut off.
    pub fn forward_t(&self, idx: &Tensor, train: bool) -> Tensor {
        let x = self.wte.forward(idx).dropout(self.cfg.dropout, train);
        let x = self.blocks.iter().fold(x, |x, b| b.forward_t(&x, &self.rotary, train));
        let x = self.ln_f.forward(&x);
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x),
            None => x.matmul(&self.wte.ws.tr()),
        };
        logits.narrow(-1, 0, self.cfg.vocab_size)
    }

    /// Mean cross-entropy of predicting `targets` (B, T) from `idx` (B, T).
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        let logits = self.forward_t(idx, train);
        logits.reshape([-1, self.cfg.vocab_size]).cross_entropy_for_logits(&targets.reshape([-1]))
    }
}

/// Parameter counts, as the paper's compute formula needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Token embedding (and an untied head), unpadded rows only.
    pub embedding: i64,
    /// Trainable non-embedding parameters: the paper's N.
    pub non_embedding: i64,
}

impl ParamCounts {
    /// Counts the variables of a built model: embedding-like tensors are the
    /// ones with `padded_vocab` rows, counted for `vocab_size` rows only.
    pub fn of(vs: &nn::VarStore, cfg: &GptConfig) -> Self {
        let (mut embedding, mut non_embedding) = (0, 0);
        for (name, t) in vs.variables() {
            let size = t.size();
            if name.ends_with("wte.weight") || name.ends_with("lm_head.weight") {
                embedding += cfg.vocab_size * size[1..].iter().product::<i64>();
            } else if t.requires_grad() {
                non_embedding += size.iter().product::<i64>();
            }
        }
        ParamCounts { embedding, non_embedding }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kaplan et al.'s count per block: 12·d² weights + 13·d biases and gains.
    fn expected(cfg: &GptConfig) -> ParamCounts {
        let d = cfg.d_model;
        let heads = if cfg.head == Head::Untied { 2 } else { 1 };
        ParamCounts { embedding: heads * cfg.vocab_size * d, non_embedding: cfg.n_layer * (12 * d * d + 13 * d) + 2 * d }
    }

    #[test]
    fn parameter_counts_match_the_formula_for_every_preset() {
        for cfg in [GptConfig::nano(50_262), GptConfig::micro(50_262), GptConfig::xxsmall(50_262), GptConfig::small(50_262), GptConfig::medium(50_262)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _model = Gpt::new(&vs.root(), &cfg);
            assert_eq!(ParamCounts::of(&vs, &cfg), expected(&cfg), "{cfg:?}");
        }
        // Table 1 of the paper: XXSmall 21M, XSmall 42M, Small 85M, Medium 302M non-embedding parameters.
        assert_eq!(expected(&GptConfig::xxsmall(50_262)).non_embedding, 21_265_152);
        assert_eq!(expected(&GptConfig::xsmall(50_262)).non_embedding, 42_528_768);
        assert_eq!(expected(&GptConfig::small(50_262)).non_embedding, 85_056_000);
        assert_eq!(expected(&GptConfig::medium(50_262)).non_embedding, 302_311_424);
        let untied = GptConfig { head: Head::Untied, ..GptConfig::nano(1000) };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _model = Gpt::new(&vs.root(), &untied);
        assert_eq!(ParamCounts::of(&vs, &untied), expected(&untied));
    }

    #[test]
    fn shapes_padding_and_initial_loss() {
        tch::manual_seed(0);
        let cfg = GptConfig::nano(1000);
        assert_eq!(cfg.padded_vocab(), 1024);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt::new(&vs.root(), &cfg);
        let idx = Tensor::randint(1000, [3, 17], (Kind::Int64, tch::Device::Cpu));
        let logits = model.forward_t(&idx, false);
        assert_eq!(logits.size(), [3, 17, 1000], "padded rows are never predicted");
        let loss = model.loss(&idx, &idx, false).double_value(&[]);
        assert!((loss - (1000f64).ln()).abs() < 0.3, "initial loss {loss} should be near ln(1000)");
    }

    #[test]
    fn attention_is_causal() {
        tch::manual_seed(1);
        let cfg = GptConfig::nano(100);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Gpt::new(&vs.root(), &cfg);
        let a = Tensor::from_slice(&[5i64, 6, 7, 8]).view([1, 4]);
        let b = Tensor::from_slice(&[5i64, 6, 7, 9]).view([1, 4]);
        let (la, lb) = (model.forward_t(&a, false), model.forward_t(&b, false));
        assert!(la.narrow(1, 0, 3).allclose(&lb.narrow(1, 0, 3), 1e-5, 1e-6, false), "earlier positions must not see later tokens");
        assert!(!la.narrow(1, 3, 1).allclose(&lb.narrow(1, 3, 1), 1e-5, 1e-6, false));
    }
}
