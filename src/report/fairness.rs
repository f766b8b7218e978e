//! The report's fair-comparison parts: which learning rate each `select`
//! chose and how clearly (with a loss-against-rate figure per family, the
//! winners ringed and the edge flags marked), and each family against the
//! baseline under every fit (protocol) side by side — multiplier with the
//! interval it is judged by, verdict against the margin, paired difference
//! at equal N and D, multiplier per size and its trend.

use std::collections::BTreeMap;

use super::figures::Figure;
use super::plot::{family_colour, log_log_svg, shade, Axes, Series, Stroke};
use super::tables::{family_name, times, Table};
use crate::fit::compare::{FamilyComparison, Verdict};
use crate::fit::selection::{edge_note, Selection};
use crate::fit::study::StudyFit;
use crate::fit::{Estimate, Family};
use crate::units::si;

/// A fit with the name it goes by in the report: its `label:`, else its node.
pub struct NamedFit<'a> {
    /// The protocol's name.
    pub name: String,
    /// The fit.
    pub fit: &'a StudyFit,
}

/// A selection with the node that made it.
pub struct NamedSelection {
    /// The `select` node.
    pub node: String,
    /// What it chose.
    pub selection: Selection,
}

/// One row per group: the value chosen, its metric, its lead, the grid, the flag.
pub fn rates_table(s: &NamedSelection) -> Table {
    let mut t = Table::new(&[
        ("group", false),
        ("chosen", true),
        ("metric (nats/token)", true),
        ("lead over the runner-up", true),
        ("values tried", false),
        ("flag", false),
    ]);
    let over = &s.selection.over;
    for g in &s.selection.groups {
        let w = g.winner();
        let metric = match (w.metric, w.spread) {
            (Some(m), Some(sd)) => format!("{m:.4} ± {sd:.4} ({} runs)", w.runs.len()),
            (Some(m), None) => format!("{m:.4}"),
            (None, _) => "diverged".into(),
        };
        let lead = match (&g.followed, g.margin) {
            (Some(_), _) => "–".into(),
            (None, Some(m)) => format!("{m:.4}"),
            (None, None) => "–".into(),
        };
        let tried: Vec<String> = g
            .candidates
            .iter()
            .map(|c| match c.metric {
                Some(_) => c.value.to_string(),
                None => format!("{} (diverged)", c.value),
            })
            .collect();
        let flag = match (edge_note(g, over), &g.followed, g.candidates.len()) {
            (_, Some(leader), _) => format!("as {leader} chose"),
            (Some(note), None, _) => note,
            (None, None, 1) => "one value tried: not tuned here".into(),
            (None, None, _) => String::new(),
        };
        t.row(vec![g.label.clone(), w.value.to_string(), metric, lead, tried.join(", "), flag]);
    }
    t
}

/// Per family, the metric against the chosen-over value for each group
/// (darker = larger model), the winners ringed in black and winners at the
/// edge of their grid in red. Only for numeric grids of two values or more.
pub fn rate_figures(s: &NamedSelection) -> Result<Vec<Figure>, String> {
    let sel = &s.selection;
    let mut by_family: BTreeMap<Family, Vec<&crate::fit::selection::Group>> = BTreeMap::new();
    for g in sel.groups.iter().filter(|g| g.candidates.len() > 1 && g.followed.is_none()) {
        if g.candidates.iter().all(|c| c.value.as_f64().is_some_and(|v| v > 0.0)) {
            by_family.entry(Family::Variant(g.variant)).or_default().push(g);
        }
    }
    let mut out = Vec::new();
    for (family, groups) in by_family {
        let mut sizes: Vec<i64> = groups.iter().map(|g| g.trainable).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut series = Vec::new();
        let (mut chosen, mut flagged) = (Vec::new(), Vec::new());
        for g in &groups {
            let rank = sizes.iter().position(|&n| n == g.trainable).unwrap_or(0);
            let points: Vec<(f64, f64)> =
                g.candidates.iter().filter_map(|c| Some((c.value.as_f64()?, c.metric?))).collect();
            series.push(Series {
                label: Some(format!("{} (N {}, D {})", g.label, si(g.trainable as f64), si(g.tokens as f64))),
                colour: shade(family_colour(&family), rank, sizes.len()),
                stroke: Stroke::Solid,
                points: points.clone(),
            });
            series.push(Series {
                label: None,
                colour: shade(family_colour(&family), rank, sizes.len()),
                stroke: Stroke::Markers,
                points,
            });
            let w = g.winner();
            if let (Some(x), Some(y)) = (w.value.as_f64(), w.metric) {
                if g.edge.is_some() {
                    flagged.push((x, y))
                } else {
                    chosen.push((x, y))
                }
            }
        }
        if !chosen.is_empty() {
            let colour = plotters::style::RGBColor(20, 20, 20);
            series.push(Series { label: Some("chosen".into()), colour, stroke: Stroke::Rings, points: chosen });
        }
        if !flagged.is_empty() {
            let colour = plotters::style::RGBColor(214, 39, 40);
            let label = Some("chosen at the grid's edge: extend it".into());
            series.push(Series { label, colour, stroke: Stroke::Rings, points: flagged });
        }
        let caption = format!(
            "{} ({}): {} against {} for each group the selection `{}` chose in (darker = larger model); the chosen value of each group is ringed, in red where it is the smallest or largest value tried.",
            family_name(&family),
            s.node,
            sel.metric.describe(),
            sel.over,
            s.node
        );
        let svg = log_log_svg(
            &format!("Loss vs {}: {}", sel.over, family_name(&family)),
            Axes { x: &sel.over, y: &format!("{} (nats/token)", sel.metric.describe()) },
            &series,
        )?;
        out.push(Figure { stem: format!("{}_{}_{family}", sel.over, s.node), caption, svg });
    }
    Ok(out)
}

