//! The report's figures: the paper's Figures 1, 2, 3, 6 and 7 one to one
//! (compute in PF-days, as the paper plots it), then the extra panels —
//! loss against tokens, against compute under every cost model, final loss
//! against N per family, the law's residuals, and per family the isoFLOP
//! profiles and N_opt against compute by the three approaches.

use std::collections::BTreeMap;

use super::plot::{family_colour, log_log_svg, shade, Axes, Series, Stroke};
use super::tables::family_name;
use super::RunData;
use crate::fit::compare::IntervalSource;
use crate::fit::optimal::{ComputeOptimal, IsoFlopProfile, Parabola};
use crate::fit::study::{PowerLawFit, StudyFit};
use crate::fit::Family;
use crate::train::{CostModel, Variant, PF_DAY};
use crate::units::si;
use plotters::style::RGBColor;

/// One figure: file stem (and HTML id), caption, SVG.
pub struct Figure {
    /// `figures/<stem>.svg|png`, and the `<figure id>`.
    pub stem: String,
    /// What it shows.
    pub caption: String,
    /// The drawing.
    pub svg: String,
}

const VAL_LOSS: &str = "validation loss (nats/token)";

/// Each run's rank among its family's distinct sizes, and that count.
fn size_ranks(runs: &[RunData]) -> BTreeMap<String, (usize, usize)> {
    let mut sizes: BTreeMap<&Family, Vec<i64>> = BTreeMap::new();
    for r in runs {
        sizes.entry(&r.run.group).or_default().push(r.run.params.trainable);
    }
    for n in sizes.values_mut() {
        n.sort_unstable();
        n.dedup();
    }
    runs.iter()
        .map(|r| {
            let n = &sizes[&r.run.group];
            (r.run.id.clone(), (n.iter().position(|&x| x == r.run.params.trainable).unwrap_or(0), n.len()))
        })
        .collect()
}

/// The study's runs, drawn: colours by family and size, legends by family.
struct Painter<'a> {
    runs: &'a [RunData],
    ranks: BTreeMap<String, (usize, usize)>,
}

impl<'a> Painter<'a> {
    fn new(runs: &'a [RunData]) -> Self {
        Painter { runs, ranks: size_ranks(runs) }
    }

    fn family(&self, family: &Family) -> impl Iterator<Item = &'a RunData> + '_ {
        let family = family.clone();
        self.runs.iter().filter(move |r| r.run.group == family)
    }

    /// The runs of `family` as curves of loss against `x`, shaded by size;
    /// the largest carries the family's legend entry.
    fn curves(&self, family: &Family, stroke: Stroke, x: impl Fn(&crate::fit::RunPoint) -> f64) -> Vec<Series> {
        let largest = self.family(family).map(|r| r.run.params.trainable).max();
        let mut labelled = false;
        self.family(family)
            .map(|r| {
                let (rank, count) = self.ranks[&r.run.id];
                let label = (!labelled && Some(r.run.params.trainable) == largest).then(|| {
                    labelled = true;
                    let dotted = if stroke == Stroke::Dotted { ", dotted" } else { "" };
                    match count {
                        1 => format!("{} ({}){dotted}", family_name(family), si(r.run.params.trainable as f64)),
                        _ => format!("{}: {count} sizes{dotted}, darker = larger", family_name(family)),
                    }
                });
                Series {
                    label,
                    colour: shade(family_colour(family), rank, count),
                    stroke,
                    points: r.run.points.iter().map(|p| (x(p), p.loss)).collect(),
                }
            })
            .collect()
    }
}

/// 21 points from `lo` to `hi`, evenly spaced on a log axis: enough for a
/// smooth dashed law or parabola.
fn log_spaced(lo: f64, hi: f64) -> impl Iterator<Item = f64> {
    (0..=20).map(move |i| lo * (hi / lo).powf(i as f64 / 20.0))
}

/// `law` drawn from `lo` to `hi` (21 log-spaced points), scaled on x by `unit`.
fn law_series(label: String, family: &Family, law: &PowerLawFit, (lo, hi): (f64, f64), unit: f64) -> Series {
    let points = log_spaced(lo, hi).map(|x| (x / unit, law.predict(x))).collect();
    Series { label: Some(label), colour: family_colour(family), stroke: Stroke::Dashed, points }
}

