//! `shards`: encodes every split of a corpus with a tokenizer into llm.c
//! token shards.
//!
//! Each document is preceded by the end-of-text token (as llm.c and nanoGPT
//! do), so every document boundary — the first included — is marked. Splits
//! are encoded in parallel on all cores in chunks, reassembled in document
//! order and cut every `shard_tokens` tokens into `<split>_<n>.bin`; the same
//! corpus and tokenizer always give byte-identical shards (and so the same
//! artifact digest).

use rayon::prelude::*;

use super::tokenizer::read_split;
use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::data::bpe;
use crate::data::corpus::Split;
use crate::data::shard::{write_shard, ShardsMeta};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

/// Describes the shards (vocabulary size, end-of-text id) for their readers.
pub const META_FILE: &str = "meta.json";

/// Documents encoded per parallel chunk: bounds memory, keeps cores busy.
const CHUNK_DOCS: usize = 4096;

settings! {
    /// The settings of a `shards` node.
    pub struct ShardsParams {
        /// tokens per shard file (the last one may be shorter)
        shard_tokens: usize = [FieldType::Int { min: 1 }] default(100_000_000),
        /// special token written before every document
        eot: String = [FieldType::Str] default("<|endoftext|>"),
    }
}

/// The `shards` node kind.
pub struct Shards {
    schema: Schema,
}

impl Shards {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Shards { schema: ShardsParams::schema() }
    }
}

impl Default for Shards {
    fn default() -> Self {
        Self::new()
    }
}

/// Accumulates tokens and writes full shards as they fill.
struct ShardWriter<'a> {
    dir: &'a std::path::Path,
    split: &'static str,
    per_shard: usize,
    buffer: Vec<u16>,
    written: usize,
    total: usize,
}

impl ShardWriter<'_> {
    fn push(&mut self, tokens: &[u16]) -> Result<(), NodeError> {
        for piece in tokens.chunks(self.per_shard) {
            let room = self.per_shard - self.buffer.len();
            let (now, later) = piece.split_at(room.min(piece.len()));
            self.buffer.extend_from_slice(now);
            if self.buffer.len() == self.per_shard {
                self.flush()?;
            }
            self.buffer.extend_from_slice(later);
        }
        Ok(())
    }

    /// Writes the buffer as the next shard. An empty buffer is written only
    /// as the first shard, so that every split has at least one (maybe empty) file.
    fn flush(&mut self) -> Result<(), NodeError> {
        if self.buffer.is_empty() && self.written > 0 {
            return Ok(());
        }
        let path = self.dir.join(format!("{}_{:06}.bin", self.split, self.written));
        write_shard(&path, &self.buffer).map_err(|e| NodeError::Failed(e.to_string()))?;
        self.total += self.buffer.len();
        self.written += 1;
        self.buffer.clear();
        Ok(())
    }
}

impl NodeKind for Shards {
    fn name(&self) -> &'static str {
        "shards"
    }

    fn version(&self) -> u32 {
        2 // 2: meta.json with the vocabulary size
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resources_default(&self, _params: &Value) -> super::Resources {
        super::Resources { cpu: 2, ..Default::default() }
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let corpus = ctx.input_with("train.jsonl")?;
        let tok_dir = ctx.input_with("tokenizer.json")?;
        let tokenizer = bpe::load(&tok_dir.join("tokenizer.json")).map_err(NodeError::Failed)?;
        let encoder = bpe::Encoder::new(&tokenizer).map_err(NodeError::Failed)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > 65_536 {
            return Err(NodeError::Failed(format!("vocabulary of {vocab} does not fit the shard format's u16 tokens")));
        }
        let ShardsParams { shard_tokens: per_shard, eot: eot_name } = ctx.settings()?;
        let eot = tokenizer
            .token_to_id(&eot_name)
            .ok_or_else(|| NodeError::Failed(format!("the tokenizer has no token `{eot_name}`")))?
            as u16;
        let out_dir = ctx.out_dir().to_path_buf();
        let mut total_bytes = 0usize;
        let mut total_tokens = 0usize;
        for split in Split::ALL {
            let docs = read_split(&corpus.join(format!("{}.jsonl", split.name())))?;
            let mut writer =
                ShardWriter { dir: &out_dir, split: split.name(), per_shard, buffer: Vec::new(), written: 0, total: 0 };
            for (c, chunk) in docs.chunks(CHUNK_DOCS).enumerate() {
                if ctx.is_cancelled() {
                    return Err(NodeError::Cancelled);
                }
                let encoded: Vec<Vec<u16>> = chunk
                    .par_iter()
                    .map(|doc| {
                        let ids = encoder.encode(doc);
                        let mut out = Vec::with_capacity(ids.len() + 1);
                        out.push(eot);
                        out.extend(ids.into_iter().map(|id| id as u16));
                        out
                    })
                    .collect();
                for tokens in encoded {
                    writer.push(&tokens)?;
                }
                ctx.progress(Progress::Position {
                    done: ((c + 1) * CHUNK_DOCS).min(docs.len()) as u64,
                    total: docs.len() as u64,
                });
            }
            writer.flush()?;
            let bytes: usize = docs.iter().map(|d| d.len()).sum();
            ctx.record_metric(&format!("{}_tokens", split.name()), writer.total as f64);
            ctx.record_metric(&format!("{}_shards", split.name()), writer.written as f64);
            ctx.add_summary(format!(
                "{}: {} tokens in {} shard(s) from {} documents",
                split.name(),
                writer.total,
                writer.written,
                docs.len()
            ));
            total_bytes += bytes;
            total_tokens += writer.total;
        }
        let meta = ShardsMeta { eot, format: ShardsMeta::FORMAT.into(), vocab_size: vocab as u32 };
        let meta_path = out_dir.join(META_FILE);
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).map_err(|e| NodeError::Failed(e.to_string()))?)
            .map_err(|e| NodeError::io(&meta_path, e))?;
        let ratio = if total_tokens == 0 { 0.0 } else { total_bytes as f64 / total_tokens as f64 };
        ctx.record_metric("bytes_per_token", ratio);
        ctx.add_summary(format!("{ratio:.3} UTF-8 bytes per token (end-of-text tokens included)"));
        Ok(())
    }
}
