//! Scaling laws and how they are fitted.
//!
//! - [`PowerLaw`]: L = (X_c / X)^α, least squares on (log X, log L) — the
//!   form of Kaplan et al. and of the paper's fits.
//! - [`SumOfPowers`]: L = E + Σ_j A_j · x_j^(−α_j): one term gives
//!   L = E + A·C^−α (an irreducible loss plus a power law), two terms give
//!   Hoffmann et al.'s L(N, D) = E + A/N^α + B/D^β. Fitted as Hoffmann et
//!   al. do: parameters in log space (E = e^e, A_j = e^{a_j}), predictions
//!   through log-sum-exp, the Huber loss (δ = 1e-3) of the log residuals
//!   minimised by L-BFGS (argmin) from a grid of initialisations, keeping
//!   the best.

use std::cell::{Cell, RefCell};

use argmin::core::{CostFunction, Error, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};

/// L = (x_c / x)^α.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLaw {
    /// Exponent α (the paper's −0.041 is L ∝ C^−0.041, i.e. α = 0.041).
    pub alpha: f64,
    /// Scale x_c.
    pub x_c: f64,
}

impl PowerLaw {
    /// Least squares on (log x, log L); `None` with fewer than two distinct x.
    pub fn fit(points: &[(f64, f64)]) -> Option<Self> {
        let (slope, intercept) = log_log_line(points)?;
        // log L = α·log x_c − α·log x, so slope = −α and intercept = α·log x_c.
        let alpha = -slope;
        let x_c = (intercept / alpha).exp();
        // A flat trend has no scale (α = 0 or x_c beyond f64).
        (alpha != 0.0 && x_c.is_finite() && x_c > 0.0).then_some(PowerLaw { alpha, x_c })
    }

    /// Predicted loss at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        (self.x_c / x).powf(self.alpha)
    }
}

/// The least-squares line log y = slope·log x + intercept through the
/// points with positive x and y, as (slope, intercept); `None` with fewer
/// than two distinct x. Every power law here is fitted through it: the laws
/// of loss ([`PowerLaw`]) and the compute-optimal allocations
/// ([`Scaling`](super::optimal::Scaling)), so they are one regression, not
/// two to keep alike.
pub(super) fn log_log_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0).map(|(x, y)| (x.ln(), y.ln())).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    Some((slope, my - slope * mx))
}

/// L = E + Σ_j A_j · x_j^(−α_j).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SumOfPowers {
    /// Irreducible loss E.
    pub e: f64,
    /// (A_j, α_j) per term.
    pub terms: Vec<(f64, f64)>,
    /// Final Huber objective (sum over points).
    pub objective: f64,
}

/// The Huber loss's threshold on log residuals (Hoffmann et al.).
const HUBER_DELTA: f64 = 1e-3;

impl SumOfPowers {
    /// Parameters in log space: [log E, log A_1, α_1, …].
    fn theta(&self) -> Vec<f64> {
        let mut t = vec![self.e.ln()];
        for (a, alpha) in &self.terms {
            t.push(a.ln());
            t.push(*alpha);
        }
        t
    }

    fn from_theta(theta: &[f64], objective: f64) -> Self {
        SumOfPowers { e: theta[0].exp(), terms: theta[1..].chunks(2).map(|c| (c[0].exp(), c[1])).collect(), objective }
    }

    /// Fits `points` of (features, loss), one feature per term, from every
    /// initialisation of a grid (after Hoffmann et al.'s: log E ∈ [−1, 1],
    /// log A ∈ [0, 25], α ∈ [0, 2]; coarser per term when there are two, so
    /// a fit stays within seconds on two cores); `None` if no start converges.
    ///
    /// Robustness bound (tested): one point in thirty off by 50% moves E by
    /// under 0.1%, A by under 1% and α by under 0.001.
    pub fn fit(points: &[(Vec<f64>, f64)], terms: usize) -> Option<Self> {
        Self::fit_from(points, &Self::grid(terms))
    }

