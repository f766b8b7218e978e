//! The data path: documents → byte-level BPE → token shards → batches.
//!
//! Pure library code used by the `corpus`, `tokenizer` and `shards` node
//! kinds and by training; nothing here knows about the cache or the graph.

pub mod bpe;
pub mod corpus;
pub mod loader;
pub mod shard;
pub mod tokenize;
