//! What a comparison of families knows, said with its uncertainty: the
//! seed-to-seed noise floor, paired differences at equal N and D, a
//! multiplier per size with a test for a trend, intervals that do not
//! pretend (a bootstrap over a handful of runs has few distinct outcomes),
//! and a verdict against an equivalence margin instead of "the interval
//! contains 1".
//!
//! Everything here reads each run's final loss: the point its schedule
//! delivers (Hoffmann et al. 2022, §3.1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::types::{Estimate, Family, Frontier, Multiplier, Run, Settings};

/// Below this many distinct resamples a percentile bootstrap's interval is
/// a few order statistics of a lumpy distribution (3 runs give 10): the
/// least-squares interval is used instead.
pub const MIN_DISTINCT_RESAMPLES: f64 = 100.0;

/// Runs of two families pair when their trainable N differ by at most this
/// fraction (and their tokens by at most 1%).
pub const PAIR_N_TOLERANCE: f64 = 0.15;

/// Which interval a number is judged by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalSource {
    /// The percentile bootstrap over runs.
    #[default]
    Bootstrap,
    /// Least squares (Student's t on the fit's residuals).
    LeastSquares,
}

impl IntervalSource {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            IntervalSource::Bootstrap => "bootstrap",
            IntervalSource::LeastSquares => "least squares",
        }
    }
}

/// The seed-to-seed spread of final losses at equal settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseFloor {
    /// Pooled standard deviation of one run's final loss (nats).
    pub sd: f64,
    /// Its degrees of freedom (runs minus cells).
    pub df: usize,
    /// Settings run more than once.
    pub cells: usize,
}

/// A family's and the baseline's final losses at one (N, D).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedCell {
    /// The family's trainable N.
    pub trainable: i64,
    /// The baseline's trainable N at this cell.
    pub baseline_trainable: i64,
    /// Tokens.
    pub tokens: f64,
    /// The family's mean final loss, over its runs here.
    pub loss: f64,
    /// The baseline's.
    pub baseline_loss: f64,
    /// Runs on each side.
    pub runs: (usize, usize),
    /// Family minus baseline (nats): below 0 the family is better.
    pub difference: Estimate,
}

/// One size's multiplier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeMultiplier {
    /// Trainable N.
    pub trainable: i64,
    /// Geometric mean of its runs' multipliers.
    pub multiplier: f64,
    /// Its runs with a multiplier.
    pub runs: usize,
}

/// How a multiplier changes with size: ln m = a + b·log10 N fitted to the
/// runs' multipliers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The factor the multiplier changes by per 10× N (e^b), with its 95% t interval.
    pub per_decade: Estimate,
    /// Two-sided p-value of b = 0.
    pub p_value: f64,
}

/// Where a family stands against the margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval lies within the margin.
    Equivalent,
    /// Not equivalent, and the whole interval lies above 1.
    Better,
    /// Not equivalent, and the whole interval lies below 1.
    Worse,
    /// The interval contains 1 and crosses a bound of the margin: the data
    /// can tell neither a difference nor its absence.
    Inconclusive,
}

impl Verdict {
    /// The verdict of an interval [low, high] against the margin [lo, hi].
    pub fn of(low: f64, high: f64, (lo, hi): (f64, f64)) -> Self {
        if lo <= low && high <= hi {
            Verdict::Equivalent
        } else if low > 1.0 {
            Verdict::Better
        } else if high < 1.0 {
            Verdict::Worse
        } else {
            Verdict::Inconclusive
        }
    }

    /// Its word.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Equivalent => "equivalent",
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A family's exponent α of L = (C_c/C)^α, by both intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlphaIntervals {
    /// Distinct resamples of the family's runs a bootstrap can draw.
    pub distinct_resamples: f64,
    /// From least squares on the frontier's points (final points only:
    /// interpolated curve points are not independent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_squares: Option<Estimate>,
    /// That fit, ln L against ln C: the report's confidence band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<Line>,
    /// Which interval the report uses.
    pub uses: IntervalSource,
}

