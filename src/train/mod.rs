//! What a training run is, without libtorch: model shapes and the paper's
//! presets, parameter counts, compute cost models, and the protocol between
//! the `train` node (engine) and the torch worker that runs it.
//!
//! Everything here is plain data and arithmetic, so the engine can plan,
//! count and show runs (and the fit can read them) without loading libtorch;
//! the worker builds the model from the same [`ModelShape`].

pub mod compile;
pub mod job;
pub mod record;
pub mod tfevents;
pub mod variant;

use serde::{Deserialize, Serialize};

pub use variant::{fastfood_blocks, Variant, FROZEN_MLP_RATIO, VARIANT_NAMES};

/// Whether the output head shares the token embedding's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// One matrix for input embedding and output projection (GPT-2's choice; the default).
    Tied,
    /// A separate output projection.
    Untied,
}

/// The shape of a GPT decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Tokenizer vocabulary (50,262 in the paper); the embedding is padded to a multiple of 64.
    pub vocab_size: i64,
    /// Transformer blocks.
    pub n_layer: i64,
    /// Attention heads (`d_model` must split into heads of even size, for rotary).
    pub n_head: i64,
    /// Residual stream width.
    pub d_model: i64,
    /// Longest sequence (1,024 in the paper); sizes the rotary tables.
    pub context: i64,
    /// Dropout on embeddings, attention weights and residual branches (0.1 in the paper).
    pub dropout: f64,
    /// Output head tied to the embedding or not.
    pub head: Head,
    /// Baseline or one of the paper's variants.
    #[serde(default)]
    pub variant: Variant,
    /// Blocks of the block-diagonal MLP (`blockdiag_hadamard` only; the paper: 4).
    #[serde(default = "default_blocks")]
    pub blocks: i64,
}

fn default_blocks() -> i64 {
    4
}

/// A named model size: the paper's Table 1 plus two CPU-sized ones.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    /// Name used in `model: { preset: … }`.
    pub name: &'static str,
    /// Blocks.
    pub n_layer: i64,
    /// Heads.
    pub n_head: i64,
    /// Width.
    pub d_model: i64,
    /// Context.
    pub context: i64,
    /// Variant (Table 2 presets are doped).
    pub variant: Variant,
}

/// Presets by name. `nano` is for unit tests, `micro` for CPU runs in
/// minutes; the rest are Table 1 of the paper.
pub const PRESETS: &[Preset] = &[
    Preset { name: "nano", n_layer: 2, n_head: 2, d_model: 64, context: 64, variant: Variant::Baseline },
    Preset { name: "micro", n_layer: 4, n_head: 4, d_model: 128, context: 256, variant: Variant::Baseline },
    Preset { name: "xxsmall", n_layer: 3, n_head: 12, d_model: 768, context: 1024, variant: Variant::Baseline },
    Preset { name: "xsmall", n_layer: 6, n_head: 12, d_model: 768, context: 1024, variant: Variant::Baseline },
    Preset { name: "small", n_layer: 12, n_head: 12, d_model: 768, context: 1024, variant: Variant::Baseline },
    Preset { name: "medium", n_layer: 24, n_head: 16, d_model: 1024, context: 1024, variant: Variant::Baseline },
    // Table 2: trainable layers + (trainable − 1) frozen MLPs.
    Preset { name: "doped_xsmall", n_layer: 3, n_head: 12, d_model: 768, context: 1024, variant: Variant::Doped },
    Preset { name: "doped_small", n_layer: 6, n_head: 12, d_model: 768, context: 1024, variant: Variant::Doped },
    Preset { name: "doped_medium", n_layer: 12, n_head: 16, d_model: 1024, context: 1024, variant: Variant::Doped },
    // Table 3: 12 layers, d = 1024, 16 heads.
    Preset {
        name: "structured_fastfood",
        n_layer: 12,
        n_head: 16,
        d_model: 1024,
        context: 1024,
        variant: Variant::Fastfood,
    },
    Preset {
        name: "structured_blockdiag",
        n_layer: 12,
        n_head: 16,
        d_model: 1024,
        context: 1024,
        variant: Variant::BlockdiagHadamard,
    },
];

