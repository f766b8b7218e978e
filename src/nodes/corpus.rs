//! `corpus`: files of text → normalised, de-duplicated documents in three splits.
//!
//! Artifact: `train.jsonl`, `val.jsonl`, `test.jsonl` (one `{"text": …}` per
//! document, in input order) and `stats.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::{NodeCtx, NodeError, NodeKind, Progress};
use crate::data::corpus::{read_all, Format, Split};
use crate::hash::{expand_globs, GlobError};
use crate::settings::{settings, FieldType, Schema, Settings, Value};

/// The files of an input artifact that are documents.
const INPUT_DOCUMENTS: [&str; 4] = ["**/*.txt", "**/*.txt.gz", "**/*.jsonl", "**/*.jsonl.gz"];

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
        /// files, directories or globs: plain text, .gz, or JSONL (with `input:`, the inputs' *.txt and *.jsonl files are read too)
        paths: Vec<String> = [FieldType::List(Box::new(FieldType::Str))] default(Vec::<String>::new()),
        /// auto: by extension (.jsonl[.gz] is JSONL)
        format: Format = [FieldType::Enum(&["auto", "text", "jsonl"])] default(Format::Auto),
        /// JSONL field holding the document
        text_field: String = [FieldType::Str] default("text"),
        /// held-out fractions, assigned by document hash
        split: SplitParams = [FieldType::Struct(SplitParams::schema())] default(Value::Null),
        /// unreadable files: fail, or skip and count
        on_error: OnError = [FieldType::Enum(&["error", "skip"])] default(OnError::Error),
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
        1
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
        let skip_bad = p.on_error == OnError::Skip;
        let rel = expand_globs(ctx.root(), &p.paths).map_err(|e| NodeError::Failed(e.to_string()))?;
        let mut files: Vec<PathBuf> = rel.iter().map(|r| ctx.root().join(r)).collect();
        // Text that another node made (a `command` that fetches a corpus):
        // its documents, not its manifests or licence lists.
        for artifact in ctx.inputs().iter().flat_map(|i| &i.artifacts) {
            for pattern in INPUT_DOCUMENTS {
                match expand_globs(&artifact.dir, &[pattern.to_string()]) {
                    Ok(found) => files.extend(found.iter().map(|r| artifact.dir.join(r))),
                    Err(GlobError::NoMatch { .. }) => {}
                    Err(e) => return Err(NodeError::Failed(e.to_string())),
                }
            }
        }
        if files.is_empty() {
            return Err(NodeError::Failed("no files to read: give `paths:` (files, directories or globs) or an `input:` whose artifact holds .txt or .jsonl files".into()));
        }
        ctx.progress(Progress::Message(format!("reading {} file(s)", files.len())));
        let docs = read_all(&files, p.format, &p.text_field, skip_bad, val, test)
            .map_err(|e| NodeError::Failed(e.to_string()))?;
        for problem in &docs.skipped {
            ctx.log_line(&format!("skipped {problem}"));
        }
        if docs.docs.is_empty() {
            return Err(NodeError::Failed(format!("no documents in {} file(s) (all empty or skipped)", files.len())));
        }
        let mut stats = serde_json::Map::new();
        for split in Split::ALL {
            let path = ctx.out_dir().join(format!("{}.jsonl", split.name()));
            let io = |e| NodeError::io(&path, e);
            let mut out = BufWriter::new(File::create(&path).map_err(io)?);
            let (mut n, mut bytes) = (0usize, 0usize);
            for (_, text) in docs.docs.iter().filter(|(s, _)| *s == split) {
                serde_json::to_writer(&mut out, &serde_json::json!({ "text": text }))
                    .map_err(|e| NodeError::io(&path, e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
                bytes += text.len();
            }
            out.flush().map_err(io)?;
            ctx.record_metric(&format!("{}_documents", split.name()), n as f64);
            ctx.record_metric(&format!("{}_bytes", split.name()), bytes as f64);
            stats.insert(split.name().into(), serde_json::json!({ "documents": n, "bytes": bytes }));
        }
        let total_bytes: usize = docs.docs.iter().map(|(_, t)| t.len()).sum();
        ctx.record_metric("files", files.len() as f64);
        ctx.record_metric("documents", docs.docs.len() as f64);
        ctx.record_metric("bytes", total_bytes as f64);
        ctx.record_metric("duplicates_removed", docs.duplicates as f64);
        ctx.record_metric("files_skipped", docs.skipped.len() as f64);
        stats.insert("documents".into(), docs.docs.len().into());
        stats.insert("bytes".into(), total_bytes.into());
        stats.insert("duplicates_removed".into(), docs.duplicates.into());
        stats.insert("files_skipped".into(), docs.skipped.len().into());
        let path = ctx.out_dir().join("stats.json");
        let text = serde_json::to_string_pretty(&stats).map_err(|e| NodeError::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| NodeError::io(&path, e))?;
        ctx.add_summary(format!(
            "{} documents, {:.1} MB from {} file(s); {} duplicate(s) removed, {} file(s) skipped",
            docs.docs.len(),
            total_bytes as f64 / 1e6,
            files.len(),
            docs.duplicates,
            docs.skipped.len()
        ));
        Ok(())
    }
}
