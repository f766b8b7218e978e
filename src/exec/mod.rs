//! The executor: drains a [`Plan`], building stale nodes in parallel.
//!
//! One coordinator thread owns the scheduling state, the terminal and the
//! state log; each running node gets a worker thread that builds into a
//! staging directory and commits it. Workers talk to the coordinator only
//! through [`Message`]s. Commits happen in the worker (they hash the
//! artifact, which may be large, and must not stall scheduling) but only
//! after `run` succeeded; the coordinator then records the new digest and
//! re-evaluates dependents, which gives early cut-off for free: a rebuilt
//! node with an unchanged digest leaves its dependents' keys unchanged.
//!
//! Failure policy (like make): without `--keep-going` the first failure stops
//! new work and lets running nodes finish; with it, everything not
//! downstream of a failure is built. Ctrl-C cancels running nodes, whose
//! staging directories are deleted: nothing partial is ever committed.

pub mod fingerprint;
mod progress;
pub mod slurm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use fingerprint::{DirtyReason, Fingerprinter, Freshness, KeyParts};
use progress::Reporter;

use crate::cache::{Cache, CacheError, ManifestInput, StateRecord};
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::nodes::{Artifact, Input, NodeCtx, NodeCtxParts, NodeError, Progress};

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
}

/// Where ready nodes run.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// Worker threads of this process.
    #[default]
    Local,
    /// One Slurm job per node, submitted when the node is ready.
    Slurm(slurm::SlurmOptions),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Node ids built now.
    pub built: Vec<String>,
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
    /// `exec-node` was asked for a node it cannot build as asked.
    #[error("{0}")]
    Node(String),
}

/// Set by the Ctrl-C handler; checked by the coordinator and by nodes.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

enum Message {
    Progress(usize, Progress),
    Waiting(usize, Option<u32>),
    /// A node finished; the slots it held are free again.
    Done(usize, Result<Built, String>, Slots),
}

/// The slots a running node holds: CPU count and specific GPU ids.
#[derive(Default)]
struct Slots {
    cpu: usize,
    gpus: Vec<usize>,
}

struct Built {
    artifact: ContentHash,
    seconds: f64,
    /// Another process built it while we waited for the lock.
    by_other: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Pending,
    Running,
    Fresh,
    Built,
    Failed,
    Skipped,
}

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
    std::thread::scope(|scope| match &opts.backend {
        Backend::Local => {
            let mut runner = LocalRunner::new(scope, plan, ws, opts, tx);
            coordinate(plan, ws, opts, &mut runner, &rx)
        }
        Backend::Slurm(options) => {
            let mut runner = slurm::SlurmRunner::new(plan, ws, options, tx)?;
            coordinate(plan, ws, opts, &mut runner, &rx)
        }
    })
}

/// What a [`Runner`] did with a ready node.
enum Start {
    /// It runs; a `Done` message will follow. The text, if any, is shown.
    Started(Option<String>),
    /// No room now: keep it ready and try again after something finishes.
    Busy,
    /// It cannot run at all.
    Failed(String),
}

/// Where dispatched nodes run: worker threads here ([`LocalRunner`]) or
/// Slurm jobs ([`slurm::SlurmRunner`]). The coordinator owns everything
/// else (settling, failure policy, the state log), so both backends share it.
trait Runner {
    /// Starts ready node `i`, whose key and inputs are known. Every
    /// started node sends exactly one [`Message::Done`].
    fn start(&mut self, i: usize, key: ContentHash, parts: &KeyParts, inputs: &dyn Fn() -> Vec<Input>) -> Start;
    /// A new dispatch pass begins: ready nodes will be offered in priority
    /// (file) order.
    fn begin_pass(&mut self) {}
    /// Gives back the slots of a finished node.
    fn release(&mut self, _slots: Slots) {}
    /// Called on every turn of the coordinator's loop (about 10 times a second).
    fn poll(&mut self) {}
}

