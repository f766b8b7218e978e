//! The report's words and tables: the answer at the top, the runs, the
//! laws (or why the data cannot identify them), the multipliers, and the
//! paper's Tables 1–3 beside our counts. Each table is built once and
//! written both as Markdown and as HTML, so neither shows the other's
//! syntax.

use std::fmt::Write as _;

use super::RunData;
use crate::fit::compare::IntervalSource;
use crate::fit::identify::Identified;
use crate::fit::optimal::ComputeOptimal;
use crate::fit::study::{CompareBy, PowerLawFit, StudyFit};
use crate::fit::Estimate;
use crate::fit::Family;
use crate::train::{CostModel, ModelShape, Variant, PAPER_MODELS};
use crate::units::si;

/// A table of text cells; numeric columns are right-aligned.
pub struct Table {
    header: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns: (title, numeric).
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            numeric: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// GitHub-flavoured Markdown.
    pub fn markdown(&self) -> String {
        let cell = |c: &str| c.replace('|', "\\|");
        let mut md = format!("| {} |\n|", self.header.join(" | "));
        for &numeric in &self.numeric {
            md.push_str(if numeric { "---:|" } else { "---|" });
        }
        md.push('\n');
        for row in &self.rows {
            let _ = writeln!(md, "| {} |", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        }
        md
    }

    /// An HTML `<table>`.
    pub fn html(&self) -> String {
        let align = |i: usize| if self.numeric[i] { " class=\"num\"" } else { "" };
        let mut html = String::from("<table>\n<tr>");
        for (i, h) in self.header.iter().enumerate() {
            let _ = write!(html, "<th{}>{}</th>", align(i), escape(h));
        }
        html.push_str("</tr>\n");
        for row in &self.rows {
            html.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                let _ = write!(html, "<td{}>{}</td>", align(i), escape(c));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
        html
    }
}

/// Text made safe for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A multiplier as "0.98× [0.90, 1.07]".
pub(super) fn times(e: &Estimate) -> String {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) => format!("{:.2}× [{lo:.2}, {hi:.2}]", e.value),
        _ => format!("{:.2}×", e.value),
    }
}

/// What a multiplier's interval says about a family against the baseline.
pub fn verdict(e: &Estimate) -> &'static str {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) if lo <= 1.0 && 1.0 <= hi => {
            "not distinguishable from the baseline's law (the interval contains 1)"
        }
        (Some(_), Some(hi)) if hi < 1.0 => "less compute-efficient than the baseline",
        (Some(_), Some(_)) => "more compute-efficient than the baseline",
        _ => "no interval (bootstrap: 0)",
    }
}

/// The family names as a reader knows them (every variant has one: the
/// match is exhaustive); other groups keep their own.
pub fn family_name(family: &Family) -> &str {
    match family.variant() {
        Some(Variant::Baseline) => "baselines",
        Some(Variant::Doped) => "doped models",
        Some(Variant::Fastfood) => "FastFood models",
        Some(Variant::BlockdiagHadamard) => "block-diagonal models",
        None => family.name(),
    }
}

/// The cost model the paper compares a family on (Figures 3, 6 and 7).
fn paper_cost_model(family: &Family) -> CostModel {
    match family.variant() {
        Some(Variant::Fastfood) => CostModel::FastfoodFree,
        _ => CostModel::Trainable,
    }
}

fn law_cell(law: &Identified<PowerLawFit>) -> String {
    match law {
        Identified::Fitted(l) => l.alpha.with_interval(4),
        Identified::NotIdentifiable(why) => format!("not identifiable: {why}"),
    }
}

/// α by the interval the report judges it by: least squares where the
/// bootstrap has too few distinct resamples.
fn alpha_judged(fit: &StudyFit, family: &Family, bootstrap: Estimate) -> Estimate {
    match fit.statistics.alpha.get(family) {
        Some(a) if a.uses == IntervalSource::LeastSquares => a.least_squares.unwrap_or(bootstrap),
        _ => bootstrap,
    }
}

