//! The executor: drains a [`Plan`], building stale nodes in parallel.
//!
//! One coordinator thread owns the scheduling state, the terminal and the
//! state log; each running node gets a worker thread that builds into a
//! staging directory and commits it. Workers talk to the coordinator only
//! through `Message`s. Commits happen in the worker (they hash the
//! artifact, which may be large, and must not stall scheduling) but only
//! after `run` succeeded; the coordinator then records the new digest and
//! re-evaluates dependents, which gives early cut-off for free: a rebuilt
//! node with an unchanged digest leaves its dependents' keys unchanged.
//!
//! Failure policy (like make): without `--keep-going` the first failure stops
//! new work and lets running nodes finish; with it, everything not
//! downstream of a failure is built. Ctrl-C cancels running nodes, whose
//! staging directories are deleted: nothing partial is ever committed.
//!
//! The parts: `coordinator` (the [`RunState`] and its loop, shared by both
//! backends through the `Runner` trait), `slots` (CPU and GPU slots of the
//! local backend), `local` (worker threads), [`slurm`] (one job per node),
//! `build` (one node: lock, stage, run, commit), [`fingerprint`] (keys and
//! freshness), `progress` (the terminal), `transfer` (fetches from and
//! uploads to the remote cache, on threads of their own).

mod build;
mod coordinator;
pub mod fingerprint;
mod local;
mod progress;
mod slots;
pub mod slurm;
mod transfer;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use build::{build_one, OneBuild};
use build::{BuildError, Built};
use coordinator::{coordinate, Message, Outcome, RunState, Runner, Start};
pub use fingerprint::{DirtyReason, Fingerprinter, Freshness, KeyParts, STAT_CACHE_FILE};
use slots::Slots;
pub use transfer::{pull, push, Pulled, Pushed};

use crate::cache::remote::Remote;
use crate::cache::{Cache, CacheError, KeyLock};
use crate::graph::Plan;
use crate::hash::{ContentHash, StatCache};
use crate::nodes::Input;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// CPU slots (`-j`).
    pub jobs: usize,
    /// GPU slots, one per visible device; `None`: ask libtorch (through the
    /// worker, ~0.3 s) when a node first needs one, so no-op runs never pay.
    pub gpus: Option<usize>,
    /// Build everything not downstream of a failure.
    pub keep_going: bool,
    /// Targets (empty: all).
    pub targets: Vec<String>,
    /// Show progress bars (else plain lines).
    pub progress_bars: bool,
    /// Where nodes run.
    pub backend: Backend,
    /// The remote cache: stale nodes it has are fetched instead of built;
    /// what is built here is uploaded unless it is read-only.
    pub remote: Option<Arc<Remote>>,
}

/// Where ready nodes run.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// Worker threads of this process.
    #[default]
    Local,
    /// One Slurm job per node, submitted when the node is ready (boxed:
    /// its options dwarf the local case, which every test run passes).
    Slurm(Box<slurm::SlurmOptions>),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Node ids built now.
    pub built: Vec<String>,
    /// Node ids fetched from the remote (verified) instead of built.
    pub fetched: Vec<String>,
    /// Node ids uploaded to the remote.
    pub uploaded: Vec<String>,
    /// Node ids built here whose upload failed, with the error (their
    /// artifacts are fine locally; `scalemake push` retries).
    pub upload_failed: Vec<(String, String)>,
    /// Node ids that were already fresh.
    pub fresh: Vec<String>,
    /// Node ids that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Node ids not built because an upstream failed or the run stopped.
    pub skipped: Vec<String>,
    /// Ctrl-C was pressed.
    pub cancelled: bool,
}

/// Errors that stop the executor itself (not a node failure).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Bad target selection.
    #[error("{0}")]
    Target(String),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Slurm could not be used.
    #[error(transparent)]
    Slurm(#[from] slurm::SlurmError),
    /// The remote cache could not be used (`push`, `pull`).
    #[error(transparent)]
    Remote(#[from] crate::cache::remote::RemoteError),
    /// `exec-node`'s node failed, or cannot be built as asked (its key
    /// changed, its inputs are not built). Every failure of the build itself
    /// (a cache error while staging or committing included) is this one:
    /// `exec-node` reports it as the node failing, which the Slurm
    /// coordinator reads back.
    #[error("{0}")]
    Node(String),
}

/// Set by the Ctrl-C handler; checked by the coordinator and by nodes.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Where a run reads and writes.
pub struct Workspace<'a> {
    /// Project root: commands run here, relative paths resolve here.
    pub root: &'a Path,
    /// The cache.
    pub cache: &'a Cache,
}

/// Builds the selected targets of `plan`.
pub fn run(plan: &Plan, ws: &Workspace<'_>, opts: &RunOptions) -> Result<RunSummary, ExecError> {
    let (tx, rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        let mut state = RunState::new(plan, ws, opts)?;
        if let Some(remote) = opts.remote.as_deref() {
            let jobs = transfer::spawn(scope, remote, ws.cache, &tx);
            state = state.with_remote(jobs, remote.keys().map_err(|e| e.to_string()), !remote.read_only());
        }
        match &opts.backend {
            Backend::Local => {
                // `status` and `serve` show the nodes this run will build as queued while it lives.
                let _announced = ws.cache.announce_run(&plan.experiment.name, state.selected_ids())?;
                Ok(coordinate(state, &mut local::LocalRunner::new(scope, plan, ws, opts, tx), &rx))
            }
            Backend::Slurm(options) => Ok(coordinate(state, &mut slurm::SlurmRunner::new(plan, ws, options, tx)?, &rx)),
        }
    })
}