/// Runs nodes on worker threads of this process, within `-j` CPU slots
/// and one GPU slot per visible device.
struct LocalRunner<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    plan: &'env Plan,
    ws: &'env Workspace<'env>,
    tx: mpsc::Sender<Message>,
    jobs: usize,
    cpu_free: usize,
    gpu_count: Option<usize>,
    gpu_probe_error: Option<String>,
    /// Free GPU ids; a node gets specific devices (as CUDA_VISIBLE_DEVICES).
    gpu_free: Vec<usize>,
    /// Slots held back in this pass for earlier ready nodes that did not fit,
    /// so that a stream of one-slot nodes cannot starve a wide one.
    cpu_reserved: usize,
    gpu_reserved: usize,
}

impl<'scope, 'env> LocalRunner<'scope, 'env> {
    fn new(scope: &'scope std::thread::Scope<'scope, 'env>, plan: &'env Plan, ws: &'env Workspace<'env>, opts: &RunOptions, tx: mpsc::Sender<Message>) -> Self {
        let jobs = opts.jobs.max(1);
        let gpu_free = opts.gpus.map_or_else(Vec::new, |n| (0..n).collect());
        LocalRunner { scope, plan, ws, tx, jobs, cpu_free: jobs, gpu_count: opts.gpus, gpu_probe_error: None, gpu_free, cpu_reserved: 0, gpu_reserved: 0 }
    }
}

impl Runner for LocalRunner<'_, '_> {
    fn start(&mut self, i: usize, key: ContentHash, parts: &KeyParts, inputs: &dyn Fn() -> Vec<Input>) -> Start {
        let node = &self.plan.experiment.nodes[i];
        let mut need_cpu = (node.resources.cpu as usize).min(self.jobs);
        let mut need_gpu = node.resources.gpu as usize;
        let visible = if need_gpu == 0 {
            0
        } else {
            *self.gpu_count.get_or_insert_with(|| {
                let n = crate::device::cuda_device_count().unwrap_or_else(|e| {
                    self.gpu_probe_error = Some(e);
                    0
                });
                self.gpu_free = (0..n).collect();
                n
            })
        };
        if need_gpu > visible && node.resources.gpu_optional {
            // `device: auto` without a GPU trains on the CPU, on every core.
            need_gpu = 0;
            need_cpu = self.jobs;
        }
        if need_gpu > visible {
            let why = self.gpu_probe_error.as_ref().map(|e| format!(" (cannot ask libtorch: {e})")).unwrap_or_default();
            return Start::Failed(format!("needs {need_gpu} GPU(s), {visible} visible{why}"));
        }
        let cpu_short = need_cpu + self.cpu_reserved > self.cpu_free;
        let gpu_short = need_gpu + self.gpu_reserved > self.gpu_free.len();
        if cpu_short || gpu_short {
            // Hold back what this node lacks (only that: a node waiting for a
            // GPU does not stop CPU-only nodes) for the rest of the pass.
            self.cpu_reserved += if cpu_short { need_cpu } else { 0 };
            self.gpu_reserved += if gpu_short { need_gpu } else { 0 };
            return Start::Busy;
        }
        self.cpu_free -= need_cpu;
        let gpus: Vec<usize> = self.gpu_free.drain(..need_gpu).collect();
        let (plan, ws, tx, parts, inputs) = (self.plan, self.ws, self.tx.clone(), parts.clone(), inputs());
        let log = ws.cache.node_log(&plan.experiment.name, &node.id.0);
        self.scope.spawn(move || {
            let result = build_node(plan, ws, i, key, &parts, &inputs, &gpus, &log, &tx);
            let _ = tx.send(Message::Done(i, result, Slots { cpu: need_cpu, gpus }));
        });
        Start::Started(None)
    }

    fn begin_pass(&mut self) {
        (self.cpu_reserved, self.gpu_reserved) = (0, 0);
    }

    fn release(&mut self, slots: Slots) {
        self.cpu_free += slots.cpu;
        self.gpu_free.extend(slots.gpus);
        self.gpu_free.sort_unstable();
    }
}

