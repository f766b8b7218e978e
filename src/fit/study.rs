//! A family of training runs → envelopes, fitted laws with bootstrap
//! intervals, leave-largest-out prediction errors and effective-compute
//! multipliers, as one serialisable [`StudyFit`].

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::laws::{PowerLaw, SumOfPowers};
use crate::train::{Compute, ParamCounts};

/// One evaluation of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    /// Tokens seen.
    pub tokens: f64,
    /// Compute under each cost model.
    pub compute: Compute,
    /// Validation loss.
    pub loss: f64,
}

/// One training run as the fit sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Node id (or the CSV's `run`).
    pub id: String,
    /// Family: the variant, or the CSV's `group`.
    pub group: String,
    /// Parameter counts.
    pub params: ParamCounts,
    /// Evaluations, by tokens.
    pub points: Vec<RunPoint>,
}

/// The cost models a law can be fitted against.
pub const AXES: [&str; 4] = ["trainable", "frozen_2_3", "all", "structured_free"];

/// The compute of `c` under the cost model named `axis` (one of [`AXES`]).
pub fn axis_value(c: &Compute, axis: &str) -> f64 {
    match axis {
        "frozen_2_3" => c.frozen_2_3,
        "all" => c.all,
        "structured_free" => c.structured_free,
        _ => c.trainable,
    }
}

/// How to fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Fraction of each run's tokens whose evaluations are left out (warmup).
    pub skip_fraction: f64,
    /// Log-spaced compute values of the envelope.
    pub envelope_points: usize,
    /// Bootstrap replicates (0: no intervals).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// The family others are compared with.
    pub baseline: String,
}

/// A fitted number with its 95% bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Fit on all runs.
    pub value: f64,
    /// 2.5th percentile over bootstrap replicates (NaN-free; absent without bootstrap).
    pub low: Option<f64>,
    /// 97.5th percentile.
    pub high: Option<f64>,
}

impl Estimate {
    fn new(value: f64, replicates: &[f64]) -> Self {
        let mut r: Vec<f64> = replicates.iter().copied().filter(|v| v.is_finite()).collect();
        if r.len() < 2 {
            return Estimate { value, low: None, high: None };
        }
        r.sort_by(f64::total_cmp);
        let at = |q: f64| r[((q * (r.len() - 1) as f64).round() as usize).min(r.len() - 1)];
        Estimate { value, low: Some(at(0.025)), high: Some(at(0.975)) }
    }
}

/// Fits on one cost-model axis for one family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisFit {
    /// (compute, loss) of the compute-efficient frontier.
    pub envelope: Vec<(f64, f64)>,
    /// L = (C_c / C)^α on the envelope: α and C_c.
    pub power_law: Option<BTreeMap<String, Estimate>>,
    /// L = E + A·C^−α on the envelope: E, A, α.
    pub offset_law: Option<BTreeMap<String, Estimate>>,
    /// log L − log L̂ of the power law at each envelope point.
    pub residuals: Vec<f64>,
}

/// A family's fits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupFit {
    /// Runs in the family.
    pub runs: Vec<String>,
    /// Per cost model.
    pub axes: BTreeMap<String, AxisFit>,
    /// L(N) = (N_c / N)^α_N on each run's final loss.
    pub final_n: Option<BTreeMap<String, Estimate>>,
    /// L(N, D) = E + A/N^α + B/D^β on every evaluation.
    pub chinchilla: Option<BTreeMap<String, Estimate>>,
    /// The largest model's final loss predicted by L(N) fitted without it.
    pub leave_largest_out: Option<LeaveOut>,
}

/// A held-out prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaveOut {
    /// The run left out.
    pub run: String,
    /// Its final loss.
    pub actual: f64,
    /// What the law fitted on the others predicts.
    pub predicted: f64,
    /// (predicted − actual) / actual.
    pub relative_error: f64,
}

