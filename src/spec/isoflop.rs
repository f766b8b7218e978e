//! `isoflop:` sweeps: a declaration that expands, from compute budgets and a
//! number of sizes per budget, into training instances whose compute
//! C = 6·N·D is their budget — the grid of an isoFLOP study.
//!
//! ```yaml
//! train:
//!   kind: train
//!   input: shards
//!   isoflop: { budgets: [1e11, 3e11, 1e12], sizes: 5, aspect: 16, head_dim: 16 }
//!   model: { preset: nano }          # the sweep sets n_layer, n_head, d_model
//!   batch_size: 8                    # and max_tokens
//! ```
//!
//! The rule, per budget C:
//! - the guess of the compute-optimal size is N* = √(C / (6·r)), from
//!   D = r·N with r = `tokens_per_param` (Hoffmann et al.'s ≈ 20);
//! - `sizes` targets are spread log-uniformly over a factor `spread`
//!   (largest N / smallest N) centred on N*;
//! - each target takes the shape nearest to it in log N among
//!   d_model = k·head_dim, n_head = k, n_layer = max(1, round(d_model / aspect))
//!   (or a fixed `n_layer`: N then grows as d², not d³, so small models
//!   come in finer steps), with N counted by the node's kind ([`NodeKind::compute_basis`]: the
//!   trainable non-embedding parameters the fit counts, per variant);
//! - D = C / (6·N) rounded to whole optimiser steps (batch × context), and
//!   6·N·D must then be within ±1% of C, or the file is refused.
//!
//! Instances are named by budget and size after any `matrix:` variables
//! (`train[budget=1e12,size=2]`); their params hold the chosen shape and
//! `max_tokens`, and nothing of the sweep itself, so each key depends on its
//! own run only: adding a budget adds nodes and reruns none.

use std::sync::Arc;

use crate::nodes::{ComputeBasis, NodeKind};
use crate::settings::yaml::{Node, Span, Yaml};
use crate::settings::Value;
use crate::settings::{Field, FieldType, Schema};
use crate::settings::{SourceFile, SpecError};

/// How far 6·N·D may stray from the budget once D is rounded to whole steps.
pub const BUDGET_TOLERANCE: f64 = 0.01;
/// Params an `isoflop:` sweep sets, which the declaration must leave alone.
pub(super) const SET_BY_SWEEP: [&str; 4] = ["max_tokens", "model.n_layer", "model.n_head", "model.d_model"];
/// Widest shape tried (k·head_dim with k up to this): far beyond any budget's guess.
const MAX_HEADS: i64 = 4096;

/// A parsed `isoflop:` mapping.
pub(super) struct Isoflop {
    budgets: Vec<(f64, Span)>,
    sizes: usize,
    aspect: f64,
    /// A fixed depth instead of the aspect rule.
    n_layer: Option<i64>,
    head_dim: i64,
    spread: f64,
    tokens_per_param: f64,
}

/// One instance of an isoFLOP sweep: its budget, its place among the
/// budget's sizes, the shape chosen and the tokens that spend the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct IsoflopPoint {
    /// The compute budget C, in FLOPs.
    pub budget: f64,
    /// 0 for the budget's smallest model.
    pub size: usize,
    /// Blocks.
    pub n_layer: i64,
    /// Heads.
    pub n_head: i64,
    /// Width.
    pub d_model: i64,
    /// N, trainable non-embedding parameters.
    pub trainable: i64,
    /// D, training tokens (`max_tokens`).
    pub tokens: u64,
}

impl IsoflopPoint {
    /// 6·N·D / C: within 1 ± [`BUDGET_TOLERANCE`].
    pub fn budget_ratio(&self) -> f64 {
        6.0 * self.trainable as f64 * self.tokens as f64 / self.budget
    }

    /// The declaration's `params` with this point's shape and tokens (the
    /// paths in [`SET_BY_SWEEP`]).
    pub(super) fn params(&self, params: &Value) -> Value {
        let mut params = with_shape(params, (self.n_layer, self.n_head, self.d_model));
        params.set_path("max_tokens", Value::Int(self.tokens as i64));
        params
    }
}

