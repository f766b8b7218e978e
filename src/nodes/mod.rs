//! Node kinds: the one trait every step of a study implements.
//!
//! The engine (graph, hash, cache, executor) never matches on a kind: it asks
//! the kind for its schema, version, resources and file inputs, and calls
//! [`NodeKind::run`] with a [`NodeCtx`] that exposes exactly what a node may
//! touch — its params, its inputs' artifact directories (read-only), a fresh
//! output directory, a persistent work directory for checkpoints, a log, a
//! progress handle and a cancellation flag. Kinds never see cache internals:
//! whatever they write to the output directory becomes the artifact, and only
//! after `run` returns `Ok` does the executor commit it.

mod command;
mod compile;
mod corpus;
pub mod fit;
mod report;
pub mod runs;
pub mod select;
mod shards;
mod tokenizer;
mod train;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use command::Command;
pub use compile::Compile;
pub use corpus::Corpus;
pub use fit::Fit;
pub use report::Report;
pub use select::Select;
pub use shards::Shards;
pub use tokenizer::TokenizerKind;
pub use train::Train;

use crate::hash::ContentHash;
use crate::settings::{Schema, Settings, Value};

/// The unique name of one node instance: `tokenizer`, `train[model=small,variant=doped]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Execution slots a node needs while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// CPU slots (the executor has `-j` of them).
    pub cpu: u32,
    /// GPU slots (one per visible device).
    pub gpu: u32,
    /// Run with no GPU when none is visible instead of failing (`device: auto`).
    #[serde(default)]
    pub gpu_optional: bool,
    /// Processes the node runs as, sharing its slots equally (a
    /// data-parallel run's ranks): on Slurm, one task each.
    #[serde(default = "one_task")]
    pub tasks: u32,
}

fn one_task() -> u32 {
    1
}

impl Default for Resources {
    fn default() -> Self {
        Resources { cpu: 1, gpu: 0, gpu_optional: false, tasks: 1 }
    }
}

/// A kind of node: `command`, and later `corpus`, `tokenizer`, `train`, …
///
/// Implementations must be deterministic functions of (params, inputs, file
/// inputs) *in everything they write to the output directory*: the artifact's
/// digest decides whether dependents rebuild (early cut-off). Timings and
/// hostnames belong in metrics, not in artifact files.
pub trait NodeKind: Send + Sync {
    /// The name used in `kind:`.
    fn name(&self) -> &'static str;

    /// Implementation version, hashed into every key. Bump it whenever the
    /// same params and inputs would now produce a different artifact; forget
    /// to, and stale artifacts are served as fresh.
    fn version(&self) -> u32;

    /// Parameter schema: types, defaults, and which fields are hashed.
    fn schema(&self) -> &Schema;

    /// Slots to reserve when a node does not say `resources:`, given its params.
    fn resources_default(&self, _params: &Value) -> Resources {
        Resources::default()
    }