/// A row of the paper's Tables 1–3: a preset with the training settings
/// the paper gives for it (all share context 1,024, batch 80, dropout 0.1,
/// warmup 409.6M tokens, 32G max tokens, clip 1.0, no weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperModel {
    /// Preset name (see [`PRESETS`]).
    pub preset: &'static str,
    /// Which table: 1 baselines, 2 doped, 3 structured.
    pub table: u8,
    /// The paper's name for it.
    pub label: &'static str,
    /// Layers as the paper counts them (doped: trainable + frozen).
    pub layers: i64,
    /// Peak learning rate.
    pub lr: f64,
    /// Cosine decay length in tokens.
    pub decay_tokens: f64,
}

/// The paper's Tables 1–3, in order.
pub const PAPER_MODELS: &[PaperModel] = &[
    PaperModel { preset: "xxsmall", table: 1, label: "XXSmall", layers: 3, lr: 5e-4, decay_tokens: 32.8e9 },
    PaperModel { preset: "xsmall", table: 1, label: "XSmall", layers: 6, lr: 5e-4, decay_tokens: 32.8e9 },
    PaperModel { preset: "small", table: 1, label: "Small", layers: 12, lr: 5e-4, decay_tokens: 32.8e9 },
    PaperModel { preset: "medium", table: 1, label: "Medium", layers: 24, lr: 3e-4, decay_tokens: 40.9e9 },
    PaperModel { preset: "doped_xsmall", table: 2, label: "Doped XSmall", layers: 5, lr: 5e-4, decay_tokens: 32.8e9 },
    PaperModel { preset: "doped_small", table: 2, label: "Doped Small", layers: 11, lr: 5e-4, decay_tokens: 32.8e9 },
    PaperModel { preset: "doped_medium", table: 2, label: "Doped Medium", layers: 23, lr: 3e-4, decay_tokens: 40.9e9 },
    PaperModel {
        preset: "structured_fastfood",
        table: 3,
        label: "Structured Adaptive FastFood",
        layers: 12,
        lr: 5e-4,
        decay_tokens: 32.8e9,
    },
    PaperModel {
        preset: "structured_blockdiag",
        table: 3,
        label: "Structured Block Diagonal",
        layers: 12,
        lr: 5e-4,
        decay_tokens: 40.9e9,
    },
];

/// The names of [`PRESETS`], for schemas.
pub const PRESET_NAMES: &[&str] = &[
    "nano",
    "micro",
    "xxsmall",
    "xsmall",
    "small",
    "medium",
    "doped_xsmall",
    "doped_small",
    "doped_medium",
    "structured_fastfood",
    "structured_blockdiag",
];

impl ModelShape {
    /// The preset `name` for a vocabulary, with the paper's dropout (0.1) and a tied head.
    pub fn preset(name: &str, vocab_size: i64) -> Option<Self> {
        let p = PRESETS.iter().find(|p| p.name == name)?;
        Some(ModelShape {
            vocab_size,
            n_layer: p.n_layer,
            n_head: p.n_head,
            d_model: p.d_model,
            context: p.context,
            dropout: 0.1,
            head: Head::Tied,
            variant: p.variant,
            blocks: default_blocks(),
        })
    }

    /// Embedding rows: the vocabulary rounded up to a multiple of 64.
    pub fn padded_vocab(&self) -> i64 {
        (self.vocab_size + 63) / 64 * 64
    }

