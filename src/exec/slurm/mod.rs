//! The Slurm backend: each ready node becomes one `sbatch` job running
//! `scalemake exec-node --key <key> <node>`, which builds it exactly as the
//! local executor does ([`super::build_one`]: lock, stage, run, commit).
//!
//! Jobs are submitted when their node is ready, not as a whole DAG with
//! `--dependency=afterok`: this process stays the coordinator (the same
//! loop as the local backend, see `super::coordinator`) and polls `squeue`, so
//! early cut-off, `--keep-going` and failure reporting are identical, and no
//! job is ever left `DependencyNeverSatisfied` in the queue.
//!
//! Each submitted job is recorded in `cache/slurm/<key>.job` (written under
//! the flock `cache/slurm/<key>.lock`): a run that finds a record whose job
//! is still pending or running waits for that job instead of submitting a
//! duplicate, e.g. after its coordinator was killed. `sacct` is not needed:
//! a job that has left `squeue` counts as successful iff its artifact is in
//! the cache.

pub mod detach;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Built, Input, KeyParts, Message, Outcome, Runner, Slots, Start, Workspace, CANCELLED};
use crate::cache::Cache;
use crate::config::JobSettings;
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::spec::NodeSpec;

/// How often the coordinator asks `squeue` about its jobs.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a finished job may lack its artifact before it counts as failed
/// (attribute caches of a shared filesystem can lag behind the job's commit).
const COMMIT_GRACE: Duration = Duration::from_secs(30);

/// Seconds of warning a training job gets before its time limit (SIGUSR1)
/// when `scalemake.toml` does not say: enough to finish a step and write a
/// checkpoint of a large model to a shared filesystem.
pub const DEFAULT_SIGNAL_GRACE: u32 = 120;

/// Slurm settings of a run: `--slurm-*` flags or `SCALEMAKE_SLURM_*` over
/// `scalemake.toml`'s `[slurm]`.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `sbatch` options of every job.
    pub jobs: JobSettings,
    /// Per node kind, over `jobs`.
    pub kinds: BTreeMap<String, JobSettings>,
    /// At most this many tasks of one sweep's job array run at once (`%N`).
    pub array_limit: Option<u32>,
    /// Seconds of SIGUSR1 warning before a training job's time limit.
    pub signal_grace: u32,
    /// At most this many jobs queued or running at once (`-j`).
    pub max_jobs: usize,
    /// The experiment file, as the jobs will read it (absolute).
    pub file: PathBuf,
    /// The `scalemake` executable the jobs run (absolute, on a shared filesystem).
    pub exe: PathBuf,
    /// The remote cache each job fetches its node from or uploads it to
    /// itself: set for detached runs, whose submitter is gone by then (an
    /// attached run's coordinator does its own transfers).
    pub job_remote: Option<JobRemote>,
}

/// A remote cache as a job reaches it.
#[derive(Clone, Debug, Default)]
pub struct JobRemote {
    /// `file:///shared/dir` or `s3://bucket/prefix`, as the submitter had it.
    pub url: String,
    /// Fetch only, never upload.
    pub read_only: bool,
}

impl SlurmOptions {
    /// The `sbatch` options of a node of `kind`.
    pub fn settings_for(&self, kind: &str) -> JobSettings {
        self.kinds.get(kind).map_or_else(|| self.jobs.clone(), |k| k.or(&self.jobs))
    }
}

/// Why Slurm could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command could not run or failed.
    #[error("slurm: `{program}` failed: {message}")]
    Command {
        /// `sbatch`, `squeue`, `scancel`.
        program: String,
        /// Its error output, or why it could not start.
        message: String,
    },
    /// The cluster refuses more queued jobs for now (a submit limit).
    #[error("slurm: the queue is full for now: {0}")]
    SubmitLimit(String),
    /// A node cannot be built as declared (nothing was submitted).
    #[error("{node}: {message}")]
    Unbuildable {
        /// The node.
        node: String,
        /// Why.
        message: String,
    },
    /// A job record could not be read or written.
    #[error("slurm: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SlurmError + '_ {
    move |source| SlurmError::Io { path: path.to_path_buf(), source }
}

