//! `scalemake run --backend slurm` against a real single-node Slurm that
//! `scripts/slurm-local.sh up` installs and starts (root and apt needed;
//! otherwise each test skips and says why).

mod common;
use common::Project;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Brings Slurm up, or fails the test saying why it cannot be had here:
/// `scripts/test.sh` starts it as root, as CI runs; elsewhere run
/// `scripts/slurm-local.sh up` as root first.
fn slurm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("slurm unavailable: needs root to install and start Slurm (run scripts/test.sh as root, or `scripts/slurm-local.sh up` as root first)");
    }
    // Tests run in parallel processes: one `up` at a time (installing and
    // starting daemons are not safe to race).
    let guard = std::fs::File::create(std::env::temp_dir().join("scalemake-slurm-up.lock")).expect("lock file");
    guard.lock().expect("lock");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
    let out = Command::new("bash").arg(script).arg("up").output().expect("run slurm-local.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(0) {
        panic!("scripts/slurm-local.sh up failed:\n{stderr}");
    }
}

/// Slurm jobs (any state) whose working directory is `dir` and name `name`.
fn jobs_named(dir: &Path, name: &str) -> Vec<String> {
    let out = Command::new("squeue").args(["-h", "-t", "all", "-o", "%i|%j|%Z"]).output().expect("squeue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, job, wd) = (f.next()?, f.next()?, f.next()?);
            (job == name && Path::new(wd) == dir).then(|| id.to_string())
        })
        .collect()
}

/// Distinct jobs among `ids`, an array's tasks (`12_0`, `12_[1-2]`) counting once.
fn distinct_jobs(ids: &[String]) -> usize {
    ids.iter().map(|id| id.split('_').next().unwrap_or(id)).collect::<std::collections::BTreeSet<_>>().len()
}

const DAG: &str = "
nodes:
  a: {kind: command, cmd: 'echo a >> runs.log; echo A > $OUT/a'}
  b: {kind: command, input: a, cmd: 'echo b >> runs.log; touch $OUT/b'}
  bad: {kind: command, cmd: 'echo oops-from-bad; exit 3'}
  after_bad: {kind: command, input: bad, cmd: 'echo after_bad >> runs.log'}
  independent: {kind: command, cmd: 'echo independent >> runs.log; touch $OUT/i'}
";

