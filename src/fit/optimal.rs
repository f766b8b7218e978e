//! How to spend a compute budget: the compute-optimal model size N_opt(C)
//! and token count D_opt(C), by the three approaches of Hoffmann et al.
//! (2022), side by side, so that a reader sees whether they agree.
//!
//! 1. **Envelope**: at each compute, the run with the lowest loss gives
//!    (C, N, D = C/6N); power laws through those points.
//! 2. **IsoFLOP profiles**: runs whose final compute agrees within
//!    [`BUDGET_GAP`] are one budget; per budget with three sizes or more, a
//!    parabola of final loss in log N, its minimum N*, D* = C/6N*; power
//!    laws through the minima. A parabola that opens downward or whose
//!    minimum lies outside the sampled sizes gives no minimum (no
//!    extrapolation).
//! 3. **Parametric**: the fitted L(N, D) = E + A/N^α + B/D^β, minimised
//!    under C = 6ND: N_opt = G·(C/6)^a, D_opt = G⁻¹·(C/6)^b with
//!    a = β/(α+β), b = α/(α+β), G = (αA/(βB))^(1/(α+β)) (their eq. 4).
//!
//! Every approach is written as N_opt = G·C^a and D_opt = H·C^b — C, not
//! C/6, so the three coefficients compare directly (approach 3's G is
//! Hoffmann's G·6^−a). Compute is C = 6·N·D with N the trainable
//! non-embedding count ([`COST_MODEL`]): the count L(N, D) is fitted on,
//! so the three approaches answer the same question. Intervals are the
//! 2.5th–97.5th percentiles over the study's bootstrap replicates (runs
//! resampled), approach 3's from the replicates' refits of L(N, D).

use serde::{Deserialize, Serialize};

use super::curves::{curves, final_point, log_grid, lowest_at};
use super::identify::{interval_problem, Identified};
use super::laws::{log_log_line, Convergence, SumOfPowers};
use super::types::{Estimate, Frontier, Run, Settings};
use crate::train::CostModel;

/// The cost model the allocation is fitted on: C = 6·N_trainable·D.
pub const COST_MODEL: CostModel = CostModel::Trainable;

/// Runs whose final computes, sorted, are within this relative gap of the
/// previous are one isoFLOP budget (isoFLOP grids hold a budget to ±1%, and
/// neighbouring budgets are a factor ≥ 1.5 apart).
pub const BUDGET_GAP: f64 = 0.05;

/// The fewest sizes a budget needs for a parabola, and the fewest points a
/// power law through minima needs to be more than a line through two.
pub const MIN_POINTS: usize = 3;

/// X = coefficient · C^exponent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    /// How X grows with compute.
    pub exponent: f64,
    /// X at C = 1.
    pub coefficient: f64,
}

impl Scaling {
    /// Least squares of log X on log C; `None` with fewer than two distinct C.
    fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let (exponent, intercept) = log_log_line(points)?;
        let coefficient = intercept.exp();
        (exponent.is_finite() && coefficient.is_finite() && coefficient > 0.0)
            .then_some(Scaling { exponent, coefficient })
    }
}

/// N_opt(C) and D_opt(C) of one approach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Allocation {
    /// N_opt = G·C^a.
    pub n_opt: Scaling,
    /// D_opt = H·C^b.
    pub d_opt: Scaling,
}

impl Allocation {
    /// Power laws through (C, N, D) points.
    fn through(points: &[(f64, f64, f64)]) -> Option<Self> {
        let n: Vec<(f64, f64)> = points.iter().map(|&(c, n, _)| (c, n)).collect();
        let d: Vec<(f64, f64)> = points.iter().map(|&(c, _, d)| (c, d)).collect();
        Some(Allocation { n_opt: Scaling::fit(&n)?, d_opt: Scaling::fit(&d)? })
    }

