//! `corpus`: files of text → normalised, de-duplicated documents in three splits.
//!
//! Artifact: `index.json` and `documents.zst` (which document of which file
//! goes to which split; no copy of the text, see [`crate::data::corpus::index`]),
//! `copies/` where a copy is kept, and `stats.json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::data::corpus::index::{self, IndexError, Input, Options};
use crate::data::corpus::{Format, Split};
use crate::hash::{expand_globs, GlobError};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

/// The files of an input artifact that are documents.
const INPUT_DOCUMENTS: [&str; 7] =
    ["**/*.txt", "**/*.txt.gz", "**/*.txt.zst", "**/*.jsonl", "**/*.jsonl.gz", "**/*.jsonl.zst", "**/*.parquet"];
/// What to do with a file that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail the node.
    Error,
    /// Skip the file and count it.
    Skip,
}

settings! {
    /// The held-out fractions of a corpus.
    pub struct SplitParams {
        /// fraction of documents
        val: f64 = [FieldType::Float] default(0.005),
        /// fraction of documents
        test: f64 = [FieldType::Float] default(0.005),
    }
}

settings! {
    /// The settings of a `corpus` node.
    pub struct CorpusParams {
        /// files, directories or globs: plain text, JSONL (either also .gz or .zst) or Parquet (with `input:`, the inputs' such files are read too)
        paths: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(Vec::<String>::new()),
        /// auto: by extension (.parquet is Parquet, .jsonl[.gz|.zst] JSONL, else text)
        format: Format = [FieldType::Enum(&["auto", "text", "jsonl", "parquet"])] default(Format::Auto),
        /// JSONL field or Parquet column holding the document
        text_field: String = [FieldType::Str] default("text"),
        /// held-out fractions, assigned by document hash
        split: SplitParams = [FieldType::Struct(SplitParams::schema())] default(Value::Null),
        /// unreadable files: fail, or skip and count
        on_error: OnError = [FieldType::Enum(&["error", "skip"])] default(OnError::Error),
        /// keep a zstd copy of the normalised text in the cache (for inputs that may change or vanish, on a network filesystem say); files from `input:` artifacts are always copied
        keep_copy: bool = [FieldType::Bool] default(false),
    }
}

/// The `corpus` node kind.
pub struct Corpus {
    schema: Schema,
}

impl Corpus {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Corpus { schema: CorpusParams::schema() }
    }
}

impl Default for Corpus {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeKind for Corpus {
    fn name(&self) -> &'static str {
        "corpus"
    }

