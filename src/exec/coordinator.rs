//! The coordinator: settles nodes whose inputs are resolved, offers ready
//! ones to a [`Runner`] in file order, and records what finishes. It owns
//! the scheduling state, the terminal and the state log; runners report
//! back only through [`Message`]s.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use super::build::{resolve_inputs, BuildError, Built};
use super::progress::Reporter;
use super::transfer::{Fetched, Job};
use super::{
    DirtyReason, ExecError, Fingerprinter, Freshness, Input, KeyParts, RunOptions, RunSummary, Slots, Workspace,
    CANCELLED,
};
use crate::cache::{Cache, StateRecord};
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::nodes::Progress;

/// What a runner tells the coordinator.
pub(super) enum Message {
    Progress(usize, Progress),
    /// The key's lock is held by another process (pid, if known).
    Waiting(usize, Option<u32>),
    /// A node finished; the slots it held are free again.
    Done(usize, Outcome, Slots),
    /// A fetch from the remote ended: committed, or why not.
    Fetched(usize, Result<Fetched, String>),
    /// An upload to the remote ended: bytes sent, or why not.
    Uploaded(usize, Result<u64, String>),
}

/// How a started node ended.
pub(super) enum Outcome {
    Built(Built),
    Failed(String),
    /// Stopped by Ctrl-C: neither a failure of the node nor of its key.
    Cancelled,
}