    /// The minimum of L(N, D) = E + A/N^α + B/D^β under C = 6ND (Hoffmann
    /// et al., eq. 4), written against C: N_opt = G·6^−a·C^a, D_opt =
    /// G⁻¹·6^−b·C^b. `None` for a law of other than two terms or with a
    /// non-positive exponent (no interior minimum).
    pub fn of_law(law: &SumOfPowers) -> Option<Self> {
        let [(a_coef, alpha), (b_coef, beta)] = law.terms[..] else { return None };
        if !(alpha > 0.0 && beta > 0.0) {
            return None;
        }
        let (a, b) = (beta / (alpha + beta), alpha / (alpha + beta));
        let g = (alpha * a_coef / (beta * b_coef)).powf(1.0 / (alpha + beta));
        let allocation = Allocation {
            n_opt: Scaling { exponent: a, coefficient: g * 6f64.powf(-a) },
            d_opt: Scaling { exponent: b, coefficient: 6f64.powf(-b) / g },
        };
        (allocation.n_opt.coefficient.is_finite() && allocation.d_opt.coefficient.is_finite() && g > 0.0)
            .then_some(allocation)
    }
}

/// X = coefficient · C^exponent, with intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingFit {
    /// a (for N_opt) or b (for D_opt).
    pub exponent: Estimate,
    /// G (for N_opt) or H (for D_opt).
    pub coefficient: Estimate,
}

impl ScalingFit {
    /// The point estimate at compute `c`.
    pub fn at(&self, c: f64) -> f64 {
        self.coefficient.value * c.powf(self.exponent.value)
    }
}

/// One approach's N_opt(C) and D_opt(C), with intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocationFit {
    /// N_opt = G·C^a.
    pub n_opt: ScalingFit,
    /// D_opt = H·C^b.
    pub d_opt: ScalingFit,
}

/// Approach 1's point at one compute: the run with the lowest loss there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeMinimum {
    /// Compute C = 6·N·D.
    pub compute: f64,
    /// The run.
    pub run: String,
    /// Its trainable N.
    pub n: f64,
    /// Its tokens at that compute, C/6N.
    pub d: f64,
    /// Its loss there.
    pub loss: f64,
}

/// A parabola in log N: loss = c0 + c1·x + c2·x², x = ln N − center.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parabola {
    /// ln N the coefficients are centred on (the sizes' mean; keeps the
    /// normal equations well conditioned).
    pub center: f64,
    /// [c0, c1, c2].
    pub coefficients: [f64; 3],
}

impl Parabola {
    /// Least squares through (N, loss); `None` when the sizes do not
    /// determine three coefficients.
    fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let center = points.iter().map(|p| p.0.ln()).sum::<f64>() / points.len() as f64;
        // Normal equations Σ x^(i+j) · c_j = Σ x^i · y.
        let (mut m, mut v) = ([[0.0f64; 3]; 3], [0.0f64; 3]);
        for &(n, loss) in points {
            let x = n.ln() - center;
            let powers = [1.0, x, x * x];
            for i in 0..3 {
                v[i] += powers[i] * loss;
                for j in 0..3 {
                    m[i][j] += powers[i] * powers[j];
                }
            }
        }
        let coefficients = solve3(m, v)?;
        Some(Parabola { center, coefficients })
    }

    /// The loss at `n`.
    pub fn at(&self, n: f64) -> f64 {
        let x = n.ln() - self.center;
        let [c0, c1, c2] = self.coefficients;
        c0 + c1 * x + c2 * x * x
    }
}

/// Solves the 3×3 system `m·c = v` (Cramer's rule); `None` when singular.
fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let det = |a: [[f64; 3]; 3]| {
        a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
    };
    let d = det(m);
    let scale = m.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max).powi(3);
    if d.is_nan() || d.abs() <= 1e-12 * scale {
        return None;
    }
    let mut c = [0.0; 3];
    for (k, ck) in c.iter_mut().enumerate() {
        let mut mk = m;
        for i in 0..3 {
            mk[i][k] = v[i];
        }
        *ck = det(mk) / d;
    }
    Some(c)
}

/// An isoFLOP profile's minimum.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileMinimum {
    /// N* at the parabola's vertex.
    pub n: f64,
    /// D* = C/6N*.
    pub d: f64,
    /// The parabola's loss there.
    pub loss: f64,
}

/// Approach 2's data for one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopProfile {
    /// The budget: the geometric mean of its runs' final computes.
    pub compute: f64,
    /// (run, N, final loss) of each run in the budget.
    pub points: Vec<(String, f64, f64)>,
    /// Loss against log N, where three sizes or more determine one.
    pub parabola: Option<Parabola>,
    /// Its minimum, or why there is none.
    pub minimum: Identified<ProfileMinimum>,
}