    /// [`SumOfPowers::fit`], with the evidence that the optimiser found the
    /// optimum: Besiroglu et al. (2024) showed that Hoffmann et al.'s own
    /// L(N, D) fit had not converged, so a fit that is not shown to have
    /// converged is not to be trusted.
    pub fn fit_with_convergence(points: &[(Vec<f64>, f64)], terms: usize) -> Option<(Self, Convergence)> {
        let starts = Self::grid(terms);
        let (problem, ends) = Self::descend(points, &starts)?;
        let (best, descent) = Self::best(&ends)?;
        Some((best.clone(), Convergence::of(&problem, starts.len(), &ends, (best, descent), points.len())))
    }

    /// Refits from this fit's parameters only (bootstrap replicates). No
    /// [`Convergence`]: only the point fit's is shown, and a replicate's
    /// would cost a gradient evaluation and a pass over its ends for nothing.
    pub fn refit(&self, points: &[(Vec<f64>, f64)]) -> Option<Self> {
        Self::fit_from(points, &[self.theta()])
    }

    /// The initialisations of [`SumOfPowers::fit`] (log-space parameter vectors).
    fn grid(terms: usize) -> Vec<Vec<f64>> {
        let (e_grid, a_grid, alpha_grid): (&[f64], &[f64], &[f64]) = if terms <= 1 {
            (&[-1.0, -0.5, 0.0, 0.5, 1.0], &[0.0, 5.0, 10.0, 15.0, 20.0, 25.0], &[0.0, 0.5, 1.0, 1.5, 2.0])
        } else {
            (&[-1.0, 0.0, 1.0], &[0.0, 5.0, 10.0, 20.0], &[0.1, 0.5, 1.0])
        };
        let mut starts: Vec<Vec<f64>> = e_grid.iter().map(|&e| vec![e]).collect();
        for _ in 0..terms {
            let mut next = Vec::with_capacity(starts.len() * a_grid.len() * alpha_grid.len());
            for s in &starts {
                for &a in a_grid {
                    for &alpha in alpha_grid {
                        next.push([s.as_slice(), &[a, alpha]].concat());
                    }
                }
            }
            starts = next;
        }
        starts
    }

    /// The best law from the given starts, without the convergence evidence.
    fn fit_from(points: &[(Vec<f64>, f64)], starts: &[Vec<f64>]) -> Option<Self> {
        let (_, ends) = Self::descend(points, starts)?;
        Self::best(&ends).map(|(law, _)| law.clone())
    }

    /// L-BFGS from every start, in the starts' order, keeping the ends that
    /// are laws, with the problem they minimised; `None` beyond
    /// [`MAX_TERMS`] terms.
    fn descend(points: &[(Vec<f64>, f64)], starts: &[Vec<f64>]) -> Option<(HuberLogProblem, Vec<(Self, Descent)>)> {
        use rayon::prelude::*;
        if points.iter().any(|(x, _)| x.len() > MAX_TERMS) || starts.iter().any(|s| s.len() > 1 + 2 * MAX_TERMS) {
            return None;
        }
        let problem = HuberLogProblem::new(points);
        let ends: Vec<(Self, Descent)> = starts
            .par_iter()
            .filter_map(|start| problem.minimize(start.clone()))
            .map(|descent| (Self::from_theta(&descent.theta, descent.objective), descent))
            // A prefactor e^a beyond f64 is no law (it would be written as null).
            .filter(|(law, _)| {
                law.e.is_finite() && law.terms.iter().all(|(a, alpha)| a.is_finite() && alpha.is_finite())
            })
            .collect();
        Some((problem, ends))
    }

    /// The end with the lowest objective (the first of equals).
    fn best(ends: &[(Self, Descent)]) -> Option<(&Self, &Descent)> {
        ends.iter().min_by(|a, b| a.0.objective.total_cmp(&b.0.objective)).map(|(law, descent)| (law, descent))
    }
}