/// Everything a `fit` node computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyFit {
    /// How.
    pub settings: Settings,
    /// Per family.
    pub groups: BTreeMap<String, GroupFit>,
    /// For each non-baseline family and cost model: the compute the
    /// baseline's power law needs to reach the family's envelope losses,
    /// divided by the compute the family used (geometric mean over its
    /// envelope points within the baseline's loss range). Above 1: the
    /// variant is more compute-efficient than the baseline on that axis.
    pub multipliers: BTreeMap<String, BTreeMap<String, Estimate>>,
}

/// The run's (x, loss) on `axis` after the skipped fraction.
fn curve(run: &Run, axis: &str, skip_fraction: f64) -> Vec<(f64, f64)> {
    let last = run.points.iter().map(|p| p.tokens).fold(0.0, f64::max);
    run.points
        .iter()
        .filter(|p| p.tokens >= skip_fraction * last && p.loss.is_finite() && p.loss > 0.0)
        .map(|p| (axis_value(&p.compute, axis), p.loss))
        .filter(|(x, _)| *x > 0.0)
        .collect()
}

/// Loss of a curve at `x` by linear interpolation in log-log; `None` outside it.
fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = curve.windows(2).position(|w| w[0].0 <= x && x <= w[1].0)?;
    let ((x0, y0), (x1, y1)) = (curve[i], curve[i + 1]);
    if x1 == x0 {
        return Some(y0.min(y1));
    }
    let t = (x.ln() - x0.ln()) / (x1.ln() - x0.ln());
    Some((y0.ln() + t * (y1.ln() - y0.ln())).exp())
}

/// The compute-efficient frontier: at each of `points` log-spaced x, the
/// lowest loss any run reaches there — kept only where it improves on every
/// smaller x (Pareto-optimal). Where a small run has ended and the next one
/// is still early in training, the lowest loss *at* x is worse than what
/// less compute already bought; those points are not on the frontier.
pub fn envelope(runs: &[&Run], axis: &str, settings: &Settings) -> Vec<(f64, f64)> {
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| curve(r, axis, settings.skip_fraction)).filter(|c| c.len() >= 2).collect();
    let lo = curves.iter().map(|c| c[0].0).fold(f64::INFINITY, f64::min);
    let hi = curves.iter().map(|c| c[c.len() - 1].0).fold(0.0, f64::max);
    if curves.is_empty() || lo >= hi {
        return Vec::new();
    }
    let n = settings.envelope_points.max(2);
    let mut best_so_far = f64::INFINITY;
    (0..n)
        .filter_map(|i| {
            // The ends exactly, so rounding in exp(ln x) cannot drop them.
            let x = match i {
                0 => lo,
                _ if i == n - 1 => hi,
                _ => (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp(),
            };
            let best = curves.iter().filter_map(|c| interpolate(c, x)).fold(f64::INFINITY, f64::min);
            let improves = best < best_so_far;
            best_so_far = best_so_far.min(best);
            (best.is_finite() && improves).then_some((x, best))
        })
        .collect()
}

fn named(pairs: &[(&str, f64, Vec<f64>)]) -> BTreeMap<String, Estimate> {
    pairs.iter().map(|(name, value, reps)| (name.to_string(), Estimate::new(*value, reps))).collect()
}

/// Point estimates of one family (what each bootstrap replicate recomputes).
struct Point {
    power: BTreeMap<String, Option<PowerLaw>>,
    offset: BTreeMap<String, Option<SumOfPowers>>,
    envelopes: BTreeMap<String, Vec<(f64, f64)>>,
    final_n: Option<PowerLaw>,
    chinchilla: Option<SumOfPowers>,
}

fn final_points(runs: &[&Run]) -> Vec<(f64, f64)> {
    runs.iter().filter_map(|r| r.points.last().map(|p| (r.params.trainable as f64, p.loss))).collect()
}

fn chinchilla_points(runs: &[&Run], skip_fraction: f64) -> Vec<(Vec<f64>, f64)> {
    runs.iter()
        .flat_map(|r| {
            let last = r.points.iter().map(|p| p.tokens).fold(0.0, f64::max);
            r.points
                .iter()
                .filter(move |p| p.tokens >= skip_fraction * last && p.loss.is_finite() && p.tokens > 0.0)
                .map(move |p| (vec![r.params.trainable as f64, p.tokens], p.loss))
        })
        .collect()
}

