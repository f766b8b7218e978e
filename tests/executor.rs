//! The executor: parallelism within `-j`, dependency order, failures and
//! `--keep-going`, crashes (SIGKILL), Ctrl-C, and concurrent processes.

mod common;
use common::Project;

use std::time::{Duration, Instant};

fn max_concurrency(p: &Project) -> usize {
    p.read("conc.log").lines().filter_map(|l| l.trim().parse().ok()).max().unwrap_or(0)
}

const SLEEPERS: &str = "
nodes:
  nap:
    kind: command
    matrix: {i: [1, 2, 3, 4, 5, 6]}
    cmd: >-
      mkdir -p running; touch running/${i}; ls running | wc -l >> conc.log;
      sleep 0.3; rm running/${i}; date +%s%N >> ends.log; echo ${i} > $OUT/x
  after:
    kind: command
    input: nap
    cmd: date +%s%N > after.log; touch $OUT/y
";

#[test]
fn parallel_runs_are_bounded_by_jobs() {
    for jobs in ["1", "3"] {
        let p = Project::new(SLEEPERS);
        let run = p.sm(&["run", "-j", jobs]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let max = max_concurrency(&p);
        assert!(max <= jobs.parse().unwrap(), "-j {jobs} but {max} ran at once");
        if jobs == "3" {
            assert!(max >= 2, "-j 3 never ran two nodes at once");
        }
    }
}

#[test]
fn dependents_start_after_all_inputs_finish() {
    let p = Project::new(SLEEPERS);
    assert_eq!(p.sm(&["run", "-j", "4"]).code, 0);
    let last_end: u128 = p.read("ends.log").lines().filter_map(|l| l.trim().parse().ok()).max().unwrap();
    let after: u128 = p.read("after.log").trim().parse().unwrap();
    assert!(after > last_end);
}

#[test]
fn one_slot_nodes_do_not_starve_a_wide_one() {
    // With -j 2, `wide` (2 slots) becomes ready while twelve 1-slot sleepers
    // queue behind it in file order: it must start at the next moment both
    // slots are free, not after every sleeper (found by tests/chaos.rs:
    // the tokenizer waited for 120 commands).
    let p = Project::new(
        "nodes:
  first: {kind: command, cmd: 'sleep 0.1; touch $OUT/x'}
  wide: {kind: command, input: first, resources: {cpu: 2}, cmd: 'date +%s%N > wide.log; touch $OUT/x'}
  small: {kind: command, matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}, cmd: 'sleep 0.1; date +%s%N >> ends.log; touch $OUT/x'}
",
    );
    assert_eq!(p.sm(&["run", "-j", "2"]).code, 0);
    let wide: u128 = p.read("wide.log").trim().parse().unwrap();
    let before =
        p.read("ends.log").lines().filter_map(|l| l.trim().parse::<u128>().ok()).filter(|&end| end < wide).count();
    assert!(before <= 2, "{before} one-slot nodes finished before the wide one started");
}

const FAILING: &str = "
nodes:
  bad: {kind: command, cmd: 'echo oops-from-bad; exit 3'}
  after_bad: {kind: command, input: bad, cmd: 'echo after_bad >> runs.log'}
  independent: {kind: command, cmd: 'echo independent >> runs.log'}
";

#[test]
fn failure_stops_new_work_without_keep_going() {
    let p = Project::new(FAILING);
    let run = p.sm(&["run", "-j", "1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("FAILED bad: command exited with status 3"), "{}", run.stderr);
    assert!(run.stderr.contains("--keep-going"), "{}", run.stderr);
    assert!(p.runs().is_empty());
    assert!(p.sm(&["log", "bad"]).stdout.contains("oops-from-bad"));
    let dag = p.sm(&["dag"]).stdout;
    assert!(dag.contains("[failed ] bad"), "{dag}");
}

#[test]
fn keep_going_builds_everything_not_downstream_of_a_failure() {
    let p = Project::new(FAILING);
    let run = p.sm(&["run", "-j", "1", "--keep-going"]);
    assert_eq!(run.code, 1);
    assert_eq!(p.runs(), ["independent"]);
    assert!(run.stderr.contains("1 built, 0 fresh, 1 failed, 1 not run"), "{}", run.stderr);
}

const CRASHY: &str = "
nodes:
  first: {kind: command, cmd: 'echo first >> runs.log; echo 1 > $OUT/x'}
  slow:
    kind: command
    input: first
    cmd: >-
      echo slow >> runs.log; echo partial > $OUT/y; touch started;
      if [ -e slow.flag ]; then sleep 29.123; fi; echo done > $OUT/y
  last: {kind: command, input: slow, cmd: 'echo last >> runs.log; cat $IN/y > $OUT/z'}
";

/// Is a `sleep <marker>` process still running? (Each test uses its own marker.)
fn sleeper_alive(marker: &str) -> bool {
    let marker = marker.as_bytes();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).map(|c| c.windows(marker.len()).any(|w| w == marker)).unwrap_or(false)
    })
}