/// `cache/slurm/<key>.job`: the job last submitted for a key.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// Slurm job id (`123`, or `123_4` for a task of a job array).
    pub job: String,
    /// Node id.
    pub node: String,
    /// Experiment name.
    pub experiment: String,
}

/// True for a job state (`squeue %T`) in which the job may still run.
pub fn is_active(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "CONFIGURING"
            | "RUNNING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
    )
}

fn run_tool(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let out = Command::new(program).args(args).output().map_err(|e| SlurmError::Command {
        program: program.into(),
        message: format!("{e} (is Slurm installed and on PATH?)"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SlurmError::Command {
            program: program.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The states of `jobs` that Slurm still knows (`squeue -t all`); jobs it
/// has forgotten (older than MinJobAge) are absent.
pub fn job_states(jobs: &[String]) -> Result<HashMap<String, String>, SlurmError> {
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    // `-r`: one line per array task (`123_4`), pending ones included.
    let args = ["-h", "-r", "-t", "all", "-o", "%i %T", "-j", &jobs.join(",")].map(String::from);
    let text = match run_tool("squeue", &args) {
        Ok(text) => text,
        // A single forgotten id makes squeue fail instead of printing nothing.
        Err(SlurmError::Command { message, .. }) if message.contains("Invalid job id") => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.trim().to_string(), state.trim().to_string()))
        .collect())
}

/// Submits a job (`sbatch --parsable …`); its id.
fn sbatch(args: &[String]) -> Result<String, SlurmError> {
    let text = match run_tool("sbatch", args) {
        Err(SlurmError::Command { message, .. }) if is_submit_limit(&message) => {
            return Err(SlurmError::SubmitLimit(message))
        }
        other => other?,
    };
    // `--parsable` prints `id` or `id;cluster`.
    let id = text.trim().split(';').next().unwrap_or_default();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlurmError::Command { program: "sbatch".into(), message: format!("unexpected output {text:?}") });
    }
    Ok(id.to_string())
}

/// Whether `sbatch`'s error is a limit on how many jobs may be queued
/// (QoS or association MaxSubmitJobs, the controller's MaxJobCount): the
/// submission is fine and must be retried once jobs leave the queue.
fn is_submit_limit(message: &str) -> bool {
    [
        "MaxSubmitJob",
        "AssocMaxSubmitJobLimit",
        "QOSMaxSubmitJobPerUserLimit",
        "MaxJobCount",
        "Job violates accounting/QOS policy",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Cancels `jobs` (`scancel`).
pub fn cancel_jobs(jobs: &[String]) -> Result<(), SlurmError> {
    if jobs.is_empty() {
        return Ok(());
    }
    run_tool("scancel", jobs).map(drop)
}

/// `sh` single-quoting.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where Slurm writes a job's own output (`sbatch -o`): beside the node's
/// log, which the node itself writes.
pub fn job_output(cache: &Cache, experiment: &str, node: &str) -> PathBuf {
    cache.node_log(experiment, node).with_extension("slurm.out")
}

/// The `sbatch` options of `node`'s job, without the command: name,
/// directories, resources and settings, `--requeue` (a preempted job runs
/// again; a training job resumes from its checkpoint) and, for nodes that
/// resume, the time-limit warning.
pub fn job_flags(node: &NodeSpec, name: &str, opts: &SlurmOptions, root: &Path, output: &Path) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={name}"),
        format!("--chdir={}", root.display()),
        format!("--output={}", output.display()),
        "--requeue".to_string(),
    ];
    // A node of several processes (a data-parallel run's ranks) is one job
    // of as many tasks, each with its share of the slots and one GPU: Slurm
    // places them on as many nodes as that takes.
    let tasks = node.resources.tasks.max(1);
    args.push(format!("--cpus-per-task={}", node.resources.cpu.max(1).div_ceil(tasks)));
    if tasks > 1 {
        args.push(format!("--ntasks={tasks}"));
    }
    // `device: auto` may use a GPU but does not need one: ask for GPUs only
    // for nodes that require them (`device: cuda`), not silently for every
    // training node.
    if node.resources.gpu > 0 && !node.resources.gpu_optional {
        if tasks > 1 {
            args.push(format!("--gpus-per-task={}", node.resources.gpu.div_ceil(tasks)));
        } else {
            args.push(format!("--gres=gpu:{}", node.resources.gpu));
        }
    }
    if node.kind.resumes() {
        args.push(format!("--signal=B:USR1@{}", opts.signal_grace));
    }
    let s = opts.settings_for(node.kind.name());
    let options = [
        ("--mem", &s.mem),
        ("--time", &s.time),
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
    ];
    args.extend(options.iter().filter_map(|(flag, value)| value.as_ref().map(|v| format!("{flag}={v}"))));
    args
}

/// The `exec-node` command line a job runs for `node` (with `key`: the job
/// refuses to build anything else; without: it computes the key when its
/// inputs are built).
fn exec_node_command(opts: &SlurmOptions, cache: &Path, node: &str, key: Option<&ContentHash>) -> Vec<String> {
    let mut command = vec![
        opts.exe.display().to_string(),
        "--cache".into(),
        cache.display().to_string(),
        "-f".into(),
        opts.file.display().to_string(),
        "exec-node".into(),
    ];
    if let Some(key) = key {
        command.extend(["--key".to_string(), key.hex()]);
    }
    if let Some(remote) = &opts.job_remote {
        command.extend(["--remote".to_string(), remote.url.clone()]);
        if remote.read_only {
            command.push("--remote-read-only".into());
        }
    }
    // Last, where an array job's script puts its task's node instead.
    command.push(node.to_string());
    command
}

/// `--wrap` of a command: `exec` it, so that Slurm's signals reach
/// scalemake itself (`B:` signals only the batch shell).
fn wrap(command: &[String]) -> [String; 2] {
    ["--wrap".into(), format!("exec {}", command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))]
}