/// Distinct model sizes among `runs`.
fn sizes(runs: &[&Run]) -> usize {
    let mut n: Vec<i64> = runs.iter().map(|r| r.params.trainable).collect();
    n.sort_unstable();
    n.dedup();
    n.len()
}

fn estimate_point(runs: &[&Run], settings: &Settings, full: Option<&Point>) -> Point {
    let mut power = BTreeMap::new();
    let mut offset = BTreeMap::new();
    let mut envelopes = BTreeMap::new();
    for axis in AXES {
        let env = envelope(runs, axis, settings);
        power.insert(axis.to_string(), PowerLaw::fit(&env));
        let pts: Vec<(Vec<f64>, f64)> = env.iter().map(|(x, l)| (vec![*x], *l)).collect();
        // Three parameters need more than three points; replicates refit from the full fit.
        let off = if pts.len() >= 5 {
            match full.and_then(|f| f.offset.get(axis).cloned().flatten()) {
                Some(f) => f.refit(&pts),
                None if full.is_none() => SumOfPowers::fit(&pts, 1),
                None => None,
            }
        } else {
            None
        };
        offset.insert(axis.to_string(), off);
        envelopes.insert(axis.to_string(), env);
    }
    let final_n = if sizes(runs) >= 2 { PowerLaw::fit(&final_points(runs)) } else { None };
    let chin_pts = chinchilla_points(runs, settings.skip_fraction);
    let chinchilla = if sizes(runs) >= 3 && chin_pts.len() >= 10 {
        match full.map(|f| f.chinchilla.clone()) {
            Some(Some(f)) => f.refit(&chin_pts),
            Some(None) => None,
            None => SumOfPowers::fit(&chin_pts, 2),
        }
    } else {
        None
    };
    Point { power, offset, envelopes, final_n, chinchilla }
}

/// The multiplier of `variant` against `baseline`'s power law on `axis`.
fn multiplier(baseline: &Point, variant: &Point, axis: &str) -> Option<f64> {
    let law = baseline.power.get(axis)?.as_ref()?;
    let base_env = baseline.envelopes.get(axis)?;
    let (lmin, lmax) = base_env.iter().fold((f64::INFINITY, 0.0f64), |(a, b), (_, l)| (a.min(*l), b.max(*l)));
    let logs: Vec<f64> = variant.envelopes.get(axis)?.iter().filter(|(_, l)| *l >= lmin && *l <= lmax).map(|(c, l)| (law.x_c * l.powf(-1.0 / law.alpha) / c).ln()).collect();
    let m = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
    (!logs.is_empty() && m.is_finite()).then_some(m)
}

/// Resamples each family's runs with replacement.
fn resample<'a>(groups: &BTreeMap<String, Vec<&'a Run>>, rng: &mut ChaCha8Rng) -> BTreeMap<String, Vec<&'a Run>> {
    groups.iter().map(|(g, runs)| (g.clone(), (0..runs.len()).map(|_| runs[(rng.next_u64() % runs.len() as u64) as usize]).collect())).collect()
}

/// Why a set of runs cannot be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    /// Nothing to fit.
    #[error("no runs to fit")]
    NoRuns,
    /// A law needs at least two runs.
    #[error("one run ({0}) cannot give a scaling law: fit at least two runs of different sizes")]
    OneRun(String),
    /// A value no law can take: NaN, infinite, zero or negative.
    #[error("run `{run}`: {what} = {value} at {tokens} tokens (losses, tokens, compute and N must be finite and positive)")]
    BadValue {
        /// The run.
        run: String,
        /// Which quantity.
        what: &'static str,
        /// Its value.
        value: f64,
        /// Where in the run.
        tokens: f64,
    },
    /// Every loss is the same: there is no trend to fit.
    #[error("every loss is {0}: a constant loss has no scaling law")]
    ConstantLoss(f64),
}