/// Waits (polling) for the `sleep <marker>` process to be gone: the kernel
/// delivers the parent-death signal promptly, but not synchronously with
/// our `wait` on scalemake. False if it is still there after 10 s.
fn sleeper_gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeper_alive(marker) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn sigkill_mid_node_leaves_no_partial_artifact_and_resumes() {
    let p = Project::new(CRASHY);
    p.write("slow.flag", "");
    let mut child = p.spawn(&["run"]);
    assert!(p.wait_for_file("started", 20.0), "slow never started");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(p.objects().len(), 1, "only `first` may be committed");
    assert!(sleeper_gone("29.123"), "the node's process outlived scalemake");
    std::fs::remove_file(p.path().join("slow.flag")).unwrap();
    p.clear_runs();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["last", "slow"], "finished work must not rerun");
    assert_eq!(p.staging_dirs(), 0, "abandoned staging must be swept");
    let z: Vec<String> = p.objects().iter().filter_map(|o| std::fs::read_to_string(o.join("out/z")).ok()).collect();
    assert_eq!(z, ["done\n"]);
}

#[test]
fn ctrl_c_cancels_cleanly() {
    let p = Project::new(&CRASHY.replace("29.123", "29.456"));
    p.write("slow.flag", "");
    let child = p.spawn(&["run"]);
    assert!(p.wait_for_file("started", 20.0));
    let t = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(p.objects().len(), 1);
    assert_eq!(p.staging_dirs(), 0);
    assert!(sleeper_gone("29.456"), "the node's process outlived the cancelled run");
}

const SHARED: &str = "
nodes:
  a:
    kind: command
    matrix: {i: [1, 2, 3, 4, 5, 6]}
    cmd: echo a${i} >> runs.log; sleep 0.1; echo ${i} > $OUT/x
  total: {kind: command, input: a, cmd: 'echo total >> runs.log; cat $IN_A > /dev/null; touch $OUT/t'}
";

#[test]
fn concurrent_runs_build_each_node_once() {
    for processes in [2, 4] {
        let p = Project::new(SHARED);
        let children: Vec<_> = (0..processes).map(|_| p.spawn(&["run", "-j", "2"])).collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
        assert_eq!(p.runs(), ["a1", "a2", "a3", "a4", "a5", "a6", "total"], "with {processes} processes");
        let verify = p.sm(&["verify"]);
        assert_eq!(verify.code, 0, "{}", verify.stdout);
        assert!(verify.stdout.contains("7 ok, 0 corrupt"), "{}", verify.stdout);
    }
}

#[test]
fn gpu_slots_come_from_visible_devices() {
    let p = Project::new(
        "nodes:\n  g: {kind: command, cmd: 'true', resources: {gpu: 1}}\n  c: {kind: command, cmd: 'true'}\n",
    );
    // An empty mask hides every GPU from libtorch, so this runs the same on a GPU machine.
    let run =
        common::Run::from(p.command(&["run", "-k"]).env("CUDA_VISIBLE_DEVICES", "").output().expect("run scalemake"));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("FAILED g: needs 1 GPU(s), 0 visible"), "{}", run.stderr);
    assert!(run.stderr.contains("1 built"), "{}", run.stderr);
}

const GATED: &str = "
nodes:
  gate:
    kind: command
    cmd: 'touch started; while [ ! -f open ]; do sleep 0.02; done; echo g > $OUT/g'
    outputs: [g]
  after:
    kind: command
    input: gate
    cmd: 'cat $IN/g > $OUT/a'
    outputs: [a]
";

/// `status` lines as (state, node).
fn states(p: &Project) -> Vec<(String, String)> {
    let run = p.sm(&["status", "--all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .filter(|(_, node)| node == "gate" || node == "after")
        .collect()
}

#[test]
fn a_live_runs_nodes_show_as_queued_and_stale_again_once_it_is_killed() {
    let p = Project::new(GATED);
    let before = states(&p);
    assert!(before.iter().all(|(state, _)| state == "stale"), "{before:?}");
    let mut child = p.spawn(&["run"]);
    assert!(p.wait_for_file("started", 20.0), "gate never started");
    // `after` waits on `gate`, which is being built: both are the run's.
    let during = states(&p);
    assert_eq!(during, [("queued".to_string(), "gate".to_string()), ("queued".into(), "after".into())]);
    // Killed, the run's announcement no longer counts: its nodes are stale again.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = states(&p);
    assert!(killed.iter().all(|(state, _)| state == "stale"), "{killed:?}");
    // A run to the end leaves nothing announced.
    p.write("open", "");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = states(&p);
    assert!(after.iter().all(|(state, _)| state == "fresh"), "{after:?}");
    assert_eq!(std::fs::read_dir(p.path().join("cache/runs")).unwrap().count(), 0);
}