/// A non-baseline family against the baseline, on C = 6·N·D (N trainable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FamilyComparison {
    /// Paired differences at equal N and D.
    pub paired: Vec<PairedCell>,
    /// Their mean, with a t interval over cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_mean: Option<Estimate>,
    /// The multiplier per size.
    pub per_size: Vec<SizeMultiplier>,
    /// Its trend with size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// The pooled multiplier with the interval judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<Estimate>,
    /// Where that interval comes from.
    pub interval_from: IntervalSource,
    /// Distinct resamples of the two families' runs together.
    pub distinct_resamples: f64,
    /// Against the margin (with one set and an interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Everything in this module, for one fit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Pooled over every family's repeated settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseFloor>,
    /// Each family's α by both intervals.
    pub alpha: BTreeMap<Family, AlphaIntervals>,
    /// Each non-baseline family against the baseline.
    pub families: BTreeMap<Family, FamilyComparison>,
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom.
fn t95(df: usize) -> Option<f64> {
    let t = StudentsT::new(0.0, 1.0, df as f64).ok()?;
    Some(t.inverse_cdf(0.975))
}

/// Multisets of size k drawn from k runs: C(2k − 1, k).
pub fn distinct_resamples(k: usize) -> f64 {
    (1..=k).fold(1.0, |acc, i| acc * (k + i - 1) as f64 / i as f64)
}

/// A straight line fitted by ordinary least squares, with what its 95%
/// confidence band needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// a of y = a + b·x.
    pub intercept: f64,
    /// b.
    pub slope: f64,
    /// b's standard error.
    pub slope_se: f64,
    /// The residuals' standard deviation.
    pub residual_sd: f64,
    /// The mean of x.
    pub mean_x: f64,
    /// Σ(x − x̄)².
    pub sxx: f64,
    /// Points fitted.
    pub n: usize,
}

impl Line {
    /// Residual degrees of freedom.
    pub fn df(&self) -> usize {
        self.n - 2
    }

    /// The 95% confidence band of the line's mean at `x`, (low, high).
    pub fn band(&self, x: f64) -> Option<(f64, f64)> {
        let y = self.intercept + self.slope * x;
        let half =
            t95(self.df())? * self.residual_sd * (1.0 / self.n as f64 + (x - self.mean_x).powi(2) / self.sxx).sqrt();
        Some((y - half, y + half))
    }
}

/// Ordinary least squares of y on x; `None` with fewer than 3 points or
/// one x.
fn ols(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len();
    if n < 3 {
        return None;
    }
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n as f64, b + y / n as f64));
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = points.iter().map(|(x, y)| (y - intercept - slope * x).powi(2)).sum();
    let residual_sd = (sse / (n - 2) as f64).sqrt();
    Some(Line { intercept, slope, slope_se: residual_sd / sxx.sqrt(), residual_sd, mean_x: mx, sxx, n })
}

/// The power law's α by least squares on log-log frontier points, and the
/// line (ln L against ln C) for its band.
pub fn least_squares_alpha(frontier: &[(f64, f64)]) -> Option<(Estimate, Line)> {
    let logs: Vec<(f64, f64)> = frontier.iter().map(|(c, l)| (c.ln(), l.ln())).collect();
    let line = ols(&logs)?;
    let half = t95(line.df())? * line.slope_se;
    let alpha = -line.slope;
    Some((Estimate { value: alpha, low: Some(alpha - half), high: Some(alpha + half) }, line))
}

/// A run's final point: (trainable N, tokens, loss).
fn final_point(run: &Run) -> Option<(i64, f64, f64)> {
    let last = run.points.last()?;
    Some((run.params.trainable, last.tokens, last.loss))
}