    /// Why the shape cannot be built, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.n_layer < 1 || self.n_head < 1 || self.d_model < 2 || self.context < 1 || self.vocab_size < 2 {
            return Err(format!("n_layer, n_head, d_model, context and vocab_size must be positive: {self:?}"));
        }
        if self.d_model % self.n_head != 0 || (self.d_model / self.n_head) % 2 != 0 {
            return Err(format!(
                "d_model {} must split into {} heads of even size (rotary embeddings rotate pairs)",
                self.d_model, self.n_head
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.variant == Variant::BlockdiagHadamard {
            let b = self.blocks;
            if b < 1 || !(b as u64).is_power_of_two() || self.d_model % b != 0 {
                return Err(format!(
                    "blocks {b} must be a power of two dividing d_model {} (the block Hadamard mixes blocks)",
                    self.d_model
                ));
            }
        }
        Ok(())
    }

    /// Frozen MLP layers of a doped model (between every two trainable layers).
    pub fn frozen_layers(&self) -> i64 {
        if self.variant == Variant::Doped {
            self.n_layer - 1
        } else {
            0
        }
    }

    /// `(n, blocks)` of a FastFood MLP's two projections, d → 4d and 4d → d
    /// (see [`fastfood_blocks`]).
    fn fastfood_projections(&self) -> [(i64, i64); 2] {
        let d = self.d_model;
        [fastfood_blocks(d, 4 * d), fastfood_blocks(4 * d, d)]
    }

    /// Parameter counts by formula. A baseline block has 12·d² weights
    /// (attention 4·d², MLP 8·d²) and 13·d biases and gains (Kaplan et al.
    /// 2020); the final LayerNorm adds 2·d. Variants change the MLP:
    /// - doped: each frozen layer is a 6·d MLP, 12·d² weights + 7·d biases
    ///   (its LayerNorm has no parameters);
    /// - fastfood: each projection has 3·n diagonal parameters per stacked
    ///   block (structured) plus a dense bias;
    /// - blockdiag_hadamard: each projection has 4·d²/blocks block weights
    ///   (structured) plus a dense bias; the Hadamard mixing has none.
    pub fn param_counts(&self) -> ParamCounts {
        let d = self.d_model;
        let heads = if self.head == Head::Untied { 2 } else { 1 };
        // Attention (4·d² + 4·d) and two LayerNorms (4·d) are the same in every variant.
        let attention_and_norms = 4 * d * d + 8 * d;
        let mlp_biases = 4 * d + d;
        let (mlp_structured, mlp_dense) = match self.variant {
            Variant::Baseline | Variant::Doped => (0, 8 * d * d),
            Variant::Fastfood => (self.fastfood_projections().iter().map(|&(n, blocks)| 3 * n * blocks).sum(), 0),
            Variant::BlockdiagHadamard => (2 * 4 * d * d / self.blocks, 0),
        };
        let per_layer = attention_and_norms + mlp_dense + mlp_structured + mlp_biases;
        let frozen_mlp = 2 * FROZEN_MLP_RATIO * d * d + FROZEN_MLP_RATIO * d + d;
        ParamCounts {
            embedding: heads * self.vocab_size * d,
            trainable: self.n_layer * per_layer + 2 * d,
            frozen: self.frozen_layers() * frozen_mlp,
            structured: self.n_layer * mlp_structured,
            fastfood: if self.variant == Variant::Fastfood { self.n_layer * mlp_structured } else { 0 },
        }
    }

    /// Forward+backward FLOPs per token as the paper counts compute: 6 per
    /// trainable weight, the output head included, plus attention scores
    /// and values, 12·L·T·d (PaLM's accounting). Frozen weights and the
    /// structured layers' transforms cost nothing here.
    pub fn trainable_flops_per_token(&self, counts: &ParamCounts) -> f64 {
        let head = (self.vocab_size * self.d_model) as f64;
        6.0 * (counts.trainable as f64 + head) + 12.0 * (self.n_layer * self.context * self.d_model) as f64
    }

    /// Forward+backward FLOPs per token actually executed (for MFU): the
    /// trainable count, plus 4 per frozen weight (no weight gradient: 2
    /// forward, 2 for the input's gradient), with FastFood diagonals
    /// counted by their transforms instead of 6 per parameter: per n-block,
    /// two n·log₂n transforms and three diagonal products forward, twice
    /// that backward. The block-diagonal mixing adds 4d·log₂(blocks) per
    /// layer, three times.
    pub fn flops_per_token(&self, counts: &ParamCounts) -> f64 {
        let d = self.d_model;
        let structured_per_layer = match self.variant {
            Variant::Fastfood => self
                .fastfood_projections()
                .iter()
                .map(|&(n, blocks)| 3.0 * blocks as f64 * (2.0 * n as f64 * (n as f64).log2() + 3.0 * n as f64))
                .sum(),
            Variant::BlockdiagHadamard => 3.0 * 4.0 * d as f64 * (self.blocks as f64).log2(),
            Variant::Baseline | Variant::Doped => 0.0,
        };
        self.trainable_flops_per_token(counts) - 6.0 * counts.fastfood as f64
            + 4.0 * counts.frozen as f64
            + self.n_layer as f64 * structured_per_layer
    }
}

/// Parameter counts in the paper's sense. Embedding rows are counted for the
/// real vocabulary only (padding is never counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Token embedding (and an untied head).
    pub embedding: i64,
    /// Trainable non-embedding parameters: the paper's N.
    pub trainable: i64,
    /// Frozen (never trained) non-embedding parameters: doped models.
    pub frozen: i64,
    /// Parameters of structured layers (FastFood diagonals, block-diagonal
    /// blocks), also counted in `trainable` when trained.
    pub structured: i64,
    /// Those structured parameters that are FastFood diagonals: the paper
    /// (§4.1) takes their O(n log n) transform as costing no compute;
    /// block-diagonal weights cost as dense ones and are not counted here.
    #[serde(default)]
    pub fastfood: i64,
}

