//! scalemake: make for scaling-law experiments.
//!
//! The pipeline from an experiment file to built artifacts:
//!
//! ```text
//! spec (YAML → validated NodeSpecs) → graph (Plan: DAG, targets)
//!   → hash (node keys, stat cache) → cache (atomic, content-addressed store)
//!   → exec (parallel executor, freshness, reasons) → nodes (kinds behind one trait)
//! ```
//!
//! Each module depends only on those to its left (and on `nodes::NodeKind`,
//! the seam every kind plugs into); kinds never see the cache or executor.
//! `device` (what libtorch sees), `process` (children that die with
//! scalemake) and `track` (experiment trackers such as MLflow) are leaves
//! that kinds use directly. `serve` (the live dashboard) sits beside the
//! CLI: it reads the cache through `exec`, `fit` and `train` and writes
//! nothing.
#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod data;
pub mod device;
pub mod exec;
pub mod fit;
pub mod graph;
pub mod hash;
pub mod nodes;
pub mod process;
pub mod report;
pub mod serve;
pub mod settings;
pub mod spec;
pub mod track;
pub mod train;
pub mod units;
