//! `tokenizer`: trains a byte-level BPE on a corpus's training split, or
//! takes one that exists: a tiktoken encoding by name (`pretrained: gpt2`)
//! or any Hugging Face `tokenizer.json` (`file:`).
//!
//! Artifact: `tokenizer.json` (HuggingFace format; trained or copied) or
//! `tiktoken.json` (the encoding's name: its table is compiled into this
//! build). Metrics: vocabulary size and, with a corpus input, compression
//! (UTF-8 bytes per token) on the validation split.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::data::bpe::{self, BpeSpec};
use crate::data::corpus::index::{CorpusIndex, IndexError, INDEX_FILE};
use crate::data::corpus::{in_sample, Split};
use crate::data::tokenize::{TextEncoder, TiktokenSpec, TIKTOKEN_FILE, TOKENIZER_FILE};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

settings! {
    /// The settings of a `tokenizer` node.
    pub struct TokenizerParams {
        /// exact vocabulary size, special tokens included (the paper: 50,262); for training
        vocab_size: usize = [FieldType::Int { min: 257 }] default(50_262),
        /// special tokens, ids 0, 1, …; the first is the end-of-text token; for training
        special_tokens: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(["<|endoftext|>"]),
        /// minimum pair count for a merge; for training
        min_frequency: u64 = [FieldType::Int { min: 0 }] default(0),
        /// train on a deterministic sample of about this many bytes of the training split (0: all of it)
        sample_bytes: u64 = [FieldType::Int { min: 0 }] default(0),
        /// a tiktoken encoding instead of training: gpt2 (= r50k_base), p50k_base, cl100k_base, o200k_base
        pretrained: Option<String> = [FieldType::Str] optional,
        /// a Hugging Face tokenizer.json instead of training (a path in the project)
        file: Option<String> = [FieldType::Str] optional,
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

/// Calls `each` with the documents of `splits` of the corpus in `dir`,
/// showing progress by bytes of the corpus's files.
pub(super) fn corpus_documents(
    ctx: &NodeCtx<'_>,
    dir: &std::path::Path,
    splits: &[Split],
    mut each: impl FnMut(Vec<(Split, String)>) -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let index = CorpusIndex::load(dir).map_err(|e| NodeError::Failed(e.to_string()))?;
    let total = index.source_bytes();
    let bytes_read = AtomicU64::new(0);
    let mut documents = 0u64;
    let mut last = Instant::now();
    index.documents(dir, ctx.root(), splits, &bytes_read, |batch| {
        if ctx.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        documents += batch.len() as u64;
        if last.elapsed() > Duration::from_millis(200) {
            last = Instant::now();
            ctx.progress(Progress::Bytes { done: bytes_read.load(Ordering::Relaxed), total, documents });
        }
        each(batch)
    })
}

impl From<IndexError> for NodeError {
    fn from(e: IndexError) -> Self {
        NodeError::Failed(e.to_string())
    }
}

/// UTF-8 bytes and tokens of `docs`.
fn bytes_and_tokens(encoder: &TextEncoder, docs: &[(Split, String)]) -> (usize, usize) {
    docs.par_iter().map(|(_, d)| (d.len(), encoder.encode(d).len())).reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

impl TokenizerKind {
    /// Trains BPE on the corpus's training split (or a sample of it).
    fn train(&self, ctx: &mut NodeCtx<'_>, p: &TokenizerParams) -> Result<(), NodeError> {
        let corpus = ctx.input_with(INDEX_FILE)?;
        let index = CorpusIndex::load(&corpus)?;
        let train_bytes = index.count(Split::Train).bytes;
        let fraction = if p.sample_bytes == 0 { 1.0 } else { p.sample_bytes as f64 / train_bytes.max(1) as f64 };
        let spec = BpeSpec {
            vocab_size: p.vocab_size,
            special_tokens: p.special_tokens.clone(),
            min_frequency: p.min_frequency,
        };
        ctx.progress(Progress::Message(format!("training BPE ({} tokens)", spec.vocab_size)));
        let sampled = AtomicU64::new(0);
        let sampled_docs = AtomicU64::new(0);
        let (tx, rx) = mpsc::sync_channel::<String>(1 << 14);
        let trained = std::thread::scope(|scope| {
            let ctx = &*ctx;
            let (sampled, sampled_docs) = (&sampled, &sampled_docs);
            let reader = scope.spawn(move || {
                corpus_documents(ctx, &corpus, &[Split::Train], |batch| {
                    for (_, doc) in batch {
                        if fraction < 1.0 && !in_sample(&blake3::hash(doc.as_bytes()), fraction) {
                            continue;
                        }
                        sampled.fetch_add(doc.len() as u64, Ordering::Relaxed);
                        sampled_docs.fetch_add(1, Ordering::Relaxed);
                        // The trainer hung up: it failed, and says why.
                        if tx.send(doc).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(())
                })
            });
            // The trainer's workers block on the channel: they get a pool of
            // their own, or the reader could find no free worker to
            // normalise the batch they wait for.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .build()
                .map_err(|e| NodeError::Failed(format!("cannot start the trainer's threads: {e}")))?;
            let trained = pool.install(|| bpe::train(&spec, rx.into_iter()));
            let read = reader.join().unwrap_or_else(|_| Err(NodeError::Failed("the corpus reader panicked".into())));
            read.and(trained.map_err(NodeError::Failed))
        })?;
        if ctx.is_cancelled() {
            return Err(NodeError::Cancelled);
        }
        let path = ctx.out_dir().join(TOKENIZER_FILE);
        trained.save(&path, false).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))?;
        let (bytes, docs) = (sampled.load(Ordering::Relaxed), sampled_docs.load(Ordering::Relaxed));
        ctx.record_metric("trained_on_bytes", bytes as f64);
        ctx.record_metric("trained_on_documents", docs as f64);
        ctx.add_summary(format!(
            "trained on {docs} documents, {:.1} MB ({:.1}% of the training split{})",
            bytes as f64 / 1e6,
            100.0 * bytes as f64 / train_bytes.max(1) as f64,
            if fraction < 1.0 { format!(", a sample for sample_bytes: {}", p.sample_bytes) } else { String::new() }
        ));
        Ok(())
    }
}

impl NodeKind for TokenizerKind {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn version(&self) -> u32 {
        2 // 2: reads the corpus index; pretrained tokenizers
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn resources_default(&self, _params: &Value) -> super::Resources {
        super::Resources { cpu: 2, ..Default::default() }
    }

    fn file_inputs(&self, params: &Value) -> Vec<String> {
        TokenizerParams::read(params).ok().and_then(|p| p.file).into_iter().collect()
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let p: TokenizerParams = ctx.settings()?;
        match (&p.pretrained, &p.file) {
            (Some(_), Some(_)) => {
                return Err(NodeError::Failed("give `pretrained:` or `file:`, not both".into()));
            }
            (Some(name), None) => {
                TextEncoder::tiktoken(name).map_err(|e| {
                    NodeError::Failed(format!("{e}; a Hugging Face tokenizer goes in `file:` (a tokenizer.json)"))
                })?;
                let path = ctx.out_dir().join(TIKTOKEN_FILE);
                let spec = TiktokenSpec { encoding: name.clone() };
                let json = serde_json::to_vec_pretty(&spec).map_err(|e| NodeError::Failed(e.to_string()))?;
                std::fs::write(&path, json).map_err(|e| NodeError::io(&path, e))?;
            }
            (None, Some(file)) => {
                let source = ctx.root().join(file);
                bpe::load(&source).map_err(NodeError::Failed)?;
                let path = ctx.out_dir().join(TOKENIZER_FILE);
                std::fs::copy(&source, &path).map_err(|e| NodeError::io(&source, e))?;
            }
            (None, None) => self.train(ctx, &p)?,
        }
        let encoder = TextEncoder::load(ctx.out_dir()).map_err(NodeError::Failed)?;
        let vocab = encoder.vocab_size();
        ctx.record_metric("vocab_size", vocab as f64);
        let origin = match (&p.pretrained, &p.file) {
            (Some(name), _) => format!("tiktoken `{name}`"),
            (_, Some(file)) => file.clone(),
            _ => format!("special: {}", p.special_tokens.join(" ")),
        };
        ctx.add_summary(format!("vocabulary {vocab} ({origin}); encoded by {}", encoder.description()));
        // Compression on held-out text, where there is a corpus to measure.
        let Some(corpus) = ctx.input_with(INDEX_FILE).ok() else { return Ok(()) };
        ctx.progress(Progress::Message("measuring compression on val".into()));
        let mut val = Vec::new();
        let (mut bytes, mut tokens) = (0usize, 0usize);
        corpus_documents(ctx, &corpus, &[Split::Val], |batch| {
            let (b, t) = bytes_and_tokens(&encoder, &batch);
            bytes += b;
            tokens += t;
            if val.len() < 3 {
                val.extend(batch.into_iter().take(3 - val.len()));
            }
            Ok(())
        })?;
        let bpt = if tokens == 0 { 0.0 } else { bytes as f64 / tokens as f64 };
        ctx.record_metric("val_bytes_per_token", bpt);
        ctx.add_summary(format!("{bpt:.3} bytes/token on val"));
        for (_, doc) in &val {
            let sample: String = doc.chars().take(60).collect();
            let ids = encoder.encode(&sample);
            let pieces: Vec<String> =
                ids.iter().map(|&id| encoder.decode(&[id]).unwrap_or_default().escape_debug().to_string()).collect();
            ctx.add_summary(format!("example: {sample:?} → {} tokens: {}", ids.len(), pieces.join("|")));
        }
        Ok(())
    }
}