/// Rejects input no law can be fitted to, naming the run and value.
fn validate(runs: &[Run]) -> Result<(), FitError> {
    match runs {
        [] => return Err(FitError::NoRuns),
        [one] => return Err(FitError::OneRun(one.id.clone())),
        _ => {}
    }
    for run in runs {
        let bad = |what, value: f64, tokens| FitError::BadValue { run: run.id.clone(), what, value, tokens };
        if run.params.trainable <= 0 {
            return Err(bad("N (trainable parameters)", run.params.trainable as f64, 0.0));
        }
        for p in &run.points {
            let checks = [("tokens", p.tokens), ("loss", p.loss), ("compute", p.compute.trainable), ("compute (all)", p.compute.all)];
            if let Some((what, value)) = checks.into_iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
                return Err(bad(what, value, p.tokens));
            }
        }
    }
    let mut losses = runs.iter().flat_map(|r| r.points.iter().map(|p| p.loss));
    if let Some(first) = losses.next() {
        if losses.all(|l| l == first) {
            return Err(FitError::ConstantLoss(first));
        }
    }
    Ok(())
}

/// Fits every family of `runs`; an error for input no law can describe.
pub fn fit_study(runs: &[Run], settings: &Settings) -> Result<StudyFit, FitError> {
    validate(runs)?;
    let mut groups: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups.entry(run.group.clone()).or_default().push(run);
    }
    let full: BTreeMap<String, Point> = groups.iter().map(|(g, r)| (g.clone(), estimate_point(r, settings, None))).collect();
    let replicates: Vec<BTreeMap<String, Point>> = (0..settings.bootstrap)
        .into_par_iter()
        .map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_mul(1_000_003).wrapping_add(b as u64));
            resample(&groups, &mut rng).iter().map(|(g, r)| (g.clone(), estimate_point(r, settings, full.get(g)))).collect()
        })
        .collect();

    let mut out_groups = BTreeMap::new();
    for (g, point) in &full {
        let reps: Vec<&Point> = replicates.iter().filter_map(|r| r.get(g)).collect();
        let mut axes = BTreeMap::new();
        for axis in AXES {
            let env = point.envelopes[axis].clone();
            let power = point.power[axis].map(|law| {
                let alphas: Vec<f64> = reps.iter().filter_map(|r| r.power[axis].map(|l| l.alpha)).collect();
                let scales: Vec<f64> = reps.iter().filter_map(|r| r.power[axis].map(|l| l.x_c)).collect();
                named(&[("alpha", law.alpha, alphas), ("x_c", law.x_c, scales)])
            });
            let offset = point.offset[axis].as_ref().map(|law| {
                let pick = |f: &dyn Fn(&SumOfPowers) -> f64| reps.iter().filter_map(|r| r.offset[axis].as_ref().map(f)).collect::<Vec<f64>>();
                named(&[("E", law.e, pick(&|l| l.e)), ("A", law.terms[0].0, pick(&|l| l.terms[0].0)), ("alpha", law.terms[0].1, pick(&|l| l.terms[0].1))])
            });
            let residuals = point.power[axis].map(|law| env.iter().map(|(c, l)| l.ln() - law.predict(*c).ln()).collect()).unwrap_or_default();
            axes.insert(axis.to_string(), AxisFit { envelope: env, power_law: power, offset_law: offset, residuals });
        }
        let final_n = point.final_n.map(|law| {
            let alphas: Vec<f64> = reps.iter().filter_map(|r| r.final_n.map(|l| l.alpha)).collect();
            let scales: Vec<f64> = reps.iter().filter_map(|r| r.final_n.map(|l| l.x_c)).collect();
            named(&[("alpha", law.alpha, alphas), ("n_c", law.x_c, scales)])
        });
        let chinchilla = point.chinchilla.as_ref().map(|law| {
            let pick = |f: &dyn Fn(&SumOfPowers) -> f64| reps.iter().filter_map(|r| r.chinchilla.as_ref().map(f)).collect::<Vec<f64>>();
            named(&[
                ("E", law.e, pick(&|l| l.e)),
                ("A", law.terms[0].0, pick(&|l| l.terms[0].0)),
                ("alpha", law.terms[0].1, pick(&|l| l.terms[0].1)),
                ("B", law.terms[1].0, pick(&|l| l.terms[1].0)),
                ("beta", law.terms[1].1, pick(&|l| l.terms[1].1)),
            ])
        });
        out_groups
            .insert(g.clone(), GroupFit { runs: groups[g].iter().map(|r| r.id.clone()).collect(), axes, final_n, chinchilla, leave_largest_out: leave_largest_out(&groups[g]) });
    }

    let mut multipliers = BTreeMap::new();
    if let Some(base) = full.get(&settings.baseline) {
        for (g, point) in full.iter().filter(|(g, _)| **g != settings.baseline) {
            let mut per_axis = BTreeMap::new();
            for axis in AXES {
                if let Some(m) = multiplier(base, point, axis) {
                    let reps: Vec<f64> = replicates.iter().filter_map(|r| multiplier(r.get(&settings.baseline)?, r.get(g)?, axis)).collect();
                    per_axis.insert(axis.to_string(), Estimate::new(m, &reps));
                }
            }
            multipliers.insert(g.clone(), per_axis);
        }
    }
    Ok(StudyFit { settings: settings.clone(), groups: out_groups, multipliers })
}

