//! `tokenizer`: trains a byte-level BPE on a corpus's training split.
//!
//! Artifact: `tokenizer.json` (HuggingFace format). Metrics: vocabulary size
//! and compression (UTF-8 bytes per token) on the validation split.

use std::io::{BufRead, BufReader};
use std::path::Path;

use rayon::prelude::*;

use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::data::bpe::{self, BpeSpec};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

settings! {
    /// The settings of a `tokenizer` node.
    pub struct TokenizerParams {
        /// exact vocabulary size, special tokens included (the paper: 50,262)
        vocab_size: usize = [FieldType::Int { min: 257 }] default(50_262),
        /// special tokens, ids 0, 1, …; the first is the end-of-text token
        special_tokens: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(["<|endoftext|>"]),
        /// minimum pair count for a merge
        min_frequency: u64 = [FieldType::Int { min: 0 }] default(0),
    }
}

/// The `tokenizer` node kind.
pub struct TokenizerKind {
    schema: Schema,
}

impl TokenizerKind {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        TokenizerKind { schema: TokenizerParams::schema() }
    }
}

impl Default for TokenizerKind {
    fn default() -> Self {
        Self::new()
    }
}

/// The documents of a corpus split file (`train.jsonl` …).
pub(super) fn read_split(path: &Path) -> Result<Vec<String>, NodeError> {
    let file = std::fs::File::open(path).map_err(|e| NodeError::io(path, e))?;
    BufReader::new(file)
        .lines()
        .map(|line| {
            let line = line.map_err(|e| NodeError::io(path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))?;
            v["text"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| NodeError::Failed(format!("{}: a line has no `text`", path.display())))
        })
        .collect()
}

/// UTF-8 bytes per token of `docs` (0 when empty).
fn bytes_per_token(encoder: &bpe::Encoder, docs: &[String]) -> f64 {
    let bytes: usize = docs.iter().map(String::len).sum();
    let tokens: usize = docs.par_iter().map(|d| encoder.encode(d).len()).sum();
    if tokens == 0 {
        0.0
    } else {
        bytes as f64 / tokens as f64
    }
}

impl NodeKind for TokenizerKind {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resources_default(&self, _params: &Value) -> super::Resources {
        super::Resources { cpu: 2, ..Default::default() }
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let corpus = ctx.input_with("train.jsonl")?;
        let TokenizerParams { vocab_size, special_tokens, min_frequency } = ctx.settings()?;
        let spec = BpeSpec { vocab_size, special_tokens, min_frequency };
        let train = read_split(&corpus.join("train.jsonl"))?;
        let mb: f64 = train.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6;
        ctx.progress(Progress::Message(format!(
            "training BPE ({} tokens) on {} documents, {mb:.1} MB",
            spec.vocab_size,
            train.len()
        )));
        let tokenizer = bpe::train(&spec, train.into_iter()).map_err(NodeError::Failed)?;
        if ctx.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        let path = ctx.out_dir().join("tokenizer.json");
        tokenizer.save(&path, false).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))?;

        ctx.progress(Progress::Message("measuring compression on val".into()));
        let val = read_split(&corpus.join("val.jsonl"))?;
        let encoder = bpe::Encoder::new(&tokenizer).map_err(NodeError::Failed)?;
        let bpt = bytes_per_token(&encoder, &val);
        ctx.record_metric("vocab_size", tokenizer.get_vocab_size(true) as f64);
        ctx.record_metric("val_bytes_per_token", bpt);
        ctx.add_summary(format!(
            "vocabulary {} (special: {}); {bpt:.3} bytes/token on val",
            tokenizer.get_vocab_size(true),
            spec.special_tokens.join(" ")
        ));
        for doc in val.iter().take(3) {
            let sample: String = doc.chars().take(60).collect();
            let ids = encoder.encode(&sample);
            let pieces: Vec<String> = ids
                .iter()
                .map(|&id| bpe::decode(&tokenizer, &[id]).unwrap_or_default().escape_debug().to_string())
                .collect();
            ctx.add_summary(format!("example: {sample:?} → {} tokens: {}", ids.len(), pieces.join("|")));
        }
        Ok(())
    }
}