/// Training compute after `tokens` tokens under each cost model, C = k·D
/// with D = tokens seen (B·S in the paper's notation). One field per
/// [`CostModel`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// 6·N_trainable·D: the paper's C = 6·N·B·S.
    pub trainable: f64,
    /// 6·N_trainable·D + 4·N_frozen·D.
    pub frozen_2_3: f64,
    /// 6·(N_trainable + N_frozen)·D.
    pub frozen_full: f64,
    /// 6·(N_trainable − N_fastfood)·D.
    pub fastfood_free: f64,
}

impl Compute {
    /// The compute of `tokens` tokens for a model with `counts`.
    pub fn at(counts: &ParamCounts, tokens: f64) -> Self {
        let (n, f, ff) = (counts.trainable as f64, counts.frozen as f64, counts.fastfood as f64);
        Compute {
            trainable: 6.0 * n * tokens,
            frozen_2_3: (6.0 * n + 4.0 * f) * tokens,
            frozen_full: 6.0 * (n + f) * tokens,
            fastfood_free: 6.0 * (n - ff) * tokens,
        }
    }
}

/// How training compute is counted: what a parameter costs per token,
/// depending on whether it is trainable, frozen or a FastFood diagonal.
/// Every cost model counts a trainable parameter, block-diagonal weights
/// included, at 6 FLOPs per token (forward 2, backward 4), as the paper
/// does; they differ in frozen and FastFood parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CostModel {
    /// Frozen parameters free: the paper's C = 6·N·B·S (its Figures 1, 3,
    /// 6 and 7): the ideal of offloading them to dedicated hardware.
    #[serde(rename = "trainable")]
    Trainable,
    /// Frozen parameters at 2/3 cost (forward and the gradient with respect
    /// to their input, no weight gradient): what the paper's implementation
    /// achieves (its Figure 2).
    #[serde(rename = "frozen_2_3")]
    FrozenTwoThirds,
    /// Frozen parameters at full cost, as if they were trained.
    #[serde(rename = "frozen_full")]
    FrozenFull,
    /// FastFood diagonals free (the paper's approximation for a transform
    /// of O(n log n) at n ≈ 1000); everything else as `trainable`.
    #[serde(rename = "fastfood_free")]
    FastfoodFree,
}

