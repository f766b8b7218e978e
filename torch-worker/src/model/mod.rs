//! Models: the paper's GPT with rotary embeddings, its variant layers
//! (frozen, FastFood, block-diagonal + Hadamard) and the Hadamard transform.

pub mod gpt;
pub mod hadamard;
pub mod variants;