    /// Files outside the cache that the node reads, as paths or globs
    /// relative to the project root. They are hashed by content into the key;
    /// a file the node reads but does not declare is invisible to caching.
    fn file_inputs(&self, _params: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Whether a build stopped at a resumable point ([`NodeError::Suspended`])
    /// resumes where it stopped: such nodes get Slurm's warning signal before
    /// a time limit, to checkpoint (the others are simply rerun).
    fn resumes(&self) -> bool {
        false
    }

    /// What building the node will cost, known before it runs (`scalemake
    /// plan`, `run --dry-run`). `upstream(key)` finds the value of a param
    /// `key` on the nearest node it depends on, directly or not (a `train`
    /// node finds its vocabulary there); it walks the graph only when asked.
    /// `None` for kinds whose cost is small or unknowable.
    fn estimate(&self, _params: &Value, _upstream: &dyn Fn(&str) -> Option<Value>) -> Option<WorkEstimate> {
        None
    }

    /// What compute C = 6·N·D is counted in for the model `params`
    /// describe: N as the fit counts it, and the tokens of one optimiser
    /// step (D comes in whole steps). An `isoflop:` sweep sizes its
    /// instances with it; `None` for kinds that train nothing (they cannot
    /// be swept that way). Needs no `max_tokens`: the sweep sets it.
    fn compute_basis(&self, _params: &Value) -> Option<ComputeBasis> {
        None
    }

    /// What a node declared with `from: <source>` inherits: its params are
    /// these, written over by its own keys. `Err` says why nodes of this
    /// kind cannot be continued (the default).
    fn branch_base(&self, _source: &Value) -> Result<Value, String> {
        Err(format!("`{}` nodes cannot be continued with `from:`", self.name()))
    }

    /// Why a branch's params cannot continue its source's, checked when the
    /// file loads; a wrong `Ok` is caught only when the branch runs.
    fn check_branch(&self, _params: &Value, _source: &Value) -> Result<(), Refusal> {
        Ok(())
    }

    /// Why the params cannot work with the nodes `input:` selects (each
    /// with its sweep values), checked when the file loads: a `select`
    /// names sweep axes that its inputs must have.
    fn check_inputs(&self, _params: &Value, _inputs: &[SweptNode<'_>]) -> Result<(), Refusal> {
        Ok(())
    }

    /// A node this one needs built before it builds, and reads, but that
    /// stays out of its key: an order-only input, as make's `| prerequisite`
    /// (a train node's compiled step, which trains the same model faster).
    /// Nodes whose helpers have the same id share one. `upstream` is as for
    /// [`NodeKind::estimate`].
    fn helper(&self, _params: &Value, _upstream: &dyn Fn(&str) -> Option<Value>) -> Option<Helper> {
        None
    }

    /// What the result depends on in the machine that builds it, besides
    /// params, inputs and files (a torch version, a GPU's compute
    /// capability): hashed into the key as the param `environment`, so a
    /// change is explained like a changed param.
    fn environment(&self, _params: &Value) -> Option<Value> {
        None
    }

    /// Builds the artifact into `ctx.out_dir()`.
    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError>;
}

/// A helper node ([`NodeKind::helper`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Helper {
    /// Its kind, by name.
    pub kind: &'static str,
    /// Its instance name; helpers with the same one are one node.
    pub id: String,
    /// Its params, complete (defaults included).
    pub params: Value,
}

/// The planned cost of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkEstimate {
    /// Parameter counts of the model it trains.
    pub params: crate::train::ParamCounts,
    /// Tokens it processes.
    pub tokens: f64,
    /// Floating-point operations, forward and backward (training FLOPs).
    pub flops: f64,
    /// Whether it computes in bf16 (which peak the GPU-hours use).
    pub bf16: bool,
    /// Assumptions worth saying (e.g. a vocabulary taken as the paper's).
    pub note: Option<String>,
    /// Devices it trains on at once (data-parallel ranks): the GPU-hours
    /// are spread over them.
    pub devices: u32,
}

/// The units of a training node's compute C = 6·N·D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComputeBasis {
    /// N: trainable non-embedding parameters (the paper's and the fit's).
    pub trainable: i64,
    /// Tokens of one optimiser step (batch × context): D is a multiple of it.
    pub tokens_per_step: u64,
}

/// Why a node's params cannot work with its source (`from:`) or its
/// inputs, for a spanned error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The dotted param to point at (a list item by its index:
    /// `group_by.1`; at `from:` when a branch inherited it).
    pub param: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// Why a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node's own logic reports a failure.
    #[error("{0}")]
    Failed(String),
    /// The run was interrupted (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// Asked to stop at a resumable point ([`crate::process::request_suspend`]),
    /// the node checkpointed; building it again resumes from there.
    #[error("suspended after a checkpoint at step {step}; the next build resumes there")]
    Suspended {
        /// The step the checkpoint holds.
        step: u64,
    },
}

impl NodeError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NodeError::Io { path: path.to_path_buf(), source }
    }
}

/// One node an `input:` selects, as [`NodeKind::check_inputs`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct SweptNode<'a> {
    /// Its id.
    pub id: &'a NodeId,
    /// Its declaration.
    pub decl: &'a str,
    /// Its sweep values (`matrix:`, `isoflop:`), in declaration order.
    pub matrix: &'a [(String, Value)],
}

/// The artifact of one upstream node.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The node that built it.
    pub node: NodeId,
    /// Its directory (read-only by convention).
    pub dir: PathBuf,
    /// The node's sweep values, in declaration order (what a `select`
    /// groups by). Not in the key: equal values give equal params.
    pub matrix: Vec<(String, Value)>,
}

/// One `input:` reference with the artifacts it selected.
#[derive(Clone, Debug)]
pub struct Input {
    /// The reference as written.
    pub reference: String,
    /// One artifact per selected node, in file order.
    pub artifacts: Vec<Artifact>,
}