impl CostModel {
    /// Every cost model, in the order reports list them.
    pub const ALL: [CostModel; 4] =
        [CostModel::Trainable, CostModel::FrozenTwoThirds, CostModel::FrozenFull, CostModel::FastfoodFree];

    /// Its name in `fit.json`, figure file names and `C_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            CostModel::Trainable => "trainable",
            CostModel::FrozenTwoThirds => "frozen_2_3",
            CostModel::FrozenFull => "frozen_full",
            CostModel::FastfoodFree => "fastfood_free",
        }
    }

    /// The formula it counts.
    pub fn formula(self) -> &'static str {
        match self {
            CostModel::Trainable => "C = 6·N_trainable·D",
            CostModel::FrozenTwoThirds => "C = (6·N_trainable + 4·N_frozen)·D",
            CostModel::FrozenFull => "C = 6·(N_trainable + N_frozen)·D",
            CostModel::FastfoodFree => "C = 6·(N_trainable − N_fastfood)·D",
        }
    }

    /// In words, for captions.
    pub fn meaning(self) -> &'static str {
        match self {
            CostModel::Trainable => "frozen parameters free, the paper's C = 6·N·B·S",
            CostModel::FrozenTwoThirds => "frozen parameters at 2/3 of a trainable one's cost",
            CostModel::FrozenFull => "frozen parameters at full cost",
            CostModel::FastfoodFree => "FastFood diagonals free, block-diagonal weights at dense cost",
        }
    }

    /// The compute `c` under this cost model.
    pub fn of(self, c: &Compute) -> f64 {
        match self {
            CostModel::Trainable => c.trainable,
            CostModel::FrozenTwoThirds => c.frozen_2_3,
            CostModel::FrozenFull => c.frozen_full,
            CostModel::FastfoodFree => c.fastfood_free,
        }
    }
}

/// FLOPs in one petaflop/s-day, the unit the paper plots compute in.
pub const PF_DAY: f64 = 1e15 * 86_400.0;

/// The optimiser steps after which to evaluate: `points` steps log-spaced
/// from the first to the last (dense early, as fits need intermediate
/// points), always including both ends.
pub fn eval_steps(total_steps: u64, points: u64) -> Vec<u64> {
    if total_steps == 0 {
        return Vec::new();
    }
    let mut steps: Vec<u64> = (0..points.max(2))
        .map(|i| {
            let f = i as f64 / (points.max(2) - 1) as f64;
            (total_steps as f64).powf(f).round() as u64
        })
        .collect();
    steps.push(total_steps);
    steps.sort_unstable();
    steps.dedup();
    steps.retain(|&s| s >= 1 && s <= total_steps);
    steps
}

/// Peak dense throughput of a device in FLOP/s for the given precision,
/// from its name (for MFU); `None` when unknown (CPUs).
pub fn peak_flops(device_name: &str, bf16: bool) -> Option<f64> {
    let name = device_name.to_ascii_uppercase();
    // Dense tensor-core peaks from NVIDIA's data sheets (bf16; TF32 is half).
    let bf16_peak = if name.contains("H100") || name.contains("H200") {
        if name.contains("PCIE") {
            756e12
        } else {
            989.4e12
        }
    } else if name.contains("A100") {
        312e12
    } else if name.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == "L4") {
        121e12 // not L40/L40S
    } else {
        return None;
    };
    Some(if bf16 { bf16_peak } else { bf16_peak / 2.0 })
}

