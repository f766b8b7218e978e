//! `report`: figures and tables of a study, as one self-contained HTML file
//! (inline SVG, readable offline) and a Markdown summary.
//!
//! Inputs: `train` nodes (their evaluations and parameter counts) and `fit`
//! nodes (envelopes and laws). Figures (plotters, SVG): validation loss
//! against tokens for every run; loss against compute under each cost model,
//! with each family's envelope and fitted power law; final loss against
//! trainable parameters per family (variants vs baseline at equal N); the
//! power law's residuals. Tables: runs, fits (with the paper's and Kaplan's
//! exponents for reference), and the paper's Tables 1–3 beside our counts.
//! Artifact: `report.html`, `report.md`, `figures/*.svg` and the same
//! figures as `figures/*.png` (rendered by resvg with the system's fonts).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::fit::read_train_artifact;
use super::{NodeCtx, NodeError, NodeKind};
use crate::fit::study::{axis_value, Estimate, Run, RunPoint, StudyFit, AXES};
use crate::spec::{Field, FieldType, Schema, Value};
use crate::train::{ModelShape, Variant, PAPER_MODELS};

/// The `report` node kind.
pub struct Report {
    schema: Schema,
}

impl Report {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Report { schema: Schema::new(vec![Field::default("title", FieldType::Str, Value::Str("Scaling study".into()), "the report's title")]) }
    }
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

/// A training run for the report: the fit's view of it plus its shape.
struct RunData {
    run: Run,
    model: serde_json::Value,
}

fn read_json(path: &Path) -> Result<serde_json::Value, NodeError> {
    let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))
}

/// A distinct colour per family, in a fixed order.
fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(255, 127, 14), RGBColor(23, 190, 207)];
    PALETTE[i % PALETTE.len()]
}

type Series = (String, usize, Vec<(f64, f64)>);

/// Axis titles of a plot.
struct Axes<'a> {
    x: &'a str,
    y: &'a str,
}

/// Tick values for a log axis over [lo, hi]: decades, else 1-2-5 steps,
/// else every integer multiple of a decade, else (a range within one
/// decade step, like losses 3.1–3.4) evenly spaced round numbers — plotters
/// itself labels nothing on a log axis that spans less than a decade.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = || (lo.log10().floor() as i32..=hi.log10().ceil() as i32).map(|k| 10f64.powi(k));
    for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let ticks: Vec<f64> = decades().flat_map(|d| mantissas.iter().map(move |m| m * d)).filter(|t| (lo..=hi).contains(t)).collect();
        if ticks.len() >= 3 {
            return ticks;
        }
    }
    let raw = (hi - lo) / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Rounded to the step's decimals, so 68 × 0.05 prints as 3.4.
    let scale = 10f64.powi((-step.log10().floor()).max(0.0) as i32);
    (first..=last).map(|i| (i as f64 * step * scale).round() / scale).collect()
}

