//! `fit`: scaling laws from a family of training runs (or from a CSV of
//! published runs): envelopes and laws per cost model with bootstrap
//! intervals, L(N), L(N, D), leave-largest-out errors and each variant's
//! effective-compute multiplier against the baseline (`crate::fit`).
//!
//! Artifact: `fit.json` (every number, interval, residual and setting)
//! and `runs.csv` (every evaluation it fitted, which `csv:` reads back).

use std::path::Path;

use super::runs::{failed, read_train_artifact, train_runs};
use super::{NodeCtx, NodeError, NodeKind, Resources};
use crate::fit::compare::Verdict;
use crate::fit::identify::Identified;
use crate::fit::optimal::ComputeOptimal;
use crate::fit::study::{fit_study, CompareBy, StudyFit};
use crate::fit::{Estimate, Family, Frontier, Run, RunPoint, Settings};
use crate::settings::{settings, FieldType, Schema, Settings as _, Value};

use crate::train::{Compute, CostModel, ParamCounts, Variant};

/// How a fit forms its families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One family per model variant.
    Variant,
    /// Every run in one family, `all`.
    None,
}

settings! {
    /// The settings of a `fit` node.
    pub struct FitParams {
        /// leave out each run's evaluations before this fraction of its tokens (warmup)
        skip_fraction: f64 = [FieldType::Float] default(0.1),
        /// log-spaced compute values of each envelope
        envelope_points: usize = [FieldType::Int { min: 2 }] default(40),
        /// bootstrap replicates over runs for the 95% intervals (0: none)
        bootstrap: usize = [FieldType::Int { min: 0 }] default(1000),
        /// seed of the bootstrap
        seed: u64 = [FieldType::Int { min: 0 }] default(0),
        /// the family the others are compared with
        baseline: Family = [FieldType::Str] default(Family::BASELINE),
        /// the compute-efficient frontier from every evaluation (Kaplan et al., the paper) or from each run's final loss (a cosine run's loss is only its schedule's at its end)
        frontier: Frontier = [FieldType::Enum(&["curves", "final_points"])] default(Frontier::Curves),
        /// families: by model variant, or one family
        group_by: GroupBy = [FieldType::Enum(&["variant", "none"])] default(GroupBy::Variant),
        /// a CSV of runs to fit instead of (or with) inputs: columns run, n, tokens, loss, and optionally group, compute, frozen, structured, fastfood
        csv: Option<String> = [FieldType::Str] optional,
        /// [low, high]: a family whose multiplier's 95% interval lies within is equivalent to the baseline (e.g. [0.8, 1.25]); above, better; below, worse
        equivalence: Option<Vec<f64>> = [FieldType::List(Box::new(FieldType::Float))] optional,
        /// what these runs are, in the report's tables (e.g. "each family at its best rate")
        label: Option<String> = [FieldType::Str] optional,
    }
}

impl FitParams {
    /// What [`fit_study`] needs of these settings. Shared with `serve`,
    /// which refits as runs finish.
    pub fn study_settings(&self) -> Result<Settings, String> {
        let equivalence = match self.equivalence.as_deref() {
            None => None,
            Some(&[lo, hi]) if 0.0 < lo && lo < 1.0 && 1.0 < hi => Some((lo, hi)),
            Some(other) => {
                return Err(format!(
                    "`equivalence:` is [low, high] with 0 < low < 1 < high (e.g. [0.8, 1.25]), found {other:?}"
                ))
            }
        };
        Ok(Settings {
            skip_fraction: self.skip_fraction,
            envelope_points: self.envelope_points,
            bootstrap: self.bootstrap,
            seed: self.seed,
            baseline: self.baseline.clone(),
            frontier: self.frontier,
            equivalence,
            label: self.label.clone(),
        })
    }

    /// The family a run of `variant` belongs to under `group_by`.
    pub fn family_of(&self, variant: Variant) -> Family {
        match self.group_by {
            GroupBy::Variant => Family::Variant(variant),
            GroupBy::None => Family::All,
        }
    }
}

/// The `fit` node kind.
pub struct Fit {
    schema: Schema,
}

impl Fit {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Fit { schema: FitParams::schema() }
    }
}

impl Default for Fit {
    fn default() -> Self {
        Self::new()
    }
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
            col("group").and_then(|c| cells.get(c)).map_or(Family::BASELINE, |v| Family::from(*v))
        } else {
            Family::All
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

/// The runs a fit read, one row per evaluation, as `csv:` reads them back:
/// a study's data beside its laws, refittable without the cache.
pub const RUNS_CSV: &str = "runs.csv";

fn runs_csv(runs: &[Run]) -> String {
    let mut out = String::from("run,group,n,frozen,structured,fastfood,tokens,loss\n");
    for r in runs {
        let p = &r.params;
        for point in &r.points {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                r.id.replace(',', ";"),
                r.group,
                p.trainable,
                p.frozen,
                p.structured,
                p.fastfood,
                point.tokens,
                point.loss
            ));
        }
    }
    out
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

