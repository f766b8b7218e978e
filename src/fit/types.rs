//! What a fit reads and shares between its parts: runs, their families,
//! settings and estimates with intervals (below `study`, `optimal` and
//! `identify`, which all use them).

use serde::{Deserialize, Serialize};

use crate::train::{Compute, ParamCounts, Variant};

/// A family of runs, which gets its own envelope and laws: a model
/// variant, every run together (`group_by: none`), or a CSV's `group`.
/// Written as its name (`doped`, `all`), so `fit.json` reads as before;
/// ordered, compared and hashed by name, so a study's families keep their
/// order and a name is one family however it was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Family {
    /// The runs of one model variant.
    Variant(Variant),
    /// Every run, whatever its variant.
    All,
    /// A CSV's `group` that names no variant (published runs).
    Named(String),
}

impl Family {
    /// The baseline models' family.
    pub const BASELINE: Family = Family::Variant(Variant::Baseline);

    /// Its name in files and in `fit.json`.
    pub fn name(&self) -> &str {
        match self {
            Family::Variant(v) => v.name(),
            Family::All => "all",
            Family::Named(name) => name,
        }
    }

    /// The variant its runs are, if they are one.
    pub fn variant(&self) -> Option<Variant> {
        match self {
            Family::Variant(v) => Some(*v),
            _ => None,
        }
    }
}

impl From<String> for Family {
    fn from(name: String) -> Self {
        match Variant::from_name(&name) {
            Some(v) => Family::Variant(v),
            None if name == "all" => Family::All,
            None => Family::Named(name),
        }
    }
}

impl From<&str> for Family {
    fn from(name: &str) -> Self {
        Family::from(name.to_string())
    }
}

impl From<Family> for String {
    fn from(family: Family) -> String {
        family.name().to_string()
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Family {}

impl std::hash::Hash for Family {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl Ord for Family {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Family {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One evaluation of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    /// Tokens seen.
    pub tokens: f64,
    /// Compute under each cost model.
    pub compute: Compute,
    /// Validation loss.
    pub loss: f64,
}

/// One training run as the fit sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Node id (or the CSV's `run`).
    pub id: String,
    /// Its family.
    pub group: Family,
    /// Parameter counts.
    pub params: ParamCounts,
    /// Evaluations, by tokens.
    pub points: Vec<RunPoint>,
    /// Tokens of learning-rate warmup: evaluations up to here are on no law.
    pub warmup_tokens: f64,
}

/// How to fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Fraction of each run's tokens whose evaluations are left out (warmup).
    pub skip_fraction: f64,
    /// Log-spaced compute values of the envelope.
    pub envelope_points: usize,
    /// Bootstrap replicates (0: no intervals).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// The family others are compared with.
    pub baseline: Family,
    /// Which points make the compute-efficient frontier.
    #[serde(default)]
    pub frontier: Frontier,
    /// The margin a multiplier's interval must lie within for a family to
    /// be called equivalent to the baseline, (low, high).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equivalence: Option<(f64, f64)>,
    /// What this fit's runs are, in the report's tables ("each family at
    /// its best rate").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Which points of a family's runs make its compute-efficient frontier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frontier {
    /// Every evaluation of every run (Kaplan et al. 2020, the paper): the
    /// lowest loss any run reaches at each compute.
    #[default]
    Curves,
    /// Each run's final loss only. A run's learning-rate schedule delivers
    /// its loss only at its end: mid-run points of a cosine run overstate
    /// the loss a run of that length would reach (Hoffmann et al. 2022,
    /// §3.1, who trained several horizons per size for that reason). With
    /// one horizon per size, the frontier of curves is a staircase of
    /// annealing tails; the final points are the unbiased ones.
    FinalPoints,
}

/// A fitted number with its 95% bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Fit on all runs.
    pub value: f64,
    /// 2.5th percentile over bootstrap replicates (NaN-free; absent without bootstrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// 97.5th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

impl Estimate {
    pub(super) fn new(value: f64, replicates: &[f64]) -> Self {
        let mut r: Vec<f64> = replicates.iter().copied().filter(|v| v.is_finite()).collect();
        if r.len() < 2 {
            return Estimate { value, low: None, high: None };
        }
        r.sort_by(f64::total_cmp);
        let at = |q: f64| r[((q * (r.len() - 1) as f64).round() as usize).min(r.len() - 1)];
        Estimate { value, low: Some(at(0.025)), high: Some(at(0.975)) }
    }

    /// The value and its interval to `decimals` places, "0.452 [0.450,
    /// 0.455]" (the value alone without bootstrap). The allocation table
    /// (a and b to three places, in `show` and the report) and the report's
    /// laws (four) print estimates alike, so they share this one format.
    pub fn with_interval(&self, decimals: usize) -> String {
        match (self.low, self.high) {
            (Some(lo), Some(hi)) => format!("{:.d$} [{lo:.d$}, {hi:.d$}]", self.value, d = decimals),
            _ => format!("{:.d$}", self.value, d = decimals),
        }
    }
}

/// How a family is set against the baseline's law.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareBy {
    /// The family's own envelope (it has [`MIN_SIZES`](super::identify::MIN_SIZES) sizes or more).
    Envelope,
    /// Each run's final point (a family too small for a law of its own).
    FinalPoints,
}

/// One run's final point against the baseline's law.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMultiplier {
    /// The run.
    pub run: String,
    /// Its compute at the end, under the cost model.
    pub compute: f64,
    /// Its final loss.
    pub loss: f64,
    /// The compute the baseline's law needs for that loss over the compute
    /// used; `None` where the loss lies outside the baseline's range (no
    /// extrapolation).
    pub multiplier: Option<f64>,
}

/// A family's effective-compute multiplier against the baseline's law.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Multiplier {
    /// From the family's envelope or its runs' final points.
    pub by: CompareBy,
    /// Geometric mean over the compared points, with its interval.
    pub estimate: Estimate,
    /// Each run's final point.
    pub runs: Vec<RunMultiplier>,
}