/// Two starts reached the same optimum when their objectives differ by
/// less than this, relative to the best …
const SAME_OPTIMUM: f64 = 1e-6;

/// … or by less than this per point: ½·r² for a log residual r of ~1e-6, far
/// below any measured loss's precision (data exactly on a law has a best
/// objective of ~0, which no relative tolerance can be taken of).
const EXACT: f64 = 1e-12;

/// The widest spread of an exponent among the starts at the best objective
/// of a converged fit: tables print exponents to three decimals, so
/// starts that disagree in the fourth found different optima to a reader.
pub const MAX_EXPONENT_SPREAD: f64 = 1e-4;

/// How a multi-start fit ended: whether the optimiser stopped because it
/// converged, and whether the grid of initialisations agrees on the optimum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    /// Initialisations tried.
    pub starts: usize,
    /// Starts that ended finite within their evaluation budget.
    pub finished: usize,
    /// Finished starts whose objective is the best's (within a relative 1e-6,
    /// or 1e-12 per point).
    pub at_best: usize,
    /// The largest difference of any exponent among those starts.
    pub exponent_spread: f64,
    /// Why L-BFGS stopped on the best start (argmin's termination reason).
    pub termination: String,
    /// L-BFGS iterations of the best start.
    pub iterations: u64,
    /// The objective's gradient norm at the optimum.
    pub gradient_norm: f64,
}

impl Convergence {
    /// The evidence for a fit of `points` points of `problem` from `starts`
    /// initialisations, of which `ends` finished as laws and `best` is the
    /// lowest: whether its descent stopped converged, and how many ends
    /// share its objective and exponents.
    fn of(
        problem: &HuberLogProblem,
        starts: usize,
        ends: &[(SumOfPowers, Descent)],
        (best, descent): (&SumOfPowers, &Descent),
        points: usize,
    ) -> Self {
        let at_best: Vec<&SumOfPowers> = ends
            .iter()
            .map(|(law, _)| law)
            .filter(|law| law.objective - best.objective <= SAME_OPTIMUM * best.objective + EXACT * points as f64)
            .collect();
        let exponent_spread = (0..best.terms.len())
            .map(|j| {
                let alphas = at_best.iter().map(|law| law.terms[j].1);
                alphas.clone().fold(f64::NEG_INFINITY, f64::max) - alphas.fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max);
        let gradient_norm = problem.evaluate(&descent.theta).1.iter().map(|g| g * g).sum::<f64>().sqrt();
        Convergence {
            starts,
            finished: ends.len(),
            at_best: at_best.len(),
            exponent_spread,
            termination: descent.termination.clone(),
            iterations: descent.iterations,
            gradient_norm,
        }
    }

    /// Why the fit is not shown to have converged, if it is not: the best
    /// start must stop because L-BFGS met its tolerance (not its iteration
    /// cap), and a second start must reach the same objective with the same
    /// exponents (a lone best may be a lucky ridge). The gradient norm is
    /// recorded, not judged: its scale is the data's (ln N ≈ 20 multiplies it).
    pub fn problem(&self) -> Option<String> {
        if self.termination != TerminationReason::SolverConverged.text() {
            return Some(format!("the optimiser stopped with \"{}\"", self.termination));
        }
        if self.starts > 1 && self.at_best < 2 {
            return Some(format!("only one of {} initialisations reached the best objective", self.starts));
        }
        (self.exponent_spread > MAX_EXPONENT_SPREAD).then(|| {
            format!("the initialisations at the best objective disagree on an exponent by {:.1e}", self.exponent_spread)
        })
    }
}

/// One start's end.
struct Descent {
    theta: Vec<f64>,
    objective: f64,
    termination: String,
    iterations: u64,
}

/// Σ Huber_δ(log L̂ − log L) with log L̂ = LSE(e, a_1 − α_1·log x_1, …).
struct HuberLogProblem {
    /// log features per point.
    log_x: Vec<Vec<f64>>,
    log_l: Vec<f64>,
}

impl HuberLogProblem {
    fn new(points: &[(Vec<f64>, f64)]) -> Self {
        HuberLogProblem {
            log_x: points.iter().map(|(x, _)| x.iter().map(|v| v.ln()).collect()).collect(),
            log_l: points.iter().map(|(_, l)| l.ln()).collect(),
        }
    }