impl From<Result<Built, BuildError>> for Outcome {
    fn from(result: Result<Built, BuildError>) -> Self {
        match result {
            Ok(built) => Outcome::Built(built),
            Err(BuildError::Cancelled) => Outcome::Cancelled,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// What a [`Runner`] did with a ready node.
pub(super) enum Start {
    /// It runs; a `Done` message will follow. The text, if any, is shown.
    Started(Option<String>),
    /// No room now: keep it ready and try again after something finishes.
    Busy,
    /// It cannot run at all.
    Failed(String),
}

/// Where dispatched nodes run: worker threads here ([`super::local::LocalRunner`])
/// or Slurm jobs ([`super::slurm::SlurmRunner`]). The coordinator owns
/// everything else (settling, failure policy, the state log), so both
/// backends share it.
pub(super) trait Runner {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Pending,
    Running,
    Fresh,
    Built,
    Failed,
    /// Stopped by Ctrl-C while running.
    Cancelled,
    Skipped,
}

/// Drives `state` until nothing more can start and nothing runs.
pub(super) fn coordinate(mut state: RunState<'_>, runner: &mut dyn Runner, rx: &mpsc::Receiver<Message>) -> RunSummary {
    loop {
        if CANCELLED.load(Ordering::Relaxed) {
            state.interrupt();
        }
        state.settle();
        state.dispatch(runner);
        if state.is_done() {
            break;
        }
        runner.poll();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => state.receive(message, runner),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    state.finish()
}

/// Everything the coordinator knows about one run.
pub(super) struct RunState<'a> {
    plan: &'a Plan,
    cache: &'a Cache,
    keep_going: bool,
    fp: Fingerprinter<'a>,
    reporter: Reporter,
    /// The selected nodes in topological order (lowest index first).
    order: Vec<usize>,
    phase: Vec<Phase>,
    /// Which nodes are helpers (built only for a node that builds)…
    helper: Vec<bool>,
    /// … and which of them some node that builds is waiting for.
    wanted: Vec<bool>,
    digests: Vec<Option<ContentHash>>,
    keys: Vec<Option<ContentHash>>,
    /// Stale nodes whose inputs are all built, by priority (file order).
    ready: BTreeMap<usize, (ContentHash, KeyParts)>,
    running: usize,
    /// No new work starts: a failure without `--keep-going`, or Ctrl-C.
    stopping: bool,
    /// Something finished since the last settle (progress changes nothing).
    unsettled: bool,
    /// The remote cache, if this run uses one.
    remote: Option<RemoteRun>,
    summary: RunSummary,
}

/// What the coordinator knows of the remote during a run.
pub(super) struct RemoteRun {
    /// To the transfer threads.
    jobs: mpsc::Sender<Job>,
    /// Keys the remote had when the run began (one listing).
    keys: HashSet<ContentHash>,
    /// Upload what is built here (not `--remote-read-only`).
    upload: bool,
    /// Nodes whose fetch was tried: a failed one builds instead.
    tried: HashSet<usize>,
    /// Uploads in flight: the run ends when they do.
    uploading: usize,
}

impl<'a> RunState<'a> {
    /// A run of `opts.targets`, nothing decided yet.
    pub(super) fn new(plan: &'a Plan, ws: &Workspace<'a>, opts: &RunOptions) -> Result<Self, ExecError> {
        let selected = super::selection(plan, &opts.targets)?;
        let n = plan.len();
        let helper: Vec<bool> = (0..n).map(|i| plan.is_helper(i)).collect();
        // A helper selected for its own sake (no consumer in the run) builds like any node.
        let wanted = (0..n)
            .map(|i| helper[i] && selected.contains(&i) && plan.consumers_of(i).iter().all(|c| !selected.contains(c)))
            .collect();
        Ok(RunState {
            plan,
            cache: ws.cache,
            keep_going: opts.keep_going,
            fp: Fingerprinter::new(plan, ws.cache, ws.root),
            reporter: Reporter::new(selected.len() as u64, opts.progress_bars),
            order: plan.topo_order().iter().copied().filter(|i| selected.contains(i)).collect(),
            phase: vec![Phase::Pending; n],
            helper,
            wanted,
            digests: vec![None; n],
            keys: vec![None; n],
            ready: BTreeMap::new(),
            running: 0,
            stopping: false,
            unsettled: true,
            remote: None,
            summary: RunSummary::default(),
        })
    }

    /// The ids of the nodes this run builds, when they are not fresh.
    pub(super) fn selected_ids(&self) -> Vec<String> {
        self.order.iter().map(|&i| self.plan.experiment.nodes[i].id.0.clone()).collect()
    }

    /// Fetches stale nodes from the remote whose listing is `keys` (through
    /// `jobs`) before building them, and uploads what it builds if `upload`.
    /// A remote that could not be listed is reported and used for uploads only.
    pub(super) fn with_remote(
        mut self,
        jobs: mpsc::Sender<Job>,
        keys: Result<HashSet<ContentHash>, String>,
        upload: bool,
    ) -> Self {
        let keys = keys.unwrap_or_else(|e| {
            self.reporter.line(&format!("remote unavailable, building locally: {e}"));
            HashSet::new()
        });
        self.remote = Some(RemoteRun { jobs, keys, upload, tried: HashSet::new(), uploading: 0 });
        self
    }

    /// Ctrl-C: start nothing more; running nodes are cancelled by the flag
    /// they poll, and report back.
    pub(super) fn interrupt(&mut self) {
        if !self.summary.cancelled {
            self.summary.cancelled = true;
            self.stopping = true;
            self.reporter.line("interrupted: cancelling running nodes (nothing partial is kept)");
        }
    }

    /// Decides every pending node whose inputs are all resolved: skipped
    /// (an input failed), fresh, ready to build, or broken.
    pub(super) fn settle(&mut self) {
        if !std::mem::take(&mut self.unsettled) {
            return;
        }
        for k in 0..self.order.len() {
            let i = self.order[k];
            if self.phase[i] != Phase::Pending || self.ready.contains_key(&i) {
                continue;
            }
            if self.helper[i] && !self.wanted[i] {
                continue;
            }
            let inputs = self.plan.key_inputs_of(i);
            if inputs.iter().any(|&p| matches!(self.phase[p], Phase::Failed | Phase::Cancelled | Phase::Skipped)) {
                self.phase[i] = Phase::Skipped;
                continue;
            }
            if inputs.iter().all(|&p| matches!(self.phase[p], Phase::Fresh | Phase::Built)) {
                self.evaluate(i);
            }
        }
    }

    /// Node `i`'s inputs are built: is it fresh, or must it build?
    fn evaluate(&mut self, i: usize) {
        let plan = self.plan;
        let id = &plan.experiment.nodes[i].id;
        match self.fp.evaluate_with_parts(i, &self.digests) {
            (Freshness::Fresh { key, artifact }, _) => {
                self.digests[i] = Some(artifact);
                self.keys[i] = Some(key);
                self.phase[i] = Phase::Fresh;
                self.reporter.tick();
            }
            (Freshness::Stale { key: Some(key), reasons }, Some(parts)) => {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                tracing::debug!(node = %id, "stale: {}", why.join("; "));
                if let Some(corrupt @ DirtyReason::ArtifactCorrupt { .. }) = reasons.first() {
                    self.reporter.line(&format!("{id}: {corrupt}; removing it and rebuilding"));
                    discard_corrupt(self.cache, &key);
                }
                if self.start_fetch(i, key) {
                    return;
                }
                for helper in self.plan.order_only_inputs_of(i) {
                    if !std::mem::replace(&mut self.wanted[helper], true) {
                        self.unsettled = true;
                    }
                }
                self.ready.insert(i, (key, parts));
            }
            // Inputs built but the key unknown: cannot happen once settled.
            (Freshness::Stale { .. }, _) => {}
            (Freshness::Broken { message }, _) => {
                self.reporter.failed(&id.0, &message);
                self.fail(i, message);
            }
        }
    }

    /// Hands stale node `i` to a transfer thread if the remote has its key
    /// and no fetch of it was tried yet.
    fn start_fetch(&mut self, i: usize, key: ContentHash) -> bool {
        let Some(remote) = self.remote.as_mut().filter(|r| !self.stopping && r.keys.contains(&key)) else {
            return false;
        };
        if !remote.tried.insert(i) || remote.jobs.send(Job::Fetch(i, key)).is_err() {
            return false;
        }
        self.keys[i] = Some(key);
        self.running += 1;
        self.phase[i] = Phase::Running;
        self.reporter.transfer(i, &format!("fetching {}", self.plan.experiment.nodes[i].id));
        true
    }

    /// Offers the ready nodes to `runner` in file order, unless stopping.
    pub(super) fn dispatch(&mut self, runner: &mut dyn Runner) {
        if self.stopping {
            return;
        }
        let plan = self.plan;
        runner.begin_pass();
        let candidates: Vec<usize> = self.ready.keys().copied().collect();
        for i in candidates {
            // A node builds once its helpers are; without them it cannot.
            let helpers: Vec<Phase> = plan.order_only_inputs_of(i).into_iter().map(|h| self.phase[h]).collect();
            if helpers.iter().any(|p| matches!(p, Phase::Failed | Phase::Cancelled | Phase::Skipped)) {
                self.ready.remove(&i);
                self.phase[i] = Phase::Skipped;
                continue;
            }
            if !helpers.iter().all(|p| matches!(p, Phase::Fresh | Phase::Built)) {
                continue;
            }
            let (key, parts) = &self.ready[&i];
            let key = *key;
            let inputs = || resolve_inputs(plan, self.cache, &self.keys, i);
            let started = runner.start(i, key, parts, &inputs);
            let id = &plan.experiment.nodes[i].id;
            match started {
                Start::Busy => continue,
                Start::Failed(message) => {
                    self.ready.remove(&i);
                    self.reporter.failed(&id.0, &message);
                    self.fail(i, message);
                    if self.stopping {
                        // Without `--keep-going`: not even the rest of this pass.
                        break;
                    }
                }
                Start::Started(note) => {
                    self.ready.remove(&i);
                    self.keys[i] = Some(key);
                    self.running += 1;
                    self.phase[i] = Phase::Running;
                    self.reporter.started(i, &id.0);
                    if let Some(note) = note {
                        self.reporter.line(&format!("          {id}: {note}"));
                    }
                }
            }
        }
    }

    /// Nothing runs, and nothing more will start.
    pub(super) fn is_done(&self) -> bool {
        self.running == 0
            && self.remote.as_ref().is_none_or(|r| r.uploading == 0)
            && (self.stopping || self.ready.is_empty())
    }

    /// Handles one message from the runner.
    pub(super) fn receive(&mut self, message: Message, runner: &mut dyn Runner) {
        match message {
            Message::Progress(i, p) => self.reporter.progress(i, p),
            Message::Waiting(i, pid) => {
                let who = pid.map_or("another process".to_string(), |p| format!("another process (pid {p})"));
                self.reporter
                    .line(&format!("{} is being built by {who}; waiting for it", self.plan.experiment.nodes[i].id));
            }
            Message::Done(i, outcome, slots) => {
                runner.release(slots);
                self.finished(i, outcome);
            }
            Message::Fetched(i, result) => self.fetched(i, result),
            Message::Uploaded(i, result) => {
                let id = &self.plan.experiment.nodes[i].id.0;
                if let Some(remote) = &mut self.remote {
                    remote.uploading -= 1;
                }
                self.reporter.transfer_done(i);
                match result {
                    Ok(bytes) => {
                        self.reporter.line(&format!(" uploaded {id} ({})", crate::units::human_bytes(bytes)));
                        self.summary.uploaded.push(id.clone());
                    }
                    Err(e) => {
                        self.reporter.line(&format!("  WARNING {id} was not uploaded: {e}"));
                        self.summary.upload_failed.push((id.clone(), e));
                    }
                }
            }
        }
    }

    /// Records how a fetch of node `i` ended: built (by the remote), or
    /// back to pending, to be built here.
    fn fetched(&mut self, i: usize, result: Result<Fetched, String>) {
        self.running -= 1;
        self.unsettled = true;
        let id = self.plan.experiment.nodes[i].id.0.clone();
        self.reporter.transfer_done(i);
        match result {
            Ok(f) => {
                self.reporter.tick();
                self.record_built(i, f.artifact);
                if f.by_other {
                    self.reporter.line(&format!("   reused {id} (fetched by another process)"));
                    self.summary.built.push(id);
                } else {
                    self.reporter.line(&format!(
                        "  fetched {id} ({} in {:.1}s, digests verified)",
                        crate::units::human_bytes(f.bytes),
                        f.seconds
                    ));
                    self.summary.fetched.push(id);
                }
            }
            Err(e) => {
                self.reporter.line(&format!("  {id}: not fetched ({e}); building it here"));
                self.phase[i] = Phase::Pending;
            }
        }
    }

    /// Node `i` now has `artifact` in the cache: record it for later runs
    /// and for its dependents' keys.
    fn record_built(&mut self, i: usize, artifact: ContentHash) {
        let id = &self.plan.experiment.nodes[i].id.0;
        let key = self.keys[i].expect("a started node has a key");
        // The stamp that later runs compare against to trust the object unread.
        let record = StateRecord { key, artifact, stamp: self.cache.stamp(&key).ok().flatten() };
        if let Err(e) = self.fp.state_mut().record(id, record) {
            tracing::warn!("cannot record state of {id}: {e}");
        }
        self.digests[i] = Some(artifact);
        self.phase[i] = Phase::Built;
    }

    /// Records how running node `i` ended.
    fn finished(&mut self, i: usize, outcome: Outcome) {
        self.running -= 1;
        self.unsettled = true;
        let (plan, cache) = (self.plan, self.cache);
        let id = &plan.experiment.nodes[i].id.0;
        let key = self.keys[i].expect("a started node has a key");
        let log = || cache.node_log(&plan.experiment.name, id);
        match outcome {
            Outcome::Built(built) => {
                self.record_built(i, built.artifact);
                self.reporter.finished(i, id, built.seconds, built.by_other);
                for warning in &built.warnings {
                    self.reporter.line(&format!("  warning: {id}: {warning}"));
                }
                self.summary.built.push(id.clone());
                if let Some(remote) = self.remote.as_mut().filter(|r| r.upload && !built.by_other) {
                    if remote.jobs.send(Job::Upload(i, key)).is_ok() {
                        remote.uploading += 1;
                        self.reporter.transfer(i, &format!("uploading {id}"));
                    }
                }
            }
            Outcome::Failed(message) => {
                if let Err(e) = self.fp.state_mut().record_failure(id, key) {
                    tracing::warn!("cannot record failure of {id}: {e}");
                }
                if self.summary.cancelled {
                    // Whatever a node says after Ctrl-C, Ctrl-C is why.
                    self.reporter.node_failed(i, id, "cancelled", &log());
                    self.phase[i] = Phase::Cancelled;
                } else {
                    self.reporter.node_failed(i, id, &message, &log());
                    self.fail(i, message);
                }
            }
            Outcome::Cancelled => {
                // Nodes stop only for Ctrl-C, even if the loop has not seen it yet.
                self.interrupt();
                self.reporter.node_failed(i, id, "cancelled", &log());
                self.phase[i] = Phase::Cancelled;
            }
        }
    }

    /// Node `i` failed: its dependents will be skipped, and without
    /// `--keep-going` nothing new starts.
    fn fail(&mut self, i: usize, message: String) {
        self.phase[i] = Phase::Failed;
        self.summary.failed.push((self.plan.experiment.nodes[i].id.0.clone(), message));
        self.stopping |= !self.keep_going;
    }

    /// The summary; what never ran is listed as skipped.
    pub(super) fn finish(mut self) -> RunSummary {
        self.reporter.clear();
        for &i in &self.order {
            let id = self.plan.experiment.nodes[i].id.0.clone();
            match self.phase[i] {
                Phase::Fresh => self.summary.fresh.push(id),
                // A helper nobody needed was not skipped: it was not wanted.
                Phase::Pending if self.helper[i] && !self.wanted[i] => {}
                Phase::Pending | Phase::Skipped => self.summary.skipped.push(id),
                Phase::Running | Phase::Built | Phase::Failed | Phase::Cancelled => {}
            }
        }
        self.fp.finish();
        self.summary
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::slots::{SlotPool, Take};
    use crate::nodes::Registry;

    /// Takes real slots and runs nothing: each test says how its nodes end.
    struct FakeRunner<'p> {
        plan: &'p Plan,
        slots: SlotPool,
        running: BTreeMap<usize, Slots>,
    }

    impl Runner for FakeRunner<'_> {
        fn start(&mut self, i: usize, _key: ContentHash, _parts: &KeyParts, _inputs: &dyn Fn() -> Vec<Input>) -> Start {
            match self.slots.take(&self.plan.experiment.nodes[i].resources) {
                Take::Got(slots) => {
                    self.running.insert(i, slots);
                    Start::Started(None)
                }
                Take::Busy => Start::Busy,
                Take::Never(why) => Start::Failed(why),
            }
        }
        fn begin_pass(&mut self) {
            self.slots.begin_pass();
        }
        fn release(&mut self, slots: Slots) {
            self.slots.release(slots);
        }
    }

    /// A run driven by hand, one coordinator turn at a time.
    struct Sim<'a> {
        state: RunState<'a>,
        runner: FakeRunner<'a>,
    }

    impl Sim<'_> {
        /// One turn without a message (settle, dispatch): the nodes it started.
        fn turn(&mut self) -> Vec<String> {
            let before: Vec<usize> = self.runner.running.keys().copied().collect();
            self.state.settle();
            self.state.dispatch(&mut self.runner);
            let nodes = &self.runner.plan.experiment.nodes;
            self.runner.running.keys().filter(|i| !before.contains(i)).map(|&i| nodes[i].id.0.clone()).collect()
        }

        /// Running node `id` ends with `outcome`; the turn that follows
        /// started these nodes.
        fn end(&mut self, id: &str, outcome: Outcome) -> Vec<String> {
            let i = self.runner.plan.experiment.nodes.iter().position(|n| n.id.0 == id).expect("a node of the plan");
            let slots = self.runner.running.remove(&i).unwrap_or_else(|| panic!("{id} is not running"));
            self.state.receive(Message::Done(i, outcome, slots), &mut self.runner);
            self.turn()
        }
    }

