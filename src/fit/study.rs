//! A family of training runs → envelopes, fitted laws with bootstrap
//! intervals, leave-largest-out prediction errors and effective-compute
//! multipliers, as one serialisable [`StudyFit`].
//!
//! Every law is reported only where the data identifies it
//! ([`super::identify`]): a family needs three model sizes for a law of its
//! own, evaluations after warmup, and exponents whose intervals pin them
//! down. A family with fewer sizes is compared with the baseline's law run
//! by run, at each run's final point.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::compare::{statistics, Statistics};
use super::curves::{counted, curves, final_point, log_grid, lowest_at};
use super::identify::{constant_problem, exponent_problem, interval_problem, too_few_sizes, Identified, MIN_SIZES};
use super::laws::{Convergence, PowerLaw, SumOfPowers};
use super::optimal::{compute_optimal, ComputeOptimal, Parametric, Sample};
pub use super::types::{CompareBy, Multiplier, RunMultiplier};
use super::types::{Estimate, Family, Frontier, Run, Settings};
use crate::train::{Compute, CostModel};

/// L = (x_c / x)^α, with intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// The exponent.
    pub alpha: Estimate,
    /// The scale x_c (compute C_c, or parameters N_c).
    pub x_c: Estimate,
}

impl PowerLawFit {
    /// The point estimate's loss at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        (self.x_c.value / x).powf(self.alpha.value)
    }
}

/// L = E + A·C^−α, with intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OffsetLawFit {
    /// Irreducible loss.
    pub e: Estimate,
    /// Prefactor.
    pub a: Estimate,
    /// Exponent.
    pub alpha: Estimate,
}

/// L(N, D) = E + A/N^α + B/D^β (Hoffmann et al.), with intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaFit {
    /// Irreducible loss.
    pub e: Estimate,
    /// Parameter term's prefactor.
    pub a: Estimate,
    /// Parameter term's exponent.
    pub alpha: Estimate,
    /// Data term's prefactor.
    pub b: Estimate,
    /// Data term's exponent.
    pub beta: Estimate,
}

/// Fits on one cost model for one family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisFit {
    /// (compute, loss) of the compute-efficient frontier.
    pub envelope: Vec<(f64, f64)>,
    /// L = (C_c / C)^α on the envelope.
    pub power_law: Identified<PowerLawFit>,
    /// L = E + A·C^−α on the envelope.
    pub offset_law: Identified<OffsetLawFit>,
    /// log L − log L̂ of the power law at each envelope point (empty without one).
    pub residuals: Vec<f64>,
}

/// A family's fits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupFit {
    /// Runs in the family.
    pub runs: Vec<String>,
    /// Distinct model sizes (trainable N) among them.
    pub sizes: usize,
    /// Per cost model.
    pub axes: BTreeMap<CostModel, AxisFit>,
    /// L(N) = (N_c / N)^α_N on each run's final loss.
    pub final_n: Identified<PowerLawFit>,
    /// L(N, D) = E + A/N^α + B/D^β on every evaluation after warmup.
    pub chinchilla: Identified<ChinchillaFit>,
    /// The largest model's final loss predicted by L(N) fitted without it.
    pub leave_largest_out: Option<LeaveOut>,
    /// N_opt(C) and D_opt(C) by Hoffmann et al.'s three approaches.
    pub compute_optimal: ComputeOptimal,
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
    pub groups: BTreeMap<Family, GroupFit>,
    /// For each non-baseline family and cost model: the compute the
    /// baseline's power law needs to reach the family's losses, divided by
    /// the compute the family used (geometric mean over the family's
    /// envelope points, or its runs' final points, within the baseline's
    /// loss range). Above 1: the variant is more compute-efficient than the
    /// baseline under that cost model.
    pub multipliers: BTreeMap<Family, BTreeMap<CostModel, Identified<Multiplier>>>,
    /// Noise floor, paired differences, multipliers per size, intervals
    /// and verdicts (`crate::fit::compare`).
    #[serde(default)]
    pub statistics: Statistics,
}

/// The compute-efficient frontier from compute `start` on: at each of
/// `points` log-spaced x, the lowest loss any run reaches there — kept only
/// where it improves on every smaller x (Pareto-optimal). Where a small run
/// has ended and the next one is still early in training, the lowest loss
/// *at* x is worse than what less compute already bought; those points are
/// not on the frontier.
pub fn envelope(runs: &[&Run], model: CostModel, settings: &Settings, start: f64) -> Vec<(f64, f64)> {
    let curves = curves(runs, model, settings.skip_fraction);
    let lo = curves.iter().map(|(_, c)| c[0].0).fold(f64::INFINITY, f64::min).max(start);
    let hi = curves.iter().map(|(_, c)| c[c.len() - 1].0).fold(0.0, f64::max);
    if curves.is_empty() || lo >= hi {
        return Vec::new();
    }
    let mut best_so_far = f64::INFINITY;
    log_grid(lo, hi, settings)
        .filter_map(|x| {
            let (_, best) = lowest_at(&curves, x)?;
            let improves = best < best_so_far;
            best_so_far = best_so_far.min(best);
            improves.then_some((x, best))
        })
        .collect()
}

/// Where a family's frontier starts: the compute at which its smallest
/// model ends. Below it the family has no model small enough to have
/// finished its schedule, so its frontier would be a run still early in
/// training (learning rate not yet decayed; for the smallest models the
/// unigram plateau), and a family whose smallest model is larger than the
/// baseline's would look less efficient for want of small models, not for
/// its parameters. The laws and multipliers are taken from here on.
fn frontier_start(runs: &[&Run], model: CostModel) -> f64 {
    let smallest = runs.iter().map(|r| r.params.trainable).min();
    let end = runs
        .iter()
        .filter(|r| Some(r.params.trainable) == smallest)
        .filter_map(|r| final_point(r))
        .map(|p| model.of(&p.compute))
        .fold(f64::INFINITY, f64::min);
    if end.is_finite() {
        end
    } else {
        0.0
    }
}