/// The `sbatch` arguments that build `node` (key `key`) in a job.
pub fn sbatch_args(
    node: &NodeSpec,
    key: &ContentHash,
    opts: &SlurmOptions,
    root: &Path,
    cache: &Path,
    output: &Path,
) -> Vec<String> {
    let mut args = job_flags(node, &node.id.0, opts, root, output);
    args.extend(wrap(&exec_node_command(opts, cache, &node.id.0, Some(key))));
    args
}

/// The job records of the cache, by key.
struct Records {
    dir: PathBuf,
}

impl Records {
    fn open(cache: &Cache) -> Result<Self, SlurmError> {
        let dir = cache.root().join("slurm");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Records { dir })
    }

    fn path(&self, key: &ContentHash) -> PathBuf {
        self.dir.join(format!("{}.job", key.hex()))
    }

    /// The key's submission lock (an `flock`, as the cache's build locks).
    fn lock(&self, key: &ContentHash) -> Result<File, SlurmError> {
        let path = self.dir.join(format!("{}.lock", key.hex()));
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(file)
    }

    fn read(&self, key: &ContentHash) -> Option<JobRecord> {
        serde_json::from_slice(&fs::read(self.path(key)).ok()?).ok()
    }

    /// Written to a temporary file and renamed: readers see all or nothing.
    fn write(&self, key: &ContentHash, record: &JobRecord) -> Result<(), SlurmError> {
        let path = self.path(key);
        let tmp = path.with_extension(format!("job.{}", std::process::id()));
        let json = serde_json::to_vec(record).map_err(|e| SlurmError::Io { path: path.clone(), source: e.into() })?;
        fs::write(&tmp, json).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    fn remove(&self, key: &ContentHash) {
        let _ = fs::remove_file(self.path(key));
    }

    /// Every record, with its key.
    fn all(&self) -> Vec<(ContentHash, JobRecord)> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = ContentHash::from_hex(name.strip_suffix(".job")?)?;
                Some((key, self.read(&key)?))
            })
            .collect()
    }
}

/// One job the coordinator waits for.
struct Tracked {
    node: usize,
    key: ContentHash,
    /// When it was first seen finished without its artifact.
    finished_without_artifact: Option<Instant>,
}

