//! Models: the paper's GPT with rotary embeddings, its variant layers
//! (frozen, FastFood, block-diagonal + Hadamard) and the Hadamard transform.
//!
//! Imports go one way: `gpt` → `variants` → `layers` (and `hadamard`).

pub mod gpt;
pub mod layers;
pub mod variants;