    fn built(id: &str) -> Outcome {
        Outcome::Built(Built {
            artifact: ContentHash::of(id.as_bytes()),
            seconds: 0.0,
            by_other: false,
            warnings: vec![],
        })
    }

    fn names(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// Runs `test` on a fresh run of `nodes` (YAML) with an empty cache,
    /// `jobs` CPU slots and `gpus` GPUs; returns the summary and the state log.
    fn simulate(
        nodes: &str,
        jobs: usize,
        gpus: usize,
        keep_going: bool,
        test: impl FnOnce(&mut Sim<'_>),
    ) -> (RunSummary, crate::cache::StateLog) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let yaml = format!("nodes:\n{nodes}");
        let experiment =
            crate::spec::load_str("e.yaml".into(), yaml, "e".into(), &Registry::builtin()).expect("a valid experiment");
        let plan = Plan::new(experiment).expect("a valid graph");
        let cache = Cache::open(&dir.path().join("cache")).expect("a cache");
        let opts = RunOptions {
            jobs,
            gpus: Some(gpus),
            keep_going,
            targets: vec![],
            progress_bars: false,
            backend: crate::exec::Backend::Local,
            remote: None,
        };
        let state =
            RunState::new(&plan, &Workspace { root: dir.path(), cache: &cache }, &opts).expect("all targets exist");
        fn no_probe() -> Result<usize, String> {
            unreachable!("the GPU count is given")
        }
        let runner =
            FakeRunner { plan: &plan, slots: SlotPool::new(jobs, Some(gpus), no_probe), running: BTreeMap::new() };
        let mut sim = Sim { state, runner };
        test(&mut sim);
        assert!(sim.runner.running.is_empty(), "the test left nodes running");
        assert!(sim.state.is_done(), "the run would go on");
        (sim.state.finish(), cache.state("e"))
    }

    const FOUR: &str = "  a: {kind: command, cmd: 'true'}\n  b: {kind: command, cmd: 'true'}\n  c: {kind: command, cmd: 'true'}\n  d: {kind: command, cmd: 'true'}\n";

    #[test]
    fn ready_nodes_start_in_file_order_within_the_slots() {
        let (summary, _) = simulate(FOUR, 2, 0, false, |sim| {
            assert_eq!(sim.turn(), names(&["a", "b"]));
            assert_eq!(sim.end("b", built("b")), names(&["c"]));
            assert_eq!(sim.end("a", built("a")), names(&["d"]));
            assert!(sim.end("c", built("c")).is_empty());
            assert!(sim.end("d", built("d")).is_empty());
        });
        assert_eq!(summary.built, names(&["b", "a", "c", "d"]));
        assert!(
            summary.failed.is_empty() && summary.skipped.is_empty() && summary.fresh.is_empty() && !summary.cancelled
        );
    }

    #[test]
    fn a_node_starts_once_all_its_inputs_are_built() {
        let nodes = "  a: {kind: command, cmd: 'true'}\n  b: {kind: command, cmd: 'true'}\n  c: {kind: command, input: [a, b], cmd: 'true'}\n";
        simulate(nodes, 4, 0, false, |sim| {
            assert_eq!(sim.turn(), names(&["a", "b"]));
            assert!(sim.end("a", built("a")).is_empty());
            assert_eq!(sim.end("b", built("b")), names(&["c"]));
            assert!(sim.end("c", built("c")).is_empty());
        });
    }

    #[test]
    fn a_wide_node_is_not_starved_by_narrow_ones() {
        // -j 2: `wide` (2 slots) becomes ready while one slot is free and
        // narrow nodes queue behind it: it holds the free slot back and
        // starts as soon as the second one frees, before any narrow node.
        let nodes = "  first: {kind: command, cmd: 'true'}\n  wide: {kind: command, input: first, resources: {cpu: 2}, cmd: 'true'}\n  s1: {kind: command, cmd: 'true'}\n  s2: {kind: command, cmd: 'true'}\n  s3: {kind: command, cmd: 'true'}\n";
        simulate(nodes, 2, 0, false, |sim| {
            assert_eq!(sim.turn(), names(&["first", "s1"]));
            assert!(sim.end("first", built("first")).is_empty(), "a narrow node took the slot the wide one waits for");
            assert_eq!(sim.end("s1", built("s1")), names(&["wide"]));
            assert_eq!(sim.end("wide", built("wide")), names(&["s2", "s3"]));
            sim.end("s2", built("s2"));
            sim.end("s3", built("s3"));
        });
    }

    #[test]
    fn the_first_failure_stops_new_work_and_lets_running_nodes_finish() {
        let (summary, log) = simulate(FOUR, 2, 0, false, |sim| {
            assert_eq!(sim.turn(), names(&["a", "b"]));
            assert!(sim.end("a", Outcome::Failed("boom".into())).is_empty());
            assert!(!sim.state.is_done(), "b still runs");
            assert!(sim.end("b", built("b")).is_empty());
        });
        assert_eq!(summary.failed, vec![("a".to_string(), "boom".to_string())]);
        assert_eq!(summary.built, names(&["b"]));
        assert_eq!(summary.skipped, names(&["c", "d"]));
        assert!(log.failed_key("a").is_some(), "the failure is recorded for `status`");
    }

    #[test]
    fn keep_going_builds_everything_not_downstream_of_a_failure() {
        let nodes = "  a: {kind: command, cmd: 'true'}\n  after_a: {kind: command, input: a, cmd: 'true'}\n  b: {kind: command, cmd: 'true'}\n";
        let (summary, _) = simulate(nodes, 1, 0, true, |sim| {
            assert_eq!(sim.turn(), names(&["a"]));
            assert_eq!(sim.end("a", Outcome::Failed("boom".into())), names(&["b"]));
            assert!(sim.end("b", built("b")).is_empty());
        });
        assert_eq!(summary.failed.len(), 1);
        assert_eq!(summary.built, names(&["b"]));
        assert_eq!(summary.skipped, names(&["after_a"]));
    }

    #[test]
    fn ctrl_c_starts_nothing_more_and_what_it_stops_is_not_a_failure() {
        let (summary, log) = simulate(FOUR, 2, 0, true, |sim| {
            assert_eq!(sim.turn(), names(&["a", "b"]));
            sim.state.interrupt();
            assert!(sim.end("a", Outcome::Cancelled).is_empty());
            // A node killed by the cancellation may report any error.
            assert!(sim.end("b", Outcome::Failed("command was killed by a signal".into())).is_empty());
        });
        assert!(summary.cancelled);
        assert!(summary.failed.is_empty() && summary.built.is_empty(), "{summary:?}");
        assert_eq!(summary.skipped, names(&["c", "d"]));
        assert!(log.failed_key("a").is_none(), "a cancelled node was recorded as failed");
    }

    #[test]
    fn a_node_cancelled_before_the_flag_is_seen_interrupts_the_run() {
        let (summary, _) = simulate(FOUR, 1, 0, true, |sim| {
            assert_eq!(sim.turn(), names(&["a"]));
            assert!(sim.end("a", Outcome::Cancelled).is_empty());
        });
        assert!(summary.cancelled && summary.failed.is_empty(), "{summary:?}");
        assert_eq!(summary.skipped, names(&["b", "c", "d"]));
    }

    #[test]
    fn a_node_that_can_never_run_stops_the_rest_of_its_pass_without_keep_going() {
        let nodes = "  g: {kind: command, cmd: 'true', resources: {gpu: 1}}\n  c: {kind: command, cmd: 'true'}\n";
        let (summary, _) = simulate(nodes, 2, 0, false, |sim| assert!(sim.turn().is_empty()));
        assert_eq!(summary.failed.len(), 1);
        assert_eq!(summary.skipped, names(&["c"]));
    }

    #[test]
    fn a_node_waiting_for_a_gpu_does_not_stop_cpu_nodes() {
        let nodes = "  g1: {kind: command, cmd: 'true', resources: {gpu: 1}}\n  g2: {kind: command, cmd: 'true', resources: {gpu: 1}}\n  c: {kind: command, cmd: 'true'}\n";
        simulate(nodes, 4, 1, false, |sim| {
            assert_eq!(sim.turn(), names(&["g1", "c"]));
            assert_eq!(sim.end("g1", built("g1")), names(&["g2"]));
            sim.end("g2", built("g2"));
            sim.end("c", built("c"));
        });
    }

    #[test]
    fn a_node_that_can_never_run_fails_and_the_others_go_on_with_keep_going() {
        let nodes = "  g: {kind: command, cmd: 'true', resources: {gpu: 1}}\n  c: {kind: command, cmd: 'true'}\n";
        let (summary, _) = simulate(nodes, 2, 0, true, |sim| {
            assert_eq!(sim.turn(), names(&["c"]));
            assert!(sim.end("c", built("c")).is_empty());
        });
        assert_eq!(summary.failed, vec![("g".to_string(), "needs 1 GPU(s), 0 visible".to_string())]);
        assert_eq!(summary.built, names(&["c"]));
    }
}