    fn version(&self) -> u32 {
        2 // 2: an index of the inputs instead of a copy of their text
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn file_inputs(&self, params: &Value) -> Vec<String> {
        CorpusParams::read(params).map(|p| p.paths).unwrap_or_default()
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let p: CorpusParams = ctx.settings()?;
        let SplitParams { val, test } = p.split;
        if !(0.0..1.0).contains(&val) || !(0.0..1.0).contains(&test) || val + test >= 1.0 {
            return Err(NodeError::Failed(format!(
                "split fractions val={val}, test={test} must be in [0, 1) and leave some training data"
            )));
        }
        let rel = expand_globs(ctx.root(), &p.paths).map_err(|e| NodeError::Failed(e.to_string()))?;
        let mut inputs: Vec<Input> =
            rel.iter().map(|r| Input { path: ctx.root().join(r), recorded: r.clone(), copy: p.keep_copy }).collect();
        // Text that another node made (a `command` that fetches a corpus):
        // its documents, not its manifests or licence lists. Copied, since
        // the cache may drop that artifact while this one lives on.
        for artifact in ctx.inputs().iter().flat_map(|i| &i.artifacts) {
            for pattern in INPUT_DOCUMENTS {
                match expand_globs(&artifact.dir, &[pattern.to_string()]) {
                    Ok(found) => inputs.extend(found.iter().map(|r| Input {
                        path: artifact.dir.join(r),
                        recorded: format!("{}:{r}", artifact.node),
                        copy: true,
                    })),
                    Err(GlobError::NoMatch { .. }) => {}
                    Err(e) => return Err(NodeError::Failed(e.to_string())),
                }
            }
        }
        if inputs.is_empty() {
            return Err(NodeError::Failed("no files to read: give `paths:` (files, directories or globs) or an `input:` whose artifact holds text, JSONL or Parquet files".into()));
        }
        let total: u64 = inputs.iter().filter_map(|i| std::fs::metadata(&i.path).ok()).map(|m| m.len()).sum();
        let options =
            Options { format: p.format, text_field: p.text_field, val, test, skip_bad: p.on_error == OnError::Skip };
        let bytes_read = AtomicU64::new(0);
        let started = Instant::now();
        let mut last = Instant::now();
        let out_dir = ctx.out_dir().to_path_buf();
        let built = {
            let ctx = &*ctx;
            index::build(&inputs, &options, &out_dir, &bytes_read, &mut |documents| {
                if last.elapsed() > Duration::from_millis(200) {
                    last = Instant::now();
                    ctx.progress(Progress::Bytes { done: bytes_read.load(Ordering::Relaxed), total, documents });
                }
                !ctx.is_cancelled()
            })
        };
        let index = match built {
            Ok(index) => index,
            Err(IndexError::Cancelled) => return Err(NodeError::Cancelled),
            Err(e) => return Err(NodeError::Failed(e.to_string())),
        };
        let skipped: Vec<(String, String)> =
            index.sources.iter().filter_map(|s| Some((s.path.clone(), s.skipped.clone()?))).collect();
        for (path, why) in &skipped {
            ctx.log_line(&format!("skipped {path}: {why}"));
        }
        let kept: u64 = Split::ALL.iter().map(|&s| index.count(s).documents).sum();
        if kept == 0 {
            return Err(NodeError::Failed(format!("no documents in {} file(s) (all empty or skipped)", inputs.len())));
        }
        let kept_bytes: u64 = Split::ALL.iter().map(|&s| index.count(s).bytes).sum();
        let copied = index.sources.iter().filter(|s| s.copied_from.is_some()).count();
        let mut stats = serde_json::Map::new();
        for split in Split::ALL {
            let count = index.count(split);
            ctx.record_metric(&format!("{}_documents", split.name()), count.documents as f64);
            ctx.record_metric(&format!("{}_bytes", split.name()), count.bytes as f64);
            stats.insert(split.name().into(), serde_json::json!(count));
        }
        let seconds = started.elapsed().as_secs_f64();
        ctx.record_metric("files", inputs.len() as f64);
        ctx.record_metric("documents", kept as f64);
        ctx.record_metric("bytes", kept_bytes as f64);
        ctx.record_metric("source_bytes", total as f64);
        ctx.record_metric("duplicates_removed", index.duplicates as f64);
        ctx.record_metric("empty_removed", index.empty as f64);
        ctx.record_metric("files_skipped", skipped.len() as f64);
        ctx.record_metric("files_copied", copied as f64);
        ctx.record_metric("source_mb_per_second", total as f64 / 1e6 / seconds.max(1e-9));
        stats.insert("files".into(), inputs.len().into());
        stats.insert("source_bytes".into(), total.into());
        stats.insert("documents".into(), kept.into());
        stats.insert("bytes".into(), kept_bytes.into());
        stats.insert("duplicates_removed".into(), index.duplicates.into());
        stats.insert("empty_removed".into(), index.empty.into());
        stats.insert("files_copied".into(), copied.into());
        stats.insert("files_skipped".into(), skipped.len().into());
        stats.insert(
            "skipped".into(),
            skipped.iter().map(|(path, why)| serde_json::json!({ "path": path, "problem": why })).collect(),
        );
        let path = ctx.out_dir().join("stats.json");
        let text = serde_json::to_string_pretty(&stats).map_err(|e| NodeError::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| NodeError::io(&path, e))?;
        ctx.add_summary(format!(
            "{kept} documents, {:.1} MB from {} file(s) ({:.1} MB at {:.1} MB/s); {} duplicate(s) and {} empty removed, {} file(s) skipped",
            kept_bytes as f64 / 1e6,
            inputs.len(),
            total as f64 / 1e6,
            total as f64 / 1e6 / seconds.max(1e-9),
            index.duplicates,
            index.empty,
            skipped.len()
        ));
        if copied > 0 {
            ctx.add_summary(format!(
                "kept a compressed copy of {copied} file(s) in the cache ({})",
                if p.keep_copy { "keep_copy: true" } else { "they come from input artifacts" }
            ));
        } else {
            ctx.add_summary("no copy of the text: the index points at the input files, which readers check by digest");
        }
        Ok(())
    }
}