/// A log-log plot of `lines` (label, colour index, points), `markers`
/// (same), and `dashed` laws, as SVG text.
fn log_log_svg(title: &str, axes: Axes<'_>, lines: &[Series], markers: &[Series], dashed: &[Series]) -> Result<String, String> {
    let all: Vec<(f64, f64)> = lines.iter().chain(markers).chain(dashed).flat_map(|s| s.2.iter().copied()).filter(|(x, y)| *x > 0.0 && *y > 0.0).collect();
    if all.is_empty() {
        return Err(format!("{title}: nothing to plot"));
    }
    let (x0, x1) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (x0 * 0.9..x1 * 1.1).log_scale().with_key_points(log_ticks(x0 * 0.9, x1 * 1.1)),
                (y0 * 0.97..y1 * 1.03).log_scale().with_key_points(log_ticks(y0 * 0.97, y1 * 1.03)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(8)
            .x_desc(axes.x)
            .y_desc(axes.y)
            .x_label_formatter(&|x| short_number(*x))
            .y_label_formatter(&|y| short_number(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        for (label, c, points) in lines {
            let style = colour(*c).mix(0.55);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        for (label, c, points) in markers {
            let style = colour(*c).filled();
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, style)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, style));
        }
        for (label, c, points) in dashed {
            let style = colour(*c).stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A tick label: plain below 10,000 (losses, ratios), else like 2e11 or 3.5e11.
fn short_number(v: f64) -> String {
    if v.abs() >= 1e4 {
        let text = format!("{v:.1e}");
        text.replace(".0e", "e")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Renders SVG figures to PNG with resvg. Text uses a system sans-serif
/// font (DejaVu, Liberation, …); a machine with no fonts gets figures
/// without labels rather than an error.
struct PngRenderer {
    options: resvg::usvg::Options<'static>,
}

impl PngRenderer {
    fn new() -> Self {
        let mut options = resvg::usvg::Options::default();
        let fonts = options.fontdb_mut();
        fonts.load_system_fonts();
        let families: Vec<String> = fonts.faces().flat_map(|f| f.families.iter().map(|(name, _)| name.clone())).collect();
        if let Some(sans) = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans", "Arial"].iter().find(|f| families.iter().any(|x| x == *f)) {
            fonts.set_sans_serif_family(*sans);
        }
        PngRenderer { options }
    }

    fn render(&self, svg: &str) -> Result<Vec<u8>, String> {
        let tree = resvg::usvg::Tree::from_str(svg, &self.options).map_err(|e| e.to_string())?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("empty figure")?;
        resvg::render(&tree, resvg::tiny_skia::Transform::identity(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| e.to_string())
    }
}

fn interval(e: Option<&Estimate>) -> String {
    match e {
        Some(Estimate { value, low: Some(lo), high: Some(hi) }) => format!("{value:.4} [{lo:.4}, {hi:.4}]"),
        Some(e) => format!("{:.4}", e.value),
        None => "–".into(),
    }
}

/// Figures as (file stem, caption, SVG).
fn figures(runs: &[RunData], fits: &[StudyFit], groups: &[String]) -> Result<Vec<(String, String, String)>, String> {
    let gi = |g: &str| groups.iter().position(|x| x == g).unwrap_or(0);
    let mut out = Vec::new();
    let per_run = |x: &dyn Fn(&RunPoint) -> f64| -> Vec<Series> {
        runs.iter().map(|r| (r.run.id.clone(), gi(&r.run.group), r.run.points.iter().map(|p| (x(p), p.loss)).collect())).collect()
    };
    let lines = per_run(&|p| p.tokens);
    out.push((
        "loss_vs_tokens".into(),
        "Validation loss against tokens seen, every run (colour: family).".into(),
        log_log_svg("Loss vs tokens", Axes { x: "tokens", y: VAL_LOSS }, &lines, &[], &[])?,
    ));
    for axis in AXES {
        let lines = per_run(&|p| axis_value(&p.compute, axis));
        let mut markers = Vec::new();
        let mut laws = Vec::new();
        for fit in fits {
            for (g, group) in &fit.groups {
                let Some(a) = group.axes.get(axis) else { continue };
                markers.push((format!("{g} envelope"), gi(g), a.envelope.clone()));
                if let (Some(law), Some(first), Some(last)) = (&a.power_law, a.envelope.first(), a.envelope.last()) {
                    let (alpha, x_c) = (law["alpha"].value, law["x_c"].value);
                    laws.push((format!("{g}: α = {alpha:.3}"), gi(g), curve_of(first.0, last.0, |c| (x_c / c).powf(alpha))));
                }
            }
        }
        if lines.iter().all(|l| l.2.is_empty()) {
            continue;
        }
        let caption = format!("Loss against compute C_{axis}: runs (lines), each family's envelope (dots) and fitted power law (dashed).");
        out.push((
            format!("loss_vs_compute_{axis}"),
            caption,
            log_log_svg(&format!("Loss vs compute ({axis})"), Axes { x: &format!("C_{axis} (FLOP)"), y: VAL_LOSS }, &lines, &markers, &laws)?,
        ));
    }
    out.extend(equal_n_figure(runs, fits, groups, &gi)?);
    out.extend(residual_figure(fits, &gi)?);
    Ok(out)
}

const VAL_LOSS: &str = "validation loss";

/// 21 log-spaced points of `f` from `lo` to `hi` (a fitted law, drawn).
fn curve_of(lo: f64, hi: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (0..=20).map(|i| lo * (hi / lo).powf(i as f64 / 20.0)).map(|x| (x, f(x))).collect()
}

/// Final loss against trainable parameters, one marker series per family,
/// with each family's fitted L(N): variants and baselines of equal N stand
/// in one column, so "does the variant beat the baseline at equal N" reads
/// off vertically.
fn equal_n_figure(runs: &[RunData], fits: &[StudyFit], groups: &[String], gi: &dyn Fn(&str) -> usize) -> Result<Option<(String, String, String)>, String> {
    if groups.len() < 2 {
        return Ok(None);
    }
    let markers: Vec<Series> = groups
        .iter()
        .map(|g| {
            let pts = runs.iter().filter(|r| &r.run.group == g).filter_map(|r| Some((r.run.params.trainable as f64, r.run.points.last()?.loss))).collect();
            (g.clone(), gi(g), pts)
        })
        .collect();
    let (lo, hi) = runs.iter().map(|r| r.run.params.trainable as f64).fold((f64::INFINITY, 0.0f64), |(a, b), n| (a.min(n), b.max(n)));
    let laws: Vec<Series> = fits
        .iter()
        .flat_map(|f| &f.groups)
        .filter_map(|(g, group)| {
            let law = group.final_n.as_ref()?;
            let (alpha, n_c) = (law["alpha"].value, law["n_c"].value);
            Some((format!("{g}: L(N), α_N = {alpha:.3}"), gi(g), curve_of(lo, hi, |n| (n_c / n).powf(alpha))))
        })
        .collect();
    let caption = "Final validation loss against trainable parameters N, per family, with each family's fitted L(N) (dashed): at equal N, a variant below the baseline would be the better use of trainable parameters.";
    let svg = log_log_svg("Variants vs baseline at equal trainable parameters", Axes { x: "N trainable (non-embedding)", y: "final validation loss" }, &[], &markers, &laws)?;
    Ok(Some(("variants_at_equal_n".into(), caption.into(), svg)))
}

/// Each family's envelope divided by its fitted power law on C_trainable
/// (1 = on the law): systematic curvature shows as a bow.
fn residual_figure(fits: &[StudyFit], gi: &dyn Fn(&str) -> usize) -> Result<Option<(String, String, String)>, String> {
    let mut markers = Vec::new();
    for (g, group) in fits.iter().flat_map(|f| &f.groups) {
        let Some(axis) = group.axes.get("trainable") else { continue };
        if axis.residuals.len() == axis.envelope.len() && !axis.residuals.is_empty() {
            markers.push((g.clone(), gi(g), axis.envelope.iter().zip(&axis.residuals).map(|((c, _), r)| (*c, r.exp())).collect()));
        }
    }
    let Some((lo, hi)) =
        markers.iter().flat_map(|s: &Series| s.2.iter().map(|p| p.0)).fold(None, |acc: Option<(f64, f64)>, c| Some(acc.map_or((c, c), |(a, b)| (a.min(c), b.max(c)))))
    else {
        return Ok(None);
    };
    let unity = vec![("the fitted law".to_string(), 5, vec![(lo, 1.0), (hi, 1.0)])];
    let caption = "Residuals: each family's envelope on C_trainable divided by its fitted power law (log scale; 1 is on the law).";
    let svg = log_log_svg("Residuals of the power law (C_trainable)", Axes { x: "C_trainable (FLOP)", y: "envelope / fitted law" }, &[], &markers, &unity)?;
    Ok(Some(("residuals_trainable".into(), caption.into(), svg)))
}

/// The paper's Tables 1–3 with our parameter counts (vocabulary 50,262) and,
/// where this study trained the same shape, our final loss. The paper
/// prints hyperparameters but no parameter counts or final losses (its
/// losses are only in figures), so those cells have nothing beside them.
fn paper_tables(runs: &[RunData]) -> String {
    let mut md = String::from(
        "| table | model (paper) | layers | d_model | heads | peak lr | decay tokens | N trainable (ours) | frozen | structured | this study's run | final val loss |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for m in PAPER_MODELS {
        let Some(shape) = ModelShape::preset(m.preset, 50_262) else { continue };
        let counts = shape.param_counts();
        let same_shape = |r: &&RunData| {
            let field = |k: &str| r.model[k].as_i64();
            field("n_layer") == Some(shape.n_layer)
                && field("d_model") == Some(shape.d_model)
                && field("n_head") == Some(shape.n_head)
                && r.model["variant"].as_str().and_then(Variant::from_name) == Some(shape.variant)
        };
        let run = runs.iter().find(same_shape);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0e} | {:.1}G | {} | {} | {} | {} | {} |",
            m.table,
            m.label,
            m.layers,
            shape.d_model,
            shape.n_head,
            m.lr,
            m.decay_tokens / 1e9,
            counts.trainable,
            counts.frozen,
            counts.structured,
            run.map_or("not in this study".into(), |r| r.run.id.clone()),
            run.and_then(|r| r.run.points.last()).map_or("–".into(), |p| format!("{:.4}", p.loss)),
        );
    }
    md
}

fn tables(runs: &[RunData], fits: &[StudyFit]) -> (String, String) {
    let mut md = String::from(
        "| run | family | layers | d_model | heads | N trainable | frozen | structured | tokens | final val loss |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for RunData { run: r, model } in runs {
        let last = r.points.last();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.group,
            model["n_layer"],
            model["d_model"],
            model["n_head"],
            r.params.trainable,
            r.params.frozen,
            r.params.structured,
            last.map_or("–".into(), |e| format!("{:.0}", e.tokens)),
            last.map_or("–".into(), |e| format!("{:.4}", e.loss))
        );
    }
    let mut fit_md = String::from("| family | α on C = 6·N·D [95% CI] | C_c | α_N (final loss vs N) | multiplier vs baseline (C_trainable) |\n|---|---:|---:|---:|---:|\n");
    for fit in fits {
        for (g, group) in &fit.groups {
            let law = group.axes.get("trainable").and_then(|a| a.power_law.as_ref());
            let mult = fit.multipliers.get(g).and_then(|m| m.get("trainable"));
            let _ = writeln!(
                fit_md,
                "| {g} | {} | {} | {} | {} |",
                interval(law.and_then(|l| l.get("alpha"))),
                law.map_or("–".into(), |l| format!("{:.3e}", l["x_c"].value)),
                interval(group.final_n.as_ref().and_then(|l| l.get("alpha"))),
                if g == &fit.settings.baseline { "1 (reference)".into() } else { interval(mult) }
            );
        }
    }
    fit_md.push_str("| *reference: the paper (French baselines, Figure 1)* | 0.041 | | | |\n| *reference: Kaplan et al. 2020 (α_C)* | 0.050 | | | |\n| *reference: Henighan et al. 2020* | 0.048 | | | |\n");
    (md, fit_md)
}

/// Markdown table → HTML table (the report's tables are simple).
fn md_table_to_html(md: &str) -> String {
    let mut html = String::from("<table>\n");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue; // the alignment row
        }
        let tag = if i == 0 { "th" } else { "td" };
        let cells: Vec<String> = line.trim_matches('|').split('|').map(|c| format!("<{tag}>{}</{tag}>", escape(c.trim()))).collect();
        let _ = writeln!(html, "<tr>{}</tr>", cells.join(""));
    }
    html.push_str("</table>\n");
    html
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const PAPER_NOTE: &str = "Layers, width, heads, learning rate and decay are the paper's (Chatelain et al. 2021, Tables 1–3; doped layers count trainable + frozen). \
Parameter counts are ours (non-embedding, vocabulary 50,262): the paper does not print them. A final loss appears where this study trained the same shape.";

impl NodeKind for Report {
    fn name(&self) -> &'static str {
        "report"
    }

    fn version(&self) -> u32 {
        2
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let title = ctx.params().get_path("title").and_then(Value::as_str).unwrap_or("Scaling study").to_string();
        let mut runs = Vec::new();
        let mut fits = Vec::new();
        for artifact in ctx.inputs().iter().flat_map(|i| &i.artifacts) {
            if artifact.dir.join("metrics/eval.jsonl").exists() {
                let (run, model) = read_train_artifact(&artifact.node.0, &artifact.dir)?;
                runs.push(RunData { run, model });
            }
            if artifact.dir.join("fit.json").exists() {
                let fit: StudyFit =
                    serde_json::from_value(read_json(&artifact.dir.join("fit.json"))?).map_err(|e| NodeError::Failed(format!("{}: {e}", artifact.dir.display())))?;
                fits.push(fit);
            }
        }
        if runs.is_empty() {
            return Err(NodeError::Failed("no runs to report: give `input:` train nodes (and fit nodes)".into()));
        }
        let mut groups: Vec<String> = runs.iter().map(|r| r.run.group.clone()).collect();
        groups.sort();
        groups.dedup();
        let figures = figures(&runs, &fits, &groups).map_err(NodeError::Failed)?;
        let fig_dir = ctx.out_dir().join("figures");
        std::fs::create_dir_all(&fig_dir).map_err(|e| NodeError::io(&fig_dir, e))?;
        let png = PngRenderer::new();
        for (stem, _, svg) in &figures {
            let path = fig_dir.join(format!("{stem}.svg"));
            std::fs::write(&path, svg).map_err(|e| NodeError::io(&path, e))?;
            let path = fig_dir.join(format!("{stem}.png"));
            let bytes = png.render(svg).map_err(|e| NodeError::Failed(format!("{stem}.png: {e}")))?;
            std::fs::write(&path, bytes).map_err(|e| NodeError::io(&path, e))?;
        }
        let (runs_md, fit_md) = tables(&runs, &fits);
        let paper_md = paper_tables(&runs);
        let mut md = format!("# {title}\n\n## Runs\n\n{runs_md}\n## Fits\n\n{fit_md}\n## The paper's Tables 1–3\n\n{PAPER_NOTE}\n\n{paper_md}\n## Figures\n\n");
        for (stem, caption, _) in &figures {
            let _ = writeln!(md, "![{caption}](figures/{stem}.svg)\n");
        }
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}figure{{margin:1.5em 0}}figcaption{{color:#555}}</style></head><body>\n<h1>{t}</h1>\n<h2>Runs</h2>\n{runs}<h2>Fits</h2>\n{fits}<h2>The paper's Tables 1–3</h2>\n<p>{note}</p>\n{paper}<h2>Figures</h2>\n",
            t = escape(&title),
            runs = md_table_to_html(&runs_md),
            fits = md_table_to_html(&fit_md),
            note = escape(PAPER_NOTE),
            paper = md_table_to_html(&paper_md)
        );
        for (stem, caption, svg) in &figures {
            let _ = writeln!(html, "<figure id=\"{stem}\">{svg}<figcaption>{}</figcaption></figure>", escape(caption));
        }
        html.push_str("</body></html>\n");
        for (name, text) in [("report.md", &md), ("report.html", &html)] {
            let path = ctx.out_dir().join(name);
            std::fs::write(&path, text).map_err(|e| NodeError::io(&path, e))?;
        }
        ctx.add_summary(format!("{} run(s), {} fit(s), {} figure(s): report.html, report.md, figures/*.svg and *.png", runs.len(), fits.len(), figures.len()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_get_ticks_at_every_range() {
        assert_eq!(log_ticks(5e9, 3e12), vec![1e10, 1e11, 1e12]);
        assert_eq!(log_ticks(1.5e5, 9e5), vec![2e5, 3e5, 4e5, 5e5, 6e5, 7e5, 8e5, 9e5]);
        // Within one 1-2-5 step (losses 3.1–3.4): evenly spaced round numbers.
        let ticks = log_ticks(3.1, 3.4);
        assert!(ticks.len() >= 3 && ticks.iter().all(|t| (3.1..=3.4).contains(t)), "{ticks:?}");
        assert_eq!(short_number(2e11), "2e11");
        assert_eq!(short_number(3.5e11), "3.5e11");
        assert_eq!(short_number(8.75), "8.75");
        assert_eq!(short_number(1.0), "1");
    }
}