/// What one sample of runs (all, or a bootstrap replicate) gives
/// approaches 1 and 2.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Approach 1's lowest-loss runs.
    pub minima: Vec<EnvelopeMinimum>,
    /// Approach 2's budgets.
    pub profiles: Vec<IsoFlopProfile>,
    /// Approach 1's allocation, or why none.
    pub envelope: Result<Allocation, String>,
    /// Approach 2's allocation, or why none.
    pub isoflop: Result<Allocation, String>,
}

impl Sample {
    /// Approaches 1 and 2 on `runs` (one family).
    pub fn of(runs: &[&Run], settings: &Settings) -> Self {
        let budgets = budgets(runs);
        let minima = match settings.frontier {
            Frontier::Curves => curve_minima(runs, settings),
            Frontier::FinalPoints => final_minima(&budgets),
        };
        let profiles: Vec<IsoFlopProfile> = budgets.iter().map(|b| profile(b)).collect();
        let envelope = envelope_allocation(&minima);
        let isoflop = isoflop_allocation(&profiles);
        Sample { minima, profiles, envelope, isoflop }
    }
}

/// Runs' final computes under [`COST_MODEL`], sorted.
fn finals<'a>(runs: &[&'a Run]) -> Vec<(f64, &'a Run)> {
    let mut ends: Vec<(f64, &Run)> =
        runs.iter().filter_map(|r| final_point(r).map(|p| (COST_MODEL.of(&p.compute), *r))).collect();
    ends.sort_by(|a, b| a.0.total_cmp(&b.0));
    ends
}

/// Approach 1 on whole curves (Hoffmann et al.'s own): at each of
/// `envelope_points` log-spaced computes from the first run's end to the
/// last's, the run whose curve is lowest there. Below the first end no run
/// has finished its schedule (the same reason the frontier starts there).
fn curve_minima(runs: &[&Run], settings: &Settings) -> Vec<EnvelopeMinimum> {
    let ends = finals(runs);
    let (Some(&(lo, _)), Some(&(hi, _))) = (ends.first(), ends.last()) else { return Vec::new() };
    let curves = curves(runs, COST_MODEL, settings.skip_fraction);
    log_grid(lo, hi, settings)
        .filter_map(|c| {
            let (run, loss) = lowest_at(&curves, c)?;
            let n = run.params.trainable as f64;
            Some(EnvelopeMinimum { compute: c, run: run.id.clone(), n, d: c / (6.0 * n), loss })
        })
        .collect()
}

/// Approach 1 on final points: per budget (smallest first) the run that
/// ends lowest, kept where it improves on every smaller budget (a run's
/// loss counts only at the end of its schedule).
fn final_minima(budgets: &[Vec<&Run>]) -> Vec<EnvelopeMinimum> {
    let mut best = f64::INFINITY;
    budgets
        .iter()
        .filter_map(|budget| {
            let run = budget
                .iter()
                .filter_map(|r| final_point(r).map(|p| (*r, p)))
                .min_by(|a, b| a.1.loss.total_cmp(&b.1.loss))?;
            let (run, point) = run;
            if point.loss >= best {
                return None;
            }
            best = point.loss;
            let (compute, n) = (COST_MODEL.of(&point.compute), run.params.trainable as f64);
            Some(EnvelopeMinimum { compute, run: run.id.clone(), n, d: compute / (6.0 * n), loss: point.loss })
        })
        .collect()
}

/// Runs grouped into isoFLOP budgets by [`BUDGET_GAP`], smallest first.
pub fn budgets<'a>(runs: &[&'a Run]) -> Vec<Vec<&'a Run>> {
    let mut out: Vec<Vec<&Run>> = Vec::new();
    let mut previous = f64::NAN;
    for (c, run) in finals(runs) {
        match out.last_mut() {
            Some(budget) if c <= previous * (1.0 + BUDGET_GAP) => budget.push(run),
            _ => out.push(vec![run]),
        }
        previous = c;
    }
    out
}

