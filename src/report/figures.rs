//! The report's figures: the paper's Figures 1, 2, 3, 6 and 7 one to one
//! (compute in PF-days, as the paper plots it), then the extra panels —
//! loss against tokens, against compute under every cost model, final loss
//! against N per family, and the law's residuals.

use std::collections::BTreeMap;

use super::plot::{family_colour, log_log_svg, shade, Axes, Series, Stroke};
use super::tables::{family_name, interval};
use super::RunData;
use crate::fit::study::{PowerLawFit, StudyFit};
use crate::train::{CostModel, PF_DAY};
use crate::units::si;

/// One figure: file stem (and HTML id), caption, SVG.
pub struct Figure {
    /// `figures/<stem>.svg|png`, and the `<figure id>`.
    pub stem: String,
    /// What it shows.
    pub caption: String,
    /// The drawing.
    pub svg: String,
}

const VAL_LOSS: &str = "validation loss";

/// Each run's rank among its family's distinct sizes, and that count.
fn size_ranks(runs: &[RunData]) -> BTreeMap<String, (usize, usize)> {
    let mut sizes: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in runs {
        sizes.entry(&r.run.group).or_default().push(r.run.params.trainable);
    }
    for n in sizes.values_mut() {
        n.sort_unstable();
        n.dedup();
    }
    runs.iter()
        .map(|r| {
            let n = &sizes[r.run.group.as_str()];
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

    fn family(&self, family: &str) -> impl Iterator<Item = &'a RunData> + '_ {
        let family = family.to_string();
        self.runs.iter().filter(move |r| r.run.group == family)
    }

    /// The runs of `family` as curves of loss against `x`, shaded by size;
    /// the largest carries the family's legend entry.
    fn curves(&self, family: &str, stroke: Stroke, x: impl Fn(&crate::fit::study::RunPoint) -> f64) -> Vec<Series> {
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

/// `law` drawn from `lo` to `hi` (21 log-spaced points), scaled on x by `unit`.
fn law_series(label: String, family: &str, law: &PowerLawFit, (lo, hi): (f64, f64), unit: f64) -> Series {
    let points = (0..=20).map(|i| lo * (hi / lo).powf(i as f64 / 20.0)).map(|x| (x / unit, law.predict(x))).collect();
    Series { label: Some(label), colour: family_colour(family), stroke: Stroke::Dashed, points }
}

/// The baseline's envelope and law on `model`, in units of `unit`.
fn frontier_and_law(fit: Option<&StudyFit>, family: &str, model: CostModel, unit: f64) -> Vec<Series> {
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
        out.push(law_series(
            format!("{}: α = {:.3}", family_name(family), law.alpha.value),
            family,
            law,
            (first.0, last.0),
            unit,
        ));
    }
    out
}

/// The paper's figure of `family` (solid) against the baselines (dotted) on `model`.
fn paper_comparison(
    p: &Painter<'_>,
    fit: Option<&StudyFit>,
    family: &str,
    model: CostModel,
    baselines: &[&RunData],
    title: &str,
) -> Result<String, String> {
    let x = |pt: &crate::fit::study::RunPoint| model.of(&pt.compute) / PF_DAY;
    let mut series: Vec<Series> = Vec::new();
    let mut labelled = false;
    for r in baselines {
        let (rank, count) = p.ranks[&r.run.id];
        let label = (!labelled).then(|| {
            labelled = true;
            format!("{}, dotted", family_name("baseline"))
        });
        series.push(Series {
            label,
            colour: shade(family_colour("baseline"), rank, count),
            stroke: Stroke::Dotted,
            points: r.run.points.iter().map(|pt| (x(pt), pt.loss)).collect(),
        });
    }
    series.extend(p.curves(family, Stroke::Solid, x));
    series.extend(frontier_and_law(fit, "baseline", model, PF_DAY).into_iter().filter(|s| s.stroke == Stroke::Dashed));
    log_log_svg(title, Axes { x: &format!("compute (PF-days), {}", model.formula()), y: VAL_LOSS }, &series)
}

/// The paper's Figures 1, 2, 3, 6 and 7, for the families this study has.
fn paper_figures(p: &Painter<'_>, fit: Option<&StudyFit>) -> Result<Vec<Figure>, String> {
    let mut out = Vec::new();
    let baselines: Vec<&RunData> = p.family("baseline").collect();
    if baselines.is_empty() {
        return Ok(out);
    }
    let alpha = fit
        .and_then(|f| f.groups.get("baseline"))
        .and_then(|g| g.axes[&CostModel::Trainable].power_law.fitted())
        .map(|l| interval(&l.alpha));
    let x = |pt: &crate::fit::study::RunPoint| pt.compute.trainable / PF_DAY;
    let mut series = p.curves("baseline", Stroke::Solid, x);
    series.extend(frontier_and_law(fit, "baseline", CostModel::Trainable, PF_DAY));
    out.push(Figure {
        stem: "fig1_baselines".into(),
        caption: format!(
            "Figure 1 of the paper: the baselines' loss against compute C = 6·N·D (PF-days), their compute-efficient frontier (dots) and the power law fitted to it (dashed): α = {}. The paper: α = 0.041.",
            alpha.unwrap_or_else(|| "not identifiable".into())
        ),
        svg: log_log_svg("Figure 1: baselines", Axes { x: "compute (PF-days), C = 6·N_trainable·D", y: VAL_LOSS }, &series)?,
    });
    if p.family("doped").next().is_some() {
        out.push(Figure {
            stem: "fig2_doped_frozen_2_3".into(),
            caption: "Figure 2 of the paper: doped models (solid) against the baselines (dotted), frozen parameters costing 2/3 of a trainable one (what the paper's implementation achieves). The paper: the baselines significantly outperform the doped models.".into(),
            svg: paper_comparison(p, fit, "doped", CostModel::FrozenTwoThirds, &baselines, "Figure 2: doped, frozen parameters at 2/3 cost")?,
        });
        out.push(Figure {
            stem: "fig3_doped_frozen_free".into(),
            caption: "Figure 3 of the paper: the same with frozen parameters free (ideal offloading), C = 6·N_trainable·D. The paper: doped models reproduce the curves of baselines with as many trainable parameters.".into(),
            svg: paper_comparison(p, fit, "doped", CostModel::Trainable, &baselines, "Figure 3: doped, frozen parameters free")?,
        });
    }
    if p.family("fastfood").next().is_some() {
        out.push(Figure {
            stem: "fig6_fastfood".into(),
            caption: "Figure 6 of the paper: Adaptive FastFood models (solid) against the baselines (dotted), FastFood diagonals taken as free. The paper: the FastFood model performs like a baseline with a similar number of trainable parameters, not like the larger model it emulates.".into(),
            svg: paper_comparison(p, fit, "fastfood", CostModel::FastfoodFree, &baselines, "Figure 6: Adaptive FastFood")?,
        });
    }
    let blockdiag: Vec<&RunData> = p.family("blockdiag_hadamard").collect();
    if !blockdiag.is_empty() {
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
            svg: paper_comparison(p, fit, "blockdiag_hadamard", CostModel::Trainable, &matched, "Figure 7: block-diagonal + block-Hadamard")?,
        });
    }
    Ok(out)
}

/// Every figure of the report.
pub fn figures(runs: &[RunData], fits: &[StudyFit]) -> Result<Vec<Figure>, String> {
    let p = Painter::new(runs);
    let fit = fits.first();
    let mut families: Vec<&str> = runs.iter().map(|r| r.run.group.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    // The baseline first, so its legend entries lead.
    families.sort_by_key(|f| *f != "baseline");

    let mut out = paper_figures(&p, fit)?;
    let series: Vec<Series> = families.iter().flat_map(|f| p.curves(f, Stroke::Solid, |pt| pt.tokens)).collect();
    out.push(Figure {
        stem: "loss_vs_tokens".into(),
        caption: "Validation loss against tokens seen, every run (colour: family; darker: larger).".into(),
        svg: log_log_svg("Loss vs tokens", Axes { x: "tokens", y: VAL_LOSS }, &series)?,
    });
    for model in CostModel::ALL {
        let mut series: Vec<Series> =
            families.iter().flat_map(|f| p.curves(f, Stroke::Solid, |pt| model.of(&pt.compute))).collect();
        for f in &families {
            series.extend(frontier_and_law(fit, f, model, 1.0));
        }
        out.push(Figure {
            stem: format!("loss_vs_compute_{}", model.name()),
            caption: format!(
                "Loss against compute {} ({}): runs (lines), each family's compute-efficient frontier (dots) and, where the data identifies one, its power law (dashed).",
                model.formula(),
                model.meaning()
            ),
            svg: log_log_svg(&format!("Loss vs compute, {}", model.formula()), Axes { x: "compute (FLOP)", y: VAL_LOSS }, &series)?,
        });
    }
    out.extend(equal_n_figure(runs, fit, &families)?);
    out.extend(residual_figure(fit, &families)?);
    Ok(out)
}

/// Final loss against trainable parameters, one marker series per family,
/// with each family's identified L(N): variants and baselines of equal N
/// stand in one column, so "does the variant beat the baseline at equal N"
/// reads off vertically.
fn equal_n_figure(runs: &[RunData], fit: Option<&StudyFit>, families: &[&str]) -> Result<Option<Figure>, String> {
    if families.len() < 2 {
        return Ok(None);
    }
    let mut series = Vec::new();
    for f in families {
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| r.run.group == *f)
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
fn residual_figure(fit: Option<&StudyFit>, families: &[&str]) -> Result<Option<Figure>, String> {
    let Some(fit) = fit else { return Ok(None) };
    let mut series = Vec::new();
    for f in families {
        let Some(axis) = fit.groups.get(*f).map(|g| &g.axes[&CostModel::Trainable]) else { continue };
        if axis.residuals.len() == axis.envelope.len() && !axis.residuals.is_empty() {
            let points = axis.envelope.iter().zip(&axis.residuals).map(|((c, _), r)| (*c, r.exp())).collect();
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
        Axes { x: "compute (FLOP)", y: "frontier / fitted law" },
        &series,
    )?;
    Ok(Some(Figure { stem: "residuals_trainable".into(), caption: caption.into(), svg }))
}
