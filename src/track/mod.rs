//! Experiment trackers a run reports to besides its artifact: researchers
//! compare runs there, next to runs made by other tools.
//!
//! A leaf like `device` and `process`: node kinds use it, it knows nothing
//! of the cache or the executor. Today there is one, [`mlflow`].

pub mod mlflow;