/// Runs each node as a Slurm job and polls their states.
pub(super) struct SlurmRunner<'a> {
    plan: &'a Plan,
    ws: &'a Workspace<'a>,
    opts: &'a SlurmOptions,
    tx: mpsc::Sender<Message>,
    records: Records,
    cache_dir: PathBuf,
    jobs: BTreeMap<String, Tracked>,
    last_poll: Option<Instant>,
}

impl<'a> SlurmRunner<'a> {
    pub(super) fn new(
        plan: &'a Plan,
        ws: &'a Workspace<'a>,
        opts: &'a SlurmOptions,
        tx: mpsc::Sender<Message>,
    ) -> Result<Self, SlurmError> {
        run_tool("sbatch", &["--version".to_string()])?;
        let cache_dir = std::path::absolute(ws.cache.root()).map_err(io_err(ws.cache.root()))?;
        Ok(SlurmRunner {
            plan,
            ws,
            opts,
            tx,
            records: Records::open(ws.cache)?,
            cache_dir,
            jobs: BTreeMap::new(),
            last_poll: None,
        })
    }

    fn submit(&mut self, i: usize, key: ContentHash) -> Result<String, SlurmError> {
        let node = &self.plan.experiment.nodes[i];
        let exp = &self.plan.experiment.name;
        // Held while checking for a job and submitting one, so that two
        // coordinators never both submit the same key.
        let _lock = self.records.lock(&key)?;
        let earlier =
            self.records.read(&key).map(|r| r.job).or_else(|| detach::recorded_job(self.ws.cache, exp, &node.id.0));
        if let Some(job) = earlier {
            // A job that ended since this run surveyed the cache may have built the key: adopt
            // it too (its outcome is read from the cache at the next poll), never build twice.
            let state = job_states(std::slice::from_ref(&job))?.remove(&job);
            let active = state.as_deref().is_some_and(is_active);
            let built_it = state.as_deref().is_none_or(|s| s == "COMPLETED") && self.ws.cache.contains(&key);
            if active || built_it {
                let note = if active {
                    format!("Slurm job {job} (submitted earlier) is still queued or running; waiting for it")
                } else {
                    format!("Slurm job {job} (submitted earlier) has just built it")
                };
                self.jobs.insert(job, Tracked { node: i, key, finished_without_artifact: None });
                return Ok(note);
            }
        }
        let output = job_output(self.ws.cache, exp, &node.id.0);
        if let Some(dir) = output.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let root = std::path::absolute(self.ws.root).map_err(io_err(self.ws.root))?;
        let job = sbatch(&sbatch_args(node, &key, self.opts, &root, &self.cache_dir, &output))?;
        self.records.write(&key, &JobRecord { job: job.clone(), node: node.id.0.clone(), experiment: exp.clone() })?;
        let note = format!("submitted as Slurm job {job}");
        self.jobs.insert(job, Tracked { node: i, key, finished_without_artifact: None });
        Ok(note)
    }

    /// The outcome of a job that is no longer active (`state`: its final
    /// state, `None` once Slurm forgot it); `None` while its artifact may
    /// still be on its way.
    fn outcome(&self, job: &str, tracked: &mut Tracked, state: Option<&str>) -> Option<Outcome> {
        let failed = state.is_some_and(|s| s != "COMPLETED");
        if !failed {
            match self.ws.cache.manifest(&tracked.key) {
                Ok(Some(m)) => {
                    return Some(Outcome::Built(Built {
                        artifact: m.artifact,
                        seconds: m.seconds,
                        by_other: false,
                        warnings: m.warnings,
                    }))
                }
                Ok(None)
                    if tracked.finished_without_artifact.get_or_insert_with(Instant::now).elapsed() < COMMIT_GRACE =>
                {
                    return None
                }
                Ok(None) => {}
                Err(e) => return Some(Outcome::Failed(e.to_string())),
            }
        }
        let node = &self.plan.experiment.nodes[tracked.node];
        let output = job_output(self.ws.cache, &self.plan.experiment.name, &node.id.0);
        let said = fs::read_to_string(&output).ok().and_then(|text| {
            text.lines().rev().find_map(|l| {
                l.strip_prefix("scalemake: node failed: ")
                    .or_else(|| l.strip_prefix("scalemake: error: "))
                    .map(str::to_string)
            })
        });
        let state = state.unwrap_or("gone from squeue, no artifact committed");
        Some(Outcome::Failed(match said {
            Some(message) => format!("{message} (Slurm job {job} {state})"),
            None => format!("Slurm job {job} {state}; see {}", output.display()),
        }))
    }
}