/// The GPU and utilisation that GPU time is quoted for: FLOPs over the
/// data-sheet dense peak times an assumed MFU (no measured one yet).
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// Device name as [`peak_flops`] knows it (H100, H200, A100, L4).
    pub gpu: String,
    /// Model FLOPs utilisation assumed, in (0, 1].
    pub mfu: f64,
}

impl Throughput {
    /// Hours on one GPU for `flops` (bf16 or TF32); `None` for a GPU with no known peak.
    pub fn gpu_hours(&self, flops: f64, bf16: bool) -> Option<f64> {
        Some(flops / (peak_flops(&self.gpu, bf16)? * self.mfu) / 3600.0)
    }

    /// "one H100 at 22% MFU (…)", for totals.
    pub fn describe(&self) -> String {
        format!("one {} at {:.0}% MFU (dense bf16 peak; fp32 runs use TF32, half of it)", self.gpu, 100.0 * self.mfu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_counts_of_the_table_1_shapes() {
        let n = |name| ModelShape::preset(name, 50_262).unwrap().param_counts().trainable;
        // Our counts of Table 1's shapes (the paper prints no parameter
        // counts): 12·d² + 13·d per block plus the final LayerNorm.
        assert_eq!(n("xxsmall"), 21_265_152);
        assert_eq!(n("xsmall"), 42_528_768);
        assert_eq!(n("small"), 85_056_000);
        assert_eq!(n("medium"), 302_311_424);
        let small = ModelShape::preset("small", 50_262).unwrap();
        assert_eq!(small.param_counts().embedding, 50_262 * 768);
        assert_eq!(ModelShape { head: Head::Untied, ..small.clone() }.param_counts().embedding, 2 * 50_262 * 768);
        assert_eq!(small.padded_vocab(), 50_304);
    }

    #[test]
    fn the_paper_tables_name_real_presets_with_the_paper_layer_counts() {
        for m in PAPER_MODELS {
            let shape = ModelShape::preset(m.preset, 50_262).unwrap();
            let layers = if shape.variant == Variant::Doped { 2 * shape.n_layer - 1 } else { shape.n_layer };
            assert_eq!(layers, m.layers, "{}", m.label);
        }
        assert_eq!(PAPER_MODELS.iter().filter(|m| m.table == 2).count(), 3);
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(v.name().to_string()));
        }
        assert_eq!(VARIANT_NAMES, Variant::ALL.map(Variant::name));
    }

    #[test]
    fn all_has_every_variant() {
        // serde's derive knows every variant: its error for an unknown name lists them.
        let error = serde_json::from_str::<Variant>("\"?\"").unwrap_err().to_string();
        let names: Vec<String> = Variant::ALL.iter().map(|v| format!("`{}`", v.name())).collect();
        assert!(error.starts_with(&format!("unknown variant `?`, expected one of {} ", names.join(", "))), "{error}");
    }

    #[test]
    fn preset_names_match_presets() {
        assert_eq!(PRESET_NAMES, PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().as_slice());
    }

    #[test]
    fn shapes_are_checked() {
        let ok = ModelShape::preset("nano", 1000).unwrap();
        assert!(ok.check().is_ok());
        assert!(ModelShape { n_head: 3, ..ok.clone() }.check().unwrap_err().contains("heads of even size"));
        assert!(ModelShape { d_model: 66, n_head: 2, ..ok.clone() }.check().is_err(), "head size 33 is odd");
        assert!(ModelShape { dropout: 1.0, ..ok }.check().is_err());
    }

