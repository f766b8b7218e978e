//! The model variants the paper compares — one place for what each is in
//! the engine: its name, and the layout facts its parameter counts use.
//!
//! Adding a variant starts here, and the compiler finds the rest (every
//! match on [`Variant`] is exhaustive); docs/DESIGN.md ("Adding a variant")
//! lists the places, including those it cannot see (the exporter).

use serde::{Deserialize, Serialize};

/// Which layers the model is made of: the paper's baseline and its variants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Dense GELU MLPs (Table 1).
    #[default]
    Baseline,
    /// `n_layer` trainable transformer layers interleaved with `n_layer − 1`
    /// frozen random MLPs of hidden size 6·d, first and last layers
    /// trainable (Table 2: Doped XSmall = 3 trainable + 2 frozen).
    Doped,
    /// MLP projections as Adaptive FastFood transforms S·H·G·Π·H·B (Table 3).
    Fastfood,
    /// MLP as two block-diagonal matrices with a block Hadamard transform
    /// between them (Table 3, 4 blocks).
    BlockdiagHadamard,
}

impl Variant {
    /// Every variant, in the order schemas list them: the one list that
    /// names, parsing and tests derive from (a test checks it against
    /// serde's, so a variant cannot be left out).
    pub const ALL: [Variant; 4] = [Variant::Baseline, Variant::Doped, Variant::Fastfood, Variant::BlockdiagHadamard];

    /// Its name in YAML, `config.json` and as a fit's family.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Doped => "doped",
            Variant::Fastfood => "fastfood",
            Variant::BlockdiagHadamard => "blockdiag_hadamard",
        }
    }

    /// The variant called `name` in YAML.
    pub fn from_name(name: &str) -> Option<Self> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The names of [`Variant::ALL`], for schemas (which need a static slice).
pub const VARIANT_NAMES: &[&str] = &{
    let mut names = [""; Variant::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Variant::ALL[i].name();
        i += 1;
    }
    names
};

/// Frozen MLPs of doped models are 6·d wide, so that a doped model keeps
/// roughly the total parameter count of the baseline it replaces.
pub const FROZEN_MLP_RATIO: i64 = 6;

/// How an Adaptive FastFood transform maps `in_dim → out_dim`: inputs are
/// zero-padded to `n = 2^⌈log2 in_dim⌉`, and `⌈out_dim / n⌉` independent
/// n×n blocks are stacked (outputs beyond `out_dim` are dropped).
pub fn fastfood_blocks(in_dim: i64, out_dim: i64) -> (i64, i64) {
    let n = (in_dim.max(1) as u64).next_power_of_two() as i64;
    (n, (out_dim + n - 1) / n)
}