/// The baseline's envelope and law on `model`, in units of `unit`.
fn frontier_and_law(fit: Option<&StudyFit>, family: &Family, model: CostModel, unit: f64) -> Vec<Series> {
    let Some(axis) = fit.and_then(|f| f.groups.get(family)).map(|g| &g.axes[&model]) else { return Vec::new() };
    let mut out = Vec::new();
    if !axis.envelope.is_empty() {
        let points = axis.envelope.iter().map(|(c, l)| (c / unit, *l)).collect();
        out.push(Series {
            label: Some(format!("{} frontier", family_name(family))),
            colour: family_colour(family),
            stroke: Stroke::Markers,
            points,
        });
    }
    if let (Some(law), Some(first), Some(last)) = (axis.power_law.fitted(), axis.envelope.first(), axis.envelope.last())
    {
        let intervals = fit.and_then(|f| f.statistics.alpha.get(family)).filter(|_| model == CostModel::Trainable);
        // The interval the report judges by: least squares where the bootstrap has few distinct outcomes.
        let alpha = match intervals {
            Some(a) if a.uses == IntervalSource::LeastSquares => a.least_squares.unwrap_or(law.alpha),
            _ => law.alpha,
        };
        out.push(law_series(
            format!("{}: α = {}", family_name(family), alpha.with_interval(3)),
            family,
            law,
            (first.0, last.0),
            unit,
        ));
        if let Some(line) = intervals.and_then(|a| a.line) {
            let xs: Vec<f64> = log_spaced(first.0, last.0).collect();
            let bands: Option<Vec<(f64, f64)>> = xs.iter().map(|c| line.band(c.ln())).collect();
            if let Some(bands) = bands {
                let upper = xs.iter().zip(&bands).map(|(c, (_, hi))| (c / unit, hi.exp()));
                let lower = xs.iter().zip(&bands).rev().map(|(c, (lo, _))| (c / unit, lo.exp()));
                out.push(Series {
                    label: None,
                    colour: family_colour(family),
                    stroke: Stroke::Band,
                    points: upper.chain(lower).collect(),
                });
            }
        }
    }
    out
}

/// The paper's figure of `variant` (solid) against the `baseline` family's runs `baselines` (dotted) on `model`.
fn paper_comparison(
    p: &Painter<'_>,
    (fit, baseline): (Option<&StudyFit>, &Family),
    variant: Variant,
    model: CostModel,
    baselines: &[&RunData],
    title: &str,
) -> Result<String, String> {
    let x = |pt: &crate::fit::RunPoint| model.of(&pt.compute) / PF_DAY;
    let mut series: Vec<Series> = Vec::new();
    let mut labelled = false;
    for r in baselines {
        let (rank, count) = p.ranks[&r.run.id];
        let label = (!labelled).then(|| {
            labelled = true;
            format!("{}, dotted", family_name(baseline))
        });
        series.push(Series {
            label,
            colour: shade(family_colour(baseline), rank, count),
            stroke: Stroke::Dotted,
            points: r.run.points.iter().map(|pt| (x(pt), pt.loss)).collect(),
        });
    }
    series.extend(p.curves(&Family::Variant(variant), Stroke::Solid, x));
    series.extend(
        frontier_and_law(fit, baseline, model, PF_DAY)
            .into_iter()
            .filter(|s| matches!(s.stroke, Stroke::Dashed | Stroke::Band)),
    );
    log_log_svg(title, Axes { x: &format!("compute (PF-days), {}", model.formula()), y: VAL_LOSS }, &series)
}

