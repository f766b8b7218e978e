//! Whether the data identifies a law: a fitted law is reported as numbers
//! only when its inputs can pin it down and its bootstrap intervals say
//! they did; otherwise as "not identifiable" with the reason. A law fitted
//! to two sizes, to points still in warmup, or whose exponent's interval
//! spans orders of magnitude is a number without meaning, and a reader of
//! a table cannot tell it from a measured one.

use serde::{Deserialize, Serialize};

use super::types::Estimate;

/// The fewest distinct model sizes a law of a family needs: two sizes fit
/// any two-parameter law exactly, so a third is the first test of it.
pub const MIN_SIZES: usize = 3;

/// The widest range of exponents the fits start from (Hoffmann et al.'s
/// grid, 0–2): an optimum outside it is a step the optimiser put where the
/// data has no trend, not a scaling exponent.
pub const MAX_EXPONENT: f64 = 2.0;

/// The widest 95% interval, as high / low, an identified exponent may have:
/// one order of magnitude.
pub const MAX_INTERVAL_RATIO: f64 = 10.0;

/// Below this an irreducible loss (in nats) has run to its bound of zero.
pub const MIN_CONSTANT: f64 = 1e-3;

/// A law (or a comparison) the data identifies, or why it does not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identified<T> {
    /// Fitted, with intervals that pin it down.
    Fitted(T),
    /// Why the data cannot tell this law's numbers.
    NotIdentifiable(String),
}

impl<T> Identified<T> {
    /// The fitted law, if identified.
    pub fn fitted(&self) -> Option<&T> {
        match self {
            Identified::Fitted(law) => Some(law),
            Identified::NotIdentifiable(_) => None,
        }
    }

    /// Why not, if not identified.
    pub fn why_not(&self) -> Option<&str> {
        match self {
            Identified::Fitted(_) => None,
            Identified::NotIdentifiable(why) => Some(why),
        }
    }
}

/// Why `sizes` distinct model sizes cannot carry a law, if they cannot.
pub fn too_few_sizes(sizes: usize) -> Option<String> {
    (sizes < MIN_SIZES).then(|| format!("{sizes} model size(s): a law needs at least {MIN_SIZES}"))
}

/// Why an exponent is not identified, if it is not: it must be positive
/// (the loss falls), within [`MAX_EXPONENT`], and its interval must exclude
/// zero and span at most [`MAX_INTERVAL_RATIO`].
pub fn exponent_problem(name: &str, e: &Estimate) -> Option<String> {
    if e.value.is_nan() || e.value <= 0.0 {
        return Some(format!("{name} = {:.3}: the loss does not fall", e.value));
    }
    if e.value > MAX_EXPONENT {
        return Some(format!("{name} = {} is outside the 0–{MAX_EXPONENT} a scaling exponent can take: the fit put a step where the data has no trend", sig(e.value)));
    }
    match (e.low, e.high) {
        (Some(lo), Some(hi)) if lo == hi => Some(format!(
            "every bootstrap replicate gave {name} = {}: the optimum sits on a bound and does not move",
            sig(lo)
        )),
        (Some(lo), Some(hi)) if lo <= 0.0 => {
            Some(format!("{name}'s 95% interval [{lo:.3}, {hi:.3}] includes 0: the data cannot tell a trend from none"))
        }
        // An interval above zero is judged as any positive number's: by its width.
        _ => interval_problem(name, e),
    }
}

/// Why a positive constant such as an irreducible loss is not identified,
/// if it is not: it must not have run to zero, and its interval must span
/// at most [`MAX_INTERVAL_RATIO`].
pub fn constant_problem(name: &str, e: &Estimate) -> Option<String> {
    if e.value < MIN_CONSTANT {
        return Some(format!(
            "{name} = {} ran to zero: the data cannot tell this law from one without {name}",
            sig(e.value)
        ));
    }
    interval_problem(name, e)
}

/// Why a positive ratio (a multiplier) is not pinned down, if it is not:
/// its interval must span at most [`MAX_INTERVAL_RATIO`].
pub fn interval_problem(name: &str, e: &Estimate) -> Option<String> {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) if lo <= 0.0 => {
            Some(format!("{name}'s 95% interval [{}, {}] reaches zero", sig(lo), sig(hi)))
        }
        (Some(lo), Some(hi)) if hi / lo > MAX_INTERVAL_RATIO => {
            Some(format!("{name}'s 95% interval [{}, {}] spans a factor of {}", sig(lo), sig(hi), sig(hi / lo)))
        }
        _ => None,
    }
}

/// Three significant digits: 46.2, 0.00512, 1.23e15.
fn sig(v: f64) -> String {
    let magnitude = v.abs().log10().floor();
    if v == 0.0 || !v.is_finite() || !(-4.0..5.0).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    format!("{v:.*}", (2.0 - magnitude).max(0.0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(value: f64, low: f64, high: f64) -> Estimate {
        Estimate { value, low: Some(low), high: Some(high) }
    }

    #[test]
    fn exponents_are_judged_by_sign_range_and_interval() {
        assert_eq!(exponent_problem("α", &est(0.05, 0.04, 0.06)), None);
        assert!(exponent_problem("α", &est(-0.01, -0.02, 0.0)).unwrap().contains("does not fall"));
        // tiny.yaml's L(N) before this check: α_N = 0.0112 [-0.0135, 0.0242].
        assert!(exponent_problem("α_N", &est(0.0112, -0.0135, 0.0242)).unwrap().contains("includes 0"));
        // tiny.yaml's Chinchilla fit: α ≈ 46.
        assert!(exponent_problem("α", &est(46.0, 44.0, 47.0)).unwrap().contains("outside the 0–2"));
        assert!(exponent_problem("β", &est(0.1, 0.005, 0.3)).unwrap().contains("spans a factor of 60.0"));
        assert!(interval_problem("the multiplier", &est(0.49, 0.204, 2.2)).unwrap().contains("spans a factor of 10.8"));
        assert_eq!(interval_problem("the multiplier", &est(0.73, 0.55, 0.86)), None);
        assert_eq!(
            exponent_problem("α", &Estimate { value: 0.3, low: None, high: None }),
            None,
            "no bootstrap: only the value is judged"
        );
        assert!(exponent_problem("α", &est(0.1196, 0.1196, 0.1196)).unwrap().contains("does not move"));
        assert!(constant_problem("E", &est(1e-9, 1e-9, 2e-9)).unwrap().contains("ran to zero"));
        assert_eq!(constant_problem("E", &est(1.7, 1.6, 1.8)), None);
        assert_eq!(too_few_sizes(3), None);
        assert_eq!(
            (sig(46.23), sig(0.005123), sig(1.234e15), sig(-0.0135)),
            ("46.2".into(), "0.00512".into(), "1.23e15".into(), "-0.0135".into())
        );
        assert_eq!(too_few_sizes(2).unwrap(), "2 model size(s): a law needs at least 3");
    }
}
