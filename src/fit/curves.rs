//! Reading losses off runs' curves: which evaluations count, a curve under
//! a cost model, interpolation in log-log and the compute grid both
//! frontiers of whole curves are read at.

use super::types::{Run, RunPoint, Settings};
use crate::train::CostModel;

/// Where a run's evaluations start to count: after its warmup and the
/// skipped fraction of its tokens.
fn first_counted_tokens(run: &Run, skip_fraction: f64) -> f64 {
    let last = run.points.iter().map(|p| p.tokens).fold(0.0, f64::max);
    (skip_fraction * last).max(run.warmup_tokens)
}

/// The run's evaluations that count for a law.
pub(super) fn counted(run: &Run, skip_fraction: f64) -> impl Iterator<Item = &RunPoint> {
    let from = first_counted_tokens(run, skip_fraction);
    run.points.iter().filter(move |p| p.tokens >= from && p.tokens > 0.0 && p.loss.is_finite() && p.loss > 0.0)
}

/// The run's (compute, loss) under `model` after warmup.
pub(super) fn curve(run: &Run, model: CostModel, skip_fraction: f64) -> Vec<(f64, f64)> {
    counted(run, skip_fraction).map(|p| (model.of(&p.compute), p.loss)).filter(|(x, _)| *x > 0.0).collect()
}

/// Loss of a curve at `x` by linear interpolation in log-log; `None` outside it.
pub(super) fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = curve.windows(2).position(|w| w[0].0 <= x && x <= w[1].0)?;
    let ((x0, y0), (x1, y1)) = (curve[i], curve[i + 1]);
    if x1 == x0 {
        return Some(y0.min(y1));
    }
    let t = (x.ln() - x0.ln()) / (x1.ln() - x0.ln());
    Some((y0.ln() + t * (y1.ln() - y0.ln())).exp())
}

/// The runs' curves under `model` that have two points or more: the ones
/// [`interpolate`] can read a loss off. Both frontiers of whole curves (the
/// envelope here and approach 1's lowest-loss runs) read them this way.
pub(super) fn curves<'a>(runs: &[&'a Run], model: CostModel, skip_fraction: f64) -> Vec<(&'a Run, Vec<(f64, f64)>)> {
    runs.iter().map(|r| (*r, curve(r, model, skip_fraction))).filter(|(_, c)| c.len() >= 2).collect()
}

/// The curve lowest at `x`, with its loss there; `None` where no curve reaches `x`.
pub(super) fn lowest_at<'a>(curves: &[(&'a Run, Vec<(f64, f64)>)], x: f64) -> Option<(&'a Run, f64)> {
    curves.iter().filter_map(|(r, c)| interpolate(c, x).map(|l| (*r, l))).min_by(|a, b| a.1.total_cmp(&b.1))
}

/// `settings.envelope_points` (at least two) values from `lo` to `hi`,
/// evenly spaced in log: the compute values both frontiers of whole curves
/// are read at. The ends are `lo` and `hi` exactly, so rounding in
/// exp(ln x) cannot drop them.
pub(super) fn log_grid(lo: f64, hi: f64, settings: &Settings) -> impl Iterator<Item = f64> {
    let n = settings.envelope_points.max(2);
    (0..n).map(move |i| match i {
        0 => lo,
        _ if i == n - 1 => hi,
        _ => (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp(),
    })
}

/// A run's last evaluation, if it counts.
pub(super) fn final_point(run: &Run) -> Option<&RunPoint> {
    run.points.last().filter(|p| p.loss.is_finite() && p.loss > 0.0)
}