/// `params` with the model's (n_layer, n_head, d_model) set.
fn with_shape(params: &Value, (n_layer, n_head, d_model): (i64, i64, i64)) -> Value {
    let mut params = params.clone();
    for (path, v) in [("model.n_layer", n_layer), ("model.n_head", n_head), ("model.d_model", d_model)] {
        params.set_path(path, Value::Int(v));
    }
    params
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::required("budgets", FieldType::List(Box::new(FieldType::Float)), "compute budgets C = 6·N·D, in FLOPs"),
        Field::required("sizes", FieldType::Int { min: 3 }, "model sizes per budget (a parabola needs three)"),
        Field::default("aspect", FieldType::Float, Value::Float(32.0), "d_model / n_layer of every shape"),
        Field::optional("n_layer", FieldType::Int { min: 1 }, "a fixed depth for every shape, instead of `aspect`"),
        Field::default("head_dim", FieldType::Int { min: 2 }, Value::Int(64), "width of a head; d_model is a multiple"),
        Field::default(
            "spread",
            FieldType::Float,
            Value::Float(16.0),
            "largest N / smallest N of a budget's sizes, centred on its guess",
        ),
        Field::default(
            "tokens_per_param",
            FieldType::Float,
            Value::Float(20.0),
            "D / N of the guess the sizes are centred on (Hoffmann et al.: about 20)",
        ),
    ])
}

/// Parses and checks an `isoflop:` mapping; problems go to `errors`.
pub(super) fn parse(node: &Node, path: &str, source: &Arc<SourceFile>, errors: &mut Vec<SpecError>) -> Option<Isoflop> {
    let value = schema().validate(node, path, source, errors)?;
    let entry = |name: &str| node.get_path(name);
    let float = |name: &str| value.get_path(name).and_then(Value::as_f64).unwrap_or(0.0);
    let items: Vec<&Node> = match entry("budgets").map(|n| &n.value) {
        Some(Yaml::Seq(items)) => items.iter().collect(),
        _ => entry("budgets").into_iter().collect(), // a single budget, accepted as a list of one
    };
    let budgets: Vec<(f64, Span)> = items
        .iter()
        .map(|n| match n.value {
            Yaml::Int(i) => (i as f64, n.span),
            Yaml::Float(f) => (f, n.span),
            _ => (0.0, n.span),
        })
        .collect();
    let before = errors.len();
    for (i, (budget, span)) in budgets.iter().enumerate() {
        if *budget <= 0.0 {
            errors.push(
                SpecError::new(source, *span, format!("budget {budget} is not a positive number of FLOPs"))
                    .key(format!("{path}.budgets")),
            );
        } else if budgets[..i].iter().any(|(b, _)| b == budget) {
            errors.push(
                SpecError::new(source, *span, format!("budget {} is listed twice", Value::Float(*budget)))
                    .key(format!("{path}.budgets")),
            );
        }
    }
    let mut refuse = |name: &str, message: String, hint: &str| {
        let span = entry(name).map_or(node.span, |n| n.span);
        errors.push(SpecError::new(source, span, message).key(format!("{path}.{name}")).hint(hint));
    };
    if budgets.is_empty() {
        refuse("budgets", "`isoflop:` needs at least one budget".into(), "budgets: [1e11, 3e11, 1e12]");
    }
    let head_dim = value.get_path("head_dim").and_then(Value::as_i64).unwrap_or(64);
    if head_dim % 2 != 0 {
        refuse(
            "head_dim",
            format!("head_dim {head_dim} is odd"),
            "rotary embeddings rotate pairs of a head's dimensions: use an even head_dim",
        );
    }
    if float("aspect") <= 0.0 {
        refuse("aspect", format!("aspect {} must be positive", float("aspect")), "d_model / n_layer, e.g. 32");
    }
    if float("spread") <= 1.0 {
        refuse(
            "spread",
            format!("spread {} must be above 1", float("spread")),
            "the ratio of a budget's largest N to its smallest, e.g. 16",
        );
    }
    if float("tokens_per_param") <= 0.0 {
        refuse("tokens_per_param", format!("tokens_per_param {} must be positive", float("tokens_per_param")), "20");
    }
    if entry("aspect").is_some() && entry("n_layer").is_some() {
        refuse(
            "n_layer",
            "`n_layer` and `aspect` both set the depth".into(),
            "keep `aspect` (depth grows with width) or `n_layer` (one depth for every size)",
        );
    }
    (errors.len() == before).then(|| Isoflop {
        budgets,
        sizes: value.get_path("sizes").and_then(Value::as_i64).unwrap_or(3) as usize,
        aspect: float("aspect"),
        n_layer: value.get_path("n_layer").and_then(Value::as_i64),
        head_dim,
        spread: float("spread"),
        tokens_per_param: float("tokens_per_param"),
    })
}

/// A refusal of one budget: where, what, and what to do.
pub(super) struct Refusal {
    pub span: Span,
    pub message: String,
    pub hint: String,
}

impl Isoflop {
    /// Instances per `matrix:` combination.
    pub(super) fn count(&self) -> usize {
        self.budgets.len() * self.sizes
    }

