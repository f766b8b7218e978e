//! Fitting scaling laws to training runs: compute-efficient envelopes, laws
//! with bootstrap intervals, the effective-compute multiplier of a variant
//! against the baseline, and the compute-optimal model size and token count
//! by Hoffmann et al.'s three approaches. Pure arithmetic; the `fit` node
//! kind reads runs and writes `fit.json`.

pub mod compare;
mod curves;
pub mod identify;
pub mod laws;
pub mod optimal;
pub mod selection;
pub mod study;
pub mod types;

pub use types::{Estimate, Family, Frontier, Run, RunPoint, Settings};