/// A progress update sent to the terminal.
#[derive(Clone, Debug)]
pub enum Progress {
    /// `done` of `total` units.
    Position {
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// `done` of `total` bytes of input, with the documents seen so far:
    /// a bar with bytes/s and an ETA, and documents/s beside it.
    Bytes {
        /// Bytes read.
        done: u64,
        /// Bytes to read.
        total: u64,
        /// Documents so far.
        documents: u64,
    },
    /// A short status line.
    Message(String),
}

/// What a running node may see and do.
pub struct NodeCtx<'a> {
    id: &'a NodeId,
    key: &'a ContentHash,
    experiment: &'a str,
    params: &'a Value,
    inputs: &'a [Input],
    out_dir: &'a Path,
    work_dir: &'a Path,
    root: &'a Path,
    gpus: &'a [usize],
    log: File,
    progress: &'a (dyn Fn(Progress) + Sync),
    cancelled: &'a AtomicBool,
    metrics: BTreeMap<String, f64>,
    summary: Vec<String>,
    warnings: Vec<String>,
}

/// Everything the executor hands a node (kept in one struct so that adding a
/// field does not change every call site).
pub struct NodeCtxParts<'a> {
    /// Node id.
    pub id: &'a NodeId,
    /// The node's key: what it computes (the artifact it builds is stored under it).
    pub key: &'a ContentHash,
    /// The experiment's name.
    pub experiment: &'a str,
    /// Validated params.
    pub params: &'a Value,
    /// Upstream artifacts.
    pub inputs: &'a [Input],
    /// Empty directory that becomes the artifact.
    pub out_dir: &'a Path,
    /// Directory kept across attempts of the same key (checkpoints).
    pub work_dir: &'a Path,
    /// Project root: relative paths in params resolve against it.
    pub root: &'a Path,
    /// GPU ids reserved for the node (empty when it has no GPU slot).
    pub gpus: &'a [usize],
    /// Open log file.
    pub log: File,
    /// Progress sink.
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// Set when the run is interrupted.
    pub cancelled: &'a AtomicBool,
}

impl<'a> NodeCtx<'a> {
    /// Assembles a context (the executor and tests do this).
    pub fn new(parts: NodeCtxParts<'a>) -> Self {
        let NodeCtxParts {
            id,
            key,
            experiment,
            params,
            inputs,
            out_dir,
            work_dir,
            root,
            gpus,
            log,
            progress,
            cancelled,
        } = parts;
        NodeCtx {
            id,
            key,
            experiment,
            params,
            inputs,
            out_dir,
            work_dir,
            root,
            gpus,
            log,
            progress,
            cancelled,
            metrics: BTreeMap::new(),
            summary: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        self.id
    }
    /// This node's key, the same for every attempt at building it (an
    /// external record of the run, such as an MLflow run, is tied to it).
    pub fn key(&self) -> &ContentHash {
        self.key
    }
    /// The name of the experiment the node belongs to.
    pub fn experiment(&self) -> &str {
        self.experiment
    }
    /// Validated params with defaults.
    pub fn params(&self) -> &Value {
        self.params
    }
    /// The params as the kind's typed settings (read once per build).
    pub fn settings<T: Settings>(&self) -> Result<T, NodeError> {
        T::read(self.params).map_err(NodeError::Failed)
    }
    /// Upstream artifacts, one entry per `input:` reference.
    pub fn inputs(&self) -> &[Input] {
        self.inputs
    }
    /// Where to write the artifact.
    pub fn out_dir(&self) -> &Path {
        self.out_dir
    }
    /// Scratch space that survives a crash (for checkpoints).
    pub fn work_dir(&self) -> &Path {
        self.work_dir
    }
    /// Project root.
    pub fn root(&self) -> &Path {
        self.root
    }
    /// GPU ids reserved for this node by the executor.
    pub fn gpus(&self) -> &[usize] {
        self.gpus
    }
    /// The node's log file (also where child processes write).
    pub fn log(&mut self) -> &mut File {
        &mut self.log
    }
    /// Writes one line to the log.
    pub fn log_line(&mut self, line: &str) {
        // A failed log write must not fail the node.
        let _ = writeln!(self.log, "{line}");
    }
    /// Reports progress to the terminal.
    pub fn progress(&self, update: Progress) {
        (self.progress)(update)
    }
    /// True once the user pressed Ctrl-C: stop soon and return `Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
    /// True once this process was asked to stop at a resumable point (a
    /// Slurm job's time-limit warning or preemption): a node that can
    /// checkpoint does so and returns `Suspended`; others just finish.
    pub fn is_suspend_requested(&self) -> bool {
        crate::process::suspend_requested()
    }
    /// Records a number in the manifest (shown by `scalemake show`).
    /// NaN and infinities are left out: JSON cannot hold them.
    pub fn record_metric(&mut self, name: &str, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.to_string(), value);
        }
    }
    /// Adds a human-readable line to the manifest (shown by `scalemake show`).
    pub fn add_summary(&mut self, line: impl Into<String>) {
        self.summary.push(line.into());
    }
    /// Records something the user should act on (a grid to extend): `run`
    /// prints it when the node is built, `show` with the node, and the log
    /// keeps it.
    pub fn warn(&mut self, line: impl Into<String>) {
        let line = line.into();
        self.log_line(&format!("warning: {line}"));
        self.warnings.push(line);
    }
    /// The recorded metrics, summary lines and warnings.
    pub fn into_report(self) -> NodeReport {
        NodeReport { metrics: self.metrics, summary: self.summary, warnings: self.warnings }
    }
    /// The directory of the single upstream artifact that contains `file`
    /// (how a kind finds, say, its tokenizer among its inputs).
    pub fn input_with(&self, file: &str) -> Result<PathBuf, NodeError> {
        let found: Vec<&Artifact> =
            self.inputs.iter().flat_map(|i| &i.artifacts).filter(|a| a.dir.join(file).exists()).collect();
        match found.as_slice() {
            [one] => Ok(one.dir.clone()),
            [] => Err(NodeError::Failed(format!("no input provides `{file}`: add the node that makes it to `input:`"))),
            many => {
                let names: Vec<String> = many.iter().map(|a| a.node.to_string()).collect();
                Err(NodeError::Failed(format!("several inputs provide `{file}` ({}): keep one", names.join(", "))))
            }
        }
    }
}