/// One budget's profile: a parabola in log N through its final losses
/// and its minimum, where the sizes allow one inside their range.
fn profile(budget: &[&Run]) -> IsoFlopProfile {
    let ends: Vec<(&Run, f64, f64)> =
        budget.iter().filter_map(|r| final_point(r).map(|p| (*r, COST_MODEL.of(&p.compute), p.loss))).collect();
    let compute = (ends.iter().map(|e| e.1.ln()).sum::<f64>() / ends.len() as f64).exp();
    let points: Vec<(String, f64, f64)> =
        ends.iter().map(|(r, _, loss)| (r.id.clone(), r.params.trainable as f64, *loss)).collect();
    let mut sizes: Vec<i64> = ends.iter().map(|e| e.0.params.trainable).collect();
    sizes.sort_unstable();
    sizes.dedup();
    // Whether the budget has a parabola is decided here, once; the minimum
    // is looked for only on one.
    let parabola = if sizes.len() < MIN_POINTS {
        Err(format!("{} size(s): a parabola needs {MIN_POINTS}", sizes.len()))
    } else {
        Parabola::fit(&points.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>())
            .ok_or_else(|| "the sizes do not determine a parabola".to_string())
    };
    let minimum = match &parabola {
        Ok(p) => parabola_minimum(p, compute, (sizes[0] as f64, sizes[sizes.len() - 1] as f64)),
        Err(why) => Identified::NotIdentifiable(why.clone()),
    };
    IsoFlopProfile { compute, points, parabola: parabola.ok(), minimum }
}

/// The vertex of `p`, if it opens upward within the sizes `lo..=hi`.
fn parabola_minimum(p: &Parabola, compute: f64, (lo, hi): (f64, f64)) -> Identified<ProfileMinimum> {
    let [_, c1, c2] = p.coefficients;
    if c2.is_nan() || c2 <= 0.0 {
        return Identified::NotIdentifiable("the parabola opens downward: the loss has no minimum in N".into());
    }
    let n = (p.center - c1 / (2.0 * c2)).exp();
    if !(lo..=hi).contains(&n) {
        return Identified::NotIdentifiable(format!(
            "the parabola's minimum N = {n:.3e} lies outside the sampled sizes {lo:.3e}–{hi:.3e}: no extrapolation"
        ));
    }
    Identified::Fitted(ProfileMinimum { n, d: compute / (6.0 * n), loss: p.at(n) })
}

/// Approach 1's power laws, or why none.
fn envelope_allocation(minima: &[EnvelopeMinimum]) -> Result<Allocation, String> {
    let mut sizes: Vec<f64> = minima.iter().map(|m| m.n).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    if minima.len() < MIN_POINTS {
        return Err(format!(
            "{} compute value(s) with a lowest-loss run: a power law needs {MIN_POINTS}",
            minima.len()
        ));
    }
    if sizes.len() < 2 {
        return Err(format!(
            "one size (N = {:.3e}) has the lowest loss at every compute: no trend of N with C",
            sizes[0]
        ));
    }
    Allocation::through(&minima.iter().map(|m| (m.compute, m.n, m.d)).collect::<Vec<_>>())
        .ok_or_else(|| "the lowest-loss runs do not determine a power law".into())
}

/// Approach 2's power laws through the budgets' minima, or why none.
fn isoflop_allocation(profiles: &[IsoFlopProfile]) -> Result<Allocation, String> {
    let minima: Vec<(f64, f64, f64)> =
        profiles.iter().filter_map(|p| p.minimum.fitted().map(|m| (p.compute, m.n, m.d))).collect();
    if minima.len() < MIN_POINTS {
        let shaped = profiles.iter().filter(|p| p.parabola.is_some()).count();
        return Err(format!(
            "{} budget(s) with a minimum inside their sizes ({shaped} of {} with {MIN_POINTS}+ sizes within {:.0}% of one compute): a power law through minima needs {MIN_POINTS}",
            minima.len(),
            profiles.len(),
            100.0 * BUDGET_GAP
        ));
    }
    Allocation::through(&minima).ok_or_else(|| "the minima do not determine a power law".into())
}