/// The answer in two sentences: the baseline's law, then each family
/// against it, with intervals.
pub fn answer(fit: &StudyFit, runs: &[RunData]) -> Vec<String> {
    let base = &fit.settings.baseline;
    let Some(group) = fit.groups.get(base) else {
        return vec![format!("No `{base}` family among the runs: nothing to compare with.")];
    };
    let ns: Vec<f64> = runs.iter().filter(|r| &r.run.group == base).map(|r| r.run.params.trainable as f64).collect();
    let (lo, hi) = ns.iter().fold((f64::INFINITY, 0.0f64), |(a, b), n| (a.min(*n), b.max(*n)));
    let first = match &group.axes[&CostModel::Trainable].power_law {
        Identified::Fitted(law) => format!(
            "The {} ({} sizes, {}–{} trainable non-embedding parameters) follow L = (C_c / C)^α on C = 6·N·D with α = {} (95% interval; the paper's French baselines: 0.041).",
            family_name(base),
            group.sizes,
            si(lo),
            si(hi),
            alpha_judged(fit, base, law.alpha).with_interval(4)
        ),
        Identified::NotIdentifiable(why) => {
            let first = format!("The {}' law on C = 6·N·D is not identifiable: {why}.", family_name(base));
            let second = "Without it no family can be set against the baselines: the figures and the runs table below show where each run ended.";
            return if fit.multipliers.is_empty() { vec![first] } else { vec![first, second.to_string()] };
        }
    };
    let mut parts = Vec::new();
    for (family, models) in &fit.multipliers {
        let mut said = Vec::new();
        let mut models_to_say = vec![paper_cost_model(family)];
        if family.variant() == Some(Variant::Doped) {
            models_to_say.push(CostModel::FrozenTwoThirds);
        }
        for model in models_to_say {
            let Some(m) = models.get(&model) else { continue };
            let how = match model {
                CostModel::Trainable if family.variant() == Some(Variant::Doped) => "with frozen parameters free",
                CostModel::FrozenTwoThirds => "at 2/3 cost",
                CostModel::FastfoodFree => "with FastFood diagonals free",
                _ => "on C = 6·N·D",
            };
            said.push(match m {
                Identified::Fitted(m) => format!("{} {how}, {}", times(&m.estimate), verdict(&m.estimate)),
                Identified::NotIdentifiable(why) => format!("not comparable {how} ({why})"),
            });
        }
        parts.push(format!("{} {}", family_name(family), said.join("; ")));
    }
    if parts.is_empty() {
        return vec![first];
    }
    let second = format!(
        "Against that law, each family's effective-compute multiplier (the compute the baselines need for the same loss over the compute the family used; 1 is on the law) is: {}.",
        parts.join("; ")
    );
    vec![first, second]
}

/// Every run: shape, counts, tokens, final validation and test loss.
pub fn runs_table(runs: &[RunData]) -> Table {
    let mut t = Table::new(&[
        ("run", false),
        ("family", false),
        ("layers", true),
        ("d_model", true),
        ("heads", true),
        ("N trainable", true),
        ("frozen", true),
        ("structured", true),
        ("tokens", true),
        ("val loss", true),
        ("test loss", true),
    ]);
    for RunData { run, record } in runs {
        let m = &record.model;
        let layers = match m.frozen_layers() {
            0 => m.n_layer.to_string(),
            frozen => format!("{} + {frozen} frozen", m.n_layer),
        };
        let loss = |l: Option<f64>| l.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{v:.4}"));
        t.row(vec![
            run.id.clone(),
            run.group.to_string(),
            layers,
            m.d_model.to_string(),
            m.n_head.to_string(),
            si(run.params.trainable as f64),
            si(run.params.frozen as f64),
            si(run.params.structured as f64),
            si(record.tokens as f64),
            loss(run.points.last().map(|p| p.loss)),
            loss(record.test_loss),
        ]);
    }
    t
}

/// Each family's laws, or why not.
pub fn laws_table(fit: &StudyFit) -> Table {
    let mut t = Table::new(&[
        ("family", false),
        ("runs", true),
        ("sizes", true),
        ("α on C = 6·N·D [95% CI]", false),
        ("α_N: final loss vs N", false),
        ("L(N, D) = E + A/N^α + B/D^β", false),
        ("largest model from the others", false),
    ]);
    for (g, group) in &fit.groups {
        let chinchilla = match &group.chinchilla {
            Identified::Fitted(l) => {
                format!("E = {:.3}, α = {}, β = {}", l.e.value, l.alpha.with_interval(4), l.beta.with_interval(4))
            }
            Identified::NotIdentifiable(why) => format!("not identifiable: {why}"),
        };
        let held_out = group.leave_largest_out.as_ref().map_or("–".into(), |o| {
            format!("{:.3} predicted, {:.3} actual ({:+.1}%)", o.predicted, o.actual, 100.0 * o.relative_error)
        });
        t.row(vec![
            g.to_string(),
            group.runs.len().to_string(),
            group.sizes.to_string(),
            law_cell(&group.axes[&CostModel::Trainable].power_law),
            law_cell(&group.final_n),
            chinchilla,
            held_out,
        ]);
    }
    t
}

/// Each family's compute-optimal allocation by the three approaches.
pub fn optimal_table(fit: &StudyFit) -> Table {
    let mut columns = vec![("family", false)];
    columns.extend(ComputeOptimal::COLUMNS.iter().enumerate().map(|(i, c)| (*c, (1..5).contains(&i))));
    let mut t = Table::new(&columns);
    for (g, group) in &fit.groups {
        for row in group.compute_optimal.rows() {
            let mut cells = vec![g.to_string()];
            cells.extend(row);
            t.row(cells);
        }
    }
    t
}

/// Per family: whether the approaches agree, and how L(N, D) converged.
pub fn optimal_paragraphs(fit: &StudyFit) -> Vec<String> {
    let mut out = vec![OPTIMAL_NOTE.to_string()];
    for (g, group) in &fit.groups {
        let o = &group.compute_optimal;
        out.push(format!("{}: {} {}", family_name(g), o.agreement_sentence(), o.convergence_sentence()));
    }
    out
}

