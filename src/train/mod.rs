//! What a training run is, without libtorch: model shapes and the paper's
//! presets, parameter counts, compute cost models, and the protocol between
//! the `train` node (engine) and the torch worker that runs it.
//!
//! Everything here is plain data and arithmetic, so the engine can plan,
//! count and show runs (and the fit can read them) without loading libtorch;
//! the worker builds the model from the same [`ModelShape`].

pub mod job;

use serde::{Deserialize, Serialize};

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
}

/// Presets by name. `nano` is for unit tests, `micro` for CPU runs in
/// minutes; the rest are Table 1 of the paper.
pub const PRESETS: &[Preset] = &[
    Preset { name: "nano", n_layer: 2, n_head: 2, d_model: 64, context: 64 },
    Preset { name: "micro", n_layer: 4, n_head: 4, d_model: 128, context: 256 },
    Preset { name: "xxsmall", n_layer: 3, n_head: 12, d_model: 768, context: 1024 },
    Preset { name: "xsmall", n_layer: 6, n_head: 12, d_model: 768, context: 1024 },
    Preset { name: "small", n_layer: 12, n_head: 12, d_model: 768, context: 1024 },
    Preset { name: "medium", n_layer: 24, n_head: 16, d_model: 1024, context: 1024 },
];

/// The names of [`PRESETS`], for schemas.
pub const PRESET_NAMES: &[&str] = &["nano", "micro", "xxsmall", "xsmall", "small", "medium"];

impl ModelShape {
    /// The preset `name` for a vocabulary, with the paper's dropout (0.1) and a tied head.
    pub fn preset(name: &str, vocab_size: i64) -> Option<Self> {
        let p = PRESETS.iter().find(|p| p.name == name)?;
        Some(ModelShape { vocab_size, n_layer: p.n_layer, n_head: p.n_head, d_model: p.d_model, context: p.context, dropout: 0.1, head: Head::Tied })
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
            return Err(format!("d_model {} must split into {} heads of even size (rotary embeddings rotate pairs)", self.d_model, self.n_head));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Parameter counts of the baseline (dense) model, by formula: per block
    /// 12·d² weights (attention 4·d², MLP 8·d²) and 13·d biases and gains,
    /// plus the final LayerNorm (Kaplan et al. 2020, ignoring nothing).
    pub fn param_counts(&self) -> ParamCounts {
        let d = self.d_model;
        let heads = if self.head == Head::Untied { 2 } else { 1 };
        ParamCounts { embedding: heads * self.vocab_size * d, trainable: self.n_layer * (12 * d * d + 13 * d) + 2 * d, frozen: 0, structured: 0 }
    }

    /// Forward+backward FLOPs per token actually computed (for MFU): 6 per
    /// multiply-add of every matmul weight, the output head included, plus
    /// attention scores and values, 12·L·T·d (PaLM's accounting).
    pub fn flops_per_token(&self, counts: &ParamCounts) -> f64 {
        let weights = (counts.trainable + counts.frozen) as f64;
        let head = (self.vocab_size * self.d_model) as f64;
        6.0 * (weights + head) + 12.0 * (self.n_layer * self.context * self.d_model) as f64
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
    /// Parameters of structured layers (FastFood, block-Hadamard), also
    /// counted in `trainable` when trained.
    pub structured: i64,
}

/// Training compute after `tokens` tokens under each cost model, C = k·D
/// with D = tokens seen (B·S in the paper's notation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// The paper's C = 6·N_trainable·D: frozen parameters are free.
    pub trainable: f64,
    /// Frozen parameters at 2/3 cost (4·N_frozen·D: forward and the
    /// gradient with respect to their input, but no weight gradient).
    pub frozen_2_3: f64,
    /// Every parameter at full cost, 6·(N_trainable + N_frozen)·D.
    pub all: f64,
}

impl Compute {
    /// The compute of `tokens` tokens for a model with `counts`.
    pub fn at(counts: &ParamCounts, tokens: f64) -> Self {
        let (n, f) = (counts.trainable as f64, counts.frozen as f64);
        Compute { trainable: 6.0 * n * tokens, frozen_2_3: (6.0 * n + 4.0 * f) * tokens, all: 6.0 * (n + f) * tokens }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_1_non_embedding_counts() {
        let n = |name| ModelShape::preset(name, 50_262).unwrap().param_counts().trainable;
        // Table 1 of the paper: XXSmall 21M, XSmall 42M, Small 85M, Medium 302M.
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
        let counts = ParamCounts { embedding: 10, trainable: 100, frozen: 50, structured: 0 };
        let c = Compute::at(&counts, 1000.0);
        assert_eq!(c.trainable, 600_000.0);
        assert_eq!(c.frozen_2_3, 800_000.0);
        assert_eq!(c.all, 900_000.0);
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
}