/// The coordinator: settles nodes whose inputs are resolved, hands ready
/// ones to `runner`, and records what finishes.
fn coordinate(plan: &Plan, ws: &Workspace<'_>, opts: &RunOptions, runner: &mut dyn Runner, rx: &mpsc::Receiver<Message>) -> Result<RunSummary, ExecError> {
    let selected = plan.select(&opts.targets).map_err(ExecError::Target)?;
    let mut fp = Fingerprinter::new(plan, ws.cache, ws.root);
    let n = plan.len();
    let mut phase = vec![Phase::Pending; n];
    let mut digests: Vec<Option<ContentHash>> = vec![None; n];
    let mut keys: Vec<Option<ContentHash>> = vec![None; n];
    let mut ready: BTreeMap<usize, (ContentHash, KeyParts)> = BTreeMap::new();
    let mut summary = RunSummary::default();
    let reporter = Reporter::new(selected.len() as u64, opts.progress_bars);
    let mut running = 0usize;
    let mut stopping = false;
    // Settling only changes after a node finishes, not on progress messages.
    let mut settle = true;
    let exp = plan.experiment.name.clone();
    let order: Vec<usize> = plan.topo_order().iter().copied().filter(|i| selected.contains(i)).collect();

    loop {
        if CANCELLED.load(Ordering::Relaxed) && !summary.cancelled {
            summary.cancelled = true;
            stopping = true;
            reporter.line("interrupted: cancelling running nodes (nothing partial is kept)");
        }
        // Settle: decide every pending node whose inputs are all resolved.
        for &i in order.iter().filter(|_| settle) {
            if phase[i] != Phase::Pending || ready.contains_key(&i) {
                continue;
            }
            let inputs = plan.inputs_of(i);
            if inputs.iter().any(|&p| matches!(phase[p], Phase::Failed | Phase::Skipped)) {
                phase[i] = Phase::Skipped;
                continue;
            }
            if !inputs.iter().all(|&p| matches!(phase[p], Phase::Fresh | Phase::Built)) {
                continue;
            }
            match fp.evaluate_with_parts(i, &digests) {
                (Freshness::Fresh { key, artifact }, _) => {
                    digests[i] = Some(artifact);
                    keys[i] = Some(key);
                    phase[i] = Phase::Fresh;
                    reporter.tick();
                }
                (Freshness::Stale { key: Some(key), reasons }, Some(parts)) => {
                    let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                    tracing::debug!(node = %plan.experiment.nodes[i].id, "stale: {}", why.join("; "));
                    if let Some(corrupt @ DirtyReason::ArtifactCorrupt { .. }) = reasons.first() {
                        reporter.line(&format!("{}: {corrupt}; removing it and rebuilding", plan.experiment.nodes[i].id));
                        discard_corrupt(ws.cache, &key);
                    }
                    ready.insert(i, (key, parts));
                }
                (Freshness::Stale { .. }, _) => {}
                (Freshness::Broken { message }, _) => {
                    phase[i] = Phase::Failed;
                    reporter.failed(&plan.experiment.nodes[i].id.0, &message);
                    summary.failed.push((plan.experiment.nodes[i].id.0.clone(), message));
                    stopping |= !opts.keep_going;
                }
            }
        }
        settle = false;
        // Dispatch ready nodes (all inputs built) in file order while the runner has room.
        if !stopping {
            let candidates: Vec<usize> = ready.keys().copied().collect();
            runner.begin_pass();
            for i in candidates {
                let node = &plan.experiment.nodes[i];
                let key = ready[&i].0;
                let inputs = || resolve_inputs(plan, ws.cache, &keys, i);
                match runner.start(i, key, &ready[&i].1, &inputs) {
                    Start::Busy => continue,
                    Start::Failed(msg) => {
                        ready.remove(&i);
                        phase[i] = Phase::Failed;
                        reporter.failed(&node.id.0, &msg);
                        summary.failed.push((node.id.0.clone(), msg));
                        stopping |= !opts.keep_going;
                    }
                    Start::Started(note) => {
                        ready.remove(&i);
                        keys[i] = Some(key);
                        running += 1;
                        phase[i] = Phase::Running;
                        reporter.started(i, &node.id.0);
                        if let Some(note) = note {
                            reporter.line(&format!("          {}: {note}", node.id));
                        }
                    }
                }
            }
        }
        if running == 0 && (stopping || ready.is_empty()) {
            break;
        }
        runner.poll();
        let message = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Progress(i, p) => reporter.progress(i, p),
            Message::Waiting(i, pid) => {
                let who = pid.map_or("another process".to_string(), |p| format!("another process (pid {p})"));
                reporter.line(&format!("{} is being built by {who}; waiting for it", plan.experiment.nodes[i].id));
            }
            Message::Done(i, result, slots) => {
                running -= 1;
                settle = true;
                let node = &plan.experiment.nodes[i];
                runner.release(slots);
                match result {
                    Ok(built) => {
                        let key = keys[i].expect("a dispatched node has a key");
                        // The stamp that later runs compare against to trust the object unread.
                        let record = StateRecord { key, artifact: built.artifact, stamp: ws.cache.stamp(&key).ok().flatten() };
                        if let Err(e) = fp.state_mut().record(&node.id.0, record) {
                            tracing::warn!("cannot record state of {}: {e}", node.id);
                        }
                        digests[i] = Some(built.artifact);
                        phase[i] = Phase::Built;
                        reporter.finished(i, &node.id.0, built.seconds, built.by_other);
                        summary.built.push(node.id.0.clone());
                    }
                    Err(message) => {
                        phase[i] = Phase::Failed;
                        if let Some(key) = keys[i].filter(|_| message != "cancelled") {
                            if let Err(e) = fp.state_mut().record_failure(&node.id.0, key) {
                                tracing::warn!("cannot record failure of {}: {e}", node.id);
                            }
                        }
                        let shown = if summary.cancelled { "cancelled".to_string() } else { message };
                        reporter.node_failed(i, &node.id.0, &shown, &ws.cache.node_log(&exp, &node.id.0));
                        summary.failed.push((node.id.0.clone(), shown));
                        stopping |= !opts.keep_going;
                    }
                }
            }
        }
    }
    reporter.clear();
    for &i in &order {
        let id = plan.experiment.nodes[i].id.0.clone();
        match phase[i] {
            Phase::Fresh => summary.fresh.push(id),
            Phase::Pending | Phase::Skipped => summary.skipped.push(id),
            _ => {}
        }
    }
    if summary.cancelled {
        summary.failed.retain(|(_, m)| m != "cancelled");
    }
    fp.finish();
    Ok(summary)
}

