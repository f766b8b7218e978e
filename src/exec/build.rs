//! Building one node: lock its key, stage, run its kind, commit. The same
//! code serves a local worker thread and `scalemake exec-node` (a Slurm job).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use super::{lock_key, transfer, ExecError, Fingerprinter, Freshness, KeyParts, Message, Workspace, CANCELLED};
use crate::cache::remote::Remote;
use crate::cache::{Cache, CacheError, ManifestInput};
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::nodes::{Artifact, Input, NodeCtx, NodeCtxParts, NodeError, Progress};

/// A node's committed artifact.
pub(super) struct Built {
    pub(super) artifact: ContentHash,
    pub(super) seconds: f64,
    /// Another process built it while we waited for the lock.
    pub(super) by_other: bool,
    /// What the node warned of ([`crate::nodes::NodeCtx::warn`]).
    pub(super) warnings: Vec<String>,
}

/// Why building a node produced no artifact.
#[derive(Debug, thiserror::Error)]
pub(super) enum BuildError {
    /// Ctrl-C (or Slurm's SIGTERM) stopped it: not the node's fault, so it
    /// is not recorded as a failure of its key.
    #[error("cancelled")]
    Cancelled,
    /// The cache could not lock, stage or commit it.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The node's log could not be created.
    #[error("{}: {source}", path.display())]
    Log {
        /// The log file or its directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node kind failed.
    #[error(transparent)]
    Node(NodeError),
}

impl From<NodeError> for BuildError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Cancelled => BuildError::Cancelled,
            other => BuildError::Node(other),
        }
    }
}

/// Builds one node: lock, (re)check, stage, run, commit. Runs on a worker
/// thread (or in `exec-node`); progress and waiting go to `tx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_node(
    plan: &Plan,
    ws: &Workspace<'_>,
    i: usize,
    key: ContentHash,
    parts: &KeyParts,
    inputs: &[Input],
    gpus: &[usize],
    log_path: &Path,
    tx: &mpsc::Sender<Message>,
) -> Result<Built, BuildError> {
    let node = &plan.experiment.nodes[i];
    let cache = ws.cache;
    let lock = lock_key(cache, &key, i, tx)?;
    if let Some(m) = cache.manifest(&key)? {
        return Ok(Built { artifact: m.artifact, seconds: 0.0, by_other: true, warnings: m.warnings });
    }
    let staging = cache.stage(&key, &lock)?;
    let work_dir = cache.work_dir(&key)?;
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Log { path: dir.to_path_buf(), source })?;
    }
    let log =
        std::fs::File::create(log_path).map_err(|source| BuildError::Log { path: log_path.to_path_buf(), source })?;
    let progress = |p: Progress| {
        let _ = tx.send(Message::Progress(i, p));
    };
    let out_dir = staging.out_dir();
    let started = Instant::now();
    let mut ctx = NodeCtx::new(NodeCtxParts {
        id: &node.id,
        key: &key,
        experiment: &plan.experiment.name,
        params: &node.params,
        inputs,
        out_dir: &out_dir,
        work_dir: &work_dir,
        root: ws.root,
        gpus,
        log,
        progress: &progress,
        cancelled: &CANCELLED,
    });
    let outcome = node.kind.run(&mut ctx);
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = outcome {
        ctx.log_line(&format!("scalemake: node failed: {e}"));
        return Err(e.into());
    }
    ctx.log_line(&format!("scalemake: node finished in {seconds:.2}s"));
    let report = ctx.into_report();
    let manifest = cache.commit(staging, Some(log_path), |m| {
        m.node = node.id.0.clone();
        m.kind = node.kind.name().to_string();
        m.kind_version = node.kind.version();
        m.params = parts.params.clone();
        m.inputs = parts
            .inputs
            .iter()
            .map(|(name, artifacts)| ManifestInput { name: name.clone(), artifacts: artifacts.clone() })
            .collect();
        m.files = parts.files.clone();
        m.seconds = seconds;
        m.metrics = report.metrics;
        m.summary = report.summary;
        m.warnings = report.warnings;
    })?;
    drop(lock);
    Ok(Built { artifact: manifest.artifact, seconds, by_other: false, warnings: manifest.warnings })
}