/// L(N) fitted without the largest model, asked for its final loss.
fn leave_largest_out(runs: &[&Run]) -> Option<LeaveOut> {
    if sizes(runs) < 3 {
        return None;
    }
    let largest = runs.iter().max_by_key(|r| r.params.trainable)?;
    let rest: Vec<&Run> = runs.iter().copied().filter(|r| r.params.trainable != largest.params.trainable).collect();
    let law = PowerLaw::fit(&final_points(&rest))?;
    let actual = largest.points.last()?.loss;
    let predicted = law.predict(largest.params.trainable as f64);
    Some(LeaveOut { run: largest.id.clone(), actual, predicted, relative_error: (predicted - actual) / actual })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of sizes `n_values` on the frontier L = (C_c / (efficiency·C))^α,
    /// each over its own compute range (larger models reach further), plus,
    /// for each, a worse twin (10% higher loss) the envelope must ignore.
    fn synthetic(group: &str, n_values: &[i64], alpha: f64, c_c: f64, efficiency: f64) -> Vec<Run> {
        let mut runs = Vec::new();
        for &n in n_values {
            for (suffix, penalty) in [("", 1.0), ("-worse", 1.1)] {
                let counts = ParamCounts { embedding: 0, trainable: n, frozen: 0, structured: 0 };
                let points = (1..=30)
                    .map(|i| {
                        let tokens = 1e6 * 1.3f64.powi(i);
                        let compute = Compute::at(&counts, tokens);
                        RunPoint { tokens, compute, loss: penalty * (c_c / (compute.trainable * efficiency)).powf(alpha) }
                    })
                    .collect();
                runs.push(Run { id: format!("{group}-{n}{suffix}"), group: group.to_string(), params: counts, points });
            }
        }
        runs
    }

    fn settings(bootstrap: usize) -> Settings {
        Settings { skip_fraction: 0.1, envelope_points: 30, bootstrap, seed: 0, baseline: "baseline".into() }
    }

    #[test]
    fn the_envelope_follows_the_frontier_and_the_law_is_recovered() {
        let runs = synthetic("baseline", &[1_000_000, 4_000_000, 16_000_000, 64_000_000], 0.05, 1e8, 1.0);
        let fit = fit_study(&runs, &settings(50)).unwrap();
        assert_eq!(fit.groups["baseline"].runs.len(), 8);
        let axis = &fit.groups["baseline"].axes["trainable"];
        assert!(axis.envelope.len() >= 20);
        for w in axis.envelope.windows(2) {
            assert!(w[1].1 <= w[0].1 + 1e-12, "the envelope never rises with compute");
        }
        let alpha = axis.power_law.as_ref().unwrap()["alpha"];
        assert!((alpha.value - 0.05).abs() < 1e-4, "{alpha:?}");
        let (low, high) = (alpha.low.unwrap(), alpha.high.unwrap());
        assert!(low <= alpha.value && alpha.value <= high, "{alpha:?}");
        assert!(axis.residuals.iter().all(|r| r.abs() < 1e-3), "the envelope is the law: {:?}", axis.residuals);
    }

    #[test]
    fn a_variant_needing_half_the_compute_has_multiplier_two() {
        let mut runs = synthetic("baseline", &[1_000_000, 4_000_000, 16_000_000, 64_000_000], 0.05, 1e8, 1.0);
        runs.extend(synthetic("doped", &[2_000_000, 8_000_000, 32_000_000], 0.05, 1e8, 2.0));
        let fit = fit_study(&runs, &settings(30)).unwrap();
        let m = fit.multipliers["doped"]["trainable"];
        assert!((m.value - 2.0).abs() < 0.15, "{m:?}");
        let (a, b) = (fit_study(&runs, &settings(30)).unwrap(), fit);
        assert_eq!(a, b, "seeded bootstrap: same intervals every time");
    }
}

