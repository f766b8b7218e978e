//! The read-only model of a study that the dashboard shows: each node's
//! state, each training run's curves, the current fits. One [`Watcher`]
//! polls the cache and builds it; it never writes to the cache.
//!
//! Where each part comes from:
//!
//! | part | source |
//! |---|---|
//! | fresh / stale / missing / failed | [`exec::survey_read_only`] and [`exec::node_states`], the code of `scalemake status` |
//! | building | the node's key's build lock is held ([`Cache::locked`]) |
//! | queued / running on Slurm | the detached ledger ([`slurm::detach::job_views`]), in `status`'s words ([`slurm::detach::JobView::describe`]) |
//! | a running node's curves | `work/<key>/{steps,eval}.jsonl`, which the worker appends to |
//! | a finished node's curves | its artifact's `metrics/{steps,eval}.jsonl` |
//! | fits | a fresh `fit` node's `fit.json`; else refitted (no bootstrap) on the finished runs of its inputs |
//!
//! Cost: a poll `stat`s each run's metric files and reads only what was
//! appended; it surveys the whole plan (which stats every declared file)
//! only when the state log changed or every [`SURVEY_EVERY`]. It rebuilds
//! the node views only when a survey ran, Slurm's answer changed or the set
//! of keys being built changed (the one input read on every poll: a build
//! starts and ends between surveys), and refits only after a survey, and
//! then only the fits whose set of finished runs changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::cache::Cache;
use crate::exec::{self, slurm, Freshness, NodeState, Workspace};
use crate::fit::identify::Identified;
use crate::fit::study::{fit_study, StudyFit};
use crate::graph::Plan;
use crate::hash::{ContentHash, StatCache};
use crate::nodes::fit::FitParams;
use crate::nodes::runs::read_train_artifact;
use crate::settings::Settings as _;
use crate::train::job::{EvalRow, StepRow};
use crate::train::record::{EVAL_FILE, STEPS_FILE};
use crate::train::{Compute, CostModel};

/// The longest a file edit (a declared input) goes unseen: surveys also run
/// when the state log changes, which is what a finished node changes.
pub const SURVEY_EVERY: Duration = Duration::from_secs(15);

/// Slurm's queue is asked at most this often (one `squeue` per ask).
const SLURM_EVERY: Duration = Duration::from_secs(5);

/// The most of a log the dashboard shows: its tail.
pub const LOG_TAIL_BYTES: u64 = 256 * 1024;

/// One node as the DAG view shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView {
    /// Its id, e.g. `train[width=64,variant=baseline]`.
    pub id: String,
    /// Its kind (`train`, `fit`, …).
    pub kind: String,
    /// `fresh`, `stale`, `missing`, `failed`, `building`, `queued` or `running` (the last two: Slurm).
    pub state: &'static str,
    /// Why, in the words of `scalemake status`.
    pub detail: String,
    /// Indices of its inputs in the node list.
    pub inputs: Vec<usize>,
}

/// One point of a curve: an optimiser step's training loss or an evaluation's validation loss.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Optimiser steps done.
    pub step: u64,
    /// Tokens seen.
    pub tokens: u64,
    /// The loss (`null` in JSON where it diverged).
    pub loss: f64,
    /// Compute so far under each of [`CostModel::ALL`], in that order.
    pub compute: [f64; 4],
    /// Training throughput over the last logging window (steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
}

fn compute_array(c: &Compute) -> [f64; 4] {
    CostModel::ALL.map(|m| m.of(c))
}

impl From<StepRow> for Point {
    fn from(r: StepRow) -> Self {
        Point {
            step: r.step,
            tokens: r.tokens,
            loss: r.loss,
            compute: compute_array(&r.compute),
            tokens_per_second: Some(r.tokens_per_second),
        }
    }
}

impl From<EvalRow> for Point {
    fn from(r: EvalRow) -> Self {
        Point {
            step: r.step,
            tokens: r.tokens,
            loss: r.val_loss,
            compute: compute_array(&r.compute),
            tokens_per_second: None,
        }
    }
}