/// Summary lines of [`Statistics`]: the noise floor, then each family's
/// paired differences, multipliers per size, trend and verdict.
fn report_statistics(ctx: &mut NodeCtx<'_>, fit: &StudyFit) {
    let stats = &fit.statistics;
    match &stats.noise {
        Some(n) => {
            say(
                ctx,
                format!(
                "noise floor: a run's final loss varies by sd {:.4} nats between seeds ({} setting(s) repeated, {} df)",
                n.sd, n.cells, n.df
            ),
            );
            ctx.record_metric("noise_sd", n.sd);
        }
        None => say(ctx, "noise floor: unknown (no setting was run twice: sweep a `seed` axis)".into()),
    }
    for (family, a) in &stats.alpha {
        if let Some(ls) = &a.least_squares {
            say(
                ctx,
                format!(
                "{family}: α by least squares {}; the bootstrap draws from {} distinct resamples; intervals used: {}",
                interval(ls),
                a.distinct_resamples,
                a.uses.name()
            ),
            );
        }
    }
    for (family, c) in &stats.families {
        let base = &fit.settings.baseline;
        if let Some(m) = &c.paired_mean {
            say(
                ctx,
                format!(
                    "{family} − {base} at equal N and D: {} nats over {} pair(s) (below 0: {family} is better)",
                    interval(m),
                    c.paired.len()
                ),
            );
        }
        if !c.per_size.is_empty() {
            let sizes: Vec<String> = c
                .per_size
                .iter()
                .map(|s| format!("{} ×{:.3}", crate::units::si(s.trainable as f64), s.multiplier))
                .collect();
            say(ctx, format!("  multiplier per size (N trainable): {}", sizes.join(", ")));
        }
        if let Some(t) = &c.trend {
            say(ctx, format!("  trend with size: ×{} per 10× N, p = {:.3}", interval(&t.per_decade), t.p_value));
        }
        if let Some(m) = &c.multiplier {
            let verdict = match (c.verdict, fit.settings.equivalence) {
                (Some(v), Some((lo, hi))) => format!(": {} (margin [{lo}, {hi}])", v.name()),
                _ => String::new(),
            };
            say(ctx, format!("  multiplier {} ({} interval){verdict}", interval(m), c.interval_from.name()));
            if let Some(v) = c.verdict {
                ctx.record_metric(&format!("{family}.equivalent"), f64::from(u8::from(v == Verdict::Equivalent)));
            }
        }
    }
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
    /// approach 3 judged by its own a and b, not by L(N, D)'s exponents;
    /// 8: statistics (noise floor, paired differences, multipliers per
    /// size, least-squares intervals, verdicts) and runs from `select`.
    fn version(&self) -> u32 {
        8
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The bootstrap runs on every core.
    fn resources_default(&self, _params: &Value) -> Resources {
        Resources { cpu: std::thread::available_parallelism().map_or(1, |n| n.get()) as u32, ..Resources::default() }
    }

    fn file_inputs(&self, params: &Value) -> Vec<String> {
        FitParams::read(params).ok().and_then(|p| p.csv).into_iter().collect()
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let p: FitParams = ctx.settings()?;
        let settings = p.study_settings().map_err(NodeError::Failed)?;
        let mut runs = Vec::new();
        if let Some(csv) = &p.csv {
            runs.extend(read_csv(&ctx.root().join(csv), p.group_by == GroupBy::Variant)?);
        }
        for source in train_runs(ctx.inputs())? {
            let (mut run, record) = read_train_artifact(&source.id, &source.dir)?;
            run.group = p.family_of(record.variant());
            runs.push(run);
        }
        if runs.is_empty() {
            return Err(NodeError::Failed("no runs to fit: give `input:` train or select nodes, or `csv:`".into()));
        }
        let fit = fit_study(&runs, &settings).map_err(|e| NodeError::Failed(e.to_string()))?;
        let path = ctx.out_dir().join(RUNS_CSV);
        std::fs::write(&path, runs_csv(&runs)).map_err(|e| NodeError::io(&path, e))?;
        let path = ctx.out_dir().join("fit.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&fit).map_err(|e| NodeError::Failed(e.to_string()))?)
            .map_err(|e| NodeError::io(&path, e))?;
        report(ctx, &fit);
        report_statistics(ctx, &fit);
        Ok(())
    }
}