/// Removes a corrupt object so that the rebuild can commit in its place.
/// Under the key's lock: if another process holds it, that process is
/// already rebuilding the key, and the rebuild here will wait for it.
fn discard_corrupt(cache: &Cache, key: &ContentHash) {
    if let Ok(Some(_lock)) = cache.try_lock(key) {
        if let Err(e) = cache.remove(key) {
            tracing::warn!("cannot remove the corrupt object {}: {e}", key.short());
        }
    }
}

/// The artifact directories of node `i`'s inputs (all built: `keys` known).
fn resolve_inputs(plan: &Plan, cache: &Cache, keys: &[Option<ContentHash>], i: usize) -> Vec<Input> {
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
                    Some(Artifact { node: plan.experiment.nodes[p].id.clone(), dir: cache.artifact_dir(&key) })
                })
                .collect(),
        })
        .collect()
}

/// Builds one node: lock, (re)check, stage, run, commit. Runs on a worker thread.
#[allow(clippy::too_many_arguments)]
fn build_node(
    plan: &Plan,
    ws: &Workspace<'_>,
    i: usize,
    key: ContentHash,
    parts: &KeyParts,
    inputs: &[Input],
    gpus: &[usize],
    log_path: &PathBuf,
    tx: &mpsc::Sender<Message>,
) -> Result<Built, String> {
    let node = &plan.experiment.nodes[i];
    let cache = ws.cache;
    // Poll rather than block on the lock, so that Ctrl-C still stops a
    // worker that waits for another process.
    let mut announced = false;
    let lock = loop {
        if let Some(lock) = cache.try_lock(&key).map_err(|e| e.to_string())? {
            break lock;
        }
        if !announced {
            let _ = tx.send(Message::Waiting(i, cache.lock_owner(&key)));
            announced = true;
        }
        if CANCELLED.load(Ordering::Relaxed) {
            return Err("cancelled".to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(m) = cache.manifest(&key).map_err(|e| e.to_string())? {
        return Ok(Built { artifact: m.artifact, seconds: 0.0, by_other: true });
    }
    let staging = cache.stage(&key, &lock).map_err(|e| e.to_string())?;
    let work_dir = cache.work_dir(&key).map_err(|e| e.to_string())?;
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log = std::fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let progress = |p: Progress| {
        let _ = tx.send(Message::Progress(i, p));
    };
    let out_dir = staging.out_dir();
    let started = Instant::now();
    let mut ctx = NodeCtx::new(NodeCtxParts {
        id: &node.id,
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
        return Err(match e {
            NodeError::Cancelled => "cancelled".to_string(),
            other => other.to_string(),
        });
    }
    ctx.log_line(&format!("scalemake: node finished in {seconds:.2}s"));
    let (metrics, summary) = ctx.into_report();
    let manifest = cache
        .commit(staging, Some(log_path), |m| {
            m.node = node.id.0.clone();
            m.kind = node.kind.name().to_string();
            m.kind_version = node.kind.version();
            m.params = parts.params.clone();
            m.inputs = parts.inputs.iter().map(|(name, artifacts)| ManifestInput { name: name.clone(), artifacts: artifacts.clone() }).collect();
            m.files = parts.files.clone();
            m.seconds = seconds;
            m.metrics = metrics;
            m.summary = summary;
        })
        .map_err(|e| e.to_string())?;
    drop(lock);
    Ok(Built { artifact: manifest.artifact, seconds, by_other: false })
}

/// Builds node `i` alone, exactly as the executor would dispatch it (lock,
/// stage, run, commit): `scalemake exec-node`, which each Slurm job runs.
/// Its inputs must be built. With `expected`, its key must still be that one
/// (neither the experiment nor its files changed since it was submitted).
/// Returns the artifact digest, or [`ExecError::Node`] when the node fails.
pub fn build_one(plan: &Plan, ws: &Workspace<'_>, i: usize, expected: Option<ContentHash>, gpus: &[usize]) -> Result<ContentHash, ExecError> {
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
        Freshness::Fresh { key, .. } | Freshness::Stale { key: Some(key), .. } if expected.is_some_and(|e| e != key) => {
            return Err(ExecError::Node(format!(
                "its key is now {} but {} was submitted: the experiment or its files changed since; run `scalemake run` again",
                key.short(),
                expected.map_or_else(String::new, |e| e.short())
            )));
        }
        Freshness::Fresh { artifact, .. } => return Ok(artifact),
        Freshness::Stale { key: Some(key), .. } => key,
        Freshness::Stale { key: None, .. } => return Err(ExecError::Node(format!("the inputs of {} are not all built", node.id))),
        Freshness::Broken { message } => return Err(ExecError::Node(message)),
    };
    let parts = parts.ok_or_else(|| ExecError::Node(format!("no key material for {}", node.id)))?;
    let inputs = resolve_inputs(plan, ws.cache, &keys, i);
    let log = ws.cache.node_log(&plan.experiment.name, &node.id.0);
    // Nobody listens to progress here: the node's log is the record.
    let (tx, _rx) = mpsc::channel();
    build_node(plan, ws, i, key, &parts, &inputs, gpus, &log, &tx).map(|built| built.artifact).map_err(ExecError::Node)
}

/// The state of every node without building anything (for `status`, `dag`,
/// `--dry-run`): fresh nodes resolve their digests so that downstream keys
/// can be computed as far as possible.
pub fn survey(plan: &Plan, ws: &Workspace<'_>) -> Vec<Freshness> {
    let started = Instant::now();
    let mut fp = Fingerprinter::new(plan, ws.cache, ws.root);
    tracing::debug!("stat cache and state log loaded in {:?}", started.elapsed());
    let mut digests: Vec<Option<ContentHash>> = vec![None; plan.len()];
    let mut out: Vec<Option<Freshness>> = vec![None; plan.len()];
    for &i in plan.topo_order() {
        let f = fp.evaluate(i, &digests);
        if let Freshness::Fresh { artifact, .. } = &f {
            digests[i] = Some(*artifact);
        }
        out[i] = Some(f);
    }
    let evaluated = started.elapsed();
    fp.finish();
    tracing::debug!("nodes evaluated at {evaluated:?}, stat cache saved at {:?}", started.elapsed());
    out.into_iter().map(|f| f.expect("every node is in the topological order")).collect()
}

/// Node ids selected by `targets` (for CLI listings).
pub fn selection(plan: &Plan, targets: &[String]) -> Result<BTreeSet<usize>, ExecError> {
    plan.select(targets).map_err(ExecError::Target)
}
