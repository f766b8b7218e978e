//! `select`: the best run of each group of a training sweep — a learning
//! rate per family and size, say — handed on to `fit` and `report` as if
//! only those runs had been declared.
//!
//! Its inputs are `train` nodes swept with `matrix:` (or `isoflop:`). Runs
//! are grouped by the values of the `group_by` axes; within a group the
//! value of the `over` axis with the lowest metric wins (the mean over the
//! `replicates` axes, such as `seed`, whose runs all travel with it). With
//! `follow: { variant: baseline }` each group instead takes the value its
//! counterpart with `variant = baseline` chose: one rate per size for every
//! family, as the paper's Tables 1–3 train them.
//!
//! Nothing is trained here: adding a point to the grid trains that point,
//! and this node (a few file copies) reruns. A winner at the edge of its
//! grid is a warning (the optimum may lie outside it); a group whose every
//! run diverged fails the node, naming the group.
//!
//! Artifact: `selection.json` (every group, candidate, metric, margin and
//! flag) and `runs/NNN/` holding each kept run's record and evaluations.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::runs::{read_train_artifact, SELECTION_FILE};
use super::{Artifact, NodeCtx, NodeError, NodeKind, Refusal, SweptNode};
use crate::fit::selection::{choose, describe, edge_warning, follow, Axes, KeptRun, Metric, Selection, Trial};
use crate::settings::{closest, settings, FieldType, Schema, Settings as _, Value};
use crate::train::record::{EVAL_FILE, RECORD_FILE, STEPS_FILE};

settings! {
    /// The settings of a `select` node.
    pub struct SelectParams {
        /// the sweep axis whose best value each group keeps (e.g. `lr`)
        over: String = [FieldType::Str] required,
        /// the axes whose values form a group (default: every axis but `over` and `replicates`)
        group_by: Option<Vec<String>> = [FieldType::List(Box::new(FieldType::Str))] optional,
        /// axes whose runs repeat one setting (e.g. `seed`): a value's metric is their mean, and the winner keeps them all
        replicates: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(Vec::<String>::new()),
        /// what is minimised
        metric: Metric = [FieldType::Enum(&["final_val_loss", "min_val_loss"])] default(Metric::FinalValLoss),
        /// take each group's value from its counterpart with this axis value, e.g. `{variant: baseline}` (one rate per size, as the paper)
        follow: Option<BTreeMap<String, String>> = [FieldType::Dict(Box::new(FieldType::Str))] optional,
    }
}

/// The `select` node kind.
pub struct Select {
    schema: Schema,
}

impl Select {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Select { schema: SelectParams::schema() }
    }
}

impl Default for Select {
    fn default() -> Self {
        Self::new()
    }
}

fn refuse(param: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal { param: param.into(), message: message.into(), hint: hint.into() }
}

/// Where an axis is missing: the declaration, and a hint naming the axes
/// it has (the closest first).
fn missing_axis(param: String, axis: &str, decl: &str, has: &[&str], role: &str) -> Refusal {
    let hint = match closest(axis, has.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? `{decl}` sweeps {}", has.join(", ")),
        None if has.is_empty() => format!("`{decl}` is not swept: give it a `matrix:`"),
        None => format!("`{decl}` sweeps {}", has.join(", ")),
    };
    refuse(param, format!("{role} `{axis}` is not a sweep axis of `{decl}`"), hint)
}