    /// Objective and gradient at θ. Per point: log L̂ = m + log Σ_j e^{t_j − m}
    /// (m = max t_j), and the softmax weights e^{t_j − m} / Σ reuse the same
    /// exponentials — the fit's hot loop, so one log and (terms) exps.
    fn evaluate(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let mut total = 0.0;
        let mut grad = vec![0.0; theta.len()];
        let terms = theta.len() / 2;
        let mut t = [0.0f64; MAX_TERMS + 1];
        let mut w = [0.0f64; MAX_TERMS + 1];
        for (lx, ll) in self.log_x.iter().zip(&self.log_l) {
            t[0] = theta[0];
            for (j, x) in lx.iter().enumerate() {
                t[j + 1] = theta[1 + 2 * j] - theta[2 + 2 * j] * x;
            }
            let max = t[..=terms].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for j in 0..=terms {
                w[j] = if t[j] == max { 1.0 } else { (t[j] - max).exp() };
                sum += w[j];
            }
            let r = max + sum.ln() - ll;
            let (h, dh) = if r.abs() <= HUBER_DELTA {
                (0.5 * r * r, r)
            } else {
                (HUBER_DELTA * (r.abs() - 0.5 * HUBER_DELTA), HUBER_DELTA * r.signum())
            };
            total += h;
            let scale = dh / sum;
            grad[0] += scale * w[0];
            for (j, x) in lx.iter().enumerate() {
                grad[1 + 2 * j] += scale * w[j + 1];
                grad[2 + 2 * j] -= scale * w[j + 1] * x;
            }
        }
        (total, grad)
    }

    /// L-BFGS from `start`; `None` when it fails or ends non-finite.
    fn minimize(&self, start: Vec<f64>) -> Option<Descent> {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-12)
            .ok()?
            .with_tolerance_cost(1e-15)
            .ok()?;
        let problem = Memoized { problem: self, last: RefCell::new(None), evaluations: Cell::new(0) };
        let result = Executor::new(problem, solver).configure(|s| s.param(start).max_iters(300)).run().ok()?;
        let state = result.state();
        let theta = state.get_best_param()?.clone();
        let objective = state.get_best_cost();
        let termination = state.get_termination_reason().map_or_else(|| "running".into(), |r| r.text().to_string());
        let iterations = state.get_iter();
        (objective.is_finite() && theta.iter().all(|v| v.is_finite())).then_some(Descent {
            theta,
            objective,
            termination,
            iterations,
        })
    }
}

/// The most terms a [`SumOfPowers`] may have (stack buffers in the hot loop).
const MAX_TERMS: usize = 4;

/// Objective evaluations one start may spend. argmin's Moré–Thuente line
/// search can cycle without end on a NaN or flat stretch; a start that
/// needs more than this is abandoned (others in the grid still count).
const MAX_EVALUATIONS: u32 = 5_000;

/// One evaluation of the objective: θ, the cost there and its gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// argmin asks for the cost and then the gradient at the same θ; one
/// evaluation gives both, so the last is kept. Also the start's budget.
struct Memoized<'a> {
    problem: &'a HuberLogProblem,
    last: RefCell<Option<Evaluation>>,
    evaluations: Cell<u32>,
}

impl Memoized<'_> {
    fn at(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), Error> {
        if let Some((t, cost, grad)) = self.last.borrow().as_ref() {
            if t.as_slice() == theta {
                return Ok((*cost, grad.clone()));
            }
        }
        self.evaluations.set(self.evaluations.get() + 1);
        if self.evaluations.get() > MAX_EVALUATIONS {
            return Err(Error::msg("evaluation budget spent"));
        }
        let (cost, grad) = self.problem.evaluate(theta);
        if cost.is_nan() || grad.iter().any(|g| g.is_nan()) {
            return Err(Error::msg("NaN objective"));
        }
        *self.last.borrow_mut() = Some((theta.to_vec(), cost, grad.clone()));
        Ok((cost, grad))
    }
}

