//! Fitting scaling laws to training runs: compute-efficient envelopes, laws
//! with bootstrap intervals, and the effective-compute multiplier of a
//! variant against the baseline. Pure arithmetic; the `fit` node kind reads
//! runs and writes `fit.json`.

pub mod identify;
pub mod laws;
pub mod study;
