//! `fit`: scaling laws from a family of training runs (or from a CSV of
//! published runs): envelopes and laws per cost model with bootstrap
//! intervals, L(N), L(N, D), leave-largest-out errors and each variant's
//! effective-compute multiplier against the baseline (`crate::fit`).
//!
//! Artifact: `fit.json` (every number, interval, residual and setting).

use std::path::Path;

use super::{NodeCtx, NodeError, NodeKind, Resources};
use crate::fit::identify::Identified;
use crate::fit::optimal::ComputeOptimal;
use crate::fit::study::{fit_study, CompareBy, Estimate, Frontier, Run, RunPoint, Settings, StudyFit};
use crate::spec::{Field, FieldType, Schema, Value};
use crate::train::job::EvalRow;
use crate::train::record::{TrainRecord, EVAL_FILE};
use crate::train::{Compute, CostModel, ParamCounts};

/// The `fit` node kind.
pub struct Fit {
    schema: Schema,
}

impl Fit {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Fit {
            schema: Schema::new(vec![
                Field::default("skip_fraction", FieldType::Float, Value::Float(0.1), "leave out each run's evaluations before this fraction of its tokens (warmup)"),
                Field::default("envelope_points", FieldType::Int { min: 2 }, Value::Int(40), "log-spaced compute values of each envelope"),
                Field::default("bootstrap", FieldType::Int { min: 0 }, Value::Int(1000), "bootstrap replicates over runs for the 95% intervals (0: none)"),
                Field::default("seed", FieldType::Int { min: 0 }, Value::Int(0), "seed of the bootstrap"),
                Field::default("baseline", FieldType::Str, Value::Str("baseline".into()), "the family the others are compared with"),
                Field::default(
                    "frontier",
                    FieldType::Enum(&["curves", "final_points"]),
                    Value::Str("curves".into()),
                    "the compute-efficient frontier from every evaluation (Kaplan et al., the paper) or from each run's final loss (a cosine run's loss is only its schedule's at its end)",
                ),
                Field::default("group_by", FieldType::Enum(&["variant", "none"]), Value::Str("variant".into()), "families: by model variant, or one family"),
                Field::optional(
                    "csv",
                    FieldType::Str,
                    "a CSV of runs to fit instead of (or with) inputs: columns run, n, tokens, loss, and optionally group, compute, frozen, structured, fastfood",
                ),
            ]),
        }
    }
}

impl Default for Fit {
    fn default() -> Self {
        Self::new()
    }
}

fn failed(path: &Path, why: impl std::fmt::Display) -> NodeError {
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
        group: record.variant().name().to_string(),
        params: record.params,
        points,
        warmup_tokens: record.optim.warmup_tokens,
    };
    Ok((run, record))
}

/// Runs from a CSV: one row per evaluation.
fn read_csv(path: &Path, group_by: bool) -> Result<Vec<Run>, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|e| NodeError::io(path, e))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| failed(path, "empty file"))?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let required =
        |name: &str| col(name).ok_or_else(|| failed(path, format!("no `{name}` column (need run, n, tokens, loss)")));
    let (run_col, n_col, tokens_col, loss_col) =
        (required("run")?, required("n")?, required("tokens")?, required("loss")?);
    let mut runs: Vec<Run> = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let number = |c: usize, name: &str| -> Result<f64, NodeError> {
            cells
                .get(c)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| failed(path, format!("row {}: `{name}` is not a number", i + 2)))
        };
        let optional = |name: &str| col(name).and_then(|c| cells.get(c)).and_then(|v| v.parse::<f64>().ok());
        let id = cells.get(run_col).copied().unwrap_or_default().to_string();
        let group = if group_by {
            col("group").and_then(|c| cells.get(c)).map_or("baseline", |v| v).to_string()
        } else {
            "all".to_string()
        };
        let params = ParamCounts {
            embedding: 0,
            trainable: number(n_col, "n")? as i64,
            frozen: optional("frozen").unwrap_or(0.0) as i64,
            structured: optional("structured").unwrap_or(0.0) as i64,
            fastfood: optional("fastfood").unwrap_or(0.0) as i64,
        };
        let tokens = number(tokens_col, "tokens")?;
        let mut compute = Compute::at(&params, tokens);
        if let Some(c) = optional("compute") {
            compute.trainable = c; // the published compute, when given
        }
        let point = RunPoint { tokens, compute, loss: number(loss_col, "loss")? };
        match runs.iter_mut().find(|r| r.id == id) {
            Some(run) => run.points.push(point),
            None => runs.push(Run { id, group, params, points: vec![point], warmup_tokens: 0.0 }),
        }
    }
    for run in &mut runs {
        run.points.sort_by(|a, b| a.tokens.total_cmp(&b.tokens));
    }
    Ok(runs)
}

