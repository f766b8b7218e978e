//! `run --backend slurm --detach`: the whole DAG submitted at once, so that
//! no coordinator has to stay alive (login nodes forbid long processes, SSH
//! sessions drop). Each node that must build becomes a job that waits for
//! its inputs' jobs (`--dependency=afterok:…`, with
//! `--kill-on-invalid-dep=yes`: a failed input cancels its dependents rather
//! than leaving them pending forever). The instances of one sweep with the
//! same `sbatch` options become one job array, so a 100-run sweep is one
//! entry in `squeue` and one submission against limits such as
//! MaxSubmitJobs.
//!
//! A job computes its node's key when it starts, from the artifacts its
//! inputs' jobs committed: an input rebuilt to identical bytes leaves the
//! key unchanged and the job finds its artifact cached (early cut-off); a
//! node whose key was known at submission is given it (`--key`) and refuses
//! to build anything else.
//!
//! The jobs of each experiment are recorded in
//! `cache/slurm/<experiment>.detached.json` (written under the flock
//! `<experiment>.submit.lock`, so two submissions at the same instant submit
//! each node once): `status` reads it, `cancel` cancels it, and a later
//! `run` adopts jobs still queued or running instead of submitting twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    exec_node_command, io_err, is_active, job_flags, job_output, job_states, sbatch, wrap, SlurmError, SlurmOptions,
};
use crate::cache::Cache;
use crate::exec::{survey, Freshness, Workspace};
use crate::graph::Plan;

/// A node's job, as `run --detach` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// Node id.
    pub node: String,
    /// Its job (`123`, or `123_4`: task 4 of array job 123).
    pub job: String,
    /// True when a job submitted earlier was still queued or running and
    /// was adopted instead of submitting another.
    pub adopted: bool,
}

/// `cache/slurm/<experiment>.detached.json`: node id → job id.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    jobs: BTreeMap<String, String>,
}

fn ledger_path(cache: &Cache, experiment: &str) -> PathBuf {
    cache.root().join("slurm").join(format!("{experiment}.detached.json"))
}