/// Final losses grouped by (family, N, tokens): the settings.
fn cells(runs: &[Run]) -> BTreeMap<(Family, i64, u64), Vec<f64>> {
    let mut out: BTreeMap<(Family, i64, u64), Vec<f64>> = BTreeMap::new();
    for run in runs {
        if let Some((n, tokens, loss)) = final_point(run) {
            out.entry((run.group.clone(), n, tokens.round() as u64)).or_default().push(loss);
        }
    }
    out
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The mean and, with two values or more, the sample standard deviation.
pub(super) fn mean_and_sd(values: &[f64]) -> (f64, Option<f64>) {
    let m = mean(values);
    let n = values.len();
    let sd = (n > 1).then(|| (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    (m, sd)
}

/// The mean of `values` with its 95% t interval (none below two values).
fn mean_with_interval(values: &[f64]) -> Option<Estimate> {
    if values.is_empty() {
        return None;
    }
    let (m, sd) = mean_and_sd(values);
    let Some(sd) = sd else { return Some(Estimate { value: m, low: None, high: None }) };
    let half = t95(values.len() - 1)? * sd / (values.len() as f64).sqrt();
    Some(Estimate { value: m, low: Some(m - half), high: Some(m + half) })
}

fn noise_floor(cells: &BTreeMap<(Family, i64, u64), Vec<f64>>) -> Option<NoiseFloor> {
    let repeated: Vec<&Vec<f64>> = cells.values().filter(|v| v.len() > 1).collect();
    let df: usize = repeated.iter().map(|v| v.len() - 1).sum();
    if df == 0 {
        return None;
    }
    let ss: f64 = repeated
        .iter()
        .map(|v| {
            let m = mean(v);
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>()
        })
        .sum();
    Some(NoiseFloor { sd: (ss / df as f64).sqrt(), df, cells: repeated.len() })
}

/// The family's cells paired with the baseline's nearest in N at the same tokens.
fn paired(
    cells: &BTreeMap<(Family, i64, u64), Vec<f64>>,
    family: &Family,
    baseline: &Family,
    noise: Option<&NoiseFloor>,
) -> Vec<PairedCell> {
    let mut out = Vec::new();
    for ((_, n, tokens), losses) in cells.iter().filter(|((f, _, _), _)| f == family) {
        let partner = cells
            .iter()
            .filter(|((g, bn, bt), _)| {
                g == baseline
                    && ((*bt as f64) / (*tokens as f64) - 1.0).abs() <= 0.01
                    && ((*bn as f64) / (*n as f64) - 1.0).abs() <= PAIR_N_TOLERANCE
            })
            .min_by(|a, b| ((a.0 .1 - n).abs()).cmp(&(b.0 .1 - n).abs()));
        let Some(((_, bn, _), base)) = partner else { continue };
        let (loss, baseline_loss) = (mean(losses), mean(base));
        let value = loss - baseline_loss;
        let half = noise
            .and_then(|nf| Some(t95(nf.df)? * nf.sd * (1.0 / losses.len() as f64 + 1.0 / base.len() as f64).sqrt()));
        out.push(PairedCell {
            trainable: *n,
            baseline_trainable: *bn,
            tokens: *tokens as f64,
            loss,
            baseline_loss,
            runs: (losses.len(), base.len()),
            difference: Estimate { value, low: half.map(|h| value - h), high: half.map(|h| value + h) },
        });
    }
    out
}

/// The mean of the cells' differences with a t interval over cells.
fn paired_mean(cells: &[PairedCell]) -> Option<Estimate> {
    let d: Vec<f64> = cells.iter().map(|c| c.difference.value).collect();
    mean_with_interval(&d)
}

/// The runs' multipliers with their trainable N.
fn run_multipliers(m: &Multiplier, runs: &[Run]) -> Vec<(i64, f64)> {
    m.runs
        .iter()
        .filter_map(|r| Some((runs.iter().find(|x| x.id == r.run)?.params.trainable, r.multiplier?)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn per_size(points: &[(i64, f64)]) -> Vec<SizeMultiplier> {
    let mut by_n: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (n, m) in points {
        by_n.entry(*n).or_default().push(m.ln());
    }
    by_n.into_iter()
        .map(|(trainable, logs)| SizeMultiplier { trainable, multiplier: mean(&logs).exp(), runs: logs.len() })
        .collect()
}

fn trend(points: &[(i64, f64)]) -> Option<Trend> {
    let xy: Vec<(f64, f64)> = points.iter().map(|(n, m)| ((*n as f64).log10(), m.ln())).collect();
    let line = ols(&xy)?;
    let (slope, se) = (line.slope, line.slope_se);
    let half = t95(line.df())? * se;
    let t = StudentsT::new(0.0, 1.0, line.df() as f64).ok()?;
    let p_value = if se > 0.0 { 2.0 * (1.0 - t.cdf((slope / se).abs())) } else { 0.0 };
    Some(Trend {
        per_decade: Estimate { value: slope.exp(), low: Some((slope - half).exp()), high: Some((slope + half).exp()) },
        p_value,
    })
}

/// The pooled multiplier by least squares: a t interval on the mean of the
/// runs' ln multipliers (the baseline's law taken as exact).
fn least_squares_multiplier(points: &[(i64, f64)]) -> Option<Estimate> {
    let logs: Vec<f64> = points.iter().map(|(_, m)| m.ln()).collect();
    let Estimate { value, low: Some(low), high: Some(high) } = mean_with_interval(&logs)? else { return None };
    Some(Estimate { value: value.exp(), low: Some(low.exp()), high: Some(high.exp()) })
}

/// The statistics of a fit: `frontiers` are each family's points on C =
/// 6·N·D (N trainable), `multipliers` each non-baseline family's against
/// the baseline on that axis (where identified).
pub fn statistics(
    runs: &[Run],
    frontiers: &BTreeMap<Family, Vec<(f64, f64)>>,
    multipliers: &BTreeMap<Family, Option<&Multiplier>>,
    settings: &Settings,
) -> Statistics {
    let cells = cells(runs);
    let noise = noise_floor(&cells);
    let count = |f: &Family| runs.iter().filter(|r| r.group == *f).count();
    let alpha = frontiers
        .iter()
        .map(|(f, frontier)| {
            let distinct = distinct_resamples(count(f));
            let fitted = (settings.frontier == Frontier::FinalPoints).then(|| least_squares_alpha(frontier)).flatten();
            let (least_squares, line) = (fitted.map(|f| f.0), fitted.map(|f| f.1));
            let uses = if distinct < MIN_DISTINCT_RESAMPLES && least_squares.is_some() {
                IntervalSource::LeastSquares
            } else {
                IntervalSource::Bootstrap
            };
            (f.clone(), AlphaIntervals { distinct_resamples: distinct, least_squares, line, uses })
        })
        .collect();
    let families = multipliers
        .iter()
        .map(|(f, m)| {
            let paired = paired(&cells, f, &settings.baseline, noise.as_ref());
            let points = m.map(|m| run_multipliers(m, runs)).unwrap_or_default();
            let distinct = distinct_resamples(count(f)) * distinct_resamples(count(&settings.baseline));
            let least_squares = least_squares_multiplier(&points);
            let (multiplier, interval_from) = match (m, least_squares) {
                (Some(_), Some(ls)) if distinct < MIN_DISTINCT_RESAMPLES => (Some(ls), IntervalSource::LeastSquares),
                (Some(m), _) => (Some(m.estimate), IntervalSource::Bootstrap),
                (None, _) => (None, IntervalSource::Bootstrap),
            };
            let verdict = match (settings.equivalence, multiplier) {
                (Some(margin), Some(Estimate { low: Some(lo), high: Some(hi), .. })) => {
                    Some(Verdict::of(lo, hi, margin))
                }
                _ => None,
            };
            let comparison = FamilyComparison {
                paired_mean: paired_mean(&paired),
                paired,
                per_size: per_size(&points),
                trend: trend(&points),
                multiplier,
                interval_from,
                distinct_resamples: distinct,
                verdict,
            };
            (f.clone(), comparison)
        })
        .collect();
    Statistics { noise, alpha, families }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrap_over_three_runs_has_ten_outcomes() {
        assert_eq!(distinct_resamples(1), 1.0);
        assert_eq!(distinct_resamples(3), 10.0);
        assert_eq!(distinct_resamples(8), 6435.0);
    }

    #[test]
    fn least_squares_recovers_a_power_law_and_widens_with_noise() {
        let law: Vec<(f64, f64)> = (0..6)
            .map(|i| {
                let c = 1e12 * 3f64.powi(i);
                (c, (1e16 / c).powf(0.06))
            })
            .collect();
        let (fit, line) = least_squares_alpha(&law).unwrap();
        assert!((fit.value - 0.06).abs() < 1e-9, "{fit:?}");
        let (lo, hi) = line.band(law[2].0.ln()).unwrap();
        assert!((hi - lo).abs() < 1e-9, "an exact law has no band");
        let noisy: Vec<(f64, f64)> =
            law.iter().enumerate().map(|(i, (c, l))| (*c, l * if i % 2 == 0 { 1.01 } else { 0.99 })).collect();
        let (fit, line) = least_squares_alpha(&noisy).unwrap();
        let (mid, end) = (line.band(line.mean_x).unwrap(), line.band(noisy[5].0.ln()).unwrap());
        assert!(end.1 - end.0 > mid.1 - mid.0, "the band widens away from the data's centre");
        let (lo, hi) = (fit.low.unwrap(), fit.high.unwrap());
        assert!(lo < 0.06 && 0.06 < hi && hi - lo > 0.005, "{fit:?}");
    }

    #[test]
    fn verdicts_read_the_whole_interval_against_the_margin() {
        let margin = (0.8, 1.25);
        assert_eq!(Verdict::of(0.85, 1.2, margin), Verdict::Equivalent);
        assert_eq!(Verdict::of(0.5, 0.7, margin), Verdict::Worse);
        assert_eq!(Verdict::of(1.3, 1.6, margin), Verdict::Better);
        // Contains 1, yet says nothing: not "agreement".
        assert_eq!(Verdict::of(0.6, 1.4, margin), Verdict::Inconclusive);
        assert_eq!(Verdict::of(0.95, 1.4, margin), Verdict::Inconclusive);
        // A difference shown, though the interval reaches into the margin.
        assert_eq!(Verdict::of(0.7, 0.9, margin), Verdict::Worse);
        assert_eq!(Verdict::of(1.02, 5.0, margin), Verdict::Better);
        // Within the margin wins: a small, real difference is no practical one.
        assert_eq!(Verdict::of(1.05, 1.2, margin), Verdict::Equivalent);
    }

    #[test]
    fn a_trend_with_size_is_found_and_its_absence_is_not() {
        // The multiplier halves per decade of N.
        let falling: Vec<(i64, f64)> = [1e4, 3e4, 1e5, 3e5]
            .iter()
            .flat_map(|&n: &f64| {
                let m = 0.5f64.powf((n / 1e4).log10());
                [(n as i64, m * 1.02), (n as i64, m / 1.02)]
            })
            .collect();
        let t = trend(&falling).unwrap();
        assert!((t.per_decade.value - 0.5).abs() < 0.01 && t.p_value < 1e-3, "{t:?}");
        let flat: Vec<(i64, f64)> =
            [1e4, 3e4, 1e5, 3e5].iter().flat_map(|&n: &f64| [(n as i64, 1.02), (n as i64, 0.98)]).collect();
        let t = trend(&flat).unwrap();
        assert!(t.p_value > 0.5, "{t:?}");
        let sizes = per_size(&falling);
        assert_eq!(sizes.len(), 4);
        assert!((sizes[1].multiplier - 0.5f64.powf(3f64.log10())).abs() < 1e-9);
    }
}