/// A training run: a `train` node, its swept and declared params, its curves.
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    /// Its index in the node list.
    pub node: usize,
    /// Its id.
    pub id: String,
    /// Every param as `dotted.path → value` (the runs table shows those that differ).
    pub params: BTreeMap<String, String>,
    /// Training loss per logged step.
    pub steps: Vec<Point>,
    /// Validation loss per evaluation.
    pub evals: Vec<Point>,
}

impl RunView {
    /// Adds one poll's new points (or replaces the curves, on a reset): the
    /// one code path by which both the watcher's model and the snapshot the
    /// server publishes take new points, so the two cannot disagree.
    fn apply(&mut self, update: &PointsUpdate) {
        if update.reset {
            self.steps.clear();
            self.evals.clear();
        }
        self.steps.extend(update.steps.iter().cloned());
        self.evals.extend(update.evals.iter().cloned());
    }
}

/// What a poll found new in one run's curves.
#[derive(Clone, Debug, Serialize)]
pub struct PointsUpdate {
    /// The run's index in [`Snapshot::runs`].
    pub run: usize,
    /// The curves were re-read from the start (a resumed run cut them back,
    /// or the run finished and its artifact is now the source): replace, not append.
    pub reset: bool,
    /// New (or, on reset, all) step points.
    pub steps: Vec<Point>,
    /// New (or all) evaluation points.
    pub evals: Vec<Point>,
}

/// One family's law on one cost model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LawView {
    /// The cost model.
    pub cost_model: &'static str,
    /// α of L = (C_c / C)^α, or why it is not identifiable.
    pub alpha: Result<f64, String>,
    /// C_c.
    pub c_c: Option<f64>,
    /// The family's effective-compute multiplier against the baseline
    /// (`None` for the baseline itself).
    pub multiplier: Option<Result<f64, String>>,
}

/// A family's fits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyView {
    /// The family (the variant).
    pub family: String,
    /// Its runs.
    pub runs: usize,
    /// Its distinct model sizes.
    pub sizes: usize,
    /// Per cost model.
    pub laws: Vec<LawView>,
    /// α_N of L(N), or why not.
    pub alpha_n: Result<f64, String>,
}

/// A `fit` node's current laws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitView {
    /// The fit node.
    pub node: String,
    /// `final`: the node is built and this is its `fit.json`; `provisional`:
    /// refitted here, without bootstrap intervals, on the runs finished so far.
    pub source: &'static str,
    /// Finished runs over all runs of its inputs.
    pub finished: usize,
    /// All its input runs.
    pub total: usize,
    /// Per family; empty with an error.
    pub families: Vec<FamilyView>,
    /// Why there is no fit yet.
    pub error: Option<String>,
}

/// Everything the dashboard shows, as a new page loads it.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// The experiment's name.
    pub experiment: String,
    /// The cost models' names, in the order of [`Point::compute`].
    pub cost_models: Vec<&'static str>,
    /// Every node, in the plan's order.
    pub nodes: Vec<NodeView>,
    /// Every `train` node.
    pub runs: Vec<RunView>,
    /// Every `fit` node.
    pub fits: Vec<FitView>,
}

/// A change a poll found, pushed to every open page.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// Some node's state changed: the whole list (small).
    Nodes {
        /// Every node.
        nodes: Vec<NodeView>,
    },
    /// New points of one run.
    Points(PointsUpdate),
    /// A fit changed.
    Fits {
        /// Every fit node's view.
        fits: Vec<FitView>,
    },
    /// These nodes' logs grew (an open log view re-reads its node's).
    Logs {
        /// Node ids.
        nodes: Vec<String>,
    },
}

/// Where a run's metrics are read from, and how far.
#[derive(Default)]
struct Tail {
    /// The directory holding `steps.jsonl` and `eval.jsonl`.
    dir: Option<PathBuf>,
    steps: FileTail,
    evals: FileTail,
}

/// How much of one JSON-lines file has been consumed.
#[derive(Default)]
struct FileTail {
    /// Bytes up to the last complete line read.
    offset: u64,
    /// (length, modification time) at the last read: unchanged means no read.
    seen: Option<(u64, SystemTime)>,
}

