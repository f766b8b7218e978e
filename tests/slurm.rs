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
    assert!(second.stderr.contains("(submitted earlier) is still queued or running; waiting for it"), "{}", second.stderr);
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