#[test]
fn slurm_builds_a_dag_with_keep_going_and_reruns_as_a_no_op() {
    slurm();
    let p = Project::new(DAG);
    let started = Instant::now();
    let run = p.sm(&["run", "--backend", "slurm", "--keep-going", "--slurm-time", "5", "--slurm-mem", "100M"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("submitted as Slurm job"), "{}", run.stderr);
    assert!(run.stderr.contains("FAILED bad: command exited with status 3"), "{}", run.stderr);
    assert!(run.stderr.contains("cache/logs/exp/bad.log"), "the failure names the node's log:\n{}", run.stderr);
    assert!(run.stderr.contains("3 built, 0 fresh, 1 failed, 1 not run"), "{}", run.stderr);
    assert_eq!(p.runs(), ["a", "b", "independent"], "after_bad must not run");
    assert!(p.read("cache/logs/exp/bad.log").contains("oops-from-bad"));
    assert_eq!(std::fs::read_to_string(p.artifact("a").join("a")).unwrap(), "A\n");
    assert!(p.artifact("independent").join("i").is_file());
    assert!(p.sm(&["dag"]).stdout.contains("[failed ] bad"));
    eprintln!("first run: {:.1}s", started.elapsed().as_secs_f64());

    // Everything that could build is fresh: nothing is submitted but `bad`.
    let again = p.sm(&["run", "--backend", "slurm", "--keep-going"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("0 built, 3 fresh, 1 failed, 1 not run"), "{}", again.stderr);
    assert_eq!(p.runs(), ["a", "b", "independent"]);
    assert_eq!(jobs_named(p.path(), "a").len(), 1);
    eprintln!("both runs: {:.1}s", started.elapsed().as_secs_f64());
}

/// Starts `run --backend slurm`, waits until `node`'s job is in the queue,
/// and kills the coordinator, leaving the job behind.
fn submit_then_kill_the_coordinator(p: &Project, node: &str) {
    let mut coordinator = p.spawn(&["run", "--backend", "slurm"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs_named(p.path(), node).is_empty() {
        assert!(Instant::now() < deadline, "no Slurm job for {node} was submitted");
        std::thread::sleep(Duration::from_millis(50));
    }
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
}

#[test]
fn slurm_rerun_waits_for_the_job_in_flight_instead_of_resubmitting() {
    slurm();
    let p = Project::new("nodes:\n  nap: {kind: command, cmd: 'sleep 3; echo nap >> runs.log; touch $OUT/x'}\n");
    // The coordinator dies; its job lives on and is recorded in the cache.
    submit_then_kill_the_coordinator(&p, "nap");
    let second = p.sm(&["run", "--backend", "slurm"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("(submitted earlier) is still queued or running; waiting for it"),
        "{}",
        second.stderr
    );
    assert_eq!(second.built(), ["nap"]);
    assert_eq!(jobs_named(p.path(), "nap").len(), 1, "a second job was submitted for nap");
    assert_eq!(p.runs(), ["nap"]);
    let third = p.sm(&["run", "--backend", "slurm"]);
    assert!(third.stderr.contains("0 built, 1 fresh"), "{}", third.stderr);
    assert_eq!(jobs_named(p.path(), "nap").len(), 1);
}

#[test]
fn slurm_cancel_cancels_recorded_jobs() {
    slurm();
    let p = Project::new("nodes:\n  long: {kind: command, cmd: 'sleep 60; touch $OUT/x'}\n");
    submit_then_kill_the_coordinator(&p, "long");
    let cancel = p.sm(&["cancel"]);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    assert!(cancel.stdout.contains("1 Slurm job(s) cancelled"), "{}", cancel.stdout);
    let id = jobs_named(p.path(), "long").pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("squeue").args(["-h", "-t", "all", "-o", "%T", "-j", &id]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "CANCELLED" {
            break;
        }
        assert!(Instant::now() < deadline, "job {id} was not cancelled");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `scalemake status` until `done` holds of its output (60 s at most).
fn status_until(p: &Project, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = p.sm(&["status", "--all"]).stdout;
        if done(&status) {
            return status;
        }
        if Instant::now() > deadline {
            let outputs: Vec<String> = std::fs::read_dir(p.path().join("cache/logs"))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .filter(|f| f.path().to_string_lossy().ends_with(".slurm.out"))
                .map(|f| format!("{}:\n{}", f.path().display(), std::fs::read_to_string(f.path()).unwrap_or_default()))
                .collect();
            panic!("{what} did not happen; status:\n{status}\njob outputs:\n{}", outputs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `node → job` as `run --detach` printed them (`    node → Slurm job 12_3 (…)`).
fn submitted(stderr: &str) -> std::collections::BTreeMap<String, String> {
    stderr
        .lines()
        .filter_map(|l| l.trim().split_once(" → Slurm job "))
        .map(|(node, rest)| (node.to_string(), rest.split(' ').next().unwrap_or("").to_string()))
        .collect()
}

const SWEEP_DAG: &str = "
nodes:
  a: {kind: command, cmd: 'echo a >> runs.log; echo A > $OUT/a'}
  s: {kind: command, input: a, matrix: {x: [1, 2, 3]}, cmd: 'echo s${x} >> runs.log; echo ${x} > $OUT/x'}
  z: {kind: command, input: s, cmd: 'echo z >> runs.log; for d in $IN_S; do cat $d/x; done > $OUT/z'}
";

#[test]
fn slurm_detached_dag_completes_after_the_submitter_exits_with_one_array_for_the_sweep() {
    slurm();
    let p = Project::new(SWEEP_DAG);
    let started = Instant::now();
    let run = p.sm(&["run", "--backend", "slurm", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "submitting must not wait for the jobs");
    assert!(run.stderr.contains("5 job(s) submitted (1 array(s)), 0 adopted"), "{}", run.stderr);
    let jobs = submitted(&run.stderr);
    let arrays: std::collections::BTreeSet<&str> =
        ["s[x=1]", "s[x=2]", "s[x=3]"].iter().map(|n| jobs[*n].split_once('_').expect("an array task").0).collect();
    assert_eq!(arrays.len(), 1, "the sweep is one job array: {jobs:?}");
    assert!(!jobs["a"].contains('_') && !jobs["z"].contains('_'), "{jobs:?}");
    // The submitting process is gone; the jobs build everything by themselves.
    status_until(&p, "the detached DAG finishing", |s| s.contains("all 5 node(s) fresh"));
    assert_eq!(p.runs(), ["a", "s1", "s2", "s3", "z"]);
    assert_eq!(std::fs::read_to_string(p.artifact("z").join("z")).unwrap(), "1\n2\n3\n");
    let again = p.sm(&["run", "--backend", "slurm", "--detach"]);
    assert!(again.stderr.contains("0 job(s) submitted"), "{}", again.stderr);
}

#[test]
fn slurm_detached_failure_cancels_its_dependents_and_status_names_it() {
    slurm();
    let p = Project::new(DAG);
    let run = p.sm(&["run", "--backend", "slurm", "--detach"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = status_until(&p, "the failure being reported", |s| {
        s.lines().any(|l| l.starts_with("failed  bad "))
            && s.lines().any(|l| l.starts_with("failed  after_bad "))
            && s.contains("fresh   independent")
    });
    let bad = status.lines().find(|l| l.starts_with("failed  bad ")).unwrap();
    assert!(bad.contains("FAILED") && bad.contains("command exited with status 3"), "{status}");
    let after = status.lines().find(|l| l.starts_with("failed  after_bad ")).unwrap();
    assert!(
        after.contains("CANCELLED"),
        "a failed input cancels its dependents instead of leaving them pending: {status}"
    );
    assert_eq!(p.runs(), ["a", "b", "independent"], "after_bad must never run");
}

/// Objects a `file://` remote at `dir` holds (a manifest is written last).
fn remote_objects(dir: &Path) -> usize {
    let manifests = std::fs::read_dir(dir.join("manifests")).into_iter().flatten().flatten();
    manifests.filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()
}

/// Waits until node `name`'s job output holds `line` (60 s at most). The job
/// reports what it did after its artifact is visible, so a status or remote
/// that already shows the artifact can be ahead of the job's output.
fn job_says(p: &Project, name: &str, line: &str) {
    let log = format!("cache/logs/exp/{name}.slurm.out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.read(&log).contains(line) {
        assert!(Instant::now() < deadline, "{log} never said {line:?}:\n{}", p.read(&log));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slurm_detached_jobs_share_through_the_remote_without_their_submitter() {
    slurm();
    let remote = tempfile::tempdir().expect("a remote directory");
    let url = format!("file://{}", remote.path().display());
    let detach = ["run", "--backend", "slurm", "--detach", "--remote", url.as_str()];
    let p = Project::new(SWEEP_DAG);
    let run = p.sm(&detach);
    assert!(run.code == 0 && run.stderr.contains("5 job(s) submitted"), "{}", run.stderr);
    // The submitter is gone: each job uploads what it built.
    let deadline = Instant::now() + Duration::from_secs(60);
    while remote_objects(remote.path()) < 5 {
        assert!(Instant::now() < deadline, "the jobs did not upload; status:\n{}", p.sm(&["status", "--all"]).stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    job_says(&p, "z", "scalemake: uploaded z to file://");

    // A second checkout fetches all of it and submits nothing.
    let q = Project::new(SWEEP_DAG);
    let again = q.sm(&detach);
    assert!(again.code == 0 && again.stderr.contains("0 job(s) submitted"), "{}", again.stderr);
    assert_eq!(again.stderr.matches(" ← fetched from file://").count(), 5, "{}", again.stderr);
    assert!(q.runs().is_empty(), "nothing ran in the second checkout");
    assert_eq!(std::fs::read_to_string(q.artifact("z").join("z")).unwrap(), "1\n2\n3\n");

    // A third changes `a` without changing its output: its key is new, so
    // every node gets a job, but the jobs of `s` and `z` learn their keys
    // only once `a` is built, find them on the remote and fetch them.
    let r = Project::new(&SWEEP_DAG.replace("echo A > $OUT/a'", "echo A > $OUT/a; true'"));
    let third = r.sm(&detach);
    assert!(third.code == 0 && third.stderr.contains("5 job(s) submitted"), "{}", third.stderr);
    status_until(&r, "the third checkout finishing", |s| s.contains("all 5 node(s) fresh"));
    assert_eq!(r.runs(), ["a"], "only `a` was built; the rest came from the remote");
    job_says(&r, "z", "scalemake: fetched z ");
    assert_eq!(std::fs::read_to_string(r.artifact("z").join("z")).unwrap(), "1\n2\n3\n");
}

#[test]
fn slurm_two_detached_submissions_at_once_submit_each_node_once() {
    slurm();
    let p = Project::new(SWEEP_DAG);
    let children: Vec<_> = (0..2).map(|_| p.spawn(&["run", "--backend", "slurm", "--detach"])).collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stderr).into_owned())
        .collect();
    let fresh: usize = outputs.iter().map(|o| submitted(o).len()).sum();
    assert_eq!(fresh, 10, "each submission names all five nodes: {outputs:?}");
    assert!(
        outputs.iter().any(|o| o.contains("5 job(s) submitted"))
            && outputs.iter().any(|o| o.contains("0 job(s) submitted (0 array(s)), 5 adopted")),
        "{outputs:?}"
    );
    for name in ["a", "s", "z"] {
        assert_eq!(distinct_jobs(&jobs_named(p.path(), name)), 1, "one job for {name}: {outputs:?}");
    }
    status_until(&p, "the DAG finishing", |s| s.contains("all 5 node(s) fresh"));
    assert_eq!(p.runs(), ["a", "s1", "s2", "s3", "z"]);
}

/// A training run long enough to be interrupted (600 steps, no periodic checkpoints).
fn long_training() -> String {
    common::NANO_STUDY
        .replace("max_tokens: 15360", "max_tokens: 153600")
        .replace("checkpoint_steps: 10", "checkpoint_steps: 0")
}

/// Waits until `train`'s job has trained some steps; its job id.
fn training_job_running(p: &Project, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.read("cache/logs/study/train.log").contains("step 20/") {
        assert!(Instant::now() < deadline, "job {job} never trained; log:\n{}", p.read("cache/logs/study/train.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Slurm holds a requeued batch job back for two minutes (its begin time);
/// the test, as an administrator may, lets it start now.
fn start_requeued_job_now(job: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("scontrol").args(["show", "job", job]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("JobState=PENDING") && !text.contains("Restarts=0") {
            let update =
                Command::new("scontrol").args(["update", &format!("JobId={job}"), "StartTime=now"]).output().unwrap();
            assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stderr));
            return;
        }
        assert!(Instant::now() < deadline, "job {job} was not requeued:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Interrupts `train`'s detached job with `interrupt(job)` mid-run, then
/// checks that it resumes and ends with the same curves and weights as an
/// uninterrupted local run.
fn interrupted_training_resumes_exactly(interrupt: impl Fn(&str)) {
    slurm();
    let whole = common::training_project(&long_training());
    assert_eq!(whole.sm(&["run"]).code, 0);
    let p = common::training_project(&long_training());
    assert_eq!(p.sm(&["run", "shards"]).code, 0);
    let run = p.sm(&["run", "--backend", "slurm", "--detach"]);
    let job = submitted(&run.stderr).remove("train").unwrap_or_else(|| panic!("{}", run.stderr));
    training_job_running(&p, &job);
    interrupt(&job);
    start_requeued_job_now(&job);
    status_until(&p, "the requeued job finishing", |s| s.contains("all 4 node(s) fresh"));
    let log = p.read("cache/logs/study/train.log");
    assert!(log.contains("scalemake: resuming from the checkpoint after step"), "{log}");
    let artifact = |p: &Project| p.artifact("train");
    for file in ["metrics/steps.jsonl", "metrics/eval.jsonl"] {
        assert_eq!(
            common::curve(&artifact(&whole).join(file)),
            common::curve(&artifact(&p).join(file)),
            "{file} differs after the requeue"
        );
    }
    let weights = |p: &Project| std::fs::read(artifact(p).join("model.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&p), "final weights are bit-identical");
}

#[test]
fn slurm_a_preempted_training_job_checkpoints_requeues_and_resumes_exactly() {
    // `scontrol requeue` is what preemption in REQUEUE mode does: SIGTERM, then back to the queue.
    interrupted_training_resumes_exactly(|job| {
        let out = Command::new("scontrol").args(["requeue", job]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
}

#[test]
fn slurm_a_training_job_warned_of_its_time_limit_requeues_itself_and_resumes_exactly() {
    // Slurm's `--signal=B:USR1@grace` warning, sent now instead of `grace` seconds before the limit.
    interrupted_training_resumes_exactly(|job| {
        let out = Command::new("scancel").args(["--batch", "--signal=USR1", job]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
}

#[test]
fn slurm_an_attached_run_adopts_the_jobs_of_a_detached_submission() {
    slurm();
    let p = Project::new(SWEEP_DAG);
    let detached = p.sm(&["run", "--backend", "slurm", "--detach"]);
    assert_eq!(detached.code, 0, "{}", detached.stderr);
    let attached = p.sm(&["run", "--backend", "slurm"]);
    assert_eq!(attached.code, 0, "{}", attached.stderr);
    assert!(!attached.stderr.contains("submitted as Slurm job"), "nothing is submitted twice:\n{}", attached.stderr);
    assert!(
        attached.stderr.contains("(submitted earlier) is still queued or running; waiting for it"),
        "{}",
        attached.stderr
    );
    assert_eq!(p.runs(), ["a", "s1", "s2", "s3", "z"]);
    for name in ["a", "s", "z"] {
        assert_eq!(distinct_jobs(&jobs_named(p.path(), name)), 1, "one job for {name}");
    }
}

/// A data-parallel run on Slurm is one job of two tasks: `srun` starts a
/// rank in each, they meet at rank 0's store, and the curve is the one the
/// same run trains locally (where rank 0 starts the other rank itself).
#[test]
fn slurm_a_two_device_run_is_one_job_of_two_tasks_with_the_local_curve() {
    slurm();
    let study = common::NANO_STUDY.replace("micro_batch: 2", "micro_batch: 2\n    dropout: 0.0\n    devices: 2");
    let local = common::training_project(&study);
    assert_eq!(local.sm(&["run"]).code, 0);
    let p = common::training_project(&study);
    let run = p.sm(&["run", "--backend", "slurm"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let log = p.read("cache/logs/study/train.log");
    assert!(log.contains("scalemake: 2 ranks as the tasks of Slurm job"), "{log}");
    assert!(log.contains(", 2 ranks:") && log.contains("rank 1 of 2 on cpu"), "{log}");
    let jobs = jobs_named(p.path(), "train");
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    let out = Command::new("scontrol").args(["show", "job", &jobs[0]]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NumTasks=2"), "{text}");
    let steps = |p: &Project| common::curve(&p.artifact("train").join("metrics/steps.jsonl"));
    assert_eq!(steps(&p), steps(&local), "the Slurm run's curve is the local run's");
}

/// The pid of task `rank` of Slurm job `job` on this (the only) node: the
/// worker process whose environment says so.
fn task_pid(job: &str, rank: u32) -> Option<i32> {
    let wanted = [format!("SLURM_JOB_ID={job}"), format!("SLURM_PROCID={rank}")];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmdline).contains("scalemake-torch") {
            return None;
        }
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let vars: Vec<String> = environ.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        wanted.iter().all(|w| vars.contains(w)).then_some(pid)
    })
}

/// A rank killed inside a 2-task job fails the node (srun ends the step),
/// and the rerun resumes from the checkpoint to the uninterrupted run's end.
#[test]
fn slurm_a_killed_task_of_a_two_device_run_fails_it_and_the_rerun_resumes() {
    slurm();
    let study = common::NANO_STUDY
        .replace("micro_batch: 2", "micro_batch: 2\n    dropout: 0.0\n    devices: 2")
        .replace("max_tokens: 15360", "max_tokens: 76800");
    let whole = common::training_project(&study);
    assert_eq!(whole.sm(&["run"]).code, 0);
    let p = common::training_project(&study);
    assert_eq!(p.sm(&["run", "shards"]).code, 0);
    let child = p.spawn(&["run", "--backend", "slurm"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        let checkpointed = !common::checkpoint_steps(&p).is_empty();
        let pid = jobs_named(p.path(), "train").first().and_then(|job| task_pid(job, 1));
        if let (true, Some(pid)) = (checkpointed, pid) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no checkpoint and rank 1 to kill");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) on the pid of rank 1's worker, found just now.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the node fails: {stderr}");
    assert!(!p.artifact("train").exists(), "a failed run leaves no artifact");
    let rerun = p.sm(&["run", "--backend", "slurm"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let log = p.read("cache/logs/study/train.log");
    assert!(log.contains("scalemake: resuming from the checkpoint after step"), "{log}");
    let last = |p: &Project| common::curve(&p.artifact("train").join("metrics/steps.jsonl")).last().cloned().unwrap();
    assert_eq!(last(&p), last(&whole), "the resumed run ends where the whole one does");
}