    /// Every budget's instances for the validated `params` of `kind`, in
    /// budget order then size order; or why a budget cannot be spent.
    pub(super) fn points(&self, kind: &dyn NodeKind, params: &Value) -> Result<Vec<IsoflopPoint>, Vec<Refusal>> {
        let shapes = self.shapes(kind, params);
        let Some(&(_, first)) = shapes.first() else {
            let span = self.budgets.first().map_or(Span { line: 1, col: 1, offset: 0, len: 0 }, |b| b.1);
            return Err(vec![Refusal {
                span,
                message: format!("kind `{}` trains no model that an isoFLOP sweep could size", kind.name()),
                hint: "`isoflop:` sweeps `train` nodes".into(),
            }]);
        };
        let mut points = Vec::new();
        let mut refusals = Vec::new();
        for &(budget, span) in &self.budgets {
            match self.budget_points(budget, &shapes, first.tokens_per_step) {
                Ok(mut p) => points.append(&mut p),
                Err((message, hint)) => refusals.push(Refusal { span, message, hint }),
            }
        }
        if refusals.is_empty() {
            Ok(points)
        } else {
            Err(refusals)
        }
    }

    /// The shape family, smallest first, as (k, basis) with d_model = k·head_dim,
    /// up to well past the largest budget's largest target.
    fn shapes(&self, kind: &dyn NodeKind, params: &Value) -> Vec<(i64, ComputeBasis)> {
        let largest = self.budgets.iter().map(|b| b.0).fold(0.0, f64::max);
        let ceiling = 4.0 * self.guess(largest) * self.spread.sqrt();
        let mut shapes = Vec::new();
        for k in 1..=MAX_HEADS {
            // A shape the kind cannot build (a variant's constraint on d_model) is skipped.
            if let Some(basis) = kind.compute_basis(&with_shape(params, self.shape(k))) {
                shapes.push((k, basis));
                if basis.trainable as f64 > ceiling {
                    break;
                }
            }
        }
        shapes
    }

    /// (n_layer, n_head, d_model) of the k-th shape.
    fn shape(&self, k: i64) -> (i64, i64, i64) {
        let d_model = k * self.head_dim;
        let n_layer = self.n_layer.unwrap_or_else(|| ((d_model as f64 / self.aspect).round() as i64).max(1));
        (n_layer, k, d_model)
    }

    /// N* = √(C / (6·r)): the size that spends C on r tokens per parameter.
    fn guess(&self, budget: f64) -> f64 {
        (budget / (6.0 * self.tokens_per_param)).sqrt()
    }