impl FileTail {
    /// Rows appended to `path` since the last call; `Err(())` when the file
    /// shrank (rewound by a resumed run) and must be read from the start.
    fn read_new<T: serde::de::DeserializeOwned>(&mut self, path: &Path) -> Result<Vec<T>, ()> {
        let Ok(meta) = fs::metadata(path) else { return Ok(Vec::new()) };
        let stamp = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if self.seen == Some(stamp) {
            return Ok(Vec::new());
        }
        if meta.len() < self.offset {
            return Err(());
        }
        self.seen = Some(stamp);
        let mut bytes = Vec::new();
        let read = fs::File::open(path)
            .and_then(|mut f| f.seek(SeekFrom::Start(self.offset)).and_then(|_| f.read_to_end(&mut bytes)));
        if read.is_err() {
            return Ok(Vec::new());
        }
        // Only complete lines: the worker may be half-way through writing one.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(bytes[..complete]
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }
}

/// The study being watched and what the last poll saw.
pub struct Watcher {
    plan: Plan,
    cache: Cache,
    root: PathBuf,
    survey: Vec<Freshness>,
    /// Digests of declared files by stat, kept between surveys (never saved).
    stat: Option<StatCache>,
    states: Vec<NodeState>,
    surveyed_at: Instant,
    state_log_seen: Option<(u64, SystemTime)>,
    slurm: BTreeMap<String, slurm::detach::JobView>,
    slurm_at: Option<Instant>,
    /// The keys being built at the last poll (see [`Watcher::building`]).
    building: BTreeSet<ContentHash>,
    nodes: Vec<NodeView>,
    /// Node index of each run.
    run_nodes: Vec<usize>,
    runs: Vec<RunView>,
    tails: Vec<Tail>,
    /// Node index of each fit.
    fit_nodes: Vec<usize>,
    fits: Vec<FitView>,
    /// The finished input runs (by artifact key) each fit was computed from.
    fit_inputs: Vec<Option<Vec<(usize, ContentHash)>>>,
    log_sizes: Vec<Option<u64>>,
}

impl Watcher {
    /// Watches `plan`'s nodes in `cache` (opened read-only), for a project at `root`.
    pub fn new(plan: Plan, cache_dir: &Path, root: &Path) -> Self {
        let kind_of = |kind: &str| -> Vec<usize> {
            (0..plan.len()).filter(|&i| plan.experiment.nodes[i].kind.name() == kind).collect()
        };
        let (run_nodes, fit_nodes) = (kind_of("train"), kind_of("fit"));
        let runs = run_nodes
            .iter()
            .map(|&i| {
                let node = &plan.experiment.nodes[i];
                RunView {
                    node: i,
                    id: node.id.0.clone(),
                    params: node.params.leaves(),
                    steps: Vec::new(),
                    evals: Vec::new(),
                }
            })
            .collect();
        let mut watcher = Watcher {
            cache: Cache::open_read_only(cache_dir),
            root: root.to_path_buf(),
            survey: Vec::new(),
            stat: None,
            states: Vec::new(),
            surveyed_at: Instant::now(),
            state_log_seen: None,
            slurm: BTreeMap::new(),
            slurm_at: None,
            building: BTreeSet::new(),
            nodes: Vec::new(),
            tails: run_nodes.iter().map(|_| Tail::default()).collect(),
            runs,
            fits: Vec::new(),
            fit_inputs: vec![None; fit_nodes.len()],
            log_sizes: vec![None; plan.len()],
            run_nodes,
            fit_nodes,
            plan,
        };
        watcher.poll();
        watcher
    }

    /// What reads the nodes' logs, for the server's threads.
    pub fn logs(&self) -> Logs {
        Logs {
            cache: self.cache.clone(),
            experiment: self.plan.experiment.name.clone(),
            ids: self.plan.experiment.nodes.iter().map(|n| n.id.0.clone()).collect(),
        }
    }