fn read_ledger(cache: &Cache, experiment: &str) -> Ledger {
    fs::read(ledger_path(cache, experiment))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Written to a temporary file and renamed: readers see all or nothing.
fn write_ledger(cache: &Cache, experiment: &str, ledger: &Ledger) -> Result<(), SlurmError> {
    let path = ledger_path(cache, experiment);
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let json =
        serde_json::to_vec_pretty(ledger).map_err(|e| SlurmError::Io { path: path.clone(), source: e.into() })?;
    fs::write(&tmp, json).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// The experiment's submission lock (held for a whole submission).
fn submission_lock(cache: &Cache, experiment: &str) -> Result<File, SlurmError> {
    let dir = cache.root().join("slurm");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{experiment}.submit.lock"));
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// The job a detached submission recorded for `node`, if any.
pub fn recorded_job(cache: &Cache, experiment: &str, node: &str) -> Option<String> {
    read_ledger(cache, experiment).jobs.remove(node)
}

/// Every recorded job of `experiment`, by node.
pub fn recorded_jobs(cache: &Cache, experiment: &str) -> BTreeMap<String, String> {
    read_ledger(cache, experiment).jobs
}

/// Where a recorded job stands, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting in the queue (for its inputs' jobs, or for resources).
    Queued,
    /// Running (or completing, requeued, …: still active).
    Running,
    /// No longer active: Slurm's final state (`FAILED`, `CANCELLED`,
    /// `TIMEOUT`, …, or `COMPLETED` without an artifact), and the node's
    /// failure as its log tells it, if it got that far.
    Ended {
        /// Slurm's state, or "gone from squeue".
        state: String,
        /// The `node failed:` line of the node's log.
        failure: Option<String>,
    },
}

/// A node's recorded job and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    /// The job id.
    pub job: String,
    /// Where it stands.
    pub state: JobState,
}

impl JobView {
    /// The state label and the detail that `status` prints, and `serve`
    /// shows, for `node` while this job builds it: one wording for both, so
    /// the dashboard says what `status` says. An ended job without a failure
    /// line points at the node's log in `cache`.
    pub fn describe(&self, cache: &Cache, experiment: &str, node: &str) -> (&'static str, String) {
        match &self.state {
            JobState::Queued => ("queued", format!("Slurm job {}", self.job)),
            JobState::Running => ("running", format!("Slurm job {}", self.job)),
            JobState::Ended { state, failure } => {
                let why =
                    failure.clone().unwrap_or_else(|| format!("see {}", cache.node_log(experiment, node).display()));
                ("failed", format!("Slurm job {} {state}: {why}", self.job))
            }
        }
    }
}

/// The recorded jobs of `nodes` (nodes without a record are absent), with
/// their states: one `squeue` call, none when nothing is recorded.
pub fn job_views(cache: &Cache, experiment: &str, nodes: &[&str]) -> Result<BTreeMap<String, JobView>, SlurmError> {
    let mut recorded = recorded_jobs(cache, experiment);
    recorded.retain(|node, _| nodes.contains(&node.as_str()));
    let states = job_states(&recorded.values().cloned().collect::<Vec<_>>())?;
    Ok(recorded
        .into_iter()
        .map(|(node, job)| {
            let state = match states.get(&job).map(String::as_str) {
                Some("PENDING") => JobState::Queued,
                Some(s) if is_active(s) => JobState::Running,
                other => {
                    let log = fs::read_to_string(cache.node_log(experiment, &node)).unwrap_or_default();
                    let failure =
                        log.lines().rev().find_map(|l| l.strip_prefix("scalemake: node failed: ")).map(str::to_string);
                    JobState::Ended { state: other.unwrap_or("gone from squeue").to_string(), failure }
                }
            };
            (node, JobView { job, state })
        })
        .collect())
}

/// Forgets the recorded jobs of `nodes` (after `cancel`).
pub fn forget(cache: &Cache, experiment: &str, nodes: &BTreeSet<String>) -> Result<(), SlurmError> {
    let _lock = submission_lock(cache, experiment)?;
    let mut ledger = read_ledger(cache, experiment);
    ledger.jobs.retain(|node, _| !nodes.contains(node));
    write_ledger(cache, experiment, &ledger)
}

/// Submits every selected node that must build, each after its inputs'
/// jobs, adopting jobs of an earlier submission that are still queued or
/// running. Returns each node's job, in submission order.
pub fn submit(
    plan: &Plan,
    ws: &Workspace<'_>,
    opts: &SlurmOptions,
    selected: &BTreeSet<usize>,
) -> Result<Vec<Submitted>, SlurmError> {
    let experiment = &plan.experiment.name;
    let _lock = submission_lock(ws.cache, experiment)?;
    let freshness = survey(plan, ws);
    let to_build: Vec<usize> = plan
        .topo_order()
        .iter()
        .copied()
        .filter(|i| selected.contains(i) && !matches!(freshness[*i], Freshness::Fresh { .. }))
        .collect();
    for &i in &to_build {
        if let Freshness::Broken { message } = &freshness[i] {
            return Err(SlurmError::Unbuildable {
                node: plan.experiment.nodes[i].id.0.clone(),
                message: message.clone(),
            });
        }
    }
    let mut ledger = read_ledger(ws.cache, experiment);
    let recorded: Vec<String> =
        to_build.iter().filter_map(|&i| ledger.jobs.get(&plan.experiment.nodes[i].id.0).cloned()).collect();
    let states = job_states(&recorded)?;
    let mut job_of: HashMap<usize, String> = HashMap::new();
    let mut out = Vec::new();
    for &i in &to_build {
        let node = &plan.experiment.nodes[i].id.0;
        if let Some(job) = ledger.jobs.get(node).filter(|job| states.get(*job).is_some_and(|s| is_active(s))) {
            job_of.insert(i, job.clone());
            out.push(Submitted { node: node.clone(), job: job.clone(), adopted: true });
        }
    }
    let building: BTreeSet<usize> = to_build.iter().copied().collect();
    let mut pending =
        groups(plan, opts, &to_build.iter().copied().filter(|i| !job_of.contains_key(i)).collect::<Vec<_>>());
    let root = std::path::absolute(ws.root).map_err(io_err(ws.root))?;
    // Slurm fails a job whose output file it cannot create.
    let logs = job_output(ws.cache, experiment, "any");
    if let Some(dir) = logs.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let cache_dir = std::path::absolute(ws.cache.root()).map_err(io_err(ws.cache.root()))?;
    while !pending.is_empty() {
        // Groups in topological order of their first member; a group goes once
        // every input it waits for has a job (the group graph is acyclic).
        let ready = pending
            .iter()
            .position(|group| {
                group.iter().all(|&m| plan.inputs_of(m).iter().all(|p| !building.contains(p) || job_of.contains_key(p)))
            })
            .expect("groups never wait for each other in a cycle");
        let group = pending.remove(ready);
        let mut after: Vec<&str> =
            group.iter().flat_map(|&m| plan.inputs_of(m)).filter_map(|p| job_of.get(&p).map(String::as_str)).collect();
        after.sort_unstable();
        after.dedup();
        let first = &plan.experiment.nodes[group[0]];
        // A single node's job is named for it; an array for its declaration,
        // with one output file per task.
        let (name, output) = match group[..] {
            [_] => (first.id.0.as_str(), job_output(ws.cache, experiment, &first.id.0)),
            _ => (
                first.decl.as_str(),
                job_output(ws.cache, experiment, &first.decl)
                    .with_file_name(format!("{}.array-%A_%a.slurm.out", first.decl)),
            ),
        };
        let mut args = job_flags(first, name, opts, &root, &output);
        if !after.is_empty() {
            args.push(format!("--dependency=afterok:{}", after.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        if let [only] = group[..] {
            let key = match &freshness[only] {
                Freshness::Stale { key, .. } => *key,
                _ => None,
            };
            args.extend(wrap(&exec_node_command(opts, &cache_dir, &plan.experiment.nodes[only].id.0, key.as_ref())));
            let job = sbatch_when_accepted(&args).map_err(|e| for_node(e, &plan.experiment.nodes[only].id.0))?;
            job_of.insert(only, job.clone());
            out.push(Submitted { node: plan.experiment.nodes[only].id.0.clone(), job, adopted: false });
        } else {
            array_args(plan, opts, &cache_dir, &group, &mut args);
            let job = sbatch_when_accepted(&args).map_err(|e| for_node(e, &first.decl))?;
            for (task, &m) in group.iter().enumerate() {
                let task_job = format!("{job}_{task}");
                job_of.insert(m, task_job.clone());
                out.push(Submitted { node: plan.experiment.nodes[m].id.0.clone(), job: task_job, adopted: false });
            }
        }
        // Recorded after each submission: a failure later leaves what was submitted known.
        for s in out.iter().filter(|s| !s.adopted) {
            ledger.jobs.insert(s.node.clone(), s.job.clone());
        }
        write_ledger(ws.cache, experiment, &ledger)?;
    }
    Ok(out)
}

/// Names the node whose submission failed (what was submitted before it
/// is recorded; a later `run --detach` adopts it and goes on).
fn for_node(e: SlurmError, node: &str) -> SlurmError {
    match e {
        SlurmError::Command { program, message } => {
            SlurmError::Command { program, message: format!("{message} (submitting `{node}`)") }
        }
        other => other,
    }
}

/// How often a submission refused by a queue limit is tried again.
const SUBMIT_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Submits, waiting out queue limits: a refused submission is retried,
/// never dropped (the jobs already in the queue free room as they end).
fn sbatch_when_accepted(args: &[String]) -> Result<String, SlurmError> {
    loop {
        match sbatch(args) {
            Err(SlurmError::SubmitLimit(why)) => {
                eprintln!("scalemake: {why}; trying again in {} s", SUBMIT_RETRY.as_secs());
                std::thread::sleep(SUBMIT_RETRY);
            }
            other => return other,
        }
    }
}

/// Nodes that can share one job array: instances of one declaration with
/// the same `sbatch` options, none an input of another. Singletons
/// otherwise; groups in the order of their first member.
fn groups(plan: &Plan, opts: &SlurmOptions, nodes: &[usize]) -> Vec<Vec<usize>> {
    let mut by_shape: BTreeMap<(String, Vec<String>), Vec<usize>> = BTreeMap::new();
    for &i in nodes {
        let node = &plan.experiment.nodes[i];
        if node.matrix.is_empty() {
            continue;
        }
        // The options with the per-node name and output left blank.
        let flags = job_flags(node, "", opts, Path::new(""), Path::new(""));
        by_shape.entry((node.decl.clone(), flags)).or_default().push(i);
    }
    let mut grouped: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for members in by_shape.into_values().filter(|m| m.len() > 1) {
        let set: BTreeSet<usize> = members.iter().copied().collect();
        if members.iter().any(|&m| plan.inputs_of(m).iter().any(|p| set.contains(p))) {
            continue;
        }
        grouped.insert(members[0], members);
    }
    let in_a_group: BTreeSet<usize> = grouped.values().flatten().copied().collect();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in nodes {
        if let Some(group) = grouped.remove(&i) {
            out.push(group);
        } else if !in_a_group.contains(&i) {
            out.push(vec![i]);
        }
    }
    out
}

/// One array job for `group`: task k builds `group[k]`, picked by
/// `$SLURM_ARRAY_TASK_ID` in a POSIX `case` (sbatch's `--wrap` runs `sh`).
fn array_args(plan: &Plan, opts: &SlurmOptions, cache_dir: &Path, group: &[usize], args: &mut Vec<String>) {
    let limit = opts.array_limit.map(|n| format!("%{n}")).unwrap_or_default();
    args.push(format!("--array=0-{}{limit}", group.len() - 1));
    let cases: Vec<String> = group
        .iter()
        .enumerate()
        .map(|(task, &m)| format!("{task}) node={};;", super::quote(&plan.experiment.nodes[m].id.0)))
        .collect();
    // Everything quoted but the node (the last argument), the shell
    // variable the `case` set.
    let mut command: Vec<String> =
        exec_node_command(opts, cache_dir, "", None).iter().map(|a| super::quote(a)).collect();
    command.pop();
    command.push("\"$node\"".into());
    args.push("--wrap".into());
    args.push(format!("case $SLURM_ARRAY_TASK_ID in {} *) exit 2;; esac; exec {}", cases.join(" "), command.join(" ")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> Plan {
        let exp = crate::spec::load_str("e.yaml".into(), yaml.into(), "e".into(), &crate::nodes::Registry::builtin())
            .unwrap();
        Plan::new(exp).unwrap()
    }

    #[test]
    fn a_sweeps_instances_share_one_array_and_the_rest_stay_single() {
        let p = plan(
            "nodes:\n  a: {kind: command, cmd: 'true'}\n  s: {kind: command, input: a, matrix: {x: [1, 2, 3]}, cmd: 'echo ${x}'}\n  z: {kind: command, input: s, cmd: 'true'}\n",
        );
        let all: Vec<usize> = p.topo_order().to_vec();
        let groups = groups(&p, &SlurmOptions::default(), &all);
        let names: Vec<Vec<&str>> =
            groups.iter().map(|g| g.iter().map(|&i| p.experiment.nodes[i].id.0.as_str()).collect()).collect();
        assert_eq!(names, [vec!["a"], vec!["s[x=1]", "s[x=2]", "s[x=3]"], vec!["z"]]);
    }

    #[test]
    fn an_array_task_picks_its_node_and_the_limit_caps_it() {
        let p = plan("nodes:\n  s: {kind: command, matrix: {x: [1, 2]}, cmd: 'echo ${x}'}\n");
        let opts = SlurmOptions {
            array_limit: Some(1),
            exe: "/bin/scalemake".into(),
            file: "/p/e.yaml".into(),
            ..Default::default()
        };
        // Named for the declaration, as `submit` names an array.
        let first = &p.experiment.nodes[0];
        let mut args = job_flags(first, &first.decl, &opts, Path::new("/p"), Path::new("/o"));
        array_args(&p, &opts, Path::new("/c"), &[0, 1], &mut args);
        assert!(args.contains(&"--array=0-1%1".to_string()) && args.contains(&"--job-name=s".to_string()), "{args:?}");
        let script = args.last().unwrap();
        assert!(script.starts_with("case $SLURM_ARRAY_TASK_ID in 0) node='s[x=1]';; 1) node='s[x=2]';; *) exit 2;; esac; exec '/bin/scalemake'"), "{script}");
        assert!(script.ends_with("'exec-node' \"$node\""), "{script}");
    }

    #[test]
    fn a_jobs_description_names_the_job_and_an_ended_one_its_failure_or_log() {
        let cache = Cache::open_read_only(Path::new("/c"));
        let view = |state| JobView { job: "12_3".into(), state };
        assert_eq!(view(JobState::Queued).describe(&cache, "e", "n"), ("queued", "Slurm job 12_3".into()));
        assert_eq!(view(JobState::Running).describe(&cache, "e", "n"), ("running", "Slurm job 12_3".into()));
        let ended = |failure: Option<&str>| {
            view(JobState::Ended { state: "FAILED".into(), failure: failure.map(str::to_string) })
                .describe(&cache, "e", "n")
        };
        assert_eq!(
            ended(Some("command exited with status 3")).1,
            "Slurm job 12_3 FAILED: command exited with status 3"
        );
        assert_eq!(ended(None), ("failed", "Slurm job 12_3 FAILED: see /c/logs/e/n.log".into()));
    }
}