impl CostFunction for Memoized<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.at(theta)?.0)
    }
}

impl Gradient for Memoized<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.at(theta)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_recovers_its_parameters() {
        let truth = PowerLaw { alpha: 0.05, x_c: 2.3e8 };
        let points: Vec<(f64, f64)> =
            (0..20).map(|i| 1e3 * 10f64.powf(i as f64 * 0.3)).map(|c| (c, truth.predict(c))).collect();
        let fit = PowerLaw::fit(&points).unwrap();
        assert!((fit.alpha - 0.05).abs() < 1e-9 && (fit.x_c / 2.3e8 - 1.0).abs() < 1e-6, "{fit:?}");
        assert!(PowerLaw::fit(&points[..1]).is_none());
    }

    #[test]
    fn offset_law_recovers_e_a_alpha_despite_an_outlier() {
        let (e, a, alpha) = (1.7, 400.0, 0.3);
        let mut points: Vec<(Vec<f64>, f64)> =
            (0..30).map(|i| 1e6 * 10f64.powf(i as f64 * 0.2)).map(|c| (vec![c], e + a * c.powf(-alpha))).collect();
        points[10].1 *= 1.5; // the documented bound of `fit`: Huber keeps one bad point from dragging it
        let fit = SumOfPowers::fit(&points, 1).unwrap();
        assert!((fit.e - e).abs() / e < 1e-3, "{fit:?}");
        assert!((fit.terms[0].0 - a).abs() / a < 1e-2 && (fit.terms[0].1 - alpha).abs() < 1e-3, "{fit:?}");
    }

    #[test]
    fn chinchilla_form_recovers_both_exponents() {
        let (e, a, alpha, b, beta) = (1.69, 406.4, 0.34, 410.7, 0.28);
        let mut points = Vec::new();
        for n in [1e7, 3e7, 1e8, 3e8, 1e9] {
            for d in [1e9, 3e9, 1e10, 3e10, 1e11] {
                let f: f64 = n;
                points.push((vec![f, d], e + a / f.powf(alpha) + b / d.powf(beta)));
            }
        }
        let fit = SumOfPowers::fit(&points, 2).unwrap();
        assert!((fit.e - e).abs() < 0.02, "{fit:?}");
        assert!((fit.terms[0].1 - alpha).abs() < 0.01 && (fit.terms[1].1 - beta).abs() < 0.01, "{fit:?}");
        let refit = fit.refit(&points).unwrap();
        assert!((refit.e - fit.e).abs() < 1e-6);
        let (_, convergence) = SumOfPowers::fit_with_convergence(&points, 2).unwrap();
        assert_eq!(convergence.problem(), None, "{convergence:?}");
        assert!(convergence.at_best >= 2 && convergence.finished <= convergence.starts, "{convergence:?}");
    }

    #[test]
    fn a_fit_is_not_called_converged_on_the_optimisers_word_alone() {
        let converged = Convergence {
            starts: 432,
            finished: 432,
            at_best: 150,
            exponent_spread: 1e-7,
            termination: "Solver converged".into(),
            iterations: 80,
            gradient_norm: 1e-9,
        };
        assert_eq!(converged.problem(), None);
        let capped = Convergence { termination: "Maximum number of iterations reached".into(), ..converged.clone() };
        assert!(capped.problem().unwrap().contains("Maximum number of iterations"));
        let alone = Convergence { at_best: 1, ..converged.clone() };
        assert!(alone.problem().unwrap().contains("only one of 432"));
        let split = Convergence { exponent_spread: 0.02, ..converged };
        assert!(split.problem().unwrap().contains("disagree on an exponent by 2.0e-2"));
    }
}