impl Runner for SlurmRunner<'_> {
    fn start(&mut self, i: usize, key: ContentHash, _parts: &KeyParts, _inputs: &dyn Fn() -> Vec<Input>) -> Start {
        if self.jobs.len() >= self.opts.max_jobs.max(1) {
            return Start::Busy;
        }
        match self.submit(i, key) {
            Ok(note) => Start::Started(Some(note)),
            // Retried when one of our jobs leaves the queue.
            Err(SlurmError::SubmitLimit(why)) if !self.jobs.is_empty() => {
                tracing::info!("{why}; submitting when a job finishes");
                Start::Busy
            }
            Err(e) => Start::Failed(e.to_string()),
        }
    }

    fn poll(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        if CANCELLED.load(Ordering::Relaxed) {
            if let Err(e) = cancel_jobs(&ids) {
                tracing::warn!("{e}");
            }
            for tracked in std::mem::take(&mut self.jobs).into_values() {
                self.records.remove(&tracked.key);
                let _ = self.tx.send(Message::Done(tracked.node, Outcome::Cancelled, Slots::default()));
            }
            return;
        }
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL_EVERY) {
            return;
        }
        self.last_poll = Some(Instant::now());
        let states = match job_states(&ids) {
            Ok(states) => states,
            Err(e) => {
                // Transient (slurmctld busy or restarting): ask again next time.
                tracing::warn!("{e}");
                return;
            }
        };
        for id in ids {
            let state = states.get(&id).map(String::as_str);
            if state.is_some_and(is_active) {
                continue;
            }
            let mut tracked = self.jobs.remove(&id).expect("tracked job");
            match self.outcome(&id, &mut tracked, state) {
                Some(outcome) => {
                    self.records.remove(&tracked.key);
                    let _ = self.tx.send(Message::Done(tracked.node, outcome, Slots::default()));
                }
                None => {
                    self.jobs.insert(id, tracked);
                }
            }
        }
    }
}

/// `scalemake cancel`: cancels the recorded jobs of `experiment`'s `nodes`
/// that are still queued or running. Returns (job, node) of each.
pub fn cancel_recorded(
    cache: &Cache,
    experiment: &str,
    nodes: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, SlurmError> {
    let records = Records::open(cache)?;
    let attached: Vec<(ContentHash, JobRecord)> =
        records.all().into_iter().filter(|(_, r)| r.experiment == experiment && nodes.contains(&r.node)).collect();
    // (job, node) of every record, attached runs' and detached submissions'.
    let mut mine: Vec<(String, String)> = attached.iter().map(|(_, r)| (r.job.clone(), r.node.clone())).collect();
    mine.extend(
        detach::recorded_jobs(cache, experiment)
            .into_iter()
            .filter(|(node, _)| nodes.contains(node))
            .map(|(node, job)| (job, node)),
    );
    let states = job_states(&mine.iter().map(|(job, _)| job.clone()).collect::<Vec<_>>())?;
    mine.retain(|(job, _)| states.get(job).is_some_and(|s| is_active(s)));
    mine.sort();
    mine.dedup();
    cancel_jobs(&mine.iter().map(|(job, _)| job.clone()).collect::<Vec<_>>())?;
    for (key, _) in &attached {
        records.remove(key);
    }
    detach::forget(cache, experiment, nodes)?;
    Ok(mine)
}

/// Signal handling of a Slurm job (`exec-node`): SIGINT cancels as Ctrl-C
/// does; SIGTERM (preemption, `scontrol requeue`, `scancel`) and SIGUSR1
/// (`--signal=B:USR1@grace` before the time limit) ask the node to stop at a
/// resumable point: a training worker checkpoints first. Slurm requeues a
/// preempted job itself; after SIGUSR1 the job must requeue itself, which
/// the returned flag says ([`requeue_this_job`]).
pub fn stop_on_job_signals() -> io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let requeue = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // SAFETY (all three): the handlers only store to atomics.
    unsafe {
        signal_hook::low_level::register(SIGINT, || CANCELLED.store(true, Ordering::SeqCst))?;
        signal_hook::low_level::register(SIGTERM, || {
            crate::process::request_suspend();
            CANCELLED.store(true, Ordering::SeqCst);
        })?;
        let flag = requeue.clone();
        signal_hook::low_level::register(SIGUSR1, move || {
            flag.store(true, Ordering::SeqCst);
            crate::process::request_suspend();
            CANCELLED.store(true, Ordering::SeqCst);
        })?;
    }
    Ok(requeue)
}

