//! The Slurm backend: each ready node becomes one `sbatch` job running
//! `scalemake exec-node <node> --key <key>`, which builds it exactly as the
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
use crate::graph::Plan;
use crate::hash::ContentHash;
use crate::spec::NodeSpec;

/// How often the coordinator asks `squeue` about its jobs.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a finished job may lack its artifact before it counts as failed
/// (attribute caches of a shared filesystem can lag behind the job's commit).
const COMMIT_GRACE: Duration = Duration::from_secs(30);

/// Slurm settings of a run (`--slurm-*` or `SCALEMAKE_SLURM_*`).
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time` of every job (else the partition's default).
    pub time: Option<String>,
    /// `--mem` of every job (else the cluster's default).
    pub mem: Option<String>,
    /// The experiment file, as the jobs will read it (absolute).
    pub file: PathBuf,
    /// The `scalemake` executable the jobs run (absolute, on a shared filesystem).
    pub exe: PathBuf,
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
    /// Slurm job id.
    pub job: u64,
    /// Node id.
    pub node: String,
    /// Experiment name.
    pub experiment: String,
}

/// True for a job state (`squeue %T`) in which the job may still run.
pub fn is_active(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESIZING" | "SIGNALING" | "STAGE_OUT" | "STOPPED"
    )
}

fn run_tool(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let out = Command::new(program).args(args).output().map_err(|e| SlurmError::Command { program: program.into(), message: format!("{e} (is Slurm installed and on PATH?)") })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SlurmError::Command { program: program.into(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// The states of `jobs` that Slurm still knows (`squeue -t all`); jobs it
/// has forgotten (older than MinJobAge) are absent.
pub fn job_states(jobs: &[u64]) -> Result<HashMap<u64, String>, SlurmError> {
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let args = ["-h", "-t", "all", "-o", "%i %T", "-j", &ids.join(",")].map(String::from);
    let text = match run_tool("squeue", &args) {
        Ok(text) => text,
        // A single forgotten id makes squeue fail instead of printing nothing.
        Err(SlurmError::Command { message, .. }) if message.contains("Invalid job id") => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text.lines().filter_map(|l| l.split_once(' ')).filter_map(|(id, state)| Some((id.trim().parse().ok()?, state.trim().to_string()))).collect())
}

/// Cancels `jobs` (`scancel`).
pub fn cancel_jobs(jobs: &[u64]) -> Result<(), SlurmError> {
    if jobs.is_empty() {
        return Ok(());
    }
    run_tool("scancel", &jobs.iter().map(u64::to_string).collect::<Vec<_>>()).map(drop)
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

/// The `sbatch` arguments that build `node` (key `key`) in a job.
pub fn sbatch_args(node: &NodeSpec, key: &ContentHash, opts: &SlurmOptions, root: &Path, cache: &Path, output: &Path) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={}", node.id),
        format!("--chdir={}", root.display()),
        format!("--output={}", output.display()),
        format!("--cpus-per-task={}", node.resources.cpu.max(1)),
    ];
    if node.resources.gpu > 0 {
        args.push(format!("--gres=gpu:{}", node.resources.gpu));
    }
    let options = [("--mem", &opts.mem), ("--time", &opts.time), ("--partition", &opts.partition), ("--account", &opts.account), ("--qos", &opts.qos)];
    args.extend(options.iter().filter_map(|(flag, value)| value.as_ref().map(|v| format!("{flag}={v}"))));
    let command = [
        opts.exe.display().to_string(),
        "--cache".into(),
        cache.display().to_string(),
        "-f".into(),
        opts.file.display().to_string(),
        "exec-node".into(),
        node.id.0.clone(),
        "--key".into(),
        key.hex(),
    ];
    args.push("--wrap".into());
    args.push(format!("exec {}", command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")));
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
    jobs: BTreeMap<u64, Tracked>,
    last_poll: Option<Instant>,
}

impl<'a> SlurmRunner<'a> {
    pub(super) fn new(plan: &'a Plan, ws: &'a Workspace<'a>, opts: &'a SlurmOptions, tx: mpsc::Sender<Message>) -> Result<Self, SlurmError> {
        run_tool("sbatch", &["--version".to_string()])?;
        let cache_dir = std::path::absolute(ws.cache.root()).map_err(io_err(ws.cache.root()))?;
        Ok(SlurmRunner { plan, ws, opts, tx, records: Records::open(ws.cache)?, cache_dir, jobs: BTreeMap::new(), last_poll: None })
    }

    fn submit(&mut self, i: usize, key: ContentHash) -> Result<String, SlurmError> {
        let node = &self.plan.experiment.nodes[i];
        let exp = &self.plan.experiment.name;
        // Held while checking for a job and submitting one, so that two
        // coordinators never both submit the same key.
        let _lock = self.records.lock(&key)?;
        if let Some(record) = self.records.read(&key) {
            if job_states(&[record.job])?.get(&record.job).is_some_and(|s| is_active(s)) {
                self.jobs.insert(record.job, Tracked { node: i, key, finished_without_artifact: None });
                return Ok(format!("Slurm job {} (submitted earlier) is still queued or running; waiting for it", record.job));
            }
        }
        let output = job_output(self.ws.cache, exp, &node.id.0);
        if let Some(dir) = output.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let root = std::path::absolute(self.ws.root).map_err(io_err(self.ws.root))?;
        let text = run_tool("sbatch", &sbatch_args(node, &key, self.opts, &root, &self.cache_dir, &output))?;
        let job: u64 = text
            .trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| SlurmError::Command { program: "sbatch".into(), message: format!("unexpected output {text:?}") })?;
        self.records.write(&key, &JobRecord { job, node: node.id.0.clone(), experiment: exp.clone() })?;
        self.jobs.insert(job, Tracked { node: i, key, finished_without_artifact: None });
        Ok(format!("submitted as Slurm job {job}"))
    }

    /// The outcome of a job that is no longer active (`state`: its final
    /// state, `None` once Slurm forgot it); `None` while its artifact may
    /// still be on its way.
    fn outcome(&self, job: u64, tracked: &mut Tracked, state: Option<&str>) -> Option<Outcome> {
        let failed = state.is_some_and(|s| s != "COMPLETED");
        if !failed {
            match self.ws.cache.manifest(&tracked.key) {
                Ok(Some(m)) => return Some(Outcome::Built(Built { artifact: m.artifact, seconds: m.seconds, by_other: false })),
                Ok(None) if tracked.finished_without_artifact.get_or_insert_with(Instant::now).elapsed() < COMMIT_GRACE => return None,
                Ok(None) => {}
                Err(e) => return Some(Outcome::Failed(e.to_string())),
            }
        }
        let node = &self.plan.experiment.nodes[tracked.node];
        let output = job_output(self.ws.cache, &self.plan.experiment.name, &node.id.0);
        let said = fs::read_to_string(&output)
            .ok()
            .and_then(|text| text.lines().rev().find_map(|l| l.strip_prefix("scalemake: node failed: ").or_else(|| l.strip_prefix("scalemake: error: ")).map(str::to_string)));
        let state = state.unwrap_or("gone from squeue, no artifact committed");
        Some(Outcome::Failed(match said {
            Some(message) => format!("{message} (Slurm job {job} {state})"),
            None => format!("Slurm job {job} {state}; see {}", output.display()),
        }))
    }
}

impl Runner for SlurmRunner<'_> {
    fn start(&mut self, i: usize, key: ContentHash, _parts: &KeyParts, _inputs: &dyn Fn() -> Vec<Input>) -> Start {
        match self.submit(i, key) {
            Ok(note) => Start::Started(Some(note)),
            Err(e) => Start::Failed(e.to_string()),
        }
    }

    fn poll(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let ids: Vec<u64> = self.jobs.keys().copied().collect();
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
            match self.outcome(id, &mut tracked, state) {
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
pub fn cancel_recorded(cache: &Cache, experiment: &str, nodes: &BTreeSet<String>) -> Result<Vec<(u64, String)>, SlurmError> {
    let records = Records::open(cache)?;
    let mine: Vec<(ContentHash, JobRecord)> = records.all().into_iter().filter(|(_, r)| r.experiment == experiment && nodes.contains(&r.node)).collect();
    let states = job_states(&mine.iter().map(|(_, r)| r.job).collect::<Vec<_>>())?;
    let active: Vec<&(ContentHash, JobRecord)> = mine.iter().filter(|(_, r)| states.get(&r.job).is_some_and(|s| is_active(s))).collect();
    cancel_jobs(&active.iter().map(|(_, r)| r.job).collect::<Vec<_>>())?;
    for (key, _) in &mine {
        records.remove(key);
    }
    Ok(active.into_iter().map(|(_, r)| (r.job, r.node.clone())).collect())
}

/// GPU slots of a job: as many as the node asks for that Slurm made visible
/// (`CUDA_VISIBLE_DEVICES`, which [`crate::device::visible_device`] maps).
pub fn job_gpus(wanted: u32) -> Vec<usize> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").map_or(0, |m| m.split(',').filter(|s| !s.trim().is_empty()).count());
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
    fn active_states() {
        assert!(is_active("PENDING") && is_active("RUNNING") && is_active("COMPLETING"));
        assert!(!is_active("COMPLETED") && !is_active("FAILED") && !is_active("CANCELLED") && !is_active("TIMEOUT"));
    }

    #[test]
    fn resources_and_options_map_to_sbatch_flags() {
        let yaml = "nodes:\n  t: {kind: command, cmd: 'echo hi', resources: {cpu: 4, gpu: 2}}\n";
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin()).unwrap();
        let opts = SlurmOptions { partition: Some("gpu".into()), time: Some("1-00:00:00".into()), file: "/p/e.yaml".into(), exe: "/bin/scalemake".into(), ..Default::default() };
        let key = ContentHash::of(b"k");
        let args = sbatch_args(&exp.nodes[0], &key, &opts, Path::new("/p"), Path::new("/p/cache"), Path::new("/p/cache/logs/e/t.slurm.out"));
        for flag in ["--job-name=t", "--chdir=/p", "--output=/p/cache/logs/e/t.slurm.out", "--cpus-per-task=4", "--gres=gpu:2", "--time=1-00:00:00", "--partition=gpu"] {
            assert!(args.contains(&flag.to_string()), "{flag} missing from {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--account") || a.starts_with("--mem")));
        let wrap = args.last().unwrap();
        assert_eq!(wrap, &format!("exec '/bin/scalemake' '--cache' '/p/cache' '-f' '/p/e.yaml' 'exec-node' 't' '--key' '{}'", key.hex()));
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let records = Records::open(&cache).unwrap();
        let key = ContentHash::of(b"k");
        assert!(records.read(&key).is_none());
        let record = JobRecord { job: 42, node: "n".into(), experiment: "e".into() };
        records.write(&key, &record).unwrap();
        assert_eq!(records.read(&key), Some(record));
        assert_eq!(records.all().len(), 1);
        records.remove(&key);
        assert!(records.all().is_empty());
    }
}