/// The three approaches for one family, with the evidence for each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeOptimal {
    /// How compute is counted (C = 6·N·D with N trainable).
    pub cost_model: CostModel,
    /// Approach 1's points: the lowest-loss run at each compute.
    pub envelope_minima: Vec<EnvelopeMinimum>,
    /// Approach 1: power laws through them.
    pub envelope: Identified<AllocationFit>,
    /// Approach 2's budgets.
    pub isoflop_profiles: Vec<IsoFlopProfile>,
    /// Approach 2: power laws through the budgets' minima.
    pub isoflop: Identified<AllocationFit>,
    /// Approach 3: from the fitted L(N, D).
    pub parametric: Identified<AllocationFit>,
    /// How the L(N, D) fit of approach 3 converged (absent without one).
    pub convergence: Option<Convergence>,
    /// Whether the approaches agree on a.
    pub agree_a: Agreement,
    /// Whether the approaches agree on b.
    pub agree_b: Agreement,
}

impl ComputeOptimal {
    /// The approaches in Hoffmann et al.'s order, with their names.
    pub fn approaches(&self) -> [(&'static str, &Identified<AllocationFit>); 3] {
        [("1: envelope", &self.envelope), ("2: isoFLOP profiles", &self.isoflop), ("3: L(N, D)", &self.parametric)]
    }

    /// The column titles of [`ComputeOptimal::rows`].
    pub const COLUMNS: [&'static str; 6] =
        ["approach", "a (95% CI)", "b (95% CI)", "G", "H", "agrees with the others?"];

    /// One row per approach, N_opt = G·C^a and D_opt = H·C^b: the same
    /// cells for `show` and the report. "agrees" is whether its intervals
    /// of a and b overlap every other identified approach's.
    pub fn rows(&self) -> Vec<[String; 6]> {
        let fitted: Vec<Option<&AllocationFit>> = self.approaches().iter().map(|(_, a)| a.fitted()).collect();
        self.approaches()
            .iter()
            .enumerate()
            .map(|(i, (name, approach))| match approach {
                Identified::Fitted(f) => {
                    let others: Vec<&AllocationFit> =
                        fitted.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, o)| *o).collect();
                    let agrees = match others.is_empty() {
                        true => "– (nothing to compare)".to_string(),
                        false if others.iter().all(|o| overlap(f, o)) => "yes".into(),
                        false => "no".into(),
                    };
                    [
                        name.to_string(),
                        f.n_opt.exponent.with_interval(3),
                        f.d_opt.exponent.with_interval(3),
                        format!("{:.3e}", f.n_opt.coefficient.value),
                        format!("{:.3e}", f.d_opt.coefficient.value),
                        agrees,
                    ]
                }
                Identified::NotIdentifiable(why) => [
                    name.to_string(),
                    format!("not identifiable: {why}"),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ],
            })
            .collect()
    }

    /// The verdict in one sentence, for a and b.
    pub fn agreement_sentence(&self) -> String {
        format!("{}; {}.", self.agree_a.sentence("a (N_opt ∝ C^a)"), self.agree_b.sentence("b (D_opt ∝ C^b)"))
    }

    /// How approach 3's L(N, D) fit converged, in one sentence.
    pub fn convergence_sentence(&self) -> String {
        let Some(c) = &self.convergence else {
            return "L(N, D) was not fitted, so there is no convergence to show.".into();
        };
        let verdict = match c.problem() {
            None => "converged".to_string(),
            Some(why) => format!("NOT shown to have converged ({why})"),
        };
        format!(
            "The L(N, D) fit behind approach 3 {verdict}: L-BFGS on the Huber loss (δ = 1e-3) of log residuals stopped with \"{}\" after {} iterations, gradient norm {:.1e} at the optimum; {} of {} initialisations reached the best objective, their exponents within {:.1e} of each other.",
            c.termination, c.iterations, c.gradient_norm, c.at_best, c.starts, c.exponent_spread
        )
    }
}

/// Whether two approaches' intervals of a and of b overlap.
fn overlap(x: &AllocationFit, y: &AllocationFit) -> bool {
    let meets = |p: &Estimate, q: &Estimate| match (p.low, p.high, q.low, q.high) {
        (Some(pl), Some(ph), Some(ql), Some(qh)) => pl <= qh && ql <= ph,
        _ => false,
    };
    meets(&x.n_opt.exponent, &y.n_opt.exponent) && meets(&x.d_opt.exponent, &y.d_opt.exponent)
}

