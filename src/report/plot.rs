//! Log-log figures as SVG (plotters) and PNG (resvg): the drawing side of
//! the report, knowing nothing of runs or fits.
//!
//! Styles follow the paper's figures: one hue per family, runs shaded from
//! light (small) to dark (large), envelopes as markers, fitted laws as
//! dashed lines, and a comparison family's baselines dotted. Only series
//! with a label enter the legend, so a figure of twelve runs has a legend
//! of families, not of run ids.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::fit::Family;
use crate::train::Variant;

/// The hue of a family, fixed by name so every figure agrees; each variant
/// has its own (the match is exhaustive), other groups share spare ones.
pub fn family_colour(family: &Family) -> RGBColor {
    match family.variant() {
        Some(Variant::Baseline) => RGBColor(31, 119, 180),
        Some(Variant::Doped) => RGBColor(214, 39, 40),
        Some(Variant::Fastfood) => RGBColor(44, 160, 44),
        Some(Variant::BlockdiagHadamard) => RGBColor(148, 103, 189),
        None => {
            const SPARE: [RGBColor; 3] = [RGBColor(255, 127, 14), RGBColor(23, 190, 207), RGBColor(140, 86, 75)];
            SPARE[family.name().bytes().map(usize::from).sum::<usize>() % SPARE.len()]
        }
    }
}

/// `colour` shaded for the `rank`-th of `count` sizes: the smallest light,
/// the largest at full strength.
pub fn shade(colour: RGBColor, rank: usize, count: usize) -> RGBColor {
    let t = if count <= 1 { 1.0 } else { 0.35 + 0.65 * rank as f64 / (count - 1) as f64 };
    let mix = |c: u8| (255.0 - t * (255.0 - f64::from(c))).round() as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stroke {
    /// A run's curve.
    Solid,
    /// A run drawn for comparison (the paper's dotted baselines).
    Dotted,
    /// A fitted law.
    Dashed,
    /// Points: an envelope, or final losses.
    Markers,
    /// Hollow rings around points: a chosen value, or one flagged.
    Rings,
    /// A shaded region, its points the outline (upper edge left to right,
    /// then lower edge back): a law's confidence band.
    Band,
}

/// One thing drawn on a figure.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text; `None` keeps it out of the legend.
    pub label: Option<String>,
    /// Colour.
    pub colour: RGBColor,
    /// Style.
    pub stroke: Stroke,
    /// (x, y), both positive.
    pub points: Vec<(f64, f64)>,
}

/// Axis titles of a plot.
pub struct Axes<'a> {
    /// Horizontal.
    pub x: &'a str,
    /// Vertical.
    pub y: &'a str,
}

/// Tick values for a log axis over [lo, hi]: decades, else 1-2-5 steps,
/// else every integer multiple of a decade, else (a range within one
/// decade step, like losses 3.1–3.4) evenly spaced round numbers — plotters
/// itself labels nothing on a log axis that spans less than a decade.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = || (lo.log10().floor() as i32..=hi.log10().ceil() as i32).map(|k| 10f64.powi(k));
    for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let ticks: Vec<f64> =
            decades().flat_map(|d| mantissas.iter().map(move |m| m * d)).filter(|t| (lo..=hi).contains(t)).collect();
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

/// A tick label: plain from 0.01 to 10,000 (losses, ratios), else like
/// 2e11, 3.5e11 or 2e-8 (compute in PF-days on a CPU).
fn short_number(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        let text = format!("{v:.1e}");
        text.replace(".0e", "e")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A log-log plot of `series`, as SVG text.
pub fn log_log_svg(title: &str, axes: Axes<'_>, series: &[Series]) -> Result<String, String> {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| *x > 0.0 && *y > 0.0).collect();
    if all.is_empty() {
        return Err(format!("{title}: nothing to plot"));
    }
    let (x0, x1) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    // The axes' ranges: the data with a margin.
    let ((x0, x1), (y0, y1)) = ((x0 * 0.9, x1 * 1.1), (y0 * 0.97, y1 * 1.03));
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
                (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
                (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
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
        // Runs first, then markers and laws on top.
        for stroke in [Stroke::Band, Stroke::Dotted, Stroke::Solid, Stroke::Markers, Stroke::Dashed, Stroke::Rings] {
            for s in series.iter().filter(|s| s.stroke == stroke) {
                let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| *x > 0.0 && *y > 0.0).collect();
                let (colour, line) = (s.colour, s.colour.stroke_width(2));
                let drawn = match stroke {
                    Stroke::Solid => chart.draw_series(LineSeries::new(points, line)),
                    Stroke::Dotted => chart.draw_series(DashedLineSeries::new(points, 2, 4, line)),
                    Stroke::Dashed => chart.draw_series(DashedLineSeries::new(points, 8, 4, line)),
                    Stroke::Markers => {
                        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    }
                    Stroke::Rings => {
                        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 7, colour.stroke_width(2))))
                    }
                    Stroke::Band => chart.draw_series(std::iter::once(Polygon::new(points, colour.mix(0.18).filled()))),
                }
                .map_err(|e| e.to_string())?;
                let Some(label) = &s.label else { continue };
                match stroke {
                    Stroke::Solid => {
                        drawn.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line))
                    }
                    Stroke::Dotted => drawn
                        .label(label)
                        .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 18, y)], 2, 4, line)),
                    Stroke::Dashed => drawn
                        .label(label)
                        .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 18, y)], 8, 4, line)),
                    Stroke::Markers => {
                        drawn.label(label).legend(move |(x, y)| Circle::new((x + 9, y), 3, colour.filled()))
                    }
                    Stroke::Rings => {
                        drawn.label(label).legend(move |(x, y)| Circle::new((x + 9, y), 6, colour.stroke_width(2)))
                    }
                    Stroke::Band => drawn
                        .label(label)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.mix(0.18).filled())),
                };
            }
        }
        if series.iter().any(|s| s.label.is_some()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(emptiest_corner(&all, (x0, x1), (y0, y1)))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The corner of the plot, on its log axes, that the fewest points fall in:
/// where the legend hides no data. Ties go to the lower left, empty on the
/// falling loss curves most figures are.
fn emptiest_corner(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let unit = |v: f64, (lo, hi): (f64, f64)| (v.ln() - lo.ln()) / (hi.ln() - lo.ln());
    let in_corner = |(u, v): (f64, f64), right: bool, upper: bool| {
        (if right { u > 0.55 } else { u < 0.45 }) && (if upper { v > 0.65 } else { v < 0.35 })
    };
    let corners = [
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
    ];
    let crowding =
        |right, upper| points.iter().filter(|&&(px, py)| in_corner((unit(px, x), unit(py, y)), right, upper)).count();
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| crowding(right, upper))
        .map_or(SeriesLabelPosition::LowerLeft, |(corner, _, _)| corner)
}