/// The paper's Figures 1, 2, 3, 6 and 7, for the variants this study has,
/// each against the fit's `baseline` family.
fn paper_figures(p: &Painter<'_>, fit: Option<&StudyFit>, baseline: &Family) -> Result<Vec<Figure>, String> {
    let mut out = Vec::new();
    let baselines: Vec<&RunData> = p.family(baseline).collect();
    let has = |variant: Variant| {
        *baseline != Family::Variant(variant) && p.family(&Family::Variant(variant)).next().is_some()
    };
    if baselines.is_empty() {
        return Ok(out);
    }
    let alpha = fit
        .and_then(|f| f.groups.get(baseline))
        .and_then(|g| g.axes[&CostModel::Trainable].power_law.fitted())
        .map(|l| l.alpha.with_interval(4));
    let x = |pt: &crate::fit::RunPoint| pt.compute.trainable / PF_DAY;
    let mut series = p.curves(baseline, Stroke::Solid, x);
    series.extend(frontier_and_law(fit, baseline, CostModel::Trainable, PF_DAY));
    out.push(Figure {
        stem: "fig1_baselines".into(),
        caption: format!(
            "Figure 1 of the paper: the baselines' loss against compute C = 6·N·D (PF-days), their compute-efficient frontier (dots) and the power law fitted to it (dashed): α = {}. The paper: α = 0.041.",
            alpha.unwrap_or_else(|| "not identifiable".into())
        ),
        svg: log_log_svg("Figure 1: baselines", Axes { x: "compute (PF-days), C = 6·N_trainable·D", y: VAL_LOSS }, &series)?,
    });
    if has(Variant::Doped) {
        out.push(Figure {
            stem: "fig2_doped_frozen_2_3".into(),
            caption: "Figure 2 of the paper: doped models (solid) against the baselines (dotted), frozen parameters costing 2/3 of a trainable one (what the paper's implementation achieves). The paper: the baselines significantly outperform the doped models.".into(),
            svg: paper_comparison(p, (fit, baseline), Variant::Doped, CostModel::FrozenTwoThirds, &baselines, "Figure 2: doped, frozen parameters at 2/3 cost")?,
        });
        out.push(Figure {
            stem: "fig3_doped_frozen_free".into(),
            caption: "Figure 3 of the paper: the same with frozen parameters free (ideal offloading), C = 6·N_trainable·D. The paper: doped models reproduce the curves of baselines with as many trainable parameters.".into(),
            svg: paper_comparison(p, (fit, baseline), Variant::Doped, CostModel::Trainable, &baselines, "Figure 3: doped, frozen parameters free")?,
        });
    }
    if has(Variant::Fastfood) {
        out.push(Figure {
            stem: "fig6_fastfood".into(),
            caption: "Figure 6 of the paper: Adaptive FastFood models (solid) against the baselines (dotted), FastFood diagonals taken as free. The paper: the FastFood model performs like a baseline with a similar number of trainable parameters, not like the larger model it emulates.".into(),
            svg: paper_comparison(p, (fit, baseline), Variant::Fastfood, CostModel::FastfoodFree, &baselines, "Figure 6: Adaptive FastFood")?,
        });
    }
    let blockdiag: Vec<&RunData> = p.family(&Family::Variant(Variant::BlockdiagHadamard)).collect();
    if has(Variant::BlockdiagHadamard) {
        // The matched baseline: for each block-diagonal run, the baseline of nearest trainable N (in log).
        let mut matched: Vec<&RunData> = Vec::new();
        for b in &blockdiag {
            let n = b.run.params.trainable as f64;
            let nearest = baselines.iter().min_by(|x, y| {
                let d = |r: &RunData| (r.run.params.trainable as f64 / n).ln().abs();
                d(x).total_cmp(&d(y))
            });
            if let Some(r) = nearest.filter(|r| !matched.iter().any(|m| m.run.id == r.run.id)) {
                matched.push(r);
            }
        }
        out.push(Figure {
            stem: "fig7_blockdiag".into(),
            caption: "Figure 7 of the paper: block-diagonal + block-Hadamard models (solid) against the baselines of nearest trainable N (dotted), block-diagonal weights at dense cost, C = 6·N_trainable·D. The paper: the block-structured model closely resembles a model with as many trainable parameters.".into(),
            svg: paper_comparison(p, (fit, baseline), Variant::BlockdiagHadamard, CostModel::Trainable, &matched, "Figure 7: block-diagonal + block-Hadamard")?,
        });
    }
    Ok(out)
}

