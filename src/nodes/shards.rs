//! `shards`: encodes every split of a corpus with a tokenizer into llm.c
//! token shards.
//!
//! Each document is preceded by the end-of-text token (as llm.c and nanoGPT
//! do), so every document boundary — the first included — is marked. Splits
//! are encoded in parallel on all cores in chunks, reassembled in document
//! order and cut every `shard_tokens` tokens into `<split>_<n>.bin`; the same
//! corpus and tokenizer always give byte-identical shards (and so the same
//! artifact digest).

use std::path::Path;

use rayon::prelude::*;

use super::tokenizer::corpus_documents;
use super::{NodeCtx, NodeError, NodeKind};
use crate::data::corpus::index::INDEX_FILE;
use crate::data::corpus::Split;
use crate::data::shard::{ShardFile, ShardsMeta, TokenWidth};
use crate::data::tokenize::{TextEncoder, TIKTOKEN_FILE, TOKENIZER_FILE};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

/// Describes the shards (vocabulary size, end-of-text id) for their readers.
pub const META_FILE: &str = "meta.json";

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

/// Writes one split's tokens, starting a new shard every `per_shard`.
struct ShardWriter<'a> {
    dir: &'a Path,
    split: &'static str,
    per_shard: usize,
    width: TokenWidth,
    current: Option<ShardFile>,
    written: usize,
    total: u64,
    documents: u64,
    bytes: u64,
}