#[cfg(test)]
mod leave_out_tests {
    use super::*;

    #[test]
    fn the_largest_model_is_predicted_from_the_others() {
        // Final losses exactly on L(N) = (1e13 / N)^0.076 (Kaplan's α_N).
        let runs: Vec<Run> = [1e6, 4e6, 16e6, 64e6]
            .iter()
            .map(|&n: &f64| {
                let counts = ParamCounts { embedding: 0, trainable: n as i64, frozen: 0, structured: 0 };
                let loss = (1e13 / n).powf(0.076);
                let points = vec![RunPoint { tokens: 1e9, compute: Compute::at(&counts, 1e9), loss }];
                Run { id: format!("n{n}"), group: "baseline".into(), params: counts, points }
            })
            .collect();
        let refs: Vec<&Run> = runs.iter().collect();
        let out = leave_largest_out(&refs).unwrap();
        assert_eq!(out.run, "n64000000");
        assert!(out.relative_error.abs() < 1e-9, "{out:?}");
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    /// Multiplicative log-normal noise of relative size `sigma`, seeded.
    fn noise(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
        let (u1, u2) = ((rng.next_u64() as f64 + 1.0) / (u64::MAX as f64 + 2.0), rng.next_u64() as f64 / u64::MAX as f64);
        (sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).exp()
    }

    fn run(id: String, n: i64, points: impl Iterator<Item = (f64, f64)>) -> Run {
        let params = ParamCounts { embedding: 0, trainable: n, frozen: 0, structured: 0 };
        let points = points.map(|(tokens, loss)| RunPoint { tokens, compute: Compute::at(&params, tokens), loss }).collect();
        Run { id, group: "baseline".into(), params, points }
    }

    fn settings(bootstrap: usize) -> Settings {
        Settings { skip_fraction: 0.1, envelope_points: 40, bootstrap, seed: 7, baseline: "baseline".into() }
    }

    /// The truth lies within the 95% interval, and the point estimate within
    /// 2% of it — on the scale the fit works in: E and the exponents as
    /// they are, the prefactors as a = log A (A itself moves by a factor
    /// e^{Δα·log C}, ~20% for Δα = 0.005 at C ~ 1e16).
    fn check(name: &str, estimates: &BTreeMap<String, Estimate>, truth: f64) {
        let e = estimates[name];
        let scale = |v: f64| if name == "A" || name == "B" { v.ln() } else { v };
        assert!((scale(e.value) - scale(truth)).abs() <= 0.02 * scale(truth).abs(), "{name}: {e:?} vs truth {truth}");
        let (lo, hi) = (e.low.unwrap(), e.high.unwrap());
        assert!(lo <= truth && truth <= hi, "{name}: truth {truth} outside [{lo}, {hi}]");
    }

    #[test]
    fn noisy_runs_give_back_e_a_alpha_within_their_intervals() {
        // Runs tile compute (each doubles N and spans a factor 2 of tokens);
        // every evaluation carries 0.2% noise.
        let (e, a, alpha) = (1.7, 1e5, 0.3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let runs: Vec<Run> = (0..8)
            .map(|k| {
                let n = 1_000_000i64 << k;
                let tokens: Vec<f64> = (0..20).map(|i| 1e8 * 2f64.powf(i as f64 / 19.0)).collect();
                let pts = tokens.into_iter().map(|d| (d, (e + a * (6.0 * n as f64 * d).powf(-alpha)) * noise(&mut rng, 0.002))).collect::<Vec<_>>();
                run(format!("n{k}"), n, pts.into_iter())
            })
            .collect();
        let fit = fit_study(&runs, &settings(200)).unwrap();
        let law = fit.groups["baseline"].axes["trainable"].offset_law.clone().unwrap();
        check("E", &law, e);
        check("A", &law, a);
        check("alpha", &law, alpha);
    }

    #[test]
    fn noisy_runs_give_back_the_chinchilla_law_within_its_intervals() {
        let (e, a, alpha, b, beta) = (1.69, 406.4, 0.34, 410.7, 0.28);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let runs: Vec<Run> = [1e7, 2e7, 3e7, 5e7, 1e8, 2e8, 3e8, 5e8, 1e9]
            .iter()
            .map(|&n: &f64| {
                let pts: Vec<(f64, f64)> =
                    (0..24).map(|i| 1e9 * 100f64.powf(i as f64 / 23.0)).map(|d| (d, (e + a / n.powf(alpha) + b / d.powf(beta)) * noise(&mut rng, 0.001))).collect();
                run(format!("n{n:e}"), n as i64, pts.into_iter())
            })
            .collect();
        let fit = fit_study(&runs, &settings(100)).unwrap();
        let law = fit.groups["baseline"].chinchilla.clone().unwrap();
        for (name, truth) in [("E", e), ("A", a), ("alpha", alpha), ("B", b), ("beta", beta)] {
            check(name, &law, truth);
        }
    }

    #[test]
    fn the_envelope_of_crossing_curves_switches_run_where_they_cross() {
        // Two hand-built runs in log-log: `small` is better below C = 1e4,
        // `large` above. The frontier is the lower of the two everywhere.
        let small = Run {
            id: "small".into(),
            group: "baseline".into(),
            params: ParamCounts { embedding: 0, trainable: 10, frozen: 0, structured: 0 },
            points: [(1e3, 4.0), (1e4, 3.0), (1e5, 2.8)]
                .iter()
                .map(|&(c, loss)| RunPoint { tokens: c / 60.0, compute: Compute { trainable: c, frozen_2_3: c, all: c, structured_free: c }, loss })
                .collect(),
        };
        let mut large = small.clone();
        large.id = "large".into();
        large.params.trainable = 100;
        large.points = [(1e3, 5.0), (1e4, 3.0), (1e5, 2.0)]
            .iter()
            .map(|&(c, loss)| RunPoint { tokens: c / 600.0, compute: Compute { trainable: c, frozen_2_3: c, all: c, structured_free: c }, loss })
            .collect();
        let settings = Settings { skip_fraction: 0.0, envelope_points: 5, ..settings(0) };
        let env = envelope(&[&small, &large], "trainable", &settings);
        let xs: Vec<f64> = env.iter().map(|p| p.0).collect();
        let expected_x = [1e3, 10f64.powf(3.5), 1e4, 10f64.powf(4.5), 1e5];
        for (x, want) in xs.iter().zip(expected_x) {
            assert!((x / want - 1.0).abs() < 1e-9, "{xs:?}");
        }
        // Below the crossing `small` (log-log interpolation: √(4·3)), at it both, above it `large` (√(3·2)).
        let expected_loss = [4.0, 12f64.sqrt(), 3.0, 6f64.sqrt(), 2.0];
        for ((_, l), want) in env.iter().zip(expected_loss) {
            assert!((l - want).abs() < 1e-9, "{env:?}");
        }
    }

    #[test]
    fn points_worse_than_less_compute_already_bought_are_off_the_frontier() {
        // `small` ends at C = 2e4 with loss 3 (3.21 at 1e4); `large` is at
        // 3.3 at 1e5 — worse than small reached with less — and 2.0 at 1e6.
        let at = |c: f64, loss| RunPoint { tokens: c, compute: Compute { trainable: c, frozen_2_3: c, all: c, structured_free: c }, loss };
        let params = ParamCounts { embedding: 0, trainable: 1, frozen: 0, structured: 0 };
        let small = Run { id: "small".into(), group: "baseline".into(), params, points: vec![at(1e2, 5.0), at(2e4, 3.0)] };
        let large = Run { id: "large".into(), group: "baseline".into(), params, points: vec![at(1e4, 3.5), at(1e5, 3.3), at(1e6, 2.0)] };
        let settings = Settings { skip_fraction: 0.0, envelope_points: 5, ..settings(0) };
        let env = envelope(&[&small, &large], "trainable", &settings);
        let xs: Vec<f64> = env.iter().map(|p| p.0.log10().round()).collect();
        assert_eq!(xs, [2.0, 3.0, 4.0, 6.0], "1e5 (loss 3.3, worse than 3.21 at 1e4) is not on the frontier: {env:?}");
        for w in env.windows(2) {
            assert!(w[1].1 < w[0].1, "{env:?}");
        }
    }

    #[test]
    fn degenerate_input_is_a_clear_error_not_a_panic_or_nan() {
        let good = |id: &str, n: i64| run(id.into(), n, [(1e6, 4.0), (2e6, 3.5)].into_iter());
        let s = settings(10);
        assert_eq!(fit_study(&[], &s), Err(FitError::NoRuns));
        assert_eq!(fit_study(&[good("only", 1000)], &s), Err(FitError::OneRun("only".into())));
        for (what, value) in [("loss", f64::NAN), ("loss", f64::INFINITY), ("loss", -1.0), ("tokens", 0.0)] {
            let mut bad = good("bad", 2000);
            match what {
                "loss" => bad.points[1].loss = value,
                _ => bad.points[1].tokens = value,
            }
            let err = fit_study(&[good("ok", 1000), bad], &s).unwrap_err();
            assert!(matches!(&err, FitError::BadValue { run, what: w, .. } if run == "bad" && *w == what), "{err}");
        }
        let mut zero_compute = good("zero", 2000);
        zero_compute.points[0].compute.trainable = 0.0;
        assert!(matches!(fit_study(&[good("ok", 1000), zero_compute], &s), Err(FitError::BadValue { what: "compute", .. })));
        let flat = |id: &str, n| run(id.into(), n, [(1e6, 3.0), (2e6, 3.0)].into_iter());
        assert_eq!(fit_study(&[flat("a", 1000), flat("b", 2000)], &s), Err(FitError::ConstantLoss(3.0)));
        // Two identical-size runs: nothing to fit against N, yet no NaN anywhere.
        let fit = fit_study(&[good("a", 1000), good("b", 1000)], &s).unwrap();
        assert!(all_numbers_finite(&serde_json::to_value(&fit).unwrap()), "{fit:?}");
    }

    /// serde_json writes NaN as `null`: any null outside an absent law is one.
    fn all_numbers_finite(v: &serde_json::Value) -> bool {
        const OPTIONAL: [&str; 5] = ["power_law", "offset_law", "final_n", "chinchilla", "leave_largest_out"];
        match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(items) => items.iter().all(all_numbers_finite),
            serde_json::Value::Object(map) => map.iter().all(|(k, v)| (v.is_null() && OPTIONAL.contains(&k.as_str())) || all_numbers_finite(v)),
            _ => true,
        }
    }
}