/// The Pareto-optimal final points (compute, loss) of `runs`: each run's
/// end, kept where it improves on every run that ended with less compute.
fn final_frontier(runs: &[&Run], model: CostModel) -> Vec<(f64, f64)> {
    let mut ends: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| final_point(r))
        .map(|p| (model.of(&p.compute), p.loss))
        .filter(|(c, _)| *c > 0.0)
        .collect();
    ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    ends.dedup();
    let (mut frontier, mut best) = (Vec::new(), f64::INFINITY);
    for (c, l) in ends {
        if l < best {
            best = l;
            frontier.push((c, l));
        }
    }
    frontier
}

/// Point estimates of one family (what each bootstrap replicate recomputes).
struct Point {
    power: BTreeMap<CostModel, Option<PowerLaw>>,
    offset: BTreeMap<CostModel, Option<SumOfPowers>>,
    envelopes: BTreeMap<CostModel, Vec<(f64, f64)>>,
    /// (run, compute, final loss) of each run.
    finals: Vec<(String, Compute, f64)>,
    final_n: Option<PowerLaw>,
    chinchilla: Option<SumOfPowers>,
    /// How the full fit of L(N, D) converged (replicates restart from it).
    chinchilla_convergence: Option<Convergence>,
    /// Compute-optimal allocation by the envelope and isoFLOP profiles.
    optimal: Sample,
}

fn final_points(runs: &[&Run]) -> Vec<(f64, f64)> {
    runs.iter().filter_map(|r| final_point(r).map(|p| (r.params.trainable as f64, p.loss))).collect()
}

fn chinchilla_points(runs: &[&Run], skip_fraction: f64) -> Vec<(Vec<f64>, f64)> {
    runs.iter()
        .flat_map(|r| counted(r, skip_fraction).map(move |p| (vec![r.params.trainable as f64, p.tokens], p.loss)))
        .collect()
}

/// Distinct model sizes among `runs`.
fn sizes(runs: &[&Run]) -> usize {
    let mut n: Vec<i64> = runs.iter().map(|r| r.params.trainable).collect();
    n.sort_unstable();
    n.dedup();
    n.len()
}

/// The family's point estimates; `full` is the fit on all runs when this
/// is a bootstrap replicate (iterative laws restart from its optimum).
fn estimate_point(runs: &[&Run], settings: &Settings, full: Option<&Point>) -> Point {
    let mut power = BTreeMap::new();
    let mut offset = BTreeMap::new();
    let mut envelopes = BTreeMap::new();
    for model in CostModel::ALL {
        let env = match settings.frontier {
            Frontier::Curves => envelope(runs, model, settings, frontier_start(runs, model)),
            Frontier::FinalPoints => final_frontier(runs, model),
        };
        power.insert(model, PowerLaw::fit(&env));
        let pts: Vec<(Vec<f64>, f64)> = env.iter().map(|(x, l)| (vec![*x], *l)).collect();
        // Three parameters need more than three points; replicates refit from the full fit.
        let off = if pts.len() >= 5 {
            match full.map(|f| f.offset.get(&model).cloned().flatten()) {
                Some(Some(f)) => f.refit(&pts),
                Some(None) => None,
                None => SumOfPowers::fit(&pts, 1),
            }
        } else {
            None
        };
        offset.insert(model, off);
        envelopes.insert(model, env);
    }
    let finals = runs.iter().filter_map(|r| final_point(r).map(|p| (r.id.clone(), p.compute, p.loss))).collect();
    let final_n = if sizes(runs) >= 2 { PowerLaw::fit(&final_points(runs)) } else { None };
    let chin_pts = chinchilla_points(runs, settings.skip_fraction);
    let (chinchilla, chinchilla_convergence) = if sizes(runs) >= MIN_SIZES && chin_pts.len() >= 10 {
        match full.map(|f| f.chinchilla.clone()) {
            Some(Some(f)) => (f.refit(&chin_pts), None),
            Some(None) => (None, None),
            None => SumOfPowers::fit_with_convergence(&chin_pts, 2).map_or((None, None), |(l, c)| (Some(l), Some(c))),
        }
    } else {
        (None, None)
    };
    let optimal = Sample::of(runs, settings);
    Point { power, offset, envelopes, finals, final_n, chinchilla, chinchilla_convergence, optimal }
}

/// The baseline's law on `model` and the loss range its envelope covers.
fn baseline_law(baseline: &Point, model: CostModel) -> Option<(PowerLaw, f64, f64)> {
    let law = baseline.power.get(&model)?.as_ref()?;
    let (lo, hi) =
        baseline.envelopes.get(&model)?.iter().fold((f64::INFINITY, 0.0f64), |(a, b), (_, l)| (a.min(*l), b.max(*l)));
    (lo <= hi).then_some((*law, lo, hi))
}

/// The compute `law` needs for `loss`, over `compute`; `None` outside [lo, hi].
fn point_multiplier((law, lo, hi): (PowerLaw, f64, f64), compute: f64, loss: f64) -> Option<f64> {
    ((lo..=hi).contains(&loss) && compute > 0.0).then(|| law.x_c * loss.powf(-1.0 / law.alpha) / compute)
}

fn geometric_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values.map(f64::ln).collect();
    let m = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
    (!logs.is_empty() && m.is_finite() && m > 0.0).then_some(m)
}

