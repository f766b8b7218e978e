//! The engine ↔ worker protocol of a compiled training step.
//!
//! A `compile` node writes a [`CompileJob`] and runs `scalemake-torch
//! compile <job.json>`; the worker exports the model's forward and backward
//! with `torch-worker/python/compile_step.py`, compiles them with
//! AOTInductor into [`PACKAGE_FILE`], checks the package against the eager
//! step, times both, and writes a [`CompileRecord`] as [`RECORD_FILE`]. A
//! `train` node then runs the package if its [`CompileMode`] and the record
//! say so (see [`CompileRecord::use_for`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::job::Precision;
use super::ModelShape;

/// The compiled package inside a compile node's artifact.
pub const PACKAGE_FILE: &str = "step.pt2";
/// The [`CompileRecord`] inside a compile node's artifact.
pub const RECORD_FILE: &str = "compile.json";

/// `compile:` of a train node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompileMode {
    /// The compiled step where it was measured faster than eager on the device.
    Auto,
    /// The compiled step whenever the model could be compiled.
    On,
    /// Always the eager step; nothing is compiled.
    Off,
}

impl CompileMode {
    /// The names `compile:` takes, in the order the schema lists them.
    pub const NAMES: [&'static str; 3] = ["auto", "on", "off"];
}

/// What to compile, and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileJob {
    /// Model shape (vocabulary included).
    pub model: ModelShape,
    /// Compute precision.
    pub precision: Precision,
    /// Sequences per forward pass: the package's batch dimension.
    pub micro_batch: i64,
    /// `cpu`, `cuda` or `cuda:N`, as a train node's `device:` resolves.
    pub device: String,
    /// CPU threads for libtorch (0: its default).
    pub threads: u64,
    /// Forward+backward passes timed per round, eager and compiled.
    pub timed_steps: usize,
    /// The exporter, `compile_step.py` (run by `$SCALEMAKE_PYTHON`, else
    /// the Python of the venv libtorch came from, else `python3`).
    pub script: PathBuf,
    /// Empty directory that becomes the artifact.
    pub out: PathBuf,
    /// Scratch directory.
    pub work: PathBuf,
}

/// How a compile ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CompileOutcome {
    /// [`PACKAGE_FILE`] is there and agrees with the eager step.
    Compiled,
    /// No package: training runs eager, for this reason.
    Fallback {
        /// Why the model could not be compiled.
        reason: String,
    },
}

/// How far the compiled step's loss and gradients were from the eager step's
/// on one batch (relative: |a − b| / |b|; gradients by the L2 distance of
/// the flat buffers, or with dropout by their norms, since the two draw
/// different masks).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCheck {
    /// Relative difference of the losses.
    pub loss_relative: f64,
    /// Relative L2 distance of the flat gradients.
    pub gradient_relative: f64,
    /// Whether dropout was on (then the two drew different masks).
    pub dropout: bool,
    /// Whether matmuls ran in bf16.
    pub bf16: bool,
}

impl StepCheck {
    /// Largest relative loss and gradient differences accepted. Without
    /// dropout the two compute the same function, so rounding is all that
    /// may differ: fp32 to 1e-5 (loss) and 1e-4 (gradients), bf16 more
    /// (fused kernels round in other places); with dropout they are two
    /// samples of the same noise.
    pub fn tolerances(&self) -> (f64, f64) {
        match (self.dropout, self.bf16) {
            (true, _) => (0.05, 0.5),
            (false, true) => (1e-2, 5e-2),
            (false, false) => (1e-5, 1e-4),
        }
    }
}

/// The compile node's record, [`RECORD_FILE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileRecord {
    /// Compiled, or why not.
    #[serde(flatten)]
    pub outcome: CompileOutcome,
    /// The device it was compiled and measured on.
    pub device: String,
    /// The torch version that compiled it.
    pub torch: Option<String>,
    /// Seconds spent exporting and compiling.
    pub compile_seconds: f64,
    /// The check against the eager step.
    pub check: Option<StepCheck>,
    /// Milliseconds per forward+backward of one micro-batch, eager.
    pub eager_ms: Option<f64>,
    /// The same, compiled.
    pub compiled_ms: Option<f64>,
}

impl CompileRecord {
    /// A record of no package, for `reason`, on `device` with `torch`.
    pub fn fallback(device: &str, torch: Option<String>, reason: String) -> Self {
        CompileRecord {
            outcome: CompileOutcome::Fallback { reason },
            device: device.to_string(),
            torch,
            compile_seconds: 0.0,
            check: None,
            eager_ms: None,
            compiled_ms: None,
        }
    }

    /// The record in a compile node's artifact `dir`.
    pub fn read(dir: &std::path::Path) -> Result<Self, String> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether a run in `mode` uses the package, and why (for its log and record).
    pub fn use_for(&self, mode: CompileMode) -> (bool, String) {
        let timing = match (self.eager_ms, self.compiled_ms) {
            (Some(e), Some(c)) => {
                format!("compiled {c:.2} ms, eager {e:.2} ms per forward+backward on {}", self.device)
            }
            _ => format!("not timed on {}", self.device),
        };
        match (&self.outcome, mode) {
            (_, CompileMode::Off) => (false, "compile: off".into()),
            (CompileOutcome::Fallback { reason }, _) => (false, format!("eager, the step did not compile: {reason}")),
            (CompileOutcome::Compiled, CompileMode::On) => (true, format!("compiled (compile: on; {timing})")),
            (CompileOutcome::Compiled, CompileMode::Auto) => match (self.eager_ms, self.compiled_ms) {
                (Some(e), Some(c)) if c < e => (true, format!("compiled, measured faster ({timing})")),
                _ => (false, format!("eager, measured faster ({timing})")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: CompileOutcome, eager: f64, compiled: f64) -> CompileRecord {
        CompileRecord {
            outcome,
            device: "cpu".into(),
            torch: Some("2.11.0".into()),
            compile_seconds: 60.0,
            check: None,
            eager_ms: Some(eager),
            compiled_ms: Some(compiled),
        }
    }

    #[test]
    fn auto_takes_the_faster_step_and_on_takes_any_package() {
        let faster = record(CompileOutcome::Compiled, 10.0, 6.0);
        let slower = record(CompileOutcome::Compiled, 10.0, 12.0);
        assert!(faster.use_for(CompileMode::Auto).0);
        assert!(!slower.use_for(CompileMode::Auto).0);
        assert!(slower.use_for(CompileMode::On).0);
        assert!(!faster.use_for(CompileMode::Off).0);
        let failed = record(CompileOutcome::Fallback { reason: "no exporter".into() }, 10.0, 6.0);
        let (used, why) = failed.use_for(CompileMode::On);
        assert!(!used && why.contains("no exporter"), "{why}");
    }

    #[test]
    fn a_record_reads_back_with_its_outcome() {
        let r = record(CompileOutcome::Fallback { reason: "x".into() }, 1.0, 2.0);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""outcome":"fallback","reason":"x""#), "{text}");
        assert_eq!(serde_json::from_str::<CompileRecord>(&text).unwrap(), r);
    }
}