/// The axes of `p` checked against the inputs' sweeps; `group_by`
/// defaults to every axis left over.
fn resolve_axes(p: &SelectParams, inputs: &[SweptNode<'_>]) -> Result<Axes, Refusal> {
    if inputs.is_empty() {
        return Err(refuse("over", "a `select` needs a training sweep as `input:`", "add `input: <train node>`"));
    }
    let mut all: Vec<&str> = Vec::new();
    for node in inputs {
        for (axis, _) in node.matrix {
            if !all.contains(&axis.as_str()) {
                all.push(axis);
            }
        }
    }
    let group_by = p.group_by.clone().unwrap_or_else(|| {
        all.iter().filter(|a| **a != p.over && !p.replicates.iter().any(|r| r == *a)).map(|a| a.to_string()).collect()
    });
    for node in inputs {
        let has: Vec<&str> = node.matrix.iter().map(|(a, _)| a.as_str()).collect();
        if !has.contains(&p.over.as_str()) {
            return Err(missing_axis("over".into(), &p.over, node.decl, &has, "`over:`"));
        }
        let named = [("group_by", &group_by), ("replicates", &p.replicates)];
        for (param, axes) in named {
            for (k, axis) in axes.iter().enumerate() {
                if !has.contains(&axis.as_str()) {
                    let param = if p.group_by.is_none() && param == "group_by" {
                        "over".into()
                    } else {
                        format!("{param}.{k}")
                    };
                    return Err(missing_axis(param, axis, node.decl, &has, "axis"));
                }
            }
        }
        if let Some(stray) = has
            .iter()
            .find(|a| **a != p.over && !group_by.iter().any(|g| g == *a) && !p.replicates.iter().any(|r| r == *a))
        {
            return Err(refuse(
                "group_by",
                format!("axis `{stray}` of `{}` is neither grouped, chosen `over:` nor a replicate", node.decl),
                format!("add `{stray}` to `group_by:` (a group per value) or to `replicates:` (averaged, like seeds)"),
            ));
        }
    }
    if let Some(k) = group_by.iter().position(|g| *g == p.over) {
        return Err(refuse(
            format!("group_by.{k}"),
            format!("`{}` is chosen `over:`, so it cannot also form groups", p.over),
            "remove it from `group_by:`",
        ));
    }
    let follow = match &p.follow {
        None => None,
        Some(map) => {
            let mut entries = map.iter();
            let (Some((axis, value)), None) = (entries.next(), entries.next()) else {
                return Err(refuse(
                    "follow",
                    "`follow:` takes one axis and its value",
                    "e.g. `follow: { variant: baseline }`",
                ));
            };
            if !group_by.contains(axis) {
                let hint = match closest(axis, group_by.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`? groups are by {}", group_by.join(", ")),
                    None => format!("groups are by {}", group_by.join(", ")),
                };
                return Err(refuse(
                    format!("follow.{axis}"),
                    format!("`follow:` names `{axis}`, which is not a `group_by` axis"),
                    hint,
                ));
            }
            let values: Vec<String> = inputs
                .iter()
                .filter_map(|n| n.matrix.iter().find(|(a, _)| a == axis).map(|(_, v)| v.to_string()))
                .collect();
            if !values.contains(value) {
                let mut distinct = values.clone();
                distinct.sort();
                distinct.dedup();
                let hint = match closest(value, values.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("`{axis}` takes {}", distinct.join(", ")),
                };
                return Err(refuse(format!("follow.{axis}"), format!("no input has {axis} = {value}"), hint));
            }
            Some((axis.clone(), value.clone()))
        }
    };
    Ok(Axes { over: p.over.clone(), group_by, replicates: p.replicates.clone(), follow })
}

/// A `train` artifact as a trial of the sweep.
fn read_trial(artifact: &Artifact, metric: Metric) -> Result<Trial, NodeError> {
    let (run, record) = read_train_artifact(&artifact.node.0, &artifact.dir)?;
    let value = match metric {
        Metric::FinalValLoss => record.val_loss,
        Metric::MinValLoss => run.points.iter().map(|p| p.loss).fold(f64::INFINITY, f64::min),
    };
    Ok(Trial {
        id: artifact.node.0.clone(),
        matrix: artifact.matrix.clone(),
        variant: record.variant(),
        trainable: record.params.trainable,
        tokens: record.tokens,
        metric: value.is_finite().then_some(value),
    })
}

/// Copies a kept run's record and evaluations (and steps) into `to`.
fn copy_run(from: &Path, to: &Path) -> Result<(), NodeError> {
    for file in [RECORD_FILE, EVAL_FILE, STEPS_FILE] {
        let src = from.join(file);
        if !src.exists() {
            continue;
        }
        let dst = to.join(file);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| NodeError::io(&dst, e))?;
    }
    Ok(())
}

impl NodeKind for Select {
    fn name(&self) -> &'static str {
        "select"
    }

    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn check_inputs(&self, params: &Value, inputs: &[SweptNode<'_>]) -> Result<(), Refusal> {
        let p = SelectParams::read(params).map_err(|e| refuse("over", e, "see the `select` reference"))?;
        resolve_axes(&p, inputs).map(|_| ())
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let p: SelectParams = ctx.settings()?;
        let artifacts: Vec<Artifact> = ctx.inputs().iter().flat_map(|i| i.artifacts.iter().cloned()).collect();
        if let Some(not_train) = artifacts.iter().find(|a| !a.dir.join(EVAL_FILE).exists()) {
            return Err(NodeError::Failed(format!(
                "input `{}` is not a `train` node: a select chooses among runs",
                not_train.node
            )));
        }
        let swept: Vec<SweptNode<'_>> = artifacts
            .iter()
            .map(|a| SweptNode {
                id: &a.node,
                decl: a.node.0.split('[').next().unwrap_or(&a.node.0),
                matrix: &a.matrix,
            })
            .collect();
        let axes = resolve_axes(&p, &swept).map_err(|r| NodeError::Failed(format!("{} ({})", r.message, r.hint)))?;
        let trials = artifacts.iter().map(|a| read_trial(a, p.metric)).collect::<Result<Vec<_>, _>>()?;
        let mut groups = choose(&axes, trials).map_err(NodeError::Failed)?;
        if let Some(f) = &axes.follow {
            follow(&mut groups, f, &axes.over).map_err(NodeError::Failed)?;
        }
        let dirs: HashMap<&str, &Path> = artifacts.iter().map(|a| (a.node.0.as_str(), a.dir.as_path())).collect();
        let mut kept = Vec::new();
        for g in &groups {
            for run in &g.winner().runs {
                let dir = format!("runs/{:03}", kept.len());
                copy_run(dirs[run.node.as_str()], &ctx.out_dir().join(&dir))?;
                kept.push(KeptRun { node: run.node.clone(), dir });
            }
        }
        ctx.add_summary(format!(
            "{} group(s) by {}, {} {} chosen by {}{}; {} run(s) kept",
            groups.len(),
            if axes.group_by.is_empty() { "nothing".into() } else { axes.group_by.join(", ") },
            axes.over,
            if axes.follow.is_some() { "values" } else { "best values" },
            p.metric.describe(),
            axes.follow.as_ref().map_or(String::new(), |(a, v)| format!(", each as its {a} = {v} counterpart chose")),
            kept.len()
        ));
        for g in &groups {
            let line = describe(g, &axes.over);
            ctx.log_line(&line);
            ctx.add_summary(line);
            if let Some(warning) = edge_warning(g, &axes.over) {
                ctx.warn(warning);
            }
        }
        let selection = Selection {
            over: axes.over,
            group_by: axes.group_by,
            replicates: axes.replicates,
            metric: p.metric,
            follow: axes.follow,
            groups,
            kept,
        };
        let path = ctx.out_dir().join(SELECTION_FILE);
        let bytes = serde_json::to_vec_pretty(&selection).map_err(|e| NodeError::Failed(e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| NodeError::io(&path, e))
    }
}