/// The state of every node without building anything (for `status`, `dag`,
/// `--dry-run`): fresh nodes resolve their digests so that downstream keys
/// can be computed as far as possible.
pub fn survey(plan: &Plan, ws: &Workspace<'_>) -> Vec<Freshness> {
    let started = Instant::now();
    let mut fp = Fingerprinter::new(plan, ws.cache, ws.root);
    tracing::debug!("stat cache and state log loaded in {:?}", started.elapsed());
    let out = evaluate_all(plan, &mut fp);
    let evaluated = started.elapsed();
    fp.finish();
    tracing::debug!("nodes evaluated at {evaluated:?}, stat cache saved at {:?}", started.elapsed());
    out
}

/// [`survey`] for a reader that surveys again and again and must not write
/// to the cache (`serve`): the stat cache is the caller's, kept in memory
/// between surveys so that unchanged files are not hashed again, and never
/// saved. `None` on the first call: it is loaded from the cache.
pub fn survey_read_only(plan: &Plan, ws: &Workspace<'_>, stat: &mut Option<StatCache>) -> Vec<Freshness> {
    let loaded = stat.take().unwrap_or_else(|| StatCache::load(&ws.cache.root().join(STAT_CACHE_FILE), ws.root));
    let mut fp = Fingerprinter::with_stat_cache(plan, ws.cache, ws.root, loaded);
    let out = evaluate_all(plan, &mut fp);
    *stat = Some(fp.into_stat_cache());
    out
}

/// Every node in topological order: fresh nodes resolve their digests so
/// that downstream keys can be computed as far as possible.
fn evaluate_all(plan: &Plan, fp: &mut Fingerprinter<'_>) -> Vec<Freshness> {
    let mut digests: Vec<Option<ContentHash>> = vec![None; plan.len()];
    let mut out: Vec<Option<Freshness>> = vec![None; plan.len()];
    for &i in plan.topo_order() {
        let f = fp.evaluate(i, &digests);
        if let Freshness::Fresh { artifact, .. } = &f {
            digests[i] = Some(*artifact);
        }
        out[i] = Some(f);
    }
    out.into_iter().map(|f| f.expect("every node is in the topological order")).collect()
}

/// The state a listing (`status`, `dag`, `show`, `serve`) shows for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Built and cached.
    Fresh,
    /// Built once, but an input, file or param changed since.
    Stale,
    /// Never built (or its artifact was removed).
    Missing,
    /// Its last attempt, with the key it has now, failed (or it cannot build as declared).
    Failed,
    /// Not fresh, and a local run in progress will build it.
    Queued,
}

impl NodeState {
    /// Every state, in the order legends list them.
    pub const ALL: [NodeState; 5] =
        [NodeState::Fresh, NodeState::Stale, NodeState::Missing, NodeState::Failed, NodeState::Queued];

    /// The word listings print.
    pub fn label(self) -> &'static str {
        match self {
            NodeState::Fresh => "fresh",
            NodeState::Stale => "stale",
            NodeState::Missing => "missing",
            NodeState::Failed => "failed",
            NodeState::Queued => "queued",
        }
    }
}

/// Each node's [`NodeState`], from its [`Freshness`] (by [`survey`]), the
/// failures the state log recorded and the nodes live runs announced.
pub fn node_states(plan: &Plan, cache: &Cache, survey: &[Freshness]) -> Vec<NodeState> {
    let state = cache.state(&plan.experiment.name);
    let queued = cache.announced_nodes(&plan.experiment.name);
    survey
        .iter()
        .enumerate()
        .map(|(i, freshness)| {
            let failed_key = state.failed_key(&plan.experiment.nodes[i].id.0);
            match freshness {
                Freshness::Fresh { .. } => NodeState::Fresh,
                Freshness::Broken { .. } => NodeState::Failed,
                Freshness::Stale { key, .. } if key.is_some() && *key == failed_key => NodeState::Failed,
                Freshness::Stale { .. } if queued.contains(&plan.experiment.nodes[i].id.0) => NodeState::Queued,
                Freshness::Stale { reasons, .. } if reasons.contains(&DirtyReason::ArtifactMissing) => {
                    NodeState::Missing
                }
                Freshness::Stale { .. } => NodeState::Stale,
            }
        })
        .collect()
}

/// Node ids selected by `targets` (for CLI listings).
pub fn selection(plan: &Plan, targets: &[String]) -> Result<BTreeSet<usize>, ExecError> {
    plan.select(targets).map_err(ExecError::Target)
}
/// Takes the lock of node `i`'s `key`, waiting (and saying so) while
/// another process holds it. Polls rather than blocks, so that Ctrl-C still
/// stops a worker that waits.
fn lock_key(cache: &Cache, key: &ContentHash, i: usize, tx: &mpsc::Sender<Message>) -> Result<KeyLock, BuildError> {
    let mut announced = false;
    loop {
        if let Some(lock) = cache.try_lock(key)? {
            return Ok(lock);
        }
        if !announced {
            let _ = tx.send(Message::Waiting(i, cache.lock_owner(key)));
            announced = true;
        }
        if CANCELLED.load(Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