/// DejaVu Sans (Bitstream Vera licence, `fonts/LICENSE`), built in for
/// machines without a sans-serif font: GPU servers and containers often
/// have none, and resvg then draws figures without a single label.
const FALLBACK_FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// Renders SVG figures to PNG with resvg. Text uses a system sans-serif
/// font (DejaVu, Liberation, …), else the built-in DejaVu Sans.
pub struct PngRenderer {
    options: resvg::usvg::Options<'static>,
}

impl PngRenderer {
    /// Loads the system's fonts once.
    pub fn new() -> Self {
        Self::with_system_fonts(true)
    }

    fn with_system_fonts(load: bool) -> Self {
        let mut options = resvg::usvg::Options::default();
        let fonts = options.fontdb_mut();
        if load {
            fonts.load_system_fonts();
        }
        let families: Vec<String> =
            fonts.faces().flat_map(|f| f.families.iter().map(|(name, _)| name.clone())).collect();
        let system_sans = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans", "Arial"]
            .into_iter()
            .find(|f| families.iter().any(|x| x == f));
        let sans = system_sans.unwrap_or_else(|| {
            fonts.load_font_data(FALLBACK_FONT.to_vec());
            "DejaVu Sans"
        });
        fonts.set_sans_serif_family(sans);
        PngRenderer { options }
    }

    /// The PNG bytes of `svg`.
    pub fn render(&self, svg: &str) -> Result<Vec<u8>, String> {
        let tree = resvg::usvg::Tree::from_str(svg, &self.options).map_err(|e| e.to_string())?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("empty figure")?;
        resvg::render(&tree, resvg::tiny_skia::Transform::identity(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_fonts_still_gets_labelled_figures() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60">
            <rect width="200" height="60" fill="white"/>
            <text x="10" y="45" font-family="sans-serif" font-size="40">Loss</text></svg>"#;
        let png = PngRenderer::with_system_fonts(false).render(svg).unwrap();
        let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        let inked = pixmap.pixels().iter().filter(|p| p.red() < 128).count();
        assert!(inked > 200, "the label was not drawn: {inked} dark pixels");
    }

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
        assert_eq!(short_number(2e-8), "2e-8");
    }

    #[test]
    fn the_legend_goes_where_no_points_are() {
        let range = (1.0, 1000.0);
        let falling: Vec<(f64, f64)> = [1.0, 10.0, 100.0, 1000.0].iter().map(|&x| (x, 1000.0 / x)).collect();
        let rising: Vec<(f64, f64)> = [1.0, 10.0, 100.0, 1000.0].iter().map(|&x| (x, x)).collect();
        assert!(matches!(emptiest_corner(&falling, range, range), SeriesLabelPosition::LowerLeft));
        assert!(matches!(emptiest_corner(&rising, range, range), SeriesLabelPosition::LowerRight));
    }

    #[test]
    fn sizes_shade_from_light_to_full() {
        let blue = family_colour(&Family::BASELINE);
        assert_eq!(shade(blue, 4, 5), blue);
        let light = shade(blue, 0, 5);
        assert!(light.0 > blue.0 && light.1 > blue.1 && light.2 > blue.2, "{light:?}");
        assert_eq!(shade(blue, 0, 1), blue);
    }
}