/// The artifact directories of node `i`'s inputs (all built: `keys` known).
pub(super) fn resolve_inputs(plan: &Plan, cache: &Cache, keys: &[Option<ContentHash>], i: usize) -> Vec<Input> {
    plan.experiment.nodes[i]
        .inputs
        .iter()
        .map(|input| Input {
            reference: input.name.clone(),
            artifacts: input
                .nodes
                .iter()
                .filter_map(|&p| {
                    let key = keys[p]?;
                    let node = &plan.experiment.nodes[p];
                    Some(Artifact { node: node.id.clone(), dir: cache.artifact_dir(&key), matrix: node.matrix.clone() })
                })
                .collect(),
        })
        .collect()
}

/// What [`build_one`] did to have its node's artifact.
#[derive(Debug)]
pub enum OneBuild {
    /// It was already in the cache.
    Fresh(ContentHash),
    /// The remote had it: fetched (bytes), verified and committed.
    Fetched(ContentHash, u64),
    /// Built here; with a writable remote, what uploading it did (bytes sent).
    Built(ContentHash, Option<Result<u64, String>>),
}

/// Builds node `i` alone, exactly as the executor would dispatch it (lock,
/// stage, run, commit): `scalemake exec-node`, which each Slurm job runs.
/// Its inputs must be built. With `expected`, its key must still be that one
/// (neither the experiment nor its files changed since it was submitted).
/// With a `remote` (a detached run's, whose submitter is gone), the node is
/// fetched if the remote has it, and uploaded once built, as the
/// coordinator of an attached run would. Fails with [`ExecError::Node`]
/// when the node fails; a failed upload leaves the node built.
pub fn build_one(
    plan: &Plan,
    ws: &Workspace<'_>,
    i: usize,
    expected: Option<ContentHash>,
    gpus: &[usize],
    remote: Option<&Remote>,
) -> Result<OneBuild, ExecError> {
    let node = &plan.experiment.nodes[i];
    let mut fp = Fingerprinter::new(plan, ws.cache, ws.root);
    let mut ancestors = BTreeSet::new();
    let mut stack = plan.inputs_of(i);
    while let Some(p) = stack.pop() {
        if ancestors.insert(p) {
            stack.extend(plan.inputs_of(p));
        }
    }
    let mut digests: Vec<Option<ContentHash>> = vec![None; plan.len()];
    let mut keys: Vec<Option<ContentHash>> = vec![None; plan.len()];
    for &j in plan.topo_order().iter().filter(|j| ancestors.contains(j)) {
        if let Freshness::Fresh { key, artifact } = fp.evaluate(j, &digests) {
            digests[j] = Some(artifact);
            keys[j] = Some(key);
        }
    }
    let (freshness, parts) = fp.evaluate_with_parts(i, &digests);
    fp.finish();
    let key = match freshness {
        Freshness::Fresh { key, .. } | Freshness::Stale { key: Some(key), .. }
            if expected.is_some_and(|e| e != key) =>
        {
            return Err(ExecError::Node(format!(
                "its key is now {} but {} was submitted: the experiment or its files changed since; run `scalemake run` again",
                key.short(),
                expected.map_or_else(String::new, |e| e.short())
            )));
        }
        Freshness::Fresh { artifact, .. } => return Ok(OneBuild::Fresh(artifact)),
        Freshness::Stale { key: Some(key), .. } => key,
        Freshness::Stale { key: None, .. } => {
            return Err(ExecError::Node(format!("the inputs of {} are not all built", node.id)))
        }
        Freshness::Broken { message } => return Err(ExecError::Node(message)),
    };
    let parts = parts.ok_or_else(|| ExecError::Node(format!("no key material for {}", node.id)))?;
    let inputs = resolve_inputs(plan, ws.cache, &keys, i);
    let log = ws.cache.node_log(&plan.experiment.name, &node.id.0);
    // Nobody listens to progress here: the node's log is the record.
    let (tx, _rx) = mpsc::channel();
    if let Some(remote) = remote {
        let fetched = transfer::fetch_if_there(remote, ws.cache, i, &key, &tx).map_err(ExecError::Node)?;
        if let Some(fetched) = fetched {
            return Ok(OneBuild::Fetched(fetched.artifact, fetched.bytes));
        }
    }
    // Every way the build can fail is the node failing (exec-node reports
    // it as such, and the coordinator reads that line back).
    let built =
        build_node(plan, ws, i, key, &parts, &inputs, gpus, &log, &tx).map_err(|e| ExecError::Node(e.to_string()))?;
    let uploaded = remote.filter(|r| !r.read_only()).map(|r| transfer::upload(r, ws.cache, i, &key, &tx));
    Ok(OneBuild::Built(built.artifact, uploaded))
}