    #[test]
    fn cost_models() {
        let counts = ParamCounts { embedding: 10, trainable: 100, frozen: 50, structured: 30, fastfood: 20 };
        let c = Compute::at(&counts, 1000.0);
        assert_eq!(c.trainable, 600_000.0);
        assert_eq!(c.frozen_2_3, 800_000.0);
        assert_eq!(c.frozen_full, 900_000.0);
        assert_eq!(c.fastfood_free, 480_000.0);
        let names: Vec<&str> = CostModel::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["trainable", "frozen_2_3", "frozen_full", "fastfood_free"]);
        for model in CostModel::ALL {
            assert_eq!(serde_json::to_value(model).unwrap(), serde_json::Value::String(model.name().into()));
        }
    }

    /// A block-diagonal model's compute counted by hand: its block weights
    /// cost as dense weights (the paper, §4.1), so only `trainable` counts
    /// them, and no cost model takes them as free.
    #[test]
    fn block_diagonal_compute_by_hand() {
        let shape = ModelShape {
            variant: Variant::BlockdiagHadamard,
            n_layer: 2,
            d_model: 64,
            n_head: 2,
            ..ModelShape::preset("nano", 512).unwrap()
        };
        let d = 64;
        // Per block: attention 4·d² + 4·d, two LayerNorms 4·d, two block-diagonal
        // projections 2 × 4·d²/4 = 2·d² (structured, trained), MLP biases 5·d.
        let per_block = 4 * d * d + 4 * d + 4 * d + 2 * d * d + 5 * d;
        let counts = shape.param_counts();
        assert_eq!(counts.trainable, 2 * per_block + 2 * d);
        assert_eq!((counts.structured, counts.fastfood, counts.frozen), (2 * 2 * d * d, 0, 0));
        let tokens = 1e6;
        let c = Compute::at(&counts, tokens);
        let hand = 6.0 * (2 * per_block + 2 * d) as f64 * tokens;
        for model in CostModel::ALL {
            assert_eq!(model.of(&c), hand, "{model:?}: block-diagonal weights cost as dense ones");
        }
        // FastFood's diagonals are the structured parameters taken as free.
        let fastfood = ModelShape { variant: Variant::Fastfood, ..shape }.param_counts();
        assert_eq!(fastfood.fastfood, fastfood.structured);
        let c = Compute::at(&fastfood, tokens);
        assert_eq!(c.fastfood_free, 6.0 * (fastfood.trainable - fastfood.structured) as f64 * tokens);
        assert!(c.fastfood_free < c.trainable);
    }

    #[test]
    fn table_2_doped_layouts_and_counts() {
        // (preset, trainable layers, frozen layers, total layers of Table 2)
        for (name, trainable, frozen, total) in
            [("doped_xsmall", 3, 2, 5), ("doped_small", 6, 5, 11), ("doped_medium", 12, 11, 23)]
        {
            let shape = ModelShape::preset(name, 50_262).unwrap();
            assert_eq!(
                (shape.n_layer, shape.frozen_layers(), shape.n_layer + shape.frozen_layers()),
                (trainable, frozen, total),
                "{name}"
            );
            let d = shape.d_model;
            let counts = shape.param_counts();
            // Trainable layers are baseline layers: the same N as the baseline with as many layers.
            let baseline = ModelShape { variant: Variant::Baseline, ..shape.clone() }.param_counts();
            assert_eq!(counts.trainable, baseline.trainable);
            assert_eq!(counts.frozen, frozen * (12 * d * d + 7 * d));
            assert_eq!(counts.structured, 0);
        }
        // Doped XSmall: 3 × 7,085,568 + 2·768 trainable = XXSmall's 21.3M; 2 frozen 6·d MLPs add 14.2M.
        let doped = ModelShape::preset("doped_xsmall", 50_262).unwrap().param_counts();
        assert_eq!(doped.trainable, 21_265_152);
        assert_eq!(doped.frozen, 14_166_528);
    }

    #[test]
    fn table_3_structured_counts() {
        let d = 1024;
        let fastfood = ModelShape::preset("structured_fastfood", 50_262).unwrap().param_counts();
        // fc: 1024 → 4096 = 4 blocks of n = 1024; proj: 4096 → 1024 = 1 block of n = 4096; 3 diagonals each.
        assert_eq!(fastfood.structured, 12 * (3 * 1024 * 4 + 3 * 4096));
        assert_eq!(fastfood.trainable, 12 * (4 * d * d + 8 * d + 5 * d + 3 * 1024 * 4 + 3 * 4096) + 2 * d);
        let blockdiag = ModelShape::preset("structured_blockdiag", 50_262).unwrap().param_counts();
        assert_eq!(blockdiag.structured, 12 * 2 * d * d, "4 blocks: a quarter of the MLP's 8·d²");
        assert_eq!(blockdiag.trainable, 12 * (4 * d * d + 8 * d + 2 * d * d + 5 * d) + 2 * d);
        assert_eq!(fastfood_blocks(768, 3072), (1024, 3));
        assert_eq!(fastfood_blocks(3072, 768), (4096, 1));
    }

    #[test]
    fn executed_flops_count_frozen_weights_and_transforms() {
        let shape = |variant| ModelShape { variant, ..ModelShape::preset("xsmall", 50_262).unwrap() };
        let flops = |variant| {
            let s = shape(variant);
            let counts = s.param_counts();
            (s.trainable_flops_per_token(&counts), s.flops_per_token(&counts), counts)
        };
        let (trainable, executed, _) = flops(Variant::Baseline);
        assert_eq!(trainable, executed, "a baseline executes what it trains");
        let (trainable, executed, doped) = flops(Variant::Doped);
        assert_eq!(executed - trainable, 4.0 * doped.frozen as f64);
        // xsmall (6 × 768): fc 3 blocks of n = 1024, proj 1 block of n = 4096.
        let (trainable, executed, fastfood) = flops(Variant::Fastfood);
        let transforms = |n: f64, blocks: f64| 3.0 * blocks * (2.0 * n * n.log2() + 3.0 * n);
        let expected =
            trainable - 6.0 * fastfood.fastfood as f64 + 6.0 * (transforms(1024.0, 3.0) + transforms(4096.0, 1.0));
        assert!((executed - expected).abs() < 1e-6 * expected, "{executed} vs {expected}");
        let (trainable, executed, _) = flops(Variant::BlockdiagHadamard);
        assert_eq!(executed - trainable, 6.0 * 3.0 * 4.0 * 768.0 * 2.0, "4 blocks: two butterfly stages over 4d");
    }

    #[test]
    fn eval_steps_are_log_spaced_and_include_both_ends() {
        let s = eval_steps(1000, 7);
        assert_eq!(s, vec![1, 3, 10, 32, 100, 316, 1000]);
        assert_eq!(eval_steps(5, 40), vec![1, 2, 3, 4, 5]);
        assert_eq!(eval_steps(1, 10), vec![1]);
        assert!(eval_steps(0, 10).is_empty());
    }

    #[test]
    fn peaks_are_known_for_datacenter_gpus_only() {
        assert_eq!(peak_flops("NVIDIA H100 80GB HBM3", true), Some(989.4e12));
        assert_eq!(peak_flops("NVIDIA H100 80GB HBM3", false), Some(494.7e12));
        assert_eq!(peak_flops("cpu", true), None);
        assert_eq!(peak_flops("NVIDIA L4", true), Some(121e12));
        assert_eq!(peak_flops("NVIDIA L40S", true), None);
    }

    #[test]
    fn gpu_time_is_flops_over_peak_times_mfu() {
        let h100 = Throughput { gpu: "H100".into(), mfu: 0.4 };
        let one_hour = 989.4e12 * 0.4 * 3600.0;
        assert!((h100.gpu_hours(one_hour, true).unwrap() - 1.0).abs() < 1e-12);
        assert!((h100.gpu_hours(one_hour, false).unwrap() - 2.0).abs() < 1e-12, "TF32 is half the bf16 peak");
        assert_eq!(Throughput { gpu: "TPU".into(), mfu: 0.4 }.gpu_hours(one_hour, true), None);
    }
}