/// Every figure of the report, each family set against `baseline`.
pub fn figures(runs: &[RunData], fit: Option<&StudyFit>, baseline: &Family) -> Result<Vec<Figure>, String> {
    let p = Painter::new(runs);
    let mut families: Vec<&Family> = runs.iter().map(|r| &r.run.group).collect();
    families.sort_unstable();
    families.dedup();
    // The baseline first, so its legend entries lead.
    families.sort_by_key(|f| *f != baseline);

    let mut out = paper_figures(&p, fit, baseline)?;
    let series: Vec<Series> = families.iter().flat_map(|f| p.curves(f, Stroke::Solid, |pt| pt.tokens)).collect();
    out.push(Figure {
        stem: "loss_vs_tokens".into(),
        caption: "Validation loss against tokens seen, every run (colour: family; darker: larger).".into(),
        svg: log_log_svg("Loss vs tokens", Axes { x: "tokens", y: VAL_LOSS }, &series)?,
    });
    for model in CostModel::ALL {
        let mut series: Vec<Series> =
            families.iter().flat_map(|f| p.curves(f, Stroke::Solid, |pt| model.of(&pt.compute) / PF_DAY)).collect();
        for f in &families {
            series.extend(frontier_and_law(fit, f, model, PF_DAY));
        }
        out.push(Figure {
            stem: format!("loss_vs_compute_{}", model.name()),
            caption: format!(
                "Loss against compute {} ({}): runs (lines), each family's compute-efficient frontier (dots) and, where the data identifies one, its power law (dashed).",
                model.formula(),
                model.meaning()
            ),
            svg: log_log_svg(&format!("Loss vs compute, {}", model.formula()), Axes { x: "compute (PF-days)", y: VAL_LOSS }, &series)?,
        });
    }
    out.extend(equal_n_figure(runs, fit, &families)?);
    out.extend(residual_figure(fit, &families)?);
    if let Some(fit) = fit {
        for f in &families {
            // Only a family run as an isoFLOP grid (a budget with a parabola) gets these panels:
            // elsewhere approach 2 is absent and the figure list would hinge on what the data identifies.
            let optimal = fit.groups.get(*f).map(|g| &g.compute_optimal);
            if let Some(optimal) = optimal.filter(|o| o.isoflop_profiles.iter().any(|p| p.parabola.is_some())) {
                out.extend(isoflop_figure(f, optimal)?);
                out.extend(allocation_figure(f, optimal)?);
            }
        }
    }
    Ok(out)
}

/// A family's isoFLOP profiles: each budget's final losses against N
/// (shaded by budget), the parabola fitted in log N (dashed) and its
/// minimum (black); `None` without a parabola.
fn isoflop_figure(family: &Family, optimal: &ComputeOptimal) -> Result<Option<Figure>, String> {
    let shaped: Vec<(&IsoFlopProfile, Parabola)> =
        optimal.isoflop_profiles.iter().filter_map(|p| p.parabola.map(|parabola| (p, parabola))).collect();
    let mut series = Vec::new();
    for (rank, (profile, parabola)) in shaped.iter().enumerate() {
        let colour = shade(family_colour(family), rank, shaped.len());
        let points: Vec<(f64, f64)> = profile.points.iter().map(|(_, n, loss)| (*n, *loss)).collect();
        let (lo, hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
        series.push(Series {
            label: Some(format!("C = {:.2e} PF-days", profile.compute / PF_DAY)),
            colour,
            stroke: Stroke::Markers,
            points,
        });
        let curve = log_spaced(lo, hi).map(|n| (n, parabola.at(n)));
        // A parabola may dip below zero beyond its points; a log axis cannot show that.
        series.push(Series {
            label: None,
            colour,
            stroke: Stroke::Dashed,
            points: curve.filter(|p| p.1 > 0.0).collect(),
        });
    }
    let minima: Vec<(f64, f64)> =
        shaped.iter().filter_map(|(p, _)| p.minimum.fitted()).map(|m| (m.n, m.loss)).collect();
    if series.is_empty() {
        return Ok(None);
    }
    if !minima.is_empty() {
        series.push(Series {
            label: Some("minimum of each parabola".into()),
            colour: RGBColor(0, 0, 0),
            stroke: Stroke::Markers,
            points: minima,
        });
    }
    let caption = format!(
        "IsoFLOP profiles of the {}: final validation loss against trainable N for the runs of each compute budget (C = 6·N·D; runs within 5% of one compute), the parabola in log N fitted to each (dashed) and its minimum (black) — approach 2 of Hoffmann et al. A budget whose parabola opens downward or has its minimum outside its sizes has no minimum.",
        family_name(family)
    );
    let svg = log_log_svg(
        &format!("IsoFLOP profiles: {}", family_name(family)),
        Axes { x: "N trainable (non-embedding)", y: "final validation loss" },
        &series,
    )?;
    Ok(Some(Figure { stem: format!("isoflop_{family}"), caption, svg }))
}

/// The hue of each approach on the allocation figure.
const APPROACH_COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];