/// The multiplier of `variant` against `baseline`'s power law on `model`.
fn multiplier(baseline: &Point, variant: &Point, model: CostModel, by: CompareBy) -> Option<f64> {
    let base = baseline_law(baseline, model)?;
    match by {
        CompareBy::Envelope => {
            geometric_mean(variant.envelopes.get(&model)?.iter().filter_map(|&(c, l)| point_multiplier(base, c, l)))
        }
        CompareBy::FinalPoints => {
            geometric_mean(variant.finals.iter().filter_map(|(_, c, l)| point_multiplier(base, model.of(c), *l)))
        }
    }
}

/// Resamples each family's runs with replacement.
fn resample<'a>(groups: &BTreeMap<Family, Vec<&'a Run>>, rng: &mut ChaCha8Rng) -> BTreeMap<Family, Vec<&'a Run>> {
    groups
        .iter()
        .map(|(g, runs)| {
            (g.clone(), (0..runs.len()).map(|_| runs[(rng.next_u64() % runs.len() as u64) as usize]).collect())
        })
        .collect()
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
    #[error(
        "run `{run}`: {what} = {value} at {tokens} tokens (losses, tokens, compute and N must be finite and positive)"
    )]
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
            let checks = [
                ("tokens", p.tokens),
                ("loss", p.loss),
                ("compute", p.compute.trainable),
                ("compute (frozen at full cost)", p.compute.frozen_full),
            ];
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

/// The bootstrap values of one number across replicates.
fn across<T>(reps: &[&Point], f: impl Fn(&Point) -> Option<T>, g: impl Fn(T) -> f64) -> Vec<f64> {
    reps.iter().filter_map(|r| f(r)).map(g).collect()
}

/// Why a family's envelope cannot carry a law, if it cannot.
fn envelope_problem(runs: &[&Run], env: &[(f64, f64)], settings: &Settings) -> Option<String> {
    if let Some(why) = too_few_sizes(sizes(runs)) {
        return Some(why);
    }
    if runs.iter().all(|r| counted(r, settings.skip_fraction).count() == 0) {
        return Some(format!(
            "every evaluation is within its run's warmup or first {:.0}% of tokens",
            100.0 * settings.skip_fraction
        ));
    }
    (env.len() < MIN_SIZES).then(|| format!("{} point(s) on the compute-efficient frontier", env.len()))
}

fn power_law_fit(
    law: &PowerLaw,
    reps: &[&Point],
    pick: impl Fn(&Point) -> Option<PowerLaw>,
    name: &str,
) -> Identified<PowerLawFit> {
    let fit = PowerLawFit {
        alpha: Estimate::new(law.alpha, &across(reps, &pick, |l| l.alpha)),
        x_c: Estimate::new(law.x_c, &across(reps, &pick, |l| l.x_c)),
    };
    match exponent_problem(name, &fit.alpha) {
        Some(why) => Identified::NotIdentifiable(why),
        None => Identified::Fitted(fit),
    }
}

/// One family's fits from its point estimate and its bootstrap replicates.
fn group_fit(runs: &[&Run], point: &Point, reps: &[&Point], settings: &Settings) -> GroupFit {
    let mut axes = BTreeMap::new();
    for model in CostModel::ALL {
        let env = point.envelopes[&model].clone();
        let problem = envelope_problem(runs, &env, settings);
        let power_law = match (&problem, point.power[&model]) {
            (Some(why), _) => Identified::NotIdentifiable(why.clone()),
            (None, None) => Identified::NotIdentifiable("the frontier is flat: no power law fits it (α ≈ 0)".into()),
            (None, Some(law)) => power_law_fit(&law, reps, |r| r.power[&model], "α"),
        };
        let offset_law = match (&problem, &point.offset[&model]) {
            (Some(why), _) => Identified::NotIdentifiable(why.clone()),
            (None, None) => {
                Identified::NotIdentifiable(format!("{} frontier point(s) do not pin down three parameters", env.len()))
            }
            (None, Some(law)) => {
                let pick = |f: fn(&SumOfPowers) -> f64| across(reps, |r| r.offset[&model].clone(), |l| f(&l));
                let fit = OffsetLawFit {
                    e: Estimate::new(law.e, &pick(|l| l.e)),
                    a: Estimate::new(law.terms[0].0, &pick(|l| l.terms[0].0)),
                    alpha: Estimate::new(law.terms[0].1, &pick(|l| l.terms[0].1)),
                };
                match exponent_problem("α", &fit.alpha).or_else(|| constant_problem("E", &fit.e)) {
                    Some(why) => Identified::NotIdentifiable(why),
                    None => Identified::Fitted(fit),
                }
            }
        };
        let residuals = power_law
            .fitted()
            .map(|law| env.iter().map(|(c, l)| l.ln() - law.predict(*c).ln()).collect())
            .unwrap_or_default();
        axes.insert(model, AxisFit { envelope: env, power_law, offset_law, residuals });
    }
    let final_n = match (too_few_sizes(sizes(runs)), point.final_n) {
        (Some(why), _) => Identified::NotIdentifiable(why),
        (None, None) => {
            Identified::NotIdentifiable("the final losses are flat in N: no power law fits them (α_N ≈ 0)".into())
        }
        (None, Some(law)) => power_law_fit(&law, reps, |r| r.final_n, "α_N"),
    };
    let chinchilla = match (too_few_sizes(sizes(runs)), &point.chinchilla) {
        (Some(why), _) => Identified::NotIdentifiable(why),
        (None, None) => Identified::NotIdentifiable(
            "too few evaluations after warmup for five parameters, or no start converged".into(),
        ),
        (None, Some(law)) => {
            let pick = |f: fn(&SumOfPowers) -> f64| across(reps, |r| r.chinchilla.clone(), |l| f(&l));
            let fit = ChinchillaFit {
                e: Estimate::new(law.e, &pick(|l| l.e)),
                a: Estimate::new(law.terms[0].0, &pick(|l| l.terms[0].0)),
                alpha: Estimate::new(law.terms[0].1, &pick(|l| l.terms[0].1)),
                b: Estimate::new(law.terms[1].0, &pick(|l| l.terms[1].0)),
                beta: Estimate::new(law.terms[1].1, &pick(|l| l.terms[1].1)),
            };
            match exponent_problem("α", &fit.alpha)
                .or_else(|| exponent_problem("β", &fit.beta))
                .or_else(|| constant_problem("E", &fit.e))
            {
                Some(why) => Identified::NotIdentifiable(why),
                None => Identified::Fitted(fit),
            }
        }
    };
    // Approach 3 needs only the ratio of the exponents, a = β/(α+β): along
    // the valley of L(N, D) α and β move together (Epoch's refit of
    // Chinchilla saw the same), so the allocation can be pinned where α alone
    // is not. It is judged by a's and b's own intervals, not by L(N, D)'s.
    let parametric = Parametric {
        law: match (too_few_sizes(sizes(runs)), &point.chinchilla) {
            (None, Some(law)) => Ok(law),
            (Some(why), _) => Err(format!("L(N, D) is not identified: {why}")),
            (None, None) => Err("L(N, D) is not identified: no start converged".into()),
        },
        replicates: reps.iter().filter_map(|r| r.chinchilla.as_ref()).collect(),
        convergence: point.chinchilla_convergence.clone(),
    };
    let samples: Vec<&Sample> = reps.iter().map(|r| &r.optimal).collect();
    let compute_optimal = compute_optimal(&point.optimal, &samples, parametric);
    GroupFit {
        runs: runs.iter().map(|r| r.id.clone()).collect(),
        sizes: sizes(runs),
        axes,
        final_n,
        chinchilla,
        leave_largest_out: leave_largest_out(runs),
        compute_optimal,
    }
}