    fn budget_points(
        &self,
        budget: f64,
        shapes: &[(i64, ComputeBasis)],
        tokens_per_step: u64,
    ) -> Result<Vec<IsoflopPoint>, (String, String)> {
        let c = Value::Float(budget);
        let guess = self.guess(budget);
        // Shapes first, so that a budget too small for its sizes says so
        // rather than failing on the first one's tokens.
        let mut chosen: Vec<(i64, ComputeBasis)> = Vec::new();
        for size in 0..self.sizes {
            let position = size as f64 / (self.sizes - 1) as f64 - 0.5;
            let target = guess * self.spread.powf(position);
            let distance = |s: &(i64, ComputeBasis)| (s.1.trainable as f64 / target).ln().abs();
            let &nearest = shapes.iter().min_by(|a, b| distance(a).total_cmp(&distance(b))).expect("shapes exist");
            if let Some(same) = chosen.iter().position(|s| s.0 == nearest.0) {
                let d_model = self.shape(nearest.0).2;
                return Err(if nearest.0 == shapes[0].0 {
                    (
                        format!(
                            "budget {c} is too small for {} sizes: sizes {same} and {size} both get the smallest shape (d_model {d_model}, N = {}), and its smallest size wants N ≈ {:.0}",
                            self.sizes,
                            nearest.1.trainable,
                            guess / self.spread.sqrt()
                        ),
                        "raise the budget, lower `sizes` or `spread`, or use a smaller `head_dim`".into(),
                    )
                } else {
                    (
                        format!(
                            "sizes {same} and {size} of budget {c} both get d_model {d_model} (N = {}): the shapes are too coarse for {} sizes over a factor {}",
                            nearest.1.trainable, self.sizes, self.spread
                        ),
                        "widen `spread`, lower `sizes`, use a smaller `head_dim` for finer widths, or a fixed `n_layer` (N then grows as d², not d³)".into(),
                    )
                });
            }
            chosen.push(nearest);
        }
        let mut points = Vec::new();
        for (size, (k, basis)) in chosen.into_iter().enumerate() {
            let n = basis.trainable as f64;
            let steps = (budget / (6.0 * n * tokens_per_step as f64)).round().max(1.0) as u64;
            let (n_layer, n_head, d_model) = self.shape(k);
            let point = IsoflopPoint {
                budget,
                size,
                n_layer,
                n_head,
                d_model,
                trainable: basis.trainable,
                tokens: steps * tokens_per_step,
            };
            if (point.budget_ratio() - 1.0).abs() > BUDGET_TOLERANCE {
                return Err((
                    format!(
                        "budget {c} at size {size} (d_model {d_model}, N = {}) needs D = {:.0} tokens, but in steps of {tokens_per_step} tokens {} gives 6·N·D = {:.3} × the budget, outside ±{:.0}%",
                        basis.trainable,
                        budget / (6.0 * n),
                        point.tokens,
                        point.budget_ratio(),
                        100.0 * BUDGET_TOLERANCE
                    ),
                    "raise the budget, or make a step smaller (`batch_size`, `context`)".into(),
                ));
            }
            points.push(point);
        }
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::nodes::Registry;

    fn isoflop(budgets: &[f64], sizes: usize, n_layer: Option<i64>) -> Isoflop {
        let span = Span { line: 1, col: 1, offset: 0, len: 1 };
        Isoflop {
            budgets: budgets.iter().map(|&b| (b, span)).collect(),
            sizes,
            aspect: 16.0,
            n_layer,
            head_dim: 16,
            spread: 16.0,
            tokens_per_param: 20.0,
        }
    }

    /// A train node's validated params, `max_tokens` a placeholder as the loader sets it.
    fn params(batch: i64, context: i64) -> Value {
        let text = format!("model: {{preset: nano}}\nbatch_size: {batch}\ncontext: {context}\nmax_tokens: 1\n");
        let source = Arc::new(SourceFile { path: "t.yaml".into(), text: text.clone() });
        let node = crate::settings::yaml::parse(&text).unwrap();
        let train = Registry::builtin().get("train").unwrap();
        train.schema().validate(&node, "", &source, &mut Vec::new()).expect("valid params")
    }

    #[test]
    fn every_point_spends_its_budget_within_one_percent_on_growing_models() {
        let train = Registry::builtin().get("train").unwrap();
        for (budgets, n_layer) in [(&[1e12, 3e12, 1e13][..], Some(2)), (&[1e14, 1e15, 1e16][..], None)] {
            let iso = isoflop(budgets, 5, n_layer);
            let points = iso.points(train.as_ref(), &params(8, 128)).unwrap_or_else(|r| panic!("{}", r[0].message));
            assert_eq!(points.len(), 15);
            check_points(&points, n_layer);
        }
    }

    fn check_points(points: &[IsoflopPoint], n_layer: Option<i64>) {
        for budget in points.chunks(5) {
            for (size, p) in budget.iter().enumerate() {
                assert_eq!(p.size, size);
                assert!((p.budget_ratio() - 1.0).abs() <= 0.01, "{p:?}: 6ND/C = {}", p.budget_ratio());
                assert_eq!(p.tokens % (8 * 128), 0, "whole steps");
                assert_eq!(p.n_layer, n_layer.unwrap_or(((p.d_model as f64 / 16.0).round() as i64).max(1)));
                assert_eq!(p.d_model, 16 * p.n_head);
            }
            assert!(budget.windows(2).all(|w| w[0].trainable < w[1].trainable), "{budget:?}");
            // The centre is near the guess √(C / 120) and the ends span about the spread.
            let spread = budget[4].trainable as f64 / budget[0].trainable as f64;
            assert!((4.0..64.0).contains(&spread), "spread {spread}: {budget:?}");
        }
    }

    #[test]
    fn a_budget_too_small_for_the_smallest_shape_is_refused() {
        let train = Registry::builtin().get("train").unwrap();
        let Err(refusals) = isoflop(&[1e6], 4, Some(2)).points(train.as_ref(), &params(8, 128)) else {
            panic!("1e6 FLOPs cannot hold four sizes")
        };
        assert!(refusals[0].message.contains("too small"), "{}", refusals[0].message);
    }

    #[test]
    fn a_step_too_coarse_for_one_percent_is_refused() {
        let train = Registry::builtin().get("train").unwrap();
        // Steps of 64 × 1024 tokens: the smallest models need a fraction of one.
        let Err(refusals) = isoflop(&[1e11], 3, Some(2)).points(train.as_ref(), &params(64, 1024)) else {
            panic!("whole steps cannot hit the budget")
        };
        assert!(refusals[0].message.contains("outside ±1%"), "{}", refusals[0].message);
    }
}