/// What the allocation table shows.
const OPTIMAL_NOTE: &str = "How to spend a budget C = 6·N·D (N trainable, non-embedding): the compute-optimal model size N_opt = G·C^a and token count D_opt = H·C^b by the three approaches of Hoffmann et al. (2022) — (1) the run with the lowest loss at each compute, (2) the minimum of a parabola in log N through each isoFLOP budget's final losses (runs whose final compute agrees within 5%), (3) the minimum of the fitted L(N, D) = E + A/N^α + B/D^β, a = β/(α+β). Hoffmann et al. found a ≈ 0.50, 0.49 and 0.46. Intervals: 95% bootstrap over runs.";

/// The published exponents our α compares with.
pub const REFERENCES: &str = "For comparison, α on compute: the paper's French baselines 0.041 (its Figure 1, runs of 4×10¹⁸–6×10¹⁹ FLOP by C = 6·N·D), \
Kaplan et al. 2020 0.050, Henighan et al. 2020 0.048.";

/// Each family against the baseline's law under every cost model.
pub fn multipliers_table(fit: &StudyFit) -> Table {
    let mut t = Table::new(&[
        ("family", false),
        ("cost model", false),
        ("multiplier [95% CI]", true),
        ("compared by", false),
        ("reading", false),
    ]);
    for (family, models) in &fit.multipliers {
        for (model, m) in models {
            let (value, by, reading) = match m {
                Identified::Fitted(m) => {
                    let by = match m.by {
                        CompareBy::Envelope => "its envelope".to_string(),
                        CompareBy::FinalPoints => format!("{} run(s)' final points", m.runs.len()),
                    };
                    (times(&m.estimate), by, verdict(&m.estimate).to_string())
                }
                Identified::NotIdentifiable(why) => ("–".into(), "–".into(), format!("not comparable: {why}")),
            };
            t.row(vec![family.to_string(), format!("{}: {}", model.formula(), model.meaning()), value, by, reading]);
        }
    }
    t
}

/// The paper's Tables 1–3 with our parameter counts (vocabulary 50,262) and,
/// where this study trained the same shape, our final loss. The paper
/// prints hyperparameters but no parameter counts or final losses (its
/// losses are only in figures), so those cells have nothing beside them.
pub fn paper_table(runs: &[RunData]) -> Table {
    let mut t = Table::new(&[
        ("table", true),
        ("model (paper)", false),
        ("layers", true),
        ("d_model", true),
        ("heads", true),
        ("peak lr", true),
        ("decay tokens", true),
        ("N trainable (ours)", true),
        ("frozen (ours)", true),
        ("structured (ours)", true),
        ("this study's run", false),
        ("final val loss", true),
    ]);
    for m in PAPER_MODELS {
        let Some(shape) = ModelShape::preset(m.preset, 50_262) else { continue };
        let counts = shape.param_counts();
        let same_shape = |r: &&RunData| {
            let o = &r.record.model;
            (o.n_layer, o.d_model, o.n_head, o.variant) == (shape.n_layer, shape.d_model, shape.n_head, shape.variant)
        };
        let run = runs.iter().find(same_shape);
        t.row(vec![
            m.table.to_string(),
            m.label.to_string(),
            m.layers.to_string(),
            shape.d_model.to_string(),
            shape.n_head.to_string(),
            format!("{:.0e}", m.lr),
            format!("{:.1}G", m.decay_tokens / 1e9),
            si(counts.trainable as f64),
            si(counts.frozen as f64),
            si(counts.structured as f64),
            run.map_or("not in this study".into(), |r| r.run.id.clone()),
            run.and_then(|r| r.run.points.last()).map_or("–".into(), |p| format!("{:.4}", p.loss)),
        ]);
    }
    t
}

/// Says what the paper's tables are and whose counts these are.
pub const PAPER_NOTE: &str = "Layers, width, heads, learning rate and decay are the paper's (Chatelain et al. 2021, Tables 1–3; doped layers count trainable + frozen). \
Parameter counts are ours (non-embedding, vocabulary 50,262): the paper prints none. A final loss appears where this study trained the same shape.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_without_each_others_syntax() {
        let mut t = Table::new(&[("name", false), ("value", true)]);
        t.row(vec!["a|b".into(), "1 < 2".into()]);
        assert_eq!(t.markdown(), "| name | value |\n|---|---:|\n| a\\|b | 1 < 2 |\n");
        let html = t.html();
        assert!(html.contains("<td>a|b</td><td class=\"num\">1 &lt; 2</td>"), "{html}");
        assert!(!html.contains('*') && !html.contains("---"), "{html}");
    }

    #[test]
    fn verdicts_read_the_interval() {
        let e = |value, lo, hi| Estimate { value, low: Some(lo), high: Some(hi) };
        assert_eq!(verdict(&e(0.9, 0.8, 1.1)), "not distinguishable from the baseline's law (the interval contains 1)");
        assert_eq!(verdict(&e(0.6, 0.5, 0.7)), "less compute-efficient than the baseline");
        assert_eq!(verdict(&e(1.6, 1.5, 1.7)), "more compute-efficient than the baseline");
        assert_eq!(times(&e(0.98, 0.9, 1.07)), "0.98× [0.90, 1.07]");
    }
}