/// A family against the baseline's law on `model`, with its interval.
fn compare(
    base: &GroupFit,
    family: &[&Run],
    full: &BTreeMap<Family, Point>,
    replicates: &[BTreeMap<Family, Point>],
    group: &Family,
    model: CostModel,
    settings: &Settings,
) -> Identified<Multiplier> {
    let (base_point, point) = (&full[&settings.baseline], &full[group]);
    // An identified law was fitted to a non-empty envelope, so `baseline_law` has it.
    let (Some(base_law), None) = (baseline_law(base_point, model), base.axes[&model].power_law.why_not()) else {
        let why = base.axes[&model].power_law.why_not().unwrap_or_default();
        return Identified::NotIdentifiable(format!("the baseline has no law to compare with ({why})"));
    };
    let by = if sizes(family) >= MIN_SIZES { CompareBy::Envelope } else { CompareBy::FinalPoints };
    let runs: Vec<RunMultiplier> = point
        .finals
        .iter()
        .map(|(run, c, loss)| RunMultiplier {
            run: run.clone(),
            compute: model.of(c),
            loss: *loss,
            multiplier: point_multiplier(base_law, model.of(c), *loss),
        })
        .collect();
    let Some(value) = multiplier(base_point, point, model, by) else {
        let what = if by == CompareBy::Envelope { "envelope" } else { "runs' final losses" };
        let (_, lo, hi) = base_law;
        return Identified::NotIdentifiable(format!(
            "the family's {what} lie outside the baseline's loss range [{lo:.3}, {hi:.3}]: no extrapolation"
        ));
    };
    let reps: Vec<f64> =
        replicates.iter().filter_map(|r| multiplier(r.get(&settings.baseline)?, r.get(group)?, model, by)).collect();
    let estimate = Estimate::new(value, &reps);
    match interval_problem("the multiplier", &estimate) {
        Some(why) => Identified::NotIdentifiable(why),
        None => Identified::Fitted(Multiplier { by, estimate, runs }),
    }
}

/// Fits every family of `runs`; an error for input no law can describe.
pub fn fit_study(runs: &[Run], settings: &Settings) -> Result<StudyFit, FitError> {
    validate(runs)?;
    let mut groups: BTreeMap<Family, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups.entry(run.group.clone()).or_default().push(run);
    }
    let full: BTreeMap<Family, Point> =
        groups.iter().map(|(g, r)| (g.clone(), estimate_point(r, settings, None))).collect();
    let replicates: Vec<BTreeMap<Family, Point>> = (0..settings.bootstrap)
        .into_par_iter()
        .map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_mul(1_000_003).wrapping_add(b as u64));
            resample(&groups, &mut rng)
                .iter()
                .map(|(g, r)| (g.clone(), estimate_point(r, settings, full.get(g))))
                .collect()
        })
        .collect();
    let out_groups: BTreeMap<Family, GroupFit> = full
        .iter()
        .map(|(g, point)| {
            let reps: Vec<&Point> = replicates.iter().filter_map(|r| r.get(g)).collect();
            (g.clone(), group_fit(&groups[g], point, &reps, settings))
        })
        .collect();
    let mut multipliers = BTreeMap::new();
    if let Some(base) = out_groups.get(&settings.baseline) {
        for g in groups.keys().filter(|g| **g != settings.baseline) {
            let per_model = CostModel::ALL
                .into_iter()
                .map(|m| (m, compare(base, &groups[g], &full, &replicates, g, m, settings)))
                .collect();
            multipliers.insert(g.clone(), per_model);
        }
    }
    let frontiers: BTreeMap<Family, Vec<(f64, f64)>> =
        out_groups.iter().map(|(g, fit)| (g.clone(), fit.axes[&CostModel::Trainable].envelope.clone())).collect();
    let on_trainable: BTreeMap<Family, Option<&Multiplier>> = multipliers
        .iter()
        .map(|(g, per_model): (&Family, &BTreeMap<CostModel, Identified<Multiplier>>)| {
            (g.clone(), per_model.get(&CostModel::Trainable).and_then(Identified::fitted))
        })
        .collect();
    let statistics = statistics(runs, &frontiers, &on_trainable, settings);
    Ok(StudyFit { settings: settings.clone(), groups: out_groups, multipliers, statistics })
}