fn interval(e: &Estimate) -> String {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) => format!("{:.4} [95% CI {lo:.4}, {hi:.4}]", e.value),
        _ => format!("{:.4}", e.value),
    }
}

/// One line of the human summary, for `show` and the node's log.
fn say(ctx: &mut NodeCtx<'_>, line: String) {
    ctx.log_line(&line);
    ctx.add_summary(line);
}

/// Summary lines and metrics.
fn report(ctx: &mut NodeCtx<'_>, fit: &StudyFit) {
    let paper_axis = CostModel::Trainable;
    for (group, g) in &fit.groups {
        say(ctx, format!("{group}: {} run(s), {} size(s)", g.runs.len(), g.sizes));
        match &g.axes[&paper_axis].power_law {
            Identified::Fitted(law) => {
                say(
                    ctx,
                    format!(
                        "  L = (C_c / C)^α on C = 6·N·D: α = {}, C_c = {:.3e}",
                        interval(&law.alpha),
                        law.x_c.value
                    ),
                );
                ctx.record_metric(&format!("{group}.alpha_c"), law.alpha.value);
            }
            Identified::NotIdentifiable(why) => say(ctx, format!("  L(C) on C = 6·N·D: not identifiable: {why}")),
        }
        if let Identified::Fitted(law) = &g.axes[&paper_axis].offset_law {
            say(ctx, format!("  L = E + A·C^−α: E = {}, α = {}", interval(&law.e), interval(&law.alpha)));
        }
        match &g.final_n {
            Identified::Fitted(law) => {
                say(ctx, format!("  L(N) = (N_c / N)^α_N: α_N = {}", interval(&law.alpha)));
                ctx.record_metric(&format!("{group}.alpha_n"), law.alpha.value);
            }
            Identified::NotIdentifiable(why) => say(ctx, format!("  L(N): not identifiable: {why}")),
        }
        match &g.chinchilla {
            Identified::Fitted(law) => say(
                ctx,
                format!(
                    "  L(N, D) = E + A/N^α + B/D^β: E = {}, α = {}, β = {}",
                    interval(&law.e),
                    interval(&law.alpha),
                    interval(&law.beta)
                ),
            ),
            Identified::NotIdentifiable(why) => say(ctx, format!("  L(N, D): not identifiable: {why}")),
        }
        let optimal = &g.compute_optimal;
        say(ctx, "  compute-optimal allocation, N_opt = G·C^a and D_opt = H·C^b on C = 6·N·D (N trainable):".into());
        let rows = optimal.rows();
        let widths: Vec<usize> = (0..ComputeOptimal::COLUMNS.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([ComputeOptimal::COLUMNS[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("    {}", padded.join(" | ").trim_end())
        };
        say(ctx, line(ComputeOptimal::COLUMNS.to_vec()));
        for row in &rows {
            say(ctx, line(row.iter().map(String::as_str).collect()));
        }
        say(ctx, format!("  {}", optimal.agreement_sentence()));
        say(ctx, format!("  {}", optimal.convergence_sentence()));
        for (name, approach) in optimal.approaches() {
            if let Identified::Fitted(law) = approach {
                let key = name.split(':').next().unwrap_or(name);
                ctx.record_metric(&format!("{group}.n_opt_exponent_{key}"), law.n_opt.exponent.value);
            }
        }
        if let Some(out) = &g.leave_largest_out {
            say(
                ctx,
                format!(
                    "  leave-largest-out: {} predicted {:.4}, actual {:.4} ({:+.1}%)",
                    out.run,
                    out.predicted,
                    out.actual,
                    100.0 * out.relative_error
                ),
            );
        }
    }
    for (group, models) in &fit.multipliers {
        for (model, m) in models {
            let axis = model.name();
            match m {
                Identified::Fitted(m) => {
                    let by = match m.by {
                        CompareBy::Envelope => "envelope",
                        CompareBy::FinalPoints => "final points",
                    };
                    say(
                        ctx,
                        format!(
                            "{group} vs {}: effective-compute multiplier on C_{axis} = {} ({by})",
                            fit.settings.baseline,
                            interval(&m.estimate)
                        ),
                    );
                    ctx.record_metric(&format!("{group}.multiplier_{axis}"), m.estimate.value);
                }
                Identified::NotIdentifiable(why) => say(
                    ctx,
                    format!("{group} vs {}: multiplier on C_{axis}: not identifiable: {why}", fit.settings.baseline),
                ),
            }
        }
    }
}

/// A `fit` node's [`Settings`] from its params, and whether its families
/// are the runs' variants (else one family, `all`). Shared with `serve`,
/// which refits as runs finish.
pub fn settings(p: &Value) -> (Settings, bool) {
    let int = |k: &str, d: i64| p.get_path(k).and_then(Value::as_i64).unwrap_or(d).max(0) as u64;
    let settings = Settings {
        skip_fraction: p.get_path("skip_fraction").and_then(Value::as_f64).unwrap_or(0.1),
        envelope_points: int("envelope_points", 40) as usize,
        bootstrap: int("bootstrap", 1000) as usize,
        seed: int("seed", 0),
        baseline: p.get_path("baseline").and_then(Value::as_str).unwrap_or("baseline").to_string(),
        frontier: if p.get_path("frontier").and_then(Value::as_str) == Some("final_points") {
            Frontier::FinalPoints
        } else {
            Frontier::Curves
        },
    };
    (settings, p.get_path("group_by").and_then(Value::as_str) != Some("none"))
}

impl NodeKind for Fit {
    fn name(&self) -> &'static str {
        "fit"
    }

    /// 5: laws and multipliers the data cannot identify are reported as
    /// such, small families are compared run by run, warmup is left out,
    /// cost models are named for what they count, a family's frontier
    /// starts where its smallest model ends; 6: the compute-optimal
    /// allocation by three approaches, and L(N, D)'s convergence; 7:
    /// approach 3 judged by its own a and b, not by L(N, D)'s exponents.
    fn version(&self) -> u32 {
        7
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The bootstrap runs on every core.
    fn resources_default(&self, _params: &Value) -> Resources {
        Resources { cpu: std::thread::available_parallelism().map_or(1, |n| n.get()) as u32, ..Resources::default() }
    }

    fn file_inputs(&self, params: &Value) -> Vec<String> {
        params.get_path("csv").and_then(Value::as_str).map(|p| vec![p.to_string()]).unwrap_or_default()
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let p = ctx.params();
        let (settings, by_variant) = settings(p);
        let mut runs = Vec::new();
        if let Some(csv) = p.get_path("csv").and_then(Value::as_str) {
            runs.extend(read_csv(&ctx.root().join(csv), by_variant)?);
        }
        for artifact in ctx.inputs().iter().flat_map(|i| &i.artifacts) {
            if artifact.dir.join(EVAL_FILE).exists() {
                let (mut run, _) = read_train_artifact(&artifact.node.0, &artifact.dir)?;
                if !by_variant {
                    run.group = "all".into();
                }
                runs.push(run);
            }
        }
        if runs.is_empty() {
            return Err(NodeError::Failed("no runs to fit: give `input:` train nodes or `csv:`".into()));
        }
        let fit = fit_study(&runs, &settings).map_err(|e| NodeError::Failed(e.to_string()))?;
        let path = ctx.out_dir().join("fit.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&fit).map_err(|e| NodeError::Failed(e.to_string()))?)
            .map_err(|e| NodeError::io(&path, e))?;
        report(ctx, &fit);
        Ok(())
    }
}
