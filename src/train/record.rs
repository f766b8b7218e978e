//! What a finished training run is, as its artifact records it
//! (`config.json`): written by the worker, read by `fit` and `report`, one
//! type on both sides so neither can drift from the other.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::job::{non_finite_as_null, OptimSpec, Precision};
use super::{ModelShape, ParamCounts, Variant};

/// The file in a `train` artifact that holds its [`TrainRecord`].
pub const RECORD_FILE: &str = "config.json";
/// The evaluations of a `train` artifact, one [`super::job::EvalRow`] per line.
pub const EVAL_FILE: &str = "metrics/eval.jsonl";
/// The optimiser steps of a `train` artifact, one [`super::job::StepRow`] per line.
pub const STEPS_FILE: &str = "metrics/steps.jsonl";
/// The TensorBoard event file's directory in a `train` artifact (and, while
/// it trains, in its work directory).
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// A finished run: its model, how it was trained, and where it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// The model's shape (its variant is the run's family).
    pub model: ModelShape,
    /// Numeric precision of the passes.
    pub precision: Precision,
    /// Parameter counts of the built model.
    pub params: ParamCounts,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Tokens trained on (steps × batch × context).
    pub tokens: u64,
    /// Sequences per optimiser step.
    pub batch_size: u64,
    /// The optimiser and its schedule (warmup tells the fit which
    /// evaluations are still in warmup).
    pub optim: OptimSpec,
    /// Validation tokens per evaluation.
    pub eval_tokens: u64,
    /// Validation loss after the last step (NaN for a diverged run).
    #[serde(with = "non_finite_as_null")]
    pub val_loss: f64,
    /// Loss on the same number of test-split tokens after the last step;
    /// `None` without a test split or for a diverged run.
    pub test_loss: Option<f64>,
    /// For a cooldown branch, the tokens its source had trained when it
    /// took over: its steps and evaluations start there, its `tokens`
    /// count from 0 (so its end is a run of `tokens` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branched_at: Option<u64>,
    /// Which training step ran, compiled or eager, and why (`compile:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl TrainRecord {
    /// The run's family: its variant's name.
    pub fn variant(&self) -> Variant {
        self.model.variant
    }

    /// Reads the record of the artifact in `dir`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            format!("{}: {e} (an artifact of an older scalemake? `scalemake clean` the node)", path.display())
        })
    }
}
