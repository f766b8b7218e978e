//! Models: the paper's GPT with rotary embeddings (variants plug in as
//! [`gpt::FeedForward`] parts).

pub mod gpt;