    /// The whole model, for a page that just connected.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            experiment: self.plan.experiment.name.clone(),
            cost_models: CostModel::ALL.iter().map(|m| m.name()).collect(),
            nodes: self.nodes.clone(),
            runs: self.runs.clone(),
            fits: self.fits.clone(),
        }
    }

    /// Looks at the cache again; returns what changed since the last poll.
    pub fn poll(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        let surveyed = self.survey_if_due();
        let jobs_changed = self.ask_slurm_if_due();
        let building = self.building();
        // The node views are a function of these three alone: unchanged, the
        // last views stand.
        if surveyed || jobs_changed || building != self.building {
            self.building = building;
            let nodes = self.node_views();
            if nodes != self.nodes {
                self.nodes = nodes.clone();
                changes.push(Change::Nodes { nodes });
            }
        }
        for r in 0..self.runs.len() {
            if let Some(update) = self.read_points(r) {
                changes.push(Change::Points(update));
            }
        }
        // Which runs are finished comes from the survey alone.
        if surveyed && self.refit() {
            changes.push(Change::Fits { fits: self.fits.clone() });
        }
        let grown = self.grown_logs();
        if !grown.is_empty() {
            changes.push(Change::Logs { nodes: grown });
        }
        changes
    }

    /// Surveys the plan if the state log changed or the last survey is
    /// [`SURVEY_EVERY`] old; true if it did.
    fn survey_if_due(&mut self) -> bool {
        let log = self.cache.state_log_path(&self.plan.experiment.name);
        let seen = fs::metadata(&log).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        if !self.survey.is_empty() && seen == self.state_log_seen && self.surveyed_at.elapsed() < SURVEY_EVERY {
            return false;
        }
        self.state_log_seen = seen;
        self.surveyed_at = Instant::now();
        let ws = Workspace { root: &self.root, cache: &self.cache };
        self.survey = exec::survey_read_only(&self.plan, &ws, &mut self.stat);
        self.states = exec::node_states(&self.plan, &self.cache, &self.survey);
        true
    }

    /// Asks Slurm about the recorded jobs if [`SLURM_EVERY`] has passed;
    /// true if their states changed.
    fn ask_slurm_if_due(&mut self) -> bool {
        if self.slurm_at.is_some_and(|at| at.elapsed() < SLURM_EVERY) {
            return false;
        }
        self.slurm_at = Some(Instant::now());
        let unbuilt: Vec<&str> = (0..self.plan.len())
            .filter(|&i| self.states[i] != NodeState::Fresh)
            .map(|i| self.plan.experiment.nodes[i].id.0.as_str())
            .collect();
        // Without Slurm (or with no recorded job) this asks nothing.
        let jobs = slurm::detach::job_views(&self.cache, &self.plan.experiment.name, &unbuilt).unwrap_or_default();
        let changed = jobs != self.slurm;
        self.slurm = jobs;
        changed
    }

    /// The key a stale node would build under, if its inputs are known.
    fn pending_key(&self, i: usize) -> Option<ContentHash> {
        match &self.survey[i] {
            Freshness::Stale { key, .. } => *key,
            _ => None,
        }
    }

    /// The stale nodes' keys that some process is building now: their build
    /// lock is held and their object is not in the cache yet. Read on every
    /// poll, since builds start and finish between surveys; it costs one
    /// read of the kernel's lock table, plus a `stat` per stale node's lock
    /// file only while some lock is held.
    fn building(&self) -> BTreeSet<ContentHash> {
        let pending: Vec<ContentHash> = (0..self.plan.len()).filter_map(|i| self.pending_key(i)).collect();
        self.cache.locked(&pending).into_iter().filter(|key| !self.cache.contains(key)).collect()
    }

    /// Every node's view, from the last survey, Slurm's last answer and
    /// [`Watcher::building`] as of this poll.
    fn node_views(&self) -> Vec<NodeView> {
        (0..self.plan.len())
            .map(|i| {
                let node = &self.plan.experiment.nodes[i];
                let (state, detail) = match (self.pending_key(i), self.slurm.get(&node.id.0)) {
                    (Some(key), _) if self.building.contains(&key) => {
                        let ranks = crate::train::job::live_ranks_note(&self.cache.work_path(&key))
                            .map_or(String::new(), |note| format!("; {note}"));
                        ("building", format!("a process holds its key {}{ranks}", key.short()))
                    }
                    (_, Some(view)) => view.describe(&self.cache, &self.plan.experiment.name, &node.id.0),
                    _ => (self.states[i].label(), self.survey[i].reasons_text()),
                };
                NodeView {
                    id: node.id.0.clone(),
                    kind: node.kind.name().to_string(),
                    state,
                    detail,
                    inputs: self.plan.inputs_of(i),
                }
            })
            .collect()
    }

    /// Where run `r`'s metrics are now: its artifact once built, else its work directory.
    fn metrics_dir(&self, r: usize) -> Option<PathBuf> {
        let i = self.run_nodes[r];
        match &self.survey[i] {
            Freshness::Fresh { key, .. } => {
                let out = self.cache.artifact_dir(key);
                let steps = out.join(STEPS_FILE);
                Some(steps.parent().unwrap_or(&out).to_path_buf())
            }
            Freshness::Stale { key: Some(key), .. } => Some(self.cache.work_path(key)),
            _ => None,
        }
    }

    fn read_points(&mut self, r: usize) -> Option<PointsUpdate> {
        let dir = self.metrics_dir(r);
        let tail = &mut self.tails[r];
        let mut reset = false;
        if tail.dir != dir {
            *tail = Tail { dir: dir.clone(), ..Tail::default() };
            reset = !self.runs[r].steps.is_empty() || !self.runs[r].evals.is_empty();
        }
        let dir = dir?;
        let steps_file = dir.join(Path::new(STEPS_FILE).file_name().unwrap_or_default());
        let evals_file = dir.join(Path::new(EVAL_FILE).file_name().unwrap_or_default());
        let (steps, evals) =
            match (tail.steps.read_new::<StepRow>(&steps_file), tail.evals.read_new::<EvalRow>(&evals_file)) {
                (Ok(s), Ok(e)) => (s, e),
                _ => {
                    // Cut back by a resumed run: read both from the start.
                    *tail = Tail { dir: Some(dir.clone()), ..Tail::default() };
                    reset = true;
                    (
                        tail.steps.read_new::<StepRow>(&steps_file).unwrap_or_default(),
                        tail.evals.read_new::<EvalRow>(&evals_file).unwrap_or_default(),
                    )
                }
            };
        if !reset && steps.is_empty() && evals.is_empty() {
            return None;
        }
        let update = PointsUpdate {
            run: r,
            reset,
            steps: steps.into_iter().map(Point::from).collect(),
            evals: evals.into_iter().map(Point::from).collect(),
        };
        self.runs[r].apply(&update);
        Some(update)
    }

    /// Refits each fit node whose finished inputs changed; true if any did.
    /// Called only after a survey: nothing else changes which runs are finished.
    fn refit(&mut self) -> bool {
        let mut changed = false;
        for f in 0..self.fit_nodes.len() {
            let i = self.fit_nodes[f];
            let runs: Vec<usize> = self.plan.inputs_of(i).into_iter().filter(|p| self.run_nodes.contains(p)).collect();
            let mut finished: Vec<(usize, ContentHash)> = runs
                .iter()
                .filter_map(|&p| match &self.survey[p] {
                    Freshness::Fresh { key, .. } => Some((p, *key)),
                    _ => None,
                })
                .collect();
            if let Freshness::Fresh { key, .. } = &self.survey[i] {
                finished.push((i, *key)); // the node's own artifact replaces a provisional fit
            }
            if self.fit_inputs[f].as_ref() == Some(&finished) {
                continue;
            }
            let view = self.fit_view(i, &runs, &finished);
            self.fit_inputs[f] = Some(finished);
            if self.fits.get(f) != Some(&view) {
                if f < self.fits.len() {
                    self.fits[f] = view;
                } else {
                    self.fits.push(view);
                }
                changed = true;
            }
        }
        changed
    }

    fn fit_view(&self, i: usize, runs: &[usize], finished: &[(usize, ContentHash)]) -> FitView {
        let node = &self.plan.experiment.nodes[i];
        let finished_runs: Vec<&(usize, ContentHash)> = finished.iter().filter(|(p, _)| *p != i).collect();
        let mut view = FitView {
            node: node.id.0.clone(),
            source: "provisional",
            finished: finished_runs.len(),
            total: runs.len(),
            families: Vec::new(),
            error: None,
        };
        let fit = if let Freshness::Fresh { key, .. } = &self.survey[i] {
            view.source = "final";
            let path = self.cache.artifact_dir(key).join("fit.json");
            fs::read(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|b| serde_json::from_slice::<StudyFit>(&b).map_err(|e| format!("{}: {e}", path.display())))
        } else if finished_runs.is_empty() {
            Err("no run has finished yet".to_string())
        } else {
            let params = match FitParams::read(&node.params) {
                Ok(params) => params,
                Err(e) => return FitView { error: Some(e), ..view },
            };
            let mut settings = match params.study_settings() {
                Ok(settings) => settings,
                Err(e) => return FitView { error: Some(e), ..view },
            };
            // Point estimates only: intervals would cost a bootstrap per finished run.
            settings.bootstrap = 0;
            let mut read = Vec::new();
            for &&(p, key) in &finished_runs {
                match read_train_artifact(&self.plan.experiment.nodes[p].id.0, &self.cache.artifact_dir(&key)) {
                    Ok((mut run, record)) => {
                        run.group = params.family_of(record.variant());
                        read.push(run);
                    }
                    Err(e) => return FitView { error: Some(e.to_string()), ..view },
                }
            }
            fit_study(&read, &settings).map_err(|e| e.to_string())
        };
        match fit {
            Ok(fit) => view.families = families(&fit),
            Err(e) => view.error = Some(e),
        }
        view
    }

    fn grown_logs(&mut self) -> Vec<String> {
        let mut grown = Vec::new();
        for i in 0..self.plan.len() {
            // Only nodes that may be writing their log: a fresh node's log is final.
            if self.states.get(i) == Some(&NodeState::Fresh) && self.log_sizes[i].is_some() {
                continue;
            }
            let id = &self.plan.experiment.nodes[i].id.0;
            let size = fs::metadata(self.cache.node_log(&self.plan.experiment.name, id)).ok().map(|m| m.len());
            if size != self.log_sizes[i] {
                if self.log_sizes[i].is_some() || size.is_some() {
                    grown.push(id.clone());
                }
                self.log_sizes[i] = size;
            }
        }
        grown
    }
}