fn comparison_cells(c: &FamilyComparison, margin: Option<(f64, f64)>) -> Vec<String> {
    let multiplier = c.multiplier.map_or("–".into(), |m| format!("{} ({})", times(&m), c.interval_from.name()));
    let verdict = match (c.verdict, margin) {
        (Some(v), Some((lo, hi))) => format!("{} (margin [{lo}, {hi}])", v.name()),
        (None, Some(_)) => "no interval".into(),
        _ => "no margin set".into(),
    };
    let paired =
        c.paired_mean.map_or("–".into(), |d| format!("{:+.4} {} ({} pairs)", d.value, bounds(&d), c.paired.len()));
    let sizes: Vec<String> =
        c.per_size.iter().map(|s| format!("{} ×{:.2}", si(s.trainable as f64), s.multiplier)).collect();
    let trend =
        c.trend.as_ref().map_or("–".into(), |t| format!("{} per 10× N, p = {:.2}", times(&t.per_decade), t.p_value));
    vec![multiplier, verdict, paired, sizes.join(", "), trend]
}

fn bounds(e: &Estimate) -> String {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) => format!("[{lo:+.4}, {hi:+.4}]"),
        _ => String::new(),
    }
}

/// Each family against the baseline under each fit, side by side.
pub fn comparisons_table(fits: &[NamedFit<'_>]) -> Table {
    let mut t = Table::new(&[
        ("family", false),
        ("protocol", false),
        ("multiplier on C = 6·N·D [95% CI]", true),
        ("verdict", false),
        ("family − baseline at equal N, D (nats)", true),
        ("multiplier per size", false),
        ("trend with size", false),
    ]);
    let mut families: Vec<&Family> = fits.iter().flat_map(|f| f.fit.statistics.families.keys()).collect();
    families.sort();
    families.dedup();
    for family in families {
        for f in fits {
            let Some(c) = f.fit.statistics.families.get(family) else { continue };
            let mut row = vec![family_name(family).to_string(), f.name.clone()];
            row.extend(comparison_cells(c, f.fit.settings.equivalence));
            t.row(row);
        }
    }
    t
}

/// Each family's α by the bootstrap and by least squares, and which is used.
pub fn alpha_table(fits: &[NamedFit<'_>]) -> Table {
    let mut t = Table::new(&[
        ("family", false),
        ("protocol", false),
        ("α, bootstrap [95%]", true),
        ("α, least squares [95%]", true),
        ("distinct resamples", true),
        ("used", false),
    ]);
    for f in fits {
        for (family, a) in &f.fit.statistics.alpha {
            let boot = f
                .fit
                .groups
                .get(family)
                .and_then(|g| g.axes[&crate::train::CostModel::Trainable].power_law.fitted())
                .map_or("–".into(), |l| l.alpha.with_interval(4));
            let ls = a.least_squares.map_or("–".into(), |e| e.with_interval(4));
            t.row(vec![
                family_name(family).to_string(),
                f.name.clone(),
                boot,
                ls,
                format!("{:.0}", a.distinct_resamples),
                a.uses.name().to_string(),
            ]);
        }
    }
    t
}

/// The noise floor in one sentence.
pub fn noise_sentence(fit: &NamedFit<'_>) -> String {
    match &fit.fit.statistics.noise {
        Some(n) => format!(
            "Noise floor ({}): between seeds, one run's final loss varies with a standard deviation of {:.4} nats ({} setting(s) run more than once, {} degrees of freedom); differences smaller than about {:.3} nats between single runs are within it.",
            fit.name,
            n.sd,
            n.cells,
            n.df,
            2.0 * std::f64::consts::SQRT_2 * n.sd
        ),
        None => format!("Noise floor ({}): unknown — no setting was run with two seeds (sweep a `seed` axis).", fit.name),
    }
}

/// One sentence per fit: each family's verdict against the margin.
pub fn verdict_sentence(fit: &NamedFit<'_>) -> Option<String> {
    let margin = fit.fit.settings.equivalence?;
    let parts: Vec<String> = fit
        .fit
        .statistics
        .families
        .iter()
        .map(|(family, c)| {
            let what = match (c.verdict, c.multiplier) {
                (Some(v), Some(m)) => {
                    let word = match v {
                        Verdict::Equivalent => "equivalent to the baselines",
                        Verdict::Better => "better than the baselines",
                        Verdict::Worse => "worse than the baselines",
                        Verdict::Inconclusive => "inconclusive (the interval contains 1 and crosses the margin)",
                    };
                    format!("{word}, {} ({})", times(&m), c.interval_from.name())
                }
                _ => "no verdict (no interval)".into(),
            };
            format!("{} {what}", family_name(family))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "{}, judged against the margin [{}, {}] on the multiplier: {}.",
            capitalise(&fit.name),
            margin.0,
            margin.1,
            parts.join("; ")
        )
    })
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}