/// Whether the approaches' 95% intervals of one exponent share a value
/// (on a line, every pair overlapping and all sharing a value are the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// Every identified approach's interval contains [low, high].
    Agree {
        /// The largest lower end.
        low: f64,
        /// The smallest upper end.
        high: f64,
    },
    /// Some two intervals are disjoint: `low` (an upper end) < `high` (a lower end).
    Disagree {
        /// The smallest upper end.
        low: f64,
        /// The largest lower end.
        high: f64,
    },
    /// Fewer than two approaches with intervals: nothing to compare.
    Untested(String),
}

impl Agreement {
    fn of(intervals: &[(f64, f64)]) -> Self {
        if intervals.len() < 2 {
            return Agreement::Untested(format!("{} approach(es) with an interval", intervals.len()));
        }
        let low = intervals.iter().map(|i| i.0).fold(f64::NEG_INFINITY, f64::max);
        let high = intervals.iter().map(|i| i.1).fold(f64::INFINITY, f64::min);
        if low <= high {
            Agreement::Agree { low, high }
        } else {
            Agreement::Disagree { low: high, high: low }
        }
    }

    /// One sentence: "agree (every interval contains 0.45–0.46)".
    pub fn sentence(&self, exponent: &str) -> String {
        match self {
            Agreement::Agree { low, high } => {
                format!("the approaches agree on {exponent}: every 95% interval contains {low:.3}–{high:.3}")
            }
            Agreement::Disagree { low, high } => format!(
                "the approaches disagree on {exponent}: one 95% interval ends at {low:.3}, another starts at {high:.3}"
            ),
            Agreement::Untested(why) => format!("{exponent} is not compared: {why}"),
        }
    }
}

/// `pick`'s value over the replicates' allocations.
fn across(replicates: &[Allocation], pick: impl Fn(&Allocation) -> f64) -> Vec<f64> {
    replicates.iter().map(pick).collect()
}

/// An approach's allocation with its intervals, judged: a and b must lie in
/// (0, 1) (more compute buys both a larger model and more tokens) and their
/// intervals must pin them down.
fn allocation_fit(value: &Allocation, replicates: &[Allocation]) -> Identified<AllocationFit> {
    let scaling = |pick: fn(&Allocation) -> Scaling| ScalingFit {
        exponent: Estimate::new(pick(value).exponent, &across(replicates, |r| pick(r).exponent)),
        coefficient: Estimate::new(pick(value).coefficient, &across(replicates, |r| pick(r).coefficient)),
    };
    let fit = AllocationFit { n_opt: scaling(|a| a.n_opt), d_opt: scaling(|a| a.d_opt) };
    let problem = [("a", fit.n_opt.exponent), ("b", fit.d_opt.exponent)].into_iter().find_map(|(name, e)| {
        if !(e.value > 0.0 && e.value < 1.0) {
            Some(format!("{name} = {:.3} is outside (0, 1): more compute would not buy both size and tokens", e.value))
        } else {
            interval_problem(name, &e)
        }
    });
    match problem {
        Some(why) => Identified::NotIdentifiable(why),
        None => Identified::Fitted(fit),
    }
}

/// Approach 3's input: the family's L(N, D) (or why it has none), its
/// replicates, and how its fit converged.
pub struct Parametric<'a> {
    /// The point estimate, or why L(N, D) is not identified.
    pub law: Result<&'a SumOfPowers, String>,
    /// The bootstrap replicates' refits.
    pub replicates: Vec<&'a SumOfPowers>,
    /// The full fit's convergence.
    pub convergence: Option<Convergence>,
}

