//! Reading training runs from artifacts: a `train` node's own, and the
//! runs a `select` kept (copied under its `runs/`). Shared by `select`,
//! `fit`, `report` and `serve`, so they all read a run the same way.

use std::path::{Path, PathBuf};

use super::{Input, NodeError};
use crate::fit::selection::Selection;
use crate::fit::{Family, Run, RunPoint};
use crate::train::job::EvalRow;
use crate::train::record::{TrainRecord, EVAL_FILE};
use crate::train::Compute;

/// A failure reading `path`, with why.
pub(super) fn failed(path: &Path, why: impl std::fmt::Display) -> NodeError {
    NodeError::Failed(format!("{}: {why}", path.display()))
}

/// A `train` artifact as a run — its counts, variant (the family) and
/// warmup from its [`TrainRecord`], its evaluations from `metrics/eval.jsonl`
/// — and the record itself. Shared with `report` and `serve`.
pub fn read_train_artifact(id: &str, dir: &Path) -> Result<(Run, TrainRecord), NodeError> {
    let record = TrainRecord::read(dir).map_err(NodeError::Failed)?;
    let eval_path = dir.join(EVAL_FILE);
    let text = std::fs::read_to_string(&eval_path).map_err(|e| NodeError::io(&eval_path, e))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row: EvalRow =
            serde_json::from_str(line).map_err(|e| failed(&eval_path, format!("line {}: {e}", i + 1)))?;
        if row.val_loss.is_finite() {
            // A diverged evaluation is no point of a law.
            points.push(RunPoint {
                tokens: row.tokens as f64,
                compute: Compute::at(&record.params, row.tokens as f64),
                loss: row.val_loss,
            });
        }
    }
    let run = Run {
        id: id.to_string(),
        group: Family::Variant(record.variant()),
        params: record.params,
        points,
        warmup_tokens: record.optim.warmup_tokens,
    };
    Ok((run, record))
}

/// The file a `select` artifact describes itself in.
pub const SELECTION_FILE: &str = "selection.json";

/// Reads `selection.json` from a `select` artifact.
pub fn read_selection(dir: &Path) -> Result<Selection, NodeError> {
    let path = dir.join(SELECTION_FILE);
    let bytes = std::fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))
}

/// A training run among a node's inputs: a `train` artifact itself, or a
/// run a `select` kept.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRun {
    /// Its node id.
    pub id: String,
    /// The folder holding its record and evaluations.
    pub dir: PathBuf,
}

/// Every training run among `inputs`, each once, in input order: `train`
/// artifacts and the runs of `select` artifacts (how `fit` and `report`
/// read a selection as they read a sweep).
pub fn train_runs(inputs: &[Input]) -> Result<Vec<TrainRun>, NodeError> {
    let mut runs: Vec<TrainRun> = Vec::new();
    for artifact in inputs.iter().flat_map(|i| &i.artifacts) {
        let found = if artifact.dir.join(EVAL_FILE).exists() {
            vec![TrainRun { id: artifact.node.0.clone(), dir: artifact.dir.clone() }]
        } else if artifact.dir.join(SELECTION_FILE).exists() {
            let selection = read_selection(&artifact.dir)?;
            selection.kept.into_iter().map(|k| TrainRun { id: k.node, dir: artifact.dir.join(k.dir) }).collect()
        } else {
            vec![]
        };
        for run in found {
            if !runs.iter().any(|r| r.id == run.id) {
                runs.push(run);
            }
        }
    }
    Ok(runs)
}