/// What a node recorded besides its artifact (kept in its manifest).
#[derive(Clone, Debug, Default)]
pub struct NodeReport {
    /// Numbers ([`NodeCtx::record_metric`]).
    pub metrics: BTreeMap<String, f64>,
    /// Lines for `show` ([`NodeCtx::add_summary`]).
    pub summary: Vec<String>,
    /// Warnings ([`NodeCtx::warn`]).
    pub warnings: Vec<String>,
}

/// The node kinds known to this build, by name.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<Arc<dyn NodeKind>>,
}

impl Registry {
    /// A registry with every built-in kind.
    pub fn builtin() -> Self {
        Registry {
            kinds: vec![
                Arc::new(Command::new()),
                Arc::new(Corpus::new()),
                Arc::new(TokenizerKind::new()),
                Arc::new(Shards::new()),
                Arc::new(Train::new()),
                Arc::new(Compile::new()),
                Arc::new(Select::new()),
                Arc::new(Fit::new()),
                Arc::new(Report::new()),
            ],
        }
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn NodeKind>> {
        self.kinds.iter().find(|k| k.name() == name).cloned()
    }

    /// Names of all kinds.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name()).collect()
    }

    /// Every kind's parameters as Markdown: the README's YAML reference,
    /// kept identical to it by `tests/readme.rs`.
    pub fn reference_markdown(&self) -> String {
        let mut out = String::new();
        for name in self.names() {
            let Some(kind) = self.get(name) else { continue };
            out.push_str(&format!(
                "#### `{name}`\n\n| key | type | default | meaning |\n|---|---|---|---|\n{}\n",
                kind.schema().markdown_rows("")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::check_against_schema;

    /// Every kind's settings struct and the schema it declares agree on
    /// every name, type, enum option and default; a kind added to the
    /// registry must be added here.
    #[test]
    fn every_kind_reads_what_its_schema_accepts() {
        let checks: [(&str, fn() -> Result<(), String>); 9] = [
            ("command", check_against_schema::<command::CommandParams>),
            ("corpus", check_against_schema::<corpus::CorpusParams>),
            ("tokenizer", check_against_schema::<tokenizer::TokenizerParams>),
            ("shards", check_against_schema::<shards::ShardsParams>),
            ("train", check_against_schema::<train::TrainParams>),
            ("compile", check_against_schema::<compile::CompileParams>),
            ("select", check_against_schema::<select::SelectParams>),
            ("fit", check_against_schema::<fit::FitParams>),
            ("report", check_against_schema::<report::ReportParams>),
        ];
        let names: Vec<&str> = checks.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, Registry::builtin().names());
        for (name, check) in checks {
            check().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