/// The three approaches for one family: `full` on all its runs,
/// `replicates` on the bootstrap's resamples.
pub fn compute_optimal(full: &Sample, replicates: &[&Sample], parametric: Parametric<'_>) -> ComputeOptimal {
    let judged = |value: &Result<Allocation, String>, reps: Vec<Allocation>| match value {
        Ok(allocation) => allocation_fit(allocation, &reps),
        Err(why) => Identified::NotIdentifiable(why.clone()),
    };
    let envelope = judged(&full.envelope, replicates.iter().filter_map(|r| r.envelope.clone().ok()).collect());
    let isoflop = judged(&full.isoflop, replicates.iter().filter_map(|r| r.isoflop.clone().ok()).collect());
    let parametric_value = parametric.law.and_then(|law| {
        Allocation::of_law(law).ok_or_else(|| "L(N, D) has no interior minimum under C = 6ND".to_string())
    });
    let parametric_fit =
        judged(&parametric_value, parametric.replicates.iter().filter_map(|law| Allocation::of_law(law)).collect());
    let intervals = |pick: fn(&AllocationFit) -> Estimate| -> Vec<(f64, f64)> {
        [&envelope, &isoflop, &parametric_fit]
            .iter()
            .filter_map(|a| a.fitted())
            .filter_map(|f| Some((pick(f).low?, pick(f).high?)))
            .collect()
    };
    let agree_a = Agreement::of(&intervals(|f| f.n_opt.exponent));
    let agree_b = Agreement::of(&intervals(|f| f.d_opt.exponent));
    ComputeOptimal {
        cost_model: COST_MODEL,
        envelope_minima: full.minima.clone(),
        envelope,
        isoflop_profiles: full.profiles.clone(),
        isoflop,
        parametric: parametric_fit,
        convergence: parametric.convergence,
        agree_a,
        agree_b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parametric_optimum_is_hoffmanns_eq_4_and_spends_exactly_c() {
        let law = SumOfPowers { e: 1.69, terms: vec![(406.4, 0.34), (410.7, 0.28)], objective: 0.0 };
        let allocation = Allocation::of_law(&law).unwrap();
        assert!((allocation.n_opt.exponent - 0.28 / 0.62).abs() < 1e-12);
        assert!((allocation.d_opt.exponent - 0.34 / 0.62).abs() < 1e-12);
        let c: f64 = 5.76e23; // Chinchilla's budget
        let (n, d) = (
            allocation.n_opt.coefficient * c.powf(allocation.n_opt.exponent),
            allocation.d_opt.coefficient * c.powf(allocation.d_opt.exponent),
        );
        assert!((6.0 * n * d / c - 1.0).abs() < 1e-9, "N_opt·D_opt = C/6");
        // It is the minimum: L on C = 6ND at N_opt·(1 ± 5%) is higher.
        let loss = |n: f64| 1.69 + 406.4 * n.powf(-0.34) + 410.7 * (c / (6.0 * n)).powf(-0.28);
        assert!(loss(n) < loss(n * 1.05) && loss(n) < loss(n / 1.05), "{n:e}");
    }

    #[test]
    fn a_parabola_recovers_its_vertex_and_says_when_there_is_none() {
        let truth = |n: f64| 3.0 + 0.2 * (n.ln() - 1e8f64.ln()).powi(2);
        let points: Vec<(f64, f64)> = [2e7, 5e7, 1e8, 3e8, 6e8].iter().map(|&n| (n, truth(n))).collect();
        let p = Parabola::fit(&points).unwrap();
        let Identified::Fitted(m) = parabola_minimum(&p, 6e18, (2e7, 6e8)) else { panic!("{p:?}") };
        assert!((m.n / 1e8 - 1.0).abs() < 1e-9 && (m.d - 6e18 / 6e8).abs() < 1e-3 && (m.loss - 3.0).abs() < 1e-9);
        let why = parabola_minimum(&p, 6e18, (2e8, 6e8)).why_not().unwrap().to_string();
        assert!(why.contains("outside the sampled sizes"), "{why}");
        let downward: Vec<(f64, f64)> = points.iter().map(|&(n, l)| (n, 6.0 - l)).collect();
        let why = parabola_minimum(&Parabola::fit(&downward).unwrap(), 6e18, (2e7, 6e8)).why_not().unwrap().to_string();
        assert!(why.contains("opens downward"), "{why}");
        assert!(Parabola::fit(&points[..1]).is_none());
    }

    #[test]
    fn intervals_agree_when_they_share_a_value() {
        assert_eq!(Agreement::of(&[(0.4, 0.5), (0.45, 0.55), (0.48, 0.6)]), Agreement::Agree { low: 0.48, high: 0.5 });
        assert_eq!(
            Agreement::of(&[(0.4, 0.5), (0.45, 0.55), (0.52, 0.6)]),
            Agreement::Disagree { low: 0.5, high: 0.52 }
        );
        assert!(matches!(Agreement::of(&[(0.4, 0.5)]), Agreement::Untested(_)));
    }
}