/// L(N) fitted without the largest model, asked for its final loss.
fn leave_largest_out(runs: &[&Run]) -> Option<LeaveOut> {
    if sizes(runs) < MIN_SIZES {
        return None;
    }
    let largest = runs.iter().max_by_key(|r| r.params.trainable)?;
    let rest: Vec<&Run> = runs.iter().copied().filter(|r| r.params.trainable != largest.params.trainable).collect();
    let law = PowerLaw::fit(&final_points(&rest))?;
    let actual = final_point(largest)?.loss;
    let predicted = law.predict(largest.params.trainable as f64);
    Some(LeaveOut { run: largest.id.clone(), actual, predicted, relative_error: (predicted - actual) / actual })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::RunPoint;
    use crate::train::ParamCounts;

    /// Runs of sizes `n_values` on the frontier L = (C_c / (efficiency·C))^α,
    /// each over its own compute range (larger models reach further), plus,
    /// for each, a worse twin (10% higher loss) the envelope must ignore.
    fn synthetic(group: &str, n_values: &[i64], alpha: f64, c_c: f64, efficiency: f64) -> Vec<Run> {
        let mut runs = Vec::new();
        for &n in n_values {
            for (suffix, penalty) in [("", 1.0), ("-worse", 1.1)] {
                let counts = ParamCounts { trainable: n, ..ParamCounts::default() };
                let points = (1..=30)
                    .map(|i| {
                        let tokens = 1e6 * 1.3f64.powi(i);
                        let compute = Compute::at(&counts, tokens);
                        RunPoint {
                            tokens,
                            compute,
                            loss: penalty * (c_c / (compute.trainable * efficiency)).powf(alpha),
                        }
                    })
                    .collect();
                runs.push(Run {
                    id: format!("{group}-{n}{suffix}"),
                    group: group.into(),
                    params: counts,
                    points,
                    warmup_tokens: 0.0,
                });
            }
        }
        runs
    }

    /// The settings every test module of this file starts from (the others
    /// change a field or two with struct update syntax).
    pub(super) fn settings(bootstrap: usize) -> Settings {
        Settings {
            skip_fraction: 0.1,
            envelope_points: 30,
            bootstrap,
            seed: 0,
            baseline: "baseline".into(),
            frontier: Frontier::Curves,
            equivalence: None,
            label: None,
        }
    }

    #[test]
    fn the_envelope_follows_the_frontier_and_the_law_is_recovered() {
        let runs = synthetic("baseline", &[1_000_000, 4_000_000, 16_000_000, 64_000_000], 0.05, 1e8, 1.0);
        let fit = fit_study(&runs, &settings(50)).unwrap();
        assert_eq!(fit.groups[&Family::from("baseline")].runs.len(), 8);
        let axis = &fit.groups[&Family::from("baseline")].axes[&CostModel::Trainable];
        assert!(axis.envelope.len() >= 20);
        for w in axis.envelope.windows(2) {
            assert!(w[1].1 <= w[0].1 + 1e-12, "the envelope never rises with compute");
        }
        let alpha = axis.power_law.fitted().unwrap().alpha;
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
        let m = fit.multipliers[&Family::from("doped")][&CostModel::Trainable].fitted().unwrap().estimate;
        assert!((m.value - 2.0).abs() < 0.15, "{m:?}");
        let (a, b) = (fit_study(&runs, &settings(30)).unwrap(), fit);
        assert_eq!(a, b, "seeded bootstrap: same intervals every time");
    }
}

#[cfg(test)]
mod leave_out_tests {
    use super::*;
    use crate::fit::RunPoint;
    use crate::train::ParamCounts;