impl ShardWriter<'_> {
    fn push(&mut self, mut tokens: &[u32]) -> Result<(), NodeError> {
        while !tokens.is_empty() {
            if self.current.is_none() {
                self.current = Some(self.open()?);
            }
            let shard = self.current.as_mut().expect("opened above");
            let room = self.per_shard - shard.len() as usize;
            let (now, later) = tokens.split_at(room.min(tokens.len()));
            shard.write(now).map_err(|e| NodeError::Failed(e.to_string()))?;
            if shard.len() as usize == self.per_shard {
                self.close()?;
            }
            tokens = later;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<ShardFile, NodeError> {
        let path = self.dir.join(format!("{}_{:06}.bin", self.split, self.written));
        self.written += 1;
        ShardFile::create(&path, self.width).map_err(|e| NodeError::Failed(e.to_string()))
    }

    fn close(&mut self) -> Result<(), NodeError> {
        if let Some(shard) = self.current.take() {
            self.total += shard.finish().map_err(|e| NodeError::Failed(e.to_string()))?;
        }
        Ok(())
    }

    /// Closes the last shard; a split without tokens still gets one (empty) file.
    fn finish(&mut self) -> Result<(), NodeError> {
        if self.current.is_none() && self.written == 0 {
            self.current = Some(self.open()?);
        }
        self.close()
    }
}

/// The directory of the tokenizer among a node's inputs.
fn tokenizer_input(ctx: &NodeCtx<'_>) -> Result<std::path::PathBuf, NodeError> {
    ctx.input_with(TIKTOKEN_FILE).or_else(|_| ctx.input_with(TOKENIZER_FILE))
}

impl NodeKind for Shards {
    fn name(&self) -> &'static str {
        "shards"
    }

    fn version(&self) -> u32 {
        3 // 2: meta.json with the vocabulary size; 3: from the corpus index, u32 tokens for wide vocabularies
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resources_default(&self, _params: &Value) -> super::Resources {
        super::Resources { cpu: 2, ..Default::default() }
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let corpus = ctx.input_with(INDEX_FILE)?;
        let encoder = TextEncoder::load(&tokenizer_input(ctx)?).map_err(NodeError::Failed)?;
        let vocab = encoder.vocab_size();
        let width = TokenWidth::for_vocab(vocab);
        let ShardsParams { shard_tokens: per_shard, eot: eot_name } = ctx.settings()?;
        let eot = encoder
            .token_id(&eot_name)
            .ok_or_else(|| NodeError::Failed(format!("the tokenizer has no token `{eot_name}`")))?;
        let out_dir = ctx.out_dir().to_path_buf();
        let mut writers: Vec<ShardWriter<'_>> = Split::ALL
            .iter()
            .map(|split| ShardWriter {
                dir: &out_dir,
                split: split.name(),
                per_shard,
                width,
                current: None,
                written: 0,
                total: 0,
                documents: 0,
                bytes: 0,
            })
            .collect();
        let started = std::time::Instant::now();
        // Encoding (all cores) and writing (one thread, in order) overlap:
        // batch n is written while batch n + 1 is encoded.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Split, usize, Vec<u32>)>>(2);
        let mut writers = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<Vec<ShardWriter<'_>>, NodeError> {
                for batch in rx {
                    for (split, bytes, tokens) in batch {
                        let writer = &mut writers[split as usize];
                        writer.documents += 1;
                        writer.bytes += bytes as u64;
                        writer.push(&tokens)?;
                    }
                }
                Ok(writers)
            });
            let read = corpus_documents(ctx, &corpus, &Split::ALL, |batch| {
                let encoded: Vec<(Split, usize, Vec<u32>)> = batch
                    .into_par_iter()
                    .map(|(split, doc)| {
                        let ids = encoder.encode(&doc);
                        let mut out = Vec::with_capacity(ids.len() + 1);
                        out.push(eot);
                        out.extend(ids);
                        (split, doc.len(), out)
                    })
                    .collect();
                // A send fails only when the writer stopped; its error says why.
                tx.send(encoded).map_err(|_| NodeError::Failed("the shard writer stopped".into()))
            });
            drop(tx);
            let written = writer.join().unwrap_or_else(|_| Err(NodeError::Failed("the shard writer panicked".into())));
            match (read, written) {
                (_, Err(e)) | (Err(e), _) => Err(e),
                (Ok(()), Ok(writers)) => Ok(writers),
            }
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let mut stats = serde_json::Map::new();
        let (mut total_bytes, mut total_tokens) = (0u64, 0u64);
        for writer in &mut writers {
            writer.finish()?;
            let name = writer.split;
            ctx.record_metric(&format!("{name}_tokens"), writer.total as f64);
            ctx.record_metric(&format!("{name}_shards"), writer.written as f64);
            ctx.add_summary(format!(
                "{name}: {} tokens in {} shard(s) from {} documents",
                writer.total, writer.written, writer.documents
            ));
            stats.insert(
                name.into(),
                serde_json::json!({
                    "documents": writer.documents, "bytes": writer.bytes,
                    "tokens": writer.total, "shards": writer.written,
                }),
            );
            total_bytes += writer.bytes;
            total_tokens += writer.total;
        }
        let meta = ShardsMeta { eot, format: ShardsMeta::format_of(width).into(), vocab_size: vocab as u32 };
        let meta_path = out_dir.join(META_FILE);
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).map_err(|e| NodeError::Failed(e.to_string()))?)
            .map_err(|e| NodeError::io(&meta_path, e))?;
        let stats_path = out_dir.join("stats.json");
        let stats_json = serde_json::to_vec_pretty(&stats).map_err(|e| NodeError::Failed(e.to_string()))?;
        std::fs::write(&stats_path, stats_json).map_err(|e| NodeError::io(&stats_path, e))?;
        let ratio = if total_tokens == 0 { 0.0 } else { total_bytes as f64 / total_tokens as f64 };
        ctx.record_metric("bytes_per_token", ratio);
        ctx.record_metric("mb_per_second", total_bytes as f64 / 1e6 / seconds.max(1e-9));
        ctx.add_summary(format!("{ratio:.3} UTF-8 bytes per token (end-of-text tokens included)"));
        ctx.add_summary(format!(
            "encoded {:.1} MB in {seconds:.1} s ({:.1} MB/s) by {}; {} tokens",
            total_bytes as f64 / 1e6,
            total_bytes as f64 / 1e6 / seconds.max(1e-9),
            encoder.description(),
            match width {
                TokenWidth::U16 => "u16",
                TokenWidth::U32 => "u32 (vocabulary past 65,536)",
            }
        ));
        Ok(())
    }
}
