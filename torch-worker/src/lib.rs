//! Everything of scalemake that needs libtorch: devices, models, training.
//! Only the `scalemake-torch` worker binary links this crate; the engine
//! talks to it through a process boundary (see `docs/DESIGN.md`).
#![deny(missing_docs)]

pub mod device;
pub mod distributed;
pub mod model;
pub mod train;