/// N_opt against C by the three approaches: approach 1's lowest-loss runs
/// and approach 2's parabola minima as points, each identified approach's
/// N_opt = G·C^a as a dashed line; `None` without any.
fn allocation_figure(family: &Family, optimal: &ComputeOptimal) -> Result<Option<Figure>, String> {
    let envelope: Vec<(f64, f64)> = optimal.envelope_minima.iter().map(|m| (m.compute / PF_DAY, m.n)).collect();
    let isoflop: Vec<(f64, f64)> =
        optimal.isoflop_profiles.iter().filter_map(|p| p.minimum.fitted().map(|m| (p.compute / PF_DAY, m.n))).collect();
    let computes = envelope.iter().chain(&isoflop).map(|p| p.0);
    let (lo, hi) = computes.fold((f64::INFINITY, 0.0f64), |(a, b), c| (a.min(c), b.max(c)));
    let mut series = Vec::new();
    for (points, (name, colour)) in [envelope, isoflop]
        .into_iter()
        .zip([("1: lowest-loss run", APPROACH_COLOURS[0]), ("2: isoFLOP minima", APPROACH_COLOURS[1])])
    {
        if !points.is_empty() {
            series.push(Series { label: Some(name.into()), colour, stroke: Stroke::Markers, points });
        }
    }
    for ((name, approach), colour) in optimal.approaches().into_iter().zip(APPROACH_COLOURS) {
        if let (Some(law), true) = (approach.fitted(), lo < hi) {
            let points = log_spaced(lo, hi).map(|c| (c, law.n_opt.at(c * PF_DAY))).collect();
            let label = format!("{name}: a = {:.3}", law.n_opt.exponent.value);
            series.push(Series { label: Some(label), colour, stroke: Stroke::Dashed, points });
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let caption = format!(
        "Compute-optimal model size N_opt against compute C = 6·N·D for the {}, by Hoffmann et al.'s three approaches: the run with the lowest loss at each compute (1), the minima of the isoFLOP parabolas (2), and the power laws N_opt = G·C^a fitted to each, with approach 3's from L(N, D) (dashed). {}",
        family_name(family),
        optimal.agreement_sentence()
    );
    let svg = log_log_svg(
        &format!("N_opt vs compute: {}", family_name(family)),
        Axes { x: "compute (PF-days), C = 6·N_trainable·D", y: "N_opt (trainable)" },
        &series,
    )?;
    Ok(Some(Figure { stem: format!("n_opt_vs_compute_{family}"), caption, svg }))
}

/// Final loss against trainable parameters, one marker series per family,
/// with each family's identified L(N): variants and baselines of equal N
/// stand in one column, so "does the variant beat the baseline at equal N"
/// reads off vertically.
fn equal_n_figure(runs: &[RunData], fit: Option<&StudyFit>, families: &[&Family]) -> Result<Option<Figure>, String> {
    if families.len() < 2 {
        return Ok(None);
    }
    let mut series = Vec::new();
    for f in families {
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| r.run.group == **f)
            .filter_map(|r| Some((r.run.params.trainable as f64, r.run.points.last()?.loss)))
            .collect();
        let ns = pts.iter().map(|p| p.0);
        let range = (ns.clone().fold(f64::INFINITY, f64::min), ns.fold(0.0, f64::max));
        series.push(Series {
            label: Some(family_name(f).to_string()),
            colour: family_colour(f),
            stroke: Stroke::Markers,
            points: pts,
        });
        if let Some(law) = fit.and_then(|fit| fit.groups.get(*f)).and_then(|g| g.final_n.fitted()) {
            series.push(law_series(
                format!("{}: L(N), α_N = {:.3}", family_name(f), law.alpha.value),
                f,
                law,
                range,
                1.0,
            ));
        }
    }
    let caption = "Final validation loss against trainable non-embedding parameters N, per family, with each family's L(N) where the data identifies it (dashed): at equal N, a variant below the baselines would be the better use of trainable parameters.";
    let svg = log_log_svg(
        "Variants vs baselines at equal trainable parameters",
        Axes { x: "N trainable (non-embedding)", y: "final validation loss" },
        &series,
    )?;
    Ok(Some(Figure { stem: "variants_at_equal_n".into(), caption: caption.into(), svg }))
}

/// Each family's envelope divided by its fitted power law on C = 6·N·D
/// (1 = on the law): systematic curvature shows as a bow.
fn residual_figure(fit: Option<&StudyFit>, families: &[&Family]) -> Result<Option<Figure>, String> {
    let Some(fit) = fit else { return Ok(None) };
    let mut series = Vec::new();
    for f in families {
        let Some(axis) = fit.groups.get(*f).map(|g| &g.axes[&CostModel::Trainable]) else { continue };
        if axis.residuals.len() == axis.envelope.len() && !axis.residuals.is_empty() {
            let points = axis.envelope.iter().zip(&axis.residuals).map(|((c, _), r)| (*c / PF_DAY, r.exp())).collect();
            series.push(Series {
                label: Some(family_name(f).to_string()),
                colour: family_colour(f),
                stroke: Stroke::Markers,
                points,
            });
        }
    }
    let Some((lo, hi)) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(None, |acc: Option<(f64, f64)>, c| Some(acc.map_or((c, c), |(a, b)| (a.min(c), b.max(c)))))
    else {
        return Ok(None);
    };
    series.push(Series {
        label: Some("the fitted law".into()),
        colour: plotters::style::RGBColor(90, 90, 90),
        stroke: Stroke::Dashed,
        points: vec![(lo, 1.0), (hi, 1.0)],
    });
    let caption =
        "Residuals: each family's frontier on C = 6·N·D divided by its fitted power law (log scale; 1 is on the law).";
    let svg = log_log_svg(
        "Residuals of the power law, C = 6·N·D",
        Axes { x: "compute (PF-days)", y: "frontier / fitted law" },
        &series,
    )?;
    Ok(Some(Figure { stem: "residuals_trainable".into(), caption: caption.into(), svg }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::study::fit_study;
    use crate::fit::{Frontier, Run, RunPoint, Settings};
    use crate::train::{Compute, ParamCounts};

    /// Runs of an isoFLOP grid exactly on Hoffmann et al.'s L(N, D): four
    /// budgets, five sizes each around the optimum.
    fn isoflop_runs() -> Vec<Run> {
        let mut runs = Vec::new();
        for budget in 0..4 {
            let c = 1e17 * 10f64.powi(budget);
            let centre = (1.344 * (c / 6.0).powf(0.28 / 0.62)).log10();
            for step in -2..=2 {
                let params =
                    ParamCounts { trainable: 10f64.powf(centre + 0.2 * step as f64) as i64, ..Default::default() };
                let n = params.trainable as f64;
                let points = (0..8)
                    .map(|i| c / (6.0 * n) * 10f64.powf(i as f64 / 7.0 - 1.0))
                    .map(|d| RunPoint {
                        tokens: d,
                        compute: Compute::at(&params, d),
                        loss: 1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28),
                    })
                    .collect();
                runs.push(Run {
                    id: format!("c{budget}n{step}"),
                    group: "baseline".into(),
                    params,
                    points,
                    warmup_tokens: 0.0,
                });
            }
        }
        runs
    }

    #[test]
    fn an_isoflop_study_draws_its_profiles_and_n_opt_by_three_approaches() {
        let settings = Settings {
            skip_fraction: 0.1,
            envelope_points: 20,
            bootstrap: 5,
            seed: 1,
            baseline: "baseline".into(),
            frontier: Frontier::Curves,
            equivalence: None,
            label: None,
        };
        let fit = fit_study(&isoflop_runs(), &settings).unwrap();
        let optimal = &fit.groups[&Family::from("baseline")].compute_optimal;
        let profiles = isoflop_figure(&Family::BASELINE, optimal).unwrap().expect("four parabolas");
        assert_eq!(profiles.stem, "isoflop_baseline");
        for text in ["C = 1.16e-3 PF-days", "C = 1.16e0 PF-days", "minimum of each parabola"] {
            assert!(profiles.svg.contains(text), "{text} missing from the isoFLOP figure");
        }
        let allocation = allocation_figure(&Family::BASELINE, optimal).unwrap().expect("three approaches");
        for text in ["1: lowest-loss run", "2: isoFLOP minima", "3: L(N, D): a = 0.45"] {
            assert!(allocation.svg.contains(text), "{text} missing from the N_opt figure");
        }
        // A study that is no isoFLOP grid (one run per compute) has no profile to draw.
        let single: Vec<Run> = isoflop_runs().into_iter().filter(|r| r.id.ends_with("n0")).collect();
        let fit = fit_study(&single, &settings).unwrap();
        assert!(isoflop_figure(&Family::BASELINE, &fit.groups[&Family::from("baseline")].compute_optimal)
            .unwrap()
            .is_none());
    }
}