/// Reads the nodes' latest-attempt logs. Holds its own copy of the node ids,
/// so that reading a log never waits for a poll.
pub struct Logs {
    cache: Cache,
    experiment: String,
    ids: Vec<String>,
}

impl Logs {
    /// The log of the node named `id` — an id of the plan, never a path —
    /// its last [`LOG_TAIL_BYTES`] at most. `None`: no such node;
    /// `Some(None)`: it has no log yet.
    pub fn tail(&self, id: &str) -> Option<Option<String>> {
        let id = self.ids.iter().find(|known| *known == id)?;
        let path = self.cache.node_log(&self.experiment, id);
        let Ok(mut file) = fs::File::open(path) else { return Some(None) };
        let len = file.metadata().map_or(0, |m| m.len());
        let mut bytes = Vec::new();
        if file
            .seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
            .and_then(|_| file.read_to_end(&mut bytes))
            .is_err()
        {
            return Some(None);
        }
        Some(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl Snapshot {
    /// Brings the snapshot up to date with one change (as the page does).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Nodes { nodes } => self.nodes = nodes.clone(),
            Change::Points(update) => {
                if let Some(run) = self.runs.get_mut(update.run) {
                    run.apply(update);
                }
            }
            Change::Fits { fits } => self.fits = fits.clone(),
            Change::Logs { .. } => {}
        }
    }
}

fn identified<T>(law: &Identified<T>, value: impl Fn(&T) -> f64) -> Result<f64, String> {
    match law {
        Identified::Fitted(t) => Ok(value(t)),
        Identified::NotIdentifiable(why) => Err(why.clone()),
    }
}

/// The numbers of a [`StudyFit`] the dashboard tabulates.
fn families(fit: &StudyFit) -> Vec<FamilyView> {
    fit.groups
        .iter()
        .map(|(family, g)| FamilyView {
            family: family.to_string(),
            runs: g.runs.len(),
            sizes: g.sizes,
            laws: g
                .axes
                .iter()
                .map(|(model, axis)| LawView {
                    cost_model: model.name(),
                    alpha: identified(&axis.power_law, |l| l.alpha.value),
                    c_c: axis.power_law.fitted().map(|l| l.x_c.value),
                    multiplier: fit
                        .multipliers
                        .get(family)
                        .and_then(|m| m.get(model))
                        .map(|m| identified(m, |m| m.estimate.value)),
                })
                .collect(),
            alpha_n: identified(&g.final_n, |l| l.alpha.value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_reads_only_complete_appended_lines_and_notices_a_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.jsonl");
        let row = |step: u64| {
            let c = Compute { trainable: 1.0, frozen_2_3: 2.0, frozen_full: 3.0, fastfood_free: 4.0 };
            serde_json::to_string(&EvalRow { step, tokens: step * 10, val_loss: 5.0, compute: c }).unwrap()
        };
        let mut tail = FileTail::default();
        assert!(tail.read_new::<EvalRow>(&path).unwrap().is_empty(), "no file yet: nothing");
        fs::write(&path, format!("{}\n{}", row(1), &row(2)[..10])).unwrap();
        let got: Vec<u64> = tail.read_new::<EvalRow>(&path).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(got, [1], "the half-written second line waits");
        fs::write(&path, format!("{}\n{}\n{}\n", row(1), row(2), row(3))).unwrap();
        let got: Vec<u64> = tail.read_new::<EvalRow>(&path).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(got, [2, 3]);
        fs::write(&path, format!("{}\n", row(1))).unwrap();
        assert!(tail.read_new::<EvalRow>(&path).is_err(), "cut back: read again from the start");
    }

    #[test]
    fn a_build_that_starts_and_ends_between_surveys_shows_at_the_next_polls() {
        if !Path::new("/proc/locks").exists() {
            return; // `building` reads the kernel's lock table
        }
        let project = tempfile::tempdir().unwrap();
        let yaml = "nodes:\n  a: {kind: command, cmd: 'true'}\n";
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin())
            .unwrap();
        let cache_dir = project.path().join("cache");
        let mut watcher = Watcher::new(Plan::new(exp).unwrap(), &cache_dir, project.path());
        let unbuilt = watcher.nodes[0].state;
        assert_ne!(unbuilt, "building");
        let changes = watcher.poll();
        assert!(changes.is_empty(), "nothing changed: {changes:?}");
        let key = watcher.pending_key(0).expect("a node without inputs has a key");
        let lock = Cache::open(&cache_dir).unwrap().try_lock(&key).unwrap().expect("free");
        let state = |changes: &[Change]| match changes {
            [Change::Nodes { nodes }] => nodes[0].state,
            other => panic!("{other:?}"),
        };
        assert_eq!(state(&watcher.poll()), "building", "no survey is due, yet the build shows");
        assert!(watcher.poll().is_empty());
        drop(lock);
        assert_eq!(state(&watcher.poll()), unbuilt);
    }

    #[test]
    fn a_snapshot_applies_appended_points_and_resets_as_the_page_does() {
        let point = |step| Point { step, tokens: step, loss: 1.0, compute: [1.0; 4], tokens_per_second: None };
        let run =
            RunView { node: 0, id: "train".into(), params: BTreeMap::new(), steps: vec![point(1)], evals: vec![] };
        let mut snapshot =
            Snapshot { experiment: "e".into(), cost_models: vec![], nodes: vec![], runs: vec![run], fits: vec![] };
        let update = |reset, steps: &[u64]| {
            Change::Points(PointsUpdate {
                run: 0,
                reset,
                steps: steps.iter().map(|&s| point(s)).collect(),
                evals: vec![],
            })
        };
        snapshot.apply(&update(false, &[2, 3]));
        assert_eq!(snapshot.runs[0].steps.iter().map(|p| p.step).collect::<Vec<_>>(), [1, 2, 3]);
        snapshot.apply(&update(true, &[1, 2]));
        assert_eq!(snapshot.runs[0].steps.iter().map(|p| p.step).collect::<Vec<_>>(), [1, 2], "a reset replaces");
    }
}