/// How long a job that requeued itself waits for Slurm to stop it (its
/// signals are then only noted): longer than any cluster's KillWait.
pub const REQUEUE_KILL_WAIT: Duration = Duration::from_secs(300);

/// `scontrol requeue $SLURM_JOB_ID`: this job goes back to the queue (same
/// id, so dependent jobs keep waiting for it) and runs again from the start
/// of its script, which resumes the node from its checkpoint.
pub fn requeue_this_job() -> Result<(), SlurmError> {
    let id = std::env::var("SLURM_JOB_ID").map_err(|_| SlurmError::Command {
        program: "scontrol".into(),
        message: "SLURM_JOB_ID is not set: not in a Slurm job".into(),
    })?;
    run_tool("scontrol", &["requeue".to_string(), id]).map(drop)
}

/// GPU slots of a job: as many as the node asks for that Slurm made visible
/// (`CUDA_VISIBLE_DEVICES`, which [`crate::device::visible_device`] maps).
pub fn job_gpus(wanted: u32) -> Vec<usize> {
    let visible =
        std::env::var("CUDA_VISIBLE_DEVICES").map_or(0, |m| m.split(',').filter(|s| !s.trim().is_empty()).count());
    (0..visible.min(wanted as usize)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn queue_limits_are_told_from_other_refusals() {
        assert!(is_submit_limit("sbatch: error: QOSMaxSubmitJobPerUserLimit"));
        assert!(is_submit_limit("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"));
        assert!(!is_submit_limit("sbatch: error: invalid partition specified: gpu"));
    }

    #[test]
    fn active_states() {
        assert!(is_active("PENDING") && is_active("RUNNING") && is_active("COMPLETING"));
        assert!(!is_active("COMPLETED") && !is_active("FAILED") && !is_active("CANCELLED") && !is_active("TIMEOUT"));
    }

    #[test]
    fn resources_and_options_map_to_sbatch_flags() {
        let yaml = "nodes:\n  t: {kind: command, cmd: 'echo hi', resources: {cpu: 4, gpu: 2}}\n";
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin())
            .unwrap();
        let jobs = JobSettings { partition: Some("gpu".into()), time: Some("1-00:00:00".into()), ..Default::default() };
        let opts = SlurmOptions { jobs, file: "/p/e.yaml".into(), exe: "/bin/scalemake".into(), ..Default::default() };
        let key = ContentHash::of(b"k");
        let args = sbatch_args(
            &exp.nodes[0],
            &key,
            &opts,
            Path::new("/p"),
            Path::new("/p/cache"),
            Path::new("/p/cache/logs/e/t.slurm.out"),
        );
        for flag in [
            "--job-name=t",
            "--chdir=/p",
            "--output=/p/cache/logs/e/t.slurm.out",
            "--cpus-per-task=4",
            "--gres=gpu:2",
            "--time=1-00:00:00",
            "--partition=gpu",
            "--requeue",
        ] {
            assert!(args.contains(&flag.to_string()), "{flag} missing from {args:?}");
        }
        assert!(
            !args.iter().any(|a| a.starts_with("--account") || a.starts_with("--mem") || a.starts_with("--signal")),
            "{args:?}"
        );
        let wrap = args.last().unwrap();
        assert_eq!(
            wrap,
            &format!(
                "exec '/bin/scalemake' '--cache' '/p/cache' '-f' '/p/e.yaml' 'exec-node' '--key' '{}' 't'",
                key.hex()
            )
        );
        // A detached run's jobs reach the remote themselves.
        let job_remote = Some(JobRemote { url: "s3://b/p".into(), read_only: true });
        let opts = SlurmOptions { job_remote, ..opts };
        let args = sbatch_args(&exp.nodes[0], &key, &opts, Path::new("/p"), Path::new("/p/cache"), Path::new("/o"));
        assert!(
            args.last()
                .unwrap()
                .ends_with(&format!("'--key' '{}' '--remote' 's3://b/p' '--remote-read-only' 't'", key.hex())),
            "{args:?}"
        );
    }

    #[test]
    fn training_jobs_get_the_time_limit_warning_and_auto_devices_no_gpu() {
        let yaml = "nodes:\n  t: {kind: train, model: {preset: nano}, max_tokens: 1000, device: auto}\n  g: {kind: train, model: {preset: nano}, max_tokens: 1000, device: cuda}\n";
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin())
            .unwrap();
        let kinds = BTreeMap::from([(
            "train".to_string(),
            JobSettings { time: Some("2-00:00:00".into()), ..Default::default() },
        )]);
        let jobs = JobSettings { time: Some("1:00:00".into()), partition: Some("p".into()), ..Default::default() };
        let opts = SlurmOptions { jobs, kinds, signal_grace: 90, ..Default::default() };
        let auto = job_flags(&exp.nodes[0], "t", &opts, Path::new("/p"), Path::new("/p/o"));
        assert!(
            auto.contains(&"--signal=B:USR1@90".to_string()) && auto.contains(&"--requeue".to_string()),
            "{auto:?}"
        );
        assert!(!auto.iter().any(|a| a.starts_with("--gres")), "device: auto must not ask for a GPU: {auto:?}");
        assert!(
            auto.contains(&"--time=2-00:00:00".to_string()) && auto.contains(&"--partition=p".to_string()),
            "per-kind over every job: {auto:?}"
        );
        let cuda = job_flags(&exp.nodes[1], "g", &opts, Path::new("/p"), Path::new("/p/o"));
        assert!(cuda.contains(&"--gres=gpu:1".to_string()), "{cuda:?}");
    }

    /// A data-parallel run is one job of a task per rank, each with one
    /// GPU on CUDA, or its share of the cores on the CPU.
    #[test]
    fn a_run_of_several_devices_is_one_job_of_as_many_tasks() {
        let yaml = "nodes:\n  g: {kind: train, model: {preset: nano}, max_tokens: 1000, device: cuda, devices: 16}\n  c: {kind: train, model: {preset: nano}, max_tokens: 1000, device: cpu, devices: 2, threads: 3}\n";
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin())
            .unwrap();
        let opts = SlurmOptions::default();
        let gpus = job_flags(&exp.nodes[0], "g", &opts, Path::new("/p"), Path::new("/p/o"));
        for flag in ["--ntasks=16", "--gpus-per-task=1", "--cpus-per-task=1"] {
            assert!(gpus.contains(&flag.to_string()), "{flag} missing from {gpus:?}");
        }
        assert!(!gpus.iter().any(|a| a.starts_with("--gres")), "{gpus:?}");
        let cpus = job_flags(&exp.nodes[1], "c", &opts, Path::new("/p"), Path::new("/p/o"));
        for flag in ["--ntasks=2", "--cpus-per-task=3"] {
            assert!(cpus.contains(&flag.to_string()), "{flag} missing from {cpus:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let records = Records::open(&cache).unwrap();
        let key = ContentHash::of(b"k");
        assert!(records.read(&key).is_none());
        let record = JobRecord { job: "42".into(), node: "n".into(), experiment: "e".into() };
        records.write(&key, &record).unwrap();
        assert_eq!(records.read(&key), Some(record));
        assert_eq!(records.all().len(), 1);
        records.remove(&key);
        assert!(records.all().is_empty());
    }
}