    #[test]
    fn the_largest_model_is_predicted_from_the_others() {
        // Final losses exactly on L(N) = (1e13 / N)^0.076 (Kaplan's α_N).
        let runs: Vec<Run> = [1e6, 4e6, 16e6, 64e6]
            .iter()
            .map(|&n: &f64| {
                let counts = ParamCounts { trainable: n as i64, ..ParamCounts::default() };
                let loss = (1e13 / n).powf(0.076);
                let points = vec![RunPoint { tokens: 1e9, compute: Compute::at(&counts, 1e9), loss }];
                Run { id: format!("n{n}"), group: "baseline".into(), params: counts, points, warmup_tokens: 0.0 }
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
    use super::super::optimal::Agreement;
    use super::*;
    use crate::fit::RunPoint;
    use crate::train::ParamCounts;

    /// Multiplicative log-normal noise of relative size `sigma`, seeded.
    fn noise(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
        let (u1, u2) =
            ((rng.next_u64() as f64 + 1.0) / (u64::MAX as f64 + 2.0), rng.next_u64() as f64 / u64::MAX as f64);
        (sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).exp()
    }

    fn run(id: String, n: i64, points: impl Iterator<Item = (f64, f64)>) -> Run {
        let params = ParamCounts { trainable: n, ..ParamCounts::default() };
        let points =
            points.map(|(tokens, loss)| RunPoint { tokens, compute: Compute::at(&params, tokens), loss }).collect();
        Run { id, group: "baseline".into(), params, points, warmup_tokens: 0.0 }
    }

    fn settings(bootstrap: usize) -> Settings {
        Settings { envelope_points: 40, seed: 7, ..super::tests::settings(bootstrap) }
    }

    /// The truth lies within the 95% interval, and the point estimate within
    /// 2% of it — on the scale the fit works in: E and the exponents as
    /// they are, the prefactors as a = log A (A itself moves by a factor
    /// e^{Δα·log C}, ~20% for Δα = 0.005 at C ~ 1e16).
    fn check(name: &str, e: Estimate, truth: f64) {
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
                let pts = tokens
                    .into_iter()
                    .map(|d| (d, (e + a * (6.0 * n as f64 * d).powf(-alpha)) * noise(&mut rng, 0.002)))
                    .collect::<Vec<_>>();
                run(format!("n{k}"), n, pts.into_iter())
            })
            .collect();
        let fit = fit_study(&runs, &settings(200)).unwrap();
        let law = *fit.groups[&Family::from("baseline")].axes[&CostModel::Trainable].offset_law.fitted().unwrap();
        check("E", law.e, e);
        check("A", law.a, a);
        check("alpha", law.alpha, alpha);
    }

    #[test]
    fn noisy_runs_give_back_the_chinchilla_law_within_its_intervals() {
        let (e, a, alpha, b, beta) = (1.69, 406.4, 0.34, 410.7, 0.28);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let runs: Vec<Run> = [1e7, 2e7, 3e7, 5e7, 1e8, 2e8, 3e8, 5e8, 1e9]
            .iter()
            .map(|&n: &f64| {
                let pts: Vec<(f64, f64)> = (0..24)
                    .map(|i| 1e9 * 100f64.powf(i as f64 / 23.0))
                    .map(|d| (d, (e + a / n.powf(alpha) + b / d.powf(beta)) * noise(&mut rng, 0.001)))
                    .collect();
                run(format!("n{n:e}"), n as i64, pts.into_iter())
            })
            .collect();
        let fit = fit_study(&runs, &settings(100)).unwrap();
        let law = *fit.groups[&Family::from("baseline")].chinchilla.fitted().unwrap();
        for (name, estimate, truth) in
            [("E", law.e, e), ("A", law.a, a), ("alpha", law.alpha, alpha), ("B", law.b, b), ("beta", law.beta, beta)]
        {
            check(name, estimate, truth);
        }
    }

    /// Runs on an isoFLOP grid drawn from Hoffmann et al.'s fitted L(N, D)
    /// with 0.1% noise on every evaluation: budgets 1e17–1e20 FLOP a factor
    /// √10 apart, each with seven sizes 10^0.1 apart around its optimum,
    /// shifted by `offset` decades; each run's curve is 16 evaluations up
    /// to its budget.
    fn isoflop_grid(offset: f64, seed: u64) -> Vec<Run> {
        let (e, a, alpha, b, beta) = (1.69, 406.4, 0.34, 410.7, 0.28);
        let n_opt = |c: f64| 1.344 * (c / 6.0).powf(beta / (alpha + beta));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut runs = Vec::new();
        for budget in 0..7 {
            let c = 1e17 * 10f64.powf(budget as f64 / 2.0);
            let centre = (n_opt(c).log10() / 0.1).round() * 0.1 + offset;
            for k in -3..=3 {
                let n = 10f64.powf(centre + 0.1 * k as f64).round();
                let d_final = c / (6.0 * n);
                let pts: Vec<(f64, f64)> = (0..16)
                    .map(|i| d_final * 50f64.powf(i as f64 / 15.0 - 1.0))
                    .map(|d| (d, (e + a / n.powf(alpha) + b / d.powf(beta)) * noise(&mut rng, 0.001)))
                    .collect();
                runs.push(run(format!("c{budget}-n{k}"), n as i64, pts.into_iter()));
            }
        }
        runs
    }

    #[test]
    fn all_three_approaches_recover_the_compute_optimal_exponents() {
        let (a, b) = (0.28 / 0.62, 0.34 / 0.62);
        // Centred on the optimum, and a quarter decade off it (the parabola's asymmetry).
        for (offset, seed) in [(0.0, 3), (0.25, 4)] {
            let runs = isoflop_grid(offset, seed);
            let fit = fit_study(&runs, &settings(40)).unwrap();
            let optimal = &fit.groups[&Family::from("baseline")].compute_optimal;
            assert_eq!(optimal.isoflop_profiles.len(), 7, "one budget per compute: {:?}", optimal.isoflop_profiles);
            for (name, approach) in optimal.approaches() {
                let law = approach.fitted().unwrap_or_else(|| panic!("{name}: {approach:?}"));
                for (what, e, truth) in [("a", law.n_opt.exponent, a), ("b", law.d_opt.exponent, b)] {
                    let (lo, hi) = (e.low.unwrap(), e.high.unwrap());
                    assert!(
                        (e.value / truth - 1.0).abs() < 0.02,
                        "{name} (offset {offset}): {what} = {e:?} vs {truth}"
                    );
                    assert!(
                        lo <= truth && truth <= hi,
                        "{name} (offset {offset}): {what}: {truth} outside [{lo}, {hi}]"
                    );
                }
                // The coefficients too: N_opt at the middle budget within 20% — approach 1 can only pick
                // among sizes 26% apart, and off-centre grids lack the optimum's size between budgets
                // (17% high at offset 0.25); a wrong constant (6^a, say) is a factor of 2.
                let c = 10f64.powf(18.5);
                let truth = 1.344 * (c / 6.0).powf(a);
                let n = law.n_opt.at(c);
                assert!((n / truth - 1.0).abs() < 0.2, "{name} (offset {offset}): N_opt({c:e}) = {n:e} vs {truth:e}");
                assert!((6.0 * n * law.d_opt.at(c) / c - 1.0).abs() < 0.02, "{name}: N_opt·D_opt = C/6");
            }
            let convergence = optimal.convergence.as_ref().unwrap();
            assert_eq!(convergence.problem(), None, "{convergence:?}");
            assert!(matches!(optimal.agree_a, Agreement::Agree { .. }), "{:?}", optimal.agree_a);
        }
    }

    #[test]
    fn the_envelope_of_crossing_curves_switches_run_where_they_cross() {
        // Two hand-built runs in log-log: `small` is better below C = 1e4,
        // `large` above. The frontier is the lower of the two everywhere.
        let small = Run {
            id: "small".into(),
            group: "baseline".into(),
            params: ParamCounts { trainable: 10, ..ParamCounts::default() },
            points: [(1e3, 4.0), (1e4, 3.0), (1e5, 2.8)]
                .iter()
                .map(|&(c, loss)| RunPoint {
                    tokens: c / 60.0,
                    compute: Compute { trainable: c, frozen_2_3: c, frozen_full: c, fastfood_free: c },
                    loss,
                })
                .collect(),
            warmup_tokens: 0.0,
        };
        let mut large = small.clone();
        large.id = "large".into();
        large.params.trainable = 100;
        large.points = [(1e3, 5.0), (1e4, 3.0), (1e5, 2.0)]
            .iter()
            .map(|&(c, loss)| RunPoint {
                tokens: c / 600.0,
                compute: Compute { trainable: c, frozen_2_3: c, frozen_full: c, fastfood_free: c },
                loss,
            })
            .collect();
        let settings = Settings { skip_fraction: 0.0, envelope_points: 5, ..settings(0) };
        let env = envelope(&[&small, &large], CostModel::Trainable, &settings, 0.0);
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
        let at = |c: f64, loss| RunPoint {
            tokens: c,
            compute: Compute { trainable: c, frozen_2_3: c, frozen_full: c, fastfood_free: c },
            loss,
        };
        let params = ParamCounts { trainable: 1, ..ParamCounts::default() };
        let small = Run {
            id: "small".into(),
            group: "baseline".into(),
            params,
            points: vec![at(1e2, 5.0), at(2e4, 3.0)],
            warmup_tokens: 0.0,
        };
        let large = Run {
            id: "large".into(),
            group: "baseline".into(),
            params,
            points: vec![at(1e4, 3.5), at(1e5, 3.3), at(1e6, 2.0)],
            warmup_tokens: 0.0,
        };
        let settings = Settings { skip_fraction: 0.0, envelope_points: 5, ..settings(0) };
        let env = envelope(&[&small, &large], CostModel::Trainable, &settings, 0.0);
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
        assert!(matches!(
            fit_study(&[good("ok", 1000), zero_compute], &s),
            Err(FitError::BadValue { what: "compute", .. })
        ));
        let flat = |id: &str, n| run(id.into(), n, [(1e6, 3.0), (2e6, 3.0)].into_iter());
        assert_eq!(fit_study(&[flat("a", 1000), flat("b", 2000)], &s), Err(FitError::ConstantLoss(3.0)));
        // Two identical-size runs: nothing to fit against N, yet no NaN anywhere.
        let fit = fit_study(&[good("a", 1000), good("b", 1000)], &s).unwrap();
        assert!(all_numbers_finite(&serde_json::to_value(&fit).unwrap()), "{fit:?}");
    }

    /// serde_json writes NaN as `null`: any null outside an absent
    /// prediction, an out-of-range run multiplier, a budget with too few
    /// sizes for a parabola or a family without L(N, D) is one.
    fn all_numbers_finite(v: &serde_json::Value) -> bool {
        const OPTIONAL: [&str; 4] = ["leave_largest_out", "multiplier", "parabola", "convergence"];
        match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(items) => items.iter().all(all_numbers_finite),
            serde_json::Value::Object(map) => {
                map.iter().all(|(k, v)| (v.is_null() && OPTIONAL.contains(&k.as_str())) || all_numbers_finite(v))
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod identification_tests {
    use super::*;
    use crate::fit::RunPoint;
    use crate::train::ParamCounts;

    /// A run of size `n` on L = (1e8 / (k·C))^0.05 over its own compute
    /// range, with `warmup` tokens of warmup.
    fn run(group: &str, n: i64, k: f64, warmup: f64) -> Run {
        let params = ParamCounts { trainable: n, ..ParamCounts::default() };
        let points = (1..=20)
            .map(|i| {
                let tokens = 1e6 * 1.3f64.powi(i) * n as f64 / 1e6;
                let compute = Compute::at(&params, tokens);
                RunPoint { tokens, compute, loss: (1e8 / (k * compute.trainable)).powf(0.05) }
            })
            .collect();
        Run { id: format!("{group}-{n}"), group: group.into(), params, points, warmup_tokens: warmup }
    }

    fn settings() -> Settings {
        Settings { seed: 3, ..super::tests::settings(50) }
    }

    #[test]
    fn a_two_size_family_is_compared_run_by_run_and_gets_no_law() {
        let mut runs: Vec<Run> = [1e6, 4e6, 16e6, 64e6].iter().map(|&n| run("baseline", n as i64, 1.0, 0.0)).collect();
        runs.extend([2e6, 8e6].iter().map(|&n| run("fastfood", n as i64, 1.5, 0.0)));
        let fit = fit_study(&runs, &settings()).unwrap();
        let family = &fit.groups[&Family::from("fastfood")];
        assert_eq!(family.sizes, 2);
        for model in CostModel::ALL {
            assert_eq!(family.axes[&model].power_law.why_not(), Some("2 model size(s): a law needs at least 3"));
            assert!(family.axes[&model].offset_law.fitted().is_none() && family.axes[&model].residuals.is_empty());
        }
        assert!(
            family.final_n.fitted().is_none()
                && family.chinchilla.fitted().is_none()
                && family.leave_largest_out.is_none()
        );
        let m = fit.multipliers[&Family::from("fastfood")][&CostModel::Trainable].fitted().expect("compared as points");
        assert_eq!(m.by, CompareBy::FinalPoints);
        assert_eq!(m.runs.len(), 2);
        assert!((m.estimate.value - 1.5).abs() < 0.01, "{m:?}");
        for r in &m.runs {
            assert!((r.multiplier.unwrap() - 1.5).abs() < 0.01, "{r:?}");
        }
        let (lo, hi) = (m.estimate.low.unwrap(), m.estimate.high.unwrap());
        assert!(lo <= m.estimate.value && m.estimate.value <= hi, "{m:?}");
        // The baseline's own law is identified, with a tight interval.
        let alpha = fit.groups[&Family::from("baseline")].axes[&CostModel::Trainable].power_law.fitted().unwrap().alpha;
        assert!((alpha.value - 0.05).abs() < 1e-3, "{alpha:?}");
    }

    #[test]
    fn a_frontier_of_final_points_keeps_each_runs_end_where_it_improves() {
        // Ends on L = (1e8 / C)^0.05; mid-run points 5% above the law (a cosine run before its decay).
        let mut runs: Vec<Run> = [1e6, 2e6, 4e6, 8e6].iter().map(|&n| run("baseline", n as i64, 1.0, 0.0)).collect();
        for r in &mut runs {
            let last = r.points.len() - 1;
            for p in &mut r.points[..last] {
                p.loss *= 1.05;
            }
        }
        // A run that ends worse than a smaller one ended: off the frontier.
        let mut worse = run("baseline", 3_000_000, 1.0, 0.0);
        worse.points.last_mut().unwrap().loss *= 1.2;
        runs.push(worse);
        let settings = Settings { frontier: Frontier::FinalPoints, ..settings() };
        let fit = fit_study(&runs, &settings).unwrap();
        let axis = &fit.groups[&Family::from("baseline")].axes[&CostModel::Trainable];
        assert_eq!(axis.envelope.len(), 4, "{:?}", axis.envelope);
        let alpha = axis.power_law.fitted().unwrap().alpha;
        assert!((alpha.value - 0.05).abs() < 1e-9, "the ends are on the law: {alpha:?}");
        // The curves' frontier, by contrast, is biased by the mid-run points.
        let curves = fit_study(&runs, &Settings { frontier: Frontier::Curves, ..settings }).unwrap();
        let biased = curves.groups[&Family::from("baseline")].axes[&CostModel::Trainable]
            .power_law
            .fitted()
            .map(|l| l.alpha.value);
        assert!(biased.is_none_or(|a| (a - 0.05).abs() > 1e-3), "{biased:?}");
    }

    #[test]
    fn laws_the_data_cannot_identify_say_why() {
        // Two baseline sizes: no law, so nothing to compare with either.
        let runs = vec![
            run("baseline", 1_000_000, 1.0, 0.0),
            run("baseline", 4_000_000, 1.0, 0.0),
            run("doped", 1_000_000, 1.0, 0.0),
        ];
        let fit = fit_study(&runs, &settings()).unwrap();
        assert_eq!(
            fit.groups[&Family::from("baseline")].final_n.why_not(),
            Some("2 model size(s): a law needs at least 3")
        );
        let why = fit.multipliers[&Family::from("doped")][&CostModel::Trainable].why_not().unwrap();
        assert!(why.starts_with("the baseline has no law to compare with (2 model size(s)"), "{why}");

        // Every evaluation within warmup.
        let runs: Vec<Run> = [1e6, 4e6, 16e6].iter().map(|&n| run("baseline", n as i64, 1.0, 1e12)).collect();
        let fit = fit_study(&runs, &settings()).unwrap();
        let why = fit.groups[&Family::from("baseline")].axes[&CostModel::Trainable].power_law.why_not().unwrap();
        assert_eq!(why, "every evaluation is within its run's warmup or first 10% of tokens");

        // Final losses with no trend in N: L(N)'s exponent is not identified.
        let mut runs: Vec<Run> = [1e6, 2e6, 4e6, 8e6].iter().map(|&n| run("baseline", n as i64, 1.0, 0.0)).collect();
        for (r, loss) in runs.iter_mut().zip([3.0, 2.9, 3.1, 2.95]) {
            r.points.last_mut().unwrap().loss = loss;
        }
        let fit = fit_study(&runs, &settings()).unwrap();
        let why = fit.groups[&Family::from("baseline")].final_n.why_not().expect("no trend in N");
        assert!(why.contains("includes 0") || why.contains("does not fall"), "{why}");
        let json = serde_json::to_value(&fit).unwrap();
        assert!(
            json["groups"]["baseline"]["final_n"]["not_identifiable"].is_string(),
            "{}",
            json["groups"]["baseline"]["final_n"]
        );
    }
}
